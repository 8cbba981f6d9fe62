//! Documents as written in the wild: the Voxeo, Nuance and Genesys-era habits that real
//! VoiceXML applications have (no namespace, a DOCTYPE naming the W3C DTD, Latin-1 declared
//! or not, CRLF, UTF-16, vendor namespaces and properties, HTML entities, unescaped `&` and
//! `<`, JSP output with blank lines before the declaration). Each must parse, keep its meaning
//! (forms, prompt text with the right characters) and say in its warnings what was ignored or
//! repaired. Bodies that have no VoiceXML meaning (an HTML error page, plain text, audio, a
//! cut-off document) must be refused with the line and column of the problem.
//!
//! Each vector is read two ways: [`Document::parse`], and the shared [`DocumentCache`] (which
//! also reports what the decoder repaired). Both must give the same forms.

use std::sync::Arc;

use outdial_vxml::document::cache::DocumentCache;
use outdial_vxml::document::{Document, DocumentError};
use url::Url;

const LIMIT: usize = 1 << 20;

fn url(name: &str) -> Url {
    Url::parse("http://apps.example.test/ivr/")
        .and_then(|base| base.join(name))
        .expect("test URL")
}

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/wild/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Parses vector `name` both ways; returns the cached document (the one with every warning).
fn parse(name: &str, content_type: Option<&str>) -> Arc<Document> {
    let body = vector(name);
    let direct = Document::parse(url(name), content_type, &body, LIMIT)
        .unwrap_or_else(|error| panic!("{name}: {error}"));
    let cached = DocumentCache::default()
        .get_or_parse(&url(name), content_type, &body, LIMIT)
        .unwrap_or_else(|error| panic!("{name} (cached): {error}"));
    assert_eq!(
        format!("{:?}", direct.forms),
        format!("{:?}", cached.forms),
        "{name}: both entry points must read the same forms"
    );
    cached
}

/// Refuses vector `name` both ways; returns the cached path's error.
fn refuse(name: &str, body: &[u8]) -> DocumentError {
    let direct = Document::parse(url(name), None, body, LIMIT);
    assert!(direct.is_err(), "{name} must be refused");
    DocumentCache::default()
        .get_or_parse(&url(name), None, body, LIMIT)
        .expect_err("refused by the cache too")
}

fn form_ids(document: &Document) -> Vec<&str> {
    document.forms.iter().map(|form| form.id.as_str()).collect()
}

/// Everything the forms hold, as text to search for prompt content.
fn content(document: &Document) -> String {
    format!("{:?}", document.forms)
}

/// The warnings that contain `needle`.
fn warnings_with<'a>(document: &'a Document, needle: &str) -> Vec<&'a str> {
    document
        .warnings
        .iter()
        .map(String::as_str)
        .filter(|warning| warning.contains(needle))
        .collect()
}

fn position(error: &DocumentError) -> (u32, u32) {
    match error {
        DocumentError::Xml { line, column, .. } | DocumentError::Invalid { line, column, .. } => {
            (*line, *column)
        }
        other => panic!("expected an error with a position, got {other:?}"),
    }
}

#[test]
fn voxeo_document_with_doctype_crlf_and_vendor_namespace() {
    let document = parse("voxeo_doctype_crlf.vxml", Some("text/xml"));
    assert_eq!(form_ids(&document), ["main", "pin"]);
    assert_eq!(document.version, "2.0");
    assert!(content(&document).contains("Welcome to Acme Pharmacy."));
    assert!(!content(&document).contains('\r'), "CRLF is normalised");
    let ignored = warnings_with(&document, "recordcall");
    assert_eq!(ignored.len(), 1, "{:?}", document.warnings);
    assert!(
        ignored[0].starts_with("http://apps.example.test/ivr/voxeo_doctype_crlf.vxml:5:3: "),
        "the warning names the line and column: {ignored:?}"
    );
    assert_eq!(document.properties.len(), 1);
}

#[test]
fn latin1_declared_in_the_xml_declaration() {
    let document = parse("latin1_declared.vxml", None);
    assert_eq!(form_ids(&document), ["accueil"]);
    assert!(
        content(&document)
            .contains("Bienvenue \u{e0} la Soci\u{e9}t\u{e9} G\u{e9}n\u{e9}rale. \u{bf}Qu\u{e9} tal? Gr\u{fc}\u{df}e aus K\u{f6}ln."),
        "{}",
        content(&document)
    );
    assert_eq!(document.warnings, Vec::<String>::new());
}

#[test]
fn latin1_undeclared_reads_as_windows_1252_with_a_warning() {
    let document = parse("latin1_undeclared.vxml", None);
    assert!(
        content(&document).contains(
            "It\u{2019}s the caf\u{e9}\u{2019}s menu: cr\u{e8}me br\u{fb}l\u{e9}e, 5 \u{20ac}."
        ),
        "{}",
        content(&document)
    );
    let guessed = warnings_with(&document, "windows-1252");
    assert_eq!(guessed.len(), 1, "{:?}", document.warnings);
    assert!(
        guessed[0].contains(":4:17: "),
        "first non-UTF-8 byte: {guessed:?}"
    );
}

#[test]
fn latin1_behind_a_utf8_server_default() {
    let document = parse("latin1_declared.vxml", Some("text/xml; charset=UTF-8"));
    assert!(content(&document).contains("Soci\u{e9}t\u{e9}"));
    assert_eq!(
        warnings_with(&document, "Latin-1").len(),
        1,
        "{:?}",
        document.warnings
    );
}

#[test]
fn utf16_with_byte_order_mark_either_way() {
    for name in ["utf16le_bom.vxml", "utf16be_bom.vxml"] {
        let document = parse(name, Some("application/voicexml+xml"));
        assert_eq!(form_ids(&document), ["travel"], "{name}");
        assert!(
            content(&document).contains("Z\u{fc}rich \u{2013} \u{6771}\u{4eac} \u{2013} \u{395}\u{3bb}\u{3bb}\u{3ac}\u{3b4}\u{3b1}"),
            "{name}: {}",
            content(&document)
        );
        assert_eq!(document.warnings, Vec::<String>::new(), "{name}");
    }
}

#[test]
fn nuance_elements_are_ignored_and_properties_kept() {
    let document = parse("nuance_properties.vxml", None);
    assert_eq!(form_ids(&document), ["survey"]);
    assert!(content(&document).contains("Thank you for calling."));
    let names: Vec<&str> = document
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["com.nuance.ecmascript.globalScopeChain", "timeout"]);
    assert_eq!(
        document.forms[0].properties[0].name,
        "com.nuance.core.speechdetection.sensitivity"
    );
    assert_eq!(
        warnings_with(&document, "<audiodump>").len(),
        1,
        "{:?}",
        document.warnings
    );
    assert_eq!(
        warnings_with(&document, "<log>").len(),
        1,
        "{:?}",
        document.warnings
    );
}

#[test]
fn html_entities_and_unescaped_markup_characters() {
    let document = parse("html_entities.vxml", None);
    assert_eq!(form_ids(&document), ["entities"]);
    let text = content(&document);
    // Debug output escapes the no-break space.
    let prompt = "Caf\u{e9}\\u{a0}Ren\u{e9}\u{2019}s\u{2026} open 24\u{d7}7 \u{a9} Acme";
    assert!(text.contains(prompt), "{text}");
    assert!(
        text.contains("tries < 3 && smaller(tries, 2) == 0"),
        "{text}"
    );
    assert!(text.contains("next.jsp?lang=fr&caller=anonymous"), "{text}");
    let script = format!("{:?}", document.declarations);
    assert!(
        script.contains("return a < b && a >= 0 ? a : b;"),
        "{script}"
    );
    for entity in [
        "&eacute;", "&nbsp;", "&rsquo;", "&hellip;", "&times;", "&copy;",
    ] {
        let repaired = warnings_with(&document, entity);
        assert!(
            repaired.iter().all(|w| w.contains(":10:")),
            "{entity}: {repaired:?}"
        );
        assert!(!repaired.is_empty(), "{entity}: {:?}", document.warnings);
    }
    let script = warnings_with(&document, "in <script>");
    assert_eq!(script.len(), 1, "{:?}", document.warnings);
    assert!(script[0].contains(":4:11: "), "{script:?}");
    let cond = warnings_with(&document, "value of cond");
    assert_eq!(cond.len(), 1, "{:?}", document.warnings);
    assert!(cond[0].contains(":11:23: "), "{cond:?}");
    // `&&` in the script, `&&` in cond, `&` in the URL.
    assert_eq!(
        warnings_with(&document, "write &amp;").len(),
        3,
        "{:?}",
        document.warnings
    );
}

#[test]
fn jsp_output_with_blank_lines_an_undeclared_prefix_and_a_dos_eof() {
    let document = parse("jsp_generated.vxml", None);
    assert_eq!(form_ids(&document), ["generated"]);
    assert!(content(&document).contains("Generated at request time."));
    let prefix = warnings_with(&document, "prefix 'voxeo'");
    assert_eq!(prefix.len(), 1, "{:?}", document.warnings);
    assert!(prefix[0].contains(":7:8: "), "{prefix:?}");
    assert_eq!(
        warnings_with(&document, "<logcontrol>").len(),
        1,
        "{:?}",
        document.warnings
    );
    assert_eq!(
        warnings_with(&document, "U+001A").len(),
        1,
        "{:?}",
        document.warnings
    );
}

#[test]
fn an_html_error_page_is_not_voicexml() {
    let error = refuse("html_error_page.vxml", &vector("html_error_page.vxml"));
    assert_eq!(position(&error), (2, 1));
    assert!(error.to_string().contains("<vxml>"), "{error}");
}

#[test]
fn a_dialog_without_its_vxml_root_is_refused() {
    let error = refuse("no_vxml_root.vxml", &vector("no_vxml_root.vxml"));
    assert_eq!(position(&error), (3, 1));
    assert!(error.to_string().contains("root element"), "{error}");
}

#[test]
fn plain_text_is_refused_at_its_first_character() {
    let error = refuse("server_error.txt", &vector("server_error.txt"));
    assert_eq!(position(&error), (1, 1));
}

#[test]
fn a_truncated_document_is_refused_as_not_well_formed() {
    let error = refuse("truncated.vxml", &vector("truncated.vxml"));
    assert!(matches!(error, DocumentError::Xml { .. }), "{error}");
}

#[test]
fn audio_served_as_a_document_is_binary() {
    let wav = b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f";
    let error = refuse("greeting.vxml", wav);
    assert_eq!(position(&error), (1, 7));
    assert!(error.to_string().contains("binary"), "{error}");
}

#[test]
fn a_dtmf_grammar_without_root_or_namespace_uses_its_only_rule() {
    let document = parse("grammar_without_root.vxml", None);
    assert_eq!(form_ids(&document), ["confirm"]);
    let text = content(&document);
    assert!(
        text.contains("yesno") && !text.contains("Inactive"),
        "{text}"
    );
    assert_eq!(document.warnings, Vec::<String>::new());
}

#[test]
fn a_vendor_attribute_is_ignored_with_a_warning_naming_it() {
    let document = parse("voxeo_doctype_crlf.vxml", None);
    let ignored = warnings_with(&document, "voxeo:voice");
    assert_eq!(ignored.len(), 1, "{:?}", document.warnings);
    assert!(ignored[0].contains(":10:"), "{ignored:?}");
    let element = warnings_with(&document, "<recordcall>");
    assert_eq!(element.len(), 1, "{:?}", document.warnings);
    assert!(
        element[0].contains("voxeo")
            && element[0].contains("http://community.voxeo.com/xmlns/vxml"),
        "a foreign element's warning names its prefix and namespace: {element:?}"
    );
}

#[test]
fn vendor_properties_are_kept_and_logged_once() {
    let document = parse("nuance_properties.vxml", None);
    for name in [
        "com.nuance.ecmascript.globalScopeChain",
        "com.nuance.core.speechdetection.sensitivity",
    ] {
        assert_eq!(
            warnings_with(&document, name).len(),
            1,
            "{:?}",
            document.warnings
        );
    }
    assert!(warnings_with(&document, "\"timeout\"").is_empty());
    let survey = &document.forms[0];
    assert!(
        survey
            .properties
            .iter()
            .any(|p| p.name == "com.nuance.core.speechdetection.sensitivity" && p.value == "0.7")
    );
}

#[test]
fn a_truncated_document_is_refused_at_its_end() {
    let error = refuse("truncated.vxml", &vector("truncated.vxml"));
    assert_eq!(position(&error).0, 6, "{error}");
}

#[test]
fn direct_parsing_reports_what_the_decoder_guessed() {
    let body = vector("latin1_undeclared.vxml");
    let direct = Document::parse(url("x"), None, &body, LIMIT).unwrap();
    assert_eq!(direct.warnings.len(), 1, "{:?}", direct.warnings);
}
