//! The durable store: what the control plane keeps (calls and their attempts, status events,
//! the webhook outbox, CDRs, tenants and API keys) behind object-safe traits.
//!
//! Callers hold an `Arc<dyn DataStore>` (or any one of its parts, e.g. `Arc<dyn CallStore>`),
//! so a PostgreSQL implementation for several control nodes can replace [`sqlite::SqliteStore`]
//! without changing them. Every operation that changes a call's status writes, in the same
//! transaction, the status event, the outbox row of its webhook (when the call has a
//! `status_callback`) and, at the end of an attempt, its CDR. No HTTP type appears here;
//! `error.rs` maps [`StoreError`] to the wire.

pub mod campaigns;
pub mod policy;
pub mod signing;
pub mod sqlite;
mod types;

pub use campaigns::{Campaign, CampaignBatch, CampaignStore};
pub use policy::{DispatchFacts, OptOutScope, PolicyNote, PolicyStore};
pub use signing::{SigningSettings, SigningStore};

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use time::OffsetDateTime;

use crate::model::{CallRecord, CallStatus, NewCall, Next};

pub use types::{
    AnsweredBy, ApiKeyInfo, AttemptEnd, CallEvent, Cdr, CdrPage, CdrQuery, Claimed, Created,
    DeadLetter, IdempotencyKey, ListQuery, MediaSummary, NewApiKey, NewFile, NewFiles, NewReply,
    NewTenant, OutboxItem, PendingCall, Principal, ReplyItem, Scope, StoredFile, Tenant,
    Transition,
};

/// Name of the development tenant created by [`TenantStore::ensure_dev_tenant`].
pub const DEV_TENANT: &str = "dev";

/// File in the data directory holding the development API key.
pub const DEV_KEY_FILE: &str = "dev-api-key";

/// File in the data directory holding the development tenant's webhook secret.
pub const DEV_WEBHOOK_SECRET_FILE: &str = "dev-webhook-secret";

/// Reason recorded for calls of this node found live when it starts.
pub const INTERRUPTED_REASON: &str = "interrupted: the server stopped during the call";

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);

/// Microseconds since the Unix epoch (UTC): how timestamps are kept and compared.
pub fn unix_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// What every store operation returns: a boxed future, so the traits stay object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed. Nothing was changed when an operation fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or cannot be reached; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The database was written by a newer Outdial.
    #[error(
        "the database has schema version {found}, newer than this outdial knows ({known}); run a newer outdial"
    )]
    NewerSchema {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The same `Idempotency-Key` was used within 24 h with a different request body.
    #[error(
        "Idempotency-Key {0:?} was already used with a different request; use a new key for a new request"
    )]
    IdempotencyConflict(String),
    /// The named thing does not exist (or belongs to another tenant).
    #[error("no {what} `{id}`")]
    NotFound {
        /// What was looked for: `call`, `tenant`, `key`, `dead letter`.
        what: &'static str,
        /// The id given.
        id: String,
    },
    /// The named thing exists already.
    #[error("{what} `{id}` already exists; pick another id")]
    AlreadyExists {
        /// What was created: `tenant`.
        what: &'static str,
        /// The id given.
        id: String,
    },
    /// A pagination cursor the store did not hand out.
    #[error("cursor {0:?} is not valid here; use the `next` value of the previous page")]
    InvalidCursor(String),
    /// A value the store cannot keep (out of range, malformed id).
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Calls: creation (with idempotency), the queue, claims with leases, status transitions,
/// attempts and recovery. One node's operations never touch calls claimed by another node.
pub trait CallStore: Send + Sync {
    /// Stores `calls` as `queued` for `tenant`, all in one transaction, and returns their
    /// records once committed. With `idempotency`: the same key and request hash within
    /// [`IDEMPOTENCY_TTL`] returns the first answer's records with `replayed = true`; the same
    /// key with another hash fails with [`StoreError::IdempotencyConflict`].
    fn create_calls(
        &self,
        tenant: &str,
        calls: Vec<NewCall>,
        idempotency: Option<IdempotencyKey>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Created>;

    /// The call `id` of `tenant`, if it exists.
    fn get_call(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<CallRecord>>;

    /// A page of `tenant`'s calls, newest first.
    fn list_calls(&self, tenant: &str, query: ListQuery) -> StoreFuture<'_, Vec<CallRecord>>;

    /// Every queued call `node` may place: id, due time, priority and `not_after`. Used to
    /// fill the scheduler's in-memory queue at start. The SQLite store returns them all in one
    /// `Vec` (about 60 bytes a call: a million pending calls is some 60 MB, read once at
    /// start); a store for several nodes would stream them per shard.
    fn pending_calls(&self, node: &str) -> StoreFuture<'_, Vec<PendingCall>>;

    /// Claims the calls `ids` that are still `queued`, unclaimed and not past `not_after` for
    /// `node` until `lease_until`: each becomes `dialing` with a new attempt (its number is in
    /// [`Claimed::attempt`]), a `dialing` event and its webhook. Others are skipped.
    fn claim_calls(
        &self,
        node: &str,
        ids: Vec<String>,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Vec<Claimed>>;

    /// Stores an incoming call (`new.direction` is `Inbound`) and claims it for `node` in
    /// one transaction: it is never `queued` where a scheduler could see it, so no node
    /// ever dials a caller back. Returns its first attempt, `dialing`.
    fn take_incoming(
        &self,
        node: &str,
        new: NewCall,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Claimed>;

    /// Extends the lease of every call `node` holds; returns how many.
    fn renew_lease(&self, node: &str, until: OffsetDateTime) -> StoreFuture<'_, u64>;

    /// A queued call past its `not_after` becomes `expired` (event, webhook). Returns the
    /// record after the operation, `None` if the call does not exist.
    fn expire_call(&self, id: &str, now: OffsetDateTime) -> StoreFuture<'_, Option<CallRecord>>;

    /// Cancels `tenant`'s call `id` if it is still queued (event, webhook). Returns the record
    /// after the attempt (unchanged if it was not queued), `None` if there is no such call.
    fn cancel_queued(
        &self,
        tenant: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Option<CallRecord>>;

    /// A live status change of attempt `attempt` (`ringing`, `in-progress`): the call's status,
    /// the attempt's times, an event and the webhook, in one transaction.
    fn record_transition(
        &self,
        id: &str,
        attempt: u32,
        transition: Transition,
    ) -> StoreFuture<'_, CallRecord>;

    /// Early media on attempt `attempt` (a 183 with SDP): a history event with `cause`
    /// under the call's current status (`ringing`, or `dialing` when no ringing was
    /// recorded). No status change and no webhook: the status stays `ringing` until the
    /// answer. A late report (another attempt, an answered or ended call) changes nothing.
    fn record_early_media(
        &self,
        id: &str,
        attempt: u32,
        at: OffsetDateTime,
        cause: &str,
    ) -> StoreFuture<'_, ()>;

    /// Who answered attempt `attempt` (answering-machine detection's verdict): on the call,
    /// the attempt and its CDR, with an event naming it. No webhook: the verdict reaches the
    /// status callback with the next status change.
    fn record_answered_by(
        &self,
        id: &str,
        attempt: u32,
        verdict: AnsweredBy,
    ) -> StoreFuture<'_, CallRecord>;

    /// Keeps the values the application submitted (shown by `GET /v1/calls/{id}` at once).
    fn store_result(&self, id: &str, result: Value) -> StoreFuture<'_, ()>;

    /// Closes attempt `attempt`: its CDR, its events, the webhook, and the call either final
    /// or back to `queued` (due at the retry time, unclaimed), in one transaction.
    fn finish_attempt(
        &self,
        id: &str,
        attempt: u32,
        end: AttemptEnd,
        next: Next,
    ) -> StoreFuture<'_, CallRecord>;

    /// At start: the calls `node` claimed and left live become `failed`
    /// ([`INTERRUPTED_REASON`]), each with its event, webhook and CDR. Calls of other nodes
    /// are not touched. Returns how many.
    fn recover_node(&self, node: &str, now: OffsetDateTime) -> StoreFuture<'_, u64>;

    /// Every status event of `tenant`'s call `id`, oldest first; `None` if there is no call.
    fn call_events(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<Vec<CallEvent>>>;
}

/// Tenants and API keys. Keys are kept as SHA-256 hashes only; lookups are never cached, so a
/// revoked key or a disabled tenant stops working at the next request.
pub trait TenantStore: Send + Sync {
    /// Creates a tenant with a fresh webhook secret; returns it and the secret.
    fn add_tenant(
        &self,
        tenant: NewTenant,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, (Tenant, String)>;

    /// Every tenant, by id.
    fn list_tenants(&self) -> StoreFuture<'_, Vec<Tenant>>;

    /// One tenant.
    fn get_tenant(&self, id: &str) -> StoreFuture<'_, Option<Tenant>>;

    /// Disables (or enables again) a tenant: its keys stop (or start again) working at once.
    fn set_tenant_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Tenant>;

    /// Creates an API key for an existing tenant; returns it with the key itself (shown once).
    fn create_key(
        &self,
        key: NewApiKey,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, (ApiKeyInfo, String)>;

    /// Keys (revoked ones too), of one tenant or all.
    fn list_keys(&self, tenant: Option<String>) -> StoreFuture<'_, Vec<ApiKeyInfo>>;

    /// Revokes a key by its id; it stops working at once.
    fn revoke_key(&self, key_id: &str, now: OffsetDateTime) -> StoreFuture<'_, ApiKeyInfo>;

    /// Who `key` is: `None` for an unknown or revoked key, or a disabled tenant.
    fn authenticate(&self, key: &str) -> StoreFuture<'_, Option<Principal>>;

    /// The secret that signs `tenant`'s webhooks.
    fn tenant_webhook_secret(&self, tenant: &str) -> StoreFuture<'_, String>;

    /// Makes sure the development tenant exists with an all-scopes key kept in
    /// `data_dir/dev-api-key` (0600); returns the key.
    fn ensure_dev_tenant(&self, data_dir: &std::path::Path) -> StoreFuture<'_, String>;
}

/// The webhook outbox: rows written with each status change, delivered by a worker,
/// retried with backoff (the schedule is the worker's), dead after the last try.
pub trait OutboxStore: Send + Sync {
    /// Up to `limit` pending deliveries due at `now`, oldest first, skipping `busy` ones.
    fn due_webhooks(
        &self,
        now: OffsetDateTime,
        limit: u32,
        busy: Vec<i64>,
    ) -> StoreFuture<'_, Vec<OutboxItem>>;

    /// When the next pending delivery is due, if any.
    fn next_webhook_at(&self) -> StoreFuture<'_, Option<OffsetDateTime>>;

    /// The delivery `seq` succeeded: it leaves the outbox.
    fn webhook_delivered(&self, seq: i64) -> StoreFuture<'_, ()>;

    /// The delivery `seq` failed with `error`: try again at `retry_at`, or, if `None`, it is
    /// a dead letter.
    fn webhook_failed(
        &self,
        seq: i64,
        error: String,
        retry_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()>;

    /// `tenant`'s dead letters, newest first, after the cursor `before` (a dead letter id).
    fn dead_letters(
        &self,
        tenant: &str,
        limit: u32,
        before: Option<String>,
    ) -> StoreFuture<'_, Vec<DeadLetter>>;

    /// Puts `tenant`'s dead letter `id` back in the outbox, due at `now`, with fresh tries.
    fn redrive(&self, tenant: &str, id: &str, now: OffsetDateTime) -> StoreFuture<'_, DeadLetter>;
}

/// Call detail records: one per attempt, written with the attempt's final status.
pub trait CdrStore: Send + Sync {
    /// A page of CDRs whose attempt ended in `[from, to)`, oldest first; `tenant = None` for
    /// every tenant (operator export).
    fn cdrs(&self, tenant: Option<String>, query: CdrQuery) -> StoreFuture<'_, CdrPage>;
}

/// Files that came with a request (an e-mail's attached application), kept with its calls.
pub trait FileStore: Send + Sync {
    /// Like [`CallStore::create_calls`], and in the same transaction stores `files` (if any)
    /// as the files of every call created: all of it is committed, or none. A replayed
    /// idempotency key stores no files again.
    fn create_calls_with_files(
        &self,
        tenant: &str,
        calls: Vec<NewCall>,
        files: Option<NewFiles>,
        idempotency: Option<IdempotencyKey>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Created>;

    /// The file `name` of the request files `id`, only while one of their calls can still
    /// run (not final); `None` otherwise, or if there is no such file.
    fn request_file(&self, id: &str, name: &str) -> StoreFuture<'_, Option<StoredFile>>;
}

/// The reply-mail outbox: acknowledgements and rejections of e-mail requests, sent by a
/// worker through the configured relay, retried with backoff, dead after the last try.
pub trait ReplyStore: Send + Sync {
    /// Queues `reply`, due at `now`.
    fn enqueue_reply(&self, reply: NewReply, now: OffsetDateTime) -> StoreFuture<'_, ()>;

    /// Up to `limit` replies due at `now`, oldest first.
    fn due_replies(&self, now: OffsetDateTime, limit: u32) -> StoreFuture<'_, Vec<ReplyItem>>;

    /// The reply `seq` was sent: it leaves the outbox.
    fn reply_sent(&self, seq: i64) -> StoreFuture<'_, ()>;

    /// The reply `seq` failed with `error`: try again at `retry_at`, or, if `None`, it is dead
    /// (kept with its last error).
    fn reply_failed(
        &self,
        seq: i64,
        error: String,
        retry_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()>;
}

/// The whole store, as `outdial serve` and the CLI use it.
pub trait DataStore:
    CallStore
    + TenantStore
    + OutboxStore
    + CdrStore
    + FileStore
    + ReplyStore
    + SigningStore
    + PolicyStore
    + CampaignStore
{
    /// Round trip to the database; fails if it is not working.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Whether `status` may follow `current` (monotonic: no going back, nothing after final).
pub fn transition_allowed(current: CallStatus, next: CallStatus) -> bool {
    use CallStatus as S;
    matches!(
        (current, next),
        (S::Dialing, S::Ringing | S::InProgress)
            | (S::Ringing, S::InProgress)
            | (S::Queued, S::Dialing)
    )
}

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
