//! SIP messages (RFC 3261 §7): a zero-copy parser of one UDP datagram into a borrowed
//! [`Message`], and a printer ([`print`]) that appends requests and responses to a buffer.
//!
//! The parser frames the message (start line, headers with folding, body by
//! Content-Length), normalises compact header names, and checks the syntax of every header
//! a user agent relies on: Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route,
//! Max-Forwards and Content-Length. Other headers are kept as opaque text. Whether the
//! required headers are *present* is a separate check, [`Message::check_request`], so that a
//! request missing one still parses (RFC 4475 §3.3.1).
//!
//! Choices for RFC 4475's "reject or be liberal" cases: strict on the request line
//! (`ltgtruri`, `lwsruri`, `lwsstart`, `trws` are rejected with 400); liberal on spaces
//! inside `< >` (`badaspec`), on URI headers in the Request-URI (`escruri`) and on the Date
//! header, which is never read (`baddate`); strict on `?` in an unbracketed Contact URI
//! (`regbadct`, 400).

mod header;
pub mod print;
mod recover;
pub(crate) mod scan;
mod uri;

use smallvec::SmallVec;

pub use header::{CSeq, HeaderName, Method, NameAddr, Via};
pub use recover::Recovered;
pub use uri::{Host, SipUri, Uri, UriError};

/// Most messages carry fewer headers than this; more spill to the heap.
const INLINE_HEADERS: usize = 24;
/// More headers than this and the message is refused (RFC 4475 §3.1.1.7 has 31).
const MAX_HEADERS: usize = 256;

/// Why a datagram is not an acceptable SIP message, and which status answers it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but white space.
    #[error("empty datagram; send a SIP request or response")]
    Empty,
    /// Header bytes are not UTF-8.
    #[error("header section is not UTF-8 text; encode headers as UTF-8 (RFC 3261 §7.3)")]
    NotUtf8,
    /// No empty line closes the header section.
    #[error("no empty line ends the header section; end headers with CRLF CRLF (RFC 3261 §7)")]
    Unframed,
    /// The first line is neither a request line nor a status line.
    #[error(
        "malformed start line; send `METHOD Request-URI SIP/2.0` or `SIP/2.0 code reason` with single spaces (RFC 3261 §7.1, §7.2)"
    )]
    BadStartLine,
    /// SIP version other than 2.0.
    #[error("unsupported SIP version; only SIP/2.0 is supported (RFC 3261 §8.2.2.1)")]
    BadVersion,
    /// Status code outside 100..=699.
    #[error("status code must be three digits from 100 to 699 (RFC 3261 §7.2)")]
    BadStatusCode,
    /// The Request-URI did not parse.
    #[error("malformed Request-URI: {0}")]
    BadRequestUri(UriError),
    /// A header line without a colon, or a folded line before any header.
    #[error("header line without `name:`; every header line must be `Name: value` (RFC 3261 §7.3)")]
    BadHeaderLine,
    /// A header the user agent reads is malformed.
    #[error("malformed {header} header: {problem}")]
    BadHeader {
        /// Canonical header name.
        header: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Content-Length promises more octets than the datagram holds.
    #[error(
        "Content-Length {declared} exceeds the {available} octets after the headers; send the whole body in one datagram (RFC 3261 §18.3)"
    )]
    BodyTruncated {
        /// Content-Length value.
        declared: u32,
        /// Octets present.
        available: usize,
    },
    /// The CSeq method differs from the request method.
    #[error("CSeq method differs from the request method; they must match (RFC 3261 §8.1.1.5)")]
    CSeqMismatch {
        /// Whether the request method is one we know (501 otherwise, RFC 4475 §3.1.2.18).
        known_method: bool,
    },
    /// Too many header lines.
    #[error("more than 256 header lines; send fewer headers")]
    TooManyHeaders,
    /// A required header is missing ([`Message::check_request`]).
    #[error("missing {0} header; requests need Via, From, To, Call-ID and CSeq (RFC 3261 §8.1.1)")]
    MissingHeader(&'static str),
    /// A single-valued header appears twice ([`Message::check_request`]).
    #[error("{0} header appears more than once; send it once (RFC 3261 §7.3.1)")]
    DuplicateHeader(&'static str),
    /// Request-URI scheme other than sip/sips ([`Message::check_request`]).
    #[error("Request-URI scheme is not sip or sips; use a SIP URI (RFC 3261 §8.2.2.1)")]
    UnsupportedUriScheme,
}

impl ParseError {
    /// The status a UAS answers a request with this error (RFC 3261 §8.2, RFC 4475).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadVersion => 505,
            Self::UnsupportedUriScheme => 416,
            Self::CSeqMismatch {
                known_method: false,
            } => 501,
            _ => 400,
        }
    }
}

/// The first line of a message.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request {
        /// Method.
        method: Method<'a>,
        /// Request-URI.
        uri: Uri<'a>,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`.
    Response {
        /// Status code, 100..=699.
        status: u16,
        /// Reason phrase (UTF-8, possibly empty).
        reason: &'a str,
    },
}

/// One header field; the value is trimmed and may still contain folded line breaks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Header<'a> {
    /// Normalised name.
    pub name: HeaderName<'a>,
    /// Raw value.
    pub value: &'a str,
}

/// A parsed SIP message borrowing the datagram.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    start: StartLine<'a>,
    headers: SmallVec<[Header<'a>; INLINE_HEADERS]>,
    body: &'a [u8],
    via: Option<Via<'a>>,
    from: Option<NameAddr<'a>>,
    to: Option<NameAddr<'a>>,
    call_id: Option<&'a str>,
    cseq: Option<CSeq<'a>>,
    contact: Option<NameAddr<'a>>,
    max_forwards: Option<u32>,
    content_length: Option<u32>,
    duplicate: Option<&'static str>,
}

/// Parses one datagram as a SIP message.
pub fn parse_message(data: &[u8]) -> Result<Message<'_>, ParseError> {
    Message::parse(data)
}

impl<'a> Message<'a> {
    /// Parses one datagram. Octets after Content-Length are ignored (RFC 3261 §18.3); with
    /// no Content-Length the body is the rest of the datagram.
    pub fn parse(data: &'a [u8]) -> Result<Self, ParseError> {
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        let first = data
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .ok_or(ParseError::Empty)?;
        let data = data.get(first..).unwrap_or_default();
        let (head_len, body_start) = find_header_end(data).ok_or(ParseError::Unframed)?;
        let head = data.get(..head_len).unwrap_or_default();
        let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;

        let mut lines = head
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line));
        let start = parse_start_line(lines.next().unwrap_or(""))?;
        let mut message = Self {
            start,
            headers: SmallVec::new(),
            body: &[],
            via: None,
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            contact: None,
            max_forwards: None,
            content_length: None,
            duplicate: None,
        };
        message.split_headers(head)?;
        for index in 0..message.headers.len() {
            if let Some(header) = message.headers.get(index).copied() {
                message.check_header(header)?;
            }
        }
        if let (StartLine::Request { method, .. }, Some(cseq)) = (message.start, message.cseq)
            && cseq.method != method
        {
            return Err(ParseError::CSeqMismatch {
                known_method: method.is_known(),
            });
        }
        let rest = data.get(body_start..).unwrap_or_default();
        message.body = match message.content_length {
            None => rest,
            Some(declared) => rest
                .get(..declared as usize)
                .ok_or(ParseError::BodyTruncated {
                    declared,
                    available: rest.len(),
                })?,
        };
        Ok(message)
    }

    /// Splits header lines, joining folded continuation lines (RFC 3261 §7.3.1).
    fn split_headers(&mut self, head: &'a str) -> Result<(), ParseError> {
        let first_line_end = memchr::memchr(b'\n', head.as_bytes()).map_or(head.len(), |at| at + 1);
        let mut offset = first_line_end;
        let mut current: Option<(HeaderName<'a>, usize, usize)> = None;
        while offset < head.len() {
            let line_end = memchr::memchr(b'\n', head.as_bytes().get(offset..).unwrap_or_default())
                .map_or(head.len(), |at| offset + at);
            let line = head.get(offset..line_end).unwrap_or("");
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                let (_, _, end) = current.as_mut().ok_or(ParseError::BadHeaderLine)?;
                *end = offset + line.len();
            } else {
                if let Some(done) = current.take() {
                    self.push_header(head, done)?;
                }
                let colon =
                    memchr::memchr(b':', line.as_bytes()).ok_or(ParseError::BadHeaderLine)?;
                let name = line
                    .get(..colon)
                    .unwrap_or("")
                    .trim_end_matches([' ', '\t']);
                if name.is_empty() || !name.bytes().all(scan::is_token) {
                    return Err(ParseError::BadHeaderLine);
                }
                current = Some((
                    HeaderName::parse(name),
                    offset + colon + 1,
                    offset + line.len(),
                ));
            }
            offset = line_end + 1;
        }
        if let Some(done) = current {
            self.push_header(head, done)?;
        }
        Ok(())
    }

    fn push_header(
        &mut self,
        head: &'a str,
        (name, start, end): (HeaderName<'a>, usize, usize),
    ) -> Result<(), ParseError> {
        if self.headers.len() >= MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let value = head
            .get(start..end)
            .unwrap_or("")
            .trim_matches(scan::is_ws_char);
        self.headers.push(Header { name, value });
        Ok(())
    }

    /// Checks the syntax of one header the user agent reads and keeps the first of each.
    fn check_header(&mut self, header: Header<'a>) -> Result<(), ParseError> {
        let value = header.value;
        let bad = |header: &'static str| {
            move |problem: &'static str| ParseError::BadHeader { header, problem }
        };
        match header.name {
            HeaderName::Via => {
                let mut first = None;
                Via::parse_list(value, |via| {
                    first.get_or_insert(via);
                })
                .map_err(bad("Via"))?;
                if self.via.is_none() {
                    self.via = first;
                }
            }
            HeaderName::From => {
                let from = NameAddr::parse_single(value).map_err(bad("From"))?;
                self.keep_first("From", |m| &mut m.from, from);
            }
            HeaderName::To => {
                let to = NameAddr::parse_single(value).map_err(bad("To"))?;
                self.keep_first("To", |m| &mut m.to, to);
            }
            HeaderName::CallId => {
                let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic());
                if !valid {
                    return Err(bad("Call-ID")("must be one word with no white space"));
                }
                self.keep_first("Call-ID", |m| &mut m.call_id, value);
            }
            HeaderName::CSeq => {
                let cseq = CSeq::parse(value).map_err(bad("CSeq"))?;
                self.keep_first("CSeq", |m| &mut m.cseq, cseq);
            }
            HeaderName::MaxForwards => {
                let hops = header::parse_u32(value)
                    .ok_or_else(|| bad("Max-Forwards")("must be an integer"))?;
                self.keep_first("Max-Forwards", |m| &mut m.max_forwards, hops);
            }
            HeaderName::ContentLength => {
                let length = header::parse_u32(value).ok_or_else(|| {
                    bad("Content-Length")("must be a non-negative integer below 2^32")
                })?;
                self.keep_first("Content-Length", |m| &mut m.content_length, length);
            }
            HeaderName::Contact if value != "*" => {
                let mut first = None;
                NameAddr::parse_list(value, |contact| {
                    first.get_or_insert(contact);
                })
                .map_err(bad("Contact"))?;
                if self.contact.is_none() {
                    self.contact = first;
                }
            }
            HeaderName::Route | HeaderName::RecordRoute => {
                let name = if header.name == HeaderName::Route {
                    "Route"
                } else {
                    "Record-Route"
                };
                NameAddr::parse_list(value, |_| {}).map_err(bad(name))?;
            }
            _ => {}
        }
        Ok(())
    }

    fn keep_first<T>(
        &mut self,
        name: &'static str,
        slot: impl FnOnce(&mut Self) -> &mut Option<T>,
        value: T,
    ) {
        let slot_ref = slot(self);
        if slot_ref.is_none() {
            *slot_ref = Some(value);
        } else {
            self.duplicate.get_or_insert(name);
        }
    }

    /// Checks what a UAS needs before acting on a request (RFC 3261 §8.2.1–§8.2.2):
    /// Via, From, To, Call-ID and CSeq present once each, and a sip/sips Request-URI.
    pub fn check_request(&self) -> Result<(), ParseError> {
        let StartLine::Request { uri, .. } = self.start else {
            return Ok(());
        };
        let required = [
            ("Via", self.via.is_some()),
            ("From", self.from.is_some()),
            ("To", self.to.is_some()),
            ("Call-ID", self.call_id.is_some()),
            ("CSeq", self.cseq.is_some()),
        ];
        if let Some((name, _)) = required.iter().find(|(_, present)| !present) {
            return Err(ParseError::MissingHeader(name));
        }
        if let Some(name) = self.duplicate {
            return Err(ParseError::DuplicateHeader(name));
        }
        if uri.sip().is_none() {
            return Err(ParseError::UnsupportedUriScheme);
        }
        Ok(())
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, for a request.
    pub fn request_uri(&self) -> Option<&Uri<'a>> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase, for a response.
    pub fn reason(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// Values of every header with this name, in order.
    pub fn header_values<'m>(&'m self, name: HeaderName<'m>) -> impl Iterator<Item = &'a str> + 'm {
        self.headers
            .iter()
            .filter(move |h| h.name.matches(&name))
            .map(|h| h.value)
    }

    /// The first value of a header.
    pub fn header(&self, name: HeaderName<'_>) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.matches(&name))
            .map(|h| h.value)
    }

    /// The top Via value.
    pub fn via(&self) -> Option<&Via<'a>> {
        self.via.as_ref()
    }

    /// From.
    pub fn from(&self) -> Option<&NameAddr<'a>> {
        self.from.as_ref()
    }

    /// To.
    pub fn to(&self) -> Option<&NameAddr<'a>> {
        self.to.as_ref()
    }

    /// Call-ID.
    pub fn call_id(&self) -> Option<&'a str> {
        self.call_id
    }

    /// CSeq.
    pub fn cseq(&self) -> Option<&CSeq<'a>> {
        self.cseq.as_ref()
    }

    /// The first Contact address (`None` for `*` or absent).
    pub fn contact(&self) -> Option<&NameAddr<'a>> {
        self.contact.as_ref()
    }

    /// Max-Forwards.
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// Content-Length as declared (the body is framed by it).
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// The media type of Content-Type (`application/sdp`), parameters dropped.
    pub fn content_type(&self) -> Option<&'a str> {
        let value = self.header(HeaderName::ContentType)?;
        Some(
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim_matches(scan::is_ws_char),
        )
    }

    /// Every Record-Route address, top first, across all Record-Route headers.
    pub fn record_route(&self) -> SmallVec<[NameAddr<'a>; 4]> {
        let mut routes = SmallVec::new();
        for value in self.header_values(HeaderName::RecordRoute) {
            // Syntax was checked in `parse`, so this cannot fail here.
            let _ = NameAddr::parse_list(value, |route| routes.push(route));
        }
        routes
    }

    /// The body, framed by Content-Length.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Writes this message back out: start line, headers in order (canonical names, folding
    /// flattened), Content-Length recomputed from the body.
    pub fn write(&self, buf: &mut Vec<u8>) {
        let mut out = match self.start {
            StartLine::Request { method, uri } => {
                print::Writer::request(buf, method.as_str(), uri.as_str())
            }
            StartLine::Response { status, reason } => print::Writer::response(buf, status, reason),
        };
        for header in self
            .headers
            .iter()
            .filter(|h| h.name != HeaderName::ContentLength)
        {
            out.header(header.name.as_str(), header.value);
        }
        out.finish(None, self.body);
    }
}

/// Finds the empty line: returns the header section's length (without the line break that
/// ends the last header) and where the body starts. Bare LF line ends are tolerated.
fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', data) {
        let line = data.get(line_start..newline)?;
        if line.is_empty() || line == b"\r" {
            return Some((line_start.saturating_sub(1), newline + 1));
        }
        line_start = newline + 1;
    }
    None
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        check_version(version)?;
        let code = parts.next().unwrap_or("");
        let status = match code.as_bytes() {
            [a, b, c] if code.bytes().all(|d| d.is_ascii_digit()) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(ParseError::BadStatusCode),
        };
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStatusCode);
        }
        return Ok(StartLine::Response {
            status,
            reason: parts.next().unwrap_or(""),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine);
    };
    if method.is_empty() || !method.bytes().all(scan::is_token) {
        return Err(ParseError::BadStartLine);
    }
    let version = version
        .strip_prefix("SIP/")
        .ok_or(ParseError::BadStartLine)?;
    check_version(version)?;
    let uri = Uri::parse(uri).map_err(ParseError::BadRequestUri)?;
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri,
    })
}

/// `2.0` passes; another `digits.digits` is [`ParseError::BadVersion`] (505).
fn check_version(version: &str) -> Result<(), ParseError> {
    if version == "2.0" {
        return Ok(());
    }
    let numeric = version.split_once('.').is_some_and(|(major, minor)| {
        header::parse_u32(major).is_some() && header::parse_u32(minor).is_some()
    });
    Err(if numeric {
        ParseError::BadVersion
    } else {
        ParseError::BadStartLine
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@192.0.2.1>\r\n\
c: application/sdp; charset=x\r\n\
Record-Route: <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p0.example.com;lr>\r\n\
l: 4\r\n\
\r\n\
v=0\r\ntrailing";

    #[test]
    fn parses_typed_headers() {
        let message = parse_message(INVITE).unwrap();
        assert_eq!(message.method(), Some(Method::Invite));
        let via = message.via().unwrap();
        assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(via.port, Some(5060));
        assert_eq!(via.rport(), Some(None));
        assert_eq!(message.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(message.to().unwrap().tag(), None);
        assert_eq!(
            message.call_id(),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(message.cseq().unwrap().number, 314159);
        assert_eq!(
            message.contact().unwrap().uri.as_str(),
            "sip:alice@192.0.2.1"
        );
        assert_eq!(message.content_type(), Some("application/sdp"));
        assert_eq!(message.max_forwards(), Some(70));
        assert_eq!(message.body(), b"v=0\r");
        let routes: Vec<_> = message
            .record_route()
            .iter()
            .map(|r| r.uri.as_str())
            .collect();
        assert_eq!(
            routes,
            [
                "sip:p2.example.com;lr",
                "sip:p1.example.com;lr",
                "sip:p0.example.com;lr"
            ]
        );
        assert_eq!(message.header(HeaderName::Other("call-id")), None);
        assert!(message.check_request().is_ok());
    }

    #[test]
    fn write_round_trips() {
        let message = parse_message(INVITE).unwrap();
        let mut out = Vec::new();
        message.write(&mut out);
        let again = parse_message(&out).unwrap();
        assert_eq!(again.headers(), message.headers());
        assert_eq!(again.body(), message.body());
        assert_eq!(again.start_line(), message.start_line());
    }

    #[test]
    fn response_status_lines() {
        let ok = parse_message(b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n").unwrap();
        assert_eq!((ok.status(), ok.reason()), (Some(200), Some("OK")));
        let empty = parse_message(b"SIP/2.0 100 \r\n\r\n").unwrap();
        assert_eq!(empty.reason(), Some(""));
        assert_eq!(
            parse_message(b"SIP/2.0 4294967301 Big\r\n\r\n").unwrap_err(),
            ParseError::BadStatusCode
        );
        assert_eq!(
            parse_message(b"SIP/2.0 099 Low\r\n\r\n").unwrap_err(),
            ParseError::BadStatusCode
        );
        assert_eq!(
            parse_message(b"SIP/3.0 200 OK\r\n\r\n").unwrap_err(),
            ParseError::BadVersion
        );
    }

    #[test]
    fn errors_map_to_statuses() {
        let cases: &[(&[u8], u16)] = &[
            (b"OPTIONS sip:a@b SIP/7.0\r\n\r\n", 505),
            (b"OPTIONS sip:a@b SIP/2.0 \r\n\r\n", 400),
            (b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n", 400),
            (b"OPTIONS sip:a@b\r\n\r\n", 400),
            (b"OPTIONS sip:a@b SIP/2.0\r\nno colon\r\n\r\n", 400),
            (b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n", 400),
            (b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nabc", 400),
            (b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n", 400),
            (b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n", 400),
            (b"FOO sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n", 501),
            (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", 400),
        ];
        for (bytes, status) in cases {
            let error = parse_message(bytes).unwrap_err();
            assert_eq!(
                error.status(),
                *status,
                "{error} for {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(parse_message(b"\r\n\r\n").unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n").unwrap_err(),
            ParseError::NotUtf8
        );
    }

    #[test]
    fn check_request_finds_missing_duplicate_and_scheme() {
        let missing = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(
            missing.check_request(),
            Err(ParseError::MissingHeader("Via"))
        );
        let base = "Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
        let twice = format!("OPTIONS sip:a@b SIP/2.0\r\n{base}Call-ID: y\r\n\r\n");
        assert_eq!(
            parse_message(twice.as_bytes()).unwrap().check_request(),
            Err(ParseError::DuplicateHeader("Call-ID"))
        );
        let tel = format!("OPTIONS tel:+1555 SIP/2.0\r\n{base}\r\n");
        let error = parse_message(tel.as_bytes())
            .unwrap()
            .check_request()
            .unwrap_err();
        assert_eq!(error.status(), 416);
    }

    #[test]
    fn bare_lf_and_leading_crlf_are_tolerated() {
        let message = parse_message(b"\r\nSIP/2.0 180 Ringing\nCSeq: 1 INVITE\n\n").unwrap();
        assert_eq!(message.cseq().unwrap().method, Method::Invite);
    }

    #[test]
    fn too_many_headers_are_refused() {
        let mut data = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            data.extend_from_slice(b"X: y\r\n");
        }
        data.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_message(&data).unwrap_err(),
            ParseError::TooManyHeaders
        );
    }
}
