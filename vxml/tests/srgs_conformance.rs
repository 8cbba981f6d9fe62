//! SRGS 1.0 conformance: the W3C Implementation Report test set (2002-10-17) and the
//! JVoiceXML copies of its `conformance-N` grammars.
//!
//! Each grammar states its own oracle in `meta` declarations: `in.N` is a token sequence to
//! parse from the root rule, `out.N` the expected logical parse structure
//! (`$main[$fruit["oranges"]]`) or `REJECT`. A grammar the processor refuses passes only if
//! every `out.N` is `REJECT`; a grammar without `in.N` (a library referenced by others) only
//! has to load. External references resolve from the same folder. When `info.N` asks for a
//! rule to be "activated in parallel" with the root, it is. External rule names are compared
//! as resolved URIs, so `$<./test/test.gram>` and `$<test.gram>` under `base <./test/>` agree.
//!
//! The run prints every result and the totals, and fails when the set of failures differs
//! from `tests/vectors/srgs/expected-failures.tsv` (id, tab, reason): a regression fails, and
//! so does a fix until the list is updated.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use outdial_vxml::srgs::{Grammar, ParseNode, RuleMatch, RuleName, decode};

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/srgs/srgs-ir-20021017/test"
);
const JVOICEXML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/srgs/jvoicexml/irp_srgs10"
);
const EXPECTED_FAILURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/srgs/expected-failures.tsv"
);

/// Content type by file extension.
fn content_type(path: &Path) -> Option<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gram") => Some("application/srgs"),
        Some("grxml") => Some("application/srgs+xml"),
        _ => None,
    }
}

/// Parses the grammar in `path` as if it were at `url`.
fn load(path: &Path, url: &url::Url) -> Result<Grammar, String> {
    let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let ct = content_type(path);
    Grammar::parse_conformant(&decode(&bytes, ct), ct, Some(url)).map_err(|e| e.to_string())
}

/// Loads a grammar and, transitively, the local files it references.
fn load_linked(path: &Path) -> Result<Grammar, String> {
    let url = url::Url::from_file_path(path).map_err(|()| "not an absolute path".to_owned())?;
    let mut grammar = load(path, &url)?;
    let mut unavailable = Vec::new();
    loop {
        let wanted: Vec<url::Url> = grammar
            .external_uris()
            .into_iter()
            .filter(|u| !unavailable.contains(u))
            .collect();
        if wanted.is_empty() {
            return Ok(grammar);
        }
        for uri in wanted {
            // The JVoiceXML copies reference grammars that only the W3C folder holds.
            let other = uri
                .to_file_path()
                .ok()
                .map(|p| {
                    if p.is_file() {
                        p
                    } else {
                        Path::new(SUITE).join(p.file_name().unwrap_or_default())
                    }
                })
                .filter(|p| p.is_file())
                .and_then(|p| load(&p, &uri).ok());
            match other {
                Some(other) => grammar.link_external(&uri, other),
                None => unavailable.push(uri),
            }
        }
    }
}

/// The logical parse structure with external rules named by resolved URI.
fn notation(rule: &RuleMatch, out: &mut String) {
    match &rule.name {
        RuleName::Local(name) => out.push_str(&format!("${name}")),
        RuleName::External { resolved, .. } => out.push_str(&format!("$<{resolved}>")),
    }
    out.push('[');
    for (i, child) in rule.children.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match child {
            ParseNode::Rule(inner) => notation(inner, out),
            other => out.push_str(&other.to_string()),
        }
    }
    out.push(']');
}

/// `expected` with every `$<uri>` resolved against `base`.
fn normalise(expected: &str, base: &url::Url) -> String {
    let mut out = String::new();
    let mut rest = expected;
    while let Some(at) = rest.find("$<") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('>') else {
            break;
        };
        let uri = &after[..end];
        let resolved = base
            .join(uri)
            .map_or_else(|_| uri.to_owned(), |u| u.to_string());
        out.push_str(&format!("$<{resolved}>"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A rule named in quotes by an `info.N` that asks for parallel activation.
fn parallel_rule(info: &str) -> Option<String> {
    if !info.contains("activated in parallel") {
        return None;
    }
    let start = info.find("rule '")? + "rule '".len();
    let end = info[start..].find('\'')?;
    Some(info[start..start + end].to_owned())
}

/// One case's `in.N`, `out.N` and `info.N`.
#[derive(Default)]
struct Case {
    input: Option<String>,
    output: Option<String>,
    info: Option<String>,
}

struct Outcome {
    /// Case id (`file#N`, or `file` for a grammar without cases) → failure reason, if any.
    cases: Vec<(String, Option<String>)>,
}

fn run_file(path: &Path, id: &str) -> Outcome {
    let mut cases = Vec::new();
    // Read the oracle from the grammar even when it will not load strictly.
    let lenient = fs::read(path).ok().and_then(|bytes| {
        let ct = content_type(path);
        Grammar::parse(&decode(&bytes, ct), ct, None).ok()
    });
    let grammar = load_linked(path);
    let metas: Vec<(String, String)> = match (&grammar, &lenient) {
        (Ok(g), _) | (Err(_), Some(g)) => g.metas().to_vec(),
        (Err(_), None) => oracle_by_text(path),
    };
    let mut pairs: BTreeMap<u32, Case> = BTreeMap::new();
    for (name, content) in &metas {
        let Some((kind, n)) = name.split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        let case = pairs.entry(n).or_default();
        match kind {
            "in" => case.input = Some(content.clone()),
            "out" => case.output = Some(content.clone()),
            "info" => case.info = Some(content.clone()),
            _ => {}
        }
    }
    pairs.retain(|_, case| case.input.is_some() && case.output.is_some());
    if pairs.is_empty() {
        cases.push((id.to_owned(), grammar.err()));
        return Outcome { cases };
    }
    let base = url::Url::from_file_path(path).expect("absolute path");
    for (
        n,
        Case {
            input,
            output,
            info,
        },
    ) in pairs
    {
        let case = format!("{id}#{n}");
        let (input, expected) = (input.unwrap_or_default(), output.unwrap_or_default());
        let reject = expected.trim() == "REJECT";
        let failure = match &grammar {
            Err(_) if reject => None,
            Err(e) => Some(format!("grammar refused: {e}")),
            Ok(g) => {
                let tokens: Vec<&str> = input.split_whitespace().collect();
                let mut starts: Vec<String> = match g.root_rule() {
                    Some(root) => vec![root.to_owned()],
                    None => g.public_rules().iter().map(|r| (*r).to_owned()).collect(),
                };
                if let Some(rule) = info.as_deref().and_then(parallel_rule) {
                    starts.push(rule);
                }
                let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
                match (g.parse_tree_from(&starts, &tokens), reject) {
                    (None, true) => None,
                    (None, false) => Some(format!("no parse of {input:?}")),
                    (Some(tree), reject) => {
                        let mut actual = String::new();
                        notation(&tree, &mut actual);
                        let expected = normalise(&expected, &base);
                        if reject {
                            Some(format!("accepted {input:?} as {actual}"))
                        } else if actual == expected {
                            None
                        } else {
                            Some(format!("parsed as {actual}, expected {expected}"))
                        }
                    }
                }
            }
        };
        cases.push((case, failure));
    }
    Outcome { cases }
}

/// The oracle of a grammar that does not parse at all: `meta 'name' is 'content';` (ABNF) or
/// `<meta name="…" content="…"/>` (XML) read from the text line by line.
fn oracle_by_text(path: &Path) -> Vec<(String, String)> {
    let text = decode(&fs::read(path).unwrap_or_default(), None);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let strings = quoted_strings(line);
        let is_meta =
            line.starts_with("meta ") || line.starts_with("<meta") && line.contains("name=");
        if let [name, content, ..] = strings.as_slice()
            && is_meta
        {
            out.push((name.clone(), content.clone()));
        }
    }
    out
}

/// The '…' or "…" strings of a line, in order.
fn quoted_strings(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            let inner: String = chars.by_ref().take_while(|&d| d != c).collect();
            out.push(inner);
        }
    }
    out
}

fn grammar_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "the SRGS corpus {} is missing ({e}): run bench/corpora/fetch.sh",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| content_type(p).is_some())
        .collect();
    files.sort();
    files
}

#[test]
fn srgs_implementation_report_suite() {
    let suite = Path::new(SUITE);
    let mut sets = vec![
        ("srgs-ir", grammar_files(suite), suite.to_path_buf()),
        (
            "srgs-ir",
            grammar_files(&suite.join("test")),
            suite.to_path_buf(),
        ),
    ];
    sets.push((
        "jvoicexml",
        grammar_files(Path::new(JVOICEXML)),
        PathBuf::from(JVOICEXML),
    ));

    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut totals: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for (set, files, root) in &sets {
        for path in files {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string();
            let id = format!("{set}/{relative}");
            let outcome = run_file(path, &id);
            let total = totals.entry(set).or_default();
            total[2] += 1;
            let mut file_ok = true;
            for (case, failure) in outcome.cases {
                let is_pair = case.contains('#');
                if is_pair {
                    total[1] += 1;
                }
                match failure {
                    None => {
                        if is_pair {
                            total[0] += 1;
                        }
                        println!("pass {case}");
                    }
                    Some(reason) => {
                        file_ok = false;
                        println!("FAIL {case}: {reason}");
                        failures.insert(case, reason);
                    }
                }
            }
            if file_ok {
                total[3] += 1;
            }
        }
    }
    for (set, [pairs_ok, pairs, files, files_ok]) in &totals {
        println!(
            "{set}: {pairs_ok} of {pairs} in/out pairs pass; {files_ok} of {files} grammars pass"
        );
    }

    let listed: BTreeMap<String, String> = fs::read_to_string(EXPECTED_FAILURES)
        .expect("the expected-failures list")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (id, reason) = l.split_once('\t').unwrap_or((l, ""));
            (id.trim().to_owned(), reason.trim().to_owned())
        })
        .collect();
    let unexpected: Vec<_> = failures
        .keys()
        .filter(|k| !listed.contains_key(*k))
        .collect();
    let fixed: Vec<_> = listed
        .keys()
        .filter(|k| !failures.contains_key(*k))
        .collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "new failures: {unexpected:?}\nnow passing (remove from expected-failures.tsv): {fixed:?}"
    );
}
