//! Answering digest challenges (RFC 3261 §22.2) to a call's INVITE and BYE: a 401 or 407 is
//! ACKed by its transaction, and the request goes again with the credentials, a new branch
//! and the next CSeq (same Call-ID and From tag), once per challenge. A realm that
//! challenges again without `stale=true` has refused the credentials: the call ends
//! [`Disposition::AuthFailed`] with the SIP status kept.

use std::time::Instant;

use super::call::Call;
use super::{ALLOW, Endpoint, SipConfig, contact_value, random_token, via_value};
use crate::api::{Disposition, Outcome};
use crate::sip::auth::DigestRequest;
use crate::sip::message::Message;
use crate::sip::message::print::Writer;
use crate::sip::transaction::{AckTemplate, ClientInvite, ClientNonInvite};
use crate::sip::transport::Transport;

impl Endpoint {
    /// Answers a 401/407 to the call's INVITE with a new INVITE; `Err` is how the call ends
    /// when it cannot be answered.
    pub(super) fn retry_invite(
        &mut self,
        now: Instant,
        id: crate::api::CallId,
        response: &Message<'_>,
    ) -> Result<(), Outcome> {
        let status = response.status().unwrap_or(401);
        let cnonce = random_token(&mut self.rng);
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(());
        };
        let request = DigestRequest {
            method: "INVITE",
            uri: &call.target,
            body: &call.sdp_offer,
        };
        let headers = call
            .auth
            .respond(response, &request, &cnonce)
            .map_err(|e| {
                let reason = response.reason().unwrap_or("").trim();
                Outcome {
                    disposition: Disposition::AuthFailed,
                    sip_status: Some(status),
                    reason: format!("{status} {reason}: {e}"),
                }
            })?;
        self.resend_invite(now, id, &headers, branch);
        Ok(())
    }

    /// Sends call `id`'s INVITE again (after a challenge, or a 422 that raised the session
    /// interval): a new branch, the next CSeq, the same Call-ID, tags and body, and `extra`
    /// headers. The old transaction runs out its Timer D, ACKing retransmitted answers.
    pub(super) fn resend_invite(
        &mut self,
        now: Instant,
        id: crate::api::CallId,
        extra: &[(&'static str, String)],
        branch: String,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let headers = extra;
        let local = self.config.local;
        call.via = via_value(call.transport, local, &branch);
        call.invite_cseq = call.invite_cseq.saturating_add(1);
        let (sent_on, invite) = write_invite_on(&self.config, call, headers);
        let template = AckTemplate {
            request_uri: call.target.clone(),
            via: call.via.clone(),
            from: format!("<{}>;tag={}", call.from_uri, call.local_tag),
            call_id: call.call_id.clone(),
            cseq: call.invite_cseq,
        };
        let fresh = ClientInvite::new(
            now,
            self.timing,
            sent_on,
            call.destination,
            invite,
            template,
        );
        let old = std::mem::replace(&mut call.invite, fresh);
        let old_branch = std::mem::replace(&mut call.invite_branch, branch.clone());
        call.old_invites.push((old_branch, old));
        call.silence_deadline = call.no_response_timeout.map(|t| now + t);
        self.by_branch.insert(branch, id);
    }

    /// Answers a 401/407 to the BYE of our dialog with a new BYE. The call has already
    /// ended; a refusal only stops the retries.
    pub(super) fn retry_bye(
        &mut self,
        now: Instant,
        id: crate::api::CallId,
        response: &Message<'_>,
    ) {
        let cnonce = random_token(&mut self.rng);
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let local = self.config.local;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let uri = dialog.request_uri().to_owned();
        let request = DigestRequest {
            method: "BYE",
            uri: &uri,
            body: b"",
        };
        let Ok(headers) = call.auth.respond(response, &request, &cnonce) else {
            call.main_bye = None;
            return;
        };
        let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut bye = Vec::new();
        dialog.write_request_with(
            &mut bye,
            "BYE",
            local,
            &branch,
            &self.config.user_agent,
            &extra,
        );
        let destination = dialog.next_hop().unwrap_or(call.destination);
        let transport = super::switch_if_large(dialog, self.config.udp_mtu_switch, &mut bye);
        call.byes.push((
            branch.clone(),
            ClientNonInvite::new(now, self.timing, transport, destination, bye),
        ));
        call.main_bye = Some(branch.clone());
        self.by_branch.insert(branch, id);
    }
}

/// The call's INVITE ([`write_invite`]) and what it goes on: the call's transport, or TCP
/// when it is too large for UDP (RFC 3261 §18.1.1; then `call.via` says TCP too, so the
/// CANCEL and the ACK of a failure follow it).
pub(super) fn write_invite_on(
    config: &SipConfig,
    call: &mut Call,
    auth: &[(&'static str, String)],
) -> (Transport, Vec<u8>) {
    let mut invite = write_invite(config, call, auth);
    let transport = super::switch_transport(
        call.transport,
        call.transport_named,
        config.udp_mtu_switch,
        &mut invite,
    );
    if transport != call.transport {
        call.via = call.via.replacen(
            &format!("SIP/2.0/{} ", call.transport.via_token()),
            &format!("SIP/2.0/{} ", transport.via_token()),
            1,
        );
    }
    (transport, invite)
}

/// The call's INVITE with its current Via and CSeq, and `auth` credentials headers.
pub(super) fn write_invite(
    config: &SipConfig,
    call: &Call,
    auth: &[(&'static str, String)],
) -> Vec<u8> {
    let mut invite = Vec::new();
    let mut writer = Writer::request(&mut invite, "INVITE", &call.target);
    writer
        .header("Via", &call.via)
        .header("Max-Forwards", "70")
        .header_fmt(
            "From",
            format_args!("<{}>;tag={}", call.from_uri, call.local_tag),
        )
        .header_fmt("To", format_args!("<{}>", call.target))
        .header("Call-ID", &call.call_id)
        .header_fmt("CSeq", format_args!("{} INVITE", call.invite_cseq))
        .header("Contact", &contact_value(call.transport, config.local));
    for (name, value) in call.identity_headers.iter().chain(auth) {
        writer.header(name, value);
    }
    writer
        .header("User-Agent", &config.user_agent)
        .header("Allow", ALLOW);
    match call.session_expires {
        Some(interval) => {
            writer.header("Supported", "100rel, timer").header_fmt(
                "Session-Expires",
                format_args!("{};refresher=uas", interval.as_secs()),
            );
        }
        None => {
            writer.header("Supported", "100rel");
        }
    }
    writer.finish(Some("application/sdp"), &call.sdp_offer);
    invite
}
