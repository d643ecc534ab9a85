//! The `handoff.v1.Handoff` service.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::observe::Deadline;
use super::pb::handoff_server::Handoff;
use super::pb::{
    self, ClassifyBatchRequest, ClassifyBatchResponse, ClassifyRequest, ClassifyResponse,
    RouteRequest, RouteResponse,
};
use super::{convert, status, validate};
use crate::audit::AuditLog;
use crate::batcher::{Batcher, Inferred};
use crate::config::Limits;
use crate::model::repository::compare_versions;
use crate::policy::{SharedPolicy, StateStore, Turn};
use crate::telemetry as t;

pub struct HandoffService {
    batcher: Arc<Batcher>,
    policy: Arc<SharedPolicy>,
    state: Arc<dyn StateStore>,
    limits: Limits,
    audit: AuditLog,
}

impl HandoffService {
    pub fn new(
        batcher: Arc<Batcher>,
        policy: Arc<SharedPolicy>,
        state: Arc<dyn StateStore>,
        limits: Limits,
        audit: AuditLog,
    ) -> Self {
        HandoffService {
            batcher,
            policy,
            state,
            limits,
            audit,
        }
    }
}

fn count_labels(inf: &Inferred) {
    let m = &inf.model;
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
            let inf = self
                .batcher
                .infer(req.text, deadline)
                .await
                .map_err(status::from_batch)?;
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
            let results = self
                .batcher
                .infer_many(req.texts, deadline)
                .await
                .map_err(status::from_batch)?;
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
        let deadline = Deadline::of(&request);
        {
            let started = Instant::now();
            let caller = super::caller_name(&request);
            let req = request.into_inner();
            validate::id("conversation_id", &req.conversation_id, true, &self.limits)?;
            validate::id("message_id", &req.message_id, false, &self.limits)?;
            validate::text("text", &req.text, &self.limits)?;
            let channel: pb::Channel = validate::enum_value("channel", req.channel)?;
            let tier: pb::CustomerTier = validate::enum_value("tier", req.tier)?;
            validate::attributes("attributes", &req.attributes, &self.limits)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let sent = validate::sent_at("sent_at_unix_ms", req.sent_at_unix_ms, now)?;

            let inf = self
                .batcher
                .infer(req.text.clone(), deadline)
                .await
                .map_err(status::from_batch)?;
            count_labels(&inf);
            let classification = convert::classification(&inf);
            let turn = Turn {
                message_id: &req.message_id,
                text: &req.text,
                intent: &classification.intent,
                intent_score: classification.intent_score,
                intent_margin: inf.prediction.intent_margin(),
                request_human: inf.model.intent_prob(&inf.prediction, "request_human"),
                negativity: classification.negativity,
                embedding: &inf.prediction.embedding,
                channel: convert::channel(channel),
                tier: convert::tier(tier),
                attributes: Some(&req.attributes),
                bot_fallbacks: req.bot_fallbacks,
                bot_failed: req.bot_failed,
                accepted_offer: req.accepted_offer,
                unix_seconds: now,
                sent_unix_seconds: sent,
            };
            // The state store may wait on the network (Redis): keep this worker thread off the async
            // scheduler meanwhile.
            let policy = self.policy.get(); // one policy for the whole decision, even across a reload
            let decision = tokio::task::block_in_place(|| {
                policy.route(self.state.as_ref(), &req.conversation_id, &turn)
            });
            if decision.degraded {
                metrics::counter!(t::STATE_ERRORS).increment(1);
            }
            if decision.reasons.iter().any(|r| r.rule_id == "reply_window") {
                metrics::counter!(t::REPLY_WINDOW, "channel" => turn.channel.as_str()).increment(1);
            }
            let top_reason = decision
                .reasons
                .first()
                .map(|r| r.rule_id.clone())
                .unwrap_or_default();
            metrics::counter!(
                t::DECISIONS,
                "action" => decision.action.as_str(),
                "queue" => decision.queue.clone(),
                "reason" => top_reason,
                "channel" => turn.channel.as_str()
            )
            .increment(1);
            let decision_id = uuid::Uuid::new_v4().to_string();
            let reasons: Vec<_> = decision
                .reasons
                .iter()
                .map(|r| serde_json::json!({ "rule_id": r.rule_id, "signal": r.signal, "value": r.value, "threshold": r.threshold }))
                .collect();
            // The customer's text and attribute values stay out; the caller's ids are redacted.
            self.audit.record(
                "decision",
                serde_json::json!({
                    "decision_id": decision_id,
                    "caller": caller,
                    "channel": turn.channel.as_str(),
                    "action": decision.action.as_str(),
                    "queue": decision.queue,
                    "priority": decision.priority,
                    "fallback": decision.fallback,
                    "degraded": decision.degraded,
                    "reasons": reasons,
                    "policy_version": policy.version(),
                    "model_version": inf.model.version(),
                }),
                serde_json::json!({
                    "conversation_id": req.conversation_id,
                    "message_id": req.message_id,
                }),
            );
            Ok(Response::new(RouteResponse {
                decision_id,
                action: convert::action(decision.action) as i32,
                queue: decision.queue,
                priority: decision.priority,
                reasons: decision.reasons.into_iter().map(convert::reason).collect(),
                classification: Some(classification),
                model: Some(convert::model_ref(&inf.model)),
                policy_version: policy.version().to_string(),
                timing: Some(convert::timing(started, [&inf])),
                fallback: decision.fallback,
            }))
        }
    }
}
