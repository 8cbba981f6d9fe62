//! The parsed-document and parsed-grammar caches shared by every session.
//!
//! A thousand calls running the same application fetch the same documents and the same
//! external grammars. Each body is decoded and parsed once; every session then reads the same
//! [`Arc<Document>`] or a clone of the same [`Grammar`] (whose rules sit behind an `Arc`).
//! Both are immutable once parsed, so sharing needs no lock.
//!
//! The key is everything the parse depends on: the final URL (the base of relative URIs, and
//! part of every warning), the body (by a keyed 128-bit hash and its length) and the
//! Content-Type (its charset decides the decoding; for a grammar, its form too). Freshness (`maxage`, `maxstale`) is the
//! fetcher's business: this cache only avoids parsing bytes it has parsed before, so it can
//! never serve a stale document — a changed body is a different key.
//!
//! Bounds: a number of entries and a total of bytes held, the least recently used entry going
//! first. An entry is charged what its parsed value holds, not what was fetched: a document's
//! text once its entities are expanded ([`Document::text_bytes`]), a grammar's likewise. A
//! body of 62 KB whose entities expand to 1 MB is charged 1 MB (larger ones are refused before
//! they are parsed: [`DocumentError::ExpansionTooLarge`]). Concurrent requests for the same key wait for one parse rather than each parsing.
//! Parse failures are not kept: the next request parses again.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use url::Url;

use super::{Document, DocumentError, decode, parse};
use crate::srgs::{self, Grammar, GrammarError};

/// Decodes (leniently, see [`decode`](super::decode())) and parses a fetched body: the whole
/// path from bytes to [`Document`], with the decoder's warnings ahead of the parser's.
/// [`DocumentCache::get_or_parse`] calls this once per distinct body.
pub(super) fn parse_fetched(
    url: Url,
    content_type: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Document, DocumentError> {
    if body.len() > max_bytes {
        return Err(DocumentError::TooLarge {
            url: url.to_string(),
            size: body.len(),
            limit: max_bytes,
        });
    }
    let decoded = decode::decode_document(&url, body, content_type)?;
    let expanded =
        super::expansion::expanded_len(&decoded.text, max_bytes as u64).map_err(|_| {
            DocumentError::ExpansionTooLarge {
                url: url.to_string(),
                limit: max_bytes,
            }
        })?;
    let mut document = parse::parse(url, &decoded.text)?;
    document.text_bytes = usize::try_from(expanded).unwrap_or(usize::MAX);
    if !decoded.warnings.is_empty() {
        let mut warnings = decoded.warnings;
        warnings.append(&mut document.warnings);
        document.warnings = warnings;
    }
    Ok(document)
}

/// Most bytes a grammar's text may grow to by expanding its entity references.
pub const GRAMMAR_MAX_EXPANDED_BYTES: usize = 1 << 20;

/// Reads a fetched external grammar: SRGS XML or ABNF by its content when that is plain
/// (servers often label ABNF `text/plain` or grammars `application/xml`), else by content
/// type (SRGS 1.0 Appendix G). [`GrammarCache::get_or_parse`] calls this once per distinct
/// body. Returns the grammar with the bytes of text it was made from (its entities expanded): what
/// the grammar cache charges for it.
pub(crate) fn parse_fetched_grammar(
    url: &Url,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Grammar, usize), GrammarError> {
    let text = srgs::decode(body, content_type);
    let expanded = super::expansion::expanded_len(&text, GRAMMAR_MAX_EXPANDED_BYTES as u64)
        .map_err(|_| {
            GrammarError::Invalid(format!(
                "{url} would grow past {GRAMMAR_MAX_EXPANDED_BYTES} bytes by expanding its entity references; declare smaller entities or reference them fewer times"
            ))
        })?;
    let start = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let form = if start.starts_with("#ABNF") {
        Some("application/srgs")
    } else if start.starts_with('<') {
        Some("application/srgs+xml")
    } else {
        content_type
    };
    let grammar = Grammar::parse(&text, form, Some(url))?;
    Ok((grammar, usize::try_from(expanded).unwrap_or(usize::MAX)))
}

/// How much a [`DocumentCache`] or a [`GrammarCache`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries kept.
    pub entries: usize,
    /// Most bytes held, summed over the entries: each is charged the text its parsed value
    /// was made from, entities expanded (a proxy for its memory). A value larger than this is
    /// parsed, not kept.
    pub bytes: usize,
}

impl Default for CacheLimits {
    /// 512 entries, 64 MiB of bodies.
    fn default() -> Self {
        Self {
            entries: 512,
            bytes: 64 << 20,
        }
    }
}

/// Counters of a [`DocumentCache`] or a [`GrammarCache`], for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Requests served by a value already parsed (or being parsed) for the same key.
    pub hits: u64,
    /// Requests that had to parse (kept or not).
    pub misses: u64,
    /// Entries dropped to stay within the limits.
    pub evictions: u64,
    /// Entries kept now.
    pub entries: usize,
    /// Bytes held now (each entry charged its expanded text).
    pub bytes: usize,
}

/// Parsed documents shared by every session (`Send + Sync`; wrap it in an [`Arc`]). It
/// carries the process's [`GrammarCache`] too, so that whatever shares documents shares
/// external grammars.
#[derive(Debug)]
pub struct DocumentCache {
    parses: Parses<Arc<Document>, DocumentError>,
    grammars: Arc<GrammarCache>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self::new(CacheLimits::default())
    }
}

impl DocumentCache {
    /// An empty cache holding at most `limits`, with an empty [`GrammarCache`] of default
    /// limits.
    pub fn new(limits: CacheLimits) -> Self {
        Self::with_grammars(limits, Arc::new(GrammarCache::default()))
    }

    /// An empty cache holding at most `limits` whose sessions share `grammars`.
    pub fn with_grammars(limits: CacheLimits, grammars: Arc<GrammarCache>) -> Self {
        Self {
            parses: Parses::new(limits),
            grammars,
        }
    }

    /// The external grammars shared with these documents.
    pub fn grammars(&self) -> &Arc<GrammarCache> {
        &self.grammars
    }

    /// The document for `body` fetched from `url` (after redirects) with `content_type`:
    /// parsed by the first request, shared by the rest. `max_bytes` is the requester's size
    /// limit ([`DocumentError::TooLarge`] above it, whether cached or not).
    ///
    /// Parsing is CPU work done on the calling thread, outside the lock; a concurrent request
    /// for the same key blocks until that parse ends.
    pub fn get_or_parse(
        &self,
        url: &Url,
        content_type: Option<&str>,
        body: &[u8],
        max_bytes: usize,
    ) -> Result<Arc<Document>, DocumentError> {
        if body.len() > max_bytes {
            return parse_fetched(url.clone(), content_type, body, max_bytes).map(Arc::new);
        }
        self.parses.get_or_parse(url, content_type, body, || {
            parse_fetched(url.clone(), content_type, body, max_bytes).map(|document| {
                let held = document.text_bytes;
                (Arc::new(document), held)
            })
        })
    }

    /// Counters and current size (of the documents; [`GrammarCache::stats`] for grammars).
    pub fn stats(&self) -> CacheStats {
        self.parses.stats()
    }

    /// Drops every document (documents still held by sessions live on). The grammars stay:
    /// [`GrammarCache::clear`].
    pub fn clear(&self) {
        self.parses.clear();
    }
}

/// Fetched external grammars (`<grammar src>` and the grammars their rule references name),
/// parsed once and shared by every session (`Send + Sync`; wrap it in an [`Arc`]).
///
/// The cached [`Grammar`] is unlinked: each session still fetches the grammars its rule
/// references name and links them ([`Grammar::link_external`]), which costs a few pointer
/// copies, since every grammar linked in comes from this cache too. Linking per session keeps
/// a session's view exact when a referenced grammar's body changes while the top one's does
/// not.
#[derive(Debug)]
pub struct GrammarCache {
    parses: Parses<Grammar, GrammarError>,
}

impl Default for GrammarCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMITS)
    }
}

impl GrammarCache {
    /// 256 grammars, 32 MiB of bodies.
    pub const DEFAULT_LIMITS: CacheLimits = CacheLimits {
        entries: 256,
        bytes: 32 << 20,
    };

    /// An empty cache holding at most `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            parses: Parses::new(limits),
        }
    }

    /// The grammar for `body` fetched from `url` (after redirects) with `content_type`,
    /// unlinked: parsed by the first request, shared (cheaply cloned) by the rest. Parsing
    /// runs on the calling thread, outside the lock.
    pub fn get_or_parse(
        &self,
        url: &Url,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Grammar, GrammarError> {
        self.parses.get_or_parse(url, content_type, body, || {
            parse_fetched_grammar(url, content_type, body)
        })
    }

    /// Counters and current size.
    pub fn stats(&self) -> CacheStats {
        self.parses.stats()
    }

    /// Drops every grammar (grammars still held by sessions live on).
    pub fn clear(&self) {
        self.parses.clear();
    }
}

/// A bounded, least-recently-used map from what a parse depends on to its result, with one
/// parse per key however many ask at once: the machinery of both caches.
#[derive(Debug)]
struct Parses<T, E> {
    limits: CacheLimits,
    /// Two independently keyed hashers: a 128-bit digest an adversary cannot aim at.
    hashers: [RandomState; 2],
    state: Mutex<State<T, E>>,
}

/// The map and its accounting, behind the mutex.
#[derive(Debug)]
struct State<T, E> {
    entries: HashMap<Key, Entry<T, E>>,
    bytes: usize,
    /// Ticks on every request; an entry's `last_used` orders eviction.
    clock: u64,
    stats: CacheStats,
}

/// What a parse depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    url: String,
    /// Trimmed and lower-cased (media types and charset names are case-insensitive).
    content_type: Option<String>,
    digest: u128,
    length: usize,
}

#[derive(Debug)]
struct Entry<T, E> {
    slot: Arc<Slot<T, E>>,
    bytes: usize,
    last_used: u64,
}

/// One parse, which concurrent requesters wait for.
#[derive(Debug)]
struct Slot<T, E> {
    result: OnceLock<Result<T, E>>,
}

impl<T: Clone, E: Clone> Parses<T, E> {
    fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            hashers: [RandomState::new(), RandomState::new()],
            state: Mutex::new(State {
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
                stats: CacheStats::default(),
            }),
        }
    }

    /// The value `parse` makes of `body` from `url` with `content_type`: `parse` runs for the
    /// first request of a key (or for every request of a body too large to keep) and returns
    /// the value with the bytes it holds; failures are returned, not kept.
    fn get_or_parse(
        &self,
        url: &Url,
        content_type: Option<&str>,
        body: &[u8],
        parse: impl FnOnce() -> Result<(T, usize), E>,
    ) -> Result<T, E> {
        if body.len() > self.limits.bytes || self.limits.entries == 0 {
            self.lock().stats.misses += 1;
            return parse().map(|(value, _)| value);
        }
        let key = Key {
            url: url.as_str().to_owned(),
            content_type: content_type.map(|c| c.trim().to_ascii_lowercase()),
            digest: self.digest(body),
            length: body.len(),
        };
        let slot = self.slot(&key);
        let mut parsed_here = None;
        let result = slot.result.get_or_init(|| {
            parse().map(|(value, held)| {
                parsed_here = Some(held);
                value
            })
        });
        if parsed_here.is_some() || result.is_err() {
            let mut state = self.lock();
            let ours = state
                .entries
                .get(&key)
                .is_some_and(|entry| Arc::ptr_eq(&entry.slot, &slot));
            match parsed_here {
                Some(held) if ours => state.charge(&key, held, self.limits.bytes),
                None if ours => state.remove(&key),
                _ => {}
            }
        }
        result.clone()
    }

    fn stats(&self) -> CacheStats {
        let state = self.lock();
        CacheStats {
            entries: state.entries.len(),
            bytes: state.bytes,
            ..state.stats
        }
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.bytes = 0;
    }

    /// The slot for `key`, made (after evicting what must go) if absent.
    fn slot(&self, key: &Key) -> Arc<Slot<T, E>> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(entry) = state.entries.get_mut(key) {
            entry.last_used = now;
            let slot = Arc::clone(&entry.slot);
            state.stats.hits += 1;
            return slot;
        }
        state.stats.misses += 1;
        while !state.entries.is_empty()
            && (state.entries.len() >= self.limits.entries
                || state.bytes + key.length > self.limits.bytes)
        {
            state.evict_least_recently_used();
        }
        let slot = Arc::new(Slot {
            result: OnceLock::new(),
        });
        state.bytes += key.length;
        state.entries.insert(
            key.clone(),
            Entry {
                slot: Arc::clone(&slot),
                bytes: key.length,
                last_used: now,
            },
        );
        slot
    }

    fn digest(&self, body: &[u8]) -> u128 {
        let [first, second] = &self.hashers;
        (u128::from(first.hash_one(body)) << 64) | u128::from(second.hash_one(body))
    }

    /// The state; a panic elsewhere while it was held leaves it consistent, so poison is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, State<T, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T, E> State<T, E> {
    /// Charges `key`'s entry what its value holds (it was charged its body until parsed), then
    /// evicts the least recently used others until the total fits `limit`; an entry that alone
    /// passes it is not kept.
    fn charge(&mut self, key: &Key, held: usize, limit: usize) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let was = std::mem::replace(&mut entry.bytes, held);
        self.bytes = self.bytes.saturating_sub(was).saturating_add(held);
        if held > limit {
            self.remove(key);
            return;
        }
        while self.bytes > limit && self.entries.len() > 1 {
            let oldest = self
                .entries
                .iter()
                .filter(|(other, _)| *other != key)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(other, _)| other.clone());
            let Some(oldest) = oldest else { break };
            self.remove(&oldest);
            self.stats.evictions += 1;
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(entry.bytes);
        }
    }

    /// Drops the entry used longest ago (a scan: eviction follows a parse, which costs far
    /// more than visiting a few hundred entries).
    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.remove(&key);
            self.stats.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn url(path: &str) -> Url {
        Url::parse("http://example.test/app/")
            .unwrap()
            .join(path)
            .unwrap()
    }

    fn body(form: &str) -> Vec<u8> {
        format!(r#"<vxml version="2.1"><form id="{form}"><block>hello</block></form></vxml>"#)
            .into_bytes()
    }

    #[test]
    fn the_cache_and_its_documents_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DocumentCache>();
        assert_send_sync::<Arc<Document>>();
        assert_send_sync::<GrammarCache>();
        assert_send_sync::<Grammar>();
    }

    #[test]
    fn one_parse_serves_a_thousand_lookups() {
        let cache = DocumentCache::default();
        let bytes = body("main");
        let first = cache
            .get_or_parse(&url("start.vxml"), None, &bytes, LIMIT)
            .unwrap();
        for _ in 0..999 {
            let again = cache
                .get_or_parse(&url("start.vxml"), None, &bytes.clone(), LIMIT)
                .unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits), (1, 999));
        assert_eq!((stats.entries, stats.bytes), (1, bytes.len()));
    }

    #[test]
    fn entries_are_charged_what_they_hold_not_what_was_fetched() {
        let expanding = |form: &str| {
            format!(
                "<!DOCTYPE vxml [<!ENTITY e \"{}\">]><vxml version=\"2.1\"><form id=\"{form}\"><block>{}</block></form></vxml>",
                "la ".repeat(1_000),
                "&e;".repeat(20)
            )
            .into_bytes()
        };
        let cache = DocumentCache::new(CacheLimits {
            entries: 10,
            bytes: 100_000,
        });
        let one = expanding("one");
        let document = cache
            .get_or_parse(&url("one.vxml"), None, &one, LIMIT)
            .unwrap();
        assert!(document.text_bytes > 60_000, "{}", document.text_bytes);
        assert!(one.len() < 4_000);
        assert_eq!(
            cache.stats().bytes,
            document.text_bytes,
            "charged the expanded text"
        );
        // A second one does not fit beside the first: the first goes.
        cache
            .get_or_parse(&url("two.vxml"), None, &expanding("two"), LIMIT)
            .unwrap();
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (1, 1), "{stats:?}");
        // One that alone holds more than the cache may is parsed, not kept.
        let small = DocumentCache::new(CacheLimits {
            entries: 10,
            bytes: 10_000,
        });
        small
            .get_or_parse(&url("one.vxml"), None, &one, LIMIT)
            .unwrap();
        assert_eq!((small.stats().entries, small.stats().bytes), (0, 0));
        // Past the document limit, the expansion is refused before parsing.
        let refused = cache.get_or_parse(&url("three.vxml"), None, &expanding("three"), 50_000);
        assert!(
            matches!(
                &refused,
                Err(DocumentError::ExpansionTooLarge { limit: 50_000, .. })
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn concurrent_requests_share_one_parse() {
        let cache = DocumentCache::default();
        let bytes = body("main");
        let documents: Vec<Arc<Document>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        cache
                            .get_or_parse(&url("a.vxml"), None, &bytes, LIMIT)
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(documents.iter().all(|d| Arc::ptr_eq(d, &documents[0])));
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn a_new_body_url_or_charset_is_a_new_parse() {
        let cache = DocumentCache::default();
        let a = cache
            .get_or_parse(&url("a.vxml"), None, &body("one"), LIMIT)
            .unwrap();
        let b = cache
            .get_or_parse(&url("a.vxml"), None, &body("two"), LIMIT)
            .unwrap();
        assert_eq!(
            (a.forms[0].id.as_str(), b.forms[0].id.as_str()),
            ("one", "two")
        );
        let c = cache
            .get_or_parse(&url("b.vxml"), None, &body("one"), LIMIT)
            .unwrap();
        assert_eq!(c.url.as_str(), "http://example.test/app/b.vxml");
        let latin = b"<vxml><form id='caf\xe9'/></vxml>";
        let as_latin1 = cache
            .get_or_parse(
                &url("c.vxml"),
                Some("text/xml; charset=ISO-8859-1"),
                latin,
                LIMIT,
            )
            .unwrap();
        let as_greek = cache
            .get_or_parse(
                &url("c.vxml"),
                Some("text/xml; charset=ISO-8859-7"),
                latin,
                LIMIT,
            )
            .unwrap();
        assert_eq!(as_latin1.forms[0].id, "caf\u{e9}");
        assert_eq!(as_greek.forms[0].id, "caf\u{3b9}");
        // Media type case does not make a new key.
        cache
            .get_or_parse(
                &url("c.vxml"),
                Some("TEXT/XML; charset=iso-8859-1 "),
                latin,
                LIMIT,
            )
            .unwrap();
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits), (5, 1));
    }

    #[test]
    fn entry_and_byte_bounds_hold_and_the_least_recently_used_goes() {
        let cache = DocumentCache::new(CacheLimits {
            entries: 3,
            bytes: 1 << 20,
        });
        for name in ["a", "b", "c"] {
            cache
                .get_or_parse(&url(name), None, &body(name), LIMIT)
                .unwrap();
        }
        cache
            .get_or_parse(&url("a"), None, &body("a"), LIMIT)
            .unwrap();
        cache
            .get_or_parse(&url("d"), None, &body("d"), LIMIT)
            .unwrap();
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 1));
        // "b" was least recently used: asking again parses; "a" is still there.
        cache
            .get_or_parse(&url("a"), None, &body("a"), LIMIT)
            .unwrap();
        assert_eq!(cache.stats().misses, 4);
        cache
            .get_or_parse(&url("b"), None, &body("b"), LIMIT)
            .unwrap();
        assert_eq!(cache.stats().misses, 5);

        let size = body("x").len();
        let cache = DocumentCache::new(CacheLimits {
            entries: 100,
            bytes: 2 * size + 1,
        });
        for (i, name) in ["p", "q", "r", "s"].into_iter().enumerate() {
            cache
                .get_or_parse(&url(name), None, &body(name), LIMIT)
                .unwrap();
            assert!(cache.stats().bytes <= 2 * size + 1, "after {i}");
        }
        assert_eq!(cache.stats().entries, 2);
        // A body over the whole budget is parsed but not kept.
        let big = format!("<vxml>{}<form id='big'/></vxml>", " ".repeat(3 * size));
        let doc = cache
            .get_or_parse(&url("big"), None, big.as_bytes(), LIMIT)
            .unwrap();
        assert_eq!(doc.forms[0].id, "big");
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn failures_are_returned_but_not_kept() {
        let cache = DocumentCache::default();
        for _ in 0..2 {
            let error = cache
                .get_or_parse(&url("bad"), None, b"<vxml><form>", LIMIT)
                .unwrap_err();
            assert!(matches!(error, DocumentError::Xml { .. }), "{error:?}");
        }
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.entries, stats.bytes), (2, 0, 0));
        let error = cache
            .get_or_parse(&url("a"), None, &body("a"), 10)
            .unwrap_err();
        assert!(matches!(error, DocumentError::TooLarge { limit: 10, .. }));
    }

    #[test]
    fn decoder_warnings_come_first() {
        let cache = DocumentCache::default();
        let doc = cache
            .get_or_parse(
                &url("w"),
                None,
                b"<vxml><form id='f'><block>\xe9<foo/></block></form></vxml>",
                LIMIT,
            )
            .unwrap();
        assert_eq!(doc.warnings.len(), 2, "{:?}", doc.warnings);
        assert!(
            doc.warnings[0].contains("windows-1252"),
            "{:?}",
            doc.warnings
        );
        assert!(doc.warnings[1].contains("<foo>"), "{:?}", doc.warnings);
    }

    mod grammars {
        use super::*;
        use crate::srgs::Match;

        fn dtmf(keys: &str) -> Vec<u8> {
            format!("#ABNF 1.0;\nmode dtmf;\nroot $r;\npublic $r = {keys};").into_bytes()
        }

        fn matches(grammar: &Grammar, keys: &[&str]) -> bool {
            matches!(grammar.match_tokens(keys), Match::Complete(_))
        }

        #[test]
        fn one_parse_serves_every_session_and_clones_link_independently() {
            let cache = GrammarCache::default();
            let bytes = dtmf("1 $<other.gram#x>");
            let first = cache
                .get_or_parse(&url("g.gram"), Some("application/srgs"), &bytes)
                .unwrap();
            let other = Url::parse("http://example.test/app/other.gram").unwrap();
            assert_eq!(first.external_uris(), vec![other.clone()]);
            for _ in 0..999 {
                // A session links its own copy; the cached grammar stays unlinked.
                let mut mine = cache
                    .get_or_parse(&url("g.gram"), Some("application/srgs"), &bytes)
                    .unwrap();
                assert_eq!(mine.external_uris(), vec![other.clone()]);
                let x = Grammar::parse(
                    "#ABNF 1.0;\nmode dtmf;\npublic $x = 2;",
                    Some("application/srgs"),
                    Some(&other),
                )
                .unwrap();
                mine.link_external(&other, x);
                assert!(mine.external_uris().is_empty());
                assert!(matches(&mine, &["1", "2"]));
            }
            let stats = cache.stats();
            assert_eq!((stats.misses, stats.hits), (1, 999));
            assert_eq!((stats.entries, stats.bytes), (1, bytes.len()));
        }

        #[test]
        fn concurrent_sessions_share_one_parse() {
            let cache = GrammarCache::default();
            let bytes = dtmf("1 2");
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| cache.get_or_parse(&url("g.gram"), None, &bytes).unwrap());
                }
            });
            assert_eq!((cache.stats().misses, cache.stats().hits), (1, 7));
        }

        #[test]
        fn a_new_body_url_or_content_type_is_a_new_parse() {
            let cache = GrammarCache::default();
            let one = cache
                .get_or_parse(&url("g.gram"), None, &dtmf("1"))
                .unwrap();
            let two = cache
                .get_or_parse(&url("g.gram"), None, &dtmf("2"))
                .unwrap();
            assert!(matches(&one, &["1"]) && !matches(&one, &["2"]));
            assert!(matches(&two, &["2"]) && !matches(&two, &["1"]));
            // The URL is the base of the grammar's rule references.
            let relative = dtmf("$<keys.gram>");
            let here = cache.get_or_parse(&url("g.gram"), None, &relative).unwrap();
            let there = cache
                .get_or_parse(&url("sub/g.gram"), None, &relative)
                .unwrap();
            assert_eq!(
                (here.external_uris(), there.external_uris()),
                (vec![url("keys.gram")], vec![url("sub/keys.gram")])
            );
            // The charset decides what the words are.
            let word = b"<grammar root='r'><rule id='r'>caf\xe9</rule></grammar>";
            let latin1 = cache
                .get_or_parse(
                    &url("w.grxml"),
                    Some("application/srgs+xml; charset=ISO-8859-1"),
                    word,
                )
                .unwrap();
            let greek = cache
                .get_or_parse(
                    &url("w.grxml"),
                    Some("application/srgs+xml; charset=ISO-8859-7"),
                    word,
                )
                .unwrap();
            assert!(matches(&latin1, &["caf\u{e9}"]) && !matches(&latin1, &["caf\u{3b9}"]));
            assert!(matches(&greek, &["caf\u{3b9}"]));
            let stats = cache.stats();
            assert_eq!((stats.misses, stats.hits, stats.entries), (6, 0, 6));
        }

        #[test]
        fn bounds_hold_and_failures_are_not_kept() {
            let size = dtmf("1").len();
            let cache = GrammarCache::new(CacheLimits {
                entries: 2,
                bytes: 1 << 20,
            });
            for keys in ["1", "2", "3", "1", "4"] {
                cache.get_or_parse(&url(keys), None, &dtmf(keys)).unwrap();
                assert!(cache.stats().entries <= 2);
            }
            let stats = cache.stats();
            assert_eq!((stats.misses, stats.evictions), (5, 3));
            let cache = GrammarCache::new(CacheLimits {
                entries: 100,
                bytes: 2 * size,
            });
            for keys in ["5", "6", "7"] {
                cache.get_or_parse(&url(keys), None, &dtmf(keys)).unwrap();
                assert!(cache.stats().bytes <= 2 * size);
            }
            // Larger than the whole budget: parsed (and counted) every time, never kept.
            let big = dtmf(&"1 ".repeat(size));
            for _ in 0..2 {
                assert!(cache.get_or_parse(&url("big"), None, &big).is_ok());
            }
            let stats = cache.stats();
            assert_eq!((stats.entries, stats.misses), (2, 5));
            for _ in 0..2 {
                let error = cache
                    .get_or_parse(
                        &url("bad"),
                        Some("application/srgs"),
                        b"#ABNF 1.0;\n$r = (1;",
                    )
                    .unwrap_err();
                assert!(!error.to_string().is_empty());
            }
            // Failures are parsed each time and leave nothing behind (making room for them
            // may have evicted a grammar).
            let stats = cache.stats();
            assert_eq!(stats.misses, 7);
            assert!(stats.entries <= 2 && stats.bytes <= 2 * size);
            cache.clear();
            assert_eq!((cache.stats().entries, cache.stats().bytes), (0, 0));
        }

        #[test]
        fn documents_carry_their_grammar_cache() {
            let grammars = Arc::new(GrammarCache::default());
            let documents =
                DocumentCache::with_grammars(CacheLimits::default(), Arc::clone(&grammars));
            assert!(Arc::ptr_eq(documents.grammars(), &grammars));
            let other = DocumentCache::default();
            assert!(!Arc::ptr_eq(other.grammars(), &grammars));
        }
    }
}
