use super::*;
use crate::sip::message::parse_message;

/// One vector file: `key: value` lines, `#` comments.
struct Vector {
    fields: Vec<(String, String)>,
}

impl Vector {
    fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self { fields }
    }

    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn check_vector(text: &str) {
    let vector = Vector::parse(text);
    let challenge = parse_challenge(vector.get("challenge")).unwrap();
    let algorithm = challenge.algorithm.unwrap();
    let request = DigestRequest {
        method: vector.get("method"),
        uri: vector.get("uri"),
        body: b"",
    };
    let answer = Answer {
        username: vector.get("username"),
        password: vector.get("password"),
        cnonce: vector.get("cnonce"),
        nc: vector.get("nc").parse().unwrap(),
        qop: Qop::choose(&challenge).unwrap(),
    };
    assert_eq!(answer.qop, Qop::Auth, "auth is preferred over auth-int");
    assert_eq!(
        digest::response(algorithm, &challenge, &request, &answer),
        vector.get("response")
    );
    let value = digest::credentials_value(algorithm, &challenge, &request, &answer);
    assert!(
        value.contains(&format!("response=\"{}\"", vector.get("response"))),
        "{value}"
    );
    assert!(value.contains("nc=00000001"), "{value}");
    assert!(
        value.contains("qop=auth,") || value.contains("qop=auth, "),
        "{value}"
    );
    assert!(
        value.contains(&format!("algorithm={}", algorithm.as_str())),
        "{value}"
    );
    assert!(value.contains("opaque=\"FQhe/"), "{value}");
    assert!(!value.contains(vector.get("password")), "{value}");
}

#[test]
fn rfc_7616_md5_vector() {
    check_vector(include_str!("../../../tests/digest/rfc7616-3.9.1-md5.txt"));
}

#[test]
fn rfc_7616_sha256_vector() {
    check_vector(include_str!(
        "../../../tests/digest/rfc7616-3.9.1-sha256.txt"
    ));
}

#[test]
fn rfc_2617_md5_vector() {
    check_vector_2617(include_str!("../../../tests/digest/rfc2617-3.5.txt"));
}

fn check_vector_2617(text: &str) {
    let vector = Vector::parse(text);
    let challenge = parse_challenge(vector.get("challenge")).unwrap();
    let answer = Answer {
        username: vector.get("username"),
        password: vector.get("password"),
        cnonce: vector.get("cnonce"),
        nc: 1,
        qop: Qop::Auth,
    };
    let request = DigestRequest {
        method: "GET",
        uri: vector.get("uri"),
        body: b"",
    };
    assert_eq!(
        digest::response(Algorithm::Md5, &challenge, &request, &answer),
        vector.get("response")
    );
}

#[test]
fn session_algorithm_with_auth_int_covers_the_body() {
    // Computed independently with Python's hashlib (sha512_256).
    let challenge =
        parse_challenge("Digest realm=\"outdial.test\", nonce=\"n0nce\", qop=\"auth-int\", algorithm=SHA-512-256-sess")
            .unwrap();
    let request = DigestRequest {
        method: "INVITE",
        uri: "sip:+15550001@192.0.2.1",
        body: b"v=0\r\n",
    };
    let answer = Answer {
        username: "alice",
        password: "s3cret",
        cnonce: "c1",
        nc: 2,
        qop: Qop::choose(&challenge).unwrap(),
    };
    assert_eq!(answer.qop, Qop::AuthInt);
    let algorithm = challenge.algorithm.unwrap();
    assert_eq!(
        digest::response(algorithm, &challenge, &request, &answer),
        "d194af37e7f34958389ebe6e01381ccf46cc574edd8b31f6005c7b72efb3fc6a"
    );
    let other_body = DigestRequest {
        body: b"v=1\r\n",
        ..request
    };
    assert_ne!(
        digest::response(algorithm, &challenge, &request, &answer),
        digest::response(algorithm, &challenge, &other_body, &answer)
    );
}

#[test]
fn no_qop_is_rfc_2069_without_cnonce() {
    let challenge = parse_challenge("Digest realm=\"outdial\", nonce=\"abc\"").unwrap();
    let request = DigestRequest {
        method: "INVITE",
        uri: "sip:+15550001@127.0.0.1:5070",
        body: b"",
    };
    let answer = Answer {
        username: "alice",
        password: "secret",
        cnonce: "ignored",
        nc: 1,
        qop: Qop::choose(&challenge).unwrap(),
    };
    let value = digest::credentials_value(Algorithm::Md5, &challenge, &request, &answer);
    // Python: md5(md5("alice:outdial:secret"):abc:md5("INVITE:sip:+15550001@127.0.0.1:5070"))
    assert!(
        value.contains("response=\"a0fbe6eb91bd2707f4ff9f21b52032fc\""),
        "{value}"
    );
    assert!(
        !value.contains("cnonce") && !value.contains("nc="),
        "{value}"
    );
}

fn credentials(realm: Option<&str>) -> Credentials {
    Credentials {
        username: "alice".into(),
        password: "s3cret-pw".into(),
        realm: realm.map(str::to_owned),
    }
}

fn challenge_response(status: u16, challenges: &[&str]) -> Vec<u8> {
    let header = if status == 401 {
        "WWW-Authenticate"
    } else {
        "Proxy-Authenticate"
    };
    let mut text = format!(
        "SIP/2.0 {status} Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
    );
    for challenge in challenges {
        text.push_str(&format!("{header}: {challenge}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text.into_bytes()
}

const INVITE: DigestRequest<'static> = DigestRequest {
    method: "INVITE",
    uri: "sip:+15550001@192.0.2.1",
    body: b"",
};

fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .split(", ")
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .or_else(|| {
            value.strip_prefix("Digest ").and_then(|v| {
                v.split(", ")
                    .find_map(|p| p.strip_prefix(&format!("{name}=")))
            })
        })
}

#[test]
fn sha256_is_preferred_whatever_the_order() {
    let mut auth = Authenticator::new(Some(credentials(None)));
    let bytes = challenge_response(
        407,
        &[
            "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
            "Digest realm=\"carrier\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"",
        ],
    );
    let headers = auth
        .respond(&parse_message(&bytes).unwrap(), &INVITE, "cn")
        .unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "Proxy-Authorization");
    assert_eq!(param(&headers[0].1, "algorithm"), Some("SHA-256"));
    assert_eq!(param(&headers[0].1, "nc"), Some("00000001"));
    assert_eq!(param(&headers[0].1, "username"), Some("\"alice\""));
}

#[test]
fn the_same_realm_again_without_stale_is_a_refusal() {
    let mut auth = Authenticator::new(Some(credentials(None)));
    let first = challenge_response(401, &["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\""]);
    let headers = auth
        .respond(&parse_message(&first).unwrap(), &INVITE, "c1")
        .unwrap();
    assert_eq!(headers[0].0, "Authorization");
    // Wrong password: the same nonce comes back.
    assert_eq!(
        auth.respond(&parse_message(&first).unwrap(), &INVITE, "c2"),
        Err(AuthError::Rejected { realm: "r".into() })
    );
    // A new request (BYE later in the call) may answer the realm again; the nonce count
    // carries on for a nonce already used.
    auth.start_request();
    let bye = DigestRequest {
        method: "BYE",
        ..INVITE
    };
    let headers = auth
        .respond(&parse_message(&first).unwrap(), &bye, "c3")
        .unwrap();
    assert_eq!(param(&headers[0].1, "nc"), Some("00000002"));
}

#[test]
fn stale_nonce_is_answered_again_with_the_new_nonce() {
    let mut auth = Authenticator::new(Some(credentials(None)));
    let first = challenge_response(401, &["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\""]);
    auth.respond(&parse_message(&first).unwrap(), &INVITE, "c1")
        .unwrap();
    let stale = challenge_response(
        401,
        &["Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true"],
    );
    let headers = auth
        .respond(&parse_message(&stale).unwrap(), &INVITE, "c2")
        .unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(param(&headers[0].1, "nonce"), Some("\"n2\""));
    assert_eq!(param(&headers[0].1, "nc"), Some("00000001"));
}

#[test]
fn a_proxy_after_the_server_gets_both_credentials() {
    let mut auth = Authenticator::new(Some(credentials(None)));
    let www = challenge_response(401, &["Digest realm=\"uas\", nonce=\"a\""]);
    auth.respond(&parse_message(&www).unwrap(), &INVITE, "c1")
        .unwrap();
    let proxy = challenge_response(407, &["Digest realm=\"proxy\", nonce=\"b\""]);
    let headers = auth
        .respond(&parse_message(&proxy).unwrap(), &INVITE, "c2")
        .unwrap();
    let names: Vec<_> = headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["Authorization", "Proxy-Authorization"]);
    let third = challenge_response(407, &["Digest realm=\"proxy3\", nonce=\"c\""]);
    let headers = auth
        .respond(&parse_message(&third).unwrap(), &INVITE, "c3")
        .unwrap();
    assert_eq!(headers.len(), 3);
    let fourth = challenge_response(407, &["Digest realm=\"proxy4\", nonce=\"d\""]);
    assert_eq!(
        auth.respond(&parse_message(&fourth).unwrap(), &INVITE, "c4"),
        Err(AuthError::TooManyRounds)
    );
}

#[test]
fn refusals_name_what_to_fix() {
    let bytes = challenge_response(407, &["Digest realm=\"carrier\", nonce=\"n\""]);
    let message = parse_message(&bytes).unwrap();
    assert_eq!(
        Authenticator::new(None).respond(&message, &INVITE, "c"),
        Err(AuthError::NoCredentials)
    );
    let wrong_realm =
        Authenticator::new(Some(credentials(Some("other")))).respond(&message, &INVITE, "c");
    assert!(matches!(wrong_realm, Err(AuthError::OtherRealm { .. })));
    let unsupported = challenge_response(
        401,
        &[
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1",
            "Basic realm=\"r\"",
        ],
    );
    let error = Authenticator::new(Some(credentials(None)))
        .respond(&parse_message(&unsupported).unwrap(), &INVITE, "c")
        .unwrap_err();
    assert!(error.to_string().contains("SHA-1"), "{error}");
    let none = challenge_response(401, &[]);
    assert!(matches!(
        Authenticator::new(Some(credentials(None))).respond(
            &parse_message(&none).unwrap(),
            &INVITE,
            "c"
        ),
        Err(AuthError::Unusable(_))
    ));
}

#[test]
fn credentials_never_show_in_debug_or_errors() {
    let creds = credentials(None);
    let shown = format!("{creds:?}");
    assert!(
        !shown.contains("s3cret-pw") && !shown.contains("alice"),
        "{shown}"
    );
    let auth = Authenticator::new(Some(creds));
    assert!(!format!("{auth:?}").contains("s3cret-pw"));
}
