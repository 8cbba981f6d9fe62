//! Digest authentication through the SIP endpoint in virtual time: a scripted UAS (or proxy)
//! challenges the INVITE or the BYE with 401/407 and checks what comes back. The digest
//! responses are recomputed here from RFC 7616 §3.4.1 with the hash crates directly.

use std::net::SocketAddr;
use std::time::Duration;

use md5::Md5;
use outdial_dataplane::api::{CallId, Disposition};
use outdial_dataplane::sip::auth::Credentials;
use outdial_dataplane::sip::message::{HeaderName, Message, Method};
use outdial_dataplane::sip::{DialParams, SipEvent, parse_message};

mod common;
use common::{Harness, SDP_ANSWER, SDP_OFFER, TARGET, UAS, addr, plain_dial};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "pa55-w0rd";

/// Dials call 1 as a carrier trunk does: with credentials, P-Asserted-Identity and Privacy.
fn dial(h: &mut Harness, credentials: Option<&Credentials>, ring_timeout: u64) {
    let params = DialParams {
        from: "sip:+15550100@carrier.example",
        credentials,
        asserted_identity: Some("sip:+15550100@carrier.example"),
        privacy: Some("id"),
        ..plain_dial(ring_timeout)
    };
    h.dial_with(1, &params).expect("dial");
}

fn credentials() -> Credentials {
    Credentials {
        username: "outdial".into(),
        password: PASSWORD.into(),
        realm: None,
    }
}

fn parse(bytes: &[u8]) -> Message<'_> {
    parse_message(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// What was sent, as `METHOD cseq-number` (requests) or the status.
fn summary(sent: &[(Duration, SocketAddr, Vec<u8>)]) -> Vec<String> {
    sent.iter()
        .map(|(_, to, bytes)| {
            assert_eq!(*to, addr(UAS), "everything goes to the UAS");
            let message = parse(bytes);
            let cseq = message.cseq().map_or(0, |c| c.number);
            match message.method() {
                Some(method) => format!("{method} {cseq}"),
                None => format!("{:?}", message.status()),
            }
        })
        .collect()
}

/// The scripted UAS's response, with `to_tag` on the To header.
fn reply(request: &[u8], status: u16, to_tag: &str, extra: &str, body: &str) -> Vec<u8> {
    common::reply(request, status, "Whatever", Some(to_tag), extra, body)
}

/// The value of `name` in a credentials header, quotes removed.
fn param(value: &str, name: &str) -> Option<String> {
    let rest = value.strip_prefix("Digest ")?;
    rest.split(", ").find_map(|p| {
        p.strip_prefix(&format!("{name}="))
            .map(|v| v.trim_matches('"').to_owned())
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 7616 §3.4.1 with qop=auth, recomputed here.
fn expected_response(algorithm: &str, credentials: &str, method: &str, password: &str) -> String {
    let h = |text: String| match algorithm {
        "MD5" => hex(&Md5::digest(text.as_bytes())),
        "SHA-256" => hex(&Sha256::digest(text.as_bytes())),
        other => panic!("unexpected algorithm {other}"),
    };
    let p = |name| param(credentials, name).unwrap_or_default();
    let ha1 = h(format!("{}:{}:{password}", p("username"), p("realm")));
    let ha2 = h(format!("{method}:{}", p("uri")));
    h(format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        p("nonce"),
        p("nc"),
        p("cnonce"),
        p("qop")
    ))
}

const PROXY_CHALLENGE: &str = "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n-407-1\", algorithm=MD5, qop=\"auth\", opaque=\"op1\"\r\n\
Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n-407-1\", algorithm=SHA-256, qop=\"auth\", opaque=\"op1\"\r\n";

#[test]
fn a_407_is_answered_once_with_a_new_invite_and_the_call_goes_on() {
    let mut h = Harness::new();
    let creds = credentials();
    dial(&mut h, Some(&creds), 60);
    let first = h.take_sent().remove(0).2;
    let first_msg = parse(&first);
    assert_eq!(
        first_msg.header(HeaderName::Other("P-Asserted-Identity")),
        Some("<sip:+15550100@carrier.example>")
    );
    assert_eq!(first_msg.header(HeaderName::Other("Privacy")), Some("id"));
    assert_eq!(
        first_msg.header(HeaderName::Other("Proxy-Authorization")),
        None
    );

    h.now += Duration::from_millis(40);
    let challenge = reply(&first, 407, "px", PROXY_CHALLENGE, "");
    h.deliver(&challenge);
    let sent = h.take_sent();
    assert_eq!(
        summary(&sent),
        ["ACK 1", "INVITE 2"],
        "the 407 is ACKed first"
    );
    let ack = parse(&sent[0].2);
    assert_eq!(
        ack.via().and_then(|v| v.branch()),
        first_msg.via().and_then(|v| v.branch())
    );
    assert_eq!(ack.to().and_then(|t| t.tag()), Some("px"));

    let second = sent[1].2.clone();
    let retry = parse(&second);
    assert_eq!(retry.call_id(), first_msg.call_id());
    assert_eq!(
        retry.from().and_then(|f| f.tag()),
        first_msg.from().and_then(|f| f.tag())
    );
    assert_eq!(retry.to().and_then(|t| t.tag()), None);
    assert_ne!(
        retry.via().and_then(|v| v.branch()),
        first_msg.via().and_then(|v| v.branch())
    );
    assert_eq!(retry.body(), SDP_OFFER);
    assert_eq!(
        retry.header(HeaderName::Other("P-Asserted-Identity")),
        Some("<sip:+15550100@carrier.example>")
    );
    let answer = retry
        .header(HeaderName::Other("Proxy-Authorization"))
        .expect("Proxy-Authorization")
        .to_owned();
    assert_eq!(retry.header(HeaderName::Other("Authorization")), None);
    assert_eq!(param(&answer, "algorithm").as_deref(), Some("SHA-256"));
    assert_eq!(param(&answer, "realm").as_deref(), Some("carrier.example"));
    assert_eq!(param(&answer, "uri").as_deref(), Some(TARGET));
    assert_eq!(param(&answer, "nc").as_deref(), Some("00000001"));
    assert_eq!(param(&answer, "qop").as_deref(), Some("auth"));
    assert_eq!(param(&answer, "opaque").as_deref(), Some("op1"));
    assert_eq!(param(&answer, "username").as_deref(), Some("outdial"));
    assert_eq!(
        param(&answer, "response"),
        Some(expected_response("SHA-256", &answer, "INVITE", PASSWORD))
    );
    assert!(!String::from_utf8_lossy(&second).contains(PASSWORD));

    // The 407 retransmitted: the old transaction ACKs it again, nothing else happens.
    h.deliver(&challenge);
    assert_eq!(summary(&h.take_sent()), ["ACK 1"]);

    // The retried INVITE is retransmitted on its own Timer A.
    h.advance_to(Duration::from_millis(540));
    assert_eq!(summary(&h.take_sent()), ["INVITE 2"]);

    h.deliver(&reply(&second, 180, "uas", "", ""));
    let contact = "Contact: <sip:callee@192.0.2.4:5070>\r\n";
    h.deliver(&reply(&second, 200, "uas", contact, SDP_ANSWER));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, SipEvent::Answered { .. }))
    );
    assert_eq!(summary(&h.take_sent()), ["ACK 2"]);

    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let sent = h.take_sent();
    assert_eq!(summary(&sent), ["BYE 3"]);
    h.deliver(&reply(&sent[0].2, 200, "uas", "", ""));
    h.advance_to(Duration::from_secs(120));
    assert_eq!(ended_calls(&h).len(), 1);
    assert_eq!(ended_calls(&h)[0].0, Disposition::Completed);
    assert!(h.endpoint.is_idle(), "every transaction ran out");
}

#[test]
fn wrong_credentials_end_the_call_auth_failed_after_exactly_one_retry() {
    let mut h = Harness::new();
    let creds = credentials();
    dial(&mut h, Some(&creds), 60);
    let www = "WWW-Authenticate: Digest realm=\"uas.example\", nonce=\"same\", qop=\"auth\"\r\n";
    let first = h.take_sent().remove(0).2;
    h.deliver(&reply(&first, 401, "u1", www, ""));
    let sent = h.take_sent();
    assert_eq!(summary(&sent), ["ACK 1", "INVITE 2"]);
    let second = sent[1].2.clone();
    let answer = parse(&second)
        .header(HeaderName::Other("Authorization"))
        .expect("Authorization")
        .to_owned();
    assert_eq!(param(&answer, "algorithm").as_deref(), Some("MD5"));
    assert_eq!(
        param(&answer, "response"),
        Some(expected_response("MD5", &answer, "INVITE", PASSWORD))
    );
    // The same nonce again: the password was wrong.
    h.deliver(&reply(&second, 401, "u2", www, ""));
    assert_eq!(summary(&h.take_sent()), ["ACK 2"], "no third INVITE");
    let ended = ended_calls(&h);
    assert_eq!(ended.len(), 1);
    let (disposition, status, reason) = &ended[0];
    assert_eq!(*disposition, Disposition::AuthFailed);
    assert_eq!(*status, Some(401));
    assert!(
        reason.starts_with("401 ") && reason.contains("refused"),
        "{reason}"
    );
    assert!(!reason.contains(PASSWORD));
    h.advance_to(Duration::from_secs(64));
    assert!(
        !summary(&h.take_sent())
            .iter()
            .any(|m| m.starts_with("INVITE")),
        "nothing is retried later"
    );
    assert!(h.endpoint.is_idle());
}

#[test]
fn a_challenge_without_credentials_ends_the_call_at_once() {
    let mut h = Harness::new();
    dial(&mut h, None, 60);
    let first = h.take_sent().remove(0).2;
    h.deliver(&reply(&first, 407, "px", PROXY_CHALLENGE, ""));
    assert_eq!(summary(&h.take_sent()), ["ACK 1"]);
    let ended = ended_calls(&h);
    assert_eq!(ended[0].0, Disposition::AuthFailed);
    assert_eq!(ended[0].1, Some(407));
    assert!(ended[0].2.contains("auth_password"), "{}", ended[0].2);
}

#[test]
fn a_cancel_after_a_retry_cancels_the_retried_invite() {
    let mut h = Harness::new();
    let creds = credentials();
    dial(&mut h, Some(&creds), 5);
    let first = h.take_sent().remove(0).2;
    h.now += Duration::from_millis(10);
    h.deliver(&reply(&first, 407, "px", PROXY_CHALLENGE, ""));
    let second = h.take_sent().remove(1).2;
    h.deliver(&reply(&second, 180, "uas", "", ""));
    h.advance_to(Duration::from_secs(5));
    let sent = h.take_sent();
    assert_eq!(summary(&sent), ["CANCEL 2"]);
    let cancel = parse(&sent[0].2);
    assert_eq!(
        cancel.via().and_then(|v| v.branch()),
        parse(&second).via().and_then(|v| v.branch())
    );
    h.deliver(&reply(&sent[0].2, 200, "uas", "", ""));
    h.deliver(&reply(&second, 487, "uas", "", ""));
    assert_eq!(summary(&h.take_sent()), ["ACK 2"]);
    assert_eq!(ended_calls(&h)[0].0, Disposition::NoAnswer);
}

#[test]
fn a_challenged_bye_is_answered_once() {
    let mut h = Harness::new();
    let creds = credentials();
    dial(&mut h, Some(&creds), 60);
    let invite = h.take_sent().remove(0).2;
    let contact = "Contact: <sip:callee@192.0.2.4:5070>\r\n";
    h.deliver(&reply(&invite, 200, "uas", contact, SDP_ANSWER));
    h.take_sent();
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let bye = h.take_sent().remove(0).2;
    assert_eq!(parse(&bye).cseq().map(|c| c.number), Some(2));
    let www = "WWW-Authenticate: Digest realm=\"uas.example\", nonce=\"b1\", algorithm=SHA-256, qop=\"auth\"\r\n";
    h.deliver(&reply(&bye, 401, "uas", www, ""));
    let sent = h.take_sent();
    assert_eq!(summary(&sent), ["BYE 3"]);
    let retry = parse(&sent[0].2);
    let answer = retry
        .header(HeaderName::Other("Authorization"))
        .expect("Authorization")
        .to_owned();
    assert_eq!(retry.method(), Some(Method::Bye));
    assert_eq!(
        param(&answer, "uri").as_deref(),
        Some("sip:callee@192.0.2.4:5070")
    );
    assert_eq!(
        param(&answer, "response"),
        Some(expected_response("SHA-256", &answer, "BYE", PASSWORD))
    );
    // Refused again: no third BYE.
    h.deliver(&reply(&sent[0].2, 401, "uas", www, ""));
    assert!(summary(&h.take_sent()).is_empty());
    h.advance_to(Duration::from_secs(60));
    assert!(h.endpoint.is_idle());
    assert_eq!(
        ended_calls(&h).len(),
        1,
        "the call ended when the BYE was sent"
    );
}

#[test]
fn a_stalled_retry_fails_by_timer_b_of_its_own_transaction() {
    let mut h = Harness::new();
    let creds = credentials();
    dial(&mut h, Some(&creds), 600);
    let first = h.take_sent().remove(0).2;
    h.advance_to(Duration::from_secs(2));
    h.take_sent();
    h.deliver(&reply(&first, 407, "px", PROXY_CHALLENGE, ""));
    h.take_sent();
    h.advance_to(Duration::from_millis(33_999));
    assert!(
        ended_calls(&h).is_empty(),
        "Timer B runs from the retry at 2 s"
    );
    h.advance_to(Duration::from_secs(34));
    let ended = ended_calls(&h);
    assert_eq!(ended[0].0, Disposition::Unreachable);
    assert!(ended[0].2.contains("Timer B"), "{}", ended[0].2);
}

/// Each ended call's disposition, SIP status and reason.
fn ended_calls(h: &Harness) -> Vec<(Disposition, Option<u16>, String)> {
    h.ended()
        .into_iter()
        .map(|(_, disposition, status, reason)| (disposition, status, reason))
        .collect()
}
