//! Per-tenant request signing settings: the signing secret and whether signatures are required.

use time::OffsetDateTime;

use super::StoreFuture;

/// A tenant's signing settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigningSettings {
    /// The HMAC key (`odsig_...`); `None` until one is created.
    pub secret: Option<String>,
    /// Whether every request of the tenant must be signed.
    pub required: bool,
    /// When the secret was last created or rotated.
    pub rotated_at: Option<OffsetDateTime>,
}

/// Where signing settings live.
pub trait SigningStore: Send + Sync {
    /// Sets (creates or replaces) `tenant`'s signing secret; `NotFound` for an unknown tenant.
    fn set_signing_secret(
        &self,
        tenant: &str,
        secret: String,
        now: OffsetDateTime,
    ) -> StoreFuture<'_, ()>;

    /// Requires (or stops requiring) signatures of `tenant`. Requiring them without a secret
    /// is refused (`Invalid`): the tenant could not sign anything.
    fn set_signing_required(&self, tenant: &str, required: bool) -> StoreFuture<'_, ()>;

    /// `tenant`'s settings (defaults when it has none).
    fn signing_settings(&self, tenant: &str) -> StoreFuture<'_, SigningSettings>;
}
