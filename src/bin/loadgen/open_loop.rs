//! `open-loop`: latency the way chat traffic arrives. One handoff server from this build and (with
//! `--peer`) both Python peers on the same package take turns, in rounds, at 25, 50 and 75 % of
//! handoff's measured peak with random (Poisson) arrivals and unique texts; then a mixed phase (Route
//! with state, 30 % repeats) on handoff alone. For handoff it also prints what the server saw in each
//! phase: queue wait, batch sizes, split runs and the CPU each kind of thread used.

use std::collections::BTreeMap;

use handoff::grpc::pb::handoff_client::HandoffClient;
use tonic::transport::Channel;

use crate::decision_log::{series_sum, spawn_settings, Server};
use crate::texts::Mix;
use crate::{closed_loop, connect, open_loop, open_loop_mix, peer, Common, Rpc, Stats};

const ROUNDS: u64 = 3;
/// Share of the mixed phase's texts repeated word for word (greetings, "ok", "转人工").
const MIXED_REPEATS: u8 = 30;

/// One Prometheus histogram's sum, count and cumulative buckets (upper bound in seconds → count).
#[derive(Default, Clone)]
struct Hist {
    sum: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

impl Hist {
    /// `name`'s series on `page` whose labels contain `labels` (all series when it is "").
    fn read(page: &str, name: &str, labels: &str) -> Hist {
        let mut h = Hist::default();
        let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        for line in page
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
        {
            let Some(v) = value(line) else { continue };
            let rest = &line[name.len()..];
            if rest.starts_with("_sum") {
                h.sum += v;
            } else if rest.starts_with("_count") {
                h.count += v;
            } else if let Some(le) = rest.split("le=\"").nth(1) {
                let le = le.split('"').next().unwrap_or("+Inf");
                let le = le.parse::<f64>().unwrap_or(f64::INFINITY);
                match h.buckets.iter_mut().find(|b| b.0 == le) {
                    Some(b) => b.1 += v,
                    None => h.buckets.push((le, v)),
                }
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        h
    }

    /// `self` - `before` (`sign` -1), or `self` + `more` (`sign` 1).
    fn combine(&self, other: &Hist, sign: f64) -> Hist {
        let mut buckets = self.buckets.clone();
        for &(le, n) in &other.buckets {
            match buckets.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += sign * n,
                None => buckets.push((le, sign * n)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Hist {
            sum: self.sum + sign * other.sum,
            count: self.count + sign * other.count,
            buckets,
        }
    }

    fn mean(&self) -> f64 {
        self.sum / self.count.max(1.0)
    }

    /// The bucket bound below which `q` of the observations fell.
    fn quantile(&self, q: f64) -> f64 {
        let total = self.buckets.last().map_or(0.0, |b| b.1);
        self.buckets
            .iter()
            .find(|b| b.1 >= q * total)
            .map_or(f64::NAN, |b| b.0)
    }
}

/// What one server saw during one phase, from its metrics page and /proc.
#[derive(Default, Clone)]
pub(crate) struct Seen {
    /// The server's own time per Classify or Route call, transport included.
    request: Hist,
    queue_wait: Hist,
    tokenize: Hist,
    /// Per run (a batch, or a length group of one).
    inference: Hist,
    batch: Hist,
    split_runs: f64,
    whole_runs: f64,
    /// Split runs whose helper gave its core to a waiting run.
    given_way: f64,
    /// CPU seconds by thread kind (the thread name without its number).
    cpu: BTreeMap<String, f64>,
}

impl Seen {
    pub(crate) fn read(server: &Server) -> anyhow::Result<Seen> {
        let page = server.scrape()?;
        let runs = |mode: &str| {
            series_sum(
                &page,
                &format!("handoff_inference_runs_total{{mode=\"{mode}\"}}"),
            )
        };
        Ok(Seen {
            request: Hist::read(
                &page,
                "handoff_request_duration_seconds",
                "rpc=\"Classify\"",
            )
            .combine(
                &Hist::read(&page, "handoff_request_duration_seconds", "rpc=\"Route\""),
                1.0,
            ),
            queue_wait: Hist::read(&page, "handoff_inference_queue_wait_seconds", ""),
            tokenize: Hist::read(&page, "handoff_tokenize_duration_seconds", ""),
            inference: Hist::read(&page, "handoff_inference_duration_seconds", ""),
            batch: Hist::read(&page, "handoff_batch_size", ""),
            split_runs: runs("split"),
            whole_runs: runs("whole"),
            given_way: series_sum(&page, "handoff_split_runs_given_way_total"),
            cpu: thread_cpu(server.pid()),
        })
    }

    /// `self` - `other` (`sign` -1), or `self` + `other` (`sign` 1).
    fn combine(&self, other: &Seen, sign: f64) -> Seen {
        let mut cpu = self.cpu.clone();
        for (kind, s) in &other.cpu {
            *cpu.entry(kind.clone()).or_default() += sign * s;
        }
        Seen {
            request: self.request.combine(&other.request, sign),
            queue_wait: self.queue_wait.combine(&other.queue_wait, sign),
            tokenize: self.tokenize.combine(&other.tokenize, sign),
            inference: self.inference.combine(&other.inference, sign),
            batch: self.batch.combine(&other.batch, sign),
            split_runs: self.split_runs + sign * other.split_runs,
            whole_runs: self.whole_runs + sign * other.whole_runs,
            given_way: self.given_way + sign * other.given_way,
            cpu,
        }
    }

    /// What happened between `before` and `self`.
    pub(crate) fn since(&self, before: &Seen) -> Seen {
        self.combine(before, -1.0)
    }

    pub(crate) fn add(&mut self, more: &Seen) {
        *self = self.combine(more, 1.0);
    }

    pub(crate) fn line(&self, seconds: f64) -> String {
        let cpu: Vec<String> = self
            .cpu
            .iter()
            .filter(|(_, s)| **s / seconds >= 0.01)
            .map(|(kind, s)| format!("{kind} {:.0} %", 100.0 * s / seconds))
            .collect();
        let ms = |h: &Hist| format!("{:.2}/{:.0}", 1000.0 * h.mean(), 1000.0 * h.quantile(0.99));
        format!(
            "    server ms (mean/p99 bucket): call {}, queue {}, tokenize {}, run {}; batch mean {:.2}; split {:.0} % (gave way {:.0} %); CPU {}",
            ms(&self.request),
            ms(&self.queue_wait),
            ms(&self.tokenize),
            ms(&self.inference),
            self.batch.mean(),
            100.0 * self.split_runs / (self.split_runs + self.whole_runs).max(1.0),
            100.0 * self.given_way / self.split_runs.max(1.0),
            cpu.join(", ")
        )
    }
}

/// CPU seconds each kind of thread of `pid` has used (from /proc; empty where there is none).
fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((name, seconds)) = cpu_seconds(&stat) else {
            continue;
        };
        let kind = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        *out.entry(kind.to_string()).or_default() += seconds;
    }
    out
}

/// The name and the CPU seconds (user + system) in a /proc `stat` line, of a process or a thread.
pub(crate) fn cpu_seconds(stat: &str) -> Option<(&str, f64)> {
    // "pid (name) state ppid ...": the name may hold spaces, so split at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; in ticks of 1/100 s.
    let ticks: f64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    Some((&stat[open + 1..close], ticks / 100.0))
}

struct Target {
    name: String,
    clients: Vec<HandoffClient<Channel>>,
    /// A handoff server of this run (a peer has none).
    server: Option<Server>,
    single: Stats,
    at: Vec<Stats>,
    /// What the server saw at each load.
    seen: Vec<Seen>,
}

impl Target {
    fn new(
        name: String,
        clients: Vec<HandoffClient<Channel>>,
        server: Option<Server>,
        loads: usize,
    ) -> Target {
        Target {
            name,
            clients,
            server,
            single: Stats::empty(),
            at: (0..loads).map(|_| Stats::empty()).collect(),
            seen: (0..loads).map(|_| Seen::default()).collect(),
        }
    }

    /// An open-loop phase at `rate`, with what the server saw (handoff only).
    async fn phase(&mut self, k: usize, rate: f64, seconds: u64) -> anyhow::Result<()> {
        let before = self.server.as_ref().map(Seen::read).transpose()?;
        let mut s = open_loop(&self.clients, rate, seconds, &[Rpc::Classify]).await;
        self.at[k].merge(s.remove(0));
        if let (Some(server), Some(before)) = (&self.server, before) {
            self.seen[k].add(&Seen::read(server)?.since(&before));
        }
        Ok(())
    }
}

/// `settings`: more handoff servers, one per `--set` list ("a=1,b=2"), compared with the default.
pub async fn run(args: &Common, settings: &[String], loads: &[f64]) -> anyhow::Result<()> {
    let (model, seconds, workers) = (&args.model, args.seconds, args.threads);
    let (connections, concurrency, with_peers) = (args.connections, args.concurrency, args.peer);
    let sets: Vec<&str> = std::iter::once("")
        .chain(settings.iter().map(String::as_str))
        .collect();
    let mut targets: Vec<Target> = spawn_settings(model, &sets, workers, connections)
        .await?
        .into_iter()
        .map(|(name, server, clients)| Target::new(name, clients, Some(server), loads.len()))
        .collect();
    let mut peers = Vec::new();
    if with_peers {
        for batching in [false, true] {
            let p = peer::Peer::start(&args.peer_model, batching).await?;
            let clients = connect(&p.addr, connections).await?;
            targets.push(Target::new(p.name.to_string(), clients, None, loads.len()));
            peers.push(p);
        }
    }
    let per_round = (seconds / ROUNDS).max(2);
    // Warm every target, then handoff's peak, which sets the loads for all.
    for t in &targets {
        closed_loop(&t.clients, concurrency, 2, Rpc::Classify, Mix::Unique).await;
    }
    let peak = closed_loop(
        &targets[0].clients,
        concurrency,
        per_round * 2,
        Rpc::Classify,
        Mix::Unique,
    )
    .await;
    println!(
        "handoff peak ({concurrency} in flight, unique texts): {:.1}/s; open loop (random arrivals) at {:?} of it, {ROUNDS} rounds of {per_round} s, targets taking turns",
        peak.rate(),
        loads.iter().map(|l| format!("{:.0} %", l * 100.0)).collect::<Vec<_>>()
    );
    for _ in 0..ROUNDS {
        for t in targets.iter_mut() {
            let one = closed_loop(&t.clients, 1, per_round, Rpc::Classify, Mix::Unique).await;
            t.single.merge(one);
        }
        for (k, load) in loads.iter().enumerate() {
            for t in targets.iter_mut() {
                t.phase(k, load * peak.rate(), per_round).await?;
            }
        }
    }
    drop(peers);
    println!(
        "\n{:<34} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "phase", "req/s", "p50 ms", "p99 ms", "max ms", "p99/1x", "errors"
    );
    let seconds = (ROUNDS * per_round) as f64;
    for t in &targets {
        println!(
            "{}",
            row(&format!("{}: 1 in flight", t.name), &t.single, None)
        );
        for (k, load) in loads.iter().enumerate() {
            let label = format!("{}: {:.0} % of peak", t.name, load * 100.0);
            println!("{}", row(&label, &t.at[k], Some(t.single.ms(0.5))));
            if t.server.is_some() {
                println!("{}", t.seen[k].line(seconds));
            }
        }
    }
    // Route with conversation state and the repeat share of real chat, on handoff alone.
    let (rate, ours) = (0.5 * peak.rate(), &targets[0]);
    let server = ours.server.as_ref().expect("handoff runs here");
    let before = Seen::read(server)?;
    let mixed = open_loop_mix(
        &ours.clients,
        rate,
        per_round * 2,
        &[Rpc::Route],
        Mix::RepeatsPercent(MIXED_REPEATS),
    )
    .await
    .remove(0);
    let label = format!("handoff: Route, 50 %, {MIXED_REPEATS} % repeats");
    println!("{}", row(&label, &mixed, Some(ours.single.ms(0.5))));
    println!(
        "{}",
        Seen::read(server)?
            .since(&before)
            .line((per_round * 2) as f64)
    );

    println!("\nsummary (same run):");
    for p in &targets[1..] {
        let ratios: Vec<String> = loads
            .iter()
            .enumerate()
            .map(|(k, load)| {
                format!(
                    "{:.0} %: {:.1} / {:.1} ms = {:.2}x",
                    load * 100.0,
                    ours.at[k].ms(0.99),
                    p.at[k].ms(0.99),
                    ours.at[k].ms(0.99) / p.at[k].ms(0.99)
                )
            })
            .collect();
        println!("  p99 handoff / {}: {}", p.name, ratios.join("; "));
        println!(
            "  single-call p50 handoff / {}: {:.2} / {:.2} ms = {:.2}x",
            p.name,
            ours.single.ms(0.5),
            p.single.ms(0.5),
            ours.single.ms(0.5) / p.single.ms(0.5)
        );
    }
    Ok(())
}

fn row(label: &str, s: &Stats, single_p50: Option<f64>) -> String {
    let ratio = single_p50.map_or(String::new(), |p50| format!("{:.1}x", s.ms(0.99) / p50));
    format!(
        "{label:<34} {:>9.1} {:>8.2} {:>8.2} {:>8.1} {:>8} {:>7}",
        s.rate(),
        s.ms(0.5),
        s.ms(0.99),
        s.hist.max() as f64 / 1000.0,
        ratio,
        s.errors
    )
}
