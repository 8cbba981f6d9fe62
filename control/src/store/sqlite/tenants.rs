//! Tenants and API keys. Keys are kept as SHA-256 only and looked up on every request (no
//! cache), so a revoked key or a disabled tenant stops working at once.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::calls::{micros, truncate};
use super::{SqliteStore, bad_column, time_from, write_private};
use crate::auth;
use crate::store::{
    ApiKeyInfo, DEV_KEY_FILE, DEV_TENANT, DEV_WEBHOOK_SECRET_FILE, NewApiKey, NewTenant, Principal,
    Scope, StoreError, Tenant,
};

const TENANT_COLUMNS: &str = "id, trunk, caller_id, max_concurrent, disabled_at, created_at";
const KEY_COLUMNS: &str = "id, tenant, scopes, label, created_at, revoked_at";

/// A fresh webhook signing secret.
pub(super) fn new_secret() -> Result<String, StoreError> {
    auth::new_webhook_secret().map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// A fresh API key: `od_` + 32 base32 characters (160 bits from the OS), so SHA-256 without
/// a salt or a slow hash is enough to store it: it cannot be guessed from its hash.
pub(super) fn new_api_key() -> Result<String, StoreError> {
    let tail = auth::random_base32(32).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(format!("od_{tail}"))
}

/// The public id of the key whose SHA-256 (hex) is `hash`.
fn key_id(hash: &str) -> String {
    format!("key_{}", hash.get(..16).unwrap_or(hash))
}

fn check_tenant_id(id: &str) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "tenant id {id:?} must be 1 to 64 of a-z, 0-9, - and _"
        )))
    }
}

fn scopes_text(scopes: &[Scope]) -> String {
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_scopes(index: usize, text: &str) -> rusqlite::Result<Vec<Scope>> {
    text.split_whitespace()
        .map(|s| Scope::parse(s).ok_or_else(|| bad_column(index, "scope", s)))
        .collect()
}

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get(0)?,
        trunk: row.get(1)?,
        caller_id: row.get(2)?,
        max_concurrent: row.get(3)?,
        disabled: row.get::<_, Option<i64>>(4)?.is_some(),
        created_at: time_from(row, 5)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    let scopes: String = row.get(2)?;
    Ok(ApiKeyInfo {
        id: row.get(0)?,
        tenant: row.get(1)?,
        scopes: parse_scopes(2, &scopes)?,
        label: row.get(3)?,
        created_at: time_from(row, 4)?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        revoked_at: time_from(row, 5)?,
    })
}

pub(super) fn add(
    conn: &Connection,
    tenant: &NewTenant,
    secret: &str,
    now: OffsetDateTime,
) -> Result<(Tenant, String), StoreError> {
    check_tenant_id(&tenant.id)?;
    if get(conn, &tenant.id)?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: "tenant",
            id: tenant.id.clone(),
        });
    }
    conn.prepare_cached(
        "INSERT INTO tenants (id, webhook_secret, created_at, trunk, caller_id, max_concurrent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        tenant.id,
        secret,
        micros(truncate(now)),
        tenant.trunk,
        tenant.caller_id,
        tenant.max_concurrent,
    ])?;
    let stored = get(conn, &tenant.id)?.ok_or_else(|| StoreError::NotFound {
        what: "tenant",
        id: tenant.id.clone(),
    })?;
    Ok((stored, secret.to_owned()))
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Tenant>, StoreError> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
    Ok(conn
        .prepare_cached(&sql)?
        .query_map([], tenant_from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Tenant>, StoreError> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], tenant_from_row)
        .optional()?)
}

pub(super) fn set_disabled(
    conn: &Connection,
    id: &str,
    disabled: bool,
    now: OffsetDateTime,
) -> Result<Tenant, StoreError> {
    let at = disabled.then(|| micros(truncate(now)));
    conn.prepare_cached(
        "UPDATE tenants SET disabled_at = CASE WHEN ?2 IS NULL THEN NULL \
         ELSE COALESCE(disabled_at, ?2) END WHERE id = ?1",
    )?
    .execute(params![id, at])?;
    get(conn, id)?.ok_or_else(|| StoreError::NotFound {
        what: "tenant",
        id: id.to_owned(),
    })
}

pub(super) fn create_key(
    conn: &Connection,
    key: &NewApiKey,
    secret: String,
    now: OffsetDateTime,
) -> Result<(ApiKeyInfo, String), StoreError> {
    if get(conn, &key.tenant)?.is_none() {
        return Err(StoreError::NotFound {
            what: "tenant",
            id: key.tenant.clone(),
        });
    }
    if key.scopes.is_empty() {
        return Err(StoreError::Invalid(
            "a key needs at least one scope: calls:create, calls:read or admin".to_owned(),
        ));
    }
    let hash = auth::hash_api_key(&secret);
    let id = key_id(&hash);
    conn.prepare_cached(
        "INSERT INTO api_keys (key_sha256, tenant, created_at, id, scopes, label) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        hash,
        key.tenant,
        micros(truncate(now)),
        id,
        scopes_text(&key.scopes),
        key.label,
    ])?;
    let info = get_key(conn, &id)?.ok_or_else(|| StoreError::NotFound {
        what: "key",
        id: id.clone(),
    })?;
    Ok((info, secret))
}

fn get_key(conn: &Connection, id: &str) -> Result<Option<ApiKeyInfo>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], key_from_row)
        .optional()?)
}

pub(super) fn list_keys(
    conn: &Connection,
    tenant: Option<&str>,
) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 \
         ORDER BY tenant, created_at, id"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map([tenant], key_from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn revoke_key(
    conn: &Connection,
    id: &str,
    now: OffsetDateTime,
) -> Result<ApiKeyInfo, StoreError> {
    conn.prepare_cached("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")?
        .execute(params![id, micros(truncate(now))])?;
    get_key(conn, id)?.ok_or_else(|| StoreError::NotFound {
        what: "key",
        id: id.to_owned(),
    })
}

pub(super) fn authenticate(conn: &Connection, hash: &str) -> Result<Option<Principal>, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT k.tenant, k.id, k.scopes, t.trunk, t.caller_id FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant \
             WHERE k.key_sha256 = ?1 AND k.revoked_at IS NULL AND t.disabled_at IS NULL",
        )?
        .query_row([hash], |row| {
            let scopes: String = row.get(2)?;
            Ok(Principal {
                tenant: row.get(0)?,
                key_id: row.get(1)?,
                scopes: parse_scopes(2, &scopes)?,
                trunk: row.get(3)?,
                caller_id: row.get(4)?,
            })
        })
        .optional()?;
    Ok(found)
}

/// Creates `tenant` with `fresh` as its webhook secret unless it exists; returns its secret.
pub(super) fn upsert(
    conn: &Connection,
    tenant: &str,
    fresh: &str,
    created_at: i64,
) -> Result<String, StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO tenants (id, webhook_secret, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![tenant, fresh, created_at])?;
    Ok(conn
        .prepare_cached("SELECT webhook_secret FROM tenants WHERE id = ?1")?
        .query_row([tenant], |row| row.get(0))?)
}

/// Makes sure the development tenant exists and has an all-scopes API key, and returns it.
///
/// Reuses `data_dir/dev-api-key` if present, else creates `od_dev_` + 32 random hex
/// characters, stores its hash and writes the file (0600) after the commit. Also writes the
/// tenant's webhook secret to `data_dir/dev-webhook-secret` (0600). A development key an
/// operator revoked stays revoked.
pub(super) async fn ensure_dev_tenant(
    store: &SqliteStore,
    data_dir: PathBuf,
) -> Result<String, StoreError> {
    std::fs::create_dir_all(&data_dir)?;
    let key_path = data_dir.join(DEV_KEY_FILE);
    let existing = match std::fs::read_to_string(&key_path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(key) = &existing
        && (key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(StoreError::Invalid(format!(
            "{} does not hold an API key; delete it and restart to create a new one",
            key_path.display()
        )));
    }
    let key = match existing {
        Some(key) => key,
        None => auth::new_dev_api_key().map_err(|e| StoreError::Unavailable(e.to_string()))?,
    };
    let secret = new_secret()?;
    let hash = auth::hash_api_key(&key);
    let created_at = micros(truncate(OffsetDateTime::now_utc()));
    let secret = store
        .write(move |conn| {
            let secret = upsert(conn, DEV_TENANT, &secret, created_at)?;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO api_keys (key_sha256, tenant, created_at, id, scopes, label) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'development key')",
            )?
            .execute(params![
                hash,
                DEV_TENANT,
                created_at,
                key_id(&hash),
                scopes_text(&Scope::ALL),
            ])?;
            Ok(secret)
        })
        .await?;
    write_private(&key_path, &key)?;
    write_private(&data_dir.join(DEV_WEBHOOK_SECRET_FILE), &secret)?;
    Ok(key)
}
