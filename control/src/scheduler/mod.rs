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
//! - its tenant's own release rate allows it (`calls_per_second` in the tenant's policy: a token
//!   bucket per tenant, so a tenant out of tokens waits without blocking others);
//! - the overall release rate allows it (a token bucket: `[scheduler] calls_per_second`,
//!   `burst`), so a backlog of thousands is released smoothly rather than all at once.

mod queue;
mod rate;
pub mod task;

use std::collections::{HashMap, HashSet};
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
    tenant_rates: HashMap<Arc<str>, TokenBucket>,
    /// Tenants whose calls are parked for want of a rate token.
    rate_parked: HashSet<Arc<str>>,
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
            tenant_rates: HashMap::new(),
            rate_parked: HashSet::new(),
        }
    }

    /// Sets (or with `None` lifts) a tenant's release rate: calls per second and burst.
    pub fn set_tenant_rate(&mut self, tenant: &str, rate: Option<(u32, u32)>, now: Micros) {
        match rate {
            Some((per_second, burst)) if per_second > 0 => {
                self.tenant_rates
                    .insert(Arc::from(tenant), TokenBucket::new(per_second, burst, now));
            }
            _ => {
                self.tenant_rates.remove(tenant);
            }
        }
        self.rate_parked.remove(tenant);
        self.queue.unpark(tenant);
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
        let refilled: Vec<Arc<str>> = self
            .rate_parked
            .iter()
            .filter(|t| {
                self.tenant_rates
                    .get_mut(&***t)
                    .is_none_or(|b| b.available(now) > 0)
            })
            .cloned()
            .collect();
        for tenant in refilled {
            self.rate_parked.remove(&tenant);
            self.queue.unpark(&tenant);
        }
        let free = self.limits.max_in_flight.saturating_sub(self.in_flight);
        let budget = free.min(node_budget).min(self.rate.available(now));
        let (caps, running, rates) = (
            &self.tenant_caps,
            &self.tenant_in_flight,
            &mut self.tenant_rates,
        );
        let mut started_per_tenant: HashMap<Arc<str>, usize> = HashMap::new();
        let mut out_of_tokens: Vec<Arc<str>> = Vec::new();
        let released = self.queue.poll(now, budget, |tenant| {
            let starting = started_per_tenant.get(tenant).copied().unwrap_or(0);
            if let Some(&cap) = caps.get(tenant) {
                let live = running.get(tenant).copied().unwrap_or(0);
                if live + starting >= cap {
                    return false;
                }
            }
            if let Some(bucket) = rates.get_mut(tenant)
                && bucket.available(now) <= starting
            {
                out_of_tokens.push(Arc::from(tenant));
                return false;
            }
            *started_per_tenant.entry(Arc::from(tenant)).or_default() += 1;
            true
        });
        self.rate_parked.extend(out_of_tokens);
        for call in &released.start {
            self.rate.try_take(now);
            if let Some(bucket) = self.tenant_rates.get_mut(&*call.tenant) {
                bucket.try_take(now);
            }
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
        let (parked, rates) = (&self.rate_parked, &mut self.tenant_rates);
        let tenant_token = rates
            .iter_mut()
            .filter(|(tenant, _)| parked.contains(*tenant))
            .map(|(_, bucket)| bucket.next_token_at(now))
            .min();
        [timer, token, tenant_token].into_iter().flatten().min()
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

    #[test]
    fn a_tenant_rate_paces_that_tenant_only() {
        let mut scheduler = Scheduler::new(limits(10_000, 0, 1), 0);
        scheduler.set_tenant_rate("slow", Some((10, 1)), 0);
        for i in 0..100 {
            scheduler.insert(call(i, "slow"));
        }
        for i in 100..150 {
            scheduler.insert(call(i, "fast"));
        }
        let first = scheduler.poll(0, usize::MAX);
        let slow = first.start.iter().filter(|c| &*c.tenant == "slow").count();
        assert_eq!(
            (slow, first.start.len()),
            (1, 51),
            "one slow call, every fast one"
        );
        // Walk virtual time by the scheduler's wake-ups for two seconds.
        let mut now = 0;
        let mut released = slow;
        loop {
            now = scheduler
                .next_wakeup(now)
                .expect("slow calls wait for a token");
            if now > 2 * SEC {
                break;
            }
            released += scheduler.poll(now, usize::MAX).start.len();
        }
        assert_eq!(released, 21, "10 a second after the first");
        scheduler.set_tenant_rate("slow", None, now);
        assert_eq!(scheduler.poll(now, usize::MAX).start.len(), 79);
    }
}
