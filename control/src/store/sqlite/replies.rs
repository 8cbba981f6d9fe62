//! The reply-mail outbox: rows queued by the e-mail intake, sent and deleted by the reply
//! worker, rescheduled on failure and kept as dead after the last try.

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::calls::{micros, truncate};
use crate::store::{NewReply, ReplyItem, StoreError};

pub(super) fn enqueue(
    conn: &Connection,
    reply: &NewReply,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let at = micros(truncate(now));
    conn.prepare_cached(
        "INSERT INTO mail_outbox (tenant, to_addr, subject, in_reply_to, body, created_at, \
         next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![
        reply.tenant,
        reply.to,
        reply.subject,
        reply.in_reply_to,
        reply.body,
        at
    ])?;
    Ok(())
}

pub(super) fn due(
    conn: &Connection,
    now: OffsetDateTime,
    limit: u32,
) -> Result<Vec<ReplyItem>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT seq, tenant, to_addr, subject, in_reply_to, body, tries FROM mail_outbox \
             WHERE dead_at IS NULL AND next_at <= ?1 ORDER BY next_at, seq LIMIT ?2",
        )?
        .query_map(params![micros(now), limit], |row| {
            Ok(ReplyItem {
                seq: row.get(0)?,
                reply: NewReply {
                    tenant: row.get(1)?,
                    to: row.get(2)?,
                    subject: row.get(3)?,
                    in_reply_to: row.get(4)?,
                    body: row.get(5)?,
                },
                tries: row.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn sent(conn: &Connection, seq: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM mail_outbox WHERE seq = ?1")?
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
    let (next_at, dead_at) = match retry_at {
        Some(at) => (micros(truncate(at)), None),
        None => (micros(truncate(now)), Some(micros(truncate(now)))),
    };
    conn.prepare_cached(
        "UPDATE mail_outbox SET tries = tries + 1, last_error = ?2, next_at = ?3, dead_at = ?4 \
         WHERE seq = ?1",
    )?
    .execute(params![seq, error, next_at, dead_at])?;
    Ok(())
}
