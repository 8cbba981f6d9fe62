//! What the endpoint can dial: the one rule the SIP endpoint applies at dial time and the
//! control plane applies when a request arrives, so nothing accepted is refused later.

use super::message::{Host, SipUri, Uri};
use super::transport::Transport;

/// Why a URI cannot be dialled (or used as From).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// Not a URI at all, or one that does not parse.
    #[error("is not a valid URI; write it as sip:user@host[:port]")]
    Malformed,
    /// A URI of another scheme (`tel:`, `http:`, ...).
    #[error("is not a sip: URI; write it as sip:user@host[:port]")]
    NotSip,
    /// `sips:` needs SIP over TLS, which this endpoint does not carry.
    #[error("is a sips: URI, but SIP over TLS is not supported; use sip:")]
    Secure,
    /// `?headers` would be copied into the request (RFC 3261 §19.1.5); the endpoint refuses.
    #[error("carries URI headers (`?...`), which are not sent; remove them")]
    Headers,
    /// Port 0 cannot be sent to.
    #[error("has port 0; give a port from 1 to 65535 or none (5060)")]
    PortZero,
    /// `;transport=` other than UDP or TCP.
    #[error("asks for a transport other than UDP or TCP; remove `;transport=` or use udp or tcp")]
    Transport,
    /// Longer than any request line should carry.
    #[error("is longer than 2048 characters")]
    TooLong,
}

/// Longest target accepted, bytes.
pub const MAX_TARGET_LEN: usize = 2048;

/// Checks that `text` is a SIP URI the endpoint sends an INVITE to.
pub fn dial_target(text: &str) -> Result<SipUri<'_>, TargetError> {
    if text.len() > MAX_TARGET_LEN {
        return Err(TargetError::TooLong);
    }
    let uri = Uri::parse(text).map_err(|_| TargetError::Malformed)?;
    let sip = *uri.sip().ok_or(TargetError::NotSip)?;
    if sip.secure {
        return Err(TargetError::Secure);
    }
    if !sip.headers.is_empty() || text.contains('?') {
        return Err(TargetError::Headers);
    }
    if sip.port == Some(0) {
        return Err(TargetError::PortZero);
    }
    if sip.param("transport").is_some() {
        // TLS is refused like `sips:` until the loop carries it (`docs/sip.md`, Transports).
        match transport_param(&sip) {
            Some(Transport::Udp | Transport::Tcp) => {}
            Some(Transport::Tls) | None => return Err(TargetError::Transport),
        }
    }
    if let Host::Name(name) = sip.host
        && name.is_empty()
    {
        return Err(TargetError::Malformed);
    }
    Ok(sip)
}

/// The transport a URI asks for with `;transport=`; `None` when it names none (or one this
/// endpoint does not know). Without one, a request goes over UDP unless it is too large
/// (RFC 3261 §18.1.1); with `;transport=udp` it stays on UDP whatever its size.
pub fn transport_param(uri: &SipUri<'_>) -> Option<Transport> {
    uri.param("transport")
        .flatten()
        .and_then(Transport::from_uri_param)
}

/// Checks that `text` is a SIP URI usable as the From of a request.
pub fn from_uri(text: &str) -> Result<SipUri<'_>, TargetError> {
    if text.len() > MAX_TARGET_LEN {
        return Err(TargetError::TooLong);
    }
    let uri = Uri::parse(text).map_err(|_| TargetError::Malformed)?;
    let sip = *uri.sip().ok_or(TargetError::NotSip)?;
    if !sip.headers.is_empty() || text.contains('?') {
        return Err(TargetError::Headers);
    }
    Ok(sip)
}

/// True when `text` is a `Privacy` header value (RFC 3323 §4.2): tokens such as `id`,
/// `header` or `none`, separated by `;`, at most 128 bytes.
pub fn is_privacy_value(text: &str) -> bool {
    text.len() <= 128
        && text.split(';').all(|value| {
            let value = value.trim_matches([' ', '\t']);
            !value.is_empty() && value.bytes().all(crate::sip::message::scan::is_token)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_values() {
        for ok in ["id", "none", "header;id", "user; critical"] {
            assert!(is_privacy_value(ok), "{ok}");
        }
        for bad in ["", "id;", "id\r\nX: y", "a b", &"x".repeat(200)] {
            assert!(!is_privacy_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn dialable_targets() {
        for ok in [
            "sip:+15550001@127.0.0.1:5070",
            "sip:alice@example.com",
            "sip:127.0.0.1",
            "sip:bob@[2001:db8::1]:5080;transport=UDP",
            "sip:carol@example.com;user=phone",
            "sip:dave@192.0.2.4;transport=tcp",
        ] {
            assert!(dial_target(ok).is_ok(), "{ok}");
        }
        let transport = |text| transport_param(&dial_target(text).unwrap());
        assert_eq!(transport("sip:a@b;transport=TCP"), Some(Transport::Tcp));
        assert_eq!(transport("sip:a@b;transport=udp"), Some(Transport::Udp));
        assert_eq!(transport("sip:a@b"), None);
    }

    #[test]
    fn refusals_name_the_rule() {
        let cases = [
            ("sip:a@b?Subject=hi", TargetError::Headers),
            ("sip:a@b?", TargetError::Headers),
            ("sips:a@example.com", TargetError::Secure),
            ("tel:+15550001", TargetError::NotSip),
            ("sip:a@b:0", TargetError::PortZero),
            ("sip:a@b:99999", TargetError::Malformed),
            ("sip:a@b;transport=tls", TargetError::Transport),
            ("sip:a@b;transport=sctp", TargetError::Transport),
            ("sip:a@b;transport", TargetError::Transport),
            ("sip:@b", TargetError::Malformed),
            ("sip:a b@c", TargetError::Malformed),
            ("alice", TargetError::Malformed),
        ];
        for (text, want) in cases {
            assert_eq!(dial_target(text).err(), Some(want), "{text}");
        }
        let long = format!("sip:{}@example.com", "a".repeat(3000));
        assert_eq!(dial_target(&long).err(), Some(TargetError::TooLong));
    }

    #[test]
    fn from_allows_sips_but_not_headers() {
        assert!(from_uri("sips:me@example.com").is_ok());
        assert_eq!(from_uri("sip:me@x?h=1").err(), Some(TargetError::Headers));
    }
}
