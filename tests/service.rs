//! The service over real gRPC on a loopback port, with the shipped model run by tract.

mod common;

use std::str::FromStr;
use std::time::Duration;

use handoff::grpc::pb::{self, ClassifyBatchRequest, ClassifyRequest, RouteRequest};
use handoff::model::Manifest;
use tonic::Code;

fn route(conversation: &str, text: &str) -> RouteRequest {
    RouteRequest {
        conversation_id: conversation.into(),
        text: text.into(),
        channel: pb::Channel::Web as i32,
        tier: pb::CustomerTier::Standard as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn classify_answers_every_golden_example_in_both_languages() {
    let server = common::shared();
    let mut client = common::client(server).await;
    let manifest = Manifest::load(&common::model_dir()).unwrap();
    let mut languages = std::collections::HashSet::new();
    for g in &manifest.golden {
        let resp = client
            .classify(ClassifyRequest {
                text: g.text.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let result = resp.result.unwrap();
        if let Some(intent) = &g.intent {
            assert_eq!(&result.intent, intent, "intent of {:?}", g.text);
        }
        if let Some(sentiment) = &g.sentiment {
            assert_eq!(&result.sentiment, sentiment, "sentiment of {:?}", g.text);
        }
        let sum: f32 = result.intents.iter().map(|s| s.score).sum();
        assert!(
            (sum - 1.0).abs() < 1e-3,
            "intent probabilities sum to {sum}"
        );
        assert_eq!(result.intents.len(), manifest.labels.intent.len());
        let model = resp.model.unwrap();
        assert_eq!(
            (model.name.as_str(), model.version.as_str()),
            (manifest.name.as_str(), manifest.version.as_str())
        );
        assert!(resp.timing.unwrap().total_us > 0);
        languages.insert(g.text.is_ascii());
    }
    assert_eq!(
        languages.len(),
        2,
        "golden examples cover Chinese and English"
    );
}

#[tokio::test]
async fn classify_batch_keeps_request_order() {
    let mut client = common::client(common::shared()).await;
    let texts = vec![
        "转人工".to_string(),
        "my account was hacked".to_string(),
        "发票怎么开".to_string(),
    ];
    let resp = client
        .classify_batch(ClassifyBatchRequest { texts })
        .await
        .unwrap()
        .into_inner();
    let intents: Vec<_> = resp.results.iter().map(|r| r.intent.as_str()).collect();
    assert_eq!(
        intents,
        ["request_human", "security_incident", "billing_payment"]
    );
}

#[tokio::test]
async fn explicit_requests_for_a_person_escalate() {
    let mut client = common::client(common::shared()).await;
    for text in ["转人工", "I want a real person"] {
        let resp = client
            .route(route(&format!("conv-escalate-{text}"), text))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.action(), pb::Action::Escalate, "{text}");
        assert_eq!(resp.queue, "general");
        assert_eq!(resp.reasons[0].rule_id, "explicit_request");
        assert_eq!(resp.reasons[0].signal, "request_human");
        assert!(!resp.decision_id.is_empty() && !resp.policy_version.is_empty());
    }
}

#[tokio::test]
async fn route_keeps_the_bot_for_routine_questions_and_boosts_vips() {
    let mut client = common::client(common::shared()).await;
    let resp = client
        .route(route("conv-routine", "请问这个有蓝色的吗"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.action(), pb::Action::ContinueBot);

    let mut vip = route(
        "conv-vip",
        "my account was hacked, someone is spending my money",
    );
    vip.tier = pb::CustomerTier::Vip as i32;
    let resp = client.route(vip).await.unwrap().into_inner();
    assert_eq!(resp.action(), pb::Action::Escalate);
    // The rule names its queue (security), which beats the VIP tier's; the tier still boosts priority.
    assert_eq!((resp.queue.as_str(), resp.priority), ("security", 9));
    assert_eq!(resp.reasons[0].rule_id, "high_risk_intent");

    let mut vip = route("conv-vip-2", "我要投诉，你们太差了，转人工");
    vip.tier = pb::CustomerTier::Vip as i32;
    let resp = client.route(vip).await.unwrap().into_inner();
    assert_eq!((resp.queue.as_str(), resp.priority), ("senior", 7));
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_field_and_limit() {
    let mut client = common::client(common::shared()).await;
    let check = |r: Result<tonic::Response<_>, tonic::Status>, field: &str| {
        let status = r.map(|_: tonic::Response<()>| ()).expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{field} not named in {:?}",
            status.message()
        );
        // The same, as a google.rpc.BadRequest field violation for clients that read details.
        use tonic_types::StatusExt;
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations;
        assert!(
            violations.iter().any(|v| v.field.starts_with(field)),
            "{field}: {violations:?}"
        );
    };
    let unit = |r: Result<tonic::Response<pb::ClassifyResponse>, tonic::Status>| {
        r.map(|_| tonic::Response::new(()))
    };
    check(
        unit(
            client
                .classify(ClassifyRequest {
                    text: String::new(),
                })
                .await,
        ),
        "text",
    );
    check(
        unit(
            client
                .classify(ClassifyRequest {
                    text: " \t\n　".into(),
                })
                .await,
        ),
        "text",
    );
    let long = client
        .classify(ClassifyRequest {
            text: "好".repeat(2000),
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(
        long.message().contains("6000 bytes") && long.message().contains("4096"),
        "{}",
        long.message()
    );

    let too_many = client
        .classify_batch(ClassifyBatchRequest {
            texts: vec!["hi".into(); 65],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(
        too_many.message().contains("texts") && too_many.message().contains("64"),
        "{}",
        too_many.message()
    );
    let empty_item = client
        .classify_batch(ClassifyBatchRequest {
            texts: vec!["hi".into(), "".into()],
        })
        .await
        .unwrap_err();
    assert!(
        empty_item.message().contains("texts[1]"),
        "{}",
        empty_item.message()
    );

    let unit_r = |r: Result<tonic::Response<pb::RouteResponse>, tonic::Status>| {
        r.map(|_| tonic::Response::new(()))
    };
    let mut bad_channel = route("c1", "hello");
    bad_channel.channel = 42;
    check(unit_r(client.route(bad_channel).await), "channel");
    let mut bad_tier = route("c1", "hello");
    bad_tier.tier = -3;
    check(unit_r(client.route(bad_tier).await), "tier");
    check(
        unit_r(client.route(route(&"x".repeat(129), "hello")).await),
        "conversation_id",
    );
    check(
        unit_r(client.route(route("", "hello")).await),
        "conversation_id",
    );
    let mut long_msg_id = route("c1", "hello");
    long_msg_id.message_id = "m".repeat(200);
    check(unit_r(client.route(long_msg_id).await), "message_id");
}

#[tokio::test]
async fn long_text_within_the_byte_limit_is_cut_and_says_so() {
    let mut client = common::client(common::shared()).await;
    let text = "我的订单到哪了 ".repeat(100);
    let result = client
        .classify(ClassifyRequest { text })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(result.truncated);
    assert_eq!(result.tokens, 128);
}

#[tokio::test]
async fn an_expired_deadline_is_not_run() {
    let mut client = common::client(common::shared()).await;
    let mut req = tonic::Request::new(ClassifyRequest {
        text: "where is my order".into(),
    });
    req.set_timeout(Duration::from_nanos(1));
    let status = client.classify(req).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_requests_are_all_answered_in_shared_batches() {
    let server = common::shared();
    let client = common::client(server).await;
    let texts = [
        "转人工",
        "where is my order",
        "我要退款",
        "the app keeps crashing",
        "发票怎么开",
        "cancel my subscription",
    ];
    let calls = (0..200).map(|i| {
        let mut c = client.clone();
        let text = texts[i % texts.len()].to_string();
        tokio::spawn(async move { c.classify(ClassifyRequest { text }).await })
    });
    let mut max_batch = 0;
    for call in calls.collect::<Vec<_>>() {
        let resp = call
            .await
            .unwrap()
            .expect("every request answered OK")
            .into_inner();
        max_batch = max_batch.max(resp.timing.unwrap().batch_size);
    }
    assert!(max_batch > 1, "requests ran one by one");

    let scrape =
        prometheus_parse::Scrape::parse(server.metrics().lines().map(|l| Ok(l.to_string())))
            .unwrap();
    let batches = scrape
        .samples
        .iter()
        .find(|s| s.metric == "handoff_batch_size")
        .expect("batch size histogram");
    let prometheus_parse::Value::Histogram(buckets) = &batches.value else {
        panic!("not a histogram")
    };
    let le1 = buckets.iter().find(|b| b.less_than == 1.0).unwrap().count;
    let all = buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .unwrap()
        .count;
    assert!(
        all > le1,
        "metrics show no batch larger than 1 ({le1} of {all})"
    );
}

#[tokio::test]
async fn metrics_page_is_valid_prometheus_text_with_the_documented_metrics() {
    let server = common::shared();
    let mut client = common::client(server).await;
    client.route(route("conv-metrics", "转人工")).await.unwrap();
    let text = server.metrics();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    for name in [
        "handoff_requests_total",
        "handoff_request_duration_seconds",
        "handoff_inference_queue_wait_seconds",
        "handoff_tokenize_duration_seconds",
        "handoff_inference_duration_seconds",
        "handoff_batch_size",
        "handoff_batch_tokens",
        "handoff_inference_queue_depth",
        "handoff_decisions_total",
        "handoff_intents_total",
        "handoff_sentiments_total",
        "handoff_model_info",
        "handoff_model_loads_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_threads",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} missing from:\n{text}"
        );
    }
    // The process's own memory is real: a loaded model takes well over 50 MiB.
    let rss = common::counter(&text, "process_resident_memory_bytes ");
    assert!(rss > 50.0 * 1024.0 * 1024.0, "resident memory {rss}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "handoff_decisions_total"
                && s.labels.get("action") == Some("escalate")
                && s.labels.get("reason") == Some("explicit_request")
                && s.labels.get("channel") == Some("web")),
        "escalation decision not counted by action, reason and channel"
    );
    assert!(text.contains("le=\"0.001\""), "millisecond buckets");
}

#[tokio::test]
async fn health_and_reflection_list_the_services() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = common::shared();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving;
    assert_eq!(
        common::health_status(&server.endpoint(), "handoff.v1.Handoff").await,
        Some(serving)
    );

    let channel = tonic::transport::Channel::from_shared(server.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(resp)) = stream.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected answer")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "handoff.v1.Handoff",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
}

/// Sends raw bytes as a request body, to see what the server does with a message that is not one.
#[derive(Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let bytes = buf.chunk().to_vec();
        buf.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// A body that is not a valid request (a string that is not UTF-8, plain garbage) is the caller's
/// fault: INVALID_ARGUMENT naming the message, and counted with every other request.
#[tokio::test]
async fn undecodable_requests_are_invalid_argument_and_counted() {
    let server = common::Server::start(&[]);
    let channel = tonic::transport::Endpoint::new(server.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for (rpc, message, body) in [
        ("Classify", "ClassifyRequest", vec![0x0A, 0x02, 0xFF, 0xFE]), // text = invalid UTF-8
        ("Classify", "ClassifyRequest", vec![0xFF; 7]),
        ("Route", "RouteRequest", vec![0x0A, 0x01, 0xC3]),
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path =
            http::uri::PathAndQuery::from_str(&format!("/handoff.v1.Handoff/{rpc}")).unwrap();
        let err = grpc
            .unary(tonic::Request::new(body), path, RawCodec)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{rpc}: {err:?}");
        assert!(err.message().contains(message), "{rpc}: {}", err.message());
    }
    let metrics = server.metrics();
    for (rpc, n) in [("Classify", 2), ("Route", 1)] {
        let line = format!("handoff_requests_total{{rpc=\"{rpc}\",code=\"InvalidArgument\"}} {n}");
        let alt = format!("handoff_requests_total{{code=\"InvalidArgument\",rpc=\"{rpc}\"}} {n}");
        assert!(
            metrics.contains(&line) || metrics.contains(&alt),
            "{rpc}: {n} undecodable calls not counted:\n{metrics}"
        );
    }
}

/// A body over the documented limit (`max_text_bytes` × `max_batch_texts` + 64 KiB) is refused with
/// OUT_OF_RANGE naming the limit; one just under it is read (and refused for its texts' sizes).
#[tokio::test]
async fn a_body_over_the_documented_limit_is_out_of_range() {
    let server = common::shared();
    let mut client = common::client(server).await;
    let limit = 4096 * 64 + 64 * 1024;
    let over = client
        .classify(ClassifyRequest {
            text: "a".repeat(limit + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::OutOfRange, "{over:?}");
    assert!(over.message().contains(&limit.to_string()), "{over:?}");
    let under = client
        .classify(ClassifyRequest {
            text: "a".repeat(limit - 16),
        })
        .await
        .unwrap_err();
    assert_eq!(under.code(), Code::InvalidArgument, "{under:?}");
    assert!(
        under.message().contains("the limit is 4096 bytes"),
        "{under:?}"
    );
}

/// `handoff health`, the probe the container image runs: exit 0 and SERVING for a ready server,
/// non-zero when nothing answers.
#[tokio::test]
async fn the_health_subcommand_probes_readiness_and_liveness() {
    let server = common::shared();
    let addr = server.endpoint();
    let probe = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .arg("health")
            .args(args)
            .output()
            .unwrap()
    };
    for service in ["handoff.v1.Handoff", ""] {
        let out = probe(vec![
            "--addr".into(),
            addr.clone(),
            "--service".into(),
            service.into(),
        ]);
        assert!(out.status.success(), "{service:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = probe(vec![
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--timeout-ms".into(),
        "500".into(),
    ]);
    assert!(!out.status.success(), "nothing listens on {port}: {out:?}");
}

/// `--log-format json`: every log line is one JSON object with a level and a message, and the
/// decision event carries its fields (never the customer's text).
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let server = common::Server::start_with_log(
        &common::model_dir(),
        &["--log-format", "json"],
        "info,handoff=debug",
    );
    let mut client = common::client(&server).await;
    let text = "我的快递三天没动了，帮我查查";
    let served = client
        .route(route("json-logs", text))
        .await
        .unwrap()
        .into_inner();
    let log = server.log_text();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(records
        .iter()
        .all(|r| r["level"].is_string() && r["message"].is_string()));
    let decision = records
        .iter()
        .find(|r| r["decision_id"] == served.decision_id.as_str())
        .unwrap_or_else(|| panic!("no decision event in\n{log}"));
    assert_eq!(decision["policy_version"], served.policy_version.as_str());
    assert!(!log.contains(text));
}

/// The Python client example (`examples/python/client.py`) against a real server: classify, two
/// routed turns, and the error an empty text gets. `HANDOFF_PYTHON` names the interpreter with
/// grpcio (scripts/test.sh sets it to its virtual environment). Its own server: on the shared one,
/// the 200-request test beside it can fill the queue past the example's 2 s deadline.
#[tokio::test]
async fn the_python_client_example_runs() {
    let server = common::Server::start(&[]);
    let python = std::env::var("HANDOFF_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/client.py");
    let stdout = run_example(
        &server,
        &python,
        script,
        "the example needs grpcio and grpcio-tools: run scripts/test.sh, or set HANDOFF_PYTHON",
    )
    .await;
    assert!(stdout.contains("classify: intent="), "{stdout}");
    assert!(
        stdout.contains("route turn 1: action=ACTION_ESCALATE"),
        "{stdout}"
    );
    assert!(
        stdout.contains("empty text: INVALID_ARGUMENT: text must hold visible text"),
        "{stdout}"
    );
}

/// Run a client example (`program script --addr …`) against `server` off the runtime; its stdout,
/// once it has exited successfully (`hint` says what it needs when it did not).
async fn run_example(server: &common::Server, program: &str, script: &str, hint: &str) -> String {
    let addr = format!("127.0.0.1:{}", server.grpc_port);
    let (program, script) = (program.to_string(), script.to_string());
    let run = move || {
        std::process::Command::new(&program)
            .args([&script, "--addr", &addr])
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    };
    let out = tokio::task::spawn_blocking(run).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n({hint})",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The Node.js/TypeScript client example (`examples/node/`, built by scripts/test.sh: `npm ci &&
/// npm run build`) against a real server with a decision log: classify, two routed turns, feedback on
/// the escalation, and an error's BadRequest details decoded from `grpc-status-details-bin`.
#[tokio::test]
async fn the_node_client_example_runs() {
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node/dist/client.js");
    assert!(
        std::path::Path::new(client).exists(),
        "{client} is not built: run scripts/test.sh, or `npm ci && npm run build` in examples/node"
    );
    let log = std::env::temp_dir().join(format!("handoff-node-example-{}", std::process::id()));
    let dir = format!("decision_log.dir={}", log.display());
    let server = common::Server::start(&["--set", &dir]);
    let stdout = run_example(&server, "node", client, "node: apt-get install npm").await;
    assert!(stdout.contains("classify: intent="), "{stdout}");
    assert!(
        stdout.contains("route turn 1: action=ACTION_ESCALATE"),
        "{stdout}"
    );
    assert!(stdout.contains("feedback: recorded=true"), "{stdout}");
    assert!(
        stdout.contains("empty text: INVALID_ARGUMENT: text must hold visible text"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  bad request: field text: text must hold visible text"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&log);
}
