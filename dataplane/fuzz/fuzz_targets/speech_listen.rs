//! Listening for speech (`rtp::listen::Listener`) fed what a hostile caller can send: G.711
//! payloads of any length and content, at any arrival times (late, reordered, with gaps),
//! with `check`s in between. Never a panic; `SpeechStarted` at most once and before the
//! utterance; at most one utterance, never longer than the buffer allocated at the start
//! (pre-roll + `max_speech`); nothing after it; and once speech started, checking at its
//! deadline always ends it.
//!
//! Input: a flags byte (bit 0: A-law; bits 1–3: `max_speech` in 250 ms steps, bits 4–7:
//! `end_silence` in 100 ms steps), then records of `[time step in 5 ms units, length,
//! bytes…]`; a zero length is a `check`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::listen::{Heard, ListenParams, Listener, PRE_ROLL};

/// What the listener reported so far.
#[derive(Default)]
struct Seen {
    started: bool,
    ended: bool,
}

impl Seen {
    fn check(&mut self, heard: Option<Heard>, most: usize) {
        match heard {
            None => {}
            Some(Heard::SpeechStarted) => {
                assert!(!self.started && !self.ended, "speech started twice or after the end");
                self.started = true;
            }
            Some(Heard::Utterance(utterance)) => {
                assert!(self.started && !self.ended, "an utterance without a start, or two");
                assert!(utterance.pcm.len() <= most, "{} > {most}", utterance.pcm.len());
                self.ended = true;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, mut rest)) = data.split_first() else {
        return;
    };
    let codec = if flags & 1 != 0 { Codec::Pcma } else { Codec::Pcmu };
    let params = ListenParams {
        max_speech: Duration::from_millis(250 * u64::from((flags >> 1) & 7)),
        end_silence: Duration::from_millis(100 * u64::from(flags >> 4)),
    };
    let most = usize::try_from((PRE_ROLL + params.max_speech).as_millis() * 8).unwrap_or(0);
    let mut listener = Listener::new(1, params);
    let t0 = Instant::now();
    let mut now = t0;
    let mut seen = Seen::default();
    while let [step, len, tail @ ..] = rest {
        now += Duration::from_millis(5 * u64::from(*step));
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        if payload.is_empty() {
            seen.check(listener.check(now), most);
        } else {
            seen.check(listener.hear(now, codec, payload), most);
        }
    }
    if let Some(deadline) = listener.deadline() {
        assert!(seen.started && !seen.ended, "a deadline only while speaking");
        seen.check(listener.check(deadline), most);
        assert!(seen.ended, "checking at the deadline ends the utterance");
    }
});
