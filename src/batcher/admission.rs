//! Admission: the work ahead of a new request, whether it can still make its deadline, and how a
//! refusal is held back so that callers sending again at once do not flood the server.

use std::time::{Duration, Instant};

use super::BatchError;

/// The work ahead of a new request: texts queued or in a batch not yet answered, and the recent
/// time per text (an exponential average, µs). Lets enqueue tell whether a request can still make
/// its deadline.
#[derive(Default)]
pub(super) struct Backlog {
    pending: std::sync::atomic::AtomicUsize,
    per_text_us: std::sync::atomic::AtomicU64,
    /// Texts ever queued: a run that sees it move had company arrive meanwhile.
    arrivals: std::sync::atomic::AtomicU64,
    /// Share of recent lone runs (one text, nothing else queued or running) during which no other
    /// text arrived: an exponential average over ~16 runs, in 1/65536ths; see `quiet`.
    undisturbed: std::sync::atomic::AtomicU32,
}

/// A lone text runs split only while at least this share of recent lone runs saw no other text
/// arrive. A split run holds both cores and does ~3/4 of the work per core-second a whole run
/// does, so under steady load it queues the texts that arrive meanwhile: at half of peak (open
/// loop, a request every 4.7 ms) splitting every lone text raised p99 from 15 to 23 ms. A single
/// caller, the case splitting is for, never sends while its call runs.
const QUIET_SHARE: u32 = 58_982; // 0.9 of 65536

impl Backlog {
    /// A server starts idle: lone texts may run split until runs say otherwise.
    pub(super) fn idle() -> Backlog {
        let backlog = Backlog::default();
        backlog
            .undisturbed
            .store(65_536, std::sync::atomic::Ordering::Relaxed);
        backlog
    }

    pub(super) fn added(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_add(1, Relaxed);
        self.arrivals.fetch_add(1, Relaxed);
    }

    pub(super) fn arrivals(&self) -> u64 {
        self.arrivals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A lone run ended; `disturbed`: another text arrived while it ran.
    pub(super) fn lone_run_done(&self, disturbed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        // Racy read-modify-write on purpose: an average, and a lost update costs nothing.
        let old = self.undisturbed.load(Relaxed);
        let sample = if disturbed { 0 } else { 65_536 };
        self.undisturbed.store((old * 15 + sample) / 16, Relaxed);
    }

    /// Lone runs have recently had the server to themselves: splitting delays almost nobody.
    pub(super) fn quiet(&self) -> bool {
        self.undisturbed.load(std::sync::atomic::Ordering::Relaxed) >= QUIET_SHARE
    }

    /// `texts` left the queue without running (refused by the tokenizer), or never entered it.
    pub(super) fn dropped(&self, texts: usize) {
        self.pending
            .fetch_sub(texts, std::sync::atomic::Ordering::Relaxed);
    }

    /// Texts queued or running, this one included.
    pub(super) fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A batch of `texts` was answered after `took`.
    pub(super) fn done(&self, took: Duration, texts: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_sub(texts, Relaxed);
        let sample = took.as_micros() as u64 / texts.max(1) as u64;
        let old = self.per_text_us.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.per_text_us.store(new, Relaxed);
    }

    /// Expected time until a request queued now starts running; `seed` is the time per text
    /// until a batch has run.
    pub(super) fn wait(&self, workers: usize, seed: Option<Duration>) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let per_text = match self.per_text_us.load(Relaxed) {
            0 => seed.unwrap_or_default(),
            us => Duration::from_micros(us),
        };
        per_text * (self.pending.load(Relaxed) / workers.max(1)) as u32
    }
}

/// The longest a refusal is held back (see `held`).
pub(super) const MAX_HOLD: Duration = Duration::from_millis(100);

/// A shed request's refusal, sent after a pause: the estimated wait, at most half of the caller's
/// remaining deadline and at most `MAX_HOLD`, with the retry hint cut by the time held. A client
/// that sends again at once (many do) would otherwise turn each refusal into its next request: in a
/// storm of 256 such callers on this machine, ~30,000 refusals a second took the cores from
/// inference and only 17 % of the peak was answered. Holding costs a timer, not a core, and leaves
/// the caller half its time to try elsewhere. Other errors are returned as they are.
pub(super) async fn held(e: BatchError, deadline: Option<Instant>) -> BatchError {
    let wait_ms = match &e {
        BatchError::QueueFull { wait_ms, .. } | BatchError::WouldMissDeadline { wait_ms } => {
            *wait_ms
        }
        _ => return e,
    };
    let now = Instant::now();
    let left = deadline.map_or(MAX_HOLD * 2, |d| d.saturating_duration_since(now));
    let hold = Duration::from_millis(wait_ms).min(left / 2).min(MAX_HOLD);
    tokio::time::sleep(hold).await;
    let wait_ms = wait_ms.saturating_sub(hold.as_millis() as u64);
    match e {
        BatchError::QueueFull { capacity, .. } => BatchError::QueueFull { capacity, wait_ms },
        _ => BatchError::WouldMissDeadline { wait_ms },
    }
}
