//! TCP on the io_uring backend: one multishot `PollAdd` per stream and listener, re-armed
//! when the kernel ends it, cancelled on close. What a ready stream or listener does is
//! shared with epoll (`core/stream.rs`).
//!
//! Multishot polls are edge-triggered: the shared code reads until `EAGAIN` (or carries the
//! stream to the next turn), and a re-armed poll reports what is already pending.
//! As with UDP sockets, a closed stream's fd stays open until its poll's last completion
//! and the cancellation's have both arrived, so the kernel never sees a reused fd.

use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::opcode;
use io_uring::types::Fd;

use super::super::stream::{self, TcpHost};
use super::super::{Driver, ListenerId, StreamClosed, StreamId};
use super::{MAX_RECV_ERRORS, Op, UringIo};

/// What a stream's poll waits for (errors and hang-ups are always reported): data or EOF
/// to read, room to write, a connect completing.
const STREAM_EVENTS: u32 = (libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP) as u32;
/// What a listener's poll waits for: connections to accept.
const LISTEN_EVENTS: u32 = libc::POLLIN as u32;
/// Ready bits that call for a read: data, EOF, or an error to collect.
const READABLE: u32 = (libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;

/// The state of one socket's multishot poll.
#[derive(Debug, Default)]
pub(super) struct PollState {
    /// Submitted (or queued) and not ended.
    armed: bool,
    /// Its cancellation is submitted and has not completed.
    cancel_pending: bool,
    /// Listed in `UringIo::stream_attention`.
    queued: bool,
    /// Consecutive poll errors.
    errors: u32,
}

impl TcpHost for UringIo {
    type StreamExtra = PollState;
    type ListenerExtra = PollState;

    fn tcp(&mut self) -> &mut stream::Tcp<PollState, PollState> {
        &mut self.tcp
    }

    fn stopping(&self) -> bool {
        self.stopping
    }

    fn watch_stream(&mut self, id: StreamId) -> std::io::Result<()> {
        let wanted = self.tcp.streams.len();
        self.stream_attention
            .reserve(wanted.saturating_sub(self.stream_attention.len()));
        if !self.arm_stream(id) {
            self.queue_stream(id);
        }
        Ok(())
    }

    fn unwatch_stream(&mut self, id: StreamId) {
        let Some(conn) = self.tcp.streams.get_mut(id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        if !conn.extra.armed {
            // No operation names the fd: close it now.
            self.tcp.streams.remove(id);
        } else if !self.cancel_stream(id) {
            self.queue_stream(id);
        }
    }

    fn watch_listener(&mut self, id: ListenerId) -> std::io::Result<()> {
        // If the SQ is full, `tend_tcp` arms it.
        self.arm_listener(id);
        Ok(())
    }
}

impl UringIo {
    /// Submit the multishot poll of stream `id`. False if the SQ had no room.
    fn arm_stream(&mut self, id: StreamId) -> bool {
        let Some(conn) = self.tcp.streams.get(id) else {
            return true;
        };
        let sqe = opcode::PollAdd::new(Fd(conn.socket.as_raw_fd()), STREAM_EVENTS)
            .multi(true)
            .build()
            .user_data(Op::StreamPoll(id).encode());
        if !self.push(&sqe) {
            return false;
        }
        if let Some(conn) = self.tcp.streams.get_mut(id) {
            conn.extra.armed = true;
        }
        true
    }

    /// Submit the cancellation of stream `id`'s poll. False if the SQ had no room.
    fn cancel_stream(&mut self, id: StreamId) -> bool {
        let sqe = opcode::AsyncCancel::new(Op::StreamPoll(id).encode())
            .build()
            .user_data(Op::StreamCancel(id).encode());
        if !self.push(&sqe) {
            return false;
        }
        if let Some(conn) = self.tcp.streams.get_mut(id) {
            conn.extra.cancel_pending = true;
        }
        true
    }

    /// Submit the multishot poll of listener `id` unless it is armed.
    fn arm_listener(&mut self, id: ListenerId) {
        let Some(listener) = self.tcp.listeners.get(id.0 as usize) else {
            return;
        };
        if listener.extra.armed {
            return;
        }
        let sqe = opcode::PollAdd::new(Fd(listener.socket.as_raw_fd()), LISTEN_EVENTS)
            .multi(true)
            .build()
            .user_data(Op::ListenPoll(id).encode());
        if self.push(&sqe)
            && let Some(listener) = self.tcp.listeners.get_mut(id.0 as usize)
        {
            listener.extra.armed = true;
        }
    }

    fn queue_stream(&mut self, id: StreamId) {
        if let Some(conn) = self.tcp.streams.get_mut(id)
            && !conn.extra.queued
        {
            conn.extra.queued = true;
            self.stream_attention.push(id);
        }
    }

    /// Close stream `id`'s fd once its poll has ended and its cancellation completed.
    fn release_stream_if_idle(&mut self, id: StreamId) {
        if let Some(conn) = self.tcp.streams.get(id)
            && conn.closing
            && !conn.extra.armed
            && !conn.extra.cancel_pending
        {
            self.tcp.streams.remove(id);
        }
    }

    /// A completion of stream `id`'s poll: `result` is the ready mask, or an error.
    pub(super) fn complete_stream_poll<D: Driver>(
        &mut self,
        id: StreamId,
        result: i32,
        more: bool,
        buf: &mut [u8],
        driver: &mut D,
        now: Instant,
    ) {
        if result >= 0 {
            if let Some(conn) = self.tcp.open_mut(id) {
                conn.extra.errors = 0;
            }
            let readable = result.cast_unsigned() & READABLE != 0;
            stream::stream_ready(self, driver, now, id, readable, buf);
        } else if result != -libc::ECANCELED
            && let Some(conn) = self.tcp.open_mut(id)
        {
            conn.extra.errors += 1;
            if conn.extra.errors >= MAX_RECV_ERRORS {
                let error = std::io::Error::from_raw_os_error(result.saturating_neg());
                stream::fail(self, driver, now, id, StreamClosed::Error(error.kind()));
            }
        }
        if more {
            return;
        }
        let Some(conn) = self.tcp.streams.get_mut(id) else {
            return;
        };
        conn.extra.armed = false;
        if conn.closing {
            self.release_stream_if_idle(id);
        } else {
            self.queue_stream(id);
        }
    }

    /// The cancellation of stream `id`'s poll completed (found or not).
    pub(super) fn complete_stream_cancel(&mut self, id: StreamId) {
        if let Some(conn) = self.tcp.streams.get_mut(id) {
            conn.extra.cancel_pending = false;
        }
        self.release_stream_if_idle(id);
    }

    /// A completion of listener `id`'s poll.
    pub(super) fn complete_listen_poll<D: Driver>(
        &mut self,
        id: ListenerId,
        result: i32,
        more: bool,
        driver: &mut D,
        now: Instant,
    ) {
        let Some(listener) = self.tcp.listeners.get_mut(id.0 as usize) else {
            return;
        };
        if !more {
            listener.extra.armed = false;
        }
        if result >= 0 {
            listener.extra.errors = 0;
            stream::listener_ready(self, driver, now, id);
        } else if result != -libc::ECANCELED {
            listener.extra.errors += 1;
            if listener.extra.errors == MAX_RECV_ERRORS {
                tracing::warn!(
                    error = %std::io::Error::from_raw_os_error(result.saturating_neg()),
                    "stopped accepting on a TCP listener after {MAX_RECV_ERRORS} consecutive errors"
                );
            }
        }
    }

    /// Re-arm ended polls and submit pending cancellations; keep what did not fit.
    pub(super) fn tend_tcp(&mut self) {
        let mut index = 0;
        while let Some(&id) = self.stream_attention.get(index) {
            let Some(conn) = self.tcp.streams.get(id) else {
                self.stream_attention.swap_remove(index);
                continue;
            };
            let done = if conn.closing {
                conn.extra.cancel_pending || !conn.extra.armed || self.cancel_stream(id)
            } else if conn.extra.armed || self.stopping {
                true
            } else {
                self.arm_stream(id)
            };
            if done {
                if let Some(conn) = self.tcp.streams.get_mut(id) {
                    conn.extra.queued = false;
                }
                self.stream_attention.swap_remove(index);
                // A closing stream whose poll ended while it waited here.
                self.release_stream_if_idle(id);
            } else {
                index += 1;
            }
        }
        if self.stopping {
            return;
        }
        for index in 0..self.tcp.listeners.len() {
            let rearm = self.tcp.listeners.get(index).is_some_and(|listener| {
                !listener.extra.armed && listener.extra.errors < MAX_RECV_ERRORS
            });
            if rearm {
                self.arm_listener(ListenerId(u32::try_from(index).unwrap_or(u32::MAX)));
            }
        }
    }

    /// When stopping: close every stream and cancel the listeners' polls.
    pub(super) fn stop_tcp(&mut self) {
        let ids: Vec<StreamId> = self.tcp.streams.ids().collect();
        for id in ids {
            self.unwatch_stream(id);
        }
        for index in 0..self.tcp.listeners.len() {
            let armed = self
                .tcp
                .listeners
                .get(index)
                .is_some_and(|listener| listener.extra.armed);
            if armed {
                let id = ListenerId(u32::try_from(index).unwrap_or(u32::MAX));
                let sqe = opcode::AsyncCancel::new(Op::ListenPoll(id).encode())
                    .build()
                    .user_data(Op::ListenCancel(id).encode());
                let _ = self.push(&sqe);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::super::super::{Io, LoopConfig, SocketId, WakeFd};
    use super::super::UringLoop;
    use super::*;

    /// Connects to its own listener, sends a greeting from the accepted end, and stops
    /// once it arrived, leaving the listener and both streams open; gives up after 30 s.
    #[derive(Default)]
    struct Loopback {
        received: Vec<u8>,
        give_up: Option<Instant>,
        gave_up: bool,
    }

    impl Driver for Loopback {
        fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()> {
            self.give_up = Some(now + Duration::from_secs(30));
            let (_, local) = io.listen("127.0.0.1:0".parse().unwrap())?;
            io.connect(local)?;
            Ok(())
        }
        fn handle_datagram(
            &mut self,
            _: &mut impl Io,
            _: Instant,
            _: SocketId,
            _: SocketAddr,
            _: &[u8],
        ) {
        }
        fn handle_stream_accepted(
            &mut self,
            io: &mut impl Io,
            _now: Instant,
            _listener: ListenerId,
            stream: StreamId,
            _peer: SocketAddr,
        ) {
            assert!(io.send_stream(stream, b"hi"));
        }
        fn handle_stream_data(
            &mut self,
            _io: &mut impl Io,
            _now: Instant,
            _stream: StreamId,
            data: &[u8],
        ) {
            self.received.extend_from_slice(data);
        }
        fn handle_timeout(&mut self, _io: &mut impl Io, now: Instant) {
            self.gave_up |= self.give_up.is_some_and(|give_up| now >= give_up);
        }
        fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            self.give_up
        }
        fn should_stop(&self) -> bool {
            self.gave_up || self.received == b"hi"
        }
    }

    #[test]
    fn stopping_with_streams_and_a_listener_open_settles_every_poll() {
        let wake = WakeFd::new().unwrap();
        let ring = UringLoop::new(&LoopConfig::default(), &wake).unwrap();
        let mut driver = Loopback::default();
        let counters = ring.run_counted(&wake, &mut driver).unwrap();
        assert_eq!(driver.received, b"hi");
        assert!(!counters.unsettled, "polls still in flight after stopping");
    }
}
