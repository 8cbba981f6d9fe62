//! The INVITE client transaction (RFC 3261 §17.1.1, with the Accepted state of RFC 6026 §7.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{ResponseAction, Timer, TimerTable, Timing};
use crate::sip::message::print::Writer;
use crate::sip::message::{HeaderName, Message};
use crate::sip::transport::Transport;

/// States of RFC 3261 Figure 5, plus Accepted (RFC 6026 §7.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum InviteClientState {
    /// INVITE sent, nothing heard; retransmitting on Timer A.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A non-2xx final arrived and was ACKed; absorbing its retransmissions until Timer D.
    Completed,
    /// A 2xx arrived; further 2xx go to the TU (which ACKs each) until Timer M.
    Accepted,
    /// Done.
    Terminated,
}

/// What the transaction needs to build the ACK for a non-2xx final (RFC 3261 §17.1.1.3):
/// the INVITE's Request-URI, top Via, From, Call-ID and CSeq number.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AckTemplate {
    /// Request-URI of the INVITE.
    pub request_uri: String,
    /// Top Via of the INVITE (same branch).
    pub via: String,
    /// From of the INVITE.
    pub from: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number of the INVITE.
    pub cseq: u32,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Pending {
    Invite,
    Ack,
}

/// An INVITE client transaction. Over a reliable transport the INVITE is sent once (no
/// Timer A) and Timer D is zero (RFC 3261 §17.1.1.2); Timer B runs alike.
#[derive(Clone, Debug)]
pub struct ClientInvite {
    state: InviteClientState,
    timers: TimerTable,
    timing: Timing,
    transport: Transport,
    destination: SocketAddr,
    invite: Vec<u8>,
    ack_template: AckTemplate,
    ack: Vec<u8>,
    interval: Duration,
    pending: Option<Pending>,
}

impl ClientInvite {
    /// Starts in Calling with the INVITE queued for sending on `transport`; arms Timer B,
    /// and Timer A when the transport is unreliable.
    pub fn new(
        now: Instant,
        timing: Timing,
        transport: Transport,
        destination: SocketAddr,
        invite: Vec<u8>,
        ack_template: AckTemplate,
    ) -> Self {
        let mut timers = TimerTable::default();
        if !transport.is_reliable() {
            timers.set(Timer::A, now + timing.t1);
        }
        timers.set(Timer::B, now + timing.timeout());
        Self {
            state: InviteClientState::Calling,
            timers,
            timing,
            transport,
            destination,
            invite,
            ack_template,
            ack: Vec::new(),
            interval: timing.t1,
            pending: Some(Pending::Invite),
        }
    }

    /// Feeds a response whose top Via branch and CSeq method matched this transaction.
    pub fn handle_response(&mut self, now: Instant, response: &Message<'_>) -> ResponseAction {
        use InviteClientState::*;
        let Some(status) = response.status() else {
            return ResponseAction::Absorb;
        };
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                ResponseAction::Deliver
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timers.stop_all();
                self.timers.set(Timer::M, now + self.timing.timeout());
                ResponseAction::Deliver
            }
            (Accepted, 200..=299) => ResponseAction::Deliver,
            (Calling | Proceeding, _) if status >= 300 => {
                self.state = Completed;
                self.timers.stop_all();
                // Timer D: 32 s for UDP, zero for reliable transports (§17.1.1.2); the ACK
                // queued below still goes out before the timer is run.
                let wait = if self.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32)
                };
                self.timers.set(Timer::D, now + wait);
                self.build_ack(response);
                self.pending = Some(Pending::Ack);
                ResponseAction::Deliver
            }
            (Completed, 300..) => {
                self.pending = Some(Pending::Ack);
                ResponseAction::Absorb
            }
            _ => ResponseAction::Absorb,
        }
    }

    /// Runs expired timers. Returns true when Timer B fired: the TU must treat the INVITE
    /// as timed out (RFC 3261 §17.1.1.2).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let mut timed_out = false;
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::A if self.state == InviteClientState::Calling => {
                    self.pending = Some(Pending::Invite);
                    self.interval = self.interval.saturating_mul(2);
                    self.timers.set(Timer::A, now + self.interval);
                }
                Timer::B if self.state == InviteClientState::Calling => {
                    timed_out = true;
                    self.terminate();
                }
                Timer::D | Timer::M => self.terminate(),
                _ => {}
            }
        }
        timed_out
    }

    /// Writes the next datagram (INVITE retransmission or ACK) into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let bytes = match self.pending.take()? {
            Pending::Invite => &self.invite,
            Pending::Ack => &self.ack,
        };
        buf.clear();
        buf.extend_from_slice(bytes);
        Some(self.destination)
    }

    /// The next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The current state.
    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// What the INVITE (and the ACK of a non-2xx) travel on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Where the INVITE goes.
    pub fn destination(&self) -> SocketAddr {
        self.destination
    }

    /// RFC 3261 §18.1.1: the INVITE went over TCP only for its size, and no connection could
    /// be made: it goes again, over UDP, as if new (Timer A, and Timer B from now). False,
    /// and nothing changes, once anything was heard or when its top Via is not TCP.
    pub fn fall_back_to_udp(&mut self, now: Instant) -> bool {
        if self.state != InviteClientState::Calling
            || self.transport != Transport::Tcp
            || !super::top_via_to_udp(&mut self.invite)
        {
            return false;
        }
        self.ack_template.via = self
            .ack_template
            .via
            .replacen("SIP/2.0/TCP", "SIP/2.0/UDP", 1);
        self.transport = Transport::Udp;
        self.interval = self.timing.t1;
        self.timers.stop_all();
        self.timers.set(Timer::A, now + self.timing.t1);
        self.timers.set(Timer::B, now + self.timing.timeout());
        self.pending = Some(Pending::Invite);
        true
    }

    /// Whether a CANCEL may be sent: only in Proceeding (RFC 3261 §9.1).
    pub fn is_cancellable(&self) -> bool {
        self.state == InviteClientState::Proceeding
    }

    /// Abandons the transaction (RFC 3261 §9.1: no final response 64*T1 after CANCEL).
    pub fn terminate(&mut self) {
        self.state = InviteClientState::Terminated;
        self.timers.stop_all();
        self.pending = None;
    }

    /// RFC 3261 §17.1.1.3: same Request-URI, Call-ID, From, top Via and CSeq number as the
    /// INVITE; To from the response.
    fn build_ack(&mut self, response: &Message<'_>) {
        let template = &self.ack_template;
        let to = response.header(HeaderName::To).unwrap_or("");
        self.ack.clear();
        let mut writer = Writer::request(&mut self.ack, "ACK", &template.request_uri);
        writer
            .header("Via", &template.via)
            .header("Max-Forwards", "70")
            .header("From", &template.from)
            .header("To", to)
            .header("Call-ID", &template.call_id)
            .header_fmt("CSeq", format_args!("{} ACK", template.cseq));
        writer.finish(None, b"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Method, parse_message};

    fn transaction(t0: Instant) -> ClientInvite {
        let template = AckTemplate {
            request_uri: "sip:bob@192.0.2.4".into(),
            via: "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport".into(),
            from: "<sip:alice@192.0.2.1>;tag=a1".into(),
            call_id: "c1@192.0.2.1".into(),
            cseq: 1,
        };
        ClientInvite::new(
            t0,
            Timing::default(),
            Transport::Udp,
            "192.0.2.4:5060".parse().unwrap(),
            b"INVITE".to_vec(),
            template,
        )
    }

    fn response(status: u16) -> Vec<u8> {
        format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\nFrom: <sip:alice@192.0.2.1>;tag=a1\r\nTo: <sip:bob@192.0.2.4>;tag=b1\r\nCall-ID: c1@192.0.2.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn sent(tx: &mut ClientInvite) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        tx.poll_transmit(&mut buf).map(|_| buf)
    }

    #[test]
    fn timer_a_doubles_until_timer_b() {
        let t0 = Instant::now();
        let mut tx = transaction(t0);
        assert_eq!(sent(&mut tx).as_deref(), Some(&b"INVITE"[..]));
        let mut retransmits = Vec::new();
        while let Some(deadline) = tx.poll_timeout() {
            if tx.handle_timeout(deadline) {
                assert_eq!(deadline - t0, Duration::from_secs(32), "Timer B = 64*T1");
                break;
            }
            if sent(&mut tx).is_some() {
                retransmits.push((deadline - t0).as_millis());
            }
        }
        assert_eq!(retransmits, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(tx.state(), InviteClientState::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn over_tcp_the_invite_goes_once_timer_b_still_fires_and_timer_d_is_zero() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(
            t0,
            Timing::default(),
            Transport::Tcp,
            "192.0.2.4:5060".parse().unwrap(),
            b"INVITE".to_vec(),
            transaction(t0).ack_template,
        );
        assert_eq!(tx.transport(), Transport::Tcp);
        assert!(sent(&mut tx).is_some());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert!(tx.handle_timeout(t0 + Duration::from_secs(32)));
        assert_eq!(sent(&mut tx), None, "never retransmitted");

        let mut tx = ClientInvite::new(
            t0,
            Timing::default(),
            Transport::Tcp,
            "192.0.2.4:5060".parse().unwrap(),
            b"INVITE".to_vec(),
            transaction(t0).ack_template,
        );
        sent(&mut tx);
        let busy = response(486);
        tx.handle_response(t0, &parse_message(&busy).unwrap());
        assert!(sent(&mut tx).is_some(), "the ACK goes");
        assert_eq!(tx.poll_timeout(), Some(t0), "Timer D = 0");
        tx.handle_timeout(t0);
        assert_eq!(tx.state(), InviteClientState::Terminated);
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b() {
        let t0 = Instant::now();
        let mut tx = transaction(t0);
        sent(&mut tx);
        let ringing = response(180);
        assert_eq!(
            tx.handle_response(t0, &parse_message(&ringing).unwrap()),
            ResponseAction::Deliver
        );
        assert!(tx.is_cancellable());
        assert_eq!(tx.poll_timeout(), None);
        assert!(!tx.handle_timeout(t0 + Duration::from_secs(100)));
        assert_eq!(sent(&mut tx), None);
    }

    #[test]
    fn non_2xx_final_is_acked_by_the_transaction_and_retransmissions_absorbed() {
        let t0 = Instant::now();
        let mut tx = transaction(t0);
        sent(&mut tx);
        let busy = response(486);
        assert_eq!(
            tx.handle_response(t0, &parse_message(&busy).unwrap()),
            ResponseAction::Deliver
        );
        let ack = sent(&mut tx).unwrap();
        let ack = parse_message(&ack).unwrap();
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.request_uri().unwrap().as_str(), "sip:bob@192.0.2.4");
        assert_eq!(ack.via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(ack.to().unwrap().tag(), Some("b1"));
        assert_eq!(ack.cseq().unwrap().number, 1);
        assert_eq!(ack.cseq().unwrap().method, Method::Ack);
        // Retransmitted 486: absorbed, ACK re-sent.
        let second = Duration::from_secs(1);
        assert_eq!(
            tx.handle_response(t0 + second, &parse_message(&busy).unwrap()),
            ResponseAction::Absorb
        );
        assert!(sent(&mut tx).is_some());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(tx.state(), InviteClientState::Terminated);
    }

    #[test]
    fn accepted_passes_every_2xx_to_the_tu_until_timer_m() {
        let t0 = Instant::now();
        let mut tx = transaction(t0);
        sent(&mut tx);
        let ok = response(200);
        let ok = parse_message(&ok).unwrap();
        assert_eq!(tx.handle_response(t0, &ok), ResponseAction::Deliver);
        assert_eq!(tx.state(), InviteClientState::Accepted);
        assert_eq!(sent(&mut tx), None, "the TU sends the ACK for a 2xx");
        assert_eq!(tx.handle_response(t0, &ok), ResponseAction::Deliver);
        let late = parse_message(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert_eq!(tx.handle_response(t0, &late), ResponseAction::Absorb);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(tx.state(), InviteClientState::Terminated);
    }
}
