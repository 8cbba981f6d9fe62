//! A blind transfer's REFER client (`sip::refer::ReferClient`) fed arbitrary responses,
//! NOTIFYs and timeouts: never a panic, at most one outcome, and a settled transfer stays
//! settled. The input is split on `|`; each piece's first byte picks what it is (a response,
//! a NOTIFY, or a jump in time) and the rest is the message. The sipfrag and header parsers
//! it relies on are exercised on each piece directly too.
#![no_main]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::sip::parse_message;
use outdial_dataplane::sip::refer::{
    ReferClient, ReferParams, ReferState, SubscriptionState, is_refer_event, parse_sipfrag,
};

const REFER: &[u8] = b"REFER sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz\r\n\
From: <sip:outdial@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n\
Call-ID: fuzz@127.0.0.1\r\nCSeq: 2 REFER\r\nRefer-To: <sip:agent@127.0.0.1>\r\n\
Content-Length: 0\r\n\r\n";

fn exercise(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let destination = SocketAddr::from(([127, 0, 0, 1], 5070));
    let mut client = ReferClient::new(
        now,
        Default::default(),
        outdial_dataplane::sip::Transport::Udp,
        destination,
        REFER.to_vec(),
        ReferParams {
            id: 7,
            refer_to: "sip:agent@127.0.0.1".to_owned(),
            branch: "z9hG4bKfuzz".to_owned(),
            connect_timeout: Duration::from_secs(20),
        },
    );
    let mut reports = 0;
    let mut buf = Vec::new();
    for piece in data.split(|&b| b == b'|').take(64) {
        let Some((&kind, body)) = piece.split_first() else {
            continue;
        };
        let _ = parse_sipfrag(body);
        let text = std::str::from_utf8(body).ok();
        let _ = (SubscriptionState::parse(text), is_refer_event(text));
        let before = client.state();
        let report = match kind % 3 {
            0 => parse_message(body)
                .ok()
                .and_then(|message| client.handle_response(now, &message)),
            1 => match parse_message(body) {
                Ok(message) => {
                    let answer = client.handle_notify(now, &message);
                    assert!((200..700).contains(&answer.status), "{answer:?}");
                    answer.report
                }
                Err(_) => None,
            },
            _ => {
                now += Duration::from_millis(u64::from(kind) * 250);
                client.handle_timeout(now)
            }
        };
        if let Some(report) = report {
            reports += 1;
            assert_eq!(report.id, 7);
            assert_ne!(before, ReferState::Done, "a settled transfer reported again");
            if let Ok(outcome) = report.result {
                let _ = outcome;
            }
        }
        if before == ReferState::Done {
            assert_eq!(client.state(), ReferState::Done, "a settled transfer reopened");
        }
        while client.poll_transmit(&mut buf).is_some() {
            buf.clear();
        }
        assert!(client.poll_timeout().is_none_or(|at| at >= start));
    }
    assert!(reports <= 1, "{reports} outcomes for one transfer");
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&common::restrict_to_alphabet(data));
});
