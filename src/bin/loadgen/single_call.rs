//! `single-call`: where one call's time goes when the server is idle, and what running a lone
//! text on two threads (`split_single_calls`) buys. Two servers from this build, split on and off,
//! and with `--peer` the naive Python server, take turns in rounds; one caller sends unique texts
//! back to back. The server's own `Timing` splits each answer into queue wait and inference, and
//! the same kind of texts run through bare tract in this process (whole graph on one thread, the
//! package's stages on two), so the rest is transport, hand-off and the client.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::ClassifyRequest;
use handoff::model::Model;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use tonic::transport::Channel;

use crate::decision_log::{ready, spawn_with};
use crate::texts::{self, Mix};
use crate::{new_hist, peer};

/// Rounds per server: taking turns spreads the machine's slow moments over all of them.
const ROUNDS: u64 = 4;

struct Calls {
    client: Histogram<u64>,
    handler: Histogram<u64>,
    queue: Histogram<u64>,
    inference: Histogram<u64>,
}

fn ms(h: &Histogram<u64>) -> f64 {
    h.value_at_quantile(0.5) as f64 / 1000.0
}

impl Calls {
    fn new() -> Calls {
        Calls {
            client: new_hist(),
            handler: new_hist(),
            queue: new_hist(),
            inference: new_hist(),
        }
    }

    fn print(&self, name: &str) {
        println!("  {name}, client-observed {:>7.2}", ms(&self.client));
        if self.handler.is_empty() {
            return;
        }
        println!(
            "    server handler (Timing.total)     {:>7.2}",
            ms(&self.handler)
        );
        println!(
            "      queue wait (incl. tokenising)   {:>7.2}",
            ms(&self.queue)
        );
        println!(
            "      inference                       {:>7.2}",
            ms(&self.inference)
        );
        println!(
            "    transport + client (difference)   {:>7.2}",
            ms(&self.client) - ms(&self.handler)
        );
    }
}

async fn calls(
    client: &mut HandoffClient<Channel>,
    seconds: u64,
    out: &mut Calls,
) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let text = texts::next(Mix::Unique, &mut rng);
        let t = Instant::now();
        let reply = client
            .classify(ClassifyRequest { text })
            .await?
            .into_inner();
        out.client
            .saturating_record(t.elapsed().as_micros().max(1) as u64);
        if let Some(timing) = reply.timing {
            out.handler.saturating_record(timing.total_us.max(1));
            out.queue.saturating_record(timing.queue_us.max(1));
            out.inference.saturating_record(timing.inference_us.max(1));
        }
    }
    Ok(())
}

/// Tokenise and run the same kind of texts in this process, one at a time: p50 of each, in ms
/// (tokenise, whole graph on one thread, tensor-parallel stages on two).
fn bare(model: &Model, seconds: u64) -> anyhow::Result<(f64, f64, f64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (mut tok, mut run, mut split) = (new_hist(), new_hist(), new_hist());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let text = texts::next(Mix::Unique, &mut rng);
        let t = Instant::now();
        let encoded = model.encode(&text)?;
        tok.saturating_record(t.elapsed().as_micros().max(1) as u64);
        let t = Instant::now();
        model.run(&[&encoded])?;
        run.saturating_record(t.elapsed().as_micros().max(1) as u64);
        if model.has_parallel_stages() {
            let t = Instant::now();
            model
                .run_split(&encoded, &handoff::model::Never)
                .context("the package's stages are busy")??;
            split.saturating_record(t.elapsed().as_micros().max(1) as u64);
        }
    }
    Ok((ms(&tok), ms(&run), ms(&split)))
}

pub async fn run(
    model: Arc<Model>,
    model_dir: &Path,
    seconds: u64,
    workers: usize,
    peer_model: Option<&Path>,
) -> anyhow::Result<()> {
    let m = model.clone();
    let (tokenize, tract, split) = tokio::task::spawn_blocking(move || bare(&m, seconds)).await??;
    let model_arg = model_dir.as_os_str();
    let mut servers = Vec::new();
    for (name, split) in [
        ("handoff, split on", "true"),
        ("handoff, split off", "false"),
    ] {
        let set = format!("split_single_calls={split}");
        let args = [
            "--model".as_ref(),
            model_arg,
            "--set".as_ref(),
            set.as_ref(),
        ];
        let server = spawn_with(&args, workers)?;
        let client = ready(&server.addr, 1).await?.remove(0);
        servers.push((name.to_string(), Some(server), client, Calls::new()));
    }
    let _peer = if let Some(peer_model) = peer_model {
        let peer = peer::Peer::start(peer_model, false).await?;
        let client = HandoffClient::connect(peer.addr.clone()).await?;
        servers.push((peer.name.to_string(), None, client, Calls::new()));
        Some(peer)
    } else {
        None
    };
    let per_round = (seconds / ROUNDS).max(1);
    for _ in 0..ROUNDS {
        for (_, _, client, out) in &mut servers {
            calls(client, per_round, out).await?;
        }
    }
    println!(
        "single call, unique texts, p50 in ms ({ROUNDS} rounds of {per_round} s per server, taking turns)"
    );
    for (name, _, _, out) in &servers {
        out.print(name);
    }
    println!("  this process: tokenise              {:>7.2}", tokenize);
    println!("  this process: bare tract, 1 thread  {:>7.2}", tract);
    if model.has_parallel_stages() {
        println!("  this process: tract, 2 halves       {:>7.2}", split);
    }
    let p50 = |i: usize| ms(&servers[i].3.client);
    println!("summary (same run):");
    println!(
        "  split on / off: {:.2} / {:.2} ms = {:.2}x",
        p50(0),
        p50(1),
        p50(0) / p50(1)
    );
    if peer_model.is_some() {
        println!(
            "  vs {}: single-call p50 {:.2} / {:.2} ms = {:.2}x (split off: {:.2}x)",
            servers[2].0,
            p50(0),
            p50(2),
            p50(0) / p50(2),
            p50(1) / p50(2)
        );
    }
    Ok(())
}
