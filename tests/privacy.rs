//! Privacy in logs: a real call (SIPp answers and presses 1) logged at trace level everywhere
//! shows no callee number, caller ID, submitted value or `<log>` text while `[log] redact` is
//! on (the default), and shows them with it off (so the check can fail).

use std::path::PathBuf;
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, shared_dir};
use serde_json::json;

/// Everything every crate logs (debug and below).
const RUST_LOG: &str = "trace";
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

const CALLEE: &str = "+15557654321";
const CALLER: &str = "+15559876543";
const SUBMITTED: &str = "SUBMITTEDVALUE8832";
const VAR: &str = "REQUESTVAR5521";
const LOG_TEXT: &str = "APPLICATIONLOGTEXT4711";

fn app() -> String {
    format!(
        r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="secret" expr="'{SUBMITTED}'"/>
  <form>
    <field name="confirm" type="boolean">
      <prompt>Press 1.</prompt>
      <filled>
        <log>{LOG_TEXT} <value expr="session.patient"/></log>
        <submit next="submit" namelist="confirm secret" method="get"/>
      </filled>
    </field>
  </form>
</vxml>
"#
    )
}

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><disconnect/></block></form>
</vxml>
"#;

fn dtmf_pcap() -> String {
    let path: PathBuf = shared_dir().join("corpus/rtp-dtmf-sipp-pcaps/dtmf_2833_1.pcap");
    assert!(
        path.exists(),
        "missing {}: run bench/corpora/fetch.sh",
        path.display()
    );
    path.canonicalize()
        .expect("canonical path")
        .to_string_lossy()
        .into_owned()
}

/// Runs one call with `[log]` lines `log`; returns the server's log (debug level).
async fn call_log(log: &str) -> String {
    let app_server = AppServer::start().await;
    app_server.vxml("/app.vxml", app());
    app_server.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas(
        "answer_dtmf.xml",
        &[("DTMF_PCAP", dtmf_pcap()), ("DTMF_DELAY_MS", "1500".into())],
    );
    let outdial = Outdial::start_with_rust_log(RUST_LOG, &format!("[log]\n{log}\n"));
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri(CALLEE),
            "from": CALLER,
            "url": app_server.url("/app.vxml"),
            "vars": { "patient": VAR },
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let _ = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["result"]["secret"], SUBMITTED, "{call}");
    outdial.log()
}

/// The digits of a number without the last two (which redaction keeps).
fn stem(number: &str) -> &str {
    &number[1..number.len() - 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_stays_out_of_debug_logs_unless_redaction_is_off() {
    let redacted = call_log("").await;
    assert!(
        redacted.contains("dialing"),
        "the log is there:\n{redacted}"
    );
    assert!(
        redacted.lines().any(|l| l.contains(" TRACE ")),
        "RUST_LOG=trace took effect"
    );
    // The per-call SIP trace is there (each message's kind and Call-ID), numbers not.
    let trace: Vec<&str> = redacted
        .lines()
        .filter(|l| l.contains("sip_trace"))
        .collect();
    for kind in ["kind=INVITE", "kind=200", "kind=ACK", "kind=BYE"] {
        assert!(
            trace
                .iter()
                .any(|l| l.contains(kind) && l.contains("sip_call_id=")),
            "no {kind} in the SIP trace:\n{}",
            trace.join("\n")
        );
    }
    for (what, text) in [
        ("callee number", stem(CALLEE)),
        ("caller ID", stem(CALLER)),
        ("submitted value", SUBMITTED),
        ("request variable", VAR),
        ("<log> text", LOG_TEXT),
    ] {
        let lines: Vec<&str> = redacted.lines().filter(|l| l.contains(text)).collect();
        assert!(
            lines.is_empty(),
            "the {what} is in the log:\n{}",
            lines.join("\n")
        );
    }

    let plain = call_log("redact = false").await;
    // The key the callee pressed (a PIN, often) is logged as a fact only.
    let keys = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("digit=") || l.contains("input consumed"))
            .map(str::to_owned)
            .collect()
    };
    let hidden = keys(&redacted);
    assert!(
        hidden.len() >= 2,
        "the key press is logged at trace: {hidden:?}"
    );
    assert!(
        hidden
            .iter()
            .all(|l| l.contains("[redacted input]") && !l.contains("\"1\"") && !l.contains("'1'")),
        "{hidden:?}"
    );
    let shown = keys(&plain);
    assert!(
        shown.iter().any(|l| l.contains("'1'")) && !shown.iter().any(|l| l.contains("[redacted")),
        "{shown:?}"
    );
    for text in [stem(CALLEE), LOG_TEXT] {
        assert!(
            plain.contains(text),
            "{text} not logged with redact = false:\n{}",
            plain
                .lines()
                .filter(|l| l.contains("outdial_control"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
