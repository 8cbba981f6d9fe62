//! Reliable provisional responses (RFC 3262): our INVITEs say `Supported: 100rel`, and a
//! 1xx to them that carries `Require: 100rel` and an `RSeq` is acknowledged with a PRACK in
//! its early dialog (`RAck: <RSeq> <CSeq> INVITE`). Only the next RSeq in order is
//! acknowledged: a retransmission (an RSeq already seen) or a gap draws nothing (§4); the
//! callee retransmits the 1xx until our PRACK lands, and the PRACK is a non-INVITE client
//! transaction retransmitted until its own final response. The dialog the 2xx confirms goes
//! on counting CSeq from the last PRACK, so the BYE is numbered above it.

use std::time::Instant;

use super::{Endpoint, random_token};
use crate::api::CallId;
use crate::sip::dialog::{Dialog, LocalParty};
use crate::sip::message::{HeaderName, Message};
use crate::sip::transaction::ClientNonInvite;

/// The early dialog a reliable provisional response created, and what it acknowledged.
pub(super) struct EarlyDialog {
    pub(super) dialog: Dialog,
    /// The last RSeq acknowledged.
    last_rseq: u32,
}

/// The RSeq of a reliable provisional response, when `response` is one.
fn reliable_rseq(response: &Message<'_>) -> Option<u32> {
    let require = response.header(HeaderName::Require)?;
    let reliable = require
        .split(',')
        .any(|tag| tag.trim().eq_ignore_ascii_case("100rel"));
    if !reliable {
        return None;
    }
    response
        .header(HeaderName::Other("RSeq"))?
        .trim()
        .parse()
        .ok()
        .filter(|&rseq: &u32| rseq > 0)
}

impl Endpoint {
    /// A 1xx (not 100) to call `id`'s current INVITE: PRACK it if it is reliable and next.
    pub(super) fn acknowledge_provisional(
        &mut self,
        now: Instant,
        id: CallId,
        response: &Message<'_>,
    ) {
        let Some(rseq) = reliable_rseq(response) else {
            return;
        };
        let local = self.config.local;
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let user_agent = self.config.user_agent.clone();
        let mtu_switch = self.config.udp_mtu_switch;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.ended || call.dialog.is_some() {
            return;
        }
        let to_tag = response.to().and_then(|to| to.tag()).unwrap_or("");
        let same_dialog = call
            .early
            .as_ref()
            .is_some_and(|early| early.dialog.remote_tag == to_tag);
        if same_dialog {
            let Some(early) = call.early.as_mut() else {
                return;
            };
            if rseq != early.last_rseq.wrapping_add(1) {
                // A retransmission (already acknowledged) or out of order: nothing (§4).
                return;
            }
            early.last_rseq = rseq;
        } else {
            let party = LocalParty {
                call_id: &call.call_id,
                local_tag: &call.local_tag,
                local_uri: &call.from_uri,
                remote_uri: &call.target,
                invite_cseq: call.invite_cseq,
            };
            let mut dialog = Dialog::from_2xx(&party, response)
                .unwrap_or_else(|_| Dialog::new(&party, to_tag, &call.target, Vec::new()));
            dialog.transport = call.transport;
            call.early = Some(EarlyDialog {
                dialog,
                last_rseq: rseq,
            });
        }
        let Some(early) = call.early.as_mut() else {
            return;
        };
        let rack = format!("{rseq} {} INVITE", call.invite_cseq);
        let mut prack = Vec::new();
        early.dialog.write_request_with(
            &mut prack,
            "PRACK",
            local,
            &branch,
            &user_agent,
            &[("RAck", &rack)],
        );
        let destination = early.dialog.next_hop().unwrap_or(call.destination);
        let transport = super::switch_if_large(&early.dialog, mtu_switch, &mut prack);
        call.pracks.push((
            branch.clone(),
            ClientNonInvite::new(now, self.timing, transport, destination, prack),
        ));
        self.by_branch.insert(branch, id);
    }

    /// The CSeq number the confirmed dialog of `id` must count on from: the last PRACK's,
    /// when the 2xx comes from the early dialog that was acknowledged.
    pub(super) fn early_cseq(&self, id: CallId, to_tag: &str) -> Option<u32> {
        let early = self.calls.get(&id)?.early.as_ref()?;
        (early.dialog.remote_tag == to_tag).then_some(early.dialog.local_cseq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse_message;

    fn response(extra: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n\
             From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:b@192.0.2.4>;tag=2\r\nCall-ID: c\r\n\
             CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn only_a_1xx_requiring_100rel_with_an_rseq_is_reliable() {
        let rseq = |extra: &str| {
            let bytes = response(extra);
            let message = parse_message(&bytes).expect("parses");
            reliable_rseq(&message)
        };
        assert_eq!(rseq("Require: 100rel\r\nRSeq: 7\r\n"), Some(7));
        assert_eq!(rseq("Require: timer, 100REL\r\nRSeq: 1\r\n"), Some(1));
        assert_eq!(rseq("RSeq: 7\r\n"), None, "no Require");
        assert_eq!(rseq("Require: 100rel\r\n"), None, "no RSeq");
        assert_eq!(rseq("Require: 100rel\r\nRSeq: 0\r\n"), None);
        assert_eq!(rseq("Require: 100rel\r\nRSeq: x\r\n"), None);
        assert_eq!(rseq("Supported: 100rel\r\nRSeq: 7\r\n"), None);
    }
}
