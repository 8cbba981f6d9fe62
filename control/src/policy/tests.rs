//! Table-driven tests of every rule and owner, in virtual time across quiet hours, zones and
//! DST changes.
#![allow(clippy::type_complexity)] // the tables read best as tuples

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;

fn t(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339")
}

fn schedule(specs: &[&str]) -> Schedule {
    Schedule::parse(specs).expect("schedule")
}

fn refused(decision: &Decision) -> Option<(&'static str, Owner, &'static str)> {
    match decision {
        Decision::Refuse(r) => Some((r.code, r.owner, r.rule)),
        _ => None,
    }
}

#[test]
fn acceptance_rules_by_owner() {
    let operator = OperatorPolicy {
        deny_prefixes: vec!["+1911".to_owned()],
        ..OperatorPolicy::default()
    };
    let open = RequesterPolicy {
        international: true,
        premium_rate: true,
        ..RequesterPolicy::default()
    };
    let restrictive = RequesterPolicy {
        allow_prefixes: vec!["+1555".to_owned(), "+33".to_owned()],
        deny_prefixes: vec!["+15550199".to_owned()],
        ..RequesterPolicy::default()
    };
    let opted_out_all = CalleeRecord {
        opt_out: OptOut {
            all: true,
            tenants: vec![],
        },
        ..CalleeRecord::default()
    };
    let opted_out_acme = CalleeRecord {
        opt_out: OptOut {
            all: false,
            tenants: vec!["acme".to_owned()],
        },
        ..CalleeRecord::default()
    };
    use Owner::*;
    let cases: &[(
        &str,
        &RequesterPolicy,
        Option<&CalleeRecord>,
        Option<(&str, Owner, &str)>,
    )] = &[
        ("+15550100", &RequesterPolicy::default(), None, None),
        (
            "sip:alice@example.com",
            &RequesterPolicy::default(),
            None,
            None,
        ),
        (
            "+19005551234",
            &RequesterPolicy::default(),
            None,
            Some(("premium_rate", Requester, "requester.premium_rate")),
        ),
        ("+19005551234", &open, None, None),
        (
            "+33612345678",
            &RequesterPolicy::default(),
            None,
            Some(("international", Requester, "requester.international")),
        ),
        ("+33612345678", &open, None, None),
        ("+33899123456", &open, None, None),
        (
            "+1911",
            &open,
            None,
            Some(("destination_denied", Operator, "operator.deny_prefixes")),
        ),
        (
            "+15550199",
            &restrictive,
            None,
            Some(("destination_denied", Requester, "requester.deny_prefixes")),
        ),
        ("+15550100", &restrictive, None, None),
        (
            "+12125550100",
            &restrictive,
            None,
            Some((
                "destination_not_allowed",
                Requester,
                "requester.allow_prefixes",
            )),
        ),
        (
            "+33612345678",
            &restrictive,
            None,
            Some(("international", Requester, "requester.international")),
        ),
        (
            "+15550100",
            &open,
            Some(&opted_out_all),
            Some(("opted_out", Callee, "callee.opt_out")),
        ),
        (
            "sip:bob@example.com",
            &open,
            Some(&opted_out_all),
            Some(("opted_out", Callee, "callee.opt_out")),
        ),
        (
            "+15550100",
            &open,
            Some(&opted_out_acme),
            Some(("opted_out", Callee, "callee.opt_out")),
        ),
    ];
    for (to, requester, callee, want) in cases {
        let got = at_acceptance("acme", to, requester, *callee, &operator);
        assert_eq!(refused(&got), *want, "{to} under {requester:?}");
    }
    // Another tenant is not held by acme's opt-out.
    assert_eq!(
        at_acceptance(
            "other",
            "+15550100",
            &open,
            Some(&opted_out_acme),
            &operator
        ),
        Decision::Accept
    );
}

/// Dispatch windows: (now, callee zone, quiet hours, operator hours, tenant hours) → deferral
/// until, or accept.
#[test]
fn windows_defer_to_the_moment_all_open() {
    let cases: &[(
        &str,
        Option<&str>,
        &[&str],
        &[&str],
        &[&str],
        Option<(&str, &str)>,
    )] = &[
        // Paris, 22:30 local in winter (UTC+1): quiet until 08:00 local = 07:00Z.
        (
            "2026-12-04T21:30:00Z",
            Some("Europe/Paris"),
            &["21:00-08:00"],
            &[],
            &[],
            Some(("2026-12-05T07:00:00Z", "callee.quiet_hours")),
        ),
        // 10:00 local: not quiet.
        (
            "2026-12-04T09:00:00Z",
            Some("Europe/Paris"),
            &["21:00-08:00"],
            &[],
            &[],
            None,
        ),
        // The same instant in New York (UTC-5, 16:30): fine.
        (
            "2026-12-04T21:30:00Z",
            Some("America/New_York"),
            &["21:00-08:00"],
            &[],
            &[],
            None,
        ),
        // No record zone: +33 gives Paris.
        (
            "2026-12-04T21:30:00Z",
            None,
            &["21:00-08:00"],
            &[],
            &[],
            Some(("2026-12-05T07:00:00Z", "callee.quiet_hours")),
        ),
        // Operator hours 08:00-21:00 and tenant weekdays only: Friday 22:30 Paris → Monday 08:00.
        (
            "2026-12-04T21:30:00Z",
            Some("Europe/Paris"),
            &[],
            &["08:00-21:00"],
            &["mon-fri 00:00-24:00"],
            Some(("2026-12-07T07:00:00Z", "operator.calling_hours")),
        ),
        // Quiet 21:00-09:30 and operator 08:00-21:00 overlap into 09:30.
        (
            "2026-12-04T06:00:00Z",
            Some("Europe/Paris"),
            &["21:00-09:30"],
            &["08:00-21:00"],
            &[],
            Some(("2026-12-04T08:30:00Z", "operator.calling_hours")),
        ),
        // DST, spring forward: Paris 2026-03-29, quiet until 08:00 local = 06:00Z (UTC+2 now).
        (
            "2026-03-28T23:00:00Z",
            Some("Europe/Paris"),
            &["22:00-08:00"],
            &[],
            &[],
            Some(("2026-03-29T06:00:00Z", "callee.quiet_hours")),
        ),
        // DST, fall back: Paris 2026-10-25, 08:00 local is UTC+1 again = 07:00Z.
        (
            "2026-10-24T23:00:00Z",
            Some("Europe/Paris"),
            &["22:00-08:00"],
            &[],
            &[],
            Some(("2026-10-25T07:00:00Z", "callee.quiet_hours")),
        ),
        // New York spring forward 2026-03-08: 09:00 EDT = 13:00Z.
        (
            "2026-03-08T06:00:00Z",
            Some("America/New_York"),
            &[],
            &["09:00-20:00"],
            &[],
            Some(("2026-03-08T13:00:00Z", "operator.calling_hours")),
        ),
        // The day before, 09:00 EST = 14:00Z.
        (
            "2026-03-07T06:00:00Z",
            Some("America/New_York"),
            &[],
            &["09:00-20:00"],
            &[],
            Some(("2026-03-07T14:00:00Z", "operator.calling_hours")),
        ),
        // Tokyo (no DST) tenant hours 10:00-12:00, now 12:30 local → tomorrow 10:00 = 01:00Z.
        (
            "2026-12-04T03:30:00Z",
            Some("Asia/Tokyo"),
            &[],
            &[],
            &["10:00-12:00"],
            Some(("2026-12-05T01:00:00Z", "requester.calling_hours")),
        ),
    ];
    for (now, zone, quiet, operator_hours, tenant_hours, want) in cases {
        let callee = CalleeRecord {
            time_zone: zone.map(str::to_owned),
            quiet_hours: schedule(quiet),
            ..CalleeRecord::default()
        };
        let operator = OperatorPolicy {
            calling_hours: schedule(operator_hours),
            ..OperatorPolicy::default()
        };
        let requester = RequesterPolicy {
            calling_hours: schedule(tenant_hours),
            international: true,
            ..RequesterPolicy::default()
        };
        let got = at_dispatch(
            "acme",
            "+33612345678",
            &requester,
            Some(&callee),
            CalleeHistory::default(),
            &operator,
            t(now),
        );
        match (want, got) {
            (None, Decision::Accept) => {}
            (Some((until, rule)), Decision::Defer { until: got, reason }) => {
                assert_eq!(
                    (got, reason.rule),
                    (t(until), *rule),
                    "at {now} in {zone:?}"
                );
            }
            (want, got) => panic!("at {now} in {zone:?}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn windows_that_never_meet_refuse_and_name_the_rule() {
    let callee = CalleeRecord {
        time_zone: Some("UTC".to_owned()),
        preferred_hours: schedule(&["18:00-20:00"]),
        ..CalleeRecord::default()
    };
    let requester = RequesterPolicy {
        calling_hours: schedule(&["09:00-12:00"]),
        ..RequesterPolicy::default()
    };
    let got = at_dispatch(
        "t",
        "+15550100",
        &requester,
        Some(&callee),
        CalleeHistory::default(),
        &OperatorPolicy::default(),
        t("2026-12-04T10:00:00Z"),
    );
    assert_eq!(
        refused(&got),
        Some(("no_calling_time", Owner::Callee, "callee.preferred_hours"))
    );
}

#[test]
fn the_callee_cap_defers_until_the_oldest_call_leaves_the_period() {
    let callee = CalleeRecord {
        time_zone: Some("UTC".to_owned()),
        max_calls: Some(2),
        period_secs: 3600,
        ..CalleeRecord::default()
    };
    let history = |placed, oldest: &str| CalleeHistory {
        placed,
        oldest: Some(t(oldest)),
    };
    let now = t("2026-12-04T10:00:00Z");
    let policy = RequesterPolicy::default();
    let operator = OperatorPolicy::default();
    assert_eq!(
        at_dispatch(
            "t",
            "+15550100",
            &policy,
            Some(&callee),
            history(1, "2026-12-04T09:30:00Z"),
            &operator,
            now
        ),
        Decision::Accept
    );
    match at_dispatch(
        "t",
        "+15550100",
        &policy,
        Some(&callee),
        history(2, "2026-12-04T09:30:00Z"),
        &operator,
        now,
    ) {
        Decision::Defer { until, reason } => {
            assert_eq!(until, t("2026-12-04T10:30:00Z"));
            assert_eq!(
                (reason.code, reason.owner, reason.rule),
                ("callee_cap", Owner::Callee, "callee.max_calls")
            );
        }
        other => panic!("{other:?}"),
    }
    // A count whose oldest call already left the period is stale: no hold (never a deferral
    // to now, which would release and defer the call in a loop). Found by the fuzzer.
    assert_eq!(
        at_dispatch(
            "t",
            "+15550100",
            &policy,
            Some(&callee),
            history(3, "2026-12-04T08:00:00Z"),
            &operator,
            now
        ),
        Decision::Accept
    );
    // A cap that frees up inside quiet hours waits for both.
    let quiet = CalleeRecord {
        quiet_hours: schedule(&["10:00-11:00"]),
        ..callee
    };
    match at_dispatch(
        "t",
        "+15550100",
        &policy,
        Some(&quiet),
        history(2, "2026-12-04T09:30:00Z"),
        &operator,
        now,
    ) {
        Decision::Defer { until, reason } => {
            assert_eq!(
                (until, reason.rule),
                (t("2026-12-04T11:00:00Z"), "callee.max_calls")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_opt_out_after_acceptance_refuses_at_dispatch() {
    let callee = CalleeRecord {
        opt_out: OptOut {
            all: false,
            tenants: vec!["t".to_owned()],
        },
        ..CalleeRecord::default()
    };
    let got = at_dispatch(
        "t",
        "+15550100",
        &RequesterPolicy::default(),
        Some(&callee),
        CalleeHistory::default(),
        &OperatorPolicy::default(),
        t("2026-12-04T10:00:00Z"),
    );
    assert_eq!(
        refused(&got),
        Some(("opted_out", Owner::Callee, "callee.opt_out"))
    );
}

#[test]
fn policies_read_from_json_check_their_values() {
    let good: RequesterPolicy = serde_json::from_str(r#"{"calling_hours":["mon-fri 09:00-18:00"],"deny_prefixes":["+1900"],"calls_per_second":5,"burst":5}"#).expect("policy");
    assert!(good.check().is_ok());
    assert!(serde_json::from_str::<RequesterPolicy>(r#"{"calling_hours":["9-5"]}"#).is_err());
    assert!(serde_json::from_str::<RequesterPolicy>(r#"{"colour":"red"}"#).is_err());
    let bad: RequesterPolicy =
        serde_json::from_str(r#"{"deny_prefixes":["+1-900"]}"#).expect("parses");
    assert_eq!(bad.check().map_err(|e| e.field), Err("deny_prefixes"));
    let callee: CalleeRecord =
        serde_json::from_str(r#"{"time_zone":"Mars/Olympus"}"#).expect("parses");
    assert!(callee.check().is_err());
}
