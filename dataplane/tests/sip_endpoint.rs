//! The SIP endpoint in virtual time against a UAS scripted here (built on the same parser):
//! every call flow the dataplane relies on, retransmission timers, out-of-call requests from
//! `tests/vectors/sip/uas-requests/`, and a 1,000-call leak check.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use outdial_dataplane::api::{CallId, Disposition};
use outdial_dataplane::sip::endpoint::{MAX_MESSAGE_BYTES, STRANGER_LIMIT, STRANGER_WINDOW};
use outdial_dataplane::sip::message::{HeaderName, Method};
use outdial_dataplane::sip::{
    BorderConfig, DialParams, SipError, SipEvent, Transport, parse_message,
};

mod common;
use common::*;

const CONTACT: &str =
    "Contact: <sip:callee@192.0.2.4:5070>\r\nRecord-Route: <sip:192.0.2.50:5090;lr>\r\n";

fn methods(sent: &[(Duration, SocketAddr, Vec<u8>)]) -> Vec<String> {
    sent.iter()
        .map(|(_, _, bytes)| {
            let message = parse_message(bytes).unwrap_or_else(|e| {
                panic!(
                    "we send parseable SIP: {e}\n{}",
                    String::from_utf8_lossy(bytes)
                )
            });
            match message.method() {
                Some(method) => method.to_string(),
                None => message.status().map(|s| s.to_string()).unwrap_or_default(),
            }
        })
        .collect()
}

/// Answers the INVITE with 180 then 200 (SDP, Contact, Record-Route).
fn answer(h: &mut Harness) -> Vec<u8> {
    let invite = h.last_request(Method::Invite);
    h.deliver(&reply(&invite, 180, "Ringing", Some("uas1"), "", ""));
    let ok = reply(&invite, 200, "OK", Some("uas1"), CONTACT, SDP_ANSWER);
    h.deliver(&ok);
    ok
}

#[test]
fn invite_is_well_formed() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let (_, to, bytes) = &sent[0];
    assert_eq!(*to, addr(UAS));
    let invite = parse_message(bytes).expect("INVITE parses");
    assert_eq!(invite.method(), Some(Method::Invite));
    assert_eq!(
        invite.request_uri().map(|u| u.as_str()),
        Some("sip:+15550001@192.0.2.4:5070")
    );
    let via = invite.via().expect("Via");
    assert!(via.branch().expect("branch").starts_with("z9hG4bK"));
    assert_eq!(via.rport(), Some(None));
    assert_eq!((via.transport, via.port), ("UDP", Some(5060)));
    assert!(invite.from().and_then(|f| f.tag()).is_some());
    assert_eq!(invite.to().and_then(|t| t.tag()), None);
    assert!(invite.call_id().expect("Call-ID").ends_with("@192.0.2.1"));
    let cseq = invite.cseq().expect("CSeq");
    assert_eq!((cseq.number, cseq.method), (1, Method::Invite));
    assert_eq!(
        invite.contact().map(|c| c.uri.as_str()),
        Some("sip:outdial@192.0.2.1:5060")
    );
    assert_eq!(invite.max_forwards(), Some(70));
    assert_eq!(
        invite.header(HeaderName::Other("User-Agent")),
        Some("outdial-test")
    );
    assert!(
        invite
            .header(HeaderName::Allow)
            .expect("Allow")
            .contains("BYE")
    );
    assert_eq!(invite.content_type(), Some("application/sdp"));
    assert_eq!(invite.body(), SDP_OFFER);
    assert_eq!(h.endpoint.active_calls(), 1);
}

#[test]
fn timer_a_doubles_and_timer_b_fails_the_call() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    h.advance_to(Duration::from_secs(40));
    let times: Vec<u128> = h
        .take_sent()
        .iter()
        .map(|(at, _, _)| at.as_millis())
        .collect();
    assert_eq!(times, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(1),
            Disposition::Unreachable,
            None,
            "no response from 192.0.2.4:5070 (Timer B)".to_owned()
        )]
    );
    assert_eq!(h.endpoint.active_calls(), 0);
    assert!(h.endpoint.is_idle());
}

#[test]
fn answered_call_acks_every_2xx_and_hangs_up_with_bye() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let ok = answer(&mut h);
    let events = h.take_events();
    assert_eq!(events[0], SipEvent::Ringing { call: CallId(1) });
    assert_eq!(
        events[1],
        SipEvent::Answered {
            call: CallId(1),
            sdp: SDP_ANSWER.as_bytes().to_vec(),
            peer: addr(UAS),
        }
    );
    assert_eq!(events.len(), 2);
    // The ACK goes to the first (loose) route, addressed to the Contact.
    let sent = h.take_sent();
    let (_, to, ack) = sent.last().expect("ACK");
    assert_eq!(*to, addr("192.0.2.50:5090"));
    let ack = parse_message(ack).expect("ACK parses");
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(
        ack.request_uri().map(|u| u.as_str()),
        Some("sip:callee@192.0.2.4:5070")
    );
    assert_eq!(ack.cseq().map(|c| c.number), Some(1));
    assert_eq!(ack.to().and_then(|t| t.tag()), Some("uas1"));
    assert_eq!(
        ack.header(HeaderName::Route),
        Some("<sip:192.0.2.50:5090;lr>")
    );
    // A retransmitted 200 is ACKed again, with no new event.
    h.now += Duration::from_millis(500);
    h.deliver(&ok);
    assert_eq!(methods(&h.take_sent()), ["ACK"]);
    assert!(h.take_events().is_empty());
    // Hang up: BYE with the next CSeq.
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let bye = h.last_request(Method::Bye);
    let parsed = parse_message(&bye).expect("BYE parses");
    assert_eq!(parsed.cseq().map(|c| c.number), Some(2));
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(1),
            Disposition::Completed,
            Some(200),
            "caller hung up".to_owned()
        )]
    );
    h.deliver(&reply(&bye, 200, "OK", None, "", ""));
    h.advance_to(Duration::from_secs(100));
    assert!(h.take_events().is_empty(), "Ended is emitted once");
    assert!(h.endpoint.is_idle());
}

#[test]
fn busy_is_acked_by_the_transaction() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.deliver(&reply(&invite, 100, "Trying", None, "", ""));
    let busy = reply(&invite, 486, "Busy Here", Some("b"), "", "");
    h.deliver(&busy);
    h.deliver(&busy);
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["INVITE", "ACK", "ACK"]);
    let ack = parse_message(&sent[1].2).expect("ACK parses");
    let invite = parse_message(&invite).expect("INVITE parses");
    assert_eq!(
        ack.via().and_then(|v| v.branch()),
        invite.via().and_then(|v| v.branch())
    );
    assert_eq!(ack.to().and_then(|t| t.tag()), Some("b"));
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(1),
            Disposition::Busy,
            Some(486),
            "486 Busy Here".to_owned()
        )]
    );
    h.advance_to(Duration::from_secs(40));
    assert!(h.endpoint.is_idle());
}

#[test]
fn final_failures_are_classified() {
    let cases = [
        (600, "Busy Everywhere", Disposition::Busy),
        (480, "Temporarily Unavailable", Disposition::NoAnswer),
        (408, "Request Timeout", Disposition::NoAnswer),
        (302, "Moved Temporarily", Disposition::Failed),
        (404, "Not Found", Disposition::Failed),
        (503, "Service Unavailable", Disposition::Failed),
    ];
    for (status, reason, disposition) in cases {
        let mut h = Harness::new();
        h.dial(1, 60).expect("dial");
        let invite = h.last_request(Method::Invite);
        h.deliver(&reply(
            &invite,
            status,
            reason,
            Some("x"),
            "Contact: <sip:elsewhere@192.0.2.66>\r\n",
            "",
        ));
        let ended = ended(&h.take_events());
        assert_eq!(
            (ended[0].1, ended[0].2),
            (disposition, Some(status)),
            "{status}"
        );
        // A 3xx is never followed: nothing but the ACK goes out.
        assert_eq!(methods(&h.take_sent()), ["INVITE", "ACK"]);
    }
}

#[test]
fn ring_timeout_cancels_and_487_ends_as_no_answer() {
    let mut h = Harness::new();
    h.dial(1, 10).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.now += Duration::from_secs(1);
    h.deliver(&reply(&invite, 180, "Ringing", Some("r"), "", ""));
    h.advance_to(Duration::from_secs(10));
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["INVITE", "CANCEL"]);
    assert_eq!(sent[1].0, Duration::from_secs(10));
    let cancel = parse_message(&sent[1].2).expect("CANCEL parses");
    let parsed_invite = parse_message(&invite).expect("INVITE parses");
    assert_eq!(
        cancel.via().and_then(|v| v.branch()),
        parsed_invite.via().and_then(|v| v.branch())
    );
    assert_eq!(
        cancel.cseq().map(|c| (c.number, c.method)),
        Some((1, Method::Cancel))
    );
    assert_eq!(cancel.request_uri(), parsed_invite.request_uri());
    assert_eq!(cancel.to().and_then(|t| t.tag()), None);
    h.deliver(&reply(&sent[1].2, 200, "OK", Some("r"), "", ""));
    h.deliver(&reply(
        &invite,
        487,
        "Request Terminated",
        Some("r"),
        "",
        "",
    ));
    assert_eq!(methods(&h.take_sent()), ["ACK"]);
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(1),
            Disposition::NoAnswer,
            Some(487),
            "no answer within 10s".to_owned()
        )]
    );
    h.advance_to(Duration::from_secs(60));
    assert!(h.endpoint.is_idle());
}

#[test]
fn ok_after_cancel_is_acked_then_byed_and_stays_no_answer() {
    let mut h = Harness::new();
    h.dial(1, 5).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.deliver(&reply(&invite, 180, "Ringing", Some("r"), "", ""));
    h.advance_to(Duration::from_secs(5));
    h.deliver(&reply(&invite, 200, "OK", Some("r"), CONTACT, SDP_ANSWER));
    assert_eq!(methods(&h.take_sent()), ["INVITE", "CANCEL", "ACK", "BYE"]);
    let events = h.take_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SipEvent::Answered { .. }))
    );
    assert_eq!(ended(&events)[0].1, Disposition::NoAnswer);
}

#[test]
fn hangup_before_any_provisional_waits_to_cancel() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.invite_bytes();
    h.now += Duration::from_millis(100);
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    assert_eq!(
        methods(&h.take_sent()),
        ["INVITE"],
        "no CANCEL before a provisional (RFC 3261 §9.1)"
    );
    h.deliver(&reply(&invite, 100, "Trying", None, "", ""));
    assert_eq!(methods(&h.take_sent()), ["CANCEL"]);
    h.deliver(&reply(
        &invite,
        487,
        "Request Terminated",
        Some("t"),
        "",
        "",
    ));
    let ended = ended(&h.take_events());
    assert_eq!((ended[0].1, ended[0].2), (Disposition::Canceled, Some(487)));
}

#[test]
fn remote_bye_ends_the_call_and_its_retransmission_is_absorbed() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    h.take_events();
    let ack = h.last_request(Method::Ack);
    let ack = parse_message(&ack).expect("ACK");
    let bye = format!(
        "BYE sip:outdial@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bKbye1\r\nFrom: <sip:+15550001@192.0.2.4:5070>;tag=uas1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 10 BYE\r\nContent-Length: 0\r\n\r\n",
        ack.header(HeaderName::From).expect("From"),
        ack.call_id().expect("Call-ID"),
    );
    h.take_sent();
    h.deliver(bye.as_bytes());
    h.deliver(bye.as_bytes());
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["200", "200"]);
    assert_eq!(
        sent[0].2, sent[1].2,
        "the retransmission gets the same response"
    );
    assert_eq!(sent[0].1, addr(UAS));
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(1),
            Disposition::Completed,
            Some(200),
            "callee hung up".to_owned()
        )]
    );
    h.advance_to(Duration::from_secs(100));
    assert!(h.endpoint.is_idle());
}

/// A request from the callee inside the answered call `h` dialed: `method` with `cseq`,
/// branch `branch`, a Contact at `contact`, and `body` as SDP (none when empty).
fn in_dialog(
    h: &Harness,
    method: &str,
    cseq: u32,
    branch: &str,
    contact: &str,
    body: &str,
) -> String {
    let ack = h.last_request(Method::Ack);
    let ack = parse_message(&ack).expect("ACK");
    let typed = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    format!(
        "{method} sip:outdial@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5070;branch={branch}\r\nFrom: <sip:+15550001@192.0.2.4:5070>;tag=uas1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <{contact}>\r\n{typed}Content-Length: {}\r\n\r\n{body}",
        ack.header(HeaderName::From).expect("From"),
        ack.call_id().expect("Call-ID"),
        body.len(),
    )
}

const HOLD_OFFER: &str = "v=0\r\no=- 2 3 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\na=sendonly\r\n";

#[test]
fn a_re_invite_with_an_offer_is_reported_and_answered_with_the_owners_sdp() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    h.take_events();
    let reinvite = in_dialog(
        &h,
        "INVITE",
        11,
        "z9hG4bKre1",
        "sip:callee@192.0.2.4:5070",
        HOLD_OFFER,
    );
    h.take_sent();
    h.deliver(reinvite.as_bytes());
    assert!(h.take_sent().is_empty(), "the answer waits for the owner");
    assert_eq!(
        h.take_events(),
        [SipEvent::Reoffer {
            call: CallId(1),
            sdp: HOLD_OFFER.as_bytes().to_vec()
        }]
    );
    assert!(
        h.endpoint
            .answer_reoffer(h.now, CallId(1), Ok(b"our answer"))
    );
    assert!(
        !h.endpoint.answer_reoffer(h.now, CallId(1), Ok(b"twice")),
        "one answer per offer"
    );
    h.drain();
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let ok = parse_message(&sent[0].2).expect("200 parses");
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.body(), b"our answer");
    assert_eq!(ok.cseq().map(|c| c.number), Some(11));
    assert!(ok.contact().is_some());
    assert!(
        ok.header(HeaderName::Other("Allow"))
            .is_some_and(|a| a.contains("UPDATE"))
    );
    // A retransmitted re-INVITE gets the same 200; the ACK (new branch) stops it.
    h.deliver(reinvite.as_bytes());
    assert_eq!(h.take_sent()[0].2, sent[0].2);
    let ack = reinvite
        .replace("INVITE sip", "ACK sip")
        .replace("11 INVITE", "11 ACK")
        .replace("z9hG4bKre1", "z9hG4bKre2");
    h.deliver(ack.as_bytes());
    h.advance_to(Duration::from_secs(10));
    assert!(
        methods(&h.take_sent()).iter().all(|m| m != "200"),
        "no 200 retransmission after ACK"
    );
    // The re-INVITE's Contact refreshed the target: our BYE goes there.
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let bye = h.last_request(Method::Bye);
    assert!(
        String::from_utf8_lossy(&bye).starts_with("BYE sip:callee@192.0.2.4:5070 SIP/2.0"),
        "{}",
        String::from_utf8_lossy(&bye)
    );
}

#[test]
fn an_update_offer_is_answered_a_crossing_one_gets_500_and_a_refusal_keeps_the_call() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    h.take_events();
    let update = in_dialog(
        &h,
        "UPDATE",
        11,
        "z9hG4bKup1",
        "sip:callee@192.0.2.4:5070",
        HOLD_OFFER,
    );
    let crossing = in_dialog(
        &h,
        "UPDATE",
        12,
        "z9hG4bKup2",
        "sip:callee@192.0.2.4:5070",
        HOLD_OFFER,
    );
    let refresh = in_dialog(
        &h,
        "UPDATE",
        13,
        "z9hG4bKup3",
        "sip:callee@192.0.2.4:5070",
        "",
    );
    h.take_sent();
    h.deliver(update.as_bytes());
    assert!(matches!(h.take_events()[..], [SipEvent::Reoffer { .. }]));
    // A second offer while the first waits: 500 with Retry-After (RFC 3311 §5.2).
    h.deliver(crossing.as_bytes());
    let sent = h.take_sent();
    let refused = parse_message(&sent[0].2).expect("500 parses");
    assert_eq!(refused.status(), Some(500));
    assert_eq!(refused.header(HeaderName::Other("Retry-After")), Some("1"));
    assert!(h.take_events().is_empty());
    // The owner refuses the first (no common law): 488, and the call goes on.
    assert!(h.endpoint.answer_reoffer(h.now, CallId(1), Err(488)));
    h.drain();
    let sent = h.take_sent();
    let refused = parse_message(&sent[0].2).expect("488 parses");
    assert_eq!(
        (refused.status(), refused.cseq().map(|c| c.number)),
        (Some(488), Some(11))
    );
    assert!(ended(&h.take_events()).is_empty());
    // An UPDATE without an offer (a session refresh) gets 200.
    h.deliver(refresh.as_bytes());
    let sent = h.take_sent();
    assert_eq!(
        parse_message(&sent[0].2).ok().and_then(|m| m.status()),
        Some(200)
    );
    assert!(h.take_events().is_empty());
}

#[test]
fn a_re_invite_without_an_offer_gets_our_sdp_at_once() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    h.take_events();
    let reinvite = in_dialog(
        &h,
        "INVITE",
        11,
        "z9hG4bKre1",
        "sip:callee@192.0.2.4:5070",
        "",
    );
    h.take_sent();
    h.deliver(reinvite.as_bytes());
    let sent = h.take_sent();
    let ok = parse_message(&sent[0].2).expect("200 parses");
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.body(), SDP_OFFER);
    assert!(h.take_events().is_empty());
}

#[test]
fn reliable_provisionals_are_pracked_once_each_in_order_and_the_bye_counts_on() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    let parsed = parse_message(&invite).expect("INVITE");
    assert_eq!(
        parsed.header(HeaderName::Other("Supported")),
        Some("100rel")
    );
    let reliable = |status: u16, reason: &str, rseq: u32| {
        reply(
            &invite,
            status,
            reason,
            Some("uas1"),
            &format!("{CONTACT}Require: 100rel\r\nRSeq: {rseq}\r\n"),
            "",
        )
    };
    let pracks = |sent: &[(Duration, SocketAddr, Vec<u8>)]| -> Vec<(String, String, String)> {
        sent.iter()
            .filter_map(|(_, _, bytes)| parse_message(bytes).ok())
            .filter(|m| m.method() == Some(Method::Other("PRACK")))
            .map(|m| {
                (
                    m.header(HeaderName::Other("RAck")).unwrap_or("").to_owned(),
                    m.header(HeaderName::CSeq).unwrap_or("").to_owned(),
                    m.to().and_then(|t| t.tag()).unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    h.take_sent();
    h.deliver(&reliable(180, "Ringing", 1));
    let sent = h.take_sent();
    assert_eq!(
        pracks(&sent),
        [(
            "1 1 INVITE".to_owned(),
            "2 PRACK".to_owned(),
            "uas1".to_owned()
        )]
    );
    let prack = sent[0].2.clone();
    assert!(
        String::from_utf8_lossy(&prack).starts_with("PRACK sip:callee@192.0.2.4:5070 SIP/2.0"),
        "sent to the 1xx's Contact: {}",
        String::from_utf8_lossy(&prack)
    );
    // The 180 again (the callee has not seen our PRACK yet): no second PRACK.
    h.deliver(&reliable(180, "Ringing", 1));
    assert!(pracks(&h.take_sent()).is_empty());
    // The PRACK is retransmitted (Timer E) until its 200.
    h.advance_to(Duration::from_millis(600));
    assert_eq!(pracks(&h.take_sent()).len(), 1);
    h.deliver(&reply(&prack, 200, "OK", None, "", ""));
    h.advance_to(Duration::from_secs(5));
    assert!(
        pracks(&h.take_sent()).is_empty(),
        "the 200 ends the PRACK's retransmission"
    );
    // Out of order (RSeq 3 before 2): nothing; then 2 in order: the next PRACK.
    h.deliver(&reliable(183, "Session Progress", 3));
    assert!(pracks(&h.take_sent()).is_empty());
    h.deliver(&reliable(183, "Session Progress", 2));
    assert_eq!(
        pracks(&h.take_sent()),
        [(
            "2 1 INVITE".to_owned(),
            "3 PRACK".to_owned(),
            "uas1".to_owned()
        )]
    );
    // A plain 180 is not acknowledged.
    h.deliver(&reply(&invite, 180, "Ringing", Some("uas1"), CONTACT, ""));
    assert!(pracks(&h.take_sent()).is_empty());
    h.deliver(&reply(
        &invite,
        200,
        "OK",
        Some("uas1"),
        CONTACT,
        SDP_ANSWER,
    ));
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let bye = parse_message(&h.last_request(Method::Bye))
        .ok()
        .and_then(|m| m.header(HeaderName::CSeq).map(str::to_owned));
    assert_eq!(bye.as_deref(), Some("4 BYE"), "numbered above the PRACKs");
    h.advance_to(Duration::from_secs(100));
    assert!(h.endpoint.is_idle());
}

#[test]
fn max_duration_sends_bye() {
    let mut h = Harness::new();
    let params = DialParams {
        target: "sip:+15550001@192.0.2.4:5070",
        destination: None,
        from: "sip:outdial@192.0.2.1",
        sdp_offer: SDP_OFFER,
        ring_timeout: Duration::from_secs(30),
        max_duration: Duration::from_secs(20),
        credentials: None,
        asserted_identity: None,
        privacy: None,
        no_response_timeout: None,
        transport: Transport::Udp,
    };
    h.endpoint.dial(h.now, CallId(9), &params).expect("dial");
    h.drain();
    h.now += Duration::from_secs(2);
    answer(&mut h);
    h.take_events();
    h.take_sent();
    h.advance_to(Duration::from_secs(21));
    assert!(h.take_sent().is_empty(), "20 s run from the answer at 2 s");
    h.advance_to(Duration::from_secs(23));
    let sent = h.take_sent();
    assert_eq!(methods(&sent)[0], "BYE");
    assert_eq!(sent[0].0, Duration::from_secs(22));
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(9),
            Disposition::Completed,
            Some(200),
            "max duration reached".to_owned()
        )]
    );
}

#[test]
fn dial_errors_send_nothing() {
    let mut h = Harness::new();
    let mut params = DialParams {
        target: "sip:bob@example.com",
        destination: None,
        from: "sip:outdial@192.0.2.1",
        sdp_offer: SDP_OFFER,
        ring_timeout: Duration::from_secs(30),
        max_duration: Duration::from_secs(20),
        credentials: None,
        asserted_identity: None,
        privacy: None,
        no_response_timeout: None,
        transport: Transport::Udp,
    };
    assert_eq!(
        h.endpoint.dial(h.now, CallId(1), &params),
        Err(SipError::NeedsDns("example.com".into()))
    );
    params.target = "tel:+15550001";
    assert!(matches!(
        h.endpoint.dial(h.now, CallId(1), &params),
        Err(SipError::BadTarget(_))
    ));
    params.target = "sip:bob@[::1";
    assert!(matches!(
        h.endpoint.dial(h.now, CallId(1), &params),
        Err(SipError::BadTarget(_))
    ));
    params.target = "sip:bob@localhost";
    params.from = "not a uri";
    assert!(matches!(
        h.endpoint.dial(h.now, CallId(1), &params),
        Err(SipError::BadFrom(_))
    ));
    params.from = "sip:outdial@192.0.2.1";
    h.endpoint
        .dial(h.now, CallId(1), &params)
        .expect("localhost needs no DNS");
    assert_eq!(
        h.endpoint.dial(h.now, CallId(1), &params),
        Err(SipError::DuplicateCall(CallId(1)))
    );
    h.drain();
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, addr("127.0.0.1:5060"));
}

#[test]
fn forked_second_2xx_is_acked_and_byed() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    let invite = h.invite_bytes();
    h.take_sent();
    h.take_events();
    h.deliver(&reply(
        &invite,
        200,
        "OK",
        Some("fork2"),
        "Contact: <sip:other@192.0.2.5>\r\n",
        SDP_ANSWER,
    ));
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["ACK", "BYE"]);
    assert!(sent.iter().all(|(_, to, _)| *to == addr("192.0.2.5:5060")));
    assert!(h.take_events().is_empty());
}

#[test]
fn out_of_call_requests_get_the_vector_statuses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sip/uas-requests");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("vector dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "sip") {
            continue;
        }
        let data = fs::read(&path).expect("vector");
        let expected =
            fs::read_to_string(path.with_extension("expected")).expect("expected status");
        let mut h = Harness::new();
        h.deliver(&data);
        // Status lines only: a response echoes a malformed header verbatim (RFC 3261 §8.2.6.2).
        let statuses: Vec<String> = h
            .take_sent()
            .iter()
            .map(|(_, _, bytes)| String::from_utf8_lossy(&bytes[8..11]).into_owned())
            .collect();
        match expected.trim() {
            "none" => assert!(statuses.is_empty(), "{}: {statuses:?}", path.display()),
            status => assert_eq!(statuses, [status], "{}", path.display()),
        }
        checked += 1;
    }
    assert!(checked >= 14, "vectors missing");
}

#[test]
fn error_responses_echo_the_request_and_carry_allow() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sip/uas-requests");
    let mut h = Harness::new();
    h.deliver(&fs::read(dir.join("register-not-allowed.sip")).expect("vector"));
    let sent = h.take_sent();
    let response = parse_message(&sent[0].2).expect("405 parses");
    assert_eq!(response.status(), Some(405));
    assert!(response.header(HeaderName::Allow).is_some());
    assert_eq!(response.via().and_then(|v| v.branch()), Some("z9hG4bKvec1"));
    assert_eq!(response.call_id(), Some("vec1@192.0.2.9"));
    assert!(response.to().and_then(|t| t.tag()).is_some());
    // The same request again is a retransmission: same response from the transaction.
    h.deliver(&fs::read(dir.join("register-not-allowed.sip")).expect("vector"));
    assert_eq!(h.take_sent()[0].2, sent[0].2);
}

#[test]
fn thousand_calls_release_everything() {
    let mut h = Harness::new();
    for call in 0..1000u64 {
        h.dial(call, 20).expect("dial");
        let invite = h.invite_bytes();
        let tag = format!("t{call}");
        match call % 5 {
            0 => {
                h.deliver(&reply(&invite, 180, "Ringing", Some(&tag), "", ""));
                h.deliver(&reply(&invite, 200, "OK", Some(&tag), CONTACT, SDP_ANSWER));
                h.endpoint.hangup(h.now, CallId(call));
                h.drain();
                let bye = h.last_request(Method::Bye);
                h.deliver(&reply(&bye, 200, "OK", None, "", ""));
            }
            1 => h.deliver(&reply(&invite, 486, "Busy Here", Some(&tag), "", "")),
            2 => h.deliver(&reply(&invite, 180, "Ringing", Some(&tag), "", "")),
            3 => {}
            _ => {
                h.deliver(&reply(&invite, 100, "Trying", None, "", ""));
                h.endpoint.hangup(h.now, CallId(call));
                h.drain();
            }
        }
        h.sent.clear();
        h.now += Duration::from_millis(10);
    }
    // Ring timeouts CANCEL call%5==2 (no 487 comes: the §9.1 guard ends them), Timer B
    // ends call%5==3, the guard ends the hung-up ones.
    h.advance_to(Duration::from_secs(300));
    let ended = ended(&h.take_events());
    assert_eq!(ended.len(), 1000);
    let mut ids: Vec<u64> = ended.iter().map(|(c, ..)| c.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "exactly one Ended per call");
    assert_eq!(h.endpoint.active_calls(), 0);
    assert!(h.endpoint.is_idle(), "everything released");
}

impl Harness {
    fn invite_bytes(&self) -> Vec<u8> {
        self.last_request(Method::Invite)
    }
}

fn corpus(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(name);
    assert!(
        dir.is_dir(),
        "corpus {} is missing: run bench/corpora/fetch.sh (README, \"Test it\")",
        dir.display()
    );
    dir
}

/// The status line codes the endpoint sends for one datagram.
fn statuses_for(data: &[u8]) -> Vec<String> {
    let mut h = Harness::new();
    h.deliver(data);
    h.take_sent()
        .iter()
        .map(|(_, _, bytes)| String::from_utf8_lossy(&bytes[8..11]).into_owned())
        .collect()
}

#[test]
fn rfc4475_torture_end_to_end() {
    let dir = corpus("sip-rfc4475-torture");
    let cases: &[(&str, &[&str])] = &[
        ("badvers.dat", &["505"]),
        ("unkscm.dat", &["416"]),
        ("novelsc.dat", &["416"]),
        ("bext01.dat", &["420"]),
        ("zeromf.dat", &["200"]),
        ("multi01.dat", &["400"]),
        ("mismatch01.dat", &["400"]),
        ("mismatch02.dat", &["501"]),
        ("badinv01.dat", &["400"]),
        ("clerr.dat", &["400"]),
        ("ncl.dat", &["400"]),
        ("scalar02.dat", &["400"]),
        ("quotbal.dat", &["400"]),
        ("esc02.dat", &["501"]),
        ("intmeth.dat", &["501"]),
        ("dblreq.dat", &["405"]),
        ("insuf.dat", &[]),
        ("scalarlg.dat", &[]),
        ("bigcode.dat", &[]),
        ("bcast.dat", &[]),
        ("unreason.dat", &[]),
    ];
    for (file, expected) in cases {
        let data = fs::read(dir.join(file)).expect("torture file");
        assert_eq!(statuses_for(&data), *expected, "{file}");
    }
    for entry in fs::read_dir(&dir).expect("dir") {
        let path = entry.expect("entry").path();
        let data = fs::read(&path).expect("file");
        let sent = std::panic::catch_unwind(|| statuses_for(&data));
        let sent = sent.unwrap_or_else(|_| panic!("{} panicked the endpoint", path.display()));
        assert!(sent.len() <= 1, "{}: one response at most", path.display());
    }
}

/// Fills a PROTOS template's placeholders (see the corpus README); `case` makes the branch
/// and Call-ID unique.
fn fill_protos(template: &[u8], case: usize) -> Vec<u8> {
    let branch = format!("z9hG4bKprotos{case}");
    let call_id = format!("protos{case}");
    let replacements: [(&[u8], &[u8]); 9] = [
        (b"<To>", b"sip:callee@192.0.2.1"),
        (b"<From>", b"sip:protos@192.0.2.4"),
        (b"<From-Address>", b"192.0.2.4"),
        (b"<From-IP>", b"192.0.2.4"),
        (b"<Local-Port>", b"5070"),
        (b"<Branch-ID>", branch.as_bytes()),
        (b"<Call-ID>", call_id.as_bytes()),
        (b"<CSeq>", b"1"),
        (b"<Teardown-Method>", b"CANCEL"),
    ];
    let mut out = Vec::with_capacity(template.len());
    let mut at = 0;
    'scan: while at < template.len() {
        for (from, to) in &replacements {
            if template[at..].starts_with(from) {
                out.extend_from_slice(to);
                at += from.len();
                continue 'scan;
            }
        }
        out.push(template[at]);
        at += 1;
    }
    if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
        let length = (out.len() - end - 4).to_string();
        if let Some(marker) = out.windows(16).position(|w| w == b"<Content-Length>") {
            out.splice(marker..marker + 16, length.bytes());
        }
    }
    out
}

/// The INVITE template of a PROTOS case file (`<len> <INVITE><len> <teardown>`).
fn protos_invite(data: &[u8], case: usize) -> Vec<u8> {
    let space = data.iter().position(|&b| b == b' ').unwrap_or(0);
    let length: usize = std::str::from_utf8(&data[..space])
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    fill_protos(
        &data[(space + 1).min(data.len())..(space + 1 + length).min(data.len())],
        case,
    )
}

#[test]
fn protos_c07_through_the_endpoint() {
    let dir = corpus("sip-protos-c07").join("cases");
    let mut h = Harness::with_border(ANSWER_INVITES);
    h.dial(1, 3600).expect("dial");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("cases")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4527);
    h.sent.clear();
    let mut answers = 0;
    for (case, path) in files.iter().enumerate() {
        let invite = protos_invite(&fs::read(path).expect("case"), case);
        h.deliver(&invite[..invite.len().min(65_507)]);
        answers += h.sent.len();
        h.sent.clear();
    }
    // One source, all at one instant: the stranger limit answers at most its quota.
    assert!(
        (1..=STRANGER_LIMIT as usize).contains(&answers),
        "{answers} answers"
    );
    // After two quiet windows the source is answered again.
    h.advance_to(STRANGER_WINDOW * 2);
    h.sent.clear();
    // Still alive and answering: case 0 is a well-formed INVITE (no incoming calls: 404).
    let invite = protos_invite(&fs::read(dir.join("0000000")).expect("case 0"), 99_999);
    h.deliver(&invite);
    let statuses: Vec<String> = h
        .take_sent()
        .iter()
        .map(|(_, _, bytes)| String::from_utf8_lossy(&bytes[8..11]).into_owned())
        .collect();
    assert_eq!(statuses, ["404"]);
    // The outbound call is unaffected.
    assert_eq!(h.endpoint.active_calls(), 1);
}

#[test]
fn a_hostname_target_is_sent_to_the_destination_resolved_for_it() {
    let mut h = Harness::new();
    let params = DialParams {
        target: "sip:bob@pbx.example.com",
        destination: Some(addr("192.0.2.77:5080")),
        from: "sip:outdial@192.0.2.1",
        sdp_offer: SDP_OFFER,
        ring_timeout: Duration::from_secs(30),
        max_duration: Duration::from_secs(20),
        credentials: None,
        asserted_identity: None,
        privacy: None,
        no_response_timeout: None,
        transport: Transport::Udp,
    };
    h.endpoint.dial(h.now, CallId(1), &params).expect("dial");
    h.drain();
    let (_, to, invite) = h.sent.first().expect("INVITE sent");
    assert_eq!(*to, addr("192.0.2.77:5080"));
    let text = String::from_utf8_lossy(invite);
    assert!(
        text.starts_with("INVITE sip:bob@pbx.example.com SIP/2.0\r\n"),
        "the Request-URI keeps the name: {text}"
    );
}

/// The border: a stranger's out-of-dialog request is answered once, statelessly. Nothing
/// is retransmitted to its claimed source (no reflection), no state is kept, and a
/// retransmission of the request gets the identical answer.
#[test]
fn a_strangers_requests_are_answered_once_and_never_retransmitted() {
    let mut h = Harness::with_border(ANSWER_INVITES);
    let invite = "INVITE sip:probe@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-stranger\r\nMax-Forwards: 70\r\nFrom: <sip:x@198.51.100.9>;tag=s1\r\nTo: <sip:probe@192.0.2.1>\r\nCall-ID: stranger-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    h.deliver(invite.as_bytes());
    let first = h.take_sent();
    assert_eq!(methods(&first), ["404"]);
    assert!(h.endpoint.is_idle(), "no transaction kept for a stranger");
    h.advance_to(Duration::from_secs(64));
    assert!(h.take_sent().is_empty(), "no Timer G retransmission");
    h.deliver(invite.as_bytes());
    let again = h.take_sent();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].2, first[0].2,
        "a retransmission gets the same answer"
    );
    let options = invite
        .replace("INVITE sip:", "OPTIONS sip:")
        .replace("1 INVITE", "1 OPTIONS")
        .replace("stranger-1", "stranger-2");
    h.deliver(options.as_bytes());
    h.advance_to(Duration::from_secs(200));
    assert_eq!(methods(&h.take_sent()), ["200"]);
    assert!(h.endpoint.is_idle());
    // A different request gets a different To-tag: tags are per request, not constant.
    let other = invite.replace("branch=z9hG4bK-stranger", "branch=z9hG4bK-other");
    h.deliver(other.as_bytes());
    let other = h.take_sent();
    assert_ne!(other[0].2, first[0].2);
    // Over the size cap: dropped unread, though well formed.
    let padding = "x".repeat(MAX_MESSAGE_BYTES);
    let big = options.replace("stranger-2", "stranger-3").replace(
        "Content-Length",
        &format!("X-Pad: {padding}\r\nContent-Length"),
    );
    h.deliver(big.as_bytes());
    assert!(h.take_sent().is_empty(), "oversized message dropped");
}

/// By default a stranger's INVITE gets nothing at all (nothing to reflect at a spoofed
/// source) and keeps nothing; the configured size cap and per-source limit apply.
#[test]
fn by_default_a_strangers_invite_is_unanswered_and_the_border_follows_its_config() {
    let mut h = Harness::with_border(BorderConfig {
        max_message_bytes: 1200,
        stranger_limit: 3,
        stranger_window: Duration::from_secs(1),
        ..BorderConfig::default()
    });
    let request = |method: &str, n: usize| {
        format!(
            "{method} sip:probe@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-s{n}\r\nMax-Forwards: 70\r\nFrom: <sip:x@198.51.100.9>;tag=s1\r\nTo: <sip:probe@192.0.2.1>\r\nCall-ID: stranger-{n}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for n in 0..50 {
        h.deliver(request("INVITE", n).as_bytes());
    }
    h.advance_to(Duration::from_secs(64));
    assert!(h.take_sent().is_empty(), "no answer to a stranger's INVITE");
    assert!(h.endpoint.is_idle(), "and nothing kept");
    // Unanswered INVITEs do not use up the source's quota; OPTIONS get 3 per window.
    for n in 100..110 {
        h.deliver(request("OPTIONS", n).as_bytes());
    }
    assert_eq!(methods(&h.take_sent()), ["200", "200", "200"]);
    // The size cap is the configured one.
    let mut other = Harness::new();
    let big = request("OPTIONS", 7).replace(
        "Content-Length",
        &format!("X-Pad: {}\r\nContent-Length", "x".repeat(1000)),
    );
    other.deliver(big.as_bytes());
    assert_eq!(
        methods(&other.take_sent()),
        ["200"],
        "under the default 8 KiB"
    );
    h.advance_to(Duration::from_secs(70));
    h.deliver(big.as_bytes());
    assert!(h.take_sent().is_empty(), "over the configured 1,200 bytes");
}

/// A flood of stranger OPTIONS from one source is answered up to the per-source limit,
/// while a call in progress keeps working and another source is still answered.
#[test]
fn a_stranger_flood_is_limited_per_source_and_the_call_goes_on() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    h.take_events();
    let ack = h.last_request(Method::Ack);
    h.take_sent();
    let options = |n: usize| {
        format!(
            "OPTIONS sip:probe@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-f{n}\r\nMax-Forwards: 70\r\nFrom: <sip:x@198.51.100.9>;tag=s1\r\nTo: <sip:probe@192.0.2.1>\r\nCall-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let flooder = addr("198.51.100.9:5060");
    for n in 0..1000 {
        h.endpoint
            .handle_datagram(h.now, flooder, options(n).as_bytes());
    }
    h.drain();
    let answered = h.take_sent();
    assert_eq!(answered.len(), STRANGER_LIMIT as usize);
    assert!(answered.iter().all(|(_, to, _)| *to == flooder));
    // Another source is answered.
    h.endpoint
        .handle_datagram(h.now, addr("198.51.100.10:5060"), options(5000).as_bytes());
    h.drain();
    assert_eq!(methods(&h.take_sent()), ["200"]);
    // The callee's BYE, in our dialog, is not limited even from the flooded address.
    let ack = parse_message(&ack).expect("ACK");
    let bye = format!(
        "BYE sip:outdial@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKbye1\r\nFrom: <sip:+15550001@192.0.2.4:5070>;tag=uas1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 10 BYE\r\nContent-Length: 0\r\n\r\n",
        ack.header(HeaderName::From).expect("From"),
        ack.call_id().expect("Call-ID"),
    );
    h.endpoint.handle_datagram(h.now, flooder, bye.as_bytes());
    h.drain();
    assert_eq!(methods(&h.take_sent()), ["200"]);
    assert_eq!(ended(&h.take_events())[0].2, Some(200));
}

/// The border with stranger INVITEs answered (one stateless 404), as before it was
/// configurable.
const ANSWER_INVITES: BorderConfig = BorderConfig {
    max_message_bytes: MAX_MESSAGE_BYTES,
    stranger_limit: STRANGER_LIMIT,
    stranger_window: STRANGER_WINDOW,
    stranger_sources: outdial_dataplane::sip::endpoint::STRANGER_SOURCES,
    answer_stranger_invite: true,
};

/// An ICMP port unreachable quoting the start of `datagram` (as far as the kernel quotes).
fn port_unreachable(to: &str) -> outdial_dataplane::icmp::IcmpError {
    outdial_dataplane::icmp::IcmpError::classify(addr(to), 2, 3, 3, None).expect("port unreachable")
}

#[test]
fn an_icmp_error_for_our_invite_fails_the_call_at_once_and_stops_retransmissions() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    let error = port_unreachable(UAS);
    // Forged: another branch, or no Via at all, matches nothing.
    let forged = String::from_utf8_lossy(&invite).replace("branch=z9hG4bK", "branch=z9hG4bKx");
    h.endpoint.handle_icmp_error(&error, forged.as_bytes());
    h.endpoint.handle_icmp_error(&error, b"garbage");
    h.drain();
    assert!(h.take_events().is_empty());
    // The real one, quoted only in part.
    h.endpoint
        .handle_icmp_error(&error, &invite[..160.min(invite.len())]);
    h.drain();
    let events = h.take_events();
    assert_eq!(
        ended(&events),
        vec![(
            CallId(1),
            Disposition::Unreachable,
            None,
            format!("{UAS} refused the INVITE: ICMP port unreachable (nothing listens there)")
        )]
    );
    h.take_sent();
    h.advance_to(Duration::from_secs(40));
    assert!(
        methods(&h.take_sent()).is_empty(),
        "no retransmission after it"
    );
    assert!(
        h.take_events().is_empty(),
        "Ended once, not again at Timer B"
    );
    assert!(h.endpoint.is_idle(), "nothing kept");
}

#[test]
fn an_icmp_error_after_the_callee_answered_anything_is_ignored() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.deliver(&reply(&invite, 100, "Trying", None, "", ""));
    h.endpoint
        .handle_icmp_error(&port_unreachable(UAS), &invite);
    h.drain();
    assert!(
        ended(&h.take_events()).is_empty(),
        "alive: it sent 100 Trying"
    );
}

/// A harness whose INVITEs ask for 90 s session timers, answered by a 200 with
/// `session_expires` (the header's value).
/// A call answered with `session_expires`, by a callee that allows UPDATE.
fn timed_call(session_expires: &str) -> Harness {
    timed_call_allowing(session_expires, "INVITE, ACK, CANCEL, BYE, UPDATE")
}

/// A call answered with `session_expires`, by a callee whose Allow is `allow`.
fn timed_call_allowing(session_expires: &str, allow: &str) -> Harness {
    let mut h =
        Harness::configured(|config| config.session_expires = Some(Duration::from_secs(90)));
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    let parsed = parse_message(&invite).expect("INVITE");
    assert_eq!(
        parsed.header(HeaderName::Other("Supported")),
        Some("100rel, timer")
    );
    assert_eq!(
        parsed.header(HeaderName::Other("Session-Expires")),
        Some("90;refresher=uas")
    );
    let extra = format!(
        "{CONTACT}Allow: {allow}\r\nSession-Expires: {session_expires}\r\nRequire: timer\r\n"
    );
    h.deliver(&reply(&invite, 200, "OK", Some("uas1"), &extra, SDP_ANSWER));
    h.take_events();
    h
}

fn ended_reasons(h: &mut Harness) -> Vec<String> {
    ended(&h.take_events())
        .into_iter()
        .map(|(_, _, _, reason)| reason)
        .collect()
}

#[test]
fn a_session_the_callee_does_not_refresh_is_ended_with_bye() {
    let mut h = timed_call("90;refresher=uas");
    h.advance_to(Duration::from_secs(59));
    assert!(ended_reasons(&mut h).is_empty());
    h.take_sent();
    // 90 s minus a third (30 s): given up at 60 s.
    h.advance_to(Duration::from_secs(61));
    assert_eq!(
        methods(&h.take_sent()).first().map(String::as_str),
        Some("BYE")
    );
    let reasons = ended_reasons(&mut h);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("not refreshed"), "{reasons:?}");
}

#[test]
fn the_callees_refresh_is_answered_with_its_interval_and_moves_the_deadline() {
    let mut h = timed_call("90;refresher=uas");
    let update = in_dialog(
        &h,
        "UPDATE",
        11,
        "z9hG4bKst1",
        "sip:callee@192.0.2.4:5070",
        "",
    )
    .replace(
        "Content-Length: 0",
        "Session-Expires: 90;refresher=uac\r\nContent-Length: 0",
    );
    h.advance_to(Duration::from_secs(40));
    h.take_sent();
    h.deliver(update.as_bytes());
    let sent = h.take_sent();
    let ok = parse_message(&sent[0].2).expect("200");
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.header(HeaderName::Other("Session-Expires")),
        Some("90;refresher=uac")
    );
    assert_eq!(ok.header(HeaderName::Require), Some("timer"));
    h.advance_to(Duration::from_secs(99));
    assert!(
        ended_reasons(&mut h).is_empty(),
        "the refresh gave another interval"
    );
    h.advance_to(Duration::from_secs(101));
    assert_eq!(ended_reasons(&mut h).len(), 1, "40 s + 60 s");
}

#[test]
fn as_the_refresher_we_update_half_way_and_a_481_ends_the_call() {
    let mut h = timed_call("90;refresher=uac");
    h.take_sent();
    h.advance_to(Duration::from_secs(44));
    assert!(h.take_sent().is_empty());
    h.advance_to(Duration::from_secs(46));
    let update = h.last_request(Method::Other("UPDATE"));
    let parsed = parse_message(&update).expect("UPDATE");
    assert_eq!(
        parsed.header(HeaderName::Other("Session-Expires")),
        Some("90;refresher=uac")
    );
    assert_eq!(parsed.header(HeaderName::CSeq), Some("2 UPDATE"));
    h.deliver(&reply(
        &update,
        200,
        "OK",
        None,
        "Session-Expires: 90;refresher=uac\r\n",
        "",
    ));
    // The next refresh half-way through the new interval, at 45 + 45 s.
    h.take_sent();
    h.advance_to(Duration::from_secs(89));
    assert!(methods(&h.take_sent()).iter().all(|m| m != "UPDATE"));
    h.advance_to(Duration::from_secs(91));
    let second = h.last_request(Method::Other("UPDATE"));
    assert_eq!(
        parse_message(&second)
            .ok()
            .and_then(|m| m.header(HeaderName::CSeq).map(str::to_owned)),
        Some("3 UPDATE".to_owned())
    );
    assert!(ended_reasons(&mut h).is_empty());
    h.deliver(&reply(
        &second,
        481,
        "Call/Transaction Does Not Exist",
        None,
        "",
        "",
    ));
    let reasons = ended_reasons(&mut h);
    assert_eq!(reasons.len(), 1, "the session is gone");
    assert!(!h.last_request(Method::Bye).is_empty());
}

/// The CSeq header of `message`.
fn cseq_of(message: &[u8]) -> String {
    parse_message(message)
        .ok()
        .and_then(|m| m.header(HeaderName::CSeq).map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn a_refresher_whose_peer_allows_no_update_re_invites_with_the_same_sdp_and_acks_each_2xx() {
    let mut h = timed_call_allowing("90;refresher=uac", "INVITE, ACK, CANCEL, BYE");
    h.take_sent();
    h.advance_to(Duration::from_millis(45_100));
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["INVITE"], "a re-INVITE, not an UPDATE");
    let reinvite = sent[0].2.clone();
    let parsed = parse_message(&reinvite).expect("re-INVITE");
    assert_eq!(parsed.header(HeaderName::CSeq), Some("2 INVITE"));
    assert_eq!(parsed.body(), SDP_OFFER, "the SDP we sent, unchanged");
    assert_eq!(
        parsed.header(HeaderName::Other("Session-Expires")),
        Some("90;refresher=uac")
    );
    assert!(
        parsed.contact().is_some(),
        "a target refresh carries Contact"
    );
    assert!(
        parsed
            .header(HeaderName::To)
            .is_some_and(|to| to.contains("tag=uas1")),
        "in the dialog"
    );
    let ok = reply(
        &reinvite,
        200,
        "OK",
        None,
        &format!("{CONTACT}Session-Expires: 90;refresher=uac\r\n"),
        SDP_ANSWER,
    );
    h.deliver(&ok);
    let acks = h.take_sent();
    assert_eq!(methods(&acks), ["ACK"]);
    assert_eq!(cseq_of(&acks[0].2), "2 ACK");
    h.deliver(&ok);
    assert_eq!(
        methods(&h.take_sent()),
        ["ACK"],
        "a 2xx retransmission is ACKed again"
    );
    // The 2xx started a new interval: the next refresh 45 s after it.
    h.advance_to(Duration::from_secs(90));
    assert!(h.take_sent().is_empty());
    h.advance_to(Duration::from_millis(90_200));
    assert_eq!(cseq_of(&h.last_request(Method::Invite)), "3 INVITE");
    assert!(ended_reasons(&mut h).is_empty());
}

#[test]
fn a_491_to_our_refresh_re_invite_is_retried_after_the_glare_delay() {
    let mut h = timed_call_allowing("90;refresher=uac", "INVITE, ACK, BYE");
    h.advance_to(Duration::from_millis(45_100));
    let reinvite = h.last_request(Method::Invite);
    h.take_sent();
    h.deliver(&reply(&reinvite, 491, "Request Pending", None, "", ""));
    assert_eq!(
        methods(&h.take_sent()),
        ["ACK"],
        "the transaction ACKs the 491"
    );
    // We placed the call: 2.1 to 4 s.
    h.advance_to(Duration::from_millis(45_100 + 2_050));
    assert!(h.take_sent().is_empty(), "not before 2.1 s");
    h.advance_to(Duration::from_millis(45_100 + 4_050));
    let retried = h.take_sent();
    assert!(!retried.is_empty(), "retried by 4 s");
    assert!(
        retried.iter().all(|(_, _, m)| cseq_of(m) == "3 INVITE"),
        "one new re-INVITE (and its retransmissions): {:?}",
        methods(&retried)
    );
    assert!(ended_reasons(&mut h).is_empty());
}

#[test]
fn an_update_refused_405_moves_the_refresh_to_re_invite_at_once() {
    let mut h = timed_call("90;refresher=uac");
    h.advance_to(Duration::from_millis(45_100));
    let update = h.last_request(Method::Other("UPDATE"));
    h.take_sent();
    h.deliver(&reply(&update, 405, "Method Not Allowed", None, "", ""));
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["INVITE"]);
    assert_eq!(cseq_of(&sent[0].2), "3 INVITE");
}

#[test]
fn a_peers_re_invite_crossing_our_refresh_gets_491() {
    let mut h = timed_call_allowing("90;refresher=uac", "INVITE, ACK, BYE");
    let theirs = in_dialog(
        &h,
        "INVITE",
        12,
        "z9hG4bKglare",
        "sip:callee@192.0.2.4:5070",
        HOLD_OFFER,
    );
    h.advance_to(Duration::from_millis(45_100));
    h.take_sent();
    h.deliver(theirs.as_bytes());
    let sent = h.take_sent();
    assert_eq!(methods(&sent), ["491"]);
    assert!(
        h.take_events()
            .iter()
            .all(|e| !matches!(e, SipEvent::Reoffer { .. })),
        "the crossing offer is not reported"
    );
}

#[test]
fn without_a_session_expires_in_the_2xx_there_is_no_timer() {
    let mut h =
        Harness::configured(|config| config.session_expires = Some(Duration::from_secs(90)));
    h.dial(1, 60).expect("dial");
    answer(&mut h);
    h.take_events();
    h.advance_to(Duration::from_secs(600));
    assert!(ended_reasons(&mut h).is_empty());
}

#[test]
fn an_invite_nothing_answers_is_given_up_after_the_no_response_timeout() {
    let mut h = Harness::new();
    let params = DialParams {
        no_response_timeout: Some(Duration::from_secs(2)),
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    h.advance_to(Duration::from_millis(1900));
    assert!(h.ended().is_empty());
    assert_eq!(methods(&h.take_sent()), ["INVITE", "INVITE", "INVITE"]);
    h.advance_to(Duration::from_millis(2100));
    let ended = h.ended();
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].1, ended[0].2), (Disposition::Unreachable, None));
    assert!(ended[0].3.contains("within 2000 ms"), "{}", ended[0].3);
    h.advance_to(Duration::from_secs(40));
    assert!(
        h.take_sent().is_empty(),
        "no INVITE after giving up, no CANCEL either"
    );
    assert_eq!(h.ended().len(), 1, "Ended once, not again at Timer B");
    assert!(h.endpoint.is_idle());
}

#[test]
fn any_response_to_the_invite_stops_the_no_response_timeout() {
    let mut h = Harness::new();
    let params = DialParams {
        no_response_timeout: Some(Duration::from_secs(2)),
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.advance_to(Duration::from_secs(1));
    h.deliver(&reply(&invite, 100, "Trying", None, "", ""));
    h.advance_to(Duration::from_secs(10));
    assert!(
        h.ended().is_empty(),
        "a peer that said 100 is alive: {:?}",
        h.ended()
    );
}

#[test]
fn a_422_raises_the_session_interval_once_and_a_second_ends_the_call() {
    let mut h =
        Harness::configured(|config| config.session_expires = Some(Duration::from_secs(90)));
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.take_sent();
    h.deliver(&reply(
        &invite,
        422,
        "Session Interval Too Small",
        Some("uas1"),
        "Min-SE: 300\r\n",
        "",
    ));
    let sent = h.take_sent();
    assert_eq!(
        methods(&sent),
        ["ACK", "INVITE"],
        "the 422 ACKed, then asked again"
    );
    let again = parse_message(&sent[1].2).expect("INVITE");
    assert_eq!(again.header(HeaderName::CSeq), Some("2 INVITE"));
    assert_eq!(
        again.header(HeaderName::Other("Session-Expires")),
        Some("300;refresher=uas")
    );
    assert_eq!(again.header(HeaderName::Other("Min-SE")), Some("300"));
    assert!(h.ended().is_empty());
    let second = sent[1].2.clone();
    h.deliver(&reply(
        &second,
        422,
        "Session Interval Too Small",
        Some("uas1"),
        "Min-SE: 600\r\n",
        "",
    ));
    let ended = h.ended();
    assert_eq!(ended.len(), 1, "asked once, then given up");
    assert_eq!((ended[0].1, ended[0].2), (Disposition::Failed, Some(422)));
}

// ----- SIP over TCP (RFC 3261 §18) -----

/// Each message sent as (transport, destination, method or status, top Via transport).
fn via_summary(
    sent: &[(Transport, SocketAddr, Vec<u8>)],
) -> Vec<(Transport, SocketAddr, String, String)> {
    sent.iter()
        .map(|(transport, to, bytes)| {
            let message = parse_message(bytes).expect("we send parseable SIP");
            let kind = match message.method() {
                Some(method) => method.to_string(),
                None => message.status().map(|s| s.to_string()).unwrap_or_default(),
            };
            let via = message.via().map_or("", |v| v.transport).to_owned();
            (*transport, *to, kind, via)
        })
        .collect()
}

#[test]
fn a_tcp_dial_says_tcp_is_never_retransmitted_and_still_times_out_by_timer_b() {
    for (target, transport) in [
        (TARGET, Transport::Tcp),
        ("sip:+15550001@192.0.2.4:5070;transport=tcp", Transport::Udp),
    ] {
        let mut h = Harness::new();
        let params = DialParams {
            target,
            transport,
            ..plain_dial(60)
        };
        h.dial_with(1, &params).expect("dial");
        let sent = h.take_sent_via();
        assert_eq!(
            via_summary(&sent),
            [(Transport::Tcp, addr(UAS), "INVITE".into(), "TCP".into())],
            "{target}"
        );
        let invite = parse_message(&sent[0].2).expect("INVITE");
        assert_eq!(invite.via().and_then(|v| v.rport()), Some(None));
        assert_eq!(
            invite.contact().map(|c| c.uri.as_str()),
            Some("sip:outdial@192.0.2.1:5060;transport=tcp")
        );
        h.advance_to(Duration::from_millis(31_999));
        assert!(h.take_sent().is_empty(), "no Timer A over TCP");
        assert!(h.ended().is_empty());
        h.advance_to(Duration::from_secs(32));
        assert_eq!(
            ended(&h.take_events()),
            [(
                CallId(1),
                Disposition::Unreachable,
                None,
                "no response from 192.0.2.4:5070 (Timer B)".to_owned()
            )]
        );
        assert!(h.endpoint.is_idle());
    }
}

/// The agent keeps a quiet connection open while a call talks to its peer: from the INVITE
/// until the call has ended, and only for the call's transport and peer.
#[test]
fn a_live_tcp_call_uses_its_peers_connection_until_it_ends() {
    let mut h = Harness::new();
    let uas = addr(UAS);
    assert!(!h.endpoint.uses_stream_peer(Transport::Tcp, uas));
    let params = DialParams {
        transport: Transport::Tcp,
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    let invite = h.last_request(Method::Invite);
    assert!(h.endpoint.uses_stream_peer(Transport::Tcp, uas));
    assert!(!h.endpoint.uses_stream_peer(Transport::Tls, uas));
    assert!(
        !h.endpoint
            .uses_stream_peer(Transport::Tcp, addr("192.0.2.4:5071"))
    );
    let ok = reply(
        &invite,
        200,
        "OK",
        Some("uas1"),
        "Contact: <sip:callee@192.0.2.9:5070;transport=tcp>\r\n",
        SDP_ANSWER,
    );
    h.deliver_on(Transport::Tcp, &ok);
    h.drain();
    // The dialog's next hop (the callee's Contact) too.
    assert!(
        h.endpoint
            .uses_stream_peer(Transport::Tcp, addr("192.0.2.9:5070"))
    );
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let bye = h.last_request(Method::Bye);
    h.deliver_on(Transport::Tcp, &reply(&bye, 200, "OK", None, "", ""));
    h.drain();
    assert!(!h.endpoint.uses_stream_peer(Transport::Tcp, uas));
    assert!(
        !h.endpoint
            .uses_stream_peer(Transport::Tcp, addr("192.0.2.9:5070"))
    );
}

#[test]
fn a_tcp_call_acks_byes_and_cancels_on_tcp() {
    let mut h = Harness::new();
    let params = DialParams {
        transport: Transport::Tcp,
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.take_sent();
    // The callee's Contact names no transport: the dialog stays on TCP.
    let ok = reply(
        &invite,
        200,
        "OK",
        Some("uas1"),
        "Contact: <sip:callee@192.0.2.4:5070>\r\n",
        SDP_ANSWER,
    );
    h.deliver_on(Transport::Tcp, &ok);
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let sent = h.take_sent_via();
    assert_eq!(
        via_summary(&sent),
        [
            (Transport::Tcp, addr(UAS), "ACK".into(), "TCP".into()),
            (Transport::Tcp, addr(UAS), "BYE".into(), "TCP".into()),
        ]
    );
    h.advance_to(Duration::from_secs(20));
    assert!(h.take_sent().is_empty(), "no Timer E over TCP");
    let bye = sent[1].2.clone();
    h.deliver_on(Transport::Tcp, &reply(&bye, 200, "OK", None, "", ""));
    assert_eq!(
        h.endpoint.poll_timeout(),
        Some(h.now),
        "Timer K is zero over TCP"
    );
    h.advance_to(Duration::from_secs(21));
    assert_eq!(
        h.endpoint.poll_timeout(),
        Some(h.t0 + Duration::from_secs(32)),
        "the BYE is done: only the INVITE's Timer M is left"
    );

    // Before an answer: the CANCEL follows the INVITE onto TCP; a 487 is ACKed there.
    let mut h = Harness::new();
    h.dial_with(2, &params).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.deliver_on(
        Transport::Tcp,
        &reply(&invite, 180, "Ringing", Some("u2"), "", ""),
    );
    h.take_sent();
    h.endpoint.hangup(h.now, CallId(2));
    h.drain();
    h.deliver_on(
        Transport::Tcp,
        &reply(&invite, 487, "Request Terminated", Some("u2"), "", ""),
    );
    assert_eq!(
        via_summary(&h.take_sent_via()),
        [
            (Transport::Tcp, addr(UAS), "CANCEL".into(), "TCP".into()),
            (Transport::Tcp, addr(UAS), "ACK".into(), "TCP".into()),
        ]
    );
}

#[test]
fn a_udp_call_whose_peer_asks_for_tcp_in_its_contact_byes_on_tcp() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    let contact = "Contact: <sip:callee@192.0.2.4:5070;transport=tcp>\r\n";
    h.deliver(&reply(
        &invite,
        200,
        "OK",
        Some("uas1"),
        contact,
        SDP_ANSWER,
    ));
    h.take_sent();
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    assert_eq!(
        via_summary(&h.take_sent_via()),
        [(Transport::Tcp, addr(UAS), "BYE".into(), "TCP".into())]
    );
}

/// RFC 3261 §18.1.1: a large INVITE moved to TCP that cannot get a connection goes again
/// over UDP (retransmitted on Timer A, its CANCEL and ACK on UDP too); one whose target
/// named TCP ends `Unreachable` instead.
#[test]
fn a_large_invite_that_gets_no_tcp_connection_goes_again_over_udp() {
    let big_offer = [SDP_OFFER, "a=x-padding:".as_bytes(), &[b'p'; 1300], b"\r\n"].concat();
    let mut h = Harness::new();
    let params = DialParams {
        sdp_offer: &big_offer,
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    let sent = h.take_sent_via();
    assert_eq!(sent[0].0, Transport::Tcp);
    let tcp_invite = sent[0].2.clone();
    h.advance_to(Duration::from_secs(2));
    h.endpoint
        .handle_transport_failure(h.now, &tcp_invite, "refused the TCP connection");
    // A second report of the same connection's failure changes nothing.
    h.endpoint
        .handle_transport_failure(h.now, &tcp_invite, "refused the TCP connection");
    h.drain();
    let sent = h.take_sent_via();
    assert_eq!(
        via_summary(&sent),
        [(Transport::Udp, addr(UAS), "INVITE".into(), "UDP".into())]
    );
    let invite = sent[0].2.clone();
    let udp_invite = parse_message(&invite).expect("INVITE");
    let first = parse_message(&tcp_invite).expect("INVITE");
    assert_eq!(
        udp_invite.via().and_then(|v| v.branch()),
        first.via().and_then(|v| v.branch()),
        "the same transaction"
    );
    assert!(h.ended().is_empty(), "{:?}", h.ended());
    // Timer A runs from the fallback.
    h.advance_to(Duration::from_millis(2500));
    assert_eq!(
        via_summary(&h.take_sent_via()),
        [(Transport::Udp, addr(UAS), "INVITE".into(), "UDP".into())]
    );
    h.deliver(&reply(&invite, 180, "Ringing", Some("u"), "", ""));
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    assert_eq!(
        via_summary(&h.take_sent_via()),
        [(Transport::Udp, addr(UAS), "CANCEL".into(), "UDP".into())]
    );
    h.deliver(&reply(
        &invite,
        487,
        "Request Terminated",
        Some("u"),
        "",
        "",
    ));
    let sent = h.take_sent_via();
    assert!(
        via_summary(&sent).contains(&(Transport::Udp, addr(UAS), "ACK".into(), "UDP".into())),
        "{:?}",
        via_summary(&sent)
    );
    assert_eq!(ended(&h.take_events())[0].1, Disposition::Canceled);

    // A target that named TCP is not moved: the failure ends the call.
    let mut h = Harness::new();
    let params = DialParams {
        target: "sip:+15550001@192.0.2.4:5070;transport=tcp",
        sdp_offer: &big_offer,
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    let tcp_invite = h.take_sent_via()[0].2.clone();
    h.endpoint
        .handle_transport_failure(h.now, &tcp_invite, "refused the TCP connection");
    h.drain();
    assert!(h.take_sent().is_empty());
    let ended = ended(&h.take_events());
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].1, Disposition::Unreachable);
    assert!(
        ended[0].3.contains("refused the TCP connection"),
        "{ended:?}"
    );
}

#[test]
fn a_request_too_large_for_udp_goes_over_tcp_unless_the_target_says_udp() {
    let big_offer = [SDP_OFFER, "a=x-padding:".as_bytes(), &[b'p'; 1300], b"\r\n"].concat();
    let mut h = Harness::new();
    let params = DialParams {
        sdp_offer: &big_offer,
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    let sent = h.take_sent_via();
    assert_eq!(
        via_summary(&sent),
        [(Transport::Tcp, addr(UAS), "INVITE".into(), "TCP".into())]
    );
    assert!(sent[0].2.len() > 1300);
    h.advance_to(Duration::from_secs(5));
    assert!(h.take_sent().is_empty(), "not retransmitted once on TCP");
    // A 180, then our CANCEL goes on TCP with the INVITE's Via.
    let invite = sent[0].2.clone();
    h.deliver_on(
        Transport::Tcp,
        &reply(&invite, 180, "Ringing", Some("u"), "", ""),
    );
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    let sent = h.take_sent_via();
    assert_eq!(
        via_summary(&sent),
        [(Transport::Tcp, addr(UAS), "CANCEL".into(), "TCP".into())]
    );
    let cancel = parse_message(&sent[0].2).expect("CANCEL");
    let invite = parse_message(&invite).expect("INVITE");
    assert_eq!(
        cancel.via().and_then(|v| v.branch()),
        invite.via().and_then(|v| v.branch())
    );

    // The same INVITE to a target that asks for UDP stays on UDP and is retransmitted.
    let mut h = Harness::new();
    let params = DialParams {
        target: "sip:+15550001@192.0.2.4:5070;transport=udp",
        sdp_offer: &big_offer,
        ..plain_dial(60)
    };
    h.dial_with(1, &params).expect("dial");
    h.advance_to(Duration::from_millis(600));
    let sent = h.take_sent_via();
    assert_eq!(
        via_summary(&sent),
        [
            (Transport::Udp, addr(UAS), "INVITE".into(), "UDP".into()),
            (Transport::Udp, addr(UAS), "INVITE".into(), "UDP".into()),
        ]
    );

    // The threshold is configurable.
    let mut h = Harness::configured(|config| config.udp_mtu_switch = 64 * 1024);
    h.dial_with(
        1,
        &DialParams {
            sdp_offer: &big_offer,
            ..plain_dial(60)
        },
    )
    .expect("dial");
    assert_eq!(h.take_sent_via()[0].0, Transport::Udp);
}

/// The early answer of the tests below: another session (`o=`) than `SDP_ANSWER`'s.
const EARLY_SDP: &str = "v=0\r\no=- 7 1 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 50002 RTP/AVP 0\r\n";

fn early_media(events: &[SipEvent]) -> Vec<(CallId, Vec<u8>, SocketAddr)> {
    events
        .iter()
        .filter_map(|event| match event {
            SipEvent::EarlyMedia { call, sdp, peer } => Some((*call, sdp.clone(), *peer)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_183_with_sdp_is_early_media_once_and_the_200_still_answers() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    // A 180 without SDP is ringing only.
    h.deliver(&reply(&invite, 180, "Ringing", Some("uas1"), CONTACT, ""));
    let progress = reply(
        &invite,
        183,
        "Session Progress",
        Some("uas1"),
        CONTACT,
        EARLY_SDP,
    );
    h.deliver(&progress);
    let events = h.take_events();
    assert_eq!(events[0], SipEvent::Ringing { call: CallId(1) });
    assert_eq!(
        early_media(&events),
        [(CallId(1), EARLY_SDP.as_bytes().to_vec(), addr(UAS))]
    );
    assert_eq!(events.len(), 2);
    // The 183 again, and a fork's 183 with its own SDP: the first early dialog is kept.
    h.deliver(&progress);
    let fork = EARLY_SDP.replace("50002", "50010");
    h.deliver(&reply(
        &invite,
        183,
        "Session Progress",
        Some("uas2"),
        CONTACT,
        &fork,
    ));
    assert!(h.take_events().is_empty());
    // The 200 answers as always, with whatever SDP it carries (the owner compares).
    h.deliver(&reply(&invite, 200, "OK", Some("uas1"), CONTACT, EARLY_SDP));
    assert_eq!(
        h.take_events(),
        [SipEvent::Answered {
            call: CallId(1),
            sdp: EARLY_SDP.as_bytes().to_vec(),
            peer: addr(UAS),
        }]
    );
    assert!(methods(&h.take_sent()).contains(&"ACK".to_owned()));
}

#[test]
fn a_200_without_sdp_after_early_media_is_answered_with_an_empty_body() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.deliver(&reply(
        &invite,
        183,
        "Session Progress",
        Some("uas1"),
        CONTACT,
        EARLY_SDP,
    ));
    assert_eq!(early_media(&h.take_events()).len(), 1);
    h.deliver(&reply(&invite, 200, "OK", Some("uas1"), CONTACT, ""));
    assert_eq!(
        h.take_events(),
        [SipEvent::Answered {
            call: CallId(1),
            sdp: Vec::new(),
            peer: addr(UAS),
        }]
    );
}

#[test]
fn a_reliable_183_with_sdp_is_pracked_and_is_early_media() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.take_sent();
    h.deliver(&reply(
        &invite,
        183,
        "Session Progress",
        Some("uas1"),
        &format!("{CONTACT}Require: 100rel\r\nRSeq: 1\r\n"),
        EARLY_SDP,
    ));
    assert_eq!(methods(&h.take_sent()), ["PRACK"]);
    assert_eq!(early_media(&h.take_events()).len(), 1);
}

#[test]
fn early_media_then_486_ends_the_call_busy() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    h.deliver(&reply(
        &invite,
        183,
        "Session Progress",
        Some("uas1"),
        CONTACT,
        EARLY_SDP,
    ));
    assert_eq!(early_media(&h.take_events()).len(), 1);
    h.deliver(&reply(&invite, 486, "Busy Here", Some("uas1"), "", ""));
    assert_eq!(
        ended(&h.take_events()),
        [(
            CallId(1),
            Disposition::Busy,
            Some(486),
            "486 Busy Here".to_owned()
        )]
    );
    assert!(methods(&h.take_sent()).contains(&"ACK".to_owned()));
    h.advance_to(Duration::from_secs(100));
    assert!(h.endpoint.is_idle());
}

#[test]
fn a_183_body_that_is_not_sdp_or_comes_after_our_cancel_is_not_early_media() {
    let mut h = Harness::new();
    h.dial(1, 60).expect("dial");
    let invite = h.last_request(Method::Invite);
    let mut isup = reply(
        &invite,
        183,
        "Session Progress",
        Some("uas1"),
        CONTACT,
        EARLY_SDP,
    );
    let text = String::from_utf8(isup.clone()).expect("text");
    isup = text
        .replace("application/sdp", "application/isup")
        .into_bytes();
    h.deliver(&isup);
    let events = h.take_events();
    assert_eq!(events, [SipEvent::Ringing { call: CallId(1) }]);
    // Hung up before the answer: a 183 with SDP that arrives now is not early media.
    h.endpoint.hangup(h.now, CallId(1));
    h.drain();
    h.deliver(&reply(
        &invite,
        183,
        "Session Progress",
        Some("uas1"),
        CONTACT,
        EARLY_SDP,
    ));
    assert!(early_media(&h.take_events()).is_empty());
}
