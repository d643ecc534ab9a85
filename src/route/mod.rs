//! One Route decision, transport aside: classify the text, make the turn, decide it with the
//! conversation's state (the policy's lifecycle and retries included), and record it. The gRPC
//! handler validates and converts; shadow traffic, the load generator and the tests build their
//! turns here too, so the policy itself knows nothing of the model.

pub mod record;

use std::sync::Arc;
use std::time::Instant;

use crate::audit::AuditLog;
use crate::batcher::{BatchError, Batcher, Inferred};
use crate::customers::CustomerMemory;
use crate::decision_log::Journal;
use crate::model::{Model, Prediction};
use crate::policy::{
    reason, Action, Decision, Holder, Policy, ReplayClock, Retry, StateStore, Turn,
};
use crate::telemetry as t;
use crate::tenants::Tenant;
use record::DecisionRecord;

/// Kept from the caller's deadline for deciding alone, recording and answering once the state store
/// gave up (the observe layer answers 2 ms before the deadline itself): a tenth of what is left, at
/// least 5 ms. A fixed few ms is too little for a replica whose cores are busy, where a long
/// deadline has room to spare.
fn answer_reserve(left: std::time::Duration) -> std::time::Duration {
    (left / 10).max(std::time::Duration::from_millis(5))
}

/// How long recording an escalation in the customer's memory may take, after the answer is sent.
const ESCALATION_WRITE: std::time::Duration = std::time::Duration::from_secs(1);

/// The model's side of a turn: intent, scores, negativity and embedding of `prediction`. The
/// caller's side (ids, channel, tier, attributes, times) is left at its default for the caller
/// to fill with struct-update syntax.
pub fn turn<'a>(model: &'a Model, prediction: &'a Prediction, text: &'a str) -> Turn<'a> {
    with_prediction(
        Turn {
            text,
            ..Default::default()
        },
        model,
        prediction,
    )
}

/// `caller` (what the caller said of the message) with the model's side from `prediction`.
fn with_prediction<'a>(caller: Turn<'a>, model: &'a Model, prediction: &'a Prediction) -> Turn<'a> {
    let top = prediction.top_intent();
    Turn {
        intent: &model.intent_labels()[top],
        intent_score: prediction.intent_probs[top],
        intent_margin: prediction.intent_margin(),
        request_human: model.intent_prob(prediction, "request_human"),
        negativity: model.negativity(prediction),
        upset: model.upset(prediction),
        embedding: &prediction.embedding,
        ..caller
    }
}

/// A decided message: the decision, what the model read, and the policy that decided.
pub struct Routed {
    pub decision: Decision,
    pub inferred: Inferred,
    pub policy_version: String,
}

pub struct Router {
    batcher: Arc<Batcher>,
    state: Arc<dyn StateStore>,
    customers: Arc<CustomerMemory>,
    audit: AuditLog,
    journal: Arc<Journal>,
}

impl Router {
    pub fn new(
        batcher: Arc<Batcher>,
        state: Arc<dyn StateStore>,
        customers: Arc<CustomerMemory>,
        audit: AuditLog,
        journal: Arc<Journal>,
    ) -> Self {
        Router {
            batcher,
            state,
            customers,
            audit,
            journal,
        }
    }

    pub fn batcher(&self) -> &Arc<Batcher> {
        &self.batcher
    }

    pub fn customers(&self) -> &CustomerMemory {
        &self.customers
    }

    /// Decide one message of a conversation: `caller` is the caller's side of the turn (ids, text,
    /// channel, tier, flags, times), already validated. A retry of a message already decided gets
    /// its first answer (same decision id) and is neither counted nor logged again. With a
    /// `customer_id`, the customer's history joins the turn and the turn joins their history.
    /// Everything is the tenant's: `policy` (one for the whole decision, even across a reload),
    /// its conversation state, its customers, its records.
    #[allow(clippy::too_many_arguments)]
    pub async fn route(
        &self,
        tenant: &Arc<Tenant>,
        policy: Arc<Policy>,
        conversation_id: &str,
        customer_id: Option<&str>,
        caller: Turn<'_>,
        caller_name: &str,
        deadline: Option<Instant>,
    ) -> Result<Routed, BatchError> {
        let inf = self
            .batcher
            .infer(caller.text.to_string(), deadline)
            .await?;
        let id = self.journal.new_id(tenant.logged_name());
        let decision_id = id.to_string();
        let turn = Turn {
            decision_id: &decision_id,
            ..with_prediction(caller, &inf.model, &inf.prediction)
        };
        let conversation_key = tenant.scoped(conversation_id);
        // The state store gets what is left of the caller's deadline, less the time to answer: a
        // slow or absent Redis turns into a decision from the message alone, not a missed deadline.
        let state_deadline = deadline.map(|d| {
            d.checked_sub(answer_reserve(d.saturating_duration_since(Instant::now())))
                .unwrap_or(d)
        });
        let mut memory_failed = None;
        let turn = match customer_id {
            Some(customer) => {
                // At most half of what is left: a slow customer read must not cost the
                // conversation's own state.
                let recall_deadline = state_deadline.map(|d| {
                    let now = Instant::now();
                    now + d.saturating_duration_since(now) / 2
                });
                let recalled = self
                    .customers
                    .recall(
                        tenant,
                        customer,
                        conversation_id,
                        &id,
                        &turn,
                        recall_deadline,
                    )
                    .await;
                match recalled {
                    Ok(history) => Turn { history, ..turn },
                    Err(e) => {
                        memory_failed = Some(e);
                        turn
                    }
                }
            }
            None => turn,
        };
        let mut decision = policy
            .route(
                self.state.as_ref(),
                &conversation_key,
                &turn,
                state_deadline,
            )
            .await;
        if let Some(e) = memory_failed {
            metrics::counter!(t::STATE_ERRORS).increment(1);
            let detail = format!("decided without the customer's history: {e}");
            decision.reasons.push(reason(
                "customer_unavailable",
                "customer",
                0.0,
                0.0,
                &detail,
            ));
        }
        // A fresh escalation (not a turn waiting on one, not a retry) joins the customer's history.
        let fresh_escalation = decision.action == Action::Escalate
            && decision.retry == Retry::No
            && decision.signals.holder != Holder::Person.as_str();
        if let (Some(customer), true) = (customer_id, fresh_escalation) {
            // Off the answer's path, with a budget of its own: the caller has its decision.
            let (customers, tenant) = (self.customers.clone(), Arc::clone(tenant));
            let (customer, conversation) = (customer.to_string(), conversation_id.to_string());
            tokio::spawn(async move {
                let deadline = Some(Instant::now() + ESCALATION_WRITE);
                let marked = customers
                    .escalated(&tenant, &customer, &conversation, deadline)
                    .await;
                if let Err(e) = marked {
                    metrics::counter!(t::STATE_ERRORS).increment(1);
                    tracing::warn!(error = %e, "the escalation did not reach the customer's memory");
                }
            });
        }
        match decision.retry {
            Retry::No => DecisionRecord {
                tenant,
                decision_id: &decision_id,
                caller: caller_name,
                conversation_id: &conversation_key,
                message_id: turn.message_id,
                channel: turn.channel,
                decision: &decision,
                policy_version: policy.version(),
                model_name: inf.model.name(),
                model_version: inf.model.version(),
                text: turn.text,
                clock: ReplayClock {
                    unix_seconds: turn.unix_seconds,
                    sent_unix_seconds: turn.sent_unix_seconds,
                },
            }
            .record(&self.audit, &self.journal, &id),
            Retry::Answered => {
                metrics::counter!(t::ROUTE_RETRIES, "kind" => "answered").increment(1)
            }
            Retry::Expired => metrics::counter!(t::ROUTE_RETRIES, "kind" => "expired").increment(1),
        }
        Ok(Routed {
            decision,
            inferred: inf,
            policy_version: policy.version().to_string(),
        })
    }
}
