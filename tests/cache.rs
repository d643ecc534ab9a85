//! The result cache over real gRPC: repeated texts are answered without inference, a model swap
//! never serves the previous model's results, the cache stays within its capacity, and its
//! metrics are on /metrics.

mod common;

use common::{classify, Server, TempRepo};
use handoff::grpc::pb::model_admin_client::ModelAdminClient;
use handoff::grpc::pb::ActivateModelRequest;

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_swap_never_serves_the_previous_models_results() {
    let repo = TempRepo::new("cache");
    let v1 = repo.add("2.2.0", |m| m);
    repo.add("2.0.1", |m| m);
    let server = repo.start(&v1, &[]);
    let hits = r#"handoff_cache_lookups_total{result="hit"}"#;
    let first = classify(&server, "转人工").await;
    assert_eq!(first.model.unwrap().version, "2.2.0");
    assert!(
        first.timing.unwrap().batch_size >= 1,
        "the first call runs the model"
    );
    let again = classify(&server, "  转人工 ").await; // the same text once whitespace is normalised
    assert_eq!(
        again.timing.unwrap().batch_size,
        0,
        "answered from the cache"
    );
    assert_eq!(again.result, first.result);
    assert_eq!(metric(&server.metrics(), hits), 1.0);

    let mut admin = ModelAdminClient::connect(server.endpoint()).await.unwrap();
    admin
        .activate_model(ActivateModelRequest {
            name: "handoff-zh-en".into(),
            version: "2.0.1".into(),
        })
        .await
        .unwrap();
    let after = classify(&server, "转人工").await;
    assert_eq!(after.model.unwrap().version, "2.0.1");
    assert!(
        after.timing.unwrap().batch_size >= 1,
        "after a swap the new model runs: no result of 2.2.0 is served"
    );
    assert_eq!(metric(&server.metrics(), hits), 1.0);
    let cached = classify(&server, "转人工").await;
    assert_eq!(cached.model.unwrap().version, "2.0.1");
    assert_eq!(cached.timing.unwrap().batch_size, 0);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity_and_reports_it() {
    let server = Server::start(&["--cache-capacity", "3"]);
    for text in ["hi", "在吗", "thanks", "转人工", "ok", "hi"] {
        classify(&server, text).await;
    }
    let metrics = server.metrics();
    assert_eq!(metric(&metrics, "handoff_cache_capacity"), 3.0);
    assert!(
        metric(&metrics, "handoff_cache_entries") <= 3.0,
        "{metrics}"
    );
    // "hi" was evicted by the three texts after it and the LRU bound: a miss, not a hit.
    assert_eq!(
        metric(&metrics, r#"handoff_cache_lookups_total{result="miss"}"#),
        6.0
    );
}

#[tokio::test]
async fn a_zero_capacity_turns_the_cache_off() {
    let server = Server::start(&["--cache-capacity", "0"]);
    for _ in 0..2 {
        let r = classify(&server, "hi").await;
        assert!(r.timing.unwrap().batch_size >= 1);
    }
    assert!(!server.metrics().contains("handoff_cache_lookups_total"));
}

#[tokio::test]
async fn promtool_finds_nothing_wrong_with_the_metrics() {
    let server = Server::start(&[]);
    for text in ["hi", "hi", "where is my order"] {
        classify(&server, text).await;
    }
    let metrics = server.metrics();
    assert!(metrics.contains("handoff_cache_lookups_total"), "{metrics}");
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: see the README's Setup");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}
