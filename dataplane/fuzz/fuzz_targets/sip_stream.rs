//! SIP over one TCP connection: the input is a byte stream from a peer, cut into chunks
//! and fed to a `sip::StreamFramer`; every message it frames goes to a fresh `sip::Endpoint`
//! through `handle_message(Transport::Tcp, ..)`. The endpoint has dialed one call to that
//! peer over TCP and takes the peer's INVITEs as incoming calls (each accepted at once).
//!
//! Input: the first byte picks the chunk sizes (1 to 256 bytes, varying); the rest is the
//! stream, in which `@@b`, `@@c` and `@@f` are first replaced by the dialed INVITE's
//! branch, Call-ID and From tag (so seeds can answer it).
//!
//! Asserts: no panic; every frame is at most the cap and is exactly the next bytes of the
//! stream after only whitespace (bytes accounted: frames + skipped + buffered = fed); a
//! ping is a CRLF after a CRLF; a refused `extend` only when the buffer would pass twice
//! the cap; after an error nothing more is fed (the connection closes). Every response the
//! endpoint sends goes back on TCP to the peer; the dialed call ends exactly once; after
//! hanging up everything and running the timers out, the endpoint keeps nothing.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::api::CallId;
use outdial_dataplane::sip::{
    BorderConfig, DialParams, Endpoint, Frame, SipConfig, SipEvent, StreamFramer, Transport,
    parse_message,
};

const LOCAL: &str = "192.0.2.1:5060";
/// The peer of the connection: the callee of the dialed call and a caller too.
const PEER: &str = "198.51.100.7:5060";
const INBOUND: &str = "198.51.100.0/24";
const CALL: CallId = CallId(1);
/// The framer's cap (below the endpoint's, so its limits are reached often).
const CAP: usize = 2048;
const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
const MAX_TIMER_STEPS: usize = 10_000;

struct Harness {
    endpoint: Endpoint,
    now: Instant,
    buf: Vec<u8>,
    peer: SocketAddr,
    ended: usize,
    incoming: Vec<CallId>,
}

impl Harness {
    fn drain(&mut self) {
        while let Some((transport, to)) = self.endpoint.poll_transmit_via(&mut self.buf) {
            if let Ok(message) = parse_message(&self.buf)
                && message.status().is_some()
            {
                assert_eq!(
                    (transport, to),
                    (Transport::Tcp, self.peer),
                    "a response goes back on the request's connection"
                );
            }
        }
        let mut offered = Vec::new();
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                SipEvent::Ended { call, .. } if call == CALL => {
                    self.ended += 1;
                    assert_eq!(self.ended, 1, "Ended reported more than once");
                }
                SipEvent::Incoming { call, .. } => offered.push(call),
                _ => {}
            }
        }
        for call in offered {
            self.incoming.push(call);
            self.endpoint
                .accept(self.now, call, OFFER, Duration::from_secs(60));
        }
        if !self.incoming.is_empty() {
            while let Some((transport, to)) = self.endpoint.poll_transmit_via(&mut self.buf) {
                if parse_message(&self.buf).is_ok_and(|m| m.status().is_some()) {
                    assert_eq!((transport, to), (Transport::Tcp, self.peer));
                }
            }
        }
    }
}

fn start() -> (Harness, [Vec<u8>; 3]) {
    let config = SipConfig {
        local: LOCAL.parse().expect("fixed address"),
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(5),
        user_agent: "outdial-fuzz".to_owned(),
        border: BorderConfig {
            answer_stranger_invite: true,
            ..BorderConfig::default()
        },
        inbound_sources: vec![INBOUND.parse().expect("fixed network")],
        core: 0,
        max_calls: 3,
        session_expires: Some(Duration::from_secs(90)),
        udp_mtu_switch: outdial_dataplane::sip::endpoint::UDP_MTU_SWITCH,
    };
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config, 11);
    let params = DialParams {
        target: "sip:+15550001@198.51.100.7:5060;transport=tcp",
        destination: None,
        from: "sip:outdial@192.0.2.1",
        sdp_offer: OFFER,
        ring_timeout: Duration::from_secs(30),
        max_duration: Duration::from_secs(60),
        credentials: None,
        asserted_identity: None,
        privacy: None,
        no_response_timeout: None,
        transport: Transport::Tcp,
    };
    endpoint
        .dial(now, CALL, &params)
        .expect("fixed dial parameters");
    let mut buf = Vec::new();
    let sent = endpoint.poll_transmit_via(&mut buf);
    let peer: SocketAddr = PEER.parse().expect("fixed address");
    assert_eq!(sent, Some((Transport::Tcp, peer)), "the INVITE goes on TCP");
    let invite = parse_message(&buf).expect("our INVITE parses");
    let ids = [
        invite
            .via()
            .and_then(|v| v.branch())
            .expect("branch")
            .into(),
        invite.call_id().expect("Call-ID").into(),
        invite
            .from()
            .and_then(|f| f.tag())
            .expect("From tag")
            .into(),
    ];
    let harness = Harness {
        endpoint,
        now,
        buf: Vec::new(),
        peer,
        ended: 0,
        incoming: Vec::new(),
    };
    (harness, ids)
}

fn substitute(data: &[u8], ids: &[Vec<u8>; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut rest = data;
    while let Some((&first, tail)) = rest.split_first() {
        let id = match rest {
            [b'@', b'@', b'b', ..] => Some(&ids[0]),
            [b'@', b'@', b'c', ..] => Some(&ids[1]),
            [b'@', b'@', b'f', ..] => Some(&ids[2]),
            _ => None,
        };
        match id {
            Some(id) => {
                out.extend_from_slice(id);
                rest = &rest[3..];
            }
            None => {
                out.push(first);
                rest = tail;
            }
        }
    }
    out
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fuzz_target!(|data: &[u8]| {
    let Some((&sizes, stream)) = data.split_first() else {
        return;
    };
    let (mut h, ids) = start();
    let stream = substitute(stream, &ids);
    let mut framer = StreamFramer::new(CAP);
    // Stream offset of the first byte not yet framed or skipped.
    let mut taken = 0usize;
    let mut fed = 0usize;
    let mut chunk_index = 0usize;
    'connection: while fed < stream.len() {
        let len = 1 + (usize::from(sizes).wrapping_mul(chunk_index + 1) * 37) % 256;
        chunk_index += 1;
        let chunk = &stream[fed..stream.len().min(fed + len)];
        if framer.extend(chunk).is_err() {
            assert!(
                framer.buffered() + chunk.len() > 2 * CAP,
                "refused below the cap"
            );
            break;
        }
        fed += chunk.len();
        assert_eq!(taken + framer.buffered(), fed, "bytes accounted");
        while let Some(frame) = framer.next_frame() {
            let after = fed - framer.buffered();
            match frame {
                Ok(Frame::Message(range)) => {
                    let message = &framer.buffer()[range];
                    assert!(
                        !message.is_empty() && message.len() <= CAP,
                        "frame over the cap"
                    );
                    let start = after - message.len();
                    assert!(start >= taken);
                    assert!(
                        stream[taken..start].iter().all(|&b| is_space(b)),
                        "only whitespace skipped"
                    );
                    assert_eq!(
                        message,
                        &stream[start..after],
                        "a frame is the stream's next bytes"
                    );
                    let message = message.to_vec();
                    h.endpoint
                        .handle_message(h.now, Transport::Tcp, h.peer, &message);
                    h.drain();
                }
                Ok(Frame::Ping) => {
                    assert!(after >= taken + 2 && stream[..after].ends_with(b"\r\n"));
                    assert!(stream[taken..after].iter().all(|&b| is_space(b)));
                }
                Err(_) => break 'connection,
            }
            taken = after;
        }
        // Whitespace between messages (a lone CRLF, a pong) is skipped without a frame.
        let after = fed - framer.buffered();
        assert!(after >= taken, "the framer never gives bytes back");
        assert!(
            stream[taken..after].iter().all(|&b| is_space(b)),
            "only whitespace skipped"
        );
        taken = after;
        // Time passes between reads.
        h.now += Duration::from_millis(u64::from(sizes % 8) * 100);
        h.endpoint.handle_timeout(h.now);
        h.drain();
    }

    h.endpoint.hangup(h.now, CALL);
    for call in h.incoming.clone() {
        h.endpoint.hangup(h.now, call);
    }
    h.drain();
    let mut steps = 0;
    while let Some(deadline) = h.endpoint.poll_timeout() {
        steps += 1;
        assert!(steps < MAX_TIMER_STEPS, "timers never run out");
        h.now = h.now.max(deadline);
        h.endpoint.handle_timeout(h.now);
        h.drain();
    }
    assert_eq!(h.ended, 1, "the dialed call ended exactly once");
    assert!(h.endpoint.is_idle(), "nothing kept once the timers ran out");
});
