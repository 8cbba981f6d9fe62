//! The only I/O in the dataplane: one loop per core, pinned, on io_uring
//! (SINGLE_ISSUER + DEFER_TASKRUN, multishot receive with a provided-buffer ring), or on
//! epoll through mio where io_uring is refused. Everything protocol-shaped lives in a
//! [`Driver`], which the loop feeds datagrams, timeouts and wake-ups, and which answers
//! through [`Io`].
//!
//! Besides UDP sockets, the loop owns TCP streams (SIP over TCP, later TLS): listeners,
//! outgoing connects, per-stream send queues; `stream.rs` holds what both backends share.
//!
//! A loop turn: handle completions (or readiness) → if the driver's deadline passed,
//! [`Driver::handle_timeout`] → if woken, [`Driver::handle_wake`] → flush sends → check
//! [`Driver::should_stop`]. Nothing on the per-datagram path allocates or locks.

mod config;
mod epoll;
mod error;
mod realtime;
mod sockaddr;
mod socket;
mod stream;
mod stream_table;
mod table;
mod uring;
mod wake;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use config::{Backend, BackendUsed, LoopConfig};
pub use error::LoopError;
pub use wake::WakeFd;

use crate::icmp::IcmpError;

/// Index of a socket owned by a core's loop. Stable until [`Io::close`].
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct SocketId(pub u32);

/// Index of a TCP connection owned by a core's loop. Stable until closed; never reused while
/// the driver might still name it: ids grow monotonically (modulo 2^32, skipping ids still
/// in use), so a stale id misses every later stream until 2^32 more have been opened.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct StreamId(pub u32);

/// Index of a listening TCP socket. Listeners stay open until the loop stops.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ListenerId(pub u32);

/// Why a stream ended, as [`Driver::handle_stream_closed`] reports it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StreamClosed {
    /// The peer closed its side (orderly EOF). The loop closes ours too; bytes still
    /// queued for the peer are dropped.
    Peer,
    /// Connecting, reading or writing failed (refused, reset, timed out, ...).
    Error(std::io::ErrorKind),
    /// We closed it. Never reported: [`Io::close_stream`] is silent; the variant is kept
    /// so drivers can use one type for their own bookkeeping.
    Local,
    /// The stream's queued bytes would have exceeded
    /// [`LoopConfig::max_stream_pending_bytes`]: the peer reads too slowly.
    Overflow,
}

/// What a [`Driver`] may ask of the loop that runs it.
pub trait Io {
    /// Bind a UDP socket to `addr` (port 0 = any) and start receiving on it.
    /// Returns the socket's id and its bound address.
    fn bind(&mut self, addr: SocketAddr) -> std::io::Result<(SocketId, SocketAddr)>;
    /// Stop receiving on a socket and close it. Unknown ids are ignored.
    fn close(&mut self, socket: SocketId);
    /// Queue one datagram. It leaves by the end of the current turn: io_uring copies `data`
    /// into a preallocated buffer and submits the turn's sends in one batch; epoll sends at
    /// once. Nothing is allocated per packet. Datagrams longer than
    /// [`LoopConfig::max_datagram`], or for closed or unknown sockets, are dropped.
    fn send(&mut self, socket: SocketId, to: SocketAddr, data: &[u8]);

    /// Listen for TCP on `addr` (port 0 = any) with `SO_REUSEADDR`; a UDP socket on the same
    /// port is fine. Accepted connections arrive as [`Driver::handle_stream_accepted`]
    /// (beyond [`LoopConfig::max_streams`] they are closed at once, unreported). Returns the
    /// listener's id and its bound address.
    fn listen(&mut self, addr: SocketAddr) -> std::io::Result<(ListenerId, SocketAddr)>;
    /// Start a non-blocking TCP connect to `to`. Returns at once;
    /// [`Driver::handle_stream_connected`] or [`Driver::handle_stream_closed`] follows.
    /// Fails at once only if no socket could be made or the kernel refused the connect
    /// outright (no route, [`LoopConfig::max_streams`] reached); then nothing follows.
    /// The loop sets no timeout: a host that never answers fails when the kernel stops
    /// retrying (`TimedOut`, about two minutes); close the stream sooner if need be.
    fn connect(&mut self, to: SocketAddr) -> std::io::Result<StreamId>;
    /// Queue bytes on a stream (also before its connect completes). They are written in
    /// order, straight away if the stream is idle; what the kernel does not take is copied
    /// into the stream's send queue and written as the socket drains. Returns false if the
    /// bytes will not be sent: unknown or closed stream (nothing reported); pending bytes
    /// would exceed [`LoopConfig::max_stream_pending_bytes`] (the stream is closed and
    /// [`StreamClosed::Overflow`] reported); writing failed (closed, [`StreamClosed::Error`]
    /// reported). Those reports arrive after the current callback returns.
    fn send_stream(&mut self, stream: StreamId, data: &[u8]) -> bool;
    /// Close a stream at once: bytes the kernel already took still go out, bytes still in
    /// the stream's send queue are dropped. Nothing is reported. Unknown ids are ignored.
    fn close_stream(&mut self, stream: StreamId);
}

/// Protocol state driven by a core's loop. Every method does a bounded amount of work.
pub trait Driver {
    /// Called once on the loop's thread before anything else (bind the SIP socket here).
    fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()>;
    /// A datagram arrived on `socket` from `from`.
    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    );
    /// An ICMP error arrived for a datagram sent from `socket` (`IP_RECVERR`, see
    /// [`crate::icmp`]); `quoted` is the start of that datagram, as far as the ICMP message
    /// quoted it. Only unreachable destinations are reported. Ignored by default.
    fn handle_icmp_error(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _socket: SocketId,
        _error: IcmpError,
        _quoted: &[u8],
    ) {
    }
    /// `listener` accepted a connection from `peer`, now `stream`. Ignored (and the stream
    /// left open) by default.
    fn handle_stream_accepted(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _listener: ListenerId,
        _stream: StreamId,
        _peer: SocketAddr,
    ) {
    }
    /// A listener has a connection from `peer` waiting, but accepted streams fill their
    /// share of `max_streams`: close one of them ([`Io::close_stream`]) and return true to
    /// let the newcomer in. By default nothing is closed and the newcomer is refused.
    fn make_room_for_accept(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _peer: SocketAddr,
    ) -> bool {
        false
    }
    /// A connection from `peer` waiting on `listener` was closed as it was accepted: the
    /// core's streams, or the accepted share of them, were full and
    /// [`Self::make_room_for_accept`] made no room. Nothing by default.
    fn handle_accept_refused(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _listener: ListenerId,
        _peer: SocketAddr,
    ) {
    }
    /// The connect started by [`Io::connect`] completed.
    fn handle_stream_connected(&mut self, _io: &mut impl Io, _now: Instant, _stream: StreamId) {}
    /// Bytes arrived on `stream`: any amount, cut anywhere (framing is the driver's job).
    fn handle_stream_data(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _stream: StreamId,
        _data: &[u8],
    ) {
    }
    /// `stream` ended for the reason given; its id is dead from now on. Not called for
    /// streams the driver closed itself.
    fn handle_stream_closed(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _stream: StreamId,
        _why: StreamClosed,
    ) {
    }
    /// The deadline returned by [`Driver::poll_timeout`] passed (spurious calls are no-ops).
    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant);
    /// The core's [`WakeFd`] was signalled: drain the command queue.
    fn handle_wake(&mut self, io: &mut impl Io, now: Instant);
    /// The earliest deadline the driver wants a [`Driver::handle_timeout`] at.
    fn poll_timeout(&self) -> Option<Instant>;
    /// A turn ended: `busy` is how long it ran, from the wait's return to the next wait
    /// (what delays everything due meanwhile). For the driver's own statistics.
    fn turn_finished(&mut self, _busy: Duration) {}
    /// True once the loop should return.
    fn should_stop(&self) -> bool;
}

/// Run `driver` on the calling thread until [`Driver::should_stop`], pinning the thread
/// first if [`LoopConfig::pin_to_cpu`] asks.
///
/// [`Backend::Auto`] uses io_uring when the kernel allows it (see [`probe_io_uring`]) and
/// falls back to epoll with a warning saying why. Returns the backend that ran.
pub fn run<D: Driver>(
    config: &LoopConfig,
    wake: &WakeFd,
    driver: &mut D,
) -> Result<BackendUsed, LoopError> {
    config.validate()?;
    if let Some(cpu) = config.pin_to_cpu {
        pin_current_thread(cpu)?;
    }
    let scheduling = match config.realtime_priority {
        None => "normal".to_owned(),
        Some(priority) => match realtime::raise_current_thread(priority) {
            Ok(()) => format!("SCHED_FIFO {priority}"),
            Err(e) => {
                tracing::warn!(
                    priority,
                    error = %e,
                    "this core runs at normal priority: SCHED_FIFO needs root, CAP_SYS_NICE or \
                     an RLIMIT_RTPRIO (ulimit -r, systemd LimitRTPRIO=) of at least the priority"
                );
                "normal".to_owned()
            }
        },
    };
    let uring = match config.backend {
        Backend::Epoll => None,
        Backend::IoUring => Some(
            uring::UringLoop::new(config, wake)
                .map_err(|reason| LoopError::IoUringUnavailable { reason })?,
        ),
        Backend::Auto => match uring::UringLoop::new(config, wake) {
            Ok(ring) => Some(ring),
            Err(reason) => {
                tracing::warn!(%reason, "io_uring is not usable; the dataplane falls back to epoll");
                None
            }
        },
    };
    let used = if uring.is_some() {
        BackendUsed::IoUring
    } else {
        BackendUsed::Epoll
    };
    tracing::info!(
        backend = used.name(),
        cpu = ?config.pin_to_cpu,
        %scheduling,
        "dataplane loop starting"
    );
    match uring {
        Some(ring) => ring.run(wake, driver)?,
        None => epoll::run(config, wake, driver)?,
    }
    Ok(used)
}

/// Whether [`Backend::Auto`] would choose io_uring here; if not, why (for startup logs).
///
/// Checks that a ring with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` can be
/// created, that the opcodes the loop uses are supported, and that a provided-buffer ring
/// registers.
pub fn probe_io_uring() -> Result<(), String> {
    uring::probe()
}

/// Pin the calling thread to `cpu`.
fn pin_current_thread(cpu: usize) -> Result<(), LoopError> {
    // `core_affinity` indexes a fixed-size `cpu_set_t`: refuse what does not fit in it.
    let fits = usize::try_from(libc::CPU_SETSIZE).is_ok_and(|size| cpu < size);
    if fits && core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(LoopError::Pin { cpu })
    }
}

/// Hands up to [`socket::ERRORS_PER_READ`] queued ICMP errors of `fd` to the driver,
/// using `scratch` for the quoted datagram. Both backends call it when a socket reports an
/// error; nothing is allocated.
fn drain_icmp_errors<D: Driver, I: Io>(
    io: &mut I,
    driver: &mut D,
    now: Instant,
    socket: SocketId,
    fd: std::os::fd::RawFd,
    scratch: &mut [u8],
) -> usize {
    let mut read = 0;
    for _ in 0..socket::ERRORS_PER_READ {
        match socket::read_error_queue(fd, scratch) {
            socket::Queued::Empty => break,
            socket::Queued::Other => read += 1,
            socket::Queued::Icmp(error, len) => {
                read += 1;
                let quoted = scratch.get(..len).unwrap_or_default();
                driver.handle_icmp_error(io, now, socket, error, quoted);
            }
        }
    }
    read
}

/// The current time. The loops are the one place in the dataplane that reads the clock;
/// everything else is handed `now`.
fn clock_now() -> Instant {
    Instant::now()
}

/// `at`, or the first boundary of `tick` (counted from `epoch`) after it: a loop that wakes
/// only on tick boundaries serves everything due within a tick in one turn. A zero `tick`,
/// or `at` before `epoch`, gives `at` unchanged (never earlier than `at`).
pub fn next_tick(epoch: Instant, at: Instant, tick: Duration) -> Instant {
    if tick.is_zero() {
        return at;
    }
    let since = at.saturating_duration_since(epoch).as_nanos();
    let boundary = since.div_ceil(tick.as_nanos()) * tick.as_nanos();
    u64::try_from(boundary)
        .ok()
        .and_then(|nanos| epoch.checked_add(Duration::from_nanos(nanos)))
        .map_or(at, |boundary| boundary.max(at))
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long to wait from `now` until `deadline` (zero if it has passed).
fn timeout_until(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_move_to_the_next_tick_boundary() {
        let epoch = Instant::now();
        let us = Duration::from_micros;
        let ms = Duration::from_millis(1);
        assert_eq!(next_tick(epoch, epoch + us(1), ms), epoch + us(1000));
        assert_eq!(next_tick(epoch, epoch + us(1000), ms), epoch + us(1000));
        assert_eq!(next_tick(epoch, epoch + us(20_400), ms), epoch + us(21_000));
        // No tick, or before the epoch: the deadline itself, never earlier.
        assert_eq!(
            next_tick(epoch, epoch + us(7), Duration::ZERO),
            epoch + us(7)
        );
        let earlier = epoch.checked_sub(us(5)).unwrap_or(epoch);
        assert!(next_tick(epoch, earlier, ms) >= earlier);
    }
}
