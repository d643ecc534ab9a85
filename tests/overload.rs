//! A full queue answers RESOURCE_EXHAUSTED at once instead of hanging; nothing goes unanswered.

mod common;

use std::time::Duration;

use handoff::grpc::pb::ClassifyRequest;
use tonic::Code;

#[tokio::test]
async fn a_full_queue_sheds_with_resource_exhausted_and_answers_everything() {
    let server = common::Server::start(&[
        "--workers",
        "1",
        "--queue-capacity",
        "64",
        "--max-batch-size",
        "1",
    ]);
    let client = common::client(&server).await;
    let text = "我的订单三天了还没发货，到底什么时候能到？".repeat(4);
    let calls: Vec<_> = (0..300)
        .map(|_| {
            let mut c = client.clone();
            let text = text.clone();
            tokio::spawn(async move { c.classify(ClassifyRequest { text }).await.map(|_| ()) })
        })
        .collect();
    // A hang would fail here instead of blocking the suite.
    let results = tokio::time::timeout(Duration::from_secs(120), async {
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    })
    .await
    .expect("all 300 requests answered");
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let shed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(ok > 0, "some requests must be served");
    assert!(
        !shed.is_empty(),
        "a 64-slot queue cannot hold 300 concurrent requests"
    );
    for status in &shed {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("queue is full"),
            "{}",
            status.message()
        );
    }
    assert_eq!(ok + shed.len(), 300);
    let metrics = server.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("handoff_shed_requests_total{reason=\"queue_full\"}")),
        "shed requests counted"
    );
    assert!(metrics.contains("code=\"ResourceExhausted\""));
}
