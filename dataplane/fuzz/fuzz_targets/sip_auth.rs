//! Digest challenges (`sip::auth`): the input (as given, and with each byte mapped to one of
//! the grammar's tokens) is a challenge header value, put in a 401 or a 407 (by its length's parity) and answered by an
//! `Authenticator` twice. Never a panic; every credentials header it writes is one line; a
//! second answer to the same challenge is given only when it says `stale=true`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::sip::auth::{
    AuthError, Authenticator, Credentials, DigestRequest, parse_challenge,
};
use outdial_dataplane::sip::parse_message;

fn run(value: &[u8]) {
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let _ = parse_challenge(value);
    if value.contains(['\r', '\n']) {
        return;
    }
    let (status, header) = if value.len() % 2 == 0 {
        (401, "WWW-Authenticate")
    } else {
        (407, "Proxy-Authenticate")
    };
    let response = format!(
        "SIP/2.0 {status} Challenge\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\n\
         {header}: {value}\r\nContent-Length: 0\r\n\r\n"
    );
    let Ok(message) = parse_message(response.as_bytes()) else {
        return;
    };
    let request = DigestRequest {
        method: "INVITE",
        uri: "sip:+15550001@192.0.2.4",
        body: b"v=0\r\n",
    };
    let mut auth = Authenticator::new(Some(Credentials {
        username: "user\"name".into(),
        password: "pa\\ss".into(),
        realm: None,
    }));
    let first = auth.respond(&message, &request, "c1");
    if let Ok(headers) = &first {
        assert!(!headers.is_empty());
        for (_, value) in headers {
            assert!(!value.contains(['\r', '\n']), "{value:?}");
            assert!(value.starts_with("Digest username=\"user\\\"name\""), "{value}");
        }
        let second = auth.respond(&message, &request, "c2");
        let stale = parse_challenge(value).is_ok_and(|c| c.stale);
        // One header, so one realm was answered: again only when the nonce went stale.
        if !stale {
            assert!(matches!(second, Err(AuthError::Rejected { .. })), "{second:?}");
        }
    }
}

/// The words challenges are made of: random bytes rarely spell `realm=`.
const TOKENS: [&str; 20] = [
    "Digest ", "realm", "nonce", "opaque", "qop", "algorithm", "stale", "=", "\"", ",", " ",
    "\\", "auth", "auth-int", "MD5", "SHA-256", "SHA-512-256-sess", "true", "x", "\t",
];

fuzz_target!(|data: &[u8]| {
    run(data);
    let mapped: String = data
        .iter()
        .map(|&b| TOKENS[usize::from(b) % TOKENS.len()])
        .collect();
    run(mapped.as_bytes());
});
