//! The `handoff.v1.Handoff` service.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::observe::Deadline;
use super::pb::handoff_server::Handoff;
use super::pb::{
    ClassifyBatchRequest, ClassifyBatchResponse, ClassifyRequest, ClassifyResponse,
    FeedbackRequest, FeedbackResponse, ForgetCustomerRequest, ForgetCustomerResponse, RouteRequest,
    RouteResponse,
};
use super::{convert, validate};
use crate::audit::AuditLog;
use crate::batcher::{Batcher, Inferred};
use crate::config::{Limits, Stores};
use crate::customers::CustomerMemory;
use crate::decision_log::{FeedbackEntry, Journal};
use crate::model::repository::compare_versions;
use crate::policy::Turn;
use crate::route::Router;
use crate::telemetry as t;
use crate::tenants::Tenant;

pub struct HandoffService {
    batcher: Arc<Batcher>,
    router: Router,
    limits: Limits,
    audit: AuditLog,
    journal: Arc<Journal>,
}

impl HandoffService {
    pub fn new(
        batcher: Arc<Batcher>,
        stores: Stores,
        customers: CustomerMemory,
        limits: Limits,
        audit: AuditLog,
        journal: Arc<Journal>,
    ) -> Self {
        let router = Router::new(
            batcher.clone(),
            stores.conversations,
            Arc::new(customers),
            audit.clone(),
            journal.clone(),
        );
        HandoffService {
            router,
            batcher,
            limits,
            audit,
            journal,
        }
    }
}

/// The tenant the guard admitted the call for: Route, Feedback and ForgetCustomer always have one.
fn tenant_of<T>(request: &Request<T>) -> Result<Arc<Tenant>, Status> {
    request
        .extensions()
        .get::<Arc<Tenant>>()
        .cloned()
        .ok_or_else(|| Status::internal("no tenant was resolved for this call"))
}

fn count_labels(inf: &Inferred) {
    let m = &inf.model;
    tracing::Span::current().record("model_version", m.version());
    metrics::counter!(t::INTENTS, "intent" => m.intent_labels()[inf.prediction.top_intent()].clone()).increment(1);
    metrics::counter!(t::SENTIMENTS, "sentiment" => m.sentiment_labels()[inf.prediction.top_sentiment()].clone())
        .increment(1);
}

#[tonic::async_trait]
impl Handoff for HandoffService {
    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        let deadline = Deadline::of(&request);
        {
            let started = Instant::now();
            let req = request.into_inner();
            validate::text("text", &req.text, &self.limits)?;
            let inf = self.batcher.infer(req.text, deadline).await?;
            count_labels(&inf);
            Ok(Response::new(ClassifyResponse {
                result: Some(convert::classification(&inf)),
                model: Some(convert::model_ref(&inf.model)),
                timing: Some(convert::timing(started, [&inf])),
            }))
        }
    }

    async fn classify_batch(
        &self,
        request: Request<ClassifyBatchRequest>,
    ) -> Result<Response<ClassifyBatchResponse>, Status> {
        let deadline = Deadline::of(&request);
        {
            let started = Instant::now();
            let req = request.into_inner();
            validate::texts("texts", &req.texts, &self.limits)?;
            let results = self.batcher.infer_many(req.texts, deadline).await?;
            results.iter().for_each(count_labels);
            // A swap between two texts' batches could mix versions: name the highest one used
            // (by version order, as the repository compares them: 1.10.0 > 1.9.0).
            let model = results
                .iter()
                .map(|r| &r.model)
                .max_by(|a, b| compare_versions(a.version(), b.version()))
                .cloned();
            Ok(Response::new(ClassifyBatchResponse {
                results: results.iter().map(convert::classification).collect(),
                model: model.map(|m| convert::model_ref(&m)),
                timing: Some(convert::timing(started, &results)),
            }))
        }
    }

    async fn route(
        &self,
        request: Request<RouteRequest>,
    ) -> Result<Response<RouteResponse>, Status> {
        let (started, deadline) = (Instant::now(), Deadline::of(&request));
        let caller = super::caller_name(&request);
        let tenant = tenant_of(&request)?;
        let req = request.into_inner();
        let input = validate::route(&req, &self.limits)?;
        let policy = tenant.policy.usable().map_err(|why| {
            Status::unavailable(format!(
                "tenant {:?} has no valid policy yet: {why}",
                tenant.name
            ))
        })?;
        let caller_turn = Turn {
            message_id: &req.message_id,
            text: &req.text,
            channel: input.channel,
            tier: input.tier,
            attributes: Some(&req.attributes),
            bot_fallbacks: req.bot_fallbacks,
            bot_failed: req.bot_failed,
            accepted_offer: req.accepted_offer,
            declined_offer: req.declined_offer,
            handed_back: req.handed_back,
            unix_seconds: input.now,
            sent_unix_seconds: input.sent,
            ..Default::default()
        };
        let customer = (!req.customer_id.is_empty()).then_some(req.customer_id.as_str());
        let routed = self
            .router
            .route(
                &tenant,
                policy,
                &req.conversation_id,
                customer,
                caller_turn,
                &caller,
                deadline,
            )
            .await?;
        count_labels(&routed.inferred);
        Ok(Response::new(convert::route_response(
            routed.decision,
            &routed.inferred,
            &routed.policy_version,
            started,
        )))
    }

    async fn feedback(
        &self,
        request: Request<FeedbackRequest>,
    ) -> Result<Response<FeedbackResponse>, Status> {
        let deadline = Deadline::of(&request);
        let caller = super::caller_name(&request);
        let tenant = tenant_of(&request)?;
        let (id, entry) = validate::feedback(request.get_ref(), &self.limits)?;
        if !self.journal.enabled() {
            return Err(Status::failed_precondition(
                "feedback needs the decision log: set [decision_log] dir in the server config",
            ));
        }
        let csat = entry.csat.map_or(0, u32::from);
        let resolved_by = entry.resolved_by.map_or("", |r| r.as_str());
        let outcome = self
            .journal
            .feedback(
                &id,
                FeedbackEntry {
                    caller,
                    tenant: tenant.logged_name().map(str::to_string),
                    ..entry
                },
            )
            .await;
        let answer = super::status::feedback(outcome, &id)?;
        // Also for a resend (recorded: false): the memory update may be what failed the first time,
        // and doing it twice changes nothing.
        let customer = &request.get_ref().customer_id;
        // Memory off: nothing to remember the feedback in (Route says so on every turn).
        if !customer.is_empty() && self.router.customers().is_on() {
            let memory = self.router.customers();
            memory
                .feedback(&tenant, customer, &id, csat, resolved_by, deadline)
                .await
                .map_err(|e| {
                    Status::unavailable(format!(
                        "the feedback was recorded, but not in the customer's memory: {e}; send it again"
                    ))
                })?;
        }
        Ok(Response::new(answer))
    }

    async fn forget_customer(
        &self,
        request: Request<ForgetCustomerRequest>,
    ) -> Result<Response<ForgetCustomerResponse>, Status> {
        let deadline = Deadline::of(&request);
        let caller = super::caller_name(&request);
        let tenant = tenant_of(&request)?;
        let customer = &request.get_ref().customer_id;
        validate::id("customer_id", customer, true, &self.limits)?;
        let memory = self.router.customers();
        let result = memory.forget(&tenant, customer, deadline).await;
        let pseudonym = memory.pseudonym(&tenant, customer).unwrap_or_default();
        let outcome = match &result {
            Ok(forgotten) => serde_json::json!({ "forgotten": forgotten }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        self.audit.record(
            "forget_customer",
            serde_json::json!({
                "caller": caller,
                "tenant": tenant.name,
                "customer": pseudonym,
                "result": outcome,
            }),
            serde_json::json!({}),
        );
        let forgotten = result.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ForgetCustomerResponse { forgotten }))
    }
}
