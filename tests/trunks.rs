//! Trunks end to end: the real `outdial serve` dials a SIPp UAS that plays a carrier's edge.
//! It challenges the INVITE with 401 and checks the digest response with SIPp's own
//! `verifyauth`, or with 407 (which `verifyauth` cannot check: it reads only
//! `Authorization`), then the test recomputes the digest from SIPp's trace. A tenant's trunk
//! and caller ID decide the Request-URI, From, P-Asserted-Identity and Privacy SIPp sees.

use std::process::Command;
use std::time::Duration;

use md5::{Digest, Md5};
use outdial_tests::{AppServer, Outdial, Sipp, sip_invites};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "s3cret-Pa55";

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

/// A `[[trunk]]` named `carrier` whose edge is the SIPp UAS.
fn carrier(sipp: &Sipp, password: &str) -> String {
    format!(
        "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{{number}}@carrier.test\"\n\
         proxy = \"{}\"\nauth_user = \"outdial-acct\"\nauth_password = \"{password}\"\n\
         caller_id = \"+15550100\"\nasserted_identity = \"+15550199\"\nprivacy = \"id\"\n",
        sipp.addr
    )
}

/// Tenant `acme` fetches its application from this test's loopback server: the operator
/// opens loopback to it (other tenants may not reach loopback, docs/security.md).
const ACME_EGRESS: &str = "\n[egress.allow]\nacme = [\"127.0.0.1/32\"]\n";

fn credentials() -> Vec<(&'static str, String)> {
    vec![
        ("USER", "outdial-acct".to_owned()),
        ("PASSWORD", PASSWORD.to_owned()),
    ]
}

/// The value of `name` in a credentials header line, quotes removed.
fn param(line: &str, name: &str) -> String {
    line.split([',', ' '])
        .find_map(|p| p.trim().strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default()
}

/// RFC 2617 §3.2.2 (MD5, qop=auth), computed here from what the request carries.
fn md5_response(line: &str, method: &str, password: &str) -> String {
    let h = |text: String| {
        Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let ha1 = h(format!(
        "{}:{}:{password}",
        param(line, "username"),
        param(line, "realm")
    ));
    let ha2 = h(format!("{method}:{}", param(line, "uri")));
    h(format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        param(line, "nonce"),
        param(line, "nc"),
        param(line, "cnonce"),
        param(line, "qop")
    ))
}

fn curl(args: &[&str]) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
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

/// Adds tenant `id` (through the admin API) with `settings` and returns a key for it.
fn tenant_key(outdial: &Outdial, id: &str, settings: Value) -> String {
    let admin = format!("Authorization: Bearer {}", outdial.api_key);
    let json_type = "Content-Type: application/json";
    let mut body = settings;
    body["id"] = json!(id);
    let (status, tenant) = curl(&[
        "-H",
        &admin,
        "-H",
        json_type,
        "-d",
        &body.to_string(),
        &format!("{}/v1/admin/tenants", outdial.api),
    ]);
    assert_eq!(status, 201, "{tenant}");
    let (status, key) = curl(&[
        "-H",
        &admin,
        "-H",
        json_type,
        "-d",
        &json!({"tenant": id, "scopes": ["calls:create", "calls:read"]}).to_string(),
        &format!("{}/v1/admin/keys", outdial.api),
    ]);
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().expect("key").to_owned()
}

/// Places a call with `key` and waits for its end.
async fn call(outdial: &Outdial, key: &str, body: Value) -> Value {
    let auth = format!("Authorization: Bearer {key}");
    let (status, created) = curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &body.to_string(),
        &format!("{}/v1/calls", outdial.api),
    ]);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let (_, record) = curl(&["-H", &auth, &format!("{}/v1/calls/{id}", outdial.api)]);
        if outdial_tests::is_final(&record) || std::time::Instant::now() > deadline {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The INVITEs SIPp received, whole (the trace holds what it sent too).
fn received_invites(trace: &str) -> Vec<String> {
    let trace = trace.replace('\r', "");
    trace
        .split("\n\n")
        .filter(|m| m.trim_start().starts_with("INVITE sip:"))
        .map(|m| m.trim_start().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_407_from_the_tenants_trunk_is_answered_and_the_call_completes() {
    let sipp = Sipp::uas("proxy_challenge.xml", &credentials());
    let outdial = Outdial::start(&format!("{}{ACME_EGRESS}", carrier(&sipp, PASSWORD)));
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let key = tenant_key(
        &outdial,
        "acme",
        json!({"trunk": "carrier", "caller_id": "+15550111"}),
    );
    let record = call(
        &outdial,
        &key,
        json!({"to": "+15550001", "url": app.url("/app.vxml")}),
    )
    .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(record["status"], "completed", "{record}\n{trace}");
    assert_eq!(
        record["target_uri"], "sip:+15550001@carrier.test",
        "{record}"
    );
    assert!(sipp_status.success(), "{trace}");
    let invites = received_invites(&trace);
    assert_eq!(invites.len(), 2, "one INVITE, one retry:\n{trace}");
    assert_eq!(
        sip_invites(&trace)
            .iter()
            .map(|(uri, _)| uri.as_str())
            .collect::<Vec<_>>(),
        ["sip:+15550001@carrier.test", "sip:+15550001@carrier.test"]
    );
    let retry = &invites[1];
    for wanted in [
        "CSeq: 2 INVITE",
        "Proxy-Authorization: Digest username=\"outdial-acct\", realm=\"carrier.test\"",
        "algorithm=MD5",
        "qop=auth, nc=00000001",
        "opaque=\"0p4que\"",
        // The tenant's caller ID, at the trunk's domain; the trunk's asserted identity.
        "From: <sip:+15550111@carrier.test>;tag=",
        "P-Asserted-Identity: <sip:+15550199@carrier.test>",
        "Privacy: id",
    ] {
        assert!(retry.contains(wanted), "{wanted}:\n{retry}");
    }
    assert!(!invites[0].contains("Authorization"), "{}", invites[0]);
    let line = retry
        .lines()
        .find(|l| l.starts_with("Proxy-Authorization:"))
        .unwrap_or_default();
    assert_eq!(param(line, "uri"), "sip:+15550001@carrier.test", "{line}");
    assert_eq!(
        param(line, "response"),
        md5_response(line, "INVITE", PASSWORD),
        "{line}"
    );
    assert!(!trace.contains(PASSWORD));
    assert!(
        !outdial.log().contains(PASSWORD),
        "the password is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_the_default_trunk_is_answered_and_the_requests_from_wins() {
    let sipp = Sipp::uas("auth_challenge.xml", &credentials());
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        "default_trunk = \"carrier\"",
        &carrier(&sipp, PASSWORD),
    );
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let record = call(
        &outdial,
        &outdial.api_key,
        json!({"to": "+15550002", "from": "+15550122", "url": app.url("/app.vxml")}),
    )
    .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(record["status"], "completed", "{record}\n{trace}");
    assert!(sipp_status.success(), "{trace}");
    let invites = received_invites(&trace);
    assert_eq!(invites.len(), 2, "{trace}");
    let retry = &invites[1];
    assert!(retry.contains("\nAuthorization: Digest "), "{retry}");
    assert!(!retry.contains("Proxy-Authorization"), "{retry}");
    assert!(
        retry.contains("From: <sip:+15550122@carrier.test>;tag="),
        "the request's from wins over the trunk's caller ID:\n{retry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_ends_the_call_auth_failed_after_exactly_one_retry() {
    let sipp = Sipp::uas("auth_challenge.xml", &credentials());
    let outdial = Outdial::start(&format!(
        "{}{ACME_EGRESS}",
        carrier(&sipp, "not-the-password")
    ));
    let key = tenant_key(&outdial, "acme", json!({"trunk": "carrier"}));
    let record = call(
        &outdial,
        &key,
        json!({"to": "+15550003", "url": "http://127.0.0.1:9/never.vxml"}),
    )
    .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["disposition"], "auth-failed", "{record}");
    assert_eq!(record["sip_status"], 401, "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("carrier.test") && reason.contains("refused"),
        "{reason}"
    );
    assert!(sipp_status.success(), "{trace}");
    assert_eq!(
        received_invites(&trace).len(),
        2,
        "exactly one retry:\n{trace}"
    );
    // The trunk's caller ID is the From when neither the request nor the tenant gives one.
    assert!(
        received_invites(&trace)[0].contains("From: <sip:+15550100@carrier.test>;tag="),
        "{trace}"
    );
}

/// A trunk with `register = true`: core 0 registers through the registrar's challenge
/// (checked by SIPp's `verifyauth`) and refreshes the 2 s binding it is granted before it
/// runs out, on the same Call-ID with the next CSeq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registering_trunk_registers_through_the_challenge_and_refreshes() {
    let sipp = Sipp::uas("registrar.xml", &credentials());
    let trunk = format!("{}register = true\n", carrier(&sipp, PASSWORD));
    let outdial = Outdial::start(&trunk);
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(20)).await;
    assert!(sipp_status.success(), "{trace}\n{}", outdial.log());
    let registers: Vec<String> = trace
        .replace('\r', "")
        .split("\n\n")
        .filter(|m| {
            m.trim_start()
                .starts_with("REGISTER sip:carrier.test SIP/2.0")
        })
        .map(|m| m.trim_start().to_owned())
        .collect();
    assert_eq!(registers.len(), 3, "{trace}");
    let call_ids: Vec<&str> = registers
        .iter()
        .filter_map(|r| r.lines().find(|l| l.starts_with("Call-ID:")))
        .collect();
    assert!(call_ids.windows(2).all(|w| w[0] == w[1]), "{call_ids:?}");
    for (register, cseq) in registers.iter().zip(1..) {
        assert!(
            register.contains(&format!("CSeq: {cseq} REGISTER")),
            "{register}"
        );
        assert!(
            register.contains("To: <sip:outdial-acct@carrier.test>"),
            "{register}"
        );
    }
    assert!(registers[1].contains("Authorization: Digest username=\"outdial-acct\""));
    let log = outdial.log();
    assert!(log.contains("registered for 2 s"), "{log}");
    assert!(log.contains("registered for 3600 s"), "{log}");
    assert!(!log.contains(PASSWORD));
}

/// At shutdown the binding is removed (`Expires: 0`, through the registrar's challenge), so
/// the registrar stops sending calls to a Contact that is going away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_removes_its_registration() {
    let sipp = Sipp::uas("registrar_unregister.xml", &credentials());
    let trunk = format!("{}register = true\n", carrier(&sipp, PASSWORD));
    let mut outdial = Outdial::start(&trunk);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !outdial.log().contains("registered for 3600 s") {
        assert!(
            std::time::Instant::now() < deadline,
            "never registered:\n{}\n{}",
            outdial.log(),
            sipp.trace()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = outdial.terminate();
    assert!(status.success(), "{}", outdial.log());
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(
        sipp_status.success(),
        "the registrar did not see the removal:\n{trace}\n{}",
        outdial.log()
    );
    let log = outdial.log();
    assert!(log.contains("unregistered: 200"), "{log}");
    assert!(!log.contains(PASSWORD));
}

/// A trunk with `follow_redirects = true`: `[[trunk]]` `carrier` whose edge is `edge`.
fn redirecting_carrier(edge: &Sipp) -> String {
    format!(
        "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{{number}}@carrier.test\"\n\
         proxy = \"{}\"\nfollow_redirects = true\n",
        edge.addr
    )
}

/// The trunk's edge answers 302 to another address; the trunk allows redirects, the target
/// is within the tenant's egress rules, so the INVITE goes there and the call completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_the_trunk_allows_is_followed_to_its_contact() {
    let callee = Sipp::uas("answer_wait_bye.xml", &[]);
    let edge = Sipp::uas("redirect.xml", &[("TARGET", callee.uri("+15550002"))]);
    let outdial = Outdial::start(&format!("{}{ACME_EGRESS}", redirecting_carrier(&edge)));
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let key = tenant_key(&outdial, "acme", json!({"trunk": "carrier"}));
    let record = call(
        &outdial,
        &key,
        json!({"to": "+15550001", "url": app.url("/app.vxml")}),
    )
    .await;
    let (edge_status, edge_trace) = edge.finish(Duration::from_secs(10)).await;
    let (callee_status, callee_trace) = callee.finish(Duration::from_secs(10)).await;
    assert!(edge_status.success(), "{edge_trace}");
    assert!(callee_status.success(), "{callee_trace}\n{}", outdial.log());
    assert_eq!(record["status"], "completed", "{record}\n{}", outdial.log());
    assert!(
        callee_trace.contains("INVITE sip:+15550002@127.0.0.1"),
        "the redirect's Contact is the new Request-URI:\n{callee_trace}"
    );
    assert!(outdial.log().contains("following the redirect"));
}

/// A redirect to an address the tenant may not reach (another loopback address) is not
/// followed: the call ends `failed` and its reason says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_outside_the_tenants_egress_rules_is_refused() {
    let edge = Sipp::uas(
        "redirect.xml",
        &[("TARGET", "sip:+15550002@127.0.0.2:5999".to_owned())],
    );
    let outdial = Outdial::start(&format!("{}{ACME_EGRESS}", redirecting_carrier(&edge)));
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let key = tenant_key(&outdial, "acme", json!({"trunk": "carrier"}));
    let record = call(
        &outdial,
        &key,
        json!({"to": "+15550001", "url": app.url("/app.vxml")}),
    )
    .await;
    let (edge_status, edge_trace) = edge.finish(Duration::from_secs(10)).await;
    assert!(edge_status.success(), "{edge_trace}");
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["sip_status"], 302, "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("redirect was refused"), "{record}");
    assert!(app.received().is_empty(), "nothing was answered");
}
