//! What a call receives, measured per packet without allocating: RTP packets, loss from
//! sequence numbers (RFC 3550 §A.1, §A.3), interarrival jitter (§6.4.1, §A.8) and audio
//! continuity (the longest silence between two packets, and how many gaps exceeded
//! [`GAP`]). Calls measure what they receive with it, and so do `outdial bench`'s phones.

use std::time::{Duration, Instant};

/// An interarrival gap longer than this (three packet times) counts as a break in the audio.
pub const GAP: Duration = Duration::from_millis(60);

/// G.711 timestamp units per second (RFC 3551 §4.5.14).
const CLOCK_RATE: u64 = 8000;

/// Running receive statistics of one stream.
#[derive(Clone, Debug, Default)]
pub struct RxStats {
    packets: u64,
    /// Packets whose sequence number was already counted or too old (duplicates, reordering).
    duplicates_or_late: u64,
    ssrc: Option<u32>,
    base_seq: u32,
    /// Highest extended sequence number seen.
    max_seq: u32,
    /// Reference instant for arrival times in timestamp units.
    epoch: Option<Instant>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    last_transit: Option<u32>,
    /// Jitter in timestamp units ×16 (the RFC's integer form, §A.8).
    jitter16: u64,
    max_jitter16: u64,
    max_gap: Duration,
    gaps: u64,
    ssrc_changes: u64,
    /// Packets expected from earlier SSRCs of the call.
    expected_before: u64,
    /// Packets received from earlier SSRCs of the call.
    packets_before: u64,
}

/// What an RTCP report block says about the current source (RFC 3550 §6.4.1, §A.3).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RxReport {
    /// The source's SSRC.
    pub ssrc: u32,
    /// Extended highest sequence number received (cycles << 16 | highest).
    pub extended_highest_sequence: u32,
    /// Packets expected from this source since its first.
    pub expected: u64,
    /// Packets received from this source, duplicates included (RFC 3550 §A.3).
    pub received: u64,
    /// Interarrival jitter in timestamp units (RFC 3550 §A.8).
    pub jitter: u32,
}

/// The figures of a [`RxStats`] for a report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RxSummary {
    /// RTP packets received from the call's peer.
    pub packets: u64,
    /// Packets the sequence numbers say were sent.
    pub expected: u64,
    /// `expected - packets`, never negative (duplicates can outnumber losses).
    pub lost: u64,
    /// Duplicated or out-of-order packets.
    pub duplicates_or_late: u64,
    /// Interarrival jitter at the end of the call, in microseconds (RFC 3550 §6.4.1).
    pub jitter_us: u64,
    /// Highest jitter seen during the call, in microseconds.
    pub max_jitter_us: u64,
    /// Longest time between two packets, in milliseconds.
    pub max_gap_ms: u64,
    /// Gaps longer than 60 ms (three packet times).
    pub gaps: u64,
    /// Times the sender's SSRC changed.
    pub ssrc_changes: u64,
}

impl RxStats {
    /// Statistics measured from `epoch` (arrival times are taken relative to it).
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch: Some(epoch),
            ..Self::default()
        }
    }

    /// Counts one packet. `with_timing` is false for packets whose timestamp is no sampling
    /// instant (RFC 4733 events repeat their start): they count for loss, not for jitter.
    pub fn on_packet(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        with_timing: bool,
    ) {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.ssrc_changes += 1;
                self.expected_before += self.expected_this_ssrc();
                self.packets_before = self.packets;
            }
            self.ssrc = Some(ssrc);
            self.base_seq = u32::from(seq);
            self.max_seq = u32::from(seq).wrapping_sub(1);
            self.last_transit = None;
        }
        self.packets += 1;
        self.track_sequence(seq);
        if let Some(last) = self.last_at {
            let gap = now.saturating_duration_since(last);
            if gap > self.max_gap {
                self.max_gap = gap;
            }
            if gap > GAP {
                self.gaps += 1;
            }
        }
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        if with_timing {
            self.track_jitter(now, timestamp);
        }
    }

    /// RFC 3550 §A.1, simplified: a sequence number ahead of the highest (modulo 2^16, by
    /// less than half the space) extends it; anything else is a duplicate or late.
    fn track_sequence(&mut self, seq: u16) {
        let highest = self.max_seq as u16;
        let ahead = seq.wrapping_sub(highest);
        if ahead != 0 && ahead < 0x8000 {
            self.max_seq = self.max_seq.wrapping_add(u32::from(ahead));
        } else {
            self.duplicates_or_late += 1;
        }
    }

    /// RFC 3550 §A.8: J += (|D| - J) / 16 in timestamp units, kept ×16 as integers.
    fn track_jitter(&mut self, now: Instant, timestamp: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let elapsed = now.saturating_duration_since(epoch);
        let arrival = (elapsed.as_micros() as u64).saturating_mul(CLOCK_RATE) / 1_000_000;
        // Arrival and timestamp both wrap at 2^32 in RTP: work modulo 2^32, and read the
        // change of transit time as a signed 32-bit difference.
        let transit = (arrival as u32).wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            // J16 += |D| - J16/16, i.e. J += (|D| - J)/16 with J = J16/16 (RFC 3550 §A.8).
            self.jitter16 = self.jitter16 + d - (self.jitter16 + 8) / 16;
            self.max_jitter16 = self.max_jitter16.max(self.jitter16);
        }
        self.last_transit = Some(transit);
    }

    /// When the first packet arrived.
    pub fn first_packet_at(&self) -> Option<Instant> {
        self.first_at
    }

    /// Packets counted so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn expected_this_ssrc(&self) -> u64 {
        if self.ssrc.is_some() {
            u64::from(self.max_seq.wrapping_sub(self.base_seq).wrapping_add(1))
        } else {
            0
        }
    }

    /// The figures about the current source for an RTCP report block, once a packet came.
    pub fn report(&self) -> Option<RxReport> {
        Some(RxReport {
            ssrc: self.ssrc?,
            extended_highest_sequence: self.max_seq,
            expected: self.expected_this_ssrc(),
            received: self.packets - self.packets_before,
            // RFC 3550 §A.8: the report carries J, kept here as J×16.
            jitter: u32::try_from(self.jitter16 >> 4).unwrap_or(u32::MAX),
        })
    }

    /// The figures so far.
    pub fn summary(&self) -> RxSummary {
        let expected = self.expected_before + self.expected_this_ssrc();
        let counted = self.packets.saturating_sub(self.duplicates_or_late);
        let to_us = |j16: u64| j16 * 1_000_000 / 16 / CLOCK_RATE;
        RxSummary {
            packets: self.packets,
            expected,
            lost: expected.saturating_sub(counted),
            duplicates_or_late: self.duplicates_or_late,
            jitter_us: to_us(self.jitter16),
            max_jitter_us: to_us(self.max_jitter16),
            max_gap_ms: self.max_gap.as_millis() as u64,
            gaps: self.gaps,
            ssrc_changes: self.ssrc_changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS20: Duration = Duration::from_millis(20);

    #[test]
    fn a_perfect_stream_has_no_loss_no_jitter_and_no_gap() {
        let t0 = Instant::now();
        let mut rx = RxStats::new(t0);
        for n in 0..100u32 {
            let seq = 65500u16.wrapping_add(n as u16);
            rx.on_packet(t0 + MS20 * n, 9, seq, 1000 + 160 * n, true);
        }
        let s = rx.summary();
        assert_eq!((s.packets, s.expected, s.lost), (100, 100, 0));
        assert_eq!((s.jitter_us, s.max_gap_ms, s.gaps), (0, 20, 0));
    }

    #[test]
    fn missing_sequence_numbers_are_lost_and_the_hole_is_a_gap() {
        let t0 = Instant::now();
        let mut rx = RxStats::new(t0);
        for n in (0..50u32).filter(|n| !(10..15).contains(n)) {
            rx.on_packet(t0 + MS20 * n, 9, n as u16, 160 * n, true);
        }
        let s = rx.summary();
        assert_eq!((s.packets, s.expected, s.lost), (45, 50, 5));
        assert_eq!((s.max_gap_ms, s.gaps), (120, 1));
    }

    #[test]
    fn alternating_arrival_offsets_give_the_rfc_jitter() {
        // Every other packet 4 ms late: |D| = 32 ticks each time; J converges to 32 ticks = 4 ms.
        let t0 = Instant::now();
        let mut rx = RxStats::new(t0);
        for n in 0..2000u32 {
            let late = if n % 2 == 1 {
                Duration::from_millis(4)
            } else {
                Duration::ZERO
            };
            rx.on_packet(t0 + MS20 * n + late, 9, n as u16, 160 * n, true);
        }
        let s = rx.summary();
        assert!((3900..=4000).contains(&s.jitter_us), "{s:?}");
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn a_transit_time_at_the_signed_boundary_gives_only_the_real_jitter() {
        // Transit alternates between 0x7fff_ffff and 0x8000_0000 ticks: one tick (125 µs) of
        // jitter, not 2^32.
        let t0 = Instant::now();
        let mut rx = RxStats::new(t0);
        for n in 0..200u32 {
            let late = Duration::from_micros(if n % 2 == 1 { 125 } else { 0 });
            let timestamp = (160 * n).wrapping_sub(0x7fff_ffff);
            rx.on_packet(t0 + MS20 * n + late, 9, n as u16, timestamp, true);
        }
        let s = rx.summary();
        assert!(s.max_jitter_us <= 125, "{s:?}");
    }

    #[test]
    fn duplicates_are_not_losses_and_events_do_not_move_jitter() {
        let t0 = Instant::now();
        let mut rx = RxStats::new(t0);
        rx.on_packet(t0, 9, 1, 0, true);
        rx.on_packet(t0 + MS20, 9, 2, 160, true);
        rx.on_packet(t0 + MS20, 9, 2, 160, true);
        // An RFC 4733 event keeps its start timestamp for 60 ms: not a timing sample.
        for n in 3..6u32 {
            rx.on_packet(t0 + MS20 * (n - 1), 9, n as u16, 320, false);
        }
        let s = rx.summary();
        assert_eq!(
            (s.packets, s.expected, s.lost, s.duplicates_or_late),
            (6, 5, 0, 1)
        );
        assert_eq!(s.jitter_us, 0);
    }

    #[test]
    fn a_new_ssrc_restarts_the_sequence() {
        let t0 = Instant::now();
        let mut rx = RxStats::new(t0);
        rx.on_packet(t0, 1, 100, 0, true);
        rx.on_packet(t0 + MS20, 2, 7, 0, true);
        rx.on_packet(t0 + MS20 * 2, 2, 8, 160, true);
        let s = rx.summary();
        assert_eq!((s.ssrc_changes, s.expected, s.lost), (1, 3, 0));
    }
}
