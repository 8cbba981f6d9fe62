//! Bytes to text: the XML encoding rules (XML 1.0 §4.3.3, Appendix F; RFC 7303 §3).
//!
//! Precedence: a byte-order mark, then the `charset` of the Content-Type, then the `encoding`
//! of the XML declaration, then UTF-8. Labels are resolved by encoding_rs (WHATWG names), so
//! `ISO-8859-1` decodes as windows-1252, a superset.

use encoding_rs::{Encoding, UTF_8};

/// Decodes `body`; on malformed input returns the name of the encoding that failed.
pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<String, String> {
    let (encoding, bom_len) = match Encoding::for_bom(body) {
        Some((encoding, len)) => (encoding, len),
        None => (
            content_type
                .and_then(charset_param)
                .or_else(|| declared_encoding(body))
                .and_then(|label| Encoding::for_label(label.as_bytes()))
                .unwrap_or(UTF_8),
            0,
        ),
    };
    let rest = body.get(bom_len..).unwrap_or_default();
    let (text, had_errors) = encoding.decode_without_bom_handling(rest);
    if had_errors {
        return Err(encoding.name().to_owned());
    }
    Ok(text.into_owned())
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

/// The `encoding` pseudo-attribute of an XML declaration at the start of `body`.
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = body.get(..body.len().min(256))?;
    let head = head.strip_prefix(b"<?xml")?;
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

    #[test]
    fn latin1_declared_in_the_xml_declaration_is_decoded() {
        let body = b"<?xml version='1.0' encoding='ISO-8859-1'?><vxml>caf\xe9</vxml>";
        assert_eq!(
            decode(body, None).unwrap(),
            "<?xml version='1.0' encoding='ISO-8859-1'?><vxml>caf\u{e9}</vxml>"
        );
    }

    #[test]
    fn content_type_charset_beats_the_declaration_and_bom_beats_both() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>\xe9</a>";
        assert!(decode(body, None).is_err(), "invalid UTF-8 must be refused");
        let text = decode(
            body,
            Some("application/voicexml+xml; charset=\"iso-8859-1\""),
        )
        .unwrap();
        assert!(text.ends_with("<a>\u{e9}</a>"));
        let mut bom = vec![0xef, 0xbb, 0xbf];
        bom.extend_from_slice("<a>\u{e9}</a>".as_bytes());
        assert_eq!(
            decode(&bom, Some("text/xml; charset=iso-8859-1")).unwrap(),
            "<a>\u{e9}</a>"
        );
    }

    #[test]
    fn utf16_with_bom() {
        let mut body = vec![0xff, 0xfe];
        for unit in "<a/>".encode_utf16() {
            body.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(decode(&body, None).unwrap(), "<a/>");
    }

    #[test]
    fn truncated_declaration_falls_back_to_utf8() {
        assert_eq!(
            decode(b"<?xml encoding='", None).unwrap(),
            "<?xml encoding='"
        );
    }
}
