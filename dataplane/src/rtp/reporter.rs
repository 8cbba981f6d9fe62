//! A call's RTCP (RFC 3550 §6) as plain data: when to report, what to report about the
//! remote's stream, and what the remote's reports say about ours. [`super::MediaSession`]
//! owns one when RTCP is on ([`super::MediaSession::enable_rtcp`]) and feeds it the counters
//! it already keeps; the wire format is [`super::rtcp`].
//!
//! Interval (RFC 3550 §6.2, §6.3.1) for a two-party session: the deterministic interval is
//! the 5 s minimum (an audio call's 5 % RTCP share over two members is far below it), halved
//! before the first report; each interval is that times a random factor in [0.5, 1.5],
//! divided by e − 3/2 (the RFC's compensation for timer reconsideration). The randomness
//! comes from [`RtcpConfig::seed`], never from a global generator.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::rtcp::{Packet, ReportBlock, SenderInfo, ntp_middle};
use super::rx_stats::RxReport;

/// RFC 3550 §6.2: the minimum deterministic interval between reports.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// G.711 timestamp units per second (RFC 3551 §4.5.14).
const CLOCK_RATE: u64 = 8000;

/// e − 3/2 in millionths (RFC 3550 §6.3.1).
const COMPENSATION_PPM: u64 = 1_218_282;

/// How RTCP runs on one call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RtcpConfig {
    /// The wall-clock time at the `now` the session was started with: sender reports' NTP
    /// timestamps are this plus the session's elapsed time.
    pub wall_clock_at_start: SystemTime,
    /// Our CNAME (RFC 7022: a random per-call identifier).
    pub cname: [u8; 16],
    /// Seeds the randomisation of report intervals.
    pub seed: u64,
    /// The answer's `a=rtcp:` address (RFC 3605), when it had one; else the remote's RTP
    /// port + 1.
    pub remote_rtcp: Option<SocketAddr>,
}

impl RtcpConfig {
    /// An RFC 7022 CNAME from 96 random bits: their base64 (16 characters).
    pub fn cname_from(random: [u8; 12]) -> [u8; 16] {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut cname = [0u8; 16];
        for (group, out) in random.chunks_exact(3).zip(cname.chunks_exact_mut(4)) {
            let n = (u32::from(group[0]) << 16) | (u32::from(group[1]) << 8) | u32::from(group[2]);
            for (i, c) in out.iter_mut().enumerate() {
                *c = ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
            }
        }
        cname
    }
}

/// What the remote's reports said about our stream, and what we sent and received.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(super) struct RtcpCounters {
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) round_trip_us: u64,
    pub(super) remote_fraction_lost: u64,
    pub(super) remote_jitter_us: u64,
}

/// RTCP state of one session.
#[derive(Debug)]
pub(super) struct Reporter {
    config: RtcpConfig,
    /// The session's start (the instant `wall_clock_at_start` names).
    start: Instant,
    rng: u64,
    /// When the next report is due; `None` once the BYE went out.
    next_at: Option<Instant>,
    bye_pending: bool,
    /// (SSRC, expected, received) at our last report about that source (RFC 3550 §A.3).
    prior: Option<(u32, u64, u64)>,
    /// The remote's last SR: its SSRC, LSR (middle of its NTP timestamp) and our arrival time.
    last_sr: Option<(u32, u32, Instant)>,
    /// RTP packets we had sent at the report before last, and at the last one.
    sent_at_reports: [u64; 2],
    pub(super) counters: RtcpCounters,
}

/// The counters of our own stream, as the session keeps them.
#[derive(Clone, Copy, Debug)]
pub(super) struct OurStream {
    pub(super) ssrc: u32,
    pub(super) initial_timestamp: u32,
    pub(super) packets_sent: u64,
    pub(super) payload_octets_sent: u64,
}

impl Reporter {
    /// The peer's RTCP address changed (a new offer named another `a=rtcp:`, or none).
    pub(super) fn set_remote_rtcp(&mut self, remote_rtcp: Option<SocketAddr>) {
        self.config.remote_rtcp = remote_rtcp;
    }

    /// Starts reporting: the first report is due after half the minimum interval, randomised.
    pub(super) fn new(config: RtcpConfig, start: Instant, now: Instant) -> Self {
        let mut reporter = Self {
            config,
            start,
            rng: config.seed,
            next_at: None,
            bye_pending: false,
            prior: None,
            last_sr: None,
            sent_at_reports: [0; 2],
            counters: RtcpCounters::default(),
        };
        let first = reporter.interval(MIN_INTERVAL / 2);
        reporter.next_at = now.checked_add(first);
        reporter
    }

    /// `deterministic` × random [0.5, 1.5] / (e − 3/2) (RFC 3550 §6.3.1).
    fn interval(&mut self, deterministic: Duration) -> Duration {
        // splitmix64: small, seeded, good enough for spreading report times.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let factor_ppm = 500_000 + z % 1_000_001;
        let us = u64::try_from(deterministic.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(us.saturating_mul(factor_ppm) / COMPENSATION_PPM)
    }

    /// When [`Self::poll_report`] has something: the next report, or now for a pending BYE.
    pub(super) fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.bye_pending {
            return Some(now);
        }
        self.next_at
    }

    /// Queues the final report with a BYE (RFC 3550 §6.3.7: a two-party session sends it at
    /// once); no report follows it.
    pub(super) fn end(&mut self) {
        if self.next_at.is_some() {
            self.bye_pending = true;
        }
    }

    /// Where our RTCP goes and whose is heard, when the RTP address is `rtp` and the session
    /// latched to `latched` (if it did).
    pub(super) fn peer(&self, rtp: SocketAddr, latched: Option<SocketAddr>) -> Option<SocketAddr> {
        let next_port = |a: SocketAddr| Some(SocketAddr::new(a.ip(), a.port().checked_add(1)?));
        if let Some(latched) = latched {
            return next_port(latched);
        }
        if let Some(explicit) = self.config.remote_rtcp {
            return (!explicit.ip().is_unspecified() && explicit.port() != 0).then_some(explicit);
        }
        if rtp.ip().is_unspecified() {
            return None;
        }
        next_port(rtp)
    }

    /// The NTP timestamp of `at` by the session's wall clock.
    fn ntp_at(&self, at: Instant) -> u64 {
        let since_start = at.saturating_duration_since(self.start);
        let unix = self
            .config
            .wall_clock_at_start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(since_start);
        let seconds = unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let fraction = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
        (seconds << 32) | fraction
    }

    /// Writes the report due at `now` into `buf`, if one is due; `None` leaves it due (a
    /// short `buf` included).
    pub(super) fn poll_report(
        &mut self,
        now: Instant,
        ours: OurStream,
        rx: Option<RxReport>,
        buf: &mut [u8],
    ) -> Option<usize> {
        let due = self.bye_pending || self.next_at.is_some_and(|at| at <= now);
        if !due {
            return None;
        }
        // RFC 3550 §6.4: an SR when we sent RTP since the report before last.
        let sender = (ours.packets_sent > self.sent_at_reports[0]).then(|| {
            let elapsed = now.saturating_duration_since(self.start);
            let ticks =
                u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX) * CLOCK_RATE / 1_000_000;
            // RTP timestamps, packet and octet counts are modulo 2^32 (RFC 3550 §6.4.1).
            SenderInfo {
                ntp_timestamp: self.ntp_at(now),
                rtp_timestamp: ours.initial_timestamp.wrapping_add(ticks as u32),
                packet_count: ours.packets_sent as u32,
                octet_count: ours.payload_octets_sent as u32,
            }
        });
        let block = rx.map(|rx| self.block(now, rx));
        let report = super::rtcp::Report {
            ssrc: ours.ssrc,
            sender,
            block,
            cname: &self.config.cname,
            bye: self.bye_pending,
        };
        let len = report.emit(buf)?;
        self.counters.sent += 1;
        self.sent_at_reports = [self.sent_at_reports[1], ours.packets_sent];
        if let Some(rx) = rx {
            self.prior = Some((rx.ssrc, rx.expected, rx.received));
        }
        if self.bye_pending {
            self.bye_pending = false;
            self.next_at = None;
        } else {
            let interval = self.interval(MIN_INTERVAL);
            self.next_at = now.checked_add(interval);
        }
        Some(len)
    }

    /// Our report block on the remote's stream (RFC 3550 §6.4.1, §A.3).
    fn block(&self, now: Instant, rx: RxReport) -> ReportBlock {
        let (expected_prior, received_prior) = match self.prior {
            Some((ssrc, expected, received)) if ssrc == rx.ssrc => (expected, received),
            _ => (0, 0),
        };
        let expected_interval = rx.expected.saturating_sub(expected_prior);
        let received_interval = rx.received.saturating_sub(received_prior);
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            // lost ≤ expected, so this is at most 256: clamp the one case that is.
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let lost = i64::try_from(rx.expected).unwrap_or(i64::MAX)
            - i64::try_from(rx.received).unwrap_or(i64::MAX);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((ssrc, lsr, at)) if ssrc == rx.ssrc => {
                let delay = now.saturating_duration_since(at);
                let units =
                    u64::try_from(delay.as_micros()).unwrap_or(u64::MAX) * 65_536 / 1_000_000;
                (lsr, u32::try_from(units).unwrap_or(u32::MAX))
            }
            _ => (0, 0),
        };
        ReportBlock {
            ssrc: rx.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            extended_highest_sequence: rx.extended_highest_sequence,
            jitter: rx.jitter,
            last_sr,
            delay_since_last_sr,
        }
    }

    /// Takes in one packet of a checked compound from the remote, which arrived at `now`.
    pub(super) fn on_packet(&mut self, now: Instant, our_ssrc: u32, packet: Packet<'_>) {
        let blocks = match packet {
            Packet::SenderReport { ssrc, info, blocks } => {
                self.last_sr = Some((ssrc, ntp_middle(info.ntp_timestamp), now));
                blocks
            }
            Packet::ReceiverReport { blocks, .. } => blocks,
            _ => return,
        };
        for block in blocks.filter(|b| b.ssrc == our_ssrc) {
            self.counters.remote_fraction_lost = u64::from(block.fraction_lost);
            self.counters.remote_jitter_us = u64::from(block.jitter) * 1_000_000 / CLOCK_RATE;
            if block.last_sr != 0 {
                // RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in 1/65536 s, modulo 2^32.
                let arrival = ntp_middle(self.ntp_at(now));
                let rtt = arrival
                    .wrapping_sub(block.last_sr)
                    .wrapping_sub(block.delay_since_last_sr);
                // A negative result is a broken or forged report: keep the last good one.
                if (rtt as i32) >= 0 {
                    self.counters.round_trip_us = u64::from(rtt) * 1_000_000 / 65_536;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RtcpConfig {
        RtcpConfig {
            wall_clock_at_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            cname: RtcpConfig::cname_from(*b"twelve bytes"),
            seed: 3,
            remote_rtcp: None,
        }
    }

    #[test]
    fn the_cname_is_base64_of_96_bits() {
        assert_eq!(&RtcpConfig::cname_from([0; 12]), b"AAAAAAAAAAAAAAAA");
        assert_eq!(
            &RtcpConfig::cname_from(*b"Man Man Man "),
            b"TWFuIE1hbiBNYW4g"
        );
    }

    #[test]
    fn intervals_stay_within_the_rfc_bounds() {
        let t0 = Instant::now();
        let mut r = Reporter::new(config(), t0, t0);
        let first = r.next_at.unwrap() - t0;
        let low = |d: Duration| d.as_secs_f64() * 0.5 / 1.218_282;
        let high = |d: Duration| d.as_secs_f64() * 1.5 / 1.218_282;
        assert!((low(MIN_INTERVAL / 2)..=high(MIN_INTERVAL / 2)).contains(&first.as_secs_f64()));
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let t = r.interval(MIN_INTERVAL).as_secs_f64();
            assert!(
                (low(MIN_INTERVAL)..=high(MIN_INTERVAL) + 1e-6).contains(&t),
                "{t}"
            );
            seen.push(t);
        }
        let mean = seen.iter().sum::<f64>() / seen.len() as f64;
        assert!((3.9..4.3).contains(&mean), "mean {mean}: 5 s / 1.218");
    }

    #[test]
    fn ntp_time_follows_the_wall_clock_given_at_start() {
        let t0 = Instant::now();
        let r = Reporter::new(config(), t0, t0);
        let ntp = r.ntp_at(t0 + Duration::from_millis(1500));
        assert_eq!(ntp >> 32, 1_700_000_001 + NTP_UNIX_OFFSET);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31, "half a second");
    }

    #[test]
    fn the_rtcp_peer_is_port_plus_one_the_answers_or_the_latched_sources() {
        let t0 = Instant::now();
        let rtp: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut r = Reporter::new(config(), t0, t0);
        assert_eq!(r.peer(rtp, None), Some("192.0.2.1:4001".parse().unwrap()));
        let nat: SocketAddr = "203.0.113.9:30000".parse().unwrap();
        assert_eq!(
            r.peer(rtp, Some(nat)),
            Some("203.0.113.9:30001".parse().unwrap())
        );
        assert_eq!(r.peer("0.0.0.0:4000".parse().unwrap(), None), None, "hold");
        assert_eq!(r.peer("192.0.2.1:65535".parse().unwrap(), None), None);
        r.config.remote_rtcp = Some("192.0.2.7:5555".parse().unwrap());
        assert_eq!(r.peer(rtp, None), Some("192.0.2.7:5555".parse().unwrap()));
    }
}
