//! The tokio shell around [`Scheduler`]: owns the clock and talks to the store.
//!
//! At start it loads every queued call of this node from the store into memory once; after
//! that the store is read only to claim the calls the scheduler releases (one transaction per
//! release, however many calls it holds). New calls, retries, cancels and finished calls
//! arrive over a channel ([`SchedulerHandle`]), so nothing scans the store on a timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{Micros, PendingCall, Scheduler};
use crate::model::CallRecord;
use crate::policy_gate::PolicyGate;
use crate::store::{Claimed, DataStore, Tenant};

/// How long a claim holds a call for this node; renewed every third of it while it runs.
pub const LEASE: Duration = Duration::from_secs(60);

/// Most calls claimed in one store transaction.
const MAX_CLAIM: usize = 512;

/// What the scheduler is told.
#[derive(Debug)]
enum Input {
    /// A call to queue: new, a retry, or back from a failed claim.
    Queued(PendingCall),
    /// A queued call was canceled.
    Removed(String),
    /// A released call of this tenant is over.
    Finished(String),
    /// A tenant's concurrency cap changed.
    Cap(String, Option<usize>),
    /// A tenant's release rate (calls per second, burst) changed.
    Rate(String, Option<(u32, u32)>),
}

/// How the API and the call runners reach the scheduler; cheap to clone.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Input>,
    queued: Arc<AtomicUsize>,
}

impl SchedulerHandle {
    /// A committed call (new or a retry) waits in `record`'s state: queue it.
    pub fn queued(&self, record: &CallRecord) {
        let _ = self.tx.send(Input::Queued(pending(record)));
    }

    /// A queued call was canceled: forget it.
    pub fn removed(&self, id: &str) {
        let _ = self.tx.send(Input::Removed(id.to_owned()));
    }

    /// A call released by the scheduler is over (or went back to the queue).
    pub fn finished(&self, tenant: &str) {
        let _ = self.tx.send(Input::Finished(tenant.to_owned()));
    }

    /// Sets or lifts a tenant's concurrency cap.
    pub fn set_tenant_cap(&self, tenant: &str, cap: Option<usize>) {
        let _ = self.tx.send(Input::Cap(tenant.to_owned(), cap));
    }

    /// Sets or lifts a tenant's release rate (calls per second, burst).
    pub fn set_tenant_rate(&self, tenant: &str, rate: Option<(u32, u32)>) {
        let _ = self.tx.send(Input::Rate(tenant.to_owned(), rate));
    }

    /// Calls waiting in the scheduler (a gauge).
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// A channel to a scheduler not yet running, and its receiving end for [`run`].
pub fn channel() -> (SchedulerHandle, SchedulerInputs) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        SchedulerHandle {
            tx,
            queued: Arc::clone(&queued),
        },
        SchedulerInputs { rx, queued },
    )
}

/// The receiving end of a [`SchedulerHandle`].
#[derive(Debug)]
pub struct SchedulerInputs {
    rx: mpsc::UnboundedReceiver<Input>,
    queued: Arc<AtomicUsize>,
}

/// What the scheduler needs from the rest of the control plane.
pub trait Placer: Send + Sync + 'static {
    /// Calls the telephony nodes take now.
    fn budget(&self, now: Micros) -> usize;
    /// When a node's rate next allows a call.
    fn next_token_at(&self, now: Micros) -> Micros;
    /// Runs a claimed call to its end; must report [`SchedulerHandle::finished`] when done.
    fn start(&self, claimed: Claimed);
}

/// Runs the scheduler until the task is aborted (at drain): loads this node's queue, then
/// releases calls as they fall due and the limits allow.
pub async fn run(
    mut scheduler: Scheduler,
    mut inputs: SchedulerInputs,
    store: Arc<dyn DataStore>,
    node: String,
    placer: Arc<dyn Placer>,
    gate: PolicyGate,
) {
    match store.pending_calls(&node).await {
        Ok(pending) => {
            tracing::info!(queued = pending.len(), "scheduler loaded the queue");
            for call in pending {
                scheduler.insert(PendingCall {
                    tenant: Arc::from(call.tenant.as_str()),
                    to: Arc::from(call.to.as_str()),
                    id: call.id,
                    due_at: micros(call.due_at),
                    priority: call.priority,
                    not_after: call.not_after.map(micros),
                });
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot load queued calls; only new calls will be placed")
        }
    }
    let mut renew = tokio::time::interval(LEASE / 3);
    loop {
        while let Ok(input) = inputs.rx.try_recv() {
            apply(&mut scheduler, input);
        }
        let now_time = OffsetDateTime::now_utc();
        let now = micros(now_time);
        let released = scheduler.poll(now, placer.budget(now));
        for call in released.expired {
            match store.expire_call(&call.id, now_time).await {
                Ok(_) => {
                    metrics::counter!("outdial_scheduler_expired_total").increment(1);
                    tracing::info!(call = %call.id, "expired: not placed before not_after");
                }
                Err(e) => tracing::error!(call = %call.id, error = %e, "cannot expire the call"),
            }
        }
        let gated = gate.release(released.start, now_time).await;
        for call in gated.dropped {
            scheduler.finished(&call.tenant);
        }
        for call in gated.deferred {
            scheduler.finished(&call.tenant);
            scheduler.insert(call);
        }
        let mut to_claim = gated.go;
        while !to_claim.is_empty() {
            let rest = to_claim.split_off(to_claim.len().min(MAX_CLAIM));
            claim(&store, &node, &mut scheduler, &*placer, to_claim, now_time).await;
            to_claim = rest;
        }
        inputs.queued.store(scheduler.queued(), Ordering::Relaxed);
        metrics::gauge!("outdial_scheduler_queued_calls").set(scheduler.queued() as f64);
        let mut wake = scheduler.next_wakeup(now);
        if scheduler.in_flight() > 0 || scheduler.queued() > 0 {
            // Due calls may be waiting for a node's rate token.
            let token = placer.next_token_at(now);
            if token > now {
                wake = Some(wake.map_or(token, |w| w.min(token)));
            }
        }
        let sleep = wake.map_or(Duration::from_secs(3600), |at| {
            Duration::from_micros(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
        });
        tokio::select! {
            input = inputs.rx.recv() => match input {
                Some(input) => apply(&mut scheduler, input),
                None => return,
            },
            () = tokio::time::sleep(sleep.max(Duration::from_millis(1))) => {}
            _ = renew.tick() => {
                let until = OffsetDateTime::now_utc() + LEASE;
                if let Err(e) = store.renew_lease(&node, until).await {
                    tracing::error!(error = %e, "cannot renew the leases of live calls");
                }
            }
        }
    }
}

async fn claim(
    store: &Arc<dyn DataStore>,
    node: &str,
    scheduler: &mut Scheduler,
    placer: &dyn Placer,
    calls: Vec<PendingCall>,
    now: OffsetDateTime,
) {
    let ids = calls.iter().map(|c| c.id.clone()).collect();
    match store.claim_calls(node, ids, now + LEASE, now).await {
        Ok(claimed) => {
            for call in &calls {
                if !claimed.iter().any(|c| c.record.id == call.id) {
                    // Canceled or expired in between: its slot is free again.
                    scheduler.finished(&call.tenant);
                }
            }
            for claimed in claimed {
                placer.start(claimed);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, calls = calls.len(), "cannot claim calls; they wait");
            for call in calls {
                scheduler.finished(&call.tenant);
                let mut later = call;
                later.due_at = micros(now) + 1_000_000;
                scheduler.insert(later);
            }
        }
    }
}

fn apply(scheduler: &mut Scheduler, input: Input) {
    match input {
        Input::Queued(call) => scheduler.insert(call),
        Input::Removed(id) => {
            scheduler.remove(&id);
        }
        Input::Finished(tenant) => scheduler.finished(&tenant),
        Input::Cap(tenant, cap) => scheduler.set_tenant_cap(&tenant, cap),
        Input::Rate(tenant, rate) => {
            scheduler.set_tenant_rate(&tenant, rate, micros(OffsetDateTime::now_utc()))
        }
    }
}

/// How often [`follow_tenant_caps`] reads the tenants again.
pub const TENANT_CAPS_EVERY: Duration = Duration::from_secs(5);

/// Tenants' concurrency caps and release rates as the scheduler last heard them.
#[derive(Debug, Default)]
pub struct TenantCaps {
    known: std::collections::HashMap<String, Option<usize>>,
    rates: std::collections::HashMap<String, Option<(u32, u32)>>,
}

impl TenantCaps {
    /// The caps of `tenants` that differ from what was last seen (every one, the first time).
    pub fn changes(&mut self, tenants: &[Tenant]) -> Vec<(String, Option<usize>)> {
        let mut changed = Vec::new();
        for tenant in tenants {
            let cap = tenant.max_concurrent.and_then(|c| usize::try_from(c).ok());
            if self.known.get(&tenant.id) != Some(&cap) {
                self.known.insert(tenant.id.clone(), cap);
                changed.push((tenant.id.clone(), cap));
            }
        }
        changed
    }

    /// The release rates of `policies` that differ from what was last seen; a tenant whose
    /// policy is gone gets `None`.
    pub fn rate_changes(
        &mut self,
        policies: &[(String, crate::policy::RequesterPolicy)],
    ) -> Vec<(String, Option<(u32, u32)>)> {
        let mut changed = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (tenant, policy) in policies {
            seen.insert(tenant.as_str());
            let rate = (policy.calls_per_second > 0)
                .then_some((policy.calls_per_second, policy.burst.max(1)));
            if self.rates.get(tenant) != Some(&rate) {
                self.rates.insert(tenant.clone(), rate);
                changed.push((tenant.clone(), rate));
            }
        }
        let gone: Vec<String> = self
            .rates
            .iter()
            .filter(|(t, r)| r.is_some() && !seen.contains(t.as_str()))
            .map(|(t, _)| t.clone())
            .collect();
        for tenant in gone {
            self.rates.insert(tenant.clone(), None);
            changed.push((tenant, None));
        }
        changed
    }
}

/// Keeps the scheduler's tenant caps in step with the store, whoever wrote them: the admin
/// API tells the scheduler at once, but `outdial tenant add` (and, later, another control
/// node) writes only to the store. `caps` holds what the scheduler was given at start.
pub async fn follow_tenant_caps(
    store: Arc<dyn DataStore>,
    handle: SchedulerHandle,
    mut caps: TenantCaps,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.list_tenants().await {
            Ok(tenants) => {
                for (tenant, cap) in caps.changes(&tenants) {
                    tracing::info!(%tenant, cap = cap.map_or(-1, |c| c as i64), "tenant cap changed");
                    handle.set_tenant_cap(&tenant, cap);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read tenants; their caps stay as they were")
            }
        }
        match store.tenant_policies().await {
            Ok(policies) => {
                for (tenant, rate) in caps.rate_changes(&policies) {
                    tracing::info!(%tenant, calls_per_second = rate.map_or(0, |r| r.0), "tenant rate changed");
                    handle.set_tenant_rate(&tenant, rate);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read tenant policies; their rates stay as they were")
            }
        }
    }
}

/// The scheduler's view of a queued call record.
fn pending(record: &CallRecord) -> PendingCall {
    PendingCall {
        id: record.id.clone(),
        tenant: Arc::from(record.tenant.as_str()),
        to: Arc::from(record.to.as_str()),
        due_at: micros(record.due_at),
        priority: record.priority,
        not_after: record.not_after.map(micros),
    }
}

/// Microseconds since the Unix epoch, the scheduler's clock (and the store's timestamps).
pub use crate::store::unix_micros as micros;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewTenant, testing};

    fn tenant(id: &str, cap: Option<u32>) -> Tenant {
        Tenant {
            id: id.to_owned(),
            trunk: None,
            caller_id: None,
            max_concurrent: cap,
            disabled: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn caps_are_reported_once_and_again_only_when_they_change() {
        let mut caps = TenantCaps::default();
        let first = caps.changes(&[tenant("a", Some(2)), tenant("b", None)]);
        assert_eq!(
            first,
            vec![("a".to_owned(), Some(2)), ("b".to_owned(), None)]
        );
        assert!(
            caps.changes(&[tenant("a", Some(2)), tenant("b", None)])
                .is_empty()
        );
        assert_eq!(
            caps.changes(&[tenant("a", None), tenant("b", None), tenant("c", Some(1))]),
            vec![("a".to_owned(), None), ("c".to_owned(), Some(1))]
        );
    }

    /// A tenant written straight to the store (as `outdial tenant add` does while the server
    /// runs) reaches the scheduler with its cap.
    #[tokio::test]
    async fn a_tenant_added_to_the_store_reaches_the_scheduler() {
        let (_dir, store) = testing::open_temp();
        let store: Arc<dyn DataStore> = store;
        let (handle, mut inputs) = channel();
        let follower = tokio::spawn(follow_tenant_caps(
            Arc::clone(&store),
            handle,
            TenantCaps::default(),
            Duration::from_millis(10),
        ));
        let new = NewTenant {
            id: "clinic".to_owned(),
            trunk: None,
            caller_id: None,
            max_concurrent: Some(3),
        };
        store
            .add_tenant(new, OffsetDateTime::now_utc())
            .await
            .expect("tenant added");
        let heard = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match inputs.rx.recv().await {
                    Some(Input::Cap(tenant, cap)) if tenant == "clinic" => break cap,
                    Some(_) => {}
                    None => panic!("the follower stopped"),
                }
            }
        })
        .await
        .expect("the cap reached the scheduler");
        assert_eq!(heard, Some(3));
        follower.abort();
    }
}
