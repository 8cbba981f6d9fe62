//! Socket addresses in the kernel's wire layout (`struct sockaddr_in` / `sockaddr_in6`),
//! written and read as bytes so no unsafe code is needed to build or parse them.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sizeof(struct sockaddr_in)`.
const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`, the largest address the loop handles.
pub(crate) const SOCKADDR_IN6_LEN: usize = 28;

/// A `sockaddr_in` or `sockaddr_in6`, aligned so the kernel may read it in place.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
pub(crate) struct RawSockAddr {
    bytes: [u8; SOCKADDR_IN6_LEN],
    len: u32,
}

impl RawSockAddr {
    /// An empty address (length 0).
    pub(crate) const fn zeroed() -> Self {
        Self {
            bytes: [0; SOCKADDR_IN6_LEN],
            len: 0,
        }
    }

    /// Encode `addr` for a socket of family `family_v6` (true = `AF_INET6`). An IPv4
    /// destination on an IPv6 socket is written as an IPv4-mapped address (RFC 4291 §2.5.5.2);
    /// an IPv4-mapped destination on an IPv4 socket is unmapped.
    pub(crate) fn encode(addr: SocketAddr, family_v6: bool) -> Self {
        let mut raw = Self::zeroed();
        match (addr, family_v6) {
            (SocketAddr::V4(v4), false) => raw.write_v4(v4),
            (SocketAddr::V4(v4), true) => {
                raw.write_v6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            (SocketAddr::V6(v6), false) => match v6.ip().to_ipv4_mapped() {
                Some(ip) => raw.write_v4(SocketAddrV4::new(ip, v6.port())),
                // The kernel refuses this with EAFNOSUPPORT; the send fails, nothing panics.
                None => raw.write_v6(v6),
            },
            (SocketAddr::V6(v6), true) => raw.write_v6(v6),
        }
        raw
    }

    fn write_v4(&mut self, addr: SocketAddrV4) {
        let family = libc::AF_INET as u16;
        self.bytes[0..2].copy_from_slice(&family.to_ne_bytes());
        self.bytes[2..4].copy_from_slice(&addr.port().to_be_bytes());
        self.bytes[4..8].copy_from_slice(&addr.ip().octets());
        self.len = SOCKADDR_IN_LEN as u32;
    }

    fn write_v6(&mut self, addr: SocketAddrV6) {
        let family = libc::AF_INET6 as u16;
        self.bytes[0..2].copy_from_slice(&family.to_ne_bytes());
        self.bytes[2..4].copy_from_slice(&addr.port().to_be_bytes());
        self.bytes[4..8].copy_from_slice(&addr.flowinfo().to_ne_bytes());
        self.bytes[8..24].copy_from_slice(&addr.ip().octets());
        self.bytes[24..28].copy_from_slice(&addr.scope_id().to_ne_bytes());
        self.len = SOCKADDR_IN6_LEN as u32;
    }

    /// Pointer to the address bytes, for `msghdr.msg_name`.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.bytes.as_mut_ptr().cast()
    }

    /// The address length, for `msghdr.msg_namelen`.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }
}

/// Parse a `sockaddr_in` or `sockaddr_in6` as the kernel wrote it. `None` if the family is
/// neither or the bytes are too short for it.
pub(crate) fn decode(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    if i32::from(family) == libc::AF_INET {
        let octets: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(octets),
            port,
        )))
    } else if i32::from(family) == libc::AF_INET6 {
        let flowinfo = u32::from_ne_bytes(bytes.get(4..8)?.try_into().ok()?);
        let octets: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
        let scope_id = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(octets),
            port,
            flowinfo,
            scope_id,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(addr: SocketAddr, family_v6: bool) -> Option<SocketAddr> {
        let raw = RawSockAddr::encode(addr, family_v6);
        decode(&raw.bytes[..raw.len() as usize])
    }

    #[test]
    fn ipv4_round_trips() {
        let addr: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        assert_eq!(round_trip(addr, false), Some(addr));
        assert_eq!(RawSockAddr::encode(addr, false).len(), 16);
    }

    #[test]
    fn ipv6_round_trips_with_scope_and_flowinfo() {
        let addr = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5061,
            0x1234,
            3,
        ));
        assert_eq!(round_trip(addr, true), Some(addr));
        assert_eq!(RawSockAddr::encode(addr, true).len(), 28);
    }

    #[test]
    fn ipv4_on_ipv6_socket_is_mapped_and_back() {
        let v4: SocketAddr = "198.51.100.1:7000".parse().unwrap();
        let mapped = round_trip(v4, true).unwrap();
        assert_eq!(
            mapped,
            "[::ffff:198.51.100.1]:7000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(round_trip(mapped, false), Some(v4));
    }

    #[test]
    fn matches_std_layout_as_seen_by_the_kernel() {
        // Bind a real socket and read its name with getsockname through std, then compare
        // with what our encoder produces for the same address: port and address bytes.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let raw = RawSockAddr::encode(local, false);
        assert_eq!(&raw.bytes[2..4], &local.port().to_be_bytes());
        assert_eq!(&raw.bytes[4..8], &[127, 0, 0, 1]);
    }

    #[test]
    fn short_or_unknown_input_is_refused() {
        let addr: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let raw = RawSockAddr::encode(addr, true);
        for len in 0..SOCKADDR_IN6_LEN {
            assert_eq!(decode(&raw.bytes[..len]), None, "length {len}");
        }
        let mut unknown = raw.bytes;
        unknown[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(decode(&unknown), None);
    }
}
