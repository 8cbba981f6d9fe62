//! Prompts on live calls answered by SIPp, where rendering is not just speech: a recording
//! played back with `<audio expr>`; and a prompt the platform cannot render reaches the
//! application as an event: text-to-speech that runs past `tts.timeout_ms` raises
//! `error.noresource`, and an `<audio>` that cannot be fetched and has no fallback raises
//! `error.badfetch` (VoiceXML 2.0 §4.1.3). Neither is a prompt cut short in silence.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, TempDir, form_pairs, shared_dir};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A field whose prompt may fail; the catch submits the event and its message. Without an
/// error the field listens for a second and exits on noinput (SIPp presses nothing).
fn application(prompt: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <var name="event"/>
    <var name="why"/>
    <catch event="error">
      <assign name="event" expr="_event"/>
      <assign name="why" expr="_message"/>
      <submit next="/caught" namelist="event why" method="post"/>
    </catch>
    <field name="pin" type="digits">
      <property name="timeout" value="1s"/>
      <prompt>{prompt}</prompt>
      <noinput><exit/></noinput>
    </field>
  </form>
</vxml>
"#
    )
}

const DONE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml"><form><block><exit/></block></form></vxml>
"#;

/// Places one call to SIPp running `app`; returns the call record and what `/caught` got.
async fn call(outdial: &Outdial, app: &AppServer, path: &str) -> (Value, Vec<(String, String)>) {
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550007"), "url": app.url(path) }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "SIPp expected our BYE:\n{trace}");
    let caught = app
        .received()
        .into_iter()
        .rfind(|r| r.path == "/caught")
        .map(|r| form_pairs(&r.body))
        .unwrap_or_default();
    (call, caught)
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_past_the_time_limit_raises_error_noresource() {
    // A text-to-speech command that never finishes: killed at tts.timeout_ms.
    let dir = TempDir::new("slow-tts");
    let tts = dir.path().join("slow-tts");
    std::fs::write(&tts, "#!/bin/sh\nexec sleep 30\n").expect("write the TTS script");
    std::fs::set_permissions(&tts, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let app = AppServer::start().await;
    app.vxml("/app.vxml", application("Your PIN, please."));
    app.vxml("/caught", DONE);
    let outdial = Outdial::start(&format!(
        "[tts]\ncommand = \"{}\"\ntimeout_ms = 300\n",
        tts.display()
    ));
    let (call, caught) = call(&outdial, &app, "/app.vxml").await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(field(&caught, "event"), "error.noresource", "{caught:?}");
    assert!(
        field(&caught, "why").contains("did not finish within 300ms"),
        "the message says why: {caught:?}"
    );
    // The event, not the call's 10 s noinput: the catch ran, so the field never listened on.
    assert_eq!(
        call["result"],
        json!({ "event": "error.noresource", "why": field(&caught, "why") })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_without_fallback_that_cannot_be_fetched_raises_error_badfetch() {
    let app = AppServer::start().await;
    let missing = app.url("/missing.wav");
    app.vxml(
        "/app.vxml",
        application(&format!(r#"<audio src="{missing}"/>"#)),
    );
    app.vxml(
        "/fallback.vxml",
        application(&format!(
            r#"<audio src="{missing}">Your PIN, please.</audio>"#
        )),
    );
    app.vxml("/caught", DONE);
    let outdial = Outdial::start("");
    let (call_record, caught) = call(&outdial, &app, "/app.vxml").await;
    assert_eq!(call_record["status"], "completed", "{call_record}");
    assert_eq!(field(&caught, "event"), "error.badfetch", "{caught:?}");
    assert!(
        field(&caught, "why").contains("missing.wav")
            && field(&caught, "why").contains("no fallback"),
        "{caught:?}"
    );

    // With fallback text the fallback is spoken: no event; the field listens and its
    // noinput ends the call, with no /caught submit.
    let before = app
        .received()
        .iter()
        .filter(|r| r.path == "/caught")
        .count();
    let (fallback_call, _) = call(&outdial, &app, "/fallback.vxml").await;
    let after = app
        .received()
        .iter()
        .filter(|r| r.path == "/caught")
        .count();
    assert_eq!(after, before, "the fallback played: nothing was thrown");
    assert_eq!(fallback_call["status"], "completed", "{fallback_call}");
}

/// Presses 1, records two seconds of the caller, plays the recording back (no barge-in), then
/// listens a second: `/played` on success, `/caught` with the event if the playback failed.
/// Keys only: the caller's recorded speech goes on after the recording, and `type="digits"`
/// has a voice form, so a voice-enabled last field could be filled by it instead of timing
/// out (seen once in CI).
const PLAYBACK: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <property name="inputmodes" value="dtmf"/>
  <form>
    <var name="event"/>
    <var name="why"/>
    <catch event="error">
      <assign name="event" expr="_event"/>
      <assign name="why" expr="_message"/>
      <submit next="/caught" namelist="event why" method="post"/>
    </catch>
    <field name="key" type="digits?length=1">
      <prompt>Press 1.</prompt>
    </field>
    <record name="msg" maxtime="2s" finalsilence="5s" dtmfterm="false">
      <filled><prompt bargein="false">You said <audio expr="msg">this must not be spoken</audio></prompt></filled>
    </record>
    <field name="again" type="digits">
      <property name="timeout" value="1s"/>
      <noinput><submit next="/played" namelist="key" method="post"/></noinput>
    </field>
  </form>
</vxml>
"#;

fn pcap(name: &str) -> String {
    let path = shared_dir().join("corpus/rtp-dtmf-sipp-pcaps").join(name);
    assert!(
        path.exists(),
        "missing test corpus file {}: run bench/corpora/fetch.sh",
        path.display()
    );
    path.canonicalize()
        .expect("canonical path")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_is_played_back_by_audio_expr() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", PLAYBACK);
    app.vxml("/played", DONE);
    app.vxml("/caught", DONE);
    let sipp = Sipp::uas(
        "answer_dtmf_speak.xml",
        &[
            ("DTMF_PCAP", pcap("dtmf_2833_1.pcap")),
            ("DTMF_DELAY_MS", "1500".into()),
            ("SPEAK_DELAY_MS", "500".into()),
            ("SPEECH_PCAP", pcap("g711a.pcap")),
        ],
    );
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550008"), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    let paths: Vec<String> = app.received().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().any(|p| p == "/played") && !paths.iter().any(|p| p == "/caught"),
        "the playback rendered: {paths:?}\n{call}\n{}",
        outdial.log()
    );
    assert_eq!(call["result"], json!({ "key": "1" }), "{call}");
    let log = outdial.log();
    assert!(
        !log.contains("prompt could not be rendered") && !log.contains("using fallback"),
        "{log}"
    );
    assert!(sipp_status.success(), "SIPp expected our BYE:\n{trace}");
}
