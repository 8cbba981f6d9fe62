//! `mailto:` status callbacks (RFC 6068): instead of a POST on every status change, one
//! plain-text mail with the call's final record (status, disposition, reason, submitted
//! values), queued in the reply-mail outbox and sent through the operator's relay
//! (`email.reply_relay`). The e-mail intake sets one when a message asks for its result
//! (`Result-Mail: yes`); an HTTP client may give one as `status_callback`.
//!
//! The URI carries one address and optionally `subject` and `in-reply-to` (so the result
//! threads under the request that asked for it); nothing else, so a request cannot make
//! Outdial write arbitrary headers.

use lettre::Address;
use serde_json::Value;

use crate::model::CallStatus;
use crate::store::NewReply;

/// Characters escaped in a `mailto:` header value: everything but RFC 3986 unreserved.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest `subject` or `in-reply-to` value taken from a URI.
const MAX_HEADER_CHARS: usize = 998;

/// A parsed `mailto:` callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailCallback {
    /// The one recipient.
    pub to: Address,
    /// The subject's text after `Result: `, if the URI gives one.
    pub subject: Option<String>,
    /// The Message-ID the result answers (without angle brackets).
    pub in_reply_to: Option<String>,
}

impl MailCallback {
    /// Reads `mailto:addr[?subject=..&in-reply-to=..]`; the error says what is wrong.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
            .and_then(|_| uri.get(7..))
            .ok_or_else(|| "must start with mailto:".to_owned())?;
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        let address = decode(address)?;
        if address.contains(',') {
            return Err("a mailto: callback names one address, not several".to_owned());
        }
        let to: Address = address
            .parse()
            .map_err(|e| format!("{address:?} is not a mail address ({e})"))?;
        let mut callback = Self {
            to,
            subject: None,
            in_reply_to: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            if value.chars().count() > MAX_HEADER_CHARS || value.contains(['\r', '\n']) {
                return Err(format!(
                    "the {name} of a mailto: callback must be one line of at most {MAX_HEADER_CHARS} characters"
                ));
            }
            match name.to_ascii_lowercase().as_str() {
                "subject" => callback.subject = Some(value),
                "in-reply-to" => {
                    callback.in_reply_to =
                        Some(value.trim_matches(|c| c == '<' || c == '>').to_owned());
                }
                other => {
                    return Err(format!(
                        "a mailto: callback takes only subject and in-reply-to, not {other:?}"
                    ));
                }
            }
        }
        Ok(callback)
    }

    /// The URI for `to`, with the optional subject and Message-ID answered.
    pub fn uri(to: &str, subject: Option<&str>, in_reply_to: Option<&str>) -> String {
        let encode = |text: &str| percent_encoding::utf8_percent_encode(text, ESCAPED).to_string();
        let mut uri = format!("mailto:{}", encode(to).replace("%40", "@"));
        let mut separator = '?';
        for (name, value) in [("subject", subject), ("in-reply-to", in_reply_to)] {
            if let Some(value) = value {
                uri.push(separator);
                uri.push_str(name);
                uri.push('=');
                uri.push_str(&encode(value));
                separator = '&';
            }
        }
        uri
    }

    /// The result mail for a status change whose webhook body is `record`, or `None` while
    /// the call is not final (one mail per call, at its end).
    pub fn result_mail(&self, record: &Value) -> Option<NewReply> {
        let status: CallStatus = serde_json::from_value(record.get("status")?.clone()).ok()?;
        if !status.is_final() {
            return None;
        }
        let text = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or("");
        let id = text("id");
        let mut body = format!("Call {id} to {} ended: {}.\n", text("to"), text("status"));
        for (label, name) in [
            ("Disposition", "disposition"),
            ("Reason", "reason"),
            ("Answered at", "answered_at"),
            ("Ended at", "ended_at"),
        ] {
            let value = text(name);
            if !value.is_empty() {
                body.push_str(&format!("{label}: {value}\n"));
            }
        }
        match record.get("result").and_then(Value::as_object) {
            Some(values) if !values.is_empty() => {
                body.push_str("\nSubmitted by the application:\n");
                for (name, value) in values {
                    let shown = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned);
                    body.push_str(&format!("  {name}: {shown}\n"));
                }
            }
            _ => body.push_str("\nThe application submitted nothing.\n"),
        }
        body.push_str("\nThe whole record: GET /v1/calls/");
        body.push_str(id);
        body.push_str(" on the Outdial API.\n");
        Some(NewReply {
            tenant: record
                .get("tenant")
                .and_then(Value::as_str)
                .map(str::to_owned),
            to: self.to.to_string(),
            subject: format!(
                "Result: {}",
                self.subject.as_deref().unwrap_or(&format!("call {id}"))
            ),
            in_reply_to: self.in_reply_to.clone(),
            body,
        })
    }
}

/// Percent-decoding that refuses what is not UTF-8.
fn decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "a mailto: callback must be UTF-8 once percent-decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_uri_round_trips_with_its_subject_and_message_id() {
        let uri = MailCallback::uri("ada@example.com", Some("Tomorrow & more"), Some("m1@x"));
        assert_eq!(
            uri,
            "mailto:ada@example.com?subject=Tomorrow%20%26%20more&in-reply-to=m1%40x"
        );
        let parsed = MailCallback::parse(&uri).expect("parses");
        assert_eq!(parsed.to.to_string(), "ada@example.com");
        assert_eq!(parsed.subject.as_deref(), Some("Tomorrow & more"));
        assert_eq!(parsed.in_reply_to.as_deref(), Some("m1@x"));
    }

    #[test]
    fn bad_callbacks_are_refused_with_the_reason() {
        for (uri, expected) in [
            ("mailto:not-an-address", "not a mail address"),
            ("mailto:a@b.example,c@d.example", "one address"),
            (
                "mailto:a@b.example?bcc=x@y.example",
                "only subject and in-reply-to",
            ),
            ("mailto:a@b.example?subject=a%0D%0ABcc:%20x@y", "one line"),
            ("mailto:a@b.example?subject=%FF", "UTF-8"),
            ("http://a.example/", "mailto:"),
        ] {
            let error = MailCallback::parse(uri).expect_err(uri);
            assert!(error.contains(expected), "{uri}: {error}");
        }
    }

    #[test]
    fn only_a_final_record_makes_a_mail_listing_what_was_submitted() {
        let callback =
            MailCallback::parse("mailto:ada@example.com?in-reply-to=%3Cm1@x%3E").expect("parses");
        let mut record = json!({
            "id": "call_1", "tenant": "acme", "to": "sip:+15550001@127.0.0.1",
            "status": "in_progress", "result": null,
        });
        assert_eq!(callback.result_mail(&record), None);
        record["status"] = json!("completed");
        record["disposition"] = json!("completed");
        record["result"] = json!({ "confirm": "true", "count": 2 });
        let mail = callback
            .result_mail(&record)
            .expect("a final record makes a mail");
        assert_eq!(mail.to, "ada@example.com");
        assert_eq!(mail.tenant.as_deref(), Some("acme"));
        assert_eq!(mail.subject, "Result: call call_1");
        assert_eq!(mail.in_reply_to.as_deref(), Some("m1@x"));
        assert!(mail.body.contains("ended: completed."), "{}", mail.body);
        assert!(mail.body.contains("  confirm: true\n"), "{}", mail.body);
        assert!(mail.body.contains("  count: 2\n"), "{}", mail.body);
    }
}
