//! When the load tool asks for calls: a fixed rate, a linear ramp, or a fixed number of calls
//! in flight, until a duration has passed or a count has been asked for. Pure arithmetic on
//! the elapsed time and counts it is given.

use std::time::Duration;

/// How calls are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Calls per second, steady.
    Rate(f64),
    /// From `from` to `to` calls per second, linearly over `over`, then `to`.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end of `over`.
        to: f64,
        /// How long the ramp lasts.
        over: Duration,
    },
    /// This many calls in flight (asked for and not yet settled) at all times.
    Concurrency(u64),
}

impl Pace {
    /// Calls an open-loop pace should have asked for by `elapsed` (the integral of its rate);
    /// `None` for [`Pace::Concurrency`], which follows the calls instead.
    pub fn due(&self, elapsed: Duration) -> Option<u64> {
        let t = elapsed.as_secs_f64();
        let calls = match *self {
            Self::Rate(rate) => rate * t,
            Self::Ramp { from, to, over } => {
                let span = over.as_secs_f64();
                if span <= 0.0 {
                    to * t
                } else {
                    let ramp = t.min(span);
                    let slope = (to - from) / span;
                    from * ramp + slope * ramp * ramp / 2.0 + to * (t - ramp)
                }
            }
            Self::Concurrency(_) => return None,
        };
        // Whole calls only, and never a call early: 9.999… is 9.
        Some((calls + 1e-9).floor() as u64)
    }

    /// The rate the pace asks for at `elapsed`, calls per second (`None` for concurrency).
    pub fn rate_at(&self, elapsed: Duration) -> Option<f64> {
        match *self {
            Self::Rate(rate) => Some(rate),
            Self::Ramp { from, to, over } => {
                let span = over.as_secs_f64();
                let done = if span <= 0.0 {
                    1.0
                } else {
                    (elapsed.as_secs_f64() / span).min(1.0)
                };
                Some(from + (to - from) * done)
            }
            Self::Concurrency(_) => None,
        }
    }
}

/// A whole run's plan: the pace, when to stop, and how many calls go in one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// How calls are paced.
    pub pace: Pace,
    /// Stop asking after this long.
    pub duration: Option<Duration>,
    /// Stop asking after this many calls.
    pub count: Option<u64>,
    /// Calls per request (1: `POST /v1/calls`; more: `POST /v1/calls/batch`).
    pub batch: u64,
}

impl Plan {
    /// True once no more calls are to be asked for: the count is reached, or the duration
    /// has passed and every call due by its end was asked for.
    pub fn finished(&self, elapsed: Duration, requested: u64) -> bool {
        if self.count.is_some_and(|c| requested >= c) {
            return true;
        }
        let Some(end) = self.duration.filter(|d| elapsed >= *d) else {
            return false;
        };
        let count = self.count.unwrap_or(u64::MAX);
        self.pace
            .due(end)
            .is_none_or(|due| requested >= due.min(count))
    }

    /// How many calls to ask for now, given how many were asked for and how many are in
    /// flight: whole batches, except a last smaller one that completes `count` or the calls
    /// due by the end of `duration`.
    pub fn to_request(&self, elapsed: Duration, requested: u64, in_flight: u64) -> u64 {
        if self.finished(elapsed, requested) {
            return 0;
        }
        let past_end = self.duration.is_some_and(|d| elapsed >= d);
        let at = self.duration.map_or(elapsed, |d| elapsed.min(d));
        let remaining = self.count.map_or(u64::MAX, |c| c - requested);
        let wanted = match self.pace {
            Pace::Concurrency(n) => n.saturating_sub(in_flight),
            open_loop => open_loop.due(at).unwrap_or(0).saturating_sub(requested),
        };
        let wanted = wanted.min(remaining);
        let batch = self.batch.max(1);
        if wanted == remaining || past_end || matches!(self.pace, Pace::Concurrency(_)) {
            // The last calls of a count or of the duration, or room for calls in flight: ask
            // for them now, in batches as large as fit.
            wanted
        } else {
            wanted / batch * batch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_fixed_rate_asks_for_whole_calls_on_time() {
        let pace = Pace::Rate(10.0);
        assert_eq!(pace.due(secs(0.0)), Some(0));
        assert_eq!(pace.due(secs(0.099)), Some(0));
        assert_eq!(pace.due(secs(0.1)), Some(1));
        assert_eq!(pace.due(secs(2.55)), Some(25));
        assert_eq!(pace.rate_at(secs(5.0)), Some(10.0));
    }

    #[test]
    fn a_ramp_integrates_its_rate_and_then_holds_the_last() {
        let pace = Pace::Ramp {
            from: 0.0,
            to: 100.0,
            over: secs(10.0),
        };
        // Area under a line from 0 to 100 over 10 s: 500 calls; half-way, a quarter of that.
        assert_eq!(pace.due(secs(10.0)), Some(500));
        assert_eq!(pace.due(secs(5.0)), Some(125));
        assert_eq!(pace.due(secs(11.0)), Some(600));
        assert_eq!(pace.rate_at(secs(5.0)), Some(50.0));
        assert_eq!(pace.rate_at(secs(20.0)), Some(100.0));
        let down = Pace::Ramp {
            from: 20.0,
            to: 10.0,
            over: secs(2.0),
        };
        assert_eq!(down.due(secs(2.0)), Some(30));
    }

    #[test]
    fn batches_are_whole_until_the_count_is_nearly_reached() {
        let plan = Plan {
            pace: Pace::Rate(100.0),
            duration: None,
            count: Some(250),
            batch: 100,
        };
        assert_eq!(plan.to_request(secs(0.5), 0, 0), 0);
        assert_eq!(plan.to_request(secs(1.0), 0, 0), 100);
        assert_eq!(plan.to_request(secs(2.1), 100, 0), 100);
        assert_eq!(plan.to_request(secs(2.4), 200, 0), 0);
        assert_eq!(plan.to_request(secs(2.5), 200, 0), 50);
        assert!(plan.finished(secs(3.0), 250));
        assert_eq!(plan.to_request(secs(9.0), 250, 0), 0);
    }

    #[test]
    fn every_call_due_by_the_end_of_the_duration_is_asked_for() {
        let plan = Plan {
            pace: Pace::Rate(2.0),
            duration: Some(secs(5.0)),
            count: None,
            batch: 100,
        };
        assert_eq!(plan.to_request(secs(4.9), 0, 0), 0, "no whole batch yet");
        assert!(!plan.finished(secs(5.0), 0));
        assert_eq!(
            plan.to_request(secs(5.3), 0, 0),
            10,
            "the last, smaller batch"
        );
        assert!(plan.finished(secs(5.3), 10));
        let single = Plan { batch: 1, ..plan };
        assert_eq!(single.to_request(secs(4.9), 0, 0), 9);
        assert_eq!(single.to_request(secs(5.01), 9, 0), 1);
        assert!(single.finished(secs(5.01), 10));
    }

    #[test]
    fn concurrency_refills_what_has_settled_until_the_duration() {
        let plan = Plan {
            pace: Pace::Concurrency(8),
            duration: Some(secs(60.0)),
            count: None,
            batch: 1,
        };
        assert_eq!(plan.to_request(secs(0.0), 0, 0), 8);
        assert_eq!(plan.to_request(secs(1.0), 8, 8), 0);
        assert_eq!(plan.to_request(secs(2.0), 8, 5), 3);
        assert!(!plan.finished(secs(59.9), 1000));
        assert_eq!(plan.to_request(secs(60.0), 1000, 0), 0);
        assert_eq!(Pace::Concurrency(8).due(secs(1.0)), None);
    }
}
