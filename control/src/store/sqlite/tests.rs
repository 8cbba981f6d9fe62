//! Tests specific to the SQLite implementation: migration, file modes, group commit, reads
//! that do not wait for the writer.

use std::os::unix::fs::PermissionsExt as _;

use rusqlite::params;
use time::OffsetDateTime;

use super::*;
use crate::model::CallStatus;
use crate::store::testing::{insert, new_call, open_temp};

fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .ok()
}

#[test]
fn database_and_wal_files_are_private() {
    let (dir, _store) = open_temp();
    for name in ["outdial.sqlite", "outdial.sqlite-wal", "outdial.sqlite-shm"] {
        assert_eq!(mode(&dir.path().join(name)), Some(0o600), "{name}");
    }
}

#[tokio::test]
async fn a_stored_created_event_of_version_12_is_not_listed_twice() {
    let (dir, store) = open_temp();
    let path = dir.path().join("outdial.sqlite");
    let call = insert(store.as_ref(), new_call("acme", 1)).await;
    let events = store.call_events("acme", &call.id).await.ok().flatten();
    let events = events.unwrap_or_else(|| panic!("no events for {}", call.id));
    assert_eq!(
        events
            .iter()
            .map(|e| (e.status, e.cause.as_deref(), e.at))
            .collect::<Vec<_>>(),
        vec![(CallStatus::Queued, Some("created"), call.created_at)],
        "the first event comes from the call's row"
    );
    drop(store);
    // The same call as version 12 stored it: its first event a row of its own.
    {
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.execute(
            "INSERT INTO events (call_id, attempt, status, at, cause) \
             VALUES (?1, NULL, 'queued', 1000000, 'created')",
            [&call.id],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        conn.execute("DELETE FROM schema_version WHERE version > 12", [])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let events = store.call_events("acme", &call.id).await.ok().flatten();
    assert_eq!(
        events.map(|e| e.len()),
        Some(1),
        "migrated once, listed once"
    );
}

#[tokio::test]
async fn a_version_1_database_migrates_in_place() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("outdial.sqlite");
    {
        // A file as the first release made it: schema v1, a dev key, a finished call, a
        // queued one and one left live by a crash. World-readable, as SQLite makes files.
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(V1_SCHEMA)
            .unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             INSERT INTO tenants VALUES ('dev', 'whsec_AAAA', 1);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        conn.execute(
            "INSERT INTO api_keys VALUES (?1, 'dev', 1)",
            [crate::auth::hash_api_key("od_dev_old")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for (id, status, dialed) in [
            ("call_done", "completed", Some(2_000_000)),
            ("call_wait", "queued", None),
            ("call_live", "in-progress", Some(3_000_000)),
        ] {
            conn.execute(
                "INSERT INTO calls (id, tenant, status, to_addr, target_uri, url, vars, \
                 created_at, dialed_at) VALUES (?1, 'dev', ?2, 'sip:a@127.0.0.1', \
                 'sip:a@127.0.0.1', 'http://127.0.0.1/app.vxml', '{}', 1000000, ?3)",
                params![id, status, dialed],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode(&path), Some(0o600));
    let who = store.authenticate("od_dev_old").await.ok().flatten();
    assert_eq!(who.as_ref().map(|p| p.tenant.as_str()), Some("dev"));
    assert!(
        who.is_some_and(|p| p.has(crate::store::Scope::Admin)),
        "v1 keys get every scope"
    );
    let done = store.get_call("dev", "call_done").await.ok().flatten();
    let done = done.unwrap_or_else(|| panic!("lost a v1 call"));
    assert_eq!(
        (done.status, done.attempts, done.priority),
        (CallStatus::Completed, 1, 5)
    );
    assert_eq!(done.due_at, done.created_at);
    let pending = store.pending_calls("node-a").await.unwrap_or_default();
    assert_eq!(
        pending.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["call_wait"]
    );
    // The v1 call left live has no owner: the first node to start recovers it, with a CDR.
    assert_eq!(
        store
            .recover_node("node-a", OffsetDateTime::now_utc())
            .await
            .ok(),
        Some(1)
    );
    let live = store.get_call("dev", "call_live").await.ok().flatten();
    assert_eq!(live.map(|r| r.status), Some(CallStatus::Failed));
    let query = CdrQuery {
        from: None,
        to: None,
        cursor: None,
        limit: 10,
    };
    let cdrs = store
        .cdrs(None, query)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cdrs.cdrs.len(), 1);
    // New calls work in the migrated file.
    let fresh = insert(&store, new_call("dev", 1)).await;
    assert_eq!(fresh.status, CallStatus::Queued);
    drop(store);
    let version: i64 = Connection::open(&path)
        .and_then(|c| c.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0)))
        .unwrap_or_default();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn newer_schema_is_refused() {
    let (dir, store) = open_temp();
    drop(store);
    let path = dir.path().join("outdial.sqlite");
    let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.execute("INSERT INTO schema_version VALUES (99)", []);
    drop(conn);
    let err = SqliteStore::open(&path).err();
    assert_eq!(
        err,
        Some(StoreError::NewerSchema {
            found: 99,
            known: SCHEMA_VERSION
        })
    );
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("run a newer outdial")
    );
}

#[tokio::test]
async fn reads_do_not_wait_for_the_writer() {
    let (_dir, store) = open_temp();
    let record = insert(store.as_ref(), new_call("acme", 1)).await;
    // Hold the writer inside a transaction until the read below has answered.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, writer_busy) = oneshot::channel::<()>();
    let blocked = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |conn| {
                    conn.execute("UPDATE calls SET priority = 9", [])?;
                    let _ = entered.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
        })
    };
    writer_busy.await.unwrap_or_else(|e| panic!("{e}"));
    let read = store.get_call("acme", &record.id).await.ok().flatten();
    assert_eq!(
        read.map(|r| r.priority),
        Some(5),
        "the last commit, not the open write"
    );
    release.send(()).unwrap_or_else(|e| panic!("{e}"));
    assert!(blocked.await.is_ok_and(|r| r.is_ok()));
    let after = store.get_call("acme", &record.id).await.ok().flatten();
    assert_eq!(after.map(|r| r.priority), Some(9));
}

#[tokio::test]
async fn concurrent_creates_share_commits_and_all_survive_reopen() {
    let (dir, store) = open_temp();
    let before = store.commit_count();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.spawn(async move { insert(store.as_ref(), new_call("acme", n)).await.id });
    }
    let mut acknowledged = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        acknowledged.push(joined.unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(acknowledged.len(), 200);
    let commits = store.commit_count() - before;
    assert!(
        commits < 50,
        "200 creates took {commits} commits: no group commit"
    );
    drop(store);
    let reopened =
        SqliteStore::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let query = ListQuery {
        status: None,
        limit: 1000,
        before: None,
        ..ListQuery::default()
    };
    let all = reopened.list_calls("acme", query).await.unwrap_or_default();
    let mut stored: Vec<_> = all.into_iter().map(|r| r.id).collect();
    stored.sort();
    acknowledged.sort();
    assert_eq!(stored, acknowledged);
}

#[tokio::test]
async fn failing_job_does_not_undo_its_batch_neighbours() {
    let (_dir, store) = open_temp();
    let failing = store.write(|conn| -> Result<(), StoreError> {
        conn.execute_batch(
            "INSERT INTO tenants (id, webhook_secret, created_at) VALUES ('ghost', 's', 0)",
        )?;
        Err(StoreError::Unavailable("deliberate".to_owned()))
    });
    let good = store.tenant_webhook_secret("real");
    let (failing, good) = tokio::join!(failing, good);
    assert!(failing.is_err() && good.is_ok());
    let ghosts = store
        .read(|conn| {
            Ok(
                conn.query_row("SELECT COUNT(*) FROM tenants WHERE id = 'ghost'", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        })
        .await;
    assert_eq!(ghosts.ok(), Some(0));
}

/// Signing settings are read on every API request, so they are kept briefly; a change made
/// through the store is seen by the next request all the same.
#[tokio::test]
async fn signing_settings_changes_are_seen_at_once_though_reads_are_kept() {
    use crate::store::SigningStore as _;
    let (dir, store) = open_temp();
    let read = async || {
        store
            .signing_settings("acme")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(read().await, crate::store::SigningSettings::default());
    let now = OffsetDateTime::now_utc();
    store
        .set_signing_secret("acme", "odsig_one".to_owned(), now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read().await.secret.as_deref(), Some("odsig_one"));
    store
        .set_signing_required("acme", true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(read().await.required);
    // Kept: a change behind the store's back (another process) shows only after the TTL.
    let conn =
        Connection::open(dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    conn.execute("UPDATE tenant_signing SET required = 0", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(read().await.required, "answered from what was read");
    tokio::time::sleep(principals::TTL).await;
    assert!(!read().await.required, "read again after the TTL");
}

/// A job without a savepoint that fails after writing rolls back the whole transaction, with
/// every job in it; one that refuses before writing spoils nothing.
#[tokio::test]
async fn an_unguarded_job_failing_after_its_writes_rolls_the_transaction_back() {
    let (_dir, store) = open_temp();
    let tenants = |store: Arc<SqliteStore>| async move {
        store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM tenants WHERE id LIKE 'spoil%'",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await
    };
    // Many jobs at once: the writer takes them into few transactions.
    let mut jobs = tokio::task::JoinSet::new();
    for n in 0..32 {
        let store = store.clone();
        jobs.spawn(async move {
            store
                .write_unguarded(move |c| {
                    c.execute(
                        "INSERT INTO tenants (id, webhook_secret, created_at) VALUES (?1, 'x', 1)",
                        [format!("spoil{n}")],
                    )?;
                    if n == 7 {
                        return Err(StoreError::Unavailable("failed after writing".into()));
                    }
                    Ok(Ok(n))
                })
                .await
        });
    }
    let mut failed = 0;
    while let Some(done) = jobs.join_next().await {
        match done.unwrap_or_else(|e| panic!("{e}")) {
            Ok(n) => assert_ne!(n, 7),
            Err(e) => {
                failed += 1;
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
            }
        }
    }
    assert!(failed >= 1, "the failing job reported its error");
    // Exactly the jobs that answered Ok were committed: the spoiled transaction left nothing.
    let stored = tenants(store.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, 32 - failed, "{failed} jobs failed");

    // A refusal before writing does not spoil its transaction.
    let refused = store
        .write_unguarded(|_| Ok::<Result<(), _>, _>(Err(StoreError::Invalid("no".into()))))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let kept = store
        .write_unguarded(|c| {
            c.execute(
                "INSERT INTO tenants (id, webhook_secret, created_at) VALUES ('spoil-after', 'x', 1)",
                [],
            )?;
            Ok(Ok(()))
        })
        .await;
    assert!(kept.is_ok(), "{kept:?}");
    let stored_after = tenants(store).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored_after, stored + 1);
}

/// Callee records made by this store are seen at once; those another process writes, once
/// the filter's stamp is looked at again (within `callee_filter::FRESH_FOR`).
#[tokio::test]
async fn callee_records_are_seen_at_once_here_and_soon_from_another_process() {
    use crate::store::PolicyStore as _;
    let (dir, store) = open_temp();
    let here = "+15550000001".to_owned();
    let there = "+15550000002".to_owned();
    let now = OffsetDateTime::now_utc();
    assert!(
        store
            .callees(vec![here.clone(), there.clone()])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    store
        .put_callee(&here, crate::policy::CalleeRecord::default(), now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let found = store
        .callees(vec![here.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(found.contains_key(&here), "{found:?}");
    // Another process (the CLI) on the same file.
    let other =
        SqliteStore::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    other
        .put_callee(&there, crate::policy::CalleeRecord::default(), now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(callee_filter::FRESH_FOR + std::time::Duration::from_millis(100)).await;
    let found = store
        .callees(vec![there.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(found.contains_key(&there), "{found:?}");
}
