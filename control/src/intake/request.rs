//! The canonical call request: what every intake (HTTP, e-mail, batch and campaign rows)
//! reformats a request into before the one validator sees it.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::model::RetryOn;

/// A request for one call, as its sender wrote it, before validation.
///
/// Types are already right (an intake refuses a string where a number belongs); the rules
/// (is `to` dialable, is `at` before `not_after`, ...) are the validator's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallRequest {
    /// A `sip:` URI, or an E.164 number (`+15551234567`) routed to the trunk.
    pub to: String,
    /// The VoiceXML application: an absolute http(s) URL.
    pub url: String,
    /// The caller: a `sip:` URI or an E.164 number.
    pub from: Option<String>,
    /// Values the application reads as `session.NAME`.
    pub vars: Map<String, Value>,
    /// Absolute http(s) URL that receives the record on every status change.
    pub status_callback: Option<String>,
    /// The status changes `status_callback` hears about, as written (every one when `None`).
    pub status_callback_events: Option<Vec<String>>,
    /// Seconds to ring before giving up.
    pub ring_timeout_secs: Option<u64>,
    /// When to place the call.
    pub at: Option<OffsetDateTime>,
    /// Past this time, a call not yet placed ends `expired`.
    pub not_after: Option<OffsetDateTime>,
    /// 0–9, 9 first.
    pub priority: Option<u64>,
    /// Retries by outcome.
    pub retry: Option<RetrySpec>,
    /// Answering-machine detection mode, as written (`off` when `None`).
    pub machine_detection: Option<String>,
    /// Start the application on early media (a 183 with SDP) instead of at the answer.
    pub early_media: bool,
}

/// `retry` as written: every part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetrySpec {
    /// Attempts in all, the first included.
    pub max_attempts: Option<u64>,
    /// Seconds between attempts.
    pub delay_secs: Option<u64>,
    /// Outcomes retried, as written (duplicates are the validator's to refuse).
    pub on: Option<Vec<RetryOn>>,
}
