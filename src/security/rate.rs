//! Per-caller rate limits: a token bucket refilled continuously at `rate` tokens a second, holding
//! at most `burst`.

use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Take a token; `Err(rate)` when none is left.
    pub fn try_take(&self) -> Result<(), f64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let b = TokenBucket::new(100.0, 3.0);
        assert!((0..3).all(|_| b.try_take().is_ok()));
        assert!(b.try_take().is_err());
        std::thread::sleep(std::time::Duration::from_millis(25));
        assert!(b.try_take().is_ok(), "refilled after 25 ms at 100/s");
    }
}
