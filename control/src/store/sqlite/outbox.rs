//! The webhook outbox: due rows for the delivery worker, their outcome, dead letters.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use time::OffsetDateTime;

use super::calls::{micros, truncate};
use super::time_from;
use crate::store::{DeadLetter, OutboxItem, StoreError};

pub(super) fn due(
    conn: &Connection,
    now: OffsetDateTime,
    limit: u32,
    busy: &[i64],
) -> Result<Vec<OutboxItem>, StoreError> {
    // The busy rows are few (deliveries in flight); fetch a little more and skip them here.
    let extra = u32::try_from(busy.len()).unwrap_or(u32::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT o.seq, o.msg_id, o.call_id, o.url, o.body, t.webhook_secret, o.tries, o.tenant \
         FROM outbox o JOIN tenants t ON t.id = o.tenant \
         WHERE o.dead_at IS NULL AND o.next_at <= ?1 ORDER BY o.next_at, o.seq LIMIT ?2",
    )?;
    let rows = statement.query_map(params![micros(now), limit.saturating_add(extra)], |row| {
        Ok(OutboxItem {
            seq: row.get(0)?,
            msg_id: row.get(1)?,
            call_id: row.get(2)?,
            url: row.get(3)?,
            body: row.get(4)?,
            secret: row.get(5)?,
            tries: row.get(6)?,
            tenant: row.get(7)?,
        })
    })?;
    let mut items = Vec::new();
    for item in rows {
        let item = item?;
        if !busy.contains(&item.seq) && items.len() < limit as usize {
            items.push(item);
        }
    }
    Ok(items)
}

pub(super) fn next_due(conn: &Connection) -> Result<Option<OffsetDateTime>, StoreError> {
    let next = conn
        .prepare_cached("SELECT MIN(next_at) FROM outbox WHERE dead_at IS NULL")?
        .query_row([], |row| time_from(row, 0))?;
    Ok(next)
}

pub(super) fn delivered(conn: &Connection, seq: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

pub(super) fn failed(
    conn: &Connection,
    seq: i64,
    error: &str,
    retry_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let dead_at = retry_at.is_none().then(|| micros(truncate(now)));
    conn.prepare_cached(
        "UPDATE outbox SET tries = tries + 1, last_error = ?2, next_at = ?3, dead_at = ?4 \
         WHERE seq = ?1",
    )?
    .execute(params![
        seq,
        error,
        retry_at.map(|t| micros(truncate(t))),
        dead_at
    ])?;
    Ok(())
}

const DEAD_COLUMNS: &str = "msg_id, call_id, url, tries, last_error, created_at, dead_at, body";

fn dead_from_row(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let body: String = row.get(7)?;
    Ok(DeadLetter {
        id: row.get(0)?,
        call_id: row.get(1)?,
        url: row.get(2)?,
        tries: row.get(3)?,
        last_error: row.get(4)?,
        created_at: time_from(row, 5)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        dead_at: time_from(row, 6)?,
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    })
}

pub(super) fn dead_letters(
    conn: &Connection,
    tenant: &str,
    limit: u32,
    before: Option<&str>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let below = match before {
        None => i64::MAX,
        Some(cursor) => conn
            .prepare_cached(
                "SELECT seq FROM outbox WHERE tenant = ?1 AND msg_id = ?2 AND dead_at IS NOT NULL",
            )?
            .query_row(params![tenant, cursor], |row| row.get(0))
            .optional()?
            .ok_or_else(|| StoreError::InvalidCursor(cursor.to_owned()))?,
    };
    let sql = format!(
        "SELECT {DEAD_COLUMNS} FROM outbox WHERE tenant = ?1 AND dead_at IS NOT NULL \
         AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(params![tenant, below, limit], dead_from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn redrive(
    conn: &Connection,
    tenant: &str,
    id: &str,
    now: OffsetDateTime,
) -> Result<DeadLetter, StoreError> {
    let sql = format!(
        "UPDATE outbox SET dead_at = NULL, tries = 0, next_at = ?3 \
         WHERE tenant = ?1 AND msg_id = ?2 AND dead_at IS NOT NULL RETURNING {DEAD_COLUMNS}"
    );
    conn.prepare_cached(&sql)?
        .query_row(params![tenant, id, micros(truncate(now))], dead_from_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "dead letter",
            id: id.to_owned(),
        })
}
