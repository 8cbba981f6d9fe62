//! Early media on calls we dial (RFC 3960 §2, the gateway model): a provisional response to
//! our INVITE that carries an SDP answer (usually `183 Session Progress`, reliable with
//! 100rel or not) is reported as [`SipEvent::EarlyMedia`], so the owner can start the call's
//! media before the answer (announcements, ringback from the network, an application that
//! plays before the callee picks up).
//!
//! Once per call: the first early dialog that sends SDP is the one used. When a call forks,
//! other early dialogs' SDP is ignored (we have one media session per call; mixing forks is
//! RFC 3960 §3's application-server model, not done). The 2xx then reports `Answered` as
//! always; its SDP, when it has one, is the owner's to compare with the early one (same
//! `o=` version: nothing changed).

use std::net::SocketAddr;

use super::{Endpoint, SipEvent};
use crate::api::CallId;
use crate::sip::message::Message;

impl Endpoint {
    /// A 1xx (not 100) to call `id`'s current INVITE: early media when it carries the first
    /// SDP of the call's early dialogs.
    pub(super) fn early_media(&mut self, id: CallId, from: SocketAddr, response: &Message<'_>) {
        let body = response.body();
        if body.is_empty() {
            return;
        }
        // A body of another type (ISUP in multipart, say) is not an SDP answer.
        if response
            .content_type()
            .is_some_and(|kind| !kind.eq_ignore_ascii_case("application/sdp"))
        {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let live = !call.ended && call.cancel_reason.is_none() && call.dialog.is_none();
        if !live || call.incoming.is_some() || call.early_media.is_some() {
            return;
        }
        let to_tag = response.to().and_then(|to| to.tag()).unwrap_or("");
        call.early_media = Some(to_tag.to_owned());
        self.events.push_back(SipEvent::EarlyMedia {
            call: id,
            sdp: body.to_vec(),
            peer: from,
        });
    }
}
