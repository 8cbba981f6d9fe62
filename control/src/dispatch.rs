//! Dispatch: claims due calls from the store, picks a dataplane core for each by
//! power-of-two-choices (two random cores, the less loaded wins), and routes each core's
//! events to the task running the call. The dataplane's [`CallId`] is a process-local counter
//! allocated here at dial time; the store knows calls only by their public id.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outdial_dataplane::api::{CallId, Command, Event};
use outdial_dataplane::runtime::Dataplane;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, mpsc};

use crate::model::{CallStatus, Next};
use crate::runner::{CallSignal, RunnerContext, run_call};
use crate::store::{AttemptEnd, PendingCall};
use time::OffsetDateTime;

/// How long a claim holds a call before another node may take it over (a later issue; here
/// the lease records the claim and is renewed while the node runs).
pub const LEASE: Duration = Duration::from_secs(60);

/// Live calls: where their events go, their core and their public id.
type CallTable = HashMap<CallId, (mpsc::UnboundedSender<CallSignal>, usize, String)>;

/// What the HTTP API needs from the part of the control plane that runs calls.
pub trait CallControl: Send + Sync + 'static {
    /// A call was stored as `queued`: look at the queue now rather than at the next tick.
    fn wake(&self);
    /// Ask a live call (dialing, ringing or in progress) to end as `canceled`.
    /// Returns false when the call is not live in this process.
    fn cancel(&self, id: &str) -> bool;
}

/// Owns the dataplane and the table of live calls.
pub struct Dispatcher {
    dataplane: Dataplane,
    /// Live calls, by dataplane id.
    calls: Mutex<CallTable>,
    /// Public call id → dataplane id, for cancels.
    ids: Mutex<HashMap<String, CallId>>,
    /// The next dataplane call id.
    next_call: AtomicU64,
    /// Calls assigned to each core and not yet finished. Counted here, at assignment, rather
    /// than read from the cores, so a burst of new calls spreads before any core has seen one.
    assigned: Vec<AtomicUsize>,
    rng: Mutex<SmallRng>,
    wake: Notify,
    in_flight: AtomicUsize,
}

impl Dispatcher {
    /// Wraps a started dataplane.
    pub fn new(dataplane: Dataplane, seed: u64) -> Self {
        let assigned = (0..dataplane.core_count())
            .map(|_| AtomicUsize::new(0))
            .collect();
        Self {
            dataplane,
            calls: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            assigned,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            wake: Notify::new(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The dataplane.
    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// Power of two choices: two distinct random cores, the one with fewer live calls.
    pub fn pick_core(&self) -> Option<usize> {
        let n = self.dataplane.core_count();
        let alive = |core: usize| self.dataplane.is_alive(core);
        let (a, b) = match n {
            0 => return None,
            1 => (0, 0),
            _ => {
                let mut rng = self
                    .rng
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..n)) % n;
                (a, b)
            }
        };
        match (alive(a), alive(b)) {
            (true, true) => Some(if self.load(b) < self.load(a) { b } else { a }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            // Both draws hit dead cores: take the least loaded live one, if any.
            (false, false) => (0..n).filter(|&c| alive(c)).min_by_key(|&c| self.load(c)),
        }
    }

    /// Calls assigned to `core` and not finished.
    pub fn load(&self, core: usize) -> usize {
        self.assigned
            .get(core)
            .map_or(usize::MAX, |n| n.load(Ordering::Relaxed))
    }

    /// Allocates a dataplane id for the call `public_id`, records where its events go and
    /// picks its core.
    pub fn register(
        &self,
        public_id: &str,
        events: mpsc::UnboundedSender<CallSignal>,
    ) -> Option<(CallId, usize)> {
        // Pick and count under the table lock, so simultaneous registrations see each other.
        let mut table = self.table();
        let core = self.pick_core()?;
        if let Some(count) = self.assigned.get(core) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let call = CallId(self.next_call.fetch_add(1, Ordering::Relaxed));
        table.insert(call, (events, core, public_id.to_owned()));
        self.id_table().insert(public_id.to_owned(), call);
        Some((call, core))
    }

    /// Forgets a finished call.
    pub fn unregister(&self, call: CallId) {
        let Some((_, core, public_id)) = self.table().remove(&call) else {
            return;
        };
        self.id_table().remove(&public_id);
        if let Some(count) = self.assigned.get(core) {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The dataplane id of the live call `public_id`.
    pub fn call_id(&self, public_id: &str) -> Option<CallId> {
        self.id_table().get(public_id).copied()
    }

    fn id_table(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallId>> {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a command to a core.
    pub fn send(&self, core: usize, command: Command) -> Result<(), Command> {
        self.dataplane.send(core, command)
    }

    /// Calls claimed from the store and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, CallTable> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forwards every dataplane event to its call's task, for as long as the process runs.
    #[allow(unsafe_code)]
    pub async fn pump_events(self: Arc<Self>) -> std::io::Result<()> {
        let owned: OwnedFd = self.dataplane.event_fd().as_fd().try_clone_to_owned()?;
        // SAFETY: `owned` is a duplicate of the dataplane's eventfd that this AsyncFd owns, so
        // it stays open and refers to the same eventfd for the AsyncFd's whole lifetime.
        let fd = unsafe { AsyncFd::register(owned) }.map_err(|e| e.into_parts().1)?;
        loop {
            let mut ready = fd.readable().await?;
            self.dataplane.event_fd().drain();
            ready.clear_ready();
            let mut orphans = 0usize;
            self.dataplane.drain_events(|event| {
                let call = event_call(&event);
                let sender = self.table().get(&call).map(|(tx, _, _)| tx.clone());
                match sender {
                    Some(tx) => {
                        let _ = tx.send(CallSignal::Dataplane(event));
                    }
                    None => orphans += 1,
                }
            });
            if orphans > 0 {
                tracing::debug!(orphans, "dataplane events for calls no longer running");
            }
        }
    }

    /// Claims due calls whenever woken (or every second) and runs each, up to
    /// `max_concurrent` at once: highest priority first, then earliest due. Queued calls past
    /// their `not_after` are expired. Also renews this node's leases.
    ///
    /// This reads the queue from the store on each pass; the scheduler with an in-memory heap
    /// and a release rate replaces it.
    pub async fn schedule(self: Arc<Self>, context: RunnerContext, max_concurrent: usize) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            if renewed.elapsed() >= LEASE / 3 {
                renewed = tokio::time::Instant::now();
                let until = OffsetDateTime::now_utc() + LEASE;
                if let Err(e) = context.store.renew_lease(&context.node, until).await {
                    tracing::error!(error = %e, "cannot renew the leases of live calls");
                }
            }
            let mut again = false;
            let free = max_concurrent.saturating_sub(self.in_flight());
            if free > 0 {
                match self.claim_due(&context, free.min(256)).await {
                    Ok(full) => again = full,
                    Err(e) => tracing::error!(error = %e, "cannot claim queued calls"),
                }
            }
            if again {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One pass: expire, claim up to `limit` due calls and start them. True if `limit` were
    /// claimed (there may be more).
    async fn claim_due(
        self: &Arc<Self>,
        context: &RunnerContext,
        limit: usize,
    ) -> Result<bool, crate::store::StoreError> {
        let now = OffsetDateTime::now_utc();
        let pending = context.store.pending_calls(&context.node).await?;
        let (expired, mut due): (Vec<PendingCall>, Vec<PendingCall>) = pending
            .into_iter()
            .filter(|p| p.due_at <= now)
            .partition(|p| p.not_after.is_some_and(|limit| limit < now));
        for call in expired {
            context.store.expire_call(&call.id, now).await?;
        }
        due.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.due_at.cmp(&b.due_at)));
        due.truncate(limit);
        if due.is_empty() {
            return Ok(false);
        }
        let ids = due.into_iter().map(|p| p.id).collect();
        let claimed = context
            .store
            .claim_calls(&context.node, ids, now + LEASE, now)
            .await?;
        let full = claimed.len() == limit;
        for claimed in claimed {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let me = Arc::clone(self);
            let context = context.clone();
            tokio::spawn(async move {
                let public_id = claimed.record.id.clone();
                let attempt = claimed.attempt;
                let store = Arc::clone(&context.store);
                // The call runs in its own task so that a panic in it is caught here: the
                // call is released and recorded as failed.
                let outcome = tokio::spawn(run_call(context, claimed)).await;
                if let Err(e) = outcome {
                    tracing::error!(call = %public_id, error = %e, "call task failed");
                    if let Some(call) = me.call_id(&public_id) {
                        me.unregister(call);
                    }
                    let end = AttemptEnd {
                        status: CallStatus::Failed,
                        ended_at: OffsetDateTime::now_utc(),
                        sip_status: None,
                        disposition: None,
                        reason: format!("internal error in the call runner: {e}"),
                        core: None,
                        sip_call_id: None,
                        result: None,
                    };
                    let next = Next::Final {
                        status: CallStatus::Failed,
                    };
                    if let Err(e) = store.finish_attempt(&public_id, attempt, end, next).await {
                        tracing::error!(call = %public_id, error = %e, "cannot record the failure");
                    }
                }
                me.in_flight.fetch_sub(1, Ordering::Relaxed);
                me.wake.notify_one();
            });
        }
        Ok(full)
    }
}

impl Dispatcher {
    /// Asks every live call to end as canceled; returns how many were asked.
    pub fn cancel_all(&self) -> usize {
        let senders: Vec<_> = self.table().values().map(|(tx, _, _)| tx.clone()).collect();
        senders
            .iter()
            .filter(|tx| {
                tx.send(CallSignal::Cancel("canceled: the server is shutting down"))
                    .is_ok()
            })
            .count()
    }
}

impl CallControl for Dispatcher {
    fn wake(&self) {
        self.wake.notify_one();
    }

    fn cancel(&self, id: &str) -> bool {
        let Some(call) = self.call_id(id) else {
            return false;
        };
        let sender = self.table().get(&call).map(|(tx, _, _)| tx.clone());
        sender.is_some_and(|tx| {
            tx.send(CallSignal::Cancel("canceled by API request"))
                .is_ok()
        })
    }
}

fn event_call(event: &Event) -> CallId {
    match event {
        Event::Ringing { call }
        | Event::Answered { call, .. }
        | Event::BargeIn { call, .. }
        | Event::Dtmf { call, .. }
        | Event::PlaybackDone { call, .. }
        | Event::Recorded { call, .. }
        | Event::TransferDone { call, .. }
        | Event::Ended { call, .. } => *call,
    }
}
