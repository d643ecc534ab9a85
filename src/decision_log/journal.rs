//! The service's side of the data loop: remember each decision for feedback, write the sampled ones
//! to the log, and take feedback on them.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::entry::{FeedbackEntry, LoggedDecision};
use super::recent::{tenant_key, FeedbackOutcome, RecentDecisions};
use super::writer::{DecisionLog, DecisionLogConfig, DecisionLogError};

pub struct Journal {
    log: DecisionLog,
    /// Only with a log: feedback without one would be lost.
    recent: Option<Arc<RecentDecisions>>,
    salt: String,
}

impl Journal {
    pub fn open(config: &DecisionLogConfig) -> Result<Self, DecisionLogError> {
        let salt = if config.conversation_salt.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            config.conversation_salt.clone()
        };
        let log = DecisionLog::open(config)?;
        let recent = log.enabled().then(|| {
            Arc::new(RecentDecisions::new(
                config.max_pending_feedback,
                Duration::from_secs(config.feedback_window_s),
            ))
        });
        Ok(Journal { log, recent, salt })
    }

    pub fn enabled(&self) -> bool {
        self.log.enabled()
    }

    pub fn keeps_text(&self) -> bool {
        self.log.keeps_text()
    }

    /// A decision was served for `tenant` (none: the implicit one): it may get feedback from that
    /// tenant, and, if sampled, `entry` is logged.
    pub fn served(
        &self,
        id: &uuid::Uuid,
        tenant: Option<&str>,
        entry: impl FnOnce() -> LoggedDecision,
    ) {
        let Some(recent) = &self.recent else { return };
        recent.served(id, tenant_key(tenant));
        if self.log.samples(id) {
            self.log.decision(entry());
        }
    }

    /// The caller's conversation id as the log keeps it: a salted hash, 16 hex digits.
    pub fn conversation_key(&self, conversation_id: &str) -> String {
        let digest = Sha256::new()
            .chain_update(self.salt.as_bytes())
            .chain_update([0])
            .chain_update(conversation_id.as_bytes())
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Record feedback once per decision (`id` is `entry.decision_id` parsed). New feedback is
    /// answered once its line is on the file: feedback the log could not queue or write is not
    /// recorded, so the caller's retry is taken as new.
    pub async fn feedback(&self, id: &uuid::Uuid, entry: FeedbackEntry) -> FeedbackOutcome {
        let Some(recent) = &self.recent else {
            return FeedbackOutcome::Unknown;
        };
        let tenant = tenant_key(entry.tenant.as_deref());
        let outcome = recent.feedback(id, entry.content_digest(), tenant);
        if outcome != FeedbackOutcome::New {
            return outcome;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The writer forgets failed feedback itself: a caller that gave up waiting still gets its
        // retry taken as new.
        let ack = {
            let (recent, id) = (Arc::clone(recent), *id);
            Box::new(move |written: Result<(), String>| {
                recent.written(&id, written.is_ok());
                let _ = tx.send(written);
            })
        };
        if !self.log.feedback(entry, ack) {
            recent.written(id, false);
            return FeedbackOutcome::Busy;
        }
        match rx.await {
            Ok(Ok(())) => FeedbackOutcome::New,
            Ok(Err(why)) => FeedbackOutcome::Unwritten(why),
            Err(_) => FeedbackOutcome::Unwritten("the decision log writer stopped".into()),
        }
    }

    /// Flush and stop the writer (after the server has answered its last call).
    pub fn close(&self) {
        self.log.close();
    }
}

/// An error path that skips `close` (a failed start, say) still writes what was queued.
impl Drop for Journal {
    fn drop(&mut self) {
        self.log.close();
    }
}
