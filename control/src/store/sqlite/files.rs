//! Request files: an e-mail's attached application and its siblings, stored in the same
//! transaction as the calls that use them and served only while one of those calls can run.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::calls::{self, micros, truncate};
use crate::model::NewCall;
use crate::store::{Created, IdempotencyKey, NewFiles, StoreError, StoredFile};

/// Creates `new` as [`calls::create`] does and stores `files` as theirs, in the caller's
/// transaction (the writer's savepoint undoes everything if any step fails).
pub(super) fn create_with_files(
    conn: &Connection,
    tenant: &str,
    new: Vec<NewCall>,
    files: Option<NewFiles>,
    idempotency: Option<IdempotencyKey>,
    now: OffsetDateTime,
) -> Result<Created, StoreError> {
    let created = calls::create(conn, tenant, new, idempotency, now)?;
    let Some(files) = files.filter(|_| !created.replayed) else {
        return Ok(created);
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO request_files (files_id, name, tenant, content_type, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let at = micros(truncate(now));
    for file in &files.files {
        insert
            .execute(params![
                files.id,
                file.name,
                tenant,
                file.content_type,
                file.body,
                at
            ])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Invalid(format!(
                        "the request has two files named {:?}; name each file once",
                        file.name
                    ))
                }
                other => other.into(),
            })?;
    }
    let mut link = conn.prepare_cached("UPDATE calls SET files_id = ?1 WHERE id = ?2")?;
    for record in &created.records {
        link.execute(params![files.id, record.id])?;
    }
    Ok(created)
}

/// The file, if one of the calls naming `files_id` is not final yet.
pub(super) fn select(
    conn: &Connection,
    files_id: &str,
    name: &str,
) -> Result<Option<StoredFile>, StoreError> {
    let file = conn
        .prepare_cached(
            "SELECT content_type, body FROM request_files WHERE files_id = ?1 AND name = ?2 \
             AND EXISTS (SELECT 1 FROM calls WHERE files_id = ?1 \
                         AND status IN ('queued', 'dialing', 'ringing', 'in-progress'))",
        )?
        .query_row(params![files_id, name], |row| {
            Ok(StoredFile {
                content_type: row.get(0)?,
                body: row.get(1)?,
            })
        })
        .optional()?;
    Ok(file)
}
