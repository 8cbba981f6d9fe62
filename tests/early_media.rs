//! Early media end to end: SIPp answers our INVITE with `183 Session Progress` and SDP, and
//! presses a key (RFC 4733) before it answers. A request with `early_media` starts its
//! VoiceXML application on the 183, so the key is gathered and submitted before the answer;
//! the call then ends as the callee decides: answered (and hung up by the callee), or
//! `486 Busy Here` (busy, never answered).

use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, dtmf_pcap, form_pairs};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The reminder application (confirm or cancel by key).
const REMINDER: &str = include_str!("apps/reminder.vxml");

/// After the submit: waits quietly for the call's end (no `<disconnect/>`, which would
/// cancel a call not answered yet).
const WAIT: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <property name="timeout" value="30s"/>
  <form><field name="more" type="digits"><prompt>Thank you.</prompt>
    <noinput><disconnect/></noinput></field></form>
</vxml>
"#;

fn scenario_keys() -> [(&'static str, String); 3] {
    [
        ("DTMF_PCAP", dtmf_pcap("1")),
        ("DTMF_DELAY_MS", "2500".into()),
        ("FINAL_AFTER_MS", "4000".into()),
    ]
}

async fn history(outdial: &Outdial, id: &str) -> Vec<(String, String)> {
    let (status, events) = outdial
        .request(
            &outdial.api_key,
            reqwest::Method::GET,
            &format!("/v1/calls/{id}/events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    events["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                    (text(&e["status"]), text(&e["cause"]))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn submits(app: &AppServer) -> Vec<Vec<(String, String)>> {
    app.received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .map(|r| form_pairs(&r.body))
        .collect()
}

/// (a) The application starts on the 183, gathers the key and submits it before the 200;
/// the 200 repeats the 183's SDP, so the media goes on; the callee hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_starts_on_early_media_and_gathers_a_key_before_the_answer() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", WAIT);
    app.route("/status", 200, "text/plain", "");
    let sipp = Sipp::uas("early_media_answer.xml", &scenario_keys());
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550001"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
            "status_callback": app.url("/status"),
            "early_media": true,
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["early_media"], true, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(
        sipp_status.success(),
        "SIPp's early-media scenario failed:\n{trace}\n{}",
        outdial.log()
    );
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["sip_status"], 200, "{call}");
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    assert_eq!(
        submits(&app),
        [vec![("confirm".to_owned(), "true".to_owned())]]
    );
    // Early media was noted under `ringing`, before the answer (the key came 4 s before
    // the 200; the busy test below shows the application needs no answer to gather it).
    let events = history(&outdial, &id).await;
    let early = events
        .iter()
        .position(|(_, cause)| cause == "early media from 183");
    let answered = events
        .iter()
        .position(|(status, _)| status == "in-progress");
    assert!(
        early.is_some() && early < answered,
        "early media noted before the answer: {events:?}"
    );
    assert_eq!(events[early.unwrap_or_default()].0, "ringing", "{events:?}");
    // Webhooks: one per status, no extra one for early media. Deliveries are independent
    // (a receiver orders them by status and time: see control/src/webhook.rs), so they are
    // compared in the order of the call's life, not in the order they arrived.
    let hooks = || -> Vec<String> {
        let life = ["queued", "dialing", "ringing", "in-progress", "completed"];
        let mut statuses: Vec<String> = app
            .received()
            .into_iter()
            .filter(|r| r.path == "/status")
            .map(|r| {
                serde_json::from_str::<Value>(&r.body).unwrap_or_default()["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        statuses.sort_by_key(|s| life.iter().position(|l| l == s).unwrap_or(life.len()));
        statuses
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !hooks().iter().any(|s| s == "completed") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        hooks(),
        ["dialing", "ringing", "in-progress", "completed"],
        "{}",
        outdial.log()
    );
    // The CDR's media counts from the 183 on: the prompt and the key came before the 200.
    let (status, cdrs) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/cdrs", None)
        .await;
    assert_eq!(status, 200, "{cdrs}");
    let media = &cdrs["cdrs"][0]["media"];
    assert!(media["packets_sent"].as_u64() > Some(250), "{cdrs}");
    assert!(media["packets_received"].as_u64() > Some(0), "{cdrs}");
    assert_eq!(media["dropped_foreign"], 0, "{cdrs}");
}

/// (b) The callee plays early media, takes the key, then refuses the call `486`: the
/// application had started and submitted the key; the call ends `busy`, never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_busy_after_early_media_ends_busy_after_the_application_ran() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", WAIT);
    let sipp = Sipp::uas("early_media_busy.xml", &scenario_keys());
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550001"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
            "early_media": true,
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}\n{}", outdial.log());
    assert_eq!(call["status"], "busy", "{call}\n{}", outdial.log());
    assert_eq!(call["sip_status"], 486, "{call}");
    assert!(call["answered_at"].is_null(), "never answered: {call}");
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    assert_eq!(
        submits(&app),
        [vec![("confirm".to_owned(), "true".to_owned())]]
    );
}

/// Without `early_media` the application waits for the answer: a 183 with SDP then 486
/// runs nothing, and the history still notes the early media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_early_media_the_application_waits_for_the_answer() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", WAIT);
    let sipp = Sipp::uas("early_media_busy.xml", &scenario_keys());
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550001"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("early_media").is_none(), "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}\n{}", outdial.log());
    assert_eq!(call["status"], "busy", "{call}");
    assert!(call["result"].is_null(), "{call}");
    assert!(
        !app.received().iter().any(|r| r.path == "/app.vxml"),
        "the application was not fetched"
    );
    let events = history(&outdial, &id).await;
    assert!(
        events
            .iter()
            .any(|(status, cause)| status == "ringing" && cause == "early media from 183"),
        "{events:?}"
    );
}
