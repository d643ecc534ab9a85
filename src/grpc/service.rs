//! The `handoff.v1.Handoff` service.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::observe::Deadline;
use super::pb::handoff_server::Handoff;
use super::pb::{
    ClassifyBatchRequest, ClassifyBatchResponse, ClassifyRequest, ClassifyResponse,
    FeedbackRequest, FeedbackResponse, RouteRequest, RouteResponse,
};
use super::{convert, validate};
use crate::audit::AuditLog;
use crate::batcher::{Batcher, Inferred};
use crate::config::Limits;
use crate::decision_log::{FeedbackEntry, Journal};
use crate::model::repository::compare_versions;
use crate::policy::{SharedPolicy, StateStore, Turn};
use crate::route::Router;
use crate::telemetry as t;

pub struct HandoffService {
    batcher: Arc<Batcher>,
    router: Router,
    limits: Limits,
    journal: Arc<Journal>,
}

impl HandoffService {
    pub fn new(
        batcher: Arc<Batcher>,
        policy: Arc<SharedPolicy>,
        state: Arc<dyn StateStore>,
        limits: Limits,
        audit: AuditLog,
        journal: Arc<Journal>,
    ) -> Self {
        HandoffService {
            router: Router::new(batcher.clone(), policy, state, audit, journal.clone()),
            batcher,
            limits,
            journal,
        }
    }
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
        let req = request.into_inner();
        let input = validate::route(&req, &self.limits)?;
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
        let routed = self
            .router
            .route(&req.conversation_id, caller_turn, &caller, deadline)
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
        let caller = super::caller_name(&request);
        let (id, entry) = validate::feedback(request.get_ref(), &self.limits)?;
        if !self.journal.enabled() {
            return Err(Status::failed_precondition(
                "feedback needs the decision log: set [decision_log] dir in the server config",
            ));
        }
        let outcome = self
            .journal
            .feedback(&id, FeedbackEntry { caller, ..entry })
            .await;
        super::status::feedback(outcome, &id).map(Response::new)
    }
}
