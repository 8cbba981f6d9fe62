//! The policy engine's cost per call: `at_acceptance` and `at_dispatch` over a tenant with
//! calling hours and prefix lists, a callee record with a zone, quiet and preferred hours and a
//! cap, and the operator's calling hours, at a time when every window is open (the common case,
//! accept) and at night (a deferral, which searches the windows' boundaries).
//!
//! Run: `cargo bench -p outdial-bench --bench policy_eval` (figures: `docs/benchmarks.md`).
//! Instruction counts: `OUTDIAL_BENCH_ONCE=1 valgrind --tool=callgrind target/release/deps/policy_eval-*`
//! runs each evaluation 10,000 times and nothing else.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use outdial_control::policy::{
    CalleeHistory, CalleeRecord, OperatorPolicy, RequesterPolicy, Schedule, at_acceptance,
    at_dispatch,
};
use time::OffsetDateTime;
use time::macros::datetime;

struct Case {
    requester: RequesterPolicy,
    callee: CalleeRecord,
    operator: OperatorPolicy,
}

fn case() -> Case {
    let hours = |specs: &[&str]| Schedule::parse(specs).expect("hours");
    Case {
        requester: RequesterPolicy {
            calling_hours: hours(&["mon-fri 08:00-20:00", "sat 09:00-13:00"]),
            deny_prefixes: vec!["+1555019".to_owned(), "+1800".to_owned()],
            international: true,
            ..RequesterPolicy::default()
        },
        callee: CalleeRecord {
            time_zone: Some("Europe/Paris".to_owned()),
            quiet_hours: hours(&["21:00-08:00"]),
            preferred_hours: hours(&["mon-fri 09:00-19:00"]),
            max_calls: Some(3),
            ..CalleeRecord::default()
        },
        operator: OperatorPolicy {
            calling_hours: hours(&["08:00-21:00"]),
            ..OperatorPolicy::default()
        },
    }
}

const TO: &str = "+33612345678";
/// Friday 10:00 in Paris: every window open.
const OPEN: OffsetDateTime = datetime!(2026-12-04 09:00 UTC);
/// Friday 23:30 in Paris: deferred to Monday 09:00.
const NIGHT: OffsetDateTime = datetime!(2026-12-04 22:30 UTC);

fn dispatch(c: &Case, now: OffsetDateTime) {
    let history = CalleeHistory {
        placed: 1,
        oldest: Some(now),
    };
    black_box(at_dispatch(
        "acme",
        black_box(TO),
        &c.requester,
        Some(&c.callee),
        history,
        &c.operator,
        now,
    ));
}

fn bench(criterion: &mut Criterion) {
    let c = case();
    criterion.bench_function("policy at_acceptance", |b| {
        b.iter(|| {
            black_box(at_acceptance(
                "acme",
                black_box(TO),
                &c.requester,
                Some(&c.callee),
                &c.operator,
            ))
        });
    });
    criterion.bench_function("policy at_dispatch, windows open", |b| {
        b.iter(|| dispatch(&c, OPEN))
    });
    criterion.bench_function("policy at_dispatch, deferred over a weekend", |b| {
        b.iter(|| dispatch(&c, NIGHT));
    });
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("OUTDIAL_BENCH_ONCE").is_some() {
        let c = case();
        for _ in 0..10_000 {
            black_box(at_acceptance(
                "acme",
                TO,
                &c.requester,
                Some(&c.callee),
                &c.operator,
            ));
            dispatch(&c, OPEN);
            dispatch(&c, NIGHT);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
