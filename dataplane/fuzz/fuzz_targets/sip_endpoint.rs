//! A fresh `sip::Endpoint` that has dialed one call, fed the input as datagrams from the
//! callee or from a caller it takes incoming calls from, then driven through its timers to
//! the end. It must never panic, it must report each call's end exactly once (the contract
//! of `SipEvent::Ended`) and early media at most once and only before the answer, and
//! afterwards it must keep nothing.
//!
//! Input format: datagrams separated by `@@@@`. Before feeding, `@@b`, `@@c` and `@@f` are
//! replaced by the INVITE's branch, Call-ID and From tag, so seeds can answer the call
//! however the endpoint's random identifiers come out, and `@@t` by the To tag of the last
//! response the endpoint sent (so a caller can ACK or BYE an incoming call). A datagram
//! starting with `ICMP` is instead an ICMP port unreachable quoting the rest
//! (`Endpoint::handle_icmp_error`). One starting with `@@i` and a choice byte comes from
//! the caller (in `inbound_sources`); for each `SipEvent::Incoming` it produces, the choice
//! byte says whether the owner accepts, rejects, hangs up, puts it in early media (and then
//! perhaps accepts) or never answers, and whether it hangs up at the end. An input starting
//! with `MTU!` dials with `udp_mtu_switch` at 300 bytes, so the INVITE and larger requests go
//! over TCP; then a datagram starting with `TCPX` and a byte reports that the stream
//! transport failed for one of the requests sent over TCP (`Endpoint::handle_transport_failure`:
//! it falls back to UDP or ends the call).
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
/// The caller of incoming calls, inside [`INBOUND`]; the callee is outside it.
const CALLER: &str = "198.51.100.7:5060";
const INBOUND: &str = "198.51.100.0/24";
const CALL: CallId = CallId(1);
const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\n";
const ANSWER: &[u8] = b"v=0\r\no=- 2 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0 101\r\n";
/// Incoming INVITEs get 503 beyond this many live calls (the dialed one counts).
const MAX_CALLS: usize = 3;
/// Upper bound on timer firings after the input, far above what any call needs.
const MAX_TIMER_STEPS: usize = 10_000;

/// The identifiers of the dialed INVITE that seeds refer to.
struct Invite {
    branch: Vec<u8>,
    call_id: Vec<u8>,
    from_tag: Vec<u8>,
}

/// An incoming call the endpoint offered.
struct Offered {
    call: CallId,
    /// The choice byte of the datagram that brought it.
    choice: u8,
    accepted: bool,
    answered: bool,
    ended: bool,
    /// Put in early media (`Endpoint::progress`); reported once.
    early: bool,
    early_reported: bool,
}

struct Harness {
    endpoint: Endpoint,
    now: Instant,
    buf: Vec<u8>,
    ended: usize,
    incoming: Vec<Offered>,
    /// Incoming calls not yet handed to the owner's choice.
    new_incoming: usize,
    /// The To tag of the last response sent (`@@t`).
    to_tag: Vec<u8>,
    /// New offers answered so far.
    reoffers: u32,
    /// Early media reported for the dialed call.
    early_media: usize,
    /// The dialed call was answered.
    answered: bool,
    /// The last requests sent over a stream transport (for `TCPX`).
    stream_sent: Vec<Vec<u8>>,
}

impl Harness {
    fn drain(&mut self) {
        while let Some((transport, _)) = self.endpoint.poll_transmit_via(&mut self.buf) {
            if transport != outdial_dataplane::sip::Transport::Udp
                && !self.buf.starts_with(b"SIP/2.0")
            {
                if self.stream_sent.len() == 8 {
                    self.stream_sent.remove(0);
                }
                self.stream_sent.push(self.buf.clone());
            }
            // A response echoes the request's Via, From, To: it parses when they did.
            if let Ok(response) = parse_message(&self.buf)
                && let Some(tag) = response.to().and_then(|to| to.tag())
                && response.status().is_some()
            {
                self.to_tag = tag.as_bytes().to_vec();
            }
        }
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                SipEvent::Ended { call, .. } if call == CALL => {
                    self.ended += 1;
                    assert_eq!(self.ended, 1, "Ended reported more than once");
                }
                SipEvent::Ended { call, .. } => {
                    let offered = self.offered(call);
                    assert!(!offered.ended, "Ended reported more than once");
                    offered.ended = true;
                }
                SipEvent::Incoming { call, source, .. } => {
                    let n = self.incoming.len() as u64;
                    assert_eq!(call, CallId::inbound(0, n), "incoming ids count up");
                    assert_eq!(source, CALLER.parse().expect("fixed address"));
                    self.incoming.push(Offered {
                        call,
                        choice: 0,
                        accepted: false,
                        answered: false,
                        ended: false,
                        early: false,
                        early_reported: false,
                    });
                }
                SipEvent::Answered { call, .. } if call != CALL => {
                    let offered = self.offered(call);
                    assert!(
                        offered.accepted && !offered.answered && !offered.ended,
                        "Answered for an incoming call not accepted, or twice, or after Ended"
                    );
                    offered.answered = true;
                }
                SipEvent::EarlyMedia { call, .. } if call != CALL => {
                    let offered = self.offered(call);
                    assert!(
                        offered.early && !offered.early_reported && !offered.answered,
                        "early media for an incoming call not put in it, or twice, or answered"
                    );
                    offered.early_reported = true;
                }
                SipEvent::EarlyMedia { call, .. } => {
                    assert_eq!(call, CALL, "early media for a call never dialed");
                    self.early_media += 1;
                    assert_eq!(self.early_media, 1, "early media reported more than once");
                    assert!(
                        self.ended == 0 && !self.answered,
                        "early media after the answer or the end"
                    );
                }
                SipEvent::Answered { call, .. } => {
                    assert_eq!(call, CALL, "event for a call never dialed");
                    self.answered = true;
                }
                SipEvent::Ringing { call } | SipEvent::TransferDone { call, .. } => {
                    assert_eq!(call, CALL, "event for a call never dialed");
                }
                SipEvent::Reoffer { call, .. } => {
                    // Every other offer is refused; both ways the endpoint must be waiting.
                    self.reoffers += 1;
                    let answer = if self.reoffers % 2 == 0 {
                        Ok(ANSWER)
                    } else {
                        Err(488)
                    };
                    assert!(
                        self.endpoint.answer_reoffer(self.now, call, answer),
                        "a reported offer waits for its answer"
                    );
                }
                SipEvent::Registration { .. } => panic!("no registration was started"),
            }
        }
    }

    fn offered(&mut self, call: CallId) -> &mut Offered {
        self.incoming
            .iter_mut()
            .find(|offered| offered.call == call)
            .expect("event for a call never offered")
    }

    /// The owner's answer to each call offered since the last time: `choice % 4` is
    /// accept, reject (status and Retry-After from the byte), hang up, or nothing (with bit
    /// 6, early media instead, and with bit 2 also the answer after it: `s`, `w`); bit 3
    /// hangs the call up at the end of the input.
    fn answer_incoming(&mut self, choice: u8) {
        let now = self.now;
        for offered in &mut self.incoming[self.new_incoming..] {
            offered.choice = choice;
            let call = offered.call;
            let live = !offered.ended;
            match choice % 4 {
                0 => {
                    let accepted = self
                        .endpoint
                        .accept(now, call, ANSWER, Duration::from_secs(60));
                    assert_eq!(accepted, live, "accept works exactly while offered");
                    offered.accepted = accepted;
                }
                1 => {
                    let status = 300 + u16::from(choice) * 2;
                    let retry_after = (choice & 4 != 0).then_some(u32::from(choice));
                    let rejected = self.endpoint.reject(now, call, status, retry_after);
                    assert_eq!(rejected, live, "reject works exactly while offered");
                }
                2 => self.endpoint.hangup(now, call),
                _ if choice & 64 != 0 => {
                    let early = self.endpoint.progress(now, call, ANSWER).is_ok();
                    assert!(live || !early, "early media only while offered");
                    offered.early = early;
                    if early && choice & 4 != 0 {
                        let accepted =
                            self.endpoint
                                .accept(now, call, ANSWER, Duration::from_secs(60));
                        assert!(accepted, "a call in early media can be answered");
                        offered.accepted = true;
                    }
                }
                _ => {}
            }
        }
        self.new_incoming = self.incoming.len();
        self.drain();
    }
}

fn dial(udp_mtu_switch: usize) -> (Harness, Invite) {
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
        inbound_sources: vec![INBOUND.parse().expect("fixed network")],
        core: 0,
        max_calls: MAX_CALLS,
        session_expires: None,
        udp_mtu_switch,
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
        no_response_timeout: None,
        transport: outdial_dataplane::sip::Transport::Udp,
    };
    endpoint
        .dial(now, CALL, &params)
        .expect("fixed dial parameters");
    let mut buf = Vec::new();
    let (transport, _) = endpoint
        .poll_transmit_via(&mut buf)
        .expect("dial sends an INVITE");
    let stream_sent = if transport == outdial_dataplane::sip::Transport::Udp {
        Vec::new()
    } else {
        vec![buf.clone()]
    };
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
        incoming: Vec::new(),
        new_incoming: 0,
        to_tag: Vec::new(),
        reoffers: 0,
        early_media: 0,
        answered: false,
        stream_sent,
    };
    harness.drain();
    (harness, ids)
}

/// Replaces each placeholder with the INVITE's identifier.
fn substitute(datagram: &[u8], invite: &Invite, to_tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(datagram.len() + 64);
    let mut rest = datagram;
    while !rest.is_empty() {
        let replacement = match rest {
            [b'@', b'@', b'b', ..] => Some(&invite.branch[..]),
            [b'@', b'@', b'c', ..] => Some(&invite.call_id[..]),
            [b'@', b'@', b'f', ..] => Some(&invite.from_tag[..]),
            [b'@', b'@', b't', ..] => Some(to_tag),
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
    let (switch, data) = match data.strip_prefix(b"MTU!") {
        Some(rest) => (300, rest),
        None => (outdial_dataplane::sip::endpoint::UDP_MTU_SWITCH, data),
    };
    let (mut harness, invite) = dial(switch);
    let callee: SocketAddr = CALLEE.parse().expect("fixed address");
    let caller: SocketAddr = CALLER.parse().expect("fixed address");
    for datagram in split_datagrams(data) {
        let (source, choice, datagram) = match datagram.strip_prefix(b"@@i") {
            Some([choice, rest @ ..]) => (caller, *choice, rest),
            Some([]) => (caller, 0, &[][..]),
            None => (callee, 0, datagram),
        };
        let datagram = substitute(datagram, &invite, &harness.to_tag);
        if let Some(rest) = datagram.strip_prefix(b"TCPX") {
            let pick = rest.first().copied().unwrap_or(0) as usize;
            if !harness.stream_sent.is_empty() {
                let at = harness.stream_sent.len() - 1 - pick % harness.stream_sent.len();
                let sent = harness.stream_sent[at].clone();
                harness.endpoint.handle_transport_failure(
                    harness.now,
                    &sent,
                    "refused the TCP connection",
                );
            }
        } else {
            match datagram.strip_prefix(b"ICMP") {
                Some(quoted) if source == callee => {
                    let error = IcmpError::classify(callee, 2, 3, 3, None)
                        .expect("port unreachable is classified");
                    harness.endpoint.handle_icmp_error(&error, quoted);
                }
                _ => harness
                    .endpoint
                    .handle_datagram(harness.now, source, &datagram),
            }
        }
        harness.drain();
        harness.answer_incoming(choice);
        harness.now += Duration::from_millis(100);
        harness.endpoint.handle_timeout(harness.now);
        harness.drain();
    }
    harness.endpoint.hangup(harness.now, CALL);
    // Half the incoming calls are hung up at the end; the rest end on their own (480 when
    // never answered, Timer H or the maximum duration when accepted).
    let hang_up: Vec<CallId> = harness
        .incoming
        .iter()
        .filter(|offered| offered.choice & 8 != 0)
        .map(|offered| offered.call)
        .collect();
    for call in hang_up {
        harness.endpoint.hangup(harness.now, call);
    }
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
    assert!(
        harness.incoming.iter().all(|offered| offered.ended),
        "an incoming call never ended"
    );
    assert_eq!(harness.endpoint.active_calls(), 0);
    assert!(
        harness.endpoint.is_idle(),
        "state kept after every timer ran out"
    );
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&common::restrict_to_alphabet(data));
});
