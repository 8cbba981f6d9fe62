//! Tenants' policies (`tenant_policies`) and callee records (`callees`), kept as JSON checked
//! on the way in; calls by callee are counted on the `calls_by_callee` index.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _, params};
use time::OffsetDateTime;

use super::calls::{micros, truncate};
use super::signing::tenant_exists;
use crate::policy::{CalleeHistory, CalleeRecord, RequesterPolicy};
use crate::store::StoreError;
use crate::store::policy::{DispatchFacts, OptOutScope};

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Invalid(format!(
        "a stored {what} cannot be read ({e}); set it again"
    ))
}

pub(super) fn tenant_policy(
    conn: &Connection,
    tenant: &str,
) -> Result<RequesterPolicy, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT policy FROM tenant_policies WHERE tenant = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    text.map_or_else(
        || Ok(RequesterPolicy::default()),
        |t| serde_json::from_str(&t).map_err(|e| corrupt("tenant policy", e)),
    )
}

pub(super) fn tenant_policies(
    conn: &Connection,
) -> Result<Vec<(String, RequesterPolicy)>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT tenant, policy FROM tenant_policies")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (tenant, text) = row?;
        let policy = serde_json::from_str(&text).map_err(|e| corrupt("tenant policy", e))?;
        out.push((tenant, policy));
    }
    Ok(out)
}

pub(super) fn set_tenant_policy(
    conn: &Connection,
    tenant: &str,
    policy: &RequesterPolicy,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tenant_exists(conn, tenant)?;
    let text = serde_json::to_string(policy).map_err(|e| corrupt("tenant policy", e))?;
    conn.prepare_cached(
        "INSERT INTO tenant_policies (tenant, policy, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (tenant) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
    )?
    .execute(params![tenant, text, micros(truncate(now))])?;
    Ok(())
}

pub(super) fn callee(conn: &Connection, number: &str) -> Result<Option<CalleeRecord>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT record FROM callees WHERE number = ?1")?
        .query_row([number], |row| row.get(0))
        .optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("callee record", e)))
        .transpose()
}

pub(super) fn callees(
    conn: &Connection,
    numbers: &[String],
) -> Result<HashMap<String, CalleeRecord>, StoreError> {
    let mut out = HashMap::new();
    // Most deployments keep records for few numbers: one cheap look saves a lookup per
    // destination of a batch of 10,000.
    let any: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM callees)")?
        .query_row([], |row| row.get(0))?;
    if !any {
        return Ok(out);
    }
    for chunk in numbers.chunks(LOOKUP_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT number, record FROM callees WHERE number IN ({marks})");
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(chunk), |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (number, text) = row?;
            let record = serde_json::from_str(&text).map_err(|e| corrupt("callee record", e))?;
            out.insert(number, record);
        }
    }
    Ok(out)
}

/// Numbers looked up per statement (SQLite allows 32,766 parameters).
const LOOKUP_CHUNK: usize = 500;

/// The callee table's stamp for [`super::callee_filter`]: its rows and latest change.
pub(super) fn callee_stamp(conn: &Connection) -> Result<super::callee_filter::Stamp, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*), max(updated_at) FROM callees")?
        .query_row([], |row| {
            Ok(super::callee_filter::Stamp {
                rows: row.get(0)?,
                latest: row.get(1)?,
            })
        })?)
}

/// Every number with a callee record.
pub(super) fn callee_numbers(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT number FROM callees")?;
    let numbers = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(numbers)
}

pub(super) fn put_callee(
    conn: &Connection,
    number: &str,
    record: &CalleeRecord,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(record).map_err(|e| corrupt("callee record", e))?;
    conn.prepare_cached(
        "INSERT INTO callees (number, record, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (number) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
    )?
    .execute(params![number, text, micros(truncate(now))])?;
    Ok(())
}

pub(super) fn delete_callee(conn: &Connection, number: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM callees WHERE number = ?1")?
        .execute([number])?
        > 0)
}

pub(super) fn set_opt_out(
    conn: &Connection,
    number: &str,
    scope: &OptOutScope,
    opted_out: bool,
    now: OffsetDateTime,
) -> Result<CalleeRecord, StoreError> {
    let mut record = callee(conn, number)?.unwrap_or_default();
    match scope {
        OptOutScope::All => record.opt_out.all = opted_out,
        OptOutScope::Tenant(tenant) => {
            record.opt_out.tenants.retain(|t| t != tenant);
            if opted_out {
                if record.opt_out.tenants.len() >= crate::policy::MAX_OPT_OUT_TENANTS {
                    record.opt_out.all = true;
                } else {
                    record.opt_out.tenants.push(tenant.clone());
                }
            }
        }
    }
    put_callee(conn, number, &record, now)?;
    Ok(record)
}

/// Calls placed to `number` since `since`: how many, and the earliest.
fn history(
    conn: &Connection,
    number: &str,
    since: OffsetDateTime,
) -> Result<CalleeHistory, StoreError> {
    let (placed, oldest): (u32, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), min(dialed_at) FROM calls \
             WHERE to_addr = ?1 AND dialed_at IS NOT NULL AND dialed_at >= ?2",
        )?
        .query_row(params![number, micros(since)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    let oldest =
        oldest.and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok());
    Ok(CalleeHistory { placed, oldest })
}

pub(super) fn dispatch_facts(
    conn: &Connection,
    tenants: &[String],
    numbers: &[String],
    now: OffsetDateTime,
) -> Result<DispatchFacts, StoreError> {
    let mut facts = DispatchFacts::default();
    for tenant in tenants {
        if !facts.policies.contains_key(tenant) {
            facts
                .policies
                .insert(tenant.clone(), tenant_policy(conn, tenant)?);
        }
    }
    for (number, record) in callees(conn, numbers)? {
        let history = match record.max_calls {
            Some(_) => {
                let period = time::Duration::seconds(i64::try_from(record.period()).unwrap_or(0));
                history(conn, &number, now - period)?
            }
            None => CalleeHistory::default(),
        };
        facts.callees.insert(number, (record, history));
    }
    Ok(facts)
}
