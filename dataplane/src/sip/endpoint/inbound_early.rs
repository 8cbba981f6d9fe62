//! Early media on incoming calls (RFC 3960 §2, the gateway model, as the answering side):
//! before answering, the owner may send `183 Session Progress` with its SDP answer
//! ([`Endpoint::progress`]) and run the call's media at once; the 200 OK that answers
//! later carries the same SDP ([`Endpoint::accept`]). The owner hears
//! [`SipEvent::EarlyMedia`] with the caller's offer and where it came from, as for an
//! outbound call's early answer, and `Answered` after the ACK as always.
//!
//! The 183 is sent unreliably (RFC 3261 §13.3.1.1): again for each retransmission of the
//! INVITE (the server transaction does that), and on its own every [`PROGRESS_REPEAT`]
//! so no proxy gives up on a transaction quiet for three minutes. A caller whose INVITE
//! says `Require: 100rel` would need it reliable (RFC 3262 §3), and an INVITE without an
//! offer would need our offer in a reliable 1xx (RFC 3261 §13.2.1): such calls get no
//! 183 ([`NoEarlyMedia`]); the owner answers them at once instead. Early media lasts at
//! most [`EARLY_MEDIA_LIMIT`]; then the INVITE is refused `480` and the call ends
//! `no-answer`. A CANCEL, a refusal or the owner's hangup end it as before the answer.

use std::time::{Duration, Instant};

use super::inbound::IncomingState;
use super::{Endpoint, Owner, SipEvent};
use crate::api::{CallId, Disposition};
use crate::sip::message::{HeaderName, Message};

/// The longest an incoming call may stay in early media before it is refused `480`: RFC
/// 3261 §13.3.1.1 lets a proxy cancel a transaction after three minutes without a final
/// response, so we decide well before.
pub const EARLY_MEDIA_LIMIT: Duration = Duration::from_secs(120);

/// How often an unanswered 183 is sent again on its own (RFC 3261 §13.3.1.1: "at every
/// minute").
pub const PROGRESS_REPEAT: Duration = Duration::from_secs(60);

/// Why an incoming call gets no early media (nothing was sent; answer it instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoEarlyMedia {
    /// The call is not waiting for an answer (unknown, answered, refused, or early already).
    #[error("the call is not waiting for an answer")]
    NotOffered,
    /// The INVITE had no SDP offer: ours could only go in a reliable 1xx.
    #[error("the caller's INVITE has no SDP offer; answer it without early media")]
    NoOffer,
    /// The INVITE says `Require: 100rel`: every 1xx would have to be reliable (PRACK).
    #[error(
        "the caller requires reliable provisional responses (100rel); answer it without early media"
    )]
    RequiresReliable,
}

/// The 183 of an incoming call in early media, and when it goes again.
pub(super) struct Progress {
    response: Vec<u8>,
    repeat_at: Instant,
}

/// Whether the INVITE says `Require: 100rel`.
pub(super) fn requires_100rel(request: &Message<'_>) -> bool {
    request.header(HeaderName::Require).is_some_and(|require| {
        require
            .split(',')
            .any(|tag| tag.trim().eq_ignore_ascii_case("100rel"))
    })
}

impl Progress {
    /// When the 183 is due again, while the call is still unanswered.
    pub(super) fn due(&self, state: IncomingState) -> Option<Instant> {
        (state == IncomingState::Offered).then_some(self.repeat_at)
    }
}

impl Endpoint {
    /// Starts early media on the incoming call `call`: `183 Session Progress` with
    /// `sdp_answer` (the answer the 200 OK will carry), in the dialog the 200 will confirm
    /// (our To tag). The call must then be answered ([`Endpoint::accept`]) or refused
    /// within [`EARLY_MEDIA_LIMIT`].
    pub fn progress(
        &mut self,
        now: Instant,
        call: CallId,
        sdp_answer: &[u8],
    ) -> Result<(), NoEarlyMedia> {
        let local = self.config.local;
        let user_agent = self.config.user_agent.clone();
        let state = self.calls.get_mut(&call).ok_or(NoEarlyMedia::NotOffered)?;
        let incoming = state.incoming.as_mut().ok_or(NoEarlyMedia::NotOffered)?;
        if incoming.state != IncomingState::Offered || state.ended || incoming.progress.is_some() {
            return Err(NoEarlyMedia::NotOffered);
        }
        if incoming.offer.is_empty() {
            return Err(NoEarlyMedia::NoOffer);
        }
        if incoming.requires_100rel {
            return Err(NoEarlyMedia::RequiresReliable);
        }
        let mut response = Vec::new();
        let mut writer = incoming
            .headers
            .response(&mut response, 183, &state.local_tag);
        writer
            .header("Contact", &super::contact_value(state.transport, local))
            .header("Allow", super::ALLOW)
            .header("User-Agent", &user_agent);
        writer.finish(Some("application/sdp"), sdp_answer);
        let server = incoming.server;
        incoming.progress = Some(Progress {
            response: response.clone(),
            repeat_at: now + PROGRESS_REPEAT,
        });
        state.ring_deadline = Some(now + EARLY_MEDIA_LIMIT);
        // The media runs on the caller's offer now, as on an outbound call's early answer.
        let event = SipEvent::EarlyMedia {
            call,
            sdp: incoming.offer.clone(),
            peer: incoming.source,
        };
        if let Some(entry) = self.servers.get_mut(&server) {
            entry.transaction.respond(now, response, false);
        }
        self.events.push_back(event);
        self.touch(Owner::Server(server));
        self.touch(Owner::Call(call));
        Ok(())
    }

    /// The 183 of a call in early media is due again (RFC 3261 §13.3.1.1).
    pub(super) fn progress_timeout(&mut self, now: Instant, call: CallId) {
        let Some(incoming) = self.calls.get_mut(&call).and_then(|c| c.incoming.as_mut()) else {
            return;
        };
        let state = incoming.state;
        let server = incoming.server;
        let Some(progress) = incoming.progress.as_mut() else {
            return;
        };
        if progress.due(state).is_none_or(|at| at > now) {
            return;
        }
        progress.repeat_at = now + PROGRESS_REPEAT;
        let response = progress.response.clone();
        if let Some(entry) = self.servers.get_mut(&server) {
            entry.transaction.respond(now, response, false);
        }
        self.touch(Owner::Server(server));
    }

    /// An incoming call's answer deadline passed: after early media that is
    /// [`EARLY_MEDIA_LIMIT`], otherwise control never decided (64·T1). Refused `480`.
    pub(super) fn incoming_too_late(&mut self, now: Instant, call: CallId) {
        let early = self
            .calls
            .get(&call)
            .and_then(|c| c.incoming.as_ref())
            .is_some_and(|i| i.progress.is_some());
        let (disposition, reason) = if early {
            (
                Disposition::NoAnswer,
                format!(
                    "not answered within {} s of early media (RFC 3261 §13.3.1.1)",
                    EARLY_MEDIA_LIMIT.as_secs()
                ),
            )
        } else {
            (
                Disposition::Failed,
                "no answer from control within 64*T1".to_owned(),
            )
        };
        self.refuse(now, call, (480, disposition), None, reason);
    }
}
