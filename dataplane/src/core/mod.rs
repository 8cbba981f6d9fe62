//! The only I/O in the dataplane: one loop per core, pinned, on io_uring
//! (SINGLE_ISSUER + DEFER_TASKRUN, multishot receive with a provided-buffer ring), or on
//! epoll through mio where io_uring is refused. Everything protocol-shaped lives in a
//! [`Driver`], which the loop feeds datagrams, timeouts and wake-ups, and which answers
//! through [`Io`].
//!
//! A loop turn: handle completions (or readiness) → if the driver's deadline passed,
//! [`Driver::handle_timeout`] → if woken, [`Driver::handle_wake`] → flush sends → check
//! [`Driver::should_stop`]. Nothing on the per-datagram path allocates or locks.

mod config;
mod epoll;
mod error;
mod sockaddr;
mod socket;
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
    /// The deadline returned by [`Driver::poll_timeout`] passed (spurious calls are no-ops).
    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant);
    /// The core's [`WakeFd`] was signalled: drain the command queue.
    fn handle_wake(&mut self, io: &mut impl Io, now: Instant);
    /// The earliest deadline the driver wants a [`Driver::handle_timeout`] at.
    fn poll_timeout(&self) -> Option<Instant>;
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
    tracing::info!(backend = used.name(), cpu = ?config.pin_to_cpu, "dataplane loop starting");
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

/// How long to wait from `now` until `deadline` (zero if it has passed).
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
