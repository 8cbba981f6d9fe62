//! A fresh `sip::Endpoint` that has dialed one call, fed the input as datagrams from the
//! callee, then driven through its timers to the end. It must never panic, and it must
//! report the call's end exactly once (the contract of `SipEvent::Ended`).
//!
//! Input format: datagrams separated by `@@@@`. Before feeding, `@@b`, `@@c` and `@@f` are
//! replaced by the INVITE's branch, Call-ID and From tag, so seeds can answer the call
//! however the endpoint's random identifiers come out. A datagram starting with `ICMP` is
//! instead an ICMP port unreachable quoting the rest (`Endpoint::handle_icmp_error`).
#![no_main]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::api::CallId;
use outdial_dataplane::icmp::IcmpError;
use outdial_dataplane::sip::{
    BorderConfig, DialParams, Endpoint, SipConfig, SipEvent, parse_message,
};

const LOCAL: &str = "192.0.2.1:5060";
const CALLEE: &str = "192.0.2.4:5070";
const CALL: CallId = CallId(1);
const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\n";
/// Upper bound on timer firings after the input, far above what any call needs.
const MAX_TIMER_STEPS: usize = 10_000;

/// The identifiers of the dialed INVITE that seeds refer to.
struct Invite {
    branch: Vec<u8>,
    call_id: Vec<u8>,
    from_tag: Vec<u8>,
}

struct Harness {
    endpoint: Endpoint,
    now: Instant,
    buf: Vec<u8>,
    ended: usize,
}

impl Harness {
    fn drain(&mut self) {
        while self.endpoint.poll_transmit(&mut self.buf).is_some() {}
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                SipEvent::Ended { call, .. } => {
                    assert_eq!(call, CALL, "event for a call never dialed");
                    self.ended += 1;
                    assert_eq!(self.ended, 1, "Ended reported more than once");
                }
                SipEvent::Ringing { call }
                | SipEvent::Answered { call, .. }
                | SipEvent::TransferDone { call, .. } => {
                    assert_eq!(call, CALL, "event for a call never dialed");
                }
                SipEvent::Registration { .. } => panic!("no registration was started"),
            }
        }
    }
}

fn dial() -> (Harness, Invite) {
    let config = SipConfig {
        local: LOCAL.parse().expect("fixed address"),
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(5),
        user_agent: "outdial-fuzz".to_owned(),
        // Answered, so the stateless 404 path is fuzzed too.
        border: BorderConfig {
            answer_stranger_invite: true,
            ..BorderConfig::default()
        },
        inbound_sources: Vec::new(),
        core: 0,
        max_calls: usize::MAX,
    };
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config, 7);
    let params = DialParams {
        target: "sip:+15550001@192.0.2.4:5070",
        destination: None,
        from: "sip:outdial@192.0.2.1",
        sdp_offer: OFFER,
        ring_timeout: Duration::from_secs(30),
        max_duration: Duration::from_secs(60),
        credentials: None,
        asserted_identity: None,
        privacy: None,
    };
    endpoint
        .dial(now, CALL, &params)
        .expect("fixed dial parameters");
    let mut buf = Vec::new();
    endpoint
        .poll_transmit(&mut buf)
        .expect("dial sends an INVITE");
    let ids = {
        let invite = parse_message(&buf).expect("our INVITE parses");
        Invite {
            branch: invite
                .via()
                .and_then(|v| v.branch())
                .expect("INVITE has a branch")
                .into(),
            call_id: invite.call_id().expect("INVITE has a Call-ID").into(),
            from_tag: invite
                .from()
                .and_then(|f| f.tag())
                .expect("INVITE has a From tag")
                .into(),
        }
    };
    let mut harness = Harness {
        endpoint,
        now,
        buf,
        ended: 0,
    };
    harness.drain();
    (harness, ids)
}

/// Replaces each placeholder with the INVITE's identifier.
fn substitute(datagram: &[u8], invite: &Invite) -> Vec<u8> {
    let mut out = Vec::with_capacity(datagram.len() + 64);
    let mut rest = datagram;
    while !rest.is_empty() {
        let replacement = match rest {
            [b'@', b'@', b'b', ..] => Some(&invite.branch),
            [b'@', b'@', b'c', ..] => Some(&invite.call_id),
            [b'@', b'@', b'f', ..] => Some(&invite.from_tag),
            _ => None,
        };
        match replacement {
            Some(value) => {
                out.extend_from_slice(value);
                rest = &rest[3..];
            }
            None => {
                out.push(rest[0]);
                rest = &rest[1..];
            }
        }
    }
    out
}

fn split_datagrams(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(4).position(|w| w == b"@@@@") {
            Some(at) => {
                rest = Some(&current[at + 4..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn exercise(data: &[u8]) {
    let (mut harness, invite) = dial();
    let callee: SocketAddr = CALLEE.parse().expect("fixed address");
    for datagram in split_datagrams(data) {
        let datagram = substitute(datagram, &invite);
        match datagram.strip_prefix(b"ICMP") {
            Some(quoted) => {
                let error = IcmpError::classify(callee, 2, 3, 3, None)
                    .expect("port unreachable is classified");
                harness.endpoint.handle_icmp_error(&error, quoted);
            }
            None => harness
                .endpoint
                .handle_datagram(harness.now, callee, &datagram),
        }
        harness.drain();
        harness.now += Duration::from_millis(100);
        harness.endpoint.handle_timeout(harness.now);
        harness.drain();
    }
    harness.endpoint.hangup(harness.now, CALL);
    harness.drain();
    for _ in 0..MAX_TIMER_STEPS {
        let Some(deadline) = harness.endpoint.poll_timeout() else {
            break;
        };
        harness.now = harness.now.max(deadline);
        harness.endpoint.handle_timeout(harness.now);
        harness.drain();
    }
    assert_eq!(harness.ended, 1, "the call never ended");
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&common::restrict_to_alphabet(data));
});
