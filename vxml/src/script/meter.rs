//! A session's script work across the whole call, and the platform's way to stop it.
//!
//! Each evaluation has its own budget ([`super::ScriptLimits::budget`]); a [`Meter`] adds one
//! for the whole session, so an application that restarts a runaway script from a `<catch>`
//! cannot keep a CPU busy for long. Both count the engine's interrupt checks (about 10,000
//! ECMAScript operations each), not time: the interpreter reads no clock, and the same
//! application is stopped at the same point on every machine.
//!
//! [`Meter::stop`] may be called from any thread while a script runs: the engine's next
//! interrupt check ends the evaluation, and the interpreter ends the session at its next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A session's remaining script work and its stop flag. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Meter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    budget: u32,
    left: AtomicU32,
    stopped: AtomicBool,
}

impl Meter {
    /// A meter allowing `budget` interrupt checks in all.
    pub fn new(budget: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                budget,
                left: AtomicU32::new(budget),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// A meter that never runs out (stopping it still works).
    pub fn unlimited() -> Self {
        Self::new(u32::MAX)
    }

    /// The budget it started with.
    pub fn budget(&self) -> u32 {
        self.inner.budget
    }

    /// Interrupt checks spent so far.
    pub fn spent(&self) -> u32 {
        self.inner.budget - self.inner.left.load(Ordering::Relaxed)
    }

    /// Whether the whole budget is spent.
    pub fn exhausted(&self) -> bool {
        self.inner.left.load(Ordering::Relaxed) == 0
    }

    /// Stops the session's scripts now and for good (a cancel or hang-up from the platform).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether [`Meter::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Relaxed)
    }

    /// Takes one interrupt check; `false` when the script must stop (budget spent or stopped).
    pub(crate) fn take(&self) -> bool {
        !self.stopped()
            && self
                .inner
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_gives_its_budget_once_and_nothing_after_a_stop() {
        let meter = Meter::new(3);
        assert!(meter.take() && meter.take());
        assert_eq!(meter.spent(), 2);
        assert!(!meter.exhausted());
        assert!(meter.take());
        assert!(meter.exhausted());
        assert!(!meter.take(), "nothing left");
        assert_eq!(meter.spent(), 3, "a refused check spends nothing");

        let other = Meter::unlimited();
        let shared = other.clone();
        assert!(other.take());
        shared.stop();
        assert!(other.stopped());
        assert!(!other.take(), "a stopped meter refuses at once");
    }
}
