//! One decision, recorded once: its metrics, its audit record and its trace event, from the same
//! values the response carries (as text-embeddings-inference's `ResponseMetadata` does for a call).

use tracing::debug;

use crate::audit::AuditLog;
use crate::decision_log::{Journal, LoggedDecision, LoggedReason, Outcome};
use crate::policy::{Channel, Decision, ReplayClock};
use crate::telemetry as t;
use crate::tenants::Tenant;

/// Per-channel counters exist from the start at 0, so a dashboard shows 0 rather than "no data".
pub fn zero_counters() {
    for channel in Channel::ALL {
        metrics::counter!(t::REPLY_WINDOW, "channel" => channel.as_str()).increment(0);
    }
}

pub struct DecisionRecord<'a> {
    pub tenant: &'a Tenant,
    pub decision_id: &'a str,
    pub caller: &'a str,
    /// The API caller's ids (the conversation's scoped to its tenant): redacted in the audit log,
    /// never in metrics.
    pub conversation_id: &'a str,
    pub message_id: &'a str,
    pub channel: Channel,
    pub decision: &'a Decision,
    pub policy_version: &'a str,
    pub model_name: &'a str,
    pub model_version: &'a str,
    /// The customer's text: only ever logged redacted, and only when the operator opted in.
    pub text: &'a str,
    pub clock: ReplayClock,
}

impl DecisionRecord<'_> {
    /// Never the customer's text or attribute values (unless text retention is on: redacted text).
    pub fn record(&self, audit: &AuditLog, journal: &Journal, id: &uuid::Uuid) {
        let span = tracing::Span::current();
        span.record("decision_id", self.decision_id);
        span.record("action", self.decision.action.as_str());
        span.record(
            "rule",
            self.decision
                .reasons
                .first()
                .map_or("", |r| r.rule_id.as_str()),
        );
        span.record("model_version", self.model_version);
        span.record("policy_version", self.policy_version);
        journal.served(id, self.tenant.logged_name(), || self.logged(journal));
        self.record_audit(audit);
    }

    fn logged(&self, journal: &Journal) -> LoggedDecision {
        let d = self.decision;
        let outcome = Outcome::of_decision(d);
        LoggedDecision {
            decision_id: self.decision_id.to_string(),
            ts_ms: crate::decision_log::now_ms(),
            tenant: self.tenant.logged_name().map(str::to_string),
            conversation: journal.conversation_key(self.conversation_id),
            action: outcome.action,
            rule: outcome.rule,
            queue: outcome.queue,
            priority: outcome.priority,
            fallback: outcome.fallback,
            degraded: d.degraded,
            reasons: d.reasons.iter().map(LoggedReason::from).collect(),
            model: self.model_name.to_string(),
            model_version: self.model_version.to_string(),
            policy_version: self.policy_version.to_string(),
            unix_s: self.clock.unix_seconds,
            sent_unix_s: self.clock.sent_unix_seconds,
            signals: d.signals.clone(),
            text: journal
                .keeps_text()
                .then(|| crate::audit::redact::redact(self.text)),
        }
    }

    fn record_audit(&self, audit: &AuditLog) {
        let d = self.decision;
        let channel = self.channel.as_str();
        let top_rule = d.reasons.first().map_or("", |r| r.rule_id.as_str());
        if d.degraded {
            metrics::counter!(t::STATE_ERRORS).increment(1);
        }
        if d.reply_window_raised {
            metrics::counter!(t::REPLY_WINDOW, "channel" => channel).increment(1);
        }
        metrics::counter!(
            t::DECISIONS,
            "action" => d.action.as_str(),
            "queue" => d.queue.clone(),
            "reason" => top_rule.to_string(),
            "channel" => channel,
            "tenant" => self.tenant.name.clone()
        )
        .increment(1);
        debug!(
            decision_id = self.decision_id,
            caller = self.caller,
            action = d.action.as_str(),
            rule = top_rule,
            queue = %d.queue,
            priority = d.priority,
            policy_version = self.policy_version,
            model_version = self.model_version,
            "decision"
        );
        let reasons: Vec<_> = d
            .reasons
            .iter()
            .map(|r| serde_json::json!({ "rule_id": r.rule_id, "signal": r.signal, "value": r.value, "threshold": r.threshold }))
            .collect();
        let mut fields = serde_json::json!({
            "decision_id": self.decision_id,
            "caller": self.caller,
            "channel": channel,
            "action": d.action.as_str(),
            "queue": d.queue,
            "priority": d.priority,
            "fallback": d.fallback,
            "degraded": d.degraded,
            "reasons": reasons,
            "policy_version": self.policy_version,
            "model_version": self.model_version,
        });
        // Whom an operator acted for; a server without tenants writes the records it always did.
        if let Some(tenant) = self.tenant.logged_name() {
            fields["tenant"] = tenant.into();
        }
        audit.record(
            "decision",
            fields,
            serde_json::json!({
                "conversation_id": self.conversation_id,
                "message_id": self.message_id,
            }),
        );
    }
}
