//! The caller's deadline from the `grpc-timeout` header, so a request that can no longer be answered
//! in time is not run at all.

use std::time::{Duration, Instant};

/// We answer DEADLINE_EXCEEDED this long before the caller's deadline: when tonic's timer fires
/// first it answers CANCELLED "Timeout expired", which tells the caller the wrong thing.
pub const ANSWER_EARLY: Duration = Duration::from_millis(2);

/// The caller's deadline from its `grpc-timeout` header, less `ANSWER_EARLY`.
pub fn from_headers(headers: &http::HeaderMap, arrived: Instant) -> Option<Instant> {
    let timeout = parse(headers.get("grpc-timeout")?.to_str().ok()?)?;
    Some(arrived + timeout.saturating_sub(ANSWER_EARLY))
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
