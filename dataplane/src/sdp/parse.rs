//! A tolerant reader for the parts of an SDP body (RFC 4566 §5) that offer/answer needs.
//!
//! It keeps `c=`, `m=` and `a=` lines, borrowed from the input, and skips every other line
//! type unread, so an odd `s=`, `i=` or `k=` line elsewhere in the body cannot fail a call.
//! Only structural faults are errors: a body that does not start with `v=0`, a line that
//! is not `<type>=<value>`, or an `m=` line without media, port and transport.

use super::SdpError;

/// The session description, reduced to what negotiation reads.
#[derive(Debug)]
pub(crate) struct SessionDescription<'a> {
    /// The session-level `c=` line, if any (RFC 4566 §5.7).
    pub(crate) connection: Option<Line<'a>>,
    /// Session-level attributes (before the first `m=`).
    pub(crate) attributes: Vec<Attribute<'a>>,
    /// The media descriptions, in order (RFC 4566 §5.14).
    pub(crate) media: Vec<MediaDescription<'a>>,
}

/// One `m=` section.
#[derive(Debug)]
pub(crate) struct MediaDescription<'a> {
    /// `<media>`, e.g. `audio`.
    pub(crate) media: &'a str,
    /// `<port>`; 0 marks a rejected stream (RFC 3264 §6).
    pub(crate) port: u16,
    /// `<proto>`, e.g. `RTP/AVP`.
    pub(crate) proto: &'a str,
    /// `<fmt>` list: RTP payload type numbers for RTP/AVP.
    pub(crate) formats: Vec<&'a str>,
    /// The media-level `c=` line, if any.
    pub(crate) connection: Option<Line<'a>>,
    /// Media-level attributes.
    pub(crate) attributes: Vec<Attribute<'a>>,
}

/// A line's value with its 1-based line number, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    pub(crate) number: usize,
    pub(crate) value: &'a str,
}

/// `a=<name>[:<value>]` (RFC 4566 §5.13).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attribute<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: Option<&'a str>,
}

impl<'a> SessionDescription<'a> {
    /// Reads `body`. Lines may end in CRLF or bare LF (RFC 4566 §5 asks parsers to accept both).
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, SdpError> {
        let mut description = Self {
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut seen_version = false;
        for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (kind, value) = match raw {
                [kind, b'=', value @ ..] if kind.is_ascii_lowercase() => (*kind, value),
                _ => {
                    return Err(if seen_version {
                        SdpError::Malformed {
                            line: number,
                            problem: "not of the form <type>=<value>",
                        }
                    } else {
                        SdpError::NotSdp
                    });
                }
            };
            if !seen_version {
                if kind != b'v' || value.trim_ascii() != b"0" {
                    return Err(SdpError::NotSdp);
                }
                seen_version = true;
                continue;
            }
            if !matches!(kind, b'c' | b'm' | b'a') {
                continue;
            }
            let value = std::str::from_utf8(value).map_err(|_| SdpError::Malformed {
                line: number,
                problem: "not UTF-8",
            })?;
            let line = Line { number, value };
            match kind {
                b'm' => description.media.push(MediaDescription::parse(line)?),
                b'c' => {
                    let slot = match description.media.last_mut() {
                        Some(media) => &mut media.connection,
                        None => &mut description.connection,
                    };
                    // A second c= in one section names further multicast layers
                    // (RFC 4566 §5.7); the first is the one to send to.
                    slot.get_or_insert(line);
                }
                _ => {
                    let attribute = Attribute::parse(value);
                    match description.media.last_mut() {
                        Some(media) => media.attributes.push(attribute),
                        None => description.attributes.push(attribute),
                    }
                }
            }
        }
        if !seen_version {
            return Err(SdpError::NotSdp);
        }
        Ok(description)
    }

    /// The value of session-level attribute `name` (case-insensitive), if present.
    pub(crate) fn attribute(&self, name: &str) -> Option<&'a str> {
        find_attribute(&self.attributes, name)
    }
}

impl<'a> MediaDescription<'a> {
    /// Reads `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 4566 §5.14).
    fn parse(line: Line<'a>) -> Result<Self, SdpError> {
        let malformed = |problem| SdpError::Malformed {
            line: line.number,
            problem,
        };
        let mut fields = line.value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed("m= needs <media> <port> <proto> <fmt>..."));
        };
        let port = port.split_once('/').map_or(port, |(port, _count)| port);
        let port = port
            .parse()
            .map_err(|_| malformed("m= port is not a number from 0 to 65535"))?;
        Ok(Self {
            media,
            port,
            proto,
            formats: fields.collect(),
            connection: None,
            attributes: Vec::new(),
        })
    }

    /// The value of media-level attribute `name` (case-insensitive), if present.
    pub(crate) fn attribute(&self, name: &str) -> Option<&'a str> {
        find_attribute(&self.attributes, name)
    }

    /// The `a=rtpmap` for `payload_type`, if present (RFC 4566 §6).
    pub(crate) fn rtpmap(&self, payload_type: u8) -> Option<RtpMap<'a>> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| RtpMap::parse(a.value?))
            .find(|map| map.payload_type == payload_type)
    }
}

impl<'a> Attribute<'a> {
    fn parse(value: &'a str) -> Self {
        match value.split_once(':') {
            Some((name, value)) => Self {
                name: name.trim(),
                value: Some(value.trim()),
            },
            None => Self {
                name: value.trim(),
                value: None,
            },
        }
    }
}

fn find_attribute<'a>(attributes: &[Attribute<'a>], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .and_then(|a| a.value)
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct RtpMap<'a> {
    pub(crate) payload_type: u8,
    pub(crate) encoding_name: &'a str,
    pub(crate) clock_rate: u32,
    /// For audio, the channel count; absent means one channel.
    pub(crate) channels: Option<&'a str>,
}

impl<'a> RtpMap<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let (payload_type, encoding) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        let mut parts = encoding.trim().splitn(3, '/');
        let encoding_name = parts.next()?;
        let clock_rate = parts.next()?.trim().parse().ok()?;
        Some(Self {
            payload_type: payload_type.trim().parse().ok()?,
            encoding_name,
            clock_rate,
            channels: parts.next(),
        })
    }

    /// Whether this names `encoding_name` at `clock_rate` Hz, mono (name case-insensitive).
    pub(crate) fn is(&self, encoding_name: &str, clock_rate: u32) -> bool {
        self.encoding_name.eq_ignore_ascii_case(encoding_name)
            && self.clock_rate == clock_rate
            && self.channels.is_none_or(|c| c.trim() == "1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_and_session_lines_land_in_their_sections() {
        let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
            a=ptime:30\r\nm=audio 4000/2 RTP/AVP 0 101\r\nc=IN IP4 192.0.2.2\r\n\
            a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\nm=video 0 RTP/AVP 31\r\n";
        let sdp = SessionDescription::parse(body).unwrap();
        assert_eq!(sdp.connection.unwrap().value, "IN IP4 192.0.2.1");
        assert_eq!(sdp.attribute("PTIME"), Some("30"));
        assert_eq!(sdp.media.len(), 2);
        let audio = &sdp.media[0];
        assert_eq!(
            (audio.media, audio.port, audio.proto),
            ("audio", 4000, "RTP/AVP")
        );
        assert_eq!(audio.formats, ["0", "101"]);
        assert_eq!(audio.connection.unwrap().number, 8);
        assert_eq!(audio.attributes[1].name, "sendonly");
        assert_eq!(audio.attributes[1].value, None);
        assert!(audio.rtpmap(101).unwrap().is("telephone-event", 8000));
        assert_eq!(audio.rtpmap(0), None);
        assert!(sdp.media[1].connection.is_none());
    }

    #[test]
    fn lines_of_other_types_are_skipped_even_when_not_utf8() {
        let body = b"v=0\ns=\xff\xfe\nm=audio 5 RTP/AVP 0\n";
        let sdp = SessionDescription::parse(body).unwrap();
        assert_eq!(sdp.media[0].port, 5);
    }

    #[test]
    fn a_body_not_starting_with_v0_is_not_sdp() {
        for body in [
            &b""[..],
            b"\r\n",
            b"<html>",
            b"v=1\r\nm=audio 1 RTP/AVP 0",
            b"o=x\r\nv=0",
        ] {
            assert_eq!(
                SessionDescription::parse(body).unwrap_err(),
                SdpError::NotSdp
            );
        }
    }

    #[test]
    fn structural_faults_name_the_line() {
        let cases: [(&[u8], usize); 5] = [
            (b"v=0\r\ns=-\r\ngarbage\r\n", 3),
            (b"v=0\nm=audio\n", 2),
            (b"v=0\nm=audio 70000 RTP/AVP 0\n", 2),
            (b"v=0\nm=audio x RTP/AVP 0\n", 2),
            (b"v=0\na=\xff\n", 2),
        ];
        for (body, line) in cases {
            match SessionDescription::parse(body) {
                Err(SdpError::Malformed { line: got, .. }) => assert_eq!(got, line),
                other => panic!("{body:?}: expected Malformed at {line}, got {other:?}"),
            }
        }
    }

    #[test]
    fn rtpmap_reads_channels_and_rejects_junk() {
        let map = RtpMap::parse("96 opus/48000/2").unwrap();
        assert_eq!(
            (map.payload_type, map.encoding_name, map.clock_rate),
            (96, "opus", 48000)
        );
        assert!(!map.is("opus", 48000), "stereo is not mono");
        assert!(RtpMap::parse("0 PCMU/8000/1").unwrap().is("pcmu", 8000));
        assert!(RtpMap::parse("0 PCMU").is_none());
        assert!(RtpMap::parse("300 PCMU/8000").is_none());
        assert!(RtpMap::parse("x PCMU/8000").is_none());
    }
}
