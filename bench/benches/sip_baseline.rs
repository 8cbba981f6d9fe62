//! SIP messages parsed per second per core, against a baseline: [rsip](https://docs.rs/rsip),
//! the most used SIP parser on crates.io, fed the same bytes in the same run.
//!
//! Both sides do what a transaction layer needs of every message it receives: parse it, then
//! read the top Via's branch, the CSeq number, the Call-ID and the From tag. Ours parses those
//! eagerly into the message; rsip keeps headers as text and types them on request, so its
//! figure includes typing the same four headers. Each side's answers are checked against the
//! other's before anything is timed.
//!
//! ```sh
//! cargo bench -p outdial-bench --bench sip_baseline
//! # instruction counts (10,000 of each message, nothing else):
//! OUTDIAL_BENCH_ONCE=1 valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='sip_baseline::ours' target/release/deps/sip_baseline-*
//! OUTDIAL_BENCH_ONCE=1 valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='sip_baseline::baseline' target/release/deps/sip_baseline-*
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use outdial_dataplane::sip::parse_message;
use rsip::prelude::*;

/// What a transaction layer reads of a message: branch, CSeq number, Call-ID, From tag.
#[derive(Debug, Eq, PartialEq)]
struct Fields {
    branch: String,
    cseq: u32,
    call_id: String,
    from_tag: String,
}

/// A dialog-forming INVITE with an SDP offer, as a carrier's trunk sends one to us.
const INVITE: &[u8] = b"INVITE sip:+15550001@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK3f2a9c1e5d7b8a60;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:+15550002@192.0.2.4>;tag=9b1c4e7f2a3d5c60\r\n\
To: <sip:+15550001@192.0.2.1>\r\n\
Call-ID: 5c0e1f2a3b4c5d6e7f8091a2b3c4d5e6@192.0.2.4\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+15550002@192.0.2.4:5070>\r\n\
User-Agent: carrier-sbc/4.2\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 127\r\n\
\r\n\
v=0\r\n\
o=- 1 1 IN IP4 192.0.2.4\r\n\
s=-\r\n\
c=IN IP4 192.0.2.4\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

/// The 200 OK a callee answers our INVITE with (Record-Route, an Asterisk-style answer).
const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
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
Content-Length: 127\r\n\
\r\n\
v=0\r\n\
o=- 2 2 IN IP4 192.0.2.4\r\n\
s=-\r\n\
c=IN IP4 192.0.2.4\r\n\
t=0 0\r\n\
m=audio 17890 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

/// Ours: `sip::parse_message`, then the four fields (lengths and the number, so nothing is
/// copied inside the timed part).
#[inline(never)]
fn ours(bytes: &[u8]) -> Option<(usize, u32, usize, usize)> {
    let message = parse_message(bytes).ok()?;
    Some((
        message.via()?.branch()?.len(),
        message.cseq()?.number,
        message.call_id()?.len(),
        message.from()?.tag()?.len(),
    ))
}

/// The baseline: `rsip::SipMessage::try_from`, then the same four fields typed.
#[inline(never)]
fn baseline(bytes: &[u8]) -> Option<(usize, u32, usize, usize)> {
    let message = rsip::SipMessage::try_from(bytes).ok()?;
    let via = message.via_header().ok()?.typed().ok()?;
    let cseq = message.cseq_header().ok()?.typed().ok()?;
    let from = message.from_header().ok()?.typed().ok()?;
    Some((
        via.branch()?.value().len(),
        cseq.seq,
        message.call_id_header().ok()?.value().len(),
        from.tag()?.value().len(),
    ))
}

fn fields_ours(bytes: &[u8]) -> Fields {
    let message = parse_message(bytes).expect("invariant: fixed vectors parse");
    Fields {
        branch: message.via().and_then(|v| v.branch()).unwrap_or("").into(),
        cseq: message.cseq().map_or(0, |c| c.number),
        call_id: message.call_id().unwrap_or("").into(),
        from_tag: message.from().and_then(|f| f.tag()).unwrap_or("").into(),
    }
}

fn fields_baseline(bytes: &[u8]) -> Fields {
    let message = rsip::SipMessage::try_from(bytes).expect("invariant: rsip parses the vectors");
    let via = message.via_header().and_then(|h| h.typed()).expect("Via");
    let cseq = message.cseq_header().and_then(|h| h.typed()).expect("CSeq");
    let from = message.from_header().and_then(|h| h.typed()).expect("From");
    Fields {
        branch: via
            .branch()
            .map(|b| b.value().to_owned())
            .unwrap_or_default(),
        cseq: cseq.seq,
        call_id: message
            .call_id_header()
            .expect("Call-ID")
            .value()
            .to_owned(),
        from_tag: from.tag().map(|t| t.value().to_owned()).unwrap_or_default(),
    }
}

/// Both parsers read the same fields from both messages.
fn check() {
    for bytes in [INVITE, OK] {
        let ours_fields = fields_ours(bytes);
        assert_eq!(ours_fields, fields_baseline(bytes));
        assert!(ours_fields.cseq > 0 && !ours_fields.from_tag.is_empty());
        assert!(ours(bytes).is_some() && baseline(bytes).is_some());
    }
}

fn bench(c: &mut Criterion) {
    check();
    for (name, bytes) in [("invite", INVITE), ("200_ok", OK)] {
        c.bench_function(&format!("sip_baseline/{name}/outdial"), |b| {
            b.iter(|| ours(black_box(bytes)))
        });
        c.bench_function(&format!("sip_baseline/{name}/rsip"), |b| {
            b.iter(|| baseline(black_box(bytes)))
        });
    }
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("OUTDIAL_BENCH_ONCE").is_some() {
        check();
        for _ in 0..10_000 {
            black_box(ours(black_box(INVITE)));
            black_box(ours(black_box(OK)));
            black_box(baseline(black_box(INVITE)));
            black_box(baseline(black_box(OK)));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
