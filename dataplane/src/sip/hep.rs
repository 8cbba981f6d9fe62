//! HEP v3 (the Homer Encapsulation Protocol, also called EEP), sans-IO: a copy of one SIP
//! message (a datagram, or one framed from a TCP or TLS stream) wrapped with its addresses, ports and time, as Homer, sngrep and other capture
//! servers read it.
//!
//! A packet is the ASCII `HEP3`, its total length (u16, network order, header included), then
//! chunks. Each chunk is a vendor id (u16, 0 = generic), a type (u16), a length (u16, its
//! own 6-byte header included) and the value, all in network order. [`encode`] writes, in
//! order: IP family (type 1, u8: 2 = IPv4, 10 = IPv6), IP protocol (2, u8: 17 = UDP, 6 = TCP,
//! also for TLS, whose copy is the decrypted message),
//! source and destination address (3 and 4 for IPv4, 4 bytes each; 5 and 6 for IPv6, 16
//! bytes each), source and destination port (7 and 8, u16), timestamp seconds and
//! microseconds (9 and 10, u32), protocol type (11, u8: 1 = SIP), capture agent id (12,
//! u32), the optional auth key (14, the capture server's password) and the payload (15, the
//! SIP message as it was on the wire).
//!
//! [`Exporter`] adds what a core needs around it: a buffer reused for every packet, a cap
//! on packets per second, and counters.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use crate::sip::Transport;

/// The largest packet the 16-bit total length can describe.
pub const MAX_PACKET: usize = u16::MAX as usize;

/// Generic chunk types (vendor 0) written by [`encode`].
pub mod chunk {
    /// IP protocol family (u8).
    pub const IP_FAMILY: u16 = 0x0001;
    /// IP protocol id (u8).
    pub const IP_PROTOCOL: u16 = 0x0002;
    /// IPv4 source address (4 bytes).
    pub const IPV4_SOURCE: u16 = 0x0003;
    /// IPv4 destination address (4 bytes).
    pub const IPV4_DESTINATION: u16 = 0x0004;
    /// IPv6 source address (16 bytes).
    pub const IPV6_SOURCE: u16 = 0x0005;
    /// IPv6 destination address (16 bytes).
    pub const IPV6_DESTINATION: u16 = 0x0006;
    /// Source port (u16).
    pub const SOURCE_PORT: u16 = 0x0007;
    /// Destination port (u16).
    pub const DESTINATION_PORT: u16 = 0x0008;
    /// Timestamp, seconds since the Unix epoch (u32).
    pub const TIMESTAMP_SECONDS: u16 = 0x0009;
    /// Timestamp, microseconds within the second (u32).
    pub const TIMESTAMP_MICROS: u16 = 0x000a;
    /// Protocol of the payload (u8).
    pub const PROTOCOL_TYPE: u16 = 0x000b;
    /// Capture agent id (u32).
    pub const CAPTURE_AGENT_ID: u16 = 0x000c;
    /// Authentication key: the capture server's password (octets).
    pub const AUTH_KEY: u16 = 0x000e;
    /// The captured packet's payload (octets).
    pub const PAYLOAD: u16 = 0x000f;
}

/// `AF_INET` as HEP writes it.
pub const FAMILY_IPV4: u8 = 2;
/// `AF_INET6` as HEP writes it (Linux's value, which Homer and sngrep expect).
pub const FAMILY_IPV6: u8 = 10;
/// IP protocol number of UDP.
pub const PROTOCOL_UDP: u8 = 17;
/// IP protocol number of TCP (SIP over TCP, and over TLS: the copy is the decrypted message).
pub const PROTOCOL_TCP: u8 = 6;
/// HEP protocol type of SIP.
pub const PROTOCOL_TYPE_SIP: u8 = 1;

/// Bytes of a chunk's header: vendor, type, length.
const CHUNK_HEADER: usize = 6;
/// Bytes of the packet's header: `HEP3` and the total length.
const PACKET_HEADER: usize = 6;

/// One SIP message to encapsulate.
#[derive(Clone, Copy, Debug)]
pub struct Captured<'a> {
    /// What it travelled on: UDP, or TCP (also for TLS).
    pub transport: Transport,
    /// Who sent it.
    pub source: SocketAddr,
    /// Who it was for.
    pub destination: SocketAddr,
    /// When it was sent or received: seconds since the Unix epoch (see [`timestamp`]).
    pub seconds: u32,
    /// ... and microseconds within that second.
    pub micros: u32,
    /// The capture agent id, which tells capture servers apart the nodes that send to them.
    pub agent_id: u32,
    /// The capture server's password, sent as the auth key chunk; `None` = no chunk.
    pub password: Option<&'a [u8]>,
    /// The SIP message, as on the wire.
    pub payload: &'a [u8],
}

/// Why [`encode`] wrote nothing.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would be longer than a HEP packet's 16-bit length allows.
    #[error("a HEP packet of {needed} bytes is over the format's {MAX_PACKET}-byte limit")]
    TooLarge {
        /// The packet's length.
        needed: usize,
    },
    /// The caller's buffer is shorter than the packet.
    #[error("a HEP packet of {needed} bytes does not fit a {capacity}-byte buffer")]
    BufferTooSmall {
        /// The packet's length.
        needed: usize,
        /// The buffer's length.
        capacity: usize,
    },
}

/// Both addresses in one family: IPv4 when both are (IPv4-mapped IPv6 counts as IPv4),
/// otherwise IPv6 with any IPv4 address mapped.
enum Addresses {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl Addresses {
    fn of(source: IpAddr, destination: IpAddr) -> Self {
        match (source.to_canonical(), destination.to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Self::V4(s.octets(), d.octets()),
            (s, d) => Self::V6(v6(s), v6(d)),
        }
    }

    /// Bytes of the family chunk and the two address chunks.
    fn encoded_len(&self) -> usize {
        let address = match self {
            Self::V4(..) => 4,
            Self::V6(..) => 16,
        };
        CHUNK_HEADER + 1 + 2 * (CHUNK_HEADER + address)
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The length [`encode`] would write for `captured` (possibly over [`MAX_PACKET`]).
pub fn encoded_len(captured: &Captured<'_>) -> usize {
    let addresses = Addresses::of(captured.source.ip(), captured.destination.ip());
    PACKET_HEADER
        + addresses.encoded_len()
        + (CHUNK_HEADER + 1) // IP protocol
        + 2 * (CHUNK_HEADER + 2) // ports
        + 2 * (CHUNK_HEADER + 4) // timestamp
        + (CHUNK_HEADER + 1) // protocol type
        + (CHUNK_HEADER + 4) // capture agent id
        + captured.password.map_or(0, |p| CHUNK_HEADER + p.len())
        + CHUNK_HEADER
        + captured.payload.len()
}

/// Writes `captured` as one HEP v3 packet at the start of `out` and returns its length.
/// Nothing is allocated; on an error nothing useful was written.
pub fn encode(captured: &Captured<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let needed = encoded_len(captured);
    if needed > MAX_PACKET {
        return Err(EncodeError::TooLarge { needed });
    }
    let too_small = EncodeError::BufferTooSmall {
        needed,
        capacity: out.len(),
    };
    let mut w = Writer { out, at: 0 };
    w.put(b"HEP3").ok_or(too_small)?;
    w.put(&(needed as u16).to_be_bytes()).ok_or(too_small)?;
    let addresses = Addresses::of(captured.source.ip(), captured.destination.ip());
    let protocol = match captured.transport {
        Transport::Udp => PROTOCOL_UDP,
        Transport::Tcp | Transport::Tls => PROTOCOL_TCP,
    };
    let written = (|| {
        match &addresses {
            Addresses::V4(source, destination) => {
                w.chunk(chunk::IP_FAMILY, &[FAMILY_IPV4])?;
                w.chunk(chunk::IP_PROTOCOL, &[protocol])?;
                w.chunk(chunk::IPV4_SOURCE, source)?;
                w.chunk(chunk::IPV4_DESTINATION, destination)?;
            }
            Addresses::V6(source, destination) => {
                w.chunk(chunk::IP_FAMILY, &[FAMILY_IPV6])?;
                w.chunk(chunk::IP_PROTOCOL, &[protocol])?;
                w.chunk(chunk::IPV6_SOURCE, source)?;
                w.chunk(chunk::IPV6_DESTINATION, destination)?;
            }
        }
        w.chunk(chunk::SOURCE_PORT, &captured.source.port().to_be_bytes())?;
        w.chunk(
            chunk::DESTINATION_PORT,
            &captured.destination.port().to_be_bytes(),
        )?;
        w.chunk(chunk::TIMESTAMP_SECONDS, &captured.seconds.to_be_bytes())?;
        w.chunk(chunk::TIMESTAMP_MICROS, &captured.micros.to_be_bytes())?;
        w.chunk(chunk::PROTOCOL_TYPE, &[PROTOCOL_TYPE_SIP])?;
        w.chunk(chunk::CAPTURE_AGENT_ID, &captured.agent_id.to_be_bytes())?;
        if let Some(password) = captured.password {
            w.chunk(chunk::AUTH_KEY, password)?;
        }
        w.chunk(chunk::PAYLOAD, captured.payload)?;
        Some(w.at)
    })();
    written.ok_or(too_small)
}

/// `at` as HEP's seconds and microseconds since the Unix epoch; a time before the epoch is
/// 0, and seconds wrap after 2106 as the format's u32 does.
pub fn timestamp(at: SystemTime) -> (u32, u32) {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs() as u32, since.subsec_micros())
}

/// Writes into a slice, refusing (with `None`) whatever would not fit.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.at.checked_add(bytes.len())?;
        self.out.get_mut(self.at..end)?.copy_from_slice(bytes);
        self.at = end;
        Some(())
    }

    fn chunk(&mut self, kind: u16, value: &[u8]) -> Option<()> {
        let len = u16::try_from(CHUNK_HEADER + value.len()).ok()?;
        self.put(&0u16.to_be_bytes())?;
        self.put(&kind.to_be_bytes())?;
        self.put(&len.to_be_bytes())?;
        self.put(value)
    }
}

/// Where and how a core copies its SIP messages (`[sip] hep_capture` and the keys beside it).
#[derive(Clone, PartialEq, Eq)]
pub struct HepConfig {
    /// The capture server (Homer's heplify-server, sngrep -L, ...), over UDP.
    pub capture: SocketAddr,
    /// The capture agent id written into every packet.
    pub agent_id: u32,
    /// The capture server's password, sent in every packet; `None` = none.
    pub password: Option<String>,
    /// Packets a core sends per second at most; the rest are dropped and counted.
    pub max_per_second: u32,
}

impl fmt::Debug for HepConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HepConfig")
            .field("capture", &self.capture)
            .field("agent_id", &self.agent_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_per_second", &self.max_per_second)
            .finish()
    }
}

/// What an [`Exporter`] did so far.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct HepStats {
    /// Packets handed out to be sent.
    pub sent: u64,
    /// Messages not copied: over the per-second cap, or too large for a HEP packet.
    pub dropped: u64,
}

/// One core's HEP copier: encodes each message into a buffer kept for the core's life, at
/// most [`HepConfig::max_per_second`] a second (a fixed one-second window by the core's
/// clock).
pub struct Exporter {
    config: HepConfig,
    buf: Box<[u8]>,
    window_start: Option<Instant>,
    in_window: u32,
    stats: HepStats,
}

impl Exporter {
    /// An exporter with its buffer (64 KiB) allocated once, here.
    pub fn new(config: HepConfig) -> Self {
        Self {
            config,
            buf: vec![0; MAX_PACKET].into_boxed_slice(),
            window_start: None,
            in_window: 0,
            stats: HepStats::default(),
        }
    }

    /// Where the packets go.
    pub fn capture(&self) -> SocketAddr {
        self.config.capture
    }

    /// Counters so far.
    pub fn stats(&self) -> HepStats {
        self.stats
    }

    /// The HEP packet for `payload`, sent over `transport` from `source` to `destination` at
    /// wall-clock time `at`, or `None` (counted in [`HepStats::dropped`]) when this second's cap is reached
    /// or the message does not fit a HEP packet. `now` is the core's clock, for the cap.
    pub fn export(
        &mut self,
        now: Instant,
        at: SystemTime,
        transport: Transport,
        (source, destination): (SocketAddr, SocketAddr),
        payload: &[u8],
    ) -> Option<&[u8]> {
        let window_over = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if window_over {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.config.max_per_second {
            self.stats.dropped += 1;
            return None;
        }
        let (seconds, micros) = timestamp(at);
        let captured = Captured {
            transport,
            source,
            destination,
            seconds,
            micros,
            agent_id: self.config.agent_id,
            password: self.config.password.as_deref().map(str::as_bytes),
            payload,
        };
        match encode(&captured, &mut self.buf) {
            Ok(len) => {
                self.in_window += 1;
                self.stats.sent += 1;
                self.buf.get(..len)
            }
            Err(_) => {
                self.stats.dropped += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded chunk: (vendor, type, value).
    type Chunk = (u16, u16, Vec<u8>);

    /// Reads a packet back strictly: header, total length equal to the packet's, and chunks
    /// that tile the rest exactly.
    fn decode(packet: &[u8]) -> Result<Vec<Chunk>, String> {
        if packet.get(..4) != Some(b"HEP3".as_slice()) {
            return Err("no HEP3 magic".into());
        }
        let total = u16::from_be_bytes([packet[4], packet[5]]) as usize;
        if total != packet.len() {
            return Err(format!("total length {total} != {}", packet.len()));
        }
        let mut chunks = Vec::new();
        let mut at = 6;
        while at < packet.len() {
            let header = packet.get(at..at + 6).ok_or("truncated chunk header")?;
            let vendor = u16::from_be_bytes([header[0], header[1]]);
            let kind = u16::from_be_bytes([header[2], header[3]]);
            let len = u16::from_be_bytes([header[4], header[5]]) as usize;
            if len < 6 {
                return Err(format!("chunk {kind} length {len} < 6"));
            }
            let value = packet
                .get(at + 6..at + len)
                .ok_or("chunk runs past the end")?;
            chunks.push((vendor, kind, value.to_vec()));
            at += len;
        }
        Ok(chunks)
    }

    fn value(chunks: &[Chunk], kind: u16) -> Option<&[u8]> {
        chunks
            .iter()
            .find(|(vendor, k, _)| *vendor == 0 && *k == kind)
            .map(|(_, _, v)| v.as_slice())
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:a@192.0.2.2 SIP/2.0\r\n\r\n";

    fn captured<'a>(source: &str, destination: &str, password: Option<&'a [u8]>) -> Captured<'a> {
        Captured {
            transport: Transport::Udp,
            source: source.parse().expect("source"),
            destination: destination.parse().expect("destination"),
            seconds: 1_700_000_000,
            micros: 123_456,
            agent_id: 2001,
            password,
            payload: OPTIONS,
        }
    }

    #[test]
    fn an_ipv4_packet_is_byte_for_byte_what_the_format_says() {
        let mut expected: Vec<u8> = Vec::new();
        expected.extend_from_slice(b"HEP3");
        expected.extend_from_slice(&[0x00, 0x00]); // total length, patched below
        let chunks: [&[u8]; 12] = [
            &[0, 0, 0, 1, 0, 7, 2],                                    // family: AF_INET
            &[0, 0, 0, 2, 0, 7, 17],                                   // protocol: UDP
            &[0, 0, 0, 3, 0, 10, 192, 0, 2, 1],                        // source 192.0.2.1
            &[0, 0, 0, 4, 0, 10, 192, 0, 2, 2],                        // destination 192.0.2.2
            &[0, 0, 0, 7, 0, 8, 0x13, 0xc4],                           // source port 5060
            &[0, 0, 0, 8, 0, 8, 0x13, 0xce],                           // destination port 5070
            &[0, 0, 0, 9, 0, 10, 0x65, 0x53, 0xf1, 0x00],              // 1,700,000,000 s
            &[0, 0, 0, 10, 0, 10, 0x00, 0x01, 0xe2, 0x40],             // 123,456 µs
            &[0, 0, 0, 11, 0, 7, 1],                                   // protocol type: SIP
            &[0, 0, 0, 12, 0, 10, 0x00, 0x00, 0x07, 0xd1],             // agent id 2001
            &[0, 0, 0, 14, 0, 12, b's', b'e', b'c', b'r', b'e', b't'], // auth key
            &[0, 0, 0, 15, 0, 6 + OPTIONS.len() as u8],                // payload header
        ];
        for chunk in chunks {
            expected.extend_from_slice(chunk);
        }
        expected.extend_from_slice(OPTIONS);
        let total = expected.len() as u16;
        expected[4..6].copy_from_slice(&total.to_be_bytes());

        let packet = captured("192.0.2.1:5060", "192.0.2.2:5070", Some(b"secret"));
        let mut buf = [0u8; 512];
        let len = encode(&packet, &mut buf).expect("fits");
        assert_eq!(&buf[..len], expected.as_slice());
        assert_eq!(len, encoded_len(&packet));
    }

    #[test]
    fn a_message_over_tcp_or_tls_says_tcp() {
        let mut buf = [0u8; 512];
        for (transport, protocol) in [
            (Transport::Udp, PROTOCOL_UDP),
            (Transport::Tcp, PROTOCOL_TCP),
            (Transport::Tls, PROTOCOL_TCP),
        ] {
            let packet = Captured {
                transport,
                ..captured("192.0.2.1:5060", "192.0.2.2:5070", None)
            };
            let len = encode(&packet, &mut buf).expect("fits");
            let chunks = decode(&buf[..len]).expect("decodes");
            assert_eq!(
                value(&chunks, chunk::IP_PROTOCOL),
                Some([protocol].as_slice()),
                "{transport}"
            );
            assert_eq!(len, encoded_len(&packet));
        }
    }

    #[test]
    fn ipv6_uses_the_ipv6_chunks_and_mixed_families_are_mapped() {
        let mut buf = [0u8; 512];
        let len = encode(
            &captured("[2001:db8::1]:5060", "[2001:db8::2]:5070", None),
            &mut buf,
        )
        .expect("fits");
        let chunks = decode(&buf[..len]).expect("decodes");
        assert_eq!(
            value(&chunks, chunk::IP_FAMILY),
            Some([FAMILY_IPV6].as_slice())
        );
        let source: std::net::Ipv6Addr = "2001:db8::1".parse().expect("ip");
        assert_eq!(
            value(&chunks, chunk::IPV6_SOURCE),
            Some(source.octets().as_slice())
        );
        assert_eq!(value(&chunks, chunk::IPV4_SOURCE), None);
        assert_eq!(
            value(&chunks, chunk::AUTH_KEY),
            None,
            "no password, no chunk"
        );
        assert_eq!(value(&chunks, chunk::PAYLOAD), Some(OPTIONS));

        // An IPv4-mapped peer on a dual-stack socket is IPv4 on both sides.
        let len = encode(
            &captured("[::ffff:192.0.2.1]:5060", "192.0.2.2:5070", None),
            &mut buf,
        )
        .expect("fits");
        let chunks = decode(&buf[..len]).expect("decodes");
        assert_eq!(
            value(&chunks, chunk::IP_FAMILY),
            Some([FAMILY_IPV4].as_slice())
        );
        assert_eq!(
            value(&chunks, chunk::IPV4_SOURCE),
            Some([192, 0, 2, 1].as_slice())
        );

        // A real IPv6 peer with an IPv4 local address: both written as IPv6.
        let len = encode(
            &captured("[2001:db8::1]:5060", "192.0.2.2:5070", None),
            &mut buf,
        )
        .expect("fits");
        let chunks = decode(&buf[..len]).expect("decodes");
        let mapped = std::net::Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped();
        assert_eq!(
            value(&chunks, chunk::IPV6_DESTINATION),
            Some(mapped.octets().as_slice())
        );
    }

    #[test]
    fn the_vector_made_by_an_independent_encoder_matches() {
        // tests/vectors/hep/README.md says how this file was made (Python's struct module).
        let vector = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/hep/invite-ipv4-auth.bin"
        ));
        let payload = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/hep/invite.sip"
        ));
        let packet = Captured {
            transport: Transport::Udp,
            source: "10.0.0.1:5060".parse().expect("addr"),
            destination: "10.0.0.2:5080".parse().expect("addr"),
            seconds: 1_764_960_000,
            micros: 999_999,
            agent_id: 4_000_000_000,
            password: Some(b"homer"),
            payload,
        };
        let mut buf = vec![0u8; MAX_PACKET];
        let len = encode(&packet, &mut buf).expect("fits");
        assert_eq!(&buf[..len], vector.as_slice());
    }

    #[test]
    fn too_large_or_too_small_is_refused_without_panicking() {
        let payload = vec![b'x'; MAX_PACKET];
        let mut packet = captured("192.0.2.1:5060", "192.0.2.2:5070", None);
        packet.payload = &payload;
        let mut buf = vec![0u8; MAX_PACKET];
        assert!(matches!(
            encode(&packet, &mut buf),
            Err(EncodeError::TooLarge { .. })
        ));

        // The largest payload that fits, exactly.
        let overhead =
            encoded_len(&captured("192.0.2.1:5060", "192.0.2.2:5070", None)) - OPTIONS.len();
        packet.payload = &payload[..MAX_PACKET - overhead];
        let len = encode(&packet, &mut buf).expect("exactly fits");
        assert_eq!(len, MAX_PACKET);
        decode(&buf[..len]).expect("decodes");

        let packet = captured("192.0.2.1:5060", "192.0.2.2:5070", Some(b"pw"));
        let needed = encoded_len(&packet);
        for capacity in 0..needed {
            let mut small = vec![0u8; capacity];
            assert_eq!(
                encode(&packet, &mut small),
                Err(EncodeError::BufferTooSmall { needed, capacity })
            );
        }
    }

    #[test]
    fn any_input_decodes_back_to_what_went_in() {
        let mut seed = 0x1234_5678_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut buf = vec![0u8; MAX_PACKET];
        for _ in 0..500 {
            let r = next();
            let ip = |r: u64| -> IpAddr {
                if r.is_multiple_of(3) {
                    IpAddr::from((u128::from(r) << 64 | u128::from(r >> 3)).to_be_bytes())
                } else {
                    IpAddr::from(((r >> 8) as u32).to_be_bytes())
                }
            };
            let source = SocketAddr::new(ip(r), r as u16);
            let destination = SocketAddr::new(ip(next()), (r >> 16) as u16);
            let payload = vec![r as u8; (next() % 70_000) as usize];
            let password = vec![b'p'; (next() % 300) as usize];
            let packet = Captured {
                transport: if r.is_multiple_of(3) {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                source,
                destination,
                seconds: r as u32,
                micros: (r >> 32) as u32 % 1_000_000,
                agent_id: (r >> 7) as u32,
                password: r.is_multiple_of(2).then_some(password.as_slice()),
                payload: &payload,
            };
            match encode(&packet, &mut buf) {
                Ok(len) => {
                    let chunks = decode(&buf[..len]).expect("decodes");
                    assert_eq!(value(&chunks, chunk::PAYLOAD), Some(payload.as_slice()));
                    assert_eq!(
                        value(&chunks, chunk::SOURCE_PORT),
                        Some(source.port().to_be_bytes().as_slice())
                    );
                    assert_eq!(
                        value(&chunks, chunk::TIMESTAMP_SECONDS),
                        Some(packet.seconds.to_be_bytes().as_slice())
                    );
                    assert_eq!(value(&chunks, chunk::AUTH_KEY), packet.password);
                }
                Err(EncodeError::TooLarge { needed }) => assert!(needed > MAX_PACKET),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn timestamps_split_into_seconds_and_microseconds() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(timestamp(at), (1_700_000_000, 123_456));
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(timestamp(before), (0, 0));
    }

    fn exporter(max_per_second: u32, password: Option<&str>) -> Exporter {
        Exporter::new(HepConfig {
            capture: "127.0.0.1:9060".parse().expect("addr"),
            agent_id: 7,
            password: password.map(str::to_owned),
            max_per_second,
        })
    }

    #[test]
    fn the_exporter_caps_packets_per_second_and_counts_the_rest() {
        let mut exporter = exporter(3, Some("pw"));
        let (a, b) = (
            "192.0.2.1:5060".parse().expect("a"),
            "192.0.2.2:5070".parse().expect("b"),
        );
        let start = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5_000);
        for _ in 0..3 {
            let packet = exporter
                .export(start, wall, Transport::Udp, (a, b), OPTIONS)
                .expect("under the cap");
            let chunks = decode(packet).expect("decodes");
            assert_eq!(value(&chunks, chunk::AUTH_KEY), Some(b"pw".as_slice()));
            assert_eq!(
                value(&chunks, chunk::CAPTURE_AGENT_ID),
                Some(7u32.to_be_bytes().as_slice())
            );
            assert_eq!(
                value(&chunks, chunk::TIMESTAMP_MICROS),
                Some(5u32.to_be_bytes().as_slice())
            );
        }
        let later = start + Duration::from_millis(999);
        assert!(
            exporter
                .export(later, wall, Transport::Udp, (a, b), OPTIONS)
                .is_none()
        );
        assert_eq!(
            exporter.stats(),
            HepStats {
                sent: 3,
                dropped: 1
            }
        );
        // A new second, a new allowance.
        let next = start + Duration::from_secs(1);
        assert!(
            exporter
                .export(next, wall, Transport::Udp, (a, b), OPTIONS)
                .is_some()
        );
        // Too large for HEP: dropped and counted, without using the allowance.
        let huge = vec![b'x'; MAX_PACKET];
        assert!(
            exporter
                .export(next, wall, Transport::Udp, (a, b), &huge)
                .is_none()
        );
        assert_eq!(
            exporter.stats(),
            HepStats {
                sent: 4,
                dropped: 2
            }
        );
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let config = exporter(1, Some("hunter2")).config;
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
