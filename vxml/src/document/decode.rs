//! Bytes to text, the way a lenient platform reads documents written in the wild.
//!
//! # Encoding (XML 1.0 §4.3.3 and Appendix F; RFC 7303 §3.2)
//!
//! Precedence: a byte-order mark; then UTF-16 recognised from its first bytes (`<` `NUL`);
//! then the `charset` of the Content-Type; then the `encoding` of the XML declaration; then
//! UTF-8. Labels are resolved by encoding_rs (WHATWG names), so `ISO-8859-1` and `US-ASCII`
//! decode as windows-1252, a superset. Departures from the letter of the rules, each logged:
//!
//! - **Undeclared or misdeclared Latin-1.** Text read as UTF-8 (declared, or by default) that
//!   is not UTF-8 and holds no valid multi-byte sequence was saved by a Latin-1 editor: it is
//!   read as windows-1252. If it does hold valid multi-byte sequences, the stray bytes become
//!   U+FFFD.
//! - **The server's default charset against the author's declaration.** When the Content-Type
//!   names a single-byte charset (Apache's `AddDefaultCharset`) but the XML declaration names
//!   a multi-byte encoding in which the body decodes cleanly, the declaration wins.
//! - **A UTF-16 label on 8-bit bytes** (no byte-order mark, markup not in 16-bit units) is
//!   ignored, as HTML does; so is a label encoding_rs does not know.
//! - Bytes invalid in any other encoding become U+FFFD.
//!
//! # After decoding
//!
//! A NUL character means the body is binary (audio, an image): an error naming its line and
//! column. Everything else is handed to [`repair`] and then to the XML parser, which
//! normalises CRLF and CR line ends (XML 1.0 §2.11) and ignores the external DTD of a
//! `<!DOCTYPE vxml PUBLIC … "…/vxml.dtd">`.

mod html_entities;
mod repair;

use encoding_rs::{Encoding, REPLACEMENT, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};
use url::Url;

use super::DocumentError;
use repair::Note;

/// How far into the body an XML declaration is looked for.
const DECLARATION_WINDOW: usize = 1024;

/// Decodes and repairs `body`; the text is what the XML parser should read.
///
/// Never fails: binary content is returned as decoded, for the XML parser to refuse.
pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<String, String> {
    let mut notes = Vec::new();
    let (text, _) = read(body, content_type, &mut notes);
    if text.contains('\0') {
        return Ok(text);
    }
    Ok(match repair::repair(&text, &mut notes) {
        std::borrow::Cow::Owned(repaired) => repaired,
        std::borrow::Cow::Borrowed(_) => text,
    })
}

/// Decodes `body` by its charset (the Content-Type's, a byte-order mark, else UTF-8 with a
/// Windows-1252 fallback) and nothing more: for text that is not XML, such as an external
/// `<script src>` (VoiceXML 2.0 §5.3.12: ECMAScript as it is), where a `<` or `&` is code.
pub fn decode_text(body: &[u8], content_type: Option<&str>) -> String {
    let mut notes = Vec::new();
    read(body, content_type, &mut notes).0
}

/// Text decoded from a fetched body, and how it was read.
#[derive(Debug)]
pub(super) struct Decoded {
    /// The repaired text for the XML parser.
    pub(super) text: String,
    /// What was repaired or guessed, as `URL:LINE:COLUMN: message` (or `URL: message`).
    pub(super) warnings: Vec<String>,
}

/// Decodes and repairs `body` fetched from `url`, with warnings for what was not as written
/// by the book.
pub(super) fn decode_document(
    url: &Url,
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Decoded, DocumentError> {
    let mut notes = Vec::new();
    let (text, _) = read(body, content_type, &mut notes);
    if let Some(at) = text.find('\0') {
        let (line, column) = line_column(&text, at);
        return Err(DocumentError::Xml {
            url: url.to_string(),
            line,
            column,
            message: "a NUL character: the body is binary (audio, an image, an archive?), \
                      not a VoiceXML document; check the URL and what the server sends"
                .to_owned(),
        });
    }
    let repaired = match repair::repair(&text, &mut notes) {
        std::borrow::Cow::Owned(repaired) => Some(repaired),
        std::borrow::Cow::Borrowed(_) => None,
    };
    let warnings = notes
        .iter()
        .map(|note| match note.offset {
            Some(at) => {
                let (line, column) = line_column(&text, at);
                format!("{url}:{line}:{column}: {}", note.message)
            }
            None => format!("{url}: {}", note.message),
        })
        .collect();
    Ok(Decoded {
        text: repaired.unwrap_or(text),
        warnings,
    })
}

/// The 1-based line and column (in characters) of byte offset `at`, as the XML parser counts.
fn line_column(text: &str, at: usize) -> (u32, u32) {
    let before = text
        .char_indices()
        .take_while(|(i, _)| *i < at)
        .map(|(_, c)| c);
    let (mut line, mut column) = (1_u32, 1_u32);
    for c in before {
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

/// Chooses the encoding and decodes.
fn read(
    body: &[u8],
    content_type: Option<&str>,
    notes: &mut Vec<Note>,
) -> (String, &'static Encoding) {
    if let Some((encoding, bom_length)) = Encoding::for_bom(body) {
        let rest = body.get(bom_length..).unwrap_or_default();
        return (decode_in(encoding, rest, notes), encoding);
    }
    if let Some(encoding) = sniff_utf16(body) {
        return (decode_in(encoding, body, notes), encoding);
    }
    let charset = content_type
        .and_then(charset_param)
        .and_then(|label| resolve(&label, "the Content-Type charset", notes));
    let declared =
        declared_encoding(body).and_then(|label| resolve(&label, "the XML declaration", notes));
    let encoding = match (charset, declared) {
        (Some(charset), Some(declared))
            if charset.is_single_byte()
                && !declared.is_single_byte()
                && !body.is_ascii()
                && decodes_cleanly(declared, body) =>
        {
            notes.push(Note {
                offset: None,
                message: format!(
                    "the Content-Type says charset {} but the document declares {} and is \
                     valid {}; read as {}",
                    charset.name(),
                    declared.name(),
                    declared.name(),
                    declared.name()
                ),
            });
            Some(declared)
        }
        (Some(charset), _) => Some(charset),
        (None, declared) => declared,
    };
    match encoding {
        Some(encoding) if encoding != UTF_8 => (decode_in(encoding, body, notes), encoding),
        _ => read_utf8(body, encoding.is_some(), notes),
    }
}

/// Decodes in a known encoding; invalid sequences become U+FFFD.
fn decode_in(encoding: &'static Encoding, bytes: &[u8], notes: &mut Vec<Note>) -> String {
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    if had_errors {
        notes.push(Note {
            offset: None,
            message: format!(
                "bytes that are not valid {} were read as U+FFFD; save the document in the \
                 encoding it declares",
                encoding.name()
            ),
        });
    }
    text.into_owned()
}

/// Reads UTF-8, falling back to windows-1252 for Latin-1 text (see the module docs).
fn read_utf8(body: &[u8], declared: bool, notes: &mut Vec<Note>) -> (String, &'static Encoding) {
    let error = match std::str::from_utf8(body) {
        Ok(text) => return (text.to_owned(), UTF_8),
        Err(error) => error,
    };
    let at = Some(error.valid_up_to());
    if body.utf8_chunks().any(|chunk| !chunk.valid().is_ascii()) {
        notes.push(Note {
            offset: at,
            message: "bytes that are not UTF-8 were read as U+FFFD; save the document as UTF-8"
                .to_owned(),
        });
        return (String::from_utf8_lossy(body).into_owned(), UTF_8);
    }
    let message = if declared {
        "the document is declared UTF-8 but is Latin-1; read as windows-1252 \
         (declare encoding=\"ISO-8859-1\" or save it as UTF-8)"
    } else {
        "the document declares no encoding and is not UTF-8; read as windows-1252 (Latin-1) \
         (declare encoding=\"ISO-8859-1\" or save it as UTF-8)"
    };
    notes.push(Note {
        offset: at,
        message: message.to_owned(),
    });
    let (text, _) = WINDOWS_1252.decode_without_bom_handling(body);
    (text.into_owned(), WINDOWS_1252)
}

/// Whether `body` decodes in `encoding` without a replacement.
fn decodes_cleanly(encoding: &'static Encoding, body: &[u8]) -> bool {
    encoding
        .decode_without_bom_handling_and_without_replacement(body)
        .is_some()
}

/// UTF-16 without a byte-order mark, recognised by its first code unit (XML 1.0 Appendix F).
fn sniff_utf16(body: &[u8]) -> Option<&'static Encoding> {
    let is_start = |byte: u8| byte == b'<' || byte.is_ascii_whitespace();
    match body.get(..2)? {
        [byte, 0] if is_start(*byte) => Some(UTF_16LE),
        [0, byte] if is_start(*byte) => Some(UTF_16BE),
        _ => None,
    }
}

/// The encoding a label names, if it can be used for this body (see the module docs).
fn resolve(label: &str, source: &str, notes: &mut Vec<Note>) -> Option<&'static Encoding> {
    let mut note = |message: String| {
        notes.push(Note {
            offset: None,
            message,
        });
    };
    match Encoding::for_label(label.trim().as_bytes()) {
        None => {
            note(format!(
                "{source} names encoding {label:?}, which is unknown; read as UTF-8 \
                 (windows-1252 if the bytes are not UTF-8)"
            ));
            None
        }
        Some(encoding) if encoding == UTF_16LE || encoding == UTF_16BE => {
            note(format!(
                "{source} names {label:?} but the body is not UTF-16 (no byte-order mark, \
                 8-bit markup); read as UTF-8"
            ));
            Some(UTF_8)
        }
        Some(encoding) if encoding == REPLACEMENT => {
            note(format!(
                "{source} names encoding {label:?}, which is not supported; read as UTF-8"
            ));
            None
        }
        Some(encoding) => Some(encoding),
    }
}

/// The `charset` parameter of a Content-Type value.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The `encoding` pseudo-attribute of an XML declaration at the start of `body` (after any
/// whitespace, which the wild puts there).
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = body.get(..body.len().min(DECLARATION_WINDOW))?;
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = head.get(start..)?.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(head.get(..end)?).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl.get(at + "encoding".len()..)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = rest.get(1..)?;
    let close = value.find(quote)?;
    value.get(..close).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://example.test/app/doc.vxml").unwrap()
    }

    fn decoded(body: &[u8], content_type: Option<&str>) -> Decoded {
        decode_document(&url(), body, content_type).unwrap()
    }

    fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let mut body = Vec::new();
        for unit in text.encode_utf16() {
            body.extend_from_slice(&if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        if bom {
            body.splice(
                0..0,
                if big_endian {
                    [0xfe, 0xff]
                } else {
                    [0xff, 0xfe]
                },
            );
        }
        body
    }

    #[test]
    fn latin1_declared_in_the_xml_declaration_is_decoded_silently() {
        let body = b"<?xml version='1.0' encoding='ISO-8859-1'?><vxml>caf\xe9</vxml>";
        let doc = decoded(body, None);
        assert!(doc.text.ends_with("<vxml>caf\u{e9}</vxml>"), "{}", doc.text);
        assert_eq!(read(body, None, &mut Vec::new()).1, WINDOWS_1252);
        assert_eq!(doc.warnings, Vec::<String>::new());
    }

    #[test]
    fn undeclared_latin1_is_windows_1252_with_a_warning_at_the_first_byte() {
        let doc = decoded(b"<vxml>\n  it\x92s caf\xe9</vxml>", None);
        assert!(doc.text.contains("it\u{2019}s caf\u{e9}"), "{}", doc.text);
        assert_eq!(doc.warnings.len(), 1);
        assert!(
            doc.warnings[0].starts_with("http://example.test/app/doc.vxml:2:5: "),
            "{:?}",
            doc.warnings
        );
        assert!(
            doc.warnings[0].contains("windows-1252"),
            "{:?}",
            doc.warnings
        );
    }

    #[test]
    fn latin1_declared_utf8_by_the_server_is_still_latin1() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\xe9</a>";
        let doc = decoded(body, Some("text/xml; charset=UTF-8"));
        assert!(doc.text.ends_with("<a>\u{e9}</a>"));
        assert!(doc.warnings[0].contains("declared UTF-8 but is Latin-1"));
    }

    #[test]
    fn mixed_utf8_keeps_the_valid_sequences() {
        let doc = decoded(
            "<a>caf\u{e9} "
                .as_bytes()
                .iter()
                .copied()
                .chain(*b"\xe9</a>")
                .collect::<Vec<_>>()
                .as_slice(),
            None,
        );
        assert!(
            doc.text.ends_with("<a>caf\u{e9} \u{fffd}</a>"),
            "{}",
            doc.text
        );
        assert!(doc.warnings[0].contains("U+FFFD"));
    }

    #[test]
    fn content_type_charset_beats_the_declaration_and_bom_beats_both() {
        let body = b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><a>\xe9</a>";
        let doc = decoded(
            body,
            Some("application/voicexml+xml; charset=\"iso-8859-7\""),
        );
        assert!(doc.text.ends_with("<a>\u{3b9}</a>"), "{}", doc.text);
        let mut bom = vec![0xef, 0xbb, 0xbf];
        bom.extend_from_slice("<a>\u{e9}</a>".as_bytes());
        assert_eq!(
            decoded(&bom, Some("text/xml; charset=iso-8859-1")).text,
            "<a>\u{e9}</a>"
        );
    }

    #[test]
    fn a_utf8_declaration_beats_a_single_byte_server_default_when_the_bytes_agree() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\u{e9}</a>".as_bytes();
        let doc = decoded(body, Some("text/xml; charset=ISO-8859-1"));
        assert!(doc.text.ends_with("<a>\u{e9}</a>"), "{}", doc.text);
        let charset = Some("text/xml; charset=ISO-8859-1");
        assert_eq!(read(body, charset, &mut Vec::new()).1, UTF_8);
        assert_eq!(doc.warnings.len(), 1);
        // Without non-ASCII bytes nothing is in dispute.
        assert_eq!(
            decoded(
                b"<?xml version='1.0' encoding='UTF-8'?><a/>",
                Some("text/xml; charset=ISO-8859-1")
            )
            .warnings,
            Vec::<String>::new()
        );
    }

    #[test]
    fn utf16_with_and_without_bom() {
        for big_endian in [false, true] {
            for bom in [false, true] {
                let body = utf16(
                    "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a>\u{e9}</a>",
                    big_endian,
                    bom,
                );
                let doc = decoded(&body, None);
                assert!(doc.text.ends_with("<a>\u{e9}</a>"), "{}", doc.text);
                assert_eq!(doc.warnings, Vec::<String>::new());
            }
        }
    }

    #[test]
    fn a_utf16_label_on_8_bit_bytes_reads_as_utf8() {
        let doc = decoded(
            b"<?xml version='1.0' encoding='UTF-16'?><a>x</a>",
            Some("application/xml; charset=utf-16"),
        );
        assert!(doc.text.ends_with("<a>x</a>"));
        assert_eq!(doc.warnings.len(), 2, "{:?}", doc.warnings);
    }

    #[test]
    fn unknown_labels_are_reported_and_ignored() {
        let doc = decoded(b"<?xml version='1.0' encoding='klingon'?><a/>", None);
        assert!(doc.text.ends_with("<a/>"));
        assert!(
            doc.warnings[0].contains("\"klingon\""),
            "{:?}",
            doc.warnings
        );
    }

    #[test]
    fn binary_bodies_are_refused_with_a_position() {
        let error = decode_document(&url(), b"RIFF\x24\x00\x00\x00WAVEfmt ", None).unwrap_err();
        let DocumentError::Xml {
            line,
            column,
            message,
            ..
        } = error
        else {
            panic!("expected an XML error");
        };
        assert_eq!((line, column), (1, 6));
        assert!(message.contains("binary"), "{message}");
    }

    #[test]
    fn repairs_are_reported_at_the_authors_position() {
        let doc = decoded(b"<vxml>\r\n<a>x&nbsp;y</a></vxml>", None);
        assert!(doc.text.contains("x&#160;y"));
        assert_eq!(doc.warnings.len(), 1);
        assert!(
            doc.warnings[0].contains(":2:5: HTML entity &nbsp;"),
            "{:?}",
            doc.warnings
        );
    }

    #[test]
    fn the_compatible_entry_point_decodes_and_repairs() {
        assert_eq!(
            decode(b"<a>\xe9&eacute;</a>", None).unwrap(),
            "<a>\u{e9}&#233;</a>"
        );
        assert_eq!(
            decode(b"<?xml encoding='", None).unwrap(),
            "<?xml encoding='"
        );
    }
}
