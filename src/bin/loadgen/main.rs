//! Load generator: drives a running handoff server over gRPC with realistic mixed zh/en messages and,
//! in the same run, measures the bare tract throughput of the same model package and (with `--peer`)
//! the alternative a user would pick, a Python grpcio + onnxruntime server on the same package, with
//! the same client and the same messages.
//!
//! cargo run --release --bin loadgen -- --addr http://127.0.0.1:50051 --peer
//! cargo run --release --bin loadgen -- open-loop --peer     # or: storm, single-call, compare … (--help)

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::model_admin_client::ModelAdminClient;
use handoff::grpc::pb::{self, ClassifyRequest, RouteRequest, SetShadowRequest};
use handoff::model::Model;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

mod compare;
mod decision_log;
mod growth;
mod log_scale;
mod open_loop;
mod peer;
mod redis_outage;
mod single_call;
mod soak;
mod storm;
mod tenants_cost;
mod texts;

use texts::Mix;

/// The load generator: a benchmark (the default, `bench`) or one focused measurement.
#[derive(Parser)]
#[command(name = "loadgen")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    mode: Option<Mode>,
}

/// Options every mode shares (given before or after the mode's name).
#[derive(clap::Args)]
struct Common {
    /// Server to drive (modes that start their own servers ignore it).
    #[arg(long, global = true, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Model package: the one the server runs, for the bare-tract baseline and the peers, and the
    /// one servers started here run.
    #[arg(long, global = true, default_value = handoff::config::DEFAULT_MODEL_DIR)]
    model: std::path::PathBuf,
    /// Also run the Python peers (bench/peer/server.py) on --peer-model, in the same run (the
    /// Python in HANDOFF_PYTHON, else python3).
    #[arg(long, global = true)]
    peer: bool,
    /// Package the Python peers run: the default's twin on f32 activations. onnxruntime quantises
    /// that one's activations itself and runs the int8-activation graph ~4x slower, so the peers
    /// get the package a Python user would pick (README "Performance").
    #[arg(long, global = true, default_value = "models/handoff-zh-en/2.2.0")]
    peer_model: std::path::PathBuf,
    /// Inference workers of servers started here, and threads of the bare-tract baseline.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// Concurrent in-flight requests for peak phases.
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per phase (or per mode, where it says so).
    #[arg(long, global = true, default_value_t = 10)]
    seconds: u64,
    /// gRPC connections to spread requests over.
    #[arg(long, global = true, default_value_t = 4)]
    connections: usize,
    /// Each call's gRPC deadline, in ms, where a mode sets one.
    #[arg(long, global = true, default_value_t = 1000)]
    deadline_ms: u64,
}

#[derive(clap::Subcommand)]
enum Mode {
    /// Against --addr: bare tract, engine phases (with --peer, the Python peers too), message
    /// lengths, open-loop service phases and shadow cost.
    Bench {
        /// Candidate version for the shadow phases (a second copy of the live version works
        /// too); "" skips them.
        #[arg(long, default_value = "2.2.0")]
        shadow_version: String,
    },
    /// Against --addr: only the peak phase (--concurrency callers, unique texts), e.g. to read
    /// the server's batch metrics under load.
    Peak {
        /// Route calls (conversations of several turns) instead of Classify.
        #[arg(long)]
        route: bool,
    },
    /// Against --addr: this many Route requests a second (say, twice the peak) for --seconds, each
    /// with --deadline-ms.
    Soak {
        #[arg(long)]
        rate: f64,
        /// The server's pid, to sample its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// The decision path alone (no server), for --seconds.
    DecisionPath,
    /// Two servers (split_single_calls on and off), compared at one caller, with where the time
    /// goes (with --peer, the naive Python server too).
    SingleCall,
    /// One server per setting (`--set` syntax, e.g. max_batch_size=8; several joined by commas),
    /// compared in turns at 1 and --concurrency callers.
    Compare {
        #[arg(required = true)]
        settings: Vec<String>,
        /// Also an open-loop phase at this many requests a second.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// A server on --model (and one per SETTINGS) and, with --peer, both Python peers: latency
    /// with random arrivals at 25, 50 and 75 % of handoff's peak, in rounds; --seconds per load.
    OpenLoop {
        settings: Vec<String>,
        /// Loads, as shares of handoff's peak.
        #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75")]
        loads: Vec<f64>,
    },
    /// A server on --model (and one per SETTINGS): goodput in a storm of 256 callers with 50 ms
    /// deadlines sending again at once.
    Storm { settings: Vec<String> },
    /// Two servers (decision log off and on) at peak Route load in turns, and the log's bytes.
    DecisionLogCost,
    /// Two servers (no tenants; --tenants tenants, each with its own policy file), Route
    /// throughput in turns.
    TenantsCost {
        #[arg(long, default_value_t = 100)]
        tenants: u16,
    },
    /// A Redis and two servers (state in memory, state in that Redis), Route with --deadline-ms
    /// deadlines: memory, Redis up, Redis killed mid-load, Redis back.
    RedisOutage,
    /// No server: a synthetic decision log of --decisions decisions, then `handoff replay`,
    /// `report` and `export --format parquet` on it, each with its time, peak memory and cores.
    LogScale {
        #[arg(long, default_value_t = 10_000_000)]
        decisions: usize,
        /// Where to write the log (default: the system's temporary directory); ~0.9 GB per
        /// million decisions.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Keep the log, the report and the Parquet file afterwards.
        #[arg(long)]
        keep: bool,
    },
}

const MODEL_NAME: &str = "handoff-zh-en";

use texts::MESSAGES;

struct Stats {
    count: u64,
    errors: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Stats {
    /// Add another phase's figures (same bounds), as one longer phase.
    fn merge(&mut self, more: Stats) {
        self.hist.add(&more.hist).expect("same bounds");
        self.errors += more.errors;
        self.elapsed += more.elapsed;
        self.count = self.hist.len();
    }

    fn empty() -> Stats {
        Stats {
            count: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            hist: new_hist(),
        }
    }
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<34} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            self.rate(),
            self.ms(0.50),
            self.ms(0.95),
            self.ms(0.99),
            self.errors
        )
    }
}

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Bare tract: `threads` threads each run batches of `batch` pre-tokenised messages back to back.
/// The messages are sorted by length and a batch is a run of neighbours, as the batcher builds them.
fn bare_tract(
    model: &Arc<Model>,
    threads: usize,
    batch: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let mut encoded: Vec<_> = MESSAGES
        .iter()
        .map(|m| model.encode(m))
        .collect::<Result<_, _>>()?;
    encoded.sort_by_key(|e| e.ids.len());
    let encoded = Arc::new(encoded);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (model, encoded) = (model.clone(), encoded.clone());
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut done = 0;
                while Instant::now() < deadline {
                    let start = rng.gen_range(0..encoded.len().saturating_sub(batch).max(1));
                    let rows: Vec<_> = (0..batch)
                        .map(|k| &encoded[(start + k) % encoded.len()])
                        .collect();
                    model.run(&rows)?;
                    done += batch as u64;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().expect("bare thread")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Conversations the in-process store keeps at most (the default `max_conversations`).
const STORE_CAPACITY: usize = 100_000;

/// The decision path alone (built-in rules, in-process state) on real predictions: what Route adds
/// to Classify, without the network and inference noise around it. Returns p50 and p99 in µs.
/// `at_capacity`: the store is first filled to its bound and every decision opens a new
/// conversation, so each one evicts the conversation touched longest ago.
fn decision_path(
    model: &Model,
    seconds: u64,
    at_capacity: bool,
) -> anyhow::Result<(f64, f64, u64)> {
    use handoff::policy::{Channel as Ch, MemoryStore, Policy, Turn};
    let preds = model.classify(MESSAGES)?;
    let policy = Policy::builtin();
    let store = MemoryStore::new(Duration::from_secs(3600), STORE_CAPACITY);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let turn_of = |i: usize| Turn {
        channel: Ch::Web,
        ..handoff::route::turn(model, &preds[i], MESSAGES[i])
    };
    if at_capacity {
        for c in 0..STORE_CAPACITY {
            let i = c % MESSAGES.len();
            policy.route_in_memory(
                &store,
                &format!("full{c}"),
                &Turn {
                    message_id: "m0",
                    ..turn_of(i)
                },
            );
        }
    }
    let mut hist = new_hist();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let i = rng.gen_range(0..MESSAGES.len());
        let message_id = format!("m{}", hist.len());
        let turn = Turn {
            message_id: &message_id,
            ..turn_of(i)
        };
        // Spread over 2 000 conversations: each soon holds its full window of recent turns. At
        // capacity, a new conversation each time.
        let conversation = if at_capacity {
            format!("new{}", hist.len())
        } else {
            format!("c{}", rng.gen_range(0..2_000))
        };
        let started = Instant::now();
        std::hint::black_box(policy.route_in_memory(&store, &conversation, &turn));
        hist.record(started.elapsed().as_nanos().max(1) as u64)?;
    }
    let us = |q| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok((us(0.5), us(0.99), hist.len()))
}

#[derive(Clone, Copy)]
enum Rpc {
    Classify,
    Route,
    /// Route for tenants `t0` … `t{n-1}` (by conversation), named in `x-handoff-tenant`.
    RouteTenants(u16),
}

async fn call(
    client: &mut HandoffClient<Channel>,
    rpc: Rpc,
    text: String,
    conversation: u64,
) -> bool {
    match rpc {
        Rpc::Classify => client.classify(ClassifyRequest { text }).await.is_ok(),
        Rpc::Route => client
            .route(RouteRequest {
                conversation_id: format!("loadgen-{conversation}"),
                text,
                channel: pb::Channel::Web as i32,
                tier: pb::CustomerTier::Standard as i32,
                ..Default::default()
            })
            .await
            .is_ok(),
        Rpc::RouteTenants(n) => {
            let mut request = tonic::Request::new(RouteRequest {
                conversation_id: format!("loadgen-{conversation}"),
                text,
                channel: pb::Channel::Web as i32,
                tier: pb::CustomerTier::Standard as i32,
                ..Default::default()
            });
            let tenant = format!("t{}", conversation % u64::from(n.max(1)));
            request
                .metadata_mut()
                .insert("x-handoff-tenant", tenant.parse().expect("ascii"));
            client.route(request).await.is_ok()
        }
    }
}

/// Closed loop: `concurrency` callers, each sending its next request when the last one is answered.
async fn closed_loop(
    clients: &[HandoffClient<Channel>],
    concurrency: usize,
    seconds: u64,
    rpc: Rpc,
    mix: Mix,
) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + i as u64);
                let (mut hist, mut errors) = (new_hist(), 0);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if call(&mut client, rpc, texts::next(mix, &mut rng), i as u64).await {
                        hist.saturating_record(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (hist, errors)
            })
        })
        .collect();
    let mut stats = Stats::empty();
    for t in tasks {
        let (h, e) = t.await.expect("caller task");
        stats.hist.add(&h).expect("same bounds");
        stats.errors += e;
    }
    stats.elapsed = started.elapsed();
    stats.count = stats.hist.len();
    stats
}

/// Open loop at a mean rate, arrivals at random (Poisson, as independent customers send): latency
/// counts from the scheduled send time, so a slow server cannot hide its queueing by slowing the
/// generator down. Request `i` calls `rpcs[i % rpcs.len()]`, so several RPCs interleaved see the
/// same load; one `Stats` per entry of `rpcs`.
async fn open_loop(
    clients: &[HandoffClient<Channel>],
    rate: f64,
    seconds: u64,
    rpcs: &[Rpc],
) -> Vec<Stats> {
    open_loop_mix(clients, rate, seconds, rpcs, Mix::Unique).await
}

/// `open_loop` with texts from `mix`; Route calls spread over 500 conversations.
async fn open_loop_mix(
    clients: &[HandoffClient<Channel>],
    rate: f64,
    seconds: u64,
    rpcs: &[Rpc],
    mix: Mix,
) -> Vec<Stats> {
    let total = (rate * seconds as f64) as u64;
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut tasks = Vec::with_capacity(total as usize);
    let mut scheduled = started;
    for i in 0..total {
        // Exponential gaps: -ln(U) / rate.
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        scheduled += Duration::from_secs_f64(-u.ln() / rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let mut client = clients[i as usize % clients.len()].clone();
        let text = texts::next(mix, &mut rng);
        let which = i as usize % rpcs.len();
        let rpc = rpcs[which];
        let at = scheduled;
        tasks.push(tokio::spawn(async move {
            let ok = call(&mut client, rpc, text, i % 500).await;
            (which, ok, at.elapsed())
        }));
    }
    let mut stats: Vec<_> = rpcs.iter().map(|_| Stats::empty()).collect();
    for t in tasks {
        let (which, ok, latency) = t.await.expect("request task");
        if ok {
            stats[which]
                .hist
                .saturating_record(latency.as_micros() as u64);
        } else {
            stats[which].errors += 1;
        }
    }
    for s in &mut stats {
        s.elapsed = started.elapsed();
        s.count = s.hist.len();
    }
    stats
}

async fn connect(addr: &str, connections: usize) -> anyhow::Result<Vec<HandoffClient<Channel>>> {
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        clients.push(
            HandoffClient::connect(addr.to_string())
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(clients)
}

/// One server's engine phases: a single caller and the peak with unique texts, the peak with the
/// repeat mix. The same phases run against us and against each peer.
struct EnginePhases {
    name: String,
    single: Stats,
    peak: Stats,
    peak_repeats: Stats,
}

/// Rounds of the engine phases: the servers take turns, a round each, so a slow minute of this
/// shared machine falls on all of them rather than on whichever ran then.
const ENGINE_ROUNDS: u64 = 4;

/// The engine phases of every server in `targets` (name, clients), in rounds; printed at the end.
async fn engine_phases(
    targets: &[(&str, Vec<HandoffClient<Channel>>)],
    args: &Common,
) -> Vec<EnginePhases> {
    let (n, per_round) = (args.concurrency, (args.seconds / ENGINE_ROUNDS).max(1));
    let mut out: Vec<EnginePhases> = targets
        .iter()
        .map(|(name, _)| EnginePhases {
            name: name.to_string(),
            single: Stats::empty(),
            peak: Stats::empty(),
            peak_repeats: Stats::empty(),
        })
        .collect();
    for _ in 0..ENGINE_ROUNDS {
        for ((_, clients), phases) in targets.iter().zip(&mut out) {
            let single = closed_loop(clients, 1, per_round, Rpc::Classify, Mix::Unique).await;
            phases.single.merge(single);
            let peak = closed_loop(clients, n, per_round, Rpc::Classify, Mix::Unique).await;
            phases.peak.merge(peak);
            let repeats = closed_loop(clients, n, per_round, Rpc::Classify, Mix::Repeats).await;
            phases.peak_repeats.merge(repeats);
        }
    }
    for p in &out {
        let name = &p.name;
        println!("{}", p.single.line(&format!("{name}: 1 in flight")));
        println!("{}", p.peak.line(&format!("{name}: {n} in flight")));
        println!(
            "{}",
            p.peak_repeats
                .line(&format!("{name}: {n} in flight, repeats"))
        );
    }
    out
}

/// A closed-loop Classify phase, printed as it ends.
async fn classify_phase(
    clients: &[HandoffClient<Channel>],
    concurrency: usize,
    seconds: u64,
    mix: Mix,
    label: &str,
) -> Stats {
    let stats = closed_loop(clients, concurrency, seconds, Rpc::Classify, mix).await;
    println!("{}", stats.line(label));
    stats
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = &cli.common;
    let (n, seconds, threads, connections) = (
        args.concurrency,
        args.seconds,
        args.threads,
        args.connections,
    );
    let deadline = Duration::from_millis(args.deadline_ms);
    let mode = cli.mode.unwrap_or(Mode::Bench {
        shadow_version: "2.2.0".into(),
    });
    match mode {
        Mode::LogScale {
            decisions,
            dir,
            keep,
        } => log_scale::run(decisions, dir, keep),
        Mode::DecisionLogCost => decision_log::run(n, seconds, threads, connections).await,
        Mode::TenantsCost { tenants } => {
            tenants_cost::run(n, seconds, threads, connections, tenants).await
        }
        Mode::RedisOutage => redis_outage::run(n, seconds, threads, connections, deadline).await,
        Mode::Storm { settings } => storm::run(args, &settings).await,
        Mode::OpenLoop { settings, loads } => open_loop::run(args, &settings, &loads).await,
        Mode::Compare { settings, rate } => compare::run(args, &settings, rate).await,
        Mode::Peak { route } => {
            let clients = connect(&args.addr, connections).await?;
            if route {
                let stats = closed_loop(&clients, n, seconds, Rpc::Route, Mix::Unique).await;
                println!("{}", stats.line(&format!("Route, {n} in flight")));
            } else {
                classify_phase(&clients, n, seconds, Mix::Unique, &format!("{n} in flight")).await;
            }
            Ok(())
        }
        Mode::Soak { rate, server_pid } => {
            let clients = connect(&args.addr, connections).await?;
            soak::run(&clients, rate, seconds, deadline, server_pid).await;
            Ok(())
        }
        Mode::DecisionPath => {
            let model = load(&args.model)?;
            let (p50, p99, n) = decision_path(&model, seconds, false)?;
            println!(
                "decision path alone (built-in rules, memory store, {n} decisions): p50 {p50:.1} µs, p99 {p99:.1} µs"
            );
            let (p50, p99, n) = decision_path(&model, seconds, true)?;
            println!(
                "  at capacity ({STORE_CAPACITY} conversations kept, each decision a new one evicting the oldest, {n} decisions): p50 {p50:.1} µs, p99 {p99:.1} µs"
            );
            Ok(())
        }
        Mode::SingleCall => {
            let model = Arc::new(load(&args.model)?);
            let peer = args.peer.then_some(args.peer_model.as_path());
            single_call::run(model, &args.model, seconds, threads, peer).await
        }
        Mode::Bench { shadow_version } => {
            bench(args, Arc::new(load(&args.model)?), &shadow_version).await
        }
    }
}

fn load(dir: &std::path::Path) -> anyhow::Result<Model> {
    Model::load(dir).with_context(|| format!("loading {}", dir.display()))
}

/// The full benchmark against `args.addr` (see `Mode::Bench`).
async fn bench(args: &Common, model: Arc<Model>, shadow_version: &str) -> anyhow::Result<()> {
    let clients = connect(&args.addr, args.connections).await?;
    println!(
        "model {} {}, {} messages, {} s per phase",
        model.name(),
        model.version(),
        MESSAGES.len(),
        args.seconds
    );

    println!("\nbare tract, {} threads (messages/s):", args.threads);
    let mut best_bare = (0usize, 0.0f64);
    for batch in [1usize, 4, 8, 16, 32] {
        let m = model.clone();
        let (threads, seconds) = (args.threads, args.seconds);
        let rate =
            tokio::task::spawn_blocking(move || bare_tract(&m, threads, batch, seconds)).await??;
        println!("  batch {batch:>2}: {rate:>8.1}");
        if rate > best_bare.1 {
            best_bare = (batch, rate);
        }
    }
    let (p50, p99, n) = decision_path(&model, 3, false)?;
    println!(
        "\ndecision path alone (built-in rules, memory store, {n} decisions): p50 {p50:.1} µs, p99 {p99:.1} µs"
    );
    let by_length = growth::texts_by_length(&model)?;
    let conversation_bytes = growth::memory_per_conversation(&model, 100_000)?;
    drop(model);

    println!(
        "\nClassify; unique texts unless marked \"repeats\" ({:.0} % of texts from {} frequent messages)",
        100.0 * texts::REPEAT_SHARE,
        texts::FREQUENT.len()
    );
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "phase", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let mut targets = vec![("handoff", clients.clone())];
    let mut running_peers = Vec::new();
    if args.peer {
        for batching in [false, true] {
            let peer = peer::Peer::start(&args.peer_model, batching).await?;
            targets.push((peer.name, connect(&peer.addr, args.connections).await?));
            running_peers.push(peer);
        }
    }
    let mut phases = engine_phases(&targets, args).await.into_iter();
    let ours = phases.next().expect("ours ran");
    let peers: Vec<_> = phases.collect();
    drop(running_peers);
    println!("\nhandoff against message length (unique texts; tract alone: batch 1, one thread)");
    println!(
        "{:<8} {:>9} {:>9} {:>12} {:>14}",
        "tokens", "p50 ms", "p99 ms", "peak req/s", "tract ms/msg"
    );
    let length_seconds = (args.seconds / 2).max(2);
    for &(tokens, text, tract_ms) in &by_length {
        let single = closed_loop(
            &clients,
            1,
            length_seconds,
            Rpc::Classify,
            Mix::Padded(text),
        )
        .await;
        let peak = closed_loop(
            &clients,
            args.concurrency,
            length_seconds,
            Rpc::Classify,
            Mix::Padded(text),
        )
        .await;
        println!(
            "{tokens:<8} {:>9.2} {:>9.2} {:>12.1} {tract_ms:>14.2}",
            single.ms(0.5),
            single.ms(0.99),
            peak.rate()
        );
    }
    println!(
        "memory per stored conversation (5 recent turns, in-process store, 100,000 conversations): {:.0} bytes",
        conversation_bytes
    );
    let (single, peak) = (&ours.single, &ours.peak);
    println!(
        "\n{:<34} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "service phase", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let half_rate = peak.rate() / 2.0;
    // Half of peak, Classify and Route interleaved request by request: both see the same load.
    let mut mixed = open_loop(
        &clients,
        half_rate,
        args.seconds,
        &[Rpc::Classify, Rpc::Route],
    )
    .await;
    let (route, half) = (mixed.pop().expect("route"), mixed.pop().expect("classify"));
    println!(
        "{}",
        half.line(&format!("Classify, half of open loop {half_rate:.0}/s"))
    );
    println!(
        "{}",
        route.line(&format!("Route, other half of {half_rate:.0}/s"))
    );

    let mut shadow_summary = None;
    if !shadow_version.is_empty() {
        // Spare capacity: a quarter of peak leaves room for the shadow worker.
        let rate = peak.rate() / 4.0;
        let off = open_loop(&clients, rate, args.seconds, &[Rpc::Classify])
            .await
            .remove(0);
        println!(
            "{}",
            off.line(&format!("Classify, {rate:.0}/s, shadow off"))
        );
        let mut admin = ModelAdminClient::connect(args.addr.clone()).await?;
        let shadow = |share| SetShadowRequest {
            name: MODEL_NAME.into(),
            version: shadow_version.to_string(),
            share,
        };
        admin
            .set_shadow(shadow(1.0))
            .await
            .context("enabling shadow")?;
        let on = open_loop(&clients, rate, args.seconds, &[Rpc::Classify])
            .await
            .remove(0);
        admin
            .set_shadow(shadow(0.0))
            .await
            .context("disabling shadow")?;
        println!(
            "{}",
            on.line(&format!("Classify, {rate:.0}/s, shadow 100 %"))
        );
        shadow_summary = Some((off.ms(0.99), on.ms(0.99)));
    }

    println!("\nsummary (same run):");
    for p in &peers {
        println!(
            "  vs {}: peak {:.1} / {:.1} = {:.2}x; single-call p50 {:.2} / {:.2} ms = {:.2}x; peak with repeats {:.1} / {:.1} = {:.2}x",
            p.name,
            ours.peak.rate(),
            p.peak.rate(),
            ours.peak.rate() / p.peak.rate(),
            ours.single.ms(0.5),
            p.single.ms(0.5),
            ours.single.ms(0.5) / p.single.ms(0.5),
            ours.peak_repeats.rate(),
            p.peak_repeats.rate(),
            ours.peak_repeats.rate() / p.peak_repeats.rate()
        );
    }
    println!(
        "  result cache: peak with repeats / unique texts: {:.1} / {:.1} = {:.2}x",
        ours.peak_repeats.rate(),
        ours.peak.rate(),
        ours.peak_repeats.rate() / ours.peak.rate()
    );
    println!(
        "  service peak / bare tract best (batch {}): {:.1} / {:.1} = {:.0} %",
        best_bare.0,
        peak.rate(),
        best_bare.1,
        100.0 * peak.rate() / best_bare.1
    );
    println!(
        "  p99 at half peak / single-message p50: {:.2} / {:.2} ms = {:.2}x",
        half.ms(0.99),
        single.ms(0.50),
        half.ms(0.99) / single.ms(0.50)
    );
    println!(
        "  Route p99 - Classify p99 at half peak: {:+.2} ms (decision path alone: p99 {:.3} ms)",
        route.ms(0.99) - half.ms(0.99),
        p99 / 1000.0
    );
    if let Some((off, on)) = shadow_summary {
        println!(
            "  live p99 with shadow 100 % / shadow off: {on:.2} / {off:.2} ms = {:+.1} %",
            100.0 * (on / off - 1.0)
        );
    }
    Ok(())
}
