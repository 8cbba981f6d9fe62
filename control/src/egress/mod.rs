//! The outbound-connection policy (SSRF): which addresses a tenant's applications, `<data>`,
//! `<submit>`, `<audio>`, grammars, scripts, status callbacks and `to` may reach.
//!
//! By default, tenants other than the ones listed in `egress.unrestricted_tenants` (the
//! development tenant) may not connect to loopback, private, shared (CGNAT), link-local,
//! cloud-metadata, unspecified, multicast or reserved addresses; a per-tenant allow-list of
//! networks opens specific ones. The check runs on the **resolved address of every
//! connection**: HTTP clients resolve names through [`resolver::PolicyResolver`], which drops
//! refused addresses before the connection is made (so a name that resolves to a public
//! address when checked and to 127.0.0.1 when used — DNS rebinding — never connects to
//! 127.0.0.1), URLs with an address literal are checked before the request, and every
//! redirect hop is checked the same way. `docs/security.md` has the rules.

mod address;
mod clients;
mod policy;
mod resolver;

pub use address::{AddressClass, classify};
pub use clients::{Scoped, TooManyRedirects, check_url, redirect_policy, restrict};
pub use policy::{EgressConfig, EgressPolicy, EgressRefusal, TenantEgress};
pub use resolver::PolicyResolver;

/// The outbound-connection refusal among `error`'s causes (from [`PolicyResolver`] or the
/// redirect policy), if that is why a request failed.
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<EgressRefusal> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(refusal) = current.downcast_ref::<EgressRefusal>() {
            return Some(refusal.clone());
        }
        cause = current.source();
    }
    None
}
