//! One simulated phone answering one call, sans-IO: SIP requests and responses, RTP
//! datagrams and the time go in; SIP and RTP datagrams, a deadline and, at the end, a
//! [`CallRecord`] come out. Built on the dataplane's server and client transactions,
//! dialog, SDP and RTP modules.
//!
//! Behaviours: answer after ringing (optionally as an answering machine), busy (486 at
//! once), reject (603 after ringing) and no answer (ring until CANCEL, or 480 after the
//! no-answer timeout). An answered phone hangs up after its talk time (BYE) or waits for
//! the caller's BYE, up to a cap.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outdial_dataplane::sdp::{self, Negotiated};
use outdial_dataplane::sip::dialog::{Dialog, LocalParty};
use outdial_dataplane::sip::message::print::reason_phrase;
use outdial_dataplane::sip::message::{Message, Method, Recovered};
use outdial_dataplane::sip::transaction::{
    ClientNonInvite, NonInviteClientState, ResponseAction, ServerState, ServerTransaction, Timing,
};
use outdial_dataplane::sip::transport::Transport;
use serde::Serialize;

use super::media::{MediaParams, PhoneMedia, Sound};
use crate::sounds::Sounds;
use outdial_dataplane::rtp::rx_stats::RxSummary;

/// What a phone does with the call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Behaviour {
    /// Rings, then answers.
    Answer,
    /// Rings, answers, plays a greeting and a beep.
    Machine,
    /// 486 Busy Here at once.
    Busy,
    /// Rings, then 603 Decline.
    Reject,
    /// Rings until cancelled, or 480 after the no-answer timeout.
    NoAnswer,
}

/// Everything a phone is told when the INVITE arrives.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What it does.
    pub behaviour: Behaviour,
    /// From the INVITE to the answer (or to 603).
    pub ring: Duration,
    /// From the answer to our BYE; `None` waits for the caller's.
    pub talk: Option<Duration>,
    /// An answering machine's greeting length.
    pub greeting: Duration,
    /// Keys to press, as offsets after the answer.
    pub keys: Vec<(Duration, char)>,
}

/// Settings every phone of a population shares.
#[derive(Clone, Debug)]
pub struct PhoneSettings {
    /// Our SIP address (Contact, Via of our BYE).
    pub local_sip: SocketAddr,
    /// RFC 3261 timers.
    pub timing: Timing,
    /// What answered phones send.
    pub sound: Sound,
    /// The encoded sounds.
    pub sounds: Arc<Sounds>,
    /// How long each key is held.
    pub key_duration: Duration,
    /// Press the keys in answer to the caller's first prompt: after its audio has been
    /// silent this long (offsets count from then), instead of from the answer.
    pub keys_after_prompt: Option<Duration>,
    /// Longest answered call before we hang up ourselves.
    pub max_call: Duration,
    /// How long a no-answer phone rings before giving up with 480.
    pub no_answer_timeout: Duration,
    /// User-Agent / Server header.
    pub user_agent: String,
}

/// Random values a phone needs (tags, branches, RTP identity), drawn by its population.
#[derive(Clone, Copy, Debug)]
pub struct PhoneIds {
    /// Our To tag.
    pub tag: u64,
    /// Branch of our BYE.
    pub branch: u64,
    /// SSRC.
    pub ssrc: u32,
    /// First RTP sequence number.
    pub seq: u16,
    /// First RTP timestamp.
    pub timestamp: u32,
}

/// How a call ended, for the record.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Answered by a person.
    Answered,
    /// Answered by the answering machine.
    Machine,
    /// 486 sent.
    Busy,
    /// 603 sent.
    Rejected,
    /// Rang out: 480 sent.
    NoAnswer,
    /// The caller cancelled while it rang.
    Canceled,
    /// Unusable offer (488) or no ACK for our answer.
    Failed,
}

impl Outcome {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Machine => "machine",
            Self::Busy => "busy",
            Self::Rejected => "rejected",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
            Self::Failed => "failed",
        }
    }
}

/// One call as a report line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallRecord {
    /// SIP Call-ID.
    pub call_id: String,
    /// User part of the Request-URI.
    pub user: String,
    /// How it ended.
    pub outcome: Outcome,
    /// `caller` (BYE or CANCEL), `callee` (our BYE), `final` (we refused), `timeout`.
    pub ended_by: &'static str,
    /// The final status we sent to the INVITE.
    pub status: u16,
    /// INVITE to our final response, in milliseconds.
    pub ring_ms: u64,
    /// Answer to end of call, in milliseconds.
    pub talk_ms: u64,
    /// Keys we pressed.
    pub keys_sent: String,
    /// Answer to the first key we pressed, in milliseconds.
    pub first_key_ms: Option<u64>,
    /// RFC 4733 keys we received.
    pub keys_received: String,
    /// RTP packets we sent.
    pub tx_packets: u64,
    /// Answer to the first RTP packet from the caller, in milliseconds.
    pub first_packet_ms: Option<u64>,
    /// What we received.
    pub rx: RxSummary,
    /// Datagrams on our RTP port we could not use (foreign source, not RTP).
    pub rx_dropped: u64,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    Ringing,
    Talking,
    Ended,
}

/// Stateless answers queued (to BYE, CANCEL, OPTIONS): a hostile peer cannot grow this.
const MAX_QUEUED: usize = 16;

/// One call.
#[derive(Debug)]
pub struct Phone {
    settings: Arc<PhoneSettings>,
    plan: Plan,
    ids: PhoneIds,
    call_id: String,
    user: String,
    tag: String,
    invite_cseq: u32,
    invite: ServerTransaction,
    /// The final response sent when ringing ends (200 with SDP, 603 or 480).
    final_response: Vec<u8>,
    final_status: u16,
    /// 487, for a CANCEL while ringing.
    terminated: Vec<u8>,
    dialog: Dialog,
    bye: Option<ClientNonInvite>,
    bye_destination: SocketAddr,
    queued: VecDeque<(SocketAddr, Vec<u8>)>,
    state: State,
    invited_at: Instant,
    answered_at: Option<Instant>,
    ring_deadline: Option<Instant>,
    hangup_deadline: Option<Instant>,
    offer: Option<Negotiated>,
    media: Option<PhoneMedia>,
    record: Option<CallRecord>,
    recorded: bool,
}

impl Phone {
    /// A phone for a new INVITE (checked with [`Message::check_request`]) from `source`.
    /// `rtp` is the phone's bound RTP address (needed for behaviours that answer).
    pub fn new(
        now: Instant,
        settings: Arc<PhoneSettings>,
        plan: Plan,
        ids: PhoneIds,
        invite: &Message<'_>,
        source: SocketAddr,
        rtp: Option<SocketAddr>,
    ) -> Self {
        let tag = format!("{:016x}", ids.tag);
        let call_id = invite.call_id().unwrap_or_default().to_owned();
        let user = invite
            .request_uri()
            .and_then(|uri| uri.sip())
            .and_then(|sip| sip.user)
            .unwrap_or_default()
            .to_owned();
        let from = invite.from();
        let remote_tag = from.and_then(|f| f.tag()).unwrap_or_default();
        let remote_uri = from.map(|f| f.uri.as_str()).unwrap_or_default();
        let local_uri = invite.to().map(|t| t.uri.as_str()).unwrap_or_default();
        let invite_cseq = invite.cseq().map_or(0, |c| c.number);
        let target = invite.contact().map_or(remote_uri, |c| c.uri.as_str());
        let routes = invite
            .record_route()
            .iter()
            .map(|r| r.uri.as_str().to_owned())
            .collect();
        let dialog = Dialog::new(
            &LocalParty {
                call_id: &call_id,
                local_tag: &tag,
                local_uri,
                remote_uri,
                invite_cseq: 0,
            },
            remote_tag,
            target,
            routes,
        );
        let bye_destination = dialog.next_hop().unwrap_or(source);
        let recovered = Recovered::from_message(invite);
        let respond = |status: u16, contact: bool, body: &[u8]| {
            let mut buf = Vec::new();
            if let Some(recovered) = &recovered {
                let mut writer = recovered.response(&mut buf, status, reason(status), &tag);
                if contact {
                    writer.header_fmt(
                        "Contact",
                        format_args!("<sip:{user}@{}>", settings.local_sip),
                    );
                }
                writer.header("Server", &settings.user_agent);
                writer.finish(Some("application/sdp"), body);
            }
            buf
        };
        let mut invite_tx = ServerTransaction::new(settings.timing, true, Transport::Udp, source);
        let mut phone_state = State::Ringing;
        let mut final_response = Vec::new();
        let mut ring_deadline = None;
        let mut offer = None;
        let mut record_outcome = None;
        let final_status;
        match plan.behaviour {
            Behaviour::Busy => {
                final_status = 486;
                invite_tx.respond(now, respond(486, false, b""), true);
                phone_state = State::Ended;
                record_outcome = Some((Outcome::Busy, "final"));
            }
            Behaviour::Answer | Behaviour::Machine => match (sdp::read_offer(invite.body()), rtp) {
                (Ok(negotiated), Some(rtp)) => {
                    final_status = 200;
                    let answer = sdp::build_answer(ids.tag, rtp, &negotiated);
                    final_response = respond(200, true, &answer);
                    offer = Some(negotiated);
                    invite_tx.respond(now, respond(180, true, b""), false);
                    ring_deadline = Some(now + plan.ring);
                }
                _ => {
                    final_status = 488;
                    invite_tx.respond(now, respond(488, false, b""), true);
                    phone_state = State::Ended;
                    record_outcome = Some((Outcome::Failed, "final"));
                }
            },
            Behaviour::Reject | Behaviour::NoAnswer => {
                let (status, after) = if plan.behaviour == Behaviour::Reject {
                    (603, plan.ring)
                } else {
                    (480, settings.no_answer_timeout)
                };
                final_status = status;
                final_response = respond(status, false, b"");
                invite_tx.respond(now, respond(180, true, b""), false);
                ring_deadline = Some(now + after);
            }
        }
        let terminated = if phone_state == State::Ringing {
            respond(487, false, b"")
        } else {
            Vec::new()
        };
        let mut phone = Self {
            settings,
            plan,
            ids,
            call_id,
            user,
            tag,
            invite_cseq,
            invite: invite_tx,
            final_response,
            final_status,
            terminated,
            dialog,
            bye: None,
            bye_destination,
            queued: VecDeque::new(),
            state: phone_state,
            invited_at: now,
            answered_at: None,
            ring_deadline,
            hangup_deadline: None,
            offer,
            media: None,
            record: None,
            recorded: false,
        };
        if let Some((outcome, by)) = record_outcome {
            phone.end(now, outcome, by);
        }
        phone
    }

    /// The SIP Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// A SIP message for this call (its Call-ID matched) from `from`.
    pub fn handle_sip(&mut self, now: Instant, from: SocketAddr, message: &Message<'_>) {
        if message.status().is_some() {
            let is_bye = message.cseq().is_some_and(|c| c.method == Method::Bye);
            if let (true, Some(bye)) = (is_bye, self.bye.as_mut()) {
                let _ = bye.handle_response(now, message) == ResponseAction::Deliver;
            }
            return;
        }
        let cseq = message.cseq().map_or(0, |c| c.number);
        match message.method() {
            Some(Method::Invite) if cseq == self.invite_cseq => {
                self.invite.handle_retransmission();
            }
            Some(Method::Ack) if cseq == self.invite_cseq => self.invite.handle_ack(now),
            Some(Method::Ack) => {}
            Some(Method::Cancel) => {
                self.answer(from, message, 200);
                if self.state == State::Ringing {
                    self.invite
                        .respond(now, std::mem::take(&mut self.terminated), true);
                    self.final_status = 487;
                    self.end(now, Outcome::Canceled, "caller");
                }
            }
            Some(Method::Bye) => {
                if !self.dialog.matches(message) {
                    self.answer(from, message, 481);
                    return;
                }
                self.answer(from, message, 200);
                if self.state == State::Talking {
                    self.end(now, self.answered_outcome(), "caller");
                }
            }
            Some(Method::Options) => self.answer(from, message, 200),
            // A re-INVITE (hold, refresh) or anything else in the dialog: not simulated.
            Some(Method::Invite) => self.answer(from, message, 488),
            Some(_) => self.answer(from, message, 405),
            None => {}
        }
    }

    /// One datagram on the phone's RTP socket.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if let Some(media) = self.media.as_mut() {
            media.handle_datagram(now, from, data);
        }
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let no_ack = self.invite.handle_timeout(now);
        if no_ack && self.final_status == 200 && self.state == State::Talking {
            self.end(now, Outcome::Failed, "timeout");
        }
        if let Some(bye) = self.bye.as_mut() {
            bye.handle_timeout(now);
        }
        if self.ring_deadline.is_some_and(|d| d <= now) {
            self.ring_deadline = None;
            self.ring_out(now);
        }
        if self.hangup_deadline.is_some_and(|d| d <= now) {
            self.hangup_deadline = None;
            self.hang_up(now);
        }
        if let Some(media) = self.media.as_mut() {
            media.handle_timeout(now);
        }
    }

    /// The next SIP datagram to send. Answers to in-call requests go first (the 200 to a
    /// CANCEL before the 487).
    pub fn poll_sip(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((to, bytes)) = self.queued.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some(to);
        }
        if let Some(to) = self.invite.poll_transmit(buf) {
            return Some(to);
        }
        self.bye.as_mut().and_then(|bye| bye.poll_transmit(buf))
    }

    /// The next RTP datagram to send into `buf` (at least [`super::media::MAX_RTP`] octets).
    pub fn poll_rtp(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if self.state != State::Talking {
            return None;
        }
        self.media.as_mut()?.poll_transmit(buf)
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = if self.state == State::Talking {
            self.media.as_ref().and_then(PhoneMedia::poll_timeout)
        } else {
            None
        };
        [
            self.invite.poll_timeout(),
            self.bye.as_ref().and_then(ClientNonInvite::poll_timeout),
            self.ring_deadline,
            self.hangup_deadline,
            media,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True once the call is over (its record is ready); the phone may still answer
    /// retransmissions until [`Phone::is_finished`].
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The record, once, after the call ended.
    pub fn take_record(&mut self) -> Option<CallRecord> {
        self.record.take()
    }

    /// True when nothing is left to do: the call ended and its transactions are done.
    pub fn is_finished(&self) -> bool {
        self.state == State::Ended
            && self.queued.is_empty()
            && self.record.is_none()
            && matches!(
                self.invite.state(),
                ServerState::Terminated | ServerState::Trying
            )
            && self
                .bye
                .as_ref()
                .is_none_or(|bye| bye.state() == NonInviteClientState::Terminated)
    }

    fn answered_outcome(&self) -> Outcome {
        if self.plan.behaviour == Behaviour::Machine {
            Outcome::Machine
        } else {
            Outcome::Answered
        }
    }

    /// Ringing is over: answer (200), reject (603) or give up (480).
    fn ring_out(&mut self, now: Instant) {
        if self.state != State::Ringing {
            return;
        }
        let response = std::mem::take(&mut self.final_response);
        self.invite.respond(now, response, true);
        self.terminated = Vec::new();
        match self.plan.behaviour {
            Behaviour::Answer | Behaviour::Machine => self.answer_call(now),
            Behaviour::Reject => self.end(now, Outcome::Rejected, "final"),
            _ => self.end(now, Outcome::NoAnswer, "final"),
        }
    }

    fn answer_call(&mut self, now: Instant) {
        let Some(offer) = self.offer else {
            return;
        };
        self.state = State::Talking;
        self.answered_at = Some(now);
        let talk = self.plan.talk.unwrap_or(self.settings.max_call);
        self.hangup_deadline = Some(now + talk.min(self.settings.max_call));
        let sound = if self.plan.behaviour == Behaviour::Machine {
            let slots = self.plan.greeting.as_millis() / 20;
            Sound::Machine {
                greeting_slots: u64::try_from(slots).unwrap_or(u64::MAX),
            }
        } else {
            self.settings.sound
        };
        self.media = Some(PhoneMedia::new(
            now,
            MediaParams {
                remote: offer.remote_rtp,
                codec: offer.codec,
                event_payload_type: offer.dtmf_payload_type,
                ssrc: self.ids.ssrc,
                initial_seq: self.ids.seq,
                initial_timestamp: self.ids.timestamp,
            },
            sound,
            Arc::clone(&self.settings.sounds),
            &self.plan.keys,
            self.settings.key_duration,
            self.settings.keys_after_prompt,
        ));
    }

    /// Our talk time is over: BYE (RFC 3261 §15.1.1).
    fn hang_up(&mut self, now: Instant) {
        if self.state != State::Talking {
            return;
        }
        let mut request = Vec::new();
        let branch = format!("z9hG4bK{:016x}", self.ids.branch);
        self.dialog.write_request(
            &mut request,
            "BYE",
            self.settings.local_sip,
            &branch,
            &self.settings.user_agent,
        );
        self.bye = Some(ClientNonInvite::new(
            now,
            self.settings.timing,
            Transport::Udp,
            self.bye_destination,
            request,
        ));
        self.end(now, self.answered_outcome(), "callee");
    }

    /// A stateless answer to an in-call request (never retransmitted: the request is).
    fn answer(&mut self, to: SocketAddr, request: &Message<'_>, status: u16) {
        if self.queued.len() >= MAX_QUEUED {
            return;
        }
        let Some(recovered) = Recovered::from_message(request) else {
            return;
        };
        let mut buf = Vec::new();
        let mut writer = recovered.response(&mut buf, status, reason(status), &self.tag);
        if status == 405 {
            writer.header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
        }
        writer.header("Server", &self.settings.user_agent);
        writer.finish(None, b"");
        self.queued.push_back((to, buf));
    }

    fn end(&mut self, now: Instant, outcome: Outcome, ended_by: &'static str) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        self.state = State::Ended;
        self.ring_deadline = None;
        self.hangup_deadline = None;
        let ms = |d: Duration| d.as_millis() as u64;
        let answered_at = self.answered_at;
        let media = self.media.as_ref();
        let first_packet_ms = media
            .and_then(|m| m.rx().first_packet_at())
            .zip(answered_at)
            .map(|(first, answered)| ms(first.saturating_duration_since(answered)));
        self.record = Some(CallRecord {
            call_id: self.call_id.clone(),
            user: self.user.clone(),
            outcome,
            ended_by,
            status: self.final_status,
            ring_ms: ms(answered_at
                .unwrap_or(now)
                .saturating_duration_since(self.invited_at)),
            talk_ms: answered_at.map_or(0, |at| ms(now.saturating_duration_since(at))),
            keys_sent: media.map(|m| m.keys_sent().to_owned()).unwrap_or_default(),
            first_key_ms: media.and_then(PhoneMedia::first_key_ms),
            keys_received: media
                .map(|m| m.keys_received().to_owned())
                .unwrap_or_default(),
            tx_packets: media.map_or(0, PhoneMedia::tx_packets),
            first_packet_ms,
            rx: media.map(|m| m.rx().summary()).unwrap_or_default(),
            rx_dropped: media.map_or(0, PhoneMedia::dropped),
        });
        self.media = None;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        603 => "Decline",
        other => reason_phrase(other),
    }
}

#[cfg(test)]
#[path = "phone_tests.rs"]
mod tests;
