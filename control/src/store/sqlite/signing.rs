//! Per-tenant signing secrets and the "signatures required" flag (table `tenant_signing`).
//! The secret is an HMAC key, so it is kept as is (it cannot be hashed); the database file
//! is mode 0600 (see `docs/security.md`).

use rusqlite::{Connection, OptionalExtension as _, params};
use time::OffsetDateTime;

use super::calls::{micros, truncate};
use crate::store::StoreError;
use crate::store::signing::SigningSettings;

/// `NotFound` unless `tenant` exists (settings kept per tenant need their tenant).
pub(super) fn tenant_exists(conn: &Connection, tenant: &str) -> Result<(), StoreError> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    found.map(|_| ()).ok_or_else(|| StoreError::NotFound {
        what: "tenant",
        id: tenant.to_owned(),
    })
}

pub(super) fn set_secret(
    conn: &Connection,
    tenant: &str,
    secret: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tenant_exists(conn, tenant)?;
    conn.prepare_cached(
        "INSERT INTO tenant_signing (tenant, secret, required, rotated_at) VALUES (?1, ?2, 0, ?3) \
         ON CONFLICT (tenant) DO UPDATE SET secret = excluded.secret, rotated_at = excluded.rotated_at",
    )?
    .execute(params![tenant, secret, micros(truncate(now))])?;
    Ok(())
}

pub(super) fn set_required(
    conn: &Connection,
    tenant: &str,
    required: bool,
) -> Result<(), StoreError> {
    tenant_exists(conn, tenant)?;
    let changed = conn
        .prepare_cached(
            "UPDATE tenant_signing SET required = ?2 WHERE tenant = ?1 AND secret IS NOT NULL",
        )?
        .execute(params![tenant, required])?;
    if changed == 0 && required {
        return Err(StoreError::Invalid(format!(
            "tenant {tenant:?} has no signing secret; create one first (`outdial tenant signing-secret {tenant}`)"
        )));
    }
    Ok(())
}

pub(super) fn get(conn: &Connection, tenant: &str) -> Result<SigningSettings, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT secret, required, rotated_at FROM tenant_signing WHERE tenant = ?1",
        )?
        .query_row([tenant], |row| {
            Ok(SigningSettings {
                secret: row.get(0)?,
                required: row.get(1)?,
                rotated_at: super::time_from(row, 2)?,
            })
        })
        .optional()?;
    Ok(row.unwrap_or_default())
}
