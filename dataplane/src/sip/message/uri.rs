//! SIP and other URIs (RFC 3261 §19.1, §25.1; IPv6 references per RFC 5118).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::scan::Scanner;

/// Why a URI did not parse.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("URI has no scheme; write it as `sip:user@host`")]
    MissingScheme,
    /// White space, `<`, `>` or `"` inside the URI.
    #[error("URI contains white space, `<`, `>` or a quote; remove them")]
    BadCharacter,
    /// `user@` with an empty user.
    #[error("URI has an empty user part before `@`")]
    EmptyUser,
    /// Host missing or not a hostname, IPv4 address or `[IPv6]` reference.
    #[error("URI host is missing or malformed; use a hostname, IPv4 address or [IPv6] reference")]
    BadHost,
    /// Port not a number in 0..=65535.
    #[error("URI port is not a number from 0 to 65535")]
    BadPort,
    /// A `;` with no parameter name after it.
    #[error("URI has an empty parameter (`;;`)")]
    EmptyParam,
}

/// A URI in a Request-URI, From, To, Contact or Route.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:` (RFC 3261 §19.1).
    Sip(SipUri<'a>),
    /// Any other scheme (`tel:`, `http:`, ...), kept opaque.
    Other {
        /// The scheme, without the colon.
        scheme: &'a str,
        /// The whole URI text.
        text: &'a str,
    },
}

impl<'a> Uri<'a> {
    /// Parses a URI that carries no surrounding white space or brackets.
    pub fn parse(text: &'a str) -> Result<Self, UriError> {
        if text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || matches!(b, b'<' | b'>' | b'"'))
        {
            return Err(UriError::BadCharacter);
        }
        let colon = memchr::memchr(b':', text.as_bytes()).ok_or(UriError::MissingScheme)?;
        let scheme = text.get(..colon).ok_or(UriError::MissingScheme)?;
        let rest = text.get(colon + 1..).unwrap_or("");
        let valid_scheme = scheme
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(UriError::MissingScheme);
        }
        let secure = scheme.eq_ignore_ascii_case("sips");
        if secure || scheme.eq_ignore_ascii_case("sip") {
            return SipUri::parse_after_scheme(text, rest, secure).map(Uri::Sip);
        }
        if rest.is_empty() {
            return Err(UriError::BadCharacter);
        }
        Ok(Uri::Other { scheme, text })
    }

    /// The whole URI text, as received.
    pub fn as_str(&self) -> &'a str {
        match self {
            Uri::Sip(sip) => sip.text,
            Uri::Other { text, .. } => text,
        }
    }

    /// The SIP URI, when this is one.
    pub fn sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(sip) => Some(sip),
            Uri::Other { .. } => None,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `sip:user:password@host:port;params?headers` (RFC 3261 §19.1.1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, still %-escaped (may contain `;`, RFC 4475 §3.1.1.9).
    pub user: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The port, when given.
    pub port: Option<u16>,
    /// `uri-parameters` with their leading `;`, or empty.
    pub params: &'a str,
    /// `headers` after `?`, or empty.
    pub headers: &'a str,
    /// The whole URI text.
    pub text: &'a str,
}

impl<'a> SipUri<'a> {
    fn parse_after_scheme(text: &'a str, rest: &'a str, secure: bool) -> Result<Self, UriError> {
        let (user, hostpart) = match memchr::memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = rest.get(..at).unwrap_or("");
                let user = userinfo.split(':').next().unwrap_or("");
                if user.is_empty() {
                    return Err(UriError::EmptyUser);
                }
                (Some(userinfo), rest.get(at + 1..).unwrap_or(""))
            }
            None => (None, rest),
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((before, after)) => (before, after),
            None => (hostpart, ""),
        };
        let params_at = memchr::memchr(b';', hostpart.as_bytes()).unwrap_or(hostpart.len());
        let (hostport, params) = hostpart.split_at(params_at);
        if params
            .split(';')
            .skip(1)
            .any(|param| param.split('=').next().unwrap_or("").is_empty())
        {
            return Err(UriError::EmptyParam);
        }
        let (host, port) = parse_hostport(hostport)?;
        Ok(Self {
            secure,
            user,
            host,
            port,
            params,
            headers,
            text,
        })
    }

    /// A URI parameter: `Some(None)` for a flag like `;lr`, `Some(Some(v))` for `;name=v`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Where to send a request for this URI when its host is an IP address (RFC 3263 DNS
    /// is not done here); the port defaults to 5060.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.host.ip()?, self.port.unwrap_or(5060)))
    }
}

/// A host in a URI or Via (RFC 3261 §25.1 `host`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Host<'a> {
    /// A domain name (or anything name-shaped).
    Name(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// The text inside `[...]`. Kept as text: RFC 5118 §4.10 asks parsers to tolerate the
    /// three-colon form that RFC 3261's ABNF allowed, which `Ipv6Addr` refuses.
    Ipv6(&'a str),
}

impl Host<'_> {
    /// The address, when the host is an IP literal (and `localhost` as 127.0.0.1).
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(text) => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            Host::Name(name) if name.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(text) => write!(f, "[{text}]"),
        }
    }
}

/// Parses `host [":" port]`.
pub(crate) fn parse_hostport(text: &str) -> Result<(Host<'_>, Option<u16>), UriError> {
    let (host, port_text) = if let Some(inner) = text.strip_prefix('[') {
        let close = memchr::memchr(b']', inner.as_bytes()).ok_or(UriError::BadHost)?;
        let address = inner.get(..close).unwrap_or("");
        let valid = !address.is_empty()
            && address.contains(':')
            && address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !valid {
            return Err(UriError::BadHost);
        }
        let after = inner.get(close + 1..).unwrap_or("");
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(UriError::BadHost),
        };
        (Host::Ipv6(address), port)
    } else {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        (parse_host_name(name)?, port)
    };
    let port = match port_text {
        None => None,
        Some(digits) => Some(parse_port(digits)?),
    };
    Ok((host, port))
}

fn parse_host_name(name: &str) -> Result<Host<'_>, UriError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err(UriError::BadHost);
    }
    Ok(match name.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ipv4(ip),
        Err(_) => Host::Name(name),
    })
}

fn parse_port(digits: &str) -> Result<u16, UriError> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::BadPort);
    }
    digits.parse().map_err(|_| UriError::BadPort)
}

/// Finds `name` in a `;name=value;flag` list (white space tolerated, names compared without
/// case). `Some(None)` for a parameter without a value.
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    let mut scan = Scanner::new(params);
    while scan.eat(b';') {
        let key = scan.token();
        let value = if scan.eat(b'=') {
            Some(match scan.peek() {
                Some(b'"') => scan.quoted_string().unwrap_or(""),
                _ => scan.take_while(is_param_value),
            })
        } else {
            None
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        if key.is_empty() {
            return None;
        }
    }
    None
}

/// Characters of a parameter value outside quotes: anything but separators and white space.
pub(crate) fn is_param_value(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b';' | b',' | b'"' | b'<' | b'>' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(text: &str) -> SipUri<'_> {
        match Uri::parse(text) {
            Ok(Uri::Sip(uri)) => uri,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_user_host_port_and_params() {
        let uri = sip("sip:+15550001@127.0.0.1:5070;transport=udp;lr?subject=x");
        assert_eq!(uri.user, Some("+15550001"));
        assert_eq!(uri.host, Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.param("transport"), Some(Some("udp")));
        assert_eq!(uri.param("LR"), Some(None));
        assert_eq!(uri.param("maddr"), None);
        assert_eq!(uri.headers, "subject=x");
        assert_eq!(uri.socket_addr(), Some("127.0.0.1:5070".parse().unwrap()));
    }

    #[test]
    fn user_part_may_hold_semicolons() {
        let uri = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(uri.user, Some("user;par=u%40example.net"));
        assert_eq!(uri.host, Host::Name("example.com"));
        assert_eq!(uri.params, "");
    }

    #[test]
    fn ipv6_references_follow_rfc5118() {
        let ambiguous = sip("sip:user@[2001:db8::10:5070]");
        assert_eq!(ambiguous.host, Host::Ipv6("2001:db8::10:5070"));
        assert_eq!(ambiguous.port, None);
        let port = sip("sip:user@[2001:db8::10]:5070");
        assert_eq!(port.port, Some(5070));
        assert_eq!(
            port.socket_addr(),
            Some("[2001:db8::10]:5070".parse().unwrap())
        );
        // Tolerated, though not an address Rust can use.
        assert_eq!(sip("sip:[2001:db8:::192.0.2.1]").host.ip(), None);
        assert_eq!(Uri::parse("sip:2001:db8::10"), Err(UriError::BadPort));
    }

    #[test]
    fn other_schemes_stay_opaque() {
        assert_eq!(
            Uri::parse("isbn:2983792873"),
            Ok(Uri::Other {
                scheme: "isbn",
                text: "isbn:2983792873"
            })
        );
    }

    #[test]
    fn rejects_malformed_uris() {
        assert_eq!(Uri::parse("<sip:a@b>"), Err(UriError::BadCharacter));
        assert_eq!(Uri::parse("nocolon"), Err(UriError::MissingScheme));
        assert_eq!(Uri::parse("sip:@host"), Err(UriError::EmptyUser));
        assert_eq!(Uri::parse("sip:host:99999"), Err(UriError::BadPort));
        assert_eq!(Uri::parse("sip:ho st"), Err(UriError::BadCharacter));
        assert_eq!(Uri::parse("sip:host;;lr"), Err(UriError::EmptyParam));
        assert_eq!(Uri::parse("sip:[zz::1]"), Err(UriError::BadHost));
        assert_eq!(Uri::parse("sip:"), Err(UriError::BadHost));
    }

    #[test]
    fn localhost_resolves_without_dns() {
        assert_eq!(
            sip("sip:a@localhost").socket_addr(),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(sip("sip:a@example.com").socket_addr(), None);
    }
}
