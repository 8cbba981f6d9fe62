//! End-to-end: the real `outdial serve` places calls to a real SIPp UAS over loopback, runs
//! VoiceXML served by a real HTTP server, and reports through its HTTP API.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, form_pairs, multipart_parts, shared_dir};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The reminder application (confirm or cancel by key), shared with the other e2e tests.
const REMINDER: &str = include_str!("apps/reminder.vxml");

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you. Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

fn dtmf_pcap(key: &str) -> String {
    let path = shared_dir().join(format!("corpus/rtp-dtmf-sipp-pcaps/dtmf_2833_{key}.pcap"));
    assert!(
        path.exists(),
        "missing test corpus file {}: run bench/corpora/fetch.sh",
        path.display()
    );
    // invariant: the corpus path is valid UTF-8 (it is built from ASCII names).
    path.canonicalize()
        .expect("canonical path")
        .to_str()
        .expect("utf-8")
        .to_owned()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T'))
}

/// (a) SIPp answers, presses 1 as RFC 4733 events while the prompt plays (barge-in); the
/// application submits `confirm=true`, says goodbye and disconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_runs_the_application_and_submits_the_key() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "2500".into()),
        ],
    );
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550001"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
            "status_callback": app.url("/status"),
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "queued");
    let id = created["id"].as_str().expect("id").to_owned();

    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["sip_status"], 200, "{call}");
    assert_eq!(call["disposition"], "completed", "{call}");
    for stamp in ["created_at", "dialed_at", "answered_at", "ended_at"] {
        assert!(is_rfc3339(&call[stamp]), "{stamp} missing: {call}");
    }
    assert!(
        call["answered_at"].as_str() <= call["ended_at"].as_str(),
        "{call}"
    );
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");

    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    assert_eq!(submits[0].method, "POST");
    assert_eq!(
        form_pairs(&submits[0].body),
        vec![("confirm".to_owned(), "true".to_owned())]
    );
    assert!(
        sipp_status.success(),
        "SIPp did not complete its scenario (BYE expected):\n{trace}"
    );
    assert!(
        trace.contains("BYE sip:"),
        "no BYE in SIPp's trace:\n{trace}"
    );
    // The attempt's media went to its CDR: the prompt out, SIPp's key events in.
    let (status, cdrs) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/cdrs", None)
        .await;
    assert_eq!(status, 200, "{cdrs}");
    let media = &cdrs["cdrs"][0]["media"];
    assert!(media["packets_sent"].as_u64() > Some(10), "{cdrs}");
    assert!(media["packets_received"].as_u64() > Some(0), "{cdrs}");
    assert_eq!(media["dropped_foreign"], 0, "{cdrs}");
}

/// (b) SIPp answers 486: the call is `busy` and was never answered. It asked for its final
/// status only (`status_callback_events`): one webhook, not `dialing` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_gives_status_busy() {
    let sipp = Sipp::uas("busy.xml", &[]);
    let app = AppServer::start().await;
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550002"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
            "status_callback": app.url("/status"),
            "status_callback_events": ["final"],
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "busy", "{call}");
    assert_eq!(call["sip_status"], 486, "{call}");
    assert_eq!(call["disposition"], "busy", "{call}");
    assert!(call["answered_at"].is_null(), "{call}");
    assert!(is_rfc3339(&call["ended_at"]), "{call}");
    assert_eq!(call["status_callback_events"], json!(["final"]), "{call}");
    assert!(
        sipp_status.success(),
        "SIPp expected the ACK for 486:\n{trace}"
    );
    // The `dialing` change was written before `busy`; the outbox sends in order, so had it
    // been enqueued it would have arrived by now (and within the grace after).
    let statuses = || -> Vec<Value> {
        app.received()
            .into_iter()
            .filter(|r| r.path == "/status")
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap_or_default()["status"].clone())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while statuses().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(statuses(), vec![json!("busy")], "{}", outdial.log());
}

/// (c) SIPp rings and never answers: after the ring timeout Outdial sends CANCEL, SIPp ends
/// the INVITE with 487, and the call is `no-answer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_is_canceled_after_the_ring_timeout() {
    let sipp = Sipp::uas("ring_forever.xml", &[]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550003"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
            "ring_timeout": 2,
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "no-answer", "{call}");
    assert_eq!(call["disposition"], "no-answer", "{call}");
    assert_eq!(call["sip_status"], 487, "{call}");
    assert!(call["answered_at"].is_null(), "{call}");
    assert!(
        sipp_status.success(),
        "SIPp expected CANCEL then ACK for 487:\n{trace}"
    );
    assert!(
        trace.contains("CANCEL sip:"),
        "no CANCEL in SIPp's trace:\n{trace}"
    );
}

/// (d) The application cannot be fetched (404) or parsed (malformed XML): the answered call
/// is hung up cleanly and ends `failed` with a reason naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfetchable_or_malformed_application_fails_the_call_with_a_reason() {
    let app = AppServer::start().await;
    app.vxml(
        "/broken.vxml",
        "<vxml version=\"2.1\"><form><block><prompt>unclosed</block></form></vxml>",
    );
    let outdial = Outdial::start("");
    for (path, expected) in [("/missing.vxml", "404"), ("/broken.vxml", "broken.vxml")] {
        let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
        let (status, created) = outdial
            .create_call(&json!({ "to": sipp.uri("+15550004"), "url": app.url(path) }))
            .await;
        assert_eq!(status, 201, "{created}");
        let call = outdial
            .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
            .await;
        let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
        assert_eq!(call["status"], "failed", "{path}: {call}");
        // The SIP leg itself completed; it is the application that failed.
        assert_eq!(call["disposition"], "completed", "{path}: {call}");
        let reason = call["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("error.badfetch"),
            "{path}: reason {reason:?}"
        );
        assert!(
            reason.contains(expected),
            "{path}: reason {reason:?} should name {expected}"
        );
        assert!(is_rfc3339(&call["answered_at"]), "{path}: {call}");
        assert!(
            sipp_status.success(),
            "{path}: SIPp expected our BYE:\n{trace}"
        );
    }
}

fn curl(args: &[&str]) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// (e) Bad API requests get 400/401 JSON errors with stable codes and create nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_requests_are_refused_and_create_nothing() {
    let outdial = Outdial::start("");
    let url = format!("{}/v1/calls", outdial.api);
    let auth = format!("Authorization: Bearer {}", outdial.api_key);
    let json_type = "Content-Type: application/json";
    let cases: [(&[&str], u16, &str); 6] = [
        (
            &[
                "-H",
                &auth,
                "-H",
                json_type,
                "-d",
                r#"{"url":"http://127.0.0.1/a.vxml"}"#,
            ],
            400,
            "missing_field",
        ),
        (
            &[
                "-H",
                &auth,
                "-H",
                json_type,
                "-d",
                r#"{"to": "sip:a@127.0.0.1", "url":"#,
            ],
            400,
            "malformed_json",
        ),
        (
            &[
                "-H",
                &auth,
                "-H",
                json_type,
                "-d",
                r#"{"to":"sip:a@127.0.0.1","url":"http://127.0.0.1/a.vxml","colour":"red"}"#,
            ],
            400,
            "unknown_field",
        ),
        (
            &[
                "-H",
                json_type,
                "-d",
                r#"{"to":"sip:a@127.0.0.1","url":"http://127.0.0.1/a.vxml"}"#,
            ],
            401,
            "missing_api_key",
        ),
        (
            &[
                "-H",
                "Authorization: Bearer od_wrong",
                "-H",
                json_type,
                "-d",
                r#"{"to":"sip:a@127.0.0.1","url":"http://127.0.0.1/a.vxml"}"#,
            ],
            401,
            "invalid_api_key",
        ),
        (
            &[
                "-H",
                &auth,
                "-H",
                json_type,
                "-d",
                r#"{"to":"+15550001","url":"http://127.0.0.1/a.vxml"}"#,
            ],
            400,
            "no_trunk",
        ),
    ];
    for (args, status, code) in cases {
        let mut full: Vec<&str> = args.to_vec();
        full.push(&url);
        let (got_status, body) = curl(&full);
        assert_eq!(got_status, status, "{args:?}: {body}");
        assert_eq!(body["error"]["code"], code, "{args:?}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (status, list) = curl(&["-H", &auth, &url]);
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["calls"],
        json!([]),
        "bad requests must create nothing: {list}"
    );
}

/// Malformed or unexpected SIP sent to Outdial's SIP port is answered or dropped, never fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_is_answered_or_dropped_and_the_server_stays_up() {
    let outdial = Outdial::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let local = socket.local_addr().expect("addr");
    let branch = std::sync::atomic::AtomicU32::new(0);
    let request = |method: &str, version: &str, extra: &str| {
        let n = branch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "{method} sip:probe@{sip} {version}\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{method}-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:tester@{local}>;tag=t1\r\nTo: <sip:probe@{sip}>\r\n\
             Call-ID: probe-{method}@{local}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n",
            sip = outdial.sip
        )
    };
    let exchange = |bytes: &[u8]| -> Option<String> {
        socket.send_to(bytes, outdial.sip).expect("send");
        let mut buf = [0u8; 4096];
        socket
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let first = request("OPTIONS", "SIP/2.0", "");
    let options = exchange(first.as_bytes()).expect("OPTIONS answered");
    assert!(options.starts_with("SIP/2.0 200"), "{options}");
    let again = exchange(first.as_bytes()).expect("a retransmitted OPTIONS gets its 200 again");
    assert_eq!(
        again, options,
        "the server transaction resends the same final response"
    );
    let bad_version = exchange(request("OPTIONS", "SIP/7.0", "").as_bytes()).expect("answered");
    assert!(bad_version.starts_with("SIP/2.0 505"), "{bad_version}");
    // The border (docs/sip.md): by default a stranger's INVITE draws no answer at all,
    // nothing to reflect at a spoofed source (`tests/hostile_peers.rs` has the 404 variant).
    let invite = request("INVITE", "SIP/2.0", "");
    assert_eq!(
        exchange(invite.as_bytes()),
        None,
        "a stranger's INVITE is unanswered"
    );
    let ack = invite
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    assert_eq!(exchange(ack.as_bytes()), None, "an ACK is never answered");
    let bad_cseq =
        request("OPTIONS", "SIP/2.0", "").replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    let reply = exchange(bad_cseq.as_bytes()).expect("malformed CSeq answered");
    assert!(reply.starts_with("SIP/2.0 400"), "{reply}");
    for garbage in [
        &b"\x00\x01\x02garbage"[..],
        b"",
        b"INVITE\r\n\r\n",
        &[0xff; 1400],
    ] {
        assert_eq!(exchange(garbage), None, "garbage must be dropped silently");
    }
    let still_up = exchange(request("OPTIONS", "SIP/2.0", "").as_bytes()).expect("still answering");
    assert!(still_up.starts_with("SIP/2.0 200"), "{still_up}");
    let (status, _) = curl(&[&format!("{}/healthz", outdial.api)]);
    assert_eq!(status, 200);
}

/// `outdial call` places a call through the API and follows it to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outdial_call_command_follows_a_call_to_completion() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("2")),
            ("DTMF_DELAY_MS", "1000".into()),
        ],
    );
    let outdial = Outdial::start("");
    let to = sipp.uri("+15550005");
    let url = app.url("/app.vxml");
    let args: Vec<String> = [
        "call",
        "--api",
        &outdial.api,
        "--api-key",
        &outdial.api_key,
        "--to",
        &to,
        "--url",
        &url,
        "--var",
        "patient=Grace",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let bin = outdial_tests::outdial_bin();
    let output = tokio::task::spawn_blocking(move || Command::new(bin).args(args).output())
        .await
        .expect("join")
        .expect("run outdial call");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "outdial call failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("completed"), "{stdout}");
    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .collect();
    assert_eq!(submits.len(), 1);
    assert_eq!(
        form_pairs(&submits[0].body),
        vec![("confirm".to_owned(), "false".to_owned())]
    );
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
}

/// A callee that insists on reliable provisional responses (RFC 3262) gets its 180 PRACKed
/// (SIPp checks `Supported: 100rel` on the INVITE and the PRACK's `RAck`), answers, and the
/// call runs as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reliable_180_is_pracked_and_the_call_runs() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas("answer_100rel.xml", &[("DTMF_PCAP", dtmf_pcap("2"))]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550001"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(
        sipp_status.success(),
        "SIPp's 100rel scenario failed:\n{trace}\n{}",
        outdial.log()
    );
    assert!(trace.contains("PRACK sip:"), "{trace}");
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["result"], json!({ "confirm": "false" }), "{call}");
}

/// The callee puts the call on hold and resumes it with re-INVITEs (RFC 3264 §8.4) before
/// pressing a key: each gets a 200 whose SDP mirrors the offer's direction (SIPp checks
/// `a=recvonly`, then `a=sendrecv`), no RTP goes to it while held, and the key still reaches
/// the application after the resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_holding_and_resuming_the_call_is_answered_and_still_heard() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas("hold_resume.xml", &[("DTMF_PCAP", dtmf_pcap("1"))]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550001"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(
        sipp_status.success(),
        "SIPp's hold/resume scenario failed:\n{trace}\n{}",
        outdial.log()
    );
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    assert!(trace.contains("a=recvonly"), "{trace}");
}

/// The callee hangs up (sends BYE) while the application is waiting for a key: Outdial
/// answers 200, the session ends with `connection.disconnect.hangup`, and the call is
/// `completed` with the callee named as the one who hung up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hanging_up_mid_application_completes_the_call() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    let sipp = Sipp::uas("callee_hangs_up.xml", &[("HANGUP_AFTER_MS", "1500".into())]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550006"), "url": app.url("/app.vxml"), "vars": {"patient": "Ada"} }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("callee hung up")),
        "{call}"
    );
    assert!(call["result"].is_null(), "nothing was submitted: {call}");
    assert!(
        sipp_status.success(),
        "SIPp expected our 200 OK to its BYE:\n{trace}"
    );
    assert!(app.received().iter().all(|r| r.path != "/submit"));
}

/// DELETE on a ringing call: Outdial sends CANCEL at once (not at the ring timeout) and the
/// call ends `canceled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_ringing_call_cancels_it() {
    let sipp = Sipp::uas("ring_forever.xml", &[]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550007"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
            "ring_timeout": 60,
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let ringing = outdial.wait_status(id, "ringing", CALL_TIMEOUT).await;
    assert_eq!(ringing["status"], "ringing", "{ringing}");
    let (status, body) = outdial.cancel_call(id).await;
    assert_eq!(status, 202, "{body}");
    let call = outdial.wait_final(id, Duration::from_secs(20)).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "canceled", "{call}");
    assert!(call["answered_at"].is_null(), "{call}");
    assert!(
        sipp_status.success(),
        "SIPp expected CANCEL then ACK:\n{trace}"
    );
    let (status, body) = outdial.cancel_call(id).await;
    assert_eq!(
        status, 409,
        "an ended call cannot be canceled again: {body}"
    );
    assert_eq!(body["error"]["code"], "already_ended", "{body}");
}

/// Two dataplane cores: simultaneous calls are spread over both by power-of-two-choices
/// and each completes on its own core's SIP port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_share_simultaneous_calls() {
    const CALLS: usize = 4;
    let app = AppServer::start().await;
    app.vxml(
        "/hello.vxml",
        r#"<vxml version="2.1"><form><block><prompt>Hello.</prompt><exit/></block></form></vxml>"#,
    );
    let sipp = Sipp::uas_calls("answer_wait_bye.xml", &[], CALLS as u32);
    let outdial = Outdial::start("[dataplane]\ncores = 2\n");
    let mut ids = Vec::new();
    for n in 0..CALLS {
        let (status, created) = outdial
            .create_call(
                &json!({ "to": sipp.uri(&format!("+1555001{n}")), "url": app.url("/hello.vxml") }),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let call = outdial.wait_final(id, CALL_TIMEOUT).await;
        assert_eq!(call["status"], "completed", "{call}");
        assert!(
            call["reason"]
                .as_str()
                .is_some_and(|r| r.contains("<exit>")),
            "{call}"
        );
    }
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    let log = outdial.log();
    for core in 0..2 {
        let dialed_here = log
            .lines()
            .filter(|l| l.contains("dialing") && l.contains(&format!("core={core}")))
            .count();
        assert_eq!(
            dialed_here,
            CALLS / 2,
            "calls per core should be balanced; log:\n{log}"
        );
    }
    // Core 1 listens on the configured SIP port + 1, so its responses come back to it.
    let via_ports: std::collections::HashSet<_> = trace
        .lines()
        .filter(|l| l.starts_with("Via: SIP/2.0/UDP 127.0.0.1:"))
        .filter_map(|l| {
            l.split(':')
                .nth(2)
                .and_then(|p| p.split(';').next())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        via_ports.len(),
        2,
        "INVITEs should come from both cores' SIP ports: {via_ports:?}"
    );
}

/// On a wildcard listen address, `[sip] public_ip` is what goes into Via, Contact and SDP;
/// without it the server refuses to start and says which key to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_listen_address_needs_and_uses_public_ip() {
    let (status, output) = Outdial::refused("0.0.0.0", "");
    assert!(!status.success(), "must refuse to start: {output}");
    assert!(
        output.contains("sip.public_ip"),
        "the error must name the key: {output}"
    );

    let sipp = Sipp::uas("busy.xml", &[]);
    let outdial = Outdial::start_with_sip("0.0.0.0", "public_ip = \"127.0.0.1\"", "");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550020"), "url": "http://127.0.0.1:9/x.vxml" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "busy", "{call}");
    assert!(sipp_status.success(), "{trace}");
    let via = trace
        .lines()
        .find(|l| l.starts_with("Via: SIP/2.0/UDP"))
        .unwrap_or_default();
    assert!(
        via.starts_with("Via: SIP/2.0/UDP 127.0.0.1:"),
        "Via must carry public_ip: {via}"
    );
    assert!(
        !trace.contains("0.0.0.0"),
        "a wildcard address leaked into SIP:\n{trace}"
    );
}

/// SIGTERM with a call in progress that outlives the drain's grace: the server hangs the call
/// up (BYE) before it exits, and after a restart the record says why, instead of
/// "interrupted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hangs_up_live_calls_and_records_why() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    // The application never ends on its own: the drain's grace runs out and the call is hung up.
    let mut outdial = Outdial::start("[calls]\ndrain_grace_secs = 1\n");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550030"), "url": app.url("/app.vxml"), "vars": {"patient": "Ada"} }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let live = outdial.wait_status(&id, "in-progress", CALL_TIMEOUT).await;
    assert_eq!(live["status"], "in-progress", "{live}");

    let exit = tokio::task::block_in_place(|| outdial.terminate());
    assert!(
        exit.success(),
        "a clean shutdown exits 0: {exit}\n{}",
        outdial.log()
    );
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(
        sipp_status.success(),
        "the callee must get our BYE before we exit:\n{trace}"
    );

    tokio::task::block_in_place(|| outdial.restart());
    let call = outdial.get_call(&id).await;
    assert_eq!(call["status"], "canceled", "{call}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("shutting down")),
        "{call}"
    );
    assert_eq!(
        call["disposition"], "completed",
        "the SIP leg ended normally: {call}"
    );
}

/// A plain E.164 number goes to `[sip] trunk` as `sip:<number>@<trunk host:port>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e164_numbers_are_sent_to_the_trunk() {
    let sipp = Sipp::uas("busy.xml", &[]);
    let trunk_addr = sipp.addr;
    let trunk = format!("trunk = \"sip:{trunk_addr}\"");
    let outdial = Outdial::start_with_sip("127.0.0.1", &trunk, "");
    let (status, created) = outdial
        .create_call(&json!({ "to": "+15550040", "url": "http://127.0.0.1:9/x.vxml" }))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["to"], "+15550040",
        "the request is kept as given: {created}"
    );
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "busy", "{call}");
    assert!(sipp_status.success(), "{trace}");
    assert!(
        trace.contains(&format!("INVITE sip:+15550040@{trunk_addr} SIP/2.0")),
        "Request-URI must be the number at the trunk:\n{trace}"
    );
}

/// With `[sip] outbound_proxy`, every INVITE goes to the proxy, whatever the callee's host,
/// and the Request-URI is kept: a host name that no DNS knows is not looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_proxy_receives_every_invite() {
    let sipp = Sipp::uas("busy.xml", &[]);
    let proxy = format!("outbound_proxy = \"{}\"", sipp.addr);
    let outdial = Outdial::start_with_sip("127.0.0.1", &proxy, "");
    let to = "sip:+15550060@carrier.example.invalid";
    let (status, created) = outdial
        .create_call(&json!({ "to": to, "url": "http://127.0.0.1:9/x.vxml" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "busy", "{call}");
    assert!(sipp_status.success(), "{trace}");
    assert!(trace.contains(&format!("INVITE {to} SIP/2.0")), "{trace}");
}

/// The application root: a variable every leaf sees, and a catch for what this platform
/// cannot do.
const RECORD_ROOT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="company" expr="'Acme'"/>
  <catch event="error.unsupported">
    <log>unsupported: <value expr="_message"/></log>
    <exit/>
  </catch>
</vxml>
"#;

/// A menu chosen by DTMF; the chosen form calls a subdialog, reads XML with `<data>`, and
/// records a message it submits as multipart/form-data with the values gathered.
const RECORD_APP: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml" application="root.vxml">
  <menu id="main" dtmf="true">
    <prompt>For sales press 1. For support press 2.</prompt>
    <choice dtmf="1" next="#sales"/>
    <choice dtmf="2" next="#support"/>
  </menu>
  <form id="sales">
    <var name="menu" expr="'sales'"/>
    <var name="ticket"/>
    <var name="code"/>
    <subdialog name="who" src="sub.vxml">
      <param name="dept" expr="menu"/>
      <filled><assign name="ticket" expr="who.ticket"/></filled>
    </subdialog>
    <block name="lookup">
      <data name="info" src="info.xml"/>
      <assign name="code" expr="info.documentElement.getAttribute('code')"/>
    </block>
    <record name="msg" beep="true" maxtime="12s" finalsilence="1500ms" dtmfterm="true"
            type="audio/wav">
      <filled>
        <submit next="upload" method="post" enctype="multipart/form-data"
                namelist="msg menu ticket code company"/>
      </filled>
    </record>
  </form>
  <form id="support">
    <block><submit next="upload" method="post" namelist="company"/></block>
  </form>
</vxml>
"##;

const RECORD_SUB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <var name="dept"/>
    <block>
      <var name="ticket" expr="'T-' + dept"/>
      <return namelist="ticket"/>
    </block>
  </form>
</vxml>
"#;

const RECORD_INFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<account code="A42"><owner>Ada</owner></account>
"#;

const RECORD_DONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><exit/></block></form>
</vxml>
"#;

/// Reads a RIFF WAVE of PCM16 mono 8 kHz; `None` when it is anything else.
fn wav_samples(wav: &[u8]) -> Option<Vec<i16>> {
    let u16_at = |at: usize| {
        wav.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        wav.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if wav.get(..4)? != b"RIFF" || wav.get(8..16)? != b"WAVEfmt " {
        return None;
    }
    if (u16_at(20)?, u16_at(22)?, u32_at(24)?, u16_at(34)?) != (1, 1, 8000, 16) {
        return None;
    }
    if wav.get(36..40)? != b"data" {
        return None;
    }
    let len = u32_at(40)? as usize;
    let data = wav.get(44..44 + len)?;
    Some(
        data.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    )
}

/// The whole language on a real call: SIPp answers, presses 1 for a `<menu>`, then speaks
/// (SIPp's G.711 speech capture) into a `<record>` that the application root, a
/// `<subdialog>` and a `<data>` fetch lead up to; the recording reaches the application
/// server as a WAV file in a multipart/form-data POST, with the values gathered on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_message_is_submitted_as_multipart_with_the_values_gathered() {
    let app = AppServer::start().await;
    app.vxml("/root.vxml", RECORD_ROOT);
    app.vxml("/app.vxml", RECORD_APP);
    app.vxml("/sub.vxml", RECORD_SUB);
    app.route("/info.xml", 200, "application/xml", RECORD_INFO);
    app.vxml("/upload", RECORD_DONE);
    let speech = shared_dir().join("corpus/rtp-dtmf-sipp-pcaps/g711a.pcap");
    assert!(
        speech.exists(),
        "missing test corpus file {}: run bench/corpora/fetch.sh",
        speech.display()
    );
    let sipp = Sipp::uas(
        "answer_dtmf_speak.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "2000".into()),
            ("SPEAK_DELAY_MS", "1500".into()),
            (
                "SPEECH_PCAP",
                speech
                    .canonicalize()
                    .expect("canonical path")
                    .to_string_lossy()
                    .into_owned(),
            ),
        ],
    );
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550060"), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    let received = app.received();
    let fetched = |path: &str| received.iter().any(|r| r.path.starts_with(path));
    for path in ["/root.vxml", "/sub.vxml", "/info.xml"] {
        assert!(
            fetched(path),
            "{path} was never fetched: {received:?}\n{}",
            outdial.log()
        );
    }
    let uploads: Vec<_> = received.iter().filter(|r| r.path == "/upload").collect();
    assert_eq!(uploads.len(), 1, "{call}\n{received:?}\n{}", outdial.log());
    let upload = uploads[0];
    assert_eq!(upload.method, "POST");
    let content_type = upload.content_type.clone().unwrap_or_default();
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let parts = multipart_parts(&content_type, &upload.body_bytes).expect("a multipart body");
    let value = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    assert_eq!(value("menu").as_deref(), Some("sales"), "{parts:?}");
    assert_eq!(value("ticket").as_deref(), Some("T-sales"), "{parts:?}");
    assert_eq!(value("code").as_deref(), Some("A42"), "{parts:?}");
    assert_eq!(value("company").as_deref(), Some("Acme"), "{parts:?}");
    let message = parts
        .iter()
        .find(|p| p.name == "msg")
        .unwrap_or_else(|| panic!("no recording in the upload: {parts:?}"));
    assert!(message.filename.is_some(), "sent as a file: {message:?}");
    assert_eq!(message.content_type.as_deref(), Some("audio/wav"));
    let samples = wav_samples(&message.data).expect("PCM16 8 kHz mono WAV");
    let seconds = samples.len() as f64 / 8000.0;
    // The capture is about 7 s, sent from 1.5 s after the key; the recording ends 1.5 s
    // after the last sound, or at 12 s.
    assert!((4.0..=12.5).contains(&seconds), "{seconds} s recorded");
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(loud > 8000, "the speech was recorded: {loud} loud samples");

    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert!(
        sipp_status.success(),
        "SIPp expected our BYE after the upload:\n{trace}"
    );
}

/// A blind `<transfer>`: the session throws `connection.disconnect.transfer` once the callee
/// reports the target answered; its handler still submits.
const TRANSFER_APP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="why" expr="'none'"/>
  <catch event="connection.disconnect.transfer">
    <assign name="why" expr="_event"/>
    <submit next="after" namelist="why" method="post"/>
  </catch>
  <form id="handoff">
    <transfer name="t" dest="sip:agent@127.0.0.1:5999" bridge="false" connecttimeout="10s">
      <prompt>Transferring.</prompt>
      <filled>
        <if cond="t == 'busy'">
          <submit next="busy" namelist="t" method="post"/>
        </if>
        <submit next="other" namelist="t" method="post"/>
      </filled>
    </transfer>
  </form>
</vxml>
"#;

const EXIT: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml"><form><block><exit/></block></form></vxml>
"#;

/// Runs [`TRANSFER_APP`] against `refer_notify.xml` whose final NOTIFY sipfrag is
/// `final_sipfrag`; returns the call record, the app server's requests, SIPp's trace and
/// whether SIPp completed its scenario.
async fn transfer_call(
    final_sipfrag: &str,
    number: &str,
) -> (Value, Vec<outdial_tests::Received>, String, bool, String) {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", TRANSFER_APP);
    app.vxml("/after", EXIT);
    app.vxml("/busy", GOODBYE);
    app.vxml("/other", GOODBYE);
    let sipp = Sipp::uas(
        "refer_notify.xml",
        &[
            ("REFER_TO_USER", "agent".into()),
            ("FINAL_SIPFRAG", final_sipfrag.into()),
        ],
    );
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri(number), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    (
        call,
        app.received(),
        trace,
        sipp_status.success(),
        outdial.log(),
    )
}

/// SIPp accepts our REFER and reports `SIP/2.0 200 OK`: we hang up our leg, the application's
/// `connection.disconnect.transfer` handler submits, and the call is `completed` as a transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_transfer_refers_the_callee_and_ends_the_call_as_transferred() {
    let (call, received, trace, sipp_ok, log) = transfer_call("200 OK", "+15550070").await;
    assert!(
        sipp_ok,
        "SIPp expected REFER, our 200s to its NOTIFYs and our BYE:\n{trace}\n{log}"
    );
    assert!(
        trace.contains("Refer-To: <sip:agent@127.0.0.1:5999>"),
        "REFER names the target:\n{trace}"
    );
    assert!(trace.contains("Referred-By: <sip:"), "{trace}");
    let submits: Vec<_> = received.iter().filter(|r| r.path == "/after").collect();
    assert_eq!(submits.len(), 1, "{received:?}\n{log}");
    assert_eq!(
        form_pairs(&submits[0].body),
        vec![(
            "why".to_owned(),
            "connection.disconnect.transfer".to_owned()
        )]
    );
    assert_eq!(call["status"], "completed", "{call}\n{log}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("transferred to sip:agent@127.0.0.1:5999")),
        "{call}"
    );
    assert_eq!(
        call["result"],
        json!({ "why": "connection.disconnect.transfer" })
    );
    assert!(
        received
            .iter()
            .all(|r| r.path != "/other" && r.path != "/busy")
    );
}

/// SIPp reports `SIP/2.0 486 Busy Here`: the caller stays with us, `<filled>` sees
/// `t == 'busy'` and submits it, then the application hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_transfer_target_is_the_form_item_value_busy() {
    let (call, received, trace, sipp_ok, log) = transfer_call("486 Busy Here", "+15550071").await;
    let submits: Vec<_> = received.iter().filter(|r| r.path == "/busy").collect();
    assert_eq!(submits.len(), 1, "{received:?}\n{log}");
    assert_eq!(
        form_pairs(&submits[0].body),
        vec![("t".to_owned(), "busy".to_owned())]
    );
    assert!(
        sipp_ok,
        "SIPp expected our BYE after the application's <disconnect>:\n{trace}"
    );
    assert_eq!(call["status"], "completed", "{call}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("<disconnect>")),
        "{call}"
    );
}

/// Waits on hold: no prompt, then a `<submit>` whose answer the server delays; its
/// `fetchaudio` starts after `fetchaudiodelay` and must play at least `fetchaudiominimum`.
const HOLD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <property name="fetchaudiodelay" value="500ms"/>
  <property name="fetchaudiominimum" value="1s"/>
  <form>
    <var name="order" expr="'A7'"/>
    <block><submit next="slow" namelist="order" method="post" fetchaudio="hold.wav"/></block>
  </form>
</vxml>
"#;

/// The submit's answer: its prompt must play in full after the hold music.
const HELD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you for holding.</prompt><exit/></block></form>
</vxml>
"#;

/// How long the application server takes to answer the submit.
const SLOW_SUBMIT: Duration = Duration::from_secs(3);

/// A RIFF WAVE (PCM16 mono 8 kHz) of a 440 Hz tone, `seconds` long.
fn tone_wav(seconds: u32) -> Vec<u8> {
    let samples: Vec<i16> = (0..8000 * seconds)
        .map(|n| {
            let phase = f64::from(n) * 440.0 * std::f64::consts::TAU / 8000.0;
            (phase.sin() * 8000.0) as i16
        })
        .collect();
    let data_len = samples.len() as u32 * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// Serves [`HOLD`], a 10 s `hold.wav` and a submit that answers [`HELD`] after
/// [`SLOW_SUBMIT`]; returns its base URL and the paths requested, in order.
async fn hold_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::{get, post};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = |path: &'static str| {
        let seen = std::sync::Arc::clone(&seen);
        move || {
            seen.lock().expect("seen").push(path.to_owned());
        }
    };
    let (app_seen, wav_seen, slow_seen) = (log("/app.vxml"), log("/hold.wav"), log("/slow"));
    let wav = tone_wav(10);
    let app = axum::Router::new()
        .route(
            "/app.vxml",
            get(move || async move {
                app_seen();
                ([(CONTENT_TYPE, "application/voicexml+xml")], HOLD)
            }),
        )
        .route(
            "/hold.wav",
            get(move || async move {
                wav_seen();
                ([(CONTENT_TYPE, "audio/wav")], wav)
            }),
        )
        .route(
            "/slow",
            post(move || async move {
                slow_seen();
                tokio::time::sleep(SLOW_SUBMIT).await;
                ([(CONTENT_TYPE, "application/voicexml+xml")], HELD)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

/// `fetchaudio` on a real call (VoiceXML 2.0 §6.1.1): during a slow `<submit>` the hold
/// music is fetched and played after `fetchaudiodelay`, stopped when the answer arrives,
/// and only then does the next document's prompt play; the call completes normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchaudio_plays_while_a_slow_submit_is_outstanding() {
    let (base, seen) = hold_server().await;
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550090"),
            "url": format!("{base}/app.vxml"),
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    let log = outdial.log();
    assert_eq!(call["status"], "completed", "{call}\n{log}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("<exit>")),
        "{call}\n{log}"
    );
    assert_eq!(call["result"], json!({ "order": "A7" }), "{call}");
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen, ["/app.vxml", "/slow", "/hold.wav"], "{log}");
    // Started, then stopped by the submit's answer (the 10 s clip was cut short by the
    // core: it was really playing), and only then the goodbye.
    let at = |needle: &str| log.find(needle);
    let (started, stopped, ended, session_ended) = (
        at("fetchaudio started"),
        at("fetchaudio stopped"),
        at("fetchaudio ended"),
        at("session ended"),
    );
    assert!(
        started.is_some() && started < stopped && stopped < ended && ended < session_ended,
        "{log}"
    );
    assert!(
        ended
            .and_then(|from| log.get(from..))
            .and_then(|rest| rest.lines().next())
            .is_some_and(|line| line.contains("interrupted=true")),
        "{log}"
    );
    let answered = call["answered_at"].as_str().unwrap_or_default();
    let ended_at = call["ended_at"].as_str().unwrap_or_default();
    assert!(answered < ended_at, "{call}");
    assert!(
        sipp_status.success(),
        "SIPp expected our BYE after the last prompt:\n{trace}"
    );
}
