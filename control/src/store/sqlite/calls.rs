//! Calls, attempts, status events, and the outbox rows and CDRs written with them.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{bad_column, time_from};
use crate::model::{
    CallRecord, CallStatus, CallbackEvents, Direction, MachineDetection, NewCall, Next, RetryOn,
    RetryPolicy,
};
use crate::store::{
    AnsweredBy, AttemptEnd, CallEvent, Claimed, Created, IDEMPOTENCY_TTL, INTERRUPTED_REASON,
    IdempotencyKey, ListQuery, PendingCall, PolicyNote, StoreError, Transition, transition_allowed,
};

/// The columns [`record_from_row`] reads, in order.
pub(super) const CALL_COLUMNS: &str = "id, tenant, status, to_addr, target_uri, from_addr, url, \
    vars, status_callback, ring_timeout_secs, created_at, dialed_at, answered_at, ended_at, \
    sip_status, disposition, reason, result, due_at, not_after, priority, max_attempts, \
    retry_delay_secs, retry_on, attempts, sip_call_id, callback_events, machine_detection, \
    answered_by, direction, early_media";

/// Timestamps are stored as integer microseconds since the Unix epoch (UTC).
pub(crate) use crate::store::unix_micros as micros;

/// `t` at the microsecond precision the store keeps.
pub(crate) fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    // invariant: a whole number of microseconds is always a valid nanosecond value.
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// A random public id: `prefix` + 26 base32 characters (130 bits).
pub(super) fn random_id(prefix: &str) -> Result<String, StoreError> {
    let tail = crate::auth::random_base32(26)
        .map_err(|e| StoreError::Unavailable(format!("no randomness for an id: {e}")))?;
    Ok(format!("{prefix}{tail}"))
}

/// `prefix` and an id that sorts by `now` ([`crate::auth::time_ordered_base32`]): for rows
/// whose ids are indexed (calls, and the attempts and events keyed by a call's id).
pub(super) fn time_ordered_id(prefix: &str, now: OffsetDateTime) -> Result<String, StoreError> {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let tail = crate::auth::time_ordered_base32(millis)
        .map_err(|e| StoreError::Unavailable(format!("no randomness for an id: {e}")))?;
    Ok(format!("{prefix}{tail}"))
}

/// `None` (every status change, the default and what calls stored before the column had).
fn callback_events_text(events: CallbackEvents) -> Option<String> {
    (!events.is_all()).then(|| events.to_text())
}

fn retry_on_text(on: &[RetryOn]) -> String {
    on.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

pub(super) fn create(
    conn: &Connection,
    tenant: &str,
    calls: Vec<NewCall>,
    idempotency: Option<IdempotencyKey>,
    now: OffsetDateTime,
) -> Result<Created, StoreError> {
    match check_create(conn, tenant, idempotency.as_ref(), now)? {
        Some(replayed) => Ok(replayed),
        None => insert_calls(conn, tenant, calls, idempotency, now),
    }
}

/// [`create`] for a writer job without a savepoint (`SqliteStore::write_unguarded`): its
/// refusals (an unknown tenant, an idempotency key reused with another body) and replays come
/// before any write but the removal of expired idempotency keys, which stands either way;
/// only a failure of the inserts after them (`Err`) spoils the transaction.
pub(super) fn create_unguarded(
    conn: &Connection,
    tenant: &str,
    calls: Vec<NewCall>,
    idempotency: Option<IdempotencyKey>,
    now: OffsetDateTime,
) -> super::Unguarded<Created> {
    match check_create(conn, tenant, idempotency.as_ref(), now) {
        Err(refused) => Ok(Err(refused)),
        Ok(Some(replayed)) => Ok(Ok(replayed)),
        Ok(None) => insert_calls(conn, tenant, calls, idempotency, now).map(Ok),
    }
}

/// What a create checks before writing: the tenant exists, and an idempotency key is new
/// (`None`) or repeats the same request (its first answer, `Some`).
fn check_create(
    conn: &Connection,
    tenant: &str,
    idempotency: Option<&IdempotencyKey>,
    now: OffsetDateTime,
) -> Result<Option<Created>, StoreError> {
    let now = truncate(now);
    let known: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    if known.is_none() {
        return Err(StoreError::NotFound {
            what: "tenant",
            id: tenant.to_owned(),
        });
    }
    if let Some(idem) = idempotency {
        conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
            .execute([micros(now - IDEMPOTENCY_TTL)])?;
        let earlier: Option<(String, String)> = conn
            .prepare_cached(
                "SELECT request_sha256, call_ids FROM idempotency_keys \
                 WHERE tenant = ?1 AND key = ?2",
            )?
            .query_row(params![tenant, idem.key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((hash, ids)) = earlier {
            if hash != idem.request_sha256 {
                return Err(StoreError::IdempotencyConflict(idem.key.clone()));
            }
            let ids: Vec<String> = serde_json::from_str(&ids).map_err(|e| {
                StoreError::Unavailable(format!("stored idempotency answer is not valid: {e}"))
            })?;
            let records = ids
                .iter()
                .map(|id| {
                    select(conn, Some(tenant), id)?.ok_or_else(|| StoreError::NotFound {
                        what: "call",
                        id: id.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Some(Created {
                records,
                replayed: true,
            }));
        }
    }
    Ok(None)
}

/// Stores `calls` as queued, and the idempotency key. A call's first event (`queued`,
/// `created`) is not stored: [`events`] makes it from the call's row. Two B-tree inserts of
/// seven per call, and a statement, fewer for every call created.
fn insert_calls(
    conn: &Connection,
    tenant: &str,
    calls: Vec<NewCall>,
    idempotency: Option<IdempotencyKey>,
    now: OffsetDateTime,
) -> Result<Created, StoreError> {
    let now = truncate(now);
    let mut insert = conn.prepare_cached(
        "INSERT INTO calls (id, tenant, status, to_addr, target_uri, from_addr, url, vars, \
         status_callback, ring_timeout_secs, created_at, due_at, not_after, priority, \
         max_attempts, retry_delay_secs, retry_on, callback_events, machine_detection, direction, \
         early_media) \
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
         ?17, ?18, ?19, ?20)",
    )?;
    let mut records = Vec::with_capacity(calls.len());
    for new in calls {
        let id = time_ordered_id("call_", now)?;
        let vars = Value::Object(new.vars.clone()).to_string();
        let ring_timeout = new
            .ring_timeout_secs
            .map(i64::try_from)
            .transpose()
            .map_err(|_| StoreError::Invalid("ring timeout does not fit in the store".into()))?;
        let delay = i64::try_from(new.retry.delay_secs)
            .map_err(|_| StoreError::Invalid("retry delay does not fit in the store".into()))?;
        let due_at = truncate(new.at.unwrap_or(now));
        let not_after = new.not_after.map(truncate);
        insert.execute(params![
            id,
            tenant,
            new.to,
            new.target_uri,
            new.from,
            new.url,
            vars,
            new.status_callback,
            ring_timeout,
            micros(now),
            micros(due_at),
            not_after.map(micros),
            new.priority,
            new.retry.max_attempts,
            delay,
            retry_on_text(&new.retry.on),
            callback_events_text(new.status_callback_events),
            (!new.machine_detection.is_off()).then_some(new.machine_detection.as_str()),
            (new.direction == Direction::Inbound).then_some("inbound"),
            new.early_media,
        ])?;
        records.push(CallRecord {
            id,
            tenant: tenant.to_owned(),
            status: CallStatus::Queued,
            to: new.to,
            target_uri: new.target_uri,
            from: new.from,
            url: new.url,
            vars: new.vars,
            status_callback: new.status_callback,
            status_callback_events: new.status_callback_events,
            machine_detection: new.machine_detection,
            early_media: new.early_media,
            answered_by: None,
            direction: new.direction,
            ring_timeout_secs: new.ring_timeout_secs,
            created_at: now,
            dialed_at: None,
            answered_at: None,
            ended_at: None,
            sip_status: None,
            disposition: None,
            reason: None,
            result: None,
            due_at,
            not_after,
            priority: new.priority,
            retry: new.retry,
            attempts: 0,
            sip_call_id: None,
        });
    }
    if let Some(idem) = idempotency {
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let ids = serde_json::to_string(&ids)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode call ids: {e}")))?;
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (tenant, key, request_sha256, call_ids, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            tenant,
            idem.key,
            idem.request_sha256,
            ids,
            micros(now)
        ])?;
    }
    Ok(Created {
        records,
        replayed: false,
    })
}

/// The call `id` (of `tenant`, when given).
pub(super) fn select(
    conn: &Connection,
    tenant: Option<&str>,
    id: &str,
) -> Result<Option<CallRecord>, StoreError> {
    let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1");
    let record = conn
        .prepare_cached(&sql)?
        .query_row([id], record_from_row)
        .optional()?;
    Ok(record.filter(|r| tenant.is_none_or(|t| t == r.tenant)))
}

/// A call's status and attempt count: what a status change checks before it writes (the
/// whole record, with its variables to parse, comes back from the write itself).
fn status_of(conn: &Connection, id: &str) -> Result<(CallStatus, u32), StoreError> {
    let found = conn
        .prepare_cached("SELECT status, attempts FROM calls WHERE id = ?1")?
        .query_row([id], |row| {
            let status: String = row.get(0)?;
            let status =
                CallStatus::parse(&status).ok_or_else(|| bad_column(0, "call status", &status))?;
            Ok((status, row.get(1)?))
        })
        .optional()?;
    found.ok_or_else(|| StoreError::NotFound {
        what: "call",
        id: id.to_owned(),
    })
}

fn require(conn: &Connection, id: &str) -> Result<CallRecord, StoreError> {
    select(conn, None, id)?.ok_or_else(|| StoreError::NotFound {
        what: "call",
        id: id.to_owned(),
    })
}

pub(super) fn list(
    conn: &Connection,
    tenant: &str,
    query: &ListQuery,
) -> Result<Vec<CallRecord>, StoreError> {
    let below = match &query.before {
        None => i64::MAX,
        Some(cursor) => conn
            .prepare_cached("SELECT seq FROM calls WHERE tenant = ?1 AND id = ?2")?
            .query_row(params![tenant, cursor], |row| row.get(0))
            .optional()?
            .ok_or_else(|| StoreError::InvalidCursor(cursor.clone()))?,
    };
    let sql = format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE tenant = ?1 AND seq < ?2 \
         AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR to_addr = ?4) \
         AND (?5 IS NULL OR created_at >= ?5) AND (?6 IS NULL OR created_at < ?6) \
         ORDER BY seq DESC LIMIT ?7"
    );
    let records = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                tenant,
                below,
                query.status.map(CallStatus::as_str),
                query.to,
                query.created_after.map(micros),
                query.created_before.map(micros),
                query.limit
            ],
            record_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}

pub(super) fn pending(conn: &Connection) -> Result<Vec<PendingCall>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, tenant, due_at, priority, not_after, to_addr FROM calls \
         WHERE status = 'queued' AND claimed_by IS NULL ORDER BY due_at",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(PendingCall {
            id: row.get(0)?,
            tenant: row.get(1)?,
            due_at: time_from(row, 2)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            priority: row.get(3)?,
            not_after: time_from(row, 4)?,
            to: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn claim(
    conn: &Connection,
    node: &str,
    ids: &[String],
    lease_until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, StoreError> {
    let now = truncate(now);
    let sql = format!(
        "UPDATE calls SET status = 'dialing', claimed_by = ?2, lease_until = ?3, \
         attempts = attempts + 1, dialed_at = ?4, answered_at = NULL, sip_call_id = NULL, \
         answered_by = NULL \
         WHERE id = ?1 AND status = 'queued' AND claimed_by IS NULL \
         AND (not_after IS NULL OR not_after >= ?4) RETURNING {CALL_COLUMNS}"
    );
    let mut update = conn.prepare_cached(&sql)?;
    let mut attempt_row = conn.prepare_cached(
        "INSERT OR REPLACE INTO attempts (call_id, attempt, node, dialed_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(record) = update
            .query_row(
                params![id, node, micros(lease_until), micros(now)],
                record_from_row,
            )
            .optional()?
        else {
            continue;
        };
        let attempt = record.attempts;
        attempt_row.execute(params![id, attempt, node, micros(now)])?;
        add_event(conn, id, Some(attempt), CallStatus::Dialing, now, None)?;
        enqueue_webhook(conn, &record, now)?;
        claimed.push(Claimed { record, attempt });
    }
    Ok(claimed)
}

pub(super) fn renew_lease(
    conn: &Connection,
    node: &str,
    until: OffsetDateTime,
) -> Result<u64, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE calls SET lease_until = ?2 WHERE claimed_by = ?1 \
             AND status IN ('dialing', 'ringing', 'in-progress')",
        )?
        .execute(params![node, micros(until)])?;
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// Ends a queued, unclaimed call with `status` (`expired` or `canceled`) and `reason`.
fn end_queued(
    conn: &Connection,
    id: &str,
    status: CallStatus,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Option<CallRecord>, StoreError> {
    let sql = format!(
        "UPDATE calls SET status = ?2, ended_at = ?3, reason = ?4 \
         WHERE id = ?1 AND status = 'queued' AND claimed_by IS NULL RETURNING {CALL_COLUMNS}"
    );
    let ended = conn
        .prepare_cached(&sql)?
        .query_row(
            params![id, status.as_str(), micros(now), reason],
            record_from_row,
        )
        .optional()?;
    match ended {
        Some(record) => {
            add_event(conn, id, None, status, now, Some(reason))?;
            enqueue_webhook(conn, &record, now)?;
            Ok(Some(record))
        }
        None => select(conn, None, id),
    }
}

/// Holds a queued call until `until` under a policy rule, with the rule in its history.
pub(super) fn defer(
    conn: &Connection,
    id: &str,
    until: OffsetDateTime,
    rule: &PolicyNote,
    now: OffsetDateTime,
) -> Result<Option<CallRecord>, StoreError> {
    let sql = format!(
        "UPDATE calls SET due_at = ?2 WHERE id = ?1 AND status = 'queued' AND claimed_by IS NULL \
         RETURNING {CALL_COLUMNS}"
    );
    let deferred = conn
        .prepare_cached(&sql)?
        .query_row(params![id, micros(truncate(until))], record_from_row)
        .optional()?;
    if deferred.is_some() {
        let cause = format!(
            "deferred until {}: {}",
            rfc3339(truncate(until)),
            rule.message
        );
        add_policy_event(conn, id, CallStatus::Queued, truncate(now), &cause, rule)?;
    }
    Ok(deferred)
}

/// Ends a queued call `refused` under a policy rule (opted out since it was accepted, ...).
pub(super) fn refuse(
    conn: &Connection,
    id: &str,
    rule: &PolicyNote,
    now: OffsetDateTime,
) -> Result<Option<CallRecord>, StoreError> {
    let now = truncate(now);
    let reason = format!("refused: {}", rule.message);
    let sql = format!(
        "UPDATE calls SET status = 'refused', ended_at = ?2, reason = ?3 \
         WHERE id = ?1 AND status = 'queued' AND claimed_by IS NULL RETURNING {CALL_COLUMNS}"
    );
    let ended = conn
        .prepare_cached(&sql)?
        .query_row(params![id, micros(now), reason], record_from_row)
        .optional()?;
    if let Some(record) = &ended {
        add_policy_event(conn, id, CallStatus::Refused, now, &reason, rule)?;
        enqueue_webhook(conn, record, now)?;
    }
    Ok(ended)
}

fn add_policy_event(
    conn: &Connection,
    id: &str,
    status: CallStatus,
    at: OffsetDateTime,
    cause: &str,
    rule: &PolicyNote,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (call_id, status, at, cause, owner, rule) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, status.as_str(), micros(at), cause, rule.owner, rule.rule])?;
    Ok(())
}

pub(super) fn expire(
    conn: &Connection,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<CallRecord>, StoreError> {
    let now = truncate(now);
    let past: Option<bool> = conn
        .prepare_cached("SELECT not_after IS NOT NULL AND not_after < ?2 FROM calls WHERE id = ?1")?
        .query_row(params![id, micros(now)], |row| row.get(0))
        .optional()?;
    match past {
        None => Ok(None),
        Some(false) => select(conn, None, id),
        Some(true) => end_queued(
            conn,
            id,
            CallStatus::Expired,
            "expired: not placed before not_after",
            now,
        ),
    }
}

pub(super) fn cancel_queued(
    conn: &Connection,
    tenant: &str,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<CallRecord>, StoreError> {
    if select(conn, Some(tenant), id)?.is_none() {
        return Ok(None);
    }
    end_queued(
        conn,
        id,
        CallStatus::Canceled,
        "canceled through the API before dialing",
        truncate(now),
    )
}

pub(super) fn transition(
    conn: &Connection,
    id: &str,
    attempt: u32,
    transition: &Transition,
) -> Result<CallRecord, StoreError> {
    let (status, attempts) = status_of(conn, id)?;
    if attempts != attempt || !transition_allowed(status, transition.status) {
        // A late or repeated report (e.g. 180 after 200): nothing changes.
        return require(conn, id);
    }
    let at = truncate(transition.at);
    let answered = (transition.status == CallStatus::InProgress).then(|| micros(at));
    let sql = format!(
        "UPDATE calls SET status = ?2, answered_at = COALESCE(?3, answered_at), \
         sip_status = COALESCE(?4, sip_status) WHERE id = ?1 RETURNING {CALL_COLUMNS}"
    );
    let record = conn.prepare_cached(&sql)?.query_row(
        params![
            id,
            transition.status.as_str(),
            answered,
            transition.sip_status
        ],
        record_from_row,
    )?;
    let column = match transition.status {
        CallStatus::Ringing => "ringing_at",
        _ => "answered_at",
    };
    conn.prepare_cached(&format!(
        "UPDATE attempts SET {column} = COALESCE({column}, ?3) WHERE call_id = ?1 AND attempt = ?2"
    ))?
    .execute(params![id, attempt, micros(at)])?;
    add_event(
        conn,
        id,
        Some(attempt),
        transition.status,
        at,
        transition.cause.as_deref(),
    )?;
    enqueue_webhook(conn, &record, at)?;
    Ok(record)
}

/// Early media on attempt `attempt`: an event under the current status, while the call is
/// dialing or ringing on that attempt; nothing otherwise.
pub(super) fn record_early_media(
    conn: &Connection,
    id: &str,
    attempt: u32,
    at: OffsetDateTime,
    cause: &str,
) -> Result<(), StoreError> {
    let (status, attempts) = status_of(conn, id)?;
    if attempts != attempt || !matches!(status, CallStatus::Dialing | CallStatus::Ringing) {
        return Ok(());
    }
    add_event(conn, id, Some(attempt), status, truncate(at), Some(cause))
}

/// Who answered attempt `attempt`, as machine detection classified it: on the call, the
/// attempt (and so its CDR) and as an `in-progress` event naming the verdict. A late report for
/// an earlier attempt or an ended call changes nothing.
pub(super) fn record_answered_by(
    conn: &Connection,
    id: &str,
    attempt: u32,
    verdict: &AnsweredBy,
) -> Result<CallRecord, StoreError> {
    let (status, attempts) = status_of(conn, id)?;
    if attempts != attempt || status != CallStatus::InProgress {
        return require(conn, id);
    }
    let sql = format!("UPDATE calls SET answered_by = ?2 WHERE id = ?1 RETURNING {CALL_COLUMNS}");
    let record = conn
        .prepare_cached(&sql)?
        .query_row(params![id, verdict.answered_by], record_from_row)?;
    conn.prepare_cached(
        "UPDATE attempts SET answered_by = ?3, machine_decided_ms = ?4 \
         WHERE call_id = ?1 AND attempt = ?2",
    )?
    .execute(params![
        id,
        attempt,
        verdict.answered_by,
        verdict.decided_ms
    ])?;
    add_event(
        conn,
        id,
        Some(attempt),
        CallStatus::InProgress,
        truncate(verdict.at),
        Some(&verdict.cause),
    )?;
    Ok(record)
}

pub(super) fn store_result(conn: &Connection, id: &str, result: &Value) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE calls SET result = ?2 WHERE id = ?1")?
        .execute(params![id, result.to_string()])?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "call",
            id: id.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn finish_attempt(
    conn: &Connection,
    id: &str,
    attempt: u32,
    end: AttemptEnd,
    next: Next,
) -> Result<CallRecord, StoreError> {
    let (status, attempts) = status_of(conn, id)?;
    if status.is_final() || attempts != attempt {
        // Already ended (e.g. recovered by a restart): the first end stands.
        return require(conn, id);
    }
    let ended_at = truncate(end.ended_at);
    // The attempt row exists since the claim; an older call (schema v1) may lack it.
    conn.prepare_cached(
        "INSERT OR IGNORE INTO attempts (call_id, attempt, dialed_at) \
         SELECT id, ?2, dialed_at FROM calls WHERE id = ?1",
    )?
    .execute(params![id, attempt])?;
    conn.prepare_cached(
        "UPDATE attempts SET ended_at = ?3, sip_status = ?4, disposition = ?5, reason = ?6, \
         core = COALESCE(?7, core), sip_call_id = COALESCE(?8, sip_call_id), \
         media_sent = ?9, media_received = ?10, media_lost = ?11, media_jitter_us = ?12, \
         media_max_jitter_us = ?13, media_late_2ms = ?14, media_dropped_foreign = ?15, \
         media_rtt_us = ?16 \
         WHERE call_id = ?1 AND attempt = ?2",
    )?
    .execute(params![
        id,
        attempt,
        micros(ended_at),
        end.sip_status,
        end.status.as_str(),
        end.reason,
        end.core,
        end.sip_call_id,
        end.media.map(|m| sql_count(m.packets_sent)),
        end.media.map(|m| sql_count(m.packets_received)),
        end.media.map(|m| sql_count(m.packets_lost)),
        end.media.map(|m| sql_count(m.jitter_us)),
        end.media.map(|m| sql_count(m.max_jitter_us)),
        end.media.map(|m| sql_count(m.sent_late_2ms)),
        end.media.map(|m| sql_count(m.dropped_foreign)),
        end.media.and_then(|m| m.round_trip_us).map(sql_count),
    ])?;
    write_cdr(conn, id, attempt)?;
    let result = end.result.as_ref().map(Value::to_string);
    let record = match next {
        Next::Final { status } => {
            let sql = format!(
                "UPDATE calls SET status = ?2, ended_at = ?3, sip_status = COALESCE(?4, sip_status), \
                 disposition = ?5, reason = ?6, result = COALESCE(?7, result), \
                 sip_call_id = COALESCE(?8, sip_call_id), claimed_by = NULL, lease_until = NULL \
                 WHERE id = ?1 RETURNING {CALL_COLUMNS}"
            );
            let record = conn.prepare_cached(&sql)?.query_row(
                params![
                    id,
                    status.as_str(),
                    micros(ended_at),
                    end.sip_status,
                    end.disposition,
                    end.reason,
                    result,
                    end.sip_call_id,
                ],
                record_from_row,
            )?;
            add_event(conn, id, Some(attempt), status, ended_at, Some(&end.reason))?;
            record
        }
        Next::Retry { at } => {
            let at = truncate(at);
            let sql = format!(
                "UPDATE calls SET status = 'queued', due_at = ?2, sip_status = ?3, \
                 disposition = ?4, reason = ?5, result = COALESCE(?6, result), \
                 sip_call_id = COALESCE(?7, sip_call_id), claimed_by = NULL, lease_until = NULL \
                 WHERE id = ?1 RETURNING {CALL_COLUMNS}"
            );
            let record = conn.prepare_cached(&sql)?.query_row(
                params![
                    id,
                    micros(at),
                    end.sip_status,
                    end.disposition,
                    end.reason,
                    result,
                    end.sip_call_id,
                ],
                record_from_row,
            )?;
            add_event(
                conn,
                id,
                Some(attempt),
                end.status,
                ended_at,
                Some(&end.reason),
            )?;
            let cause = format!("attempt {} due at {}", attempt + 1, rfc3339(at));
            add_event(conn, id, None, CallStatus::Queued, ended_at, Some(&cause))?;
            record
        }
    };
    enqueue_webhook(conn, &record, ended_at)?;
    Ok(record)
}

pub(super) fn recover_node(
    conn: &Connection,
    node: &str,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    // Calls of schema version 1 have no owner: the first node to start takes them.
    let ids: Vec<(String, u32)> = conn
        .prepare_cached(
            "SELECT id, attempts FROM calls WHERE status IN ('dialing', 'ringing', 'in-progress') \
             AND (claimed_by = ?1 OR claimed_by IS NULL)",
        )?
        .query_map([node], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, attempts) in &ids {
        let attempt = (*attempts).max(1);
        if *attempts == 0 {
            conn.prepare_cached("UPDATE calls SET attempts = 1 WHERE id = ?1")?
                .execute([id])?;
        }
        let end = AttemptEnd {
            media: None,
            status: CallStatus::Failed,
            ended_at: now,
            sip_status: None,
            disposition: None,
            reason: INTERRUPTED_REASON.to_owned(),
            core: None,
            sip_call_id: None,
            result: None,
        };
        let next = Next::Final {
            status: CallStatus::Failed,
        };
        finish_attempt(conn, id, attempt, end, next)?;
    }
    Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
}

pub(super) fn events(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<Option<Vec<CallEvent>>, StoreError> {
    let Some(call) = select(conn, Some(tenant), id)? else {
        return Ok(None);
    };
    let mut statement = conn.prepare_cached(
        "SELECT status, at, attempt, cause, owner, rule FROM events WHERE call_id = ?1 ORDER BY seq",
    )?;
    let rows = statement.query_map([id], |row| {
        let status: String = row.get(0)?;
        Ok(CallEvent {
            status: CallStatus::parse(&status)
                .ok_or_else(|| bad_column(0, "event status", &status))?,
            at: time_from(row, 1)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            attempt: row.get(2)?,
            cause: row.get(3)?,
            owner: row.get(4)?,
            rule: row.get(5)?,
        })
    })?;
    let mut events = vec![created_event(call.created_at)];
    for row in rows {
        events.push(row?);
    }
    Ok(Some(events))
}

/// Every call's first event, implied by its row rather than stored (see [`insert_calls`]).
fn created_event(created_at: OffsetDateTime) -> CallEvent {
    CallEvent {
        status: CallStatus::Queued,
        at: created_at,
        attempt: None,
        cause: Some("created".to_owned()),
        owner: None,
        rule: None,
    }
}

fn add_event(
    conn: &Connection,
    id: &str,
    attempt: Option<u32>,
    status: CallStatus,
    at: OffsetDateTime,
    cause: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (call_id, attempt, status, at, cause) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, attempt, status.as_str(), micros(at), cause])?;
    Ok(())
}

/// Puts the webhook for `record`'s current state in the outbox, due at once, if the call has
/// a `status_callback`.
fn enqueue_webhook(
    conn: &Connection,
    record: &CallRecord,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let Some(url) = &record.status_callback else {
        return Ok(());
    };
    if !record.status_callback_events.includes(record.status) {
        return Ok(());
    }
    let body = serde_json::to_string(record)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the call record: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO outbox (msg_id, tenant, call_id, url, body, created_at, next_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![
        random_id("msg_")?,
        record.tenant,
        record.id,
        url,
        body,
        micros(at),
    ])?;
    Ok(())
}

/// A counter as SQLite's signed 64-bit integer (saturating; no counter gets near 2^63).
fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The CDR of a closed attempt, from the call and the attempt rows.
fn write_cdr(conn: &Connection, id: &str, attempt: u32) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO cdrs (call_id, attempt, tenant, from_addr, to_addr, target_uri, \
         node, core, sip_call_id, created_at, dialed_at, ringing_at, answered_at, ended_at, \
         billable_secs, disposition, sip_status, reason, media_sent, media_received, \
         media_lost, media_jitter_us, media_max_jitter_us, media_late_2ms, \
         media_dropped_foreign, media_rtt_us, answered_by, machine_decided_ms) \
         SELECT c.id, a.attempt, c.tenant, c.from_addr, c.to_addr, c.target_uri, a.node, a.core, \
         a.sip_call_id, c.created_at, a.dialed_at, a.ringing_at, a.answered_at, a.ended_at, \
         CASE WHEN a.answered_at IS NULL OR a.ended_at <= a.answered_at THEN 0 \
              ELSE (a.ended_at - a.answered_at + 999999) / 1000000 END, \
         a.disposition, a.sip_status, a.reason, a.media_sent, a.media_received, a.media_lost, \
         a.media_jitter_us, a.media_max_jitter_us, a.media_late_2ms, a.media_dropped_foreign, \
         a.media_rtt_us, a.answered_by, a.machine_decided_ms \
         FROM calls c JOIN attempts a ON a.call_id = c.id WHERE c.id = ?1 AND a.attempt = ?2",
    )?
    .execute(params![id, attempt])?;
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(super) fn record_from_row(row: &Row<'_>) -> rusqlite::Result<CallRecord> {
    let status: String = row.get(2)?;
    let status = CallStatus::parse(&status).ok_or_else(|| bad_column(2, "call status", &status))?;
    let vars: String = row.get(7)?;
    let vars: Map<String, Value> =
        serde_json::from_str(&vars).map_err(|_| bad_column(7, "vars object", &vars))?;
    let result: Option<String> = row.get(17)?;
    let result = result
        .map(|text| serde_json::from_str(&text).map_err(|_| bad_column(17, "result", &text)))
        .transpose()?;
    let ring_timeout: Option<i64> = row.get(9)?;
    let retry_on: String = row.get(23)?;
    let on = retry_on
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| RetryOn::parse(s).ok_or_else(|| bad_column(23, "retry outcome", s)))
        .collect::<Result<Vec<_>, _>>()?;
    let delay: i64 = row.get(22)?;
    let events: Option<String> = row.get(26)?;
    let status_callback_events = match events {
        None => CallbackEvents::ALL,
        Some(text) => CallbackEvents::from_text(&text)
            .ok_or_else(|| bad_column(26, "callback events", &text))?,
    };
    let detection: Option<String> = row.get(27)?;
    let machine_detection = match detection {
        None => MachineDetection::Off,
        Some(text) => MachineDetection::parse(&text)
            .ok_or_else(|| bad_column(27, "machine detection", &text))?,
    };
    Ok(CallRecord {
        id: row.get(0)?,
        tenant: row.get(1)?,
        status,
        to: row.get(3)?,
        target_uri: row.get(4)?,
        from: row.get(5)?,
        url: row.get(6)?,
        vars,
        status_callback: row.get(8)?,
        ring_timeout_secs: ring_timeout.and_then(|t| u64::try_from(t).ok()),
        created_at: time_from(row, 10)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        dialed_at: time_from(row, 11)?,
        answered_at: time_from(row, 12)?,
        ended_at: time_from(row, 13)?,
        sip_status: row.get(14)?,
        disposition: row.get(15)?,
        reason: row.get(16)?,
        result,
        due_at: time_from(row, 18)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        not_after: time_from(row, 19)?,
        priority: row.get(20)?,
        retry: RetryPolicy {
            max_attempts: row.get(21)?,
            delay_secs: u64::try_from(delay).unwrap_or(0),
            on,
        },
        attempts: row.get(24)?,
        sip_call_id: row.get(25)?,
        machine_detection,
        early_media: row.get::<_, i64>(30)? != 0,
        answered_by: row.get(28)?,
        direction: match row.get::<_, Option<String>>(29)?.as_deref() {
            Some("inbound") => Direction::Inbound,
            _ => Direction::Outbound,
        },
        status_callback_events,
    })
}
