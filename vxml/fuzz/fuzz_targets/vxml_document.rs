//! `document::Document::parse` and the shared `DocumentCache` (which also reports what the
//! lenient decoder repaired) on arbitrary bytes under each kind of Content-Type: `Ok` or
//! `Err`, never a panic, and both agree on which.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_vxml::document::Document;
use outdial_vxml::document::cache::DocumentCache;
use url::Url;

/// Content-Types a fetch may report; the first input byte picks one.
const CONTENT_TYPES: [Option<&str>; 5] = [
    None,
    Some("application/voicexml+xml"),
    Some("application/voicexml+xml; charset=utf-8"),
    Some("text/xml; charset=iso-8859-1"),
    Some("application/xml; charset=utf-16"),
];

/// Bytes VoiceXML is made of. Mapping random input onto this set reaches deeper parser states
/// than raw bytes, as mail-parser's fuzzers do.
const ALPHABET: &[u8] = b"<>/=\"' \n?!-#.:;&abcdefgilmnoprstuvxy0123456789";

/// Largest document the fuzzer lets through (the session default is 1 MiB).
const MAX_BYTES: usize = 64 * 1024;

fn exercise(content_type: Option<&str>, body: &[u8]) {
    let url = Url::parse("https://fuzz.invalid/app/start.vxml").expect("fixed URL");
    let cached = DocumentCache::default().get_or_parse(&url, content_type, body, MAX_BYTES);
    let direct = Document::parse(url, content_type, body, MAX_BYTES);
    assert_eq!(direct.is_ok(), cached.is_ok(), "{direct:?} {cached:?}");
    if let Ok(document) = direct {
        for form in &document.forms {
            assert!(document.form_index(&form.id).is_some());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    exercise(content_type, body);
    let restricted: Vec<u8> = body
        .iter()
        .map(|&byte| ALPHABET[usize::from(byte) % ALPHABET.len()])
        .collect();
    exercise(content_type, &restricted);
});
