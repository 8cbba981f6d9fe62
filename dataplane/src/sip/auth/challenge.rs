//! The `WWW-Authenticate` / `Proxy-Authenticate` challenge grammar (RFC 3261 §25.1
//! `challenge`, RFC 7616 §3.3, RFC 8760 §2.2), parsed by hand: the maintained digest crates
//! are HTTP clients that bring their own hash versions, and the grammar is small.
//!
//! One header value is one challenge (RFC 3261 §20.44: `WWW-Authenticate: challenge`); a
//! server offering several algorithms sends several headers (RFC 8760 §2.4).

use crate::sip::message::scan::{Scanner, is_token};

/// Most parameters one challenge may carry; more is refused as hostile.
pub const MAX_PARAMS: usize = 32;
/// Longest parameter value, bytes (nonces are tens of bytes in practice).
pub const MAX_VALUE_BYTES: usize = 1024;

/// A digest algorithm (RFC 7616 §3.3, RFC 8760 §2.1).
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd, Hash)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm, in the words of the RFCs.
    pub const ALL: [Self; 6] = [
        Self::Md5,
        Self::Md5Sess,
        Self::Sha256,
        Self::Sha256Sess,
        Self::Sha512_256,
        Self::Sha512_256Sess,
    ];

    /// The token as written in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Reads the token, without case (RFC 7616 §3.3: case-insensitive).
    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// A `-sess` variant (the session key mixes in the nonce and cnonce).
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// Preference when a server offers several: the stronger hash first.
    pub fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 0,
            Self::Sha256 | Self::Sha256Sess => 1,
            Self::Sha512_256 | Self::Sha512_256Sess => 2,
        }
    }
}

/// The quality-of-protection values a challenge offers (`qop="auth,auth-int"`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct QopOptions {
    /// `auth`: request line only.
    pub auth: bool,
    /// `auth-int`: request line and body.
    pub auth_int: bool,
    /// A `qop` parameter was present at all (absent = RFC 2069 compatibility, no cnonce).
    pub present: bool,
}

/// One digest challenge.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Challenge {
    /// `realm`: which credentials to use.
    pub realm: String,
    /// `nonce`, unescaped.
    pub nonce: String,
    /// `opaque`, to be echoed unchanged.
    pub opaque: Option<String>,
    /// `algorithm` (`MD5` when absent); `None` when it names one we cannot compute.
    pub algorithm: Option<Algorithm>,
    /// The algorithm token as written, for error messages.
    pub algorithm_token: String,
    /// `qop` options.
    pub qop: QopOptions,
    /// `stale=true`: the previous credentials were good, only the nonce expired.
    pub stale: bool,
}

/// Why a challenge header could not be used.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum ChallengeError {
    /// Another scheme than Digest (e.g. `Basic`, which SIP forbids, RFC 3261 §22.1).
    #[error("the challenge uses the `{0}` scheme; only Digest is answered")]
    Scheme(String),
    /// The parameter list does not follow the grammar.
    #[error("the challenge is malformed near byte {0}")]
    Malformed(usize),
    /// A required parameter is missing.
    #[error("the challenge has no `{0}` parameter")]
    Missing(&'static str),
    /// A parameter appears twice.
    #[error("the challenge repeats `{0}`")]
    Repeated(String),
    /// Too many parameters, a value too long, or a control character in a value.
    #[error("the challenge exceeds its limits ({0})")]
    Limit(&'static str),
}

/// Parses one `WWW-Authenticate` or `Proxy-Authenticate` value. Never panics.
pub fn parse_challenge(text: &str) -> Result<Challenge, ChallengeError> {
    let mut scanner = Scanner::new(text);
    scanner.skip_ws();
    let scheme = scanner.token();
    if !scheme.eq_ignore_ascii_case("Digest") {
        let shown: String = scheme.chars().take(32).collect();
        return Err(ChallengeError::Scheme(shown));
    }
    let mut realm = None;
    let mut nonce = None;
    let mut opaque = None;
    let mut algorithm: Option<String> = None;
    let mut qop = None;
    let mut stale = None;
    let mut count = 0;
    loop {
        scanner.skip_ws();
        while scanner.eat(b',') {}
        if scanner.at_end() {
            break;
        }
        count += 1;
        if count > MAX_PARAMS {
            return Err(ChallengeError::Limit("more than 32 parameters"));
        }
        let name = scanner.token();
        if name.is_empty() || !scanner.eat(b'=') {
            return Err(ChallengeError::Malformed(scanner.pos()));
        }
        let value = if scanner.peek() == Some(b'"') {
            let raw = scanner
                .quoted_string()
                .ok_or_else(|| ChallengeError::Malformed(scanner.pos()))?;
            unescape(raw)
        } else {
            let token = scanner.token();
            if token.is_empty() {
                return Err(ChallengeError::Malformed(scanner.pos()));
            }
            token.to_owned()
        };
        if value.len() > MAX_VALUE_BYTES {
            return Err(ChallengeError::Limit("a value longer than 1024 bytes"));
        }
        if value.chars().any(char::is_control) {
            return Err(ChallengeError::Limit("a control character in a value"));
        }
        scanner.skip_ws();
        if !scanner.at_end() && scanner.peek() != Some(b',') {
            return Err(ChallengeError::Malformed(scanner.pos()));
        }
        let slot = match name.to_ascii_lowercase().as_str() {
            "realm" => &mut realm,
            "nonce" => &mut nonce,
            "opaque" => &mut opaque,
            "algorithm" => &mut algorithm,
            "qop" => &mut qop,
            "stale" => &mut stale,
            // domain, charset, userhash and extensions: not needed to answer.
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(ChallengeError::Repeated(name.to_ascii_lowercase()));
        }
    }
    let algorithm_token = algorithm.unwrap_or_else(|| "MD5".to_owned());
    Ok(Challenge {
        realm: realm.ok_or(ChallengeError::Missing("realm"))?,
        nonce: nonce.ok_or(ChallengeError::Missing("nonce"))?,
        opaque,
        algorithm: Algorithm::parse(&algorithm_token),
        algorithm_token,
        qop: qop.as_deref().map(qop_options).unwrap_or_default(),
        stale: stale.is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// `auth, auth-int, token`: unknown options are ignored.
fn qop_options(list: &str) -> QopOptions {
    let mut options = QopOptions {
        present: true,
        ..QopOptions::default()
    };
    for option in list.split(',').map(str::trim) {
        if option.eq_ignore_ascii_case("auth") {
            options.auth = true;
        } else if option.eq_ignore_ascii_case("auth-int") {
            options.auth_int = true;
        }
    }
    options
}

/// The content of a quoted-string with its quoted-pairs (`\x`) resolved.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `"value"` with `"` and `\` escaped (RFC 3261 §25.1 `quoted-pair`).
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// True when `text` is a token (used to echo the algorithm without quotes).
pub(crate) fn is_token_text(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7616_challenge_parses() {
        let challenge = parse_challenge(
            "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n \
             algorithm=SHA-256,\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(challenge.realm, "http-auth@example.org");
        assert_eq!(challenge.algorithm, Some(Algorithm::Sha256));
        assert!(challenge.qop.auth && challenge.qop.auth_int && challenge.qop.present);
        assert_eq!(
            challenge.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        assert!(!challenge.stale);
    }

    #[test]
    fn defaults_and_stale() {
        let c = parse_challenge("digest realm=\"r\", nonce=\"n\", stale=TRUE").unwrap();
        assert_eq!(c.algorithm, Some(Algorithm::Md5));
        assert!(!c.qop.present);
        assert!(c.stale);
        let c = parse_challenge("Digest realm=r,nonce=\"a\\\"b\",algorithm=SHA-1").unwrap();
        assert_eq!(c.nonce, "a\"b");
        assert_eq!(c.algorithm, None);
        assert_eq!(c.algorithm_token, "SHA-1");
    }

    #[test]
    fn refusals() {
        let cases = [
            ("Basic realm=\"r\"", ChallengeError::Scheme("Basic".into())),
            ("Digest nonce=\"n\"", ChallengeError::Missing("realm")),
            ("Digest realm=\"r\"", ChallengeError::Missing("nonce")),
            (
                "Digest realm=\"r\", realm=\"s\", nonce=\"n\"",
                ChallengeError::Repeated("realm".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_challenge(text), Err(want), "{text}");
        }
        for text in [
            "Digest realm=\"r",
            "Digest realm",
            "Digest realm=",
            "Digest realm=\"r\" nonce=\"n\"",
            "Digest =x",
        ] {
            assert!(
                matches!(parse_challenge(text), Err(ChallengeError::Malformed(_))),
                "{text}"
            );
        }
        let long = format!("Digest realm=\"r\", nonce=\"{}\"", "n".repeat(2000));
        assert!(matches!(
            parse_challenge(&long),
            Err(ChallengeError::Limit(_))
        ));
        let many = format!("Digest realm=r, nonce=n{}", ", x=y".repeat(40));
        assert!(matches!(
            parse_challenge(&many),
            Err(ChallengeError::Limit(_))
        ));
        let control = "Digest realm=\"a\\\r\nInjected: 1\", nonce=n";
        assert!(parse_challenge(control).is_err());
    }

    #[test]
    fn quoting_round_trips() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(unescape(r#"a\"b\\c"#), r#"a"b\c"#);
        assert!(is_token_text("SHA-256"));
        assert!(!is_token_text("a b"));
    }
}
