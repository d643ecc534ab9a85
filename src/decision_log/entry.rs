//! The lines of the decision log: one JSON object per decision (`decisions-*.jsonl`) and per
//! feedback (`feedback-*.jsonl`), joined by `decision_id`.

use serde::{Deserialize, Serialize};

use crate::policy::{Decision, Reason, ReplayClock, Snapshot};

/// One decision as served, with every signal the policy could read. Never the customer's text,
/// unless the operator opted in to keeping it redacted (`text`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedDecision {
    pub decision_id: String,
    /// When it was decided, in ms since the Unix epoch.
    pub ts_ms: u64,
    /// The tenant it was decided for (none: a server without tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The conversation, as a salted hash of the caller's id: turns group without the id itself.
    pub conversation: String,
    pub action: String,
    /// The rule that decided ("default" when none fired).
    pub rule: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    pub priority: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fallback: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
    pub reasons: Vec<LoggedReason>,
    pub model: String,
    pub model_version: String,
    pub policy_version: String,
    /// The clock the decision was made at (queue hours) and when the customer sent the message
    /// (reply windows), in seconds since the Unix epoch.
    pub unix_s: i64,
    pub sent_unix_s: i64,
    pub signals: Snapshot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedReason {
    pub rule_id: String,
    pub signal: String,
    pub value: f64,
    pub threshold: f64,
}

impl From<&Reason> for LoggedReason {
    fn from(r: &Reason) -> Self {
        LoggedReason {
            rule_id: r.rule_id.clone(),
            signal: r.signal.clone(),
            value: r.value,
            threshold: r.threshold,
        }
    }
}

impl LoggedDecision {
    pub fn clock(&self) -> ReplayClock {
        ReplayClock {
            unix_seconds: self.unix_s,
            sent_unix_seconds: self.sent_unix_s,
        }
    }
}

/// What a decision's outcome is compared on: everything the caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: String,
    pub rule: String,
    pub queue: String,
    pub priority: i32,
    pub fallback: String,
}

impl Outcome {
    pub fn of_decision(d: &Decision) -> Outcome {
        Outcome {
            action: d.action.as_str().to_string(),
            rule: d
                .reasons
                .first()
                .map_or_else(String::new, |r| r.rule_id.clone()),
            queue: d.queue.clone(),
            priority: d.priority,
            fallback: d.fallback.clone(),
        }
    }

    pub fn of_logged(d: &LoggedDecision) -> Outcome {
        Outcome {
            action: d.action.clone(),
            rule: d.rule.clone(),
            queue: d.queue.clone(),
            priority: d.priority,
            fallback: d.fallback.clone(),
        }
    }

    /// A person is involved: offered or escalated.
    pub fn brings_human(&self) -> bool {
        self.action != "continue_bot"
    }

    /// Every field that differs from `after`: (field, before, after). A changed fallback or
    /// queue alone is a change too, and must be seen as one.
    pub fn changes(&self, after: &Outcome) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut field = |name, a: String, b: String| {
            if a != b {
                out.push((name, a, b));
            }
        };
        field("action", self.action.clone(), after.action.clone());
        field("rule", self.rule.clone(), after.rule.clone());
        field("queue", self.queue.clone(), after.queue.clone());
        field(
            "priority",
            self.priority.to_string(),
            after.priority.to_string(),
        );
        field("fallback", self.fallback.clone(), after.fallback.clone());
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HumanNeeded {
    Needed,
    NotNeeded,
    NeededEarlier,
}

impl HumanNeeded {
    pub fn needed(self) -> bool {
        self != HumanNeeded::NotNeeded
    }

    /// The name the feedback log writes (`not_needed`), for every other file that names it.
    pub fn as_str(self) -> &'static str {
        match self {
            HumanNeeded::Needed => "needed",
            HumanNeeded::NotNeeded => "not_needed",
            HumanNeeded::NeededEarlier => "needed_earlier",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    Bot,
    Human,
    Abandoned,
}

impl ResolvedBy {
    /// The name the feedback log writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedBy::Bot => "bot",
            ResolvedBy::Human => "human",
            ResolvedBy::Abandoned => "abandoned",
        }
    }
}

/// What actually happened after a decision, as the Feedback RPC reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedbackEntry {
    pub decision_id: String,
    pub ts_ms: u64,
    /// The tenant that sent it (none: a server without tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub human_needed: HumanNeeded,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<ResolvedBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csat: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u32>,
    /// The caller that sent it.
    pub caller: String,
}

/// What feedback says of a decision, without who sent it or when: what replay and the report join
/// decisions with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub human_needed: HumanNeeded,
    pub resolved_by: Option<ResolvedBy>,
    pub csat: Option<u8>,
    pub wait_seconds: Option<u32>,
}

impl FeedbackEntry {
    pub fn verdict(&self) -> Verdict {
        Verdict {
            human_needed: self.human_needed,
            resolved_by: self.resolved_by,
            csat: self.csat,
            wait_seconds: self.wait_seconds,
        }
    }

    /// Equal feedback has equal content, whenever and by whomever it was sent.
    /// The same on every replica and build: replicas compare it through Redis for a week.
    pub fn content_digest(&self) -> u64 {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{}|{}|{}|{}",
            self.human_needed.as_str(),
            self.resolved_by.map_or("", ResolvedBy::as_str),
            self.csat.map_or(0, u32::from),
            self.wait_seconds.unwrap_or(0)
        );
        let digest = Sha256::digest(text.as_bytes());
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_fallback_alone_is_listed() {
        let before = Outcome {
            action: "escalate".into(),
            rule: "explicit_request".into(),
            queue: "general".into(),
            priority: 5,
            fallback: String::new(),
        };
        let after = Outcome {
            fallback: "callback".into(),
            ..before.clone()
        };
        assert_eq!(
            before.changes(&after),
            vec![("fallback", String::new(), "callback".to_string())]
        );
        assert!(before.changes(&before).is_empty());
    }
}
