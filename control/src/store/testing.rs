//! Helpers for tests that need a real store: a SQLite file in a temp dir, calls to put in it.

use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::sqlite::SqliteStore;
use super::{CallStore, Claimed};
use crate::model::{
    CallRecord, CallbackEvents, DEFAULT_PRIORITY, MachineDetection, NewCall, RetryPolicy,
};

/// Tenants that [`open_temp`] creates.
pub(crate) const TENANTS: [&str; 2] = ["acme", "other"];

/// A fresh store in a temp dir (kept alive by the returned guard), with the [`TENANTS`].
pub(crate) fn open_temp() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("outdial.sqlite");
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
    let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
    for tenant in TENANTS {
        let secret = crate::auth::new_webhook_secret().unwrap_or_else(|e| panic!("{e}"));
        conn.execute(
            "INSERT INTO tenants (id, webhook_secret, created_at) VALUES (?1, ?2, 0)",
            [tenant, secret.as_str()],
        )
        .unwrap_or_else(|e| panic!("tenant: {e}"));
    }
    (dir, Arc::new(store))
}

/// A call to `sip:callee{n}@127.0.0.1` with `vars = {"n": n}`, due now, no retry.
pub(crate) fn new_call(tenant: &str, n: usize) -> NewCall {
    let mut vars = Map::new();
    vars.insert("n".to_owned(), Value::from(n));
    NewCall {
        tenant: tenant.to_owned(),
        to: format!("sip:callee{n}@127.0.0.1"),
        target_uri: format!("sip:callee{n}@127.0.0.1"),
        from: None,
        url: "http://127.0.0.1/app.vxml".to_owned(),
        vars,
        status_callback: None,
        status_callback_events: CallbackEvents::ALL,
        ring_timeout_secs: Some(15),
        at: None,
        not_after: None,
        priority: DEFAULT_PRIORITY,
        retry: RetryPolicy::default(),
        machine_detection: MachineDetection::Off,
        early_media: false,
        direction: crate::model::Direction::Outbound,
    }
}

/// Stores `new` for its tenant now and returns the record.
pub(crate) async fn insert(store: &dyn CallStore, new: NewCall) -> CallRecord {
    let tenant = new.tenant.clone();
    store
        .create_calls(&tenant, vec![new], None, OffsetDateTime::now_utc())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"))
        .records
        .pop()
        .unwrap_or_else(|| panic!("created nothing"))
}

/// Claims the call `id` for `node` now, with a minute's lease.
pub(crate) async fn claim(store: &dyn CallStore, node: &str, id: &str) -> Claimed {
    let now = OffsetDateTime::now_utc();
    store
        .claim_calls(node, vec![id.to_owned()], now + time::Duration::MINUTE, now)
        .await
        .unwrap_or_else(|e| panic!("claim: {e}"))
        .pop()
        .unwrap_or_else(|| panic!("{id} was not claimable"))
}
