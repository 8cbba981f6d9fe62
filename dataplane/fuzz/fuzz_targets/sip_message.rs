//! `sip::parse_message` on arbitrary bytes: it must return `Ok` or `Err`, never panic, and a
//! parsed message's accessors and printer must not panic either.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::sip::message::HeaderName;
use outdial_dataplane::sip::parse_message;

fn exercise(data: &[u8]) {
    let Ok(message) = parse_message(data) else {
        return;
    };
    let _ = message.check_request();
    let _ = (message.method(), message.request_uri(), message.status());
    let _ = (
        message.via(),
        message.from(),
        message.to(),
        message.call_id(),
    );
    let _ = (message.cseq(), message.contact(), message.max_forwards());
    let _ = (message.content_length(), message.content_type());
    let _ = message.record_route();
    let _ = message.header(HeaderName::Require);
    let mut printed = Vec::new();
    message.write(&mut printed);
    // What we print must parse again.
    assert!(
        parse_message(&printed).is_ok(),
        "printed message does not re-parse: {:?}",
        String::from_utf8_lossy(&printed)
    );
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&common::restrict_to_alphabet(data));
});
