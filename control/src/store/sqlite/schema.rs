//! The schema, as a list of versioned migrations. The version is kept in the `schema_version`
//! table (as since version 1); each migration runs in its own transaction, so a database of any
//! older version is brought up to date in place at open.

use rusqlite::Connection;

use crate::store::StoreError;

/// Version 1: calls, tenants, keys (the first release).
pub const V1_SCHEMA: &str = r"
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
";

/// Version 2: scheduling and retry fields, claims with leases, attempts, status events, the
/// webhook outbox, CDRs, idempotency keys, tenant settings, key ids, scopes and revocation.
/// Keys of version 1 (the development key) get every scope; live calls of version 1 have no
/// owner and are recovered by the first node that starts.
const V2: &str = r"
ALTER TABLE tenants ADD COLUMN trunk TEXT;
ALTER TABLE tenants ADD COLUMN caller_id TEXT;
ALTER TABLE tenants ADD COLUMN max_concurrent INTEGER;
ALTER TABLE tenants ADD COLUMN disabled_at INTEGER;

ALTER TABLE api_keys ADD COLUMN id TEXT;
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN label TEXT;
ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;
UPDATE api_keys SET id = 'key_' || substr(key_sha256, 1, 16),
                    scopes = 'calls:create calls:read admin';
CREATE UNIQUE INDEX api_keys_by_id ON api_keys (id);

ALTER TABLE calls ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN not_after INTEGER;
ALTER TABLE calls ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
ALTER TABLE calls ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE calls ADD COLUMN retry_delay_secs INTEGER NOT NULL DEFAULT 60;
ALTER TABLE calls ADD COLUMN retry_on TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN sip_call_id TEXT;
ALTER TABLE calls ADD COLUMN claimed_by TEXT;
ALTER TABLE calls ADD COLUMN lease_until INTEGER;
UPDATE calls SET due_at = created_at;
UPDATE calls SET attempts = 1 WHERE dialed_at IS NOT NULL;
DROP INDEX calls_queued;
DROP INDEX calls_live;
CREATE INDEX calls_queued ON calls (due_at) WHERE status = 'queued';
CREATE INDEX calls_live ON calls (claimed_by) WHERE status IN ('dialing', 'ringing', 'in-progress');

CREATE TABLE attempts (
    call_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    node        TEXT,
    core        INTEGER,
    sip_call_id TEXT,
    dialed_at   INTEGER,
    ringing_at  INTEGER,
    answered_at INTEGER,
    ended_at    INTEGER,
    sip_status  INTEGER,
    disposition TEXT,
    reason      TEXT,
    PRIMARY KEY (call_id, attempt)
) WITHOUT ROWID;

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    attempt INTEGER,
    status  TEXT NOT NULL,
    at      INTEGER NOT NULL,
    cause   TEXT
);
CREATE INDEX events_by_call ON events (call_id, seq);

CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY,
    msg_id     TEXT NOT NULL UNIQUE,
    tenant     TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    url        TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_at    INTEGER,
    tries      INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead_at    INTEGER
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE dead_at IS NULL;
CREATE INDEX outbox_dead ON outbox (tenant, seq) WHERE dead_at IS NOT NULL;

CREATE TABLE cdrs (
    seq           INTEGER PRIMARY KEY,
    call_id       TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    tenant        TEXT NOT NULL,
    from_addr     TEXT,
    to_addr       TEXT NOT NULL,
    target_uri    TEXT NOT NULL,
    node          TEXT,
    core          INTEGER,
    sip_call_id   TEXT,
    created_at    INTEGER NOT NULL,
    dialed_at     INTEGER,
    ringing_at    INTEGER,
    answered_at   INTEGER,
    ended_at      INTEGER NOT NULL,
    billable_secs INTEGER NOT NULL,
    disposition   TEXT NOT NULL,
    sip_status    INTEGER,
    reason        TEXT,
    UNIQUE (call_id, attempt)
);
CREATE INDEX cdrs_by_end ON cdrs (ended_at, seq);
CREATE INDEX cdrs_by_tenant_end ON cdrs (tenant, ended_at, seq);

CREATE TABLE idempotency_keys (
    tenant         TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    call_ids       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);
";

/// Version 3: files that came with a request (an e-mail's attached application), served while
/// one of the calls that name them can still run; the outbox of reply mails.
const V3: &str = r"
ALTER TABLE calls ADD COLUMN files_id TEXT;
CREATE INDEX calls_by_files ON calls (files_id) WHERE files_id IS NOT NULL;

CREATE TABLE request_files (
    seq          INTEGER PRIMARY KEY,
    files_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (files_id, name)
);

CREATE TABLE mail_outbox (
    seq         INTEGER PRIMARY KEY,
    tenant      TEXT,
    to_addr     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    in_reply_to TEXT,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    tries       INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    dead_at     INTEGER
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_at) WHERE dead_at IS NULL;
";

/// Version 4: per-tenant request signing (the HMAC key and whether signatures are required).
const V4_SIGNING: &str = r"
CREATE TABLE tenant_signing (
    tenant     TEXT PRIMARY KEY REFERENCES tenants(id),
    secret     TEXT,
    required   INTEGER NOT NULL DEFAULT 0,
    rotated_at INTEGER
) WITHOUT ROWID;
";

/// Version 5: the policy engine's data — tenants' policies, callee records (opt-outs, zones,
/// hours, caps), calls by callee for the caps, and the rule behind each deferral or refusal.
const V5_POLICY: &str = r"
CREATE TABLE tenant_policies (
    tenant     TEXT PRIMARY KEY REFERENCES tenants(id),
    policy     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE callees (
    number     TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX calls_by_callee ON calls (to_addr, dialed_at) WHERE dialed_at IS NOT NULL;
ALTER TABLE events ADD COLUMN owner TEXT;
ALTER TABLE events ADD COLUMN rule TEXT;
";

/// Version 6: campaigns, and each call's campaign.
const V6_CAMPAIGNS: &str = r"
CREATE TABLE campaigns (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    tenant     TEXT NOT NULL REFERENCES tenants(id),
    status     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    accepted   INTEGER NOT NULL DEFAULT 0,
    skipped    INTEGER NOT NULL DEFAULT 0,
    invalid    INTEGER NOT NULL DEFAULT 0,
    next_due   INTEGER NOT NULL
);
CREATE INDEX campaigns_by_tenant ON campaigns (tenant, seq);
ALTER TABLE calls ADD COLUMN campaign_id TEXT;
CREATE INDEX calls_by_campaign ON calls (campaign_id, status) WHERE campaign_id IS NOT NULL;
";

/// Version 7: which status changes a call's webhook hears about (`NULL`: every one).
const V7_CALLBACK_EVENTS: &str = r"
ALTER TABLE calls ADD COLUMN callback_events TEXT;
";

/// Version 8: each attempt's media (`store::MediaSummary`), on the attempt and its CDR;
/// `NULL` for attempts without media (never answered) and those before this version.
const V8_MEDIA: &str = r"
ALTER TABLE attempts ADD COLUMN media_sent INTEGER;
ALTER TABLE attempts ADD COLUMN media_received INTEGER;
ALTER TABLE attempts ADD COLUMN media_lost INTEGER;
ALTER TABLE attempts ADD COLUMN media_jitter_us INTEGER;
ALTER TABLE attempts ADD COLUMN media_max_jitter_us INTEGER;
ALTER TABLE attempts ADD COLUMN media_late_2ms INTEGER;
ALTER TABLE attempts ADD COLUMN media_dropped_foreign INTEGER;
ALTER TABLE cdrs ADD COLUMN media_sent INTEGER;
ALTER TABLE cdrs ADD COLUMN media_received INTEGER;
ALTER TABLE cdrs ADD COLUMN media_lost INTEGER;
ALTER TABLE cdrs ADD COLUMN media_jitter_us INTEGER;
ALTER TABLE cdrs ADD COLUMN media_max_jitter_us INTEGER;
ALTER TABLE cdrs ADD COLUMN media_late_2ms INTEGER;
ALTER TABLE cdrs ADD COLUMN media_dropped_foreign INTEGER;
";

/// Version 9: answering-machine detection: the mode a call asked for (`NULL`: off), and who
/// answered each attempt with when the classifier decided (`NULL`: not classified).
const V9_MACHINE_DETECTION: &str = r"
ALTER TABLE calls ADD COLUMN machine_detection TEXT;
ALTER TABLE calls ADD COLUMN answered_by TEXT;
ALTER TABLE attempts ADD COLUMN answered_by TEXT;
ALTER TABLE attempts ADD COLUMN machine_decided_ms INTEGER;
ALTER TABLE cdrs ADD COLUMN answered_by TEXT;
ALTER TABLE cdrs ADD COLUMN machine_decided_ms INTEGER;
";

/// Version 10: each attempt's round-trip time from the callee's RTCP reports (`NULL`: none).
const V10_ROUND_TRIP: &str = r"
ALTER TABLE attempts ADD COLUMN media_rtt_us INTEGER;
ALTER TABLE cdrs ADD COLUMN media_rtt_us INTEGER;
";

/// Version 11: which way a call went (`NULL`: outbound, `'inbound'`: a caller's).
const V11_DIRECTION: &str = r"
ALTER TABLE calls ADD COLUMN direction TEXT;
";

/// Version 12: the application starts on early media (`1`) or at the answer (`0`).
const V12_EARLY_MEDIA: &str = r"
ALTER TABLE calls ADD COLUMN early_media INTEGER NOT NULL DEFAULT 0;
";

/// Version 13: a call's first event (`queued`, cause `created`) is implied by its row
/// (`calls::events`), no longer stored.
const V13_IMPLIED_CREATED_EVENT: &str = r"
DELETE FROM events WHERE status = 'queued' AND cause = 'created' AND attempt IS NULL;
";

/// Entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    V1_SCHEMA,
    V2,
    V3,
    V4_SIGNING,
    V5_POLICY,
    V6_CAMPAIGNS,
    V7_CALLBACK_EVENTS,
    V8_MEDIA,
    V9_MACHINE_DETECTION,
    V10_ROUND_TRIP,
    V11_DIRECTION,
    V12_EARLY_MEDIA,
    V13_IMPLIED_CREATED_EVENT,
];

/// The version this build writes.
pub const SCHEMA_VERSION: i64 = 13;

/// Brings the schema up to [`SCHEMA_VERSION`], one migration per transaction.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    let current = usize::try_from(current).unwrap_or(0);
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
                return Err(StoreError::Unavailable(format!(
                    "migration to schema version {}: {e}",
                    version + 1
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_number_of_migrations() {
        assert_eq!(usize::try_from(SCHEMA_VERSION).ok(), Some(MIGRATIONS.len()));
    }
}
