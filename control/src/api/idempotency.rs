//! The `Idempotency-Key` header: a client that retries a create after a lost answer gets the
//! first answer again instead of a second call.
//!
//! The store remembers, per tenant, each key with a SHA-256 of the request (route and body
//! bytes) for 24 hours: the same key with the same request returns the calls created the
//! first time (and `Idempotent-Replayed: true`); the same key with another request is refused
//! with 422 `idempotency_conflict`.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::RequestError;
use crate::store::IdempotencyKey;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Set on an answer that replays an earlier one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Longest key, characters.
pub const MAX_KEY_LEN: usize = 255;

/// Marks `response` as the replay of an earlier answer.
pub fn mark_replayed(response: &mut axum::response::Response) {
    response.headers_mut().insert(
        REPLAYED_HEADER,
        axum::http::HeaderValue::from_static("true"),
    );
}

/// The request's idempotency key and request hash, if it sent one.
pub fn idempotency_key(
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, RequestError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or(RequestError::BadIdempotencyKey)?;
    let mut hash = Sha256::new();
    hash.update(route.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        request_sha256: hex::encode(hash.finalize()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_key(key: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static(key));
        headers
    }

    #[test]
    fn the_hash_covers_route_and_body() {
        let headers = with_key("order-42");
        let a = idempotency_key(&headers, "/v1/calls", b"{}").ok().flatten();
        let b = idempotency_key(&headers, "/v1/calls", b"{} ")
            .ok()
            .flatten();
        let c = idempotency_key(&headers, "/v1/calls/batch", b"{}")
            .ok()
            .flatten();
        let again = idempotency_key(&headers, "/v1/calls", b"{}").ok().flatten();
        assert_eq!(a, again);
        assert_ne!(
            a.as_ref().map(|k| &k.request_sha256),
            b.as_ref().map(|k| &k.request_sha256)
        );
        assert_ne!(
            a.as_ref().map(|k| &k.request_sha256),
            c.as_ref().map(|k| &k.request_sha256)
        );
        assert_eq!(a.map(|k| k.key), Some("order-42".to_owned()));
    }

    #[test]
    fn absent_is_none_and_unusable_keys_are_refused() {
        assert_eq!(idempotency_key(&HeaderMap::new(), "/", b""), Ok(None));
        assert_eq!(
            idempotency_key(&with_key(""), "/", b""),
            Err(RequestError::BadIdempotencyKey)
        );
        let long: &'static str = Box::leak("k".repeat(256).into_boxed_str());
        assert_eq!(
            idempotency_key(&with_key(long), "/", b""),
            Err(RequestError::BadIdempotencyKey)
        );
    }
}
