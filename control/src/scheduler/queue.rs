//! The due-time queue: which pending calls leave next, in memory over the store.
//!
//! Three heaps share one table of entries:
//! - `waiting`: calls not yet due, by due time;
//! - `ready`: due calls, highest priority first, then earliest due, then first accepted;
//! - `deadlines`: calls with a `not_after`, by that time, so a call past it is expired when its
//!   time comes even while a backlog keeps it from leaving.
//!
//! Removal is lazy (an entry leaves the table; heap items whose entry is gone are skipped), so
//! every operation is O(log n) and nothing scans the queue: a million pending calls cost about
//! 150 bytes each and a tick touches only the calls it releases. Calls whose tenant is at its
//! concurrency cap are parked per tenant, so one busy tenant never blocks another's calls.
//! The tables hash with foldhash, not SipHash: SipHash was 3 % of a batch create's CPU, and the
//! keys (our own call ids and sequence numbers, tenants) are not chosen by strangers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use foldhash::HashMap;

use super::Micros;

/// A call waiting to be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCall {
    /// The call's public id.
    pub id: String,
    /// Its tenant (for per-tenant concurrency caps).
    pub tenant: Arc<str>,
    /// Who it calls (`to` as requested), for the callee's rules at release.
    pub to: Arc<str>,
    /// When it may be placed.
    pub due_at: Micros,
    /// 0–9; 9 leaves first.
    pub priority: u8,
    /// Past this time it is not placed but expired.
    pub not_after: Option<Micros>,
}

/// What [`DueQueue::poll`] hands back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Calls to place now, in order.
    pub start: Vec<PendingCall>,
    /// Calls whose `not_after` has passed: to be ended `expired`.
    pub expired: Vec<PendingCall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Waiting,
    Ready,
    Parked,
}

#[derive(Debug)]
struct Entry {
    call: PendingCall,
    place: Place,
}

/// Pending calls ordered for release. Sans-IO: time is given to every call.
#[derive(Debug, Default)]
pub struct DueQueue {
    entries: HashMap<u64, Entry>,
    ids: HashMap<String, u64>,
    waiting: BinaryHeap<Reverse<(Micros, u64)>>,
    ready: BinaryHeap<(u8, Reverse<Micros>, Reverse<u64>)>,
    deadlines: BinaryHeap<Reverse<(Micros, u64)>>,
    parked: HashMap<Arc<str>, VecDeque<u64>>,
    next_seq: u64,
}

impl DueQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a call (a new request, a retry, or one loaded from the store at start). A call
    /// already queued under the same id is replaced.
    pub fn insert(&mut self, call: PendingCall) {
        self.remove(&call.id);
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(deadline) = call.not_after {
            self.deadlines.push(Reverse((deadline, seq)));
        }
        self.waiting.push(Reverse((call.due_at, seq)));
        self.ids.insert(call.id.clone(), seq);
        self.entries.insert(
            seq,
            Entry {
                call,
                place: Place::Waiting,
            },
        );
    }

    /// Forgets a call (canceled, or claimed elsewhere). Returns whether it was queued.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.ids.remove(id) {
            Some(seq) => {
                self.entries.remove(&seq);
                true
            }
            None => false,
        }
    }

    /// Calls queued (waiting, ready or parked).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Releases up to `budget` due calls, skipping (parking) those whose tenant has no room,
    /// and every call past its `not_after`.
    pub fn poll(
        &mut self,
        now: Micros,
        budget: usize,
        mut tenant_has_room: impl FnMut(&str) -> bool,
    ) -> Released {
        let mut released = Released::default();
        self.expire(now, &mut released.expired);
        self.promote(now);
        while released.start.len() < budget {
            let Some((_, _, Reverse(seq))) = self.ready.pop() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            if entry.place != Place::Ready {
                continue;
            }
            if !tenant_has_room(&entry.call.tenant) {
                entry.place = Place::Parked;
                self.parked
                    .entry(Arc::clone(&entry.call.tenant))
                    .or_default()
                    .push_back(seq);
                continue;
            }
            if let Some(entry) = self.entries.remove(&seq) {
                self.ids.remove(&entry.call.id);
                released.start.push(entry.call);
            }
        }
        released
    }

    /// A call of `tenant` ended: its parked calls compete again.
    pub fn unpark(&mut self, tenant: &str) {
        let Some(parked) = self.parked.remove(tenant) else {
            return;
        };
        for seq in parked {
            if let Some(entry) = self.entries.get_mut(&seq)
                && entry.place == Place::Parked
            {
                entry.place = Place::Ready;
                self.ready.push((
                    entry.call.priority,
                    Reverse(entry.call.due_at),
                    Reverse(seq),
                ));
            }
        }
    }

    /// The next time something changes without new input: a call falls due or expires.
    pub fn next_deadline(&mut self) -> Option<Micros> {
        self.skip_stale();
        let due = self.waiting.peek().map(|Reverse((at, _))| *at);
        let expiry = self.deadlines.peek().map(|Reverse((at, _))| *at);
        match (due, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when some call is due and waits only for budget (slots or rate).
    pub fn has_ready(&mut self) -> bool {
        while let Some(&(_, _, Reverse(seq))) = self.ready.peek() {
            match self.entries.get(&seq) {
                Some(entry) if entry.place == Place::Ready => return true,
                _ => {
                    self.ready.pop();
                }
            }
        }
        false
    }

    fn promote(&mut self, now: Micros) {
        while let Some(&Reverse((at, seq))) = self.waiting.peek() {
            if at > now {
                break;
            }
            self.waiting.pop();
            if let Some(entry) = self.entries.get_mut(&seq)
                && entry.place == Place::Waiting
            {
                entry.place = Place::Ready;
                self.ready.push((
                    entry.call.priority,
                    Reverse(entry.call.due_at),
                    Reverse(seq),
                ));
            }
        }
    }

    fn expire(&mut self, now: Micros, out: &mut Vec<PendingCall>) {
        while let Some(&Reverse((at, seq))) = self.deadlines.peek() {
            if at >= now {
                break;
            }
            self.deadlines.pop();
            if let Some(entry) = self.entries.remove(&seq) {
                self.ids.remove(&entry.call.id);
                out.push(entry.call);
            }
        }
    }

    fn skip_stale(&mut self) {
        while let Some(&Reverse((_, seq))) = self.waiting.peek() {
            match self.entries.get(&seq) {
                Some(entry) if entry.place == Place::Waiting => break,
                _ => {
                    self.waiting.pop();
                }
            }
        }
        while let Some(&Reverse((_, seq))) = self.deadlines.peek() {
            if self.entries.contains_key(&seq) {
                break;
            }
            self.deadlines.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Micros = 1_000_000;

    fn call(id: &str, due: Micros, priority: u8) -> PendingCall {
        PendingCall {
            id: id.to_owned(),
            tenant: Arc::from("t"),
            to: Arc::from("+15550100"),
            due_at: due,
            priority,
            not_after: None,
        }
    }

    fn ids(calls: &[PendingCall]) -> Vec<&str> {
        calls.iter().map(|c| c.id.as_str()).collect()
    }

    fn always(_: &str) -> bool {
        true
    }

    #[test]
    fn due_calls_leave_by_priority_then_due_time_then_arrival() {
        let mut queue = DueQueue::new();
        queue.insert(call("low-early", 0, 1));
        queue.insert(call("high-late", 5 * SEC, 9));
        queue.insert(call("high-early", 2 * SEC, 9));
        queue.insert(call("mid-a", SEC, 5));
        queue.insert(call("mid-b", SEC, 5));
        let out = queue.poll(10 * SEC, 10, always);
        assert_eq!(
            ids(&out.start),
            ["high-early", "high-late", "mid-a", "mid-b", "low-early"]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_call_does_not_leave_before_it_is_due() {
        let mut queue = DueQueue::new();
        queue.insert(call("later", 60 * SEC, 9));
        queue.insert(call("now", 0, 0));
        assert_eq!(ids(&queue.poll(0, 10, always).start), ["now"]);
        assert_eq!(queue.next_deadline(), Some(60 * SEC));
        assert!(queue.poll(60 * SEC - 1, 10, always).start.is_empty());
        assert_eq!(ids(&queue.poll(60 * SEC, 10, always).start), ["later"]);
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn budget_bounds_each_release_and_the_rest_stays_in_order() {
        let mut queue = DueQueue::new();
        for i in 0..10 {
            queue.insert(call(&format!("c{i}"), i, 5));
        }
        assert_eq!(ids(&queue.poll(100, 3, always).start), ["c0", "c1", "c2"]);
        assert_eq!(queue.len(), 7);
        assert_eq!(ids(&queue.poll(100, 3, always).start), ["c3", "c4", "c5"]);
        assert!(queue.has_ready());
    }

    #[test]
    fn a_call_past_not_after_expires_even_while_a_backlog_holds_it() {
        let mut queue = DueQueue::new();
        let mut late = call("late", 0, 0);
        late.not_after = Some(30 * SEC);
        queue.insert(late);
        queue.insert(call("busy", 0, 9));
        // No budget: nothing starts, nothing expires yet.
        let out = queue.poll(10 * SEC, 0, always);
        assert!(out.start.is_empty() && out.expired.is_empty());
        assert_eq!(queue.next_deadline(), Some(30 * SEC));
        let out = queue.poll(30 * SEC + 1, 0, always);
        assert_eq!(ids(&out.expired), ["late"]);
        assert_eq!(ids(&queue.poll(31 * SEC, 5, always).start), ["busy"]);
    }

    #[test]
    fn a_call_due_exactly_at_not_after_still_leaves() {
        let mut queue = DueQueue::new();
        let mut edge = call("edge", 5 * SEC, 0);
        edge.not_after = Some(5 * SEC);
        queue.insert(edge);
        let out = queue.poll(5 * SEC, 1, always);
        assert_eq!(ids(&out.start), ["edge"]);
        assert!(out.expired.is_empty());
    }

    #[test]
    fn removed_and_replaced_calls_are_not_released_twice() {
        let mut queue = DueQueue::new();
        queue.insert(call("a", 0, 5));
        queue.insert(call("b", 0, 5));
        assert!(queue.remove("a"));
        assert!(!queue.remove("a"));
        queue.insert(call("b", 10 * SEC, 5)); // a retry moves it later
        assert!(queue.poll(SEC, 10, always).start.is_empty());
        assert_eq!(ids(&queue.poll(10 * SEC, 10, always).start), ["b"]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn a_tenant_at_its_cap_is_parked_without_blocking_others() {
        let mut queue = DueQueue::new();
        for i in 0..3 {
            let mut c = call(&format!("full{i}"), 0, 9);
            c.tenant = Arc::from("full");
            queue.insert(c);
        }
        queue.insert(call("other", 0, 1));
        let out = queue.poll(0, 10, |tenant| tenant != "full");
        assert_eq!(ids(&out.start), ["other"]);
        assert_eq!(queue.len(), 3);
        assert!(
            queue.poll(0, 10, always).start.is_empty(),
            "parked until unparked"
        );
        queue.unpark("full");
        assert_eq!(
            ids(&queue.poll(0, 10, always).start),
            ["full0", "full1", "full2"]
        );
    }

    #[test]
    fn many_pending_calls_release_in_order() {
        let mut queue = DueQueue::new();
        let n = 100_000i64;
        for i in 0..n {
            // Due times spread over 100 s, priorities 0-9, inserted out of order.
            let due = (i * 7919) % n * 1000;
            queue.insert(call(&i.to_string(), due, (i % 10) as u8));
        }
        assert_eq!(queue.len(), n as usize);
        let mut released = 0;
        let mut now = 0;
        while released < n as usize {
            now += SEC;
            let out = queue.poll(now, 500, always);
            for c in &out.start {
                assert!(c.due_at <= now);
            }
            // Within one release: priority never rises, and due time never falls within one.
            for pair in out.start.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                assert!(
                    a.priority > b.priority || (a.priority == b.priority && a.due_at <= b.due_at),
                    "{a:?} before {b:?}"
                );
            }
            released += out.start.len();
        }
        assert!(queue.is_empty());
    }
}
