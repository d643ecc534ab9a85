//! One decision, recorded once: its metrics, its audit record and its trace event, from the same
//! values the response carries (as text-embeddings-inference's `ResponseMetadata` does for a call).

use tracing::debug;

use crate::audit::AuditLog;
use crate::policy::{Channel, Decision};
use crate::telemetry as t;

/// Per-channel counters exist from the start at 0, so a dashboard shows 0 rather than "no data".
pub fn zero_counters() {
    for channel in Channel::ALL {
        metrics::counter!(t::REPLY_WINDOW, "channel" => channel.as_str()).increment(0);
    }
}

pub struct DecisionRecord<'a> {
    pub decision_id: &'a str,
    pub caller: &'a str,
    /// The API caller's ids: redacted in the audit log, never in metrics.
    pub conversation_id: &'a str,
    pub message_id: &'a str,
    pub channel: Channel,
    pub decision: &'a Decision,
    pub policy_version: &'a str,
    pub model_version: &'a str,
}

impl DecisionRecord<'_> {
    /// Never the customer's text or attribute values.
    pub fn record(&self, audit: &AuditLog) {
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
            "channel" => channel
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
        audit.record(
            "decision",
            serde_json::json!({
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
            }),
            serde_json::json!({
                "conversation_id": self.conversation_id,
                "message_id": self.message_id,
            }),
        );
    }
}
