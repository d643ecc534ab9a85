//! Decision log: every decision with the signals it read, and the feedback on it, written off the
//! hot path to rotating JSON-lines files per replica. `reader` streams a directory of them back;
//! `replay` decides logged turns again under a candidate policy; `report` draws what the log holds;
//! `parquet` writes it as a table for SQL engines. No customer text is written unless the operator
//! opts in to keeping it redacted.

pub mod claims;
mod entry;
pub mod export;
pub mod ids;
mod journal;
pub mod parquet;
pub mod reader;
mod recent;
pub mod replay;
pub mod report;
pub mod synthetic;
mod writer;

pub use entry::{
    now_ms, FeedbackEntry, HumanNeeded, LoggedDecision, LoggedReason, Outcome, ResolvedBy, Verdict,
};
pub use journal::{Claim, FeedbackClaims, Journal};
pub use recent::{FeedbackOutcome, RecentDecisions};
pub use writer::{DecisionLog, DecisionLogConfig, DecisionLogError};

/// The entry for `key`, allocating the key only the first time it is seen: the log tools count
/// millions of decisions into a few keys.
pub(crate) fn key_entry<'m, V: Default>(
    map: &'m mut std::collections::BTreeMap<String, V>,
    key: &str,
) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}
