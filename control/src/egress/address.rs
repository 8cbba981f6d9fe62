//! Which kind of address an IP is, for the outbound-connection policy.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address inside,
//! so `::ffff:127.0.0.1` is loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A kind of address the default policy keeps tenants' connections away from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1: this host (Outdial's own listeners among them).
    Loopback,
    /// 0.0.0.0/8, ::: "this host" as a destination.
    Unspecified,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10: private networks.
    Private,
    /// 100.64/10: carrier-grade NAT space, internal to providers.
    Shared,
    /// 169.254/16 (not the metadata address), fe80::/10.
    LinkLocal,
    /// 169.254.169.254, 169.254.170.2, fd00:ec2::254: cloud instance metadata services.
    Metadata,
    /// 224/4, ff00::/8.
    Multicast,
    /// Broadcast, documentation, benchmarking, IETF protocol assignments, 240/4, discard-only
    /// and other special-purpose ranges that no public service uses.
    Reserved,
}

impl AddressClass {
    /// Every class, in the order the configuration names them.
    pub const ALL: [Self; 8] = [
        Self::Loopback,
        Self::Unspecified,
        Self::Private,
        Self::Shared,
        Self::LinkLocal,
        Self::Metadata,
        Self::Multicast,
        Self::Reserved,
    ];

    /// The name in `egress.blocked` and in refusals (`egress.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Unspecified => "unspecified",
            Self::Private => "private",
            Self::Shared => "shared",
            Self::LinkLocal => "link_local",
            Self::Metadata => "metadata",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved",
        }
    }

    /// The rule that refuses it.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Loopback => "egress.loopback",
            Self::Unspecified => "egress.unspecified",
            Self::Private => "egress.private",
            Self::Shared => "egress.shared",
            Self::LinkLocal => "egress.link_local",
            Self::Metadata => "egress.metadata",
            Self::Multicast => "egress.multicast",
            Self::Reserved => "egress.reserved",
        }
    }

    /// Parses a name of [`Self::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The class of `ip`, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, d] = ip.octets();
    use AddressClass::*;
    Some(match (a, b, c, d) {
        (169, 254, 169, 254) | (169, 254, 170, 2) => Metadata,
        (127, ..) => Loopback,
        (0, ..) => Unspecified,
        (10, ..) | (192, 168, ..) => Private,
        (172, 16..=31, ..) => Private,
        (100, 64..=127, ..) => Shared,
        (169, 254, ..) => LinkLocal,
        (224..=239, ..) => Multicast,
        (255, 255, 255, 255) => Reserved,
        (240..=255, ..) => Reserved,
        (192, 0, 0 | 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => Reserved,
        (198, 18..=19, ..) => Reserved,
        (192, 88, 99, _) => Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    let s = ip.segments();
    // IPv4 inside: mapped, compatible, NAT64 well-known prefix, 6to4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4).or(None);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::from(embedded(s[6], s[7])));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::from(embedded(s[6], s[7])));
    }
    if s[0] == 0x2002 {
        return classify_v4(Ipv4Addr::from(embedded(s[1], s[2])));
    }
    if s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
        return Some(Metadata);
    }
    Some(match s[0] {
        0xfc00..=0xfdff => Private,
        0xfec0..=0xfeff => Private,
        0xfe80..=0xfebf => LinkLocal,
        0xff00..=0xffff => Multicast,
        0x2001 if s[1] == 0x0db8 => Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => Reserved,
        0x3fff if s[1] <= 0x0fff => Reserved,
        _ => return None,
    })
}

fn embedded(high: u16, low: u16) -> u32 {
    (u32::from(high) << 16) | u32::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_address_is_classified() {
        use AddressClass::*;
        let cases: &[(&str, Option<AddressClass>)] = &[
            ("127.0.0.1", Some(Loopback)),
            ("127.255.1.2", Some(Loopback)),
            ("0.0.0.0", Some(Unspecified)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(Shared)),
            ("100.100.100.200", Some(Shared)),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("224.0.0.1", Some(Multicast)),
            ("255.255.255.255", Some(Reserved)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.10", Some(Reserved)),
            ("198.51.100.1", Some(Reserved)),
            ("203.0.113.9", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("::1", Some(Loopback)),
            ("::", Some(Unspecified)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a00:1", Some(Private)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some(Loopback)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fd00:ec2::254", Some(Metadata)),
            ("fe80::1", Some(LinkLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
        ];
        for (text, want) in cases {
            let ip: IpAddr = text.parse().expect("an address");
            assert_eq!(classify(ip), *want, "{text}");
        }
    }
}
