//! Server transactions for requests we answer: non-INVITE (RFC 3261 §17.2.2) and INVITE
//! (§17.2.1). A final response to an INVITE, 2xx included, is retransmitted on Timer G
//! until the ACK arrives or Timer H fires; for a 2xx that is the UAS core's duty
//! (§13.3.1.4), with the same timings, so it lives here too.
//!
//! Over a reliable transport a non-2xx final is sent once (no Timer G), and Timers I and J
//! are zero (§17.2.1, §17.2.2). A 2xx is still retransmitted on Timer G until the ACK:
//! §13.3.1.4 makes that the UAS core's duty "independent of whatever transport protocols
//! are used to send the response", since a hop further on may be UDP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Timer, TimerTable, Timing};
use crate::sip::transport::Transport;

/// States of RFC 3261 Figures 7 and 8.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ServerState {
    /// Non-INVITE request received, no response yet.
    Trying,
    /// A provisional response was sent (INVITE starts here).
    Proceeding,
    /// A final response was sent; retransmitted on request retransmission (and Timer G).
    Completed,
    /// INVITE only: the ACK arrived; absorbing ACK retransmissions until Timer I.
    Confirmed,
    /// Done.
    Terminated,
}

/// A server transaction; its responses go back on the transport the request came on
/// (RFC 3261 §18.2.2).
#[derive(Clone, Debug)]
pub struct ServerTransaction {
    invite: bool,
    state: ServerState,
    timers: TimerTable,
    timing: Timing,
    transport: Transport,
    destination: SocketAddr,
    response: Vec<u8>,
    interval: Duration,
    pending: bool,
}

impl ServerTransaction {
    /// A transaction for a request that just arrived on `transport` from `source`
    /// (responses go back there: RFC 3581 symmetric response routing, and for a stream
    /// the same connection, RFC 3261 §18.2.2).
    pub fn new(timing: Timing, invite: bool, transport: Transport, source: SocketAddr) -> Self {
        Self {
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            timers: TimerTable::default(),
            timing,
            transport,
            destination: source,
            response: Vec::new(),
            interval: timing.t1,
            pending: false,
        }
    }

    /// The TU sends a response; `final_response` when its status is 200 or above.
    pub fn respond(&mut self, now: Instant, response: Vec<u8>, final_response: bool) {
        if matches!(
            self.state,
            ServerState::Confirmed | ServerState::Terminated | ServerState::Completed
        ) {
            return;
        }
        let success = response.starts_with(b"SIP/2.0 2");
        self.response = response;
        self.pending = true;
        if !final_response {
            self.state = ServerState::Proceeding;
            return;
        }
        self.state = ServerState::Completed;
        let reliable = self.transport.is_reliable();
        if self.invite {
            // RFC 3261 §13.3.1.4: a 2xx is retransmitted whatever the transport.
            if success || !reliable {
                self.timers.set(Timer::G, now + self.timing.t1);
            }
            self.timers.set(Timer::H, now + self.timing.timeout());
        } else {
            let wait = if reliable {
                Duration::ZERO
            } else {
                self.timing.timeout()
            };
            self.timers.set(Timer::J, now + wait);
        }
    }

    /// The request arrived again: re-send the last response, if any (§17.2.1, §17.2.2).
    pub fn handle_retransmission(&mut self) {
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed)
            && !self.response.is_empty()
        {
            self.pending = true;
        }
    }

    /// An ACK for this INVITE arrived: stop retransmitting, absorb ACKs until Timer I.
    pub fn handle_ack(&mut self, now: Instant) {
        if self.invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.timers.stop_all();
            let wait = if self.transport.is_reliable() {
                Duration::ZERO
            } else {
                self.timing.t4
            };
            self.timers.set(Timer::I, now + wait);
        }
    }

    /// Runs expired timers. Returns true when Timer H fired (no ACK came).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let mut timed_out = false;
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::G if self.state == ServerState::Completed => {
                    self.pending = true;
                    self.interval = self.interval.saturating_mul(2).min(self.timing.t2);
                    self.timers.set(Timer::G, now + self.interval);
                }
                Timer::H => {
                    timed_out = self.state == ServerState::Completed;
                    self.terminate();
                }
                Timer::I | Timer::J => self.terminate(),
                _ => {}
            }
        }
        timed_out
    }

    /// Writes the response (or its retransmission) into `buf` when one is due.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if !std::mem::take(&mut self.pending) {
            return None;
        }
        buf.clear();
        buf.extend_from_slice(&self.response);
        Some(self.destination)
    }

    /// The next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// What the responses travel on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.timers.stop_all();
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SocketAddr {
        "192.0.2.9:5070".parse().unwrap()
    }

    #[test]
    fn non_invite_replays_final_on_retransmission_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(Timing::default(), false, Transport::Udp, source());
        tx.handle_retransmission();
        assert_eq!(
            tx.poll_transmit(&mut Vec::new()),
            None,
            "nothing to replay in Trying"
        );
        tx.respond(t0, b"SIP/2.0 200 OK".to_vec(), true);
        let mut buf = Vec::new();
        assert_eq!(tx.poll_transmit(&mut buf), Some(source()));
        assert_eq!(buf, b"SIP/2.0 200 OK");
        assert_eq!(tx.poll_transmit(&mut buf), None);
        tx.handle_retransmission();
        assert_eq!(tx.poll_transmit(&mut buf), Some(source()));
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(tx.state(), ServerState::Terminated);
        tx.handle_retransmission();
        assert_eq!(tx.poll_transmit(&mut buf), None);
    }

    #[test]
    fn invite_final_retransmits_on_timer_g_until_ack() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(Timing::default(), true, Transport::Udp, source());
        tx.respond(t0, b"SIP/2.0 404 Not Found".to_vec(), true);
        assert!(tx.poll_transmit(&mut Vec::new()).is_some());
        let mut sends = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            now = tx.poll_timeout().unwrap();
            tx.handle_timeout(now);
            if tx.poll_transmit(&mut Vec::new()).is_some() {
                sends.push((now - t0).as_millis());
            }
        }
        assert_eq!(sends, [500, 1500, 3500, 7500, 11500]);
        tx.handle_ack(now);
        assert_eq!(tx.state(), ServerState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(now + Duration::from_secs(5)));
        assert!(!tx.handle_timeout(now + Duration::from_secs(5)));
        assert_eq!(tx.state(), ServerState::Terminated);
    }

    #[test]
    fn invite_without_ack_times_out_on_timer_h() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(Timing::default(), true, Transport::Udp, source());
        tx.respond(t0, b"SIP/2.0 200 OK".to_vec(), true);
        assert!(tx.handle_timeout(t0 + Duration::from_secs(32)));
        assert_eq!(tx.state(), ServerState::Terminated);
    }

    #[test]
    fn over_tcp_a_non_2xx_goes_once_a_2xx_is_retransmitted_and_i_j_are_zero() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(Timing::default(), true, Transport::Tcp, source());
        tx.respond(t0, b"SIP/2.0 486 Busy Here".to_vec(), true);
        assert!(tx.poll_transmit(&mut Vec::new()).is_some());
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "Timer H only"
        );
        tx.handle_ack(t0);
        assert_eq!(tx.poll_timeout(), Some(t0), "Timer I = 0");

        let mut tx = ServerTransaction::new(Timing::default(), true, Transport::Tcp, source());
        tx.respond(t0, b"SIP/2.0 200 OK".to_vec(), true);
        assert!(tx.poll_transmit(&mut Vec::new()).is_some());
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_millis(500)),
            "§13.3.1.4"
        );
        tx.handle_timeout(t0 + Duration::from_millis(500));
        assert!(tx.poll_transmit(&mut Vec::new()).is_some());

        let mut tx = ServerTransaction::new(Timing::default(), false, Transport::Tcp, source());
        tx.respond(t0, b"SIP/2.0 200 OK".to_vec(), true);
        assert_eq!(tx.poll_timeout(), Some(t0), "Timer J = 0");
        assert_eq!(tx.transport(), Transport::Tcp);
    }
}
