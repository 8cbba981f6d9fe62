//! The callee's SIP digest challenge (`--challenge USER:PASSWORD`), as a carrier's trunk or a
//! PBX asks a caller to prove itself: a new INVITE without valid credentials is answered `401`
//! with `WWW-Authenticate: Digest` (MD5, `qop="auth"`), and only an INVITE whose
//! `Authorization` answers it becomes a call; wrong credentials are challenged again.
//!
//! The check is stateless: the nonce is a hash of the Call-ID and a per-run secret, so a
//! retried INVITE (same Call-ID, next CSeq) proves it answered our challenge without the
//! population keeping anything for calls it has not taken. The response is recomputed with the
//! dataplane's own digest code (RFC 7616 §3.4.1).

use outdial_dataplane::sip::auth::challenge::QopOptions;
use outdial_dataplane::sip::auth::digest::{self, hash_hex};
use outdial_dataplane::sip::auth::{Algorithm, Answer, Challenge, DigestRequest, Qop};
use outdial_dataplane::sip::message::{HeaderName, Message};

/// The realm the challenge names.
pub const REALM: &str = "outdial-bench";

/// Credentials the population demands, and the secret its nonces derive from.
#[derive(Clone, Debug)]
pub struct DigestGate {
    user: String,
    password: String,
    secret: u64,
}

/// What to do with a new INVITE.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// Its credentials answer our challenge: take the call.
    Pass,
    /// No credentials for our realm: `401` with this `WWW-Authenticate` value.
    Challenge(String),
    /// Credentials that do not answer it (wrong password, user, nonce or URI): `401` again
    /// with this value, as a registrar or trunk re-challenges (RFC 3261 §22.3).
    Refuse(String),
}

impl DigestGate {
    /// A gate for `user`:`password`; `secret` makes this run's nonces.
    pub fn new(user: &str, password: &str, secret: u64) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
            secret,
        }
    }

    /// Parses `USER:PASSWORD` (the option's value).
    pub fn parse(text: &str, secret: u64) -> Result<Self, String> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(Self::new(user, password, secret))
            }
            _ => Err(format!("--challenge wants USER:PASSWORD, not {text:?}")),
        }
    }

    /// The nonce for a call.
    fn nonce(&self, call_id: &str) -> String {
        hash_hex(
            Algorithm::Md5,
            format!("{:016x}:{call_id}", self.secret).as_bytes(),
        )
    }

    fn challenge(&self, call_id: &str) -> Challenge {
        Challenge {
            realm: REALM.to_owned(),
            nonce: self.nonce(call_id),
            opaque: None,
            algorithm: Some(Algorithm::Md5),
            algorithm_token: "MD5".to_owned(),
            qop: QopOptions {
                auth: true,
                auth_int: false,
                present: true,
            },
            stale: false,
        }
    }

    /// Judges a new INVITE.
    pub fn check(&self, invite: &Message<'_>) -> Verdict {
        let call_id = invite.call_id().unwrap_or_default();
        let challenge = self.challenge(call_id);
        let header = format!(
            "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
            challenge.nonce
        );
        let credentials = invite
            .header_values(HeaderName::Other("Authorization"))
            .filter_map(params)
            .find(|p| p.get("realm") == Some(REALM));
        let Some(given) = credentials else {
            return Verdict::Challenge(header);
        };
        let request_uri = invite.request_uri().map(|u| u.as_str()).unwrap_or_default();
        let field = |name: &str| given.get(name).unwrap_or_default();
        let nc = u32::from_str_radix(field("nc"), 16).unwrap_or(0);
        let well_formed = field("username") == self.user
            && field("nonce") == challenge.nonce
            && field("uri") == request_uri
            && field("qop").eq_ignore_ascii_case("auth")
            && given
                .get("algorithm")
                .is_none_or(|a| a.eq_ignore_ascii_case("MD5"))
            && nc > 0;
        if !well_formed {
            return Verdict::Refuse(header);
        }
        let expected = digest::response(
            Algorithm::Md5,
            &challenge,
            &DigestRequest {
                method: "INVITE",
                uri: request_uri,
                body: invite.body(),
            },
            &Answer {
                username: &self.user,
                password: &self.password,
                cnonce: field("cnonce"),
                nc,
                qop: Qop::Auth,
            },
        );
        if field("response").eq_ignore_ascii_case(&expected) {
            Verdict::Pass
        } else {
            Verdict::Refuse(header)
        }
    }
}

/// The parameters of a `Digest` credentials value (`name=value` or `name="value"`, commas
/// between; commas inside quotes kept); `None` for another scheme.
fn params(value: &str) -> Option<Params<'_>> {
    let rest = value.trim_start();
    let scheme = rest.get(..6)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut list = Vec::new();
    let mut rest = rest.get(6..)?.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim_end(), &after[end..])
        };
        list.push((name.trim(), value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Params(list))
}

/// Digest credentials parameters, by name (case-insensitive).
struct Params<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outdial_dataplane::sip::auth::digest::credentials_value;
    use outdial_dataplane::sip::parse_message;

    const URI: &str = "sip:press-12@127.0.0.1:5090";

    fn invite(authorization: Option<&str>) -> Vec<u8> {
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "INVITE {URI} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:outdial@127.0.0.1>;tag=a\r\nTo: <{URI}>\r\nCall-ID: c1@x\r\n\
             CSeq: 2 INVITE\r\nMax-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// The credentials our own UAC (the dataplane's digest code) sends for `password`.
    fn answer(gate: &DigestGate, password: &str) -> String {
        let challenge = gate.challenge("c1@x");
        credentials_value(
            Algorithm::Md5,
            &challenge,
            &DigestRequest {
                method: "INVITE",
                uri: URI,
                body: b"",
            },
            &Answer {
                username: "outdial",
                password,
                cnonce: "0a4f113b",
                nc: 1,
                qop: Qop::Auth,
            },
        )
    }

    #[test]
    fn an_invite_is_challenged_then_taken_with_the_right_answer_only() {
        let gate = DigestGate::new("outdial", "s3cret", 7);
        let bare = invite(None);
        let message = parse_message(&bare).expect("parses");
        let Verdict::Challenge(header) = gate.check(&message) else {
            panic!("a bare INVITE is challenged");
        };
        assert!(header.contains("realm=\"outdial-bench\"") && header.contains("qop=\"auth\""));
        let right = invite(Some(&answer(&gate, "s3cret")));
        assert_eq!(
            gate.check(&parse_message(&right).expect("parses")),
            Verdict::Pass
        );
        let wrong = invite(Some(&answer(&gate, "guess")));
        assert!(matches!(
            gate.check(&parse_message(&wrong).expect("parses")),
            Verdict::Refuse(_)
        ));
        // Another run's nonce (another secret) does not pass.
        let other = DigestGate::new("outdial", "s3cret", 8);
        let replayed = invite(Some(&answer(&other, "s3cret")));
        assert!(matches!(
            gate.check(&parse_message(&replayed).expect("parses")),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn the_option_needs_a_user_and_a_password() {
        assert!(DigestGate::parse("outdial:pw", 1).is_ok());
        for bad in ["outdial", ":pw", "outdial:"] {
            assert!(DigestGate::parse(bad, 1).is_err(), "{bad}");
        }
    }
}
