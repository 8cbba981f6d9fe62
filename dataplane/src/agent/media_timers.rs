//! [`MediaTimers`]: every call's next media deadline, on a wheel of one-tick buckets.
//!
//! A core carrying a thousand calls arms and fires fifty thousand media deadlines a second
//! (a packet every 20 ms each). A binary heap pays a logarithmic sift with a comparison of
//! two instants at every level for each; here a deadline goes into the bucket of the tick
//! boundary at or after it, and a tick's turn takes its whole bucket: constant work per
//! deadline, no allocation once the buckets have grown. The core wakes for media only on
//! tick boundaries anyway ([`super::MEDIA_TICK`]), so nothing fires later than it did.
//!
//! Deadlines further than the wheel's span (RTCP's seconds, a long silence) go to a heap;
//! they are few.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::call_table::CallKey;
use crate::api::CallId;

/// Buckets on the wheel: its span is this many ticks.
const WHEEL_TICKS: usize = 256;
const WORDS: usize = WHEEL_TICKS / 64;

/// One armed media deadline. Entries are not removed when a call re-arms or ends: the
/// caller checks that the slot still holds `call` and still has `deadline` armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct MediaTimer {
    pub(super) deadline: Instant,
    pub(super) key: CallKey,
    pub(super) call: CallId,
}

/// The wheel.
#[derive(Debug)]
pub(super) struct MediaTimers {
    tick: Duration,
    /// Tick 0's boundary (the loop's start); set by [`Self::start`] or the first deadline.
    epoch: Option<Instant>,
    /// The first tick not yet drained: every entry's tick is at or after it.
    cursor: u64,
    buckets: Vec<Vec<MediaTimer>>,
    /// A bit per bucket that holds entries.
    occupied: [u64; WORDS],
    /// Deadlines beyond the wheel's span, by tick.
    far: BinaryHeap<Reverse<(u64, MediaTimer)>>,
}

impl MediaTimers {
    /// An empty wheel of `tick`-long buckets (a zero tick is taken as one nanosecond).
    pub(super) fn new(tick: Duration) -> Self {
        Self {
            tick: tick.max(Duration::from_nanos(1)),
            epoch: None,
            cursor: 0,
            buckets: (0..WHEEL_TICKS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            far: BinaryHeap::new(),
        }
    }

    /// Counts ticks from `epoch` (the loop's start), if nothing is armed yet.
    pub(super) fn start(&mut self, epoch: Instant) {
        if self.is_empty() {
            self.epoch = Some(epoch);
            self.cursor = 0;
        }
    }

    /// Arms `timer`: it is due on the first tick boundary at or after its deadline.
    pub(super) fn push(&mut self, timer: MediaTimer) {
        let epoch = *self.epoch.get_or_insert(timer.deadline);
        let tick = self
            .tick_at_or_after(epoch, timer.deadline)
            .max(self.cursor);
        if tick - self.cursor < WHEEL_TICKS as u64 {
            let bucket = (tick % WHEEL_TICKS as u64) as usize;
            if let Some(entries) = self.buckets.get_mut(bucket) {
                entries.push(timer);
                self.set_occupied(bucket);
            }
        } else {
            self.far.push(Reverse((tick, timer)));
        }
    }

    /// Moves every timer whose tick boundary is at or before `now` into `due`.
    pub(super) fn drain_due(&mut self, now: Instant, due: &mut Vec<MediaTimer>) {
        let Some(epoch) = self.epoch else {
            return;
        };
        let Some(last) = self.tick_at_or_before(epoch, now) else {
            return;
        };
        while self.cursor <= last {
            let Some(distance) = self.next_occupied() else {
                self.cursor = last + 1;
                break;
            };
            let tick = self.cursor + distance;
            if tick > last {
                self.cursor = last + 1;
                break;
            }
            let bucket = (tick % WHEEL_TICKS as u64) as usize;
            if let Some(entries) = self.buckets.get_mut(bucket) {
                due.append(entries);
            }
            self.clear_occupied(bucket);
            self.cursor = tick + 1;
        }
        while let Some(Reverse((tick, timer))) = self.far.peek().copied() {
            if tick > last {
                break;
            }
            self.far.pop();
            due.push(timer);
        }
    }

    /// The earliest tick boundary with something armed.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let epoch = self.epoch?;
        let wheel = self.next_occupied().map(|distance| self.cursor + distance);
        let far = self.far.peek().map(|Reverse((tick, _))| *tick);
        let tick = match (wheel, far) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let nanos = u64::try_from(u128::from(tick) * self.tick.as_nanos()).ok()?;
        epoch.checked_add(Duration::from_nanos(nanos))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.occupied.iter().all(|word| *word == 0) && self.far.is_empty()
    }

    fn tick_at_or_after(&self, epoch: Instant, at: Instant) -> u64 {
        let since = at.saturating_duration_since(epoch).as_nanos();
        u64::try_from(since.div_ceil(self.tick.as_nanos())).unwrap_or(u64::MAX / 2)
    }

    /// `None` before the epoch.
    fn tick_at_or_before(&self, epoch: Instant, at: Instant) -> Option<u64> {
        let since = at.checked_duration_since(epoch)?.as_nanos();
        Some(u64::try_from(since / self.tick.as_nanos()).unwrap_or(u64::MAX / 2))
    }

    /// Ticks from the cursor to the first occupied bucket, going round the wheel once.
    fn next_occupied(&self) -> Option<u64> {
        let start = (self.cursor % WHEEL_TICKS as u64) as usize;
        let (first_word, first_bit) = (start / 64, start % 64);
        for step in 0..=WORDS {
            let word = (first_word + step) % WORDS;
            let mut bits = self.occupied.get(word).copied().unwrap_or(0);
            if step == 0 {
                bits &= u64::MAX << first_bit;
            } else if step == WORDS {
                // Back at the first word: only the bits before the cursor are left.
                bits &= !(u64::MAX << first_bit);
            }
            if bits != 0 {
                let bucket = word * 64 + bits.trailing_zeros() as usize;
                let distance = (bucket + WHEEL_TICKS - start) % WHEEL_TICKS;
                return Some(distance as u64);
            }
        }
        None
    }

    fn set_occupied(&mut self, bucket: usize) {
        if let Some(word) = self.occupied.get_mut(bucket / 64) {
            *word |= 1 << (bucket % 64);
        }
    }

    fn clear_occupied(&mut self, bucket: usize) {
        if let Some(word) = self.occupied.get_mut(bucket / 64) {
            *word &= !(1 << (bucket % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(1);

    fn timer(deadline: Instant, call: u64) -> MediaTimer {
        MediaTimer {
            deadline,
            key: CallKey::for_test(call as u32),
            call: CallId(call),
        }
    }

    /// A wheel of 1 ms ticks started now, and its epoch.
    fn started() -> (Instant, MediaTimers) {
        let epoch = Instant::now();
        let mut timers = MediaTimers::new(TICK);
        timers.start(epoch);
        (epoch, timers)
    }

    fn drained(timers: &mut MediaTimers, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        timers.drain_due(now, &mut due);
        let mut calls: Vec<u64> = due.iter().map(|t| t.call.0).collect();
        calls.sort_unstable();
        calls
    }

    #[test]
    fn a_deadline_fires_on_the_tick_boundary_at_or_after_it() {
        let (epoch, mut timers) = started();
        let at = epoch + Duration::from_micros(20_300);
        timers.push(timer(at, 1));
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_millis(21))
        );
        assert!(drained(&mut timers, at).is_empty(), "before the boundary");
        assert!(drained(&mut timers, epoch + Duration::from_micros(20_999)).is_empty());
        assert_eq!(drained(&mut timers, epoch + Duration::from_millis(21)), [1]);
        assert!(timers.is_empty() && timers.next_deadline().is_none());
    }

    #[test]
    fn a_turn_takes_every_bucket_it_passed_and_nothing_later() {
        let (epoch, mut timers) = started();
        for call in 0..100 {
            timers.push(timer(epoch + Duration::from_micros(call * 700), call));
        }
        // Boundary 35 ms covers deadlines up to 35 ms: calls 0..=50 (50 × 0.7 = 35).
        assert_eq!(
            drained(&mut timers, epoch + Duration::from_millis(35)),
            (0..=50).collect::<Vec<_>>()
        );
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_millis(36))
        );
        assert_eq!(
            drained(&mut timers, epoch + Duration::from_secs(1)),
            (51..100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn deadlines_beyond_the_wheel_and_round_it_keep_their_order() {
        let (epoch, mut timers) = started();
        timers.push(timer(epoch + Duration::from_secs(5), 1)); // RTCP: far beyond the wheel
        timers.push(timer(epoch + Duration::from_millis(255), 2)); // last bucket of the span
        timers.push(timer(epoch + Duration::from_millis(3), 3));
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_millis(3))
        );
        assert_eq!(
            drained(&mut timers, epoch + Duration::from_millis(200)),
            [3]
        );
        // Now the wheel's span reaches past 255 ms: a deadline at 400 ms shares bucket
        // 400 % 256 = 144 with no earlier tick.
        timers.push(timer(epoch + Duration::from_millis(400), 4));
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_millis(255))
        );
        assert_eq!(
            drained(&mut timers, epoch + Duration::from_millis(399)),
            [2]
        );
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_millis(400))
        );
        assert_eq!(
            drained(&mut timers, epoch + Duration::from_millis(4_999)),
            [4]
        );
        assert_eq!(timers.next_deadline(), Some(epoch + Duration::from_secs(5)));
        assert_eq!(drained(&mut timers, epoch + Duration::from_secs(5)), [1]);
        assert!(timers.is_empty());
    }

    #[test]
    fn a_deadline_already_past_fires_on_the_next_turn() {
        let (epoch, mut timers) = started();
        timers.push(timer(epoch + Duration::from_millis(10), 1));
        assert_eq!(drained(&mut timers, epoch + Duration::from_millis(10)), [1]);
        // Armed for a time the wheel has passed: it is due at once.
        timers.push(timer(epoch + Duration::from_millis(2), 2));
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_millis(11))
        );
        assert_eq!(drained(&mut timers, epoch + Duration::from_millis(11)), [2]);
    }

    #[test]
    fn a_stalled_loop_catches_up_in_one_turn() {
        let (epoch, mut timers) = started();
        for call in 0..1_000 {
            timers.push(timer(epoch + Duration::from_micros(call * 250), call));
        }
        // 250 ms of deadlines, then the loop wakes 10 s late: all of them, once.
        assert_eq!(
            drained(&mut timers, epoch + Duration::from_secs(10)).len(),
            1_000
        );
        assert!(timers.is_empty());
        timers.push(timer(epoch + Duration::from_secs(11), 7));
        assert_eq!(
            timers.next_deadline(),
            Some(epoch + Duration::from_secs(11))
        );
    }

    /// Random pushes and turns against a model (a sorted list): each turn takes exactly the
    /// timers whose tick boundary (at or after their deadline) has passed, and
    /// `next_deadline` is the earliest boundary left.
    #[test]
    fn the_wheel_agrees_with_a_model_on_random_schedules() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let epoch = Instant::now();
        let boundary = |at: Instant| {
            let ticks = at
                .duration_since(epoch)
                .as_nanos()
                .div_ceil(TICK.as_nanos());
            epoch + TICK * u32::try_from(ticks).expect("small")
        };
        for seed in 0..200 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut timers = MediaTimers::new(TICK);
            timers.start(epoch);
            let mut model: Vec<(Instant, u64)> = Vec::new();
            let mut now = epoch;
            let mut first_undrained = epoch;
            let mut next_call = 0;
            for _ in 0..300 {
                if rng.random_bool(0.6) {
                    // Mostly within the wheel (20 ms slots), sometimes far (RTCP), sometimes past.
                    let ahead = match rng.random_range(0..10) {
                        0 => Duration::from_millis(rng.random_range(300..6_000)),
                        1 => Duration::ZERO,
                        _ => Duration::from_micros(rng.random_range(0..400_000)),
                    };
                    let deadline = if rng.random_range(0..20) == 0 {
                        now.checked_sub(Duration::from_millis(3))
                            .unwrap_or(now)
                            .max(epoch)
                    } else {
                        now + ahead
                    };
                    timers.push(timer(deadline, next_call));
                    // A deadline on a tick the wheel has passed is due at its first tick left.
                    model.push((boundary(deadline).max(first_undrained), next_call));
                    next_call += 1;
                } else {
                    now += Duration::from_micros(rng.random_range(0..600_000));
                    let got = drained(&mut timers, now);
                    let ticks = now.duration_since(epoch).as_nanos() / TICK.as_nanos() + 1;
                    first_undrained = epoch + TICK * u32::try_from(ticks).expect("small");
                    let mut want: Vec<u64> = model
                        .iter()
                        .filter(|(due, _)| *due <= now)
                        .map(|(_, call)| *call)
                        .collect();
                    want.sort_unstable();
                    model.retain(|(due, _)| *due > now);
                    assert_eq!(got, want, "seed {seed}");
                }
                let earliest = model.iter().map(|(due, _)| *due).min();
                assert_eq!(timers.next_deadline(), earliest, "seed {seed}");
            }
        }
    }

    #[test]
    fn without_a_start_the_first_deadline_is_the_epoch() {
        let at = Instant::now();
        let mut timers = MediaTimers::new(TICK);
        timers.push(timer(at, 1));
        assert_eq!(timers.next_deadline(), Some(at));
        assert!(drained(&mut timers, at - Duration::from_millis(1)).is_empty());
        assert_eq!(drained(&mut timers, at), [1]);
    }
}
