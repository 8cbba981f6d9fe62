//! Answers every API request needs, kept briefly so a request need not read the database: who
//! an API key belongs to (only keys that authenticated are kept, by the key's SHA-256), and
//! each tenant's request-signing settings. Each answer is kept for [`TTL`]; any change to what
//! it depends on made through this store empties its cache at once, and a generation number
//! keeps a read that raced with such a change from putting its stale answer back. A change made
//! by another process on the same database (the admin CLI) is seen within [`TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an answer is kept.
pub(super) const TTL: Duration = Duration::from_secs(2);

/// Most keys kept; past it expired ones go, then all.
const MAX_ENTRIES: usize = 10_000;

/// Answers by a key: a principal by its API key's SHA-256 (never the key itself), signing
/// settings by tenant.
pub(super) struct Recent<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
    generation: AtomicU64,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            generation: AtomicU64::default(),
        }
    }
}

impl<V: Clone> Recent<V> {
    /// The answer for `key` if it was read less than [`TTL`] ago.
    pub(super) fn get(&self, key: &str, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value.clone())
    }

    /// The generation to give [`Self::put`] for a read that starts now.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `value` for `key`, unless what it depends on changed since `generation`.
    pub(super) fn put(&self, key: String, value: V, generation: u64, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + TTL));
    }

    /// Forgets everything: what the answers depend on changed.
    pub(super) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Principal, Scope};

    fn principal() -> Principal {
        Principal {
            tenant: "acme".into(),
            key_id: "key_1".into(),
            scopes: vec![Scope::CallsCreate],
            trunk: None,
            caller_id: None,
        }
    }

    #[test]
    fn answers_expire_and_clear_wins_over_a_racing_read() {
        let cache = Recent::<Principal>::default();
        let t0 = Instant::now();
        let generation = cache.generation();
        cache.put("h".into(), principal(), generation, t0);
        assert_eq!(cache.get("h", t0 + TTL / 2), Some(principal()));
        assert_eq!(cache.get("h", t0 + TTL), None, "expired");
        assert_eq!(cache.get("other", t0), None);

        // A read that started before a revoke must not put its answer back after it.
        let before = cache.generation();
        cache.clear();
        cache.put("h".into(), principal(), before, t0);
        assert_eq!(cache.get("h", t0), None);
        cache.put("h".into(), principal(), cache.generation(), t0);
        assert_eq!(cache.get("h", t0), Some(principal()));
    }
}
