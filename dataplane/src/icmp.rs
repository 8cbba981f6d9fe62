//! ICMP errors for datagrams we sent (Linux `IP_RECVERR`), as plain values.
//!
//! The core loop reads them from a socket's error queue (`MSG_ERRQUEUE`) and hands them to
//! its driver with the quoted start of the datagram that failed; this module only says
//! which ones mean "nobody is there" and in what words. Too-big, time-exceeded and
//! locally generated errors are not reported: they do not mean the peer is gone.

use std::net::{IpAddr, SocketAddr};

/// Why the destination could not be reached.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Unreachable {
    /// The host answered that nothing listens on that port (or protocol).
    Port,
    /// No route to the host, or the host does not answer address resolution.
    Host,
    /// No route to the network.
    Network,
    /// A router or firewall refused it (administratively prohibited).
    Prohibited,
}

impl Unreachable {
    /// Words for a call's reason, e.g. "ICMP port unreachable (nothing listens there)".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Port => "ICMP port unreachable (nothing listens there)",
            Self::Host => "ICMP host unreachable",
            Self::Network => "ICMP network unreachable",
            Self::Prohibited => "ICMP communication administratively prohibited",
        }
    }
}

/// `SO_EE_ORIGIN_ICMP`.
const ORIGIN_ICMP: u8 = 2;
/// `SO_EE_ORIGIN_ICMP6`.
const ORIGIN_ICMP6: u8 = 3;

/// An ICMP error the kernel queued for a datagram this socket sent.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct IcmpError {
    /// Where the failed datagram was going.
    pub destination: SocketAddr,
    /// What the ICMP message said.
    pub reason: Unreachable,
    /// Who sent the ICMP message (the host itself, or a router on the way), if known.
    pub reporter: Option<IpAddr>,
}

impl IcmpError {
    /// Classifies the fields of a `struct sock_extended_err`; `None` for anything that does
    /// not mean the destination is unreachable (packet too big, TTL exceeded, local errors).
    pub fn classify(
        destination: SocketAddr,
        origin: u8,
        icmp_type: u8,
        code: u8,
        reporter: Option<IpAddr>,
    ) -> Option<Self> {
        let reason = match (origin, icmp_type) {
            // RFC 792 destination unreachable; RFC 1812 §5.2.7.1 codes.
            (ORIGIN_ICMP, 3) => match code {
                2 | 3 => Unreachable::Port,
                1 | 5 | 7 | 8 | 10 | 12 => Unreachable::Host,
                0 | 6 | 11 => Unreachable::Network,
                9 | 13..=15 => Unreachable::Prohibited,
                _ => return None, // 4: fragmentation needed (path MTU), not a dead peer
            },
            // RFC 4443 §3.1 destination unreachable.
            (ORIGIN_ICMP6, 1) => match code {
                4 => Unreachable::Port,
                3 => Unreachable::Host,
                0 => Unreachable::Network,
                1 | 2 | 5 | 6 => Unreachable::Prohibited,
                _ => return None,
            },
            _ => return None,
        };
        Some(Self {
            destination,
            reason,
            reporter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5070);

    #[test]
    fn unreachable_codes_are_classified_and_the_rest_ignored() {
        let kind =
            |origin, t, code| IcmpError::classify(TO, origin, t, code, None).map(|e| e.reason);
        assert_eq!(kind(ORIGIN_ICMP, 3, 3), Some(Unreachable::Port));
        assert_eq!(kind(ORIGIN_ICMP, 3, 1), Some(Unreachable::Host));
        assert_eq!(kind(ORIGIN_ICMP, 3, 0), Some(Unreachable::Network));
        assert_eq!(kind(ORIGIN_ICMP, 3, 13), Some(Unreachable::Prohibited));
        assert_eq!(kind(ORIGIN_ICMP, 3, 4), None, "fragmentation needed");
        assert_eq!(kind(ORIGIN_ICMP, 11, 0), None, "TTL exceeded");
        assert_eq!(kind(ORIGIN_ICMP6, 1, 4), Some(Unreachable::Port));
        assert_eq!(kind(ORIGIN_ICMP6, 1, 3), Some(Unreachable::Host));
        assert_eq!(kind(ORIGIN_ICMP6, 2, 0), None, "packet too big");
        assert_eq!(kind(1, 3, 3), None, "a local error is no ICMP message");
        assert!(Unreachable::Port.describe().contains("nothing listens"));
    }
}
