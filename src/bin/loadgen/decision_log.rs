//! `decision-log-cost`: what the decision log costs. Two servers from the same build, one with the
//! log off and one writing every decision, take turns at peak Route load in one run; then the log's
//! bytes per decision.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::texts::Mix;
use crate::{closed_loop, connect, Rpc};

pub(crate) struct Server {
    child: Child,
    pub addr: String,
    metrics_port: u16,
}

/// A free port below the kernel's ephemeral range (32768 and up): one picked there (what binding
/// port 0 gives) can be taken by this run's own outgoing connections before the server binds it.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = FIRST + (start + n) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

/// `handoff serve` from beside this binary, with `config`.
fn spawn(config: &Path, workers: usize) -> anyhow::Result<Server> {
    spawn_with(&["--config".as_ref(), config.as_os_str()], workers)
}

/// One server on `model` per entry of `settings` (`--set` lists joined by commas: "a=1,b=2"; ""
/// for the defaults), each with its name ("handoff", "handoff a=1,b=2") and connected clients.
pub(crate) async fn spawn_settings(
    model: &Path,
    settings: &[&str],
    workers: usize,
    connections: usize,
) -> anyhow::Result<
    Vec<(
        String,
        Server,
        Vec<crate::HandoffClient<tonic::transport::Channel>>,
    )>,
> {
    let mut out = Vec::new();
    for set in settings {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--model".as_ref(), model.as_os_str()];
        for one in set.split(',').filter(|s| !s.is_empty()) {
            args.extend::<[&std::ffi::OsStr; 2]>(["--set".as_ref(), one.as_ref()]);
        }
        let server = spawn_with(&args, workers)?;
        let clients = ready(&server.addr, connections).await?;
        let name = match *set {
            "" => "handoff".to_string(),
            set => format!("handoff {set}"),
        };
        out.push((name, server, clients));
    }
    Ok(out)
}

/// The sum of the values of a metrics page's lines that start with `series`.
pub(crate) fn series_sum(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty float sum is -0.0, printed "-0"
}

/// `handoff serve` from beside this binary on free loopback ports, with `args`.
pub(crate) fn spawn_with(args: &[&std::ffi::OsStr], workers: usize) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?.with_file_name("handoff");
    let (grpc, metrics) = (free_port()?, free_port()?);
    let child = Command::new(&exe)
        .args(["serve", "--workers", &workers.to_string()])
        .args(args)
        .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    Ok(Server {
        child,
        addr: format!("http://127.0.0.1:{grpc}"),
        metrics_port: metrics,
    })
}

impl Server {
    /// The server's whole metrics page.
    pub fn scrape(&self) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        conn.read_to_string(&mut text)?;
        Ok(text)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The sum of the series of `/metrics` whose line starts with `series`.
    pub fn metric(&self, series: &str) -> anyhow::Result<f64> {
        Ok(series_sum(&self.scrape()?, series))
    }

    /// SIGTERM and wait: the log-on server flushes its log on the way out.
    fn stop(mut self) -> anyhow::Result<()> {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "server exited with {status}");
        Ok(())
    }
}

/// A run that fails half-way leaves no server behind.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) async fn ready(
    addr: &str,
    connections: usize,
) -> anyhow::Result<Vec<crate::HandoffClient<tonic::transport::Channel>>> {
    for _ in 0..600 {
        if let Ok(clients) = connect(addr, connections).await {
            let mut c = clients[0].clone();
            let probe = handoff::grpc::pb::ClassifyRequest {
                text: "warm up".into(),
            };
            if c.classify(probe).await.is_ok() {
                return Ok(clients);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{addr} did not become ready")
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Two servers at the same closed-loop load in turns, twice each (`phases`: a name and the call for
/// each), one line per phase; each server's requests a second over both of its turns.
pub(crate) async fn in_turns(
    clients: &[Vec<crate::HandoffClient<tonic::transport::Channel>>; 2],
    phases: &[(String, Rpc); 2],
    concurrency: usize,
    seconds: u64,
) -> [f64; 2] {
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "phase", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let mut served = [0u64; 2];
    let mut elapsed = [0f64; 2];
    for round in 0..2 {
        for (i, (name, rpc)) in phases.iter().enumerate() {
            let s = closed_loop(&clients[i], concurrency, seconds, *rpc, Mix::Unique).await;
            println!("{}", s.line(&format!("Route, {name}, round {}", round + 1)));
            served[i] += s.count;
            elapsed[i] += s.elapsed.as_secs_f64();
        }
    }
    [0, 1].map(|i| served[i] as f64 / elapsed[i])
}

pub async fn run(
    concurrency: usize,
    seconds: u64,
    workers: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("handoff-log-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let log_dir = scratch.join("log");
    let off = scratch.join("off.toml");
    let on = scratch.join("on.toml");
    std::fs::write(&off, "")?;
    std::fs::write(
        &on,
        format!("[decision_log]\ndir = \"{}\"\n", log_dir.display()),
    )?;
    let servers = [spawn(&off, workers)?, spawn(&on, workers)?];
    let clients = [
        ready(&servers[0].addr, connections).await?,
        ready(&servers[1].addr, connections).await?,
    ];
    println!(
        "\ndecision log cost: Route, {concurrency} in flight, log off and on in turns, {seconds} s each, twice"
    );
    let phases = [
        ("log off".to_string(), Rpc::Route),
        ("log on (every decision)".to_string(), Rpc::Route),
    ];
    let [rate_off, rate_on] = in_turns(&clients, &phases, concurrency, seconds).await;
    let [off_server, on_server] = servers;
    off_server.stop()?;
    on_server.stop()?; // flushes the log
    let logged = handoff::decision_log::reader::DecisionLogData::read(&log_dir, None)?
        .decisions
        .len() as u64;
    let bytes = dir_bytes(&log_dir)?;
    println!(
        "  throughput, log on / off: {rate_on:.1} / {rate_off:.1} = {:.1} % ({:+.1} %)",
        100.0 * rate_on / rate_off,
        100.0 * (rate_on / rate_off - 1.0)
    );
    println!(
        "  log size: {bytes} bytes for {logged} decisions = {:.0} bytes each, {:.2} GB per million decisions",
        bytes as f64 / logged.max(1) as f64,
        bytes as f64 / logged.max(1) as f64 * 1e6 / 1e9
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
