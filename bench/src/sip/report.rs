//! What `bench sip` reports: outcome counts, setup latency percentiles and a progress line.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use outdial_dataplane::api::{Disposition, Outcome};
use outdial_dataplane::rtp::MediaStats;
use serde::Serialize;

use crate::percentiles::{Percentiles, histogram};

/// Counters and histograms of a run.
#[derive(Debug)]
pub struct Summary {
    dialed: u64,
    local_failures: u64,
    answered: u64,
    byes_answered: u64,
    outcomes: BTreeMap<&'static str, u64>,
    statuses: BTreeMap<u16, u64>,
    setup_us: Histogram<u64>,
    ringing_us: Histogram<u64>,
    rtp_sent: u64,
    rtp_received: u64,
    last_progress_ended: u64,
    last_progress_at: Duration,
}

/// The summary as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct SummaryReport {
    /// Seconds from the first INVITE to the end.
    pub seconds: f64,
    /// INVITEs sent (new calls).
    pub dialed: u64,
    /// Calls answered (2xx).
    pub answered: u64,
    /// Answered calls whose BYE got a 2xx: SIPp's "successful call".
    pub completed: u64,
    /// Calls that did not complete: dialed minus completed.
    pub failed: u64,
    /// Completed calls per second over the run.
    pub calls_per_second: f64,
    /// Calls by how the dataplane's endpoint ended them.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Final INVITE statuses of calls that were not answered.
    pub failure_statuses: BTreeMap<u16, u64>,
    /// INVITE sent to 200 received, microseconds.
    pub setup_us: Percentiles,
    /// INVITE sent to the first 180/183, microseconds.
    pub ringing_us: Percentiles,
    /// RTP packets sent and received (with `--media`).
    pub rtp_sent: u64,
    /// RTP packets received.
    pub rtp_received: u64,
    /// Calls that could not be placed locally (no RTP port, bad target).
    pub local_failures: u64,
    /// The socket loop that ran.
    pub backend: &'static str,
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

impl Summary {
    /// Nothing counted.
    pub fn new() -> Self {
        Self {
            dialed: 0,
            local_failures: 0,
            answered: 0,
            byes_answered: 0,
            outcomes: BTreeMap::new(),
            statuses: BTreeMap::new(),
            setup_us: histogram(),
            ringing_us: histogram(),
            rtp_sent: 0,
            rtp_received: 0,
            last_progress_ended: 0,
            last_progress_at: Duration::ZERO,
        }
    }

    /// An INVITE went out.
    pub fn dialed_one(&mut self) {
        self.dialed += 1;
    }

    /// INVITEs sent.
    pub fn dialed(&self) -> u64 {
        self.dialed
    }

    /// A call could not be placed at all.
    pub fn local_failure(&mut self) {
        self.local_failures += 1;
    }

    /// First provisional response after `after`.
    pub fn ringing(&mut self, after: Duration) {
        let _ = self.ringing_us.record(after.as_micros() as u64);
    }

    /// 2xx after `after`.
    pub fn answered(&mut self, after: Duration) {
        self.answered += 1;
        let _ = self.setup_us.record(after.as_micros() as u64);
    }

    /// Calls answered so far.
    pub fn answered_count(&self) -> u64 {
        self.answered
    }

    /// A 2xx to one of our BYEs arrived.
    pub fn bye_answered(&mut self) {
        self.byes_answered += 1;
    }

    /// 2xx answers to our BYEs so far.
    pub fn byes_answered(&self) -> u64 {
        self.byes_answered
    }

    /// RTP of one call without its own media socket arrived on the shared sink.
    pub fn sink_packet(&mut self) {
        self.rtp_received += 1;
    }

    /// A call's media counters at its end.
    pub fn media(&mut self, stats: MediaStats) {
        self.rtp_sent += stats.packets_sent;
        self.rtp_received += stats.packets_received;
    }

    /// A call ended.
    pub fn ended(&mut self, outcome: &Outcome, answered: bool) {
        let name = match outcome.disposition {
            Disposition::Completed if answered => "answered",
            Disposition::Completed => "completed-unanswered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no-answer",
            Disposition::Failed => "failed",
            Disposition::AuthFailed => "auth-failed",
            Disposition::Unreachable => "unreachable",
            Disposition::Canceled => "canceled",
        };
        *self.outcomes.entry(name).or_default() += 1;
        if !answered && let Some(status) = outcome.sip_status {
            *self.statuses.entry(status).or_default() += 1;
        }
    }

    fn ended_count(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// Completed calls: answered and BYE answered.
    pub fn completed(&self) -> u64 {
        self.byes_answered.min(self.answered)
    }

    /// One progress line (rate since the last one, concurrency, failures, p99 setup).
    pub fn progress_line(&mut self, elapsed: Duration, live: usize) -> String {
        let ended = self.ended_count();
        let interval = (elapsed - self.last_progress_at.min(elapsed)).as_secs_f64();
        let rate = (ended - self.last_progress_ended.min(ended)) as f64 / interval.max(1e-9);
        self.last_progress_ended = ended;
        self.last_progress_at = elapsed;
        let failed = ended.saturating_sub(*self.outcomes.get("answered").unwrap_or(&0));
        format!(
            "sip {:>6.1} s: {rate:.0} calls/s, {live} live, {} dialed, {} completed, {failed} not answered, setup p99 {} us",
            elapsed.as_secs_f64(),
            self.dialed,
            self.completed(),
            Percentiles::of(&self.setup_us).p99
        )
    }

    /// The figures.
    pub fn report(&self, seconds: f64, backend: &'static str) -> SummaryReport {
        let completed = self.completed();
        SummaryReport {
            seconds,
            dialed: self.dialed,
            answered: self.answered,
            completed,
            failed: self.dialed.saturating_sub(completed) + self.local_failures,
            calls_per_second: completed as f64 / seconds.max(1e-9),
            outcomes: self.outcomes.clone(),
            failure_statuses: self.statuses.clone(),
            setup_us: Percentiles::of(&self.setup_us),
            ringing_us: Percentiles::of(&self.ringing_us),
            rtp_sent: self.rtp_sent,
            rtp_received: self.rtp_received,
            local_failures: self.local_failures,
            backend,
        }
    }
}

impl SummaryReport {
    /// Writes the human-readable form.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "bench sip: {} dialed, {} answered, {} completed, {} failed in {:.2} s: {:.1} calls/s ({} loop)",
            self.dialed,
            self.answered,
            self.completed,
            self.failed,
            self.seconds,
            self.calls_per_second,
            self.backend
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(out, "  outcomes: {}", outcomes.join(", "))?;
        if !self.failure_statuses.is_empty() {
            let statuses: Vec<String> = self
                .failure_statuses
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(
                out,
                "  final statuses of unanswered calls: {}",
                statuses.join(", ")
            )?;
        }
        writeln!(
            out,
            "  setup (INVITE -> 200): {}",
            self.setup_us.line(" us")
        )?;
        writeln!(
            out,
            "  INVITE -> 180:         {}",
            self.ringing_us.line(" us")
        )?;
        if self.rtp_sent + self.rtp_received > 0 {
            writeln!(
                out,
                "  rtp: sent {}, received {}",
                self.rtp_sent, self.rtp_received
            )?;
        }
        Ok(())
    }
}
