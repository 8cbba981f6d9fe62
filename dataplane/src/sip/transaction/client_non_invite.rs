//! The non-INVITE client transaction (RFC 3261 §17.1.2), used for BYE and CANCEL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{ResponseAction, Timer, TimerTable, Timing};
use crate::sip::message::Message;
use crate::sip::transport::Transport;

/// States of RFC 3261 Figure 6.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum NonInviteClientState {
    /// Request sent; retransmitting on Timer E.
    Trying,
    /// A provisional response arrived; retransmitting every T2.
    Proceeding,
    /// A final response arrived; absorbing retransmissions until Timer K.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction. Over a reliable transport the request is sent once
/// (no Timer E) and Timer K is zero (RFC 3261 §17.1.2.2); Timer F runs alike.
#[derive(Clone, Debug)]
pub struct ClientNonInvite {
    state: NonInviteClientState,
    timers: TimerTable,
    timing: Timing,
    transport: Transport,
    destination: SocketAddr,
    request: Vec<u8>,
    interval: Duration,
    pending: bool,
}

impl ClientNonInvite {
    /// Starts in Trying with the request queued for `transport`; arms Timer F, and Timer E
    /// when the transport is unreliable.
    pub fn new(
        now: Instant,
        timing: Timing,
        transport: Transport,
        destination: SocketAddr,
        request: Vec<u8>,
    ) -> Self {
        let mut timers = TimerTable::default();
        if !transport.is_reliable() {
            timers.set(Timer::E, now + timing.t1);
        }
        timers.set(Timer::F, now + timing.timeout());
        Self {
            state: NonInviteClientState::Trying,
            timers,
            timing,
            transport,
            destination,
            request,
            interval: timing.t1,
            pending: true,
        }
    }

    /// Feeds a response that matched this transaction.
    pub fn handle_response(&mut self, now: Instant, response: &Message<'_>) -> ResponseAction {
        use NonInviteClientState::*;
        match (self.state, response.status()) {
            (Trying | Proceeding, Some(100..=199)) => {
                self.state = Proceeding;
                ResponseAction::Deliver
            }
            (Trying | Proceeding, Some(_)) => {
                self.state = Completed;
                self.timers.stop_all();
                let wait = if self.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    self.timing.t4
                };
                self.timers.set(Timer::K, now + wait);
                ResponseAction::Deliver
            }
            _ => ResponseAction::Absorb,
        }
    }

    /// Runs expired timers. Returns true when Timer F fired (RFC 3261 §17.1.2.2: timeout).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let mut timed_out = false;
        while let Some(timer) = self.timers.take_expired(now) {
            match (timer, self.state) {
                (Timer::E, NonInviteClientState::Trying) => {
                    self.pending = true;
                    self.interval = self.interval.saturating_mul(2).min(self.timing.t2);
                    self.timers.set(Timer::E, now + self.interval);
                }
                (Timer::E, NonInviteClientState::Proceeding) => {
                    self.pending = true;
                    self.timers.set(Timer::E, now + self.timing.t2);
                }
                (Timer::F, NonInviteClientState::Trying | NonInviteClientState::Proceeding) => {
                    timed_out = true;
                    self.terminate();
                }
                (Timer::K, _) => self.terminate(),
                _ => {}
            }
        }
        timed_out
    }

    /// Writes the request (or its retransmission) into `buf` when one is due.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if !std::mem::take(&mut self.pending) {
            return None;
        }
        buf.clear();
        buf.extend_from_slice(&self.request);
        Some(self.destination)
    }

    /// The next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// RFC 3261 §18.1.1: the request went over TCP only for its size, and no connection
    /// could be made: it goes again, over UDP, as if new (Timer E, and Timer F from now).
    /// False, and nothing changes, once anything was heard or when its top Via is not TCP.
    pub fn fall_back_to_udp(&mut self, now: Instant) -> bool {
        if self.state != NonInviteClientState::Trying
            || self.transport != Transport::Tcp
            || !super::top_via_to_udp(&mut self.request)
        {
            return false;
        }
        self.transport = Transport::Udp;
        self.interval = self.timing.t1;
        self.timers.stop_all();
        self.timers.set(Timer::E, now + self.timing.t1);
        self.timers.set(Timer::F, now + self.timing.timeout());
        self.pending = true;
        true
    }

    /// What the request travels on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The current state.
    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    fn terminate(&mut self) {
        self.state = NonInviteClientState::Terminated;
        self.timers.stop_all();
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_message;

    fn transaction(t0: Instant) -> ClientNonInvite {
        ClientNonInvite::new(
            t0,
            Timing::default(),
            Transport::Udp,
            "192.0.2.4:5060".parse().unwrap(),
            b"BYE".to_vec(),
        )
    }

    fn drain(tx: &mut ClientNonInvite) -> bool {
        tx.poll_transmit(&mut Vec::new()).is_some()
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f() {
        let t0 = Instant::now();
        let mut tx = transaction(t0);
        assert!(drain(&mut tx));
        let mut retransmits = Vec::new();
        while let Some(deadline) = tx.poll_timeout() {
            if tx.handle_timeout(deadline) {
                assert_eq!(deadline - t0, Duration::from_secs(32));
                break;
            }
            if drain(&mut tx) {
                retransmits.push((deadline - t0).as_millis());
            }
        }
        assert_eq!(&retransmits[..6], [500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(tx.state(), NonInviteClientState::Terminated);
    }

    #[test]
    fn proceeding_retransmits_every_t2_and_final_waits_timer_k() {
        let t0 = Instant::now();
        let mut tx = transaction(t0);
        drain(&mut tx);
        let trying = parse_message(b"SIP/2.0 100 Trying\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        assert_eq!(tx.handle_response(t0, &trying), ResponseAction::Deliver);
        tx.handle_timeout(t0 + Duration::from_millis(500));
        assert!(drain(&mut tx));
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(4500)));
        let ok = parse_message(b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(tx.handle_response(t1, &ok), ResponseAction::Deliver);
        assert_eq!(tx.handle_response(t1, &ok), ResponseAction::Absorb);
        assert_eq!(tx.poll_timeout(), Some(t1 + Duration::from_secs(5)));
        assert!(!tx.handle_timeout(t1 + Duration::from_secs(5)));
        assert_eq!(tx.state(), NonInviteClientState::Terminated);
    }

    #[test]
    fn over_tcp_no_timer_e_timer_f_still_and_timer_k_zero() {
        let t0 = Instant::now();
        let destination = "192.0.2.4:5060".parse().unwrap();
        let mut tx = ClientNonInvite::new(
            t0,
            Timing::default(),
            Transport::Tcp,
            destination,
            b"BYE".to_vec(),
        );
        assert!(drain(&mut tx));
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert!(tx.handle_timeout(t0 + Duration::from_secs(32)));
        assert!(!drain(&mut tx));

        let mut tx = ClientNonInvite::new(
            t0,
            Timing::default(),
            Transport::Tcp,
            destination,
            b"BYE".to_vec(),
        );
        drain(&mut tx);
        let ok = parse_message(b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        assert_eq!(tx.handle_response(t0, &ok), ResponseAction::Deliver);
        assert_eq!(tx.poll_timeout(), Some(t0), "Timer K = 0");
        tx.handle_timeout(t0);
        assert_eq!(tx.state(), NonInviteClientState::Terminated);
    }

    #[test]
    fn a_tcp_request_falls_back_to_udp_only_while_unanswered() {
        const BYE: &[u8] = b"BYE sip:a@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP 192.0.2.9\r\n\r\n";
        let t0 = Instant::now();
        let destination = "192.0.2.4:5060".parse().unwrap();
        let new = |request: &[u8]| {
            ClientNonInvite::new(
                t0,
                Timing::default(),
                Transport::Tcp,
                destination,
                request.to_vec(),
            )
        };
        let mut tx = new(BYE);
        drain(&mut tx);
        let t1 = t0 + Duration::from_secs(3);
        assert!(tx.fall_back_to_udp(t1));
        assert_eq!(tx.transport(), Transport::Udp);
        let mut sent = Vec::new();
        assert_eq!(tx.poll_transmit(&mut sent), Some(destination));
        let text = String::from_utf8(sent).unwrap();
        assert!(
            text.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"),
            "{text}"
        );
        assert!(
            text.contains("Via: SIP/2.0/TCP 192.0.2.9"),
            "only the top Via: {text}"
        );
        // Timer E from the fallback, and Timer F anew.
        assert_eq!(tx.poll_timeout(), Some(t1 + Duration::from_millis(500)));
        assert!(!tx.fall_back_to_udp(t1), "already on UDP");

        // Answered, or not TCP: no fallback.
        let mut tx = new(BYE);
        let trying = parse_message(b"SIP/2.0 100 Trying\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        tx.handle_response(t0, &trying);
        assert!(!tx.fall_back_to_udp(t1));
        let mut tx = new(b"BYE sip:a SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1\r\n\r\n");
        assert!(!tx.fall_back_to_udp(t1));
        assert_eq!(tx.transport(), Transport::Tcp);
    }
}
