//! New offers inside an established call: a re-INVITE (RFC 3261 §14.2) or an UPDATE
//! (RFC 3311) with an SDP body, as a peer sends to put the call on hold, resume it, or move
//! its media. The request refreshes the dialog's remote target from its Contact
//! (RFC 3261 §12.2.2) and is reported as `SipEvent::Reoffer`; the owner reads the offer and
//! answers it with [`Endpoint::answer_reoffer`] (200 with its SDP answer, or 488), normally
//! in the same turn. A second offer while one is unanswered gets `500` with `Retry-After`
//! (RFC 3261 §14.2; RFC 3311 §5.2). A re-INVITE without a body is answered at once with our
//! current SDP (as before), the peer's answer arriving in its ACK.

use std::net::SocketAddr;
use std::time::Instant;

use super::inbound::ResponseHeaders;
use super::{ALLOW, Endpoint, Owner, SipEvent};
use crate::api::CallId;
use crate::sip::message::{Message, Method, Recovered};
use crate::sip::transaction::ServerTransaction;
use crate::sip::transport::Transport;

/// Seconds a peer whose offer crossed another is asked to wait (`Retry-After`).
const OVERLAP_RETRY_AFTER_SECS: u32 = 1;

/// An offer waiting for the owner's answer.
pub(super) struct PendingReoffer {
    server: u64,
    headers: ResponseHeaders,
    /// The offer's `Session-Expires`, echoed in our 200 (RFC 4028 §9).
    session_expires: Option<super::session_timer::SessionExpires>,
}

impl Endpoint {
    /// The answered, live call whose dialog `request` belongs to, if it carries a new
    /// offer (a re-INVITE or UPDATE with a body).
    pub(super) fn reoffer_call(&self, request: &Message<'_>, method: Method<'_>) -> Option<CallId> {
        let offer = matches!(method, Method::Invite | Method::Other("UPDATE"));
        if !offer || request.body().is_empty() {
            return None;
        }
        let id = *self.by_call_id.get(request.call_id()?)?;
        let call = self.calls.get(&id)?;
        let confirmed = call
            .incoming
            .as_ref()
            .is_none_or(|incoming| incoming.state == super::inbound::IncomingState::Confirmed);
        (!call.ended && confirmed && call.dialog.as_ref()?.matches(request)).then_some(id)
    }

    /// Takes a new offer for `call`: a server transaction, the target refresh, and
    /// `SipEvent::Reoffer` (or `500` when an offer is already waiting).
    pub(super) fn reoffer(
        &mut self,
        now: Instant,
        (transport, from): (Transport, SocketAddr),
        request: &Message<'_>,
        recovered: &Recovered<'_>,
        method: Method<'_>,
        call: CallId,
    ) {
        let headers = ResponseHeaders::new(recovered);
        let mut transaction =
            ServerTransaction::new(self.timing, method == Method::Invite, transport, from);
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let expires = super::session_timer::SessionExpires::of(request);
        if let Some(dialog) = state.dialog.as_mut() {
            dialog.accept_remote_cseq(request.cseq().map_or(0, |c| c.number));
            if let Some(contact) = request.contact() {
                dialog.remote_target = contact.uri.as_str().to_owned();
            }
        }
        // RFC 3261 §14.2: a re-INVITE crossing ours waiting for its final response is
        // refused with 491 (the peer retries after its glare delay).
        let glare = method == Method::Invite
            && state
                .refresh_invite
                .as_ref()
                .is_some_and(super::refresh_invite::RefreshInvite::is_pending);
        if state.reoffer.is_some() || glare {
            let mut response = Vec::new();
            let mut writer = headers.response(&mut response, if glare { 491 } else { 500 }, "");
            if !glare {
                writer.header_fmt("Retry-After", format_args!("{OVERLAP_RETRY_AFTER_SECS}"));
            }
            writer.header("User-Agent", &self.config.user_agent);
            writer.finish(None, b"");
            transaction.respond(now, response, true);
            self.insert_server(request, method, transaction, None);
            return;
        }
        let server = self.insert_server(request, method, transaction, None);
        if let Some(expires) = expires {
            self.session_refreshed(now, call, expires);
        }
        if let Some(state) = self.calls.get_mut(&call) {
            state.reoffer = Some(PendingReoffer {
                server,
                headers,
                session_expires: expires,
            });
        }
        self.events.push_back(SipEvent::Reoffer {
            call,
            sdp: request.body().to_vec(),
        });
    }

    /// Answers the offer `SipEvent::Reoffer` reported for `call`: `Ok(sdp)` is a `200` with
    /// our answer, `Err(status)` a refusal (e.g. `488` for an offer without the call's law;
    /// the call goes on as it was). False when no offer is waiting.
    pub fn answer_reoffer(
        &mut self,
        now: Instant,
        call: CallId,
        answer: Result<&[u8], u16>,
    ) -> bool {
        let local = self.config.local;
        let Some(state) = self.calls.get_mut(&call) else {
            return false;
        };
        let Some(pending) = state.reoffer.take() else {
            return false;
        };
        let mut response = Vec::new();
        match answer {
            Ok(sdp) => {
                let mut writer = pending.headers.response(&mut response, 200, "");
                // The offer came on this transport: our Contact says so.
                let transport = self
                    .servers
                    .get(&pending.server)
                    .map_or(Transport::Udp, |e| e.transaction.transport());
                writer
                    .header("Contact", &super::contact_value(transport, local))
                    .header("Allow", ALLOW)
                    .header("User-Agent", &self.config.user_agent);
                if let Some(expires) = pending.session_expires {
                    writer
                        .header("Session-Expires", &expires.header())
                        .header("Require", "timer");
                }
                writer.finish(Some("application/sdp"), sdp);
                // Re-INVITEs without a body are answered with what we last said.
                state.sdp_offer = sdp.to_vec();
            }
            Err(status) => {
                let status = if (400..700).contains(&status) {
                    status
                } else {
                    488
                };
                let mut writer = pending.headers.response(&mut response, status, "");
                writer.header("User-Agent", &self.config.user_agent);
                writer.finish(None, b"");
            }
        }
        if let Some(entry) = self.servers.get_mut(&pending.server) {
            entry.transaction.respond(now, response, true);
        }
        self.touch(Owner::Server(pending.server));
        true
    }
}
