//! Requests carriers send, end to end against the real binary and SIPp: a call placed at its
//! `at`, expired past its `not_after`, retried by outcome, ordered by priority; idempotent
//! creates; batches.

use std::time::Duration;

use outdial_tests::{Outdial, Sipp, sip_invites};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const APP: &str = "http://127.0.0.1:9/app.vxml";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format time")
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("a time"), &Rfc3339).expect("RFC 3339")
}

async fn post(
    outdial: &Outdial,
    path: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Value, bool) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", outdial.api))
        .bearer_auth(&outdial.api_key)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, response.json().await.expect("JSON"), replayed)
}

async fn events(outdial: &Outdial, id: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/v1/calls/{id}/events", outdial.api))
        .bearer_auth(&outdial.api_key)
        .send()
        .await
        .expect("GET events")
        .json()
        .await
        .expect("JSON");
    body["events"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|e| e["status"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_callee_is_redialled_by_the_retry_policy_each_attempt_its_own() {
    let sipp = Sipp::uas_calls("busy.xml", &[], 2);
    let outdial = Outdial::start("");
    let to = sipp.uri("+15550101");
    let (status, created, _) = post(
        &outdial,
        "/v1/calls",
        &json!({"to": to, "url": APP, "retry": {"max_attempts": 2, "delay_secs": 10, "on": ["busy"]}}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let call = outdial.wait_final(id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "busy", "{call}");
    assert_eq!(call["attempts"], 2, "{call}");
    let (_, trace) = sipp.finish(Duration::from_secs(10)).await;
    let dials = sip_invites(&trace);
    assert_eq!(dials.len(), 2, "two attempts, two INVITEs: {dials:?}");
    assert!(dials.iter().all(|(uri, _)| *uri == to), "{dials:?}");
    assert_ne!(dials[0].1, dials[1].1, "each attempt is its own SIP call");
    assert_eq!(
        call["sip_call_id"].as_str(),
        Some(dials[1].1.as_str()),
        "the record carries the last attempt's Call-ID: {call}"
    );
    let statuses = events(&outdial, id).await;
    assert_eq!(
        statuses.iter().filter(|s| *s == "dialing").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("busy"),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_call_is_not_dialled_before_its_time() {
    let sipp = Sipp::uas("busy.xml", &[]);
    let outdial = Outdial::start("");
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let (status, created, _) = post(
        &outdial,
        "/v1/calls",
        &json!({"to": sipp.uri("+15550102"), "url": APP, "at": rfc3339(at)}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "queued");
    let id = created["id"].as_str().expect("id");
    let call = outdial.wait_final(id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "busy", "{call}");
    assert!(
        time_of(&call["dialed_at"]) >= at,
        "dialled before its time: {call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_still_waiting_at_not_after_expires_undialled_and_priority_orders_the_rest() {
    // One slot, held by a call that rings for 8 s; three calls wait behind it.
    let ringing = Sipp::uas("ring_forever.xml", &[]);
    let busy = Sipp::uas_calls("busy.xml", &[], 2);
    let outdial = Outdial::start("[calls]\nmax_concurrent = 1\nring_timeout_secs = 8\n");
    let (status, blocker, _) = post(
        &outdial,
        "/v1/calls",
        &json!({"to": ringing.uri("+15550103"), "url": APP}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{blocker}");
    let blocker = blocker["id"].as_str().expect("id").to_owned();
    outdial.wait_status(&blocker, "ringing", CALL_TIMEOUT).await;

    let not_after = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let expiring = json!({"to": busy.uri("+15550104"), "url": APP, "priority": 9,
        "not_after": rfc3339(not_after)});
    let low = json!({"to": busy.uri("+15550105"), "url": APP, "priority": 1});
    let high = json!({"to": busy.uri("+15550106"), "url": APP, "priority": 8});
    let mut ids = Vec::new();
    for body in [&expiring, &low, &high] {
        let (status, created, _) = post(&outdial, "/v1/calls", body, None).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let expired = outdial.wait_final(&ids[0], CALL_TIMEOUT).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert!(expired["dialed_at"].is_null(), "{expired}");
    let low = outdial.wait_final(&ids[1], CALL_TIMEOUT).await;
    let high = outdial.wait_final(&ids[2], CALL_TIMEOUT).await;
    assert_eq!(
        (low["status"].as_str(), high["status"].as_str()),
        (Some("busy"), Some("busy"))
    );
    assert!(
        time_of(&high["dialed_at"]) < time_of(&low["dialed_at"]),
        "priority 8 must leave before priority 1, though it came later:\n{high}\n{low}"
    );
    let (_, trace) = busy.finish(Duration::from_secs(10)).await;
    assert!(
        !sip_invites(&trace)
            .iter()
            .any(|(uri, _)| uri.contains("+15550104")),
        "the expired call was dialled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_answer_and_refuses_another_body() {
    let outdial = Outdial::start("[calls]\nmax_concurrent = 1\n");
    let later = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let body = json!({"to": "sip:+15550107@127.0.0.1:9", "url": APP, "at": later});
    let (s1, first, replayed1) = post(&outdial, "/v1/calls", &body, Some("order-77")).await;
    let (s2, second, replayed2) = post(&outdial, "/v1/calls", &body, Some("order-77")).await;
    assert_eq!((s1, s2), (201, 201), "{first}\n{second}");
    assert_eq!(
        first["id"], second["id"],
        "a retried create must not place a second call"
    );
    assert!(!replayed1 && replayed2);
    let mut other = body.clone();
    other["priority"] = json!(9);
    let (s3, refused, _) = post(&outdial, "/v1/calls", &other, Some("order-77")).await;
    assert_eq!(s3, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_conflict");
    let (s4, _, replayed4) = post(&outdial, "/v1/calls", &body, Some("order-78")).await;
    assert_eq!(s4, 201);
    assert!(!replayed4, "a new key is a new call");

    // The operator's view: the embedded node, its cores and capacity, two calls waiting.
    let nodes: Value = reqwest::Client::new()
        .get(format!("{}/v1/nodes", outdial.api))
        .bearer_auth(&outdial.api_key)
        .send()
        .await
        .expect("GET /v1/nodes")
        .json()
        .await
        .expect("JSON");
    assert_eq!(nodes["nodes"][0]["node"], "embedded", "{nodes}");
    assert_eq!(nodes["nodes"][0]["capacity"], 1, "{nodes}");
    assert!(
        nodes["nodes"][0]["cores"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{nodes}"
    );
    assert_eq!(
        nodes["queued"], 2,
        "the two calls due in an hour wait: {nodes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_all_or_nothing_or_per_item() {
    let outdial = Outdial::start("");
    let later = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let good =
        |n: u32| json!({"to": format!("sip:+1555{n:07}@127.0.0.1:9"), "url": APP, "at": later});
    let bad = json!({"to": "sip:x@127.0.0.1:9?Subject=hi", "url": APP});

    let (status, refused, _) = post(
        &outdial,
        "/v1/calls/batch",
        &json!({"calls": [good(1), bad, good(2)]}),
        None,
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "calls[1].to", "{refused}");
    assert_eq!(refused["error"]["rule"], "sip_uri", "{refused}");
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/v1/calls", outdial.api))
        .bearer_auth(&outdial.api_key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        listed["calls"].as_array().map(Vec::len),
        Some(0),
        "nothing stored: {listed}"
    );

    let (status, results, _) = post(
        &outdial,
        "/v1/calls/batch",
        &json!({"mode": "per_item", "calls": [good(3), bad, good(4)]}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(
        (results["created"].as_u64(), results["refused"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(results["results"][1]["error"]["field"], "calls[1].to");
    assert_eq!(results["results"][2]["call"]["status"], "queued");

    let many: Vec<Value> = (10..1010).map(good).collect();
    let (status, created, _) =
        post(&outdial, "/v1/calls/batch", &json!({"calls": many}), None).await;
    assert_eq!(status, 201);
    let ids: std::collections::HashSet<&str> = created["calls"]
        .as_array()
        .map(|all| all.iter().filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 1000, "a thousand calls, each its own id");
}
