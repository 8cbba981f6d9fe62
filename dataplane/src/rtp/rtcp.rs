//! RTCP wire types (RFC 3550 §6): compound packets read from a datagram and built into the
//! caller's buffer, without allocating.
//!
//! Reading: [`Compound::parse`] checks a whole compound first, as RFC 3550 §A.2 asks (version
//! 2 everywhere, the first packet an SR or RR, padding only on the last, every length inside
//! the datagram, every SR/RR/SDES/BYE body consistent with its count), and refuses it with an
//! [`RtcpError`] otherwise. Once it returned `Ok`, [`Compound::packets`] yields each packet;
//! APP, XR and unknown packet types are skipped by their length ([`Packet::Other`]). Every
//! access is a checked slice: no input can make this module panic.
//!
//! Writing: [`Report::emit`] writes an SR (or an RR) with at most one report block, an SDES
//! with our CNAME and optionally a BYE: what a two-party call sends (RFC 3550 §6.1).

/// Largest datagram read as RTCP: an Ethernet MTU.
pub const MAX_DATAGRAM_LEN: usize = 1500;

/// Packet type of a sender report (RFC 3550 §6.4.1).
pub const SR: u8 = 200;
/// Packet type of a receiver report (RFC 3550 §6.4.2).
pub const RR: u8 = 201;
/// Packet type of a source description (RFC 3550 §6.5).
pub const SDES: u8 = 202;
/// Packet type of a goodbye (RFC 3550 §6.6).
pub const BYE: u8 = 203;

/// SDES item type of the canonical name (RFC 3550 §6.5.1).
const CNAME: u8 = 1;
/// Octets of the common header (V, P, count, PT, length).
const HEADER_LEN: usize = 4;
/// Octets of the sender info in an SR (NTP, RTP timestamp, packet and octet counts).
const SENDER_INFO_LEN: usize = 20;
/// Octets of one report block.
const BLOCK_LEN: usize = 24;

/// Why a datagram is not a usable RTCP compound. Carries no data: it is counted, not logged.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum RtcpError {
    /// Shorter than one RTCP header, or a length past the end of the datagram.
    #[error("RTCP packet runs past the end of the datagram")]
    Truncated,
    /// Longer than [`MAX_DATAGRAM_LEN`].
    #[error("datagram longer than an Ethernet MTU")]
    TooLong,
    /// A version field is not 2.
    #[error("RTCP version is not 2")]
    Version,
    /// The compound does not start with an SR or RR (RFC 3550 §6.1).
    #[error("RTCP compound does not start with a sender or receiver report")]
    NotReport,
    /// Padding on a packet other than the last, or more padding than the packet holds.
    #[error("RTCP padding is misplaced or longer than its packet")]
    Padding,
    /// A body shorter than its count says (report blocks, SDES chunks, BYE sources).
    #[error("RTCP packet body does not match its count")]
    Body,
}

/// The sender info of an SR (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SenderInfo {
    /// Wall-clock time of the report, NTP format (seconds since 1900 << 32 | fraction).
    pub ntp_timestamp: u64,
    /// The same instant in the sender's RTP timestamp units.
    pub rtp_timestamp: u32,
    /// RTP packets sent since the stream started (modulo 2^32).
    pub packet_count: u32,
    /// RTP payload octets sent since the stream started (modulo 2^32).
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Packets lost since reception started: 24-bit signed (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | highest).
    pub extended_highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the source's last SR, or 0.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s, or 0.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> Option<Self> {
        let lost = u32::from_be_bytes([0, *b.get(5)?, *b.get(6)?, *b.get(7)?]);
        // Sign-extend the 24-bit field.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        Some(Self {
            ssrc: be32(b, 0)?,
            fraction_lost: *b.get(4)?,
            cumulative_lost,
            extended_highest_sequence: be32(b, 8)?,
            jitter: be32(b, 12)?,
            last_sr: be32(b, 16)?,
            delay_since_last_sr: be32(b, 20)?,
        })
    }

    fn write(&self, b: &mut [u8]) -> Option<()> {
        let b = b.get_mut(..BLOCK_LEN)?;
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32;
        b[4] = self.fraction_lost;
        b[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
        b[8..12].copy_from_slice(&self.extended_highest_sequence.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        b[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
        Some(())
    }
}

/// The report blocks of an SR or RR, read on demand.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    /// How many blocks there are.
    pub fn len(&self) -> usize {
        self.data.len() / BLOCK_LEN
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let block = self.data.get(..BLOCK_LEN)?;
        self.data = self.data.get(BLOCK_LEN..).unwrap_or_default();
        ReportBlock::read(block)
    }
}

/// One packet of a checked compound.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Packet<'a> {
    /// SR: the sender's SSRC, its sender info and report blocks.
    SenderReport {
        /// The sender.
        ssrc: u32,
        /// What and when it sent.
        info: SenderInfo,
        /// What it received.
        blocks: ReportBlocks<'a>,
    },
    /// RR: the reporter's SSRC and report blocks.
    ReceiverReport {
        /// The reporter.
        ssrc: u32,
        /// What it received.
        blocks: ReportBlocks<'a>,
    },
    /// SDES: the CNAME of the first chunk, when it has one.
    SourceDescription {
        /// The first chunk's source, if there is a chunk.
        ssrc: Option<u32>,
        /// That chunk's CNAME.
        cname: Option<&'a [u8]>,
    },
    /// BYE: the first source leaving, if any, and how many leave.
    Goodbye {
        /// The first SSRC listed.
        ssrc: Option<u32>,
        /// How many sources are listed.
        count: u8,
    },
    /// APP, XR or a type this reader does not know: skipped by its length.
    Other {
        /// Its packet type.
        packet_type: u8,
    },
}

/// A checked RTCP compound packet, borrowed from the datagram.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Compound<'a> {
    data: &'a [u8],
}

impl<'a> Compound<'a> {
    /// Checks `datagram` as a compound RTCP packet (RFC 3550 §6.1, §A.2).
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtcpError> {
        if datagram.len() > MAX_DATAGRAM_LEN {
            return Err(RtcpError::TooLong);
        }
        if datagram.len() < HEADER_LEN {
            return Err(RtcpError::Truncated);
        }
        let mut rest = datagram;
        let mut first = true;
        while !rest.is_empty() {
            let (packet, after) = split_packet(rest)?;
            if first
                && !matches!(
                    packet,
                    Packet::SenderReport { .. } | Packet::ReceiverReport { .. }
                )
            {
                return Err(RtcpError::NotReport);
            }
            first = false;
            rest = after;
        }
        Ok(Self { data: datagram })
    }

    /// The packets, in order.
    pub fn packets(&self) -> Packets<'a> {
        Packets { rest: self.data }
    }
}

/// The packets of a [`Compound`].
#[derive(Clone, Debug)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        // The compound was checked whole: an error here cannot happen, and ends the walk.
        let (packet, rest) = split_packet(self.rest).ok()?;
        self.rest = rest;
        Some(packet)
    }
}

/// Reads the packet at the start of `data`; returns it and what follows it.
fn split_packet(data: &[u8]) -> Result<(Packet<'_>, &[u8]), RtcpError> {
    let (&first, _) = data.split_first().ok_or(RtcpError::Truncated)?;
    if first >> 6 != 2 {
        return Err(RtcpError::Version);
    }
    let padded = first & 0x20 != 0;
    let count = first & 0x1f;
    let packet_type = *data.get(1).ok_or(RtcpError::Truncated)?;
    let words = usize::from(be16(data, 2).ok_or(RtcpError::Truncated)?);
    let len = (words + 1) * 4;
    let packet = data.get(..len).ok_or(RtcpError::Truncated)?;
    let rest = data.get(len..).unwrap_or_default();
    let mut body = packet.get(HEADER_LEN..).unwrap_or_default();
    if padded {
        // RFC 3550 §A.2: only the last packet of a compound may be padded.
        if !rest.is_empty() {
            return Err(RtcpError::Padding);
        }
        let pad = usize::from(*body.last().ok_or(RtcpError::Padding)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::Padding);
        }
        body = body.get(..body.len() - pad).unwrap_or_default();
    }
    let packet = match packet_type {
        SR => {
            let blocks = usize::from(count) * BLOCK_LEN;
            let ssrc = be32(body, 0).ok_or(RtcpError::Body)?;
            let info = SenderInfo {
                ntp_timestamp: (u64::from(be32(body, 4).ok_or(RtcpError::Body)?) << 32)
                    | u64::from(be32(body, 8).ok_or(RtcpError::Body)?),
                rtp_timestamp: be32(body, 12).ok_or(RtcpError::Body)?,
                packet_count: be32(body, 16).ok_or(RtcpError::Body)?,
                octet_count: be32(body, 20).ok_or(RtcpError::Body)?,
            };
            let start = 4 + SENDER_INFO_LEN;
            let data = body.get(start..start + blocks).ok_or(RtcpError::Body)?;
            Packet::SenderReport {
                ssrc,
                info,
                blocks: ReportBlocks { data },
            }
        }
        RR => {
            let blocks = usize::from(count) * BLOCK_LEN;
            let ssrc = be32(body, 0).ok_or(RtcpError::Body)?;
            let data = body.get(4..4 + blocks).ok_or(RtcpError::Body)?;
            Packet::ReceiverReport {
                ssrc,
                blocks: ReportBlocks { data },
            }
        }
        SDES => read_sdes(body, count)?,
        BYE => {
            let sources = body.get(..usize::from(count) * 4).ok_or(RtcpError::Body)?;
            // An optional reason: one length octet and that much text.
            if let Some(&reason_len) = body.get(sources.len()) {
                let end = sources.len() + 1 + usize::from(reason_len);
                if body.len() < end {
                    return Err(RtcpError::Body);
                }
            }
            Packet::Goodbye {
                ssrc: be32(sources, 0),
                count,
            }
        }
        _ => Packet::Other { packet_type },
    };
    Ok((packet, rest))
}

/// Walks every chunk of an SDES body (RFC 3550 §6.5); keeps the first chunk's CNAME.
fn read_sdes(body: &[u8], count: u8) -> Result<Packet<'_>, RtcpError> {
    let mut at = 0;
    let mut first = None;
    let mut cname = None;
    for chunk in 0..count {
        let ssrc = be32(body, at).ok_or(RtcpError::Body)?;
        if chunk == 0 {
            first = Some(ssrc);
        }
        at += 4;
        loop {
            let item = *body.get(at).ok_or(RtcpError::Body)?;
            if item == 0 {
                // The null item ends the list; the chunk is padded to a 32-bit boundary.
                at = (at + 4) & !3;
                if at > body.len() {
                    return Err(RtcpError::Body);
                }
                break;
            }
            let len = usize::from(*body.get(at + 1).ok_or(RtcpError::Body)?);
            let text = body.get(at + 2..at + 2 + len).ok_or(RtcpError::Body)?;
            if chunk == 0 && item == CNAME && cname.is_none() {
                cname = Some(text);
            }
            at += 2 + len;
        }
    }
    Ok(Packet::SourceDescription { ssrc: first, cname })
}

/// What one compound we send says (RFC 3550 §6.1): an SR when `sender` is set, else an RR;
/// at most one report block; an SDES with our CNAME; a BYE when `bye`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Report<'a> {
    /// Our SSRC.
    pub ssrc: u32,
    /// Our sender info, when we sent RTP since the report before last (RFC 3550 §6.4).
    pub sender: Option<SenderInfo>,
    /// Our report on the remote's stream, once we received any.
    pub block: Option<ReportBlock>,
    /// Our CNAME (at most 255 octets).
    pub cname: &'a [u8],
    /// End with a BYE for our SSRC.
    pub bye: bool,
}

impl Report<'_> {
    /// The octets [`emit`](Self::emit) writes.
    pub fn len(&self) -> usize {
        let report = if self.sender.is_some() { 28 } else { 8 };
        let block = if self.block.is_some() { BLOCK_LEN } else { 0 };
        // SSRC, CNAME item (type, length, text), at least one null octet, padded to 4.
        let chunk = (4 + 2 + self.cname.len() + 1).next_multiple_of(4);
        let bye = if self.bye { 8 } else { 0 };
        report + block + HEADER_LEN + chunk + bye
    }

    /// Never empty: a report is at least its header and SSRC.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the compound at the start of `buf`; returns its length, or `None` when `buf`
    /// is shorter than [`len`](Self::len) or the CNAME is longer than 255 octets.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.len();
        let cname_len = u8::try_from(self.cname.len()).ok()?;
        let buf = buf.get_mut(..len)?;
        let count = u8::from(self.block.is_some());
        let report_len = if self.sender.is_some() { 28 } else { 8 } + usize::from(count) * 24;
        let packet_type = if self.sender.is_some() { SR } else { RR };
        write_header(buf, count, packet_type, report_len)?;
        buf.get_mut(4..8)?.copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = 8;
        if let Some(info) = self.sender {
            let b = buf.get_mut(at..at + SENDER_INFO_LEN)?;
            b[0..8].copy_from_slice(&info.ntp_timestamp.to_be_bytes());
            b[8..12].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
            b[12..16].copy_from_slice(&info.packet_count.to_be_bytes());
            b[16..20].copy_from_slice(&info.octet_count.to_be_bytes());
            at += SENDER_INFO_LEN;
        }
        if let Some(block) = self.block {
            block.write(buf.get_mut(at..)?)?;
            at += BLOCK_LEN;
        }
        let chunk = (4 + 2 + self.cname.len() + 1).next_multiple_of(4);
        let sdes = buf.get_mut(at..at + HEADER_LEN + chunk)?;
        write_header(sdes, 1, SDES, HEADER_LEN + chunk)?;
        sdes[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        sdes[8] = CNAME;
        sdes[9] = cname_len;
        sdes.get_mut(10..10 + self.cname.len())?
            .copy_from_slice(self.cname);
        sdes.get_mut(10 + self.cname.len()..)?.fill(0);
        at += HEADER_LEN + chunk;
        if self.bye {
            let bye = buf.get_mut(at..at + 8)?;
            write_header(bye, 1, BYE, 8)?;
            bye[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
            at += 8;
        }
        Some(at)
    }
}

/// Writes a common header for a packet of `len` octets (a multiple of 4).
fn write_header(buf: &mut [u8], count: u8, packet_type: u8, len: usize) -> Option<()> {
    let words = u16::try_from(len / 4 - 1).ok()?;
    let header = buf.get_mut(..HEADER_LEN)?;
    header[0] = 0x80 | (count & 0x1f);
    header[1] = packet_type;
    header[2..4].copy_from_slice(&words.to_be_bytes());
    Some(())
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The middle 32 bits of an NTP timestamp: what LSR carries (RFC 3550 §6.4.1).
pub fn ntp_middle(ntp_timestamp: u64) -> u32 {
    (ntp_timestamp >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! vector {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/rtcp/",
                $name
            ))
        };
    }

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 64,
            cumulative_lost: -3,
            extended_highest_sequence: 0x0001_0005,
            jitter: 40,
            last_sr: 0xaabb_ccdd,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    fn info() -> SenderInfo {
        SenderInfo {
            ntp_timestamp: 0xe000_0001_8000_0000,
            rtp_timestamp: 1234,
            packet_count: 250,
            octet_count: 40_000,
        }
    }

    fn report(sender: bool, with_block: bool, bye: bool) -> Report<'static> {
        Report {
            ssrc: 0xdead_beef,
            sender: sender.then(info),
            block: with_block.then(block),
            cname: b"abcdefghijklmnop",
            bye,
        }
    }

    #[test]
    fn the_rfc_layout_of_an_sr_with_one_block_sdes_and_bye_parses() {
        let data: &[u8] = vector!("sr-block-sdes-bye.bin");
        let compound = Compound::parse(data).unwrap();
        let packets: Vec<Packet<'_>> = compound.packets().collect();
        assert_eq!(packets.len(), 3, "{packets:?}");
        let Packet::SenderReport { ssrc, info, blocks } = packets[0] else {
            panic!("{packets:?}");
        };
        assert_eq!(
            (ssrc, info.rtp_timestamp, info.packet_count),
            (0x11223344, 0x100, 10)
        );
        assert_eq!(info.ntp_timestamp, 0xe5a1_b2c3_4000_0000);
        assert_eq!(info.octet_count, 1600);
        let got: Vec<ReportBlock> = blocks.collect();
        assert_eq!(
            got,
            [ReportBlock {
                ssrc: 0x5566_7788,
                fraction_lost: 0x19,
                cumulative_lost: 7,
                extended_highest_sequence: 0x0001_0010,
                jitter: 0x20,
                last_sr: 0xb2c3_4000,
                delay_since_last_sr: 0x0002_0000,
            }]
        );
        assert_eq!(
            packets[1],
            Packet::SourceDescription {
                ssrc: Some(0x11223344),
                cname: Some(&b"peer@host"[..]),
            }
        );
        assert_eq!(
            packets[2],
            Packet::Goodbye {
                ssrc: Some(0x11223344),
                count: 1
            }
        );
    }

    #[test]
    fn an_rr_followed_by_app_and_xr_skips_them_by_length() {
        let data: &[u8] = vector!("rr-app-xr.bin");
        let packets: Vec<Packet<'_>> = Compound::parse(data).unwrap().packets().collect();
        assert!(
            matches!(packets[0], Packet::ReceiverReport { ssrc: 0x0a0b0c0d, blocks } if blocks.is_empty()),
            "{packets:?}"
        );
        assert_eq!(
            &packets[1..],
            [
                Packet::Other { packet_type: 204 },
                Packet::Other { packet_type: 207 }
            ]
        );
    }

    #[test]
    fn every_built_report_round_trips() {
        for sender in [false, true] {
            for with_block in [false, true] {
                for bye in [false, true] {
                    let r = report(sender, with_block, bye);
                    let mut buf = [0u8; 256];
                    let len = r.emit(&mut buf).unwrap();
                    assert_eq!(len, r.len());
                    assert_eq!(len % 4, 0);
                    let packets: Vec<Packet<'_>> =
                        Compound::parse(&buf[..len]).unwrap().packets().collect();
                    let blocks = match packets[0] {
                        Packet::SenderReport {
                            ssrc,
                            info: i,
                            blocks,
                        } => {
                            assert!(sender);
                            assert_eq!((ssrc, i), (r.ssrc, info()));
                            blocks
                        }
                        Packet::ReceiverReport { ssrc, blocks } => {
                            assert!(!sender);
                            assert_eq!(ssrc, r.ssrc);
                            blocks
                        }
                        other => panic!("{other:?}"),
                    };
                    assert_eq!(
                        blocks.collect::<Vec<_>>(),
                        r.block.into_iter().collect::<Vec<_>>()
                    );
                    assert_eq!(
                        packets[1],
                        Packet::SourceDescription {
                            ssrc: Some(r.ssrc),
                            cname: Some(r.cname)
                        }
                    );
                    assert_eq!(packets.len(), if bye { 3 } else { 2 });
                    // Too short a buffer gets nothing.
                    assert_eq!(r.emit(&mut buf[..len - 1]), None);
                }
            }
        }
    }

    #[test]
    fn cumulative_loss_is_clamped_to_24_bits_signed() {
        for (lost, wire) in [(-1, -1), (10_000_000, 0x7f_ffff), (-10_000_000, -0x80_0000)] {
            let r = Report {
                block: Some(ReportBlock {
                    cumulative_lost: lost,
                    ..block()
                }),
                ..report(false, true, false)
            };
            let mut buf = [0u8; 128];
            let len = r.emit(&mut buf).unwrap();
            let Some(Packet::ReceiverReport { mut blocks, .. }) =
                Compound::parse(&buf[..len]).unwrap().packets().next()
            else {
                panic!("an RR");
            };
            assert_eq!(blocks.next().unwrap().cumulative_lost, wire);
        }
    }

    #[test]
    fn a_cname_longer_than_255_octets_is_not_built() {
        let long = [b'a'; 256];
        let r = Report {
            cname: &long,
            ..report(true, false, false)
        };
        assert_eq!(r.emit(&mut [0u8; 1024]), None);
    }

    /// Where each packet of a well-formed compound ends.
    fn boundaries(data: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0;
        while at < data.len() {
            at += (usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]])) + 1) * 4;
            ends.push(at);
        }
        ends
    }

    #[test]
    fn every_truncation_inside_a_packet_is_refused_without_panic() {
        let mut buf = [0u8; 256];
        let len = report(true, true, true).emit(&mut buf).unwrap();
        for data in [
            &vector!("sr-block-sdes-bye.bin")[..],
            &vector!("rr-app-xr.bin")[..],
            &buf[..len],
        ] {
            let ends = boundaries(data);
            assert_eq!(ends.last(), Some(&data.len()));
            for end in 0..data.len() {
                let cut = Compound::parse(&data[..end]);
                if ends.contains(&end) {
                    // A compound cut between packets is shorter, not malformed.
                    let whole = ends.iter().position(|&e| e == end).unwrap() + 1;
                    assert_eq!(cut.unwrap().packets().count(), whole);
                } else {
                    assert!(cut.is_err(), "cut at {end}");
                }
            }
        }
    }

    #[test]
    fn malformed_compounds_are_named() {
        let mut buf = [0u8; 256];
        let len = report(true, true, false).emit(&mut buf).unwrap();
        let good = &buf[..len];
        let mut v1 = good.to_vec();
        v1[0] = 0x41;
        assert_eq!(Compound::parse(&v1), Err(RtcpError::Version));
        // An SDES first: not a report.
        let sdes = &good[52..];
        assert_eq!(Compound::parse(sdes), Err(RtcpError::NotReport));
        // A length past the datagram.
        let mut long = good.to_vec();
        long[3] = 0xff;
        assert_eq!(Compound::parse(&long), Err(RtcpError::Truncated));
        // RC=2 with room for one block.
        let mut rc = good.to_vec();
        rc[0] = 0x82;
        assert_eq!(Compound::parse(&rc), Err(RtcpError::Body));
        // Padding on the first of two packets.
        let mut pad = good.to_vec();
        pad[0] |= 0x20;
        assert_eq!(Compound::parse(&pad), Err(RtcpError::Padding));
        // A second packet with version 3.
        let mut second = good.to_vec();
        second[52] = 0xc1;
        assert_eq!(Compound::parse(&second), Err(RtcpError::Version));
        assert_eq!(Compound::parse(&[0x80; 1501]), Err(RtcpError::TooLong));
        assert_eq!(Compound::parse(&[]), Err(RtcpError::Truncated));
        // An RTP packet is no RTCP.
        let rtp = [0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        assert!(Compound::parse(&rtp).is_err());
    }

    #[test]
    fn padding_on_the_last_packet_is_stripped() {
        // RR (no blocks) padded by 4: length 2 words + 1.
        let data = [
            0xa0, RR, 0, 2, 0, 0, 0, 9, 0, 0, 0, 4, //
        ];
        let packets: Vec<Packet<'_>> = Compound::parse(&data).unwrap().packets().collect();
        assert_eq!(
            packets,
            [Packet::ReceiverReport {
                ssrc: 9,
                blocks: ReportBlocks { data: &[] }
            }]
        );
        let mut zero = data;
        zero[11] = 0;
        assert_eq!(Compound::parse(&zero), Err(RtcpError::Padding));
        let mut over = data;
        over[11] = 9;
        assert_eq!(Compound::parse(&over), Err(RtcpError::Padding));
    }

    #[test]
    fn sdes_and_bye_bodies_are_checked() {
        let rr = [0x80, RR, 0, 1, 0, 0, 0, 1];
        // SDES with one chunk whose item runs past the packet.
        let mut sdes = rr.to_vec();
        sdes.extend_from_slice(&[0x81, SDES, 0, 2, 0, 0, 0, 1, CNAME, 9, b'a', b'b']);
        assert_eq!(Compound::parse(&sdes), Err(RtcpError::Body));
        // SDES with no null item before the end.
        let mut open = rr.to_vec();
        open.extend_from_slice(&[0x81, SDES, 0, 2, 0, 0, 0, 1, CNAME, 2, b'a', b'b']);
        assert_eq!(Compound::parse(&open), Err(RtcpError::Body));
        // BYE listing two sources with room for one.
        let mut bye = rr.to_vec();
        bye.extend_from_slice(&[0x82, BYE, 0, 1, 0, 0, 0, 1]);
        assert_eq!(Compound::parse(&bye), Err(RtcpError::Body));
        // BYE with a reason longer than the packet.
        let mut reason = rr.to_vec();
        reason.extend_from_slice(&[0x81, BYE, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0]);
        assert_eq!(Compound::parse(&reason), Err(RtcpError::Body));
        // ... and one that fits.
        let mut fits = rr.to_vec();
        fits.extend_from_slice(&[0x81, BYE, 0, 2, 0, 0, 0, 1, 3, b'b', b'y', b'e']);
        assert!(Compound::parse(&fits).is_ok());
    }

    #[test]
    fn lsr_is_the_middle_of_the_ntp_timestamp() {
        assert_eq!(ntp_middle(0x1122_3344_5566_7788), 0x3344_5566);
    }
}
