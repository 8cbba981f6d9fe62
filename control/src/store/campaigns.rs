//! Campaigns: a tenant's bulk list of callees, made into calls paced over a window.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::StoreFuture;
use crate::model::{CallRecord, NewCall};

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    /// `cmp_` + 26 characters, time-ordered.
    pub id: String,
    /// Its tenant.
    #[serde(skip)]
    pub tenant: String,
    /// `running` or `canceled`.
    pub status: String,
    /// The campaign as created (application, window, pacing, defaults).
    pub spec: Value,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Rows made into calls.
    pub accepted: u64,
    /// Rows a policy refused at acceptance (opt-outs, destinations): never dialled.
    pub skipped: u64,
    /// Rows that could not be read or broke a rule of the request format.
    pub invalid: u64,
    /// When the next accepted row will be due (the pacing's cursor).
    #[serde(with = "time::serde::rfc3339")]
    pub next_due: OffsetDateTime,
    /// Its calls by status (`queued`, `completed`, ...), filled when read with progress.
    pub calls: BTreeMap<String, u64>,
}

/// What one batch of an upload adds.
#[derive(Debug, Clone)]
pub struct CampaignBatch {
    /// Calls to create (paced already: each has its `at`).
    pub calls: Vec<NewCall>,
    /// Rows refused by a policy.
    pub skipped: u64,
    /// Rows invalid.
    pub invalid: u64,
    /// The pacing cursor after this batch.
    pub next_due: OffsetDateTime,
}

/// Where campaigns live.
pub trait CampaignStore: Send + Sync {
    /// Creates a campaign of `tenant` with `spec`, its pacing cursor at `start`.
    fn create_campaign(
        &self,
        tenant: &str,
        spec: Value,
        start: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Campaign>;

    /// `tenant`'s campaign `id` with its calls counted by status.
    fn campaign(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<Campaign>>;

    /// `tenant`'s campaigns, newest first (without call counts).
    fn campaigns(&self, tenant: &str) -> StoreFuture<'_, Vec<Campaign>>;

    /// Stores one batch of a running campaign in one transaction: its calls (tagged with the
    /// campaign), its counters and cursor. Refused (`Invalid`) once the campaign is canceled.
    fn add_campaign_batch(
        &self,
        tenant: &str,
        id: &str,
        batch: CampaignBatch,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Vec<CallRecord>>;

    /// Cancels the campaign: its queued calls end `canceled` (with events and webhooks).
    /// Returns the ids of the calls it canceled.
    fn cancel_campaign(
        &self,
        tenant: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Vec<String>>;
}
