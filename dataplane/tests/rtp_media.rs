//! `MediaSession` through its public API, in virtual time: SIPp's RFC 2833 DTMF captures
//! replayed (whole and with loss), a speech-band G.711 capture as talk-off input, pacing
//! and barge-in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::{
    MAX_PACKET_LEN, MediaConfig, MediaEvent, MediaSession, RecordParams, SourcePolicy,
};

const PCAPS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/rtp-dtmf-sipp-pcaps"
);

/// The twelve captures in key order, with the key each holds.
const DTMF_CAPTURES: [(&str, char); 12] = [
    ("dtmf_2833_0.pcap", '0'),
    ("dtmf_2833_1.pcap", '1'),
    ("dtmf_2833_2.pcap", '2'),
    ("dtmf_2833_3.pcap", '3'),
    ("dtmf_2833_4.pcap", '4'),
    ("dtmf_2833_5.pcap", '5'),
    ("dtmf_2833_6.pcap", '6'),
    ("dtmf_2833_7.pcap", '7'),
    ("dtmf_2833_8.pcap", '8'),
    ("dtmf_2833_9.pcap", '9'),
    ("dtmf_2833_star.pcap", '*'),
    ("dtmf_2833_pound.pcap", '#'),
];

/// One captured UDP datagram.
#[derive(Clone, Debug)]
struct Captured {
    /// Capture time relative to the first record.
    at: Duration,
    from: SocketAddr,
    payload: Vec<u8>,
}

fn u32_le(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Reads a little-endian microsecond libpcap file of Ethernet/IPv4/UDP frames by hand:
/// 24-octet global header, then 16-octet record headers.
fn read_pcap(path: &Path) -> Vec<Captured> {
    let file = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "corpus file {} is missing ({e}): run bench/corpora/fetch.sh",
            path.display()
        )
    });
    assert_eq!(
        u32_le(&file, 0),
        0xa1b2_c3d4,
        "{}: not a LE µs pcap",
        path.display()
    );
    assert_eq!(
        u32_le(&file, 20),
        1,
        "{}: link type is not Ethernet",
        path.display()
    );
    let mut records = Vec::new();
    let mut offset = 24;
    let mut first = None;
    while offset < file.len() {
        let seconds = u64::from(u32_le(&file, offset));
        let micros = u64::from(u32_le(&file, offset + 4));
        let length = u32_le(&file, offset + 8) as usize;
        let frame = &file[offset + 16..offset + 16 + length];
        offset += 16 + length;
        let time = Duration::from_secs(seconds) + Duration::from_micros(micros);
        let at = time - *first.get_or_insert(time);

        assert_eq!(&frame[12..14], [0x08, 0x00], "EtherType IPv4");
        let ip = &frame[14..];
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        assert_eq!((ip[0] >> 4, ip[9]), (4, 17), "IPv4 carrying UDP");
        let source = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let udp = &ip[header_len..];
        let source_port = u16::from_be_bytes([udp[0], udp[1]]);
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        records.push(Captured {
            at,
            from: SocketAddr::new(IpAddr::V4(source), source_port),
            payload: udp[8..udp_len].to_vec(),
        });
    }
    records
}

fn capture(name: &str) -> Vec<Captured> {
    read_pcap(&PathBuf::from(PCAPS).join(name))
}

fn config(remote: SocketAddr, codec: Codec, dtmf_payload_type: Option<u8>) -> MediaConfig {
    MediaConfig {
        ssrc: 0x0bad_cafe,
        initial_seq: 1000,
        initial_timestamp: 160_000,
        codec,
        remote,
        dtmf_payload_type,
        source: SourcePolicy::Sdp,
    }
}

/// Feeds `packets` in capture time from `t0`, returning every event in order.
fn replay(session: &mut MediaSession, t0: Instant, packets: &[Captured]) -> Vec<MediaEvent> {
    let mut buf = [0u8; MAX_PACKET_LEN];
    let mut events = Vec::new();
    for packet in packets {
        let now = t0 + packet.at;
        session.handle_timeout(now);
        while session.poll_transmit(&mut buf).is_some() {}
        session.handle_datagram(now, packet.from, &packet.payload);
        events.extend(std::iter::from_fn(|| session.poll_event()));
    }
    events
}

fn keys(events: &[MediaEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(key) => Some(*key),
            MediaEvent::PlaybackDone { .. }
            | MediaEvent::Recorded(_)
            | MediaEvent::SpeechStarted { .. }
            | MediaEvent::Utterance { .. }
            | MediaEvent::SourceRefused(_)
            | MediaEvent::Machine(_) => None,
        })
        .collect()
}

fn keys_of(packets: &[Captured]) -> String {
    let t0 = Instant::now();
    let first = packets.first().expect("capture has packets");
    let mut session = MediaSession::new(config(first.from, Codec::Pcmu, Some(101)), t0);
    keys(&replay(&mut session, t0, packets))
}

#[test]
fn the_twelve_sipp_captures_give_each_key_once() {
    let t0 = Instant::now();
    let remote = capture(DTMF_CAPTURES[0].0)[0].from;
    let mut session = MediaSession::new(config(remote, Codec::Pcmu, Some(101)), t0);
    let mut all = String::new();
    let mut start = Duration::ZERO;
    for (name, key) in DTMF_CAPTURES {
        let mut packets = capture(name);
        assert_eq!(packets.len(), 10, "{name}: 7 updates + 3 end packets");
        for p in &mut packets {
            p.at += start;
        }
        start = packets[packets.len() - 1].at + Duration::from_millis(500);
        let got = keys(&replay(&mut session, t0, &packets));
        assert_eq!(got, key.to_string(), "{name}");
        all.push_str(&got);
    }
    assert_eq!(all, "0123456789*#");
    let stats = session.stats();
    assert_eq!(stats.packets_received, 12 * 10);
    assert_eq!(stats.dropped(), 0);
    assert!(stats.packets_sent > 0, "the send stream ran alongside");
}

#[test]
fn dropping_any_one_or_two_packets_still_gives_the_key_exactly_once() {
    for (name, key) in DTMF_CAPTURES {
        let packets = capture(name);
        let n = packets.len();
        for i in 0..n {
            for j in i..n {
                let survivors: Vec<Captured> = packets
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i && k != j)
                    .map(|(_, p)| p.clone())
                    .collect();
                assert_eq!(
                    keys_of(&survivors),
                    key.to_string(),
                    "{name} without {i} and {j}"
                );
            }
        }
    }
}

#[test]
fn only_the_three_end_packets_surviving_give_the_key_once() {
    for (name, key) in DTMF_CAPTURES {
        let packets = capture(name);
        assert_eq!(keys_of(&packets[7..]), key.to_string(), "{name}");
    }
}

#[test]
fn a_foreign_source_replaying_a_capture_gets_nothing() {
    let packets = capture("dtmf_2833_5.pcap");
    let t0 = Instant::now();
    let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 40_000);
    let mut session = MediaSession::new(config(elsewhere, Codec::Pcmu, Some(101)), t0);
    assert_eq!(keys(&replay(&mut session, t0, &packets)), "");
    assert_eq!(session.stats().dropped_foreign, 10);
}

#[test]
fn speech_band_pcma_capture_raises_no_in_band_key() {
    let packets = capture("g711a.pcap");
    assert_eq!(packets.len(), 236);
    let t0 = Instant::now();
    let mut session = MediaSession::new(config(packets[0].from, Codec::Pcma, None), t0);
    let events = replay(&mut session, t0, &packets);
    assert_eq!(events, []);
    assert_eq!(session.stats().packets_received, 236);
    assert_eq!(session.stats().bytes_received, 236 * (12 + 240));
}

#[test]
fn one_second_of_audio_is_fifty_packets_twenty_ms_apart() {
    let t0 = Instant::now();
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000);
    let mut session = MediaSession::new(config(remote, Codec::Pcma, Some(101)), t0);
    let mut buf = [0u8; MAX_PACKET_LEN];
    session.handle_timeout(t0);
    assert!(
        session.poll_transmit(&mut buf).is_some(),
        "silence from the start"
    );
    let t1 = t0 + Duration::from_millis(5);
    let audio: Arc<[i16]> = (0..8000).map(|i| ((i % 40) * 600 - 12000) as i16).collect();
    session.play(t1, 42, audio, false);

    let mut now = t1;
    let mut audio_packets = Vec::new();
    let mut done_after = None;
    while now < t0 + Duration::from_secs(2) {
        session.handle_timeout(now);
        while let Some((to, len)) = session.poll_transmit(&mut buf) {
            assert_eq!((to, len), (remote, MAX_PACKET_LEN));
            let is_silence = buf[12..len].iter().all(|&b| b == 0xd5);
            if !is_silence && done_after.is_none() {
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                audio_packets.push((now, buf[1] & 0x80 != 0, seq, ts));
            }
        }
        while let Some(event) = session.poll_event() {
            assert_eq!(
                event,
                MediaEvent::PlaybackDone {
                    id: 42,
                    interrupted: false,
                    played: 50 * 160,
                }
            );
            assert!(done_after.is_none(), "PlaybackDone once");
            done_after = Some(audio_packets.len());
        }
        now = session.poll_timeout().unwrap();
    }
    assert_eq!(audio_packets.len(), 50);
    assert_eq!(
        done_after,
        Some(50),
        "PlaybackDone right after the 50th packet"
    );
    assert_eq!(
        audio_packets[0].0,
        t0 + Duration::from_millis(20),
        "next slot after play"
    );
    assert!(audio_packets[0].1, "M bit opens the talkspurt");
    for pair in audio_packets.windows(2) {
        let ((t_a, _, seq_a, ts_a), (t_b, marker, seq_b, ts_b)) = (pair[0], pair[1]);
        assert_eq!(t_b - t_a, Duration::from_millis(20));
        assert!(!marker);
        assert_eq!(seq_b, seq_a.wrapping_add(1));
        assert_eq!(ts_b, ts_a.wrapping_add(160));
    }
}

#[test]
fn a_captured_key_barges_in_on_a_bargein_prompt() {
    let packets = capture("dtmf_2833_pound.pcap");
    let t0 = Instant::now();
    let mut session = MediaSession::new(config(packets[0].from, Codec::Pcmu, Some(101)), t0);
    let prompt: Arc<[i16]> = vec![1000i16; 80_000].into();
    session.play(t0, 1, prompt.clone(), true);
    session.play(t0, 2, prompt, false);
    let events = replay(&mut session, t0, &packets);
    // The key arrives at its captured time: the first prompt played until then, in whole
    // 20 ms frames; the second never started.
    let key_at = packets[0].at;
    let frames_due = key_at.as_millis() / 20 + 1;
    let played = usize::try_from(frames_due).unwrap() * 160;
    assert_eq!(
        events,
        [
            MediaEvent::PlaybackDone {
                id: 1,
                interrupted: true,
                played,
            },
            MediaEvent::PlaybackDone {
                id: 2,
                interrupted: true,
                played: 0,
            },
            MediaEvent::Dtmf('#'),
        ]
    );
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let t0 = Instant::now();
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000);
    let mut session = MediaSession::new(config(remote, Codec::Pcmu, Some(101)), t0);
    let mut garbage: Vec<Vec<u8>> = (0..12).map(|n| vec![0x80; n]).collect();
    garbage.push([vec![0x40], vec![0; 171]].concat()); // RTP version 1
    garbage.push([vec![0x8f], vec![0; 40]].concat()); // 15 CSRCs promised, 40 octets given
    garbage.push([vec![0x90], vec![0; 13], vec![0xff, 0xff]].concat()); // extension past the end
    for g in &garbage {
        session.handle_datagram(t0, remote, g);
    }
    assert_eq!(session.poll_event(), None);
    assert_eq!(session.stats().dropped_malformed, garbage.len() as u64);
    assert_eq!(session.stats().packets_received, 0);
}

/// SIPp's speech capture recorded on a PCMU call (the callee sends the other law, PCMA):
/// 236 packets of 30 ms are captured whole, the recording is not silent, and it ends by
/// final silence once the capture stops arriving.
#[test]
fn the_speech_capture_is_recorded_in_full_and_ends_on_final_silence() {
    let packets = capture("g711a.pcap");
    let t0 = Instant::now();
    let first = packets.first().expect("capture has packets");
    let mut session = MediaSession::new(config(first.from, Codec::Pcmu, None), t0);
    let params = RecordParams {
        max_time: Duration::from_secs(30),
        final_silence: Duration::from_secs(1),
        no_input: Duration::from_secs(5),
        dtmfterm: true,
    };
    session.record(t0, 1, params, false);
    let mut events = replay(&mut session, t0, &packets);
    assert!(events.is_empty(), "{events:?}");
    let last = t0 + packets.last().expect("packets").at;
    let mut now = last;
    let mut buf = [0u8; MAX_PACKET_LEN];
    while now < last + Duration::from_secs(2) && events.is_empty() {
        now = session.poll_timeout().expect("timer").max(now);
        session.handle_timeout(now);
        while session.poll_transmit(&mut buf).is_some() {}
        events.extend(std::iter::from_fn(|| session.poll_event()));
    }
    let [MediaEvent::Recorded(recorded)] = events.as_slice() else {
        panic!("one recording: {events:?}");
    };
    assert_eq!(
        recorded.pcm.len(),
        236 * 240,
        "every sample, decoded as A-law"
    );
    assert!(!recorded.silent && !recorded.maxtime && recorded.termchar.is_none());
    assert!(
        now < last + Duration::from_secs(1) + Duration::from_millis(40),
        "ended on final silence"
    );
    let loud = recorded
        .pcm
        .iter()
        .filter(|s| s.unsigned_abs() > 1000)
        .count();
    assert!(loud > 10_000, "the speech is there: {loud} loud samples");
    assert!(!session.is_recording());
}
