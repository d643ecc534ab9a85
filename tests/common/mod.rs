//! Test harness: runs the real `handoff` binary on free loopback ports with the shipped model and
//! talks to it over real gRPC and HTTP.
#![allow(dead_code)]

pub mod redis;
pub mod scenarios;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use handoff::grpc::pb::handoff_client::HandoffClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Sum of the series in Prometheus text `metrics` whose line starts with `series` (a name, maybe
/// with the start of its labels): failure counters exist at 0 from the start, so tests read values.
#[allow(dead_code)] // not every test binary reads counters
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The default package: what a user serves is what the tests run.
pub fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(handoff::config::DEFAULT_MODEL_DIR)
}

/// The default package's version (its directory's name).
pub fn default_version() -> &'static str {
    handoff::config::DEFAULT_MODEL_DIR
        .rsplit('/')
        .next()
        .unwrap()
}

/// The first default package (12 frozen layers, `account_security` instead of the split labels), kept for swap tests.
pub fn model_dir_v1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/handoff-zh-en/1.0.0")
}

/// Test certificates (a CA, a server for localhost and 127.0.0.1, clients) made by the documented
/// openssl recipe, `scripts/dev-certs.sh`, in a directory of their own.
pub fn dev_certs(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-certs-{tag}-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-certs.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(&dir)
        .output()
        .expect("run scripts/dev-certs.sh (needs openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// A port nothing listens on, below the kernel's ephemeral range (32768 and up by default): a
/// port picked there (what binding port 0 gives) can be taken by any outgoing connection (a test
/// client, a server's Redis client) between this check and the server binding it. Each call of a
/// process takes the next port from a start of its own, so parallel test processes rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN
    });
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < SPAN, "no free port left in {FIRST}..{}", FIRST + SPAN);
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What a started server must show before a test uses it.
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// The gRPC health service says SERVING (plain-text gRPC).
    Serving,
    /// The metrics endpoint shows a loaded model (the gRPC port speaks TLS).
    ModelLoaded,
}

pub struct Server {
    child: Child,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Server {
    /// Start a server on the shipped model and wait until its health check says SERVING.
    pub fn start(extra_args: &[&str]) -> Server {
        Server::start_with_model(&model_dir(), extra_args)
    }

    pub fn start_with_model(model: &std::path::Path, extra_args: &[&str]) -> Server {
        Server::start_with_log(model, extra_args, "info")
    }

    /// Start on the shipped model with these environment variables set.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, String)]) -> Server {
        Server::start_where(&model_dir(), extra_args, "info", env, Ready::Serving)
    }

    /// Start with `RUST_LOG` set to `log_filter`.
    pub fn start_with_log(
        model: &std::path::Path,
        extra_args: &[&str],
        log_filter: &str,
    ) -> Server {
        Server::start_where(model, extra_args, log_filter, &[], Ready::Serving)
    }

    /// Start a server whose gRPC port speaks TLS (configured in extra_args): readiness is read from
    /// the metrics endpoint, which stays plain HTTP.
    pub fn start_tls(extra_args: &[&str]) -> Server {
        Server::start_where(&model_dir(), extra_args, "info", &[], Ready::ModelLoaded)
    }

    fn start_where(
        model: &std::path::Path,
        extra_args: &[&str],
        log_filter: &str,
        env: &[(&str, String)],
        ready: Ready,
    ) -> Server {
        // A port free when picked can be taken before the server binds it (another test process's
        // server or client): start again on other ports, a few times, rather than fail the test.
        for _ in 0..3 {
            let mut server = Server::spawn(model, extra_args, log_filter, env);
            match server.wait_ready(ready, Duration::from_secs(120)) {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!("port taken before the server bound it; starting again");
                }
                Err(log) => panic!("server exited early:\n{log}"),
            }
        }
        panic!("three starts in a row found their ports taken")
    }

    fn spawn(
        model: &std::path::Path,
        extra_args: &[&str],
        log_filter: &str,
        env: &[(&str, String)],
    ) -> Server {
        let grpc_port = free_port();
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!(
            "handoff-test-{}-{grpc_port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff"));
        cmd.arg("serve")
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .arg("--model")
            .arg(model)
            .args(extra_args)
            .env("RUST_LOG", log_filter)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        // The server dies with the thread that started it, so a failed test run leaves nothing behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn handoff");
        Server {
            child,
            grpc_port,
            metrics_port,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ok once `ready` holds; the log when the server exits first.
    fn wait_ready(&mut self, ready: Ready, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("({status}) {}", self.log_text()));
            }
            if self.is_ready(ready) {
                return Ok(());
            }
            assert!(
                start.elapsed() < limit,
                "server not {ready:?} after {limit:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Health is polled from its own thread and runtime, so it works from sync and async tests
    /// alike.
    fn is_ready(&self, ready: Ready) -> bool {
        match ready {
            Ready::Serving => {
                let endpoint = self.endpoint();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(health_status(&endpoint, "handoff.v1.Handoff"))
                        == Some(ServingStatus::Serving)
                })
                .join()
                .unwrap()
            }
            Ready::ModelLoaded => std::panic::catch_unwind(|| self.metrics()).is_ok_and(|m| {
                m.lines()
                    .any(|l| l.starts_with("handoff_model_info{") && l.ends_with(" 1"))
            }),
        }
    }

    pub fn terminate(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET /metrics over plain HTTP/1.0.
    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let (head, body) = body.split_once("\r\n\r\n").expect("HTTP response");
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "metrics answered {head}"
        );
        body.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server shared by every test of one test binary, started on first use by a thread that
/// lives as long as the test process.
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<&'static Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let server: &'static Server = Box::leak(Box::new(Server::start(&[])));
            tx.send(server).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("shared server started")
    })
}

pub async fn client(server: &Server) -> HandoffClient<Channel> {
    HandoffClient::connect(server.endpoint())
        .await
        .expect("connect")
}

/// A `handoff.v1.ModelAdmin` client on its own connection.
pub async fn admin(
    server: &Server,
) -> handoff::grpc::pb::model_admin_client::ModelAdminClient<Channel> {
    handoff::grpc::pb::model_admin_client::ModelAdminClient::connect(server.endpoint())
        .await
        .expect("connect")
}

/// The built-in policy with its high-risk rule reading a threat instead of `security_incident`, so
/// that it names only intents both shipped packages have and 1.0.0 may serve under it.
pub fn shared_intents_policy() -> String {
    let builtin = include_str!("../../src/policy/builtin.toml");
    let shared = builtin.replace(
        "intent == 'security_incident' and intent_score >= 0.7",
        "threat and negativity >= 0.9",
    );
    assert_ne!(
        shared, builtin,
        "the built-in high-risk rule changed: update this test"
    );
    shared
}

/// One Classify call on a new connection, which must succeed.
pub async fn classify(server: &Server, text: &str) -> handoff::grpc::pb::ClassifyResponse {
    let request = handoff::grpc::pb::ClassifyRequest { text: text.into() };
    let reply = client(server).await.classify(request).await;
    reply.expect("classify").into_inner()
}

pub async fn health_status(endpoint: &str, service: &str) -> Option<ServingStatus> {
    let channel = Channel::from_shared(endpoint.to_string())
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

/// A model repository in a temporary directory: `<name>/<version>/` packages that share the shipped
/// ONNX graph and tokenizer (symlinks) with manifests edited per version.
pub struct TempRepo {
    pub root: PathBuf,
}

impl TempRepo {
    pub fn new(tag: &str) -> TempRepo {
        let root = std::env::temp_dir().join(format!("handoff-repo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        TempRepo { root }
    }

    /// A server on `model` that swaps within this repository, with the watcher off.
    pub fn start(&self, model: &std::path::Path, extra_args: &[&str]) -> Server {
        let root = self.root.to_str().unwrap();
        let mut args = vec!["--model-repository", root, "--watch-interval-ms", "0"];
        args.extend_from_slice(extra_args);
        Server::start_with_model(model, &args)
    }

    /// Add `handoff-zh-en/<version>` whose manifest is the shipped one with its version set and `edit` applied.
    pub fn add(&self, version: &str, edit: impl Fn(String) -> String) -> PathBuf {
        self.add_from(&model_dir(), version, edit)
    }

    /// The same from the package in `src`.
    pub fn add_from(
        &self,
        src: &std::path::Path,
        version: &str,
        edit: impl Fn(String) -> String,
    ) -> PathBuf {
        let dir = self.root.join("handoff-zh-en").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.onnx", "tokenizer.json", "tp2"] {
            if src.join(f).exists() {
                std::os::unix::fs::symlink(src.join(f), dir.join(f)).unwrap();
            }
        }
        let manifest = std::fs::read_to_string(src.join("manifest.toml")).unwrap();
        let manifest = manifest
            .lines()
            .map(|l| {
                if l.starts_with("version = ") {
                    format!("version = \"{version}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join("manifest.toml"), edit(manifest)).unwrap();
        dir
    }
}

impl Drop for TempRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
