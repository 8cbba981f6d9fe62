//! `[email]`: what e-mail requests mean — recipient domains, each tenant's rules for
//! authenticating its mail, named applications, and where attached files are served from.
//! (The SMTP listener itself is configured under `[smtp]`.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[email]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Domains that recipient addresses may be at (`tenant@domain`); empty = any domain.
    pub domains: Vec<String>,
    /// Base URL the interpreter fetches attached applications from (this server's HTTP API);
    /// empty = `http://` + `http.listen` (a wildcard listen address becomes 127.0.0.1).
    pub files_base_url: String,
    /// Milliseconds to wait when checking, at acceptance, that an application URL answers;
    /// 0 = do not check.
    pub check_url_timeout_ms: u64,
    /// Most calls (destinations) one message may ask for.
    pub max_calls_per_message: usize,
    /// DKIM public keys known without DNS: `"selector._domainkey.domain" = "v=DKIM1; k=...;
    /// p=..."`. Looked up before DNS; for private domains and tests.
    pub dkim_keys: BTreeMap<String, String>,
    /// SPF and DMARC records known without DNS: `"example.com" = "v=spf1 ip4:192.0.2.0/24
    /// -all"`, `"_dmarc.example.com" = "v=DMARC1; p=reject"`. Looked up before DNS; for
    /// private domains and tests.
    pub dns_txt: BTreeMap<String, String>,
    /// Plain-SMTP relay (`host:port`) for acknowledgement and rejection mails; empty = none
    /// are sent.
    pub reply_relay: String,
    /// The From address of reply mails.
    pub reply_from: String,
    /// Per-tenant rules, by tenant id. A tenant not listed takes the defaults of
    /// [`EmailTenant`] (SMTP AUTH required, no DKIM, no named applications).
    pub tenants: BTreeMap<String, EmailTenant>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            files_base_url: String::new(),
            check_url_timeout_ms: 3000,
            max_calls_per_message: 100,
            dkim_keys: BTreeMap::new(),
            dns_txt: BTreeMap::new(),
            reply_relay: String::new(),
            reply_from: "outdial@localhost".to_owned(),
            tenants: BTreeMap::new(),
        }
    }
}

/// `[email.tenants.<id>]`: how one tenant's mail proves it is the tenant's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailTenant {
    /// The message must come over a session that did `AUTH` as this tenant.
    pub require_auth: bool,
    /// The message must carry a passing DKIM signature from one of `dkim_domains`.
    pub require_dkim: bool,
    /// Signing domains (`d=`) accepted for this tenant.
    pub dkim_domains: Vec<String>,
    /// The envelope sender's domain must be one of `sender_domains` and pass SPF (RFC 7208)
    /// for the connecting address.
    pub require_spf: bool,
    /// The author's (`From:`) domain must be one of `sender_domains` and pass DMARC (RFC 7489:
    /// SPF or DKIM aligned with it).
    pub require_dmarc: bool,
    /// The tenant's own mail domains, for `require_spf` and `require_dmarc`.
    pub sender_domains: Vec<String>,
    /// Applications a recipient can name (`name+tenant@domain`): name → VoiceXML URL.
    pub applications: BTreeMap<String, String>,
}

impl Default for EmailTenant {
    fn default() -> Self {
        Self {
            require_auth: true,
            require_dkim: false,
            dkim_domains: Vec::new(),
            require_spf: false,
            require_dmarc: false,
            sender_domains: Vec::new(),
            applications: BTreeMap::new(),
        }
    }
}

/// Longest `max_calls_per_message`.
pub const MAX_CALLS_PER_MESSAGE: usize = 10_000;

/// 1–64 of `[a-z0-9_-]`: tenant ids and application names.
pub fn is_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl EmailConfig {
    /// The rules of `tenant` (the defaults when it has no section).
    pub fn tenant(&self, tenant: &str) -> EmailTenant {
        self.tenants.get(tenant).cloned().unwrap_or_default()
    }

    /// Checks values that parse but cannot work; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for domain in &self.domains {
            if domain.is_empty() || domain.contains(['@', ' ']) || domain != &domain.to_lowercase()
            {
                return Err(format!(
                    "`email.domains` entry {domain:?} must be a lowercase domain name like \"calls.example.com\""
                ));
            }
        }
        if !self.files_base_url.is_empty() {
            let ok = url::Url::parse(&self.files_base_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return Err(format!(
                    "`email.files_base_url` must be an absolute http(s) URL of this server's API, not {:?}",
                    self.files_base_url
                ));
            }
        }
        if !(1..=MAX_CALLS_PER_MESSAGE).contains(&self.max_calls_per_message) {
            return Err(format!(
                "`email.max_calls_per_message` must be from 1 to {MAX_CALLS_PER_MESSAGE}"
            ));
        }
        if !self.reply_relay.is_empty()
            && self
                .reply_relay
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(format!(
                "`email.reply_relay` must be host:port of an SMTP relay, like \"127.0.0.1:25\", not {:?}",
                self.reply_relay
            ));
        }
        if self.reply_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "`email.reply_from` must be an address like \"outdial@calls.example.com\", not {:?}",
                self.reply_from
            ));
        }
        for (name, record) in &self.dkim_keys {
            super::dkim::parse_key(record).map_err(|e| {
                format!("`email.dkim_keys.\"{name}\"` is not a DKIM key record ({e}); copy the TXT record of the selector")
            })?;
            if !name.contains("._domainkey.") {
                return Err(format!(
                    "`email.dkim_keys` name {name:?} must look like \"selector._domainkey.example.com\""
                ));
            }
        }
        for (name, record) in &self.dns_txt {
            super::dkim::parse_txt(record).map_err(|e| {
                format!("`email.dns_txt.\"{name}\"` is not an SPF, DMARC or DKIM record ({e}); copy the TXT record")
            })?;
        }
        for (id, tenant) in &self.tenants {
            if (tenant.require_spf || tenant.require_dmarc) && tenant.sender_domains.is_empty() {
                return Err(format!(
                    "`email.tenants.{id}`: require_spf and require_dmarc need `sender_domains` (the domains its mail comes from)"
                ));
            }
            if !is_name(id) {
                return Err(format!(
                    "`email.tenants.{id}`: a tenant id is 1 to 64 of a-z, 0-9, - and _"
                ));
            }
            if tenant.require_dkim && tenant.dkim_domains.is_empty() {
                return Err(format!(
                    "`email.tenants.{id}.require_dkim` needs `dkim_domains` (the domains that sign its mail)"
                ));
            }
            if !tenant.require_auth && !tenant.require_dkim && !tenant.require_dmarc {
                return Err(format!(
                    "`email.tenants.{id}`: require_auth, require_dkim or require_dmarc must be true, or anyone could place calls as this tenant"
                ));
            }
            for (name, url) in &tenant.applications {
                let ok = url::Url::parse(url).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                });
                if !is_name(name) || !ok {
                    return Err(format!(
                        "`email.tenants.{id}.applications.{name}` needs a name of 1 to 64 of a-z, 0-9, - and _ and an absolute http(s) URL, not {url:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<(), String> {
        let parsed: EmailConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        parsed.validate()
    }

    #[test]
    fn defaults_are_valid_and_require_auth() {
        assert_eq!(config(""), Ok(()));
        assert!(EmailConfig::default().tenant("anyone").require_auth);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            ("domains = [\"Calls.Example\"]", "email.domains"),
            ("files_base_url = \"ftp://x\"", "email.files_base_url"),
            ("max_calls_per_message = 0", "email.max_calls_per_message"),
            ("reply_relay = \"localhost\"", "email.reply_relay"),
            ("reply_from = \"not an address\"", "email.reply_from"),
            (
                "[dkim_keys]\n\"s._domainkey.x\" = \"v=DKIM1; p=!!\"",
                "email.dkim_keys",
            ),
            (
                "[dns_txt]\n\"s._domainkey.x.example\" = \"v=DKIM1; p=!!\"",
                "email.dns_txt",
            ),
            ("[tenants.acme]\nrequire_spf = true", "sender_domains"),
            ("[tenants.acme]\nrequire_dmarc = true", "sender_domains"),
            ("[tenants.Acme]", "email.tenants.Acme"),
            ("[tenants.acme]\nrequire_dkim = true", "require_dkim"),
            ("[tenants.acme]\nrequire_auth = false", "require_auth"),
            (
                "[tenants.acme.applications]\nx = \"/app.vxml\"",
                "applications.x",
            ),
        ];
        for (text, key) in cases {
            let problem = config(text).err().unwrap_or_default();
            assert!(problem.contains(key), "{text}: {problem}");
        }
        assert_eq!(
            config(
                "[tenants.acme]\nrequire_auth = false\nrequire_dkim = true\ndkim_domains = [\"clinic.example\"]"
            ),
            Ok(())
        );
        assert_eq!(
            config(
                "[dns_txt]\n\"clinic.example\" = \"v=spf1 ip4:192.0.2.0/24 -all\"\n\"_dmarc.clinic.example\" = \"v=DMARC1; p=reject\"\n[tenants.acme]\nrequire_auth = false\nrequire_dmarc = true\nsender_domains = [\"clinic.example\"]"
            ),
            Ok(())
        );
    }
}
