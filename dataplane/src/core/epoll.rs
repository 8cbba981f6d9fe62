//! The epoll backend, through mio: readiness per socket, then `recv_from` until the
//! socket is empty (or a per-turn budget is spent) into one reusable buffer.
//!
//! Sends go out at once with `send_to`; across per-call sockets that costs the same as a
//! batch (performance.md §2a-2).
//!
//! TCP streams and listeners are registered the same way (streams for reading and
//! writing); what happens when they are ready is shared with io_uring (`stream.rs`).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::socket::open_udp;
use super::stream::{self, READ_CHUNK, Tcp, TcpHost};
use super::table::SocketTable;
use super::{
    Driver, Io, ListenerId, LoopConfig, LoopError, SocketId, StreamId, WakeFd, clock_now,
    drain_icmp_errors, earliest, timeout_until,
};

/// The token of the loop's [`WakeFd`]. UDP sockets use their [`SocketId`] as token; TCP
/// streams and listeners their id plus [`STREAM_TOKENS`] or [`LISTENER_TOKENS`].
const WAKE: Token = Token(usize::MAX);
/// Tokens of TCP streams: `STREAM_TOKENS | id`.
const STREAM_TOKENS: usize = 1 << 32;
/// Tokens of TCP listeners: `LISTENER_TOKENS | id`.
const LISTENER_TOKENS: usize = 2 << 32;
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
    /// TCP streams and listeners, registered with their own tokens.
    tcp: Tcp<(), ()>,
}

impl TcpHost for EpollIo {
    type StreamExtra = ();
    type ListenerExtra = ();

    fn tcp(&mut self) -> &mut Tcp<(), ()> {
        &mut self.tcp
    }

    fn stopping(&self) -> bool {
        false
    }

    fn watch_stream(&mut self, id: StreamId) -> std::io::Result<()> {
        let Some(conn) = self.tcp.streams.get_mut(id) else {
            return Err(std::io::Error::other("stream vanished while opening"));
        };
        let token = Token(STREAM_TOKENS | id.0 as usize);
        self.registry.register(
            &mut conn.socket,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn unwatch_stream(&mut self, id: StreamId) {
        if let Some(mut conn) = self.tcp.streams.remove(id) {
            let _ = self.registry.deregister(&mut conn.socket);
        }
    }

    fn watch_listener(&mut self, id: ListenerId) -> std::io::Result<()> {
        let Some(listener) = self.tcp.listeners.get_mut(id.0 as usize) else {
            return Err(std::io::Error::other("listener vanished while opening"));
        };
        let token = Token(LISTENER_TOKENS | id.0 as usize);
        self.registry
            .register(&mut listener.socket, token, Interest::READABLE)
    }
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

    fn listen(&mut self, addr: SocketAddr) -> std::io::Result<(ListenerId, SocketAddr)> {
        stream::listen(self, addr)
    }

    fn connect(&mut self, to: SocketAddr) -> std::io::Result<StreamId> {
        stream::connect(self, to)
    }

    fn send_stream(&mut self, stream: StreamId, data: &[u8]) -> bool {
        stream::send_stream(self, stream, data)
    }

    fn close_stream(&mut self, stream: StreamId) {
        stream::close_stream(self, stream);
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
    let mut stream_buf = vec![0u8; READ_CHUNK].into_boxed_slice();
    let mut io = EpollIo {
        registry: poll.registry().try_clone().map_err(LoopError::Epoll)?,
        sockets: SocketTable::new(),
        carry: Vec::new(),
        spare: Vec::new(),
        buffer_bytes: config.socket_buffer_bytes,
        max_datagram: config.max_datagram,
        send_errors: 0,
        tcp: Tcp::new(config),
    };

    driver
        .start(&mut io, clock_now())
        .map_err(LoopError::DriverStart)?;
    while !driver.should_stop() {
        let deadline = driver.poll_timeout();
        let timeout = if io.carry.is_empty() && !io.tcp.has_carried() {
            earliest(deadline, io.tcp.next_retry())
                .map(|deadline| timeout_until(deadline, clock_now()))
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
        let woke = now;

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
        stream::serve_carried(&mut io, driver, now, &mut stream_buf);
        stream::resume_listeners(&mut io, driver, now);
        let mut woken = false;
        for event in events.iter() {
            let Token(token) = event.token();
            if token == WAKE.0 {
                woken = true;
                continue;
            }
            // Truncation keeps the id: the kind is in the bits above 32.
            let raw = token as u32;
            match token >> 32 {
                0 => {
                    if event.is_error() {
                        read_errors(&mut io, driver, now, SocketId(raw), &mut recv_buf);
                    }
                    read_socket(&mut io, driver, now, SocketId(raw), &mut recv_buf);
                }
                1 => {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    let id = StreamId(raw);
                    stream::stream_ready(&mut io, driver, now, id, readable, &mut stream_buf);
                }
                2 => stream::listener_ready(&mut io, driver, now, ListenerId(raw)),
                _ => {}
            }
        }
        stream::report_closed(&mut io, driver, now);

        let now = clock_now();
        if deadline.is_some_and(|deadline| deadline <= now) {
            driver.handle_timeout(&mut io, now);
        }
        if woken {
            wake.drain();
            driver.handle_wake(&mut io, now);
        }
        stream::report_closed(&mut io, driver, now);
        // Sends went out as they were made: nothing to flush.
        driver.turn_finished(clock_now().saturating_duration_since(woke));
    }
    let counters = &io.tcp.counters;
    if io.send_errors > 0 || counters.over_limit > 0 || counters.accept_pauses > 0 {
        tracing::debug!(
            send_errors = io.send_errors,
            streams_over_limit = counters.over_limit,
            accept_pauses = counters.accept_pauses,
            "epoll loop stopped"
        );
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
