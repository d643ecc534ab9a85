//! The service's side of the data loop: remember each decision for feedback, write the sampled ones
//! to the log, and take feedback on them.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::entry::{FeedbackEntry, LoggedDecision};
use super::ids::{Checked, DecisionIds};
use super::recent::{tenant_key, FeedbackOutcome, RecentDecisions};
use super::writer::{DecisionLog, DecisionLogConfig, DecisionLogError};
use crate::policy::state::{StateError, StateFuture};

/// What the fleet's record of feedback says of a new piece of feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// None yet: claimed by this call, which must write it and settle the claim.
    New,
    /// The same feedback, already written.
    Duplicate,
    /// Different feedback than the decision already has.
    Conflict,
    /// The same feedback, still being written by another call.
    Busy,
}

/// Feedback remembered for the whole fleet (Redis), so the same feedback is taken once and a
/// contradicting one refused whichever replica each arrives at.
pub trait FeedbackClaims: Send + Sync {
    /// Claim decision `id` for feedback with content `digest`.
    fn claim<'a>(&'a self, id: &'a uuid::Uuid, digest: u64) -> StateFuture<'a, Claim>;
    /// The claimed feedback is on the file (`written`), or not: forgotten, so a retry is new.
    fn settle<'a>(&'a self, id: &'a uuid::Uuid, digest: u64, written: bool) -> StateFuture<'a>;
}

pub struct Journal {
    log: DecisionLog,
    /// Only with a log: feedback without one would be lost.
    recent: Option<Arc<RecentDecisions>>,
    salt: String,
    ids: DecisionIds,
    window: Duration,
    /// The fleet's record of feedback (Redis); none: each replica's own (`recent`).
    claims: Option<Arc<dyn FeedbackClaims>>,
}

impl Journal {
    pub fn open(
        config: &DecisionLogConfig,
        claims: Option<Arc<dyn FeedbackClaims>>,
    ) -> Result<Self, DecisionLogError> {
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
        Ok(Journal {
            log,
            recent,
            salt,
            ids: DecisionIds::new(&config.feedback_keys),
            window: Duration::from_secs(config.feedback_window_s),
            claims,
        })
    }

    /// A new decision's id for `tenant` (none: the implicit one): any replica with the fleet's
    /// feedback key can tell it is ours, when it was made and for whom.
    pub fn new_id(&self, tenant: Option<&str>) -> uuid::Uuid {
        self.ids.mint(tenant)
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

    /// Record feedback once per decision (`id` is `entry.decision_id` parsed), on any replica: a
    /// signed id is checked by its tag and age, a legacy one must be known here. New feedback is
    /// answered once its line is on the file: feedback the log could not queue or write is not
    /// recorded, so the caller's retry is taken as new.
    pub async fn feedback(&self, id: &uuid::Uuid, entry: FeedbackEntry) -> FeedbackOutcome {
        let Some(recent) = &self.recent else {
            return FeedbackOutcome::Unknown;
        };
        let tenant = tenant_key(entry.tenant.as_deref());
        let digest = entry.content_digest();
        match self.ids.check(id, entry.tenant.as_deref()) {
            Checked::Forged => return FeedbackOutcome::Unknown,
            Checked::Legacy => {}
            Checked::Signed { at_ms } => {
                let now = super::now_ms();
                let age = Duration::from_millis(now.saturating_sub(at_ms));
                // Older than the window, or made in the future beyond clock skew between replicas.
                if age > self.window || at_ms > now + 60_000 {
                    return FeedbackOutcome::Unknown;
                }
                if let Some(claims) = &self.claims {
                    return self.claimed(claims, id, digest, entry).await;
                }
                recent.adopt(id, tenant, age);
            }
        }
        let outcome = recent.feedback(id, digest, tenant);
        if outcome != FeedbackOutcome::New {
            return outcome;
        }
        let recent = Arc::clone(recent);
        let id = *id;
        self.write(entry, Arc::new(move |written| recent.written(&id, written)))
            .await
    }

    /// Feedback on a signed id, remembered fleet-wide.
    async fn claimed(
        &self,
        claims: &Arc<dyn FeedbackClaims>,
        id: &uuid::Uuid,
        digest: u64,
        entry: FeedbackEntry,
    ) -> FeedbackOutcome {
        let unavailable =
            |e: StateError| FeedbackOutcome::Unwritten(format!("the fleet's feedback record: {e}"));
        match claims.claim(id, digest).await {
            Err(e) => return unavailable(e),
            Ok(Claim::Duplicate) => return FeedbackOutcome::Duplicate,
            Ok(Claim::Conflict) => return FeedbackOutcome::Conflict,
            Ok(Claim::Busy) => return FeedbackOutcome::Busy,
            Ok(Claim::New) => {}
        }
        // Settled when the writer is done, also if this caller stops waiting (a claim left
        // pending expires in a minute on its own). A caller still waiting hears back only once the
        // record is settled: the same feedback sent again at once, to any replica, is then a
        // duplicate rather than "busy".
        let (claims, id, runtime) = (Arc::clone(claims), *id, tokio::runtime::Handle::current());
        let (settled_tx, settled) = tokio::sync::oneshot::channel::<()>();
        let settled_tx = std::sync::Mutex::new(Some(settled_tx));
        let settle = move |written: bool| {
            let claims = Arc::clone(&claims);
            let tell = settled_tx.lock().ok().and_then(|mut tx| tx.take());
            runtime.spawn(async move {
                if let Err(e) = claims.settle(&id, digest, written).await {
                    tracing::warn!(error = %e, "feedback's fleet-wide record not settled");
                }
                if let Some(tell) = tell {
                    let _ = tell.send(());
                }
            });
        };
        let outcome = self.write(entry, Arc::new(settle)).await;
        // The settle call has its own deadline, so this wait is bounded.
        let _ = settled.await;
        outcome
    }

    /// Queue the feedback's line and wait until it is on the file; `done` learns whether it is,
    /// from the writer, so a caller that gave up waiting still gets its retry taken as new.
    async fn write(
        &self,
        entry: FeedbackEntry,
        done: Arc<dyn Fn(bool) + Send + Sync>,
    ) -> FeedbackOutcome {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let on_ack = Arc::clone(&done);
        let ack = Box::new(move |written: Result<(), String>| {
            on_ack(written.is_ok());
            let _ = tx.send(written);
        });
        if !self.log.feedback(entry, ack) {
            done(false);
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
