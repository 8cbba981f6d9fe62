//! The policy store contract against SQLite: tenant policies, callee records, opt-outs, the
//! facts the scheduler reads, and deferrals and refusals in a call's history.

use time::OffsetDateTime;

use super::testing::{claim, insert, new_call, open_temp};
use super::*;
use crate::policy::{CalleeRecord, Owner, Refusal, RequesterPolicy, Schedule};

fn note(code: &'static str, rule: &'static str) -> PolicyNote {
    PolicyNote::from(&Refusal::new(code, Owner::Callee, rule, "a test rule"))
}

#[tokio::test]
async fn tenant_policies_default_round_trip_and_need_a_tenant() {
    let (_dir, store) = open_temp();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.tenant_policy("acme").await.ok(),
        Some(RequesterPolicy::default())
    );
    let policy = RequesterPolicy {
        calling_hours: Schedule::parse(&["mon-fri 09:00-18:00"]).expect("hours"),
        deny_prefixes: vec!["+1900".to_owned()],
        calls_per_second: 3,
        ..RequesterPolicy::default()
    };
    let missing = store.set_tenant_policy("nobody", policy.clone(), now).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    store
        .set_tenant_policy("acme", policy.clone(), now)
        .await
        .expect("set");
    assert_eq!(store.tenant_policy("acme").await.ok(), Some(policy.clone()));
    let all = store.tenant_policies().await.expect("list");
    assert_eq!(all, vec![("acme".to_owned(), policy)]);
}

#[tokio::test]
async fn opt_outs_accumulate_per_tenant_and_lift_one_at_a_time() {
    let (_dir, store) = open_temp();
    let now = OffsetDateTime::now_utc();
    let number = "+15550100";
    let scope = |t: &str| OptOutScope::Tenant(t.to_owned());
    store
        .set_opt_out(number, scope("a"), true, now)
        .await
        .expect("a");
    let record = store
        .set_opt_out(number, scope("b"), true, now)
        .await
        .expect("b");
    assert_eq!(record.opt_out.tenants, vec!["a".to_owned(), "b".to_owned()]);
    let again = store
        .set_opt_out(number, scope("a"), true, now)
        .await
        .expect("a again");
    assert_eq!(again.opt_out.tenants.len(), 2, "no duplicate");
    let lifted = store
        .set_opt_out(number, scope("a"), false, now)
        .await
        .expect("lift");
    assert_eq!(lifted.opt_out.tenants, vec!["b".to_owned()]);
    store
        .set_opt_out(number, OptOutScope::All, true, now)
        .await
        .expect("all");
    let stored = store.callee(number).await.expect("read").expect("record");
    assert!(stored.opt_out.all && stored.opt_out.refuses("anyone"));
    assert!(store.delete_callee(number).await.expect("delete"));
    assert_eq!(store.callee(number).await.ok(), Some(None));
    assert!(!store.delete_callee(number).await.expect("delete twice"));
}

#[tokio::test]
async fn dispatch_facts_count_the_calls_placed_to_a_capped_callee() {
    let (_dir, store) = open_temp();
    let now = OffsetDateTime::now_utc();
    let first = insert(store.as_ref(), new_call("acme", 1)).await;
    let second = insert(store.as_ref(), new_call("acme", 1)).await;
    let _other = insert(store.as_ref(), new_call("acme", 2)).await;
    claim(store.as_ref(), "n", &first.id).await;
    claim(store.as_ref(), "n", &second.id).await;
    let capped = CalleeRecord {
        max_calls: Some(2),
        period_secs: 3600,
        ..CalleeRecord::default()
    };
    store
        .put_callee(&first.to, capped.clone(), now)
        .await
        .expect("put");
    let facts = store
        .dispatch_facts(
            vec!["acme".to_owned()],
            vec![first.to.clone(), "sip:callee2@127.0.0.1".to_owned()],
            now + time::Duration::SECOND,
        )
        .await
        .expect("facts");
    let (record, history) = facts.callees.get(&first.to).expect("the capped callee");
    assert_eq!(record, &capped);
    assert_eq!(history.placed, 2);
    assert!(
        history
            .oldest
            .is_some_and(|t| t <= OffsetDateTime::now_utc())
    );
    assert!(
        !facts.callees.contains_key("sip:callee2@127.0.0.1"),
        "no record"
    );
    assert_eq!(
        facts.policies.get("acme"),
        Some(&RequesterPolicy::default())
    );
    // An hour and more later the calls are out of the period.
    let later = store
        .dispatch_facts(
            vec![],
            vec![first.to.clone()],
            now + time::Duration::hours(2),
        )
        .await
        .expect("facts");
    assert_eq!(later.callees[&first.to].1.placed, 0);
}

#[tokio::test]
async fn deferral_and_refusal_are_in_the_history_with_owner_and_rule() {
    let (_dir, store) = open_temp();
    let now = OffsetDateTime::now_utc();
    let call = insert(store.as_ref(), new_call("acme", 1)).await;
    let until = now + time::Duration::hours(3);
    let deferred = store
        .defer_call(
            &call.id,
            until,
            note("quiet_hours", "callee.quiet_hours"),
            now,
        )
        .await
        .expect("defer")
        .expect("queued");
    assert_eq!(deferred.status, CallStatus::Queued);
    assert_eq!(
        unix_micros(deferred.due_at) / 1_000_000,
        until.unix_timestamp()
    );
    let pending = store.pending_calls("n").await.expect("pending");
    assert_eq!(pending[0].to, call.to, "the scheduler learns who is called");
    let refused = store
        .refuse_call(&call.id, note("opted_out", "callee.opt_out"), now)
        .await
        .expect("refuse")
        .expect("was queued");
    assert_eq!(refused.status, CallStatus::Refused);
    assert!(
        refused
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("refused: "))
    );
    let events = store
        .call_events("acme", &call.id)
        .await
        .expect("events")
        .expect("call");
    let tail: Vec<_> = events
        .iter()
        .skip(1)
        .map(|e| (e.status.as_str(), e.owner.as_deref(), e.rule.as_deref()))
        .collect();
    assert_eq!(
        tail,
        vec![
            ("queued", Some("callee"), Some("callee.quiet_hours")),
            ("refused", Some("callee"), Some("callee.opt_out")),
        ]
    );
    // A call no longer queued is neither deferred nor refused again.
    let again = store
        .defer_call(
            &call.id,
            until,
            note("quiet_hours", "callee.quiet_hours"),
            now,
        )
        .await
        .expect("defer");
    assert_eq!(again, None);
}
