//! One call's SIP state: its INVITE, CANCEL, BYE and REFER transactions, its dialog, and
//! the call-level timers (ring timeout, maximum duration, the CANCEL guard of RFC 3261 §9.1).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::{Disposition, Outcome};
use crate::sip::auth::Authenticator;
use crate::sip::dialog::Dialog;
use crate::sip::refer::ReferClient;
use crate::sip::transaction::{
    ClientInvite, ClientNonInvite, InviteClientState, NonInviteClientState,
};
use crate::sip::transport::Transport;

/// Why we sent (or will send) CANCEL.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum CancelReason {
    /// The ring timeout passed.
    RingTimeout,
    /// Control hung up before answer.
    Hangup,
}

pub(super) struct Call {
    /// Where the INVITE (and CANCEL) go; in-dialog requests fall back to it.
    pub(super) destination: SocketAddr,
    pub(super) target: String,
    pub(super) from_uri: String,
    pub(super) call_id: String,
    pub(super) local_tag: String,
    pub(super) invite_branch: String,
    /// CSeq number of the current INVITE (1, then one more per challenge answered).
    pub(super) invite_cseq: u32,
    /// Top Via of the current INVITE (its CANCEL reuses it).
    pub(super) via: String,
    pub(super) sdp_offer: Vec<u8>,
    /// P-Asserted-Identity and Privacy, sent in every INVITE of the call.
    pub(super) identity_headers: Vec<(&'static str, String)>,
    pub(super) invite: ClientInvite,
    /// INVITEs answered 401/407 and retried, by branch: they run out their Timer D,
    /// re-ACKing retransmitted challenges.
    pub(super) old_invites: Vec<(String, ClientInvite)>,
    /// Digest state for challenges to the INVITE and the BYE.
    pub(super) auth: Authenticator,
    pub(super) cancel: Option<ClientNonInvite>,
    /// BYE transactions by branch.
    pub(super) byes: Vec<(String, ClientNonInvite)>,
    /// The branch of the BYE of our dialog (the one a challenge is answered for).
    pub(super) main_bye: Option<String>,
    pub(super) dialog: Option<Dialog>,
    /// The blind transfer (REFER) in progress or running out its transaction.
    pub(super) transfer: Option<ReferClient>,
    /// The ACK for the 2xx, re-sent for every 2xx retransmission (RFC 3261 §13.2.2.4).
    pub(super) ack: Vec<u8>,
    pub(super) ack_destination: SocketAddr,
    pub(super) ack_transport: Transport,
    pub(super) ack_pending: bool,
    /// What the call's INVITE and dialog go on (a large request may still move to TCP).
    pub(super) transport: Transport,
    /// The target named its transport: a large request is not moved off UDP.
    pub(super) transport_named: bool,
    pub(super) ring_timeout: Duration,
    pub(super) max_duration: Duration,
    pub(super) ring_deadline: Option<Instant>,
    pub(super) max_deadline: Option<Instant>,
    pub(super) cancel_guard: Option<Instant>,
    pub(super) cancel_reason: Option<CancelReason>,
    pub(super) rang: bool,
    pub(super) final_status: Option<u16>,
    pub(super) ended: bool,
    /// The UAS half when the call came in; `None` for calls we dialed.
    pub(super) incoming: Option<super::inbound::Incoming>,
    /// A peer's new offer waiting for the owner's answer.
    pub(super) reoffer: Option<super::reoffer::PendingReoffer>,
    /// The early dialog of reliable provisional responses (RFC 3262), once one came.
    pub(super) early: Option<super::prack::EarlyDialog>,
    /// The To-tag of the early dialog whose SDP started early media, once one did.
    pub(super) early_media: Option<String>,
    /// PRACK and session-refresh UPDATE transactions by branch.
    pub(super) pracks: Vec<(String, ClientNonInvite)>,
    /// RFC 4028: when to refresh the session, or to give it up.
    pub(super) session_timer: Option<super::session_timer::SessionTimer>,
    /// The peer listed UPDATE in its Allow: we refresh by UPDATE, else by re-INVITE.
    pub(super) peer_allows_update: bool,
    /// Our refresh re-INVITE, until its transaction has run out.
    pub(super) refresh_invite: Option<super::refresh_invite::RefreshInvite>,
    /// How long the INVITE may go without any response (see `DialParams`).
    pub(super) no_response_timeout: Option<Duration>,
    /// When that runs out, until the first response to the INVITE.
    pub(super) silence_deadline: Option<Instant>,
    /// The first Contact of a 3xx that ended the INVITE: where the callee says to go.
    pub(super) redirect: Option<String>,
    /// The session interval our INVITE asks for (RFC 4028); a 422 may raise it once.
    pub(super) session_expires: Option<Duration>,
    /// A 422 already raised it: another ends the call.
    pub(super) interval_raised: bool,
}

impl Call {
    /// Answered and not being torn down by us.
    pub(super) fn is_answered(&self) -> bool {
        self.dialog.is_some() && self.cancel_reason.is_none()
    }

    /// The outcome when our CANCEL wins (or times out).
    pub(super) fn cancel_outcome(&self, status: Option<u16>) -> Outcome {
        match self.cancel_reason {
            Some(CancelReason::Hangup) => Outcome {
                disposition: Disposition::Canceled,
                sip_status: status,
                reason: "canceled by caller before answer".to_owned(),
            },
            _ => Outcome {
                disposition: Disposition::NoAnswer,
                sip_status: status,
                reason: format!("no answer within {}s", self.ring_timeout.as_secs()),
            },
        }
    }

    /// Next deadline of any transaction or call timer.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let transactions = [
            self.invite.poll_timeout(),
            self.cancel.as_ref().and_then(ClientNonInvite::poll_timeout),
        ];
        let byes = self
            .byes
            .iter()
            .chain(&self.pracks)
            .filter_map(|(_, transaction)| transaction.poll_timeout());
        let old = self
            .old_invites
            .iter()
            .filter_map(|(_, old)| old.poll_timeout())
            .chain(
                self.refresh_invite
                    .as_ref()
                    .and_then(|r| r.transaction.poll_timeout()),
            );
        let call_timers = [
            self.session_timer.as_ref().map(|t| t.deadline),
            self.silence_deadline,
            self.ring_deadline,
            self.incoming
                .as_ref()
                .and_then(|i| i.progress.as_ref().and_then(|p| p.due(i.state))),
            self.max_deadline,
            self.cancel_guard,
            self.transfer.as_ref().and_then(ReferClient::poll_timeout),
        ];
        transactions
            .into_iter()
            .flatten()
            .chain(byes)
            .chain(old)
            .chain(call_timers.into_iter().flatten())
            .min()
    }

    /// Writes the next pending message of any of this call's transactions.
    pub(super) fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<(Transport, SocketAddr)> {
        if std::mem::take(&mut self.ack_pending) {
            buf.clear();
            buf.extend_from_slice(&self.ack);
            return Some((self.ack_transport, self.ack_destination));
        }
        let non_invite = |t: &mut ClientNonInvite, buf: &mut Vec<u8>| {
            let transport = t.transport();
            t.poll_transmit(buf).map(|to| (transport, to))
        };
        let invite = |t: &mut ClientInvite, buf: &mut Vec<u8>| {
            let transport = t.transport();
            t.poll_transmit(buf).map(|to| (transport, to))
        };
        // The ACK for a challenge goes before the INVITE that answers it.
        if let Some(sent) = self
            .old_invites
            .iter_mut()
            .find_map(|(_, old)| invite(old, buf))
        {
            return Some(sent);
        }
        if let Some(sent) = invite(&mut self.invite, buf) {
            return Some(sent);
        }
        if let Some(sent) = self.cancel.as_mut().and_then(|c| non_invite(c, buf)) {
            return Some(sent);
        }
        if let Some(transfer) = self.transfer.as_mut() {
            let transport = transfer.transport();
            if let Some(to) = transfer.poll_transmit(buf) {
                return Some((transport, to));
            }
        }
        if let Some(sent) = self
            .pracks
            .iter_mut()
            .find_map(|(_, prack)| non_invite(prack, buf))
        {
            return Some(sent);
        }
        if let Some(sent) = self
            .refresh_invite
            .as_mut()
            .and_then(|r| r.poll_transmit(buf))
        {
            return Some(sent);
        }
        self.byes
            .iter_mut()
            .find_map(|(_, bye)| non_invite(bye, buf))
    }

    /// Ended, and every transaction has run out its timers: the call can be forgotten. An
    /// incoming call hung up between our 200 and the caller's ACK is kept: its BYE goes when
    /// the ACK arrives or Timer H fires.
    pub(super) fn is_finished(&self) -> bool {
        self.ended
            && !self.ack_pending
            && self
                .incoming
                .as_ref()
                .is_none_or(|incoming| incoming.state != super::inbound::IncomingState::Accepted)
            && self.invite.state() == InviteClientState::Terminated
            && self
                .old_invites
                .iter()
                .all(|(_, old)| old.state() == InviteClientState::Terminated)
            && self
                .cancel
                .as_ref()
                .is_none_or(|c| c.state() == NonInviteClientState::Terminated)
            && self.transfer.as_ref().is_none_or(ReferClient::is_finished)
            && self
                .refresh_invite
                .as_ref()
                .is_none_or(super::refresh_invite::RefreshInvite::is_finished)
            && self
                .byes
                .iter()
                .chain(&self.pracks)
                .all(|(_, t)| t.state() == NonInviteClientState::Terminated)
    }
}

/// Classifies the INVITE's final failure (RFC 3261 §21.4–§21.6).
pub(super) fn failure_outcome(status: u16, reason: &str) -> Outcome {
    let disposition = match status {
        486 | 600 => Disposition::Busy,
        408 | 480 => Disposition::NoAnswer,
        _ => Disposition::Failed,
    };
    let reason = if (300..400).contains(&status) {
        format!("{status} {reason} (the redirect was not followed)")
    } else {
        format!("{status} {reason}")
    };
    Outcome {
        disposition,
        sip_status: Some(status),
        reason: reason.trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            failure_outcome(486, "Busy Here").disposition,
            Disposition::Busy
        );
        assert_eq!(
            failure_outcome(600, "Busy Everywhere").disposition,
            Disposition::Busy
        );
        assert_eq!(
            failure_outcome(480, "Temporarily Unavailable").disposition,
            Disposition::NoAnswer
        );
        assert_eq!(failure_outcome(408, "").reason, "408");
        let redirect = failure_outcome(302, "Moved Temporarily");
        assert_eq!(redirect.disposition, Disposition::Failed);
        assert!(redirect.reason.contains("not followed"));
        assert_eq!(
            failure_outcome(503, "Service Unavailable").sip_status,
            Some(503)
        );
    }
}
