//! The outermost layer of our gRPC services: every call of `handoff.v1` runs within its deadline and
//! is counted and timed by rpc and status code, however it ends: answered, refused by the guard,
//! undecodable, past its deadline, or abandoned by the caller.
//!
//! It sits inside tonic's own `grpc-timeout` timer, which answers CANCELLED "Timeout expired" (the
//! wrong code) when it fires first; tonic polls this layer before its timer, so answering
//! `ANSWER_EARLY` before the caller's deadline gives the caller DEADLINE_EXCEEDED.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tracing::Instrument;

use super::deadline;
use crate::telemetry as t;

/// The deadline a call runs under, for the handlers (the batcher refuses work that cannot make it).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Option<Instant>);

impl Deadline {
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Instant> {
        request.extensions().get::<Deadline>().and_then(|d| d.0)
    }
}

#[derive(Clone)]
pub struct ObserveLayer {
    /// For `handoff.v1.Handoff` callers that send no deadline: their wait stays bounded too.
    default_deadline: Option<Duration>,
}

impl ObserveLayer {
    pub fn new(default_deadline: Option<Duration>) -> Self {
        ObserveLayer { default_deadline }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

/// `/handoff.v1.Handoff/Route` → (`Route`, is the Handoff service); health and reflection: None.
fn rpc_of(path: &str) -> Option<(&'static str, bool)> {
    let found = super::rpcs::lookup(path)?;
    Some((found.method, found.service == super::rpcs::Service::Handoff))
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Observe<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some((rpc, handoff)) = rpc_of(req.uri().path()) else {
            return Box::pin(inner.call(req));
        };
        let arrived = Instant::now();
        let default = if handoff {
            self.layer.default_deadline
        } else {
            None // model loads take seconds: admin calls wait only on their caller's deadline
        };
        let until =
            deadline::from_headers(req.headers(), arrived).or_else(|| default.map(|d| arrived + d));
        req.extensions_mut().insert(Deadline(until));
        // One span per call, a child of the caller's when it sent `traceparent`; the handlers fill
        // in what they decided.
        let service = if handoff {
            super::HANDOFF_SERVICE
        } else {
            super::ADMIN_SERVICE
        };
        let span = if crate::telemetry::otel::exporting() {
            tracing::info_span!(
                "rpc",
                otel.name = format!("{service}/{rpc}"),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = rpc,
                rpc.grpc.status_code = tracing::field::Empty,
                caller = tracing::field::Empty,
                decision_id = tracing::field::Empty,
                action = tracing::field::Empty,
                rule = tracing::field::Empty,
                model_version = tracing::field::Empty,
                policy_version = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        crate::telemetry::otel::follow_caller(&span, req.headers());
        let call = span.in_scope(|| inner.call(req));
        let call_span = span.clone();
        Box::pin(
            async move {
                let mut record = CallRecord {
                    rpc,
                    started: arrived,
                    done: false,
                };
                let response = match until {
                    Some(d) => match tokio::time::timeout_at(d.into(), call).await {
                        Ok(r) => r,
                        Err(_) => Ok(Status::deadline_exceeded(
                            "the request's deadline passed before it was answered",
                        )
                        .into_http()),
                    },
                    None => call.await,
                };
                // `until` is the caller's deadline less ANSWER_EARLY: past the deadline itself, the
                // answer is late whatever its code (a starved runtime fires timers late).
                if until.is_some_and(|d| Instant::now() > d + deadline::ANSWER_EARLY) {
                    metrics::counter!(t::LATE_ANSWERS, "rpc" => rpc).increment(1);
                }
                if let Ok(r) = &response {
                    let code = code_of(r);
                    mark_span(&call_span, code);
                    record.finish(code_name(code));
                }
                response
            }
            .instrument(span),
        )
    }
}

/// A unary error is a headers-only response carrying `grpc-status`; an answer carries it in the
/// trailers, after the body.
fn code_of<B>(response: &http::Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

fn code_name(code: i32) -> String {
    match code {
        0 => "OK".to_string(),
        n => format!("{:?}", tonic::Code::from_i32(n)),
    }
}

/// The numeric status on the span (OpenTelemetry's RPC conventions), and an error status for the
/// codes that are the server's fault, so trace viewers flag them.
fn mark_span(span: &tracing::Span, code: i32) {
    use tonic::Code;
    span.record("rpc.grpc.status_code", code);
    let server_fault = matches!(
        Code::from_i32(code),
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    );
    if server_fault {
        span.record("otel.status_code", "ERROR");
    }
}

struct CallRecord {
    rpc: &'static str,
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(&mut self, code: String) {
        self.done = true;
        metrics::counter!(t::REQUESTS, "rpc" => self.rpc, "code" => code.clone()).increment(1);
        metrics::histogram!(t::REQUEST_DURATION, "rpc" => self.rpc, "code" => code)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Dropped before it finished: the caller went away (tonic drops the call).
impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.done {
            self.finish("Cancelled".to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_are_a_closed_set() {
        assert_eq!(rpc_of("/handoff.v1.Handoff/Route"), Some(("Route", true)));
        assert_eq!(
            rpc_of("/handoff.v1.ModelAdmin/Rollback"),
            Some(("Rollback", false))
        );
        assert_eq!(
            rpc_of("/handoff.v1.Handoff/AnythingElse"),
            Some(("unknown", true))
        );
        assert_eq!(rpc_of("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn the_code_comes_from_grpc_status() {
        let ok = http::Response::new(());
        assert_eq!(code_name(code_of(&ok)), "OK");
        let refused = Status::invalid_argument("x").into_http::<()>();
        assert_eq!(code_of(&refused), 3);
        assert_eq!(code_name(code_of(&refused)), "InvalidArgument");
    }
}
