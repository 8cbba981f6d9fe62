//! Reading call detail records by time range, in cursor pages.

use rusqlite::{Connection, Row, params};
use time::OffsetDateTime;

use super::calls::micros;
use super::time_from;
use crate::store::{Cdr, CdrPage, CdrQuery, MediaSummary, StoreError};

/// Cursors are `cdr_` + the row's sequence number: opaque to clients, stable across pages.
fn parse_cursor(cursor: &str) -> Result<i64, StoreError> {
    cursor
        .strip_prefix("cdr_")
        .and_then(|n| n.parse().ok())
        .filter(|n: &i64| *n >= 0)
        .ok_or_else(|| StoreError::InvalidCursor(cursor.to_owned()))
}

fn cdr_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Cdr)> {
    Ok((
        row.get(0)?,
        Cdr {
            call_id: row.get(1)?,
            attempt: row.get(2)?,
            tenant: row.get(3)?,
            from: row.get(4)?,
            to: row.get(5)?,
            target_uri: row.get(6)?,
            node: row.get(7)?,
            core: row.get(8)?,
            sip_call_id: row.get(9)?,
            created_at: time_from(row, 10)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            dialed_at: time_from(row, 11)?,
            ringing_at: time_from(row, 12)?,
            answered_at: time_from(row, 13)?,
            ended_at: time_from(row, 14)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            billable_secs: u64::try_from(row.get::<_, i64>(15)?).unwrap_or(0),
            disposition: row.get(16)?,
            sip_status: row.get(17)?,
            reason: row.get(18)?,
            media: media_from_row(row, 19)?,
            answered_by: row.get(27)?,
            machine_decided_ms: row.get(28)?,
        },
    ))
}

/// The eight `media_*` columns from `first` on; `None` when the attempt had no media.
fn media_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Option<MediaSummary>> {
    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row
            .get::<_, Option<i64>>(first + i)?
            .map(|n| u64::try_from(n).unwrap_or(0)))
    };
    let Some(packets_sent) = count(0)? else {
        return Ok(None);
    };
    Ok(Some(MediaSummary {
        packets_sent,
        packets_received: count(1)?.unwrap_or(0),
        packets_lost: count(2)?.unwrap_or(0),
        jitter_us: count(3)?.unwrap_or(0),
        max_jitter_us: count(4)?.unwrap_or(0),
        sent_late_2ms: count(5)?.unwrap_or(0),
        dropped_foreign: count(6)?.unwrap_or(0),
        round_trip_us: count(7)?,
    }))
}

pub(super) fn page(
    conn: &Connection,
    tenant: Option<&str>,
    query: &CdrQuery,
) -> Result<CdrPage, StoreError> {
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut statement = conn.prepare_cached(
        "SELECT seq, call_id, attempt, tenant, from_addr, to_addr, target_uri, node, core, \
         sip_call_id, created_at, dialed_at, ringing_at, answered_at, ended_at, billable_secs, \
         disposition, sip_status, reason, media_sent, media_received, media_lost, \
         media_jitter_us, media_max_jitter_us, media_late_2ms, media_dropped_foreign, media_rtt_us, \
         answered_by, machine_decided_ms FROM cdrs \
         WHERE (?1 IS NULL OR tenant = ?1) AND ended_at >= ?2 AND ended_at < ?3 AND seq > ?4 \
         ORDER BY seq LIMIT ?5",
    )?;
    let rows = statement.query_map(
        params![
            tenant,
            query.from.map_or(i64::MIN, micros),
            query.to.map_or(i64::MAX, micros),
            after.unwrap_or(-1),
            query.limit,
        ],
        cdr_from_row,
    )?;
    let rows = rows.collect::<Result<Vec<_>, _>>()?;
    let next = (rows.len() == query.limit as usize)
        .then(|| rows.last().map(|(seq, _)| format!("cdr_{seq}")))
        .flatten();
    Ok(CdrPage {
        cdrs: rows.into_iter().map(|(_, cdr)| cdr).collect(),
        next,
    })
}
