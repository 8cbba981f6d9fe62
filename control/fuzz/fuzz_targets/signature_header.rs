//! `signing::parse_header` on arbitrary text (raw, and with each byte mapped to a token of the
//! grammar: `t=`, `n=`, `v1=`, `,`, digits, hex, nonce characters) and `signing::check` on
//! it with a fixed secret and clock: never a panic; a parsed header has a nonce of 16 to 64
//! allowed characters and 1 to 4 signatures; a header that only the input made up never
//! passes the check (the HMAC is not known to the input), and the nonce cache stays empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_control::signing::{self, NonceCache, SignedRequest};

const TOKENS: [&str; 16] = [
    "t=", "n=", "v1=", ",", " ", "1764892800", "0123456789abcdef", "ab", "-", "_", "=", "x=",
    "00000000000000000000000000000000", "ffffffffffffffffffffffffffffffff", "t=1", "é",
];

fn exercise(text: &str) {
    if let Ok(parsed) = signing::parse_header(text) {
        assert!((16..=64).contains(&parsed.nonce.len()));
        assert!(
            parsed
                .nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert!((1..=4).contains(&parsed.signatures.len()));
    }
    let body = b"{}";
    let digest = signing::body_sha256(body);
    let mut cache = NonceCache::new(8);
    let request = SignedRequest {
        tenant: "dev",
        method: "POST",
        target: "/v1/calls",
        signature: Some(text),
        content_sha256: Some(&digest),
        body,
    };
    let outcome = signing::check(&mut cache, "odsig_fuzz-secret", &request, 1_764_892_800);
    assert!(outcome.is_err(), "a made-up signature passed: {text:?}");
    assert!(cache.is_empty());
}

fuzz_target!(|data: &[u8]| {
    exercise(&String::from_utf8_lossy(data));
    let mapped: String = data.iter().map(|b| TOKENS[usize::from(b % 16)]).collect();
    exercise(&mapped);
});
