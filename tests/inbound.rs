//! Incoming calls end to end: a SIPp UAC calls the real `outdial serve` from an allowed
//! source; the number's `[[inbound]]` application answers, hears the caller's key and submits
//! it, and the call is recorded like an outbound one (status, history, webhook, CDR) with
//! `direction = inbound`. Numbers without an entry, and a full node, are refused. A number
//! with `early_media` plays its application on a 183 and answers after the caller's key.

use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, dtmf_pcap, form_pairs};
use serde_json::Value;

const INBOUND_APP: &str = include_str!("apps/inbound.vxml");

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A menu whose prompt (with barge-in) lasts 20 s: on early media the caller's key stops
/// it, and only then may the call be answered.
const EARLY_APP: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form id="menu">
    <field name="choice" type="digits?length=1">
      <prompt bargein="true">Welcome. Press a key. <break time="20s"/></prompt>
      <filled>
        <submit next="submit" namelist="choice" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#;

/// Callers from loopback; `+15550100` answered by `url`, with webhooks to `callback`.
fn inbound_config(url: &str, callback: &str, extra: &str) -> (String, String) {
    let sip_lines = "inbound_sources = [\"127.0.0.1\"]".to_owned();
    let sections = format!(
        "[[inbound]]\nnumber = \"+15550100\"\nurl = \"{url}\"\nstatus_callback = \"{callback}\"\n\n{extra}"
    );
    (sip_lines, sections)
}

/// The calls the dev tenant can list (newest first).
async fn calls(outdial: &Outdial) -> Vec<Value> {
    let (status, page) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/calls", None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["calls"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_answered_by_the_numbers_application_and_its_key_is_submitted() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let (sip_lines, sections) = inbound_config(&app.url("/in.vxml"), &app.url("/status"), "");
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    let sipp = Sipp::uac(
        "call_in_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("7")),
            ("DTMF_DELAY_MS", "2500".into()),
        ],
        outdial.sip,
        "+15550100",
    );
    let (sipp_status, trace) = sipp.finish(CALL_TIMEOUT).await;
    assert!(
        sipp_status.success(),
        "SIPp's call was not answered and ended by a BYE:\n{trace}\n{}",
        outdial.log()
    );

    let listed = calls(&outdial).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["to"], "+15550100", "{call}");
    assert!(
        call["target_uri"]
            .as_str()
            .is_some_and(|uri| uri.starts_with("sip:+15559990@127.0.0.1")),
        "the caller's From URI: {call}"
    );
    assert_eq!(call["sip_status"], 200, "{call}");
    assert!(call["answered_at"].is_string(), "{call}");
    assert!(
        call["sip_call_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{call}"
    );
    assert_eq!(call["result"]["choice"], "7", "{call}");

    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    let pairs = form_pairs(&submits[0].body);
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("choice"), "7", "{pairs:?}");
    assert!(value("caller").contains("+15559990"), "{pairs:?}");
    assert!(value("called").contains("+15550100"), "{pairs:?}");

    // The same webhooks as an outbound call, each saying which way it went.
    let hooks: Vec<Value> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/status")
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    let statuses: Vec<&str> = hooks.iter().filter_map(|h| h["status"].as_str()).collect();
    assert!(statuses.contains(&"in-progress"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"completed"), "{statuses:?}");
    assert!(
        hooks.iter().all(|h| h["direction"] == "inbound"),
        "{hooks:?}"
    );

    let (status, cdrs) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/cdrs", None)
        .await;
    assert_eq!(status, 200, "{cdrs}");
    assert_eq!(cdrs["cdrs"][0]["call_id"], id.as_str(), "{cdrs}");
    assert!(
        cdrs["cdrs"][0]["media"]["packets_received"].as_u64() > Some(0),
        "the caller's key events were heard: {cdrs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_without_an_application_is_refused_404_and_nothing_is_recorded() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    let (sip_lines, sections) = inbound_config(&app.url("/in.vxml"), &app.url("/status"), "");
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    let sipp = Sipp::uac(
        "call_in_refused.xml",
        &[("STATUS", "404".into())],
        outdial.sip,
        "+15550199",
    );
    let (sipp_status, trace) = sipp.finish(CALL_TIMEOUT).await;
    assert!(
        sipp_status.success(),
        "no 404 for an unknown number:\n{trace}"
    );
    assert!(calls(&outdial).await.is_empty());
    assert!(app.received().is_empty(), "no application was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_beyond_the_nodes_capacity_is_refused_503_with_retry_after() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let (sip_lines, sections) = inbound_config(
        &app.url("/in.vxml"),
        &app.url("/status"),
        "[calls]\nmax_concurrent = 1\n",
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    // The first caller takes the node's one place and keeps it until its key, 6 s in.
    let first = Sipp::uac(
        "call_in_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "6000".into()),
        ],
        outdial.sip,
        "+15550100",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !calls(&outdial)
        .await
        .iter()
        .any(|c| c["status"] == "in-progress")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first call never went in-progress:\n{}",
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = Sipp::uac(
        "call_in_refused.xml",
        &[("STATUS", "503".into())],
        outdial.sip,
        "+15550100",
    );
    let (second_status, trace) = second.finish(CALL_TIMEOUT).await;
    assert!(second_status.success(), "no 503 at capacity:\n{trace}");
    assert!(trace.contains("Retry-After: 5"), "{trace}");
    let (first_status, first_trace) = first.finish(CALL_TIMEOUT).await;
    assert!(
        first_status.success(),
        "the first call was disturbed:\n{first_trace}"
    );
    let listed = calls(&outdial).await;
    assert_eq!(
        listed.len(),
        1,
        "only the first caller has a record: {listed:?}"
    );
    let call = outdial
        .wait_final(listed[0]["id"].as_str().unwrap_or(""), CALL_TIMEOUT)
        .await;
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["result"]["choice"], "1", "{call}");
}

/// `early_media = true`: a 183 with SDP comes first, the application's prompt plays on early
/// media and the caller's RFC 4733 key stops it; only then does the 200 come (SIPp fails the
/// call on a 200 before it sends the key), with the same SDP; the application submits the
/// key and hangs up with a BYE. The history notes early media before `in-progress`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_media_number_hears_the_key_before_it_answers() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", EARLY_APP);
    app.vxml("/submit", GOODBYE);
    let (sip_lines, sections) = inbound_config(
        &app.url("/in.vxml"),
        &app.url("/status"),
        "early_media = true\n",
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    let sipp = Sipp::uac(
        "call_in_early.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("7")),
            ("DTMF_DELAY_MS", "2000".into()),
        ],
        outdial.sip,
        "+15550100",
    );
    let (sipp_status, trace) = sipp.finish(CALL_TIMEOUT).await;
    assert!(
        sipp_status.success(),
        "SIPp expected a 183 with SDP, no 200 before its key, then a 200 and a BYE:\n{trace}\n{}",
        outdial.log()
    );
    assert!(
        trace.contains("183 Session Progress"),
        "the early answer: {trace}"
    );

    let listed = calls(&outdial).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["sip_status"], 200, "{call}");
    assert!(call["answered_at"].is_string(), "{call}");
    assert_eq!(
        call["result"]["choice"], "7",
        "the key pressed on early media: {call}"
    );

    let (status, events) = outdial
        .request(
            &outdial.api_key,
            reqwest::Method::GET,
            &format!("/v1/calls/{id}/events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    let history: Vec<(String, String)> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&e["status"]), text(&e["cause"]))
        })
        .collect();
    let early = history
        .iter()
        .position(|(_, cause)| cause == "early media: 183 sent before the answer");
    let answered = history
        .iter()
        .position(|(status, _)| status == "in-progress");
    assert!(
        early.is_some() && answered.is_some() && early < answered,
        "early media noted before the answer: {history:?}"
    );
    assert_eq!(
        history[early.unwrap_or_default()].0,
        "dialing",
        "{history:?}"
    );

    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    assert_eq!(
        form_pairs(&submits[0].body)
            .into_iter()
            .find(|(k, _)| k == "choice")
            .map(|(_, v)| v),
        Some("7".to_owned())
    );
}

/// An application on early media that hangs up (`<disconnect/>`) before anything answers
/// the call refuses it `480` after the 183: no 200, no BYE; the call ends `canceled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_media_application_that_disconnects_first_refuses_the_call_480() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", GOODBYE);
    let (sip_lines, sections) = inbound_config(
        &app.url("/in.vxml"),
        &app.url("/status"),
        "early_media = true\n",
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    let sipp = Sipp::uac(
        "call_in_refused.xml",
        &[("STATUS", "480".into())],
        outdial.sip,
        "+15550100",
    );
    let (sipp_status, trace) = sipp.finish(CALL_TIMEOUT).await;
    assert!(
        sipp_status.success(),
        "no 480 after early media:\n{trace}\n{}",
        outdial.log()
    );
    assert!(trace.contains("183 Session Progress"), "{trace}");
    let listed = calls(&outdial).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let call = outdial
        .wait_final(listed[0]["id"].as_str().unwrap_or(""), CALL_TIMEOUT)
        .await;
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["status"], "canceled", "{call}");
    assert_eq!(call["sip_status"], 480, "{call}");
    assert!(call["answered_at"].is_null(), "never answered: {call}");
}

/// A caller whose INVITE requires 100rel cannot take our unreliable 183: an early-media
/// number answers it at once (SIPp fails on any 183), and the application runs from the ACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_media_number_answers_a_caller_requiring_100rel_at_once() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let (sip_lines, sections) = inbound_config(
        &app.url("/in.vxml"),
        &app.url("/status"),
        "early_media = true\n",
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    let sipp = Sipp::uac(
        "call_in_100rel.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("7")),
            ("DTMF_DELAY_MS", "2500".into()),
        ],
        outdial.sip,
        "+15550100",
    );
    let (sipp_status, trace) = sipp.finish(CALL_TIMEOUT).await;
    assert!(
        sipp_status.success(),
        "not answered at once with a 200, or not ended by a BYE:\n{trace}\n{}",
        outdial.log()
    );
    let listed = calls(&outdial).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["result"]["choice"], "7", "{call}");
    let (status, events) = outdial
        .request(
            &outdial.api_key,
            reqwest::Method::GET,
            &format!("/v1/calls/{id}/events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    assert!(
        !events.to_string().contains("early media"),
        "no early media noted: {events}"
    );
}
