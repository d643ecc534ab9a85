//! A storm of short-deadline callers, each retrying every refusal at once: every call is answered
//! with a code that says what happened, the server counts each one, and the answers it sends leave
//! before the caller's deadline by its own clock (`handoff_late_answers_total`). Its own test binary:
//! the storm takes both cores, which would upset the timing of any test run beside it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use handoff::grpc::pb::ClassifyRequest;
use tonic::Code;

const CALLERS: usize = 96;
const DEADLINE: Duration = Duration::from_millis(50);
const STORM: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_short_deadlines_is_answered_counted_and_not_answered_late() {
    let server = common::Server::start(&[]);
    let client = common::client(&server).await;
    // Warm: the first inference of a fresh server is slower than any 50 ms budget.
    common::classify(&server, "你好，我想问一下订单的事").await;
    let until = Instant::now() + STORM;
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut codes = BTreeMap::<String, u64>::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    // Unique texts: the result cache must not answer for the model.
                    let mut request = tonic::Request::new(ClassifyRequest {
                        text: format!("第{caller}位客户第{n}次问：我的订单什么时候发货？"),
                    });
                    request.set_timeout(DEADLINE);
                    let code = match client.classify(request).await {
                        Ok(_) => "OK".to_string(),
                        // The client's own timer: it starts before the request reaches the server.
                        Err(s)
                            if s.code() == Code::Cancelled && s.message() == "Timeout expired" =>
                        {
                            "client_timer".to_string()
                        }
                        Err(s) => format!("{:?}", s.code()),
                    };
                    *codes.entry(code).or_default() += 1;
                }
                codes
            })
        })
        .collect();
    let mut codes = BTreeMap::<String, u64>::new();
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        for caller in callers {
            for (code, n) in caller.await.unwrap() {
                *codes.entry(code).or_default() += n;
            }
        }
    })
    .await;
    assert!(all.is_ok(), "a storm call hung: {codes:?}");
    let sent: u64 = codes.values().sum();
    for code in codes.keys() {
        assert!(
            [
                "OK",
                "ResourceExhausted",
                "DeadlineExceeded",
                "client_timer"
            ]
            .contains(&code.as_str()),
            "unexpected answer {code} in {codes:?}"
        );
    }
    assert!(
        codes.get("OK").is_some_and(|&n| n > 0),
        "none served: {codes:?}"
    );
    assert!(
        codes.get("ResourceExhausted").is_some_and(|&n| n > 0),
        "{CALLERS} callers with 50 ms deadlines must overload two workers: {codes:?}"
    );

    let metrics = server.metrics();
    let counted = common::counter(&metrics, "handoff_requests_total{rpc=\"Classify\"");
    // The warm-up call, plus every call of the storm the server saw; a call the client's timer
    // ended may not have reached it.
    let timers = codes.get("client_timer").copied().unwrap_or(0) as f64;
    assert!(
        counted <= sent as f64 + 1.0 && counted >= sent as f64 + 1.0 - timers,
        "the server counted {counted} Classify calls for {sent} sent ({codes:?})"
    );
    let late = common::counter(&metrics, "handoff_late_answers_total{rpc=\"Classify\"");
    // On two cores shared with these callers, a thread can wait for the CPU longer than the 2 ms the
    // server keeps in hand; a few late answers in a thousand are that, not a deadline ignored.
    println!("storm: {sent} calls {codes:?}; {late} answered late by the server's clock");
    assert!(
        late <= 0.01 * counted,
        "{late} of {counted} answers left the server after their deadline"
    );
}
