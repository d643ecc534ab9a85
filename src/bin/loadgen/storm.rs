//! `storm`: goodput under overload. A server from this build (and one more per setting given) is
//! driven at its closed-loop peak, then by a storm: 256 callers with 50 ms deadlines, unique texts, each sending again at once whatever the answer, as a naive client does. Prints the
//! storm's goodput (answers in time) against the peak, what the rest got, and the CPU the client and
//! the server used, since on one machine a storm's client competes with the server for the cores.

use std::time::{Duration, Instant};

use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::ClassifyRequest;
use rand::SeedableRng;
use tonic::transport::Channel;

use crate::decision_log::{spawn_settings, Server};
use crate::open_loop::{cpu_seconds, Seen};
use crate::texts::{self, Mix};
use crate::{closed_loop, Common, Rpc};

const CALLERS: usize = 256;
const DEADLINE: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Tally {
    ok: u64,
    refused: u64,
    expired: u64,
    other: u64,
    /// Answers (of any code) that came after the caller's deadline.
    late: u64,
}

impl Tally {
    fn add(&mut self, more: &Tally) {
        self.ok += more.ok;
        self.refused += more.refused;
        self.expired += more.expired;
        self.other += more.other;
        self.late += more.late;
    }
}

/// CPU seconds a process has used so far (user + system, from /proc).
fn process_cpu(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| cpu_seconds(&stat).map(|(_, seconds)| seconds))
        .unwrap_or(0.0)
}

async fn storm(clients: &[HandoffClient<Channel>], seconds: u64) -> Tally {
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(5000 + i as u64);
                let mut tally = Tally::default();
                while Instant::now() < until {
                    let text = texts::next(Mix::Unique, &mut rng);
                    let mut request = tonic::Request::new(ClassifyRequest { text });
                    request.set_timeout(DEADLINE);
                    let sent = Instant::now();
                    let answer = client.classify(request).await;
                    let late = sent.elapsed() > DEADLINE;
                    tally.late += u64::from(late);
                    match answer {
                        Ok(_) if !late => tally.ok += 1,
                        Ok(_) => {}
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => tally.refused += 1,
                        Err(s) if s.code() == tonic::Code::DeadlineExceeded => tally.expired += 1,
                        Err(_) => tally.other += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        all.add(&t.await.expect("storm caller"));
    }
    all
}

struct Target {
    name: String,
    server: Server,
    clients: Vec<HandoffClient<Channel>>,
    peak: f64,
    tally: Tally,
    client_cpu: f64,
    server_cpu: f64,
    seconds: f64,
    seen: Seen,
}

pub async fn run(args: &Common, settings: &[String]) -> anyhow::Result<()> {
    let (model, seconds, workers) = (&args.model, args.seconds, args.threads);
    let (connections, concurrency) = (args.connections, args.concurrency);
    let sets: Vec<&str> = std::iter::once("")
        .chain(settings.iter().map(String::as_str))
        .collect();
    let mut targets = Vec::new();
    for (name, server, clients) in spawn_settings(model, &sets, workers, connections).await? {
        targets.push(Target {
            name,
            server,
            clients,
            peak: 0.0,
            tally: Tally::default(),
            client_cpu: 0.0,
            server_cpu: 0.0,
            seconds: 0.0,
            seen: Seen::default(),
        });
    }
    let me = std::process::id();
    const ROUNDS: u64 = 2;
    let per_round = (seconds / ROUNDS).max(2);
    for _ in 0..ROUNDS {
        for t in targets.iter_mut() {
            let peak = closed_loop(
                &t.clients,
                concurrency,
                per_round,
                Rpc::Classify,
                Mix::Unique,
            );
            t.peak += peak.await.rate() / ROUNDS as f64;
            let (client, server) = (process_cpu(me), process_cpu(t.server.pid()));
            let (started, before) = (Instant::now(), Seen::read(&t.server)?);
            let tally = storm(&t.clients, per_round).await;
            t.seen.add(&Seen::read(&t.server)?.since(&before));
            t.seconds += started.elapsed().as_secs_f64();
            t.client_cpu += process_cpu(me) - client;
            t.server_cpu += process_cpu(t.server.pid()) - server;
            t.tally.add(&tally);
        }
    }
    println!(
        "storm: {CALLERS} callers, {} ms deadlines, unique texts, each sending again at once; {ROUNDS} rounds of {per_round} s, servers taking turns",
        DEADLINE.as_millis()
    );
    for t in &targets {
        let per_s = |n: u64| n as f64 / t.seconds;
        let k = &t.tally;
        println!(
            "{}: peak {:.1}/s; storm goodput {:.1}/s = {:.0} % of peak; refused {:.0}/s, deadline exceeded {:.0}/s, other errors {:.0}/s, late at the caller {:.0}/s; CPU: client {:.0} %, server {:.0} % (of one core)",
            t.name,
            t.peak,
            per_s(k.ok),
            100.0 * per_s(k.ok) / t.peak,
            per_s(k.refused),
            per_s(k.expired),
            per_s(k.other),
            per_s(k.late),
            100.0 * t.client_cpu / t.seconds,
            100.0 * t.server_cpu / t.seconds,
        );
        println!("{}", t.seen.line(t.seconds));
    }
    Ok(())
}
