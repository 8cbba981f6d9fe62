//! TCP streams, shared by both backends: listeners, connects, per-stream send queues, and
//! what to do when a stream or listener is ready. A backend only says how it watches a
//! socket ([`TcpHost`]).
//!
//! SIP over TCP is signalling (a few messages per call), so both backends run streams on
//! readiness rather than on the UDP machinery: epoll registers them with mio as it does
//! UDP sockets; io_uring arms one multishot `PollAdd` per socket instead of multishot
//! receives with provided buffers. Reads, writes and accepts are plain non-blocking
//! syscalls. Reads go into one per-core buffer ([`READ_CHUNK`]); nothing is allocated per
//! read. Sends are written straight away; only what the kernel does not take is copied
//! into the stream's send queue, which thus grows only behind a slow peer, up to
//! [`LoopConfig::max_stream_pending_bytes`](super::LoopConfig::max_stream_pending_bytes).
//!
//! Readiness is edge-triggered on both backends: a stream is read until the kernel says
//! `EAGAIN`, or, once its per-turn budget is spent, carried to the next turn (which then
//! does not wait). A listener whose `accept` fails for lack of resources (`EMFILE`,
//! `ENFILE`, `ENOBUFS`, `ENOMEM`) rests for [`ACCEPT_PAUSE`] instead of spinning.
//!
//! The driver may call any [`Io`] method from any callback, including closing or writing
//! to the stream being served: every step looks the stream up again. A stream failing
//! inside [`Io::send_stream`] is reported once the current callback has returned.
//!
//! Accepted streams may take all but one [`OPENED_SHARE`]th of `max_streams`: the rest is
//! kept for the streams this core opens (to its trunks), so connections strangers open and
//! leave idle cannot stop its calls. Past that share a new connection gets in only if the
//! driver closes one of its accepted streams for it ([`Driver::make_room_for_accept`]);
//! otherwise it is closed at once.
//!
//! The loop sets no connect timeout: a connect to a host that never answers fails when
//! the kernel gives up (`ETIMEDOUT`, about two minutes); drivers close sooner if they
//! need to.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use super::stream_table::StreamTable;
use super::{Driver, Io, ListenerId, LoopConfig, StreamClosed, StreamId};

/// Size of the per-core read buffer: bytes read from a stream per syscall.
pub(crate) const READ_CHUNK: usize = 64 << 10;
/// Reads from one stream per turn before others get a go.
const READ_BUDGET: usize = 16;
/// Connections accepted from one listener per turn before others get a go.
const ACCEPT_BUDGET: usize = 64;
/// One in this many of `max_streams` is kept for streams the core opens (at least one).
pub(crate) const OPENED_SHARE: usize = 8;
/// How long a listener rests after `accept` failed for lack of resources.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// A send queue that empties keeps at most this much memory for next time.
const KEPT_QUEUE_CAPACITY: usize = 16 << 10;

/// How a backend watches TCP sockets. The shared logic below calls these; everything else
/// about streams is common.
pub(crate) trait TcpHost: Io + Sized {
    /// Backend state kept with each stream.
    type StreamExtra: Default;
    /// Backend state kept with each listener.
    type ListenerExtra: Default;
    /// The streams and listeners.
    fn tcp(&mut self) -> &mut Tcp<Self::StreamExtra, Self::ListenerExtra>;
    /// True once the loop is stopping: nothing more is handed to the driver.
    fn stopping(&self) -> bool;
    /// Start watching stream `id`, just added. On error the caller removes it.
    fn watch_stream(&mut self, id: StreamId) -> std::io::Result<()>;
    /// Stop watching stream `id` and close it: at once, or as soon as the kernel no longer
    /// refers to it (meanwhile it is marked closing and hidden from everything else).
    fn unwatch_stream(&mut self, id: StreamId);
    /// Start watching listener `id`, just added. On error the caller removes it.
    fn watch_listener(&mut self, id: ListenerId) -> std::io::Result<()>;
}

/// Bytes the kernel did not take yet, oldest first.
#[derive(Debug, Default)]
struct SendQueue {
    bytes: Vec<u8>,
    /// How much of `bytes` is written already.
    start: usize,
}

impl SendQueue {
    fn len(&self) -> usize {
        self.bytes.len().saturating_sub(self.start)
    }

    fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// Write what is queued until it is gone or the socket is full.
    fn flush(&mut self, socket: &TcpStream) -> Result<(), ErrorKind> {
        let rest = self.bytes.get(self.start..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(());
        }
        self.start += write_now(socket, rest)?;
        if self.start >= self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
            if self.bytes.capacity() > KEPT_QUEUE_CAPACITY {
                self.bytes = Vec::new();
            }
        }
        Ok(())
    }
}

/// Write as much of `data` as the socket takes now; returns how much it took.
fn write_now(mut socket: &TcpStream, data: &[u8]) -> Result<usize, ErrorKind> {
    let mut written = 0;
    while let Some(rest) = data.get(written..).filter(|rest| !rest.is_empty()) {
        // std writes TCP with MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE.
        match socket.write(rest) {
            Ok(0) => return Err(ErrorKind::WriteZero),
            Ok(n) => written += n,
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error.kind()),
        }
    }
    Ok(written)
}

/// One non-blocking read. `Ok(0)` is the peer's EOF; `Err(WouldBlock)`, nothing to read.
fn read_once(mut socket: &TcpStream, buf: &mut [u8]) -> Result<usize, ErrorKind> {
    loop {
        match socket.read(buf) {
            Ok(n) => return Ok(n),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error.kind()),
        }
    }
}

/// Where a non-blocking connect stands.
#[derive(Debug, Eq, PartialEq)]
enum Connect {
    InProgress,
    Done,
    Failed(ErrorKind),
}

/// A TCP connection and its send queue.
#[derive(Debug)]
pub(crate) struct Conn<X> {
    pub(crate) socket: TcpStream,
    /// The connect has not completed yet.
    connecting: bool,
    /// Accepted from a listener (not opened by this core).
    accepted: bool,
    /// Being closed; waits only for the kernel to let go of it.
    pub(crate) closing: bool,
    /// Listed in `Tcp::carry`.
    carried: bool,
    queue: SendQueue,
    /// The backend's state.
    pub(crate) extra: X,
}

impl<X: Default> Conn<X> {
    /// A stream just accepted, or just opened (its connect in progress).
    fn new(socket: TcpStream, side: Side) -> Self {
        Self {
            socket,
            connecting: side == Side::Opened,
            accepted: side == Side::Accepted,
            closing: false,
            carried: false,
            queue: SendQueue::default(),
            extra: X::default(),
        }
    }
}

impl<X> Conn<X> {
    /// Write `data` now if nothing is queued ahead of it, queue the rest. Err if the
    /// stream must close.
    fn send(&mut self, data: &[u8], cap: usize) -> Result<(), StreamClosed> {
        let mut rest = data;
        if !self.connecting && self.queue.len() == 0 {
            let written = write_now(&self.socket, data).map_err(StreamClosed::Error)?;
            rest = data.get(written..).unwrap_or_default();
        }
        if rest.is_empty() {
            return Ok(());
        }
        if self.queue.len().saturating_add(rest.len()) > cap {
            return Err(StreamClosed::Overflow);
        }
        self.queue.push(rest);
        Ok(())
    }

    /// Check a connect the socket reported ready (writable or failed) for.
    fn connect_outcome(&self) -> Connect {
        match self.socket.take_error() {
            Ok(Some(error)) | Err(error) => return Connect::Failed(error.kind()),
            Ok(None) => {}
        }
        match self.socket.peer_addr() {
            Ok(_) => Connect::Done,
            Err(error)
                if error.kind() == ErrorKind::NotConnected
                    || error.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Connect::InProgress
            }
            Err(error) => Connect::Failed(error.kind()),
        }
    }
}

/// A listening socket.
#[derive(Debug)]
pub(crate) struct Listener<X> {
    pub(crate) socket: TcpListener,
    /// Listed in `Tcp::carry`.
    carried: bool,
    /// Accepting failed for lack of resources: try again from then on.
    paused_until: Option<Instant>,
    /// Warned about the current run of failures.
    warned: bool,
    /// The backend's state.
    pub(crate) extra: X,
}

/// Something ready whose budget ran out this turn.
#[derive(Clone, Copy, Debug)]
enum Carried {
    Stream(StreamId),
    Listener(ListenerId),
}

/// Events worth a line in the log when the loop stops.
#[derive(Debug, Default)]
pub(crate) struct TcpCounters {
    /// Connections closed at once because the core held `max_streams` already.
    pub(crate) over_limit: u64,
    /// Times a listener rested because `accept` failed.
    pub(crate) accept_pauses: u64,
}

/// A core's TCP streams and listeners.
#[derive(Debug)]
pub(crate) struct Tcp<S, L> {
    pub(crate) streams: StreamTable<Conn<S>>,
    /// Never removed: listeners live as long as the loop.
    pub(crate) listeners: Vec<Listener<L>>,
    /// Streams that failed inside `Io::send_stream`, to report after the callback.
    closed: VecDeque<(StreamId, StreamClosed)>,
    /// Ready items to serve again next turn, and last turn's list being served.
    carry: Vec<Carried>,
    spare: Vec<Carried>,
    /// Streams not closing; at most `max_streams`.
    open: usize,
    /// Of them, accepted from a listener; at most `max_accepted`.
    accepted: usize,
    max_streams: usize,
    /// `max_streams` less the share kept for streams this core opens (to trunks and
    /// peers), so connections strangers open and leave cannot take every slot.
    max_accepted: usize,
    max_pending: usize,
    pub(crate) counters: TcpCounters,
}

impl<S: Default, L: Default> Tcp<S, L> {
    pub(crate) fn new(config: &LoopConfig) -> Self {
        Self {
            // Closing streams keep their slot until the kernel lets go of them (a turn on
            // io_uring), so the table holds twice as many as may be open.
            streams: StreamTable::new(config.max_streams.saturating_mul(2)),
            listeners: Vec::new(),
            closed: VecDeque::new(),
            carry: Vec::new(),
            spare: Vec::new(),
            open: 0,
            accepted: 0,
            max_streams: config.max_streams,
            max_accepted: config
                .max_streams
                .saturating_sub((config.max_streams / OPENED_SHARE).max(1)),
            max_pending: config.max_stream_pending_bytes,
            counters: TcpCounters::default(),
        }
    }

    /// The stream `id`, unless unknown or closing.
    pub(crate) fn open_mut(&mut self, id: StreamId) -> Option<&mut Conn<S>> {
        self.streams.get_mut(id).filter(|conn| !conn.closing)
    }

    /// True when no further stream may open.
    fn is_full(&self) -> bool {
        self.open >= self.max_streams || self.streams.is_full()
    }

    /// True when no further stream may be accepted.
    fn accepts_no_more(&self) -> bool {
        self.accepted >= self.max_accepted || self.is_full()
    }

    /// True if something carried over must be served without waiting.
    pub(crate) fn has_carried(&self) -> bool {
        !self.carry.is_empty()
    }

    /// When the earliest resting listener tries again.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.paused_until)
            .min()
    }

    /// Room in the lists for every stream and listener, so pushing does not allocate.
    fn reserve(&mut self) {
        let wanted = self.streams.len() + self.listeners.len();
        self.carry.reserve(wanted.saturating_sub(self.carry.len()));
        self.spare.reserve(wanted.saturating_sub(self.spare.len()));
        self.closed
            .reserve(wanted.saturating_sub(self.closed.len()));
    }

    fn carry(&mut self, item: Carried) {
        let carried = match item {
            Carried::Stream(id) => self.streams.get_mut(id).map(|conn| &mut conn.carried),
            Carried::Listener(id) => self
                .listeners
                .get_mut(id.0 as usize)
                .map(|listener| &mut listener.carried),
        };
        if let Some(carried) = carried
            && !*carried
        {
            *carried = true;
            self.carry.push(item);
        }
    }
}

/// [`Io::listen`].
pub(crate) fn listen<H: TcpHost>(
    io: &mut H,
    addr: SocketAddr,
) -> std::io::Result<(ListenerId, SocketAddr)> {
    // mio: non-blocking, close-on-exec, SO_REUSEADDR, backlog 128 (as std).
    let socket = TcpListener::bind(addr)?;
    let local = socket.local_addr()?;
    let tcp = io.tcp();
    let index = u32::try_from(tcp.listeners.len())
        .map_err(|_| std::io::Error::other("this core has too many TCP listeners"))?;
    tcp.listeners.push(Listener {
        socket,
        carried: false,
        paused_until: None,
        warned: false,
        extra: H::ListenerExtra::default(),
    });
    tcp.reserve();
    let id = ListenerId(index);
    if let Err(error) = io.watch_listener(id) {
        io.tcp().listeners.pop();
        return Err(error);
    }
    Ok((id, local))
}

/// [`Io::connect`].
pub(crate) fn connect<H: TcpHost>(io: &mut H, to: SocketAddr) -> std::io::Result<StreamId> {
    if io.tcp().is_full() {
        return Err(too_many_streams());
    }
    let socket = TcpStream::connect(to)?;
    let _ = socket.set_nodelay(true);
    adopt(io, socket, Side::Opened)
}

/// Who opened a stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// This core, connecting out.
    Opened,
    /// A peer, through one of our listeners.
    Accepted,
}

fn too_many_streams() -> std::io::Error {
    std::io::Error::other(
        "this core holds max_streams TCP streams already; close some or raise max_streams",
    )
}

/// Add a stream to the table and start watching it.
fn adopt<H: TcpHost>(io: &mut H, socket: TcpStream, side: Side) -> std::io::Result<StreamId> {
    let tcp = io.tcp();
    if tcp.is_full() {
        return Err(too_many_streams());
    }
    let accepted = side == Side::Accepted;
    let id = tcp
        .streams
        .insert(Conn::new(socket, side))
        .map_err(|_| too_many_streams())?;
    tcp.reserve();
    if let Err(error) = io.watch_stream(id) {
        io.tcp().streams.remove(id);
        return Err(error);
    }
    let tcp = io.tcp();
    tcp.open += 1;
    tcp.accepted += usize::from(accepted);
    Ok(id)
}

/// Close open stream `id` now, reporting nothing.
fn shut<H: TcpHost>(io: &mut H, id: StreamId) {
    let tcp = io.tcp();
    if let Some(conn) = tcp.open_mut(id) {
        let accepted = conn.accepted;
        tcp.open = tcp.open.saturating_sub(1);
        tcp.accepted = tcp.accepted.saturating_sub(usize::from(accepted));
        io.unwatch_stream(id);
    }
}

/// [`Io::send_stream`].
pub(crate) fn send_stream<H: TcpHost>(io: &mut H, id: StreamId, data: &[u8]) -> bool {
    let tcp = io.tcp();
    let cap = tcp.max_pending;
    let Some(conn) = tcp.open_mut(id) else {
        return false;
    };
    match conn.send(data, cap) {
        Ok(()) => true,
        Err(why) => {
            shut(io, id);
            io.tcp().closed.push_back((id, why));
            false
        }
    }
}

/// [`Io::close_stream`].
pub(crate) fn close_stream<H: TcpHost>(io: &mut H, id: StreamId) {
    shut(io, id);
}

/// Close stream `id` and tell the driver why.
pub(crate) fn fail<H: TcpHost, D: Driver>(
    io: &mut H,
    driver: &mut D,
    now: Instant,
    id: StreamId,
    why: StreamClosed,
) {
    shut(io, id);
    if !io.stopping() {
        driver.handle_stream_closed(io, now, id, why);
    }
}

/// Stream `id` may be ready: finish its connect, flush its queue, and if `readable` (data,
/// EOF or an error pending), read what arrived.
pub(crate) fn stream_ready<H: TcpHost, D: Driver>(
    io: &mut H,
    driver: &mut D,
    now: Instant,
    id: StreamId,
    readable: bool,
    buf: &mut [u8],
) {
    if io.stopping() {
        return;
    }
    let Some(conn) = io.tcp().open_mut(id) else {
        return;
    };
    if conn.connecting {
        match conn.connect_outcome() {
            Connect::InProgress => return,
            Connect::Failed(kind) => return fail(io, driver, now, id, StreamClosed::Error(kind)),
            Connect::Done => {
                conn.connecting = false;
                driver.handle_stream_connected(io, now, id);
            }
        }
    }
    // Looked up before each step: the driver may have closed the stream meanwhile.
    if let Some(conn) = io.tcp().open_mut(id)
        && let Err(kind) = conn.queue.flush(&conn.socket)
    {
        return fail(io, driver, now, id, StreamClosed::Error(kind));
    }
    if !readable {
        return;
    }
    for _ in 0..READ_BUDGET {
        let Some(conn) = io.tcp().open_mut(id) else {
            return;
        };
        match read_once(&conn.socket, buf) {
            Ok(0) => return fail(io, driver, now, id, StreamClosed::Peer),
            Ok(len) => {
                if let Some(data) = buf.get(..len) {
                    driver.handle_stream_data(io, now, id, data);
                }
            }
            Err(ErrorKind::WouldBlock) => return,
            Err(kind) => return fail(io, driver, now, id, StreamClosed::Error(kind)),
        }
    }
    io.tcp().carry(Carried::Stream(id));
}

/// Listener `id` may have connections waiting: accept them.
pub(crate) fn listener_ready<H: TcpHost, D: Driver>(
    io: &mut H,
    driver: &mut D,
    now: Instant,
    id: ListenerId,
) {
    if io.stopping() {
        return;
    }
    for _ in 0..ACCEPT_BUDGET {
        let tcp = io.tcp();
        let Some(listener) = tcp.listeners.get_mut(id.0 as usize) else {
            return;
        };
        if listener.paused_until.is_some() {
            return;
        }
        match listener.socket.accept() {
            Ok((socket, peer)) => {
                listener.warned = false;
                // Past the accepted share the driver may close one of its accepted streams
                // to let the newcomer in (never past `max_streams`).
                let refused = tcp.accepts_no_more()
                    && (tcp.is_full()
                        || !driver.make_room_for_accept(io, now, peer)
                        || io.tcp().accepts_no_more());
                if refused {
                    io.tcp().counters.over_limit += 1;
                    drop(socket);
                    driver.handle_accept_refused(io, now, id, peer);
                    continue;
                }
                let _ = socket.set_nodelay(true);
                if let Ok(stream) = adopt(io, socket, Side::Accepted) {
                    driver.handle_stream_accepted(io, now, id, stream, peer);
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(error) if accept_may_go_on(&error) => {}
            Err(error) => {
                listener.paused_until = Some(now + ACCEPT_PAUSE);
                tcp.counters.accept_pauses += 1;
                if !listener.warned {
                    listener.warned = true;
                    tracing::warn!(
                        %error,
                        "accepting TCP connections failed; retrying every {} ms (raise `ulimit -n` if out of file descriptors)",
                        ACCEPT_PAUSE.as_millis()
                    );
                }
                return;
            }
        }
    }
    io.tcp().carry(Carried::Listener(id));
}

/// Errors of `accept` that concern only the connection being accepted (accept(2),
/// "Error handling"): take the next one.
fn accept_may_go_on(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
    ) || matches!(
        error.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM
        )
    )
}

/// Serve what ran out of budget last turn.
pub(crate) fn serve_carried<H: TcpHost, D: Driver>(
    io: &mut H,
    driver: &mut D,
    now: Instant,
    buf: &mut [u8],
) {
    let tcp = io.tcp();
    std::mem::swap(&mut tcp.carry, &mut tcp.spare);
    let mut index = 0;
    while let Some(&item) = io.tcp().spare.get(index) {
        index += 1;
        match item {
            Carried::Stream(id) => {
                if let Some(conn) = io.tcp().streams.get_mut(id) {
                    conn.carried = false;
                }
                stream_ready(io, driver, now, id, true, buf);
            }
            Carried::Listener(id) => {
                if let Some(listener) = io.tcp().listeners.get_mut(id.0 as usize) {
                    listener.carried = false;
                }
                listener_ready(io, driver, now, id);
            }
        }
    }
    io.tcp().spare.clear();
}

/// Let listeners whose rest is over accept again.
pub(crate) fn resume_listeners<H: TcpHost, D: Driver>(io: &mut H, driver: &mut D, now: Instant) {
    for index in 0..io.tcp().listeners.len() {
        let Some(listener) = io.tcp().listeners.get_mut(index) else {
            break;
        };
        if listener.paused_until.is_some_and(|until| until <= now) {
            listener.paused_until = None;
            let id = ListenerId(u32::try_from(index).unwrap_or(u32::MAX));
            listener_ready(io, driver, now, id);
        }
    }
}

/// Report streams that failed inside [`Io::send_stream`].
pub(crate) fn report_closed<H: TcpHost, D: Driver>(io: &mut H, driver: &mut D, now: Instant) {
    while let Some((id, why)) = io.tcp().closed.pop_front() {
        if !io.stopping() {
            driver.handle_stream_closed(io, now, id, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair on loopback: (ours, non-blocking; theirs, std).
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours), theirs)
    }

    #[test]
    fn sends_are_written_at_once_and_queued_only_behind_a_full_socket() {
        let (ours, mut theirs) = pair();
        let mut conn: Conn<()> = Conn::new(ours, Side::Accepted);
        conn.send(b"hello", 1 << 20).unwrap();
        assert_eq!(conn.queue.len(), 0);
        assert_eq!(
            conn.queue.bytes.capacity(),
            0,
            "nothing queued, nothing allocated"
        );
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Fill the socket: the peer does not read.
        let chunk = vec![7u8; 64 << 10];
        let mut sent = 0;
        while conn.queue.len() == 0 {
            conn.send(&chunk, usize::MAX).unwrap();
            sent += chunk.len();
            assert!(sent < 1 << 30, "the socket never filled");
        }
        // More bytes queue behind, in order, until the cap.
        let queued = conn.queue.len();
        conn.send(b"tail", queued + 4).unwrap();
        assert_eq!(conn.queue.len(), queued + 4);
        assert_eq!(conn.send(b"x", queued + 4), Err(StreamClosed::Overflow));
        // The peer drains everything; the queue flushes, the tail arrives last.
        theirs.set_nonblocking(false).unwrap();
        let total = sent + 4;
        let mut received = Vec::with_capacity(total);
        let mut buf = vec![0u8; 1 << 16];
        while received.len() < total {
            conn.queue.flush(&conn.socket).unwrap();
            let n = theirs.read(&mut buf).unwrap();
            received.extend_from_slice(&buf[..n]);
        }
        assert!(received.ends_with(b"tail"));
        assert_eq!(conn.queue.len(), 0);
    }

    #[test]
    fn bytes_sent_while_connecting_wait_in_the_queue() {
        let (ours, _theirs) = pair();
        let mut conn: Conn<()> = Conn::new(ours, Side::Opened);
        conn.send(b"early", 5).unwrap();
        assert_eq!(conn.queue.len(), 5);
        assert_eq!(conn.send(b"!", 5), Err(StreamClosed::Overflow));
    }

    #[test]
    fn a_refused_connect_is_reported_as_such() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let conn: Conn<()> = Conn::new(TcpStream::connect(dead).unwrap(), Side::Opened);
        let deadline = Instant::now() + Duration::from_secs(5);
        let outcome = loop {
            match conn.connect_outcome() {
                Connect::InProgress if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                outcome => break outcome,
            }
        };
        assert_eq!(outcome, Connect::Failed(ErrorKind::ConnectionRefused));
    }

    /// A loop without readiness: the tests call the handlers themselves.
    struct Host {
        tcp: Tcp<(), ()>,
    }

    impl Io for Host {
        fn bind(&mut self, _: SocketAddr) -> std::io::Result<(super::super::SocketId, SocketAddr)> {
            Err(ErrorKind::Unsupported.into())
        }
        fn close(&mut self, _: super::super::SocketId) {}
        fn send(&mut self, _: super::super::SocketId, _: SocketAddr, _: &[u8]) {}
        fn listen(&mut self, addr: SocketAddr) -> std::io::Result<(ListenerId, SocketAddr)> {
            listen(self, addr)
        }
        fn connect(&mut self, to: SocketAddr) -> std::io::Result<StreamId> {
            connect(self, to)
        }
        fn send_stream(&mut self, stream: StreamId, data: &[u8]) -> bool {
            send_stream(self, stream, data)
        }
        fn close_stream(&mut self, stream: StreamId) {
            close_stream(self, stream);
        }
    }

    impl TcpHost for Host {
        type StreamExtra = ();
        type ListenerExtra = ();
        fn tcp(&mut self) -> &mut Tcp<(), ()> {
            &mut self.tcp
        }
        fn stopping(&self) -> bool {
            false
        }
        fn watch_stream(&mut self, _: StreamId) -> std::io::Result<()> {
            Ok(())
        }
        fn unwatch_stream(&mut self, id: StreamId) {
            self.tcp.streams.remove(id);
        }
        fn watch_listener(&mut self, _: ListenerId) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Collects stream bytes, the streams accepted and the peers of connections refused as
    /// accepted; when `evicts`, makes room for every newcomer by closing its oldest accepted
    /// stream.
    #[derive(Default)]
    struct Sink {
        data: Vec<u8>,
        accepted: VecDeque<StreamId>,
        refused: Vec<SocketAddr>,
        evicts: bool,
    }

    impl Driver for Sink {
        fn start(&mut self, _: &mut impl Io, _: Instant) -> std::io::Result<()> {
            Ok(())
        }
        fn handle_datagram(
            &mut self,
            _: &mut impl Io,
            _: Instant,
            _: super::super::SocketId,
            _: SocketAddr,
            _: &[u8],
        ) {
        }
        fn handle_stream_data(&mut self, _: &mut impl Io, _: Instant, _: StreamId, data: &[u8]) {
            self.data.extend_from_slice(data);
        }
        fn make_room_for_accept(&mut self, io: &mut impl Io, _: Instant, _: SocketAddr) -> bool {
            self.evicts
                && self.accepted.pop_front().is_some_and(|oldest| {
                    io.close_stream(oldest);
                    true
                })
        }
        fn handle_stream_accepted(
            &mut self,
            _: &mut impl Io,
            _: Instant,
            _: ListenerId,
            stream: StreamId,
            _: SocketAddr,
        ) {
            self.accepted.push_back(stream);
        }
        fn handle_accept_refused(
            &mut self,
            _: &mut impl Io,
            _: Instant,
            _: ListenerId,
            peer: SocketAddr,
        ) {
            self.refused.push(peer);
        }
        fn handle_timeout(&mut self, _: &mut impl Io, _: Instant) {}
        fn handle_wake(&mut self, _: &mut impl Io, _: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn should_stop(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_stream_with_more_than_its_read_budget_is_carried_until_drained() {
        let mut host = Host {
            tcp: Tcp::new(&LoopConfig::default()),
        };
        let (ours, mut theirs) = pair();
        let id = adopt(&mut host, ours, Side::Accepted).unwrap();
        // More than one call's budget, less than loopback buffers hold (the write must not block).
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        theirs.write_all(&sent).unwrap();
        let mut driver = Sink::default();
        // A small buffer makes the budget run out long before the data does.
        let mut buf = [0u8; 1024];
        let now = Instant::now();
        stream_ready(&mut host, &mut driver, now, id, true, &mut buf);
        assert_eq!(driver.data.len(), READ_BUDGET * buf.len());
        assert!(host.tcp.has_carried());
        let deadline = now + Duration::from_secs(10);
        while driver.data.len() < sent.len() && Instant::now() < deadline {
            serve_carried(&mut host, &mut driver, now, &mut buf);
            assert!(host.tcp.carry.len() <= 1, "carried twice");
        }
        assert!(driver.data == sent, "bytes lost or reordered across turns");
        // Drained: the next serve finds the socket empty and stops carrying it.
        serve_carried(&mut host, &mut driver, now, &mut buf);
        assert!(!host.tcp.has_carried());
    }

    #[test]
    fn accept_errors_for_one_connection_do_not_pause_the_listener() {
        let aborted = std::io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert!(accept_may_go_on(&aborted));
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EINVAL,
        ] {
            let error = std::io::Error::from_raw_os_error(errno);
            assert!(!accept_may_go_on(&error), "{error}");
        }
    }

    /// A host holding at most 16 streams, listening, with 20 connections waiting to be
    /// accepted (the clients' ends, kept open).
    fn listening_with_waiting_clients() -> (Host, ListenerId, Vec<std::net::TcpStream>) {
        let config = LoopConfig {
            max_streams: 16,
            ..LoopConfig::default()
        };
        let mut host = Host {
            tcp: Tcp::new(&config),
        };
        let (listener, addr) = listen(&mut host, "127.0.0.1:0".parse().unwrap()).unwrap();
        let clients = (0..20)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        (host, listener, clients)
    }

    #[test]
    fn strangers_may_fill_all_but_the_share_kept_for_streams_the_core_opens() {
        let (mut host, listener, strangers) = listening_with_waiting_clients();
        let mut driver = Sink::default();
        // Every connection is queued in the kernel by now; one turn accepts what fits.
        listener_ready(&mut host, &mut driver, Instant::now(), listener);
        assert_eq!(host.tcp.accepted, 14, "16 less one eighth");
        assert_eq!(host.tcp.counters.over_limit, 6);
        // The driver hears of each one refused, with the client's address.
        let clients: Vec<SocketAddr> = strangers.iter().map(|c| c.local_addr().unwrap()).collect();
        assert_eq!(driver.refused.len(), 6);
        assert!(driver.refused.iter().all(|peer| clients.contains(peer)));
        // The core's own connects still find room, up to max_streams.
        let trunk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = trunk.local_addr().unwrap();
        let ours = [
            connect(&mut host, to).unwrap(),
            connect(&mut host, to).unwrap(),
        ];
        assert!(connect(&mut host, to).is_err(), "max_streams holds");
        // A closed accepted stream frees an accepted slot, not the core's share.
        let first = StreamId(0);
        assert!(host.tcp.open_mut(first).is_some_and(|c| c.accepted));
        shut(&mut host, first);
        assert_eq!(host.tcp.accepted, 13);
        assert!(
            ours.iter()
                .all(|&id| host.tcp.open_mut(id).is_some_and(|c| !c.accepted))
        );
        drop(strangers);
    }

    #[test]
    fn past_the_accepted_share_a_newcomer_gets_in_only_where_the_driver_makes_room() {
        let (mut host, listener, clients) = listening_with_waiting_clients();
        let mut driver = Sink {
            evicts: true,
            ..Sink::default()
        };
        listener_ready(&mut host, &mut driver, Instant::now(), listener);
        // 20 accepted in turn, the first 6 closed to make room: the share holds the last 14.
        assert_eq!(host.tcp.accepted, 14);
        assert_eq!(host.tcp.counters.over_limit, 0);
        assert!(driver.refused.is_empty(), "{:?}", driver.refused);
        assert_eq!(driver.accepted.len(), 14);
        assert_eq!(driver.accepted.front(), Some(&StreamId(6)));
        // The core's own share is untouched.
        let trunk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = trunk.local_addr().unwrap();
        assert!(connect(&mut host, to).is_ok() && connect(&mut host, to).is_ok());
        drop(clients);
    }
}
