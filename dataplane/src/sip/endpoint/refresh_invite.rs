//! Refreshing a session by re-INVITE (RFC 4028 §7.4, RFC 3261 §14.1), for peers that make
//! us the refresher but do not accept UPDATE.
//!
//! - **Which method.** A refresh is an UPDATE when the peer listed UPDATE in its Allow (in
//!   its 2xx, or in the INVITE of an incoming call), else a re-INVITE. An UPDATE refused
//!   with 405 or 501 switches the call to re-INVITEs at once.
//! - **The offer.** The re-INVITE carries the SDP we last sent, unchanged (same `o=`
//!   version: RFC 6337 §5.3, "no change"), so the session stays as it is. The peer's answer
//!   is not renegotiated.
//! - **Its answer.** A 2xx is ACKed (every retransmission too, §13.2.2.4) and starts the next
//!   interval; 408 or 481 ends the call with BYE; 491 (our re-INVITE crossed one of the
//!   peer's) is retried after 2.1–4 s when we placed the call, 0–2 s when it came in
//!   (§14.1). Anything else leaves the session to expire as for an UPDATE.
//! - **Glare.** While our re-INVITE waits for its final response, a re-INVITE from the peer
//!   gets 491 (§14.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{ALLOW, Endpoint, Owner, contact_value, random_token, switch_if_large, via_value};
use crate::api::CallId;
use crate::sip::message::{HeaderName, Message};
use crate::sip::transaction::{AckTemplate, ClientInvite, InviteClientState, ResponseAction};
use crate::sip::transport::Transport;

/// Our refresh re-INVITE, from sending until its transaction has run out.
pub(super) struct RefreshInvite {
    pub(super) branch: String,
    pub(super) transaction: ClientInvite,
    /// Its CSeq number (its ACK's).
    cseq: u32,
    /// The ACK for its 2xx, once one came: transport, destination, bytes.
    ack: Option<(Transport, SocketAddr, Vec<u8>)>,
    /// The ACK is to be sent (again).
    pub(super) ack_pending: bool,
}

impl RefreshInvite {
    /// Waiting for a final response (a peer's re-INVITE now would cross it).
    pub(super) fn is_pending(&self) -> bool {
        matches!(
            self.transaction.state(),
            InviteClientState::Calling | InviteClientState::Proceeding
        )
    }

    /// Writes the ACK if it is due, else the transaction's next message.
    pub(super) fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<(Transport, SocketAddr)> {
        if std::mem::take(&mut self.ack_pending)
            && let Some((transport, to, ack)) = &self.ack
        {
            buf.clear();
            buf.extend_from_slice(ack);
            return Some((*transport, *to));
        }
        let transport = self.transaction.transport();
        self.transaction
            .poll_transmit(buf)
            .map(|to| (transport, to))
    }

    /// Nothing left to send or wait for.
    pub(super) fn is_finished(&self) -> bool {
        !self.ack_pending && self.transaction.state() == InviteClientState::Terminated
    }
}

/// True when `message`'s Allow lists UPDATE.
pub(super) fn allows_update(message: &Message<'_>) -> bool {
    message.header(HeaderName::Allow).is_some_and(|allow| {
        allow
            .split(',')
            .any(|method| method.trim().eq_ignore_ascii_case("UPDATE"))
    })
}

impl Endpoint {
    /// Sends a refresh re-INVITE for `id` carrying `session_expires`; its branch, or `None`
    /// when the call has no dialog or another offer is under way (try again later).
    pub(super) fn send_refresh_invite(
        &mut self,
        now: Instant,
        id: CallId,
        session_expires: &str,
    ) -> Option<String> {
        let local = self.config.local;
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let call = self.calls.get_mut(&id)?;
        if call.reoffer.is_some()
            || call
                .refresh_invite
                .as_ref()
                .is_some_and(RefreshInvite::is_pending)
        {
            return None;
        }
        let dialog = call.dialog.as_mut()?;
        let contact = contact_value(dialog.transport, local);
        let mut invite = Vec::new();
        dialog.write_request_with_body(
            &mut invite,
            "INVITE",
            local,
            &branch,
            &self.config.user_agent,
            &[
                ("Contact", &contact),
                ("Allow", ALLOW),
                ("Supported", "timer"),
                ("Session-Expires", session_expires),
            ],
            Some(("application/sdp", &call.sdp_offer)),
        );
        let cseq = dialog.local_cseq;
        let destination = dialog.next_hop().unwrap_or(call.destination);
        let transport = switch_if_large(dialog, self.config.udp_mtu_switch, &mut invite);
        let template = AckTemplate {
            request_uri: dialog.request_uri().to_owned(),
            via: via_value(transport, local, &branch),
            from: format!("<{}>;tag={}", dialog.local_uri, dialog.local_tag),
            call_id: dialog.call_id.clone(),
            cseq,
        };
        call.refresh_invite = Some(RefreshInvite {
            branch: branch.clone(),
            transaction: ClientInvite::new(
                now,
                self.timing,
                transport,
                destination,
                invite,
                template,
            ),
            cseq,
            ack: None,
            ack_pending: false,
        });
        self.touch(Owner::Call(id));
        Some(branch)
    }

    /// A response to our refresh re-INVITE of `id`.
    pub(super) fn refresh_invite_response(
        &mut self,
        now: Instant,
        id: CallId,
        response: &Message<'_>,
    ) {
        let local = self.config.local;
        let ack_branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(refresh) = call.refresh_invite.as_mut() else {
            return;
        };
        let action = refresh.transaction.handle_response(now, response);
        let status = response.status().unwrap_or(0);
        if (200..300).contains(&status) {
            if refresh.ack.is_none()
                && let Some(dialog) = call.dialog.as_ref()
            {
                let mut ack = Vec::new();
                dialog.write_ack_cseq(&mut ack, local, &ack_branch, refresh.cseq);
                let (transport, _) = dialog.next_hop_transport();
                let to = dialog.next_hop().unwrap_or(call.destination);
                refresh.ack = Some((transport, to, ack));
            }
            refresh.ack_pending = true;
            self.touch(Owner::Call(id));
        }
        if status >= 200 && (action == ResponseAction::Deliver || (200..300).contains(&status)) {
            self.refresh_answered(now, id, response);
        }
        self.touch(Owner::Call(id));
    }

    /// How long to wait before retrying a refresh answered 491 (RFC 3261 §14.1): 2.1–4 s
    /// for the Call-ID's owner (a call we placed), 0–2 s otherwise.
    pub(super) fn glare_delay(&mut self, id: CallId) -> Duration {
        let ours = self.calls.get(&id).is_some_and(|c| c.incoming.is_none());
        let millis = if ours {
            self.rng.random_range(2_100..=4_000)
        } else {
            self.rng.random_range(0..=2_000)
        };
        Duration::from_millis(millis)
    }
}
