//! The policy engine on arbitrary input: the first 8 bytes are the clock (seconds, folded into
//! 1970–2100), the rest a JSON object `{"to", "requester", "callee", "placed", "oldest"}` (raw,
//! and with each byte mapped onto JSON punctuation and the policy's words). Never a panic; a
//! deferral is to a later moment, and at that moment (with no cap in play) the call goes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_control::policy::{
    CalleeHistory, CalleeRecord, Decision, OperatorPolicy, RequesterPolicy, Schedule,
    at_acceptance, at_dispatch,
};
use serde::Deserialize;
use time::OffsetDateTime;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Input {
    to: String,
    requester: RequesterPolicy,
    callee: Option<CalleeRecord>,
    operator_hours: Vec<String>,
    placed: u32,
    oldest: i64,
}

const ALPHABET: &[&str] = &[
    "{", "}", "[", "]", ":", ",", "\"", "\"to\"", "\"requester\"", "\"callee\"",
    "\"calling_hours\"", "\"quiet_hours\"", "\"preferred_hours\"", "\"time_zone\"",
    "\"Europe/Paris\"", "\"America/New_York\"", "\"Australia/Lord_Howe\"", "\"max_calls\"",
    "\"period_secs\"", "\"opt_out\"", "\"all\"", "\"tenants\"", "\"t\"", "true", "false",
    "\"operator_hours\"", "\"placed\"", "\"oldest\"", "\"mon-fri ", "\"sat,sun ", "09:00-17:00\"",
    "21:00-08:00\"", "00:00-24:00\"", "02:30-03:30\"", "\"+33612345678\"", "\"+15550100\"",
    "\"+19005550100\"", "\"deny_prefixes\"", "\"allow_prefixes\"", "\"+1\"", "\"international\"",
    "1", "7", "86400", "3600",
];

const MIN: i64 = 0;
const MAX: i64 = 4_102_444_800; // 2100-01-01

fn exercise(now: OffsetDateTime, json: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Input>(json) else {
        return;
    };
    let Ok(operator_hours) = Schedule::parse(&input.operator_hours) else {
        return;
    };
    let operator = OperatorPolicy {
        calling_hours: operator_hours,
        ..OperatorPolicy::default()
    };
    let callee = input.callee.as_ref();
    let _ = at_acceptance("t", &input.to, &input.requester, callee, &operator);
    let history = CalleeHistory {
        placed: input.placed,
        oldest: OffsetDateTime::from_unix_timestamp(input.oldest.clamp(MIN, MAX)).ok(),
    };
    let decision = at_dispatch("t", &input.to, &input.requester, callee, history, &operator, now);
    if let Decision::Defer { until, .. } = decision {
        assert!(until > now, "deferred to {until}, not after {now}");
        if callee.is_none_or(|c| c.max_calls.is_none()) {
            let later = at_dispatch("t", &input.to, &input.requester, callee, history, &operator, until);
            assert_eq!(later, Decision::Accept, "deferred to {until}, which is not open");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((clock, json)) = data.split_first_chunk::<8>() else {
        return;
    };
    let seconds = i64::from_le_bytes(*clock).rem_euclid(MAX - MIN) + MIN;
    let Ok(now) = OffsetDateTime::from_unix_timestamp(seconds) else {
        return;
    };
    exercise(now, json);
    let mapped: String = json
        .iter()
        .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
        .collect();
    exercise(now, mapped.as_bytes());
});
