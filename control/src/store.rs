//! The durable store: SQLite (WAL, `synchronous=FULL`) owned by one dedicated thread.
//!
//! Callers send jobs over a channel. The store thread takes every job waiting, runs them all in
//! one transaction (each inside its own savepoint, so one failing job does not undo the others),
//! commits once, and only then answers: many concurrent requests share one fsync, and no caller
//! hears "done" before its write is on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::auth;
use crate::error::{Error, RequestError};
use crate::model::{CallRecord, CallStatus, CallUpdate, NewCall};

/// Name of the development tenant created by [`Store::ensure_dev_tenant`].
pub const DEV_TENANT: &str = "dev";

/// File in the data directory holding the development API key.
pub const DEV_KEY_FILE: &str = "dev-api-key";

/// File in the data directory holding the development tenant's webhook secret.
pub const DEV_WEBHOOK_SECRET_FILE: &str = "dev-webhook-secret";

/// Reason recorded for calls found live when the server starts.
pub const INTERRUPTED_REASON: &str = "interrupted: the server stopped during the call";

/// Most jobs run in one transaction.
const MAX_BATCH: usize = 512;

/// Jobs that may wait for the store thread before senders wait too.
const QUEUE_DEPTH: usize = 8192;

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE tenants (
    id             TEXT PRIMARY KEY,
    webhook_secret TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE TABLE api_keys (
    key_sha256 TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL REFERENCES tenants(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE calls (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    tenant            TEXT NOT NULL,
    status            TEXT NOT NULL,
    to_addr           TEXT NOT NULL,
    target_uri        TEXT NOT NULL,
    from_addr         TEXT,
    url               TEXT NOT NULL,
    vars              TEXT NOT NULL,
    status_callback   TEXT,
    ring_timeout_secs INTEGER,
    created_at        INTEGER NOT NULL,
    dialed_at         INTEGER,
    answered_at       INTEGER,
    ended_at          INTEGER,
    sip_status        INTEGER,
    disposition       TEXT,
    reason            TEXT,
    result            TEXT
);
CREATE INDEX calls_by_tenant ON calls (tenant, seq);
CREATE INDEX calls_by_tenant_status ON calls (tenant, status, seq);
CREATE INDEX calls_queued ON calls (seq) WHERE status = 'queued';
CREATE INDEX calls_live ON calls (seq) WHERE status IN ('dialing', 'ringing', 'in-progress');
"];

/// The columns [`record_from_row`] reads, in order.
const CALL_COLUMNS: &str = "seq, id, tenant, status, to_addr, target_uri, from_addr, url, vars, \
    status_callback, ring_timeout_secs, created_at, dialed_at, answered_at, ended_at, \
    sip_status, disposition, reason, result";

/// Work for the store thread: runs inside the batch transaction (or gets `None` when the
/// transaction could not begin) and returns what to do once the commit outcome is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// Sends a job's answer, given how the batch's COMMIT went.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Handle to the store; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    /// API key hash → tenant, for keys already seen valid.
    key_cache: Arc<Mutex<HashMap<String, String>>>,
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("commits", &self.commit_count())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates its schema and starts the
    /// store thread. The parent directory is created if missing.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)
            .map_err(|e| Error::Store(format!("cannot open {}: {e}", path.display())))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Store(format!(
                "{} cannot use WAL journaling (got {mode}); put store.data_dir on a local filesystem",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;

        let (jobs, receiver) = mpsc::channel(QUEUE_DEPTH);
        let commits = Arc::new(AtomicU64::new(0));
        let thread_commits = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("outdial-store".to_owned())
            .spawn(move || run_store_thread(&conn, receiver, &thread_commits))?;
        Ok(Self {
            jobs,
            key_cache: Arc::default(),
            commits,
        })
    }

    /// Stores a new call as `queued` and returns its record, once committed.
    pub async fn insert_call(&self, new: NewCall) -> Result<CallRecord, Error> {
        let id = format!("call_{}", auth::random_base32(26)?);
        let created_at = now();
        self.run(move |conn| {
            let vars = Value::Object(new.vars.clone()).to_string();
            let ring_timeout = new
                .ring_timeout_secs
                .map(i64::try_from)
                .transpose()
                .map_err(|_| Error::Store("ring timeout does not fit in the store".to_owned()))?;
            let rowid: i64 = conn
                .prepare_cached(
                    "INSERT INTO calls (id, tenant, status, to_addr, target_uri, from_addr, url, \
                     vars, status_callback, ring_timeout_secs, created_at) \
                     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq",
                )?
                .query_row(
                    params![
                        id,
                        new.tenant,
                        new.to,
                        new.target_uri,
                        new.from,
                        new.url,
                        vars,
                        new.status_callback,
                        ring_timeout,
                        micros(created_at),
                    ],
                    |row| row.get(0),
                )?;
            Ok(CallRecord {
                rowid,
                id,
                tenant: new.tenant,
                status: CallStatus::Queued,
                to: new.to,
                target_uri: new.target_uri,
                from: new.from,
                url: new.url,
                vars: new.vars,
                status_callback: new.status_callback,
                ring_timeout_secs: new.ring_timeout_secs,
                created_at,
                dialed_at: None,
                answered_at: None,
                ended_at: None,
                sip_status: None,
                disposition: None,
                reason: None,
                result: None,
            })
        })
        .await
    }

    /// The call `id` of `tenant`, if it exists.
    pub async fn get_call(&self, tenant: &str, id: &str) -> Result<Option<CallRecord>, Error> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.run(move |conn| select_by_id(conn, &tenant, &id)).await
    }

    /// The call with internal row id `rowid`, if it exists.
    pub async fn get_call_by_rowid(&self, rowid: i64) -> Result<Option<CallRecord>, Error> {
        self.run(move |conn| {
            let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE seq = ?1");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([rowid], record_from_row)
                .optional()?)
        })
        .await
    }

    /// Up to `limit` calls of `tenant`, newest first, optionally only those in `status`, and
    /// only calls older than the call `before` (a public id, the pagination cursor).
    pub async fn list_calls(
        &self,
        tenant: &str,
        status: Option<CallStatus>,
        limit: u32,
        before: Option<String>,
    ) -> Result<Vec<CallRecord>, Error> {
        let tenant = tenant.to_owned();
        self.run(move |conn| {
            let below = match before {
                None => i64::MAX,
                Some(cursor) => conn
                    .prepare_cached("SELECT seq FROM calls WHERE tenant = ?1 AND id = ?2")?
                    .query_row(params![tenant, cursor], |row| row.get(0))
                    .optional()?
                    .ok_or_else(|| {
                        RequestError::InvalidQuery(format!(
                            "`before` = {cursor:?} is not a call id of this account; use the `next` value of the previous page"
                        ))
                    })?,
            };
            let records = match status {
                None => {
                    let sql = format!(
                        "SELECT {CALL_COLUMNS} FROM calls WHERE tenant = ?1 AND seq < ?2 \
                         ORDER BY seq DESC LIMIT ?3"
                    );
                    conn.prepare_cached(&sql)?
                        .query_map(params![tenant, below, limit], record_from_row)?
                        .collect::<Result<Vec<_>, _>>()?
                }
                Some(status) => {
                    let sql = format!(
                        "SELECT {CALL_COLUMNS} FROM calls WHERE tenant = ?1 AND status = ?2 \
                         AND seq < ?3 ORDER BY seq DESC LIMIT ?4"
                    );
                    conn.prepare_cached(&sql)?
                        .query_map(params![tenant, status.as_str(), below, limit], record_from_row)?
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            Ok(records)
        })
        .await
    }

    /// Takes up to `limit` queued calls, oldest first, and marks them `dialing` with
    /// `dialed_at` = now, atomically: a call is claimed once.
    pub async fn claim_queued(&self, limit: u32) -> Result<Vec<CallRecord>, Error> {
        let dialed_at = micros(now());
        self.run(move |conn| {
            let sql = format!(
                "UPDATE calls SET status = 'dialing', dialed_at = ?1 WHERE seq IN \
                 (SELECT seq FROM calls WHERE status = 'queued' ORDER BY seq LIMIT ?2) \
                 RETURNING {CALL_COLUMNS}"
            );
            let mut records = conn
                .prepare_cached(&sql)?
                .query_map(params![dialed_at, limit], record_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            records.sort_by_key(|r| r.rowid);
            Ok(records)
        })
        .await
    }

    /// Applies `update` (its `Some` fields) to call `rowid` and returns the new record.
    pub async fn update_call(&self, rowid: i64, update: CallUpdate) -> Result<CallRecord, Error> {
        self.run(move |conn| {
            let result = update.result.as_ref().map(Value::to_string);
            let sql = format!(
                "UPDATE calls SET status = COALESCE(?2, status), \
                 dialed_at = COALESCE(?3, dialed_at), answered_at = COALESCE(?4, answered_at), \
                 ended_at = COALESCE(?5, ended_at), sip_status = COALESCE(?6, sip_status), \
                 disposition = COALESCE(?7, disposition), reason = COALESCE(?8, reason), \
                 result = COALESCE(?9, result) WHERE seq = ?1 RETURNING {CALL_COLUMNS}"
            );
            conn.prepare_cached(&sql)?
                .query_row(
                    params![
                        rowid,
                        update.status.map(CallStatus::as_str),
                        update.dialed_at.map(micros),
                        update.answered_at.map(micros),
                        update.ended_at.map(micros),
                        update.sip_status,
                        update.disposition,
                        update.reason,
                        result,
                    ],
                    record_from_row,
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("#{rowid}")))
        })
        .await
    }

    /// Cancel if still queued (→ Canceled, ended_at). Returns the record after the attempt.
    pub async fn cancel_if_queued(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<CallRecord>, Error> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let ended_at = micros(now());
        self.run(move |conn| {
            conn.prepare_cached(
                "UPDATE calls SET status = 'canceled', ended_at = ?3, \
                 reason = 'canceled through the API before dialing' \
                 WHERE tenant = ?1 AND id = ?2 AND status = 'queued'",
            )?
            .execute(params![tenant, id, ended_at])?;
            select_by_id(conn, &tenant, &id)
        })
        .await
    }

    /// At start: calls left in dialing/ringing/in-progress by a crash → failed, reason
    /// "interrupted: the server stopped during the call" (never redialled blindly). Returns how many.
    pub async fn recover_interrupted(&self) -> Result<u64, Error> {
        let ended_at = micros(now());
        self.run(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE calls SET status = 'failed', ended_at = ?1, reason = ?2 \
                     WHERE status IN ('dialing', 'ringing', 'in-progress')",
                )?
                .execute(params![ended_at, INTERRUPTED_REASON])?;
            Ok(u64::try_from(changed).unwrap_or(u64::MAX))
        })
        .await
    }

    /// The tenant that owns API key `key`, if the key is known. Keys are stored as SHA-256.
    pub async fn api_key_tenant(&self, key: &str) -> Result<Option<String>, Error> {
        let hash = auth::hash_api_key(key);
        if let Some(tenant) = self.cached_tenant(&hash) {
            return Ok(Some(tenant));
        }
        let lookup = hash.clone();
        let tenant = self
            .run(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT tenant FROM api_keys WHERE key_sha256 = ?1")?
                    .query_row([lookup], |row| row.get::<_, String>(0))
                    .optional()?)
            })
            .await?;
        if let Some(tenant) = &tenant
            && let Ok(mut cache) = self.key_cache.lock()
        {
            cache.insert(hash, tenant.clone());
        }
        Ok(tenant)
    }

    /// Makes sure the development tenant exists and has an API key, and returns the key.
    ///
    /// Reuses `data_dir/dev-api-key` if present (its mode is set to 0600), else creates
    /// `od_dev_` + 32 random hex characters, stores its hash and writes the file (0600) after the
    /// commit. Also writes the tenant's webhook secret to `data_dir/dev-webhook-secret`.
    pub async fn ensure_dev_tenant(&self, data_dir: &Path) -> Result<String, Error> {
        std::fs::create_dir_all(data_dir)?;
        let key_path = data_dir.join(DEV_KEY_FILE);
        let existing = match std::fs::read_to_string(&key_path) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(key) = &existing
            && (key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::Config(format!(
                "{} does not hold an API key; delete it and restart to create a new one",
                key_path.display()
            )));
        }
        let key = match existing {
            Some(key) => key,
            None => auth::new_dev_api_key()?,
        };
        let secret = auth::new_webhook_secret()?;
        let hash = auth::hash_api_key(&key);
        let created_at = micros(now());
        let secret = self
            .run(move |conn| {
                let secret = upsert_tenant(conn, DEV_TENANT, &secret, created_at)?;
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO api_keys (key_sha256, tenant, created_at) \
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![hash, DEV_TENANT, created_at])?;
                Ok(secret)
            })
            .await?;
        write_private(&key_path, &key)?;
        write_private(&data_dir.join(DEV_WEBHOOK_SECRET_FILE), &secret)?;
        Ok(key)
    }

    /// The secret that signs `tenant`'s webhooks (`whsec_` + base64); created on first use.
    pub async fn tenant_webhook_secret(&self, tenant: &str) -> Result<String, Error> {
        let tenant = tenant.to_owned();
        let fresh = auth::new_webhook_secret()?;
        let created_at = micros(now());
        self.run(move |conn| upsert_tenant(conn, &tenant, &fresh, created_at))
            .await
    }

    /// Round trip to the store thread; fails if the store is not working.
    pub async fn ping(&self) -> Result<(), Error> {
        self.run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// How many transactions the store thread has committed (each may hold many jobs).
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` on the store thread in the next batch and answers after its COMMIT.
    async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn: Option<&Connection>| -> Reply {
            let result = conn.map(|conn| in_savepoint(conn, work));
            Box::new(move |commit: Result<(), String>| {
                let outcome = match (commit, result) {
                    (Ok(()), Some(result)) => result,
                    (Err(e), _) => Err(Error::Store(e)),
                    (Ok(()), None) => Err(Error::Store("the job did not run".to_owned())),
                };
                // The caller may have gone away (request canceled); nothing to do then.
                let _ = answer.send(outcome);
            })
        });
        let stopped = || Error::Store("the store thread has stopped; restart outdial".to_owned());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    fn cached_tenant(&self, hash: &str) -> Option<String> {
        self.key_cache.lock().ok()?.get(hash).cloned()
    }
}

/// The store thread: batch, run, commit, answer; until every [`Store`] handle is dropped.
fn run_store_thread(conn: &Connection, mut jobs: mpsc::Receiver<Job>, commits: &AtomicU64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while jobs.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string());
        let outcome = match begun {
            Ok(()) => {
                replies.extend(batch.drain(..).map(|job| job(Some(conn))));
                let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
                if committed.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                } else {
                    commits.fetch_add(1, Ordering::Relaxed);
                }
                committed
            }
            Err(e) => {
                replies.extend(batch.drain(..).map(|job| job(None)));
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
    work: impl FnOnce(&Connection) -> Result<T, Error>,
) -> Result<T, Error> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = work(conn);
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    conn.execute_batch(end)?;
    result
}

/// Brings the schema up to the newest version, one migration per transaction.
fn migrate(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(Error::Store(format!(
            "the database has schema version {current}, newer than this outdial knows ({}); \
             run a newer outdial",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied = conn.execute_batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i64::try_from(version + 1).unwrap_or(i64::MAX)],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(Error::Store(format!(
                    "migration to version {}: {e}",
                    version + 1
                )));
            }
        }
    }
    Ok(())
}

fn select_by_id(conn: &Connection, tenant: &str, id: &str) -> Result<Option<CallRecord>, Error> {
    let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1 AND tenant = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id, tenant], record_from_row)
        .optional()?)
}

/// Creates `tenant` with `fresh` as its webhook secret unless it exists; returns its secret.
fn upsert_tenant(
    conn: &Connection,
    tenant: &str,
    fresh: &str,
    created_at: i64,
) -> Result<String, Error> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO tenants (id, webhook_secret, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![tenant, fresh, created_at])?;
    Ok(conn
        .prepare_cached("SELECT webhook_secret FROM tenants WHERE id = ?1")?
        .query_row([tenant], |row| row.get(0))?)
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<CallRecord> {
    let status: String = row.get(3)?;
    let status = CallStatus::parse(&status).ok_or_else(|| bad_column(3, "call status", &status))?;
    let vars: String = row.get(8)?;
    let vars: Map<String, Value> =
        serde_json::from_str(&vars).map_err(|_| bad_column(8, "vars object", &vars))?;
    let result: Option<String> = row.get(18)?;
    let result = result
        .map(|text| serde_json::from_str(&text).map_err(|_| bad_column(18, "result", &text)))
        .transpose()?;
    let ring_timeout: Option<i64> = row.get(10)?;
    Ok(CallRecord {
        rowid: row.get(0)?,
        id: row.get(1)?,
        tenant: row.get(2)?,
        status,
        to: row.get(4)?,
        target_uri: row.get(5)?,
        from: row.get(6)?,
        url: row.get(7)?,
        vars,
        status_callback: row.get(9)?,
        ring_timeout_secs: ring_timeout.and_then(|t| u64::try_from(t).ok()),
        created_at: time_from(row, 11)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        dialed_at: time_from(row, 12)?,
        answered_at: time_from(row, 13)?,
        ended_at: time_from(row, 14)?,
        sip_status: row.get(15)?,
        disposition: row.get(16)?,
        reason: row.get(17)?,
        result,
    })
}

fn bad_column(index: usize, what: &str, text: &str) -> rusqlite::Error {
    let message = format!("stored {what} is not valid: {text:?}");
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, message.into())
}

/// Timestamps are stored as integer microseconds since the Unix epoch (UTC).
fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

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

/// Now, at the microsecond precision the store keeps.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    // invariant: a whole number of microseconds is always a valid nanosecond value.
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// Writes `text` to `path` readable by the owner only (mode 0600).
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn new_call(tenant: &str, n: usize) -> NewCall {
        let mut vars = Map::new();
        vars.insert("n".to_owned(), Value::from(n));
        NewCall {
            tenant: tenant.to_owned(),
            to: format!("sip:callee{n}@127.0.0.1"),
            target_uri: format!("sip:callee{n}@127.0.0.1"),
            from: None,
            url: "http://127.0.0.1/app.vxml".to_owned(),
            vars,
            status_callback: None,
            ring_timeout_secs: Some(15),
            ..NewCall::default()
        }
    }

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store =
            Store::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("open: {e}"));
        (dir, store)
    }

    async fn insert(store: &Store, tenant: &str, n: usize) -> CallRecord {
        store
            .insert_call(new_call(tenant, n))
            .await
            .unwrap_or_else(|e| panic!("insert: {e}"))
    }

    #[tokio::test]
    async fn insert_then_get_returns_the_same_record() {
        let (_dir, store) = open_temp();
        let record = insert(&store, "acme", 1).await;
        assert_eq!(record.status, CallStatus::Queued);
        assert!(
            record.id.starts_with("call_") && record.id.len() == 31,
            "{}",
            record.id
        );
        let got = store.get_call("acme", &record.id).await.ok().flatten();
        assert_eq!(got.as_ref(), Some(&record));
        let by_rowid = store.get_call_by_rowid(record.rowid).await.ok().flatten();
        assert_eq!(by_rowid, Some(record.clone()));
        // Another tenant cannot see it.
        assert_eq!(store.get_call("other", &record.id).await.ok(), Some(None));
    }

    #[tokio::test]
    async fn list_is_newest_first_with_pagination_and_filter() {
        let (_dir, store) = open_temp();
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(insert(&store, "acme", n).await.id);
        }
        insert(&store, "other", 9).await;
        let page1 = store
            .list_calls("acme", None, 2, None)
            .await
            .unwrap_or_default();
        let page1_ids: Vec<_> = page1.iter().map(|r| r.id.clone()).collect();
        assert_eq!(page1_ids, vec![ids[4].clone(), ids[3].clone()]);
        let page2 = store
            .list_calls("acme", None, 2, Some(ids[3].clone()))
            .await
            .unwrap_or_default();
        let page2_ids: Vec<_> = page2.iter().map(|r| r.id.clone()).collect();
        assert_eq!(page2_ids, vec![ids[2].clone(), ids[1].clone()]);

        store.claim_queued(2).await.unwrap_or_default(); // ids[0], ids[1] → dialing
        let dialing = store
            .list_calls("acme", Some(CallStatus::Dialing), 10, None)
            .await;
        let dialing: Vec<_> = dialing
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(dialing, vec![ids[1].clone(), ids[0].clone()]);
        let queued = store
            .list_calls("acme", Some(CallStatus::Queued), 10, None)
            .await;
        assert_eq!(queued.map(|v| v.len()).ok(), Some(3));

        let bad = store
            .list_calls("acme", None, 2, Some("call_nope".to_owned()))
            .await;
        assert_eq!(bad.err().map(|e| e.code()), Some("invalid_query"));
        // A cursor from another tenant is not accepted either.
        let foreign = store
            .list_calls("other", None, 2, Some(ids[0].clone()))
            .await;
        assert!(foreign.is_err());
    }

    #[tokio::test]
    async fn claim_takes_oldest_first_and_only_once() {
        let (_dir, store) = open_temp();
        let mut rowids = Vec::new();
        for n in 0..5 {
            rowids.push(insert(&store, "acme", n).await.rowid);
        }
        let first = store.claim_queued(3).await.unwrap_or_default();
        assert_eq!(
            first.iter().map(|r| r.rowid).collect::<Vec<_>>(),
            rowids[..3].to_vec()
        );
        assert!(
            first
                .iter()
                .all(|r| r.status == CallStatus::Dialing && r.dialed_at.is_some())
        );
        let second = store.claim_queued(10).await.unwrap_or_default();
        assert_eq!(
            second.iter().map(|r| r.rowid).collect::<Vec<_>>(),
            rowids[3..].to_vec()
        );
        assert_eq!(store.claim_queued(10).await.map(|v| v.len()).ok(), Some(0));
    }

    #[tokio::test]
    async fn update_changes_only_given_fields() {
        let (_dir, store) = open_temp();
        let record = insert(&store, "acme", 1).await;
        let answered = now();
        let update = CallUpdate {
            status: Some(CallStatus::InProgress),
            answered_at: Some(answered),
            sip_status: Some(200),
            ..CallUpdate::default()
        };
        let updated = store
            .update_call(record.rowid, update)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(updated.status, CallStatus::InProgress);
        assert_eq!(updated.answered_at, Some(answered));
        assert_eq!(updated.sip_status, Some(200));
        let result = serde_json::json!({"pin": "1234"});
        let update = CallUpdate {
            status: Some(CallStatus::Completed),
            result: Some(result.clone()),
            disposition: Some("hangup".to_owned()),
            ..CallUpdate::default()
        };
        let done = store
            .update_call(record.rowid, update)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.status, CallStatus::Completed);
        assert_eq!(done.sip_status, Some(200), "left as it was");
        assert_eq!(done.answered_at, Some(answered), "left as it was");
        assert_eq!(done.result, Some(result));
        assert_eq!(done.url, record.url);
        let missing = store
            .update_call(record.rowid + 100, CallUpdate::default())
            .await;
        assert_eq!(missing.err().map(|e| e.code()), Some("not_found"));
    }

    #[tokio::test]
    async fn cancel_only_touches_queued_calls() {
        let (_dir, store) = open_temp();
        let queued = insert(&store, "acme", 1).await;
        let live = insert(&store, "acme", 2).await;
        store
            .update_call(
                live.rowid,
                CallUpdate {
                    status: Some(CallStatus::Ringing),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let canceled = store
            .cancel_if_queued("acme", &queued.id)
            .await
            .ok()
            .flatten();
        assert_eq!(
            canceled.as_ref().map(|r| r.status),
            Some(CallStatus::Canceled)
        );
        assert!(canceled.is_some_and(|r| r.ended_at.is_some()));
        let still = store
            .cancel_if_queued("acme", &live.id)
            .await
            .ok()
            .flatten();
        assert_eq!(still.map(|r| r.status), Some(CallStatus::Ringing));
        assert_eq!(
            store.cancel_if_queued("other", &queued.id).await.ok(),
            Some(None)
        );
    }

    #[tokio::test]
    async fn reopen_recovers_interrupted_calls_without_redialling() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("outdial.sqlite");
        let (queued, claimed) = {
            let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
            let queued = insert(&store, "acme", 1).await;
            insert(&store, "acme", 2).await;
            let claimed = store.claim_queued(1).await.unwrap_or_default();
            (queued, claimed)
        };
        assert_eq!(claimed.len(), 1);
        let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.recover_interrupted().await.ok(), Some(1));
        let failed = store.get_call("acme", &queued.id).await.ok().flatten();
        assert_eq!(failed.as_ref().map(|r| r.status), Some(CallStatus::Failed));
        assert_eq!(
            failed.and_then(|r| r.reason).as_deref(),
            Some(INTERRUPTED_REASON)
        );
        // The call that was never claimed is still waiting, and is the only one claimable.
        let next = store.claim_queued(10).await.unwrap_or_default();
        assert_eq!(next.len(), 1);
        assert_ne!(next.first().map(|r| r.rowid), Some(queued.rowid));
        assert_eq!(
            store.recover_interrupted().await.ok(),
            Some(1),
            "the newly claimed one"
        );
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_all_survive_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("outdial.sqlite");
        let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let before = store.commit_count();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200 {
            let store = store.clone();
            tasks.spawn(async move { store.insert_call(new_call("acme", n)).await });
        }
        let mut acknowledged = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(record)) => acknowledged.push(record.id),
                other => panic!("insert failed: {other:?}"),
            }
        }
        assert_eq!(acknowledged.len(), 200);
        let commits = store.commit_count() - before;
        assert!(
            commits < 50,
            "200 inserts took {commits} commits: no group commit"
        );
        drop(store);

        let reopened = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let all = reopened
            .list_calls("acme", None, 1000, None)
            .await
            .unwrap_or_default();
        let mut stored: Vec<_> = all.into_iter().map(|r| r.id).collect();
        stored.sort();
        acknowledged.sort();
        assert_eq!(stored, acknowledged);
    }

    #[tokio::test]
    async fn dev_tenant_key_is_created_once_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, store) = open_temp();
        let key = store
            .ensure_dev_tenant(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(key.starts_with(auth::DEV_KEY_PREFIX));
        let key_file = dir.path().join(DEV_KEY_FILE);
        let mode = std::fs::metadata(&key_file)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        assert_eq!(
            store.api_key_tenant(&key).await.ok().flatten().as_deref(),
            Some(DEV_TENANT)
        );
        assert_eq!(store.api_key_tenant("od_dev_wrong").await.ok(), Some(None));

        // A second start, even with a fresh database, reuses the key from the file.
        drop(store);
        let _ = std::fs::remove_file(dir.path().join("outdial.sqlite"));
        let store =
            Store::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.api_key_tenant(&key).await.ok(), Some(None));
        let again = store
            .ensure_dev_tenant(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, key);
        assert_eq!(
            store.api_key_tenant(&key).await.ok().flatten().as_deref(),
            Some(DEV_TENANT)
        );
        let secret_file = std::fs::read_to_string(dir.path().join(DEV_WEBHOOK_SECRET_FILE));
        let secret = store
            .tenant_webhook_secret(DEV_TENANT)
            .await
            .unwrap_or_default();
        assert_eq!(secret_file.ok().map(|s| s.trim().to_owned()), Some(secret));
    }

    #[tokio::test]
    async fn webhook_secret_is_stable_per_tenant() {
        let (_dir, store) = open_temp();
        let a = store
            .tenant_webhook_secret("acme")
            .await
            .unwrap_or_default();
        let again = store
            .tenant_webhook_secret("acme")
            .await
            .unwrap_or_default();
        let b = store
            .tenant_webhook_secret("other")
            .await
            .unwrap_or_default();
        assert!(a.starts_with(auth::WEBHOOK_SECRET_PREFIX));
        assert_eq!(a, again);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn failing_job_does_not_undo_its_batch_neighbours() {
        let (_dir, store) = open_temp();
        // Two jobs sent together: one fails after writing, one succeeds.
        let failing = store.run(|conn| -> Result<(), Error> {
            conn.execute_batch("INSERT INTO tenants VALUES ('ghost', 's', 0)")?;
            Err(Error::Store("deliberate".to_owned()))
        });
        let good = store.tenant_webhook_secret("real");
        let (failing, good) = tokio::join!(failing, good);
        assert!(failing.is_err() && good.is_ok());
        let ghosts = store
            .run(|conn| {
                Ok(
                    conn.query_row("SELECT COUNT(*) FROM tenants WHERE id = 'ghost'", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .await;
        assert_eq!(ghosts.ok(), Some(0));
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("outdial.sqlite");
        drop(Store::open(&path));
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let _ = conn.execute("INSERT INTO schema_version VALUES (99)", []);
        drop(conn);
        let err = Store::open(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("schema version 99"), "{err}");
    }
}
