//! Where the policy engine's data lives: tenants' policies and callee records, and what the
//! scheduler writes when a rule holds or refuses a call.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::StoreFuture;
use crate::model::CallRecord;
use crate::policy::{CalleeHistory, CalleeRecord, Refusal, RequesterPolicy};

/// The rule behind a deferral or refusal, as the call's history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyNote {
    /// `requester`, `callee` or `operator`.
    pub owner: &'static str,
    /// The rule's name.
    pub rule: &'static str,
    /// In words.
    pub message: String,
}

impl From<&Refusal> for PolicyNote {
    fn from(refusal: &Refusal) -> Self {
        Self {
            owner: refusal.owner.as_str(),
            rule: refusal.rule,
            message: refusal.message.clone(),
        }
    }
}

/// Who a change of a callee's opt-outs is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptOutScope {
    /// Every tenant (do-not-call).
    All,
    /// One tenant.
    Tenant(String),
}

/// What the scheduler needs to apply the rules to a batch of released calls, in one read.
#[derive(Debug, Clone, Default)]
pub struct DispatchFacts {
    /// The policy of each tenant asked for (its default when it has none stored).
    pub policies: HashMap<String, RequesterPolicy>,
    /// The records of the callees that have one, with the calls they received in their
    /// cap's period.
    pub callees: HashMap<String, (CalleeRecord, CalleeHistory)>,
}

/// Tenants' policies and callee records.
pub trait PolicyStore: Send + Sync {
    /// `tenant`'s policy (the defaults when none is stored).
    fn tenant_policy(&self, tenant: &str) -> StoreFuture<'_, RequesterPolicy>;

    /// Every stored tenant policy.
    fn tenant_policies(&self) -> StoreFuture<'_, Vec<(String, RequesterPolicy)>>;

    /// Replaces `tenant`'s policy; `NotFound` for an unknown tenant.
    fn set_tenant_policy(
        &self,
        tenant: &str,
        policy: RequesterPolicy,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()>;

    /// The record of the callee `number` (as requests write `to`).
    fn callee(&self, number: &str) -> StoreFuture<'_, Option<CalleeRecord>>;

    /// The records of those of `numbers` that have one.
    fn callees(&self, numbers: Vec<String>) -> StoreFuture<'_, HashMap<String, CalleeRecord>>;

    /// Creates or replaces the record of `number`.
    fn put_callee(
        &self,
        number: &str,
        record: CalleeRecord,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()>;

    /// Deletes the record of `number`; whether there was one.
    fn delete_callee(&self, number: &str) -> StoreFuture<'_, bool>;

    /// Records (`opted_out`) or lifts an opt-out of `number`, creating its record if needed;
    /// returns the record as it now is. Atomic against concurrent changes.
    fn set_opt_out(
        &self,
        number: &str,
        scope: OptOutScope,
        opted_out: bool,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, CalleeRecord>;

    /// The policies of `tenants` and the records and recent calls of `numbers`, at `now`.
    fn dispatch_facts(
        &self,
        tenants: Vec<String>,
        numbers: Vec<String>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, DispatchFacts>;

    /// Holds a queued call until `until` with the rule in its history; `None` when it is no
    /// longer queued (canceled meanwhile).
    fn defer_call(
        &self,
        id: &str,
        until: OffsetDateTime,
        note: PolicyNote,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Option<CallRecord>>;

    /// Ends a queued call `refused` with the rule in its history (and its webhook).
    fn refuse_call(
        &self,
        id: &str,
        note: PolicyNote,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Option<CallRecord>>;
}
