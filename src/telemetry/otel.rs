//! Distributed tracing: one span per gRPC call, joined to the caller's trace through W3C
//! `traceparent` metadata, exported over OTLP/gRPC when `[tracing] otlp_endpoint` is set. Spans
//! carry ids, labels and versions, never customer text.

use std::time::Duration;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `[tracing]` in the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/gRPC collector, e.g. "http://otel-collector:4317" or "https://…" (TLS); none: no spans
    /// are exported.
    pub otlp_endpoint: Option<String>,
    /// PEM CA the https:// collector's certificate is checked against; none: the system's roots.
    pub otlp_ca: Option<std::path::PathBuf>,
    /// `service.name` of the exported spans.
    #[serde(deserialize_with = "crate::config::lenient_string")]
    pub service_name: String,
    /// Share of traces started here that are kept, 0 to 1; a caller's sampled `traceparent` is
    /// always followed.
    pub sample_ratio: f64,
    /// Spans wait at most this long before they are sent.
    pub export_delay_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            otlp_ca: None,
            service_name: "handoff".into(),
            sample_ratio: 1.0,
            export_delay_ms: 2000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("[tracing] sample_ratio = {0} is outside [0, 1]")]
    SampleRatio(f64),
    #[error(
        "[tracing] otlp_endpoint {0:?} must start with http:// (plain OTLP/gRPC) or https:// (TLS)"
    )]
    Endpoint(String),
    #[error("[tracing] otlp_ca is set but otlp_endpoint {0:?} is not https://")]
    CaWithoutTls(String),
    #[error("reading [tracing] otlp_ca {path}")]
    Ca {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the OTLP exporter for {endpoint}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

impl TracingConfig {
    pub fn validate(&self) -> Result<(), TracingError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(TracingError::SampleRatio(self.sample_ratio));
        }
        // Any other scheme would fail every export silently, so it is refused at start.
        if let Some(e) = &self.otlp_endpoint {
            if !e.starts_with("http://") && !e.starts_with("https://") {
                return Err(TracingError::Endpoint(e.clone()));
            }
            if self.otlp_ca.is_some() && !e.starts_with("https://") {
                return Err(TracingError::CaWithoutTls(e.clone()));
            }
        }
        Ok(())
    }
}

/// The collector's certificate is checked against `otlp_ca`, else the system's roots; its name is the
/// endpoint's host.
fn tls(config: &TracingConfig) -> Result<tonic::transport::ClientTlsConfig, TracingError> {
    let tls = tonic::transport::ClientTlsConfig::new();
    Ok(match &config.otlp_ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TracingError::Ca {
                path: path.clone(),
                source,
            })?;
            tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
        }
        None => tls.with_native_roots(),
    })
}

static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Spans are exported: without an exporter the per-call span is not built at all (it would cost
/// every call and change the log lines for nothing).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The tracer provider, when spans are exported: `shutdown` sends what is still buffered.
pub struct Exporter(SdkTracerProvider);

impl Exporter {
    /// Needs a Tokio runtime (the OTLP channel lives on it). None when no endpoint is configured.
    pub fn build(
        config: &TracingConfig,
    ) -> Result<Option<(Exporter, opentelemetry_sdk::trace::Tracer)>, TracingError> {
        config.validate()?;
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5));
        if endpoint.starts_with("https://") {
            builder = builder.with_tls_config(tls(config)?);
        }
        let exporter = builder.build().map_err(|source| TracingError::Exporter {
            endpoint: endpoint.clone(),
            source,
        })?;
        let exporter = Counted(exporter);
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.export_delay_ms.max(10)))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("handoff");
        EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Some((Exporter(provider), tracer)))
    }

    /// Export what is buffered and stop (blocking: call off the async threads).
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!("flushing spans at shutdown failed: {e}");
        }
    }
}

/// A collector that is down fails every export: counted, and logged once per interval (the SDK's
/// own report of it goes to its internal log, which nobody reads).
#[derive(Debug)]
struct Counted<E>(E);

static EXPORT_FAILURES: super::throttle::Throttled =
    super::throttle::Throttled::new(Duration::from_secs(30));

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let spans = batch.len() as u64;
        let exported = self.0.export(batch).await;
        if let Err(e) = &exported {
            metrics::counter!(super::SPAN_EXPORT_FAILURES).increment(1);
            metrics::counter!(super::SPANS_DROPPED).increment(spans);
            EXPORT_FAILURES.error(|| format!("exporting {spans} spans failed: {e}"));
        }
        exported
    }

    fn shutdown_with_timeout(
        &mut self,
        timeout: Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Make `span` a child of the caller's span named in `traceparent` (if any: otherwise it starts a
/// trace of its own). A no-op without an exporter.
pub fn follow_caller(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}
