//! A call's media with symmetric latching (`rtp::SourcePolicy::Latch`) fed datagrams from
//! four sources: the SDP's address, two ports on the signalling peer's IP, and a stranger.
//! Never a panic; once latched the source never changes, and it is the SDP's address or on
//! the signalling IP; our RTP goes to the latched source (else the SDP's address); every
//! datagram is counted as received or dropped.
//!
//! Input: records of `[source selector, length, bytes…]`; the selector's low two bits pick
//! the source.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::{MAX_PACKET_LEN, MediaConfig, MediaSession, SourcePolicy};

const SDP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 4000);
const SIGNALLING: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const SOURCES: [SocketAddr; 4] = [
    SDP,
    SocketAddr::new(SIGNALLING, 30_000),
    SocketAddr::new(SIGNALLING, 30_002),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 30_000),
];

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = MediaConfig {
        ssrc: 1,
        initial_seq: 2,
        initial_timestamp: 3,
        codec: Codec::Pcmu,
        remote: SDP,
        dtmf_payload_type: Some(101),
        source: SourcePolicy::Latch {
            signalling_ip: SIGNALLING,
        },
    };
    let mut media = MediaSession::new(config, t0);
    let mut buf = [0u8; MAX_PACKET_LEN];
    let mut latched = None;
    let mut fed = 0u64;
    let mut rest = data;
    let mut now = t0;
    while let [selector, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let from = SOURCES[usize::from(selector & 3)];
        let counted = |m: &MediaSession| {
            let s = m.stats();
            s.packets_received + s.dropped_foreign + s.dropped_malformed
        };
        let before = counted(&media);
        media.handle_datagram(now, from, datagram);
        // Once, or twice for RTP accepted whose event payload is then unusable.
        assert!((1..=2).contains(&(counted(&media) - before)));
        fed += 1;
        while media.poll_event().is_some() {}
        match (latched, media.latched()) {
            (Some(before), now_latched) => {
                assert_eq!(now_latched, Some(before), "re-latched mid-call")
            }
            (None, Some(to)) => {
                assert!(
                    to == SDP || to.ip() == SIGNALLING,
                    "latched to a stranger {to}"
                );
                latched = Some(to);
            }
            (None, None) => {}
        }
        now += Duration::from_millis(7);
        media.handle_timeout(now);
        while let Some((to, _)) = media.poll_transmit(&mut buf) {
            assert_eq!(to, latched.unwrap_or(SDP));
        }
    }
    assert!(media.stats().dropped_foreign <= fed);
});
