//! `redis-outage`: what a Redis outage costs Route callers. One server keeps conversation state in
//! memory, one in a Redis started here; in one run, at the same closed-loop load with short
//! deadlines: the memory server, the Redis server with Redis up, the same after Redis is killed
//! (SIGKILL, mid-load), and after it is back. Prints throughput, p50/p99/max, how many calls missed
//! their deadline (at the caller, and by the server's own clock) and how many were decided without
//! state (`state_unavailable`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use tonic::transport::Channel;

use crate::decision_log::{free_port, ready, spawn_with, Server};
use crate::texts::{self, Mix};
use crate::{new_hist, HandoffClient, Stats};
use handoff::grpc::pb::{self, RouteRequest};

struct Redis(Child);

impl Redis {
    fn start(port: u16) -> anyhow::Result<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Redis(child))
    }
}

/// Dropped is killed (SIGKILL, as an outage would): also when a run fails half-way.
impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One phase's figures beyond `Stats`: DEADLINE_EXCEEDED answers (the server saying in time that it
/// could not make it), answers that reached the caller after its deadline (whatever their code; the
/// ones the server itself sent late are counted apart, from its metrics), and calls decided without
/// state.
struct Outcome {
    stats: Stats,
    max_ms: f64,
    deadline_exceeded: u64,
    late: u64,
    server_late: f64,
    degraded: u64,
}

/// The server's count of answers sent after their deadline.
const LATE: &str = "handoff_late_answers_total";

/// `concurrency` callers, each Route with `deadline` as its gRPC timeout, for `seconds`.
async fn phase(
    clients: &[HandoffClient<Channel>],
    concurrency: usize,
    seconds: u64,
    deadline: Duration,
    seed: u64,
) -> Outcome {
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + i as u64);
                let (mut hist, mut errors, mut expired, mut late, mut degraded) =
                    (new_hist(), 0, 0, 0, 0);
                let mut turn = 0u64;
                while Instant::now() < until {
                    turn += 1;
                    let mut request = tonic::Request::new(RouteRequest {
                        // Conversations of a few turns, so state is read and written.
                        conversation_id: format!("outage-{seed}-{i}-{}", turn / 4),
                        message_id: format!("m{turn}"),
                        text: texts::next(Mix::Unique, &mut rng),
                        channel: pb::Channel::Web as i32,
                        tier: pb::CustomerTier::Standard as i32,
                        ..Default::default()
                    });
                    request.set_timeout(deadline);
                    let sent = Instant::now();
                    let answer = client.route(request).await;
                    if sent.elapsed() > deadline {
                        late += 1;
                    }
                    match answer {
                        Ok(reply) => {
                            hist.saturating_record(sent.elapsed().as_micros() as u64);
                            let reasons = &reply.get_ref().reasons;
                            if reasons.iter().any(|r| r.rule_id == "state_unavailable") {
                                degraded += 1;
                            }
                        }
                        Err(status) => {
                            if errors == 0 && i == 0 {
                                eprintln!(
                                    "  first refusal: {:?} {}",
                                    status.code(),
                                    status.message()
                                );
                            }
                            errors += 1;
                            if status.code() == tonic::Code::DeadlineExceeded
                                || status.code() == tonic::Code::Cancelled
                            {
                                expired += 1;
                            }
                        }
                    }
                }
                (hist, errors, expired, late, degraded)
            })
        })
        .collect();
    let mut out = Outcome {
        stats: Stats::empty(),
        max_ms: 0.0,
        deadline_exceeded: 0,
        late: 0,
        server_late: 0.0,
        degraded: 0,
    };
    for t in tasks {
        let (h, e, expired, late, degraded) = t.await.expect("caller task");
        out.stats.hist.add(&h).expect("same bounds");
        out.stats.errors += e;
        out.deadline_exceeded += expired;
        out.late += late;
        out.degraded += degraded;
    }
    out.stats.elapsed = started.elapsed();
    out.stats.count = out.stats.hist.len();
    out.max_ms = out.stats.hist.max() as f64 / 1000.0;
    out
}

/// A phase, with the server's own count of the answers it sent after their deadline.
async fn measured(
    server: &Server,
    clients: &[HandoffClient<Channel>],
    concurrency: usize,
    seconds: u64,
    deadline: Duration,
    seed: u64,
) -> Outcome {
    let before = server.metric(LATE).unwrap_or(f64::NAN);
    let mut out = phase(clients, concurrency, seconds, deadline, seed).await;
    out.server_late = server.metric(LATE).unwrap_or(f64::NAN) - before;
    out
}

pub async fn run(
    concurrency: usize,
    seconds: u64,
    workers: usize,
    connections: usize,
    deadline: Duration,
) -> anyhow::Result<()> {
    let port = free_port()?;
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = Some(Redis::start(port)?);
    let memory = spawn_with(&[], workers)?;
    let shared = spawn_with(&["--state".as_ref(), url.as_ref()], workers)?;
    let memory_clients = ready(&memory.addr, connections).await?;
    let shared_clients = ready(&shared.addr, connections).await?;
    println!(
        "\nRedis outage: Route, {concurrency} in flight, {} ms deadlines, {seconds} s per phase",
        deadline.as_millis()
    );
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>8} {:>9}",
        "phase",
        "ok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "refused",
        "deadline",
        "late",
        "srv late",
        "no state"
    );
    let print = |name: &str, o: &Outcome| {
        let s = &o.stats;
        println!(
            "{name:<34} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>8} {:>9} {:>6} {:>8} {:>9}",
            s.rate(),
            s.ms(0.50),
            s.ms(0.95),
            s.ms(0.99),
            o.max_ms,
            s.errors - o.deadline_exceeded,
            o.deadline_exceeded,
            o.late,
            o.server_late,
            o.degraded
        );
    };
    let baseline = measured(&memory, &memory_clients, concurrency, seconds, deadline, 1).await;
    print("state in memory (no Redis)", &baseline);
    let up = measured(&shared, &shared_clients, concurrency, seconds, deadline, 2).await;
    print("state in Redis, Redis up", &up);
    // Killed while the callers are mid-flight: the first calls meet a dead connection.
    let killer = {
        let redis = redis.take();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(redis);
        })
    };
    let killed = measured(&shared, &shared_clients, concurrency, seconds, deadline, 3).await;
    killer.await?;
    print("Redis killed 0.5 s in (SIGKILL)", &killed);
    redis = Some(Redis::start(port)?);
    let back = measured(&shared, &shared_clients, concurrency, seconds, deadline, 4).await;
    print("Redis back", &back);
    drop(redis);
    println!(
        "  Redis killed vs no Redis: throughput {:.1} %, p99 {:.1} vs {:.1} ms (deadline {} ms); {} of {} calls answered after the deadline at the caller, {} of them sent late by the server's clock",
        100.0 * killed.stats.rate() / baseline.stats.rate(),
        killed.stats.ms(0.99),
        baseline.stats.ms(0.99),
        deadline.as_millis(),
        killed.late,
        killed.stats.count + killed.stats.errors,
        killed.server_late,
    );
    Ok(())
}
