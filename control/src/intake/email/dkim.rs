//! DKIM (RFC 6376) with `mail-auth`: which domains signed a message, counting only
//! signatures that pass, cover the whole body (no `l=`) and sign every `X-Outdial-*` field
//! present (so no request field can be added to a signed message). Keys come from
//! `email.dkim_keys` first, then DNS (the system resolver), cached for their TTL.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};

/// Most DNS answers kept.
const MAX_CACHED: usize = 4096;

/// Parses a DKIM key record (`v=DKIM1; k=rsa; p=...`).
pub fn parse_key(record: &str) -> Result<DomainKey, String> {
    DomainKey::parse(record.as_bytes()).map_err(|e| e.to_string())
}

/// A TXT cache that never forgets the configured keys.
struct Keys {
    pinned: HashMap<Box<str>, Txt>,
    learned: Mutex<HashMap<Box<str>, (Txt, Instant)>>,
}

impl ResolverCache<Box<str>, Txt> for Keys {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(txt) = self.pinned.get(name) {
            return Some(txt.clone());
        }
        let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(txt, _)| txt.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned.remove(name).map(|(txt, _)| txt)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        if learned.len() >= MAX_CACHED {
            let now = Instant::now();
            learned.retain(|_, (_, until)| *until > now);
            if learned.len() >= MAX_CACHED {
                learned.clear();
            }
        }
        learned.insert(key, (value, valid_until));
    }
}

/// Verifies DKIM signatures.
pub struct Dkim {
    authenticator: MessageAuthenticator,
    keys: Keys,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkim")
            .field("pinned", &self.keys.pinned.len())
            .finish_non_exhaustive()
    }
}

impl Dkim {
    /// A verifier knowing `pinned` keys (`selector._domainkey.domain` → TXT record) and asking
    /// the system's resolver for others. Without a usable resolver configuration, only the
    /// pinned keys work (logged).
    pub fn new<'a>(
        pinned: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (name, record) in pinned {
            let key = parse_key(record)?;
            let mut name = name.to_ascii_lowercase();
            if !name.ends_with('.') {
                name.push('.');
            }
            keys.insert(name.into_boxed_str(), Txt::from(key));
        }
        let authenticator = MessageAuthenticator::new_system_conf().or_else(|e| {
            tracing::warn!(error = %e, "no DNS resolver configuration: DKIM keys come from email.dkim_keys only");
            MessageAuthenticator::new(
                ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                ResolverOpts::default(),
            )
        });
        let authenticator =
            authenticator.map_err(|e| format!("cannot set up a DNS resolver: {e}"))?;
        Ok(Self {
            authenticator,
            keys: Keys {
                pinned: keys,
                learned: Mutex::new(HashMap::new()),
            },
        })
    }

    /// The lowercase `d=` domains of the signatures of `raw` that pass, cover the whole
    /// body and sign every header field named in `request_fields` (lowercase names).
    pub async fn signed_by(&self, raw: &[u8], request_fields: &[String]) -> Vec<String> {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Vec::new();
        };
        let outputs = self
            .authenticator
            .verify_dkim(Parameters::new(&message).with_txt_cache(&self.keys))
            .await;
        let mut domains = Vec::new();
        for output in &outputs {
            let Some(signature) = output.signature() else {
                continue;
            };
            let covers_fields = request_fields
                .iter()
                .all(|field| signature.h.iter().any(|h| h.eq_ignore_ascii_case(field)));
            if output.result() == &DkimResult::Pass && signature.l == 0 && covers_fields {
                domains.push(signature.d.to_ascii_lowercase());
            } else {
                tracing::debug!(domain = %signature.d, result = ?output.result(), "DKIM signature not counted");
            }
        }
        domains
    }
}
