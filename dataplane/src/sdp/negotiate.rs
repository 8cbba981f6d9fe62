//! Reading the answer to our offer (RFC 3264 §6.1, §5).

use std::net::{IpAddr, SocketAddr};

use super::SdpError;
use super::offer::PTIME_MS;
use super::parse::{Line, MediaDescription, SessionDescription};
use crate::api::Codec;

/// Which way media flows, from the describing side's point of view (RFC 3264 §5.1, §6.1).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum MediaDirection {
    /// Both ways (the default when no attribute says otherwise).
    #[default]
    SendRecv,
    /// It sends, and will not receive (it puts us on hold).
    SendOnly,
    /// It receives only.
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl MediaDirection {
    /// The direction an answer gives to an offer's `self` (RFC 3264 §6.1).
    pub fn answer(self) -> Self {
        match self {
            Self::SendRecv => Self::SendRecv,
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            Self::Inactive => Self::Inactive,
        }
    }

    /// Whether the describing side takes media: what it says, we may send.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn of(attributes: &[super::parse::Attribute<'_>]) -> Option<Self> {
        attributes.iter().find_map(|a| {
            let name = a.name;
            [
                Self::SendRecv,
                Self::SendOnly,
                Self::RecvOnly,
                Self::Inactive,
            ]
            .into_iter()
            .find(|d| name.eq_ignore_ascii_case(d.as_str()))
        })
    }
}

/// What the answer settled: where to send RTP, in which law, and how DTMF arrives.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Negotiated {
    /// The answerer's RTP address: media-level `c=` (else session-level) and the `m=` port.
    /// An unspecified IP (`0.0.0.0`) is RFC 2543 "old-style" hold (RFC 3264 §8.4): send nothing.
    pub remote_rtp: SocketAddr,
    /// The first format in the answer's `m=audio` that we offered.
    pub codec: Codec,
    /// The payload type of `telephone-event/8000` in the answer, when it accepted RFC 4733 events.
    pub dtmf_payload_type: Option<u8>,
    /// The answerer's `a=ptime` (media-level, else session-level), or 20 when absent or absurd.
    pub ptime_ms: u32,
    /// The answerer's RTCP address from a media-level `a=rtcp:` (RFC 3605), when it has a
    /// usable one; `None` means the RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: Option<SocketAddr>,
    /// The media-level direction attribute, else the session-level one, else `sendrecv`.
    pub direction: MediaDirection,
}

/// Reads an SDP answer to [`build_offer`](super::build_offer) (RFC 3264 §6.1).
///
/// Takes the first `m=audio` whose port is not 0, picks the first of its formats that we
/// offered (PCMU or PCMA, by static payload type or by `a=rtpmap` name, case-insensitive),
/// the `telephone-event/8000` payload type from `a=rtpmap`, and the connection address from
/// the media-level `c=`, else the session-level one.
pub fn negotiate(answer: &[u8]) -> Result<Negotiated, SdpError> {
    negotiate_with(answer, None)
}

/// Reads a new offer in an established call (a re-INVITE or UPDATE, RFC 3264 §8): as
/// [`negotiate`], but the call's law `keep` must be among its formats (the media session
/// does not change law mid-call); without it the offer is refused as having no common codec.
pub fn negotiate_keeping(offer: &[u8], keep: Codec) -> Result<Negotiated, SdpError> {
    negotiate_with(offer, Some(keep))
}

fn negotiate_with(answer: &[u8], keep: Option<Codec>) -> Result<Negotiated, SdpError> {
    let sdp = SessionDescription::parse(answer)?;
    let mut audio = sdp
        .media
        .iter()
        .filter(|m| m.media.eq_ignore_ascii_case("audio"))
        .peekable();
    if audio.peek().is_none() {
        return Err(SdpError::NoAudio);
    }
    let media = audio.find(|m| m.port != 0).ok_or(SdpError::Rejected)?;
    if !media.proto.eq_ignore_ascii_case("RTP/AVP") {
        return Err(SdpError::UnsupportedTransport {
            proto: media.proto.to_owned(),
        });
    }
    let codec = choose_codec(media, keep).ok_or_else(|| SdpError::NoCommonCodec {
        formats: media.formats.join(" "),
    })?;
    let connection = media
        .connection
        .or(sdp.connection)
        .ok_or(SdpError::MissingConnection)?;
    let ptime_ms = media
        .attribute("ptime")
        .or_else(|| sdp.attribute("ptime"))
        .and_then(|p| p.parse().ok())
        .filter(|p| (1..=1000).contains(p))
        .unwrap_or(PTIME_MS);
    let rtp_ip = connection_address(connection)?;
    Ok(Negotiated {
        remote_rtp: SocketAddr::new(rtp_ip, media.port),
        remote_rtcp: media
            .attribute("rtcp")
            .and_then(|v| rtcp_attribute(v, rtp_ip)),
        codec,
        dtmf_payload_type: telephone_event_payload_type(media),
        ptime_ms,
        direction: MediaDirection::of(&media.attributes)
            .or_else(|| MediaDirection::of(&sdp.attributes))
            .unwrap_or_default(),
    })
}

/// The payload type numbers of `media`, in answer order; non-numbers are skipped.
fn payload_types<'a>(media: &'a MediaDescription<'_>) -> impl Iterator<Item = u8> + 'a {
    media
        .formats
        .iter()
        .filter_map(|f| f.parse().ok())
        .filter(|&pt| pt < 128)
}

/// RFC 3264 §6.1: the answer lists formats in the answerer's preference; use the first we offered.
fn choose_codec(media: &MediaDescription<'_>, keep: Option<Codec>) -> Option<Codec> {
    let mut codecs = payload_types(media).filter_map(|pt| match media.rtpmap(pt) {
        Some(map) if map.is("PCMU", 8000) => Some(Codec::Pcmu),
        Some(map) if map.is("PCMA", 8000) => Some(Codec::Pcma),
        Some(_) => None,
        // RFC 3551 §6: static payload types need no rtpmap.
        None => match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        },
    });
    match keep {
        Some(keep) => codecs.find(|&c| c == keep),
        None => codecs.next(),
    }
}

fn telephone_event_payload_type(media: &MediaDescription<'_>) -> Option<u8> {
    payload_types(media).find(|&pt| {
        media
            .rtpmap(pt)
            .is_some_and(|map| map.is("telephone-event", 8000))
    })
}

/// `a=rtcp:<port> [IN IP4|IP6 <address>]` (RFC 3605 §2.1): the port, at the given address or
/// else the RTP connection address. A port of 0, or an address that is a hostname or of the
/// wrong family, is not used: RTCP then goes to the RTP port + 1.
fn rtcp_attribute(value: &str, rtp_ip: IpAddr) -> Option<SocketAddr> {
    let mut fields = value.split_ascii_whitespace();
    let port: u16 = fields.next()?.parse().ok().filter(|&p| p != 0)?;
    let ip = match (fields.next(), fields.next(), fields.next()) {
        (None, _, _) => rtp_ip,
        (Some(network), Some(address_type), Some(address))
            if network.eq_ignore_ascii_case("IN") =>
        {
            let ip: IpAddr = address.parse().ok()?;
            let family_matches = match ip {
                IpAddr::V4(_) => address_type.eq_ignore_ascii_case("IP4"),
                IpAddr::V6(_) => address_type.eq_ignore_ascii_case("IP6"),
            };
            family_matches.then_some(ip)?
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `c=IN IP4|IP6 <address>[/<ttl>][/<count>]` (RFC 4566 §5.7).
fn connection_address(line: Line<'_>) -> Result<IpAddr, SdpError> {
    let bad = |problem| SdpError::BadConnection {
        line: line.number,
        problem,
    };
    let mut fields = line.value.split_ascii_whitespace();
    let (Some(network), Some(address_type), Some(address), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad("needs exactly <nettype> <addrtype> <address>"));
    };
    if !network.eq_ignore_ascii_case("IN") {
        return Err(bad("network type is not IN"));
    }
    let address = address.split_once('/').map_or(address, |(ip, _)| ip);
    let ip: IpAddr = address
        .parse()
        .map_err(|_| bad("address is a hostname or not an IP address"))?;
    let family_matches = match ip {
        IpAddr::V4(_) => address_type.eq_ignore_ascii_case("IP4"),
        IpAddr::V6(_) => address_type.eq_ignore_ascii_case("IP6"),
    };
    if !family_matches {
        return Err(bad("address does not match the IP4/IP6 address type"));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::super::build_offer;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    macro_rules! vector {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/sdp/",
                $name
            ))
        };
    }

    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
    }

    #[test]
    fn sipp_uas_answer_gives_pcmu_without_events() {
        let n = negotiate(vector!("sipp-uas-answer.sdp")).unwrap();
        assert_eq!(n.remote_rtp, v4(127, 0, 0, 1, 6000));
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.dtmf_payload_type, None);
        assert_eq!(n.ptime_ms, 20);
    }

    #[test]
    fn asterisk_answer_gives_pcmu_and_event_payload_type() {
        let n = negotiate(vector!("asterisk-pcmu-pcma-101.sdp")).unwrap();
        assert_eq!(n.remote_rtp, v4(192, 0, 2, 10, 17890));
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.dtmf_payload_type, Some(101));
    }

    #[test]
    fn answer_preferring_pcma_with_lowercase_rtpmap_gives_pcma() {
        let n = negotiate(vector!("pcma-chosen.sdp")).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.dtmf_payload_type, Some(96));
        assert_eq!(n.ptime_ms, 30);
        assert_eq!(n.remote_rtp, v4(198, 51, 100, 20, 30000));
    }

    #[test]
    fn old_style_hold_gives_unspecified_address() {
        let n = negotiate(vector!("old-style-hold.sdp")).unwrap();
        assert!(n.remote_rtp.ip().is_unspecified());
        assert_eq!(n.remote_rtp.port(), 49170);
        assert_eq!(n.codec, Codec::Pcma);
    }

    #[test]
    fn lf_only_lines_and_media_level_connection_are_read() {
        let body: &[u8] = vector!("lf-only-media-connection.sdp");
        assert!(!body.contains(&b'\r'), "vector must use bare LF");
        let n = negotiate(body).unwrap();
        assert_eq!(
            n.remote_rtp,
            v4(203, 0, 113, 5, 5004),
            "media c= overrides session c="
        );
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.dtmf_payload_type, Some(101));
    }

    #[test]
    fn ipv6_answer_without_rtpmap_uses_static_payload_type() {
        let n = negotiate(vector!("ipv6-static-pt.sdp")).unwrap();
        let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
        assert_eq!(n.remote_rtp, SocketAddr::new(ip, 6002));
        assert_eq!(n.codec, Codec::Pcma);
    }

    #[test]
    fn rejected_first_audio_stream_falls_through_to_the_next() {
        let n = negotiate(vector!("second-audio-accepted.sdp")).unwrap();
        assert_eq!(n.remote_rtp, v4(192, 0, 2, 30, 7000));
    }

    #[test]
    fn no_common_codec_lists_the_answers_formats() {
        let err = negotiate(vector!("no-common-codec.sdp")).unwrap_err();
        assert_eq!(
            err,
            SdpError::NoCommonCodec {
                formats: "18 4 101".into()
            }
        );
        assert!(err.to_string().contains("18 4 101"));
    }

    #[test]
    fn port_zero_is_a_rejected_stream() {
        assert_eq!(negotiate(vector!("port-zero.sdp")), Err(SdpError::Rejected));
    }

    #[test]
    fn missing_connection_is_named() {
        assert_eq!(
            negotiate(vector!("missing-connection.sdp")),
            Err(SdpError::MissingConnection)
        );
    }

    #[test]
    fn video_only_answer_has_no_audio() {
        assert_eq!(negotiate(vector!("video-only.sdp")), Err(SdpError::NoAudio));
    }

    #[test]
    fn srtp_answer_is_an_unsupported_transport() {
        let err = negotiate(vector!("srtp.sdp")).unwrap_err();
        assert_eq!(
            err,
            SdpError::UnsupportedTransport {
                proto: "RTP/SAVP".into()
            }
        );
    }

    #[test]
    fn rtpmap_overrides_a_static_payload_type() {
        let body = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0 8\r\n\
            a=rtpmap:0 G729/8000\r\n";
        assert_eq!(negotiate(body).unwrap().codec, Codec::Pcma);
    }

    #[test]
    fn dynamic_payload_type_named_pcmu_is_accepted() {
        let body = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 97\r\n\
            a=rtpmap:97 pcmu/8000/1\r\n";
        assert_eq!(negotiate(body).unwrap().codec, Codec::Pcmu);
    }

    #[test]
    fn telephone_event_must_be_listed_in_the_m_line() {
        let body = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n\
            a=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(negotiate(body).unwrap().dtmf_payload_type, None);
    }

    #[test]
    fn bad_connection_lines_are_named() {
        for c in [
            "c=IN IP4 callee.example.com",
            "c=IN IP6 192.0.2.1",
            "c=ATM NSAP 47.0091",
            "c=IN IP4",
        ] {
            let body = format!("v=0\r\n{c}\r\nm=audio 4000 RTP/AVP 0\r\n");
            match negotiate(body.as_bytes()) {
                Err(SdpError::BadConnection { line: 2, .. }) => {}
                other => panic!("{c}: {other:?}"),
            }
        }
    }

    #[test]
    fn multicast_ttl_suffix_is_ignored() {
        let body = b"v=0\r\nc=IN IP4 224.2.1.1/127/3\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(negotiate(body).unwrap().remote_rtp, v4(224, 2, 1, 1, 4000));
    }

    #[test]
    fn our_own_offer_negotiates_to_itself() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let n = negotiate(&build_offer(1, 2, ip, 41000)).unwrap();
            assert_eq!(n.remote_rtp, SocketAddr::new(ip, 41000));
            assert_eq!(n.codec, Codec::Pcmu);
            assert_eq!(n.dtmf_payload_type, Some(101));
            assert_eq!(n.ptime_ms, 20);
        }
    }

    #[test]
    fn an_rtcp_attribute_names_the_rtcp_port_and_address() {
        let answer =
            |rtcp: &str| format!("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n{rtcp}");
        let rtcp = |line: &str| negotiate(answer(line).as_bytes()).unwrap().remote_rtcp;
        assert_eq!(rtcp(""), None, "none: RTP port + 1");
        assert_eq!(rtcp("a=rtcp:53020\r\n"), Some(v4(192, 0, 2, 1, 53020)));
        assert_eq!(
            rtcp("a=rtcp:53020 IN IP4 126.16.64.4\r\n"),
            Some(v4(126, 16, 64, 4, 53020)),
            "RFC 3605's example"
        );
        for unusable in [
            "a=rtcp:0\r\n",
            "a=rtcp:x\r\n",
            "a=rtcp:5000 IN IP6 10.0.0.1\r\n",
            "a=rtcp:5000 IN IP4 host.example\r\n",
            "a=rtcp:5000 IN IP4\r\n",
        ] {
            assert_eq!(rtcp(unusable), None, "{unusable}");
        }
    }

    #[test]
    fn every_truncation_of_a_real_answer_returns_without_panic() {
        let body: &[u8] = vector!("asterisk-pcmu-pcma-101.sdp");
        for end in 0..body.len() {
            let _ = negotiate(&body[..end]);
        }
    }
}
