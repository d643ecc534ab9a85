//! Metric names, their descriptions and buckets, the Prometheus exporter, and tracing setup.
//! Every metric the service records is named here, so dashboards have one place to look.

pub mod explain;
pub mod otel;
pub mod throttle;

use std::net::SocketAddr;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

pub const REQUESTS: &str = "handoff_requests_total";
pub const REQUEST_DURATION: &str = "handoff_request_duration_seconds";
pub const INFERENCE_QUEUE_DEPTH: &str = "handoff_inference_queue_depth";
pub const INFERENCE_QUEUE_WAIT: &str = "handoff_inference_queue_wait_seconds";
pub const TOKENIZE_TIME: &str = "handoff_tokenize_duration_seconds";
pub const INFERENCE_TIME: &str = "handoff_inference_duration_seconds";
pub const BATCH_SIZE: &str = "handoff_batch_size";
pub const INFERENCE_RUNS: &str = "handoff_inference_runs_total";
pub const SPLIT_YIELDS: &str = "handoff_split_runs_given_way_total";
pub const BATCH_TOKENS: &str = "handoff_batch_tokens";
pub const SHED: &str = "handoff_shed_requests_total";
pub const SKIPPED: &str = "handoff_skipped_requests_total";
pub const DECISIONS: &str = "handoff_decisions_total";
pub const INTENTS: &str = "handoff_intents_total";
pub const SENTIMENTS: &str = "handoff_sentiments_total";
pub const MODEL_INFO: &str = "handoff_model_info";
pub const MODEL_LOADS: &str = "handoff_model_loads_total";
pub const POLICY_RELOADS: &str = "handoff_policy_reloads_total";
pub const STATE_ERRORS: &str = "handoff_state_errors_total";
pub const STATE_REPAIRS: &str = "handoff_state_repairs_total";
pub const ROUTE_RETRIES: &str = "handoff_route_retries_total";
pub const SHADOW_COMPARISONS: &str = "handoff_shadow_comparisons_total";
pub const SHADOW_DROPPED: &str = "handoff_shadow_dropped_total";
pub const SHADOW_ERRORS: &str = "handoff_shadow_errors_total";
pub const TLS_RELOADS: &str = "handoff_tls_reloads_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "handoff_tls_handshake_failures_total";
pub const AUTH_REFUSALS: &str = "handoff_auth_refusals_total";
pub const AUDIT_DROPPED: &str = "handoff_audit_dropped_total";
pub const DECISION_LOG_WRITTEN: &str = "handoff_decision_log_records_total";
pub const DECISION_LOG_DROPPED: &str = "handoff_decision_log_dropped_total";
pub const DECISION_LOG_ERRORS: &str = "handoff_decision_log_write_errors_total";
pub const FEEDBACK: &str = "handoff_feedback_total";
pub const QUEUE_CAPACITY: &str = "handoff_queue_capacity";
pub const REPLY_WINDOW: &str = "handoff_reply_window_raised_total";
pub const CACHE_LOOKUPS: &str = "handoff_cache_lookups_total";
pub const CACHE_ENTRIES: &str = "handoff_cache_entries";
pub const CACHE_CAPACITY: &str = "handoff_cache_capacity";
pub const SPAN_EXPORT_FAILURES: &str = "handoff_span_export_failures_total";
pub const SPANS_DROPPED: &str = "handoff_spans_dropped_total";
pub const LATE_ANSWERS: &str = "handoff_late_answers_total";
pub const FLEET_REPLICAS: &str = "handoff_fleet_replicas";
/// Standard process metrics (`metrics-process`), named as every Prometheus client names them.
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";

/// Millisecond-scale latency buckets, in seconds: 0.1 ms to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.030, 0.050,
    0.075, 0.100, 0.150, 0.250, 0.500, 1.0, 2.5, 5.0,
];
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
const TOKEN_BUCKETS: &[f64] = &[16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0];

/// Install the global recorder and serve `/metrics` on `addr`. Call once per process, inside a
/// tokio runtime (the exporter's HTTP listener runs on it).
pub fn install_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_TOKENS.into()), TOKEN_BUCKETS)?
        .install()?;
    describe();
    zero_failure_counters();
    process_metrics();
    Ok(())
}

/// The process's own CPU seconds, resident memory, threads and file descriptors, in the names
/// every Prometheus client uses (`process_cpu_seconds_total`, `process_resident_memory_bytes` …),
/// read from /proc every second: a replica's cost next to its traffic, and its memory over time.
fn process_metrics() {
    let collector = metrics_process::Collector::default();
    collector.describe();
    collector.collect();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            collector.collect();
        }
    });
}

/// Failure counters exist from the start at 0, so `increase()` in an alert sees the first failure
/// and a dashboard panel shows 0 rather than "no data".
fn zero_failure_counters() {
    for reason in ["queue_full", "deadline", "concurrency", "rate_limit"] {
        metrics::counter!(SHED, "reason" => reason).increment(0);
    }
    for reason in ["cancelled", "deadline"] {
        metrics::counter!(SKIPPED, "reason" => reason).increment(0);
    }
    for code in ["unauthenticated", "permission_denied"] {
        metrics::counter!(AUTH_REFUSALS, "code" => code).increment(0);
    }
    for reason in ["refused", "timeout"] {
        metrics::counter!(TLS_HANDSHAKE_FAILURES, "reason" => reason).increment(0);
    }
    for repair in ["unreadable", "clamped", "oversized", "wrong_type"] {
        metrics::counter!(STATE_REPAIRS, "repair" => repair).increment(0);
    }
    metrics::counter!(POLICY_RELOADS, "result" => "error").increment(0);
    metrics::counter!(TLS_RELOADS, "result" => "error").increment(0);
    metrics::counter!(MODEL_LOADS, "result" => "refused").increment(0);
    for kind in ["answered", "expired"] {
        metrics::counter!(ROUTE_RETRIES, "kind" => kind).increment(0);
    }
    for rpc in ["Classify", "Route"] {
        metrics::counter!(LATE_ANSWERS, "rpc" => rpc).increment(0);
    }
    for counter in [
        STATE_ERRORS,
        SHADOW_DROPPED,
        SHADOW_ERRORS,
        AUDIT_DROPPED,
        DECISION_LOG_DROPPED,
        DECISION_LOG_ERRORS,
        SPAN_EXPORT_FAILURES,
        SPANS_DROPPED,
    ] {
        metrics::counter!(counter).increment(0);
    }
}

fn describe() {
    describe_counter!(REQUESTS, "gRPC requests by rpc and status code");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "gRPC request duration by rpc and status code"
    );
    describe_gauge!(
        INFERENCE_QUEUE_DEPTH,
        "Requests waiting in the batcher queue"
    );
    describe_histogram!(
        INFERENCE_QUEUE_WAIT,
        Unit::Seconds,
        "Time a request waited in the queue before its batch ran"
    );
    describe_histogram!(TOKENIZE_TIME, Unit::Seconds, "Tokenisation time per text");
    describe_histogram!(INFERENCE_TIME, Unit::Seconds, "Model run time per batch");
    describe_histogram!(BATCH_SIZE, "Texts per model batch");
    describe_counter!(
        INFERENCE_RUNS,
        "Model runs by mode: whole (the whole graph on one worker, any batch size) or split (one text on two threads, when nothing else is running)"
    );
    describe_counter!(
        SPLIT_YIELDS,
        "Split runs whose helper thread stopped early to give its core to a run that was waiting for one"
    );
    describe_histogram!(BATCH_TOKENS, "Padded tokens per model batch");
    describe_counter!(
        SHED,
        "Requests refused with RESOURCE_EXHAUSTED before inference, by reason (queue_full, deadline, concurrency, rate_limit)"
    );
    describe_counter!(
        SKIPPED,
        "Queued requests not run because the caller left or the deadline passed"
    );
    describe_counter!(
        DECISIONS,
        "Route decisions by action, queue, top reason and channel"
    );
    describe_gauge!(
        FLEET_REPLICAS,
        "Replicas of the fleet (sharing this Redis) serving each model version, as this replica last read their reports"
    );
    describe_counter!(
        LATE_ANSWERS,
        "Calls answered after the caller's deadline by this server's clock (which starts when the call reaches it), by rpc"
    );
    describe_counter!(INTENTS, "Classified messages by top intent");
    describe_counter!(SENTIMENTS, "Classified messages by top sentiment");
    describe_gauge!(
        MODEL_INFO,
        "1 for the serving model, labelled with its name and version"
    );
    describe_counter!(
        MODEL_LOADS,
        "Model package loads (load, validate, warm up) by result"
    );
    describe_counter!(
        SHADOW_COMPARISONS,
        "Shadow comparisons of a candidate with the live model, by versions, head and agreement"
    );
    describe_counter!(
        STATE_ERRORS,
        "Route decisions made from the message alone: the state store failed"
    );
    describe_counter!(
        STATE_REPAIRS,
        "Stored conversation states that were unreadable (started afresh) or out of range (clamped)"
    );
    describe_counter!(
        ROUTE_RETRIES,
        "Route calls re-sending a message_id already decided: answered with the first answer, or expired (decided again, not counted)"
    );
    describe_counter!(
        POLICY_RELOADS,
        "Policy file reloads by result (a refused file keeps the running policy)"
    );
    describe_counter!(
        SHADOW_DROPPED,
        "Shadow samples dropped because the shadow worker was busy"
    );
    describe_counter!(SHADOW_ERRORS, "Shadow batches the candidate failed to run");
    describe_counter!(
        TLS_RELOADS,
        "TLS certificate reloads by result (refused files keep the running ones)"
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed (refused or timed out)"
    );
    describe_counter!(
        AUTH_REFUSALS,
        "Requests refused before any work: unauthenticated or permission_denied"
    );
    describe_counter!(
        AUDIT_DROPPED,
        "Audit records dropped: the writer fell behind"
    );
    describe_counter!(
        DECISION_LOG_WRITTEN,
        "Decision-log lines written, by kind (decision, feedback)"
    );
    describe_counter!(
        DECISION_LOG_DROPPED,
        "Decision-log lines dropped: the writer fell behind"
    );
    describe_counter!(
        DECISION_LOG_ERRORS,
        "Decision-log writes, rotations or flushes that failed"
    );
    describe_counter!(
        FEEDBACK,
        "Feedback calls by outcome (recorded, duplicate, conflict, unknown, busy, unwritten)"
    );
    describe_counter!(
        SPAN_EXPORT_FAILURES,
        "Span batches the OTLP collector did not take"
    );
    describe_counter!(SPANS_DROPPED, "Spans lost in failed exports");
    describe_gauge!(
        QUEUE_CAPACITY,
        "Agents usually staffing each queue, from the policy file (a hint to set escalations against)"
    );
    describe_counter!(
        CACHE_LOOKUPS,
        "Result cache lookups by result (hit: no inference; miss: the text went to the batcher)"
    );
    describe_gauge!(CACHE_ENTRIES, "Model results held in the result cache");
    describe_gauge!(CACHE_CAPACITY, "Most model results the result cache holds");
    describe_counter!(
        REPLY_WINDOW,
        "Decisions whose priority rose because the channel's reply window is about to close, by channel"
    );
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); `json`: one JSON object per line, for
/// log pipelines that index fields. With `tracer`, spans are exported too (their own filter: a quiet
/// log level must not cost the traces). Customer text is never logged.
pub fn init_tracing(json: bool, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        // Colour codes only for a person at a terminal: in a file or a log pipeline they are noise.
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed()
    };
    let spans = tracer.map(|t| {
        tracing_opentelemetry::layer().with_tracer(t).with_filter(
            tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.target().starts_with("handoff")
            }),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init();
}
