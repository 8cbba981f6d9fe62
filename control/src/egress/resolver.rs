//! A DNS resolver for the HTTP client that hands the connector only the addresses the
//! tenant's policy allows, so the connection goes to an address that was checked.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::TenantEgress;

/// Resolves with the system resolver, then drops refused addresses; when none is left, fails
/// with the refusal (which names the rule).
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    rules: Arc<TenantEgress>,
}

impl PolicyResolver {
    /// A resolver applying `rules`.
    pub fn new(rules: Arc<TenantEgress>) -> Self {
        Self { rules }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = Arc::clone(&self.rules);
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            let found = tokio::net::lookup_host(host).await?;
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = found
                .filter(|addr| match rules.check(addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal = Some(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(refusal)) => {
                    Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}
