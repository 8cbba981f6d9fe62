//! Speech input end to end (issue 15): SIPp answers and, after the prompt, plays a phrase
//! spoken by espeak-ng as G.711 µ-law RTP; Outdial's core hears it start and end, the
//! recognizer (pocketsphinx with the field's grammar) recognises it, our SRGS engine gives
//! it its meaning, and the application submits the value.

use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, TempDir, form_pairs, speech_pcap};
use serde_json::json;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Ends the call after the submit.
const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you.</prompt><disconnect/></block></form>
</vxml>
"#;

/// A yes/no question answered by voice (or key), then submitted with what was heard.
const CONFIRM: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <property name="timeout" value="8s"/>
  <form>
    <field name="answer" type="boolean">
      <prompt>Do you agree?</prompt>
      <noinput><submit next="/submit" method="post" namelist="outcome"/></noinput>
      <nomatch><assign name="outcome" expr="'nomatch'"/><submit next="/submit" method="post" namelist="outcome"/></nomatch>
      <catch event="error.noresource"><assign name="outcome" expr="'noresource'"/><submit next="/submit" method="post" namelist="outcome"/></catch>
      <filled>
        <var name="mode" expr="lastresult$.inputmode"/>
        <var name="heard" expr="lastresult$.utterance"/>
        <submit next="/submit" method="post" namelist="answer mode heard"/>
      </filled>
    </field>
    <var name="outcome" expr="'noinput'"/>
  </form>
</vxml>
"#;

/// A city from an inline SRGS grammar whose tags give the airport code.
const CITY: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <field name="city">
      <prompt>Which city?</prompt>
      <grammar mode="voice" version="1.0" root="city" tag-format="semantics/1.0"
               xmlns="http://www.w3.org/2001/06/grammar" xml:lang="en-US">
        <rule id="city" scope="public">
          <one-of>
            <item>boston <tag>out="BOS";</tag></item>
            <item>chicago <tag>out="ORD";</tag></item>
            <item>san francisco <tag>out="SFO";</tag></item>
            <item>new york <tag>out="JFK";</tag></item>
            <item>seattle <tag>out="SEA";</tag></item>
          </one-of>
        </rule>
      </grammar>
      <filled><submit next="/submit" method="post" namelist="city"/></filled>
    </field>
  </form>
</vxml>
"#;

/// A long prompt the caller talks over: the start of speech stops it (barge-in), and the
/// mark at its start says how much of it was played.
const BARGE_IN: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <field name="answer" type="boolean">
      <prompt><mark name="start"/>Before you answer, please listen to this rather long
        message. It goes on for a while on purpose, so that a caller who already knows what
        to say can say it at any time and be heard at once, without waiting for the end of
        the announcement. Thank you for your patience. Do you agree?</prompt>
      <filled>
        <var name="mark" expr="lastresult$.markname"/>
        <var name="played" expr="lastresult$.marktime"/>
        <submit next="/submit" method="post" namelist="answer mark played"/>
      </filled>
    </field>
  </form>
</vxml>
"#;

/// A city asked by voice only (no DTMF grammar).
const CITY_VOICE_ONLY: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <var name="outcome" expr="'filled'"/>
    <catch event="error.noresource"><assign name="outcome" expr="'noresource'"/><submit next="/submit" method="post" namelist="outcome"/></catch>
    <field name="city">
      <prompt>Which city?</prompt>
      <grammar mode="voice" version="1.0" root="city" xmlns="http://www.w3.org/2001/06/grammar" xml:lang="en-US">
        <rule id="city"><one-of><item>boston</item><item>chicago</item></one-of></rule>
      </grammar>
      <filled><submit next="/submit" method="post" namelist="outcome city"/></filled>
    </field>
  </form>
</vxml>
"#;

/// Places one call to SIPp speaking `phrase` `delay_ms` after the answer; the one submit,
/// and Outdial's log (for failure messages).
async fn call_saying(
    app_doc: &str,
    phrase: &str,
    delay_ms: u32,
) -> (Vec<(String, String)>, String) {
    call_saying_with("", app_doc, phrase, delay_ms).await
}

/// [`call_saying`] with Outdial configured by `config` (TOML).
async fn call_saying_with(
    config: &str,
    app_doc: &str,
    phrase: &str,
    delay_ms: u32,
) -> (Vec<(String, String)>, String) {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", app_doc);
    app.vxml("/submit", GOODBYE);
    let dir = TempDir::new("speech");
    let pcap = speech_pcap(dir.path(), phrase, "en-us");
    let sipp = Sipp::uas(
        "answer_speak.xml",
        &[
            ("SPEECH_PCAP", pcap),
            ("SPEAK_DELAY_MS", delay_ms.to_string()),
        ],
    );
    let outdial = Outdial::start(config);
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550001"), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}\n{}", outdial.log());
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .map(|r| form_pairs(&r.body))
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}\n{}", outdial.log());
    (
        submits.into_iter().next().unwrap_or_default(),
        outdial.log(),
    )
}

fn value<'a>(submit: &'a [(String, String)], name: &str) -> Option<&'a str> {
    submit
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_yes_fills_a_boolean_field() {
    let (submit, log) = call_saying(CONFIRM, "yes", 2500).await;
    assert_eq!(value(&submit, "answer"), Some("true"), "{submit:?}\n{log}");
    assert_eq!(value(&submit, "mode"), Some("voice"), "{submit:?}");
    // The boolean grammar's words for yes: espeak-ng's "yes" may come back as "yeah".
    assert!(
        matches!(value(&submit, "heard"), Some("yes" | "yeah" | "yep")),
        "{submit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_no_fills_it_false() {
    let (submit, log) = call_saying(CONFIRM, "no", 2500).await;
    assert_eq!(value(&submit, "answer"), Some("false"), "{submit:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_takes_its_meaning_from_the_grammar_tags() {
    let (submit, log) = call_saying(CITY, "san francisco", 2500).await;
    assert_eq!(value(&submit, "city"), Some("SFO"), "{submit:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_says_nothing_gets_noinput() {
    // The line stays silent: its low noise never starts an utterance.
    let (submit, log) = call_saying(CONFIRM, "", 1000).await;
    assert_eq!(
        value(&submit, "outcome"),
        Some("noinput"),
        "{submit:?}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_barges_into_the_prompt() {
    // The caller says "yes" 4 s after the answer, into a prompt of about 20 s.
    let (submit, log) = call_saying(BARGE_IN, "yes", 4000).await;
    assert_eq!(value(&submit, "answer"), Some("true"), "{submit:?}\n{log}");
    assert_eq!(value(&submit, "mark"), Some("start"), "{submit:?}");
    let played: u64 = value(&submit, "played")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    // Stopped at the start of speech (SIPp speaks 4.4 s after the answer, a few seconds
    // into the prompt once it is fetched and rendered), far from its end.
    assert!((1..8_000).contains(&played), "{submit:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_outside_the_grammar_is_a_nomatch_not_the_nearest_phrase() {
    let (submit, log) = call_saying(CONFIRM, "the weather is nice in london today", 2500).await;
    assert_eq!(
        value(&submit, "outcome"),
        Some("nomatch"),
        "{submit:?}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_only_field_without_a_recognizer_throws_noresource_at_once() {
    let (submit, log) = call_saying_with(
        "[speech]\nenabled = false\n",
        CITY_VOICE_ONLY,
        "chicago",
        // At once: the field fails at its start and the call ends, while SIPp waits for
        // the BYE, not in a pause.
        0,
    )
    .await;
    assert_eq!(
        value(&submit, "outcome"),
        Some("noresource"),
        "{submit:?}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_only_field_hears_its_grammar() {
    let (submit, log) = call_saying(CITY_VOICE_ONLY, "chicago", 2500).await;
    assert_eq!(value(&submit, "city"), Some("chicago"), "{submit:?}\n{log}");
}
