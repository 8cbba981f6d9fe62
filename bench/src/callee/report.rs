//! What `bench callee` reports: one JSON line per call as it ends (`--report`), and at exit
//! counts by outcome with percentiles of what the phones received.

use std::collections::BTreeMap;
use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::phone::CallRecord;
use crate::percentiles::{Percentiles, histogram};

/// Totals and histograms over every ended call.
#[derive(Debug)]
pub struct Summary {
    outcomes: BTreeMap<&'static str, u64>,
    ended: u64,
    keys_sent: u64,
    rx_packets: u64,
    rx_lost: u64,
    tx_packets: u64,
    jitter_us: Histogram<u64>,
    loss_permille: Histogram<u64>,
    max_gap_ms: Histogram<u64>,
    first_packet_ms: Histogram<u64>,
    ring_ms: Histogram<u64>,
    challenged: u64,
    auth_failed: u64,
}

/// The summary as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct SummaryReport {
    /// Seconds the population ran.
    pub seconds: f64,
    /// Calls that ended.
    pub calls: u64,
    /// Calls per outcome.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Keys pressed in all.
    pub keys_sent: u64,
    /// RTP packets received in all.
    pub rx_packets: u64,
    /// RTP packets lost in all (by sequence numbers).
    pub rx_lost: u64,
    /// RTP packets sent in all.
    pub tx_packets: u64,
    /// Per answered call: RFC 3550 jitter at the end, microseconds.
    pub jitter_us: Percentiles,
    /// Per answered call: loss in thousandths.
    pub loss_permille: Percentiles,
    /// Per answered call: longest gap between packets, milliseconds.
    pub max_gap_ms: Percentiles,
    /// Per answered call: answer to the first received packet, milliseconds.
    pub first_packet_ms: Percentiles,
    /// INVITE to the final response we sent, milliseconds.
    pub ring_ms: Percentiles,
    /// The socket loop that ran (`io_uring` or `epoll`).
    pub backend: &'static str,
    /// INVITEs answered 401 (`--challenge`).
    pub challenged: u64,
    /// INVITEs whose credentials did not answer the challenge (challenged again).
    pub auth_failed: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

impl Summary {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self {
            outcomes: BTreeMap::new(),
            ended: 0,
            keys_sent: 0,
            rx_packets: 0,
            rx_lost: 0,
            tx_packets: 0,
            jitter_us: histogram(),
            loss_permille: histogram(),
            max_gap_ms: histogram(),
            first_packet_ms: histogram(),
            ring_ms: histogram(),
            challenged: 0,
            auth_failed: 0,
        }
    }

    /// Counts a 401 for an INVITE without credentials, or (`refused`) for one whose
    /// credentials did not answer the challenge.
    pub fn add_challenge(&mut self, refused: bool) {
        if refused {
            self.auth_failed += 1;
        } else {
            self.challenged += 1;
        }
    }

    /// Counts one ended call.
    pub fn add(&mut self, record: &CallRecord) {
        *self.outcomes.entry(record.outcome.name()).or_default() += 1;
        self.ended += 1;
        self.keys_sent += record.keys_sent.chars().count() as u64;
        self.rx_packets += record.rx.packets;
        self.rx_lost += record.rx.lost;
        self.tx_packets += record.tx_packets;
        let _ = self.ring_ms.record(record.ring_ms);
        if record.rx.packets > 0 {
            let _ = self.jitter_us.record(record.rx.jitter_us);
            let permille = record.rx.lost * 1000 / record.rx.expected.max(1);
            let _ = self.loss_permille.record(permille);
            let _ = self.max_gap_ms.record(record.rx.max_gap_ms);
        }
        if let Some(first) = record.first_packet_ms {
            let _ = self.first_packet_ms.record(first);
        }
    }

    /// Calls ended so far.
    pub fn ended(&self) -> u64 {
        self.ended
    }

    /// Packets received so far (progress line).
    pub fn rx_packets(&self) -> u64 {
        self.rx_packets
    }

    /// Calls per outcome so far.
    pub fn outcomes(&self) -> &BTreeMap<&'static str, u64> {
        &self.outcomes
    }

    /// The figures.
    pub fn report(&self, seconds: f64, backend: &'static str) -> SummaryReport {
        SummaryReport {
            seconds,
            calls: self.ended,
            outcomes: self.outcomes.clone(),
            keys_sent: self.keys_sent,
            rx_packets: self.rx_packets,
            rx_lost: self.rx_lost,
            tx_packets: self.tx_packets,
            jitter_us: Percentiles::of(&self.jitter_us),
            loss_permille: Percentiles::of(&self.loss_permille),
            max_gap_ms: Percentiles::of(&self.max_gap_ms),
            first_packet_ms: Percentiles::of(&self.first_packet_ms),
            ring_ms: Percentiles::of(&self.ring_ms),
            backend,
            challenged: self.challenged,
            auth_failed: self.auth_failed,
        }
    }
}

impl SummaryReport {
    /// Writes the human-readable form.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let rate = self.calls as f64 / self.seconds.max(1e-9);
        writeln!(
            out,
            "bench callee: {} calls in {:.1} s ({rate:.1} calls/s, {} loop)",
            self.calls, self.seconds, self.backend
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(out, "  outcomes: {}", outcomes.join(", "))?;
        writeln!(
            out,
            "  rtp: received {} (lost {}), sent {}; keys pressed {}",
            self.rx_packets, self.rx_lost, self.tx_packets, self.keys_sent
        )?;
        writeln!(out, "  jitter:       {}", self.jitter_us.line(" us"))?;
        writeln!(
            out,
            "  loss:         {}",
            self.loss_permille.line(" permille")
        )?;
        writeln!(out, "  max gap:      {}", self.max_gap_ms.line(" ms"))?;
        writeln!(out, "  first packet: {}", self.first_packet_ms.line(" ms"))?;
        if self.challenged + self.auth_failed > 0 {
            writeln!(
                out,
                "  digest:       {} challenged (401), {} wrong credentials (401 again)",
                self.challenged, self.auth_failed
            )?;
        }
        writeln!(out, "  ring:         {}", self.ring_ms.line(" ms"))
    }
}
