//! What makes an HTTP client keep to a tenant's rules, and one client per set of rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

use super::policy::{EgressPolicy, EgressRefusal, TenantEgress};
use super::resolver::PolicyResolver;

/// Checks a URL whose host is an address literal (names are checked when resolved).
pub fn check_url(rules: &TenantEgress, url: &Url) -> Result<(), EgressRefusal> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => rules.check(ip.into()),
        Some(url::Host::Ipv6(ip)) => rules.check(ip.into()),
        _ => Ok(()),
    }
}

/// A redirect policy: at most `max` hops, each to a URL the rules allow.
pub fn redirect_policy(rules: Arc<TenantEgress>, max: usize) -> Policy {
    Policy::custom(move |attempt: Attempt<'_>| {
        if attempt.previous().len() > max {
            return attempt.error(TooManyRedirects);
        }
        match check_url(&rules, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// A client builder that resolves names through the tenant's rules.
pub fn restrict(
    builder: reqwest::ClientBuilder,
    rules: &Arc<TenantEgress>,
) -> reqwest::ClientBuilder {
    if rules.is_unrestricted() {
        builder
    } else {
        builder.dns_resolver(PolicyResolver::new(Arc::clone(rules)))
    }
}

/// The redirect limit was passed.
#[derive(Debug, thiserror::Error)]
#[error("too many redirects")]
pub struct TooManyRedirects;

/// One value (a client, a fetcher) per set of rules, built on first use: one for unrestricted
/// tenants, one for every tenant under the default rules, one per tenant with an allow-list.
pub struct Scoped<T: Clone> {
    policy: EgressPolicy,
    build: Box<dyn Fn(Arc<TenantEgress>) -> T + Send + Sync>,
    built: Mutex<HashMap<String, T>>,
}

impl<T: Clone> std::fmt::Debug for Scoped<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}

impl<T: Clone> Scoped<T> {
    /// Values built by `build` for each set of rules of `policy`.
    pub fn new(
        policy: EgressPolicy,
        build: impl Fn(Arc<TenantEgress>) -> T + Send + Sync + 'static,
    ) -> Self {
        Self {
            policy,
            build: Box::new(build),
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The key of `tenant`'s rules (shared by tenants with the same rules).
    pub fn key(&self, tenant: &str) -> String {
        self.policy.scope(tenant).0
    }

    /// The value for `tenant`, and its rules.
    pub fn for_tenant(&self, tenant: &str) -> (T, Arc<TenantEgress>) {
        let (key, rules) = self.policy.scope(tenant);
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let value = built
            .entry(key)
            .or_insert_with(|| (self.build)(Arc::clone(&rules)))
            .clone();
        (value, rules)
    }
}
