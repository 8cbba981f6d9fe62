//! Which source a call's RTP is accepted from, and where ours is sent.
//!
//! By default ([`SourcePolicy::Sdp`]) only the address and port the peer's SDP named are
//! heard: a stranger on the callee's host (another port) or anywhere else is dropped, so it
//! can neither inject keys nor make the call deaf.
//!
//! For peers behind NAT, whose packets come from another address than their SDP names,
//! [`SourcePolicy::Latch`] is symmetric latching: the call latches to the first source that
//! sends well-formed RTP with a negotiated payload type, from the signalling peer's IP only,
//! and from then on hears only that address, port and SSRC, and sends its own RTP there.
//! A source other than the SDP's must first send [`MIN_SEQUENTIAL`] packets in sequence
//! with one SSRC (RFC 3550 §A.1 probation), so a burst of random datagrams cannot latch the
//! call. Nothing re-latches mid-call.
//!
//! Every check is a comparison of a few integers: nothing is allocated or hashed per packet.

use std::net::{IpAddr, SocketAddr};

use super::packet::Header;

/// Packets in sequence a source other than the SDP's sends before the call latches to it.
pub const MIN_SEQUENTIAL: u16 = 2;

/// Which sources a call hears (chosen per call on the dial command).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SourcePolicy {
    /// Only the address and port of the peer's SDP (the default).
    Sdp,
    /// Symmetric latching for peers behind NAT: latch to the first source on
    /// `signalling_ip` that sends well-formed RTP with a negotiated payload type.
    Latch {
        /// The IP the call's signalling came from (the source of the 2xx to our INVITE).
        signalling_ip: IpAddr,
    },
}

/// What to do with one received datagram.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// Hear it.
    Accept,
    /// Drop it for its source (address, port or SSRC).
    Foreign,
    /// From an acceptable address, but not RTP the call can use before latching.
    Unusable,
}

/// A source on probation: the last packet it sent.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    sequence_number: u16,
    seen: u16,
}

/// The source check of one media session.
#[derive(Clone, Copy, Debug)]
pub struct SourceGuard {
    sdp: SocketAddr,
    policy: SourcePolicy,
    latched: Option<(SocketAddr, u32)>,
    candidate: Option<Candidate>,
}

impl SourceGuard {
    /// A guard for a peer whose SDP named `sdp`.
    pub fn new(sdp: SocketAddr, policy: SourcePolicy) -> Self {
        Self {
            sdp,
            policy,
            latched: None,
            candidate: None,
        }
    }

    /// Whether a datagram from `from` may be worth parsing at all. Cheap: an address
    /// comparison. False means [`Verdict::Foreign`] without looking at the bytes.
    pub fn admits_address(&self, from: SocketAddr) -> bool {
        match (self.policy, self.latched) {
            (_, Some((latched, _))) => same(from, latched),
            (SourcePolicy::Sdp, None) => same(from, self.sdp),
            (SourcePolicy::Latch { signalling_ip }, None) => {
                same(from, self.sdp) || same_ip(from.ip(), signalling_ip)
            }
        }
    }

    /// Judges a well-formed RTP packet from `from` (which passed
    /// [`admits_address`](Self::admits_address)); `negotiated` says whether its payload
    /// type is one the call negotiated. May latch.
    pub fn judge(&mut self, from: SocketAddr, header: &Header, negotiated: bool) -> Verdict {
        if let Some((latched, ssrc)) = self.latched {
            return if same(from, latched) && header.ssrc == ssrc {
                Verdict::Accept
            } else {
                Verdict::Foreign
            };
        }
        let SourcePolicy::Latch { .. } = self.policy else {
            return Verdict::Accept;
        };
        if !negotiated {
            return Verdict::Unusable;
        }
        if same(from, self.sdp) {
            self.latched = Some((from, header.ssrc));
            self.candidate = None;
            return Verdict::Accept;
        }
        let next = match self.candidate {
            Some(c)
                if c.from == from
                    && c.ssrc == header.ssrc
                    && header.sequence_number == c.sequence_number.wrapping_add(1) =>
            {
                Candidate {
                    sequence_number: header.sequence_number,
                    seen: c.seen.saturating_add(1),
                    ..c
                }
            }
            _ => Candidate {
                from,
                ssrc: header.ssrc,
                sequence_number: header.sequence_number,
                seen: 1,
            },
        };
        if next.seen >= MIN_SEQUENTIAL {
            self.latched = Some((from, header.ssrc));
            self.candidate = None;
            Verdict::Accept
        } else {
            self.candidate = Some(next);
            Verdict::Unusable
        }
    }

    /// Where our RTP goes: the latched source once there is one, else the SDP's address.
    pub fn send_to(&self) -> SocketAddr {
        self.latched.map_or(self.sdp, |(from, _)| from)
    }

    /// The source the call latched to, if it did.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched.map(|(from, _)| from)
    }
}

/// A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6: compare canonically.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

pub(super) fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && same_ip(a.ip(), b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5)), 4000);
    const PUBLIC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

    fn header(ssrc: u32, sequence_number: u16) -> Header {
        Header {
            marker: false,
            payload_type: 0,
            sequence_number,
            timestamp: 0,
            ssrc,
        }
    }

    fn at(ip: IpAddr, port: u16) -> SocketAddr {
        SocketAddr::new(ip, port)
    }

    #[test]
    fn by_default_only_the_sdp_address_and_port_are_heard() {
        let mut guard = SourceGuard::new(SDP, SourcePolicy::Sdp);
        assert!(!guard.admits_address(at(SDP.ip(), 4002)), "another port");
        assert!(!guard.admits_address(at(PUBLIC, 4000)), "another IP");
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:4000".parse().unwrap();
        assert!(guard.admits_address(mapped));
        assert_eq!(guard.judge(mapped, &header(1, 1), false), Verdict::Accept);
        assert_eq!(guard.send_to(), SDP);
        assert_eq!(guard.latched(), None, "the default never latches");
    }

    #[test]
    fn latching_needs_the_signalling_ip_a_negotiated_type_and_two_in_sequence() {
        let policy = SourcePolicy::Latch {
            signalling_ip: PUBLIC,
        };
        let mut guard = SourceGuard::new(SDP, policy);
        let nat = at(PUBLIC, 31_000);
        assert!(!guard.admits_address(at(IpAddr::from([198, 51, 100, 1]), 31_000)));
        assert!(guard.admits_address(nat));
        assert_eq!(guard.judge(nat, &header(7, 10), false), Verdict::Unusable);
        assert_eq!(guard.judge(nat, &header(7, 11), true), Verdict::Unusable);
        // Out of sequence: probation starts again.
        assert_eq!(guard.judge(nat, &header(7, 13), true), Verdict::Unusable);
        // Another SSRC from the same port: starts again too.
        assert_eq!(guard.judge(nat, &header(8, 14), true), Verdict::Unusable);
        assert_eq!(guard.send_to(), SDP, "not latched yet");
        assert_eq!(guard.judge(nat, &header(8, 15), true), Verdict::Accept);
        assert_eq!(guard.latched(), Some(nat));
        assert_eq!(
            guard.send_to(),
            nat,
            "symmetric: ours go where theirs come from"
        );
        // Latched: only that address, port and SSRC, ever.
        assert!(!guard.admits_address(SDP));
        assert!(!guard.admits_address(at(PUBLIC, 31_002)));
        assert_eq!(guard.judge(nat, &header(9, 16), true), Verdict::Foreign);
        assert_eq!(guard.judge(nat, &header(8, 99), false), Verdict::Accept);
    }

    #[test]
    fn the_sdp_address_latches_at_once_and_a_stranger_never_takes_over() {
        let policy = SourcePolicy::Latch {
            signalling_ip: SDP.ip(),
        };
        let mut guard = SourceGuard::new(SDP, policy);
        let stranger = at(SDP.ip(), 5000);
        assert_eq!(
            guard.judge(stranger, &header(1, 1), true),
            Verdict::Unusable
        );
        assert_eq!(guard.judge(SDP, &header(2, 50), true), Verdict::Accept);
        assert_eq!(guard.latched(), Some(SDP));
        assert!(!guard.admits_address(stranger));
        assert_eq!(guard.judge(stranger, &header(1, 2), true), Verdict::Foreign);
        assert_eq!(guard.send_to(), SDP);
    }
}
