//! Answering-machine detection fed what a hostile callee can send: G.711 payloads of any
//! length and content, at any arrival times (out of order, late, with gaps), with `poll`s in
//! between. Never a panic; at most one verdict; `Beep`/`NoBeep` only after a Machine verdict
//! and only when waiting for the beep; nothing after `is_finished`; and once analysing has
//! passed `total_analysis` (plus the beep timeout when waiting for it), polling at its
//! deadline finishes it.
//!
//! Input: a flags byte (bit 0: wait for the beep, bit 1: A-law), then records of
//! `[time step in 5 ms units, length, bytes…]`; a zero length is a `poll`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::amd::{AmdConfig, AmdEvent, AnsweredBy, MachineDetector};

fuzz_target!(|data: &[u8]| {
    let Some((flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = AmdConfig {
        wait_for_beep: flags & 1 != 0,
        ..AmdConfig::default()
    };
    let codec = if flags & 2 != 0 { Codec::Pcma } else { Codec::Pcmu };
    let mut amd = MachineDetector::new(config);
    let mut verdict: Option<AnsweredBy> = None;
    let mut beep_reported = false;
    let mut check = |event: Option<AmdEvent>, finished_before: bool| {
        let Some(event) = event else { return };
        assert!(!finished_before, "{event:?} after is_finished");
        match event {
            AmdEvent::Classified { answered_by, .. } => {
                assert!(verdict.is_none(), "a second verdict {event:?}");
                verdict = Some(answered_by);
            }
            AmdEvent::Beep { .. } | AmdEvent::NoBeep { .. } => {
                assert!(config.wait_for_beep, "{event:?} without wait_for_beep");
                assert_eq!(verdict, Some(AnsweredBy::Machine), "{event:?}");
                assert!(!beep_reported, "a second beep report {event:?}");
                beep_reported = true;
            }
        }
    };
    let mut now = Duration::ZERO;
    while let [step, len, tail @ ..] = rest {
        // Steps may go backwards (a reordered packet) when the high bit is set.
        let delta = Duration::from_millis(5 * u64::from(step & 0x7f));
        now = if step & 0x80 != 0 {
            now.saturating_sub(delta)
        } else {
            now + delta
        };
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let finished = amd.is_finished();
        let event = if payload.is_empty() {
            amd.poll(now)
        } else {
            amd.feed(now, codec, payload)
        };
        check(event, finished);
    }
    // Silence from here on: the deadlines finish it.
    let limit = now + config.total_analysis + config.beep_timeout + Duration::from_secs(1);
    let mut polls = 0;
    while let Some(at) = amd.next_deadline() {
        let finished = amd.is_finished();
        let event = amd.poll(at.max(now));
        check(event, finished);
        now = at.max(now);
        polls += 1;
        if now > limit || polls > 10_000 {
            break;
        }
        now += Duration::from_millis(1);
    }
    assert!(amd.is_finished(), "still running at {now:?} after {polls} polls");
    assert!(verdict.is_some(), "finished without a verdict");
});
