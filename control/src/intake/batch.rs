//! `POST /v1/calls/batch`: up to [`MAX_BATCH`] call requests in one body.
//!
//! `{"mode": "all_or_nothing" | "per_item", "calls": [ {...}, ... ]}`. In `all_or_nothing`
//! (the default) one refused item refuses the whole batch and nothing is stored; in `per_item`
//! every valid item is stored and each refused one is reported by its index.

use serde_json::Value;

use super::json::{self, kind};
use super::refusal::{FieldError, Rule};
use super::request::CallRequest;

/// Most requests in one batch.
pub const MAX_BATCH: usize = 10_000;

/// Largest batch body, bytes (16 MiB: 10,000 requests of about 1.6 KB each).
pub const MAX_BATCH_BODY_BYTES: usize = 16 << 20;

/// What to do when some items are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// Any refusal refuses the batch; nothing is stored.
    #[default]
    AllOrNothing,
    /// Valid items are stored; refused ones are reported each.
    PerItem,
}

impl BatchMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllOrNothing => "all_or_nothing",
            Self::PerItem => "per_item",
        }
    }
}

/// A parsed batch: its mode and each item, read or refused (paths are `calls[i].field`).
#[derive(Debug)]
pub struct Batch {
    /// How refusals are handled.
    pub mode: BatchMode,
    /// Every item, in order.
    pub items: Vec<Result<CallRequest, FieldError>>,
}

/// Parses a batch body. Errors here concern the batch itself (not JSON, no `calls`, too many).
pub fn parse_body(body: &[u8]) -> Result<Batch, FieldError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::new("", Rule::Object, format!("the body is not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(FieldError::new(
            "",
            Rule::Object,
            format!("a batch must be a JSON object, not {}", kind(&value)),
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["mode", "calls"].contains(&k.as_str()))
    {
        return Err(FieldError::new(
            unknown.clone(),
            Rule::Unknown,
            "is not a field of a batch; use mode and calls",
        ));
    }
    let mode = match fields.remove("mode") {
        None | Some(Value::Null) => BatchMode::default(),
        Some(Value::String(s)) if s == "all_or_nothing" => BatchMode::AllOrNothing,
        Some(Value::String(s)) if s == "per_item" => BatchMode::PerItem,
        Some(other) => {
            return Err(FieldError::new(
                "mode",
                Rule::Type,
                format!("must be \"all_or_nothing\" or \"per_item\", not {other}"),
            ));
        }
    };
    let calls = match fields.remove("calls") {
        Some(Value::Array(calls)) => calls,
        None | Some(Value::Null) => {
            return Err(FieldError::new("calls", Rule::Required, "is required"));
        }
        Some(other) => {
            return Err(FieldError::new(
                "calls",
                Rule::Type,
                format!("must be an array, not {}", kind(&other)),
            ));
        }
    };
    if calls.is_empty() || calls.len() > MAX_BATCH {
        return Err(FieldError::new(
            "calls",
            Rule::Range,
            format!("has {} items; send 1 to {MAX_BATCH}", calls.len()),
        ));
    }
    let items = calls
        .into_iter()
        .enumerate()
        .map(|(i, item)| json::from_value(item).map_err(|e| e.in_item(i)))
        .collect();
    Ok(Batch { mode, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_in_order_and_refusals_carry_their_index() {
        let body = br#"{"mode":"per_item","calls":[{"to":"sip:a@b","url":"http://x/"},{"url":"http://x/"}]}"#;
        let batch = parse_body(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(batch.mode, BatchMode::PerItem);
        assert!(batch.items[0].is_ok());
        let refused = batch.items[1]
            .as_ref()
            .err()
            .map(|e| (e.field.clone(), e.rule));
        assert_eq!(refused, Some(("calls[1].to".to_owned(), Rule::Required)));
    }

    #[test]
    fn the_batch_itself_is_checked() {
        let refused = |body: &[u8]| parse_body(body).err().map(|e| (e.field, e.rule));
        assert_eq!(refused(b"[]"), Some((String::new(), Rule::Object)));
        assert_eq!(refused(b"{}"), Some(("calls".into(), Rule::Required)));
        assert_eq!(
            refused(br#"{"calls":[]}"#),
            Some(("calls".into(), Rule::Range))
        );
        assert_eq!(
            refused(br#"{"calls":[{}],"mode":"some"}"#),
            Some(("mode".into(), Rule::Type))
        );
        let too_many = format!("{{\"calls\":[{}]}}", vec!["{}"; MAX_BATCH + 1].join(","));
        assert_eq!(
            refused(too_many.as_bytes()),
            Some(("calls".into(), Rule::Range))
        );
        let item = refused(br#"{"calls":[5]}"#);
        assert_eq!(
            item, None,
            "an item's problem is reported per item, not for the batch"
        );
    }
}
