//! `[[trunk]]`: one carrier's SIP trunk in the configuration, and its validation.

use std::fmt;

use std::sync::Arc;

use outdial_dataplane::sip::Transport;
use outdial_dataplane::sip::target;
use outdial_dataplane::sip::tls::{ClientTlsFiles, client_config};
use serde::{Deserialize, Serialize};

/// A password: deserialised from the file, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// `[[trunk]]`: where a tenant's calls go and how they present themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// How tenants and `sip.default_trunk` name it: 1–64 of `a-z 0-9 - _`.
    pub name: String,
    /// E.164 → Request-URI: `{number}` is replaced by the number, e.g.
    /// `sip:{number}@carrier.example`.
    pub request_uri: String,
    /// `host[:port]` every INVITE of the trunk is sent to (an outbound proxy or the
    /// carrier's edge); a host name is resolved (A/AAAA) per call. Not set = the host of the
    /// Request-URI.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `udp`, `tcp` or `tls`: the transport of the trunk's calls (their INVITE and dialog)
    /// and of the RFC 3263 lookup of its host.
    #[serde(default = "udp")]
    pub transport: String,
    /// With `transport = "tls"`: a PEM file of the CA certificate(s) to trust instead of the
    /// system's.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// With `transport = "tls"`: our PEM certificate chain for mutual TLS (with
    /// `tls_key_file`).
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    #[serde(default)]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Digest user name for 401/407 challenges.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// Digest password.
    #[serde(default)]
    pub auth_password: Option<Password>,
    /// Answer only challenges of this realm; not set = any realm.
    #[serde(default)]
    pub auth_realm: Option<String>,
    /// Caller ID of the trunk's calls (E.164 or `sip:` URI) when neither the request nor the
    /// tenant gives one.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// Host (`host[:port]`) of From URIs made from E.164 caller IDs; not set = the host of
    /// `request_uri`.
    #[serde(default)]
    pub from_domain: Option<String>,
    /// `P-Asserted-Identity` of every call (E.164 or `sip:` URI, RFC 3325); not set = none.
    #[serde(default)]
    pub asserted_identity: Option<String>,
    /// `Privacy` header of every call (RFC 3323), e.g. `id` or `none`; not set = none.
    #[serde(default)]
    pub privacy: Option<String>,
    /// Follow a 3xx to its first Contact (at most 3 times per attempt, each target checked
    /// against the tenant's egress rules). Off by default: a redirect to an arbitrary number
    /// is a toll-fraud risk.
    #[serde(default)]
    pub follow_redirects: bool,
    /// Symmetric RTP latching for peers behind NAT (`docs/sip.md`, "Media source"), for
    /// this trunk's calls in both directions; off: RTP only from the SDP's address.
    #[serde(default)]
    pub media_latching: bool,
    /// Register `sip:<auth_user>@<domain>` with the carrier (the domain is the host of
    /// `request_uri`; REGISTERs go to `proxy` when set), refreshed before expiry and retried
    /// after failures, from dataplane core 0.
    #[serde(default)]
    pub register: bool,
    /// The binding lifetime asked for, seconds (60 to 86,400).
    #[serde(default = "default_register_expires")]
    pub register_expires_secs: u64,
}

fn default_register_expires() -> u64 {
    600
}

fn udp() -> String {
    "udp".to_owned()
}

/// `+` then 2 to 15 digits, the first not 0.
pub(crate) fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// An E.164 number or a `sip:` URI usable as From.
pub(crate) fn check_caller(text: &str) -> Result<(), String> {
    if is_e164(text) || target::from_uri(text).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "must be an E.164 number (+15550100) or a sip: URI, not {text:?}"
        ))
    }
}

/// `host[:port]` as SIP writes it (an IP literal, `[v6]` or a name), without user or params.
pub(crate) fn check_hostport(text: &str) -> Result<(), String> {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if plain && target::dial_target(&format!("sip:{text}")).is_ok() {
        Ok(())
    } else {
        Err(format!("must be host or host:port, not {text:?}"))
    }
}

fn single_line(key: &str, text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 256 || text.chars().any(char::is_control) {
        Err(format!("{key} must be 1 to 256 characters on one line"))
    } else {
        Ok(())
    }
}

/// True for a name tenants can refer to.
pub(crate) fn is_trunk_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl TrunkConfig {
    /// The transport `transport` names.
    pub fn transport(&self) -> Result<Transport, String> {
        Transport::from_uri_param(&self.transport).ok_or_else(|| {
            format!(
                "transport must be \"udp\", \"tcp\" or \"tls\", not {:?}",
                self.transport
            )
        })
    }

    /// The TLS client settings of a `transport = "tls"` trunk, built from its files (the
    /// system's CA certificates when `tls_ca_file` is not set); `None` for other transports.
    pub fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
        if self.transport()? != Transport::Tls {
            return Ok(None);
        }
        let files = ClientTlsFiles {
            ca_file: self.tls_ca_file.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
        };
        client_config(&files).map(Some).map_err(|e| e.to_string())
    }

    /// Checks what parses but cannot work; the message names the key (without the table).
    pub fn validate(&self) -> Result<(), String> {
        if !is_trunk_name(&self.name) {
            return Err(format!(
                "name must be 1 to 64 of a-z, 0-9, - and _, not {:?}",
                self.name
            ));
        }
        if self.request_uri.matches("{number}").count() != 1 {
            return Err(format!(
                "request_uri must contain {{number}} once, like \"sip:{{number}}@carrier.example\", not {:?}",
                self.request_uri
            ));
        }
        let example = self.request_uri.replace("{number}", "+15550001");
        target::dial_target(&example)
            .map_err(|e| format!("request_uri {:?} {e}", self.request_uri))?;
        if let Some(proxy) = &self.proxy {
            check_hostport(proxy).map_err(|p| format!("proxy {p}"))?;
        }
        let transport = self.transport()?;
        let tls_files = self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.tls_key_file.is_some();
        if tls_files && transport != Transport::Tls {
            return Err(
                "tls_ca_file, tls_cert_file and tls_key_file need transport = \"tls\"".to_owned(),
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("tls_cert_file and tls_key_file must be set together".to_owned());
        }
        self.tls_config()?;
        match (&self.auth_user, &self.auth_password) {
            (Some(user), Some(password)) => {
                single_line("auth_user", user)?;
                single_line("auth_password", &password.0)?;
            }
            (None, None) => {}
            _ => return Err("auth_user and auth_password must be set together".to_owned()),
        }
        if let Some(realm) = &self.auth_realm {
            single_line("auth_realm", realm)?;
        }
        if let Some(caller) = &self.caller_id {
            check_caller(caller).map_err(|p| format!("caller_id {p}"))?;
        }
        if let Some(domain) = &self.from_domain {
            check_hostport(domain).map_err(|p| format!("from_domain {p}"))?;
        }
        if let Some(identity) = &self.asserted_identity {
            check_caller(identity).map_err(|p| format!("asserted_identity {p}"))?;
        }
        if let Some(privacy) = &self.privacy
            && !target::is_privacy_value(privacy)
        {
            return Err(format!(
                "privacy must be Privacy tokens such as \"id\" or \"none\" separated by ;, not {privacy:?}"
            ));
        }
        if !(60..=86_400).contains(&self.register_expires_secs) {
            return Err(format!(
                "register_expires_secs must be 60 to 86400, not {}",
                self.register_expires_secs
            ));
        }
        if self.register && self.auth_user.is_none() {
            return Err(
                "register = true needs auth_user (the address-of-record's user) and auth_password"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk() -> TrunkConfig {
        toml::from_str(
            "name = \"carrier\"\nrequest_uri = \"sip:{number}@carrier.example\"\n\
             auth_user = \"u\"\nauth_password = \"secret-pw\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_minimal_trunk_is_valid_and_hides_its_password() {
        let trunk = trunk();
        assert_eq!(trunk.validate(), Ok(()));
        assert_eq!(trunk.transport, "udp");
        assert!(!format!("{trunk:?}").contains("secret-pw"));
    }

    #[test]
    fn refusals_name_the_key() {
        type Spoil = fn(&mut TrunkConfig);
        let cases: [(&str, Spoil); 14] = [
            ("name", |t| t.name = "Bad Name".into()),
            ("request_uri", |t| {
                t.request_uri = "sip:carrier.example".into()
            }),
            ("request_uri", |t| {
                t.request_uri = "sip:{number}@x?h=1".into()
            }),
            ("proxy", |t| t.proxy = Some("sip:x@y".into())),
            ("transport", |t| t.transport = "sctp".into()),
            ("need transport = \"tls\"", |t| {
                t.tls_ca_file = Some("/etc/ssl/ca.pem".into())
            }),
            ("tls_cert_file and tls_key_file", |t| {
                t.transport = "tls".into();
                t.tls_cert_file = Some("/etc/ssl/me.pem".into())
            }),
            ("auth_user", |t| t.auth_password = None),
            ("auth_password", |t| {
                t.auth_password = Some(Password("a\r\nb".into()))
            }),
            ("caller_id", |t| t.caller_id = Some("5550100".into())),
            ("asserted_identity", |t| {
                t.asserted_identity = Some("tel:+1".into())
            }),
            ("privacy", |t| t.privacy = Some("id\r\nX: 1".into())),
            ("register_expires_secs", |t| t.register_expires_secs = 10),
            ("register = true needs auth_user", |t| {
                t.register = true;
                t.auth_user = None;
                t.auth_password = None;
            }),
        ];
        for (key, spoil) in cases {
            let mut trunk = trunk();
            spoil(&mut trunk);
            let problem = trunk.validate().err().unwrap_or_default();
            assert!(problem.contains(key), "{key}: {problem}");
        }
    }

    #[test]
    fn hostports_and_callers() {
        for ok in [
            "192.0.2.1",
            "192.0.2.1:5080",
            "[2001:db8::1]:5060",
            "sbc.example",
        ] {
            assert_eq!(check_hostport(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a@b", "x;lr", "x:0", "a b"] {
            assert!(check_hostport(bad).is_err(), "{bad}");
        }
        assert!(check_caller("+15550100").is_ok());
        assert!(check_caller("sip:ops@carrier.example").is_ok());
        assert!(check_caller("+0123").is_err());
    }
}
