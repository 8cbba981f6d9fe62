//! A token bucket: how many calls may start now, and when the next one may.
//!
//! Sans-IO: time comes in as [`Micros`] (microseconds on any monotonic or wall scale the caller
//! keeps consistent), so the release rate is tested in virtual time.

use super::Micros;

/// Calls per second with a burst allowance; `rate = 0` means unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens held at once.
    burst: f64,
    tokens: f64,
    updated: Micros,
}

impl TokenBucket {
    /// A bucket that starts full. `per_second = 0` never limits.
    pub fn new(per_second: u32, burst: u32, now: Micros) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(per_second),
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// True when the bucket never refuses.
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Micros) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens available now, whole.
    pub fn available(&mut self, now: Micros) -> usize {
        if self.is_unlimited() {
            return usize::MAX;
        }
        self.refill(now);
        self.tokens as usize
    }

    /// When the next token will be there (`now` if one is).
    pub fn next_token_at(&mut self, now: Micros) -> Micros {
        if self.is_unlimited() {
            return now;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let wait_secs = (1.0 - self.tokens) / self.rate;
        now.saturating_add((wait_secs * 1e6).ceil() as Micros)
    }

    fn refill(&mut self, now: Micros) {
        if now > self.updated {
            let elapsed = (now - self.updated) as f64 / 1e6;
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.updated = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Micros = 1_000_000;

    #[test]
    fn a_full_bucket_releases_its_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(10, 5, 0);
        let burst = (0..100).filter(|_| bucket.try_take(0)).count();
        assert_eq!(burst, 5);
        assert_eq!(bucket.next_token_at(0), SEC / 10);
        assert!(!bucket.try_take(SEC / 10 - 1));
        assert!(bucket.try_take(SEC / 10));
        // Over the next ten seconds: 100 tokens, never more than the burst at once.
        let mut taken = 0;
        for ms in 1..=10_000 {
            let now = SEC / 10 + ms * 1000;
            while bucket.try_take(now) {
                taken += 1;
            }
        }
        assert_eq!(taken, 100);
    }

    #[test]
    fn an_idle_bucket_fills_to_its_burst_and_no_further() {
        let mut bucket = TokenBucket::new(100, 20, 0);
        while bucket.try_take(0) {}
        assert_eq!(bucket.available(3600 * SEC), 20);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut bucket = TokenBucket::new(0, 1, 0);
        assert!((0..10_000).all(|_| bucket.try_take(0)));
        assert_eq!(bucket.next_token_at(7), 7);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut bucket = TokenBucket::new(1, 1, 10 * SEC);
        assert!(bucket.try_take(10 * SEC));
        assert!(!bucket.try_take(5 * SEC));
        assert!(!bucket.try_take(10 * SEC));
        assert!(bucket.try_take(11 * SEC));
    }
}
