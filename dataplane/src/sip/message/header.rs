//! Header names (with compact forms, RFC 3261 §7.3.3) and the typed headers a user agent
//! reads: Via (§20.42), From/To/Contact/Route name-addrs (§20.10, §20.20, §20.39), CSeq
//! (§20.16).

use std::fmt;

use super::scan::{Scanner, is_token};
use super::uri::{Host, Uri, find_param, is_param_value, parse_hostport};

/// A header field name, compact forms expanded to their full names.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HeaderName<'a> {
    /// `Via` / `v`.
    Via,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Call-ID` / `i`.
    CallId,
    /// `CSeq`.
    CSeq,
    /// `Contact` / `m`.
    Contact,
    /// `Content-Type` / `c`.
    ContentType,
    /// `Content-Length` / `l`.
    ContentLength,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Record-Route`.
    RecordRoute,
    /// `Route`.
    Route,
    /// `Require`.
    Require,
    /// `Supported` / `k`.
    Supported,
    /// `Allow`.
    Allow,
    /// Any other header; compact forms of others (`s`, `e`, `o`, `u`, ...) are expanded here.
    Other(&'a str),
}

/// Full name, compact letter and variant for every name the parser normalises.
const NAMES: &[(&str, u8, HeaderName<'static>)] = &[
    ("Via", b'v', HeaderName::Via),
    ("From", b'f', HeaderName::From),
    ("To", b't', HeaderName::To),
    ("Call-ID", b'i', HeaderName::CallId),
    ("CSeq", 0, HeaderName::CSeq),
    ("Contact", b'm', HeaderName::Contact),
    ("Content-Type", b'c', HeaderName::ContentType),
    ("Content-Length", b'l', HeaderName::ContentLength),
    ("Max-Forwards", 0, HeaderName::MaxForwards),
    ("Record-Route", 0, HeaderName::RecordRoute),
    ("Route", 0, HeaderName::Route),
    ("Require", 0, HeaderName::Require),
    ("Supported", b'k', HeaderName::Supported),
    ("Allow", 0, HeaderName::Allow),
    ("Subject", b's', HeaderName::Other("Subject")),
    (
        "Content-Encoding",
        b'e',
        HeaderName::Other("Content-Encoding"),
    ),
    ("Event", b'o', HeaderName::Other("Event")),
    ("Allow-Events", b'u', HeaderName::Other("Allow-Events")),
    ("Refer-To", b'r', HeaderName::Other("Refer-To")),
    ("Referred-By", b'b', HeaderName::Other("Referred-By")),
    (
        "Session-Expires",
        b'x',
        HeaderName::Other("Session-Expires"),
    ),
    ("Accept-Contact", b'a', HeaderName::Other("Accept-Contact")),
    ("Reject-Contact", b'j', HeaderName::Other("Reject-Contact")),
    (
        "Request-Disposition",
        b'd',
        HeaderName::Other("Request-Disposition"),
    ),
    ("Identity", b'y', HeaderName::Other("Identity")),
    ("Identity-Info", b'n', HeaderName::Other("Identity-Info")),
];

impl<'a> HeaderName<'a> {
    /// Normalises a received name: case-insensitive, compact forms expanded.
    pub fn parse(name: &'a str) -> Self {
        let compact = match name.as_bytes() {
            [letter] => letter.to_ascii_lowercase(),
            _ => 0,
        };
        NAMES
            .iter()
            .find(|(full, letter, _)| {
                (compact != 0 && *letter == compact) || full.eq_ignore_ascii_case(name)
            })
            .map_or(HeaderName::Other(name), |(_, _, known)| *known)
    }

    /// The canonical spelling (`Call-ID`, `CSeq`, ...), or the name as received.
    pub fn as_str(&self) -> &'a str {
        match self {
            HeaderName::Other(name) => name,
            known => NAMES
                .iter()
                .find(|(_, _, variant)| variant == known)
                .map_or("", |(full, _, _)| full),
        }
    }

    /// Same header, comparing `Other` names without case.
    pub fn matches(&self, other: &HeaderName<'_>) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl fmt::Display for HeaderName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request method (RFC 3261 §7.1; case-sensitive).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Method<'a> {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// OPTIONS.
    Options,
    /// REGISTER.
    Register,
    /// A method defined by an extension (PRACK, UPDATE, INFO, ...) or unknown.
    Other(&'a str),
}

/// Extension methods we recognise but do not allow: answered 405, not 501.
const KNOWN_EXTENSIONS: &[&str] = &[
    "PRACK",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

impl<'a> Method<'a> {
    /// Maps a method token.
    pub fn parse(token: &'a str) -> Self {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            other => Method::Other(other),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Other(token) => token,
        }
    }

    /// True for methods defined by RFC 3261 or a well-known extension RFC.
    pub fn is_known(&self) -> bool {
        match self {
            Method::Other(token) => KNOWN_EXTENSIONS.contains(token),
            _ => true,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `via-parm` (RFC 3261 §20.42).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Via<'a> {
    /// Transport token (`UDP`, `TCP`, ... or unknown).
    pub transport: &'a str,
    /// `sent-by` host.
    pub host: Host<'a>,
    /// `sent-by` port.
    pub port: Option<u16>,
    /// `via-params` with their leading `;` (white space as received).
    pub params: &'a str,
}

impl<'a> Via<'a> {
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        find_param(self.params, "branch").flatten()
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        find_param(self.params, "received").flatten()
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        find_param(self.params, "rport").map(|value| value.and_then(|port| port.parse().ok()))
    }

    /// Any parameter.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Parses every comma-separated `via-parm` of one Via header value.
    pub(crate) fn parse_list(
        value: &'a str,
        mut each: impl FnMut(Self),
    ) -> Result<(), &'static str> {
        let mut scan = Scanner::new(value);
        loop {
            each(Self::parse_one(&mut scan)?);
            if scan.at_end() {
                return Ok(());
            }
            if !scan.eat(b',') {
                return Err("expected `,` or `;` after a Via value");
            }
        }
    }

    fn parse_one(scan: &mut Scanner<'a>) -> Result<Self, &'static str> {
        scan.skip_ws();
        let name = scan.token();
        if !name.eq_ignore_ascii_case("SIP") || !scan.eat(b'/') {
            return Err("sent-protocol must start `SIP/2.0/`");
        }
        let version = scan.take_while(|b| b.is_ascii_digit() || b == b'.');
        if version != "2.0" || !scan.eat(b'/') {
            return Err("sent-protocol must be `SIP/2.0/<transport>`");
        }
        let transport = scan.token();
        if transport.is_empty() {
            return Err("sent-protocol has no transport");
        }
        scan.skip_ws();
        let hostport = scan.take_while(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        });
        let (host, port) = parse_hostport(hostport).map_err(|_| "sent-by is not host[:port]")?;
        let params = parse_params(scan)?;
        Ok(Self {
            transport,
            host,
            port,
            params,
        })
    }
}

/// Parses `*( SEMI generic-param )` and returns the text it covered.
pub(crate) fn parse_params<'a>(scan: &mut Scanner<'a>) -> Result<&'a str, &'static str> {
    let start = scan.pos();
    let mut end = start;
    while scan.eat(b';') {
        if scan.token().is_empty() {
            return Err("empty parameter (`;;` or `;=`)");
        }
        if scan.eat(b'=') {
            match scan.peek() {
                Some(b'"') => {
                    scan.quoted_string()
                        .ok_or("unterminated quoted parameter value")?;
                }
                _ => {
                    if scan.take_while(is_param_value).is_empty() {
                        return Err("parameter has `=` but no value");
                    }
                }
            }
        }
        end = scan.pos();
    }
    Ok(scan.slice(start, end))
}

/// A `name-addr` or `addr-spec` with its header parameters (From, To, Contact, Route,
/// Record-Route).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct NameAddr<'a> {
    /// The display name: quoted-string contents (escapes kept) or the token words.
    pub display: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Header parameters with their leading `;`.
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        find_param(self.params, "tag").flatten()
    }

    /// Any header parameter.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Parses a single value (From, To).
    pub(crate) fn parse_single(value: &'a str) -> Result<Self, &'static str> {
        let mut scan = Scanner::new(value);
        let parsed = Self::parse_one(&mut scan)?;
        if !scan.at_end() {
            return Err("unexpected text after the address");
        }
        Ok(parsed)
    }

    /// Parses a comma-separated list (Contact, Route, Record-Route).
    pub(crate) fn parse_list(
        value: &'a str,
        mut each: impl FnMut(Self),
    ) -> Result<(), &'static str> {
        let mut scan = Scanner::new(value);
        loop {
            each(Self::parse_one(&mut scan)?);
            if scan.at_end() {
                return Ok(());
            }
            if !scan.eat(b',') {
                return Err("expected `,` between addresses");
            }
        }
    }

    fn parse_one(scan: &mut Scanner<'a>) -> Result<Self, &'static str> {
        scan.skip_ws();
        let mut display = None;
        let bracketed = match scan.peek() {
            Some(b'"') => {
                display = Some(
                    scan.quoted_string()
                        .ok_or("unterminated quoted display name")?,
                );
                true
            }
            Some(b'<') => true,
            _ => {
                // `*(token LWS)` then `<` is a display name; anything else is an addr-spec.
                let start = scan.pos();
                let mut end = start;
                loop {
                    if scan.token().is_empty() {
                        break;
                    }
                    end = scan.pos();
                    scan.skip_ws();
                }
                if end > start && scan.peek() == Some(b'<') {
                    display = Some(scan.slice(start, end));
                    true
                } else {
                    scan.set_pos(start);
                    false
                }
            }
        };
        let uri_text = if bracketed {
            if !scan.eat(b'<') {
                return Err("display name must be followed by `<URI>`");
            }
            let text = scan.take_while(|b| b != b'>' && !super::scan::is_ws(b));
            if !scan.eat(b'>') {
                return Err("`<` without a matching `>`");
            }
            text
        } else {
            scan.take_while(|b| {
                b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'?' | b'<' | b'>' | b'"')
            })
        };
        let uri = Uri::parse(uri_text).map_err(|_| "malformed URI")?;
        let params = parse_params(scan)?;
        Ok(Self {
            display,
            uri,
            params,
        })
    }
}

/// `CSeq: number method` (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CSeq<'a> {
    /// Sequence number (below 2^31 per §8.1.1.5; up to 2^32-1 accepted).
    pub number: u32,
    /// Method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    pub(crate) fn parse(value: &'a str) -> Result<Self, &'static str> {
        let mut scan = Scanner::new(value);
        scan.skip_ws();
        let digits = scan.take_while(|b| b.is_ascii_digit());
        let number = parse_u32(digits).ok_or("sequence number must be an integer below 2^32")?;
        scan.skip_ws();
        let method = scan.take_while(is_token);
        if method.is_empty() || !scan.at_end() {
            return Err("must be `<number> <METHOD>`");
        }
        Ok(Self {
            number,
            method: Method::parse(method),
        })
    }
}

/// Decimal digits to `u32`; `None` if empty, not digits or too large.
pub(crate) fn parse_u32(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_mixed_case_names_normalise() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::parse("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse("s").as_str(), "Subject");
        assert_eq!(HeaderName::parse("call-id").as_str(), "Call-ID");
        assert_eq!(
            HeaderName::parse("C%6Fntact"),
            HeaderName::Other("C%6Fntact")
        );
        assert!(HeaderName::parse("x-foo").matches(&HeaderName::Other("X-Foo")));
    }

    #[test]
    fn via_list_with_folding_and_spaces() {
        let value = "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239";
        let mut vias = Vec::new();
        Via::parse_list(value, |via| vias.push(via)).unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].transport, "TCP");
        assert_eq!(vias[0].host, Host::Name("spindle.example.com"));
        assert_eq!(vias[0].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(vias[1].branch(), Some("z9hG4bK30239"));
    }

    #[test]
    fn via_params_and_errors() {
        let mut top = None;
        Via::parse_list(
            "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;rport=5061;branch=z9hG4bKa",
            |v| {
                top.get_or_insert(v);
            },
        )
        .unwrap();
        let top = top.unwrap();
        assert_eq!(top.port, None);
        assert_eq!(top.received(), Some("2001:db8::9:255"));
        assert_eq!(top.rport(), Some(Some(5061)));
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDP h:70000",
            "SIP/2.0/UDP",
        ] {
            assert!(Via::parse_list(bad, |_| {}).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let quoted = NameAddr::parse_single(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(quoted.display, Some("J Rosenberg \\\\\\\""));
        assert_eq!(quoted.tag(), Some("98asjd8"));
        let bare = NameAddr::parse_single("sip:caller@example.net;tag=134161461246").unwrap();
        assert_eq!(bare.uri.as_str(), "sip:caller@example.net");
        assert_eq!(bare.tag(), Some("134161461246"));
        let tokens = NameAddr::parse_single("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(tokens.display, Some("caller"));
        assert!(NameAddr::parse_single("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(
            NameAddr::parse_single("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err()
        );
        assert!(NameAddr::parse_single("<sip:a@b> <sip:c@d>").is_err());
    }

    #[test]
    fn name_addr_list() {
        let mut uris = Vec::new();
        NameAddr::parse_list(
            "<sip:p1.example.com;lr>, \"x\" <sip:p2.example.com;lr>;foo",
            |a| uris.push(a.uri.as_str()),
        )
        .unwrap();
        assert_eq!(uris, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
    }

    #[test]
    fn cseq_numbers_and_methods() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE"),
            Ok(CSeq {
                number: 9,
                method: Method::Invite
            })
        );
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
    }
}
