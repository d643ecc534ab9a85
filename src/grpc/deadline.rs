//! The caller's deadline from the `grpc-timeout` header, so a request that can no longer be answered
//! in time is not run at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// We answer DEADLINE_EXCEEDED at least this long before the caller's deadline: when tonic's timer
/// fires first it answers CANCELLED "Timeout expired", which tells the caller the wrong thing, and a
/// caller's own timer (on a busy machine, on the same cores) gives up without an answer at all.
pub const ANSWER_EARLY: Duration = Duration::from_millis(2);
/// The margin grows with the deadline, a tenth of it up to this: an answer has to leave the
/// process and cross the network before the caller's timer fires.
const MAX_BASE_MARGIN: Duration = Duration::from_millis(20);

/// How late our deadline timers have fired lately, µs, halving every second: under a storm the
/// runtime runs behind, and an answer made at the deadline less 2 ms leaves after it. Added to the
/// margin, so deadlines hold under load too.
static LAG_US: AtomicU64 = AtomicU64::new(0);
static LAG_AT_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// How far behind the runtime runs, from the recent lateness of deadline timers.
fn lag() -> Duration {
    let (lag, at) = (
        LAG_US.load(Ordering::Relaxed),
        LAG_AT_MS.load(Ordering::Relaxed),
    );
    let halvings = (now_ms().saturating_sub(at) / 1000).min(63);
    Duration::from_micros(lag >> halvings)
}

/// A deadline timer fired `late` after its instant.
pub fn timer_fired(late: Duration) {
    let late = late.as_micros() as u64;
    if late > lag().as_micros() as u64 {
        LAG_US.store(late, Ordering::Relaxed);
        LAG_AT_MS.store(now_ms(), Ordering::Relaxed);
    }
}

/// How long before a `timeout` we answer: a tenth of it (2 to 20 ms) plus how late timers fire
/// lately, never more than a quarter of it.
pub fn margin(timeout: Duration) -> Duration {
    let base = (timeout / 10).clamp(ANSWER_EARLY, MAX_BASE_MARGIN);
    (base + lag())
        .min(timeout / 4)
        .max(ANSWER_EARLY.min(timeout))
}

/// The caller's deadline from its `grpc-timeout` header, less the `margin`.
pub fn from_headers(headers: &http::HeaderMap, arrived: Instant) -> Option<Instant> {
    let timeout = parse(headers.get("grpc-timeout")?.to_str().ok()?)?;
    Some(arrived + timeout.saturating_sub(margin(timeout)))
}

/// `grpc-timeout` is at most 8 digits and a unit: H, M, S, m (ms), u (µs), n (ns).
fn parse(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_grows_with_the_deadline_and_with_late_timers() {
        assert_eq!(margin(Duration::from_millis(10)), Duration::from_millis(2));
        assert_eq!(margin(Duration::from_millis(50)), Duration::from_millis(5));
        assert_eq!(margin(Duration::from_secs(5)), Duration::from_millis(20));
        timer_fired(Duration::from_millis(6));
        let m = margin(Duration::from_secs(5));
        assert!(m > Duration::from_millis(25), "{m:?}");
        // Never more than a quarter of the deadline.
        assert!(margin(Duration::from_millis(50)) <= Duration::from_micros(12_500));
    }

    #[test]
    fn parses_every_unit_and_refuses_garbage() {
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("m"), None);
        assert_eq!(parse("10x"), None);
        assert_eq!(parse("123456789S"), None);
    }
}
