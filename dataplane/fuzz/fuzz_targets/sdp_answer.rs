//! `sdp::negotiate` on arbitrary bytes: `Ok` or `Err`, never a panic, and an `Ok` holds
//! only what an answer may settle.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::sdp::negotiate;

fn exercise(data: &[u8]) {
    let Ok(negotiated) = negotiate(data) else {
        return;
    };
    assert!((1..=1000).contains(&negotiated.ptime_ms), "{negotiated:?}");
    assert!(
        negotiated.dtmf_payload_type.is_none_or(|pt| pt < 128),
        "{negotiated:?}"
    );
    assert_ne!(
        negotiated.remote_rtp.port(),
        0,
        "a rejected stream was accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&common::restrict_to_alphabet(data));
});
