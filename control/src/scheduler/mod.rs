//! The scheduler: decides which accepted calls are placed, and when.
//!
//! Sans-IO, like the protocol machines: [`Scheduler`] is fed calls, call ends and the current
//! time, and hands back the calls to place and the calls to expire. The tokio task that runs it
//! (in `dispatch`) owns the clock, the store and the telephony nodes. That is what lets
//! schedules, expiry, priority and the release rate be tested in virtual time.
//!
//! A call leaves when all of these hold:
//! - it is due (`at`, or a retry's time) and not past its `not_after` (else it is expired);
//! - no due call of higher priority (then earlier due time, then earlier acceptance) is waiting;
//! - fewer than `max_in_flight` calls are being placed or are live on this control node;
//! - its tenant is below its concurrency cap (a tenant at its cap waits without blocking others);
//! - the overall release rate allows it (a token bucket: `[scheduler] calls_per_second`,
//!   `burst`), so a backlog of thousands is released smoothly rather than all at once.

mod queue;
mod rate;
pub mod task;

use std::collections::HashMap;
use std::sync::Arc;

pub use queue::{DueQueue, PendingCall, Released};
pub use rate::TokenBucket;

/// Microseconds since the Unix epoch: the scheduler's clock (due times are wall-clock times).
pub type Micros = i64;

/// Limits the scheduler applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerLimits {
    /// Calls placed or live at once on this control node.
    pub max_in_flight: usize,
    /// Calls released per second overall; 0 = no limit.
    pub calls_per_second: u32,
    /// Calls that may leave at once after an idle period.
    pub burst: u32,
}

/// Pending calls plus the limits on releasing them.
#[derive(Debug)]
pub struct Scheduler {
    queue: DueQueue,
    rate: TokenBucket,
    limits: SchedulerLimits,
    in_flight: usize,
    tenant_in_flight: HashMap<Arc<str>, usize>,
    tenant_caps: HashMap<Arc<str>, usize>,
}

impl Scheduler {
    /// An empty scheduler whose rate bucket starts full at `now`.
    pub fn new(limits: SchedulerLimits, now: Micros) -> Self {
        Self {
            queue: DueQueue::new(),
            rate: TokenBucket::new(limits.calls_per_second, limits.burst, now),
            limits,
            in_flight: 0,
            tenant_in_flight: HashMap::new(),
            tenant_caps: HashMap::new(),
        }
    }

    /// Queues an accepted call (new, a retry, or loaded from the store at start).
    pub fn insert(&mut self, call: PendingCall) {
        self.queue.insert(call);
    }

    /// Forgets a queued call (canceled through the API). Returns whether it was queued.
    pub fn remove(&mut self, id: &str) -> bool {
        self.queue.remove(id)
    }

    /// Sets (or with `None` lifts) a tenant's concurrency cap.
    pub fn set_tenant_cap(&mut self, tenant: &str, cap: Option<usize>) {
        match cap {
            Some(cap) => {
                self.tenant_caps.insert(Arc::from(tenant), cap);
            }
            None => {
                self.tenant_caps.remove(tenant);
            }
        }
        self.queue.unpark(tenant);
    }

    /// Releases what may leave now, counting each started call as in flight, and the calls
    /// past their `not_after`. `node_budget` is how many calls the telephony nodes take now
    /// (their own rates and capacity).
    pub fn poll(&mut self, now: Micros, node_budget: usize) -> Released {
        let free = self.limits.max_in_flight.saturating_sub(self.in_flight);
        let budget = free.min(node_budget).min(self.rate.available(now));
        let (caps, running) = (&self.tenant_caps, &self.tenant_in_flight);
        let mut started_per_tenant: HashMap<Arc<str>, usize> = HashMap::new();
        let released = self.queue.poll(now, budget, |tenant| {
            let Some(&cap) = caps.get(tenant) else {
                return true;
            };
            let live = running.get(tenant).copied().unwrap_or(0);
            let starting = started_per_tenant.get(tenant).copied().unwrap_or(0);
            let room = live + starting < cap;
            if room {
                *started_per_tenant.entry(Arc::from(tenant)).or_default() += 1;
            }
            room
        });
        for call in &released.start {
            self.rate.try_take(now);
            self.in_flight += 1;
            *self
                .tenant_in_flight
                .entry(Arc::clone(&call.tenant))
                .or_default() += 1;
        }
        released
    }

    /// A released call is over (ended, failed to claim, or went back to the queue for a
    /// retry): its slot is free again.
    pub fn finished(&mut self, tenant: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(count) = self.tenant_in_flight.get_mut(tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.tenant_in_flight.remove(tenant);
            }
        }
        self.queue.unpark(tenant);
    }

    /// When to poll again without new input: the next due time or expiry, or the next rate
    /// token while due calls wait for one. `None`: only new input changes anything.
    pub fn next_wakeup(&mut self, now: Micros) -> Option<Micros> {
        let timer = self.queue.next_deadline();
        let free = self.limits.max_in_flight > self.in_flight;
        let token = (free && self.queue.has_ready()).then(|| self.rate.next_token_at(now));
        match (timer, token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Calls queued (not yet released).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Calls released and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Micros = 1_000_000;

    fn limits(max_in_flight: usize, calls_per_second: u32, burst: u32) -> SchedulerLimits {
        SchedulerLimits {
            max_in_flight,
            calls_per_second,
            burst,
        }
    }

    fn call(id: usize, tenant: &str) -> PendingCall {
        PendingCall {
            id: format!("c{id}"),
            tenant: Arc::from(tenant),
            to: Arc::from("+15550100"),
            due_at: 0,
            priority: 5,
            not_after: None,
        }
    }

    #[test]
    fn a_backlog_of_three_thousand_leaves_at_the_configured_rate() {
        let mut scheduler = Scheduler::new(limits(100_000, 50, 10), 0);
        for i in 0..3000 {
            scheduler.insert(call(i, "t"));
        }
        // Walk virtual time by the scheduler's own wake-ups: the 20 ms token spacing.
        let mut now = 0;
        let mut per_second = vec![0usize; 61];
        while scheduler.queued() > 0 {
            let out = scheduler.poll(now, usize::MAX);
            per_second[(now / SEC) as usize] += out.start.len();
            if scheduler.queued() == 0 {
                break;
            }
            now = scheduler
                .next_wakeup(now)
                .expect("due calls wait for a token");
        }
        assert_eq!(
            per_second[0],
            10 + 49,
            "the burst, then a token every 20 ms"
        );
        assert!(per_second[1..59].iter().all(|&n| n == 50), "{per_second:?}");
        assert_eq!(per_second.iter().sum::<usize>(), 3000);
    }

    #[test]
    fn in_flight_calls_bound_the_release_until_they_finish() {
        let mut scheduler = Scheduler::new(limits(2, 0, 1), 0);
        for i in 0..5 {
            scheduler.insert(call(i, "t"));
        }
        assert_eq!(scheduler.poll(0, usize::MAX).start.len(), 2);
        assert!(scheduler.poll(0, usize::MAX).start.is_empty());
        assert_eq!(
            scheduler.next_wakeup(0),
            None,
            "full: only a finish changes anything"
        );
        scheduler.finished("t");
        assert_eq!(scheduler.poll(0, usize::MAX).start.len(), 1);
        assert_eq!(scheduler.in_flight(), 2);
    }

    #[test]
    fn node_budget_bounds_the_release() {
        let mut scheduler = Scheduler::new(limits(100, 0, 1), 0);
        for i in 0..5 {
            scheduler.insert(call(i, "t"));
        }
        assert_eq!(scheduler.poll(0, 3).start.len(), 3);
        assert_eq!(scheduler.poll(0, 0).start.len(), 0);
    }

    #[test]
    fn a_tenant_cap_holds_that_tenant_only() {
        let mut scheduler = Scheduler::new(limits(100, 0, 1), 0);
        scheduler.set_tenant_cap("capped", Some(2));
        for i in 0..4 {
            scheduler.insert(call(i, "capped"));
        }
        for i in 4..6 {
            scheduler.insert(call(i, "free"));
        }
        let out = scheduler.poll(0, usize::MAX);
        let capped = out.start.iter().filter(|c| &*c.tenant == "capped").count();
        assert_eq!((capped, out.start.len()), (2, 4));
        scheduler.finished("capped");
        let out = scheduler.poll(0, usize::MAX);
        assert_eq!(out.start.len(), 1);
        assert_eq!(&*out.start[0].tenant, "capped");
        scheduler.set_tenant_cap("capped", None);
        assert_eq!(scheduler.poll(0, usize::MAX).start.len(), 1);
    }

    #[test]
    fn a_scheduled_call_wakes_the_scheduler_at_its_time() {
        let mut scheduler = Scheduler::new(limits(10, 0, 1), 0);
        let mut later = call(1, "t");
        later.due_at = 3600 * SEC;
        scheduler.insert(later);
        assert!(scheduler.poll(0, 10).start.is_empty());
        assert_eq!(scheduler.next_wakeup(0), Some(3600 * SEC));
        assert_eq!(scheduler.poll(3600 * SEC, 10).start.len(), 1);
    }
}
