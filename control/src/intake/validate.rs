//! The one validator every intake's [`CallRequest`] passes before it is stored.
//!
//! It applies the same rules the rest of the pipeline will: `to` and `from` are checked with
//! the dataplane's own dial-target rule ([`outdial_dataplane::sip::target`]) and variable names
//! with the interpreter's ([`outdial_vxml::session_var_problem`]), so a call accepted here is
//! never refused at dial time or at the start of its application.

use outdial_dataplane::sip::target::{self, TargetError};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use super::json::kind;
use super::refusal::{FieldError, Rule};
use super::request::{CallRequest, RetrySpec};
use std::sync::Arc;

use crate::config::{Config, has_scheme};
use crate::model::{
    CallbackEvents, DEFAULT_PRIORITY, MachineDetection, NewCall, RetryOn, RetryPolicy,
};
use crate::trunk::{Trunk, Trunks, UnknownTrunk};

/// Longest `ring_timeout`, seconds.
pub const MAX_RING_TIMEOUT_SECS: u64 = 600;
/// Highest priority.
pub const MAX_PRIORITY: u64 = 9;
/// Most attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u64 = 10;
/// Shortest delay between attempts, seconds (a callee who was busy needs time).
pub const MIN_RETRY_DELAY_SECS: u64 = 10;
/// Longest delay between attempts, seconds (one day).
pub const MAX_RETRY_DELAY_SECS: u64 = 86_400;
/// Default delay between attempts, seconds.
pub const DEFAULT_RETRY_DELAY_SECS: u64 = 60;
/// How far ahead `at` may be: about a year.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(366);
/// Most variables in one request.
pub const MAX_VARS: usize = 64;
/// Longest string variable, bytes.
pub const MAX_VAR_BYTES: usize = 8192;
/// Longest URL, bytes.
pub const MAX_URL_BYTES: usize = 8192;

/// Checks call requests against the rules of this deployment (the tenant's trunk and From).
#[derive(Debug, Clone)]
pub struct Validator {
    /// The trunk E.164 numbers are routed through, or why the tenant's cannot be used.
    trunk: Result<Arc<Trunk>, UnknownTrunk>,
    /// Whether `mailto:` status callbacks can be sent (the operator set `email.reply_relay`).
    mail_callbacks: bool,
}

impl Validator {
    /// The rules of the running configuration, for a tenant on the default trunk.
    pub fn new(config: &Config) -> Self {
        Self::for_tenant(config, None)
    }

    /// The rules for a tenant whose stored trunk is `tenant_trunk` (a `[[trunk]]` name or
    /// `sip:host:port`; `None` = the default trunk).
    pub fn for_tenant(config: &Config, tenant_trunk: Option<&str>) -> Self {
        Self {
            trunk: Trunks::new(config).for_tenant(tenant_trunk),
            mail_callbacks: !config.email.reply_relay.trim().is_empty(),
        }
    }

    /// Validates `request` for `tenant` at time `now` into a call to store.
    pub fn validate(
        &self,
        tenant: &str,
        request: CallRequest,
        now: OffsetDateTime,
    ) -> Result<NewCall, FieldError> {
        let target_uri = self.route_to(&request.to)?;
        let from = request
            .from
            .as_deref()
            .map(|from| self.caller_uri(from))
            .transpose()?;
        check_http_url("url", &request.url)?;
        if let Some(callback) = &request.status_callback {
            if has_scheme(callback, "mailto") {
                self.check_mail_callback(callback)?;
            } else {
                check_http_url("status_callback", callback)?;
            }
        }
        let status_callback_events = callback_events(request.status_callback_events.as_deref())?;
        check_vars(&request.vars)?;
        let ring_timeout_secs = request
            .ring_timeout_secs
            .map(|s| in_range("ring_timeout", s, 1, MAX_RING_TIMEOUT_SECS, "seconds"))
            .transpose()?;
        let priority = request
            .priority
            .map(|p| in_range("priority", p, 0, MAX_PRIORITY, "(9 leaves first)"))
            .transpose()?
            .map_or(DEFAULT_PRIORITY, |p| p as u8);
        let (at, not_after) = check_schedule(request.at, request.not_after, now)?;
        let machine_detection = request
            .machine_detection
            .as_deref()
            .map(machine_detection)
            .transpose()?
            .unwrap_or_default();
        let retry = request
            .retry
            .map(retry_policy)
            .transpose()?
            .unwrap_or_default();
        Ok(NewCall {
            tenant: tenant.to_owned(),
            to: request.to,
            target_uri,
            from,
            url: request.url,
            vars: request.vars,
            status_callback: request.status_callback,
            status_callback_events,
            ring_timeout_secs,
            at,
            not_after,
            priority,
            retry,
            machine_detection,
            early_media: request.early_media,
            direction: crate::model::Direction::Outbound,
        })
    }

    /// The SIP URI to dial for `to`: a `sip:` URI as given, or an E.164 number via the trunk.
    fn route_to(&self, to: &str) -> Result<String, FieldError> {
        if to.starts_with('+') {
            check_e164("to", to)?;
            let trunk = self.trunk.as_ref().map_err(|e| {
                FieldError::new("to", Rule::Trunk, format!("is a telephone number but {e}"))
            })?;
            let uri = trunk.route(to).ok_or_else(|| {
                FieldError::new(
                    "to",
                    Rule::Trunk,
                    "is a telephone number but no trunk is configured; set `sip.trunk` (e.g. \"sip:192.0.2.10:5060\") or a [[trunk]] in the configuration, or give a sip: URI",
                )
            })?;
            target::dial_target(&uri).map_err(|e| sip_refusal("to", &uri, e))?;
            return Ok(uri);
        }
        target::dial_target(to).map_err(|e| sip_refusal("to", to, e))?;
        Ok(to.to_owned())
    }

    /// A `from` as a SIP URI: E.164 numbers take the trunk's From host (`from_domain`, or
    /// the host of `sip.from` on the default trunk).
    fn caller_uri(&self, from: &str) -> Result<String, FieldError> {
        if from.starts_with('+') {
            check_e164("from", from)?;
            let uri = match &self.trunk {
                Ok(trunk) => trunk.caller_uri(from),
                Err(e) => {
                    return Err(FieldError::new(
                        "from",
                        Rule::Trunk,
                        format!("is a telephone number but {e}"),
                    ));
                }
            };
            target::from_uri(&uri).map_err(|e| sip_refusal("from", &uri, e))?;
            return Ok(uri);
        }
        target::from_uri(from).map_err(|e| sip_refusal("from", from, e))?;
        Ok(from.to_owned())
    }
}

/// `+` then 2 to 15 digits, the first not 0 (ITU-T E.164).
fn check_e164(field: &str, number: &str) -> Result<(), FieldError> {
    let digits = number.strip_prefix('+').unwrap_or_default();
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            Rule::E164,
            format!("{number:?} is not an E.164 number like +15551234567"),
        ))
    }
}

fn sip_refusal(field: &str, uri: &str, error: TargetError) -> FieldError {
    let shown: String = uri.chars().take(80).collect();
    match error {
        TargetError::NotSip | TargetError::Secure => {
            let scheme = uri.split_once(':').map_or("", |(s, _)| s);
            FieldError::new(
                field,
                Rule::Scheme,
                format!(
                    "uses the unsupported scheme `{scheme}:`; use a sip: URI or an E.164 number"
                ),
            )
        }
        TargetError::Malformed if !uri.contains(':') => FieldError::new(
            field,
            Rule::SipUri,
            format!("{shown:?} is not a sip: URI or an E.164 number like +15551234567"),
        ),
        other => FieldError::new(field, Rule::SipUri, format!("{shown:?} {other}")),
    }
}

/// An absolute `http://` or `https://` URL with a host.
impl Validator {
    /// A `mailto:` status callback (RFC 6068): one address, and only the `subject` and
    /// `in-reply-to` header fields; usable only where the operator set `email.reply_relay`.
    fn check_mail_callback(&self, text: &str) -> Result<(), FieldError> {
        let refuse = |rule, message: String| Err(FieldError::new("status_callback", rule, message));
        if !self.mail_callbacks {
            return refuse(
                Rule::Scheme,
                "a mailto: callback needs an outbound mail relay (email.reply_relay) that this server does not have; use an http(s):// URL".to_owned(),
            );
        }
        if text.len() > MAX_URL_BYTES {
            return refuse(
                Rule::Range,
                format!("must be at most {MAX_URL_BYTES} bytes"),
            );
        }
        match crate::webhook::mail::MailCallback::parse(text) {
            Ok(_) => Ok(()),
            Err(problem) => refuse(Rule::Scheme, problem),
        }
    }
}

fn check_http_url(field: &str, text: &str) -> Result<(), FieldError> {
    let parsed = url::Url::parse(text).ok();
    let ok = text.len() <= MAX_URL_BYTES
        && parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if ok && !has_scheme(text, "javascript") {
        Ok(())
    } else {
        let shown: String = text.chars().take(80).collect();
        Err(FieldError::new(
            field,
            Rule::HttpUrl,
            format!(
                "must be an absolute http:// or https:// URL of at most {MAX_URL_BYTES} bytes, not {shown:?}"
            ),
        ))
    }
}

/// Variable names the interpreter accepts; scalar values of bounded size.
fn check_vars(vars: &Map<String, Value>) -> Result<(), FieldError> {
    if vars.len() > MAX_VARS {
        return Err(FieldError::new(
            "vars",
            Rule::Range,
            format!("has {} entries; at most {MAX_VARS} are allowed", vars.len()),
        ));
    }
    for (name, value) in vars {
        let shown: String = name.chars().take(64).collect();
        if let Some(problem) = outdial_vxml::session_var_problem(name) {
            return Err(FieldError::new(
                format!("vars.{shown}"),
                Rule::VarName,
                format!("cannot be a variable name: the name {problem}"),
            ));
        }
        match value {
            Value::String(s) if s.len() > MAX_VAR_BYTES => {
                return Err(FieldError::new(
                    format!("vars.{name}"),
                    Rule::Range,
                    format!("is {} bytes long; at most {MAX_VAR_BYTES}", s.len()),
                ));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            other => {
                return Err(FieldError::new(
                    format!("vars.{name}"),
                    Rule::Type,
                    format!("must be a string, number or boolean, not {}", kind(other)),
                ));
            }
        }
    }
    Ok(())
}

fn in_range(field: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<u64, FieldError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            field,
            Rule::Range,
            format!("must be from {min} to {max} {unit}, not {value}"),
        ))
    }
}

/// `at` no more than a year ahead (a past `at` means now); `not_after` in the future and
/// after `at`.
fn check_schedule(
    at: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>), FieldError> {
    if let Some(at) = at
        && at > now + MAX_SCHEDULE_AHEAD
    {
        return Err(FieldError::new(
            "at",
            Rule::Schedule,
            "is more than 366 days ahead; schedule the call nearer the time",
        ));
    }
    if let Some(deadline) = not_after {
        if deadline <= now {
            return Err(FieldError::new(
                "not_after",
                Rule::Schedule,
                "is already past; the call could never be placed",
            ));
        }
        if let Some(at) = at
            && deadline <= at
        {
            return Err(FieldError::new(
                "not_after",
                Rule::Schedule,
                "must be later than `at`; the call could never be placed",
            ));
        }
    }
    Ok((at, not_after))
}

/// `status_callback_events`: known names, each once, at least one. Without a `status_callback`
/// they select nothing and are kept as given (as Twilio treats `StatusCallbackEvent`).
fn callback_events(names: Option<&[String]>) -> Result<CallbackEvents, FieldError> {
    let Some(names) = names else {
        return Ok(CallbackEvents::ALL);
    };
    const FIELD: &str = "status_callback_events";
    for (i, name) in names.iter().enumerate() {
        if CallbackEvents::from_names([name.as_str()]).is_err() {
            return Err(FieldError::new(
                format!("{FIELD}[{i}]"),
                Rule::Type,
                format!(
                    "must be one of {}, not {name:?}",
                    CallbackEvents::NAMES.map(|n| format!("\"{n}\"")).join(", ")
                ),
            ));
        }
        if names[..i].contains(name) {
            return Err(FieldError::new(
                format!("{FIELD}[{i}]"),
                Rule::Duplicate,
                format!("lists {name:?} twice"),
            ));
        }
    }
    let events =
        CallbackEvents::from_names(names.iter().map(String::as_str)).unwrap_or(CallbackEvents::ALL);
    if events.is_empty() {
        return Err(FieldError::new(
            FIELD,
            Rule::Range,
            "must name at least one status change (or be left out for all of them)",
        ));
    }
    Ok(events)
}

/// `machine_detection`: one of [`MachineDetection::NAMES`].
fn machine_detection(name: &str) -> Result<MachineDetection, FieldError> {
    MachineDetection::parse(name).ok_or_else(|| {
        FieldError::new(
            "machine_detection",
            Rule::Type,
            format!(
                "must be one of {}, not {name:?}",
                MachineDetection::NAMES
                    .map(|n| format!("\"{n}\""))
                    .join(", ")
            ),
        )
    })
}

fn retry_policy(spec: RetrySpec) -> Result<RetryPolicy, FieldError> {
    let max_attempts = spec
        .max_attempts
        .map(|n| {
            in_range(
                "retry.max_attempts",
                n,
                1,
                MAX_ATTEMPTS,
                "attempts (the first included)",
            )
        })
        .transpose()?
        .unwrap_or(1);
    let delay_secs = spec
        .delay_secs
        .map(|s| {
            in_range(
                "retry.delay_secs",
                s,
                MIN_RETRY_DELAY_SECS,
                MAX_RETRY_DELAY_SECS,
                "seconds",
            )
        })
        .transpose()?
        .unwrap_or(DEFAULT_RETRY_DELAY_SECS);
    let on = spec
        .on
        .unwrap_or_else(|| vec![RetryOn::Busy, RetryOn::NoAnswer]);
    for (i, outcome) in on.iter().enumerate() {
        if on[..i].contains(outcome) {
            return Err(FieldError::new(
                format!("retry.on[{i}]"),
                Rule::Duplicate,
                format!("lists {:?} twice", outcome.as_str()),
            ));
        }
    }
    Ok(RetryPolicy {
        max_attempts: max_attempts as u32,
        delay_secs,
        on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::json::from_value;
    use serde_json::json;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-04 12:00 UTC);

    fn validator(trunk: Option<&str>) -> Validator {
        let mut config = Config::default();
        config.sip.trunk = trunk.map(str::to_owned);
        Validator::new(&config)
    }

    fn check(body: Value) -> Result<NewCall, FieldError> {
        let request = from_value(body)?;
        validator(Some("sip:192.0.2.10:5060")).validate("t", request, NOW)
    }

    fn refused(body: Value) -> (String, Rule) {
        check(body)
            .err()
            .map_or((String::new(), Rule::Object), |e| (e.field, e.rule))
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = json!({"to": "sip:a@127.0.0.1:5070", "url": "http://127.0.0.1/app.vxml"});
        b[k] = v;
        b
    }

    #[test]
    fn a_full_request_becomes_a_call_with_defaults_filled() {
        let call = check(json!({"to": "+15550001", "url": "https://x/app", "from": "+15550100"}))
            .unwrap_or_default();
        assert_eq!(call.target_uri, "sip:+15550001@192.0.2.10:5060");
        assert_eq!(call.from.as_deref(), Some("sip:+15550100@127.0.0.1"));
        assert_eq!(call.priority, DEFAULT_PRIORITY);
        assert_eq!(call.retry, RetryPolicy::default());
        let call = check(with("retry", json!({"max_attempts": 3}))).unwrap_or_default();
        assert_eq!(
            call.retry,
            RetryPolicy {
                max_attempts: 3,
                delay_secs: 60,
                on: vec![RetryOn::Busy, RetryOn::NoAnswer]
            }
        );
    }

    #[test]
    fn nothing_the_dialer_would_refuse_is_accepted() {
        assert_eq!(
            refused(with("to", json!("sip:a@b?Subject=x"))),
            ("to".into(), Rule::SipUri)
        );
        assert_eq!(
            refused(with("to", json!("sips:a@b"))),
            ("to".into(), Rule::Scheme)
        );
        assert_eq!(
            refused(with("to", json!("sip:a@b:0"))),
            ("to".into(), Rule::SipUri)
        );
        assert_eq!(
            refused(with("to", json!("tel:+15550001"))),
            ("to".into(), Rule::Scheme)
        );
        assert_eq!(
            refused(with("to", json!("alice"))),
            ("to".into(), Rule::SipUri)
        );
        assert_eq!(
            refused(with("to", json!("+0123"))),
            ("to".into(), Rule::E164)
        );
        assert_eq!(
            refused(with("from", json!("sip:me@x?h=1"))),
            ("from".into(), Rule::SipUri)
        );
        let request =
            from_value(json!({"to": "+15550001", "url": "http://x/"})).unwrap_or_default();
        let no_trunk = validator(None)
            .validate("t", request, NOW)
            .err()
            .map(|e| e.rule);
        assert_eq!(no_trunk, Some(Rule::Trunk));
    }

    #[test]
    fn a_tenants_trunk_routes_its_numbers_and_makes_its_from() {
        let config = Config::parse(
            "[sip]\ntrunk = \"sip:192.0.2.10:5060\"\n\
             [[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{number}@carrier.example;user=phone\"\n\
             from_domain = \"cli.carrier.example\"\n",
        )
        .unwrap_or_default();
        let request = || {
            from_value(json!({"to": "+15550001", "from": "+15550100", "url": "http://x/"}))
                .unwrap_or_default()
        };
        let call = Validator::for_tenant(&config, Some("carrier"))
            .validate("t", request(), NOW)
            .unwrap_or_default();
        assert_eq!(call.target_uri, "sip:+15550001@carrier.example;user=phone");
        assert_eq!(
            call.from.as_deref(),
            Some("sip:+15550100@cli.carrier.example")
        );
        // A tenant created with a URI (before trunks had names) keeps routing there.
        let call = Validator::for_tenant(&config, Some("sip:10.0.0.9:5070"))
            .validate("t", request(), NOW)
            .unwrap_or_default();
        assert_eq!(call.target_uri, "sip:+15550001@10.0.0.9:5070");
        // A trunk name the configuration lost: numbers are refused naming it; URIs still go.
        let refusal = Validator::for_tenant(&config, Some("gone"))
            .validate("t", request(), NOW)
            .err()
            .unwrap_or_else(|| FieldError::new("none", Rule::Object, ""));
        assert_eq!((refusal.field.as_str(), refusal.rule), ("to", Rule::Trunk));
        assert!(refusal.to_string().contains("`gone`"), "{refusal}");
        let uri =
            from_value(json!({"to": "sip:a@127.0.0.1", "url": "http://x/"})).unwrap_or_default();
        assert!(
            Validator::for_tenant(&config, Some("gone"))
                .validate("t", uri, NOW)
                .is_ok()
        );
    }

    #[test]
    fn variables_the_application_could_not_use_are_refused() {
        assert_eq!(
            refused(with("vars", json!({"session": "x"}))),
            ("vars.session".into(), Rule::VarName)
        );
        assert_eq!(
            refused(with("vars", json!({"if": 1}))),
            ("vars.if".into(), Rule::VarName)
        );
        assert_eq!(
            refused(with("vars", json!({"a": [1]}))),
            ("vars.a".into(), Rule::Type)
        );
        assert_eq!(
            refused(with("vars", json!({"a": "x".repeat(MAX_VAR_BYTES + 1)}))),
            ("vars.a".into(), Rule::Range)
        );
        let many: Map<String, Value> = (0..=MAX_VARS)
            .map(|i| (format!("v{i}"), json!(i)))
            .collect();
        assert_eq!(
            refused(with("vars", Value::Object(many))),
            ("vars".into(), Rule::Range)
        );
    }

    #[test]
    fn callback_events_name_known_changes_once() {
        let mut body = with("status_callback", json!("http://x/cb"));
        body["status_callback_events"] = json!(["final", "in-progress"]);
        let call = check(body.clone()).unwrap_or_default();
        assert_eq!(
            call.status_callback_events.names().collect::<Vec<_>>(),
            ["in-progress", "final"]
        );
        assert!(
            check(with("status_callback", json!("http://x/cb")))
                .is_ok_and(|c| c.status_callback_events.is_all())
        );
        body["status_callback_events"] = json!(["final", "answered"]);
        assert_eq!(
            refused(body.clone()),
            ("status_callback_events[1]".into(), Rule::Type)
        );
        body["status_callback_events"] = json!(["final", "final"]);
        assert_eq!(
            refused(body.clone()),
            ("status_callback_events[1]".into(), Rule::Duplicate)
        );
        body["status_callback_events"] = json!([]);
        assert_eq!(
            refused(body.clone()),
            ("status_callback_events".into(), Rule::Range)
        );
        body["status_callback_events"] = json!("final");
        assert_eq!(refused(body), ("status_callback_events".into(), Rule::Type));
        assert!(check(with("status_callback_events", json!(["final"]))).is_ok());
    }

    #[test]
    fn early_media_is_a_boolean_false_by_default() {
        assert!(check(with("to", json!("sip:a@b"))).is_ok_and(|c| !c.early_media));
        assert!(check(with("early_media", json!(true))).is_ok_and(|c| c.early_media));
        assert!(check(with("early_media", json!(false))).is_ok_and(|c| !c.early_media));
        assert_eq!(
            refused(with("early_media", json!("yes"))),
            ("early_media".into(), Rule::Type)
        );
    }

    #[test]
    fn machine_detection_names_a_mode() {
        assert!(check(with("to", json!("sip:a@b"))).is_ok_and(|c| c.machine_detection.is_off()));
        for name in MachineDetection::NAMES {
            let call = check(with("machine_detection", json!(name))).unwrap_or_default();
            assert_eq!(call.machine_detection.as_str(), name);
        }
        assert_eq!(
            refused(with("machine_detection", json!("detect_async"))),
            ("machine_detection".into(), Rule::Type)
        );
        assert_eq!(
            refused(with("machine_detection", json!(true))),
            ("machine_detection".into(), Rule::Type)
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(
            refused(with("priority", json!(10))),
            ("priority".into(), Rule::Range)
        );
        assert!(check(with("priority", json!(0))).is_ok_and(|c| c.priority == 0));
        assert_eq!(
            refused(with("ring_timeout", json!(0))),
            ("ring_timeout".into(), Rule::Range)
        );
        assert_eq!(
            refused(with("retry", json!({"max_attempts": 11}))),
            ("retry.max_attempts".into(), Rule::Range)
        );
        assert_eq!(
            refused(with("retry", json!({"delay_secs": 1}))),
            ("retry.delay_secs".into(), Rule::Range)
        );
        assert_eq!(
            refused(with("retry", json!({"on": ["busy", "busy"]}))),
            ("retry.on[1]".into(), Rule::Duplicate)
        );
        assert_eq!(
            refused(with("url", json!("ftp://x/"))),
            ("url".into(), Rule::HttpUrl)
        );
    }

    #[test]
    fn schedules_that_could_never_run_are_refused() {
        let past_deadline = with("not_after", json!("2026-12-04T11:59:59Z"));
        assert_eq!(refused(past_deadline), ("not_after".into(), Rule::Schedule));
        let mut inverted = with("at", json!("2026-12-05T10:00:00Z"));
        inverted["not_after"] = json!("2026-12-05T09:00:00Z");
        assert_eq!(refused(inverted), ("not_after".into(), Rule::Schedule));
        assert_eq!(
            refused(with("at", json!("2028-01-01T00:00:00Z"))),
            ("at".into(), Rule::Schedule)
        );
        // A past `at` is accepted: the call is due at once.
        assert!(check(with("at", json!("2026-12-01T00:00:00Z"))).is_ok());
    }

    #[test]
    fn e164_shape() {
        for good in ["+15551234567", "+44", "+123456789012345"] {
            assert!(check_e164("to", good).is_ok(), "{good}");
        }
        for bad in [
            "+1",
            "+0123",
            "15551234567",
            "+1234567890123456",
            "+1-555",
            "+",
        ] {
            assert!(check_e164("to", bad).is_err(), "{bad}");
        }
    }
}
