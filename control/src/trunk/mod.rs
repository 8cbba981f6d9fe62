//! Trunks: which carrier a tenant's calls go through, and what each call takes from it
//! (the E.164 → Request-URI mapping, the proxy, digest credentials, caller ID,
//! P-Asserted-Identity and Privacy).
//!
//! A tenant's stored `trunk` is the name of a `[[trunk]]`, or (as before trunks had names)
//! a `sip:host[:port]` that E.164 numbers are sent to with the default trunk's other
//! settings. A tenant without one uses the default trunk: the `[[trunk]]` that
//! `sip.default_trunk` names, or else the one `[sip]` describes (`sip.trunk`,
//! `sip.outbound_proxy`, `sip.from`), so configurations from before trunks work unchanged.

pub mod config;

use std::collections::HashMap;
use std::sync::Arc;

use outdial_dataplane::sip::Transport;
use outdial_dataplane::sip::auth::Credentials;

pub use config::{Password, TrunkConfig};

use crate::config::{Config, has_scheme, trunk_host_port};
use config::is_e164;

/// Redirects followed at most, per attempt.
pub const MAX_REDIRECTS: u32 = 3;

/// One trunk as calls use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Its name (`default` for the one `[sip]` describes, the URI for a tenant's
    /// `sip:host:port`).
    pub name: String,
    /// E.164 → Request-URI template with `{number}`; `None` = E.164 numbers cannot be
    /// dialled through it.
    pub request_uri: Option<String>,
    /// `host[:port]` (or `ip:port`) every INVITE goes to; `None` = the Request-URI's host.
    pub proxy: Option<String>,
    /// Digest credentials.
    pub credentials: Option<Credentials>,
    /// Default caller ID (E.164 or URI).
    pub caller_id: Option<String>,
    /// Host of From URIs made from E.164 numbers.
    pub from_domain: String,
    /// P-Asserted-Identity (E.164 or URI).
    pub asserted_identity: Option<String>,
    /// Privacy header value.
    pub privacy: Option<String>,
    /// Symmetric RTP latching for the trunk's calls (`docs/sip.md`, "Media source").
    pub media_latching: bool,
    /// Follow a 3xx to its Contact (at most [`MAX_REDIRECTS`] times, each target checked
    /// against the tenant's egress rules); off, a 3xx ends the call `failed`.
    pub follow_redirects: bool,
    /// Registration: the lifetime to ask for, when the trunk registers.
    pub register_expires: Option<std::time::Duration>,
    /// The transport of its calls.
    pub transport: Transport,
    /// Its TLS client settings, when `transport` is TLS.
    pub tls: Option<TrunkTls>,
}

/// A trunk's TLS client settings: built once at start, shared by its calls (equal when they
/// are the same settings).
#[derive(Debug, Clone)]
pub struct TrunkTls(pub Arc<rustls::ClientConfig>);

impl PartialEq for TrunkTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TrunkTls {}

impl Trunk {
    /// The Request-URI for an E.164 number, when the trunk routes numbers.
    pub fn route(&self, number: &str) -> Option<String> {
        self.request_uri
            .as_ref()
            .map(|template| template.replace("{number}", number))
    }

    /// A caller ID as a From URI: an E.164 number at `from_domain`, a URI as it is.
    pub fn caller_uri(&self, caller: &str) -> String {
        if is_e164(caller) || !has_scheme(caller, "sip") && !has_scheme(caller, "sips") {
            format!("sip:{caller}@{}", self.from_domain)
        } else {
            caller.to_owned()
        }
    }

    /// The registrar's domain: the host (and port) of `request_uri`.
    pub fn domain(&self) -> Option<&str> {
        self.request_uri.as_deref().map(uri_host)
    }

    /// The P-Asserted-Identity URI, if the trunk sends one.
    pub fn asserted_identity_uri(&self) -> Option<String> {
        self.asserted_identity
            .as_deref()
            .map(|identity| self.caller_uri(identity))
    }
}

/// Every trunk of the configuration, by name, and the default.
#[derive(Debug, Clone)]
pub struct Trunks {
    named: HashMap<String, Arc<Trunk>>,
    /// Names in configuration order.
    order: Vec<String>,
    default: Arc<Trunk>,
    /// `sip.from`: the From of last resort.
    sip_from: String,
}

/// Why a tenant's trunk cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the tenant's trunk `{0}` is not in the configuration; add a [[trunk]] with that name or give the tenant another"
)]
pub struct UnknownTrunk(pub String);

/// The host (and port) of a `sip:` URI: what follows `@`, or the whole authority.
fn uri_host(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split([';', '?']).next().unwrap_or(rest)
}

impl Trunks {
    /// The trunks of a validated configuration.
    pub fn new(config: &Config) -> Self {
        let named: HashMap<String, Arc<Trunk>> = config
            .trunk
            .iter()
            .map(|t| (t.name.clone(), Arc::new(Self::from_config(t))))
            .collect();
        let configured_default = config
            .sip
            .default_trunk
            .as_ref()
            .and_then(|name| named.get(name))
            .cloned();
        let default = configured_default.unwrap_or_else(|| {
            Arc::new(Trunk {
                name: "default".to_owned(),
                request_uri: config
                    .sip
                    .trunk
                    .as_deref()
                    .and_then(|t| trunk_host_port(t).ok())
                    .map(|host| format!("sip:{{number}}@{host}")),
                proxy: config.sip.outbound_proxy.map(|p| p.to_string()),
                credentials: None,
                caller_id: None,
                from_domain: uri_host(&config.sip.from).to_owned(),
                asserted_identity: None,
                privacy: None,
                media_latching: config.sip.media_latching,
                follow_redirects: false,
                register_expires: None,
                transport: Transport::Udp,
                tls: None,
            })
        });
        Self {
            named,
            order: config.trunk.iter().map(|t| t.name.clone()).collect(),
            default,
            sip_from: config.sip.from.clone(),
        }
    }

    fn from_config(config: &TrunkConfig) -> Trunk {
        let credentials = match (&config.auth_user, &config.auth_password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.0.clone(),
                realm: config.auth_realm.clone(),
            }),
            _ => None,
        };
        Trunk {
            name: config.name.clone(),
            request_uri: Some(config.request_uri.clone()),
            proxy: config.proxy.clone(),
            credentials,
            caller_id: config.caller_id.clone(),
            from_domain: config
                .from_domain
                .clone()
                .unwrap_or_else(|| uri_host(&config.request_uri).to_owned()),
            asserted_identity: config.asserted_identity.clone(),
            privacy: config.privacy.clone(),
            media_latching: config.media_latching,
            follow_redirects: config.follow_redirects,
            register_expires: config
                .register
                .then(|| std::time::Duration::from_secs(config.register_expires_secs)),
            transport: config.transport().unwrap_or(Transport::Udp),
            tls: match config.tls_config() {
                Ok(tls) => tls.map(TrunkTls),
                Err(e) => {
                    // Validation refused this at start; a file changed since.
                    tracing::error!(trunk = %config.name, error = %e, "TLS settings unusable");
                    None
                }
            },
        }
    }

    /// The trunks that register, with ids in configuration order.
    pub fn registering(&self) -> Vec<(u32, Arc<Trunk>)> {
        self.order
            .iter()
            .filter_map(|name| self.named.get(name))
            .filter(|t| t.register_expires.is_some())
            .zip(0..)
            .map(|(trunk, id)| (id, Arc::clone(trunk)))
            .collect()
    }

    /// The default trunk.
    pub fn default_trunk(&self) -> &Arc<Trunk> {
        &self.default
    }

    /// Whether `name` is a configured `[[trunk]]`.
    pub fn contains(&self, name: &str) -> bool {
        self.named.contains_key(name)
    }

    /// The trunk of a tenant whose stored trunk is `tenant_trunk`.
    pub fn for_tenant(&self, tenant_trunk: Option<&str>) -> Result<Arc<Trunk>, UnknownTrunk> {
        let Some(name) = tenant_trunk else {
            return Ok(Arc::clone(&self.default));
        };
        if let Some(trunk) = self.named.get(name) {
            return Ok(Arc::clone(trunk));
        }
        match trunk_host_port(name) {
            Ok(host) => Ok(Arc::new(Trunk {
                name: name.to_owned(),
                request_uri: Some(format!("sip:{{number}}@{host}")),
                ..(*self.default).clone()
            })),
            Err(_) => Err(UnknownTrunk(name.to_owned())),
        }
    }

    /// The From URI of a call: the request's `from` (already a URI), else the tenant's
    /// caller ID, else the trunk's, else `sip.from`.
    pub fn from_uri(
        &self,
        trunk: &Trunk,
        request_from: Option<&str>,
        tenant_caller_id: Option<&str>,
    ) -> String {
        if let Some(from) = request_from {
            return from.to_owned();
        }
        tenant_caller_id
            .or(trunk.caller_id.as_deref())
            .map_or_else(|| self.sip_from.clone(), |caller| trunk.caller_uri(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let config = Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
        config.validate().unwrap_or_else(|e| panic!("{e}"));
        config
    }

    const CARRIER: &str = "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{number}@carrier.example\"\n\
        proxy = \"192.0.2.30:5060\"\nauth_user = \"acct\"\nauth_password = \"pw\"\n\
        caller_id = \"+15550100\"\nasserted_identity = \"+15550199\"\nprivacy = \"id\"\n";

    #[test]
    fn the_sip_section_is_the_default_trunk() {
        let trunks = Trunks::new(&config(
            "[sip]\ntrunk = \"sip:192.0.2.10:5070\"\noutbound_proxy = \"192.0.2.20:5060\"\nfrom = \"sip:outdial@10.0.0.1\"\n",
        ));
        let trunk = trunks.for_tenant(None).unwrap();
        assert_eq!(
            trunk.route("+15550001").as_deref(),
            Some("sip:+15550001@192.0.2.10:5070")
        );
        assert_eq!(trunk.proxy.as_deref(), Some("192.0.2.20:5060"));
        assert_eq!(trunk.credentials, None);
        assert_eq!(trunks.from_uri(&trunk, None, None), "sip:outdial@10.0.0.1");
        assert_eq!(
            trunks.from_uri(&trunk, None, Some("+15550100")),
            "sip:+15550100@10.0.0.1"
        );
        assert_eq!(Trunks::new(&Config::default()).default.route("+1555"), None);
    }

    #[test]
    fn a_named_trunk_and_the_order_of_callers() {
        let trunks = Trunks::new(&config(CARRIER));
        let trunk = trunks.for_tenant(Some("carrier")).unwrap();
        assert_eq!(
            trunk.route("+15550001").as_deref(),
            Some("sip:+15550001@carrier.example")
        );
        assert_eq!(trunk.from_domain, "carrier.example");
        assert_eq!(
            trunk.credentials.as_ref().map(|c| c.username.as_str()),
            Some("acct")
        );
        assert_eq!(
            trunk.asserted_identity_uri().as_deref(),
            Some("sip:+15550199@carrier.example")
        );
        // The request's from wins, then the tenant's caller ID, then the trunk's.
        assert_eq!(
            trunks.from_uri(&trunk, Some("sip:a@b"), Some("+1555")),
            "sip:a@b"
        );
        assert_eq!(
            trunks.from_uri(&trunk, None, Some("+15550111")),
            "sip:+15550111@carrier.example"
        );
        assert_eq!(
            trunks.from_uri(&trunk, None, None),
            "sip:+15550100@carrier.example"
        );
        // The default is still the [sip] one unless sip.default_trunk names this.
        assert_eq!(trunks.for_tenant(None).unwrap().name, "default");
        let with_default = Trunks::new(&config(&format!(
            "[sip]\ndefault_trunk = \"carrier\"\n{CARRIER}"
        )));
        assert_eq!(with_default.for_tenant(None).unwrap().name, "carrier");
    }

    #[test]
    fn a_tenant_uri_keeps_working_and_an_unknown_name_is_named() {
        let trunks = Trunks::new(&config(CARRIER));
        let legacy = trunks.for_tenant(Some("sip:10.0.0.9:5060")).unwrap();
        assert_eq!(
            legacy.route("+15550001").as_deref(),
            Some("sip:+15550001@10.0.0.9:5060")
        );
        let unknown = trunks.for_tenant(Some("gone")).unwrap_err();
        assert!(unknown.to_string().contains("`gone`"), "{unknown}");
    }
}
