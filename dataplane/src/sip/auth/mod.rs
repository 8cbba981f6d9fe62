//! Digest authentication as a client (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO: given a
//! 401 or 407, the headers to add to the retried request, or why it must not be retried.
//!
//! - [`challenge`]: the `WWW-Authenticate` / `Proxy-Authenticate` grammar (hand-written; no
//!   maintained crate parses SIP challenges without bringing its own hash versions).
//! - [`digest`]: the response computation (MD5, SHA-256, SHA-512-256 and their `-sess`
//!   forms; `qop` auth, auth-int or none) with RustCrypto's hashes.
//! - [`Authenticator`]: one call's state: nonce counts, the credentials already sent for
//!   each realm, and the rule that a realm challenging again without `stale=true` has
//!   refused them (RFC 3261 §22.2).
//!
//! Passwords never appear in `Debug` output, errors or logs.

pub mod challenge;
pub mod digest;

use std::fmt;

pub use challenge::{Algorithm, Challenge, ChallengeError, parse_challenge};
pub use digest::{Answer, DigestRequest, Qop};

use crate::sip::message::{HeaderName, Message};

/// Most challenges answered for one request (its retries included): a server that keeps
/// asking for new realms cannot keep a call retrying.
pub const MAX_ROUNDS: u8 = 3;

/// A user name and password for digest authentication, optionally bound to one realm.
#[derive(Clone, Eq, PartialEq)]
pub struct Credentials {
    /// The user name (`auth_user`).
    pub username: String,
    /// The password (`auth_password`).
    pub password: String,
    /// Answer only challenges of this realm; `None` answers any realm.
    pub realm: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

/// Why a challenged request is not retried.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// The peer asked for credentials and the trunk has none.
    #[error(
        "the peer asks for digest authentication and no credentials are configured; set the trunk's auth_user and auth_password"
    )]
    NoCredentials,
    /// The realm challenged again without `stale=true`: the credentials were refused.
    #[error(
        "the credentials for realm \"{realm}\" were refused (challenged again without stale=true); check the trunk's auth_user and auth_password"
    )]
    Rejected {
        /// The realm.
        realm: String,
    },
    /// The only realms offered are not the configured one.
    #[error(
        "the peer asks for realm \"{offered}\" but the trunk's credentials are for \"{configured}\"; fix the trunk's auth_realm or leave it out"
    )]
    OtherRealm {
        /// A realm the peer asked for.
        offered: String,
        /// `auth_realm`.
        configured: String,
    },
    /// No challenge could be answered.
    #[error(
        "no usable challenge ({0}); Outdial answers Digest with MD5, SHA-256 or SHA-512-256 (and -sess) and qop auth, auth-int or none"
    )]
    Unusable(String),
    /// More than [`MAX_ROUNDS`] challenges for one request.
    #[error("challenged more than {MAX_ROUNDS} times for one request; giving up")]
    TooManyRounds,
}

/// Which pair of headers a challenge came in.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kind {
    /// 401: `WWW-Authenticate`, answered in `Authorization`.
    Www,
    /// 407: `Proxy-Authenticate`, answered in `Proxy-Authorization`.
    Proxy,
}

impl Kind {
    /// The kind a status asks for: 401 or 407.
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            401 => Some(Self::Www),
            407 => Some(Self::Proxy),
            _ => None,
        }
    }

    /// The challenge header.
    pub fn challenge_header(self) -> &'static str {
        match self {
            Self::Www => "WWW-Authenticate",
            Self::Proxy => "Proxy-Authenticate",
        }
    }

    /// The credentials header.
    pub fn credentials_header(self) -> &'static str {
        match self {
            Self::Www => "Authorization",
            Self::Proxy => "Proxy-Authorization",
        }
    }
}

/// A challenge being answered in the current request chain.
#[derive(Clone, Debug)]
struct Answered {
    kind: Kind,
    algorithm: Algorithm,
    qop: Qop,
    challenge: Challenge,
}

/// One call's digest state (sans-IO: the caller supplies each cnonce).
#[derive(Clone, Debug)]
pub struct Authenticator {
    credentials: Option<Credentials>,
    /// Uses of each nonce so far (the `nc` of the last answer).
    nonce_counts: Vec<(String, u32)>,
    /// Realms answered for the request being retried, with what was answered.
    chain: Vec<Answered>,
    rounds: u8,
}

impl Authenticator {
    /// State for one call; `None` credentials refuse every challenge.
    pub fn new(credentials: Option<Credentials>) -> Self {
        Self {
            credentials,
            nonce_counts: Vec::new(),
            chain: Vec::new(),
            rounds: 0,
        }
    }

    /// A new request (not a retry of the last one): forget the realms answered for it.
    pub fn start_request(&mut self) {
        self.chain.clear();
        self.rounds = 0;
    }

    /// Given a 401 or 407 to `request`, the credentials headers the retry carries (every
    /// realm answered for this request so far, with fresh nonce counts), or why it must not
    /// be retried. `cnonce` is fresh randomness from the caller.
    pub fn respond(
        &mut self,
        response: &Message<'_>,
        request: &DigestRequest<'_>,
        cnonce: &str,
    ) -> Result<Vec<(&'static str, String)>, AuthError> {
        let kind = response
            .status()
            .and_then(Kind::of_status)
            .ok_or_else(|| AuthError::Unusable("not a 401 or 407".to_owned()))?;
        let credentials = self.credentials.clone().ok_or(AuthError::NoCredentials)?;
        self.rounds = self.rounds.saturating_add(1);
        if self.rounds > MAX_ROUNDS {
            return Err(AuthError::TooManyRounds);
        }
        let chosen = choose(
            response.header_values(HeaderName::Other(kind.challenge_header())),
            credentials.realm.as_deref(),
        )?;
        for (challenge, algorithm, qop) in chosen {
            let previous = self
                .chain
                .iter()
                .position(|a| a.kind == kind && a.challenge.realm == challenge.realm);
            if let Some(index) = previous {
                if !challenge.stale {
                    return Err(AuthError::Rejected {
                        realm: challenge.realm,
                    });
                }
                self.chain.remove(index);
            }
            self.chain.push(Answered {
                kind,
                algorithm,
                qop,
                challenge,
            });
        }
        let mut headers = Vec::with_capacity(self.chain.len());
        for answered in &self.chain {
            let nc = next_count(&mut self.nonce_counts, &answered.challenge.nonce);
            let answer = Answer {
                username: &credentials.username,
                password: &credentials.password,
                cnonce,
                nc,
                qop: answered.qop,
            };
            headers.push((
                answered.kind.credentials_header(),
                digest::credentials_value(
                    answered.algorithm,
                    &answered.challenge,
                    request,
                    &answer,
                ),
            ));
        }
        Ok(headers)
    }
}

/// The next `nc` for `nonce`: one more than its last use.
fn next_count(counts: &mut Vec<(String, u32)>, nonce: &str) -> u32 {
    if let Some((_, count)) = counts.iter_mut().find(|(n, _)| n == nonce) {
        *count = count.saturating_add(1);
        return *count;
    }
    // A call sees a handful of nonces; keep the list from growing without bound.
    if counts.len() >= 16 {
        counts.remove(0);
    }
    counts.push((nonce.to_owned(), 1));
    1
}

/// For each realm offered (and allowed by `realm`), the strongest challenge we can answer.
fn choose<'a>(
    values: impl Iterator<Item = &'a str>,
    realm: Option<&str>,
) -> Result<Vec<(Challenge, Algorithm, Qop)>, AuthError> {
    let mut best: Vec<(Challenge, Algorithm, Qop)> = Vec::new();
    let mut problem: Option<String> = None;
    let mut other_realm: Option<String> = None;
    for value in values.take(challenge::MAX_PARAMS) {
        let challenge = match parse_challenge(value) {
            Ok(challenge) => challenge,
            Err(e) => {
                problem.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        if realm.is_some_and(|r| r != challenge.realm) {
            other_realm.get_or_insert_with(|| challenge.realm.clone());
            continue;
        }
        let Some(algorithm) = challenge.algorithm else {
            problem.get_or_insert_with(|| {
                format!("algorithm {} is not supported", challenge.algorithm_token)
            });
            continue;
        };
        let Some(qop) = Qop::choose(&challenge) else {
            problem.get_or_insert_with(|| "no qop option is supported".to_owned());
            continue;
        };
        match best.iter_mut().find(|(c, _, _)| c.realm == challenge.realm) {
            Some(slot) if algorithm.strength() > slot.1.strength() => {
                *slot = (challenge, algorithm, qop)
            }
            Some(_) => {}
            None => best.push((challenge, algorithm, qop)),
        }
    }
    if !best.is_empty() {
        return Ok(best);
    }
    if let (Some(offered), Some(configured)) = (other_realm, realm) {
        return Err(AuthError::OtherRealm {
            offered,
            configured: configured.to_owned(),
        });
    }
    Err(AuthError::Unusable(problem.unwrap_or_else(|| {
        "the response carries no challenge".to_owned()
    })))
}

#[cfg(test)]
mod tests;
