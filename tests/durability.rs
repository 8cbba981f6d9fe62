//! Durability: `kill -9` with thousands of requests in flight.
//!
//! Every request the API acknowledged (201) must be present after the restart and reach
//! exactly one final status; its final webhook must arrive; and no callee may be dialled twice
//! (each call has its own callee URI, so two INVITEs with different Call-IDs to one URI would
//! be a second dial).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outdial_tests::{AppServer, FINAL_STATUSES, Outdial, Sipp, is_final, sip_invites};
use serde_json::{Value, json};

/// Requests sent in all.
const REQUESTS: usize = 2000;

/// Concurrent clients.
const CLIENTS: usize = 32;

/// The server is killed once this many requests were acknowledged.
const KILL_AFTER: usize = 700;

#[test]
fn the_invite_parser_reads_uri_and_call_id() {
    let trace =
        "x\nINVITE sip:+1@h:5 SIP/2.0\r\nVia: v\r\nCall-ID: abc@h\r\n\nSIP/2.0 486\nCall-ID: zzz\n";
    assert_eq!(
        sip_invites(trace),
        [("sip:+1@h:5".to_owned(), "abc@h".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_requests_in_flight_loses_nothing_and_dials_nobody_twice() {
    let sipp = Sipp::uas_calls("busy.xml", &[], REQUESTS as u32);
    let hooks = AppServer::start().await;
    hooks.route("/hook", 200, "text/plain", "ok");
    let mut outdial = Outdial::start(
        "[calls]\nmax_concurrent = 400\n\n[scheduler]\ncalls_per_second = 400\nburst = 100\n",
    );
    let client = reqwest::Client::new();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, acknowledged, next) = (client.clone(), acknowledged.clone(), next.clone());
        let (api, key) = (outdial.api.clone(), outdial.api_key.clone());
        let (sipp_addr, hook) = (sipp.addr, hooks.url("/hook"));
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= REQUESTS {
                    return;
                }
                let body = json!({
                    "to": format!("sip:+1555{i:07}@{sipp_addr}"),
                    "url": "http://127.0.0.1:9/app.vxml",
                    "status_callback": hook,
                });
                let sent = client
                    .post(format!("{api}/v1/calls"))
                    .bearer_auth(&key)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                // A connection refused or reset is a request never acknowledged: fine.
                let Ok(response) = sent else { continue };
                if response.status().as_u16() != 201 {
                    continue;
                }
                let Ok(record) = response.json::<Value>().await else {
                    continue;
                };
                if let Some(id) = record["id"].as_str() {
                    acknowledged.lock().expect("ids").push(id.to_owned());
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().expect("ids").len() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the server did not acknowledge {KILL_AFTER} requests"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL mid-stream, then start again on the same data.
    outdial.restart();
    for client in clients {
        client.await.expect("client task");
    }
    let acknowledged = acknowledged.lock().expect("ids").clone();
    assert!(acknowledged.len() >= KILL_AFTER, "{}", acknowledged.len());

    // Every acknowledged call exists and reaches a final status, with exactly one final event.
    let deadline = Instant::now() + Duration::from_secs(240);
    for id in &acknowledged {
        let call = loop {
            let call = outdial.get_call(id).await;
            if is_final(&call) {
                break call;
            }
            assert!(
                call["id"] == *id.as_str(),
                "acknowledged call {id} lost after kill -9: {call}"
            );
            assert!(
                Instant::now() < deadline,
                "call {id} not final: {call}\n{}",
                outdial.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let events: Value = client
            .get(format!("{}/v1/calls/{id}/events", outdial.api))
            .bearer_auth(&outdial.api_key)
            .send()
            .await
            .expect("GET events")
            .json()
            .await
            .expect("events JSON");
        let finals = events["events"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|e| {
                        e["status"]
                            .as_str()
                            .is_some_and(|s| FINAL_STATUSES.contains(&s))
                    })
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(finals, 1, "call {id}: {call}\nevents: {events}");
    }

    // Every acknowledged call's final webhook arrives (after the restart for those the crash
    // interrupted).
    let wanted: HashSet<&str> = acknowledged.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut finals: HashSet<String> = HashSet::new();
        for received in hooks.received() {
            let Ok(record) = serde_json::from_slice::<Value>(&received.body_bytes) else {
                continue;
            };
            if record["status"]
                .as_str()
                .is_some_and(|s| FINAL_STATUSES.contains(&s))
                && let Some(id) = record["id"].as_str()
            {
                finals.insert(id.to_owned());
            }
        }
        let missing: Vec<&&str> = wanted.iter().filter(|id| !finals.contains(**id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged calls never got their final webhook, e.g. {:?}",
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nobody dialled twice: one Call-ID per callee URI.
    let trace = sipp.trace().replace('\r', "");
    let mut dials: HashMap<String, HashSet<String>> = HashMap::new();
    for (uri, call_id) in sip_invites(&trace) {
        dials.entry(uri).or_default().insert(call_id);
    }
    assert!(
        !dials.is_empty(),
        "SIPp saw no INVITE:\n{}",
        &trace[..trace.len().min(2000)]
    );
    let twice: Vec<_> = dials.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "callees dialled twice: {twice:?}");
}
