//! `api::parse_call_request` (the body of `POST /v1/calls`) on arbitrary bytes: `Ok` or a
//! `RequestError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_control::api::parse_call_request;
use outdial_control::intake::MAX_RING_TIMEOUT_SECS;
use outdial_control::config::Config;

/// Bytes a call request is made of. Mapping random input onto this set reaches deeper
/// validation than raw bytes, as mail-parser's fuzzers do.
const ALPHABET: &[u8] = b"{}[]:,\" .-+/@0123456789eE\\aceflnorstuvhpimdgx";

fn exercise(config: &Config, body: &[u8]) {
    if let Ok(call) = parse_call_request(body, "dev", config) {
        assert_eq!(call.tenant, "dev");
        assert!(
            call.ring_timeout_secs
                .is_none_or(|secs| secs <= MAX_RING_TIMEOUT_SECS),
            "{call:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    exercise(&config, data);
    let restricted: Vec<u8> = data
        .iter()
        .map(|&byte| ALPHABET[usize::from(byte) % ALPHABET.len()])
        .collect();
    exercise(&config, &restricted);
});
