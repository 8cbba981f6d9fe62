//! The values the store's traits take and return.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::model::{CallRecord, CallStatus};

/// An `Idempotency-Key` header and the SHA-256 (hex) of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The header's value.
    pub key: String,
    /// Lowercase hex SHA-256 of the request body (or of its canonical form).
    pub request_sha256: String,
}

/// The answer of [`super::CallStore::create_calls`].
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The stored calls, in request order.
    pub records: Vec<CallRecord>,
    /// True when these are the records of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// `GET /v1/calls` as the store sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only calls in this status.
    pub status: Option<CallStatus>,
    /// At most this many.
    pub limit: u32,
    /// Only calls older than this call id (the cursor).
    pub before: Option<String>,
    /// Only calls to exactly this `to`.
    pub to: Option<String>,
    /// Only calls created at or after this time.
    pub created_after: Option<OffsetDateTime>,
    /// Only calls created before this time.
    pub created_before: Option<OffsetDateTime>,
}

/// A queued call, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCall {
    /// Public call id.
    pub id: String,
    /// Its tenant (for per-tenant concurrency caps).
    pub tenant: String,
    /// Who it calls (`to` as requested), for the callee's rules.
    pub to: String,
    /// When it is due.
    pub due_at: OffsetDateTime,
    /// 0–9, higher first.
    pub priority: u8,
    /// Past this it expires instead of being placed.
    pub not_after: Option<OffsetDateTime>,
}

/// A call claimed for an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The call, now `dialing`.
    pub record: CallRecord,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

/// A live status change reported by the dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `ringing` or `in-progress`.
    pub status: CallStatus,
    /// When it happened.
    pub at: OffsetDateTime,
    /// Why, in words (kept with the event).
    pub cause: Option<String>,
    /// The SIP response that caused it.
    pub sip_status: Option<u16>,
}

/// How an attempt ended: what its CDR records.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    /// The attempt's own outcome (`completed`, `busy`, `no-answer`, `failed`, `canceled`).
    pub status: CallStatus,
    /// When it ended.
    pub ended_at: OffsetDateTime,
    /// Final SIP status of the INVITE, if one arrived.
    pub sip_status: Option<u16>,
    /// The dataplane's classification.
    pub disposition: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The dataplane core that carried it.
    pub core: Option<u32>,
    /// The SIP Call-ID of the INVITE dialog, when known.
    pub sip_call_id: Option<String>,
    /// Values the application submitted.
    pub result: Option<Value>,
    /// What the call's media carried, when it had media (answered).
    pub media: Option<MediaSummary>,
}

/// Answering-machine detection's verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredBy {
    /// `human`, `machine` or `unknown`.
    pub answered_by: String,
    /// Time from the answer to the verdict, milliseconds.
    pub decided_ms: u32,
    /// When the verdict came.
    pub at: OffsetDateTime,
    /// The event's cause, e.g. `answered by a machine (long greeting) after 1.62 s`.
    pub cause: String,
}

/// An attempt's media, as its CDR keeps it (the dataplane's counters at the end of the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MediaSummary {
    /// RTP packets sent to the callee.
    pub packets_sent: u64,
    /// RTP packets accepted from the callee.
    pub packets_received: u64,
    /// Packets the callee's sequence numbers say never arrived (RFC 3550 §A.3).
    pub packets_lost: u64,
    /// Interarrival jitter of the callee's audio at the end, microseconds (RFC 3550 §6.4.1).
    pub jitter_us: u64,
    /// The highest that jitter was, microseconds.
    pub max_jitter_us: u64,
    /// Packets sent more than 2 ms after their slot (the pacing target: under 1 %).
    pub sent_late_2ms: u64,
    /// Datagrams dropped for their source (not the callee's SDP address, or not the latched
    /// source).
    pub dropped_foreign: u64,
    /// Round-trip time to the callee from its RTCP reports (RFC 3550 §6.4.1), the latest,
    /// microseconds; `None` when the callee sent no report about our stream.
    #[serde(default)]
    pub round_trip_us: Option<u64>,
}

/// One status change of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The status entered.
    pub status: CallStatus,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The attempt it belongs to (none for `queued` at creation, `canceled` or `expired`
    /// before any attempt).
    pub attempt: Option<u32>,
    /// Why, in words.
    pub cause: Option<String>,
    /// Whose policy rule deferred or refused the call (`requester`, `callee`, `operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// That rule (`callee.quiet_hours`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// What an API key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Create and cancel calls.
    #[serde(rename = "calls:create")]
    CallsCreate,
    /// Read calls, their events, CDRs and dead letters.
    #[serde(rename = "calls:read")]
    CallsRead,
    /// Manage tenants and keys (every tenant).
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 3] = [Self::CallsCreate, Self::CallsRead, Self::Admin];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallsCreate => "calls:create",
            Self::CallsRead => "calls:read",
            Self::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Who an API key belongs to and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant.
    pub tenant: String,
    /// The key's public id.
    pub key_id: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// The tenant's trunk (a `[[trunk]]` name or `sip:host:port`), if it has its own.
    pub trunk: Option<String>,
    /// The tenant's caller ID, if it has one.
    pub caller_id: Option<String>,
}

impl Principal {
    /// True if the key has `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A tenant to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Its id: 1–64 of `[a-z0-9_-]`.
    pub id: String,
    /// Its trunk: a `[[trunk]]` name, or `sip:host:port` its E.164 numbers are sent to
    /// (default: the default trunk).
    #[serde(default)]
    pub trunk: Option<String>,
    /// Its default caller ID (default: `sip.from`).
    #[serde(default)]
    pub caller_id: Option<String>,
    /// Most calls it may have live at once (default: no cap beyond `calls.max_concurrent`).
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Its id.
    pub id: String,
    /// Its trunk, if it has its own.
    pub trunk: Option<String>,
    /// Its default caller ID.
    pub caller_id: Option<String>,
    /// Its cap on live calls.
    pub max_concurrent: Option<u32>,
    /// Disabled tenants' keys do not work.
    pub disabled: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An API key to create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// A note for people (e.g. which system uses it).
    #[serde(default)]
    pub label: Option<String>,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// Public id: `key_` + 16 hex characters.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its note.
    pub label: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A webhook delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its row, for [`super::OutboxStore::webhook_delivered`] and `webhook_failed`.
    pub seq: i64,
    /// The `webhook-id`: the same on every try.
    pub msg_id: String,
    /// The call it is about.
    pub call_id: String,
    /// The call's tenant (whose outbound-connection rules apply).
    pub tenant: String,
    /// Where to POST.
    pub url: String,
    /// The JSON body: the call record as it was at the status change.
    pub body: String,
    /// The tenant's signing secret.
    pub secret: String,
    /// Tries made before this one.
    pub tries: u32,
}

/// A webhook that was given up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Its id (the `webhook-id` it was sent with).
    pub id: String,
    /// The call it is about.
    pub call_id: String,
    /// Where it was posted.
    pub url: String,
    /// Tries made.
    pub tries: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the status change happened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was given up.
    #[serde(with = "time::serde::rfc3339::option")]
    pub dead_at: Option<OffsetDateTime>,
    /// The body that was posted.
    pub body: Value,
}

/// A call detail record: one attempt of one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cdr {
    /// The call.
    pub call_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The tenant.
    pub tenant: String,
    /// The From URI requested (none = the server's default).
    pub from: Option<String>,
    /// `to` as requested.
    pub to: String,
    /// The SIP URI dialled.
    pub target_uri: String,
    /// The control node that placed it.
    pub node: Option<String>,
    /// The dataplane core.
    pub core: Option<u32>,
    /// The INVITE's Call-ID, when known.
    pub sip_call_id: Option<String>,
    /// When the call was requested.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When this attempt's INVITE left.
    #[serde(with = "time::serde::rfc3339::option")]
    pub dialed_at: Option<OffsetDateTime>,
    /// When the callee started ringing.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ringing_at: Option<OffsetDateTime>,
    /// When the callee answered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
    /// When the attempt ended.
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    /// Answered seconds, rounded up to whole seconds; 0 if not answered.
    pub billable_secs: u64,
    /// The attempt's outcome (the status words).
    pub disposition: String,
    /// The INVITE's final SIP status.
    pub sip_status: Option<u16>,
    /// Why, in words.
    pub reason: Option<String>,
    /// What the attempt's media carried; `null` when it had none (not answered).
    pub media: Option<MediaSummary>,
    /// Who answered, when machine detection classified the answer: `human`, `machine` or
    /// `unknown`; omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Time from the answer to that verdict, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_decided_ms: Option<u32>,
}

impl Cdr {
    /// The CSV header line matching [`Cdr::csv_row`].
    pub const CSV_HEADER: &'static str = "call_id,attempt,tenant,from,to,target_uri,node,core,\
        sip_call_id,created_at,dialed_at,ringing_at,answered_at,ended_at,billable_secs,\
        disposition,sip_status,reason,packets_sent,packets_received,packets_lost,jitter_us,\
        max_jitter_us,sent_late_2ms,dropped_foreign,round_trip_us,answered_by,machine_decided_ms";

    /// One CSV line (RFC 4180 quoting, no line break).
    pub fn csv_row(&self) -> String {
        fn time(t: Option<OffsetDateTime>) -> String {
            t.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
        }
        fn field(text: &str) -> String {
            if text.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text.to_owned()
            }
        }
        [
            field(&self.call_id),
            self.attempt.to_string(),
            field(&self.tenant),
            field(self.from.as_deref().unwrap_or_default()),
            field(&self.to),
            field(&self.target_uri),
            field(self.node.as_deref().unwrap_or_default()),
            self.core.map(|c| c.to_string()).unwrap_or_default(),
            field(self.sip_call_id.as_deref().unwrap_or_default()),
            time(Some(self.created_at)),
            time(self.dialed_at),
            time(self.ringing_at),
            time(self.answered_at),
            time(Some(self.ended_at)),
            self.billable_secs.to_string(),
            field(&self.disposition),
            self.sip_status.map(|s| s.to_string()).unwrap_or_default(),
            field(self.reason.as_deref().unwrap_or_default()),
        ]
        .into_iter()
        .chain(self.media.map_or_else(
            || vec![String::new(); 8],
            |m| {
                [
                    m.packets_sent,
                    m.packets_received,
                    m.packets_lost,
                    m.jitter_us,
                    m.max_jitter_us,
                    m.sent_late_2ms,
                    m.dropped_foreign,
                ]
                .map(|n| n.to_string())
                .into_iter()
                .chain([m.round_trip_us.map(|us| us.to_string()).unwrap_or_default()])
                .collect()
            },
        ))
        .chain([
            field(self.answered_by.as_deref().unwrap_or_default()),
            self.machine_decided_ms
                .map(|ms| ms.to_string())
                .unwrap_or_default(),
        ])
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// A range of CDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrQuery {
    /// Attempts that ended at or after this.
    pub from: Option<OffsetDateTime>,
    /// Attempts that ended before this.
    pub to: Option<OffsetDateTime>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// One page of CDRs.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrPage {
    /// The records, oldest first.
    pub cdrs: Vec<Cdr>,
    /// The cursor of the next page, if there may be more.
    pub next: Option<String>,
}

/// Files that came with a request (an attached VoiceXML application and the audio and
/// grammars beside it), stored with its calls and served under `/v1/files/{id}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFiles {
    /// Unguessable id: `fil_` + 26 base32 characters (130 bits); part of every call's URL.
    pub id: String,
    /// The files, by name (unique within the request).
    pub files: Vec<NewFile>,
}

/// One file of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// Its name: 1–128 of `[A-Za-z0-9._-]`, not starting with a dot.
    pub name: String,
    /// Its media type, as the sender declared it.
    pub content_type: String,
    /// Its bytes.
    pub body: Vec<u8>,
}

/// A stored request file, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its media type.
    pub content_type: String,
    /// Its bytes.
    pub body: Vec<u8>,
}

/// A reply mail to send (an e-mail request's acknowledgement or rejection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    /// The tenant the request was for, if known.
    pub tenant: Option<String>,
    /// The address to send it to.
    pub to: String,
    /// Its subject.
    pub subject: String,
    /// The request's `Message-ID` (without angle brackets), for `In-Reply-To`.
    pub in_reply_to: Option<String>,
    /// Its text.
    pub body: String,
}

/// A reply mail waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyItem {
    /// Its row, for [`super::ReplyStore::reply_sent`] and `reply_failed`.
    pub seq: i64,
    /// The mail.
    pub reply: NewReply,
    /// Tries made before this one.
    pub tries: u32,
}
