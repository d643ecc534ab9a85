//! `compare SET ...`: one server per setting (`--set` syntax, e.g. `max_batch_size=8`; several
//! joined by commas), all from this build, take turns in rounds at one caller, at `--concurrency`
//! callers and (with `--rate`) in an open loop, unique texts. How the batcher's defaults
//! were chosen: settings compared in one run, not across runs on a noisy machine.

use crate::decision_log::spawn_settings;
use crate::texts::Mix;
use crate::{closed_loop, open_loop, Common, Rpc, Stats};

const ROUNDS: u64 = 4;

pub async fn run(args: &Common, settings: &[String], open_rate: Option<f64>) -> anyhow::Result<()> {
    let (model, seconds, concurrency) = (&args.model, args.seconds, args.concurrency);
    let (workers, connections) = (args.threads, args.connections);
    let sets: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut servers = Vec::new();
    for (set, (_, server, clients)) in settings
        .iter()
        .zip(spawn_settings(model, &sets, workers, connections).await?)
    {
        let phases = [Stats::empty(), Stats::empty(), Stats::empty()];
        servers.push((set, server, clients, phases));
    }
    let per_round = (seconds / ROUNDS).max(1);
    for _ in 0..ROUNDS {
        for (_, _, clients, [single, peak, open]) in &mut servers {
            let one = closed_loop(clients, 1, per_round, Rpc::Classify, Mix::Unique).await;
            single.merge(one);
            let many = closed_loop(clients, concurrency, per_round, Rpc::Classify, Mix::Unique);
            peak.merge(many.await);
            if let Some(rate) = open_rate {
                let mut at_rate = open_loop(clients, rate, per_round, &[Rpc::Classify]).await;
                open.merge(at_rate.remove(0));
            }
        }
    }
    println!(
        "settings compared in one run, {ROUNDS} rounds of {per_round} s per phase, taking turns"
    );
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "setting", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for (set, server, _, [single, peak, open]) in &servers {
        let split = server.metric(r#"handoff_inference_runs_total{mode="split"}"#)?;
        let whole = server.metric(r#"handoff_inference_runs_total{mode="whole"}"#)?;
        println!("{set}: {split} split runs, {whole} whole runs in all phases");
        println!("{}", single.line(&format!("{set}: 1 in flight")));
        println!("{}", peak.line(&format!("{set}: {concurrency} in flight")));
        if let Some(rate) = open_rate {
            println!("{}", open.line(&format!("{set}: open loop {rate:.0}/s")));
        }
    }
    Ok(())
}
