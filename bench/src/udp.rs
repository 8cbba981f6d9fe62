//! `outdial bench udp`: the physical limit media is judged against. A bare paced UDP sender
//! and receiver: N streams, each its own socket as a call's RTP has, each sending a
//! 172-octet G.711-sized RTP packet every 20 ms and counting what a reflector echoes. It runs
//! on the dataplane's own core loop (io_uring with batched sends, or epoll) with the same
//! sockets (the same kernel buffers), so the difference from Outdial's media is exactly the
//! per-call work: SIP, sessions, codec, DTMF. It measures what the dataplane reports for its
//! own media, the same way: how late each packet left against its slot (by the clock read
//! when the loop woke), packets lost, and the loop thread's CPU time per stream.
//!
//! `--reflect ADDR` runs the other end: one socket that sends every datagram back to where
//! it came from. With `--ports N` on both ends the reflector listens on N consecutive ports
//! from ADDR's and stream `i` goes to port `i % N`: a socket per stream at the far end too, as
//! `bench callee` has one per call (on loopback the sender pays for delivering into the
//! receiving socket and waking its reader, so the far end's shape is part of the sender's
//! cost).
//!
//! Written here, not taken from a crate: it must be the plainest driver that moves the
//! packets, so it marks what a core can do.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use outdial_dataplane::core::{self, Driver, Io, SocketId, WakeFd};
use outdial_dataplane::rtp::MediaStats;
use serde::Serialize;

use crate::cli::{EXIT_ERROR, EXIT_FAILED_CALLS, EXIT_OK, LoopArgs};

/// One RTP packet of 20 ms of G.711: 12 octets of header, 160 of audio.
const PACKET_LEN: usize = 172;
/// The packet time.
const PERIOD: Duration = Duration::from_millis(20);
/// How long echoes are awaited after the last send.
const DRAIN: Duration = Duration::from_millis(500);
/// How often an idle loop looks at the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// Options of `outdial bench udp`.
#[derive(Debug, Args)]
#[command(after_help = UDP_HELP)]
pub struct UdpArgs {
    /// Run the reflector on ADDR instead: every datagram goes back to its source.
    #[arg(long, value_name = "ADDR", conflicts_with = "to")]
    pub reflect: Option<SocketAddr>,
    /// The reflector the streams are sent to.
    #[arg(long, value_name = "ADDR", required_unless_present = "reflect")]
    pub to: Option<SocketAddr>,
    /// Consecutive ports from the address's the reflector listens on (with --reflect), or the
    /// streams are spread over (with --to): stream i goes to port + i % N.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: u16,
    /// Streams at once (a call's one direction each): 50 packets/s per stream.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub streams: u32,
    /// Seconds of sending.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub seconds: f64,
    /// Wake at most once per this many microseconds and send every packet due by then (a
    /// packet leaves at most one tick late); 0 wakes for each packet's own slot.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 1000)]
    pub tick_us: u64,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// The socket loop.
    #[command(flatten)]
    pub socket_loop: LoopArgs,
}

const UDP_HELP: &str = "\
The sender spreads its streams evenly over the 20 ms packet time, sends each stream's packet
when its slot is due, and counts the echoes. Report: packets sent and echoed, lost, how many
left more than 1, 2 and 10 ms after their slot (and percentiles of it), and the loop
thread's CPU time per stream. Exit status 2 when a packet was lost.

Example:
  outdial bench udp --reflect 127.0.0.1:6000 &
  outdial bench udp --to 127.0.0.1:6000 --streams 1000 --seconds 20 --json";

/// What a sender run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UdpReport {
    /// Streams at once.
    pub streams: u32,
    /// Seconds of sending.
    pub seconds: f64,
    /// The socket loop that ran.
    pub backend: &'static str,
    /// Packets sent.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// Packets sent more than 1, 2 and 10 ms after their slot.
    pub sent_late_1ms: u64,
    /// See `sent_late_1ms`.
    pub sent_late_2ms: u64,
    /// See `sent_late_1ms`.
    pub sent_late_10ms: u64,
    /// Send lateness percentiles, microseconds: p50, p99, p99.9, max.
    pub lateness_us: [u64; 4],
    /// The loop thread's CPU time from the first slot to the end of the drain, seconds.
    pub cpu_secs: f64,
    /// Loop thread CPU microseconds per second of sending, per stream.
    pub cpu_us_per_stream_second: f64,
}

/// Runs `outdial bench udp`.
pub fn run(args: &UdpArgs, stop: Arc<AtomicBool>) -> u8 {
    match run_inner(args, stop) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_ERROR
        }
    }
}

fn run_inner(args: &UdpArgs, stop: Arc<AtomicBool>) -> Result<u8, String> {
    let wake = WakeFd::new().map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let config = args.socket_loop.config();
    if let Some(addr) = args.reflect {
        let mut reflector = Reflector {
            addrs: port_block(addr, args.ports)?,
            stop,
        };
        core::run(&config, &wake, &mut reflector)
            .map_err(|e| format!("reflector on {addr}: {e}"))?;
        return Ok(EXIT_OK);
    }
    let to = args.to.ok_or("give --to ADDR (or --reflect ADDR)")?;
    if args.streams == 0 || !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return Err("--streams and --seconds must be positive".into());
    }
    let mut sender = Sender::new(
        port_block(to, args.ports)?,
        args.streams,
        Duration::from_secs_f64(args.seconds),
        stop,
    )?;
    sender.tick = Duration::from_micros(args.tick_us);
    let backend =
        core::run(&config, &wake, &mut sender).map_err(|e| format!("sending to {to}: {e}"))?;
    let mut report = sender.report();
    report.backend = backend.name();
    let text = if args.json {
        serde_json::to_string(&report).unwrap_or_default()
    } else {
        describe(&report)
    };
    // A closed pipe is the reader's choice, not an error of the run.
    let _ = writeln!(io::stdout(), "{text}");
    Ok(if report.lost > 0 {
        EXIT_FAILED_CALLS
    } else {
        EXIT_OK
    })
}

fn describe(r: &UdpReport) -> String {
    let [p50, p99, p999, max] = r.lateness_us;
    format!(
        "{} streams for {:.1} s ({}): sent {}, echoed {}, lost {}\n\
         sent late: >1 ms {}, >2 ms {}, >10 ms {}; lateness p50 {p50} µs, p99 {p99} µs, \
         p99.9 {p999} µs, max {max} µs\n\
         CPU {:.2} s: {:.1} µs per stream per second",
        r.streams,
        r.seconds,
        r.backend,
        r.sent,
        r.received,
        r.lost,
        r.sent_late_1ms,
        r.sent_late_2ms,
        r.sent_late_10ms,
        r.cpu_secs,
        r.cpu_us_per_stream_second
    )
}

/// `count` consecutive addresses from `first`'s port.
fn port_block(first: SocketAddr, count: u16) -> Result<Vec<SocketAddr>, String> {
    (0..count)
        .map(|i| {
            first
                .port()
                .checked_add(i)
                .map(|port| SocketAddr::new(first.ip(), port))
                .ok_or_else(|| format!("{count} ports from {first} run past port 65535"))
        })
        .collect()
}

/// When packet `n` of the whole run is due: stream `n % streams`, slot `n / streams`, the
/// streams spread evenly over the packet time.
fn due(t0: Instant, n: u64, streams: u64) -> Instant {
    let nanos = u128::from(n) * PERIOD.as_nanos() / u128::from(streams);
    t0 + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The paced sender, a [`Driver`] of the core loop.
struct Sender {
    /// The reflector's ports: stream `i` sends to `to[i % to.len()]`.
    to: Vec<SocketAddr>,
    streams: u64,
    length: Duration,
    /// Wake-up granularity (zero: each slot).
    tick: Duration,
    total: u64,
    sockets: Vec<SocketId>,
    stop: Arc<AtomicBool>,
    t0: Option<Instant>,
    next: u64,
    drain_until: Option<Instant>,
    done: bool,
    cpu_at_start: Duration,
    cpu: Duration,
    lateness: Histogram<u64>,
    /// The late counts, kept as the dataplane's media sessions keep theirs.
    late: MediaStats,
    report: UdpReport,
    packet: [u8; PACKET_LEN],
}

impl Sender {
    fn new(
        to: Vec<SocketAddr>,
        streams: u32,
        length: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let slots = (length.as_nanos() / PERIOD.as_nanos()).max(1) as u64;
        let mut packet = [0xffu8; PACKET_LEN];
        packet[0] = 0x80;
        Ok(Self {
            to,
            streams: u64::from(streams),
            length,
            tick: Duration::ZERO,
            total: slots * u64::from(streams),
            sockets: Vec::with_capacity(streams as usize),
            stop,
            t0: None,
            next: 0,
            drain_until: None,
            done: false,
            cpu_at_start: Duration::ZERO,
            cpu: Duration::ZERO,
            lateness: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
            late: MediaStats::default(),
            report: UdpReport {
                streams,
                seconds: length.as_secs_f64(),
                ..UdpReport::default()
            },
            packet,
        })
    }

    fn report(&self) -> UdpReport {
        let mut report = self.report.clone();
        report.lost = report.sent.saturating_sub(report.received);
        report.sent_late_1ms = self.late.sent_late_1ms;
        report.sent_late_2ms = self.late.sent_late_2ms;
        report.sent_late_10ms = self.late.sent_late_10ms;
        report.lateness_us = [0.5, 0.99, 0.999, 1.0].map(|q| self.lateness.value_at_quantile(q));
        report.cpu_secs = self.cpu.as_secs_f64();
        report.cpu_us_per_stream_second =
            self.cpu.as_secs_f64() * 1e6 / self.length.as_secs_f64() / self.streams as f64;
        report
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.cpu = thread_cpu().saturating_sub(self.cpu_at_start);
        }
    }
}

impl Driver for Sender {
    fn start(&mut self, io: &mut impl Io, now: Instant) -> io::Result<()> {
        let local = SocketAddr::new(self.to[0].ip(), 0);
        for _ in 0..self.streams {
            let (socket, _) = io.bind(local)?;
            self.sockets.push(socket);
        }
        self.t0 = Some(now + Duration::from_millis(50));
        self.cpu_at_start = thread_cpu();
        Ok(())
    }

    fn handle_datagram(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _socket: SocketId,
        _from: SocketAddr,
        data: &[u8],
    ) {
        if data.len() == PACKET_LEN {
            self.report.received += 1;
        }
        if self.drain_until.is_some() && self.report.received >= self.report.sent {
            self.finish();
        }
    }

    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant) {
        let Some(t0) = self.t0 else {
            return;
        };
        while self.next < self.total && due(t0, self.next, self.streams) <= now {
            let late = now.saturating_duration_since(due(t0, self.next, self.streams));
            let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            self.lateness.saturating_record(late_us.max(1));
            self.late.count_send_lateness(late);
            let stream = (self.next % self.streams) as usize;
            let slot = self.next / self.streams;
            // RTP sequence numbers and timestamps wrap (RFC 3550 §5.1): truncation is meant.
            self.packet[2..4].copy_from_slice(&(slot as u16).to_be_bytes());
            self.packet[4..8].copy_from_slice(&(slot as u32).wrapping_mul(160).to_be_bytes());
            self.packet[8..12].copy_from_slice(&(stream as u32).to_be_bytes());
            io.send(
                self.sockets[stream],
                self.to[stream % self.to.len()],
                &self.packet,
            );
            self.report.sent += 1;
            self.next += 1;
        }
        if self.next >= self.total && self.drain_until.is_none() {
            self.drain_until = Some(now + DRAIN);
        }
        let all_back = self.report.received >= self.report.sent;
        if self.drain_until.is_some_and(|end| now >= end || all_back) {
            self.finish();
        }
    }

    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}

    fn poll_timeout(&self) -> Option<Instant> {
        let t0 = self.t0?;
        Some(match self.drain_until {
            Some(end) => end,
            None => core::next_tick(t0, due(t0, self.next, self.streams), self.tick),
        })
    }

    fn should_stop(&self) -> bool {
        self.done || self.stop.load(Ordering::Relaxed)
    }
}

/// The other end: every datagram back to its source, from the socket it came in on.
struct Reflector {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
}

impl Driver for Reflector {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> io::Result<()> {
        for addr in &self.addrs {
            io.bind(*addr)?;
        }
        Ok(())
    }

    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    ) {
        io.send(socket, from, data);
    }

    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}

    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}

    fn poll_timeout(&self) -> Option<Instant> {
        Some(Instant::now() + TICK)
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// This thread's CPU time: the scheduler's nanoseconds on CPU (`/proc/thread-self/schedstat`),
/// else user + system clock ticks (`stat`, 10 ms each).
fn thread_cpu() -> Duration {
    if let Some(ns) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        return Duration::from_nanos(ns);
    }
    let ticks = std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which may hold spaces: utime and stime are the
            // 14th and 15th of the whole line, the 12th and 13th after ") ".
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split_whitespace().skip(11);
            let user: u64 = fields.next()?.parse().ok()?;
            let system: u64 = fields.next()?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_the_streams_evenly_over_the_packet_time() {
        let t0 = Instant::now();
        assert_eq!(due(t0, 0, 4), t0);
        assert_eq!(due(t0, 1, 4), t0 + Duration::from_millis(5));
        assert_eq!(due(t0, 4, 4), t0 + PERIOD);
        assert_eq!(due(t0, 9, 4), t0 + PERIOD * 2 + Duration::from_millis(5));
    }

    fn free_port() -> SocketAddr {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("a port");
        probe.local_addr().expect("bound")
    }

    /// The first of `count` consecutive free UDP ports on loopback.
    fn free_ports(count: u16) -> SocketAddr {
        for _ in 0..100 {
            let first = free_port();
            let block = port_block(first, count).unwrap_or_default();
            let free = block
                .iter()
                .filter(|a| std::net::UdpSocket::bind(a).is_ok())
                .count();
            if free == usize::from(count) {
                return first;
            }
        }
        panic!("no {count} consecutive free ports");
    }

    fn send(to: SocketAddr, streams: u32, length: Duration) -> UdpReport {
        send_to_ports(to, 1, streams, length)
    }

    fn send_to_ports(to: SocketAddr, ports: u16, streams: u32, length: Duration) -> UdpReport {
        let to = port_block(to, ports).expect("ports");
        let mut sender =
            Sender::new(to, streams, length, Arc::new(AtomicBool::new(false))).expect("sender");
        let wake = WakeFd::new().expect("eventfd");
        core::run(&core::LoopConfig::default(), &wake, &mut sender).expect("runs");
        sender.report()
    }

    /// A reflector on `ports` consecutive ports, `streams` streams spread over them.
    fn reflected(ports: u16, streams: u32) -> UdpReport {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = free_ports(ports);
        let reflector = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let wake = WakeFd::new().expect("eventfd");
                let mut reflector = Reflector {
                    addrs: port_block(addr, ports).expect("ports"),
                    stop,
                };
                core::run(&core::LoopConfig::default(), &wake, &mut reflector).map(|_| ())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let report = send_to_ports(addr, ports, streams, Duration::from_millis(400));
        stop.store(true, Ordering::Relaxed);
        reflector.join().expect("joins").expect("reflects");
        report
    }

    #[test]
    fn every_packet_comes_back_from_the_reflector_and_is_paced() {
        let report = reflected(1, 20);
        assert_eq!(report.sent, 20 * 20);
        assert_eq!((report.received, report.lost), (report.sent, 0));
        assert!(report.lateness_us[3] >= report.lateness_us[0]);
        assert!(report.cpu_secs > 0.0, "{report:?}");
    }

    #[test]
    fn streams_spread_over_the_reflectors_ports_all_come_back() {
        // Packets to a port the reflector did not bind would be lost.
        let report = reflected(3, 7);
        assert_eq!(report.sent, 7 * 20);
        assert_eq!((report.received, report.lost), (report.sent, 0));
    }

    #[test]
    fn a_port_block_past_65535_is_refused() {
        let last = SocketAddr::from(([127, 0, 0, 1], 65_534));
        assert_eq!(port_block(last, 2).map(|b| b.len()), Ok(2));
        assert!(port_block(last, 3).is_err());
    }

    #[test]
    fn packets_without_a_reflector_are_lost() {
        let report = send(free_port(), 5, Duration::from_millis(100));
        assert_eq!(report.received, 0);
        assert_eq!(report.lost, report.sent);
        assert_eq!(report.sent, 5 * 5);
    }
}
