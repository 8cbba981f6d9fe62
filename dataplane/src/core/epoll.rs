//! The epoll backend, through mio: readiness per socket, then `recv_from` until the
//! socket is empty (or a per-turn budget is spent) into one reusable buffer.
//!
//! Sends go out at once with `send_to`; across per-call sockets that costs the same as a
//! batch (performance.md §2a-2).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::socket::open_udp;
use super::table::SocketTable;
use super::{
    Driver, Io, LoopConfig, LoopError, SocketId, WakeFd, clock_now, drain_icmp_errors,
    timeout_until,
};

/// The token of the loop's [`WakeFd`]; sockets use their [`SocketId`] as token.
const WAKE: Token = Token(usize::MAX);
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// Datagrams read from one socket per turn before others get a go; the socket is
/// revisited next turn (mio is edge-triggered, so it must be).
const READ_BUDGET: usize = 64;

/// A bound socket.
#[derive(Debug)]
struct EpollSocket {
    socket: UdpSocket,
    /// Already listed in `EpollIo::carry` for another read next turn.
    carried: bool,
}

/// The [`Io`] the epoll backend hands to its driver.
#[derive(Debug)]
struct EpollIo {
    /// A handle on the loop's epoll instance, for (de)registering sockets.
    registry: Registry,
    sockets: SocketTable<EpollSocket>,
    /// Sockets whose read budget ran out with data possibly left, to read next turn.
    /// Both lists keep capacity for every socket, so pushing never allocates.
    carry: Vec<SocketId>,
    /// Last turn's `carry`, being read this turn.
    spare: Vec<SocketId>,
    buffer_bytes: usize,
    /// Longer datagrams are not sent.
    max_datagram: usize,
    /// Datagrams too long, or that `send_to` refused (full socket buffer, unreachable, ...).
    send_errors: u64,
}

impl Io for EpollIo {
    fn bind(&mut self, addr: SocketAddr) -> std::io::Result<(SocketId, SocketAddr)> {
        let socket = UdpSocket::from_std(open_udp(addr, self.buffer_bytes)?);
        let local = socket.local_addr()?;
        let id = self
            .sockets
            .insert(EpollSocket {
                socket,
                carried: false,
            })
            .ok_or_else(|| std::io::Error::other("this core already has 2^20 sockets"))?;
        let registered = match self.sockets.get_mut(id) {
            Some(entry) => {
                self.registry
                    .register(&mut entry.socket, Token(id.0 as usize), Interest::READABLE)
            }
            None => Err(std::io::Error::other("socket vanished while binding")),
        };
        if let Err(error) = registered {
            self.sockets.remove(id);
            return Err(error);
        }
        let wanted = self.sockets.len();
        self.carry.reserve(wanted.saturating_sub(self.carry.len()));
        self.spare.reserve(wanted.saturating_sub(self.spare.len()));
        Ok((id, local))
    }

    fn close(&mut self, socket: SocketId) {
        if let Some(mut entry) = self.sockets.remove(socket) {
            let _ = self.registry.deregister(&mut entry.socket);
        }
    }

    fn send(&mut self, socket: SocketId, to: SocketAddr, data: &[u8]) {
        let Some(entry) = self.sockets.get(socket) else {
            return;
        };
        if data.len() > self.max_datagram || entry.socket.send_to(data, to).is_err() {
            self.send_errors += 1;
        }
    }
}

/// Run `driver` on epoll until it asks to stop.
pub(crate) fn run<D: Driver>(
    config: &LoopConfig,
    wake: &WakeFd,
    driver: &mut D,
) -> Result<(), LoopError> {
    let mut poll = Poll::new().map_err(LoopError::Epoll)?;
    let wake_fd = wake.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&wake_fd), WAKE, Interest::READABLE)
        .map_err(LoopError::Epoll)?;
    let mut events = Events::with_capacity(EVENTS);
    // One byte more than the largest datagram, so a longer one shows as truncated.
    let mut recv_buf = vec![0u8; config.max_datagram + 1].into_boxed_slice();
    let mut io = EpollIo {
        registry: poll.registry().try_clone().map_err(LoopError::Epoll)?,
        sockets: SocketTable::new(),
        carry: Vec::new(),
        spare: Vec::new(),
        buffer_bytes: config.socket_buffer_bytes,
        max_datagram: config.max_datagram,
        send_errors: 0,
    };

    driver
        .start(&mut io, clock_now())
        .map_err(LoopError::DriverStart)?;
    while !driver.should_stop() {
        let deadline = driver.poll_timeout();
        let timeout = if io.carry.is_empty() {
            deadline.map(|deadline| timeout_until(deadline, clock_now()))
        } else {
            Some(std::time::Duration::ZERO)
        };
        if let Err(error) = poll_events(&mut poll, &mut events, timeout) {
            return Err(LoopError::Wait {
                backend: "epoll",
                source: error,
            });
        }
        let now = clock_now();

        std::mem::swap(&mut io.carry, &mut io.spare);
        for index in 0..io.spare.len() {
            let Some(&id) = io.spare.get(index) else {
                break;
            };
            if let Some(entry) = io.sockets.get_mut(id) {
                entry.carried = false;
            }
            read_socket(&mut io, driver, now, id, &mut recv_buf);
        }
        io.spare.clear();
        let mut woken = false;
        for event in events.iter() {
            match event.token() {
                WAKE => woken = true,
                Token(token) => {
                    let Ok(raw) = u32::try_from(token) else {
                        continue;
                    };
                    if event.is_error() {
                        read_errors(&mut io, driver, now, SocketId(raw), &mut recv_buf);
                    }
                    read_socket(&mut io, driver, now, SocketId(raw), &mut recv_buf);
                }
            }
        }

        let now = clock_now();
        if deadline.is_some_and(|deadline| deadline <= now) {
            driver.handle_timeout(&mut io, now);
        }
        if woken {
            wake.drain();
            driver.handle_wake(&mut io, now);
        }
        // Sends went out as they were made: nothing to flush.
    }
    if io.send_errors > 0 {
        tracing::debug!(send_errors = io.send_errors, "epoll loop stopped");
    }
    Ok(())
}

/// `epoll_wait`, treating an interrupted wait as an empty one.
fn poll_events(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<()> {
    match poll.poll(events, timeout) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Hand the ICMP errors queued on `id` to the driver.
fn read_errors<D: Driver>(
    io: &mut EpollIo,
    driver: &mut D,
    now: Instant,
    id: SocketId,
    buf: &mut [u8],
) {
    let Some(fd) = io.sockets.get(id).map(|entry| entry.socket.as_raw_fd()) else {
        return;
    };
    drain_icmp_errors(io, driver, now, id, fd, buf);
}

/// Read up to [`READ_BUDGET`] datagrams from `id` and hand each to the driver.
fn read_socket<D: Driver>(
    io: &mut EpollIo,
    driver: &mut D,
    now: Instant,
    id: SocketId,
    buf: &mut [u8],
) {
    let limit = buf.len().saturating_sub(1);
    for _ in 0..READ_BUDGET {
        // Looked up per datagram: the driver may close the socket from `handle_datagram`.
        let Some(entry) = io.sockets.get(id) else {
            return;
        };
        match entry.socket.recv_from(buf) {
            Ok((len, from)) => {
                if len > limit {
                    continue; // Longer than max_datagram: dropped, as documented.
                }
                if let Some(data) = buf.get(..len) {
                    driver.handle_datagram(io, now, id, from, data);
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            // An ICMP error reported on the socket (IP_RECVERR): it waits in the error queue.
            Err(_) => read_errors(io, driver, now, id, buf),
        }
    }
    if let Some(entry) = io.sockets.get_mut(id)
        && !entry.carried
    {
        entry.carried = true;
        io.carry.push(id);
    }
}
