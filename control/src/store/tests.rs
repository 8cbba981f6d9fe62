//! Tests of the store contract against the SQLite implementation (real SQLite in a temp dir).

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::testing::{claim, insert, new_call, open_temp};
use super::*;
use crate::model::{CallbackEvents, RetryOn, RetryPolicy};

fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 12:00:00 UTC)
}

fn end(status: CallStatus, at: OffsetDateTime) -> AttemptEnd {
    AttemptEnd {
        media: None,
        status,
        ended_at: at,
        sip_status: match status {
            CallStatus::Busy => Some(486),
            CallStatus::Completed => Some(200),
            _ => None,
        },
        disposition: Some(status.as_str().to_owned()),
        reason: format!("ended {status}"),
        core: Some(1),
        sip_call_id: Some("abc@127.0.0.1".to_owned()),
        result: None,
    }
}

fn transition(status: CallStatus, at: OffsetDateTime) -> Transition {
    Transition {
        status,
        at,
        cause: Some(format!("now {status}")),
        sip_status: None,
    }
}

fn statuses(events: &[CallEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.status.as_str()).collect()
}

#[tokio::test]
async fn create_then_get_returns_the_same_record_to_its_tenant_only() {
    let (_dir, store) = open_temp();
    let record = insert(store.as_ref(), new_call("acme", 1)).await;
    assert_eq!(record.status, CallStatus::Queued);
    assert!(
        record.id.starts_with("call_") && record.id.len() == 31,
        "{}",
        record.id
    );
    assert_eq!(
        record.due_at, record.created_at,
        "due now when `at` is absent"
    );
    let got = store.get_call("acme", &record.id).await.ok().flatten();
    assert_eq!(got.as_ref(), Some(&record));
    assert_eq!(store.get_call("other", &record.id).await.ok(), Some(None));
    assert_eq!(
        store.call_events("other", &record.id).await.ok(),
        Some(None)
    );
    let events = store.call_events("acme", &record.id).await.ok().flatten();
    assert_eq!(events.as_deref().map(statuses), Some(vec!["queued"]));
}

#[tokio::test]
async fn scheduling_fields_round_trip_and_pending_lists_queued_calls() {
    let (_dir, store) = open_temp();
    let now = OffsetDateTime::now_utc();
    let mut new = new_call("acme", 1);
    new.at = Some(now + Duration::hours(1));
    new.not_after = Some(now + Duration::hours(2));
    new.priority = 9;
    new.retry = RetryPolicy {
        max_attempts: 3,
        delay_secs: 120,
        on: vec![RetryOn::Busy, RetryOn::Failed],
    };
    let record = insert(store.as_ref(), new.clone()).await;
    let stored = store.get_call("acme", &record.id).await.ok().flatten();
    let stored = stored.unwrap_or_else(|| panic!("not stored"));
    assert_eq!(stored.due_at, sqlite_truncate(now + Duration::hours(1)));
    assert_eq!(stored.not_after, new.not_after.map(sqlite_truncate));
    assert_eq!((stored.priority, stored.retry.clone()), (9, new.retry));
    let other = insert(store.as_ref(), new_call("other", 2)).await;
    let pending = store.pending_calls("node-a").await.unwrap_or_default();
    let ids: Vec<_> = pending.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![other.id.as_str(), record.id.as_str()],
        "by due time"
    );
    assert_eq!(pending[1].priority, 9);
    assert_eq!(pending[1].not_after, new.not_after.map(sqlite_truncate));
    claim(store.as_ref(), "node-a", &other.id).await;
    assert_eq!(
        store.pending_calls("node-a").await.map(|p| p.len()).ok(),
        Some(1)
    );
}

#[tokio::test]
async fn list_is_newest_first_with_pagination_and_filter() {
    let (_dir, store) = open_temp();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(insert(store.as_ref(), new_call("acme", n)).await.id);
    }
    insert(store.as_ref(), new_call("other", 9)).await;
    let page = |limit, before: Option<&String>| ListQuery {
        status: None,
        limit,
        before: before.cloned(),
        ..ListQuery::default()
    };
    let ids_of = |v: Vec<CallRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let page1 = store
        .list_calls("acme", page(2, None))
        .await
        .unwrap_or_default();
    assert_eq!(ids_of(page1), vec![ids[4].clone(), ids[3].clone()]);
    let page2 = store
        .list_calls("acme", page(2, Some(&ids[3])))
        .await
        .unwrap_or_default();
    assert_eq!(ids_of(page2), vec![ids[2].clone(), ids[1].clone()]);
    claim(store.as_ref(), "n", &ids[0]).await;
    let dialing = ListQuery {
        status: Some(CallStatus::Dialing),
        limit: 10,
        before: None,
        ..ListQuery::default()
    };
    let dialing = store.list_calls("acme", dialing).await.unwrap_or_default();
    assert_eq!(ids_of(dialing), vec![ids[0].clone()]);
    let bad = store
        .list_calls("acme", page(2, Some(&"call_nope".to_owned())))
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidCursor(_))), "{bad:?}");
    let foreign = store.list_calls("other", page(2, Some(&ids[0]))).await;
    assert!(foreign.is_err(), "a cursor of another tenant is refused");
    let wanted = store.get_call("acme", &ids[2]).await.ok().flatten();
    let wanted = wanted.unwrap_or_else(|| panic!("call {} exists", ids[2]));
    let to = ListQuery {
        to: Some(wanted.to.clone()),
        limit: 10,
        ..ListQuery::default()
    };
    let by_to = store.list_calls("acme", to).await.unwrap_or_default();
    assert_eq!(ids_of(by_to), vec![ids[2].clone()], "filter by to");
    let window = ListQuery {
        created_after: Some(wanted.created_at),
        created_before: Some(wanted.created_at + Duration::microseconds(1)),
        limit: 10,
        ..ListQuery::default()
    };
    let in_window = store.list_calls("acme", window).await.unwrap_or_default();
    assert!(
        in_window.iter().any(|r| r.id == ids[2]),
        "created window includes its call"
    );
    assert!(
        in_window.iter().all(|r| r.created_at == wanted.created_at),
        "and only calls created then"
    );
}

#[tokio::test]
async fn a_call_is_claimed_once_and_not_past_not_after() {
    let (_dir, store) = open_temp();
    let a = insert(store.as_ref(), new_call("acme", 1)).await;
    let mut late = new_call("acme", 2);
    late.not_after = Some(OffsetDateTime::now_utc() - Duration::seconds(1));
    let late = insert(store.as_ref(), late).await;
    let now = OffsetDateTime::now_utc();
    let lease = now + Duration::minutes(1);
    let ids = vec![a.id.clone(), late.id.clone(), "call_missing".to_owned()];
    let first = store
        .claim_calls("node-a", ids.clone(), lease, now)
        .await
        .unwrap_or_default();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].record.id.as_str(), first[0].attempt),
        (a.id.as_str(), 1)
    );
    assert_eq!(first[0].record.status, CallStatus::Dialing);
    assert_eq!(first[0].record.attempts, 1);
    let again = store
        .claim_calls("node-b", ids, lease, now)
        .await
        .unwrap_or_default();
    assert!(
        again.is_empty(),
        "claimed by node-a, expired call not claimable"
    );
    let expired = store.expire_call(&late.id, now).await.ok().flatten();
    assert_eq!(expired.map(|r| r.status), Some(CallStatus::Expired));
    // Expiring a call that is not past not_after changes nothing.
    let fresh = insert(store.as_ref(), new_call("acme", 3)).await;
    let kept = store.expire_call(&fresh.id, now).await.ok().flatten();
    assert_eq!(kept.map(|r| r.status), Some(CallStatus::Queued));
    assert_eq!(store.renew_lease("node-a", lease).await.ok(), Some(1));
    assert_eq!(store.renew_lease("node-b", lease).await.ok(), Some(0));
}

#[tokio::test]
async fn transitions_are_monotonic_and_each_is_an_event() {
    let (_dir, store) = open_temp();
    let call = insert(store.as_ref(), new_call("acme", 1)).await;
    let claimed = claim(store.as_ref(), "n", &call.id).await;
    let at = OffsetDateTime::now_utc();
    let ringing = store
        .record_transition(&call.id, 1, transition(CallStatus::Ringing, at))
        .await;
    assert_eq!(ringing.map(|r| r.status).ok(), Some(CallStatus::Ringing));
    let answered_at = at + Duration::seconds(3);
    let answered = store
        .record_transition(&call.id, 1, transition(CallStatus::InProgress, answered_at))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answered.status, CallStatus::InProgress);
    assert_eq!(answered.answered_at, Some(sqlite_truncate(answered_at)));
    // A late 180 after the answer, and a report for another attempt, change nothing.
    let late = store
        .record_transition(&call.id, 1, transition(CallStatus::Ringing, at))
        .await;
    assert_eq!(late.map(|r| r.status).ok(), Some(CallStatus::InProgress));
    let stale = store
        .record_transition(&call.id, 7, transition(CallStatus::Ringing, at))
        .await;
    assert_eq!(stale.map(|r| r.status).ok(), Some(CallStatus::InProgress));
    store
        .store_result(&call.id, serde_json::json!({"pin": "1234"}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = store
        .finish_attempt(
            &call.id,
            claimed.attempt,
            end(
                CallStatus::Completed,
                answered_at + Duration::milliseconds(61_500),
            ),
            Next::Final {
                status: CallStatus::Completed,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status, CallStatus::Completed);
    assert_eq!(done.result, Some(serde_json::json!({"pin": "1234"})));
    assert_eq!(done.sip_call_id.as_deref(), Some("abc@127.0.0.1"));
    let events = store
        .call_events("acme", &call.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(
        statuses(&events),
        vec!["queued", "dialing", "ringing", "in-progress", "completed"]
    );
    assert_eq!(events[4].attempt, Some(1));
    assert_eq!(events[2].cause.as_deref(), Some("now ringing"));
    // The CDR: one, billable 61.5 s rounded up to 62.
    let page = first_cdrs(store.as_ref(), Some("acme")).await;
    assert_eq!(page.cdrs.len(), 1);
    let cdr = &page.cdrs[0];
    assert_eq!(
        (cdr.attempt, cdr.billable_secs, cdr.disposition.as_str()),
        (1, 62, "completed")
    );
    assert_eq!(
        (cdr.node.as_deref(), cdr.core, cdr.sip_status),
        (Some("n"), Some(1), Some(200))
    );
    assert_eq!(cdr.ringing_at, Some(sqlite_truncate(at)));
    assert_eq!(cdr.to, call.to);
    // Ending twice keeps the first end.
    let again = store
        .finish_attempt(
            &call.id,
            1,
            end(CallStatus::Failed, at),
            Next::Final {
                status: CallStatus::Failed,
            },
        )
        .await;
    assert_eq!(again.map(|r| r.status).ok(), Some(CallStatus::Completed));
}

/// The first ten CDRs, of `tenant` or of every tenant.
async fn first_cdrs(store: &dyn CdrStore, tenant: Option<&str>) -> CdrPage {
    let query = CdrQuery {
        from: None,
        to: None,
        cursor: None,
        limit: 10,
    };
    store
        .cdrs(tenant.map(str::to_owned), query)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn sqlite_truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

#[tokio::test]
async fn a_retry_requeues_the_call_and_each_attempt_has_its_cdr() {
    let (_dir, store) = open_temp();
    let mut new = new_call("acme", 1);
    new.retry = RetryPolicy {
        max_attempts: 2,
        delay_secs: 60,
        on: vec![RetryOn::Busy],
    };
    new.status_callback = Some("http://127.0.0.1:9/hook".to_owned());
    let call = insert(store.as_ref(), new).await;
    let first = claim(store.as_ref(), "n", &call.id).await;
    let ended = OffsetDateTime::now_utc();
    let next = first
        .record
        .retry
        .next(CallStatus::Busy, first.attempt, ended, None);
    assert_eq!(
        next,
        Next::Retry {
            at: ended + Duration::seconds(60)
        }
    );
    let queued = store
        .finish_attempt(&call.id, 1, end(CallStatus::Busy, ended), next)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(queued.status, CallStatus::Queued);
    assert_eq!(
        queued.due_at,
        sqlite_truncate(ended + Duration::seconds(60))
    );
    assert_eq!((queued.attempts, queued.sip_status), (1, Some(486)));
    assert!(queued.ended_at.is_none());
    let pending = store.pending_calls("n").await.unwrap_or_default();
    assert_eq!(pending.len(), 1, "back in the queue");
    let second = claim(store.as_ref(), "n", &call.id).await;
    assert_eq!(second.attempt, 2);
    let next = second.record.retry.next(CallStatus::Busy, 2, ended, None);
    assert_eq!(
        next,
        Next::Final {
            status: CallStatus::Busy
        }
    );
    let done = store
        .finish_attempt(&call.id, 2, end(CallStatus::Busy, ended), next)
        .await;
    assert_eq!(
        done.map(|r| (r.status, r.attempts)).ok(),
        Some((CallStatus::Busy, 2))
    );
    let events = store
        .call_events("acme", &call.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(
        statuses(&events),
        vec!["queued", "dialing", "busy", "queued", "dialing", "busy"]
    );
    let page = first_cdrs(store.as_ref(), None).await;
    let attempts: Vec<_> = page
        .cdrs
        .iter()
        .map(|c| (c.attempt, c.disposition.as_str()))
        .collect();
    assert_eq!(attempts, vec![(1, "busy"), (2, "busy")]);
    // Webhooks: dialing, queued (retry), dialing, busy — each status change once.
    assert_eq!(
        webhook_statuses(store.as_ref()).await,
        vec!["dialing", "queued", "dialing", "busy"]
    );
}

/// The `status` of every webhook in the outbox, in the order they were written.
async fn webhook_statuses(store: &dyn OutboxStore) -> Vec<String> {
    let mut due = store
        .due_webhooks(
            OffsetDateTime::now_utc() + Duration::hours(1),
            100,
            Vec::new(),
        )
        .await
        .unwrap_or_default();
    due.sort_by_key(|o| o.seq);
    due.iter()
        .map(|o| {
            serde_json::from_str::<Value>(&o.body)
                .map(|v| v["status"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn only_the_status_changes_a_call_asked_for_reach_its_outbox() {
    let (_dir, store) = open_temp();
    let mut new = new_call("acme", 1);
    new.retry = RetryPolicy {
        max_attempts: 2,
        delay_secs: 60,
        on: vec![RetryOn::Busy],
    };
    new.status_callback = Some("http://127.0.0.1:9/hook".to_owned());
    new.status_callback_events =
        CallbackEvents::from_names(["queued", "final"]).unwrap_or_default();
    let call = insert(store.as_ref(), new).await;
    let stored = store.get_call("acme", &call.id).await.ok().flatten();
    assert_eq!(
        stored.map(|r| r.status_callback_events),
        Some(call.status_callback_events)
    );
    let ended = OffsetDateTime::now_utc();
    for attempt in 1..=2 {
        let claimed = claim(store.as_ref(), "n", &call.id).await;
        let next = claimed
            .record
            .retry
            .next(CallStatus::Busy, attempt, ended, None);
        store
            .finish_attempt(&call.id, attempt, end(CallStatus::Busy, ended), next)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Not the two `dialing`s; the body says which changes were asked for.
    assert_eq!(
        webhook_statuses(store.as_ref()).await,
        vec!["queued", "busy"]
    );
    let due = store
        .due_webhooks(
            OffsetDateTime::now_utc() + Duration::hours(1),
            1,
            Vec::new(),
        )
        .await
        .unwrap_or_default();
    let body: Value = due
        .first()
        .and_then(|o| serde_json::from_str(&o.body).ok())
        .unwrap_or_default();
    assert_eq!(
        body["status_callback_events"],
        serde_json::json!(["queued", "final"])
    );
}

#[tokio::test]
async fn cancel_only_touches_queued_calls_of_the_tenant() {
    let (_dir, store) = open_temp();
    let queued = insert(store.as_ref(), new_call("acme", 1)).await;
    let live = insert(store.as_ref(), new_call("acme", 2)).await;
    claim(store.as_ref(), "n", &live.id).await;
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.cancel_queued("other", &queued.id, now).await.ok(),
        Some(None)
    );
    let canceled = store
        .cancel_queued("acme", &queued.id, now)
        .await
        .ok()
        .flatten();
    assert_eq!(
        canceled.as_ref().map(|r| r.status),
        Some(CallStatus::Canceled)
    );
    assert!(canceled.is_some_and(|r| r.ended_at.is_some()));
    let still = store
        .cancel_queued("acme", &live.id, now)
        .await
        .ok()
        .flatten();
    assert_eq!(still.map(|r| r.status), Some(CallStatus::Dialing));
    let events = store
        .call_events("acme", &queued.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(statuses(&events), vec!["queued", "canceled"]);
}

#[tokio::test]
async fn recovery_fails_only_this_nodes_live_calls_with_webhook_and_cdr() {
    let (_dir, store) = open_temp();
    let mut mine = new_call("acme", 1);
    mine.status_callback = Some("http://127.0.0.1:9/hook".to_owned());
    let mine = insert(store.as_ref(), mine).await;
    let theirs = insert(store.as_ref(), new_call("acme", 2)).await;
    let waiting = insert(store.as_ref(), new_call("acme", 3)).await;
    claim(store.as_ref(), "node-a", &mine.id).await;
    claim(store.as_ref(), "node-b", &theirs.id).await;
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.recover_node("node-a", now).await.ok(), Some(1));
    let status = async |id: &str| {
        store
            .get_call("acme", id)
            .await
            .ok()
            .flatten()
            .map(|r| (r.status, r.reason))
    };
    assert_eq!(
        status(&mine.id).await,
        Some((CallStatus::Failed, Some(INTERRUPTED_REASON.to_owned())))
    );
    assert_eq!(
        status(&theirs.id).await.map(|s| s.0),
        Some(CallStatus::Dialing)
    );
    assert_eq!(
        status(&waiting.id).await.map(|s| s.0),
        Some(CallStatus::Queued)
    );
    let cdrs = first_cdrs(store.as_ref(), None).await;
    assert_eq!(cdrs.cdrs.len(), 1);
    assert_eq!(
        (
            cdrs.cdrs[0].call_id.as_str(),
            cdrs.cdrs[0].disposition.as_str()
        ),
        (mine.id.as_str(), "failed")
    );
    let due = store
        .due_webhooks(now + Duration::hours(1), 10, Vec::new())
        .await
        .unwrap_or_default();
    let last = due
        .last()
        .map(|o| serde_json::from_str::<Value>(&o.body).unwrap_or_default());
    assert_eq!(
        last.as_ref().map(|v| v["status"].clone()),
        Some(Value::from("failed")),
        "the final webhook waits in the outbox"
    );
    assert_eq!(
        store.recover_node("node-a", now).await.ok(),
        Some(0),
        "nothing left"
    );
}

#[tokio::test]
async fn idempotency_replays_the_same_request_and_refuses_another() {
    let (_dir, store) = open_temp();
    let key = |hash: &str| {
        Some(IdempotencyKey {
            key: "k1".to_owned(),
            request_sha256: hash.to_owned(),
        })
    };
    let now = t0();
    let batch = vec![new_call("acme", 1), new_call("acme", 2)];
    let first = store
        .create_calls("acme", batch.clone(), key("h1"), now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!first.replayed);
    let again = store
        .create_calls("acme", batch.clone(), key("h1"), now + Duration::hours(23))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.replayed);
    assert_eq!(again.records, first.records);
    let conflict = store
        .create_calls("acme", batch.clone(), key("h2"), now)
        .await;
    assert_eq!(
        conflict.err(),
        Some(StoreError::IdempotencyConflict("k1".to_owned()))
    );
    // Keys are per tenant.
    let other = store
        .create_calls("other", batch.clone(), key("h2"), now)
        .await;
    assert_eq!(other.map(|c| c.replayed).ok(), Some(false));
    // After 24 h the key is forgotten: a new request.
    let later = store
        .create_calls("acme", batch, key("h2"), now + Duration::hours(25))
        .await;
    assert_eq!(later.map(|c| c.replayed).ok(), Some(false));
    let unknown = store
        .create_calls("ghost", vec![new_call("ghost", 1)], None, now)
        .await;
    assert!(matches!(
        unknown,
        Err(StoreError::NotFound { what: "tenant", .. })
    ));
    let all = store
        .list_calls(
            "acme",
            ListQuery {
                status: None,
                limit: 100,
                before: None,
                ..ListQuery::default()
            },
        )
        .await;
    assert_eq!(all.map(|v| v.len()).ok(), Some(4));
}

#[tokio::test]
async fn ten_thousand_calls_are_one_transaction() {
    let (_dir, store) = open_temp();
    let before = store.commit_count();
    let batch: Vec<_> = (0..10_000).map(|n| new_call("acme", n)).collect();
    let created = store
        .create_calls("acme", batch, None, t0())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.records.len(), 10_000);
    assert_eq!(store.commit_count() - before, 1);
    assert_eq!(
        store.pending_calls("n").await.map(|p| p.len()).ok(),
        Some(10_000)
    );
}

#[tokio::test]
async fn tenants_and_keys_with_immediate_revocation() {
    let (_dir, store) = open_temp();
    let now = t0();
    let new = NewTenant {
        id: "newco".to_owned(),
        trunk: Some("sip:10.0.0.1:5060".to_owned()),
        caller_id: Some("+15550001".to_owned()),
        max_concurrent: Some(10),
    };
    let (tenant, secret) = store
        .add_tenant(new.clone(), now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        (
            tenant.trunk.as_deref(),
            tenant.max_concurrent,
            tenant.disabled
        ),
        (Some("sip:10.0.0.1:5060"), Some(10), false)
    );
    assert_eq!(
        store.tenant_webhook_secret("newco").await.ok(),
        Some(secret)
    );
    let dup = store.add_tenant(new, now).await;
    assert!(
        matches!(dup, Err(StoreError::AlreadyExists { .. })),
        "{dup:?}"
    );
    let bad = store
        .add_tenant(
            NewTenant {
                id: "Bad Id".to_owned(),
                ..NewTenant::default()
            },
            now,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    let nobody = store
        .create_key(
            NewApiKey {
                tenant: "ghost".to_owned(),
                scopes: vec![Scope::CallsRead],
                label: None,
            },
            now,
        )
        .await;
    assert!(
        matches!(nobody, Err(StoreError::NotFound { .. })),
        "{nobody:?}"
    );

    let (info, key) = store
        .create_key(
            NewApiKey {
                tenant: "newco".to_owned(),
                scopes: vec![Scope::CallsRead, Scope::CallsCreate],
                label: Some("crm".to_owned()),
            },
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(key.starts_with("od_") && info.id.starts_with("key_"));
    let who = store
        .authenticate(&key)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("key unknown"));
    assert_eq!(
        (
            who.tenant.as_str(),
            who.has(Scope::CallsCreate),
            who.has(Scope::Admin)
        ),
        ("newco", true, false)
    );
    assert_eq!(store.authenticate("od_wrong").await.ok(), Some(None));
    let keys = store
        .list_keys(Some("newco".to_owned()))
        .await
        .unwrap_or_default();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].label.as_deref(), Some("crm"));

    // Disabling the tenant stops the key at once; enabling it brings it back.
    store
        .set_tenant_disabled("newco", true, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.authenticate(&key).await.ok(), Some(None));
    store
        .set_tenant_disabled("newco", false, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(store.authenticate(&key).await.ok().flatten().is_some());
    // Revoking stops it at once, for good.
    let revoked = store
        .revoke_key(&info.id, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.authenticate(&key).await.ok(), Some(None));
    assert!(matches!(
        store.revoke_key("key_nope", now).await,
        Err(StoreError::NotFound { .. })
    ));
    let tenants = store.list_tenants().await.unwrap_or_default();
    assert_eq!(
        tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["acme", "newco", "other"]
    );
}

#[tokio::test]
async fn dev_tenant_key_has_every_scope_and_is_reused() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, store) = open_temp();
    let key = store
        .ensure_dev_tenant(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(key.starts_with(crate::auth::DEV_KEY_PREFIX));
    for file in [DEV_KEY_FILE, DEV_WEBHOOK_SECRET_FILE] {
        let mode = std::fs::metadata(dir.path().join(file))
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600), "{file}");
    }
    let who = store
        .authenticate(&key)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("unknown"));
    assert_eq!(who.tenant, DEV_TENANT);
    assert!(Scope::ALL.iter().all(|s| who.has(*s)));
    let again = store
        .ensure_dev_tenant(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, key);
    let secret_file = std::fs::read_to_string(dir.path().join(DEV_WEBHOOK_SECRET_FILE));
    let secret = store
        .tenant_webhook_secret(DEV_TENANT)
        .await
        .unwrap_or_default();
    assert_eq!(secret_file.ok().map(|s| s.trim().to_owned()), Some(secret));
}

#[tokio::test]
async fn cdr_pages_follow_the_cursor_and_the_time_range() {
    let (_dir, store) = open_temp();
    let mut ids = Vec::new();
    for n in 0..5 {
        let call = insert(store.as_ref(), new_call("acme", n)).await;
        claim(store.as_ref(), "n", &call.id).await;
        let at = t0() + Duration::minutes(i64::try_from(n).unwrap_or(0));
        store
            .finish_attempt(
                &call.id,
                1,
                end(CallStatus::NoAnswer, at),
                Next::Final {
                    status: CallStatus::NoAnswer,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ids.push(call.id);
    }
    let query = |cursor: Option<String>| CdrQuery {
        from: Some(t0() + Duration::minutes(1)),
        to: Some(t0() + Duration::minutes(4)),
        cursor,
        limit: 2,
    };
    let first = store
        .cdrs(Some("acme".to_owned()), query(None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<_> = first.cdrs.iter().map(|c| c.call_id.clone()).collect();
    assert_eq!(got, vec![ids[1].clone(), ids[2].clone()]);
    let second = store
        .cdrs(Some("acme".to_owned()), query(first.next.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<_> = second.cdrs.iter().map(|c| c.call_id.clone()).collect();
    assert_eq!(got, vec![ids[3].clone()], "minute 4 is outside [1, 4)");
    assert_eq!(second.next, None);
    assert_eq!(
        store
            .cdrs(Some("other".to_owned()), query(None))
            .await
            .map(|p| p.cdrs.len())
            .ok(),
        Some(0)
    );
    let bad = store.cdrs(None, query(Some("nope".to_owned()))).await;
    assert!(matches!(bad, Err(StoreError::InvalidCursor(_))), "{bad:?}");
    let csv = first.cdrs[0].csv_row();
    assert_eq!(csv.split(',').count(), Cdr::CSV_HEADER.split(',').count());
    assert!(csv.starts_with(&format!("{},1,acme,", ids[1])), "{csv}");
}

fn files(id: &str, names: &[&str]) -> NewFiles {
    NewFiles {
        id: id.to_owned(),
        files: names
            .iter()
            .map(|name| NewFile {
                name: (*name).to_owned(),
                content_type: "audio/wav".to_owned(),
                body: name.as_bytes().to_vec(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn calls_and_their_files_are_stored_together_or_not_at_all() {
    let (_dir, store) = open_temp();
    let id = "fil_00000000000000000000000001";
    let calls = vec![new_call("acme", 1), new_call("acme", 2)];
    let refused = store
        .create_calls_with_files(
            "acme",
            calls.clone(),
            Some(files(id, &["a.wav", "a.wav"])),
            None,
            t0(),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let listed = store
        .list_calls(
            "acme",
            ListQuery {
                limit: 10,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap_or_default();
    assert!(listed.is_empty(), "a failed file left its calls behind");
    assert_eq!(store.request_file(id, "a.wav").await.ok().flatten(), None);

    let created = store
        .create_calls_with_files(
            "acme",
            calls,
            Some(files(id, &["a.wav", "b.wav"])),
            None,
            t0(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let file = store.request_file(id, "b.wav").await.ok().flatten();
    assert_eq!(file.map(|f| f.body), Some(b"b.wav".to_vec()));
    // Served while any call of the request can still run.
    let first = &created.records[0].id;
    let _ = store.cancel_queued("acme", first, t0()).await;
    assert!(
        store
            .request_file(id, "a.wav")
            .await
            .ok()
            .flatten()
            .is_some()
    );
    let second = &created.records[1].id;
    let _ = store.cancel_queued("acme", second, t0()).await;
    assert_eq!(store.request_file(id, "a.wav").await.ok().flatten(), None);
}

#[tokio::test]
async fn an_attempts_media_is_kept_with_its_cdr() {
    let (_dir, store) = open_temp();
    let media = MediaSummary {
        packets_sent: 1500,
        packets_received: 1490,
        packets_lost: 10,
        jitter_us: 1_250,
        max_jitter_us: 4_000,
        sent_late_2ms: 3,
        dropped_foreign: 2,
        round_trip_us: Some(41_000),
    };
    let ended = OffsetDateTime::now_utc();
    for (n, with) in [(1, Some(media)), (2, None)] {
        let call = insert(store.as_ref(), new_call("acme", n)).await;
        let claimed = claim(store.as_ref(), "n", &call.id).await;
        let next = claimed
            .record
            .retry
            .next(CallStatus::Completed, 1, ended, None);
        let mut end = end(CallStatus::Completed, ended);
        end.media = with;
        store
            .finish_attempt(&call.id, 1, end, next)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let page = first_cdrs(store.as_ref(), None).await;
    let kept: Vec<_> = page.cdrs.iter().map(|c| c.media).collect();
    assert_eq!(kept, vec![Some(media), None]);
    // CSV: the same columns as the header, the media's last; empty without media.
    let columns = Cdr::CSV_HEADER.split(',').count();
    let rows: Vec<String> = page.cdrs.iter().map(Cdr::csv_row).collect();
    assert!(
        rows.iter().all(|r| r.split(',').count() == columns),
        "{rows:?}"
    );
    assert!(
        rows[0].ends_with(",1500,1490,10,1250,4000,3,2,41000,,"),
        "{}",
        rows[0]
    );
    assert!(rows[1].ends_with(",,,,,,,,,,"), "{}", rows[1]);
    let json = serde_json::to_value(&page.cdrs[0]).unwrap_or_default();
    assert_eq!(json["media"]["packets_lost"], 10);
    assert_eq!(json["media"]["round_trip_us"], 41_000);
    assert!(serde_json::to_value(&page.cdrs[1]).unwrap_or_default()["media"].is_null());
}

#[tokio::test]
async fn who_answered_is_kept_on_the_call_its_attempt_cdr_and_history() {
    let (_dir, store) = open_temp();
    let mut new = new_call("acme", 1);
    new.machine_detection = crate::model::MachineDetection::WaitForBeep;
    let call = insert(store.as_ref(), new).await;
    assert_eq!(
        call.machine_detection,
        crate::model::MachineDetection::WaitForBeep
    );
    claim(store.as_ref(), "n", &call.id).await;
    let now = OffsetDateTime::now_utc();
    let verdict = |by: &str| AnsweredBy {
        answered_by: by.to_owned(),
        decided_ms: 1_620,
        at: now,
        cause: format!("answered by {by}"),
    };
    // Before the answer a verdict changes nothing (the call is not in progress).
    let early = store
        .record_answered_by(&call.id, 1, verdict("human"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(early.answered_by, None);
    store
        .record_transition(&call.id, 1, transition(CallStatus::InProgress, now))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = store
        .record_answered_by(&call.id, 1, verdict("machine"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record.answered_by.as_deref(), Some("machine"));
    let json = serde_json::to_value(&record).unwrap_or_default();
    assert_eq!(json["answered_by"], "machine");
    assert_eq!(json["machine_detection"], "wait_for_beep");
    let fetched = store.get_call("acme", &call.id).await.ok().flatten();
    assert_eq!(fetched.map(|r| r.answered_by), Some(Some("machine".into())));
    let events = store
        .call_events("acme", &call.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e.cause.as_deref() == Some("answered by machine")),
        "{events:?}"
    );
    let next = record.retry.next(CallStatus::Completed, 1, now, None);
    store
        .finish_attempt(&call.id, 1, end(CallStatus::Completed, now), next)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let page = first_cdrs(store.as_ref(), None).await;
    assert_eq!(page.cdrs[0].answered_by.as_deref(), Some("machine"));
    assert_eq!(page.cdrs[0].machine_decided_ms, Some(1_620));
    assert!(page.cdrs[0].csv_row().ends_with(",machine,1620"));
    // A new attempt starts unclassified.
    let mut again = new_call("acme", 2);
    again.retry = RetryPolicy {
        max_attempts: 2,
        delay_secs: 0,
        on: vec![RetryOn::Busy],
    };
    let call = insert(store.as_ref(), again).await;
    claim(store.as_ref(), "n", &call.id).await;
    store
        .record_transition(&call.id, 1, transition(CallStatus::InProgress, now))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = store
        .record_answered_by(&call.id, 1, verdict("human"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let next = record.retry.next(CallStatus::Busy, 1, now, None);
    store
        .finish_attempt(&call.id, 1, end(CallStatus::Busy, now), next)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = claim(store.as_ref(), "n", &call.id).await;
    assert_eq!(second.record.answered_by, None);
}

#[tokio::test]
async fn an_incoming_call_is_stored_claimed_and_never_queued_for_dialling() {
    let (_dir, store) = open_temp();
    let mut new = new_call("acme", 7);
    new.direction = crate::model::Direction::Inbound;
    new.to = "+15550100".to_owned();
    let now = t0();
    let claimed = store
        .take_incoming("node-a", new, now + Duration::seconds(60), now)
        .await
        .expect("stored");
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.record.status, CallStatus::Dialing);
    assert_eq!(claimed.record.direction, crate::model::Direction::Inbound);
    let got = store
        .get_call("acme", &claimed.record.id)
        .await
        .ok()
        .flatten()
        .expect("readable");
    assert_eq!(got.direction, crate::model::Direction::Inbound);
    assert_eq!(
        serde_json::to_value(&got)
            .ok()
            .map(|v| v["direction"].clone()),
        Some(Value::from("inbound"))
    );
    let pending = store.pending_calls("node-a").await.expect("pending");
    assert!(
        pending.is_empty(),
        "an incoming call is never queued: {pending:?}"
    );
    let events = store
        .call_events("acme", &claimed.record.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(statuses(&events), ["queued", "dialing"]);
    // A node that stops mid-call fails it at restart, as any live call; it is not retried.
    assert_eq!(store.recover_node("node-a", now).await.ok(), Some(1));
    let after = store
        .get_call("acme", &claimed.record.id)
        .await
        .ok()
        .flatten();
    assert_eq!(after.map(|r| r.status), Some(CallStatus::Failed));
    // An outbound call's record says so.
    let outbound = insert(store.as_ref(), new_call("acme", 8)).await;
    assert_eq!(outbound.direction, crate::model::Direction::Outbound);
}

#[tokio::test]
async fn early_media_is_kept_with_the_call_and_noted_in_its_history_without_a_webhook() {
    let (_dir, store) = open_temp();
    let mut new = new_call("acme", 1);
    new.early_media = true;
    new.status_callback = Some("http://127.0.0.1:9/hook".into());
    let call = insert(store.as_ref(), new).await;
    assert!(call.early_media);
    let json = serde_json::to_value(&call).unwrap_or_default();
    assert_eq!(json["early_media"], true);
    let plain = insert(store.as_ref(), new_call("acme", 2)).await;
    let json = serde_json::to_value(&plain).unwrap_or_default();
    assert!(json.get("early_media").is_none(), "omitted when false");
    claim(store.as_ref(), "n", &call.id).await;
    let now = OffsetDateTime::now_utc();
    store
        .record_transition(&call.id, 1, transition(CallStatus::Ringing, now))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    async fn hooks(store: &dyn OutboxStore, at: OffsetDateTime) -> usize {
        store
            .due_webhooks(at, 100, Vec::new())
            .await
            .unwrap_or_default()
            .len()
    }
    let later = now + Duration::hours(1);
    let before = hooks(store.as_ref(), later).await;
    store
        .record_early_media(&call.id, 1, now, "early media from 183")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A report for another attempt changes nothing.
    store
        .record_early_media(&call.id, 2, now, "early media from 183")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hooks(store.as_ref(), later).await, before, "no webhook");
    let fetched = store.get_call("acme", &call.id).await.ok().flatten();
    assert_eq!(
        fetched.as_ref().map(|r| r.status),
        Some(CallStatus::Ringing)
    );
    assert_eq!(fetched.map(|r| r.early_media), Some(true));
    store
        .record_transition(&call.id, 1, transition(CallStatus::InProgress, now))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // After the answer it is no news.
    store
        .record_early_media(&call.id, 1, now, "early media from 183")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = store
        .call_events("acme", &call.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let early: Vec<_> = events
        .iter()
        .filter(|e| e.cause.as_deref() == Some("early media from 183"))
        .map(|e| (e.status, e.attempt))
        .collect();
    assert_eq!(early, [(CallStatus::Ringing, Some(1))], "{events:?}");
}
