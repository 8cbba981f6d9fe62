//! Sender authentication with `mail-auth`. DKIM (RFC 6376): which domains signed a message,
//! counting only signatures that pass, cover the whole body (no `l=`) and sign every
//! `X-Outdial-*` field present (so no request field can be added to a signed message). SPF
//! (RFC 7208) for the envelope sender and DMARC (RFC 7489) for the author's (`From:`) domain,
//! for tenants that require them. Records come from `email.dkim_keys` and `email.dns_txt`
//! first, then DNS (the system resolver), cached for their TTL.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::Spf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, Parameters, ResolverCache,
    SpfResult, Txt,
};

use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};

/// Most DNS answers kept.
const MAX_CACHED: usize = 4096;

/// Parses a DKIM key record (`v=DKIM1; k=rsa; p=...`).
pub fn parse_key(record: &str) -> Result<DomainKey, String> {
    DomainKey::parse(record.as_bytes()).map_err(|e| e.to_string())
}

/// A pinned TXT record (`email.dns_txt`): SPF (`v=spf1`), DMARC (`v=DMARC1`) or a DKIM key.
pub fn parse_txt(record: &str) -> Result<Txt, String> {
    let head = record.trim_start().to_ascii_lowercase();
    if head.starts_with("v=spf1") {
        Spf::parse(record.as_bytes())
            .map(Txt::from)
            .map_err(|e| format!("SPF record: {e}"))
    } else if head.starts_with("v=dmarc1") {
        Dmarc::parse(record.as_bytes())
            .map(Txt::from)
            .map_err(|e| format!("DMARC record: {e}"))
    } else {
        parse_key(record).map(Txt::from)
    }
}

/// What SPF and DMARC say of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderChecks {
    /// The envelope sender's domain (or the HELO name for the null sender).
    pub spf_domain: String,
    /// SPF passed for it from the client's address.
    pub spf_pass: bool,
    /// The author's (`From:`) domain DMARC evaluated; empty when it did not apply.
    pub dmarc_domain: String,
    /// DMARC passed (SPF or DKIM aligned with the author's domain).
    pub dmarc_pass: bool,
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
            let txt = parse_txt(record).map_err(|e| format!("{name}: {e}"))?;
            let mut name = name.to_ascii_lowercase();
            if !name.ends_with('.') {
                name.push('.');
            }
            keys.insert(name.into_boxed_str(), txt);
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

    /// SPF for the envelope sender `mail_from` (or `helo` for the null sender) from `ip`,
    /// and DMARC for the author's domain (with this message's DKIM signatures). `host` is
    /// this server's name, for SPF macros.
    pub async fn sender_checks(
        &self,
        raw: &[u8],
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        host: &str,
    ) -> SenderChecks {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return SenderChecks::default();
        };
        let dkim = self
            .authenticator
            .verify_dkim(Parameters::new(&message).with_txt_cache(&self.keys))
            .await;
        let spf_params = if mail_from.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, host)
        } else {
            SpfParameters::verify_mail_from(ip, helo, host, mail_from)
        };
        let spf = self
            .authenticator
            .verify_spf(Parameters::new(spf_params).with_txt_cache(&self.keys))
            .await;
        let spf_domain = mail_from
            .rsplit_once('@')
            .map_or(helo, |(_, domain)| domain)
            .to_ascii_lowercase();
        let dmarc = self
            .authenticator
            .verify_dmarc(
                Parameters::new(DmarcParameters::new(&message, &dkim, &spf_domain, &spf))
                    .with_txt_cache(&self.keys),
            )
            .await;
        let dmarc_pass = matches!(dmarc.spf_result(), DmarcResult::Pass)
            || matches!(dmarc.dkim_result(), DmarcResult::Pass);
        tracing::debug!(spf = ?spf.result(), dmarc = ?dmarc.result(), "sender checks");
        SenderChecks {
            spf_pass: spf.result() == SpfResult::Pass,
            spf_domain,
            dmarc_domain: dmarc.domain().to_ascii_lowercase(),
            dmarc_pass,
        }
    }
}
