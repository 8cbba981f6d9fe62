//! The digest response (RFC 7616 §3.4.1, RFC 8760 §2.3, RFC 3261 §22.4) and the
//! `Authorization` / `Proxy-Authorization` value that carries it. Hashes come from RustCrypto
//! (`md-5`, `sha2`).

use std::fmt::Write as _;

use md5::Md5;
use sha2::digest::Digest;
use sha2::{Sha256, Sha512_256};

use super::challenge::{Algorithm, Challenge, is_token_text, quote};

/// What is being authorised: the request's method, Request-URI and body.
#[derive(Clone, Copy, Debug)]
pub struct DigestRequest<'a> {
    /// The method (`INVITE`, `BYE`, `REGISTER`).
    pub method: &'a str,
    /// The Request-URI, exactly as on the request line (the `uri` parameter).
    pub uri: &'a str,
    /// The body (for `qop=auth-int`).
    pub body: &'a [u8],
}

/// The quality of protection chosen for an answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Qop {
    /// No `qop` (the challenge offered none: RFC 2069 compatibility).
    None,
    /// `qop=auth`.
    Auth,
    /// `qop=auth-int` (only when `auth` is not offered).
    AuthInt,
}

impl Qop {
    /// What to answer a challenge with: `auth` when offered, else `auth-int`, else none.
    /// `None` when the challenge lists only options we do not know.
    pub fn choose(challenge: &Challenge) -> Option<Self> {
        let offered = challenge.qop;
        if !offered.present {
            Some(Self::None)
        } else if offered.auth {
            Some(Self::Auth)
        } else if offered.auth_int {
            Some(Self::AuthInt)
        } else {
            None
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Auth => "auth",
            Self::AuthInt => "auth-int",
        }
    }
}

/// The inputs of one answer besides the challenge and the request.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The user name.
    pub username: &'a str,
    /// The password (never logged; only its hash leaves this function).
    pub password: &'a str,
    /// The client nonce (ignored for `Qop::None`).
    pub cnonce: &'a str,
    /// The nonce count: how many times this nonce has been used, this time included.
    pub nc: u32,
    /// The quality of protection.
    pub qop: Qop,
}

/// Lowercase hex of `data` hashed with `algorithm`.
pub fn hash_hex(algorithm: Algorithm, data: &[u8]) -> String {
    let bytes: Vec<u8> = match algorithm {
        Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data).to_vec(),
        Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data).to_vec(),
        Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => Sha512_256::digest(data).to_vec(),
    };
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The `response` value: `KD(H(A1), nonce:nc:cnonce:qop:H(A2))`, or `KD(H(A1), nonce:H(A2))`
/// without qop.
pub fn response(
    algorithm: Algorithm,
    challenge: &Challenge,
    request: &DigestRequest<'_>,
    answer: &Answer<'_>,
) -> String {
    let h = |text: &str| hash_hex(algorithm, text.as_bytes());
    let mut ha1 = h(&format!(
        "{}:{}:{}",
        answer.username, challenge.realm, answer.password
    ));
    if algorithm.is_session() {
        ha1 = h(&format!("{ha1}:{}:{}", challenge.nonce, answer.cnonce));
    }
    let ha2 = match answer.qop {
        Qop::AuthInt => h(&format!(
            "{}:{}:{}",
            request.method,
            request.uri,
            hash_hex(algorithm, request.body)
        )),
        Qop::None | Qop::Auth => h(&format!("{}:{}", request.method, request.uri)),
    };
    match answer.qop {
        Qop::None => h(&format!("{ha1}:{}:{ha2}", challenge.nonce)),
        qop => h(&format!(
            "{ha1}:{}:{:08x}:{}:{}:{ha2}",
            challenge.nonce,
            answer.nc,
            answer.cnonce,
            qop.as_str()
        )),
    }
}

/// The credentials header value answering `challenge` (RFC 3261 §22.4 `credentials`).
pub fn credentials_value(
    algorithm: Algorithm,
    challenge: &Challenge,
    request: &DigestRequest<'_>,
    answer: &Answer<'_>,
) -> String {
    let response = response(algorithm, challenge, request, answer);
    let mut value = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\"",
        quote(answer.username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(request.uri),
    );
    let token = algorithm.as_str();
    debug_assert!(is_token_text(token));
    let _ = write!(value, ", algorithm={token}");
    if answer.qop != Qop::None {
        let _ = write!(
            value,
            ", cnonce={}, qop={}, nc={:08x}",
            quote(answer.cnonce),
            answer.qop.as_str(),
            answer.nc
        );
    }
    if let Some(opaque) = &challenge.opaque {
        let _ = write!(value, ", opaque={}", quote(opaque));
    }
    value
}
