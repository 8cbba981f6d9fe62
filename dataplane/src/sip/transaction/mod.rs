//! SIP transactions over UDP and reliable transports (RFC 3261 §17): the client INVITE and non-INVITE machines, and
//! the server machine for requests we answer. Each is sans-IO: fed responses, requests and
//! the time, it hands back datagrams through `poll_transmit` and deadlines through
//! `poll_timeout`.

mod client_invite;
mod client_non_invite;
mod server;
mod timer;

use std::time::Duration;

pub use client_invite::{AckTemplate, ClientInvite, InviteClientState};
pub use client_non_invite::{ClientNonInvite, NonInviteClientState};
pub use server::{ServerState, ServerTransaction};
pub use timer::{Timer, TimerTable};

/// Rewrites the top Via of a request we wrote from `SIP/2.0/TCP` to `SIP/2.0/UDP` in place
/// (the same length). False when its top Via is not TCP.
pub(crate) fn top_via_to_udp(request: &mut [u8]) -> bool {
    const VIA: &[u8] = b"\r\nVia: SIP/2.0/TCP ";
    let Some(at) = request.windows(VIA.len()).position(|w| w == VIA) else {
        return false;
    };
    let token = at + VIA.len() - 4;
    request[token..token + 3].copy_from_slice(b"UDP");
    true
}

/// RFC 3261 §17.1.1.1 timer values.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Timing {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timing {
    /// 64*T1: Timers B, F, H, J and M.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// What a client transaction does with a response.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ResponseAction {
    /// Pass it to the transaction user.
    Deliver,
    /// A retransmission the transaction handled itself.
    Absorb,
}
