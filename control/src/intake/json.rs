//! The HTTP intake: a JSON object (`POST /v1/calls`, or one item of a batch) → [`CallRequest`].
//!
//! Only types and syntax are checked here (a string where a string belongs, an RFC 3339 time);
//! the rules are [`super::Validator`]'s, shared with every other intake.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::refusal::{FieldError, Rule};
use super::request::{CallRequest, RetrySpec};
use crate::model::RetryOn;

/// The fields a call request may have.
pub const CALL_FIELDS: [&str; 13] = [
    "to",
    "url",
    "from",
    "vars",
    "status_callback",
    "status_callback_events",
    "machine_detection",
    "early_media",
    "ring_timeout",
    "at",
    "not_after",
    "priority",
    "retry",
];

/// The fields of `retry`.
const RETRY_FIELDS: [&str; 3] = ["max_attempts", "delay_secs", "on"];

/// Parses a request body: JSON text holding one object.
pub fn parse_body(body: &[u8]) -> Result<CallRequest, FieldError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::new("", Rule::Object, format!("the body is not JSON: {e}")))?;
    from_value(value)
}

/// Reads one call request from a JSON value (an object).
pub fn from_value(value: Value) -> Result<CallRequest, FieldError> {
    let Value::Object(mut fields) = value else {
        return Err(FieldError::new(
            "",
            Rule::Object,
            format!("a call request must be a JSON object, not {}", kind(&value)),
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !CALL_FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(
            unknown.clone(),
            Rule::Unknown,
            format!(
                "is not a field of a call request; use {}",
                CALL_FIELDS.join(", ")
            ),
        ));
    }
    let to = optional_string(&mut fields, "to")?
        .ok_or_else(|| FieldError::new("to", Rule::Required, "is required"))?;
    let url = optional_string(&mut fields, "url")?
        .ok_or_else(|| FieldError::new("url", Rule::Required, "is required"))?;
    let vars = match fields.remove("vars") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(vars)) => vars,
        Some(other) => return Err(wrong_type("vars", "an object", &other)),
    };
    Ok(CallRequest {
        to,
        url,
        from: optional_string(&mut fields, "from")?,
        vars,
        status_callback: optional_string(&mut fields, "status_callback")?,
        status_callback_events: optional_strings(&mut fields, "status_callback_events")?,
        ring_timeout_secs: optional_count(&mut fields, "ring_timeout", "ring_timeout")?,
        machine_detection: optional_string(&mut fields, "machine_detection")?,
        early_media: match fields.remove("early_media") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(early)) => early,
            Some(other) => return Err(wrong_type("early_media", "true or false", &other)),
        },
        at: optional_time(&mut fields, "at")?,
        not_after: optional_time(&mut fields, "not_after")?,
        priority: optional_count(&mut fields, "priority", "priority")?,
        retry: match fields.remove("retry") {
            None | Some(Value::Null) => None,
            Some(Value::Object(retry)) => Some(retry_spec(retry)?),
            Some(other) => return Err(wrong_type("retry", "an object", &other)),
        },
    })
}

fn retry_spec(mut fields: Map<String, Value>) -> Result<RetrySpec, FieldError> {
    if let Some(unknown) = fields.keys().find(|k| !RETRY_FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(
            format!("retry.{unknown}"),
            Rule::Unknown,
            "is not a field of retry; use max_attempts, delay_secs, on",
        ));
    }
    let on = match fields.remove("on") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut on = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("retry.on[{i}]");
                let outcome = item.as_str().and_then(RetryOn::parse).ok_or_else(|| {
                    FieldError::new(
                        field,
                        Rule::Type,
                        format!("must be \"busy\", \"no-answer\" or \"failed\", not {item}"),
                    )
                })?;
                on.push(outcome);
            }
            Some(on)
        }
        Some(other) => return Err(wrong_type("retry.on", "an array", &other)),
    };
    Ok(RetrySpec {
        max_attempts: optional_count(&mut fields, "max_attempts", "retry.max_attempts")?,
        delay_secs: optional_count(&mut fields, "delay_secs", "retry.delay_secs")?,
        on,
    })
}

/// An array of strings, if present and not null.
fn optional_strings(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<Vec<String>>, FieldError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text),
                other => Err(wrong_type(&format!("{name}[{i}]"), "a string", &other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(wrong_type(name, "an array", &other)),
    }
}

fn optional_string(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, FieldError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(name, "a string", &other)),
    }
}

/// A whole number ≥ 0 (ranges are the validator's). As in JSON Schema, `166.0` is the whole
/// number 166; `166.5` and numbers past 2^53 written with a fraction are refused.
fn optional_count(
    fields: &mut Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<u64>, FieldError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => whole(&n).map(Some).ok_or_else(|| {
            FieldError::new(
                path,
                Rule::Type,
                format!("must be a whole number ≥ 0, not {n}"),
            )
        }),
        Some(other) => Err(wrong_type(path, "a whole number", &other)),
    }
}

/// `n` as a whole number ≥ 0 (see [`whole_number`]).
fn whole(n: &serde_json::Number) -> Option<u64> {
    whole_number(n).and_then(|n| u64::try_from(n).ok())
}

/// `n` as a whole number: an integer, or a float with no fraction that is exactly
/// representable (magnitude below 2^53), as JSON writers that know only doubles send them.
pub fn whole_number(n: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < EXACT)
            .map(|f| f as i64)
    })
}

fn optional_time(
    fields: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<OffsetDateTime>, FieldError> {
    match optional_string(fields, name)? {
        None => Ok(None),
        Some(text) => OffsetDateTime::parse(&text, &Rfc3339).map(Some).map_err(|_| {
            FieldError::new(
                name,
                Rule::DateTime,
                format!(
                    "must be an RFC 3339 date-time with a zone, like 2026-12-24T09:30:00+01:00, not {text:?}"
                ),
            )
        }),
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(
        field,
        Rule::Type,
        format!("must be {expected}, not {}", kind(got)),
    )
}

/// The JSON type of `value`, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(value: Value) -> (String, Rule) {
        let e = from_value(value)
            .err()
            .unwrap_or_else(|| FieldError::new("-", Rule::Object, ""));
        (e.field, e.rule)
    }

    #[test]
    fn every_field_is_read() {
        let request = from_value(json!({
            "to": "sip:a@127.0.0.1", "url": "http://x/app.vxml", "from": "+15550100",
            "vars": {"n": 1}, "status_callback": "http://x/cb", "ring_timeout": 20,
            "at": "2026-12-24T09:30:00+01:00", "not_after": "2026-12-24T12:00:00Z",
            "priority": 9, "retry": {"max_attempts": 3, "delay_secs": 120, "on": ["busy", "no-answer"]}
        }))
        .unwrap_or_default();
        assert_eq!(request.to, "sip:a@127.0.0.1");
        assert_eq!(request.priority, Some(9));
        assert_eq!(request.ring_timeout_secs, Some(20));
        assert_eq!(request.at.map(|t| t.unix_timestamp()), Some(1_798_101_000));
        let retry = request.retry.unwrap_or_default();
        assert_eq!(retry.on, Some(vec![RetryOn::Busy, RetryOn::NoAnswer]));
        assert_eq!((retry.max_attempts, retry.delay_secs), (Some(3), Some(120)));
    }

    #[test]
    fn whole_numbers_written_as_floats_are_whole_numbers() {
        let request = from_value(json!({
            "to": "sip:a@b", "url": "http://x/", "ring_timeout": 166.0, "priority": 7.0,
            "retry": {"max_attempts": 2.0, "delay_secs": 2504.0}
        }))
        .unwrap_or_default();
        assert_eq!(request.ring_timeout_secs, Some(166));
        assert_eq!(request.priority, Some(7));
        let retry = request.retry.unwrap_or_default();
        assert_eq!(
            (retry.max_attempts, retry.delay_secs),
            (Some(2), Some(2504))
        );
        for bad in [json!(166.5), json!(-1.0), json!(1e300)] {
            let refused =
                from_value(json!({"to": "sip:a@b", "url": "http://x/", "ring_timeout": bad}));
            assert_eq!(
                refused.err().map(|e| (e.field, e.rule)),
                Some(("ring_timeout".to_owned(), Rule::Type)),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusals_name_the_field_and_rule() {
        let base = || json!({"to": "sip:a@b", "url": "http://x/"});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        assert_eq!(refusal(json!([])), (String::new(), Rule::Object));
        assert_eq!(
            refusal(json!({"url": "http://x/"})),
            ("to".into(), Rule::Required)
        );
        assert_eq!(
            refusal(with("bogus", json!(1))),
            ("bogus".into(), Rule::Unknown)
        );
        assert_eq!(refusal(with("to", json!(5))), ("to".into(), Rule::Type));
        assert_eq!(
            refusal(with("priority", json!(-1))),
            ("priority".into(), Rule::Type)
        );
        assert_eq!(
            refusal(with("priority", json!(1.5))),
            ("priority".into(), Rule::Type)
        );
        assert_eq!(
            refusal(with("at", json!("tomorrow"))),
            ("at".into(), Rule::DateTime)
        );
        assert_eq!(
            refusal(with("at", json!("2026-12-24T09:30:00"))),
            ("at".into(), Rule::DateTime),
            "a time without a zone is ambiguous"
        );
        assert_eq!(
            refusal(with("retry", json!({"on": ["busy", "maybe"]}))),
            ("retry.on[1]".into(), Rule::Type)
        );
        assert_eq!(
            refusal(with("retry", json!({"tries": 2}))),
            ("retry.tries".into(), Rule::Unknown)
        );
        assert_eq!(
            refusal(with("vars", json!([]))),
            ("vars".into(), Rule::Type)
        );
    }

    #[test]
    fn null_means_absent() {
        let request = from_value(json!({"to": "sip:a@b", "url": "u", "from": null, "retry": null}));
        assert!(request.is_ok_and(|r| r.from.is_none() && r.retry.is_none()));
    }
}
