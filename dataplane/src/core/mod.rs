//! The only I/O in the dataplane: one loop per core, pinned, on io_uring
//! (SINGLE_ISSUER + DEFER_TASKRUN, multishot receive with a provided-buffer ring), or on
//! epoll through mio where io_uring is refused. Everything protocol-shaped lives in a
//! [`Driver`], which the loop feeds datagrams, timeouts and wake-ups, and which answers
//! through [`Io`].

use std::net::SocketAddr;
use std::time::Instant;

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
    /// Queue one datagram. The loop sends queued datagrams in a batch at the end of the
    /// current turn; `data` is copied into a preallocated buffer, never allocated per packet.
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
    /// The deadline returned by [`Driver::poll_timeout`] passed (spurious calls are no-ops).
    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant);
    /// The core's [`WakeFd`] was signalled: drain the command queue.
    fn handle_wake(&mut self, io: &mut impl Io, now: Instant);
    /// The earliest deadline the driver wants a [`Driver::handle_timeout`] at.
    fn poll_timeout(&self) -> Option<Instant>;
    /// True once the loop should return.
    fn should_stop(&self) -> bool;
}
