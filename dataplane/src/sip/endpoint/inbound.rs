//! Incoming calls (RFC 3261 §13.3, the UAS side): an INVITE from an allowed source gets
//! `100 Trying` at once and becomes a call the owner answers ([`Endpoint::accept`]) or
//! refuses ([`Endpoint::reject`]). The 200 OK is retransmitted by the INVITE's server
//! transaction until the ACK (§13.3.1.4); the ACK starts the call (`SipEvent::Answered`
//! with the caller's offer, or for an INVITE without one, the answer the ACK carries to the
//! offer in our 200), a missing ACK ends it with a BYE. A CANCEL before the answer
//! gets 200 and the INVITE 487 (§9.2).
//!
//! Who may call is a list of networks (`SipConfig::inbound_sources`) plus the registrars we
//! register with. Everyone else is a stranger (`docs/sip.md`): their INVITE draws nothing
//! by default, so an allowed source is the only one that can make us keep state or
//! retransmit.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::call::Call;
use super::{Endpoint, Owner, ServerEntry, SipEvent, invite_ack_key, server_key};
use crate::api::{CallId, Disposition, Outcome};
use crate::sip::auth::Authenticator;
use crate::sip::dialog::{Dialog, LocalParty};
use crate::sip::message::print::{Writer, reason_phrase};
use crate::sip::message::{Message, Method, Recovered};
use crate::sip::transaction::{AckTemplate, ClientInvite, ServerTransaction};
use crate::sip::transport::Transport;

/// `Retry-After` of the `503` a core at `SipConfig::max_calls` answers, in seconds.
pub(super) const FULL_RETRY_AFTER_SECS: u32 = 5;

/// Where an incoming call's INVITE stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum IncomingState {
    /// `100 Trying` sent; waiting for the owner's answer.
    Offered,
    /// 200 OK sent (and retransmitted); waiting for the ACK.
    Accepted,
    /// The ACK arrived: the call is up.
    Confirmed,
    /// Refused, canceled or timed out.
    Done,
}

/// The headers every response to the INVITE copies (RFC 3261 §8.2.6.2), owned so the
/// answer can be written long after the request's buffer is gone.
#[derive(Clone, Debug)]
pub(super) struct ResponseHeaders {
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
}

impl ResponseHeaders {
    pub(super) fn new(recovered: &Recovered<'_>) -> Self {
        Self {
            vias: recovered.vias.iter().map(|v| (*v).to_owned()).collect(),
            from: recovered.from.to_owned(),
            to: recovered.to.to_owned(),
            call_id: recovered.call_id.to_owned(),
            cseq: recovered.cseq.to_owned(),
        }
    }

    pub(super) fn response<'b>(
        &self,
        buf: &'b mut Vec<u8>,
        status: u16,
        to_tag: &str,
    ) -> Writer<'b> {
        buf.clear();
        let mut writer = Writer::response(buf, status, reason_phrase(status));
        for via in &self.vias {
            writer.header("Via", via);
        }
        writer.header("From", &self.from);
        if to_tag.is_empty() {
            writer.header("To", &self.to);
        } else {
            writer.header_fmt("To", format_args!("{};tag={to_tag}", self.to));
        }
        writer
            .header("Call-ID", &self.call_id)
            .header("CSeq", &self.cseq);
        writer
    }
}

/// The UAS half of an incoming call, kept on its [`Call`].
pub(super) struct Incoming {
    pub(super) state: IncomingState,
    /// The INVITE's server transaction.
    pub(super) server: u64,
    pub(super) headers: ResponseHeaders,
    /// The caller's SDP offer, handed over again with `Answered`.
    pub(super) offer: Vec<u8>,
    /// Where the INVITE came from: responses go there (RFC 3581), and media latching
    /// trusts it.
    pub(super) source: SocketAddr,
    /// The dialog the 200 OK creates (RFC 3261 §12.1.1), installed on the call by `accept`.
    dialog: Option<Dialog>,
    /// The owner hung up between our 200 and the caller's ACK: BYE once the ACK comes (or
    /// Timer H fires), not before (RFC 3261 §15).
    bye_after_ack: bool,
    /// The INVITE's `Session-Expires` (RFC 4028), answered in our 200.
    session_expires: Option<super::session_timer::SessionExpires>,
    /// The INVITE says `Require: 100rel`: no unreliable 183 for it.
    pub(super) requires_100rel: bool,
    /// Early media: the 183 sent before the answer.
    pub(super) progress: Option<super::inbound_early::Progress>,
}

/// Whether `ip` is in one of `networks`.
pub(super) fn allowed(networks: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|network| network.contains(&ip))
}

impl Endpoint {
    /// True when an out-of-dialog INVITE from `ip` is a call to answer rather than a
    /// stranger's.
    pub(super) fn inbound_allowed(&self, ip: IpAddr) -> bool {
        allowed(&self.config.inbound_sources, ip)
            || self
                .registrations
                .values()
                .any(|registration| registration.is_registrar(ip))
    }

    /// A new INVITE from an allowed source: `100 Trying`, a call in `Offered`, and
    /// `SipEvent::Incoming` for the owner.
    pub(super) fn incoming_invite(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        request: &Message<'_>,
        recovered: &Recovered<'_>,
    ) {
        let headers = ResponseHeaders::new(recovered);
        let mut transaction = ServerTransaction::new(self.timing, true, transport, from);
        let refusal = self.incoming_refusal(request);
        let mut response = Vec::new();
        let status = refusal.unwrap_or(100);
        let to_tag = if status == 100 {
            String::new()
        } else {
            self.stateless_tag(request)
        };
        let mut writer = headers.response(&mut response, status, &to_tag);
        if status == 503 {
            writer.header_fmt("Retry-After", format_args!("{FULL_RETRY_AFTER_SECS}"));
        }
        writer.header("User-Agent", &self.config.user_agent);
        writer.finish(None, b"");
        transaction.respond(now, response, refusal.is_some());
        let server = self.insert_server(request, Method::Invite, transaction, None);
        let Some(request_uri) = request.request_uri().map(|uri| uri.as_str().to_owned()) else {
            return;
        };
        if refusal.is_some() {
            return;
        }

        let id = CallId::inbound(self.config.core, self.next_inbound);
        self.next_inbound += 1;
        if let Some(entry) = self.servers.get_mut(&server) {
            entry.call = Some(id);
        }
        let remote_uri = request.from().map_or("", |f| f.uri.as_str()).to_owned();
        let local_uri = request.to().map_or("", |t| t.uri.as_str()).to_owned();
        let remote_tag = request.from().and_then(|f| f.tag()).unwrap_or("");
        let remote_target = request.contact().map_or("", |c| c.uri.as_str());
        let call_id = request.call_id().unwrap_or("").to_owned();
        let cseq = request.cseq().map_or(0, |c| c.number);
        let local_tag = self.random_token();
        let party = LocalParty {
            call_id: &call_id,
            local_tag: &local_tag,
            local_uri: &local_uri,
            remote_uri: &remote_uri,
            // Our own requests count from 1 (write_request adds one first).
            invite_cseq: 0,
        };
        // RFC 3261 §12.1.1: the route set is the INVITE's Record-Route, in order.
        let route_set = request
            .record_route()
            .iter()
            .map(|r| r.uri.as_str().to_owned())
            .collect();
        let mut dialog = Dialog::new(&party, remote_tag, remote_target, route_set);
        // The caller's requests came on `transport`: ours in the dialog go on it too,
        // unless its Contact or Record-Route names another.
        dialog.transport = transport;
        dialog.accept_remote_cseq(cseq);
        let template = AckTemplate {
            request_uri: remote_uri.clone(),
            via: String::new(),
            from: String::new(),
            call_id: call_id.clone(),
            cseq,
        };
        // An incoming call has no INVITE of ours: its client INVITE is born terminated.
        let mut invite = ClientInvite::new(now, self.timing, transport, from, Vec::new(), template);
        invite.terminate();
        let answer_guard = now + self.timing.timeout();
        let call = Call {
            destination: from,
            target: remote_uri.clone(),
            from_uri: local_uri.clone(),
            call_id: call_id.clone(),
            local_tag,
            invite_branch: String::new(),
            invite_cseq: cseq,
            via: String::new(),
            sdp_offer: Vec::new(),
            identity_headers: Vec::new(),
            invite,
            old_invites: Vec::new(),
            auth: Authenticator::new(None),
            cancel: None,
            byes: Vec::new(),
            main_bye: None,
            dialog: None,
            transfer: None,
            ack: Vec::new(),
            ack_destination: from,
            ack_transport: transport,
            ack_pending: false,
            transport,
            transport_named: false,
            ring_timeout: self.timing.timeout(),
            max_duration: Duration::ZERO,
            ring_deadline: Some(answer_guard),
            max_deadline: None,
            cancel_guard: None,
            cancel_reason: None,
            rang: false,
            final_status: None,
            ended: false,
            incoming: Some(Incoming {
                state: IncomingState::Offered,
                server,
                headers,
                offer: request.body().to_vec(),
                source: from,
                dialog: Some(dialog),
                bye_after_ack: false,
                session_expires: super::session_timer::SessionExpires::of(request),
                requires_100rel: super::inbound_early::requires_100rel(request),
                progress: None,
            }),
            reoffer: None,
            early: None,
            early_media: None,
            pracks: Vec::new(),
            session_timer: None,
            peer_allows_update: super::refresh_invite::allows_update(request),
            refresh_invite: None,
            no_response_timeout: None,
            silence_deadline: None,
            redirect: None,
            session_expires: None,
            interval_raised: false,
        };
        self.by_call_id.insert(call_id.clone(), id);
        self.calls.insert(id, call);
        self.live_calls += 1;
        self.touch(Owner::Call(id));
        self.events.push_back(SipEvent::Incoming {
            call: id,
            request_uri,
            from: remote_uri,
            to: local_uri,
            source: from,
            sip_call_id: call_id,
            sdp: request.body().to_vec(),
        });
    }

    /// Why a new INVITE cannot become a call, as the status to answer.
    fn incoming_refusal(&self, request: &Message<'_>) -> Option<u16> {
        let call_id = request.call_id().unwrap_or("");
        if self.by_call_id.contains_key(call_id) {
            // The Call-ID of a call we have: a merged or looped request (RFC 3261 §8.2.2.2).
            return Some(482);
        }
        let contact = request.contact().and_then(|c| c.uri.sip().map(|_| ()));
        let tagged = request.from().and_then(|f| f.tag()).is_some();
        if contact.is_none() || !tagged {
            return Some(400);
        }
        if self.live_calls >= self.config.max_calls {
            return Some(503);
        }
        None
    }

    /// Keeps a server transaction for `request` (of `method`), found by its key and, for an
    /// INVITE, by the key of the ACK to a 2xx.
    pub(super) fn insert_server(
        &mut self,
        request: &Message<'_>,
        method: Method<'_>,
        transaction: ServerTransaction,
        call: Option<CallId>,
    ) -> u64 {
        let id = self.next_server;
        self.next_server += 1;
        let key = server_key(request, method);
        let ack_key = (method == Method::Invite).then(|| invite_ack_key(request));
        for key in [Some(&key), ack_key.as_ref()].into_iter().flatten() {
            self.server_keys.insert(key.clone(), id);
        }
        self.servers.insert(
            id,
            ServerEntry {
                keys: [Some(key), ack_key],
                transaction,
                call,
            },
        );
        self.touch(Owner::Server(id));
        id
    }

    /// Answers the incoming call `call` with 200 OK carrying `sdp_answer`; the call may last
    /// `max_duration` from now. False (nothing sent) when it is not waiting for an answer.
    pub fn accept(
        &mut self,
        now: Instant,
        call: CallId,
        sdp_answer: &[u8],
        max_duration: Duration,
    ) -> bool {
        let local = self.config.local;
        let user_agent = self.config.user_agent.clone();
        let Some(state) = self.calls.get_mut(&call) else {
            return false;
        };
        let Some(incoming) = state.incoming.as_mut() else {
            return false;
        };
        if incoming.state != IncomingState::Offered || state.ended {
            return false;
        }
        let Some(dialog) = incoming.dialog.take() else {
            return false;
        };
        let mut response = Vec::new();
        let mut writer = incoming
            .headers
            .response(&mut response, 200, &state.local_tag);
        writer
            .header("Contact", &super::contact_value(state.transport, local))
            .header("Allow", super::ALLOW)
            .header("User-Agent", &user_agent);
        // RFC 4028 §9: the caller refreshes unless it asked us to.
        let session = incoming.session_expires;
        if let Some(expires) = session {
            writer
                .header("Session-Expires", &expires.header())
                .header("Require", "timer");
        }
        writer.finish(Some("application/sdp"), sdp_answer);
        incoming.state = IncomingState::Accepted;
        let server = incoming.server;
        state.sdp_offer = sdp_answer.to_vec();
        state.dialog = Some(dialog);
        state.final_status = Some(200);
        state.ring_deadline = None;
        state.max_duration = max_duration;
        state.max_deadline = Some(now + max_duration);
        if let Some(entry) = self.servers.get_mut(&server) {
            entry.transaction.respond(now, response, true);
        }
        let we_refresh = session.is_some_and(|e| e.refresher_uac == Some(false));
        self.start_session_timer(now, call, session, we_refresh);
        self.touch(Owner::Server(server));
        self.touch(Owner::Call(call));
        true
    }

    /// Refuses the incoming call `call` with `status` (400–699) and, when given,
    /// `Retry-After`. Ends the call. False when it is not waiting for an answer.
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        retry_after: Option<u32>,
    ) -> bool {
        let status = if (400..700).contains(&status) {
            status
        } else {
            500
        };
        let disposition = match status {
            486 | 600 => Disposition::Busy,
            480 | 408 => Disposition::NoAnswer,
            _ => Disposition::Failed,
        };
        let reason = format!("refused with {status} {}", reason_phrase(status))
            .trim_end()
            .to_owned();
        self.refuse(now, call, (status, disposition), retry_after, reason)
    }

    /// Sends the final error `status` to the INVITE and ends the call as `disposition`.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        call: CallId,
        (status, disposition): (u16, Disposition),
        retry_after: Option<u32>,
        reason: String,
    ) -> bool {
        let user_agent = self.config.user_agent.clone();
        let Some(state) = self.calls.get_mut(&call) else {
            return false;
        };
        let Some(incoming) = state.incoming.as_mut() else {
            return false;
        };
        if incoming.state != IncomingState::Offered {
            return false;
        }
        let mut response = Vec::new();
        let mut writer = incoming
            .headers
            .response(&mut response, status, &state.local_tag);
        if let Some(seconds) = retry_after {
            writer.header_fmt("Retry-After", format_args!("{seconds}"));
        }
        writer.header("User-Agent", &user_agent);
        writer.finish(None, b"");
        incoming.state = IncomingState::Done;
        let server = incoming.server;
        state.final_status = Some(status);
        state.ring_deadline = None;
        if let Some(entry) = self.servers.get_mut(&server) {
            entry.transaction.respond(now, response, true);
        }
        self.end(
            call,
            Outcome {
                disposition,
                sip_status: Some(status),
                reason,
            },
        );
        self.touch(Owner::Server(server));
        self.touch(Owner::Call(call));
        true
    }

    /// The caller's ACK for our 200 arrived on the INVITE's server transaction, with
    /// `ack_body`: for an offerless INVITE, the caller's answer to the offer in our 200
    /// (RFC 3264 §5; without one the call cannot have media and is ended with a BYE).
    pub(super) fn incoming_acked(&mut self, now: Instant, call: CallId, ack_body: &[u8]) {
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(incoming) = state.incoming.as_mut() else {
            return;
        };
        if incoming.state != IncomingState::Accepted {
            return;
        }
        incoming.state = IncomingState::Confirmed;
        let offerless = incoming.offer.is_empty();
        if incoming.bye_after_ack {
            self.send_bye(now, call);
        } else if offerless && ack_body.is_empty() && !state.ended {
            self.send_bye(now, call);
            self.end(
                call,
                Outcome {
                    disposition: Disposition::Failed,
                    sip_status: Some(200),
                    reason: "the caller's INVITE had no offer and its ACK no answer: no media \
                             can be set up (RFC 3264 §5)"
                        .to_owned(),
                },
            );
        } else if !state.ended {
            let sdp = if offerless {
                ack_body.to_vec()
            } else {
                incoming.offer.clone()
            };
            let peer = incoming.source;
            self.events
                .push_back(SipEvent::Answered { call, sdp, peer });
        }
        self.touch(Owner::Call(call));
    }

    /// The INVITE's server transaction gave up waiting for the ACK of our 200 (Timer H):
    /// the dialog is confirmed and at once ended with a BYE (RFC 3261 §13.3.1.4).
    pub(super) fn incoming_unacknowledged(&mut self, now: Instant, call: CallId) {
        let Some(incoming) = self.calls.get_mut(&call).and_then(|c| c.incoming.as_mut()) else {
            return;
        };
        if incoming.state != IncomingState::Accepted {
            return;
        }
        incoming.state = IncomingState::Done;
        self.send_bye(now, call);
        self.end(
            call,
            Outcome {
                disposition: Disposition::Failed,
                sip_status: Some(200),
                reason: "the caller never acknowledged our 200 OK (no ACK within 64*T1); \
                         check that its ACKs can reach us"
                    .to_owned(),
            },
        );
        self.touch(Owner::Call(call));
    }

    /// A CANCEL matched the incoming call's INVITE: 487 to the INVITE if it is not
    /// answered yet (RFC 3261 §9.2).
    pub(super) fn incoming_canceled(&mut self, now: Instant, call: CallId) {
        let offered = self
            .calls
            .get(&call)
            .and_then(|c| c.incoming.as_ref())
            .is_some_and(|i| i.state == IncomingState::Offered);
        if !offered {
            return;
        }
        let reason = "the caller canceled before the answer".to_owned();
        self.refuse(now, call, (487, Disposition::Canceled), None, reason);
    }

    /// Our owner hung up an incoming call: before the answer it is refused (480), between
    /// the 200 and the ACK the BYE waits for the ACK, after it a BYE goes at once. Returns
    /// false when the call is not an incoming one in one of the first two states.
    pub(super) fn incoming_hangup(&mut self, now: Instant, call: CallId) -> bool {
        let Some(state) = self.calls.get_mut(&call) else {
            return false;
        };
        let Some(incoming) = state.incoming.as_mut() else {
            return false;
        };
        match incoming.state {
            IncomingState::Offered => {
                let reason = "hung up by the application before the answer".to_owned();
                self.refuse(now, call, (480, Disposition::Canceled), None, reason)
            }
            IncomingState::Accepted => {
                incoming.bye_after_ack = true;
                let status = state.final_status;
                self.end(
                    call,
                    Outcome {
                        disposition: Disposition::Completed,
                        sip_status: status,
                        reason: "hung up by the application".to_owned(),
                    },
                );
                self.touch(Owner::Call(call));
                true
            }
            IncomingState::Confirmed | IncomingState::Done => false,
        }
    }
}
