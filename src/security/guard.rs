//! The tower layer in front of every gRPC method: who is calling (API key or client certificate),
//! may they call this method (scope), are they within their rate limit, and is there room for one
//! more request in flight. Refusals are answered at once with a gRPC status and counted; admitted
//! requests carry their `Caller` in the request extensions for the handlers and the audit log.
//! Refused admin calls are audited here, since their handlers never run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tonic::Status;

use super::auth::{Authenticator, Caller, Scope};
use crate::audit::AuditLog;
use crate::telemetry as t;
use crate::tenants::{Tenant, Tenants};

/// What tonic records for a TLS connection; its name is only reachable through the stream type.
type TlsInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

#[derive(Clone)]
pub struct GuardLayer {
    auth: Arc<Authenticator>,
    tenants: Arc<Tenants>,
    audit: AuditLog,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl GuardLayer {
    pub fn new(
        auth: Arc<Authenticator>,
        tenants: Arc<Tenants>,
        audit: AuditLog,
        max_in_flight: usize,
    ) -> Self {
        GuardLayer {
            auth,
            tenants,
            audit,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Guard<S>
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
        // The clone that was polled ready serves this call (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(scope) = Scope::for_path(req.uri().path()) else {
            return Box::pin(inner.call(req)); // health checks and reflection are open
        };
        match self.admit(&req, scope) {
            Ok((caller, tenant, permit)) => {
                tracing::Span::current().record("caller", caller.name.as_str());
                req.extensions_mut().insert(caller);
                if let Some(tenant) = tenant {
                    req.extensions_mut().insert(tenant);
                }
                let call = inner.call(req);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit); // held until the answer is complete
                    response
                })
            }
            Err(status) => {
                if scope == Scope::Admin {
                    self.audit_refusal(&req, &status);
                }
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// `who` (a caller, a tenant) is over its limit of `rate` requests a second: refused at once,
/// counted, with the wait for the next token as the retry delay.
fn over_rate(who: &str, rate: f64) -> Status {
    metrics::counter!(t::SHED, "reason" => "rate_limit").increment(1);
    crate::grpc::status::exhausted(
        format!("{who} is over its rate limit of {rate} requests/s; retry with backoff"),
        Duration::from_secs_f64(1.0 / rate.max(1e-3)),
    )
}

/// The client certificate rustls verified, under mutual TLS.
fn peer_cert<B>(
    req: &http::Request<B>,
) -> Option<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    req.extensions()
        .get::<TlsInfo>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().cloned())
}

impl<S> Guard<S> {
    /// An admin call refused before its handler: the same record an admin handler writes.
    fn audit_refusal<B>(&self, req: &http::Request<B>, status: &Status) {
        let caller = self
            .layer
            .auth
            .identify(req.headers(), peer_cert(req).as_ref())
            .map_or_else(|_| "unauthenticated".to_string(), |c| c.name.clone());
        let rpc = req.uri().path().rsplit('/').next().unwrap_or_default();
        // The path and the refusal (which may name a certificate's CN) come from the caller: redacted.
        self.layer.audit.record(
            "admin",
            serde_json::json!({ "caller": caller }),
            serde_json::json!({
                "rpc": rpc,
                "result": format!("{:?}: {}", status.code(), status.message()),
            }),
        );
    }

    /// The tenant a call acts for: the caller's own, or, for an operator, the one the
    /// `x-handoff-tenant` header names (on a server without tenants, the implicit one). Calls that
    /// touch a tenant's state or policy need one; Classify and the model operations do not.
    fn tenant<B>(
        &self,
        req: &http::Request<B>,
        caller: &Caller,
        scope: Scope,
    ) -> Result<Option<Arc<Tenant>>, Status> {
        let tenants = &self.layer.tenants;
        let asked = match req.headers().get(crate::tenants::HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                Status::invalid_argument(format!("{} is not text", crate::tenants::HEADER))
            })?),
        };
        let denied = |why: String| {
            metrics::counter!(t::AUTH_REFUSALS, "code" => "permission_denied").increment(1);
            Err(Status::permission_denied(why))
        };
        if scope == Scope::Admin {
            return match &caller.tenant {
                Some(own) => denied(format!(
                    "caller {:?} belongs to tenant {own:?}: model operations are for operator callers (no tenant)",
                    caller.name
                )),
                None => Ok(None),
            };
        }
        let name = match (&caller.tenant, asked) {
            (Some(own), Some(other)) if own != other => {
                return denied(format!(
                    "caller {:?} belongs to tenant {own:?} and cannot act for tenant {other:?}",
                    caller.name
                ))
            }
            (Some(own), _) => own.as_str(),
            (None, Some(named)) => named,
            (None, None) => match tenants.implicit() {
                Some(t) => return Ok(Some(t.clone())),
                None if scope == Scope::Classify => return Ok(None),
                None => {
                    return Err(Status::invalid_argument(format!(
                        "{}: this server serves several tenants ({}); an operator caller names the one it acts for",
                        crate::tenants::HEADER,
                        tenants.names()
                    )))
                }
            },
        };
        let tenant = tenants.find(name).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{}: no tenant {name:?} (tenants: {})",
                crate::tenants::HEADER,
                tenants.names()
            ))
        })?;
        tenant
            .admit()
            .map_err(|rate| over_rate(&format!("tenant {:?}", tenant.name), rate))?;
        Ok(Some(tenant.clone()))
    }

    #[allow(clippy::type_complexity)]
    fn admit<B>(
        &self,
        req: &http::Request<B>,
        scope: Scope,
    ) -> Result<
        (
            Arc<Caller>,
            Option<Arc<Tenant>>,
            tokio::sync::OwnedSemaphorePermit,
        ),
        Status,
    > {
        let caller = self
            .layer
            .auth
            .identify(req.headers(), peer_cert(req).as_ref())
            .map_err(|e| {
                metrics::counter!(t::AUTH_REFUSALS, "code" => "unauthenticated").increment(1);
                Status::unauthenticated(e.to_string())
            })?;
        if !caller.may(scope) {
            metrics::counter!(t::AUTH_REFUSALS, "code" => "permission_denied").increment(1);
            return Err(Status::permission_denied(format!(
                "caller {:?} lacks the {:?} scope that {} needs",
                caller.name,
                scope.as_str(),
                req.uri().path()
            )));
        }
        caller
            .admit()
            .map_err(|rate| over_rate(&format!("caller {:?}", caller.name), rate))?;
        let tenant = self.tenant(req, &caller, scope)?;
        let permit = self
            .layer
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                metrics::counter!(t::SHED, "reason" => "concurrency").increment(1);
                // The wait is unknown here; a short hint spreads the retries.
                crate::grpc::status::exhausted(
                    format!(
                        "server is at its limit of {} requests in flight; retry with backoff",
                        self.layer.max_in_flight
                    ),
                    Duration::from_millis(100),
                )
            })?;
        Ok((caller, tenant, permit))
    }
}
