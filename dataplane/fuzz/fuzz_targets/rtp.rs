//! RTP receive path on arbitrary datagrams: `rtp::packet::Packet::parse`,
//! `rtp::parse_telephone_event`, and `MediaSession::handle_datagram` from the remote that a
//! fixed SDP answer negotiated, both with RFC 4733 events and with in-band DTMF detection.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::rtp::packet::Packet;
use outdial_dataplane::rtp::{
    MAX_PACKET_LEN, MediaConfig, MediaSession, SourcePolicy, parse_telephone_event,
};
use outdial_dataplane::sdp::negotiate;

const ANSWER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 17890 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn session(dtmf_payload_type: Option<u8>, now: Instant) -> (MediaSession, SocketAddr) {
    let negotiated = negotiate(ANSWER).expect("fixed answer negotiates");
    let config = MediaConfig {
        ssrc: 0x1234_5678,
        initial_seq: 1,
        initial_timestamp: 2,
        codec: negotiated.codec,
        remote: negotiated.remote_rtp,
        dtmf_payload_type,
        source: SourcePolicy::Sdp,
    };
    (MediaSession::new(config, now), negotiated.remote_rtp)
}

/// Feeds `data` as a datagram (several times, to reach in-band detection across packets).
fn receive(mut media: MediaSession, from: SocketAddr, data: &[u8], t0: Instant) {
    let mut buf = [0u8; MAX_PACKET_LEN];
    for slot in 0..4u32 {
        let now = t0 + Duration::from_millis(20) * slot;
        media.handle_datagram(now, from, data);
        media.handle_timeout(now);
        while let Some((to, len)) = media.poll_transmit(&mut buf) {
            assert_eq!(to, from);
            assert!(len <= MAX_PACKET_LEN);
        }
        while media.poll_event().is_some() {}
    }
    let stats = media.stats();
    assert!(stats.packets_received + stats.dropped() >= 4, "{stats:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::parse(data) {
        assert!(packet.payload.len() <= data.len().saturating_sub(12));
        let _ = parse_telephone_event(packet.payload);
    }
    if let Some(event) = parse_telephone_event(data) {
        assert!(event.volume < 64);
        let _ = event.key();
    }
    let t0 = Instant::now();
    let (media, remote) = session(Some(101), t0);
    receive(media, remote, data, t0);
    let (media, remote) = session(None, t0);
    receive(media, remote, data, t0);
});
