//! Soak: a fixed request rate (typically twice the measured peak) for a bounded time, every request
//! with a deadline. Counts how each was answered, the latency of the admitted ones, the server's
//! resident memory over the run, and any request left unanswered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::RouteRequest;
use rand::SeedableRng;
use tonic::transport::Channel;

use super::new_hist;
use super::texts::pick;

/// How long past its deadline a request may take before it counts as unanswered.
const GRACE: Duration = Duration::from_secs(10);

/// Resident memory of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub async fn run(
    clients: &[HandoffClient<Channel>],
    rate: f64,
    seconds: u64,
    deadline: Duration,
    server_pid: Option<u32>,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds as f64) as u64;
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut tasks = Vec::with_capacity(total as usize);
    let mut memory = Vec::new();
    let mut next_sample = started;
    for i in 0..total {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        if let Some(pid) = server_pid.filter(|_| Instant::now() >= next_sample) {
            memory.extend(rss_mib(pid));
            next_sample += Duration::from_secs(1);
        }
        let mut client = clients[i as usize % clients.len()].clone();
        let text = pick(&mut rng);
        tasks.push(tokio::spawn(async move {
            let mut req = tonic::Request::new(RouteRequest {
                conversation_id: format!("soak-{}", i % 1000),
                text: text.into(),
                ..Default::default()
            });
            req.set_timeout(deadline);
            let answered = tokio::time::timeout(deadline + GRACE, client.route(req)).await;
            let code = match answered {
                Err(_) => None,
                Ok(Ok(_)) => Some(tonic::Code::Ok),
                Ok(Err(status)) => Some(status.code()),
            };
            (code, scheduled.elapsed())
        }));
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut admitted = new_hist();
    let mut shed = new_hist();
    let mut unanswered = 0;
    for t in tasks {
        let (code, latency) = t.await.expect("soak task");
        match code {
            None => unanswered += 1,
            Some(code) => {
                *codes.entry(format!("{code:?}")).or_default() += 1;
                let micros = latency.as_micros() as u64;
                match code {
                    tonic::Code::Ok => admitted.saturating_record(micros),
                    tonic::Code::ResourceExhausted => shed.saturating_record(micros),
                    _ => {}
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |h: &hdrhistogram::Histogram<u64>, q| h.value_at_quantile(q) as f64 / 1000.0;
    println!("soak: {total} Route requests at {rate:.0}/s for {seconds} s, deadline {deadline:?}");
    for (code, n) in &codes {
        println!(
            "  {code:<18} {n:>8}  ({:.1} %)",
            100.0 * *n as f64 / total as f64
        );
    }
    println!("  unanswered         {unanswered:>8}");
    println!(
        "  admitted: {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        admitted.len() as f64 / elapsed,
        ms(&admitted, 0.5),
        ms(&admitted, 0.99),
        admitted.max() as f64 / 1000.0
    );
    if !shed.is_empty() {
        println!(
            "  RESOURCE_EXHAUSTED answered in: p50 {:.2} ms, p99 {:.2} ms",
            ms(&shed, 0.5),
            ms(&shed, 0.99)
        );
    }
    if memory.len() >= 4 {
        // One sample per second; the first seconds fill caches and the conversation store.
        let at = |q: usize| memory[(memory.len() - 1) * q / 4];
        let max = memory.iter().cloned().fold(f64::MIN, f64::max);
        println!(
            "  server RSS (MiB) at 0/25/50/75/100 % of the run: {:.0} / {:.0} / {:.0} / {:.0} / {:.0}, max {max:.0}",
            at(0),
            at(1),
            at(2),
            at(3),
            at(4)
        );
    }
}
