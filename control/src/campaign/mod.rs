//! Campaigns: a tenant's list of callees (with per-callee variables), one application, a
//! window and a pacing. Each uploaded row becomes a call through the same validator and the
//! same acceptance rules as every other intake; rows are paced by giving each accepted call
//! its own due time (`at`), one pacing interval after the previous one, so the scheduler
//! releases them at the campaign's rate without any campaign state of its own, and a restart
//! resumes exactly where the store says (every call is stored, with its due time, before the
//! upload is answered).
//!
//! - [`rows`]: the streaming CSV/NDJSON reader (sans-IO).
//! - [`CampaignSpec`]: what `POST /v1/campaigns` takes.
//! - [`Pacer`]: due times at a rate, never in the past, never bursting.

pub mod rows;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::intake::CallRequest;

/// Highest pacing, calls per second.
pub const MAX_CALLS_PER_SECOND: f64 = 1000.0;

/// `POST /v1/campaigns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The application every call runs.
    pub url: String,
    /// The caller, as in `POST /v1/calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// First call not before (RFC 3339); default: at once.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<OffsetDateTime>,
    /// Calls not placed by then end `expired` (each call's `not_after`).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<OffsetDateTime>,
    /// Pacing: calls released per second (0.001–1000).
    pub calls_per_second: f64,
    /// Variables every call gets (a row's own variables win).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub vars: Map<String, Value>,
    /// As in `POST /v1/calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// As in `POST /v1/calls`: which status changes `status_callback` hears about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback_events: Option<Vec<String>>,
    /// As in `POST /v1/calls`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_timeout: Option<u64>,
    /// As in `POST /v1/calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_detection: Option<String>,
    /// As in `POST /v1/calls`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early_media: bool,
    /// As in `POST /v1/calls`, 0–9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
}

impl CampaignSpec {
    /// Checks what a row cannot: the pacing and the window.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), String> {
        if !(self.calls_per_second >= 0.001 && self.calls_per_second <= MAX_CALLS_PER_SECOND) {
            return Err(format!(
                "`calls_per_second` must be 0.001 to {MAX_CALLS_PER_SECOND}, not {}",
                self.calls_per_second
            ));
        }
        if let Some(end) = self.end {
            if end <= now {
                return Err("`end` is already past".to_owned());
            }
            if self.start.is_some_and(|start| start >= end) {
                return Err("`end` must be after `start`".to_owned());
            }
        }
        Ok(())
    }

    /// The call request for one row (its due time is set after the rules accept it).
    pub fn request(&self, to: String, row_vars: Map<String, Value>) -> CallRequest {
        let mut vars = self.vars.clone();
        vars.extend(row_vars);
        CallRequest {
            to,
            url: self.url.clone(),
            from: self.from.clone(),
            vars,
            status_callback: self.status_callback.clone(),
            status_callback_events: self.status_callback_events.clone(),
            ring_timeout_secs: self.ring_timeout,
            machine_detection: self.machine_detection.clone(),
            early_media: self.early_media,
            at: None,
            not_after: self.end,
            priority: self.priority,
            retry: None,
        }
    }
}

/// Due times at a rate: each one interval after the previous, never before `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    next: OffsetDateTime,
    interval: Duration,
}

impl Pacer {
    /// A pacer whose next call is due at `next`, `calls_per_second` apart.
    pub fn new(next: OffsetDateTime, calls_per_second: f64) -> Self {
        let interval =
            Duration::seconds_f64(1.0 / calls_per_second.clamp(0.001, MAX_CALLS_PER_SECOND));
        Self { next, interval }
    }

    /// The due time of the next call at `now`.
    pub fn next_due(&mut self, now: OffsetDateTime) -> OffsetDateTime {
        let due = self.next.max(now);
        self.next = due + self.interval;
        due
    }

    /// Where the next call would be due (the cursor the store keeps).
    pub fn cursor(&self) -> OffsetDateTime {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn calls_are_paced_from_the_cursor_and_never_in_the_past() {
        let start = datetime!(2026-12-05 10:00 UTC);
        let mut pacer = Pacer::new(start, 4.0);
        let early = start - Duration::hours(1);
        let dues: Vec<_> = (0..5).map(|_| pacer.next_due(early)).collect();
        assert_eq!(
            dues[4] - dues[0],
            Duration::seconds(1),
            "four intervals of 250 ms"
        );
        // An upload that comes later than the cursor starts from now, not in a burst.
        let late = start + Duration::hours(2);
        assert_eq!(pacer.next_due(late), late);
        assert_eq!(pacer.cursor(), late + Duration::milliseconds(250));
    }

    #[test]
    fn the_spec_checks_pacing_and_window() {
        let now = datetime!(2026-12-05 10:00 UTC);
        let spec = |json: &str| serde_json::from_str::<CampaignSpec>(json).expect("spec");
        assert!(
            spec(r#"{"url":"http://a/","calls_per_second":5}"#)
                .check(now)
                .is_ok()
        );
        assert!(
            spec(r#"{"url":"http://a/","calls_per_second":0}"#)
                .check(now)
                .is_err()
        );
        assert!(
            spec(r#"{"url":"http://a/","calls_per_second":5,"end":"2026-12-05T09:00:00Z"}"#)
                .check(now)
                .is_err()
        );
        assert!(
            serde_json::from_str::<CampaignSpec>(
                r#"{"url":"http://a/","calls_per_second":5,"colour":1}"#
            )
            .is_err()
        );
    }
}
