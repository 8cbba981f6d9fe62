//! The policy engine end to end against the real binary and SIPp: a call due in the callee's
//! quiet hours waits for them to end and is dialled then; an opt-out the callee presses during
//! a live call refuses the tenant's next calls, both one already queued (at dispatch, ended
//! `refused`) and a new request (at acceptance, 422 `opted_out`).

use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, shared_dir, sip_invites};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const APP: &str = "http://127.0.0.1:9/app.vxml";

async fn send(
    outdial: &Outdial,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string()));
    outdial.request(&outdial.api_key, method, path, body).await
}

async fn events(outdial: &Outdial, id: &str) -> Vec<Value> {
    let (_, body) = send(
        outdial,
        reqwest::Method::GET,
        &format!("/v1/calls/{id}/events"),
        None,
    )
    .await;
    body["events"].as_array().cloned().unwrap_or_default()
}

fn clock(minute_of_day: i64) -> String {
    let m = minute_of_day.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_due_in_quiet_hours_waits_for_them_to_end_then_is_dialled() {
    // The call waits up to two minutes for the quiet hours to end: SIPp must outlive them.
    let sipp = Sipp::uas_lasting("busy.xml", &[], 1, Duration::from_secs(240));
    let outdial = Outdial::start("");
    let to = sipp.uri("+15550120");
    // Quiet from this minute to the next (or the one after, late in a minute), in UTC.
    let now = OffsetDateTime::now_utc();
    let minute = i64::from(now.hour()) * 60 + i64::from(now.minute());
    let span = if now.second() >= 45 { 2 } else { 1 };
    let quiet = format!("{}-{}", clock(minute), clock(minute + span));
    let (status, body) = send(
        &outdial,
        reqwest::Method::PUT,
        &format!("/v1/callees/{to}"),
        Some(json!({ "time_zone": "UTC", "quiet_hours": [quiet] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, created) = outdial.create_call(&json!({ "to": to, "url": APP })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(
        call["status"], "busy",
        "dialled once the quiet hours ended: {call}"
    );
    let quiet_end = now
        .replace_second(0)
        .expect("second")
        .replace_nanosecond(0)
        .expect("ns")
        + time::Duration::minutes(span);
    let dialed = OffsetDateTime::parse(call["dialed_at"].as_str().expect("dialed_at"), &Rfc3339)
        .expect("RFC 3339");
    assert!(
        dialed >= quiet_end,
        "dialled at {dialed}, quiet until {quiet_end}"
    );
    let history = events(&outdial, &id).await;
    let deferral = history
        .iter()
        .find(|e| e["rule"] == "callee.quiet_hours")
        .unwrap_or_else(|| panic!("no deferral in the history: {history:?}"));
    assert_eq!(deferral["status"], "queued");
    assert_eq!(deferral["owner"], "callee");
    assert!(
        deferral["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("deferred until ")),
        "{deferral}"
    );
    let (_, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(
        sip_invites(&trace).len(),
        1,
        "one INVITE, after the quiet hours"
    );
}

const OPT_OUT_APP: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="outdial_opt_out" expr="'false'"/>
  <form>
    <field name="choice" type="digits?length=1">
      <prompt>Press 9 to stop these calls.</prompt>
      <filled>
        <if cond="choice == '9'"><assign name="outdial_opt_out" expr="'true'"/></if>
        <submit next="SUBMIT" method="post" namelist="choice outdial_opt_out"/>
      </filled>
    </field>
  </form>
</vxml>
"#;

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_pressed_during_a_call_refuses_the_tenants_next_calls() {
    let app = AppServer::start().await;
    app.vxml(
        "/app.vxml",
        OPT_OUT_APP.replace("SUBMIT", &app.url("/submit")),
    );
    app.vxml("/submit", GOODBYE);
    let pcap = shared_dir().join("corpus/rtp-dtmf-sipp-pcaps/dtmf_2833_9.pcap");
    let pcap = pcap
        .canonicalize()
        .expect("DTMF corpus: run bench/corpora/fetch.sh");
    let sipp = Sipp::uas(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", pcap.to_string_lossy().into_owned()),
            ("DTMF_DELAY_MS", "1500".into()),
        ],
    );
    // One call at a time: the second waits behind the first, and is released only after the
    // first has recorded the opt-out.
    let outdial = Outdial::start("[calls]\nmax_concurrent = 1\n");
    let to = sipp.uri("+15550121");
    let body = json!({ "to": to, "url": app.url("/app.vxml") });
    let (status, first) = outdial.create_call(&body).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = outdial.create_call(&body).await;
    assert_eq!(status, 201, "{second}");
    let first = outdial
        .wait_final(first["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    assert_eq!(first["status"], "completed", "{first}\n{}", outdial.log());
    assert_eq!(first["result"]["outdial_opt_out"], "true", "{first}");

    let second_id = second["id"].as_str().expect("id");
    let second = outdial.wait_final(second_id, CALL_TIMEOUT).await;
    assert_eq!(second["status"], "refused", "{second}");
    let history = events(&outdial, second_id).await;
    let last = history.last().expect("events");
    assert_eq!(
        (&last["owner"], &last["rule"]),
        (&json!("callee"), &json!("callee.opt_out")),
        "{history:?}"
    );

    let (status, refused) = outdial.create_call(&body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "opted_out", "{refused}");
    let (status, opt_out) = send(
        &outdial,
        reqwest::Method::GET,
        &format!("/v1/callees/{to}/opt-out"),
        None,
    )
    .await;
    assert_eq!((status, &opt_out["opted_out"]), (200, &json!(true)));

    let (_, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(
        sip_invites(&trace).len(),
        1,
        "the refused calls were never dialled"
    );
}

/// A tenant whose policy requires its application at acceptance: a request whose URL answers
/// 404, or answers something that is not VoiceXML, is refused with the rule; a good one is
/// accepted. Nothing is dialled for the refused ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_application_is_fetched_and_checked_at_acceptance() {
    let app = AppServer::start().await;
    app.vxml("/good.vxml", GOODBYE);
    app.route(
        "/broken.vxml",
        200,
        "application/voicexml+xml",
        "<vxml version=\"2.1\"><form>",
    );
    let outdial = Outdial::start("");
    let policy = json!({ "require_application": true });
    let (status, body) = send(&outdial, reqwest::Method::PUT, "/v1/policy", Some(policy)).await;
    assert_eq!(status, 200, "{body}");
    let to = "sip:nobody@127.0.0.1:9";
    for (path, refused) in [
        ("/missing.vxml", true),
        ("/broken.vxml", true),
        ("/good.vxml", false),
    ] {
        let (status, body) = outdial
            .create_call(&json!({ "to": to, "url": app.url(path) }))
            .await;
        if refused {
            assert_eq!(status, 422, "{path}: {body}");
            assert_eq!(
                (
                    &body["error"]["code"],
                    &body["error"]["rule"],
                    &body["error"]["field"]
                ),
                (
                    &json!("application_unavailable"),
                    &json!("requester.require_application"),
                    &json!("url")
                ),
                "{path}: {body}"
            );
        } else {
            assert_eq!(status, 201, "{path}: {body}");
        }
    }
    // A second request for the same application is answered from the 60 s check cache; the
    // calls themselves never fetch it (nothing answers at port 9).
    let (status, body) = outdial
        .create_call(&json!({ "to": to, "url": app.url("/good.vxml") }))
        .await;
    assert_eq!(status, 201, "{body}");
    let checks = app
        .received()
        .iter()
        .filter(|r| r.path == "/good.vxml")
        .count();
    assert_eq!(checks, 1, "one check for two requests");
}

/// With `require_audio` too, the audio files the document names must answer with WAV audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_audio_is_fetched_and_checked_at_acceptance() {
    let app = AppServer::start().await;
    // A WAV file of 8-bit samples at 8 kHz whose every byte is below 0x80, so the test
    // server (which serves text) serves it byte for byte.
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36u32 + 32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&[1, 0, 1, 0]);
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&[1, 0, 8, 0]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&32u32.to_le_bytes());
    wav.extend_from_slice(&[0x7f; 32]);
    let wav = String::from_utf8(wav).expect("every byte below 0x80");
    app.route("/beep.wav", 200, "audio/wav", wav);
    let with_audio = |src: &str| -> String {
        format!(
            r#"<?xml version="1.0"?><vxml version="2.1" xmlns="http://www.w3.org/2001/vxml"><form><block><prompt><audio src="{src}"/></prompt></block></form></vxml>"#
        )
    };
    app.vxml("/plays-beep.vxml", with_audio("beep.wav"));
    app.vxml("/plays-missing.vxml", with_audio("missing.wav"));
    app.vxml("/plays-text.vxml", with_audio("notes.txt"));
    app.route("/notes.txt", 200, "text/plain", "not audio");
    let outdial = Outdial::start("");
    let policy = json!({ "require_application": true, "require_audio": true });
    let (status, body) = send(&outdial, reqwest::Method::PUT, "/v1/policy", Some(policy)).await;
    assert_eq!(status, 200, "{body}");
    let to = "sip:nobody@127.0.0.1:9";
    for path in ["/plays-missing.vxml", "/plays-text.vxml"] {
        let (status, body) = outdial
            .create_call(&json!({ "to": to, "url": app.url(path) }))
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("application_unavailable")),
            "{path}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("audio")),
            "{body}"
        );
    }
    let (status, body) = outdial
        .create_call(&json!({ "to": to, "url": app.url("/plays-beep.vxml") }))
        .await;
    assert_eq!(status, 201, "{body}");
}
