//! Memory after hostile documents (issue 9): entity-expansion bombs are refused before the XML
//! parser expands them, and the process's resident memory comes back to where it was. Its own
//! test binary, so no other test allocates in the process while it measures.

use std::path::Path;

use outdial_vxml::document::{DocumentCache, DocumentError};
use url::Url;

/// Resident set size of this process, bytes (Linux `/proc/self/statm`, in pages of 4 KiB).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn hostile(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hostile")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn entity_bombs_are_refused_naming_the_limit_and_leave_memory_where_it_was() {
    const MAX_DOCUMENT_BYTES: usize = 1 << 20;
    let cache = DocumentCache::default();
    let before = rss_bytes();
    for (n, name) in [
        "entity_bomb.vxml",
        "billion_laughs.vxml",
        "entity_bomb.vxml",
    ]
    .into_iter()
    .enumerate()
    {
        let url = Url::parse(&format!("http://hostile.test/{n}/{name}")).expect("url");
        let result = cache.get_or_parse(&url, None, &hostile(name), MAX_DOCUMENT_BYTES);
        match result {
            Err(error @ DocumentError::ExpansionTooLarge { .. }) => {
                let message = error.to_string();
                assert!(
                    message.contains("1048576") && message.contains("fetch.max_document_bytes"),
                    "the refusal names the limit: {message}"
                );
            }
            other => panic!("{name} must be refused for its expansion, not {other:?}"),
        }
    }
    let after = rss_bytes();
    let stats = cache.stats();
    eprintln!(
        "memory: RSS before {} KiB, after three bombs {} KiB (+{} KiB); cache holds {} entries, {} bytes",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / 1024,
        stats.entries,
        stats.bytes
    );
    assert_eq!(stats.entries, 0, "refused documents are not kept");
    // Unbounded, one bomb alone parses to about 200 MB.
    assert!(
        after.saturating_sub(before) < 32 << 20,
        "resident memory grew by {} KiB",
        after.saturating_sub(before) / 1024
    );
}
