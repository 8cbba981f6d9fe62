//! MIME (with `mail-parser`): a raw message → the parts a request is read from: the
//! `X-Outdial-*` header fields (RFC 2047 encoded words decoded), the text body (the first
//! text part, base64 or quoted-printable decoded and converted from its charset; an HTML-only
//! message is converted to text) and the attachments (decoded bytes, name, media type).

use mail_parser::{HeaderName, MessageParser, MimeHeaders, PartType};

use super::reply;
use crate::smtp::Reply;

/// The prefix of header fields that carry request fields.
pub const HEADER_PREFIX: &str = "x-outdial-";

/// Most attachments a message may have.
pub const MAX_ATTACHMENTS: usize = 32;

/// A message, as far as the request format needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `X-Outdial-<Key>: value` fields in order: (`Key` as written, decoded value).
    pub fields: Vec<(String, String)>,
    /// The text body, decoded, if there is one.
    pub body: Option<String>,
    /// Attachments in order (not inline text parts, not attached messages).
    pub attachments: Vec<Attachment>,
    /// The `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// The `Subject`, decoded.
    pub subject: Option<String>,
    /// Whether `Auto-Submitted` says the message came from an automaton (RFC 3834): no
    /// reply mail is sent to it.
    pub auto_submitted: bool,
}

/// One attached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its file name (`Content-Disposition: filename`, or `Content-Type: name`).
    pub name: Option<String>,
    /// `type/subtype`, lowercase (`application/octet-stream` when undeclared).
    pub content_type: String,
    /// The decoded bytes.
    pub body: Vec<u8>,
}

/// Parses `raw`. mail-parser reads even broken MIME leniently (a bad structure is a message
/// with odd parts); only something that is not a message at all is refused.
pub fn parse(raw: &[u8]) -> Result<Parsed, Reply> {
    let message = MessageParser::new()
        .with_mime_headers()
        .with_address_headers()
        .with_message_ids()
        .with_date_headers()
        .default_header_text()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or_else(|| {
            reply::content(
                "mime",
                "the message has no header fields; send an RFC 5322 message (headers, a blank line, the body)",
            )
        })?;
    let mut fields = Vec::new();
    for header in message.headers() {
        let HeaderName::Other(name) = &header.name else {
            continue;
        };
        let Some(key) = name
            .get(..HEADER_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(HEADER_PREFIX))
            .and_then(|_| name.get(HEADER_PREFIX.len()..))
        else {
            continue;
        };
        let value = header.value.as_text().unwrap_or_default().trim().to_owned();
        fields.push((key.to_owned(), value));
    }
    let mut attachments = Vec::new();
    for part in message.attachments() {
        if matches!(part.body, PartType::Message(_)) {
            continue;
        }
        if attachments.len() == MAX_ATTACHMENTS {
            return Err(reply::content(
                "attachments",
                &format!("the message has more than {MAX_ATTACHMENTS} attachments"),
            ));
        }
        let content_type = part.content_type().map_or_else(
            || "application/octet-stream".to_owned(),
            |ct| {
                let subtype = ct.subtype().unwrap_or("octet-stream");
                format!("{}/{subtype}", ct.ctype()).to_ascii_lowercase()
            },
        );
        attachments.push(Attachment {
            name: part.attachment_name().map(str::to_owned),
            content_type,
            body: part.contents().to_vec(),
        });
    }
    Ok(Parsed {
        fields,
        body: message.body_text(0).map(|b| b.into_owned()),
        attachments,
        message_id: message.message_id().map(str::to_owned),
        subject: message.subject().map(str::to_owned),
        auto_submitted: message
            .header("Auto-Submitted")
            .and_then(|v| v.as_text())
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Parsed {
        parse(raw.replace('\n', "\r\n").as_bytes()).unwrap_or_default()
    }

    #[test]
    fn encoded_words_and_prefixes_are_read() {
        let p = parsed(
            "From: a@b\nX-OUTDIAL-Var-name: =?utf-8?q?Ren=C3=A9e?=\nx-outdial-destination:  sip:a@b \nX-Other: 1\nMessage-ID: <m1@b>\n\nhello\n",
        );
        assert_eq!(
            p.fields,
            vec![
                ("Var-name".to_owned(), "Renée".to_owned()),
                ("destination".to_owned(), "sip:a@b".to_owned())
            ]
        );
        assert_eq!(p.message_id.as_deref(), Some("m1@b"));
        assert!(!p.auto_submitted);
        assert!(parsed("From: a@b\nAuto-Submitted: auto-replied\n\nx\n").auto_submitted);
        assert!(!parsed("From: a@b\nAuto-Submitted: no\n\nx\n").auto_submitted);
        assert_eq!(p.body.as_deref().map(str::trim_end), Some("hello"));
    }

    #[test]
    fn quoted_printable_and_charsets_are_decoded() {
        let p = parsed(
            "From: a@b\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nVar-name: Ren=E9e\n",
        );
        assert_eq!(
            p.body.as_deref().map(str::trim_end),
            Some("Var-name: Renée")
        );
    }

    #[test]
    fn multipart_gives_the_text_part_and_base64_attachments() {
        let p = parsed(concat!(
            "From: a@b\nContent-Type: multipart/mixed; boundary=XX\n\n",
            "--XX\nContent-Type: text/plain\n\nDestination: sip:a@b\n",
            "--XX\nContent-Type: application/voicexml+xml\nContent-Disposition: attachment; filename=\"app.vxml\"\nContent-Transfer-Encoding: base64\n\nPHZ4bWwvPg==\n",
            "--XX--\n"
        ));
        assert_eq!(
            p.body.as_deref().map(str::trim_end),
            Some("Destination: sip:a@b")
        );
        assert_eq!(
            p.attachments,
            vec![Attachment {
                name: Some("app.vxml".into()),
                content_type: "application/voicexml+xml".into(),
                body: b"<vxml/>".to_vec()
            }]
        );
    }

    #[test]
    fn what_is_not_a_message_is_refused() {
        for raw in [&b""[..], b"\r\n\r\n"] {
            let refused = parse(raw).err().map(|r| (r.code, r.enhanced));
            assert_eq!(refused, Some((554, (5, 6, 0))), "{raw:?}");
        }
    }

    /// Every message of the mail-parser corpus (RFC examples, malformed MIME, real-world
    /// encodings) parses without a panic, with the attachments (decoded) of the corpus's
    /// expected parse, attached messages left out.
    #[test]
    fn the_corpus_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/mime-mail-parser");
        let mut seen = 0;
        for folder in ["rfc", "malformed", "thirdparty"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
                panic!("corpus missing: {}", root.display());
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "eml") {
                    continue;
                }
                let raw = std::fs::read(&path).unwrap_or_default();
                let expected: serde_json::Value = std::fs::read(path.with_extension("json"))
                    .ok()
                    .and_then(|j| serde_json::from_slice(&j).ok())
                    .unwrap_or_default();
                let lf: Vec<u8> = raw.iter().copied().filter(|&b| b != b'\r').collect();
                let Ok(parsed) = parse(&lf) else {
                    continue;
                };
                seen += 1;
                let parts = &expected["parts"];
                let want: Vec<Vec<u8>> = expected["attachments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        let body = &parts[i.as_u64().unwrap_or(0) as usize]["body"];
                        if let Some(text) = body["Text"].as_str() {
                            return Some(text.as_bytes().to_vec());
                        }
                        let bytes = body["Binary"]
                            .as_array()
                            .or_else(|| body["InlineBinary"].as_array())?;
                        Some(
                            bytes
                                .iter()
                                .map(|b| b.as_u64().unwrap_or(0) as u8)
                                .collect(),
                        )
                    })
                    .collect();
                let got: Vec<Vec<u8>> = parsed.attachments.into_iter().map(|a| a.body).collect();
                assert_eq!(got, want, "{}", path.display());
            }
        }
        assert!(seen >= 50, "only {seen} corpus messages parsed");
    }
}
