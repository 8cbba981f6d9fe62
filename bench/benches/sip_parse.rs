//! Per-call hot paths of the dataplane, measured with criterion: SIP parsing of the INVITE
//! we send and the 200 OK we receive, SDP negotiation of a typical answer, and one 20 ms
//! RTP packet out and one RFC 4733 telephone-event in.
//!
//! Run: `cargo bench -p outdial-bench` (figures and the exact command: `docs/benchmarks.md`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use outdial_dataplane::rtp::packet::{HEADER_LEN, Header};
use outdial_dataplane::rtp::{
    MAX_PACKET_LEN, MediaConfig, MediaEvent, MediaSession, PACKET_INTERVAL, SourcePolicy,
};
use outdial_dataplane::sdp::{TELEPHONE_EVENT_PAYLOAD_TYPE, build_offer, negotiate};
use outdial_dataplane::sip::parse_message;

/// An INVITE as `sip::Endpoint::dial` writes it, carrying our SDP offer.
fn invite() -> Vec<u8> {
    let offer = build_offer(1, 1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000);
    let mut invite = format!(
        "INVITE sip:+15550001@192.0.2.4:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK3f2a9c1e5d7b8a60;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:outdial@192.0.2.1>;tag=9b1c4e7f2a3d5c60\r\n\
         To: <sip:+15550001@192.0.2.4:5070>\r\n\
         Call-ID: 5c0e1f2a3b4c5d6e7f8091a2b3c4d5e6@192.0.2.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:outdial@192.0.2.1:5060>\r\n\
         User-Agent: outdial/0.1.0\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\
         \r\n",
        offer.len()
    )
    .into_bytes();
    invite.extend_from_slice(&offer);
    invite
}

/// A typical SDP answer (Asterisk style): both laws, RFC 4733 events, ptime.
const ANSWER: &[u8] = b"v=0\r\n\
o=- 1716475328 1716475329 IN IP4 192.0.2.10\r\n\
s=Asterisk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 17890 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

/// The callee's 200 OK to [`invite`], carrying [`ANSWER`] (Content-Length is its length).
fn ok_with_sdp() -> Vec<u8> {
    let mut ok = format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK3f2a9c1e5d7b8a60;rport=5060;received=192.0.2.1\r\n\
         Record-Route: <sip:192.0.2.3;lr>\r\n\
         From: <sip:outdial@192.0.2.1>;tag=9b1c4e7f2a3d5c60\r\n\
         To: <sip:+15550001@192.0.2.4:5070>;tag=as5f3e2d1c\r\n\
         Call-ID: 5c0e1f2a3b4c5d6e7f8091a2b3c4d5e6@192.0.2.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+15550001@192.0.2.4:5070>\r\n\
         Server: Asterisk PBX 20.5.0\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n\
         Supported: replaces, timer\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\
         \r\n",
        ANSWER.len()
    )
    .into_bytes();
    ok.extend_from_slice(ANSWER);
    ok
}

fn sip(c: &mut Criterion) {
    let invite = invite();
    assert!(parse_message(&invite).is_ok_and(|m| m.body().starts_with(b"v=0\r\n")));
    c.bench_function("sip/parse_invite", |b| {
        b.iter(|| parse_message(black_box(&invite)).map(|m| m.headers().len()))
    });
    let ok = ok_with_sdp();
    assert!(parse_message(&ok).is_ok_and(|m| m.body() == ANSWER));
    c.bench_function("sip/parse_200_ok_with_sdp", |b| {
        b.iter(|| parse_message(black_box(&ok)).map(|m| m.headers().len()))
    });
}

fn sdp(c: &mut Criterion) {
    assert!(negotiate(ANSWER).is_ok());
    c.bench_function("sdp/negotiate_answer", |b| {
        b.iter(|| negotiate(black_box(ANSWER)))
    });
}

/// A session sending to the remote [`ANSWER`] negotiates.
fn media_session(t0: Instant) -> (MediaSession, SocketAddr) {
    // invariant: ANSWER is a fixed, valid answer (asserted in `sdp`).
    let negotiated = negotiate(ANSWER).expect("invariant: fixed answer negotiates");
    let config = MediaConfig {
        ssrc: 0x1234_5678,
        initial_seq: 1,
        initial_timestamp: 160,
        codec: negotiated.codec,
        remote: negotiated.remote_rtp,
        dtmf_payload_type: negotiated.dtmf_payload_type,
        source: SourcePolicy::Sdp,
    };
    (MediaSession::new(config, t0), negotiated.remote_rtp)
}

fn rtp(c: &mut Criterion) {
    let t0 = Instant::now();

    let (mut media, _) = media_session(t0);
    let mut now = t0;
    let mut buf = [0u8; MAX_PACKET_LEN];
    let mut slots = 0u64;
    c.bench_function("rtp/send_20ms_packet", |b| {
        b.iter(|| {
            media.handle_timeout(now);
            let sent = media.poll_transmit(&mut buf).map(|(_, len)| len);
            now += PACKET_INTERVAL;
            slots += 1;
            sent
        })
    });
    assert_eq!(
        media.stats().packets_sent,
        slots,
        "one packet per 20 ms slot"
    );

    let (mut media, remote) = media_session(t0);
    let mut keys = 0u64;
    let mut header = Header {
        marker: true,
        payload_type: TELEPHONE_EVENT_PAYLOAD_TYPE,
        sequence_number: 1,
        timestamp: 0,
        ssrc: 0xabcd_ef01,
    };
    let mut packet = [0u8; HEADER_LEN + 4];
    // RFC 4733 §2.3: event 5 (key '5'), volume 10, duration 160.
    packet[HEADER_LEN..].copy_from_slice(&[5, 10, 0, 160]);
    c.bench_function("rtp/receive_telephone_event", |b| {
        b.iter(|| {
            // A new event each time, so every packet yields a key as a first press does.
            header.timestamp = header.timestamp.wrapping_add(800);
            header.write(&mut packet);
            media.handle_datagram(t0, remote, black_box(&packet));
            let event = media.poll_event();
            keys += u64::from(event == Some(MediaEvent::Dtmf('5')));
            event
        })
    });
    let stats = media.stats();
    assert_eq!(stats.packets_received, keys, "every packet yields its key");
    assert_eq!(
        stats.dropped(),
        0,
        "every event packet was accepted: {stats:?}"
    );
}

criterion_group!(benches, sip, sdp, rtp);
criterion_main!(benches);
