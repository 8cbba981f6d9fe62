//! The per-packet and per-message work beside parsing, measured with criterion: printing the
//! INVITE we send, parsing an RTP packet, G.711 encoding and decoding of one 20 ms frame (both
//! laws), in-band DTMF detection of one frame (the common case, speech without a key, and
//! a key's tones), and answering-machine detection over one second of a callee's speech (while
//! it classifies, and while it waits for a machine's beep).
//!
//! Run: `cargo bench -p outdial-bench --bench media_codec` (figures: `docs/benchmarks.md`).

use std::hint::black_box;

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::amd::{AmdConfig, AmdEvent, AnsweredBy, MachineDetector};
use outdial_dataplane::rtp::g711;
use outdial_dataplane::rtp::inband::InbandDetector;
use outdial_dataplane::rtp::packet::{HEADER_LEN, Header, Packet};
use outdial_dataplane::sip::message::print::Writer;

/// Samples in one 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// One frame of `f1` + `f2` Hz at 8 kHz, starting at sample `offset` (continuous phase).
fn tones(f1: f32, f2: f32, offset: usize) -> [i16; FRAME] {
    std::array::from_fn(|i| {
        let t = (offset + i) as f32 / 8000.0;
        let s = (2.0 * std::f32::consts::PI * f1 * t).sin()
            + (2.0 * std::f32::consts::PI * f2 * t).sin();
        (s * 6000.0) as i16
    })
}

/// Speech-like audio without a key: a few unrelated partials.
fn voice(offset: usize) -> [i16; FRAME] {
    std::array::from_fn(|i| {
        let t = (offset + i) as f32 / 8000.0;
        let s = [180.0f32, 360.0, 540.0, 1250.0, 2300.0]
            .iter()
            .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
            .sum::<f32>();
        (s * 2500.0) as i16
    })
}

fn sip_print(c: &mut Criterion) {
    let mut buf = Vec::with_capacity(1500);
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";
    let print = |buf: &mut Vec<u8>| {
        buf.clear();
        let mut w = Writer::request(buf, "INVITE", "sip:+15550001@192.0.2.4:5070");
        w.header_fmt(
            "Via",
            format_args!(
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{:016x};rport",
                0x3f2a_9c1e_u64
            ),
        )
        .header("Max-Forwards", "70")
        .header_fmt(
            "From",
            format_args!("<sip:outdial@192.0.2.1>;tag={:016x}", 0x9b1c_4e7f_u64),
        )
        .header("To", "<sip:+15550001@192.0.2.4:5070>")
        .header_fmt(
            "Call-ID",
            format_args!("{:032x}@192.0.2.1", 0x5c0e_1f2a_u128),
        )
        .header("CSeq", "1 INVITE")
        .header("Contact", "<sip:outdial@192.0.2.1:5060>")
        .header("User-Agent", "outdial/0.1.0")
        .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
        w.finish(Some("application/sdp"), sdp);
        buf.len()
    };
    let len = print(&mut buf);
    let parsed = outdial_dataplane::sip::parse_message(&buf);
    assert!(
        parsed.is_ok_and(|m| m.body() == sdp),
        "the printed INVITE parses"
    );
    assert!(len > sdp.len());
    c.bench_function("sip/print_invite", |b| {
        b.iter(|| print(black_box(&mut buf)))
    });
}

fn rtp_parse(c: &mut Criterion) {
    let mut packet = [0xffu8; HEADER_LEN + FRAME];
    let header = Header {
        marker: false,
        payload_type: 0,
        sequence_number: 4711,
        timestamp: 160 * 4711,
        ssrc: 0x1234_5678,
    };
    header.write(&mut packet);
    assert!(Packet::parse(&packet).is_ok_and(|p| p.header == header && p.payload.len() == FRAME));
    c.bench_function("rtp/parse_packet", |b| {
        b.iter(|| Packet::parse(black_box(&packet)).map(|p| p.payload.len()))
    });
}

fn g711_frames(c: &mut Criterion) {
    let pcm = voice(0);
    for (codec, name) in [(Codec::Pcmu, "pcmu"), (Codec::Pcma, "pcma")] {
        let mut encoded = [0u8; FRAME];
        let mut decoded = [0i16; FRAME];
        assert_eq!(g711::encode(codec, &pcm, &mut encoded), FRAME);
        assert_eq!(g711::decode(codec, &encoded, &mut decoded), FRAME);
        // G.711 keeps a sample within its segment's step (at most 1/16 of the magnitude, +1
        // for the smallest values): the round trip is faithful.
        for (a, b) in pcm.iter().zip(&decoded) {
            let error = (i32::from(*a) - i32::from(*b)).abs();
            assert!(error <= i32::from(a.unsigned_abs() / 16) + 16, "{a} -> {b}");
        }
        c.bench_function(&format!("g711/encode_20ms_{name}"), |b| {
            b.iter(|| g711::encode(codec, black_box(&pcm), &mut encoded))
        });
        c.bench_function(&format!("g711/decode_20ms_{name}"), |b| {
            b.iter(|| g711::decode(codec, black_box(&encoded), &mut decoded))
        });
    }
}

fn inband_dtmf(c: &mut Criterion) {
    let codec = Codec::Pcmu;
    let encode = |pcm: [i16; FRAME]| {
        let mut out = [0u8; FRAME];
        g711::encode(codec, &pcm, &mut out);
        out
    };
    // Key 5: 770 Hz + 1336 Hz (ITU-T Q.23). Eight frames in a row give the detector its
    // blocks; it must report the key once.
    let key: Vec<[u8; FRAME]> = (0..8)
        .map(|n| encode(tones(770.0, 1336.0, n * FRAME)))
        .collect();
    let mut detector = InbandDetector::new();
    let found: Vec<char> = key.iter().filter_map(|f| detector.feed(codec, f)).collect();
    assert_eq!(found, ['5'], "the tones are key 5");
    let speech: Vec<[u8; FRAME]> = (0..8).map(|n| encode(voice(n * FRAME))).collect();
    let mut detector = InbandDetector::new();
    assert!(
        speech.iter().all(|f| detector.feed(codec, f).is_none()),
        "speech is no key"
    );

    let mut detector = InbandDetector::new();
    let mut n = 0usize;
    c.bench_function("dtmf/inband_20ms_speech", |b| {
        b.iter(|| {
            n = (n + 1) % speech.len();
            detector.feed(codec, black_box(&speech[n]))
        })
    });
    let mut detector = InbandDetector::new();
    c.bench_function("dtmf/inband_20ms_key", |b| {
        b.iter(|| {
            n = (n + 1) % key.len();
            detector.feed(codec, black_box(&key[n]))
        })
    });
}

/// Answering-machine detection costs only while it runs (the first seconds of an answered call
/// that asked for it). Each iteration feeds one second of speech, 50 frames at their 20 ms
/// arrival times: to a fresh detector (the classifying phase, before any verdict), and to one
/// that already called the callee a machine and now runs its tone test on every frame while
/// it waits for the beep.
fn machine_detection(c: &mut Criterion) {
    let codec = Codec::Pcmu;
    let speech: Vec<[u8; FRAME]> = (0..50)
        .map(|n| {
            let mut out = [0u8; FRAME];
            g711::encode(codec, &voice(n * FRAME), &mut out);
            out
        })
        .collect();
    let at = |n: usize| Duration::from_millis(20 * (n as u64 + 1));
    let feed_second = |detector: &mut MachineDetector, from: usize| {
        let mut last = None;
        for (n, frame) in speech.iter().enumerate() {
            last = detector
                .feed(at(from + n), codec, black_box(frame))
                .or(last);
        }
        last
    };
    // What is measured: a second of speech decides nothing yet, and two seconds say machine.
    let mut fresh = MachineDetector::new(AmdConfig::default());
    assert_eq!(feed_second(&mut fresh, 0), None, "one second is no verdict");
    let waiting = || {
        let mut detector = MachineDetector::new(AmdConfig {
            wait_for_beep: true,
            ..AmdConfig::default()
        });
        assert_eq!(feed_second(&mut detector, 0), None);
        let verdict = feed_second(&mut detector, 50);
        assert!(
            matches!(
                verdict,
                Some(AmdEvent::Classified {
                    answered_by: AnsweredBy::Machine,
                    ..
                })
            ),
            "two seconds of speech is a machine: {verdict:?}"
        );
        detector
    };
    assert!(!waiting().is_finished(), "it waits for the beep");

    c.bench_function("amd/classify_1s_speech", |b| {
        b.iter_batched(
            || MachineDetector::new(AmdConfig::default()),
            |mut detector| feed_second(&mut detector, 0),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("amd/await_beep_1s_speech", |b| {
        b.iter_batched(
            waiting,
            |mut detector| feed_second(&mut detector, 100),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    sip_print,
    rtp_parse,
    g711_frames,
    inband_dtmf,
    machine_detection
);
criterion_main!(benches);
