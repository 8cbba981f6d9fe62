//! Which destinations may have a callee record, kept in memory: a create whose destination
//! has none (nearly every create: records are kept for the few numbers that opted out or set
//! hours) is checked against the callee rules without a store read. Before it, every create
//! waited for a read on a blocking thread, two thread hand-offs that cost more than the
//! check (`bench/api/run.sh`: creates 0.38× the HTTP ceiling with the read, 0.46× without).
//!
//! A Bloom filter (no false negatives; about 0.3 % false positives at 16 bits per number, k = 4),
//! so a million records take 2 MB. A number recorded in this process is added at once, before
//! its record is written. Records written by another process (the CLI) are noticed by a
//! stamp, the table's row count and latest `updated_at`, looked at when the filter is more
//! than [`FRESH_FOR`] old: when it moved, the filter is built again from the table. Deleted
//! records stay in the filter until then (a false positive: a read). Acceptance is not the
//! only check: the callee rules run again, on fresh records, when a call is dispatched.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a look at the table's stamp holds.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(2);

/// Bits kept per recorded number.
const BITS_PER_NUMBER: usize = 16;
/// Probes per number.
const PROBES: u64 = 4;
/// The smallest filter, in bits.
const MIN_BITS: usize = 4096;

/// The table's state: rows and the latest change.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct Stamp {
    pub rows: i64,
    pub latest: Option<i64>,
}

#[derive(Default)]
struct Inner {
    bits: Vec<u64>,
    stamp: Option<Stamp>,
    checked: Option<Instant>,
}

/// See the module's documentation.
#[derive(Default)]
pub(super) struct CalleeFilter {
    inner: Mutex<Inner>,
}

impl CalleeFilter {
    /// `Some(false)`: none of `numbers` has a record. `Some(true)`: one may. `None`: the
    /// filter is not known to be current; look at the stamp first ([`CalleeFilter::confirm`]).
    pub(super) fn may_have(&self, numbers: &[String], now: Instant) -> Option<bool> {
        let inner = self.lock();
        let fresh = inner
            .checked
            .is_some_and(|at| now.saturating_duration_since(at) < FRESH_FOR);
        if !fresh || inner.bits.is_empty() {
            return None;
        }
        Some(numbers.iter().any(|n| contains(&inner.bits, n)))
    }

    /// The table's stamp as read at `now`: true when the filter matches it (and is now
    /// current), false when it must be built again ([`CalleeFilter::rebuild`]).
    pub(super) fn confirm(&self, stamp: Stamp, now: Instant) -> bool {
        let mut inner = self.lock();
        if inner.stamp == Some(stamp) && !inner.bits.is_empty() {
            inner.checked = Some(now);
            return true;
        }
        false
    }

    /// The filter anew from every recorded number, as of `stamp` read at `now`.
    pub(super) fn rebuild(&self, numbers: &[String], stamp: Stamp, now: Instant) {
        let size = (numbers.len() * BITS_PER_NUMBER)
            .max(MIN_BITS)
            .next_power_of_two();
        let mut bits = vec![0u64; size / 64];
        for number in numbers {
            insert(&mut bits, number);
        }
        *self.lock() = Inner {
            bits,
            stamp: Some(stamp),
            checked: Some(now),
        };
    }

    /// `number` is about to get a record in this process.
    pub(super) fn add(&self, number: &str) {
        let mut inner = self.lock();
        if !inner.bits.is_empty() {
            insert(&mut inner.bits, number);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The bit positions of `number` in a filter of `bits` (a power of two) bits.
fn probes(number: &str, bits: usize) -> impl Iterator<Item = usize> {
    let mut hasher = DefaultHasher::new();
    number.hash(&mut hasher);
    let first = hasher.finish();
    let step = first.rotate_left(32) | 1;
    let mask = bits as u64 - 1;
    (0..PROBES).map(move |i| (first.wrapping_add(i.wrapping_mul(step)) & mask) as usize)
}

fn insert(bits: &mut [u64], number: &str) {
    for at in probes(number, bits.len() * 64) {
        bits[at / 64] |= 1 << (at % 64);
    }
}

fn contains(bits: &[u64], number: &str) -> bool {
    probes(number, bits.len() * 64).all(|at| bits[at / 64] & (1 << (at % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|n| format!("+1555{n:07}")).collect()
    }

    #[test]
    fn recorded_numbers_are_always_found_and_others_rarely() {
        let filter = CalleeFilter::default();
        let now = Instant::now();
        let stamp = Stamp {
            rows: 10_000,
            latest: Some(7),
        };
        assert_eq!(filter.may_have(&numbers(0..1), now), None, "never built");
        filter.rebuild(&numbers(0..10_000), stamp, now);
        for number in numbers(0..10_000) {
            assert_eq!(filter.may_have(&[number], now), Some(true));
        }
        let strangers = numbers(10_000..110_000);
        let false_positives = strangers
            .iter()
            .filter(|n| filter.may_have(std::slice::from_ref(*n), now) == Some(true))
            .count();
        assert!(false_positives < 1_000, "{false_positives} of 100,000");
        // One recorded number among strangers: maybe.
        let mixed = [strangers[0].clone(), "+15550000042".to_owned()];
        assert_eq!(filter.may_have(&mixed, now), Some(true));
    }

    #[test]
    fn the_filter_is_stale_after_fresh_for_until_its_stamp_is_confirmed() {
        let filter = CalleeFilter::default();
        let now = Instant::now();
        let stamp = Stamp {
            rows: 0,
            latest: None,
        };
        assert!(!filter.confirm(stamp, now), "never built");
        filter.rebuild(&[], stamp, now);
        let number = numbers(0..1);
        assert_eq!(filter.may_have(&number, now), Some(false));
        let later = now + FRESH_FOR;
        assert_eq!(filter.may_have(&number, later), None);
        assert!(filter.confirm(stamp, later));
        assert_eq!(filter.may_have(&number, later), Some(false));
        // Another process wrote a record: the stamp moved.
        let moved = Stamp {
            rows: 1,
            latest: Some(9),
        };
        assert!(!filter.confirm(moved, later + FRESH_FOR));
        // A record made here is found at once.
        filter.add(&number[0]);
        assert_eq!(filter.may_have(&number, later), Some(true));
    }
}
