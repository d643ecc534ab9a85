//! Spans over OTLP: a real OTLP/gRPC receiver (the collector's TraceService) on a loopback port gets
//! one span per call from a real server, a child of the caller's `traceparent`, carrying the
//! decision's id, action, rule and versions, and never the customer's text.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use handoff::grpc::pb::{ClassifyRequest, RouteRequest};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

#[derive(Clone, Default)]
struct Receiver {
    /// Every span received, with its resource's service.name.
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A collector's TraceService on a loopback port, with TLS when given: (what it receives, its address).
async fn receiver(
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> (Receiver, std::net::SocketAddr) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let serve = receiver.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    tokio::spawn(async move {
        builder
            .add_service(TraceServiceServer::new(serve))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (receiver, otlp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_a_span_in_the_callers_trace_at_the_otlp_receiver() {
    let (receiver, otlp) = receiver(None).await;
    // Configured the way a collector's chart configures every workload: OpenTelemetry's own
    // variables (the config file's otlp_endpoint is exercised by the closed-port test below).
    let mut server = common::Server::start_with_env(
        &["--set", "tracing.export_delay_ms=100"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_SERVICE_NAME", "handoff-eu".to_string()),
        ],
    );
    let mut client = common::client(&server).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let message = "my account was hacked and someone bought things with my card";
    let mut request = tonic::Request::new(RouteRequest {
        conversation_id: "otlp-1".into(),
        text: message.into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    let routed = client.route(request).await.unwrap().into_inner();
    client
        .classify(ClassifyRequest {
            text: "where is my parcel".into(),
        })
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (route, classify) = loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let route = spans
            .iter()
            .find(|(_, s)| attribute(s, "rpc.method").as_deref() == Some("Route"))
            .cloned();
        let classify = spans
            .iter()
            .find(|(_, s)| attribute(s, "rpc.method").as_deref() == Some("Classify"))
            .cloned();
        if let (Some(r), Some(c)) = (route, classify) {
            break (r, c);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans not received: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (service, route) = route;
    assert_eq!(service, "handoff-eu", "OTEL_SERVICE_NAME names the service");
    assert_eq!(route.name, "handoff.v1.Handoff/Route");
    // The caller's trace, under the caller's span.
    assert_eq!(hex(&route.trace_id), trace_id);
    assert_eq!(hex(&route.parent_span_id), parent_id);
    assert_eq!(
        attribute(&route, "decision_id").as_deref(),
        Some(routed.decision_id.as_str())
    );
    let action = routed
        .action()
        .as_str_name()
        .trim_start_matches("ACTION_")
        .to_lowercase();
    assert_eq!(attribute(&route, "action"), Some(action));
    assert_eq!(
        attribute(&route, "rule").as_deref(),
        Some(routed.reasons[0].rule_id.as_str())
    );
    assert_eq!(
        attribute(&route, "model_version").as_deref(),
        Some(common::default_version())
    );
    assert_eq!(
        attribute(&route, "policy_version"),
        Some(routed.policy_version.clone())
    );
    assert_eq!(attribute(&route, "caller").as_deref(), Some("anonymous"));
    assert_eq!(
        attribute(&route, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        attribute(&route, "otel.status_code"),
        None,
        "an answered call is no error"
    );
    // A call without traceparent starts a trace of its own.
    let (_, classify) = classify;
    assert_ne!(hex(&classify.trace_id), trace_id);
    assert!(classify.parent_span_id.is_empty());
    // Never the customer's text, in any attribute of any span.
    for (_, span) in receiver.spans.lock().unwrap().iter() {
        for kv in &span.attributes {
            let value = kv
                .value
                .as_ref()
                .and_then(|v| text(v.value.as_ref()?))
                .unwrap_or_default();
            assert!(
                !value.contains("hacked") && !value.contains("parcel"),
                "span attribute {} holds customer text: {value}",
                kv.key
            );
        }
    }
    drop(client);
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
}

/// A collector that is not there: every failed export is counted (batches and spans), and the
/// server says so in its log once per interval, not once per batch.
#[tokio::test]
async fn failed_exports_are_counted_and_logged_once_per_interval() {
    let closed = common::free_port(); // nothing listens here
    let config =
        std::env::temp_dir().join(format!("handoff-otlp-closed-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{closed}\"\nexport_delay_ms = 50\n"),
    )
    .unwrap();
    let server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    let mut failures = 0.0;
    for round in 0..100 {
        client
            .classify(ClassifyRequest {
                text: format!("where is my parcel {round}"),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let metrics = server.metrics();
        failures = common::counter(&metrics, "handoff_span_export_failures_total");
        if failures >= 3.0 {
            assert!(
                common::counter(&metrics, "handoff_spans_dropped_total") >= failures,
                "{metrics}"
            );
            break;
        }
    }
    assert!(failures >= 3.0, "failed exports not counted: {failures}");
    let log = server.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("exporting") && l.contains("spans failed"))
        .count();
    assert_eq!(lines, 1, "{log}");
}

/// A collector behind TLS: spans reach it over `https://` when its certificate checks out against
/// the CA named by OpenTelemetry's own variable, and a collector whose certificate another CA signed
/// gets none (every export fails and is counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_whose_certificate_is_verified() {
    let certs = common::dev_certs("otlp");
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(certs.join("server.pem")).unwrap(),
        std::fs::read(certs.join("server.key")).unwrap(),
    );
    let (receiver, otlp) = receiver(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
    .await;
    let endpoint = format!("https://localhost:{}", otlp.port());
    let start = |ca: &str| {
        common::Server::start_with_env(
            &["--set", "tracing.export_delay_ms=50"],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    certs.join(ca).display().to_string(),
                ),
            ],
        )
    };

    let server = start("ca.pem");
    let mut client = common::client(&server).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.spans.lock().unwrap().is_empty() {
        client
            .classify(ClassifyRequest {
                text: "where is my parcel".into(),
            })
            .await
            .unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "no span over TLS: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    drop(server);

    let before = receiver.spans.lock().unwrap().len();
    let rogue = start("rogue-ca.pem");
    let mut client = common::client(&rogue).await;
    let mut failures = 0.0;
    for _ in 0..100 {
        client
            .classify(ClassifyRequest {
                text: "where is my parcel".into(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        failures = common::counter(&rogue.metrics(), "handoff_span_export_failures_total");
        if failures >= 1.0 {
            break;
        }
    }
    assert!(failures >= 1.0, "an unverified collector was not refused");
    assert_eq!(receiver.spans.lock().unwrap().len(), before);
}
