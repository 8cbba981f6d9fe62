//! The SQLite store: WAL, `synchronous=FULL`, one writer thread with group commit, and a pool
//! of read-only connections so reads never wait behind a commit.
//!
//! Writes are jobs sent to the writer thread. It takes every job waiting, runs them all in one
//! transaction (each inside its own savepoint, so one failing job does not undo the others),
//! commits once, and only then answers: many concurrent requests share one fsync, and no caller
//! hears "done" before its write is on disk. Reads run on blocking threads over read-only
//! connections; WAL gives each a consistent snapshot of the last commit without taking the
//! writer's lock.

mod callee_filter;
mod calls;
mod campaigns;
mod cdrs;
mod files;
mod outbox;
mod policy;
mod principals;
mod replies;
mod schema;
mod signing;
mod tenants;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, Row};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{
    AnsweredBy, ApiKeyInfo, AttemptEnd, CallEvent, CallStore, CdrPage, CdrQuery, CdrStore, Claimed,
    Created, DataStore, DeadLetter, FileStore, IdempotencyKey, ListQuery, NewApiKey, NewFiles,
    NewReply, NewTenant, OutboxItem, OutboxStore, PendingCall, Principal, ReplyItem, ReplyStore,
    StoreError, StoreFuture, StoredFile, Tenant, TenantStore, Transition,
};
use crate::model::{CallRecord, NewCall, Next};

pub use schema::{SCHEMA_VERSION, V1_SCHEMA};

/// Most jobs run in one transaction.
const MAX_BATCH: usize = 512;

/// Jobs that may wait for the writer thread before senders wait too.
const QUEUE_DEPTH: usize = 8192;

/// Reads that run at once, each on its own read-only connection; more wait their turn, so
/// connections (and the statements each has prepared) are kept instead of opened per read.
const MAX_READERS: usize = 8;

/// Prepared statements each connection keeps (rusqlite keeps 16 by default: fewer than the
/// store's statements, so they would be parsed again and again).
const STATEMENT_CACHE: usize = 128;

/// Work for the writer thread: runs inside the batch transaction (or gets `None` when the
/// transaction could not begin) and returns what to do once the commit outcome is known, and
/// whether it failed after writing without a savepoint to undo it ([`Spoiled`]): then the
/// whole transaction is rolled back.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (Reply, Spoiled) + Send>;

/// A job without a savepoint failed after it wrote: the transaction holds half of its work.
type Spoiled = bool;

/// What a job without a savepoint of its own returns: `Err` when it failed after writing
/// (the transaction must be rolled back), `Ok(Err)` when it refused before writing anything.
type Unguarded<T> = Result<Result<T, StoreError>, StoreError>;

/// Sends a job's answer, given how the batch's COMMIT went.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The SQLite implementation of [`DataStore`]; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    commits: Arc<AtomicU64>,
    /// Keys recently authenticated ([`principals`]).
    principals: Arc<principals::Recent<Principal>>,
    /// Tenants' signing settings, read on every API request ([`principals`]).
    signing: Arc<principals::Recent<crate::store::SigningSettings>>,
    /// Which destinations may have a callee record ([`callee_filter`]).
    callee_filter: Arc<callee_filter::CalleeFilter>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .field("commits", &self.commit_count())
            .finish_non_exhaustive()
    }
}

/// Idle read-only connections to one database file.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may be in use.
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn give(&self, conn: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_READERS {
            idle.push(conn);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, makes it and its WAL files mode 0600,
    /// migrates its schema and starts the writer thread. The parent directory is created if
    /// missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        create_private(path)?;
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{} cannot use WAL journaling (got {mode}); put store.data_dir on a local filesystem",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        tune(&conn)?;
        // The writer's page cache holds a whole batch's dirty pages (a 10,000-call batch
        // dirties about 8 MB): with SQLite's default 2 MB it spilled to the WAL mid-transaction.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&conn)?;
        // The -wal and -shm files exist now; SQLite gives them the database's mode, but a file
        // left by an older version may not have it.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            make_private(Path::new(&name))?;
        }

        let (jobs, receiver) = mpsc::channel(QUEUE_DEPTH);
        let commits = Arc::new(AtomicU64::new(0));
        let thread_commits = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("outdial-store".to_owned())
            .spawn(move || run_writer_thread(&conn, receiver, &thread_commits))?;
        Ok(Self {
            jobs,
            readers: Arc::new(Readers {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(MAX_READERS),
            }),
            commits,
            principals: Arc::default(),
            signing: Arc::default(),
            callee_filter: Arc::default(),
        })
    }

    /// How many transactions the writer thread has committed (each may hold many jobs).
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` on the writer thread in the next batch and answers after its COMMIT.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_unguarded(move |conn| Ok(in_savepoint(conn, work)))
            .await
    }

    /// Like [`SqliteStore::write`], without the savepoint that lets one job fail alone: for
    /// jobs that refuse before they write (`Ok(Err)`) and otherwise do not fail. The
    /// savepoint cost a fifth of the writer thread under single creates (every job copied
    /// the index pages it touched into its sub-journal). If such a job fails after writing
    /// (`Err`: a full disk, say), the whole transaction is rolled back and every job in it
    /// gets the error: nothing half done is committed.
    async fn write_unguarded<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Unguarded<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn: Option<&Connection>| -> (Reply, Spoiled) {
            let result = conn.map(work);
            let spoiled = matches!(result, Some(Err(_)));
            let reply: Reply = Box::new(move |commit: Result<(), String>| {
                let outcome = match (commit, result) {
                    (Ok(()), Some(Ok(result))) => result,
                    (_, Some(Err(e))) => Err(e),
                    (Err(e), _) => Err(StoreError::Unavailable(e)),
                    (Ok(()), None) => {
                        Err(StoreError::Unavailable("the job did not run".to_owned()))
                    }
                };
                // The caller may have gone away (request canceled); nothing to do then.
                let _ = answer.send(outcome);
            });
            (reply, spoiled)
        });
        let stopped =
            || StoreError::Unavailable("the store thread has stopped; restart outdial".to_owned());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Runs `work` on a read-only connection, on a blocking thread: it sees the last commit
    /// and never waits for the writer.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".to_owned()))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = work(&conn);
            readers.give(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("a store read failed: {e}")))?
    }
}

impl CallStore for SqliteStore {
    fn create_calls(
        &self,
        tenant: &str,
        new: Vec<NewCall>,
        idempotency: Option<IdempotencyKey>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Created> {
        let tenant = tenant.to_owned();
        Box::pin(
            self.write_unguarded(move |c| {
                calls::create_unguarded(c, &tenant, new, idempotency, now)
            }),
        )
    }

    fn get_call(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<CallRecord>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.read(move |c| calls::select(c, Some(&tenant), &id)))
    }

    fn list_calls(&self, tenant: &str, query: ListQuery) -> StoreFuture<'_, Vec<CallRecord>> {
        let tenant = tenant.to_owned();
        Box::pin(self.read(move |c| calls::list(c, &tenant, &query)))
    }

    fn pending_calls(&self, _node: &str) -> StoreFuture<'_, Vec<PendingCall>> {
        Box::pin(self.read(calls::pending))
    }

    fn take_incoming(
        &self,
        node: &str,
        new: NewCall,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Claimed> {
        let node = node.to_owned();
        Box::pin(self.write(move |c| {
            let tenant = new.tenant.clone();
            let created = calls::create(c, &tenant, vec![new], None, now)?;
            let ids: Vec<String> = created.records.into_iter().map(|r| r.id).collect();
            calls::claim(c, &node, &ids, lease_until, now)?
                .pop()
                .ok_or_else(|| StoreError::Unavailable("the incoming call was not claimed".into()))
        }))
    }

    fn claim_calls(
        &self,
        node: &str,
        ids: Vec<String>,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Vec<Claimed>> {
        let node = node.to_owned();
        Box::pin(self.write(move |c| calls::claim(c, &node, &ids, lease_until, now)))
    }

    fn renew_lease(&self, node: &str, until: OffsetDateTime) -> StoreFuture<'_, u64> {
        let node = node.to_owned();
        Box::pin(self.write(move |c| calls::renew_lease(c, &node, until)))
    }

    fn expire_call(&self, id: &str, now: OffsetDateTime) -> StoreFuture<'_, Option<CallRecord>> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::expire(c, &id, now)))
    }

    fn cancel_queued(
        &self,
        tenant: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Option<CallRecord>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.write(move |c| calls::cancel_queued(c, &tenant, &id, now)))
    }

    fn record_transition(
        &self,
        id: &str,
        attempt: u32,
        transition: Transition,
    ) -> StoreFuture<'_, CallRecord> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::transition(c, &id, attempt, &transition)))
    }

    fn record_early_media(
        &self,
        id: &str,
        attempt: u32,
        at: OffsetDateTime,
        cause: &str,
    ) -> StoreFuture<'_, ()> {
        let (id, cause) = (id.to_owned(), cause.to_owned());
        Box::pin(self.write(move |c| calls::record_early_media(c, &id, attempt, at, &cause)))
    }

    fn record_answered_by(
        &self,
        id: &str,
        attempt: u32,
        verdict: AnsweredBy,
    ) -> StoreFuture<'_, CallRecord> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::record_answered_by(c, &id, attempt, &verdict)))
    }

    fn store_result(&self, id: &str, result: Value) -> StoreFuture<'_, ()> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::store_result(c, &id, &result)))
    }

    fn finish_attempt(
        &self,
        id: &str,
        attempt: u32,
        end: AttemptEnd,
        next: Next,
    ) -> StoreFuture<'_, CallRecord> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::finish_attempt(c, &id, attempt, end, next)))
    }

    fn recover_node(&self, node: &str, now: OffsetDateTime) -> StoreFuture<'_, u64> {
        let node = node.to_owned();
        Box::pin(self.write(move |c| calls::recover_node(c, &node, now)))
    }

    fn call_events(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<Vec<CallEvent>>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.read(move |c| calls::events(c, &tenant, &id)))
    }
}

impl TenantStore for SqliteStore {
    fn add_tenant(
        &self,
        tenant: NewTenant,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, (Tenant, String)> {
        Box::pin(async move {
            let secret = tenants::new_secret()?;
            self.write(move |c| tenants::add(c, &tenant, &secret, now))
                .await
        })
    }

    fn list_tenants(&self) -> StoreFuture<'_, Vec<Tenant>> {
        Box::pin(self.read(tenants::list))
    }

    fn get_tenant(&self, id: &str) -> StoreFuture<'_, Option<Tenant>> {
        let id = id.to_owned();
        Box::pin(self.read(move |c| tenants::get(c, &id)))
    }

    fn set_tenant_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Tenant> {
        let id = id.to_owned();
        Box::pin(async move {
            let tenant = self
                .write(move |c| tenants::set_disabled(c, &id, disabled, now))
                .await;
            self.principals.clear();
            tenant
        })
    }

    fn create_key(
        &self,
        key: NewApiKey,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, (ApiKeyInfo, String)> {
        Box::pin(async move {
            let secret = tenants::new_api_key()?;
            self.write(move |c| tenants::create_key(c, &key, secret, now))
                .await
        })
    }

    fn list_keys(&self, tenant: Option<String>) -> StoreFuture<'_, Vec<ApiKeyInfo>> {
        Box::pin(self.read(move |c| tenants::list_keys(c, tenant.as_deref())))
    }

    fn revoke_key(&self, key_id: &str, now: OffsetDateTime) -> StoreFuture<'_, ApiKeyInfo> {
        let key_id = key_id.to_owned();
        Box::pin(async move {
            let key = self
                .write(move |c| tenants::revoke_key(c, &key_id, now))
                .await;
            self.principals.clear();
            key
        })
    }

    fn authenticate(&self, key: &str) -> StoreFuture<'_, Option<Principal>> {
        let hash = crate::auth::hash_api_key(key);
        Box::pin(async move {
            if let Some(principal) = self.principals.get(&hash, Instant::now()) {
                return Ok(Some(principal));
            }
            let generation = self.principals.generation();
            let looked_up = hash.clone();
            let found = self
                .read(move |c| tenants::authenticate(c, &looked_up))
                .await?;
            if let Some(principal) = &found {
                self.principals
                    .put(hash, principal.clone(), generation, Instant::now());
            }
            Ok(found)
        })
    }

    fn tenant_webhook_secret(&self, tenant: &str) -> StoreFuture<'_, String> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let fresh = tenants::new_secret()?;
            let now = calls::micros(OffsetDateTime::now_utc());
            self.write(move |c| tenants::upsert(c, &tenant, &fresh, now))
                .await
        })
    }

    fn ensure_dev_tenant(&self, data_dir: &Path) -> StoreFuture<'_, String> {
        let data_dir = data_dir.to_owned();
        Box::pin(tenants::ensure_dev_tenant(self, data_dir))
    }
}

impl OutboxStore for SqliteStore {
    fn due_webhooks(
        &self,
        now: OffsetDateTime,
        limit: u32,
        busy: Vec<i64>,
    ) -> StoreFuture<'_, Vec<OutboxItem>> {
        Box::pin(self.read(move |c| outbox::due(c, now, limit, &busy)))
    }

    fn next_webhook_at(&self) -> StoreFuture<'_, Option<OffsetDateTime>> {
        Box::pin(self.read(outbox::next_due))
    }

    fn webhook_delivered(&self, seq: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |c| outbox::delivered(c, seq)))
    }

    fn webhook_failed(
        &self,
        seq: i64,
        error: String,
        retry_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |c| outbox::failed(c, seq, &error, retry_at, now)))
    }

    fn dead_letters(
        &self,
        tenant: &str,
        limit: u32,
        before: Option<String>,
    ) -> StoreFuture<'_, Vec<DeadLetter>> {
        let tenant = tenant.to_owned();
        Box::pin(self.read(move |c| outbox::dead_letters(c, &tenant, limit, before.as_deref())))
    }

    fn redrive(&self, tenant: &str, id: &str, now: OffsetDateTime) -> StoreFuture<'_, DeadLetter> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.write(move |c| outbox::redrive(c, &tenant, &id, now)))
    }
}

impl CdrStore for SqliteStore {
    fn cdrs(&self, tenant: Option<String>, query: CdrQuery) -> StoreFuture<'_, CdrPage> {
        Box::pin(self.read(move |c| cdrs::page(c, tenant.as_deref(), &query)))
    }
}

impl FileStore for SqliteStore {
    fn create_calls_with_files(
        &self,
        tenant: &str,
        calls: Vec<NewCall>,
        files: Option<NewFiles>,
        idempotency: Option<IdempotencyKey>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Created> {
        let tenant = tenant.to_owned();
        Box::pin(
            self.write(move |c| {
                files::create_with_files(c, &tenant, calls, files, idempotency, now)
            }),
        )
    }

    fn request_file(&self, id: &str, name: &str) -> StoreFuture<'_, Option<StoredFile>> {
        let (id, name) = (id.to_owned(), name.to_owned());
        Box::pin(self.read(move |c| files::select(c, &id, &name)))
    }
}

impl ReplyStore for SqliteStore {
    fn enqueue_reply(&self, reply: NewReply, now: OffsetDateTime) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |c| replies::enqueue(c, &reply, now)))
    }

    fn due_replies(&self, now: OffsetDateTime, limit: u32) -> StoreFuture<'_, Vec<ReplyItem>> {
        Box::pin(self.read(move |c| replies::due(c, now, limit)))
    }

    fn reply_sent(&self, seq: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |c| replies::sent(c, seq)))
    }

    fn reply_failed(
        &self,
        seq: i64,
        error: String,
        retry_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |c| replies::failed(c, seq, &error, retry_at, now)))
    }
}

impl crate::store::SigningStore for SqliteStore {
    fn set_signing_secret(
        &self,
        tenant: &str,
        secret: String,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let set = self
                .write(move |c| signing::set_secret(c, &tenant, &secret, now))
                .await;
            self.signing.clear();
            set
        })
    }

    fn set_signing_required(&self, tenant: &str, required: bool) -> StoreFuture<'_, ()> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            let set = self
                .write(move |c| signing::set_required(c, &tenant, required))
                .await;
            self.signing.clear();
            set
        })
    }

    fn signing_settings(&self, tenant: &str) -> StoreFuture<'_, crate::store::SigningSettings> {
        let tenant = tenant.to_owned();
        Box::pin(async move {
            if let Some(settings) = self.signing.get(&tenant, Instant::now()) {
                return Ok(settings);
            }
            let generation = self.signing.generation();
            let looked_up = tenant.clone();
            let settings = self.read(move |c| signing::get(c, &looked_up)).await?;
            self.signing
                .put(tenant, settings.clone(), generation, Instant::now());
            Ok(settings)
        })
    }
}

impl crate::store::PolicyStore for SqliteStore {
    fn tenant_policy(&self, tenant: &str) -> StoreFuture<'_, crate::policy::RequesterPolicy> {
        let tenant = tenant.to_owned();
        Box::pin(self.read(move |c| policy::tenant_policy(c, &tenant)))
    }

    fn tenant_policies(&self) -> StoreFuture<'_, Vec<(String, crate::policy::RequesterPolicy)>> {
        Box::pin(self.read(policy::tenant_policies))
    }

    fn set_tenant_policy(
        &self,
        tenant: &str,
        rules: crate::policy::RequesterPolicy,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()> {
        let tenant = tenant.to_owned();
        Box::pin(self.write(move |c| policy::set_tenant_policy(c, &tenant, &rules, now)))
    }

    fn callee(&self, number: &str) -> StoreFuture<'_, Option<crate::policy::CalleeRecord>> {
        let number = number.to_owned();
        Box::pin(self.read(move |c| policy::callee(c, &number)))
    }

    fn callees(
        &self,
        numbers: Vec<String>,
    ) -> StoreFuture<'_, std::collections::HashMap<String, crate::policy::CalleeRecord>> {
        Box::pin(async move {
            let filter = Arc::clone(&self.callee_filter);
            let now = Instant::now();
            let known = match filter.may_have(&numbers, now) {
                Some(known) => known,
                None => {
                    let (looked, asked) = (Arc::clone(&filter), numbers.clone());
                    self.read(move |c| {
                        let stamp = policy::callee_stamp(c)?;
                        if !looked.confirm(stamp, now) {
                            looked.rebuild(&policy::callee_numbers(c)?, stamp, now);
                        }
                        Ok(looked.may_have(&asked, now))
                    })
                    .await?
                    .unwrap_or(true)
                }
            };
            if !known {
                return Ok(std::collections::HashMap::new());
            }
            self.read(move |c| policy::callees(c, &numbers)).await
        })
    }

    fn put_callee(
        &self,
        number: &str,
        record: crate::policy::CalleeRecord,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()> {
        let number = number.to_owned();
        // Known to the filter before the record exists: never a moment without either.
        self.callee_filter.add(&number);
        Box::pin(self.write(move |c| policy::put_callee(c, &number, &record, now)))
    }

    fn delete_callee(&self, number: &str) -> StoreFuture<'_, bool> {
        let number = number.to_owned();
        Box::pin(self.write(move |c| policy::delete_callee(c, &number)))
    }

    fn set_opt_out(
        &self,
        number: &str,
        scope: crate::store::OptOutScope,
        opted_out: bool,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, crate::policy::CalleeRecord> {
        let number = number.to_owned();
        self.callee_filter.add(&number);
        Box::pin(self.write(move |c| policy::set_opt_out(c, &number, &scope, opted_out, now)))
    }

    fn dispatch_facts(
        &self,
        tenants: Vec<String>,
        numbers: Vec<String>,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, crate::store::DispatchFacts> {
        Box::pin(self.read(move |c| policy::dispatch_facts(c, &tenants, &numbers, now)))
    }

    fn defer_call(
        &self,
        id: &str,
        until: OffsetDateTime,
        note: crate::store::PolicyNote,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Option<CallRecord>> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::defer(c, &id, until, &note, now)))
    }

    fn refuse_call(
        &self,
        id: &str,
        note: crate::store::PolicyNote,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Option<CallRecord>> {
        let id = id.to_owned();
        Box::pin(self.write(move |c| calls::refuse(c, &id, &note, now)))
    }
}

impl crate::store::CampaignStore for SqliteStore {
    fn create_campaign(
        &self,
        tenant: &str,
        spec: Value,
        start: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, crate::store::Campaign> {
        let tenant = tenant.to_owned();
        Box::pin(self.write(move |c| campaigns::create(c, &tenant, &spec, start, now)))
    }

    fn campaign(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<crate::store::Campaign>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.read(move |c| campaigns::get(c, &tenant, &id)))
    }

    fn campaigns(&self, tenant: &str) -> StoreFuture<'_, Vec<crate::store::Campaign>> {
        let tenant = tenant.to_owned();
        Box::pin(self.read(move |c| campaigns::list(c, &tenant)))
    }

    fn add_campaign_batch(
        &self,
        tenant: &str,
        id: &str,
        batch: crate::store::CampaignBatch,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Vec<CallRecord>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.write(move |c| campaigns::add_batch(c, &tenant, &id, batch, now)))
    }

    fn cancel_campaign(
        &self,
        tenant: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, Vec<String>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.write(move |c| campaigns::cancel(c, &tenant, &id, now)))
    }
}

impl DataStore for SqliteStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?)))
    }
}

/// A read-only connection to `path`.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!("cannot open {} for reading: {e}", path.display()))
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    tune(&conn)?;
    Ok(conn)
}

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Settings for the work every call makes, found with `perf` on `bench/sip/run.sh` (d):
/// - the query planner may not re-plan a statement for the values bound to it (QPSG): without
///   it SQLite compiled the CDR's `INSERT … SELECT` again on every call (`sqlite3Reprepare`,
///   a fifth of the writer thread), as the plan could depend on the call id;
/// - each job's savepoint journal stays in memory (`temp_store`): it holds the pages one
///   job changed, for its rollback alone, and went to a temporary file with a `pwrite` per
///   page. The transaction's own durability (the WAL) is unchanged.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// The writer thread: batch, run, commit, answer; until every handle is dropped.
fn run_writer_thread(conn: &Connection, mut jobs: mpsc::Receiver<Job>, commits: &AtomicU64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while jobs.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let begun = conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut begin| begin.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string());
        let outcome = match begun {
            Ok(()) => {
                let mut spoiled = false;
                replies.extend(batch.drain(..).map(|job| {
                    let (reply, spoils) = job(Some(conn));
                    spoiled |= spoils;
                    reply
                }));
                let committed = if spoiled {
                    Err(
                        "a job failed halfway through its writes, so the whole transaction \
                         was rolled back: retry the request"
                            .to_owned(),
                    )
                } else {
                    conn.prepare_cached("COMMIT")
                        .and_then(|mut commit| commit.execute([]))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                if committed.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                } else {
                    commits.fetch_add(1, Ordering::Relaxed);
                }
                committed
            }
            Err(e) => {
                replies.extend(batch.drain(..).map(|job| job(None).0));
                Err(e)
            }
        };
        metrics::histogram!("outdial_store_batch_jobs").record(replies.len() as f64);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, jobs = replies.len(), "store transaction failed");
        }
        for reply in replies.drain(..) {
            reply(outcome.clone());
        }
    }
}

/// Runs `work` inside a savepoint: its writes are kept if it succeeds and undone if it fails.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = work(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

/// Creates `path` empty with mode 0600 if it does not exist (so SQLite, which gives the
/// -wal and -shm files the database's mode, never makes them readable by others).
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Sets `path`'s mode to 0600 if it exists.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes `text` to `path` readable by the owner only (mode 0600).
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), std::io::Error> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// A column read as a timestamp (integer microseconds since the Unix epoch, UTC).
fn time_from(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    let Some(us) = row.get::<_, Option<i64>>(index)? else {
        return Ok(None);
    };
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map(Some)
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Integer,
                Box::new(e),
            )
        })
}

fn bad_column(index: usize, what: &str, text: &str) -> rusqlite::Error {
    let message = format!("stored {what} is not valid: {text:?}");
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, message.into())
}

#[cfg(test)]
mod tests;
