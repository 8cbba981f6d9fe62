//! Campaigns (table `campaigns`) and their calls (`calls.campaign_id`).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _, Row, params};
use serde_json::Value;
use time::OffsetDateTime;

use super::calls::{self, micros, truncate};
use crate::model::{CallRecord, CallStatus};
use crate::store::StoreError;
use crate::store::campaigns::{Campaign, CampaignBatch};

const COLUMNS: &str = "id, tenant, status, spec, created_at, accepted, skipped, invalid, next_due";

fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, i64>(index)?).unwrap_or(0))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Campaign> {
    let spec: String = row.get(3)?;
    Ok(Campaign {
        id: row.get(0)?,
        tenant: row.get(1)?,
        status: row.get(2)?,
        spec: serde_json::from_str(&spec).unwrap_or(Value::Null),
        created_at: super::time_from(row, 4)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        accepted: count(row, 5)?,
        skipped: count(row, 6)?,
        invalid: count(row, 7)?,
        next_due: super::time_from(row, 8)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        calls: BTreeMap::new(),
    })
}

pub(super) fn create(
    conn: &Connection,
    tenant: &str,
    spec: &Value,
    start: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Campaign, StoreError> {
    let id = calls::time_ordered_id("cmp_", now)?;
    let sql = format!(
        "INSERT INTO campaigns (id, tenant, status, spec, created_at, next_due) \
         VALUES (?1, ?2, 'running', ?3, ?4, ?5) RETURNING {COLUMNS}"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(
        params![
            id,
            tenant,
            spec.to_string(),
            micros(truncate(now)),
            micros(truncate(start))
        ],
        from_row,
    )?)
}

pub(super) fn get(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<Option<Campaign>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM campaigns WHERE tenant = ?1 AND id = ?2");
    let Some(mut campaign) = conn
        .prepare_cached(&sql)?
        .query_row(params![tenant, id], from_row)
        .optional()?
    else {
        return Ok(None);
    };
    let mut statement = conn.prepare_cached(
        "SELECT status, count(*) FROM calls WHERE campaign_id = ?1 GROUP BY status",
    )?;
    let rows = statement.query_map([id], |row| Ok((row.get::<_, String>(0)?, count(row, 1)?)))?;
    for row in rows {
        let (status, count) = row?;
        campaign.calls.insert(status, count);
    }
    Ok(Some(campaign))
}

pub(super) fn list(conn: &Connection, tenant: &str) -> Result<Vec<Campaign>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM campaigns WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1000");
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map([tenant], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn add_batch(
    conn: &Connection,
    tenant: &str,
    id: &str,
    batch: CampaignBatch,
    now: OffsetDateTime,
) -> Result<Vec<CallRecord>, StoreError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM campaigns WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |row| row.get(0))
        .optional()?;
    match status.as_deref() {
        None => {
            return Err(StoreError::NotFound {
                what: "campaign",
                id: id.to_owned(),
            });
        }
        Some("running") => {}
        Some(other) => {
            return Err(StoreError::Invalid(format!(
                "campaign {id} is {other}: it takes no more callees"
            )));
        }
    }
    let accepted = i64::try_from(batch.calls.len()).unwrap_or(i64::MAX);
    let skipped = i64::try_from(batch.skipped).unwrap_or(i64::MAX);
    let invalid = i64::try_from(batch.invalid).unwrap_or(i64::MAX);
    let records = if batch.calls.is_empty() {
        Vec::new()
    } else {
        calls::create(conn, tenant, batch.calls, None, now)?.records
    };
    let mut tag = conn.prepare_cached("UPDATE calls SET campaign_id = ?1 WHERE id = ?2")?;
    for record in &records {
        tag.execute(params![id, record.id])?;
    }
    conn.prepare_cached(
        "UPDATE campaigns SET accepted = accepted + ?2, skipped = skipped + ?3, \
         invalid = invalid + ?4, next_due = ?5 WHERE id = ?1",
    )?
    .execute(params![
        id,
        accepted,
        skipped,
        invalid,
        micros(truncate(batch.next_due))
    ])?;
    Ok(records)
}

pub(super) fn cancel(
    conn: &Connection,
    tenant: &str,
    id: &str,
    now: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    let changed = conn
        .prepare_cached("UPDATE campaigns SET status = 'canceled' WHERE tenant = ?1 AND id = ?2")?
        .execute(params![tenant, id])?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "campaign",
            id: id.to_owned(),
        });
    }
    let queued: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM calls WHERE campaign_id = ?1 AND status = 'queued' AND claimed_by IS NULL",
        )?
        .query_map([id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut canceled = Vec::with_capacity(queued.len());
    for call in queued {
        let record = calls::cancel_queued(conn, tenant, &call, now)?;
        if record.is_some_and(|r| r.status == CallStatus::Canceled) {
            canceled.push(call);
        }
    }
    Ok(canceled)
}
