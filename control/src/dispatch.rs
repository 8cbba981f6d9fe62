//! Dispatch: runs the calls the scheduler releases on a telephony node, picks a dataplane
//! core for each by power-of-two-choices (two random cores, the less loaded wins), and routes
//! each core's events to the task running the call. The dataplane's [`CallId`] is a process-local counter
//! allocated here at dial time; the store knows calls only by their public id.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outdial_dataplane::api::{CallId, Command, Event};
use outdial_dataplane::runtime::Dataplane;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::model::{CallRecord, CallStatus, Next};
use crate::runner::{Adopted, CallSignal, RunnerContext, run_call};
use crate::scheduler::Micros;
use crate::scheduler::task::{Placer, SchedulerHandle};
use crate::store::{AttemptEnd, Claimed};
use crate::telephony::{CoreLoad, NodeLoad, Nodes, Placement, TelephonyNode};
use time::OffsetDateTime;

/// Live calls: where their events go, their core and their public id.
type CallTable = HashMap<CallId, (mpsc::UnboundedSender<CallSignal>, usize, String)>;

/// What the HTTP API needs from the part of the control plane that runs calls.
pub trait CallControl: Send + Sync + 'static {
    /// A call was committed as `queued`: hand it to the scheduler.
    fn queued(&self, record: &CallRecord);
    /// A queued call was canceled: the scheduler forgets it.
    fn removed(&self, id: &str);
    /// Load of every telephony node (`GET /v1/nodes`).
    fn nodes(&self) -> Vec<NodeLoad>;
    /// Calls waiting in the scheduler.
    fn queued_calls(&self) -> usize;
    /// A tenant's concurrency cap was set (`None`: no cap).
    fn tenant_cap(&self, tenant: &str, cap: Option<usize>);
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
    in_flight: AtomicUsize,
    /// Decides the incoming calls the cores offer; unset = every offer is refused 404.
    inbound: std::sync::OnceLock<Arc<crate::inbound::Inbound>>,
    /// Registrations core 0 keeps, and those whose removal is awaited at shutdown.
    registrations: Mutex<Registrations>,
    unregistered: tokio::sync::Notify,
}

/// The registrations sent to core 0, and those still being removed.
#[derive(Default)]
struct Registrations {
    live: Vec<u32>,
    removing: Vec<u32>,
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
            in_flight: AtomicUsize::new(0),
            inbound: std::sync::OnceLock::new(),
            registrations: Mutex::new(Registrations::default()),
            unregistered: tokio::sync::Notify::new(),
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

    /// Registration `id` was handed to core 0.
    pub fn registered(&self, id: u32) {
        let mut registrations = self.registrations();
        if !registrations.live.contains(&id) {
            registrations.live.push(id);
        }
    }

    /// Removes every registration's binding and waits, up to `patience`, for the
    /// registrars' answers. Returns (removed or refused, unanswered).
    pub async fn unregister_all(&self, patience: std::time::Duration) -> (usize, usize) {
        let ids = {
            let mut registrations = self.registrations();
            let ids = std::mem::take(&mut registrations.live);
            registrations.removing = ids.clone();
            ids
        };
        for &id in &ids {
            if self.send(0, Command::Unregister { id }).is_err() {
                self.registrations().removing.retain(|&r| r != id);
            }
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.unregistered.notified();
            if self.registrations().removing.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let left = self.registrations().removing.len();
        (ids.len() - left, left)
    }

    fn registrations(&self) -> std::sync::MutexGuard<'_, Registrations> {
        self.registrations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets who decides incoming calls (once; later calls are ignored).
    pub fn set_inbound(&self, inbound: Arc<crate::inbound::Inbound>) {
        let _ = self.inbound.set(inbound);
    }

    /// Takes in an incoming call a core offered: from now on its events go to the returned
    /// channels' task. Its public id is learnt later ([`Dispatcher::name`]).
    pub fn adopt(&self, placement: Placement) -> Adopted {
        let adopted = Adopted::open();
        let mut table = self.table();
        if let Some(count) = self.assigned.get(placement.core) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        table.insert(
            placement.call,
            (adopted.tx.clone(), placement.core, String::new()),
        );
        adopted
    }

    /// Names an adopted call by its public id, so the API can cancel it.
    pub fn name(&self, call: CallId, public_id: &str) {
        if let Some(entry) = self.table().get_mut(&call) {
            entry.2 = public_id.to_owned();
        }
        self.id_table().insert(public_id.to_owned(), call);
    }

    /// Runs an adopted incoming call in its own task, counted in flight until it ends. Its
    /// log lines carry its public id once it is stored.
    pub fn start_incoming(
        self: &Arc<Self>,
        context: RunnerContext,
        node: Arc<dyn TelephonyNode>,
        placement: Placement,
        adopted: Adopted,
        new: crate::model::NewCall,
        sip_call_id: String,
    ) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let span = tracing::info_span!("incoming", sip_call_id = %sip_call_id);
            let namer = Arc::clone(&me);
            let stored = move |public_id: &str| namer.name(placement.call, public_id);
            let task = tokio::spawn(
                crate::runner::run_incoming(context, node, placement, adopted, new, stored)
                    .instrument(span),
            );
            if let Err(e) = task.await {
                tracing::error!(error = %e, "incoming call task failed");
                me.unregister(placement.call);
            }
            me.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
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
                let event = match event {
                    Event::Incoming(incoming) => {
                        self.offered(*incoming);
                        return;
                    }
                    event => event,
                };
                let Some(call) = event_call(&event) else {
                    log_registration(&event);
                    if let Event::Unregistered { id, .. } = event {
                        self.registrations().removing.retain(|&r| r != id);
                        self.unregistered.notify_waiters();
                    }
                    return;
                };
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

    /// An incoming call offered by a core: decided by the inbound handler, or refused 404
    /// when no `[[inbound]]` numbers are configured.
    fn offered(&self, incoming: outdial_dataplane::api::IncomingCall) {
        match self.inbound.get() {
            Some(inbound) => inbound.offer(incoming),
            None => {
                metrics::counter!("outdial_inbound_calls_total", "outcome" => "no_route")
                    .increment(1);
                if let Some(core) = incoming.call.inbound_core() {
                    let reject = Command::Reject {
                        call: incoming.call,
                        status: 404,
                        retry_after: None,
                    };
                    let _ = self.dataplane.send(core, reject);
                }
            }
        }
    }

    /// Runs a claimed call in its own task, counted in flight until it ends. A panic in the
    /// call's task is caught here: the call is released and its attempt recorded as failed.
    /// When it is over, the scheduler is told (its slot, and its tenant's, are free again).
    pub fn start(
        self: &Arc<Self>,
        context: RunnerContext,
        node: Arc<dyn TelephonyNode>,
        claimed: Claimed,
    ) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let public_id = claimed.record.id.clone();
            let tenant = claimed.record.tenant.clone();
            let attempt = claimed.attempt;
            let store = Arc::clone(&context.store);
            let scheduler = context.scheduler.clone();
            // Every log line of the call carries its id, attempt and (once known) SIP Call-ID.
            let span = tracing::info_span!(
                "call",
                id = %public_id,
                attempt,
                sip_call_id = tracing::field::Empty
            );
            let call_node = Arc::clone(&node);
            let outcome =
                tokio::spawn(run_call(context, call_node, claimed).instrument(span)).await;
            if let Err(e) = outcome {
                tracing::error!(call = %public_id, error = %e, "call task failed");
                node.detach_by_id(&public_id);
                let end = AttemptEnd {
                    media: None,
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
            scheduler.finished(&tenant);
        });
    }

    /// Load of this node, for the scheduler and `GET /v1/nodes`.
    pub fn node_load(&self, capacity: usize) -> NodeLoad {
        let cores = (0..self.dataplane.core_count())
            .map(|core| CoreLoad {
                core,
                live_calls: self.load(core),
                alive: self.dataplane.is_alive(core),
            })
            .collect();
        NodeLoad {
            node: EMBEDDED_NODE.to_owned(),
            kind: "embedded",
            live_calls: self.in_flight(),
            capacity,
            cores,
        }
    }
}

/// Name of the in-process telephony node.
pub const EMBEDDED_NODE: &str = "embedded";

/// The in-process dataplane as a [`TelephonyNode`]: its capacity is `calls.max_concurrent`.
pub struct EmbeddedNode {
    /// The dataplane and its call table.
    pub dispatcher: Arc<Dispatcher>,
    /// Calls it takes at once.
    pub capacity: usize,
}

impl TelephonyNode for EmbeddedNode {
    fn name(&self) -> &str {
        EMBEDDED_NODE
    }

    fn load(&self) -> NodeLoad {
        self.dispatcher.node_load(self.capacity)
    }

    fn attach(
        &self,
        call_id: &str,
        events: mpsc::UnboundedSender<CallSignal>,
    ) -> Option<Placement> {
        self.dispatcher
            .register(call_id, events)
            .map(|(call, core)| Placement { call, core })
    }

    fn send(&self, placement: Placement, command: Command) -> Result<(), Command> {
        self.dispatcher.send(placement.core, command)
    }

    fn detach(&self, placement: Placement) {
        self.dispatcher.unregister(placement.call);
    }

    fn detach_by_id(&self, call_id: &str) {
        if let Some(call) = self.dispatcher.call_id(call_id) {
            self.dispatcher.unregister(call);
        }
    }
}

/// What the scheduler places calls with: the telephony nodes (power-of-two-choices and a
/// release rate each) and the call runner.
pub struct Dispatch {
    /// The telephony nodes.
    pub nodes: Nodes,
    /// The in-process node's call table (the only kind of node today).
    pub dispatcher: Arc<Dispatcher>,
    /// What every call runner shares.
    pub context: RunnerContext,
}

impl Placer for Dispatch {
    fn budget(&self, now: Micros) -> usize {
        self.nodes.budget(now)
    }

    fn next_token_at(&self, now: Micros) -> Micros {
        self.nodes.next_token_at(now)
    }

    fn start(&self, claimed: Claimed) {
        // The chosen node takes the call (and one of its rate tokens). The scheduler's budget
        // said some node had room; should none have a token left by now, the least loaded
        // node takes it rather than the call waiting a claim's lease out.
        let now = crate::scheduler::task::micros(OffsetDateTime::now_utc());
        let node = self.nodes.pick(now).or_else(|| {
            tracing::debug!(call = %claimed.record.id, "no node had a rate token; placing on the least loaded");
            self.nodes.least_loaded()
        });
        match node {
            Some(node) => self.dispatcher.start(self.context.clone(), node, claimed),
            // Not reachable while serve always has its embedded node: the claim's lease runs
            // out and recovery queues the call again.
            None => {
                tracing::error!(call = %claimed.record.id, "no telephony node to place the call on")
            }
        }
    }
}

/// The control plane as the HTTP API sees it: the scheduler's queue and the live calls.
pub struct Control {
    /// Live calls.
    pub dispatcher: Arc<Dispatcher>,
    /// The queue.
    pub scheduler: SchedulerHandle,
    /// Calls the embedded node takes at once (`calls.max_concurrent`).
    pub capacity: usize,
}

impl CallControl for Control {
    fn queued(&self, record: &CallRecord) {
        self.scheduler.queued(record);
    }

    fn removed(&self, id: &str) {
        self.scheduler.removed(id);
    }

    fn nodes(&self) -> Vec<NodeLoad> {
        vec![self.dispatcher.node_load(self.capacity)]
    }

    fn queued_calls(&self) -> usize {
        self.scheduler.queue_depth()
    }

    fn tenant_cap(&self, tenant: &str, cap: Option<usize>) {
        self.scheduler.set_tenant_cap(tenant, cap);
    }

    fn cancel(&self, id: &str) -> bool {
        self.dispatcher.cancel(id)
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

impl Dispatcher {
    /// Asks the live call `id` to end as canceled; false when it is not live here.
    pub fn cancel(&self, id: &str) -> bool {
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

fn event_call(event: &Event) -> Option<CallId> {
    Some(match event {
        Event::Registration { .. } | Event::Unregistered { .. } => return None,
        Event::Incoming(incoming) => incoming.call,
        Event::Ringing { call }
        | Event::EarlyMedia { call, .. }
        | Event::Answered { call, .. }
        | Event::BargeIn { call, .. }
        | Event::Dtmf { call, .. }
        | Event::PlaybackDone { call, .. }
        | Event::Recorded { call, .. }
        | Event::SpeechStarted { call, .. }
        | Event::Utterance { call, .. }
        | Event::TransferDone { call, .. }
        | Event::MediaSourceRefused { call, .. }
        | Event::MachineDetection { call, .. }
        | Event::Ended { call, .. } => *call,
    })
}

/// Logs a trunk registration's attempt (registrations have no call task).
fn log_registration(event: &Event) {
    if let Event::Unregistered {
        id,
        sip_status,
        detail,
    } = event
    {
        match sip_status {
            Some(200..=299) => tracing::info!(registration = id, "unregistered: {detail}"),
            _ => tracing::warn!(registration = id, "unregistering failed: {detail}"),
        }
    }
    if let Event::Registration {
        id,
        expires,
        sip_status,
        detail,
    } = event
    {
        let status = sip_status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        if expires.is_some() {
            tracing::info!(registration = id, sip_status = %status, "{detail}");
        } else {
            tracing::warn!(registration = id, sip_status = %status, "registration failed: {detail}");
        }
    }
}
