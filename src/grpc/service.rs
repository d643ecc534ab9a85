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
use super::record::DecisionRecord;
use super::{convert, validate};
use crate::audit::AuditLog;
use crate::batcher::{Batcher, Inferred};
use crate::config::Limits;
use crate::decision_log::{FeedbackEntry, Journal};
use crate::model::repository::compare_versions;
use crate::policy::{ReplayClock, SharedPolicy, StateStore, Turn};
use crate::telemetry as t;

pub struct HandoffService {
    batcher: Arc<Batcher>,
    policy: Arc<SharedPolicy>,
    state: Arc<dyn StateStore>,
    limits: Limits,
    audit: AuditLog,
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
            batcher,
            policy,
            state,
            limits,
            audit,
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
        let inf = self.batcher.infer(req.text.clone(), deadline).await?;
        count_labels(&inf);
        let turn = Turn {
            message_id: &req.message_id,
            channel: input.channel,
            tier: input.tier,
            attributes: Some(&req.attributes),
            bot_fallbacks: req.bot_fallbacks,
            bot_failed: req.bot_failed,
            accepted_offer: req.accepted_offer,
            unix_seconds: input.now,
            sent_unix_seconds: input.sent,
            ..Turn::from_prediction(&inf.model, &inf.prediction, &req.text)
        };
        // One policy for the whole decision, even across a reload.
        let policy = self.policy.get();
        let decision = policy
            .route(self.state.as_ref(), &req.conversation_id, &turn)
            .await;
        let id = uuid::Uuid::new_v4();
        let decision_id = id.to_string();
        DecisionRecord {
            decision_id: &decision_id,
            caller: &caller,
            conversation_id: &req.conversation_id,
            message_id: &req.message_id,
            channel: turn.channel,
            decision: &decision,
            policy_version: policy.version(),
            model_name: inf.model.name(),
            model_version: inf.model.version(),
            text: &req.text,
            clock: ReplayClock {
                unix_seconds: input.now,
                sent_unix_seconds: input.sent,
            },
        }
        .record(&self.audit, &self.journal, &id);
        let response =
            convert::route_response(decision_id, decision, &inf, policy.version(), started);
        Ok(Response::new(response))
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
            .feedback(&id, FeedbackEntry { caller, ..entry });
        super::status::feedback(outcome, &id).map(Response::new)
    }
}
