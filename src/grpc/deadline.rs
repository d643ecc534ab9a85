//! The caller's deadline from the `grpc-timeout` header, so a request that can no longer be answered
//! in time is not run at all.

use std::time::{Duration, Instant};

pub fn from_metadata(meta: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let raw = meta.get("grpc-timeout")?.to_str().ok()?;
    Some(Instant::now() + parse(raw)?)
}

/// The caller's deadline, else the server's default for callers that send none (so their wait in
/// an overloaded queue stays bounded too).
pub fn for_request(
    meta: &tonic::metadata::MetadataMap,
    default: Option<Duration>,
) -> Option<Instant> {
    from_metadata(meta).or_else(|| default.map(|d| Instant::now() + d))
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
