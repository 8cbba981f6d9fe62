//! The headers a response copies from its request (RFC 3261 §8.2.6.2), taken from a parsed
//! message or, leniently, from a request that failed to parse, so that it can still be
//! answered with the status its error maps to.

use smallvec::SmallVec;

use super::print::Writer;
use super::scan::is_ws_char;
use super::uri::find_param;
use super::{HeaderName, Message};

/// Via, From, To, Call-ID and CSeq values of a request, as received.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Recovered<'a> {
    /// Every Via header value, top first.
    pub vias: SmallVec<[&'a str; 4]>,
    /// From value.
    pub from: &'a str,
    /// To value.
    pub to: &'a str,
    /// Call-ID value.
    pub call_id: &'a str,
    /// CSeq value.
    pub cseq: &'a str,
}

impl<'a> Recovered<'a> {
    /// Takes the values from a parsed message; `None` if one is missing.
    pub fn from_message(message: &Message<'a>) -> Option<Self> {
        let vias: SmallVec<[&'a str; 4]> = message.header_values(HeaderName::Via).collect();
        if vias.is_empty() {
            return None;
        }
        Some(Self {
            vias,
            from: message.header(HeaderName::From)?,
            to: message.header(HeaderName::To)?,
            call_id: message.header(HeaderName::CallId)?,
            cseq: message.header(HeaderName::CSeq)?,
        })
    }

    /// Scans a datagram that did not parse. Only requests qualify (never answer a
    /// response); folded continuation lines and non-UTF-8 lines are skipped.
    pub fn scan(data: &'a [u8]) -> Option<Self> {
        let mut lines = data
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .skip_while(|line| line.is_empty());
        let start = lines.next()?;
        let method = start.split(|&b| b == b' ').next()?;
        if start.starts_with(b"SIP/")
            || method.is_empty()
            || !method.iter().all(|&b| super::scan::is_token(b))
        {
            return None;
        }
        let (mut vias, mut from, mut to, mut call_id, mut cseq) =
            (SmallVec::new(), None, None, None, None);
        for line in lines.take_while(|line| !line.is_empty()) {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim_matches(is_ws_char);
            let slot = match HeaderName::parse(name.trim_matches(is_ws_char)) {
                HeaderName::Via => {
                    vias.push(value);
                    continue;
                }
                HeaderName::From => &mut from,
                HeaderName::To => &mut to,
                HeaderName::CallId => &mut call_id,
                HeaderName::CSeq => &mut cseq,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        if vias.is_empty() {
            return None;
        }
        Some(Self {
            vias,
            from: from?,
            to: to?,
            call_id: call_id?,
            cseq: cseq?,
        })
    }

    /// Whether To already has a tag (then the response must not add one).
    pub fn to_has_tag(&self) -> bool {
        let params_at = self.to.rfind('>').unwrap_or(0);
        let params = self.to.get(params_at..).unwrap_or("");
        let params = params
            .find(';')
            .and_then(|at| params.get(at..))
            .unwrap_or("");
        find_param(params, "tag").is_some()
    }

    /// Starts a response carrying these headers; `to_tag` is added to To if it has none.
    pub fn response<'b>(
        &self,
        buf: &'b mut Vec<u8>,
        status: u16,
        reason: &str,
        to_tag: &str,
    ) -> Writer<'b> {
        let mut writer = Writer::response(buf, status, reason);
        for via in &self.vias {
            writer.header("Via", via);
        }
        writer.header("From", self.from);
        if self.to_has_tag() || to_tag.is_empty() {
            writer.header("To", self.to);
        } else {
            writer.header_fmt("To", format_args!("{};tag={to_tag}", self.to));
        }
        writer
            .header("Call-ID", self.call_id)
            .header("CSeq", self.cseq);
        writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_from_a_request_with_a_bad_version() {
        let data = b"OPTIONS sip:a@b SIP/7.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP p\r\nf: <sip:x@y>;tag=9\r\nt: <sip:a@b>\r\ni: abc\r\nCSeq: 4 OPTIONS\r\n\r\n";
        let recovered = Recovered::scan(data).unwrap();
        assert_eq!(
            recovered.vias.as_slice(),
            ["SIP/2.0/UDP h;branch=z9hG4bK1", "SIP/2.0/UDP p"]
        );
        assert!(!recovered.to_has_tag());
        let mut buf = Vec::new();
        recovered
            .response(&mut buf, 505, "Version Not Supported", "t1")
            .finish(None, b"");
        let response = Message::parse(&buf).unwrap();
        assert_eq!(response.status(), Some(505));
        assert_eq!(response.to().unwrap().tag(), Some("t1"));
        assert_eq!(response.header_values(HeaderName::Via).count(), 2);
    }

    #[test]
    fn never_recovers_responses_or_incomplete_requests() {
        assert_eq!(
            Recovered::scan(
                b"SIP/2.0 200 OK\r\nVia: a\r\nFrom: b\r\nTo: c\r\nCall-ID: d\r\nCSeq: 1 X\r\n\r\n"
            ),
            None
        );
        assert_eq!(
            Recovered::scan(
                b"BYE sip:a SIP/2.0\r\nVia: a\r\nFrom: b\r\nTo: c\r\nCSeq: 1 X\r\n\r\n"
            ),
            None
        );
        assert_eq!(Recovered::scan(b""), None);
    }

    #[test]
    fn tag_inside_uri_is_not_a_to_tag() {
        let data = b"BYE sip:a SIP/2.0\r\nVia: a\r\nFrom: b\r\nTo: <sip:c;tag=x>\r\nCall-ID: d\r\nCSeq: 1 BYE\r\n\r\n";
        assert!(!Recovered::scan(data).unwrap().to_has_tag());
    }
}
