//! Repeated failures (a full disk under the decision log, a span collector that is down) log one
//! line per interval saying how many more there were, so a fault floods neither the log nor the
//! disk it may be filling. The counters beside each call site still count every failure.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One per call site, usually a `static`.
pub struct Throttled {
    interval: Duration,
    /// When the last line was logged, and failures since that were not.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    pub const fn new(interval: Duration) -> Self {
        Throttled {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Log `message` at ERROR unless a line went out less than `interval` ago; then it is counted
    /// and the next line says how many were suppressed. True when this one was logged.
    pub fn error(&self, message: impl FnOnce() -> String) -> bool {
        let Some(suppressed) = self.admit() else {
            return false;
        };
        let message = message();
        if suppressed == 0 {
            tracing::error!("{message}");
        } else {
            tracing::error!("{message} ({suppressed} more like it since the last line)");
        }
        true
    }

    /// `Some(suppressed since the last line)` when a line may go out now.
    fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_of_the_rest() {
        let throttled = Throttled::new(Duration::from_millis(200));
        assert_eq!(throttled.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttled.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(throttled.admit(), Some(1000));
        assert_eq!(throttled.admit(), None);
    }
}
