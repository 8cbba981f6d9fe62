//! The load run's report: counts by outcome, the verdicts, latency percentiles and the
//! per-second timeline; as text or JSON (the JSON is what `docs/benchmarks.md` is made from).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::calls::Checks;
use super::prom::BucketSummary;

/// A latency histogram in microseconds (1 µs to 1 hour, 3 significant figures).
pub fn histogram() -> Histogram<u64> {
    // invariant: these bounds are valid for hdrhistogram (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5).
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records `ms` milliseconds (clamped to the histogram's range).
pub fn record_ms(h: &mut Histogram<u64>, ms: f64) {
    let us = (ms * 1000.0).round().clamp(1.0, 3_600_000_000.0) as u64;
    h.saturating_record(us);
}

/// Percentiles of one latency, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// The summary of `h` (microseconds), `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        let ms = |us: u64| us as f64 / 1000.0;
        (!h.is_empty()).then(|| Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start (end of this second).
    pub t: u64,
    /// Calls asked for in this second.
    pub requested: u64,
    /// Calls that reached a final status in this second.
    pub ended: u64,
    /// Create requests that failed in this second.
    pub errors: u64,
    /// Calls in flight at its end.
    pub in_flight: u64,
    /// Request → INVITE of calls dialled in this second, median and 99th percentile (ms).
    pub setup_p50_ms: Option<f64>,
    /// See `setup_p50_ms`.
    pub setup_p99_ms: Option<f64>,
}

/// The settings a run was made with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The API's base URL.
    pub api: String,
    /// The callees' SIP address.
    pub callee: String,
    /// The application.
    pub app: String,
    /// `rate`, `ramp` or `concurrency`, with its figures.
    pub pace: String,
    /// Calls per request.
    pub batch: u64,
    /// `--duration`, seconds.
    pub duration_secs: Option<f64>,
    /// `--count`.
    pub count: Option<u64>,
    /// Seconds a call has to reach its final status.
    pub call_timeout_secs: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `outdial bench load` and its version.
    pub tool: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The machine: CPUs and kernel, when known.
    pub machine: String,
    /// How it was run.
    pub settings: Settings,
    /// Seconds spent asking for calls.
    pub asking_secs: f64,
    /// Seconds from the start until the last call settled.
    pub total_secs: f64,
    /// Calls asked for.
    pub requested: u64,
    /// Calls the API created.
    pub created: u64,
    /// Create requests made (a batch is one).
    pub create_requests: u64,
    /// Created calls per second while asking.
    pub created_per_sec: f64,
    /// Final statuses, by name.
    pub outcomes: BTreeMap<String, u64>,
    /// The verdicts.
    pub checks: Checks,
    /// Up to 20 examples of failed verdicts: call id (or number) and what went wrong.
    pub failures: Vec<String>,
    /// Latency percentiles, milliseconds: `create_request` (HTTP round trip of one create
    /// request), `request_to_invite`, `post_dial_delay`, `dtmf_to_submit`,
    /// `answered_to_ended` (how long answered calls were held).
    pub latency_ms: BTreeMap<String, Summary>,
    /// Answer → first prompt audio, from the server's `outdial_answer_to_prompt_seconds`
    /// (bucket resolution), when its `/metrics` could be read.
    pub answer_to_first_prompt_ms: Option<BucketSummary>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// True when every call passed its check.
    pub passed: bool,
}

/// Latency rows in the order they are printed, with their labels.
pub const LATENCY_ROWS: [(&str, &str); 5] = [
    ("create_request", "create request (HTTP)"),
    ("request_to_invite", "request -> INVITE"),
    ("post_dial_delay", "post-dial delay"),
    ("dtmf_to_submit", "DTMF -> submit"),
    ("answered_to_ended", "answer -> end (hold)"),
];

impl Report {
    /// The report as text for a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "outdial bench load: {} calls asked for ({}, {} per request) in {:.1} s, app {}, callee {}",
            self.requested, s.pace, s.batch, self.asking_secs, s.app, s.callee
        );
        let _ = writeln!(
            out,
            "created {} ({:.1}/s) in {} requests; all settled after {:.1} s",
            self.created, self.created_per_sec, self.create_requests, self.total_secs
        );
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "outcomes: {}", none_if_empty(outcomes.join(", ")));
        let c = &self.checks;
        let _ = writeln!(
            out,
            "checks: ok {}, allowed outcome {}, refused {}, lost {}, no submit {}, mismatch {}, unexpected outcome {}",
            c.ok,
            c.allowed_outcome,
            c.refused,
            c.lost,
            c.no_submit,
            c.mismatch,
            c.unexpected_outcome
        );
        for failure in &self.failures {
            let _ = writeln!(out, "  {failure}");
        }
        let _ = writeln!(
            out,
            "{:<26} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (key, label) in LATENCY_ROWS {
            if let Some(l) = self.latency_ms.get(key) {
                let _ = writeln!(
                    out,
                    "  {label:<24} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    l.count, l.p50, l.p90, l.p99, l.p99_9, l.max
                );
            }
        }
        if let Some(b) = &self.answer_to_first_prompt_ms {
            let le = |v: Option<f64>| v.map_or_else(|| "+Inf".to_owned(), |v| format!("<={v}"));
            let _ = writeln!(
                out,
                "  {:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}   (server histogram buckets)",
                "answer -> first prompt",
                b.count,
                le(b.p50_le),
                le(b.p90_le),
                le(b.p99_le),
                le(b.p99_9_le),
                le(b.max_le)
            );
        }
        let _ = writeln!(out, "{}", if self.passed { "PASS" } else { "FAIL" });
        out
    }
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { "none".to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_in_milliseconds_and_text_shows_every_count() {
        let mut h = histogram();
        for ms in 1..=100 {
            record_ms(&mut h, f64::from(ms));
        }
        let s = Summary::of(&h).expect("not empty");
        assert_eq!(s.count, 100);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(Summary::of(&histogram()), None);

        let report = Report {
            tool: "outdial bench load 0.1.0".into(),
            started_at: "2026-12-04T21:00:00Z".into(),
            machine: "2 CPUs".into(),
            settings: Settings {
                api: "http://127.0.0.1:8080".into(),
                callee: "127.0.0.1:5070".into(),
                app: "survey".into(),
                pace: "rate 10/s".into(),
                batch: 1,
                duration_secs: None,
                count: Some(3),
                call_timeout_secs: 60,
            },
            asking_secs: 0.3,
            total_secs: 5.0,
            requested: 3,
            created: 3,
            create_requests: 3,
            created_per_sec: 10.0,
            outcomes: BTreeMap::from([("completed".into(), 2), ("busy".into(), 1)]),
            checks: Checks {
                ok: 2,
                unexpected_outcome: 1,
                ..Checks::default()
            },
            failures: vec!["call_X: ended busy".into()],
            latency_ms: BTreeMap::from([("request_to_invite".into(), s)]),
            answer_to_first_prompt_ms: None,
            timeline: Vec::new(),
            passed: false,
        };
        let text = report.text();
        assert!(text.contains("outcomes: busy 1, completed 2"), "{text}");
        assert!(
            text.contains("ok 2,") && text.contains("unexpected outcome 1"),
            "{text}"
        );
        assert!(text.contains("call_X: ended busy"), "{text}");
        assert!(
            text.contains("request -> INVITE") && text.ends_with("FAIL\n"),
            "{text}"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["checks"]["ok"], 2);
        assert_eq!(json["latency_ms"]["request_to_invite"]["count"], 100);
    }
}
