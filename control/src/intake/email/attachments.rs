//! An attached application: the VoiceXML documents of a message (`application/voicexml+xml`
//! or a `.vxml` name) and every other named attachment beside them, checked and made into the
//! request's files. The first VoiceXML document is the application; the interpreter fetches
//! it from `/v1/files/{id}/{name}`, so relative references in it (`hello.wav`, `menu.grxml`,
//! `other.vxml`) resolve to the sibling attachments.

use outdial_vxml::document::Document;

use super::message::Attachment;
use crate::intake::{FieldError, Rule};
use crate::store::NewFile;

/// Longest file name, bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// The name a VoiceXML attachment without a file name is stored under.
pub const DEFAULT_APPLICATION_NAME: &str = "application.vxml";

/// The files of an attached application, the application's name first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedApplication {
    /// The document the calls start with.
    pub main: String,
    /// Every file, the main document included.
    pub files: Vec<NewFile>,
}

fn is_voicexml(attachment: &Attachment) -> bool {
    attachment.content_type == "application/voicexml+xml"
        || attachment
            .name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".vxml"))
}

/// 1–128 of `[A-Za-z0-9._-]`, not starting with a dot: safe in a URL path as written.
fn check_name(name: &str) -> Result<(), FieldError> {
    let ok = (1..=MAX_NAME_BYTES).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(60).collect();
        Err(FieldError::new(
            "",
            Rule::Type,
            format!(
                "attachment name {shown:?} cannot be served to the application; name attachments with 1 to {MAX_NAME_BYTES} of A-Z, a-z, 0-9, '.', '_' and '-' (not starting with '.')"
            ),
        ))
    }
}

/// The media type to serve `name` with: VoiceXML as such; a generic type replaced by the
/// one its extension names.
fn served_type(name: &str, declared: &str, voicexml: bool) -> String {
    if voicexml {
        return "application/voicexml+xml".to_owned();
    }
    if declared != "application/octet-stream" && declared != "text/plain" {
        return declared.to_owned();
    }
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("wav") => "audio/wav",
        Some("grxml") => "application/srgs+xml",
        Some("gram") => "application/srgs",
        Some("js") => "application/javascript",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        _ => declared,
    }
    .to_owned()
}

/// The attached application of `attachments`, if there is a VoiceXML document among them.
/// Each VoiceXML document must parse as the interpreter reads it (`max_document_bytes`
/// bounds it, as for a fetched one); attachments without a name are left out (nothing could
/// refer to them).
pub fn application(
    attachments: Vec<Attachment>,
    max_document_bytes: usize,
) -> Result<Option<AttachedApplication>, FieldError> {
    if !attachments.iter().any(is_voicexml) {
        return Ok(None);
    }
    let mut main = None;
    let mut files: Vec<NewFile> = Vec::with_capacity(attachments.len());
    for attachment in attachments {
        let voicexml = is_voicexml(&attachment);
        let name = match (attachment.name.clone(), voicexml) {
            (Some(name), _) => name,
            (None, true) => DEFAULT_APPLICATION_NAME.to_owned(),
            (None, false) => continue,
        };
        check_name(&name)?;
        if files.iter().any(|f| f.name == name) {
            return Err(FieldError::new(
                "",
                Rule::Duplicate,
                format!("two attachments are named {name:?}; name each file once"),
            ));
        }
        if voicexml {
            check_document(&name, &attachment.body, max_document_bytes)?;
            main.get_or_insert_with(|| name.clone());
        }
        files.push(NewFile {
            content_type: served_type(&name, &attachment.content_type, voicexml),
            name,
            body: attachment.body,
        });
    }
    Ok(main.map(|main| AttachedApplication { main, files }))
}

/// Parses `body` as the interpreter would (decoding, repairs, limits) and refuses what it
/// would refuse.
fn check_document(name: &str, body: &[u8], max_bytes: usize) -> Result<(), FieldError> {
    let url = url::Url::parse("http://attachment.invalid/")
        .and_then(|base| base.join(name))
        .map_err(|e| FieldError::new("", Rule::Type, format!("attachment {name:?}: {e}")))?;
    Document::parse(url, Some("application/voicexml+xml"), body, max_bytes)
        .map(|_| ())
        .map_err(|e| {
            FieldError::new(
                "",
                Rule::Type,
                format!(
                    "attachment {name:?} is not a VoiceXML document the interpreter can run: {e}"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VXML: &[u8] = br#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><audio src="hello.wav"/></block></form>
</vxml>"#;

    fn file(name: Option<&str>, content_type: &str, body: &[u8]) -> Attachment {
        Attachment {
            name: name.map(str::to_owned),
            content_type: content_type.to_owned(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_first_voicexml_document_is_the_application_with_its_siblings() {
        let app = application(
            vec![
                file(Some("hello.wav"), "application/octet-stream", b"RIFF"),
                file(None, "application/voicexml+xml", VXML),
                file(Some("more.VXML"), "text/plain", VXML),
                file(None, "image/png", b"x"),
            ],
            1 << 20,
        )
        .ok()
        .flatten();
        let Some(app) = app else {
            panic!("no application");
        };
        assert_eq!(app.main, DEFAULT_APPLICATION_NAME);
        let served: Vec<(&str, &str)> = app
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.content_type.as_str()))
            .collect();
        assert_eq!(
            served,
            [
                ("hello.wav", "audio/wav"),
                ("application.vxml", "application/voicexml+xml"),
                ("more.VXML", "application/voicexml+xml"),
            ]
        );
    }

    #[test]
    fn no_voicexml_means_no_application() {
        let none = application(vec![file(Some("a.wav"), "audio/wav", b"RIFF")], 1 << 20);
        assert_eq!(none, Ok(None));
    }

    #[test]
    fn broken_documents_and_unsafe_names_are_refused() {
        let refused = |files: Vec<Attachment>| application(files, 1 << 20).err().map(|e| e.rule);
        assert_eq!(
            refused(vec![file(Some("app.vxml"), "text/xml", b"<vxml><form>")]),
            Some(Rule::Type)
        );
        assert_eq!(
            refused(vec![file(Some("app.vxml"), "text/xml", b"<html/>")]),
            Some(Rule::Type)
        );
        assert_eq!(
            refused(vec![file(Some("../etc/passwd.vxml"), "text/xml", VXML)]),
            Some(Rule::Type)
        );
        assert_eq!(
            refused(vec![
                file(Some("a.vxml"), "text/xml", VXML),
                file(Some("a.vxml"), "text/xml", VXML)
            ]),
            Some(Rule::Duplicate)
        );
        assert_eq!(
            application(vec![file(Some("a.vxml"), "text/xml", VXML)], 16)
                .err()
                .map(|e| e.rule),
            Some(Rule::Type),
            "a document over the size limit"
        );
    }
}
