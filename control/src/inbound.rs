//! Incoming calls: which application answers which number (`[[inbound]]`), and what the
//! control plane does with each INVITE a core offers ([`Event::Incoming`]).
//!
//! A core answers an allowed INVITE `100 Trying` at once and offers the call here. The
//! number called (the Request-URI's user part, else the To URI's) picks an `[[inbound]]`
//! entry, or the `number = "*"` one. Then:
//! - no entry: `404 Not Found`;
//! - the node at `calls.max_concurrent`: `503 Service Unavailable` with `Retry-After`;
//! - otherwise the call is stored already claimed (direction `inbound`, status `dialing`),
//!   answered `200 OK`, and run by the call runner like any other call: the same statuses,
//!   webhooks, history and CDRs.
//!
//! [`Event::Incoming`]: outdial_dataplane::api::Event::Incoming

use std::collections::HashMap;
use std::sync::Arc;

use outdial_dataplane::api::{Command, IncomingCall};
use serde::{Deserialize, Serialize};
use serde_json::Map;

use crate::config::has_scheme;
use crate::dispatch::Dispatcher;
use crate::model::{CallbackEvents, Direction, MachineDetection, NewCall, RetryPolicy};
use crate::runner::RunnerContext;
use crate::telephony::{Placement, TelephonyNode};

/// `Retry-After` sent with a `503` when the node is full, in seconds.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The number an `[[inbound]]` entry answers when no other entry names the called number.
pub const ANY_NUMBER: &str = "*";

/// `[[inbound]]`: the application that answers calls to one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundNumber {
    /// The number called, as the Request-URI's user part carries it (`+15550100`), or `*`
    /// for every number no other entry names.
    pub number: String,
    /// The VoiceXML application's URL (`http:` or `https:`).
    pub url: String,
    /// The tenant the calls belong to (their records, webhooks and CDRs); absent = the
    /// development tenant `serve` creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where each status change of these calls is posted (signed like any webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// Answer with `183 Session Progress` and our SDP first and run the application on early
    /// media; the 200 OK follows when it has played its first prompts or needs an answered
    /// call (`docs/sip.md`, "Incoming early media").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early_media: bool,
}

impl InboundNumber {
    /// Checks the entry; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let number_ok = self.number == ANY_NUMBER
            || (!self.number.is_empty()
                && self.number.len() <= 64
                && self
                    .number
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-_.!~*'()&=$,;?/".contains(&b)));
        if !number_ok {
            return Err(format!(
                "number {:?} is not a SIP user part: write it as the carrier sends it (e.g. \
                 \"+15550100\"), or \"*\" for every other number",
                self.number
            ));
        }
        if !(has_scheme(&self.url, "http") || has_scheme(&self.url, "https")) {
            return Err(format!(
                "url {:?} must be an http: or https: URL of a VoiceXML application",
                self.url
            ));
        }
        if let Some(callback) = &self.status_callback
            && !(has_scheme(callback, "http") || has_scheme(callback, "https"))
        {
            return Err(format!(
                "status_callback {callback:?} must be an http: or https: URL"
            ));
        }
        Ok(())
    }
}

/// The `[[inbound]]` entries, by number.
#[derive(Debug, Clone, Default)]
pub struct InboundRoutes {
    numbers: HashMap<String, InboundNumber>,
    any: Option<InboundNumber>,
}

impl InboundRoutes {
    /// The routes of validated entries (a repeated number keeps its first entry;
    /// validation refuses repeats).
    pub fn new(entries: &[InboundNumber]) -> Self {
        let mut routes = Self::default();
        for entry in entries {
            if entry.number == ANY_NUMBER {
                routes.any.get_or_insert_with(|| entry.clone());
            } else {
                routes
                    .numbers
                    .entry(entry.number.clone())
                    .or_insert_with(|| entry.clone());
            }
        }
        routes
    }

    /// Whether any number is answered at all.
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty() && self.any.is_none()
    }

    /// The entry for a call to `request_uri` (or, when its user part names no entry, `to`),
    /// and the number it matched.
    pub fn route(&self, request_uri: &str, to: &str) -> Option<(&InboundNumber, String)> {
        for uri in [request_uri, to] {
            if let Some(user) = user_part(uri)
                && let Some(entry) = self.numbers.get(user)
            {
                return Some((entry, user.to_owned()));
            }
        }
        let called = user_part(request_uri)
            .or_else(|| user_part(to))
            .unwrap_or("")
            .to_owned();
        self.any.as_ref().map(|entry| (entry, called))
    }
}

/// The user part of a `sip:`/`sips:`/`tel:` URI: `+15550100` of
/// `sip:+15550100;npdi@host:5060;user=phone`.
fn user_part(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = match rest.split_once('@') {
        Some((user, _)) => user,
        None if uri.starts_with("tel:") => rest,
        None => return None,
    };
    let user = user.split([';', ':']).next().unwrap_or("");
    (!user.is_empty()).then_some(user)
}

/// What the event pump calls for every offered call.
pub struct Inbound {
    routes: InboundRoutes,
    /// The tenant of entries that name none.
    default_tenant: String,
    context: RunnerContext,
    node: Arc<dyn TelephonyNode>,
    dispatcher: Arc<Dispatcher>,
    /// `calls.max_concurrent`.
    capacity: usize,
}

impl Inbound {
    /// The handler for `routes`, running calls with `context` on the embedded `node`.
    pub fn new(
        routes: InboundRoutes,
        default_tenant: String,
        context: RunnerContext,
        node: Arc<dyn TelephonyNode>,
        dispatcher: Arc<Dispatcher>,
        capacity: usize,
    ) -> Self {
        Self {
            routes,
            default_tenant,
            context,
            node,
            dispatcher,
            capacity,
        }
    }

    /// Decides an offered call: refuses it, or adopts it (its events go to its task from
    /// now on) and starts its task. Called from the event pump, before the call's next
    /// event is routed.
    pub fn offer(&self, incoming: IncomingCall) {
        let call = incoming.call;
        let Some(core) = call.inbound_core() else {
            return;
        };
        let reject = |status: u16, retry_after: Option<u32>, outcome: &'static str| {
            metrics::counter!("outdial_inbound_calls_total", "outcome" => outcome).increment(1);
            let command = Command::Reject {
                call,
                status,
                retry_after,
            };
            if self.dispatcher.send(core, command).is_err() {
                tracing::warn!(
                    core,
                    "cannot refuse an incoming call: the core's queue is full"
                );
            }
        };
        let Some((entry, number)) = self.routes.route(&incoming.request_uri, &incoming.to) else {
            tracing::info!(
                source = %incoming.source,
                number = %crate::redact::callee(&incoming.request_uri),
                "incoming call refused: no [[inbound]] entry for the number"
            );
            reject(404, None, "no_route");
            return;
        };
        if self.dispatcher.in_flight() >= self.capacity {
            tracing::warn!(
                capacity = self.capacity,
                "incoming call refused: the node is full"
            );
            reject(503, Some(RETRY_AFTER_SECS), "busy");
            return;
        }
        metrics::counter!("outdial_inbound_calls_total", "outcome" => "accepted").increment(1);
        let new = NewCall {
            tenant: entry
                .tenant
                .clone()
                .unwrap_or_else(|| self.default_tenant.clone()),
            to: number,
            target_uri: incoming.from.clone(),
            from: Some(incoming.to.clone()),
            url: entry.url.clone(),
            vars: Map::new(),
            status_callback: entry.status_callback.clone(),
            status_callback_events: CallbackEvents::ALL,
            ring_timeout_secs: None,
            at: None,
            not_after: None,
            priority: crate::model::DEFAULT_PRIORITY,
            retry: RetryPolicy::default(),
            machine_detection: MachineDetection::Off,
            early_media: entry.early_media,
            direction: Direction::Inbound,
        };
        let placement = Placement { call, core };
        let adopted = self.dispatcher.adopt(placement);
        self.dispatcher.start_incoming(
            self.context.clone(),
            Arc::clone(&self.node),
            placement,
            adopted,
            new,
            incoming.sip_call_id,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: &str, url: &str) -> InboundNumber {
        InboundNumber {
            number: number.into(),
            url: url.into(),
            tenant: None,
            status_callback: None,
            early_media: false,
        }
    }

    #[test]
    fn the_called_number_picks_its_entry_and_star_takes_the_rest() {
        let routes = InboundRoutes::new(&[
            entry("+15550100", "http://app/a.vxml"),
            entry("*", "http://app/any.vxml"),
            entry("+15550100", "http://app/second.vxml"),
        ]);
        let (hit, number) = routes
            .route("sip:+15550100;npdi@10.0.0.1:5060;user=phone", "sip:x@y")
            .expect("route");
        assert_eq!(
            (hit.url.as_str(), number.as_str()),
            ("http://app/a.vxml", "+15550100")
        );
        let (hit, number) = routes
            .route("sip:10.0.0.1", "sip:+15550100@carrier")
            .expect("route by To");
        assert_eq!(
            (hit.url.as_str(), number.as_str()),
            ("http://app/a.vxml", "+15550100")
        );
        let (hit, number) = routes.route("sip:10.0.0.1", "sip:carrier").expect("any");
        assert_eq!(
            (hit.url.as_str(), number.as_str()),
            ("http://app/any.vxml", "")
        );
        let (hit, number) = routes
            .route("sip:+15550199@h", "sip:+15550100@h")
            .expect("to");
        assert_eq!(
            (hit.url.as_str(), number.as_str()),
            ("http://app/a.vxml", "+15550100")
        );
        let only = InboundRoutes::new(&[entry("+15550100", "http://app/a.vxml")]);
        assert!(only.route("sip:+15550199@h", "sip:+15550198@h").is_none());
        assert!(InboundRoutes::new(&[]).is_empty());
    }

    #[test]
    fn entries_are_checked() {
        assert!(entry("+15550100", "https://app/a.vxml").validate().is_ok());
        assert!(entry("*", "http://app/a.vxml").validate().is_ok());
        let bad_number = entry("+1 555", "http://app/a.vxml").validate();
        assert!(bad_number.is_err_and(|e| e.contains("SIP user part")));
        let bad_url = entry("+15550100", "file:///etc/passwd").validate();
        assert!(bad_url.is_err_and(|e| e.contains("http: or https:")));
        let mut callback = entry("100", "http://app/a.vxml");
        callback.status_callback = Some("ftp://x".into());
        assert!(callback.validate().is_err());
    }

    #[test]
    fn user_parts_of_sip_and_tel_uris() {
        assert_eq!(user_part("sip:+15550100@h"), Some("+15550100"));
        assert_eq!(user_part("sips:alice@h;transport=tls"), Some("alice"));
        assert_eq!(
            user_part("tel:+15550100;phone-context=x"),
            Some("+15550100")
        );
        assert_eq!(user_part("sip:h:5060"), None);
        assert_eq!(user_part("http://x@y"), None);
    }
}
