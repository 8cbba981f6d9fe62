//! Dispatch: claims queued calls from the store, picks a dataplane core for each by
//! power-of-two-choices (two random cores, the less loaded wins), and routes each core's
//! events to the task running the call.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outdial_dataplane::api::{CallId, Command, Event};
use outdial_dataplane::runtime::Dataplane;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, mpsc};

use crate::model::{CallStatus, CallUpdate};
use crate::runner::{CallSignal, RunnerContext, run_call};
use time::OffsetDateTime;

/// What the HTTP API needs from the part of the control plane that runs calls.
pub trait CallControl: Send + Sync + 'static {
    /// A call was stored as `queued`: look at the queue now rather than at the next tick.
    fn wake(&self);
    /// Ask a live call (dialing, ringing or in progress) to end as `canceled`.
    /// Returns false when the call is not live in this process.
    fn cancel(&self, id: i64) -> bool;
}

/// Owns the dataplane and the table of live calls.
pub struct Dispatcher {
    dataplane: Dataplane,
    /// Live calls: where their events go, and the core each runs on.
    calls: Mutex<HashMap<CallId, (mpsc::UnboundedSender<CallSignal>, usize)>>,
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

    /// Records where `call`'s events go and picks its core.
    pub fn register(
        &self,
        call: CallId,
        events: mpsc::UnboundedSender<CallSignal>,
    ) -> Option<usize> {
        // Pick and count under the table lock, so simultaneous registrations see each other.
        let mut table = self.table();
        let core = self.pick_core()?;
        if let Some(count) = self.assigned.get(core) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        table.insert(call, (events, core));
        Some(core)
    }

    /// Forgets a finished call.
    pub fn unregister(&self, call: CallId) {
        if let Some((_, core)) = self.table().remove(&call)
            && let Some(count) = self.assigned.get(core)
        {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sends a command to a core.
    pub fn send(&self, core: usize, command: Command) -> Result<(), Command> {
        self.dataplane.send(core, command)
    }

    /// Calls claimed from the store and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CallId, (mpsc::UnboundedSender<CallSignal>, usize)>>
    {
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
                let sender = self.table().get(&call).map(|(tx, _)| tx.clone());
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

    /// Claims queued calls whenever woken (or every second) and runs each, up to
    /// `max_concurrent` at once.
    pub async fn schedule(self: Arc<Self>, context: RunnerContext, max_concurrent: usize) {
        loop {
            let free = max_concurrent.saturating_sub(self.in_flight());
            if free > 0 {
                let limit = free.min(256) as u32;
                match context.store.claim_queued(limit).await {
                    Ok(claimed) => {
                        let full_batch = claimed.len() as u32 == limit;
                        for record in claimed {
                            self.in_flight.fetch_add(1, Ordering::Relaxed);
                            let me = Arc::clone(&self);
                            let context = context.clone();
                            tokio::spawn(async move {
                                let rowid = record.rowid;
                                let public_id = record.id.clone();
                                let store = context.store.clone();
                                // The call runs in its own task so that a panic in it is
                                // caught here: the call is released and recorded as failed.
                                let outcome = tokio::spawn(run_call(context, record)).await;
                                if let Err(e) = outcome {
                                    tracing::error!(call = %public_id, error = %e, "call task failed");
                                    me.unregister(CallId(rowid as u64));
                                    let update = CallUpdate {
                                        status: Some(CallStatus::Failed),
                                        ended_at: Some(OffsetDateTime::now_utc()),
                                        reason: Some(format!(
                                            "internal error in the call runner: {e}"
                                        )),
                                        ..CallUpdate::default()
                                    };
                                    if let Err(e) = store.update_call(rowid, update).await {
                                        tracing::error!(call = %public_id, error = %e, "cannot record the failure");
                                    }
                                }
                                me.in_flight.fetch_sub(1, Ordering::Relaxed);
                                me.wake.notify_one();
                            });
                        }
                        if full_batch {
                            continue;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot claim queued calls"),
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

impl Dispatcher {
    /// Asks every live call to end as canceled; returns how many were asked.
    pub fn cancel_all(&self) -> usize {
        let senders: Vec<_> = self.table().values().map(|(tx, _)| tx.clone()).collect();
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

    fn cancel(&self, id: i64) -> bool {
        let sender = self
            .table()
            .get(&CallId(id as u64))
            .map(|(tx, _)| tx.clone());
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
