//! RTP data packets (RFC 3550 §5.1): reading with `rtp-rs`, writing into the caller's buffer.

use rtp_rs::{RtpReader, RtpReaderError};

/// Length of the fixed RTP header with no CSRCs and no extension (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;

/// The largest datagram accepted as RTP: an Ethernet MTU. Anything larger is not telephony.
pub const MAX_DATAGRAM_LEN: usize = 1500;

/// The RTP header fields Outdial sends: version 2, no padding, extension or CSRCs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Header {
    /// M bit: first packet of a talkspurt for audio (RFC 3551 §4.1).
    pub marker: bool,
    /// PT (7 bits).
    pub payload_type: u8,
    /// Sequence number, +1 per packet.
    pub sequence_number: u16,
    /// Sampling instant of the first octet, in 8 kHz ticks for G.711.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl Header {
    /// Writes the 12-octet header at the start of `buf`; returns [`HEADER_LEN`], or `None`
    /// when `buf` is shorter than that.
    pub fn write(&self, buf: &mut [u8]) -> Option<usize> {
        let header = buf.get_mut(..HEADER_LEN)?;
        header[0] = 0x80; // V=2, P=0, X=0, CC=0
        header[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        header[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Some(HEADER_LEN)
    }
}

/// A received RTP packet, borrowed from the datagram.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Packet<'a> {
    /// The header fields.
    pub header: Header,
    /// The payload, without CSRCs, header extension or padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not an RTP packet we can use. Carries no data: it is counted, not logged.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the 12-octet fixed header.
    #[error("datagram shorter than the 12-octet RTP header")]
    TooShort,
    /// Longer than [`MAX_DATAGRAM_LEN`].
    #[error("datagram longer than an Ethernet MTU")]
    TooLong,
    /// Version field is not 2.
    #[error("RTP version is not 2")]
    Version,
    /// CSRC list, extension or padding runs past the end of the datagram.
    #[error("RTP header or padding runs past the end of the datagram")]
    Truncated,
    /// A multiplexed RTCP packet (RFC 5761 §4: PT 72–76 with the M bit set reads as RTCP 200–204).
    #[error("RTCP packet on the RTP port")]
    Rtcp,
}

impl<'a> Packet<'a> {
    /// Parses `datagram` as RTP, checking every length before use.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, PacketError> {
        if datagram.len() > MAX_DATAGRAM_LEN {
            return Err(PacketError::TooLong);
        }
        let reader = RtpReader::new(datagram).map_err(|e| match e {
            RtpReaderError::BufferTooShort(_) => PacketError::TooShort,
            RtpReaderError::UnsupportedVersion(_) => PacketError::Version,
            RtpReaderError::HeadersTruncated { .. } | RtpReaderError::PaddingLengthInvalid(_) => {
                PacketError::Truncated
            }
        })?;
        if (72..=76).contains(&reader.payload_type()) && reader.mark() {
            return Err(PacketError::Rtcp);
        }
        Ok(Self {
            header: Header {
                marker: reader.mark(),
                payload_type: reader.payload_type(),
                sequence_number: reader.sequence_number().into(),
                timestamp: reader.timestamp(),
                ssrc: reader.ssrc(),
            },
            payload: reader.payload(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            marker: true,
            payload_type: 8,
            sequence_number: 0xfffe,
            timestamp: 0x0102_0304,
            ssrc: 0xdead_beef,
        }
    }

    #[test]
    fn written_header_reads_back_through_rtp_rs() {
        let mut buf = [0u8; HEADER_LEN + 3];
        assert_eq!(header().write(&mut buf), Some(HEADER_LEN));
        buf[HEADER_LEN..].copy_from_slice(&[1, 2, 3]);
        let packet = Packet::parse(&buf).unwrap();
        assert_eq!(packet.header, header());
        assert_eq!(packet.payload, [1, 2, 3]);
    }

    #[test]
    fn write_refuses_a_short_buffer() {
        assert_eq!(header().write(&mut [0u8; HEADER_LEN - 1]), None);
    }

    #[test]
    fn csrcs_extension_and_padding_are_stripped_from_the_payload() {
        let mut d = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]; // V=2 P=1 X=1 CC=1
        d.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
        d.extend_from_slice(&[7, 7, 0, 2]); // payload 7 7, padding 2
        let packet = Packet::parse(&d).unwrap();
        assert_eq!(packet.payload, [7, 7]);
        assert_eq!(packet.header.sequence_number, 1);
    }

    #[test]
    fn garbage_is_classified_not_panicked_on() {
        assert_eq!(Packet::parse(&[]), Err(PacketError::TooShort));
        assert_eq!(Packet::parse(&[0x80; 11]), Err(PacketError::TooShort));
        assert_eq!(Packet::parse(&[0x40; 12]), Err(PacketError::Version));
        assert_eq!(
            Packet::parse(&[0x8f; 20]),
            Err(PacketError::Truncated),
            "CC=15"
        );
        let padding_too_long = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff];
        assert_eq!(
            Packet::parse(&padding_too_long),
            Err(PacketError::Truncated)
        );
        assert_eq!(Packet::parse(&[0x80; 1501]), Err(PacketError::TooLong));
        let rtcp_receiver_report = [0x80, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(Packet::parse(&rtcp_receiver_report), Err(PacketError::Rtcp));
    }
}
