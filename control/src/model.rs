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
    /// Not placed before its `not_after` time.
    Expired,
    /// Not placed: a policy refused it after acceptance (an opt-out recorded meanwhile, or
    /// calling windows that never open together); the event names the owner and rule.
    Refused,
}

impl CallStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [Self; 11] = [
        Self::Queued,
        Self::Dialing,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
        Self::Refused,
    ];

    /// True for statuses a call never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Busy
                | Self::NoAnswer
                | Self::Failed
                | Self::Canceled
                | Self::Expired
                | Self::Refused
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
            Self::Expired => "expired",
            Self::Refused => "refused",
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
    /// The status changes `status_callback` hears about ([`CallbackEvents::NAMES`]); every one
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback_events: Option<Vec<String>>,
    /// Seconds to ring before giving up; default `calls.ring_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_timeout: Option<u64>,
    /// Answering-machine detection ([`MachineDetection::NAMES`]); `off` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_detection: Option<String>,
    /// Start the application on early media (a 183 with SDP) instead of at the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early_media: bool,
}

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
    /// The status changes posted to `status_callback`.
    pub status_callback_events: CallbackEvents,
    /// Ring timeout requested for this call, seconds.
    pub ring_timeout_secs: Option<u64>,
    /// When to place the call; `None` = now.
    pub at: Option<OffsetDateTime>,
    /// Past this, a call not yet placed ends `expired`.
    pub not_after: Option<OffsetDateTime>,
    /// 0–9; due calls with a higher priority leave first ([`DEFAULT_PRIORITY`] by default).
    pub priority: u8,
    /// When to try again after an unsuccessful attempt.
    pub retry: RetryPolicy,
    /// Whether and how the answer is classified as a person or a machine.
    pub machine_detection: MachineDetection,
    /// Start the application on early media (a 183 with SDP) instead of at the answer.
    pub early_media: bool,
    /// `Inbound` only for a caller's call, stored already claimed
    /// ([`crate::store::CallStore::take_incoming`]).
    pub direction: Direction,
}

/// Priority of a call whose request gives none.
pub const DEFAULT_PRIORITY: u8 = 5;

/// Which outcomes of an attempt are worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The callee was busy.
    Busy,
    /// Nobody answered.
    NoAnswer,
    /// The call could not be placed.
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
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The outcome an attempt that ended in `status` counts as, if any.
    pub fn of(status: CallStatus) -> Option<Self> {
        match status {
            CallStatus::Busy => Some(Self::Busy),
            CallStatus::NoAnswer => Some(Self::NoAnswer),
            CallStatus::Failed => Some(Self::Failed),
            _ => None,
        }
    }
}

/// `retry` of a request: up to `max_attempts` attempts, `delay_secs` apart, after the
/// outcomes listed in `on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all; 1 = no retry.
    pub max_attempts: u32,
    /// Seconds between the end of an attempt and the next.
    pub delay_secs: u64,
    /// Outcomes that lead to another attempt.
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

/// What happens to a call after an attempt: it ends, or it waits for another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The call ends with this status.
    Final {
        /// The call's final status.
        status: CallStatus,
    },
    /// The call goes back to `queued`, due at `at`.
    Retry {
        /// When the next attempt is due.
        at: OffsetDateTime,
    },
}

impl RetryPolicy {
    /// The retry rule: another attempt when `on` lists the attempt's outcome and fewer than
    /// `max_attempts` attempts were made (and the retry would not fall after `not_after`).
    pub fn next(
        &self,
        outcome: CallStatus,
        attempts: u32,
        ended_at: OffsetDateTime,
        not_after: Option<OffsetDateTime>,
    ) -> Next {
        let listed = RetryOn::of(outcome).is_some_and(|o| self.on.contains(&o));
        let delay = time::Duration::seconds(i64::try_from(self.delay_secs).unwrap_or(i64::MAX));
        let at = ended_at.checked_add(delay);
        match at {
            Some(at)
                if listed
                    && attempts < self.max_attempts
                    && not_after.is_none_or(|limit| at <= limit) =>
            {
                Next::Retry { at }
            }
            _ => Next::Final { status: outcome },
        }
    }
}

/// Which status changes a call's `status_callback` is told about: any of `queued` (a retry
/// waiting for its next attempt), `dialing`, `ringing`, `in-progress`, and `final` (whichever
/// final status the call ends in). Every one by default. A client that only wants the outcome
/// asks for `["final"]`: one delivery per call instead of four or more, and one outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackEvents(u8);

impl CallbackEvents {
    /// The names a request may give, in life-cycle order.
    pub const NAMES: [&'static str; 5] = ["queued", "dialing", "ringing", "in-progress", "final"];
    /// Every status change (the default).
    pub const ALL: Self = Self(0b1_1111);

    /// The bit of one name of [`Self::NAMES`].
    fn bit(name: &str) -> Option<u8> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| 1 << i)
    }

    /// The set naming exactly `names`, or the first name that is not one of [`Self::NAMES`].
    /// An empty list is the empty set (the validator refuses it).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, &'a str> {
        names.into_iter().try_fold(Self(0), |set, name| {
            Self::bit(name).map(|bit| Self(set.0 | bit)).ok_or(name)
        })
    }

    /// Whether no status change is included.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every status change is included.
    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }

    /// Whether a change to `status` is called back.
    pub fn includes(self, status: CallStatus) -> bool {
        let name = if status.is_final() {
            "final"
        } else {
            status.as_str()
        };
        Self::bit(name).is_some_and(|bit| self.0 & bit != 0)
    }

    /// The names included, in life-cycle order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| name)
    }

    /// The stored form: the names joined by commas.
    pub fn to_text(self) -> String {
        self.names().collect::<Vec<_>>().join(",")
    }

    /// Reads [`Self::to_text`]'s form back.
    pub fn from_text(text: &str) -> Option<Self> {
        Self::from_names(text.split(',').filter(|n| !n.is_empty())).ok()
    }
}

impl Default for CallbackEvents {
    fn default() -> Self {
        Self::ALL
    }
}

impl Serialize for CallbackEvents {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for CallbackEvents {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        Self::from_names(names.iter().map(String::as_str)).map_err(|name| {
            serde::de::Error::custom(format!(
                "`{name}` is not a callback event; use {}",
                Self::NAMES.join(", ")
            ))
        })
    }
}

/// Which way a call went: placed by Outdial on request, or taken from a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Placed on a request (API, e-mail, campaign).
    #[default]
    Outbound,
    /// A caller's INVITE to one of the `[[inbound]]` numbers.
    Inbound,
}

impl Direction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// What a call does about answering machines (`machine_detection` in a request). Every mode
/// but `off` holds the application back after the answer until the first seconds of the
/// callee's audio are classified (`docs/amd.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineDetection {
    /// No detection: the application starts at the answer.
    #[default]
    Off,
    /// Classify, then start the application whatever answered; it reads the verdict from
    /// `session.connection.outdial.answered_by`.
    Detect,
    /// Classify; hang up on a machine (the call ends `completed`, answered by `machine`), start
    /// the application for anyone else.
    Hangup,
    /// Classify; for a machine, wait for the end of its beep (or of the greeting when no beep
    /// comes) before starting the application, so a message lands on the recording.
    WaitForBeep,
}

impl MachineDetection {
    /// The names a request may give.
    pub const NAMES: [&'static str; 4] = ["off", "detect", "hangup", "wait_for_beep"];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Detect => "detect",
            Self::Hangup => "hangup",
            Self::WaitForBeep => "wait_for_beep",
        }
    }

    /// Reads a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "off" => Self::Off,
            "detect" => Self::Detect,
            "hangup" => Self::Hangup,
            "wait_for_beep" => Self::WaitForBeep,
            _ => return None,
        })
    }

    /// Whether this is [`Self::Off`] (omitted from records).
    pub fn is_off(&self) -> bool {
        *self == Self::Off
    }
}

/// A stored call: the request plus everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Public id: `call_` + 26 base32 characters, time-ordered (`auth::time_ordered_base32`).
    pub id: String,
    /// Owning tenant. Not published.
    #[serde(skip)]
    pub tenant: String,
    /// Current status.
    pub status: CallStatus,
    /// `outbound` (placed on request) or `inbound` (a caller's).
    #[serde(default)]
    pub direction: Direction,
    /// `to` as given; for an incoming call, the number called.
    pub to: String,
    /// The SIP URI dialled; for an incoming call, the caller's From URI.
    pub target_uri: String,
    /// The From URI requested, if any.
    pub from: Option<String>,
    /// The VoiceXML application URL.
    pub url: String,
    /// Application variables.
    pub vars: Map<String, Value>,
    /// Webhook URL, if any.
    pub status_callback: Option<String>,
    /// The status changes `status_callback` is told about (omitted when every one is).
    #[serde(default, skip_serializing_if = "CallbackEvents::is_all")]
    pub status_callback_events: CallbackEvents,
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
    /// When the call is (next) due to be placed.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// Past this, a call not yet placed ends `expired`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// 0–9, higher leaves first.
    pub priority: u8,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Attempts made so far (each has its own CDR).
    pub attempts: u32,
    /// SIP Call-ID of the latest attempt, when the dataplane reported one.
    pub sip_call_id: Option<String>,
    /// Answering-machine detection asked for (omitted when `off`).
    #[serde(default, skip_serializing_if = "MachineDetection::is_off")]
    pub machine_detection: MachineDetection,
    /// The application starts on early media, when the callee's network sends it (omitted
    /// when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early_media: bool,
    /// Who answered the latest attempt, when machine detection classified it: `human`,
    /// `machine` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_events_name_statuses_and_round_trip() {
        let final_only = CallbackEvents::from_names(["final"]).unwrap_or_default();
        assert!(!final_only.is_all());
        for status in CallStatus::ALL {
            assert_eq!(final_only.includes(status), status.is_final(), "{status}");
            assert!(CallbackEvents::ALL.includes(status), "{status}");
        }
        let answered = CallbackEvents::from_names(["in-progress", "dialing"]).unwrap_or_default();
        assert!(answered.includes(CallStatus::InProgress));
        assert!(answered.includes(CallStatus::Dialing));
        assert!(!answered.includes(CallStatus::Ringing));
        assert!(!answered.includes(CallStatus::Completed));
        assert_eq!(answered.to_text(), "dialing,in-progress");
        assert_eq!(
            CallbackEvents::from_text(&answered.to_text()),
            Some(answered)
        );
        assert_eq!(
            serde_json::to_value(answered).ok(),
            Some(serde_json::json!(["dialing", "in-progress"]))
        );
        assert_eq!(
            serde_json::from_value::<CallbackEvents>(serde_json::json!(["final"])).ok(),
            Some(final_only)
        );
        assert!(serde_json::from_value::<CallbackEvents>(serde_json::json!(["done"])).is_err());
        assert_eq!(
            CallbackEvents::from_names(["ringing", "answered"]),
            Err("answered")
        );
        assert!(CallbackEvents::from_names([]).is_ok_and(CallbackEvents::is_empty));
        assert_eq!(
            CallbackEvents::from_text(&CallbackEvents::ALL.to_text()),
            Some(CallbackEvents::ALL)
        );
    }

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
    fn retry_rule_needs_a_listed_outcome_and_attempts_left() {
        let t0 = time::macros::datetime!(2026-11-24 12:00:00 UTC);
        let policy = RetryPolicy {
            max_attempts: 3,
            delay_secs: 30,
            on: vec![RetryOn::Busy, RetryOn::NoAnswer],
        };
        let later = t0 + time::Duration::seconds(30);
        assert_eq!(
            policy.next(CallStatus::Busy, 1, t0, None),
            Next::Retry { at: later }
        );
        assert_eq!(
            policy.next(CallStatus::NoAnswer, 2, t0, None),
            Next::Retry { at: later }
        );
        let last = policy.next(CallStatus::Busy, 3, t0, None);
        assert_eq!(
            last,
            Next::Final {
                status: CallStatus::Busy
            }
        );
        let unlisted = policy.next(CallStatus::Failed, 1, t0, None);
        assert_eq!(
            unlisted,
            Next::Final {
                status: CallStatus::Failed
            }
        );
        let done = policy.next(CallStatus::Completed, 1, t0, None);
        assert_eq!(
            done,
            Next::Final {
                status: CallStatus::Completed
            }
        );
        let too_late = policy.next(
            CallStatus::Busy,
            1,
            t0,
            Some(t0 + time::Duration::seconds(10)),
        );
        assert_eq!(
            too_late,
            Next::Final {
                status: CallStatus::Busy
            }
        );
        let none = RetryPolicy::default().next(CallStatus::Busy, 1, t0, None);
        assert_eq!(
            none,
            Next::Final {
                status: CallStatus::Busy
            }
        );
        let wire: Vec<_> = RetryOn::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(wire, ["busy", "no-answer", "failed"]);
        assert_eq!(
            serde_json::to_value(RetryOn::NoAnswer).ok(),
            Some(Value::from("no-answer"))
        );
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
            id: "call_x".into(),
            tenant: "acme".into(),
            status: CallStatus::InProgress,
            direction: Direction::Outbound,
            to: "+15550001".into(),
            target_uri: "sip:+15550001@192.0.2.1".into(),
            from: None,
            url: "https://example.com/app.vxml".into(),
            vars: Map::new(),
            status_callback: None,
            status_callback_events: CallbackEvents::ALL,
            ring_timeout_secs: Some(20),
            created_at: time::macros::datetime!(2026-11-24 12:00:00.5 UTC),
            dialed_at: None,
            answered_at: None,
            ended_at: None,
            sip_status: Some(200),
            disposition: None,
            reason: None,
            result: None,
            due_at: time::macros::datetime!(2026-11-24 12:00:00.5 UTC),
            not_after: None,
            priority: 5,
            retry: RetryPolicy::default(),
            attempts: 0,
            sip_call_id: None,
            machine_detection: MachineDetection::Off,
            early_media: false,
            answered_by: None,
        };
        let json = serde_json::to_value(&record).unwrap_or_default();
        assert_eq!(json["status"], "in-progress");
        assert_eq!(json["created_at"], "2026-11-24T12:00:00.5Z");
        assert_eq!(json["ring_timeout"], 20);
        assert!(json.get("tenant").is_none());
        assert_eq!(json["retry"]["max_attempts"], 1);
        assert!(json["answered_at"].is_null());
        let back: Option<CallRecord> = serde_json::from_value(json).ok();
        assert_eq!(
            back.map(|r| (r.id, r.created_at)),
            Some((record.id, record.created_at))
        );
    }
}
