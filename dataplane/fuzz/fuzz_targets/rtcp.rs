//! RTCP from a hostile remote. The input is parsed as one compound (`rtp::rtcp::Compound`):
//! no panic, and what parses starts with an SR or RR and walks to its end. Then a call's
//! media session with RTCP on is fed the input as records `[selector, milliseconds, length,
//! bytes…]`: selector 0–1 an RTCP datagram from the remote's RTCP address, 2 from a
//! stranger, 3 an RTP datagram from the remote's RTP address (so reports carry a block).
//! Every RTCP datagram is counted exactly once (received, foreign or malformed); what the
//! session sends is a valid compound to the remote's RTP port + 1; the round-trip time fits
//! RTCP's 32-bit clock, the fraction lost is under 256; the BYE at the end is sent once and
//! nothing follows it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::rtcp::{Compound, Packet};
use outdial_dataplane::rtp::{MediaConfig, MediaSession, RtcpConfig, SourcePolicy};

const REMOTE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 4000);
const REMOTE_RTCP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 4001);
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 4001);

fn check_compound(data: &[u8]) -> usize {
    let Ok(compound) = Compound::parse(data) else {
        return 0;
    };
    let mut packets = compound.packets();
    assert!(matches!(
        packets.next(),
        Some(Packet::SenderReport { .. } | Packet::ReceiverReport { .. })
    ));
    let mut n = 1;
    for packet in packets {
        if let Packet::SenderReport { blocks, .. } | Packet::ReceiverReport { blocks, .. } = packet
        {
            assert!(blocks.count() <= 31);
        }
        n += 1;
    }
    n
}

fn drain(media: &mut MediaSession, buf: &mut [u8; 1500]) -> Option<bool> {
    while media.poll_transmit(buf).is_some() {}
    while media.poll_event().is_some() {}
    let mut bye = None;
    while let Some((to, len)) = media.poll_rtcp_transmit(buf) {
        assert_eq!(to, REMOTE_RTCP);
        let compound = Compound::parse(&buf[..len]).expect("we send valid RTCP");
        let last = compound.packets().last();
        bye = Some(matches!(last, Some(Packet::Goodbye { ssrc: Some(1), .. })));
    }
    bye
}

fuzz_target!(|data: &[u8]| {
    check_compound(data);

    let t0 = Instant::now();
    let mut media = MediaSession::new(
        MediaConfig {
            ssrc: 1,
            initial_seq: 2,
            initial_timestamp: 3,
            codec: Codec::Pcmu,
            remote: REMOTE,
            dtmf_payload_type: Some(101),
            source: SourcePolicy::Sdp,
        },
        t0,
    );
    media.enable_rtcp(RtcpConfig {
        wall_clock_at_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        cname: [b'c'; 16],
        seed: 7,
        remote_rtcp: None,
    });
    let mut buf = [0u8; 1500];
    let mut now = t0;
    let mut rest = data;
    let counted = |m: &MediaSession| {
        let s = m.stats();
        s.rtcp_received + s.dropped_foreign + s.dropped_malformed
    };
    while let [selector, ms, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*ms) * 20);
        media.handle_timeout(now);
        assert_ne!(
            drain(&mut media, &mut buf),
            Some(true),
            "no BYE before the end"
        );
        let before = counted(&media);
        match selector & 3 {
            3 => media.handle_datagram(now, REMOTE, datagram),
            2 => {
                media.handle_rtcp_datagram(now, STRANGER, datagram);
                assert_eq!(counted(&media), before + 1);
            }
            _ => {
                let received = media.stats().rtcp_received;
                media.handle_rtcp_datagram(now, REMOTE_RTCP, datagram);
                assert_eq!(counted(&media), before + 1);
                let valid = check_compound(datagram) > 0;
                assert_eq!(media.stats().rtcp_received, received + u64::from(valid));
            }
        }
        let stats = media.stats();
        assert!(stats.remote_fraction_lost < 256);
        assert!(stats.round_trip_us <= (1u64 << 31) * 1_000_000 / 65_536);
        assert_ne!(
            drain(&mut media, &mut buf),
            Some(true),
            "no BYE before the end"
        );
    }
    let sent = media.stats().rtcp_sent;
    media.end_rtcp();
    assert_eq!(
        drain(&mut media, &mut buf),
        Some(true),
        "one BYE at the end"
    );
    assert_eq!(media.stats().rtcp_sent, sent + 1);
    media.handle_timeout(now + Duration::from_secs(60));
    media.end_rtcp();
    assert_eq!(drain(&mut media, &mut buf), None, "nothing after the BYE");
});
