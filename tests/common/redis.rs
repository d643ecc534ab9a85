//! Real Redis servers for the tests (Debian's redis-server on free loopback ports, killed with the
//! test): one server, a cluster, and a replica's config for a fleet sharing one.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start(port: u16) -> Redis {
        Redis::start_with(port, &["--port", &port.to_string()])
    }

    /// `listen`: where it listens (`--port P`, or `--port 0 --tls-port P` and the TLS files).
    pub fn start_with(port: u16, listen: &[&str]) -> Redis {
        let mut cmd = Command::new("redis-server");
        cmd.args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        dies_with_the_test(&mut cmd);
        let child = cmd
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica's config with its own decision-log directory and the fleet's feedback key and salt.
pub fn fleet_config(tag: &str, state: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-fleet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("handoff.toml");
    std::fs::write(
        &path,
        format!(
            "state = \"{state}\"\n[decision_log]\ndir = \"{}\"\nreplica = \"{tag}\"\nconversation_salt = \"the fleet's conversation salt\"\nfeedback_keys = [\"the fleet's feedback key\"]\n",
            dir.join("log").display()
        ),
    )
    .unwrap();
    path
}

/// A Redis Cluster of `masters` masters with a replica each (Debian's redis-server in cluster mode,
/// made with `redis-cli --cluster create`), on free ports, killed when dropped.
pub struct RedisCluster {
    nodes: Vec<(u16, Child)>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("handoff-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..masters * 2 {
            // Each node also listens on its port + 10000 (the cluster bus): keep both below the
            // kernel's ephemeral range and free.
            let port = loop {
                let p = super::free_port();
                if p < 22_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
                    break p;
                }
            };
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1500"])
                // A replica takes over however long since it last heard its master (a test
                // cluster's replicas may not have synced yet).
                .args(["--cluster-replica-validity-factor", "0"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")))
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            dies_with_the_test(&mut cmd);
            nodes.push((port, cmd.spawn().expect("redis-server")));
        }
        for (port, _) in &nodes {
            let start = Instant::now();
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "node {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(created.status.success(), "{created:?}");
        let cluster = RedisCluster { nodes, dir };
        cluster.wait_ok();
        cluster
    }

    pub fn info(&self, port: u16, what: &str) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", what])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Every live node says the cluster is ok.
    pub fn wait_ok(&self) {
        let start = Instant::now();
        while !self
            .nodes
            .iter()
            .all(|(p, c)| c.id() == 0 || self.info(*p, "info").contains("cluster_state:ok"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    /// Ports of the masters, from the first node's view.
    pub fn masters(&self) -> Vec<u16> {
        self.info(self.nodes[0].0, "nodes")
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)?
                    .split(['@', ':'])
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .collect()
    }

    pub fn keys_on(&self, port: u16) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "--scan",
                "--pattern",
                "handoff:conv:*",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn kill(&mut self, port: u16) {
        if let Some((_, child)) = self.nodes.iter_mut().find(|(p, _)| *p == port) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, one replica of it and one Sentinel watching them (quorum 1, down after 1 s), on free
/// ports: `redis+sentinel://` state and its failover.
pub struct SentinelSet {
    master: Option<Redis>,
    pub master_port: u16,
    pub replica: Redis,
    sentinel: Child,
    pub sentinel_port: u16,
    dir: std::path::PathBuf,
}

impl SentinelSet {
    pub const SERVICE: &'static str = "handoff-master";

    pub fn start() -> SentinelSet {
        let master = Redis::start(super::free_port());
        let replica_port = super::free_port();
        let replica = Redis::start_with(
            replica_port,
            &[
                "--port",
                &replica_port.to_string(),
                "--replicaof",
                "127.0.0.1",
                &master.port.to_string(),
            ],
        );
        // Sentinel finds the replica in the master's INFO: wait until it has synced.
        let start = Instant::now();
        while !redis_cli(replica.port, &["info", "replication"]).contains("master_link_status:up") {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the replica never synced"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = std::env::temp_dir().join(format!("handoff-sentinel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sentinel_port = super::free_port();
        // Sentinel rewrites its config file: it must be its own and writable.
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {1} 1000\nsentinel failover-timeout {1} 5000\n",
                dir.display(),
                Self::SERVICE,
                master.port
            ),
        )
        .unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        dies_with_the_test(&mut cmd);
        let sentinel = cmd.spawn().expect("redis-server --sentinel");
        let set = SentinelSet {
            master_port: master.port,
            master: Some(master),
            replica,
            sentinel,
            sentinel_port,
            dir,
        };
        let start = Instant::now();
        while !set
            .sentinel_says("slaves")
            .contains(&replica_port.to_string())
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Sentinel never saw the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        set
    }

    /// Kill the master (as a crash would).
    pub fn kill_master(&mut self) {
        self.master.take();
    }

    /// `SENTINEL <what> <service>`, as redis-cli prints it.
    pub fn sentinel_says(&self, what: &str) -> String {
        redis_cli(self.sentinel_port, &["sentinel", what, Self::SERVICE])
    }

    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.sentinel_port,
            Self::SERVICE
        )
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process is killed when the thread that started it ends, so a failed test leaves no Redis
/// behind.
fn dies_with_the_test(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).to_string()
}
