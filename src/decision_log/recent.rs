//! Decisions that may still get feedback: which ids this replica served, until when, and what
//! feedback each already has, so a repeated Feedback call is a no-op and a contradicting one is
//! refused. Bounded: past `max_pending_feedback` the oldest decisions are forgotten.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// First feedback for this decision: write it.
    New,
    /// The same feedback again: nothing to write.
    Duplicate,
    /// Different feedback than the decision already has.
    Conflict,
    /// Never served here, forgotten, or older than the feedback window.
    Unknown,
    /// The log's queue is full: nothing was recorded, the caller should retry.
    Busy,
    /// The line could not be written (a full disk, say): not recorded, the caller should retry.
    Unwritten(String),
}

pub struct RecentDecisions {
    window: Duration,
    ids: Mutex<LruCache<u128, Pending>>,
}

struct Pending {
    at: Instant,
    /// `tenant_key` of the tenant that decided: another tenant's feedback finds nothing.
    tenant: u64,
    feedback: Option<Feedback>,
}

/// A tenant's name as the pending map keeps it (0: the implicit tenant).
pub fn tenant_key(tenant: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    tenant.map_or(0, |name| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        h.finish() | 1
    })
}

struct Feedback {
    digest: u64,
    /// On the file: until then the same feedback again cannot be told it is recorded.
    written: bool,
}

impl RecentDecisions {
    pub fn new(capacity: usize, window: Duration) -> Self {
        let capacity = std::num::NonZeroUsize::new(capacity.max(1)).expect("max(1)");
        RecentDecisions {
            window,
            ids: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn served(&self, id: &uuid::Uuid, tenant: u64) {
        let pending = Pending {
            at: Instant::now(),
            tenant,
            feedback: None,
        };
        self.ids
            .lock()
            .expect("never poisoned: no panics under the lock")
            .put(id.as_u128(), pending);
    }

    /// A decision another replica (or this one before a restart) made, whose signed id shows it is
    /// `age` old: known here from now on, unless already known.
    pub fn adopt(&self, id: &uuid::Uuid, tenant: u64, age: Duration) {
        let mut ids = self
            .ids
            .lock()
            .expect("never poisoned: no panics under the lock");
        if ids.peek(&id.as_u128()).is_none() {
            let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            ids.put(
                id.as_u128(),
                Pending {
                    at,
                    tenant,
                    feedback: None,
                },
            );
        }
    }

    /// Record feedback with content `digest` for decision `id`, from `tenant` (`tenant_key`).
    pub fn feedback(&self, id: &uuid::Uuid, digest: u64, tenant: u64) -> FeedbackOutcome {
        let mut ids = self
            .ids
            .lock()
            .expect("never poisoned: no panics under the lock");
        // `peek`: feedback does not make a decision younger.
        let Some(pending) = ids.peek_mut(&id.as_u128()) else {
            return FeedbackOutcome::Unknown;
        };
        // Another tenant's decision is unknown to this one: not even its existence shows.
        if pending.at.elapsed() > self.window || pending.tenant != tenant {
            return FeedbackOutcome::Unknown;
        }
        match &pending.feedback {
            None => {
                pending.feedback = Some(Feedback {
                    digest,
                    written: false,
                });
                FeedbackOutcome::New
            }
            Some(f) if f.digest != digest => FeedbackOutcome::Conflict,
            Some(f) if f.written => FeedbackOutcome::Duplicate,
            // Still being written, and the write may yet fail.
            Some(_) => FeedbackOutcome::Busy,
        }
    }
}

impl RecentDecisions {
    /// The feedback's line is on the file (`true`), or could not be written (`false`: forgotten,
    /// so the caller's retry is taken as new).
    pub fn written(&self, id: &uuid::Uuid, written: bool) {
        let mut ids = self
            .ids
            .lock()
            .expect("never poisoned: no panics under the lock");
        if let Some(pending) = ids.peek_mut(&id.as_u128()) {
            match written {
                true => pending.feedback.iter_mut().for_each(|f| f.written = true),
                false => pending.feedback = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_is_taken_once_per_decision_and_only_for_known_ones() {
        let recent = RecentDecisions::new(2, Duration::from_secs(60));
        let (a, b, c) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        recent.served(&a, 0);
        assert_eq!(recent.feedback(&a, 1, 0), FeedbackOutcome::New);
        assert_eq!(
            recent.feedback(&a, 1, 0),
            FeedbackOutcome::Busy,
            "not written yet"
        );
        recent.written(&a, true);
        assert_eq!(recent.feedback(&a, 1, 0), FeedbackOutcome::Duplicate);
        assert_eq!(recent.feedback(&a, 2, 0), FeedbackOutcome::Conflict);
        recent.written(&a, false);
        assert_eq!(recent.feedback(&a, 2, 0), FeedbackOutcome::New);
        assert_eq!(recent.feedback(&c, 1, 0), FeedbackOutcome::Unknown);
        // Capacity 2: the oldest is forgotten.
        recent.served(&b, 0);
        recent.served(&c, 0);
        assert_eq!(recent.feedback(&a, 1, 0), FeedbackOutcome::Unknown);
        assert_eq!(recent.feedback(&b, 1, 0), FeedbackOutcome::New);
        let shop = tenant_key(Some("shop"));
        assert_eq!(
            recent.feedback(&c, 1, shop),
            FeedbackOutcome::Unknown,
            "another tenant's decision"
        );
        assert_eq!(recent.feedback(&c, 1, 0), FeedbackOutcome::New);
    }

    #[test]
    fn feedback_that_could_not_be_written_is_taken_again() {
        let recent = RecentDecisions::new(4, Duration::from_secs(60));
        let a = uuid::Uuid::new_v4();
        recent.served(&a, 0);
        assert_eq!(recent.feedback(&a, 1, 0), FeedbackOutcome::New);
        recent.written(&a, false);
        assert_eq!(recent.feedback(&a, 1, 0), FeedbackOutcome::New);
    }

    #[test]
    fn feedback_after_the_window_is_refused() {
        let recent = RecentDecisions::new(4, Duration::ZERO);
        let a = uuid::Uuid::new_v4();
        recent.served(&a, 0);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(recent.feedback(&a, 1, 0), FeedbackOutcome::Unknown);
    }
}
