//! Request signing (sans-IO): the canonical string a tenant signs with HMAC-SHA256, the
//! `Outdial-Signature` header parser, and the check (constant time, 5-minute window, nonce
//! cache against replay). `docs/security.md` is the specification; the vectors in
//! `docs/security/vectors.json` are checked by the tests below and by `tests/sign.py`.

use std::collections::HashMap;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// The header carrying `t=<unix seconds>,n=<nonce>,v1=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "outdial-signature";
/// The header carrying the lowercase hex SHA-256 of the body as sent.
pub const DIGEST_HEADER: &str = "outdial-content-sha256";
/// Prefix of signing secrets.
pub const SECRET_PREFIX: &str = "odsig_";
/// How far a timestamp may be from the server's clock, either way, in seconds.
pub const WINDOW_SECS: i64 = 300;
/// The first line of the canonical string (names the scheme and its version).
pub const SCHEME: &str = "OUTDIAL-HMAC-SHA256";
/// Longest `Outdial-Signature` value accepted.
pub const MAX_HEADER_LEN: usize = 1024;
/// Most `v1=` entries in one header (two during a client's own key roll-over is plenty).
const MAX_SIGNATURES: usize = 4;
/// Nonces remembered at once, across tenants, before new signed requests are refused.
pub const DEFAULT_NONCE_CAPACITY: usize = 200_000;

/// Why a signed request was refused; each has its own stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The tenant requires signatures and a header is absent.
    #[error(
        "this tenant requires signed requests: send `Outdial-Signature: t=<unix seconds>,n=<nonce>,v1=<hex HMAC-SHA256>` and `Outdial-Content-SHA256: <hex SHA-256 of the body>` (see docs/security.md)"
    )]
    Missing,
    /// The header is malformed or the HMAC does not match.
    #[error(
        "the request signature is not valid: {0}; check the signing secret and the canonical string in docs/security.md"
    )]
    Bad(&'static str),
    /// The timestamp is more than 5 minutes from the server's clock.
    #[error(
        "the signature timestamp is more than 300 seconds from the server's clock; sign with the current time (check the client's clock)"
    )]
    Stale,
    /// The nonce was already used within the window.
    #[error("this nonce was already used; sign every request with a new random nonce")]
    Replayed,
    /// `Outdial-Content-SHA256` is not the SHA-256 of the body received.
    #[error(
        "Outdial-Content-SHA256 is not the SHA-256 of the body received; hash the exact bytes sent"
    )]
    DigestMismatch,
    /// The nonce cache is full (bounded memory); the request may be retried shortly.
    #[error(
        "too many signed requests in the last 5 minutes to remember their nonces; retry shortly"
    )]
    NonceCacheFull,
}

impl SignatureError {
    /// The stable machine-readable code in the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_signature",
            Self::Bad(_) => "bad_signature",
            Self::Stale => "stale_timestamp",
            Self::Replayed => "replayed_nonce",
            Self::DigestMismatch => "body_digest_mismatch",
            Self::NonceCacheFull => "nonce_cache_full",
        }
    }
}

/// A parsed `Outdial-Signature` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// Unix seconds.
    pub timestamp: i64,
    /// 16 to 64 characters of `A-Z a-z 0-9 _ -`.
    pub nonce: String,
    /// The `v1=` HMACs (32 bytes each).
    pub signatures: Vec<[u8; 32]>,
}

/// Parses `t=<unix seconds>,n=<nonce>,v1=<64 hex>[,v1=...]`; keys may come in any order,
/// unknown keys are ignored (room for later versions), whitespace around items is allowed.
pub fn parse_header(value: &str) -> Result<SignatureHeader, SignatureError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Bad(
            "the Outdial-Signature header is too long",
        ));
    }
    let (mut timestamp, mut nonce, mut signatures) = (None, None, Vec::new());
    for item in value.split(',') {
        let (key, val) = item.trim().split_once('=').ok_or(SignatureError::Bad(
            "an item of Outdial-Signature is not key=value",
        ))?;
        match key {
            "t" => {
                let ok =
                    !val.is_empty() && val.len() <= 12 && val.bytes().all(|b| b.is_ascii_digit());
                let t = ok.then(|| val.parse::<i64>().ok()).flatten();
                if timestamp
                    .replace(t.ok_or(SignatureError::Bad("t= is not unix seconds"))?)
                    .is_some()
                {
                    return Err(SignatureError::Bad("t= appears twice"));
                }
            }
            "n" => {
                let ok = (16..=64).contains(&val.len())
                    && val
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(SignatureError::Bad(
                        "n= must be 16 to 64 characters of A-Z a-z 0-9 _ -",
                    ));
                }
                if nonce.replace(val.to_owned()).is_some() {
                    return Err(SignatureError::Bad("n= appears twice"));
                }
            }
            "v1" => {
                let mut tag = [0u8; 32];
                hex::decode_to_slice(val, &mut tag)
                    .map_err(|_| SignatureError::Bad("v1= must be 64 hex digits"))?;
                if signatures.len() == MAX_SIGNATURES {
                    return Err(SignatureError::Bad("more than 4 v1= signatures"));
                }
                signatures.push(tag);
            }
            _ => {}
        }
    }
    Ok(SignatureHeader {
        timestamp: timestamp.ok_or(SignatureError::Bad("t= is missing"))?,
        nonce: nonce.ok_or(SignatureError::Bad("n= is missing"))?,
        signatures: if signatures.is_empty() {
            return Err(SignatureError::Bad("v1= is missing"));
        } else {
            signatures
        },
    })
}

/// Lowercase hex SHA-256 of `body`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The bytes signed: six lines joined by `\n` (no trailing newline): the scheme name, the
/// method in upper case, the request target (path and `?query`, exactly as sent), the
/// timestamp in decimal, the nonce, and the body's lowercase hex SHA-256.
pub fn canonical(method: &str, target: &str, timestamp: i64, nonce: &str, digest: &str) -> String {
    format!(
        "{SCHEME}\n{}\n{target}\n{timestamp}\n{nonce}\n{digest}",
        method.to_ascii_uppercase()
    )
}

fn mac(secret: &str, canonical: &str) -> Hmac<Sha256> {
    // invariant: HMAC accepts keys of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(canonical.as_bytes());
    mac
}

/// The lowercase hex HMAC-SHA256 of `canonical` keyed with the secret's UTF-8 bytes (the
/// whole `odsig_...` text).
pub fn sign(secret: &str, canonical: &str) -> String {
    hex::encode(mac(secret, canonical).finalize().into_bytes())
}

/// The full `Outdial-Signature` value for a request.
pub fn signature_header(
    secret: &str,
    method: &str,
    target: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let text = canonical(method, target, timestamp, nonce, &body_sha256(body));
    format!("t={timestamp},n={nonce},v1={}", sign(secret, &text))
}

/// The signed "body" of an e-mail request: its fields in the order read (the `X-Outdial-`
/// header fields in header order, then the body's field lines), each as the lower-case key
/// without `X-Outdial-`, `: `, the value as read (trimmed, continuation lines joined) and
/// `\n`; the `Signature` field itself left out.
pub fn mail_fields(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(key, value)| format!("{}: {value}\n", key.to_ascii_lowercase()))
        .collect()
}

/// The request target of an e-mail request: `mail:` + the recipient address in lower case.
pub fn mail_target(recipient: &str) -> String {
    format!("mail:{}", recipient.to_ascii_lowercase())
}

/// A new signing secret: `odsig_` + unpadded base64url of 32 random bytes.
pub fn new_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    crate::auth::random_bytes(&mut bytes)?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// What the server received, as the check needs it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The tenant the API key (or SMTP login) belongs to.
    pub tenant: &'a str,
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// Path and `?query` as received.
    pub target: &'a str,
    /// `Outdial-Signature`, if sent.
    pub signature: Option<&'a str>,
    /// `Outdial-Content-SHA256`, if sent.
    pub content_sha256: Option<&'a str>,
    /// The body as received.
    pub body: &'a [u8],
}

/// Remembers nonces until their timestamp leaves the window; bounded in memory.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    /// (tenant, nonce) → unix second after which the entry may be forgotten.
    seen: HashMap<(String, String), i64>,
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(DEFAULT_NONCE_CAPACITY)
    }
}

impl NonceCache {
    /// A cache holding at most `capacity` nonces.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashMap::new(),
        }
    }

    /// Nonces held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `nonce` for `tenant` until `expires`; refuses one already held.
    fn insert(
        &mut self,
        tenant: &str,
        nonce: &str,
        expires: i64,
        now: i64,
    ) -> Result<(), SignatureError> {
        let key = (tenant.to_owned(), nonce.to_owned());
        if self.seen.get(&key).is_some_and(|&until| until >= now) {
            return Err(SignatureError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= self.capacity {
                return Err(SignatureError::NonceCacheFull);
            }
        }
        self.seen.insert(key, expires);
        Ok(())
    }
}

/// Checks a request against `secret` at `now` (unix seconds): digest, window, HMAC (constant
/// time), then the nonce (recorded only once everything else passed, so forged requests
/// cannot fill the cache).
pub fn check(
    cache: &mut NonceCache,
    secret: &str,
    request: &SignedRequest<'_>,
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(header), Some(digest)) = (request.signature, request.content_sha256) else {
        return Err(SignatureError::Missing);
    };
    let parsed = parse_header(header)?;
    let actual = body_sha256(request.body);
    if !digest.trim().eq_ignore_ascii_case(&actual) {
        return Err(SignatureError::DigestMismatch);
    }
    if (now - parsed.timestamp).abs() > WINDOW_SECS {
        return Err(SignatureError::Stale);
    }
    let text = canonical(
        request.method,
        request.target,
        parsed.timestamp,
        &parsed.nonce,
        &actual,
    );
    let expected = mac(secret, &text);
    let valid = parsed
        .signatures
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok());
    if !valid {
        return Err(SignatureError::Bad("the HMAC does not match"));
    }
    cache.insert(
        request.tenant,
        &parsed.nonce,
        parsed.timestamp + WINDOW_SECS,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "odsig_dGVzdC1vbmx5LXNpZ25pbmctc2VjcmV0LTMyYnl0ZXM";
    const NONCE: &str = "b7c2f0a19e4d4c3a";
    const T: i64 = 1_764_892_800;

    fn request<'a>(sig: &'a str, digest: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            tenant: "acme",
            method: "POST",
            target: "/v1/calls",
            signature: Some(sig),
            content_sha256: Some(digest),
            body,
        }
    }

    #[test]
    fn a_signed_request_passes_once_then_is_a_replay() {
        let body = br#"{"to":"+15550100"}"#;
        let sig = signature_header(SECRET, "POST", "/v1/calls", T, NONCE, body);
        let digest = body_sha256(body);
        let mut cache = NonceCache::new(10);
        assert_eq!(
            check(&mut cache, SECRET, &request(&sig, &digest, body), T + 10),
            Ok(())
        );
        assert_eq!(
            check(&mut cache, SECRET, &request(&sig, &digest, body), T + 20),
            Err(SignatureError::Replayed)
        );
        // The same nonce under another tenant is that tenant's own.
        let mut other = request(&sig, &digest, body);
        other.tenant = "globex";
        assert_eq!(check(&mut cache, SECRET, &other, T + 20), Ok(()));
    }

    #[test]
    fn each_failure_has_its_own_code() {
        let body = br#"{"to":"+15550100"}"#;
        let sig = signature_header(SECRET, "POST", "/v1/calls", T, NONCE, body);
        let digest = body_sha256(body);
        let mut cache = NonceCache::new(10);
        let code = |cache: &mut NonceCache, secret: &str, r: &SignedRequest<'_>, now: i64| {
            check(cache, secret, r, now).err().map(|e| e.code())
        };
        let mut missing = request(&sig, &digest, body);
        missing.signature = None;
        assert_eq!(
            code(&mut cache, SECRET, &missing, T),
            Some("missing_signature")
        );
        missing = request(&sig, &digest, body);
        missing.content_sha256 = None;
        assert_eq!(
            code(&mut cache, SECRET, &missing, T),
            Some("missing_signature")
        );
        let wrong_secret = "odsig_another-secret";
        assert_eq!(
            code(&mut cache, wrong_secret, &request(&sig, &digest, body), T),
            Some("bad_signature")
        );
        // Body altered and its digest recomputed: the digest matches, the HMAC does not.
        let altered = br#"{"to":"+15550199"}"#;
        let altered_digest = body_sha256(altered);
        assert_eq!(
            code(
                &mut cache,
                SECRET,
                &request(&sig, &altered_digest, altered),
                T
            ),
            Some("bad_signature")
        );
        // Body altered, digest left: the digest does not match the body.
        assert_eq!(
            code(&mut cache, SECRET, &request(&sig, &digest, altered), T),
            Some("body_digest_mismatch")
        );
        assert_eq!(
            code(&mut cache, SECRET, &request(&sig, &digest, body), T + 301),
            Some("stale_timestamp")
        );
        assert_eq!(
            code(&mut cache, SECRET, &request(&sig, &digest, body), T - 301),
            Some("stale_timestamp")
        );
        let mut path = request(&sig, &digest, body);
        path.target = "/v1/calls?x=1";
        assert_eq!(code(&mut cache, SECRET, &path, T), Some("bad_signature"));
        let mut method = request(&sig, &digest, body);
        method.method = "PUT";
        assert_eq!(code(&mut cache, SECRET, &method, T), Some("bad_signature"));
        assert!(cache.is_empty(), "refused requests leave no nonce behind");
        assert_eq!(
            code(&mut cache, SECRET, &request(&sig, &digest, body), T + 300),
            None
        );
        assert_eq!(
            code(&mut cache, SECRET, &request(&sig, &digest, body), T + 300),
            Some("replayed_nonce")
        );
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_expired_nonces() {
        let mut cache = NonceCache::new(2);
        assert_eq!(cache.insert("a", "n1", 100, 0), Ok(()));
        assert_eq!(cache.insert("a", "n2", 200, 0), Ok(()));
        assert_eq!(
            cache.insert("a", "n3", 300, 50),
            Err(SignatureError::NonceCacheFull)
        );
        // At 150, n1 has expired and makes room.
        assert_eq!(cache.insert("a", "n3", 300, 150), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.insert("a", "n2", 400, 150),
            Err(SignatureError::Replayed)
        );
    }

    #[test]
    fn header_parsing_refuses_malformed_values() {
        let good = format!("t={T},n={NONCE},v1={}", "ab".repeat(32));
        let parsed = parse_header(&good);
        assert_eq!(parsed.as_ref().map(|p| p.timestamp), Ok(T));
        assert_eq!(parsed.as_ref().map(|p| p.signatures.len()), Ok(1));
        let reordered = format!(" v1={} , n={NONCE}, t={T}, x=future", "AB".repeat(32));
        assert_eq!(
            parse_header(&reordered).map(|p| p.nonce),
            Ok(NONCE.to_owned())
        );
        for bad in [
            String::new(),
            "t=1".to_owned(),
            format!("t={T},n={NONCE}"),
            format!("t={T},v1={}", "ab".repeat(32)),
            format!("t=-5,n={NONCE},v1={}", "ab".repeat(32)),
            format!("t=1e9,n={NONCE},v1={}", "ab".repeat(32)),
            format!("t={T},n=short,v1={}", "ab".repeat(32)),
            format!("t={T},n={NONCE}!,v1={}", "ab".repeat(32)),
            format!("t={T},n={NONCE},v1={}", "ab".repeat(31)),
            format!("t={T},t={T},n={NONCE},v1={}", "ab".repeat(32)),
            format!("t={T},n={NONCE},v1=zz{}", "ab".repeat(31)),
            format!(
                "t={T},n={NONCE}{}",
                format!(",v1={}", "ab".repeat(32)).repeat(5)
            ),
            "x".repeat(MAX_HEADER_LEN + 1),
        ] {
            assert_eq!(
                parse_header(&bad).err().map(|e| e.code()),
                Some("bad_signature"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_secrets_have_the_documented_shape() {
        let a = new_secret().unwrap_or_default();
        let b = new_secret().unwrap_or_default();
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 43);
        assert_ne!(a, b);
    }

    /// The published vectors: every field, the canonical string and the header.
    #[test]
    fn the_documented_vectors_hold() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security/vectors.json");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let vectors = doc["vectors"].as_array().cloned().unwrap_or_default();
        assert!(vectors.len() >= 3, "vectors.json has its vectors");
        for v in vectors {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let body = s("body");
            let t = v["timestamp"].as_i64().unwrap_or_default();
            assert_eq!(
                body_sha256(body.as_bytes()),
                s("body_sha256"),
                "{}",
                s("name")
            );
            let text = canonical(
                &s("method"),
                &s("target"),
                t,
                &s("nonce"),
                &s("body_sha256"),
            );
            assert_eq!(text, s("canonical"), "{}", s("name"));
            assert_eq!(sign(&s("secret"), &text), s("signature"), "{}", s("name"));
            let header = signature_header(
                &s("secret"),
                &s("method"),
                &s("target"),
                t,
                &s("nonce"),
                body.as_bytes(),
            );
            assert_eq!(header, s("header"), "{}", s("name"));
        }
    }
}
