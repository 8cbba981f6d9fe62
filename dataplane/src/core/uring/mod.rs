//! The io_uring backend.
//!
//! - The ring is created on the loop's thread with `IORING_SETUP_SINGLE_ISSUER |
//!   IORING_SETUP_DEFER_TASKRUN`: without them, task-work interrupts collapse throughput with
//!   thousands of multishot sockets (performance.md §2a-2).
//! - Each socket has one multishot `RecvMsg` that picks buffers from one registered
//!   provided-buffer ring; a buffer goes back to the ring as soon as the driver's
//!   `handle_datagram` returns. A receive the kernel ends (no `IORING_CQE_F_MORE`, e.g. after
//!   `ENOBUFS`) is re-armed at the end of the batch, once buffers are back.
//! - Sends are copied into a slab of slots (msghdr + iovec + address + payload), allocated
//!   once, and queued as `SendMsg`; the turn's single `io_uring_enter` submits them.
//! - The [`WakeFd`] is watched with a multishot `PollAdd`.
//! - Closing a socket cancels its receive; the fd is closed when the cancellation and the
//!   receive's last completion have both arrived, so the kernel never sees a reused fd.
//! - TCP streams and listeners run on readiness, not on the machinery above: one multishot
//!   `PollAdd` per socket, then non-blocking `read`/`write`/`accept` syscalls into one
//!   per-core buffer (signalling only: a few messages per call). Closing cancels the poll
//!   like a receive ([`tcp`]; the shared logic is in `core/stream.rs`).
#![allow(unsafe_code)]

mod buffers;
mod setup;
mod tcp;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::types::{Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::sockaddr::{self, SOCKADDR_IN6_LEN};
use super::socket::open_udp;
use super::stream::{self, READ_CHUNK, Tcp};
use super::table::SocketTable;
use super::{
    Driver, Io, ListenerId, LoopConfig, LoopError, SocketId, StreamId, WakeFd, clock_now,
    drain_icmp_errors, earliest, timeout_until,
};
use buffers::{BufRing, SendSlab};
use setup::{build_ring, check_ring};

pub(crate) use setup::probe;

/// Submission queue entries.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: room for a burst on many sockets between two turns.
const CQ_ENTRIES: u32 = 16 * 1024;
/// Receive buffers in the provided-buffer ring (a power of two, at most 32,768).
const RECV_BUFFERS: u16 = 1024;
/// The buffer group id of the receive buffers.
const BUFFER_GROUP: u16 = 0;
/// Datagrams that may be queued for sending at once.
const SEND_SLOTS: usize = 512;
/// `sizeof(struct io_uring_recvmsg_out)`, which precedes the name in each receive buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// Consecutive receive errors after which a socket stops being re-armed.
const MAX_RECV_ERRORS: u32 = 16;
/// How long stopping waits for in-flight operations to finish.
const QUIESCE_LIMIT: Duration = Duration::from_secs(2);

/// What a completion belongs to, packed into the SQE's `user_data`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Op {
    /// The multishot receive of a socket.
    Recv(SocketId),
    /// A send from slab slot `n`.
    Send(u32),
    /// The multishot poll on the wake fd.
    Wake,
    /// The cancellation of a socket's receive.
    Cancel(SocketId),
    /// The multishot poll of a TCP stream.
    StreamPoll(StreamId),
    /// The cancellation of a TCP stream's poll.
    StreamCancel(StreamId),
    /// The multishot poll of a TCP listener.
    ListenPoll(ListenerId),
    /// The cancellation of a TCP listener's poll (when the loop stops).
    ListenCancel(ListenerId),
}

impl Op {
    const RECV: u64 = 1;
    const SEND: u64 = 2;
    const WAKE: u64 = 3;
    const CANCEL: u64 = 4;
    const STREAM_POLL: u64 = 5;
    const STREAM_CANCEL: u64 = 6;
    const LISTEN_POLL: u64 = 7;
    const LISTEN_CANCEL: u64 = 8;

    fn encode(self) -> u64 {
        let (kind, value) = match self {
            Self::Recv(id) => (Self::RECV, id.0),
            Self::Send(slot) => (Self::SEND, slot),
            Self::Wake => (Self::WAKE, 0),
            Self::Cancel(id) => (Self::CANCEL, id.0),
            Self::StreamPoll(id) => (Self::STREAM_POLL, id.0),
            Self::StreamCancel(id) => (Self::STREAM_CANCEL, id.0),
            Self::ListenPoll(id) => (Self::LISTEN_POLL, id.0),
            Self::ListenCancel(id) => (Self::LISTEN_CANCEL, id.0),
        };
        kind << 32 | u64::from(value)
    }

    fn decode(user_data: u64) -> Option<Self> {
        let value = user_data as u32; // The low half, by construction in `encode`.
        match user_data >> 32 {
            Self::RECV => Some(Self::Recv(SocketId(value))),
            Self::SEND => Some(Self::Send(value)),
            Self::WAKE => Some(Self::Wake),
            Self::CANCEL => Some(Self::Cancel(SocketId(value))),
            Self::STREAM_POLL => Some(Self::StreamPoll(StreamId(value))),
            Self::STREAM_CANCEL => Some(Self::StreamCancel(StreamId(value))),
            Self::LISTEN_POLL => Some(Self::ListenPoll(ListenerId(value))),
            Self::LISTEN_CANCEL => Some(Self::ListenCancel(ListenerId(value))),
            _ => None,
        }
    }
}

/// A bound socket and the state of its receive.
#[derive(Debug)]
struct UringSocket {
    socket: UdpSocket,
    fd: RawFd,
    family_v6: bool,
    /// A multishot receive is submitted and has not ended.
    recv_armed: bool,
    /// `Io::close` was called; the fd closes once nothing refers to it.
    closing: bool,
    /// The cancellation of the receive is submitted and has not completed.
    cancel_pending: bool,
    /// Listed in `UringIo::attention`.
    queued: bool,
    /// Consecutive receive errors.
    errors: u32,
}

/// The ring and everything its operations point at. Field order matters: the ring is
/// dropped first, so the kernel lets go of the memory below before it is freed.
struct UringIo {
    ring: IoUring,
    sockets: SocketTable<UringSocket>,
    slab: SendSlab,
    /// The msghdr all multishot receives share: only its name and control lengths matter.
    recv_header: Box<libc::msghdr>,
    /// Completions taken from the queue while waiting for a send slot, handled next.
    deferred: Vec<cqueue::Entry>,
    /// Completions being handled this round (kept to reuse its allocation).
    batch: Vec<cqueue::Entry>,
    /// Sockets whose receive must be re-armed or cancelled when the SQ has room.
    attention: Vec<SocketId>,
    wake_fd: RawFd,
    wake_armed: bool,
    /// Operations submitted (or queued) whose final completion has not arrived.
    in_flight: usize,
    /// Set once the driver asked to stop: no more datagrams are handed to it.
    stopping: bool,
    buffer_bytes: usize,
    counters: Counters,
    /// TCP streams and listeners, each with the state of its poll.
    tcp: Tcp<tcp::PollState, tcp::PollState>,
    /// Streams whose poll must be re-armed or cancelled when the SQ has room.
    stream_attention: Vec<StreamId>,
}

/// Events worth a line in the log when the loop stops, never one per packet.
#[derive(Debug, Default)]
struct Counters {
    recv_enobufs: u64,
    recv_dropped: u64,
    send_errors: u64,
    send_oversized: u64,
    send_sync_fallback: u64,
    /// Stopping timed out with operations in flight (buffers were leaked).
    unsettled: bool,
}

impl Io for UringIo {
    fn bind(&mut self, addr: SocketAddr) -> std::io::Result<(SocketId, SocketAddr)> {
        let socket = open_udp(addr, self.buffer_bytes)?;
        let local = socket.local_addr()?;
        let entry = UringSocket {
            fd: socket.as_raw_fd(),
            socket,
            family_v6: local.is_ipv6(),
            recv_armed: false,
            closing: false,
            cancel_pending: false,
            queued: false,
            errors: 0,
        };
        let id = self
            .sockets
            .insert(entry)
            .ok_or_else(|| std::io::Error::other("this core already has 2^20 sockets"))?;
        let wanted = self.sockets.len();
        self.attention
            .reserve(wanted.saturating_sub(self.attention.len()));
        if !self.arm_recv(id) {
            self.queue_attention(id);
        }
        Ok((id, local))
    }

    fn close(&mut self, socket: SocketId) {
        let Some(entry) = self.sockets.get_mut(socket) else {
            return;
        };
        if entry.closing {
            return;
        }
        entry.closing = true;
        if !entry.recv_armed {
            // Submit what is queued first: a queued send names this fd, which the next
            // bind could reuse once it is closed.
            let _ = self.ring.submit();
            self.sockets.remove(socket);
        } else if !self.cancel_recv(socket) {
            self.queue_attention(socket);
        }
    }

    fn send(&mut self, socket: SocketId, to: SocketAddr, data: &[u8]) {
        let Some(entry) = self.sockets.get(socket) else {
            return;
        };
        if entry.closing {
            return;
        }
        if data.len() > self.slab.slot_len {
            self.counters.send_oversized += 1;
            return;
        }
        let (fd, family_v6) = (entry.fd, entry.family_v6);
        let queued = self.reserve_send_slot().and_then(|slot| {
            let Some(header) = self.slab.fill(slot, to, family_v6, data) else {
                self.slab.free.push(slot);
                return None;
            };
            let sqe = opcode::SendMsg::new(Fd(fd), header)
                .build()
                .user_data(Op::Send(slot).encode());
            if self.push(&sqe) {
                Some(())
            } else {
                self.slab.free.push(slot);
                None
            }
        });
        if queued.is_none() {
            // No slot and no room: send now rather than drop or allocate.
            self.counters.send_sync_fallback += 1;
            if let Some(entry) = self.sockets.get(socket)
                && entry.socket.send_to(data, to).is_err()
            {
                self.counters.send_errors += 1;
            }
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

impl UringIo {
    /// Queue an SQE, submitting the queue first if it is full. False if there is no room.
    fn push(&mut self, sqe: &squeue::Entry) -> bool {
        for _ in 0..2 {
            // SAFETY: every pointer in our SQEs (msghdrs, buffers) stays valid until the
            // operation's final completion: the slab, header and buffer ring outlive the
            // ring, and a send slot is only reused after its completion.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                self.in_flight += 1;
                return true;
            }
            if self.ring.submit().is_err() {
                return false;
            }
        }
        false
    }

    /// Submit the multishot receive of `id`. False if the SQ had no room.
    fn arm_recv(&mut self, id: SocketId) -> bool {
        let Some(entry) = self.sockets.get(id) else {
            return true;
        };
        let sqe =
            opcode::RecvMsgMulti::new(Fd(entry.fd), &raw const *self.recv_header, BUFFER_GROUP)
                .build()
                .user_data(Op::Recv(id).encode());
        if !self.push(&sqe) {
            return false;
        }
        if let Some(entry) = self.sockets.get_mut(id) {
            entry.recv_armed = true;
        }
        true
    }

    /// Submit the cancellation of `id`'s receive. False if the SQ had no room.
    fn cancel_recv(&mut self, id: SocketId) -> bool {
        let sqe = opcode::AsyncCancel::new(Op::Recv(id).encode())
            .build()
            .user_data(Op::Cancel(id).encode());
        if !self.push(&sqe) {
            return false;
        }
        if let Some(entry) = self.sockets.get_mut(id) {
            entry.cancel_pending = true;
        }
        true
    }

    /// Submit the multishot poll on the wake fd.
    fn arm_wake(&mut self) {
        let sqe = opcode::PollAdd::new(Fd(self.wake_fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(Op::Wake.encode());
        self.wake_armed = self.push(&sqe);
    }

    fn queue_attention(&mut self, id: SocketId) {
        if let Some(entry) = self.sockets.get_mut(id)
            && !entry.queued
        {
            entry.queued = true;
            self.attention.push(id);
        }
    }

    /// Re-arm ended receives and submit pending cancellations; keep what did not fit.
    fn tend_sockets(&mut self) {
        let mut index = 0;
        while let Some(&id) = self.attention.get(index) {
            let Some(entry) = self.sockets.get(id) else {
                self.attention.swap_remove(index);
                continue;
            };
            let done = if entry.closing {
                entry.cancel_pending || !entry.recv_armed || self.cancel_recv(id)
            } else if entry.recv_armed || entry.errors >= MAX_RECV_ERRORS || self.stopping {
                true
            } else {
                self.arm_recv(id)
            };
            if done {
                if let Some(entry) = self.sockets.get_mut(id) {
                    entry.queued = false;
                }
                self.attention.swap_remove(index);
            } else {
                index += 1;
            }
        }
        if !self.wake_armed && !self.stopping {
            self.arm_wake();
        }
    }

    /// Close `id`'s fd once its receive has ended and its cancellation has completed.
    fn release_if_idle(&mut self, id: SocketId) {
        if let Some(entry) = self.sockets.get(id)
            && entry.closing
            && !entry.recv_armed
            && !entry.cancel_pending
        {
            self.sockets.remove(id);
        }
    }

    /// A free send slot, reaping send completions if none is free. Completions of other
    /// operations met on the way are kept in `deferred`, never dropped.
    fn reserve_send_slot(&mut self) -> Option<u32> {
        if let Some(slot) = self.slab.free.pop() {
            return Some(slot);
        }
        for _ in 0..4 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if is_transient(&error) => {}
                Err(_) => return None,
            }
            let mut completion = self.ring.completion();
            while self.deferred.len() < self.deferred.capacity() {
                let Some(cqe) = completion.next() else { break };
                if let Some(Op::Send(slot)) = Op::decode(cqe.user_data()) {
                    // Inline `complete_send`: `completion` borrows the ring.
                    if cqe.result() < 0 {
                        self.counters.send_errors += 1;
                    }
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.slab.free.push(slot);
                } else {
                    self.deferred.push(cqe);
                }
            }
            drop(completion);
            if let Some(slot) = self.slab.free.pop() {
                return Some(slot);
            }
        }
        None
    }

    /// Wait for completions: up to `timeout` (`None` = until one arrives), not at all if
    /// some are already waiting. Submits everything queued.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), std::io::Error> {
        let ready = !self.deferred.is_empty() || !self.ring.completion().is_empty();
        let timeout = if ready { Some(Duration::ZERO) } else { timeout };
        let result = match timeout {
            Some(timeout) => {
                let timespec = Timespec::from(timeout);
                let args = SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_transient(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Handle the waiting completions. Returns true if the wake fd fired.
    fn reap<D: Driver>(
        &mut self,
        bufs: &mut BufRing,
        stream_buf: &mut [u8],
        wake: &WakeFd,
        driver: &mut D,
        now: Instant,
    ) -> bool {
        let mut woken = false;
        // Bounded: a flood cannot starve timers; the rest waits for the next turn.
        for _ in 0..4 {
            let mut work = std::mem::take(&mut self.batch);
            std::mem::swap(&mut work, &mut self.deferred);
            if work.is_empty() {
                let room = work.capacity();
                work.extend(self.ring.completion().take(room));
            }
            if work.is_empty() {
                self.batch = work;
                break;
            }
            for cqe in work.drain(..) {
                woken |= self.complete(&cqe, bufs, stream_buf, wake, driver, now);
            }
            self.batch = work;
        }
        self.tend_sockets();
        self.tend_tcp();
        woken
    }

    /// Handle one completion. Returns true if it was the wake fd.
    fn complete<D: Driver>(
        &mut self,
        cqe: &cqueue::Entry,
        bufs: &mut BufRing,
        stream_buf: &mut [u8],
        wake: &WakeFd,
        driver: &mut D,
        now: Instant,
    ) -> bool {
        let flags = cqe.flags();
        let more = cqueue::more(flags);
        if !more {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        match Op::decode(cqe.user_data()) {
            Some(Op::Recv(id)) => self.complete_recv(id, cqe.result(), flags, bufs, driver, now),
            Some(Op::Send(slot)) => {
                if cqe.result() < 0 {
                    self.counters.send_errors += 1;
                }
                self.slab.free.push(slot);
            }
            Some(Op::Wake) => {
                if !more {
                    self.wake_armed = false;
                }
                if cqe.result() >= 0 {
                    // Drain before the driver looks at its queue, so a racing notify is
                    // seen on the next turn rather than lost.
                    wake.drain();
                    return true;
                }
            }
            Some(Op::Cancel(id)) => {
                if let Some(entry) = self.sockets.get_mut(id) {
                    entry.cancel_pending = false;
                }
                self.release_if_idle(id);
            }
            Some(Op::StreamPoll(id)) => {
                self.complete_stream_poll(id, cqe.result(), more, stream_buf, driver, now);
            }
            Some(Op::StreamCancel(id)) => self.complete_stream_cancel(id),
            Some(Op::ListenPoll(id)) => {
                self.complete_listen_poll(id, cqe.result(), more, driver, now)
            }
            Some(Op::ListenCancel(_)) | None => {}
        }
        false
    }

    fn complete_recv<D: Driver>(
        &mut self,
        id: SocketId,
        result: i32,
        flags: u32,
        bufs: &mut BufRing,
        driver: &mut D,
        now: Instant,
    ) {
        if let Some(bid) = cqueue::buffer_select(flags) {
            if let Ok(len) = usize::try_from(result) {
                self.deliver(id, bid, len, bufs, driver, now);
            }
            bufs.recycle(bid);
        }
        let icmp = result < 0
            && result != -libc::ENOBUFS
            && result != -libc::ECANCELED
            && self.read_errors(id, driver, now) > 0;
        let Some(entry) = self.sockets.get_mut(id) else {
            return;
        };
        match result {
            0.. => entry.errors = 0,
            _ if result == -libc::ENOBUFS => self.counters.recv_enobufs += 1,
            _ if result == -libc::ECANCELED => {}
            // An ICMP error for a datagram we sent (IP_RECVERR): the socket is fine.
            _ if icmp => entry.errors = 0,
            _ => {
                entry.errors += 1;
                if entry.errors == MAX_RECV_ERRORS {
                    tracing::warn!(
                        error = %std::io::Error::from_raw_os_error(result.saturating_neg()),
                        "stopped receiving on a socket after {MAX_RECV_ERRORS} consecutive errors"
                    );
                }
            }
        }
        if !cqueue::more(flags) {
            entry.recv_armed = false;
            if entry.closing {
                self.release_if_idle(id);
            } else {
                self.queue_attention(id);
            }
        }
    }

    /// Hand the ICMP errors queued on `id` to the driver; returns how many were read.
    fn read_errors<D: Driver>(&mut self, id: SocketId, driver: &mut D, now: Instant) -> usize {
        if self.stopping {
            return 0;
        }
        let Some(fd) = self
            .sockets
            .get(id)
            .filter(|entry| !entry.closing)
            .map(|entry| entry.fd)
        else {
            return 0;
        };
        let mut scratch = [0u8; 512];
        drain_icmp_errors(self, driver, now, id, fd, &mut scratch)
    }

    /// Parse a received buffer and hand the datagram to the driver.
    fn deliver<D: Driver>(
        &mut self,
        id: SocketId,
        bid: u16,
        len: usize,
        bufs: &BufRing,
        driver: &mut D,
        now: Instant,
    ) {
        if self.stopping || self.sockets.get(id).is_none_or(|entry| entry.closing) {
            return;
        }
        let Some(buffer) = bufs.buffer(bid, len) else {
            self.counters.recv_dropped += 1;
            return;
        };
        let Ok(message) = RecvMsgOut::parse(buffer, &self.recv_header) else {
            self.counters.recv_dropped += 1;
            return;
        };
        if message.is_payload_truncated() || message.is_name_data_truncated() {
            self.counters.recv_dropped += 1;
            return;
        }
        let Some(from) = sockaddr::decode(message.name_data()) else {
            self.counters.recv_dropped += 1;
            return;
        };
        driver.handle_datagram(self, now, id, from, message.payload_data());
    }

    /// Stop receiving, let queued sends finish, and wait (bounded) until the kernel holds
    /// no pointer into our memory. Returns false if it still might.
    fn quiesce<D: Driver>(
        &mut self,
        bufs: &mut BufRing,
        stream_buf: &mut [u8],
        wake: &WakeFd,
        driver: &mut D,
    ) -> bool {
        self.stopping = true;
        let ids: Vec<SocketId> = self.sockets.ids().collect();
        for id in ids {
            self.close(id);
        }
        self.stop_tcp();
        if self.wake_armed {
            let sqe = opcode::AsyncCancel::new(Op::Wake.encode())
                .build()
                .user_data(Op::Cancel(SocketId(u32::MAX)).encode());
            let _ = self.push(&sqe);
        }
        let started = clock_now();
        while self.in_flight > 0 {
            let elapsed = clock_now().saturating_duration_since(started);
            if elapsed >= QUIESCE_LIMIT {
                return false;
            }
            if self.wait(Some(QUIESCE_LIMIT - elapsed)).is_err() {
                return false;
            }
            // Cancellations that did not fit in the SQ are retried by `tend_sockets`.
            self.reap(bufs, stream_buf, wake, driver, clock_now());
        }
        true
    }
}

/// Errors from `io_uring_enter` that only mean "look again": timed out, interrupted,
/// completion queue overflowing (reap, then enter again), or out of resources for now.
fn is_transient(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
    )
}

/// A ring set up and ready for a driver.
pub(crate) struct UringLoop {
    // Field order: `io` (holding the ring) is dropped before `bufs`.
    io: UringIo,
    bufs: BufRing,
    /// Where TCP reads land (the kernel never holds it: reads are plain syscalls).
    stream_buf: Box<[u8]>,
}

impl UringLoop {
    /// Create the ring and its buffers on the calling thread. Fails with a reason if
    /// io_uring cannot be used, before anything is handed to a driver.
    pub(crate) fn new(config: &LoopConfig, wake: &WakeFd) -> Result<Self, String> {
        Self::with_recv_buffers(config, wake, RECV_BUFFERS)
    }

    /// [`UringLoop::new`] with `recv_buffers` (a power of two) receive buffers.
    fn with_recv_buffers(
        config: &LoopConfig,
        wake: &WakeFd,
        recv_buffers: u16,
    ) -> Result<Self, String> {
        let ring = build_ring(SQ_ENTRIES, CQ_ENTRIES)?;
        check_ring(&ring)?;
        let buf_len = RECVMSG_OUT_LEN + SOCKADDR_IN6_LEN + config.max_datagram;
        let bufs = BufRing::new(recv_buffers, buf_len)
            .map_err(|error| format!("allocating receive buffers failed: {error}"))?;
        bufs.register(&ring).map_err(|error| {
            format!("registering a provided-buffer ring failed (Linux 5.19 needed): {error}")
        })?;
        let slab = SendSlab::new(SEND_SLOTS, config.max_datagram)
            .map_err(|error| format!("allocating send buffers failed: {error}"))?;
        // SAFETY: msghdr is a plain C struct; all zeroes is a valid (empty) value.
        let mut recv_header: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_header.msg_namelen = SOCKADDR_IN6_LEN as libc::socklen_t;
        let cq_len = CQ_ENTRIES as usize;
        let io = UringIo {
            ring,
            sockets: SocketTable::new(),
            slab,
            recv_header,
            deferred: Vec::with_capacity(cq_len),
            batch: Vec::with_capacity(cq_len),
            attention: Vec::new(),
            wake_fd: wake.as_raw_fd(),
            wake_armed: false,
            in_flight: 0,
            stopping: false,
            buffer_bytes: config.socket_buffer_bytes,
            counters: Counters::default(),
            tcp: Tcp::new(config),
            stream_attention: Vec::new(),
        };
        Ok(Self {
            io,
            bufs,
            stream_buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// Run `driver` until it asks to stop.
    pub(crate) fn run<D: Driver>(self, wake: &WakeFd, driver: &mut D) -> Result<(), LoopError> {
        self.run_counted(wake, driver).map(drop)
    }

    /// [`UringLoop::run`], returning the loop's counters.
    fn run_counted<D: Driver>(
        mut self,
        wake: &WakeFd,
        driver: &mut D,
    ) -> Result<Counters, LoopError> {
        let result = self.turns(wake, driver);
        let Self {
            mut io,
            mut bufs,
            mut stream_buf,
        } = self;
        let quiet = io.quiesce(&mut bufs, &mut stream_buf, wake, driver);
        io.counters.unsettled = !quiet;
        if !quiet {
            // The kernel may still write our buffers or read our msghdrs: leak them rather
            // than free memory it might touch. Only reached if the kernel misbehaves.
            tracing::warn!(
                in_flight = io.in_flight,
                "io_uring did not settle on stop; leaking its buffers"
            );
            bufs.entries.leak = true;
            bufs.memory.leak = true;
            io.slab.data.leak = true;
            std::mem::forget(std::mem::take(&mut io.slab.slots));
            std::mem::forget(std::mem::replace(
                &mut io.recv_header,
                Box::new(
                    // SAFETY: msghdr is a plain C struct; all zeroes is a valid (empty) value.
                    unsafe { std::mem::zeroed() },
                ),
            ));
        }
        let counters = &io.counters;
        tracing::debug!(
            recv_enobufs = counters.recv_enobufs,
            recv_dropped = counters.recv_dropped,
            send_errors = counters.send_errors,
            send_oversized = counters.send_oversized,
            send_sync_fallback = counters.send_sync_fallback,
            streams_over_limit = io.tcp.counters.over_limit,
            accept_pauses = io.tcp.counters.accept_pauses,
            "io_uring loop stopped"
        );
        let counters = std::mem::take(&mut io.counters);
        drop(io);
        drop(bufs);
        result.map(|()| counters)
    }

    fn turns<D: Driver>(&mut self, wake: &WakeFd, driver: &mut D) -> Result<(), LoopError> {
        let Self {
            io,
            bufs,
            stream_buf,
        } = self;
        io.arm_wake();
        driver
            .start(io, clock_now())
            .map_err(LoopError::DriverStart)?;
        while !driver.should_stop() {
            let deadline = driver.poll_timeout();
            let timeout = if io.tcp.has_carried() {
                Some(Duration::ZERO)
            } else {
                earliest(deadline, io.tcp.next_retry())
                    .map(|deadline| timeout_until(deadline, clock_now()))
            };
            // The turn's one `io_uring_enter`: submits queued sends and re-arms, then waits.
            io.wait(timeout).map_err(|source| LoopError::Wait {
                backend: "io_uring",
                source,
            })?;
            let now = clock_now();
            let woke = now;
            let woken = io.reap(bufs, stream_buf, wake, driver, now);
            stream::serve_carried(io, driver, now, stream_buf);
            stream::resume_listeners(io, driver, now);
            stream::report_closed(io, driver, now);
            let now = clock_now();
            if deadline.is_some_and(|deadline| deadline <= now) {
                driver.handle_timeout(io, now);
            }
            if woken {
                driver.handle_wake(io, now);
            }
            stream::report_closed(io, driver, now);
            // Sends queued this turn are submitted by the next `wait` (or by `quiesce`).
            driver.turn_finished(clock_now().saturating_duration_since(woke));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_round_trips_through_user_data() {
        for op in [
            Op::Recv(SocketId(0)),
            Op::Recv(SocketId(u32::MAX)),
            Op::Send(511),
            Op::Wake,
            Op::Cancel(SocketId(0x00ab_cdef)),
            Op::StreamPoll(StreamId(u32::MAX)),
            Op::StreamCancel(StreamId(7)),
            Op::ListenPoll(ListenerId(0)),
            Op::ListenCancel(ListenerId(3)),
        ] {
            assert_eq!(Op::decode(op.encode()), Some(op));
        }
        assert_eq!(Op::decode(0), None);
        assert_eq!(Op::decode(u64::MAX), None);
    }

    /// Sends `count` datagrams from one socket to another in `start`, then stops once all
    /// have arrived, or gives up after 30 s.
    struct SelfBurst {
        count: usize,
        received: usize,
        in_order: bool,
        give_up: Option<Instant>,
        gave_up: bool,
    }

    impl Driver for SelfBurst {
        fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()> {
            self.give_up = Some(now + Duration::from_secs(30));
            let (sender, _) = io.bind("127.0.0.1:0".parse().unwrap())?;
            let (_, target) = io.bind("127.0.0.1:0".parse().unwrap())?;
            for seq in 0..self.count as u32 {
                io.send(sender, target, &seq.to_be_bytes());
            }
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
            self.in_order &= data == (self.received as u32).to_be_bytes();
            self.received += 1;
        }
        fn handle_timeout(&mut self, _io: &mut impl Io, now: Instant) {
            self.gave_up |= self.give_up.is_some_and(|give_up| now >= give_up);
        }
        fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            self.give_up
        }
        fn should_stop(&self) -> bool {
            self.gave_up || self.received == self.count
        }
    }

    #[test]
    fn receives_are_rearmed_after_the_buffer_ring_runs_dry() {
        let wake = WakeFd::new().unwrap();
        let config = LoopConfig {
            max_datagram: 64,
            ..LoopConfig::default()
        };
        let ring = UringLoop::with_recv_buffers(&config, &wake, 4).unwrap();
        // More sends than the slab holds: some wait for a slot, none is lost.
        let mut driver = SelfBurst {
            count: SEND_SLOTS * 2 + 7,
            received: 0,
            in_order: true,
            give_up: None,
            gave_up: false,
        };
        let counters = ring.run_counted(&wake, &mut driver).unwrap();
        assert_eq!(driver.received, driver.count);
        assert!(driver.in_order);
        assert!(
            counters.recv_enobufs > 0,
            "4 buffers never ran dry: {counters:?}"
        );
        assert_eq!(counters.recv_dropped, 0);
    }
}
