//! API keys and secrets: how they are made, stored (as SHA-256 only) and read from requests.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{AuthError, Error};

/// Prefix of the development tenant's API key.
pub const DEV_KEY_PREFIX: &str = "od_dev_";

/// Prefix of webhook signing secrets, as in Standard Webhooks.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// Lowercase Crockford base32: no `i`, `l`, `o`, `u`, so ids read back unambiguously.
const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
}

/// `len` random base32 characters (5 bits each).
pub fn random_base32(len: usize) -> Result<String, Error> {
    let mut bytes = vec![0u8; len];
    random_bytes(&mut bytes)?;
    // 256 is a multiple of 32, so `b % 32` is uniform.
    Ok(bytes
        .iter()
        .map(|b| char::from(BASE32[usize::from(b % 32)]))
        .collect())
}

/// A unique id whose first 10 characters are `unix_millis` (50 bits, big-endian base32, so ids
/// sort by creation time) and whose last 16 are random (80 bits, still unguessable). Stores
/// index ids: ids made close in time land on the same index pages, so a commit of many new
/// calls dirties a few pages at the index's right edge instead of one random page per call
/// (ULID's layout, in this module's alphabet).
///
/// The random part comes from a per-thread ChaCha12 generator seeded once from the operating
/// system: a batch of 10,000 calls made 10,000 `getrandom` system calls before (3 % of the
/// store thread's time).
pub fn time_ordered_base32(unix_millis: u64) -> Result<String, Error> {
    let mut id = String::with_capacity(26);
    push_base32(&mut id, u128::from(unix_millis), 10);
    push_base32(&mut id, id_random_bits()?, 16);
    Ok(id)
}

/// Appends the low `digits` × 5 bits of `value` to `id` as base32, most significant first.
fn push_base32(id: &mut String, value: u128, digits: u32) {
    for shift in (0..digits).rev() {
        let digit = (value >> (shift * 5)) & 31;
        id.push(char::from(BASE32[usize::try_from(digit).unwrap_or(0)]));
    }
}

/// 80 random bits (in the low bits) from this thread's generator.
fn id_random_bits() -> Result<u128, Error> {
    use rand::{RngCore as _, SeedableRng as _};
    thread_local! {
        static IDS: std::cell::RefCell<Option<rand::rngs::StdRng>> =
            const { std::cell::RefCell::new(None) };
    }
    IDS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rng = match slot.as_mut() {
            Some(rng) => rng,
            None => {
                let mut seed = [0u8; 32];
                random_bytes(&mut seed)?;
                slot.insert(rand::rngs::StdRng::from_seed(seed))
            }
        };
        let high = u128::from(rng.next_u64() & 0xffff);
        Ok((high << 64) | u128::from(rng.next_u64()))
    })
}

/// A new development API key: `od_dev_` + 32 random hex characters (128 bits).
pub fn new_dev_api_key() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    Ok(format!("{DEV_KEY_PREFIX}{}", hex::encode(bytes)))
}

/// A new webhook signing secret: `whsec_` + base64 of 24 random bytes.
pub fn new_webhook_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 24];
    random_bytes(&mut bytes)?;
    Ok(format!(
        "{WEBHOOK_SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The form an API key is stored in: lowercase hex SHA-256 of the key.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The key in an `Authorization: Bearer <key>` header value (RFC 6750 §2.1).
pub fn bearer_key(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::MissingApiKey)?.trim();
    let (scheme, key) = header.split_once(' ').ok_or(AuthError::MissingApiKey)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingApiKey);
    }
    let key = key.trim();
    if key.is_empty() {
        Err(AuthError::MissingApiKey)
    } else {
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_key(Some("Bearer od_dev_1")), Ok("od_dev_1"));
        assert_eq!(bearer_key(Some("bearer   od_dev_1 ")), Ok("od_dev_1"));
        assert_eq!(bearer_key(None), Err(AuthError::MissingApiKey));
        assert_eq!(
            bearer_key(Some("Basic dXNlcjpwYXNz")),
            Err(AuthError::MissingApiKey)
        );
        assert_eq!(bearer_key(Some("Bearer ")), Err(AuthError::MissingApiKey));
        assert_eq!(bearer_key(Some("Bearer")), Err(AuthError::MissingApiKey));
    }

    #[test]
    fn dev_keys_have_the_documented_shape_and_differ() {
        let a = new_dev_api_key().unwrap_or_default();
        let b = new_dev_api_key().unwrap_or_default();
        assert_eq!(a.len(), DEV_KEY_PREFIX.len() + 32);
        assert!(a.starts_with(DEV_KEY_PREFIX));
        assert!(
            a[DEV_KEY_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn key_hash_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn base32_alphabet_only() {
        let id = random_base32(26).unwrap_or_default();
        assert_eq!(id.len(), 26);
        assert!(id.bytes().all(|c| BASE32.contains(&c)), "{id}");
    }

    #[test]
    fn time_ordered_ids_sort_by_time_and_differ_within_a_millisecond() {
        let earlier = time_ordered_base32(1_764_900_000_000).unwrap_or_default();
        let same = time_ordered_base32(1_764_900_000_000).unwrap_or_default();
        let later = time_ordered_base32(1_764_900_000_001).unwrap_or_default();
        assert_eq!(earlier.len(), 26);
        assert!(earlier.bytes().all(|c| BASE32.contains(&c)), "{earlier}");
        assert_eq!(earlier[..10], same[..10]);
        assert_ne!(earlier, same);
        assert!(earlier < later && same < later, "{earlier} {same} {later}");
        // 50 bits of milliseconds last until the year 37,648.
        assert_eq!(
            time_ordered_base32(0).unwrap_or_default()[..10],
            *"0000000000"
        );
        assert_eq!(
            time_ordered_base32((1 << 50) - 1).unwrap_or_default()[..10],
            *"zzzzzzzzzz"
        );
    }

    #[test]
    fn ids_made_in_one_millisecond_on_two_threads_are_all_distinct() {
        let make = || {
            (0..10_000)
                .map(|_| time_ordered_base32(1_764_900_000_000).unwrap_or_default())
                .collect::<Vec<_>>()
        };
        let other = std::thread::spawn(make).join().unwrap_or_default();
        let mut all: std::collections::HashSet<String> = make().into_iter().collect();
        all.extend(other);
        assert_eq!(
            all.len(),
            20_000,
            "each thread's generator is seeded on its own"
        );
        // Every random character is used: the 80 bits are not stuck anywhere.
        let sample = time_ordered_base32(0).unwrap_or_default();
        assert!(sample[10..].bytes().all(|c| BASE32.contains(&c)));
        let tails: std::collections::HashSet<u8> = all.iter().map(|id| id.as_bytes()[10]).collect();
        assert_eq!(
            tails.len(),
            32,
            "the first random character takes all 32 values"
        );
    }

    #[test]
    fn webhook_secret_decodes_to_24_bytes() {
        let secret = new_webhook_secret().unwrap_or_default();
        let encoded = secret
            .strip_prefix(WEBHOOK_SECRET_PREFIX)
            .unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded);
        assert_eq!(decoded.map(|d| d.len()).ok(), Some(24));
    }
}
