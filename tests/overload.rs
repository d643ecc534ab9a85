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
        // When to retry, as google.rpc.RetryInfo: the queued work's estimate, never "now".
        use tonic_types::StatusExt;
        let retry = status.get_details_retry_info().expect("RetryInfo details");
        assert!(
            retry
                .retry_delay
                .is_some_and(|d| d >= Duration::from_millis(10)),
            "{retry:?}"
        );
    }
    assert_eq!(ok + shed.len(), 300);
    let metrics = server.metrics();
    assert!(
        common::counter(
            &metrics,
            "handoff_shed_requests_total{reason=\"queue_full\"}"
        ) > 0.0,
        "shed requests counted"
    );
    assert!(metrics.contains("code=\"ResourceExhausted\""));
}

/// A server with `config` (TOML) that runs one text at a time on one worker: easy to overload.
fn one_text_at_a_time(tag: &str, config: &str) -> common::Server {
    let path = std::env::temp_dir().join(format!("handoff-{tag}-{}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    common::Server::start(&[
        "--config",
        path.to_str().unwrap(),
        "--workers",
        "1",
        "--max-batch-size",
        "1",
    ])
}

/// Fire `n` concurrent Classify calls (with a deadline if given) and wait for every answer.
async fn burst(
    client: &handoff::grpc::pb::handoff_client::HandoffClient<tonic::transport::Channel>,
    n: usize,
    deadline: Option<Duration>,
) -> Vec<Result<(), tonic::Status>> {
    // Unique across bursts too: a repeated text would be answered by the result cache, not queued.
    static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let i = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut c = client.clone();
            let mut req = tonic::Request::new(ClassifyRequest {
                text: format!("第{i}个问题：我的订单什么时候发货？"),
            });
            if let Some(d) = deadline {
                req.set_timeout(d);
            }
            tokio::spawn(async move { c.classify(req).await.map(|_| ()) })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    })
    .await
    .expect("every request answered")
}

#[tokio::test]
async fn the_in_flight_limit_and_deadlines_shed_at_once_with_their_reason() {
    let server = one_text_at_a_time(
        "inflight",
        "max_in_flight = 8\n[limits]\ndefault_deadline_ms = 30\n",
    );
    let client = common::client(&server).await;
    // One answered request first, so the server knows how long a text takes. Then bursts with a
    // deadline far off (only the in-flight limit sheds), with none (the server's 30 ms default
    // applies) and with their own 30 ms: with 2.2.0 a text takes ~7 ms, so 8 in flight are ~56 ms of work.
    // Its own far deadline: a cold server's first inference may take longer than the 30 ms default.
    let first = burst(&client, 1, Some(Duration::from_secs(60))).await;
    assert!(first[0].is_ok(), "{first:?}");
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for (wave, deadline) in [
        ("far", Some(Duration::from_secs(60))),
        ("default", None),
        ("own", Some(Duration::from_millis(30))),
    ] {
        for result in burst(&client, 100, deadline).await {
            let Err(status) = result else { continue };
            let reason = match status.code() {
                Code::ResourceExhausted if status.message().contains("requests in flight") => {
                    "concurrency"
                }
                Code::ResourceExhausted
                    if status.message().contains("past this request's deadline") =>
                {
                    "deadline"
                }
                // A request admitted with room to spare can still be overtaken by its deadline.
                Code::DeadlineExceeded => "deadline_exceeded",
                // The client's timer starts before its request reaches the server (a 100-call
                // burst queues on one connection), so on busy cores it can fire before the
                // server's answer 2 ms early arrives: the client's doing, not a refusal.
                Code::Cancelled if deadline.is_some() && status.message() == "Timeout expired" => {
                    "client_timer"
                }
                _ => panic!("unexpected refusal {status:?}"),
            };
            *reasons.entry(format!("{reason} ({wave})")).or_default() += 1;
        }
    }
    for wanted in ["concurrency (far)", "deadline (default)", "deadline (own)"] {
        assert!(reasons.contains_key(wanted), "no {wanted}: {reasons:?}");
    }
    assert!(
        !reasons.contains_key("deadline (far)"),
        "a 60 s deadline was refused as too short: {reasons:?}"
    );
    let metrics = server.metrics();
    for reason in ["concurrency", "deadline"] {
        assert!(
            common::counter(
                &metrics,
                &format!("handoff_shed_requests_total{{reason=\"{reason}\"}}")
            ) > 0.0,
            "{reason} not counted"
        );
    }
}

/// A cold server's first burst, every call under the server's 500 ms default deadline (no client
/// timeout, so the client's own timer cannot answer first): calls that cannot make it are refused up
/// front (the wait estimate comes from warm-up until live batches refine it), the rest are answered
/// or end DEADLINE_EXCEEDED, never CANCELLED "Timeout expired", and every call is counted once in
/// `handoff_requests_total`.
#[tokio::test]
async fn a_cold_burst_with_deadlines_ends_with_the_right_codes_and_is_counted() {
    let server = one_text_at_a_time("cold", "[limits]\ndefault_deadline_ms = 500\n");
    let client = common::client(&server).await;
    let results = burst(&client, 200, None).await;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for r in &results {
        let code = r.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
        *codes.entry(format!("{code:?}")).or_default() += 1;
        if let Err(s) = r {
            assert!(
                matches!(s.code(), Code::ResourceExhausted | Code::DeadlineExceeded),
                "{s:?} ({codes:?})"
            );
        }
    }
    assert!(codes.get("Ok").copied().unwrap_or(0) > 0, "{codes:?}");
    assert!(
        codes.contains_key("ResourceExhausted"),
        "~1 s of work for a 500 ms deadline: the first burst must be refused in part ({codes:?})"
    );
    // Every call is counted once, whatever it ended with (the last counts land as answers go out).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let counted = common::counter(&server.metrics(), "handoff_requests_total{rpc=\"Classify\"");
        if counted >= 200.0 || std::time::Instant::now() > deadline {
            assert_eq!(counted, 200.0, "{codes:?}\n{}", server.metrics());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
