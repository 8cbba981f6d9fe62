//! A call as the API, the store, the runner and webhooks see it.
//!
//! The JSON form of [`CallRecord`] is the one record shape Outdial publishes: the API answers
//! with it, webhooks post it, and `outdial call` prints it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Where a call is in its life. Final statuses never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Accepted and stored; waiting for a dataplane core.
    Queued,
    /// INVITE sent, no provisional response with ringing yet.
    Dialing,
    /// The callee is alerting (180/183 received).
    Ringing,
    /// Answered (2xx); the VoiceXML application is running.
    InProgress,
    /// Answered and ended normally.
    Completed,
    /// The callee was busy (486, 600).
    Busy,
    /// Nobody answered before the ring timeout (or 408/480).
    NoAnswer,
    /// The call could not be placed or broke off.
    Failed,
    /// Canceled through `DELETE /v1/calls/{id}`.
    Canceled,
}

impl CallStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [Self; 9] = [
        Self::Queued,
        Self::Dialing,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Canceled,
    ];

    /// True for statuses a call never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled
        )
    }

    /// True while a dataplane core owns the call (dialing, ringing, in progress).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Dialing | Self::Ringing | Self::InProgress)
    }

    /// The wire name, as in JSON and the store: `"in-progress"`, `"no-answer"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Dialing => "dialing",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for CallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `POST /v1/calls`, as a client sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// A `sip:` URI, or an E.164 number (`+15551234567`) routed to `sip.trunk`.
    pub to: String,
    /// The VoiceXML application: an absolute http(s) URL.
    pub url: String,
    /// The caller: a `sip:` URI or an E.164 number; default `sip.from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Values the application reads as `session.NAME` (and unqualified as `NAME`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub vars: Map<String, Value>,
    /// Absolute http(s) URL that receives the record on every status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// Seconds to ring before giving up; default `calls.ring_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_timeout: Option<u64>,
}

/// Outcomes of an attempt that may be retried (`retry.on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The callee was busy.
    Busy,
    /// Nobody answered.
    NoAnswer,
    /// The attempt failed (unreachable, refused, broke off).
    Failed,
}

impl RetryOn {
    /// Every outcome, in wire order.
    pub const ALL: [Self; 3] = [Self::Busy, Self::NoAnswer, Self::Failed];

    /// The wire name: `busy`, `no-answer`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// How a call is retried: up to `max_attempts` attempts in all, `delay_secs` apart, when an
/// attempt ends in one of `on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 = never retried.
    pub max_attempts: u32,
    /// Seconds between the end of an attempt and the next.
    pub delay_secs: u64,
    /// Outcomes that are retried.
    pub on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            delay_secs: 60,
            on: Vec::new(),
        }
    }
}

/// Priority of a request that gives none (0–9, 9 leaves first).
pub const DEFAULT_PRIORITY: u8 = 5;

/// A validated request, ready to store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewCall {
    /// The tenant whose API key created the call.
    pub tenant: String,
    /// `to` exactly as the request gave it.
    pub to: String,
    /// The SIP URI to dial (`to` itself, or `to` routed through the trunk).
    pub target_uri: String,
    /// The From URI, if the request gave one.
    pub from: Option<String>,
    /// The VoiceXML application URL.
    pub url: String,
    /// Application variables (string, number or boolean values).
    pub vars: Map<String, Value>,
    /// URL to post the record to on each status change.
    pub status_callback: Option<String>,
    /// Ring timeout requested for this call, seconds.
    pub ring_timeout_secs: Option<u64>,
    /// When to place the call; `None` = as soon as possible.
    pub at: Option<OffsetDateTime>,
    /// Past this time a call not yet placed ends `expired`.
    pub not_after: Option<OffsetDateTime>,
    /// 0–9; due calls leave highest priority first.
    pub priority: u8,
    /// Retries by outcome.
    pub retry: RetryPolicy,
}

/// A stored call: the request plus everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Internal row id; the dataplane's call id. Not published.
    #[serde(skip)]
    pub rowid: i64,
    /// Public id: `call_` + 26 base32 characters.
    pub id: String,
    /// Owning tenant. Not published.
    #[serde(skip)]
    pub tenant: String,
    /// Current status.
    pub status: CallStatus,
    /// `to` as given.
    pub to: String,
    /// The SIP URI dialled.
    pub target_uri: String,
    /// The From URI requested, if any.
    pub from: Option<String>,
    /// The VoiceXML application URL.
    pub url: String,
    /// Application variables.
    pub vars: Map<String, Value>,
    /// Webhook URL, if any.
    pub status_callback: Option<String>,
    /// Ring timeout requested, seconds.
    #[serde(rename = "ring_timeout")]
    pub ring_timeout_secs: Option<u64>,
    /// When the request was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When a core took the call and sent the INVITE.
    #[serde(with = "time::serde::rfc3339::option")]
    pub dialed_at: Option<OffsetDateTime>,
    /// When the callee answered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
    /// When the call reached its final status.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Final SIP response code to the INVITE (200, 486, ...), if one arrived.
    pub sip_status: Option<u16>,
    /// How the call ended, as the call runner classifies it.
    pub disposition: Option<String>,
    /// Why the call failed or ended, in words.
    pub reason: Option<String>,
    /// Values the application submitted: `{"name": "value"}`.
    pub result: Option<Value>,
}

/// A change to a stored call; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallUpdate {
    /// New status.
    pub status: Option<CallStatus>,
    /// When the INVITE was sent.
    pub dialed_at: Option<OffsetDateTime>,
    /// When the callee answered.
    pub answered_at: Option<OffsetDateTime>,
    /// When the call ended.
    pub ended_at: Option<OffsetDateTime>,
    /// Final SIP response code.
    pub sip_status: Option<u16>,
    /// How the call ended.
    pub disposition: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// Values the application submitted.
    pub result: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_wire_names_round_trip() {
        for status in CallStatus::ALL {
            let json = serde_json::to_string(&status).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<CallStatus>(&json).ok(), Some(status));
            assert_eq!(CallStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CallStatus::InProgress.as_str(), "in-progress");
        assert_eq!(CallStatus::NoAnswer.as_str(), "no-answer");
        assert_eq!(CallStatus::parse("in_progress"), None);
    }

    #[test]
    fn final_and_live_partition_the_non_queued_statuses() {
        for status in CallStatus::ALL {
            let classes = [
                status == CallStatus::Queued,
                status.is_live(),
                status.is_final(),
            ];
            assert_eq!(classes.iter().filter(|c| **c).count(), 1, "{status}");
        }
    }

    #[test]
    fn record_json_hides_internal_fields_and_uses_rfc3339() {
        let record = CallRecord {
            rowid: 7,
            id: "call_x".into(),
            tenant: "acme".into(),
            status: CallStatus::InProgress,
            to: "+15550001".into(),
            target_uri: "sip:+15550001@192.0.2.1".into(),
            from: None,
            url: "https://example.com/app.vxml".into(),
            vars: Map::new(),
            status_callback: None,
            ring_timeout_secs: Some(20),
            created_at: time::macros::datetime!(2026-11-24 12:00:00.5 UTC),
            dialed_at: None,
            answered_at: None,
            ended_at: None,
            sip_status: Some(200),
            disposition: None,
            reason: None,
            result: None,
        };
        let json = serde_json::to_value(&record).unwrap_or_default();
        assert_eq!(json["status"], "in-progress");
        assert_eq!(json["created_at"], "2026-11-24T12:00:00.5Z");
        assert_eq!(json["ring_timeout"], 20);
        assert!(json.get("rowid").is_none() && json.get("tenant").is_none());
        assert!(json["answered_at"].is_null());
        let back: Option<CallRecord> = serde_json::from_value(json).ok();
        assert_eq!(
            back.map(|r| (r.id, r.created_at)),
            Some((record.id, record.created_at))
        );
    }
}
