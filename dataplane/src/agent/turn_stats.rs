//! [`TurnCounters`]: how long a core's turns run, as control reads it.
//!
//! A core serves everything due while it waited in one turn; a long turn delays every
//! packet and timer due during it. Control exports these as `outdial_core_turns_total`,
//! `outdial_core_long_turns_total{over}` (turns past 1, 2 or 10 ms) and
//! `outdial_core_busy_ratio` (the busy time's share of each second, from the deltas). The
//! core writes them once per turn, with relaxed atomic adds; nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Thresholds of the long-turn counters, with their labels.
pub const LONG_TURNS: [(Duration, &str); 3] = [
    (Duration::from_millis(1), "1ms"),
    (Duration::from_millis(2), "2ms"),
    (Duration::from_millis(10), "10ms"),
];

/// One core's turn counters.
#[derive(Debug, Default)]
pub struct TurnCounters {
    turns: AtomicU64,
    busy_nanos: AtomicU64,
    over: [AtomicU64; LONG_TURNS.len()],
}

/// The counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Turns run.
    pub turns: u64,
    /// Their total running time.
    pub busy: Duration,
    /// Turns longer than each of [`LONG_TURNS`], in its order.
    pub over: [u64; LONG_TURNS.len()],
}

impl TurnCounters {
    /// Counts one turn that ran `busy`.
    pub fn record(&self, busy: Duration) {
        self.turns.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        for ((threshold, _), count) in LONG_TURNS.iter().zip(&self.over) {
            if busy > *threshold {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts now.
    pub fn get(&self) -> TurnStats {
        let mut over = [0; LONG_TURNS.len()];
        for (slot, count) in over.iter_mut().zip(&self.over) {
            *slot = count.load(Ordering::Relaxed);
        }
        TurnStats {
            turns: self.turns.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
            over,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_count_their_time_and_each_threshold_they_pass() {
        let counters = TurnCounters::default();
        for micros in [40, 900, 1_500, 2_500, 12_000] {
            counters.record(Duration::from_micros(micros));
        }
        let stats = counters.get();
        assert_eq!(stats.turns, 5);
        assert_eq!(stats.busy, Duration::from_micros(16_940));
        // Past 1 ms: 1.5, 2.5, 12; past 2 ms: 2.5, 12; past 10 ms: 12. Exactly 1 ms is not past.
        assert_eq!(stats.over, [3, 2, 1]);
        counters.record(Duration::from_millis(1));
        assert_eq!(counters.get().over, [3, 2, 1]);
    }
}
