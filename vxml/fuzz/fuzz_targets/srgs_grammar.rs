//! Fuzz target: SRGS grammar text in both forms, then matches over tokens from the input.
//!
//! Layout: the first byte picks the form and mode handling; the input up to the first 0x00
//! is the grammar text; the rest are tokens (split on whitespace, at most 40). No input may
//! panic, and every match must finish (the matcher is memoised and budgeted). A voice
//! grammar's JSGF form ([`Grammar::to_jsgf`]) stays within its size limit and is made of
//! plain words; the tokens also go through a voice builtin's reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_vxml::srgs::{Grammar, MAX_JSGF_BYTES, Match, Mode, best_match};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (text, input) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let content_type = match selector % 4 {
        0 => Some("application/srgs"),
        1 => Some("application/srgs+xml"),
        _ => None,
    };
    let base = url::Url::parse("http://example.com/g/main.grxml").ok();
    let input = String::from_utf8_lossy(input);
    let tokens: Vec<&str> = input.split_whitespace().take(40).collect();
    let parsed = if selector & 4 == 0 {
        Grammar::parse(&text, content_type, base.as_ref())
    } else {
        Grammar::parse_conformant(&text, content_type, base.as_ref())
    };
    let Ok(mut grammar) = parsed else {
        return;
    };
    // Link the grammar to itself under every URI it asks for: cross-grammar cycles included.
    for uri in grammar.external_uris().into_iter().take(4) {
        let copy = grammar.clone();
        grammar.link_external(&uri, copy);
    }
    for end in 0..=tokens.len() {
        // A match's utterance is made of the input tokens.
        if let Match::Complete(i) | Match::Extendable(i) = grammar.match_tokens(&tokens[..end]) {
            assert!(i.utterance.len() <= input.len());
        }
    }
    let _ = grammar.parse_tree(&tokens);
    let digits = Grammar::builtin("digits", grammar.mode());
    if let Ok(digits) = digits {
        let _ = best_match(&[&grammar, &digits], &tokens);
    }
    if let Ok(jsgf) = grammar.to_jsgf() {
        assert!(jsgf.text.len() <= MAX_JSGF_BYTES);
        assert!(jsgf.text.starts_with("#JSGF V1.0;\ngrammar outdial;\npublic <root> = "));
        for word in &jsgf.words {
            assert!(!word.is_empty());
            assert!(word.chars().all(|c| c.is_alphanumeric() || c == '\''), "{word:?}");
        }
    }
    let builtins = ["boolean", "digits?minlength=2", "number", "currency", "date", "time", "phone"];
    let spec = builtins[usize::from(selector >> 3) % builtins.len()];
    if let Ok(builtin) = Grammar::builtin(spec, Mode::Voice) {
        for end in 0..=tokens.len() {
            let _ = builtin.match_tokens(&tokens[..end]);
        }
    }
});
