//! The two SASL mechanisms `AUTH` offers: PLAIN (RFC 4616) and LOGIN (the common
//! draft-murchison-sasl-login exchange). Only decoding lives here; the session runs the
//! exchange and the [`Delivery`](super::Delivery) checks the credentials.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64, with or without padding (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The mechanisms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: `authzid NUL authcid NUL passwd` in one response.
    Plain,
    /// User name and password in two responses.
    Login,
}

/// A response that cannot be used: not base64, not UTF-8, or not the shape PLAIN expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable;

/// The base64 text of the server's LOGIN prompts, `Username:` and `Password:`.
pub const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
/// See [`LOGIN_USER_PROMPT`].
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// Decodes one base64 client response into text; `=` is the empty response (RFC 4954 §4).
pub fn decode(response: &str) -> Result<String, Undecodable> {
    let response = response.trim();
    if response == "=" {
        return Ok(String::new());
    }
    let bytes = BASE64.decode(response).map_err(|_| Undecodable)?;
    String::from_utf8(bytes).map_err(|_| Undecodable)
}

/// Splits a decoded PLAIN response into (user, password). An authorization identity other
/// than the user's own is refused: nobody may act as someone else.
pub fn plain(decoded: &str) -> Result<(String, String), Undecodable> {
    let mut parts = decoded.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Undecodable);
    };
    if user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return Err(Undecodable);
    }
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_splits_the_three_fields() {
        let decoded = decode("dXNlckB0ZXN0c2VydmVyAHVzZXJAdGVzdHNlcnZlcgBzZWNyZXRwYXNzd29yZA==");
        assert_eq!(
            decoded.as_deref(),
            Ok("user@testserver\0user@testserver\0secretpassword")
        );
        assert_eq!(
            plain("\0user\0pw"),
            Ok(("user".to_owned(), "pw".to_owned()))
        );
        assert_eq!(
            plain("user\0user\0pw"),
            Ok(("user".to_owned(), "pw".to_owned()))
        );
    }

    #[test]
    fn bad_responses_are_undecodable() {
        assert_eq!(decode("something"), Err(Undecodable));
        assert_eq!(decode("dXNlckB0ZXN0c2VydmVyAHlalala=="), Err(Undecodable));
        assert_eq!(decode("/w=="), Err(Undecodable), "not UTF-8");
        assert_eq!(plain("user\0pw"), Err(Undecodable));
        assert_eq!(plain("other\0user\0pw"), Err(Undecodable));
        assert_eq!(plain("\0\0pw"), Err(Undecodable));
        assert_eq!(plain("\0u\0p\0q"), Err(Undecodable));
    }

    #[test]
    fn equals_is_the_empty_response_and_padding_is_optional() {
        assert_eq!(decode("="), Ok(String::new()));
        assert_eq!(decode("dXNlcg"), Ok("user".to_owned()));
        assert_eq!(decode("dXNlcg=="), Ok("user".to_owned()));
    }
}
