//! Incoming calls at the SIP endpoint in virtual time: a caller scripted here (at [`UAS`],
//! inside `inbound_sources`) sends INVITE, ACK, CANCEL and BYE as text, and every message
//! the endpoint sends back is parsed and checked (status, tags, destination, timing).

use std::net::SocketAddr;
use std::time::Duration;

use outdial_dataplane::api::{CallId, Disposition};
use outdial_dataplane::sip::message::HeaderName;
use outdial_dataplane::sip::{Message, SipEvent, Transport, parse_message};

mod common;
use common::*;

/// The caller's network (it holds [`UAS`], the caller's address).
const CALLER_NET: &str = "192.0.2.0/24";
const CALL_ID: &str = "in1@192.0.2.4";
const BRANCH: &str = "z9hG4bKcaller1";
const FROM: &str = "\"Caller\" <sip:+15550199@192.0.2.4>;tag=caller1";
const TO: &str = "<sip:+15550100@192.0.2.1>";
const REQUEST_URI: &str = "sip:+15550100@192.0.2.1:5060";
const CALLER_CONTACT: &str = "sip:caller@192.0.2.4:5070";
/// Our Contact in the 200 OK, where the caller sends its ACK and BYE.
const OUR_CONTACT: &str = "sip:outdial@192.0.2.1:5060";
const OFFER: &str = "v=0\r\no=caller 1 1 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
const ANSWER: &[u8] = b"v=0\r\no=- 5 5 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
const HOUR: Duration = Duration::from_secs(3600);

/// The first incoming call on core 0.
const FIRST: CallId = CallId(CallId::INBOUND);

fn harness() -> Harness {
    Harness::with_inbound(vec![CALLER_NET.parse().expect("network")])
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// An INVITE from the caller; `contact: None` leaves Contact out, an empty `body` the offer.
fn invite_with(call_id: &str, branch: &str, contact: Option<&str>, body: &str) -> Vec<u8> {
    let contact = contact.map_or(String::new(), |uri| format!("Contact: <{uri}>\r\n"));
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE {REQUEST_URI} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5070;branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {FROM}\r\nTo: {TO}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         {contact}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn invite() -> Vec<u8> {
    invite_with(CALL_ID, BRANCH, Some(CALLER_CONTACT), OFFER)
}

/// A body-less request from the caller in [`CALL_ID`]; `to_tag` is ours once we answered.
fn request(method: &str, uri: &str, branch: &str, to_tag: Option<&str>, cseq: u32) -> Vec<u8> {
    let to = to_tag.map_or_else(|| TO.to_owned(), |tag| format!("{TO};tag={tag}"));
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5070;branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {FROM}\r\nTo: {to}\r\nCall-ID: {CALL_ID}\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The ACK for our 200 OK: a new transaction (RFC 3261 §13.2.2.4).
fn ack_2xx(to_tag: &str) -> Vec<u8> {
    request("ACK", OUR_CONTACT, "z9hG4bKack2xx", Some(to_tag), 1)
}

/// The ACK for a final error: the INVITE's transaction (RFC 3261 §17.1.1.3).
fn ack_error(to_tag: &str) -> Vec<u8> {
    request("ACK", REQUEST_URI, BRANCH, Some(to_tag), 1)
}

fn parse(bytes: &[u8]) -> Message<'_> {
    parse_message(bytes).unwrap_or_else(|e| {
        panic!(
            "we send parseable SIP: {e}\n{}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Each datagram sent as (virtual milliseconds, destination, status or method).
fn summary(sent: &[(Duration, SocketAddr, Vec<u8>)]) -> Vec<(u128, SocketAddr, String)> {
    sent.iter()
        .map(|(at, to, bytes)| {
            let message = parse(bytes);
            let kind = match message.method() {
                Some(method) => method.to_string(),
                None => message.status().map(|s| s.to_string()).unwrap_or_default(),
            };
            (at.as_millis(), *to, kind)
        })
        .collect()
}

/// Sends of `kind` (a status or a method) at these virtual milliseconds, all to the caller.
fn times_of(sent: &[(Duration, SocketAddr, Vec<u8>)], kind: &str) -> Vec<u128> {
    summary(sent)
        .into_iter()
        .filter(|(_, _, k)| k == kind)
        .map(|(at, to, _)| {
            assert_eq!(to, addr(UAS), "{kind} goes to the caller");
            at
        })
        .collect()
}

/// The one response sent, checked to answer the INVITE; returns its status and To tag.
fn only_invite_response(sent: &[(Duration, SocketAddr, Vec<u8>)]) -> (u16, Option<String>) {
    assert_eq!(sent.len(), 1, "{:?}", summary(sent));
    let (_, to, bytes) = &sent[0];
    assert_eq!(*to, addr(UAS));
    let response = parse(bytes);
    let cseq = response.cseq().expect("CSeq");
    assert_eq!(
        (cseq.number, cseq.method.to_string().as_str()),
        (1, "INVITE")
    );
    assert_eq!(response.call_id(), Some(CALL_ID));
    assert_eq!(
        response.via().and_then(|via| via.branch()),
        Some(BRANCH),
        "the caller's Via comes back"
    );
    assert_eq!(response.from().and_then(|f| f.tag()), Some("caller1"));
    let tag = response.to().and_then(|t| t.tag()).map(str::to_owned);
    (response.status().expect("a response"), tag)
}

/// INVITE at 0, accepted at once: returns the 200's To tag (events and sends taken).
fn accepted(h: &mut Harness) -> String {
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    assert!(h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));
    h.drain();
    let (status, tag) = only_invite_response(&h.take_sent());
    assert_eq!(status, 200);
    tag.expect("the 200 has a To tag")
}

/// Accepted and ACKed: the call is up. Returns our To tag.
fn confirmed(h: &mut Harness) -> String {
    let tag = accepted(h);
    h.deliver(&ack_2xx(&tag));
    assert!(matches!(h.take_events()[..], [SipEvent::Answered { .. }]));
    assert!(h.take_sent().is_empty(), "an ACK draws no answer");
    tag
}

fn outcome(h: &mut Harness) -> Vec<(CallId, Disposition, Option<u16>, String)> {
    ended(&h.take_events())
}

#[test]
fn allowed_invite_gets_100_trying_and_one_incoming_event() {
    let mut h = harness();
    h.deliver(&invite());
    let (status, tag) = only_invite_response(&h.take_sent());
    assert_eq!((status, tag), (100, None), "100 Trying carries no To tag");
    assert_eq!(
        h.take_events(),
        [SipEvent::Incoming {
            call: FIRST,
            request_uri: REQUEST_URI.to_owned(),
            from: "sip:+15550199@192.0.2.4".to_owned(),
            to: "sip:+15550100@192.0.2.1".to_owned(),
            source: addr(UAS),
            sip_call_id: CALL_ID.to_owned(),
            sdp: OFFER.as_bytes().to_vec(),
        }]
    );
    assert_eq!(FIRST.inbound_core(), Some(0));
    assert_eq!(h.endpoint.active_calls(), 1);

    h.advance_to(ms(800));
    h.deliver(&invite());
    let (status, tag) = only_invite_response(&h.take_sent());
    assert_eq!(
        (status, tag),
        (100, None),
        "a retransmission gets the 100 again"
    );
    assert!(h.take_events().is_empty(), "and no second call");
    assert_eq!(h.endpoint.active_calls(), 1);
}

#[test]
fn accept_sends_200_retransmitted_until_the_ack() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    assert!(h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));
    assert!(
        !h.endpoint.accept(h.now, FIRST, ANSWER, HOUR),
        "a call is answered once"
    );
    h.drain();
    let sent = h.take_sent();
    let (status, tag) = only_invite_response(&sent);
    assert_eq!(status, 200);
    let tag = tag.expect("the 200 has a To tag");
    let ok = parse(&sent[0].2);
    assert_eq!(ok.body(), ANSWER);
    assert_eq!(ok.content_type(), Some("application/sdp"));
    assert_eq!(ok.contact().map(|c| c.uri.as_str()), Some(OUR_CONTACT));
    assert!(ok.header(HeaderName::Allow).expect("Allow").contains("BYE"));
    assert!(h.take_events().is_empty(), "Answered waits for the ACK");

    h.advance_to(ms(4000));
    let sent = h.take_sent();
    assert_eq!(times_of(&sent, "200"), [500, 1500, 3500]);
    for (_, _, bytes) in &sent {
        assert_eq!(
            parse(bytes).to().and_then(|t| t.tag()),
            Some(tag.as_str()),
            "every retransmission keeps the To tag"
        );
    }
    // A retransmitted INVITE gets the 200 again, not a 100.
    h.deliver(&invite());
    assert_eq!(
        only_invite_response(&h.take_sent()),
        (200, Some(tag.clone()))
    );

    h.deliver(&ack_2xx(&tag));
    assert_eq!(
        h.take_events(),
        [SipEvent::Answered {
            call: FIRST,
            sdp: OFFER.as_bytes().to_vec(),
            peer: addr(UAS),
        }]
    );
    h.deliver(&ack_2xx(&tag));
    h.advance_to(Duration::from_secs(40));
    assert!(h.take_sent().is_empty(), "no 200 after the ACK");
    assert!(
        h.take_events().is_empty(),
        "a repeated ACK answers nothing twice"
    );
    assert_eq!(h.endpoint.active_calls(), 1);
}

#[test]
fn callers_bye_after_ack_gets_200_and_ends_the_call() {
    let mut h = harness();
    let tag = confirmed(&mut h);
    h.advance_to(ms(10_000));
    h.deliver(&request("BYE", OUR_CONTACT, "z9hG4bKbye1", Some(&tag), 2));
    let sent = h.take_sent();
    assert_eq!(summary(&sent), [(10_000, addr(UAS), "200".to_owned())]);
    let ok = parse(&sent[0].2);
    let cseq = ok.cseq().expect("CSeq");
    assert_eq!((cseq.number, cseq.method.to_string().as_str()), (2, "BYE"));
    assert_eq!(ok.to().and_then(|t| t.tag()), Some(tag.as_str()));
    assert_eq!(
        outcome(&mut h),
        [(
            FIRST,
            Disposition::Completed,
            Some(200),
            "caller hung up".to_owned()
        )]
    );
    assert_eq!(h.endpoint.active_calls(), 0);
    h.advance_to(Duration::from_secs(60));
    assert!(h.take_sent().is_empty());
    assert!(
        h.endpoint.is_idle(),
        "the call and its transactions are forgotten"
    );
}

#[test]
fn our_hangup_after_ack_sends_bye_with_the_tags_swapped() {
    let mut h = harness();
    let tag = confirmed(&mut h);
    h.advance_to(ms(10_000));
    h.endpoint.hangup(h.now, FIRST);
    h.drain();
    let sent = h.take_sent();
    assert_eq!(summary(&sent), [(10_000, addr(UAS), "BYE".to_owned())]);
    let bye = parse(&sent[0].2);
    assert_eq!(
        bye.request_uri().map(|u| u.as_str()),
        Some(CALLER_CONTACT),
        "a BYE goes to the INVITE's Contact"
    );
    let from = bye.from().expect("From");
    assert_eq!(
        (from.uri.as_str(), from.tag()),
        ("sip:+15550100@192.0.2.1", Some(tag.as_str()))
    );
    let to = bye.to().expect("To");
    assert_eq!(
        (to.uri.as_str(), to.tag()),
        ("sip:+15550199@192.0.2.4", Some("caller1"))
    );
    assert_eq!(bye.call_id(), Some(CALL_ID));
    let cseq = bye.cseq().expect("CSeq");
    assert_eq!((cseq.number, cseq.method.to_string().as_str()), (1, "BYE"));
    let branch = bye.via().and_then(|via| via.branch()).expect("branch");
    assert!(branch.starts_with("z9hG4bK") && branch != BRANCH);
    assert_eq!(
        outcome(&mut h),
        [(
            FIRST,
            Disposition::Completed,
            Some(200),
            "hung up by the application".to_owned()
        )]
    );

    h.deliver(&reply(&sent[0].2, 200, "OK", None, "", ""));
    h.advance_to(Duration::from_secs(60));
    assert!(
        h.take_sent().is_empty(),
        "the answered BYE is not retransmitted"
    );
    assert!(h.endpoint.is_idle());
}

#[test]
fn no_ack_retransmits_200_then_byes_at_timer_h() {
    let mut h = harness();
    accepted(&mut h);
    h.advance_to(Duration::from_secs(40));
    let sent = h.take_sent();
    assert_eq!(
        times_of(&sent, "200"),
        [
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(times_of(&sent, "BYE").first(), Some(&32_000));
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Failed, Some(200))]
    );
    assert_eq!(h.endpoint.active_calls(), 0);
    h.advance_to(Duration::from_secs(100));
    assert!(
        h.endpoint.is_idle(),
        "the unanswered BYE times out and all is forgotten"
    );
}

#[test]
fn cancel_before_accept_gets_200_and_487_until_the_ack() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    h.advance_to(ms(2000));
    h.deliver(&request("CANCEL", REQUEST_URI, BRANCH, None, 1));
    let sent = h.take_sent();
    let mut answers: Vec<(String, u16)> = sent
        .iter()
        .map(|(_, to, bytes)| {
            assert_eq!(*to, addr(UAS));
            let response = parse(bytes);
            let method = response.cseq().expect("CSeq").method.to_string();
            (method, response.status().expect("a response"))
        })
        .collect();
    answers.sort();
    assert_eq!(
        answers,
        [("CANCEL".to_owned(), 200), ("INVITE".to_owned(), 487)]
    );
    let terminated = sent
        .iter()
        .map(|(_, _, bytes)| parse(bytes))
        .find(|r| r.status() == Some(487))
        .expect("487");
    let tag = terminated
        .to()
        .and_then(|t| t.tag())
        .expect("the 487 has a To tag")
        .to_owned();
    let cancel_tag = sent
        .iter()
        .map(|(_, _, bytes)| parse(bytes))
        .find(|r| r.cseq().is_some_and(|c| c.method.to_string() == "CANCEL"))
        .and_then(|r| r.to().and_then(|t| t.tag()).map(str::to_owned));
    assert_eq!(
        cancel_tag.as_deref(),
        Some(tag.as_str()),
        "RFC 3261 §9.2: the 200 to the CANCEL has the 487's To tag"
    );
    assert_eq!(
        outcome(&mut h),
        [(
            FIRST,
            Disposition::Canceled,
            Some(487),
            "the caller canceled before the answer".to_owned()
        )]
    );
    assert!(!h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));

    h.advance_to(ms(4000));
    assert_eq!(times_of(&h.take_sent(), "487"), [2500, 3500]);
    h.deliver(&ack_error(&tag));
    h.advance_to(Duration::from_secs(40));
    assert!(h.take_sent().is_empty(), "the ACK stops the 487");
    assert!(h.take_events().is_empty());
    assert!(h.endpoint.is_idle());
}

#[test]
fn reject_sends_retry_after_and_stops_on_the_ack() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    assert!(h.endpoint.reject(h.now, FIRST, 503, Some(5)));
    assert!(!h.endpoint.reject(h.now, FIRST, 486, None), "refused once");
    h.drain();
    let sent = h.take_sent();
    let (status, tag) = only_invite_response(&sent);
    assert_eq!(status, 503);
    let tag = tag.expect("the 503 has a To tag");
    assert_eq!(
        parse(&sent[0].2).header(HeaderName::Other("Retry-After")),
        Some("5")
    );
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Failed, Some(503))]
    );
    assert_eq!(h.endpoint.active_calls(), 0);
    assert!(!h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));

    h.advance_to(ms(2000));
    assert_eq!(times_of(&h.take_sent(), "503"), [500, 1500]);
    h.deliver(&ack_error(&tag));
    h.advance_to(Duration::from_secs(40));
    assert!(h.take_sent().is_empty(), "the ACK stops the 503");
    assert!(h.endpoint.is_idle());
}

#[test]
fn reject_without_retry_after_sends_none() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    assert!(h.endpoint.reject(h.now, FIRST, 486, None));
    h.drain();
    let sent = h.take_sent();
    assert_eq!(only_invite_response(&sent).0, 486);
    assert_eq!(
        parse(&sent[0].2).header(HeaderName::Other("Retry-After")),
        None
    );
    assert_eq!(outcome(&mut h)[0].1, Disposition::Busy);
}

#[test]
fn invite_from_outside_inbound_sources_draws_nothing() {
    let mut h = harness();
    h.deliver_from(addr("198.51.100.9:5070"), &invite());
    assert!(
        h.take_sent().is_empty(),
        "a stranger's INVITE is not answered"
    );
    assert!(h.take_events().is_empty());
    assert_eq!(h.endpoint.active_calls(), 0);
    assert!(h.endpoint.is_idle(), "and nothing is kept for it");
}

#[test]
fn unusable_invites_are_refused_at_once() {
    let cases = [("no Contact", None, OFFER, 400)];
    for (what, contact, body, expected) in cases {
        let mut h = harness();
        let invite = invite_with(CALL_ID, BRANCH, contact, body);
        h.deliver(&invite);
        let sent = h.take_sent();
        let (status, tag) = only_invite_response(&sent);
        assert_eq!(status, expected, "{what}");
        assert!(tag.is_some(), "{what}: a final response has a To tag");
        assert!(h.take_events().is_empty(), "{what}: no call");
        assert_eq!(h.endpoint.active_calls(), 0, "{what}");
        h.deliver(&invite);
        assert_eq!(h.take_sent()[0].2, sent[0].2, "{what}: replayed as it was");
    }

    // Without a From tag.
    let mut h = harness();
    let untagged = String::from_utf8(invite())
        .expect("text")
        .replace(";tag=caller1", "");
    h.deliver(untagged.as_bytes());
    let sent = h.take_sent();
    assert_eq!(summary(&sent), [(0, addr(UAS), "400".to_owned())]);
    assert!(h.take_events().is_empty());
}

#[test]
fn invite_with_the_call_id_of_a_live_call_gets_482() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    let merged = invite_with(CALL_ID, "z9hG4bKother", Some(CALLER_CONTACT), OFFER);
    h.deliver(&merged);
    let sent = h.take_sent();
    assert_eq!(summary(&sent), [(0, addr(UAS), "482".to_owned())]);
    assert_eq!(
        parse(&sent[0].2).via().and_then(|v| v.branch()),
        Some("z9hG4bKother")
    );
    assert!(h.take_events().is_empty());
    assert_eq!(h.endpoint.active_calls(), 1);
}

#[test]
fn max_calls_reached_gets_503() {
    let mut h = Harness::configured(|config| {
        config.inbound_sources = vec![CALLER_NET.parse().expect("network")];
        config.max_calls = 1;
    });
    h.deliver(&invite());
    h.take_sent();
    assert_eq!(h.take_events().len(), 1);
    let second = invite_with("in2@192.0.2.4", "z9hG4bKin2", Some(CALLER_CONTACT), OFFER);
    h.deliver(&second);
    assert_eq!(summary(&h.take_sent()), [(0, addr(UAS), "503".to_owned())]);
    assert!(h.take_events().is_empty(), "no second call");

    // Once the first has ended there is room again.
    assert!(h.endpoint.reject(h.now, FIRST, 486, None));
    h.drain();
    h.take_sent();
    h.take_events();
    let third = invite_with("in3@192.0.2.4", "z9hG4bKin3", Some(CALLER_CONTACT), OFFER);
    h.deliver(&third);
    assert_eq!(summary(&h.take_sent()), [(0, addr(UAS), "100".to_owned())]);
    let events = h.take_events();
    assert!(
        matches!(events[..], [SipEvent::Incoming { call, .. }] if call == CallId::inbound(0, 1)),
        "{events:?}"
    );
}

#[test]
fn hangup_before_accept_sends_480() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    h.advance_to(ms(3000));
    h.endpoint.hangup(h.now, FIRST);
    h.drain();
    let sent = h.take_sent();
    let (status, tag) = only_invite_response(&sent);
    assert_eq!(status, 480);
    assert!(tag.is_some());
    assert_eq!(sent[0].0, ms(3000));
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Canceled, Some(480))]
    );
    assert_eq!(h.endpoint.active_calls(), 0);
}

#[test]
fn hangup_between_200_and_ack_byes_once_the_ack_arrives() {
    let mut h = harness();
    let tag = accepted(&mut h);
    h.advance_to(ms(1000));
    h.take_sent();
    h.endpoint.hangup(h.now, FIRST);
    h.drain();
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Completed, Some(200))],
        "the call ends for the owner at once"
    );
    assert_eq!(h.endpoint.active_calls(), 0);
    h.advance_to(ms(2000));
    let sent = h.take_sent();
    assert!(times_of(&sent, "BYE").is_empty(), "no BYE before the ACK");
    assert_eq!(times_of(&sent, "200"), [1500], "the 200 still goes");

    h.deliver(&ack_2xx(&tag));
    let sent = h.take_sent();
    assert_eq!(summary(&sent), [(2000, addr(UAS), "BYE".to_owned())]);
    let bye = parse(&sent[0].2);
    assert_eq!(bye.to().and_then(|t| t.tag()), Some("caller1"));
    assert_eq!(bye.from().and_then(|f| f.tag()), Some(tag.as_str()));
    assert!(
        h.take_events().is_empty(),
        "no Answered for a call already ended"
    );
    h.deliver(&reply(&sent[0].2, 200, "OK", None, "", ""));
    h.advance_to(Duration::from_secs(60));
    assert!(h.take_sent().is_empty());
    assert!(h.endpoint.is_idle());
}

#[test]
fn hangup_between_200_and_ack_byes_at_timer_h_without_ack() {
    let mut h = harness();
    accepted(&mut h);
    h.advance_to(ms(1000));
    h.endpoint.hangup(h.now, FIRST);
    h.drain();
    assert_eq!(outcome(&mut h).len(), 1);
    h.advance_to(Duration::from_secs(40));
    let sent = h.take_sent();
    assert_eq!(times_of(&sent, "BYE").first(), Some(&32_000));
    assert!(h.take_events().is_empty(), "Ended only once");
    h.advance_to(Duration::from_secs(100));
    assert!(h.endpoint.is_idle());
}

#[test]
fn owner_never_answers_gets_480_at_64_t1() {
    let mut h = harness();
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    h.advance_to(ms(31_999));
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
    h.advance_to(ms(33_000));
    let sent = h.take_sent();
    assert_eq!(times_of(&sent, "480"), [32_000, 32_500]);
    assert!(parse(&sent[0].2).to().and_then(|t| t.tag()).is_some());
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Failed, Some(480))]
    );
    assert_eq!(h.endpoint.active_calls(), 0);
    assert!(!h.endpoint.accept(h.now, FIRST, ANSWER, HOUR), "too late");
}

/// The ACK for our 200 carrying `body` (the answer to the offer in our 200).
fn ack_2xx_with(to_tag: &str, body: &str) -> Vec<u8> {
    let ack = String::from_utf8(ack_2xx(to_tag)).expect("text");
    ack.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .into_bytes()
}

#[test]
fn an_offerless_invite_gets_our_offer_in_the_200_and_its_ack_brings_the_answer() {
    for ack_answer in [OFFER, ""] {
        let mut h = harness();
        h.deliver(&invite_with(CALL_ID, BRANCH, Some(CALLER_CONTACT), ""));
        let events = h.take_events();
        assert!(
            matches!(&events[..], [SipEvent::Incoming { sdp, .. }] if sdp.is_empty()),
            "{events:?}"
        );
        h.take_sent();
        assert!(
            h.endpoint.accept(h.now, FIRST, ANSWER, HOUR),
            "our offer goes in the 200"
        );
        h.drain();
        let sent = h.take_sent();
        let ok = parse(&sent[0].2);
        assert_eq!((ok.status(), ok.body()), (Some(200), ANSWER));
        let tag = ok.to().and_then(|t| t.tag()).expect("To tag").to_owned();
        h.deliver(&ack_2xx_with(&tag, ack_answer));
        let events = h.take_events();
        if ack_answer.is_empty() {
            let ended = ended(&events);
            assert_eq!(ended.len(), 1, "{events:?}");
            assert_eq!(ended[0].1, Disposition::Failed);
            assert!(ended[0].3.contains("no answer"), "{}", ended[0].3);
            assert_eq!(
                summary(&h.take_sent()).last().map(|(_, _, m)| m.clone()),
                Some("BYE".to_owned())
            );
        } else {
            assert!(
                matches!(&events[..], [SipEvent::Answered { sdp, .. }] if sdp == OFFER.as_bytes()),
                "the ACK's answer is handed over: {events:?}"
            );
        }
    }
}

/// [`invite`] as it comes over TCP (its Via says so).
fn tcp_invite(branch: &str) -> Vec<u8> {
    let invite =
        String::from_utf8(invite_with(CALL_ID, branch, Some(CALLER_CONTACT), OFFER)).expect("text");
    invite
        .replacen("SIP/2.0/UDP", "SIP/2.0/TCP", 1)
        .into_bytes()
}

#[test]
fn an_invite_over_tcp_is_answered_on_tcp_and_its_dialog_byes_on_tcp() {
    let mut h = harness();
    h.deliver_on(Transport::Tcp, &tcp_invite(BRANCH));
    let sent = h.take_sent_via();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0, sent[0].1),
        (Transport::Tcp, addr(UAS)),
        "100 on TCP"
    );
    assert_eq!(parse(&sent[0].2).status(), Some(100));
    h.take_events();

    assert!(h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));
    h.drain();
    let sent = h.take_sent_via();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].1), (Transport::Tcp, addr(UAS)));
    let ok = parse(&sent[0].2);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.contact().map(|c| c.uri.as_str()),
        Some("sip:outdial@192.0.2.1:5060;transport=tcp"),
        "the caller's requests come back on TCP"
    );
    let tag = ok.to().and_then(|t| t.tag()).expect("To tag").to_owned();
    // RFC 3261 §13.3.1.4: the 2xx is retransmitted until the ACK even over TCP.
    h.advance_to(ms(600));
    let sent = h.take_sent_via();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, Transport::Tcp);
    assert_eq!(parse(&sent[0].2).status(), Some(200));

    h.deliver_on(Transport::Tcp, &ack_2xx(&tag));
    assert!(matches!(h.take_events()[..], [SipEvent::Answered { .. }]));
    h.advance_to(ms(10_000));
    assert!(h.take_sent().is_empty(), "no 200 after the ACK");

    h.endpoint.hangup(h.now, FIRST);
    h.drain();
    let sent = h.take_sent_via();
    assert_eq!(sent.len(), 1);
    let bye = parse(&sent[0].2);
    assert_eq!(bye.method().map(|m| m.to_string()).as_deref(), Some("BYE"));
    assert_eq!((sent[0].0, sent[0].1), (Transport::Tcp, addr(UAS)));
    assert_eq!(bye.via().map(|v| v.transport), Some("TCP"));
    h.advance_to(ms(20_000));
    assert!(
        h.take_sent().is_empty(),
        "the BYE is not retransmitted on TCP"
    );
}

#[test]
fn a_refusal_over_tcp_is_sent_once() {
    let mut h = harness();
    h.deliver_on(Transport::Tcp, &tcp_invite(BRANCH));
    h.take_sent();
    assert!(h.endpoint.reject(h.now, FIRST, 486, None));
    h.drain();
    let sent = h.take_sent_via();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, Transport::Tcp);
    assert_eq!(parse(&sent[0].2).status(), Some(486));
    h.advance_to(ms(10_000));
    assert!(
        h.take_sent().is_empty(),
        "no Timer G for a non-2xx over TCP"
    );
}

// Early media on incoming calls (`inbound_early.rs`): 183 with our answer before the 200.

/// An INVITE at 0 put in early media at 1 s: returns the 183's To tag (sends and events
/// checked and taken).
fn in_early_media(h: &mut Harness) -> String {
    h.deliver(&invite());
    h.take_sent();
    h.take_events();
    h.advance_to(ms(1000));
    h.endpoint
        .progress(h.now, FIRST, ANSWER)
        .expect("early media");
    h.drain();
    let sent = h.take_sent();
    let (status, tag) = only_invite_response(&sent);
    assert_eq!(status, 183);
    assert!(
        sent[0].2.starts_with(b"SIP/2.0 183 Session Progress\r\n"),
        "with its reason phrase"
    );
    let progress = parse(&sent[0].2);
    assert_eq!(progress.body(), ANSWER, "the 183 carries our answer");
    assert_eq!(progress.content_type(), Some("application/sdp"));
    assert_eq!(
        progress.contact().map(|c| c.uri.as_str()),
        Some(OUR_CONTACT)
    );
    assert!(
        progress.header(HeaderName::Require).is_none()
            && progress.header(HeaderName::Other("RSeq")).is_none(),
        "sent unreliably"
    );
    assert_eq!(
        h.take_events(),
        [SipEvent::EarlyMedia {
            call: FIRST,
            sdp: OFFER.as_bytes().to_vec(),
            peer: addr(UAS),
        }],
        "the media starts on the caller's offer"
    );
    tag.expect("the 183 has our To tag")
}

#[test]
fn early_media_sends_183_with_the_answer_then_the_200_in_the_same_dialog() {
    let mut h = harness();
    let tag = in_early_media(&mut h);
    assert_eq!(
        h.endpoint.progress(h.now, FIRST, ANSWER),
        Err(outdial_dataplane::sip::NoEarlyMedia::NotOffered),
        "one 183 per call"
    );
    // A retransmitted INVITE gets the 183 again.
    h.advance_to(ms(1500));
    h.deliver(&invite());
    assert_eq!(
        only_invite_response(&h.take_sent()),
        (183, Some(tag.clone()))
    );
    // Long past 64*T1 (the guard for an undecided call): early media goes on.
    h.advance_to(Duration::from_secs(50));
    assert!(h.take_sent().is_empty(), "nothing before a minute");
    assert!(h.take_events().is_empty());

    assert!(h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));
    h.drain();
    let sent = h.take_sent();
    assert_eq!(only_invite_response(&sent), (200, Some(tag.clone())));
    assert_eq!(parse(&sent[0].2).body(), ANSWER, "the same SDP as the 183");
    h.deliver(&ack_2xx(&tag));
    assert_eq!(
        h.take_events(),
        [SipEvent::Answered {
            call: FIRST,
            sdp: OFFER.as_bytes().to_vec(),
            peer: addr(UAS),
        }]
    );
    h.advance_to(Duration::from_secs(200));
    assert!(
        h.take_sent().is_empty(),
        "no 183 repeats and no early-media limit once answered"
    );
    assert!(h.take_events().is_empty());
    assert_eq!(h.endpoint.active_calls(), 1);
}

#[test]
fn early_media_repeats_its_183_every_minute_and_is_refused_480_at_its_limit() {
    let mut h = harness();
    let tag = in_early_media(&mut h);
    let limit = outdial_dataplane::sip::EARLY_MEDIA_LIMIT;
    let repeat = outdial_dataplane::sip::PROGRESS_REPEAT;
    h.advance_to(ms(1000) + limit - ms(1));
    let sent = h.take_sent();
    let expected: Vec<u128> = (1..)
        .map(|n| (ms(1000) + repeat * n).as_millis())
        .take_while(|&at| at < (ms(1000) + limit).as_millis())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(times_of(&sent, "183"), expected, "RFC 3261 §13.3.1.1");
    assert!(h.take_events().is_empty());

    h.advance_to(ms(1000) + limit);
    let sent = h.take_sent();
    assert_eq!(only_invite_response(&sent), (480, Some(tag.clone())));
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::NoAnswer, Some(480))]
    );
    assert!(!h.endpoint.accept(h.now, FIRST, ANSWER, HOUR));
    h.deliver(&ack_error(&tag));
    h.advance_to(limit * 3);
    assert!(h.take_sent().is_empty(), "no 183 after the refusal");
    assert!(h.endpoint.is_idle());
}

#[test]
fn a_cancel_or_our_hangup_during_early_media_refuses_the_invite() {
    let mut h = harness();
    let tag = in_early_media(&mut h);
    h.advance_to(ms(3000));
    h.deliver(&request("CANCEL", REQUEST_URI, BRANCH, None, 1));
    let statuses: Vec<(u16, Option<String>)> = h
        .take_sent()
        .iter()
        .map(|(_, _, bytes)| {
            let r = parse(bytes);
            (
                r.status().expect("response"),
                r.to().and_then(|t| t.tag()).map(str::to_owned),
            )
        })
        .collect();
    assert!(statuses.contains(&(487, Some(tag.clone()))), "{statuses:?}");
    assert!(statuses.contains(&(200, Some(tag.clone()))), "{statuses:?}");
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Canceled, Some(487))]
    );
    h.deliver(&ack_error(&tag));
    h.advance_to(Duration::from_secs(300));
    assert!(h.take_sent().is_empty(), "no 183 after the 487");

    // The application disconnects before answering: 480, never a BYE.
    let mut h = harness();
    let tag = in_early_media(&mut h);
    h.advance_to(ms(5000));
    h.endpoint.hangup(h.now, FIRST);
    h.drain();
    assert_eq!(only_invite_response(&h.take_sent()), (480, Some(tag)));
    assert_eq!(
        outcome(&mut h)
            .into_iter()
            .map(|(call, disposition, status, _)| (call, disposition, status))
            .collect::<Vec<_>>(),
        [(FIRST, Disposition::Canceled, Some(480))]
    );
}

#[test]
fn no_early_media_for_a_caller_requiring_100rel_or_without_an_offer() {
    use outdial_dataplane::sip::NoEarlyMedia;
    let mut h = harness();
    let reliable = String::from_utf8(invite()).expect("text").replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel\r\n",
        1,
    );
    h.deliver(reliable.as_bytes());
    h.take_sent();
    h.take_events();
    assert_eq!(
        h.endpoint.progress(h.now, FIRST, ANSWER),
        Err(NoEarlyMedia::RequiresReliable)
    );
    h.drain();
    assert!(h.take_sent().is_empty(), "no unreliable 183 (RFC 3262 §3)");
    assert!(
        h.endpoint.accept(h.now, FIRST, ANSWER, HOUR),
        "still answerable"
    );

    let mut h = harness();
    h.deliver(&invite_with(CALL_ID, BRANCH, Some(CALLER_CONTACT), ""));
    h.take_sent();
    h.take_events();
    assert_eq!(
        h.endpoint.progress(h.now, FIRST, ANSWER),
        Err(NoEarlyMedia::NoOffer)
    );
    h.drain();
    assert!(h.take_sent().is_empty());
    assert_eq!(
        h.endpoint
            .progress(h.now, CallId(CallId::INBOUND + 7), ANSWER),
        Err(NoEarlyMedia::NotOffered)
    );
}
