//! The request format: fields as `Key: value` lines at the start of the text body, or as
//! `X-Outdial-Key` header fields, read into one [`CallRequest`] per destination.
//!
//! Keys (case does not matter): `Destination` (repeatable, or a comma-separated list),
//! `Application`, `At`, `Not-After`, `Priority`, `Caller-Id`, `Callback`, `Ring-Timeout`,
//! `Machine-Detection`, `Early-Media` (yes or no), `Retry-Attempts`, `Retry-Delay`, `Retry-On`, and `Var-<name>` for each variable (the name
//! keeps its case). The body's fields are the block of lines before the first blank line (or
//! `-- ` signature line); a body whose first line is not a known `Key: value` carries none.
//! A line starting with a space or tab continues the previous value. Only types and syntax
//! are checked here: the rules are the [`crate::intake::Validator`]'s.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::intake::{CallRequest, FieldError, RetrySpec, Rule};
use crate::model::RetryOn;

/// Longest field value, bytes.
pub const MAX_VALUE_BYTES: usize = 8192;

/// Most field lines in one message (headers and body together).
pub const MAX_FIELDS: usize = 1024;

/// A request read from a message, before the application is chosen and before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmailRequest {
    /// Every destination, in order.
    pub destinations: Vec<String>,
    /// The `Application` field, if given.
    pub application: Option<String>,
    /// Everything else, shared by every call (`to` and `url` empty).
    pub common: CallRequest,
    /// `Result-Mail: yes`: mail the sender each call's result when it ends.
    pub result_mail: bool,
}

impl EmailRequest {
    /// One request per destination, each with the application `url`.
    pub fn calls(&self, url: &str) -> Vec<CallRequest> {
        self.destinations
            .iter()
            .map(|to| CallRequest {
                to: to.clone(),
                url: url.to_owned(),
                ..self.common.clone()
            })
            .collect()
    }
}

/// The fields that are not variables, with their canonical spelling.
const KEYS: [&str; 15] = [
    "Destination",
    "Application",
    "At",
    "Not-After",
    "Priority",
    "Caller-Id",
    "Callback",
    "Callback-Events",
    "Machine-Detection",
    "Early-Media",
    "Ring-Timeout",
    "Retry-Attempts",
    "Retry-Delay",
    "Retry-On",
    "Result-Mail",
];

/// The canonical spelling of `key`, `Var-<name>` as written, or `None` if it is no field.
fn canonical(key: &str) -> Option<String> {
    if let Some(name) = key
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("var-"))
        .and_then(|_| key.get(4..))
    {
        return Some(format!("Var-{name}"));
    }
    KEYS.iter()
        .find(|k| k.eq_ignore_ascii_case(key))
        .map(|k| (*k).to_owned())
}

/// The e-mail key for a validator field path (`to` → `Destination`, `vars.x` → `Var-x`).
pub fn email_key(field: &str) -> String {
    let key = match field {
        "to" => "Destination",
        "url" => "Application",
        "from" => "Caller-Id",
        "status_callback" => "Callback",
        other if other.starts_with("status_callback_events") => "Callback-Events",
        "ring_timeout" => "Ring-Timeout",
        "machine_detection" => "Machine-Detection",
        "early_media" => "Early-Media",
        "at" => "At",
        "not_after" => "Not-After",
        "priority" => "Priority",
        "retry.max_attempts" => "Retry-Attempts",
        "retry.delay_secs" => "Retry-Delay",
        other if other.starts_with("retry.on") => "Retry-On",
        other => {
            return other
                .strip_prefix("vars.")
                .map_or_else(|| other.to_owned(), |v| format!("Var-{v}"));
        }
    };
    key.to_owned()
}

/// The `Key: value` block at the start of `body`, as (key as written, value).
pub fn body_fields(body: &str) -> Result<Vec<(String, String)>, FieldError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let lines = body
        .lines()
        .enumerate()
        .skip_while(|(_, l)| l.trim().is_empty());
    for (index, line) in lines {
        if line.trim().is_empty() || line == "-- " || line == "--" {
            break;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, value)) => {
                    value.push_str(line.trim());
                    continue;
                }
                None => break,
            }
        }
        let parsed = line
            .split_once(':')
            .filter(|(key, _)| !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()));
        match parsed {
            Some((key, value)) if canonical(key).is_some() => {
                fields.push((key.to_owned(), value.trim().to_owned()));
            }
            // Free text: the body carries no fields.
            _ if fields.is_empty() => return Ok(Vec::new()),
            _ => {
                let shown: String = line.chars().take(60).collect();
                return Err(FieldError::new(
                    "",
                    Rule::Unknown,
                    format!(
                        "body line {} {shown:?} is not a request field; use Key: value lines with the keys {} or Var-<name>, and a blank line before any other text",
                        index + 1,
                        KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(fields)
}

/// Reads `fields` (headers first, then the body's) into a request.
pub fn read(fields: &[(String, String)], max_calls: usize) -> Result<EmailRequest, FieldError> {
    if fields.len() > MAX_FIELDS {
        return Err(FieldError::new(
            "",
            Rule::Range,
            format!("the message has more than {MAX_FIELDS} request fields"),
        ));
    }
    let mut request = EmailRequest::default();
    let mut seen: Vec<String> = Vec::new();
    let mut retry = RetrySpec::default();
    let mut vars = Map::new();
    for (written, value) in fields {
        let key = canonical(written).ok_or_else(|| {
            FieldError::new(
                format!("X-Outdial-{written}"),
                Rule::Unknown,
                format!(
                    "is not a request field; use X-Outdial- with {} or Var-<name>",
                    KEYS.join(", ")
                ),
            )
        })?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(FieldError::new(
                key,
                Rule::Range,
                format!("is longer than {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if key != "Destination" {
            let folded = key.to_ascii_lowercase();
            if seen.contains(&folded) {
                return Err(FieldError::new(
                    key,
                    Rule::Duplicate,
                    "is given twice (in the headers or the body); give it once",
                ));
            }
            seen.push(folded);
        }
        let value = value.clone();
        let common = &mut request.common;
        match key.as_str() {
            "Destination" => {
                for to in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if request.destinations.len() == max_calls {
                        return Err(FieldError::new(
                            "Destination",
                            Rule::Range,
                            format!(
                                "lists more than {max_calls} destinations; send the others in another message"
                            ),
                        ));
                    }
                    request.destinations.push(to.to_owned());
                }
            }
            "Application" => request.application = Some(value),
            "At" => common.at = Some(date_time(&key, &value)?),
            "Not-After" => common.not_after = Some(date_time(&key, &value)?),
            "Priority" => common.priority = Some(whole(&key, &value)?),
            "Caller-Id" => common.from = Some(value),
            "Callback" => common.status_callback = Some(value),
            "Callback-Events" => {
                common.status_callback_events = Some(
                    value
                        .split(',')
                        .map(|name| name.trim().to_ascii_lowercase())
                        .filter(|name| !name.is_empty())
                        .collect(),
                );
            }
            "Ring-Timeout" => common.ring_timeout_secs = Some(whole(&key, &value)?),
            "Machine-Detection" => {
                common.machine_detection =
                    Some(value.trim().to_ascii_lowercase().replace('-', "_"));
            }
            "Early-Media" => common.early_media = yes_or_no(&key, &value)?,
            "Retry-Attempts" => retry.max_attempts = Some(whole(&key, &value)?),
            "Retry-Delay" => retry.delay_secs = Some(whole(&key, &value)?),
            "Retry-On" => retry.on = Some(retry_on(&value)?),
            "Result-Mail" => request.result_mail = yes_or_no(&key, &value)?,
            _ => {
                let name = key.get(4..).unwrap_or_default().to_owned();
                vars.insert(name, Value::String(value));
            }
        }
    }
    if retry != RetrySpec::default() {
        request.common.retry = Some(retry);
    }
    request.common.vars = vars;
    Ok(request)
}

fn yes_or_no(key: &str, value: &str) -> Result<bool, FieldError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(FieldError::new(
            key,
            Rule::Type,
            format!("must be yes or no, not {value:?}"),
        )),
    }
}

fn whole(key: &str, value: &str) -> Result<u64, FieldError> {
    value.parse().map_err(|_| {
        FieldError::new(
            key,
            Rule::Type,
            format!("must be a whole number ≥ 0, not {value:?}"),
        )
    })
}

fn date_time(key: &str, value: &str) -> Result<OffsetDateTime, FieldError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        FieldError::new(
            key,
            Rule::DateTime,
            format!(
                "must be an RFC 3339 date-time with a zone, like 2026-12-24T09:30:00+01:00, not {value:?}"
            ),
        )
    })
}

fn retry_on(value: &str) -> Result<Vec<RetryOn>, FieldError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|outcome| {
            RetryOn::parse(outcome).ok_or_else(|| {
                FieldError::new(
                    "Retry-On",
                    Rule::Type,
                    format!(
                        "lists {outcome:?}; use busy, no-answer and failed, separated by commas"
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refusal(list: &[(&str, &str)]) -> (String, Rule) {
        read(&pairs(list), 100)
            .err()
            .map_or((String::new(), Rule::Object), |e| (e.field, e.rule))
    }

    #[test]
    fn every_field_is_read() {
        let request = read(
            &pairs(&[
                ("destination", "sip:a@127.0.0.1, +15550001"),
                ("DESTINATION", "sip:b@127.0.0.1"),
                ("Application", "http://x/app.vxml"),
                ("At", "2026-12-24T09:30:00+01:00"),
                ("Not-After", "2026-12-24T12:00:00Z"),
                ("Priority", "9"),
                ("Caller-Id", "+15550100"),
                ("Callback", "http://x/cb"),
                ("Callback-Events", "In-Progress, final"),
                ("Machine-Detection", "Wait-For-Beep"),
                ("Early-Media", "yes"),
                ("Ring-Timeout", "20"),
                ("Retry-Attempts", "3"),
                ("Retry-Delay", "120"),
                ("Retry-On", "busy, no-answer"),
                ("Var-firstName", "Renée"),
            ]),
            100,
        )
        .unwrap_or_default();
        assert_eq!(
            request.destinations,
            ["sip:a@127.0.0.1", "+15550001", "sip:b@127.0.0.1"]
        );
        assert_eq!(request.application.as_deref(), Some("http://x/app.vxml"));
        let c = &request.common;
        assert_eq!(c.at.map(|t| t.unix_timestamp()), Some(1_798_101_000));
        assert_eq!((c.priority, c.ring_timeout_secs), (Some(9), Some(20)));
        assert_eq!(c.from.as_deref(), Some("+15550100"));
        assert_eq!(c.status_callback.as_deref(), Some("http://x/cb"));
        assert_eq!(c.machine_detection.as_deref(), Some("wait_for_beep"));
        assert!(c.early_media);
        assert_eq!(
            c.status_callback_events.as_deref(),
            Some(&["in-progress".to_owned(), "final".to_owned()][..])
        );
        let retry = c.retry.clone().unwrap_or_default();
        assert_eq!((retry.max_attempts, retry.delay_secs), (Some(3), Some(120)));
        assert_eq!(retry.on, Some(vec![RetryOn::Busy, RetryOn::NoAnswer]));
        assert_eq!(c.vars.get("firstName"), Some(&Value::from("Renée")));
        let calls = request.calls("http://x/app.vxml");
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1].to, "+15550001");
        assert_eq!(calls[1].url, "http://x/app.vxml");
        assert_eq!(calls[1].priority, Some(9));
    }

    #[test]
    fn refusals_name_the_key_and_rule() {
        assert_eq!(
            refusal(&[("Destinaton", "x")]),
            ("X-Outdial-Destinaton".into(), Rule::Unknown)
        );
        assert_eq!(
            refusal(&[("Priority", "1"), ("priority", "2")]),
            ("Priority".into(), Rule::Duplicate)
        );
        assert_eq!(
            refusal(&[("Priority", "high")]),
            ("Priority".into(), Rule::Type)
        );
        assert_eq!(
            refusal(&[("Priority", "-1")]),
            ("Priority".into(), Rule::Type)
        );
        assert_eq!(
            refusal(&[("At", "tomorrow at 9")]),
            ("At".into(), Rule::DateTime)
        );
        assert_eq!(
            refusal(&[("Retry-On", "busy, maybe")]),
            ("Retry-On".into(), Rule::Type)
        );
        assert_eq!(
            refusal(&[("Var-x", "1"), ("var-x", "2")]),
            ("Var-x".into(), Rule::Duplicate)
        );
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(refusal(&[("Var-x", &long)]), ("Var-x".into(), Rule::Range));
        let many = ["sip:a@b"; 3].join(",");
        assert_eq!(
            read(&pairs(&[("Destination", &many)]), 2)
                .err()
                .map(|e| e.rule),
            Some(Rule::Range)
        );
    }

    #[test]
    fn the_body_block_ends_at_a_blank_line_and_may_be_absent() {
        let body = "\r\nDestination: sip:a@b\r\nApplication: http://x/\r\n  long/app.vxml\r\nVar-n: 1\r\n\r\nThanks,\r\nDestination: ignored\r\n";
        assert_eq!(
            body_fields(body).unwrap_or_default(),
            pairs(&[
                ("Destination", "sip:a@b"),
                ("Application", "http://x/long/app.vxml"),
                ("Var-n", "1")
            ])
        );
        assert_eq!(
            body_fields("Destination: sip:a@b\n-- \nPriority: 1\n").unwrap_or_default(),
            pairs(&[("Destination", "sip:a@b")])
        );
        assert_eq!(
            body_fields("Hello: there\nDestination: x\n"),
            Ok(Vec::new())
        );
        assert_eq!(body_fields("Hi,\nplease call"), Ok(Vec::new()));
        let typo = body_fields("Destination: sip:a@b\nPriorty: 3\n");
        assert_eq!(typo.err().map(|e| e.rule), Some(Rule::Unknown));
    }

    #[test]
    fn validator_fields_read_as_email_keys() {
        assert_eq!(email_key("to"), "Destination");
        assert_eq!(email_key("retry.on[1]"), "Retry-On");
        assert_eq!(email_key("vars.first"), "Var-first");
        assert_eq!(email_key(""), "");
    }
}
