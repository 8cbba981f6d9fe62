//! Per-source rate limit for requests from strangers, in the manner of Kamailio's pike:
//! each source IP may send `limit` requests per `window`; past that it is ignored until a
//! whole window passes with it under the limit. Sans-IO: time is passed in. The table is
//! bounded; when full, sources idle for a window are forgotten first, and if none are, the
//! request is refused (a flood from many addresses cannot grow memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One source's count in its current window.
#[derive(Clone, Copy, Debug)]
struct Source {
    window_start: Instant,
    count: u32,
    /// Over the limit in the previous or current window.
    blocked: bool,
}

/// The per-source limiter.
#[derive(Clone, Debug)]
pub struct Pike {
    limit: u32,
    window: Duration,
    capacity: usize,
    sources: HashMap<IpAddr, Source>,
}

impl Pike {
    /// At most `limit` requests per `window` from one IP; at most `capacity` sources kept.
    pub fn new(limit: u32, window: Duration, capacity: usize) -> Self {
        Self {
            limit,
            window,
            capacity: capacity.max(1),
            sources: HashMap::new(),
        }
    }

    /// Counts one request from `ip` at `now`; true when it may be answered.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.capacity {
            let window = self.window;
            self.sources
                .retain(|_, s| now.saturating_duration_since(s.window_start) < window);
            if self.sources.len() >= self.capacity {
                return false;
            }
        }
        let source = self.sources.entry(ip).or_insert(Source {
            window_start: now,
            count: 0,
            blocked: false,
        });
        let elapsed = now.saturating_duration_since(source.window_start);
        if elapsed >= self.window {
            // A new window: a blocked source stays blocked if it was still over the limit
            // in the window just ended (a whole window without requests lifts it).
            source.blocked =
                source.blocked && source.count > self.limit && elapsed < self.window * 2;
            source.window_start = now;
            source.count = 0;
        }
        source.count = source.count.saturating_add(1);
        if source.count > self.limit {
            source.blocked = true;
        }
        !source.blocked
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn a_source_over_its_limit_is_refused_until_a_quiet_window() {
        let t0 = Instant::now();
        let mut pike = Pike::new(3, Duration::from_secs(2), 16);
        let a = ip("198.51.100.1");
        let allowed: Vec<bool> = (0..5).map(|_| pike.allow(t0, a)).collect();
        assert_eq!(allowed, [true, true, true, false, false]);
        // Another source is not affected.
        assert!(pike.allow(t0, ip("198.51.100.2")));
        // Next window, still flooding: stays blocked.
        let t1 = t0 + Duration::from_secs(2);
        assert!(!pike.allow(t1, a));
        // It keeps sending more than the limit in that window.
        for _ in 0..5 {
            pike.allow(t1, a);
        }
        // The window after: it was over the limit again, so still blocked.
        let t2 = t1 + Duration::from_secs(2);
        assert!(!pike.allow(t2, a));
        // A quiet window (only the one request above) lifts the block.
        let t3 = t2 + Duration::from_secs(2);
        assert!(pike.allow(t3, a));
        // Blocked again, then silent for two windows: allowed at once.
        for _ in 0..5 {
            pike.allow(t3, a);
        }
        assert!(!pike.allow(t3, a));
        assert!(pike.allow(t3 + Duration::from_secs(4), a));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_idle_sources_first() {
        let t0 = Instant::now();
        let mut pike = Pike::new(10, Duration::from_secs(1), 2);
        assert!(pike.allow(t0, ip("10.0.0.1")));
        assert!(pike.allow(t0, ip("10.0.0.2")));
        assert!(!pike.allow(t0, ip("10.0.0.3")), "full of active sources");
        assert_eq!(pike.tracked(), 2);
        let later = t0 + Duration::from_secs(1);
        assert!(pike.allow(later, ip("10.0.0.3")), "idle sources forgotten");
        assert_eq!(pike.tracked(), 1);
    }
}
