//! Why a call request was refused: the field, the rule it broke, and what to do.

use std::fmt;

/// The rule a field broke. Each has a stable wire name (`rule` in the API's error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The body (or a batch item) is not a JSON object.
    Object,
    /// A required field is absent.
    Required,
    /// A field this API does not know.
    Unknown,
    /// The wrong JSON type.
    Type,
    /// Not a SIP URI the endpoint can dial (or use as From).
    SipUri,
    /// A URI scheme Outdial does not dial.
    Scheme,
    /// Not an E.164 number.
    E164,
    /// An E.164 number with no trunk configured to route it.
    Trunk,
    /// Not an absolute http(s) URL.
    HttpUrl,
    /// A variable name the application could not use.
    VarName,
    /// A value out of its range (numbers, lengths, counts).
    Range,
    /// Not an RFC 3339 date-time.
    DateTime,
    /// Times in the wrong order or already past.
    Schedule,
    /// A value listed twice.
    Duplicate,
}

impl Rule {
    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Required => "required",
            Self::Unknown => "unknown",
            Self::Type => "type",
            Self::SipUri => "sip_uri",
            Self::Scheme => "scheme",
            Self::E164 => "e164",
            Self::Trunk => "trunk",
            Self::HttpUrl => "http_url",
            Self::VarName => "var_name",
            Self::Range => "range",
            Self::DateTime => "date_time",
            Self::Schedule => "schedule",
            Self::Duplicate => "duplicate",
        }
    }
}

/// A refused field: `field` is a path (`to`, `retry.on[1]`, `vars.name`, `calls[3].url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Where: the field's path in the request.
    pub field: String,
    /// Which rule it broke.
    pub rule: Rule,
    /// What is wrong and what to send instead, phrased to follow the field name.
    pub problem: String,
}

impl FieldError {
    /// A refusal of `field` under `rule`.
    pub fn new(field: impl Into<String>, rule: Rule, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule,
            problem: problem.into(),
        }
    }

    /// The same refusal, located inside a batch item: `calls[i].field`.
    pub fn in_item(mut self, index: usize) -> Self {
        self.field = if self.field.is_empty() {
            format!("calls[{index}]")
        } else {
            format!("calls[{index}].{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "`{}` {}", self.field, self.problem)
        }
    }
}
