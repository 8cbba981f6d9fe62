//! `[egress]` and the per-tenant rules derived from it.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::address::{AddressClass, classify};

/// `[egress]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Tenants whose outbound connections are not restricted (trusted, like the development
    /// tenant that runs on the operator's own machine).
    pub unrestricted_tenants: Vec<String>,
    /// Kinds of address refused to every other tenant: `loopback`, `unspecified`, `private`,
    /// `shared`, `link_local`, `metadata`, `multicast`, `reserved`.
    pub blocked: Vec<String>,
    /// Per tenant, networks it may reach although their kind is blocked
    /// (`acme = ["10.20.0.0/16", "192.168.1.7"]`).
    pub allow: BTreeMap<String, Vec<String>>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            unrestricted_tenants: vec![crate::store::DEV_TENANT.to_owned()],
            blocked: AddressClass::ALL
                .iter()
                .map(|c| c.name().to_owned())
                .collect(),
            allow: BTreeMap::new(),
        }
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

impl EgressConfig {
    /// Checks every key; the message names the key and what to write.
    pub fn validate(&self) -> Result<(), String> {
        for name in &self.blocked {
            if AddressClass::parse(name).is_none() {
                return Err(format!(
                    "`egress.blocked` names {name:?}, not a kind of address; use loopback, unspecified, private, shared, link_local, metadata, multicast or reserved"
                ));
            }
        }
        for (tenant, nets) in &self.allow {
            for net in nets {
                if parse_net(net).is_none() {
                    return Err(format!(
                        "`egress.allow.{tenant}` has {net:?}, not a network; write an address or a CIDR, e.g. \"10.20.0.0/16\""
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why a connection was refused: the rule (`egress.loopback`, ...) and the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "outbound connections to {class} addresses are not allowed for this tenant (rule {rule}); the operator can allow a network in `egress.allow`",
    class = self.class.name().replace('_', "-")
)]
pub struct EgressRefusal {
    /// The kind of address.
    pub class: AddressClass,
    /// The rule's name.
    pub rule: &'static str,
}

/// One tenant's rules: which kinds are blocked, which networks are open anyway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantEgress {
    blocked: Vec<AddressClass>,
    allowed: Vec<IpNet>,
    /// Refuse everything (a restricted client could not be built: fail closed).
    deny_all: bool,
}

impl TenantEgress {
    /// No restriction.
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// Refuses every connection (fail closed).
    pub fn deny_all() -> Self {
        Self {
            deny_all: true,
            ..Self::default()
        }
    }

    /// Whether nothing is refused.
    pub fn is_unrestricted(&self) -> bool {
        self.blocked.is_empty() && !self.deny_all
    }

    /// `Ok` when a connection to `ip` is allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), EgressRefusal> {
        if self.deny_all {
            return Err(EgressRefusal {
                class: AddressClass::Reserved,
                rule: "egress.unavailable",
            });
        }
        let ip = canonical(ip);
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        if !self.blocked.contains(&class) || self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(EgressRefusal {
            class,
            rule: class.rule(),
        })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (allow-lists name IPv4 networks).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The policy of every tenant.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    unrestricted: HashSet<String>,
    restricted: Arc<TenantEgress>,
    per_tenant: BTreeMap<String, Arc<TenantEgress>>,
}

impl EgressPolicy {
    /// The policy `config` describes (validated first; bad entries are skipped).
    pub fn new(config: &EgressConfig) -> Self {
        let blocked: Vec<AddressClass> = config
            .blocked
            .iter()
            .filter_map(|n| AddressClass::parse(n))
            .collect();
        let per_tenant = config
            .allow
            .iter()
            .map(|(tenant, nets)| {
                let allowed = nets.iter().filter_map(|n| parse_net(n)).collect();
                let rules = TenantEgress {
                    blocked: blocked.clone(),
                    allowed,
                    deny_all: false,
                };
                (tenant.clone(), Arc::new(rules))
            })
            .collect();
        Self {
            unrestricted: config.unrestricted_tenants.iter().cloned().collect(),
            restricted: Arc::new(TenantEgress {
                blocked,
                allowed: Vec::new(),
                deny_all: false,
            }),
            per_tenant,
        }
    }

    /// A policy that restricts nothing (tools run by the operator, tests).
    pub fn unrestricted() -> Self {
        Self {
            unrestricted: HashSet::new(),
            restricted: Arc::new(TenantEgress::unrestricted()),
            per_tenant: BTreeMap::new(),
        }
    }

    /// `tenant`'s rules and a key shared by every tenant with the same rules (`unrestricted`,
    /// `default`, or `tenant:<id>` for a tenant with an allow-list).
    pub fn scope(&self, tenant: &str) -> (String, Arc<TenantEgress>) {
        if self.unrestricted.contains(tenant) || self.restricted.is_unrestricted() {
            return (
                "unrestricted".to_owned(),
                Arc::new(TenantEgress::unrestricted()),
            );
        }
        match self.per_tenant.get(tenant) {
            Some(rules) => (format!("tenant:{tenant}"), Arc::clone(rules)),
            None => ("default".to_owned(), Arc::clone(&self.restricted)),
        }
    }

    /// `tenant`'s rules.
    pub fn for_tenant(&self, tenant: &str) -> Arc<TenantEgress> {
        if self.unrestricted.contains(tenant) {
            return Arc::new(TenantEgress::unrestricted());
        }
        self.per_tenant
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.restricted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_the_default_block_their_allow_list_or_nothing() {
        let mut config = EgressConfig::default();
        config.allow.insert(
            "acme".to_owned(),
            vec!["10.20.0.0/16".to_owned(), "127.0.0.1".to_owned()],
        );
        assert!(config.validate().is_ok());
        let policy = EgressPolicy::new(&config);
        let ip = |t: &str| t.parse::<IpAddr>().expect("ip");
        let other = policy.for_tenant("other");
        assert_eq!(
            other.check(ip("127.0.0.1")).map_err(|e| e.rule),
            Err("egress.loopback")
        );
        assert_eq!(
            other.check(ip("169.254.169.254")).map_err(|e| e.rule),
            Err("egress.metadata")
        );
        assert_eq!(
            other.check(ip("::ffff:10.0.0.1")).map_err(|e| e.rule),
            Err("egress.private")
        );
        assert!(other.check(ip("8.8.8.8")).is_ok());
        let acme = policy.for_tenant("acme");
        assert!(acme.check(ip("10.20.3.4")).is_ok());
        assert!(
            acme.check(ip("::ffff:127.0.0.1")).is_ok(),
            "mapped form of an allowed address"
        );
        assert!(acme.check(ip("127.0.0.2")).is_err());
        assert!(acme.check(ip("10.21.0.1")).is_err());
        assert!(policy.for_tenant("dev").check(ip("127.0.0.1")).is_ok());
        let refusal = other.check(ip("127.0.0.1")).expect_err("refused");
        assert!(refusal.to_string().contains("egress.loopback"), "{refusal}");
    }

    #[test]
    fn bad_configuration_names_the_key() {
        let mut config = EgressConfig::default();
        config.blocked.push("intranet".to_owned());
        assert!(
            config
                .validate()
                .is_err_and(|e| e.contains("egress.blocked"))
        );
        let mut config = EgressConfig::default();
        config
            .allow
            .insert("acme".to_owned(), vec!["10.0.0.0/33".to_owned()]);
        assert!(
            config
                .validate()
                .is_err_and(|e| e.contains("egress.allow.acme"))
        );
    }
}
