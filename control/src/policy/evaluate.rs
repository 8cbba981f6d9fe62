//! The rules, in the order they run (`docs/policy.md` keeps the same order).

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime as Zoned};
use time::OffsetDateTime;

use super::callee::CalleeRecord;
use super::decision::{Decision, Owner, Refusal};
use super::destination::{e164_digits, matching};
use super::hours::Schedule;
use super::requester::RequesterPolicy;
use super::zones::zone_for_number;

/// How far ahead a closed window is searched for its opening: a week and a day, so every
/// weekly schedule is seen whole.
const HORIZON_DAYS: i16 = 9;

/// The operator's rules (from `[policy]` in the configuration).
#[derive(Debug, Clone)]
pub struct OperatorPolicy {
    /// The home country calling code (`"1"`, `"44"`): other numbers are international.
    pub home_country: String,
    /// Premium-rate prefixes (E.164 digits).
    pub premium_prefixes: Vec<String>,
    /// Prefixes nobody may call (emergency and special services, for instance).
    pub deny_prefixes: Vec<String>,
    /// Hours in the callee's local time when any call may be placed; empty = any time.
    pub calling_hours: Schedule,
    /// The zone of callees with no record and no known country code (and of SIP URIs).
    pub default_time_zone: TimeZone,
}

impl Default for OperatorPolicy {
    /// The rules of the default `[policy]`.
    fn default() -> Self {
        super::PolicyConfig::default().operator_policy()
    }
}

/// Calls placed to a callee in the last period of their cap, from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CalleeHistory {
    /// How many.
    pub placed: u32,
    /// When the earliest of them was placed.
    pub oldest: Option<OffsetDateTime>,
}

/// The static rules, when a request arrives: opt-outs, then destinations.
pub fn at_acceptance(
    tenant: &str,
    to: &str,
    requester: &RequesterPolicy,
    callee: Option<&CalleeRecord>,
    operator: &OperatorPolicy,
) -> Decision {
    if let Some(refusal) = opted_out(tenant, callee) {
        return Decision::Refuse(refusal);
    }
    let Some(digits) = e164_digits(to) else {
        return Decision::Accept;
    };
    if let Some(prefix) = matching(digits, &operator.deny_prefixes) {
        return refuse(
            "destination_denied",
            Owner::Operator,
            "operator.deny_prefixes",
            format!("numbers starting +{prefix} may not be called on this service"),
        );
    }
    if let Some(prefix) = matching(digits, &requester.deny_prefixes) {
        return refuse(
            "destination_denied",
            Owner::Requester,
            "requester.deny_prefixes",
            format!("the tenant's policy denies numbers starting +{prefix}"),
        );
    }
    if !requester.allow_prefixes.is_empty() && matching(digits, &requester.allow_prefixes).is_none()
    {
        return refuse(
            "destination_not_allowed",
            Owner::Requester,
            "requester.allow_prefixes",
            "the number starts with none of the tenant's allow_prefixes; add its prefix to the policy",
        );
    }
    if !requester.premium_rate
        && let Some(prefix) = matching(digits, &operator.premium_prefixes)
    {
        return refuse(
            "premium_rate",
            Owner::Requester,
            "requester.premium_rate",
            format!(
                "numbers starting +{prefix} are premium-rate; the tenant's policy must set premium_rate: true to call them"
            ),
        );
    }
    if !requester.international && !digits.starts_with(operator.home_country.as_str()) {
        return refuse(
            "international",
            Owner::Requester,
            "requester.international",
            format!(
                "the number is outside the home country (+{}); the tenant's policy must set international: true to call it",
                operator.home_country
            ),
        );
    }
    Decision::Accept
}

/// The rules when the scheduler releases a call at `now`: opt-outs again, the callee's cap,
/// then every calling window in the callee's zone. Closed windows defer, never refuse, unless
/// they never open together.
pub fn at_dispatch(
    tenant: &str,
    to: &str,
    requester: &RequesterPolicy,
    callee: Option<&CalleeRecord>,
    history: CalleeHistory,
    operator: &OperatorPolicy,
    now: OffsetDateTime,
) -> Decision {
    if let Some(refusal) = opted_out(tenant, callee) {
        return Decision::Refuse(refusal);
    }
    let mut from = timestamp(now);
    let mut held = None;
    if let Some(record) = callee
        && let Some(max) = record.max_calls
        && history.placed >= max
    {
        let period = jiff::SignedDuration::from_secs(i64::try_from(record.period()).unwrap_or(0));
        let oldest = history.oldest.map_or(from, timestamp);
        let frees_at = oldest.checked_add(period).unwrap_or(from);
        // A count whose oldest call has already left the period is stale: no hold.
        if frees_at > from {
            from = frees_at;
            held = Some(Refusal::new(
                "callee_cap",
                Owner::Callee,
                "callee.max_calls",
                format!(
                    "the callee takes at most {max} calls per {} s and has had {}",
                    record.period(),
                    history.placed
                ),
            ));
        }
    }
    let zone = callee_zone(to, callee, operator);
    let windows = windows(requester, callee, operator);
    match next_open(&windows, &zone, from) {
        Ok(None) => match held {
            None => Decision::Accept,
            Some(reason) => Decision::Defer {
                until: offset(from),
                reason,
            },
        },
        Ok(Some((until, closed))) => Decision::Defer {
            until: offset(until),
            reason: held.unwrap_or(closed),
        },
        Err(never) => Decision::Refuse(never),
    }
}

fn opted_out(tenant: &str, callee: Option<&CalleeRecord>) -> Option<Refusal> {
    let opt_out = &callee?.opt_out;
    if opt_out.all {
        return Some(Refusal::new(
            "opted_out",
            Owner::Callee,
            "callee.opt_out",
            "the callee asked not to be called by anyone (do-not-call)",
        ));
    }
    opt_out.refuses(tenant).then(|| {
        Refusal::new(
            "opted_out",
            Owner::Callee,
            "callee.opt_out",
            "the callee asked this tenant not to call them again",
        )
    })
}

fn refuse(
    code: &'static str,
    owner: Owner,
    rule: &'static str,
    message: impl Into<String>,
) -> Decision {
    Decision::Refuse(Refusal::new(code, owner, rule, message))
}

/// The callee's zone: their record's, else their country's, else the operator's default.
fn callee_zone(to: &str, callee: Option<&CalleeRecord>, operator: &OperatorPolicy) -> TimeZone {
    callee
        .and_then(|c| c.time_zone.as_deref())
        .or_else(|| e164_digits(to).and_then(zone_for_number))
        .and_then(|name| TimeZone::get(name).ok())
        .unwrap_or_else(|| operator.default_time_zone.clone())
}

/// A window a call must be inside (or, for quiet hours, outside).
struct Window<'a> {
    schedule: &'a Schedule,
    inside: bool,
    code: &'static str,
    owner: Owner,
    rule: &'static str,
}

impl Window<'_> {
    fn allows(&self, at: &Zoned) -> bool {
        if self.schedule.is_always() {
            return true;
        }
        self.schedule.contains(at) == self.inside
    }

    fn closed(&self) -> Refusal {
        let what = if self.inside { "outside" } else { "inside" };
        Refusal::new(
            self.code,
            self.owner,
            self.rule,
            format!(
                "the callee's local time is {what} {} ({}); the call waits until it may be placed",
                self.rule,
                self.schedule.specs().join(", ")
            ),
        )
    }
}

fn windows<'a>(
    requester: &'a RequesterPolicy,
    callee: Option<&'a CalleeRecord>,
    operator: &'a OperatorPolicy,
) -> Vec<Window<'a>> {
    let mut out = vec![Window {
        schedule: &operator.calling_hours,
        inside: true,
        code: "outside_calling_hours",
        owner: Owner::Operator,
        rule: "operator.calling_hours",
    }];
    if let Some(callee) = callee {
        out.push(Window {
            schedule: &callee.quiet_hours,
            inside: false,
            code: "quiet_hours",
            owner: Owner::Callee,
            rule: "callee.quiet_hours",
        });
        out.push(Window {
            schedule: &callee.preferred_hours,
            inside: true,
            code: "outside_preferred_hours",
            owner: Owner::Callee,
            rule: "callee.preferred_hours",
        });
    }
    out.push(Window {
        schedule: &requester.calling_hours,
        inside: true,
        code: "outside_calling_hours",
        owner: Owner::Requester,
        rule: "requester.calling_hours",
    });
    out.retain(|w| !w.schedule.is_always());
    out
}

/// `Ok(None)`: every window is open at `from`. `Ok(Some((t, why)))`: they all open at `t`,
/// and `why` is the first closed at `from`. `Err`: they never open together.
fn next_open(
    windows: &[Window<'_>],
    zone: &TimeZone,
    from: Timestamp,
) -> Result<Option<(Timestamp, Refusal)>, Refusal> {
    let at = from.to_zoned_datetime(zone.clone());
    let Some(closed) = windows.iter().find(|w| !w.allows(&at)) else {
        return Ok(None);
    };
    // The allowed times are a union of intervals, each opening where some window opens: a
    // span of hours starts, or a span of quiet hours ends. Try those instants in order.
    let first_day = at.date().yesterday().unwrap_or_else(|_| at.date());
    let mut candidates: Vec<Timestamp> = windows
        .iter()
        .flat_map(|w| {
            if w.inside {
                w.schedule.starts(zone, first_day, HORIZON_DAYS)
            } else {
                w.schedule.ends(zone, first_day, HORIZON_DAYS)
            }
        })
        .filter(|&t| t > from)
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    for candidate in candidates {
        let local = candidate.to_zoned_datetime(zone.clone());
        if windows.iter().all(|w| w.allows(&local)) {
            return Ok(Some((candidate, closed.closed())));
        }
    }
    Err(Refusal::new(
        "no_calling_time",
        closed.owner,
        closed.rule,
        format!(
            "{} and the other calling windows never open together within a week; no time is left to place the call",
            closed.rule
        ),
    ))
}

fn timestamp(t: OffsetDateTime) -> Timestamp {
    let micros = i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(0);
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn offset(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
