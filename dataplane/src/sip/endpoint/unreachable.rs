//! A dead callee host: an ICMP error for our INVITE (RFC 3261 §8.1.3.1: a transport error
//! is treated as a 503 — here it ends the attempt at once, with a reason that says so,
//! instead of waiting 32 s for Timer B).
//!
//! The error is matched to the call by the branch of the Via in the quoted datagram, a
//! random token only we and the callee know: an ICMP message forged without having seen
//! our INVITE matches nothing. It only counts before any response to the INVITE arrived.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Endpoint, Owner};
use crate::api::{Disposition, Outcome};
use crate::icmp::{IcmpError, Unreachable};
use crate::sip::transport::Transport;

/// How much of the quoted datagram is searched for the branch.
const QUOTE_SEARCH: usize = 1024;

impl Endpoint {
    /// Takes in an ICMP error for a datagram this endpoint sent, with the start of that
    /// datagram as the ICMP message quoted it. If it was one of our INVITEs still waiting
    /// for its first response, the call ends `Failed` now. Anything else is ignored.
    pub fn handle_icmp_error(&mut self, error: &IcmpError, quoted: &[u8]) {
        self.fail_unreached(quoted, |destination| unreachable_reason(destination, error));
    }

    /// A stream transport could not carry `sent`, a request this endpoint sent: the
    /// connection to its peer was refused, reset or timed out before it carried anything
    /// back. A request that went over TCP only for its size (RFC 3261 §18.1.1,
    /// `udp_mtu_switch`) goes again over UDP. Otherwise, as with an ICMP error, an INVITE
    /// still waiting for its first response ends its call now, `Unreachable`, with `why`
    /// (e.g. "TCP connection refused") in the reason.
    pub fn handle_transport_failure(&mut self, now: Instant, sent: &[u8], why: &str) {
        if self.fall_back_to_udp(now, sent) {
            return;
        }
        self.fail_unreached(sent, |destination| format!("{destination} {why}"));
    }

    /// RFC 3261 §18.1.1: when a request moved from UDP to TCP for its size cannot get a
    /// connection, the element retries it over UDP. True when `sent` was such a request of
    /// ours, still unanswered, and is now queued again over UDP.
    fn fall_back_to_udp(&mut self, now: Instant, sent: &[u8]) -> bool {
        let Some(branch) = via_branch(sent) else {
            return false;
        };
        let Some(&id) = self.by_branch.get(branch) else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let fell_back = if call.invite_branch == branch {
            // Only a call whose INVITE was bound for UDP had it switched.
            let switched = call.transport == Transport::Udp && !call.transport_named;
            // A second report of the same TCP INVITE finds it on UDP already.
            let on_udp = call.invite.transport() == Transport::Udp;
            let fell_back = switched && !on_udp && call.invite.fall_back_to_udp(now);
            if fell_back {
                // Its CANCEL reuses the INVITE's top Via.
                call.via = call.via.replacen("SIP/2.0/TCP", "SIP/2.0/UDP", 1);
            }
            fell_back || (switched && on_udp)
        } else {
            let in_dialog_udp = call
                .dialog
                .as_ref()
                .is_some_and(|d| d.next_hop_transport() == (Transport::Udp, false));
            let early_udp = call
                .early
                .as_ref()
                .is_some_and(|e| e.dialog.next_hop_transport() == (Transport::Udp, false));
            let switched = in_dialog_udp || early_udp;
            let non_invite = call
                .byes
                .iter_mut()
                .chain(call.pracks.iter_mut())
                .find(|(b, _)| b == branch)
                .map(|(_, t)| t);
            match (switched, non_invite) {
                (true, Some(transaction)) => {
                    transaction.transport() == Transport::Udp || transaction.fall_back_to_udp(now)
                }
                (true, None) => call
                    .refresh_invite
                    .as_mut()
                    .filter(|r| r.branch == branch)
                    .is_some_and(|r| r.transaction.fall_back_to_udp(now)),
                (false, _) => false,
            }
        };
        if fell_back {
            tracing::debug!(
                call = id.0,
                "no TCP connection for a large request; sent over UDP"
            );
            self.touch(Owner::Call(id));
        }
        fell_back
    }

    fn fail_unreached(&mut self, quoted: &[u8], reason: impl FnOnce(SocketAddr) -> String) {
        let Some(branch) = via_branch(quoted) else {
            return;
        };
        let Some(&id) = self.by_branch.get(branch) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let waiting = call.invite_branch == branch
            && !call.ended
            && call.dialog.is_none()
            && call.final_status.is_none()
            && call.invite.state() == crate::sip::transaction::InviteClientState::Calling;
        if !waiting {
            return;
        }
        call.invite.terminate();
        let outcome = match call.cancel_reason {
            Some(_) => call.cancel_outcome(None),
            None => Outcome {
                disposition: Disposition::Unreachable,
                sip_status: None,
                reason: reason(call.destination),
            },
        };
        self.end(id, outcome);
        self.touch(Owner::Call(id));
    }
}

/// The call's reason, e.g. `127.0.0.1:5999 refused the INVITE: ICMP port unreachable
/// (nothing listens there)`.
fn unreachable_reason(destination: SocketAddr, error: &IcmpError) -> String {
    let verdict = match error.reason {
        Unreachable::Port => "refused the INVITE",
        _ => "is unreachable",
    };
    let reporter = error
        .reporter
        .filter(|ip| ip.to_canonical() != destination.ip().to_canonical())
        .map(|ip| format!(" (reported by {ip})"))
        .unwrap_or_default();
    format!(
        "{destination} {verdict}: {}{reporter}",
        error.reason.describe()
    )
}

/// The branch parameter of the first `branch=` in `datagram` (our requests carry one Via,
/// before any other header with a branch).
fn via_branch(datagram: &[u8]) -> Option<&str> {
    let head = datagram.get(..datagram.len().min(QUOTE_SEARCH))?;
    let at = head.windows(7).position(|w| w == b"branch=")? + 7;
    let rest = head.get(at..)?;
    let end = rest
        .iter()
        .position(|b| matches!(b, b';' | b'\r' | b'\n' | b' ' | b',' | b'\t'))
        .unwrap_or(rest.len());
    let branch = std::str::from_utf8(rest.get(..end)?).ok()?;
    branch.starts_with("z9hG4bK").then_some(branch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_is_read_from_the_quoted_via_even_when_cut_short() {
        let invite =
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKabc;rport\r\n";
        assert_eq!(via_branch(invite), Some("z9hG4bKabc"));
        assert_eq!(via_branch(&invite[..invite.len() - 8]), Some("z9hG4bKabc"));
        assert_eq!(
            via_branch(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x;bra"),
            None
        );
        assert_eq!(via_branch(b"Via: SIP/2.0/UDP x;branch=old-style\r\n"), None);
        assert_eq!(via_branch(b""), None);
    }
}
