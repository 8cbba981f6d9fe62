//! [`Grammar::to_jsgf`] against the real recogniser tools (pocketsphinx 5prealpha, Debian 12:
//! `pocketsphinx`, `pocketsphinx-en-us`, `sphinxbase-utils`; CI installs them in `.ci/run`).
//!
//! - Every voice grammar of the SRGS 1.0 IR set, the JVoiceXML SRGS grammars, the VoiceXML IR
//!   documents (inline, external and `<option>`/`<choice>` phrases) and every builtin is
//!   translated; each translation must compile with `sphinx_jsgf2fsg` without an error into a
//!   finite-state grammar that accepts every sentence the SRGS suite says the grammar accepts
//!   (spelled as spoken, [`spoken_form`]; words missing from the JSGF are counted). The counts (translated, refused and why,
//!   words missing from the CMU dictionary) are printed. All IR grammars and builtins at once
//!   ([`jsgf_union`]) compile too.
//! - espeak-ng speaks phrases, `pocketsphinx_continuous` recognises them with translated
//!   grammars, and the grammar matches the hypothesis with the expected SISR value.
//!
//! Run: `cargo test -p outdial-vxml --test speech_jsgf -- --nocapture`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use outdial_vxml::srgs::{
    Grammar, JsgfError, Match, Mode, SemanticValue, decode, jsgf_union, spoken_form,
};

const SRGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/srgs/srgs-ir-20021017/test"
);
const JVOICEXML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/srgs/jvoicexml/irp_srgs10"
);
const IR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/vxml-ir/converted"
);
const MODEL: &str = "/usr/share/pocketsphinx/model/en-us";
const INSTALL: &str = "install it: apt-get install pocketsphinx pocketsphinx-en-us \
                       sphinxbase-utils espeak-ng sox (CI does, in .ci/run)";

/// Fails (never skips) when a tool is missing.
fn require(tool: &str) {
    if let Err(e) = Command::new(tool).arg("-h").output() {
        panic!("{tool} cannot run ({e}); {INSTALL}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outdial-jsgf-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A finite-state grammar as `sphinx_jsgf2fsg` writes it.
struct Fsg {
    start: usize,
    finals: Vec<usize>,
    transitions: Vec<(usize, usize, Option<String>)>,
}

impl Fsg {
    fn parse(text: &str) -> Option<Self> {
        let mut fsg = Self {
            start: 0,
            finals: Vec::new(),
            transitions: Vec::new(),
        };
        let mut ended = false;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["START_STATE", n] => fsg.start = n.parse().ok()?,
                ["FINAL_STATE", n] => fsg.finals.push(n.parse().ok()?),
                ["TRANSITION", from, to, _p] => {
                    fsg.transitions
                        .push((from.parse().ok()?, to.parse().ok()?, None));
                }
                ["TRANSITION", from, to, _p, word] => fsg.transitions.push((
                    from.parse().ok()?,
                    to.parse().ok()?,
                    Some((*word).to_owned()),
                )),
                ["FSG_END"] => ended = true,
                _ => {}
            }
        }
        (ended && !fsg.transitions.is_empty()).then_some(fsg)
    }

    fn closure(&self, states: &mut Vec<usize>) {
        let mut i = 0;
        while let Some(&s) = states.get(i) {
            for (from, to, word) in &self.transitions {
                if *from == s && word.is_none() && !states.contains(to) {
                    states.push(*to);
                }
            }
            i += 1;
        }
    }

    fn accepts(&self, words: &[String]) -> bool {
        let mut states = vec![self.start];
        self.closure(&mut states);
        for w in words {
            let mut next = Vec::new();
            for (from, to, word) in &self.transitions {
                if states.contains(from) && word.as_deref() == Some(w) && !next.contains(to) {
                    next.push(*to);
                }
            }
            self.closure(&mut next);
            states = next;
        }
        states.iter().any(|s| self.finals.contains(s))
    }
}

/// Compiles JSGF with sphinxbase; an error message on failure.
fn compile(jsgf: &str, dir: &Path) -> Result<Fsg, String> {
    let gram = dir.join("g.gram");
    let fsg = dir.join("g.fsg");
    fs::write(&gram, jsgf).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(&fsg);
    let out = Command::new("sphinx_jsgf2fsg")
        .arg("-jsgf")
        .arg(&gram)
        .arg("-fsg")
        .arg(&fsg)
        .output()
        .unwrap_or_else(|e| panic!("sphinx_jsgf2fsg cannot run ({e}); {INSTALL}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(error) = stderr.lines().find(|l| l.contains("ERROR")) {
        return Err(error.to_owned());
    }
    let text = fs::read_to_string(&fsg).map_err(|e| format!("no FSG written: {e}"))?;
    Fsg::parse(&text).ok_or_else(|| "an empty or truncated FSG".to_owned())
}

/// The words of the CMU dictionary pocketsphinx-en-us ships.
fn dictionary() -> HashSet<String> {
    let path = Path::new(MODEL).join("cmudict-en-us.dict");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}); {INSTALL}", path.display()));
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|w| w.split('(').next().unwrap_or(w).to_owned())
        .collect()
}

fn content_type(path: &Path) -> Option<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gram") => Some("application/srgs"),
        Some("grxml") => Some("application/srgs+xml"),
        _ => None,
    }
}

/// Parses a grammar file as if it were at `url`, links the local files it references.
fn load_linked(path: &Path) -> Result<Grammar, String> {
    let load = |path: &Path, url: &url::Url| {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        let ct = content_type(path);
        Grammar::parse_conformant(&decode(&bytes, ct), ct, Some(url)).map_err(|e| e.to_string())
    };
    let url = url::Url::from_file_path(path).map_err(|()| "not absolute".to_owned())?;
    let mut grammar = load(path, &url)?;
    let mut missing = Vec::new();
    loop {
        let wanted: Vec<url::Url> = grammar
            .external_uris()
            .into_iter()
            .filter(|u| !missing.contains(u))
            .collect();
        if wanted.is_empty() {
            return Ok(grammar);
        }
        for uri in wanted {
            let other = uri
                .to_file_path()
                .ok()
                .map(|p| {
                    if p.is_file() {
                        p
                    } else {
                        Path::new(SRGS).join(p.file_name().unwrap_or_default())
                    }
                })
                .filter(|p| p.is_file())
                .and_then(|p| load(&p, &uri).ok());
            match other {
                Some(other) => grammar.link_external(&uri, other),
                None => missing.push(uri),
            }
        }
    }
}

fn files(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| {
            panic!(
                "the conformance corpus {} is missing ({e}); see ../shared/conformance/README.md",
                d.display()
            )
        });
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Tally of one corpus.
#[derive(Default)]
struct Tally {
    translated: usize,
    dtmf: usize,
    not_parsed: usize,
    refused: BTreeMap<String, Vec<String>>,
    sentences_checked: usize,
    sentences_unchecked: usize,
    out_of_dictionary: BTreeMap<String, Vec<String>>,
}

impl Tally {
    fn report(&self, name: &str) {
        let refused: usize = self.refused.values().map(Vec::len).sum();
        println!(
            "{name}: {} translated and compiled by sphinx_jsgf2fsg, {refused} refused, {} DTMF \
             (no speech form), {} not loadable as SRGS; {} accepted sentences re-checked on the \
             FSG ({} not checked: words the JSGF leaves out, as where GARBAGE stands)",
            self.translated,
            self.dtmf,
            self.not_parsed,
            self.sentences_checked,
            self.sentences_unchecked
        );
        for (reason, ids) in &self.refused {
            println!("  refused ({}): {reason}: {}", ids.len(), ids.join(", "));
        }
        for (id, words) in &self.out_of_dictionary {
            println!("  not in the CMU dictionary: {id}: {}", words.join(" "));
        }
    }
}

/// Translates `grammar`, compiles it, and checks `sentences` on the FSG; failures go to
/// `failures`.
fn check(
    id: &str,
    grammar: &Grammar,
    sentences: &[String],
    dict: &HashSet<String>,
    dir: &Path,
    tally: &mut Tally,
    failures: &mut Vec<String>,
) {
    if grammar.mode() == Mode::Dtmf {
        tally.dtmf += 1;
        return;
    }
    let jsgf = match grammar.to_jsgf() {
        Ok(jsgf) => jsgf,
        Err(e) => {
            if matches!(e, JsgfError::TooLarge | JsgfError::TooComplex) {
                failures.push(format!("{id}: refused as {e}"));
            }
            let reason = match e {
                JsgfError::Recursive(_) => "recursion other than at a rule's end".to_owned(),
                other => other.to_string(),
            };
            tally.refused.entry(reason).or_default().push(id.to_owned());
            return;
        }
    };
    let fsg = match compile(&jsgf.text, dir) {
        Ok(fsg) => fsg,
        Err(e) => {
            failures.push(format!("{id}: sphinx_jsgf2fsg: {e}\n{}", jsgf.text));
            return;
        }
    };
    tally.translated += 1;
    let missing: Vec<String> = jsgf
        .words
        .iter()
        .filter(|w| !dict.contains(*w))
        .cloned()
        .collect();
    if !missing.is_empty() {
        tally.out_of_dictionary.insert(id.to_owned(), missing);
    }
    for sentence in sentences {
        let words = spoken_form(sentence);
        if !words.iter().all(|w| jsgf.words.contains(w)) {
            println!("  unchecked: {id}: {sentence:?} has words the JSGF does not");
            tally.sentences_unchecked += 1;
            continue;
        }
        tally.sentences_checked += 1;
        if !fsg.accepts(&words) {
            failures.push(format!(
                "{id}: the FSG does not accept {sentence:?}\n{}",
                jsgf.text
            ));
        }
    }
}

/// The `in.N` sentences of a conformance grammar whose `out.N` is a parse (not `REJECT`)
/// and that the grammar parses from its root.
fn accepted_sentences(grammar: &Grammar) -> Vec<String> {
    let metas = grammar.metas();
    let mut out = Vec::new();
    for (name, input) in metas {
        let Some(n) = name.strip_prefix("in.") else {
            continue;
        };
        let expected = metas
            .iter()
            .find(|(k, _)| k == &format!("out.{n}"))
            .map(|(_, v)| v.trim());
        let parallel = metas
            .iter()
            .any(|(k, v)| k == &format!("info.{n}") && v.contains("in parallel"));
        if expected.is_none_or(|e| e == "REJECT") || parallel || grammar.root_rule().is_none() {
            continue;
        }
        let tokens: Vec<&str> = input.split_whitespace().collect();
        if grammar.parse_tree(&tokens).is_some() {
            out.push(input.clone());
        }
    }
    out
}

#[test]
fn conformance_grammars_and_builtins_compile_with_sphinxbase() {
    require("sphinx_jsgf2fsg");
    let dict = dictionary();
    let dir = scratch("suite");
    let mut failures = Vec::new();

    let mut srgs = Tally::default();
    let grammar_files = |d: &str| files(Path::new(d), &|p| content_type(p).is_some());
    for (set, root) in [("srgs-ir", SRGS), ("jvoicexml", JVOICEXML)] {
        for path in grammar_files(root) {
            let id = format!(
                "{set}/{}",
                path.strip_prefix(root).unwrap_or(&path).display()
            );
            match load_linked(&path) {
                Ok(grammar) => {
                    let sentences = accepted_sentences(&grammar);
                    check(
                        &id,
                        &grammar,
                        &sentences,
                        &dict,
                        &dir,
                        &mut srgs,
                        &mut failures,
                    );
                }
                Err(_) => srgs.not_parsed += 1,
            }
        }
    }
    srgs.report("SRGS 1.0 IR + JVoiceXML grammars");

    let mut ir = Tally::default();
    let mut loaded = Vec::new();
    for (id, grammar) in ir_grammars() {
        match grammar {
            Ok(grammar) => {
                check(&id, &grammar, &[], &dict, &dir, &mut ir, &mut failures);
                loaded.push(grammar);
            }
            Err(_) => ir.not_parsed += 1,
        }
    }
    ir.report("VoiceXML IR grammars");
    // All of them active at once, with every builtin, as one grammar.
    let builtin_specs = [
        "boolean", "digits", "number", "currency", "date", "time", "phone",
    ];
    let all_builtins: Vec<Grammar> = builtin_specs
        .iter()
        .map(|spec| Grammar::builtin(spec, Mode::Voice).expect("a builtin"))
        .collect();
    let everything: Vec<&Grammar> = loaded.iter().chain(&all_builtins).collect();
    let union = jsgf_union(&everything).expect("a union of the IR grammars");
    match compile(&union.text, &dir) {
        Ok(fsg) => {
            let said = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            for sentence in ["chicago", "march third", "yes", "twelve dollars fifty"] {
                assert!(
                    fsg.accepts(&said(sentence)),
                    "the union misses {sentence:?}"
                );
            }
            println!(
                "union of {} IR grammars and the {} builtins: {} bytes of JSGF, compiled",
                loaded.len(),
                all_builtins.len(),
                union.text.len()
            );
        }
        Err(e) => failures.push(format!("the union: sphinx_jsgf2fsg: {e}")),
    }

    let mut builtins = Tally::default();
    for spec in [
        "boolean",
        "digits",
        "digits?length=4",
        "digits?minlength=3;maxlength=12",
        "digits?maxlength=40",
        "number",
        "currency",
        "date",
        "time",
        "phone",
    ] {
        let grammar = Grammar::builtin(spec, Mode::Voice).expect("a builtin");
        let samples: Vec<String> = match spec {
            "boolean" => vec!["yes".into(), "nope".into()],
            "digits" => vec!["four oh two".into()],
            "digits?length=4" => vec!["one two three four".into()],
            "number" => vec![
                "minus two hundred forty five point five".into(),
                "one million two hundred thousand and one".into(),
            ],
            "currency" => vec!["twelve dollars and fifty cents".into()],
            "date" => vec![
                "march third twenty twenty six".into(),
                "the fifth of may".into(),
            ],
            "time" => vec!["three thirty p m".into(), "fifteen hundred".into()],
            "phone" => vec!["eight double oh five extension four two".into()],
            _ => Vec::new(),
        };
        check(
            &format!("builtin:voice/{spec}"),
            &grammar,
            &samples,
            &dict,
            &dir,
            &mut builtins,
            &mut failures,
        );
        assert!(
            builtins.out_of_dictionary.is_empty(),
            "builtin words missing from the dictionary: {:?}",
            builtins.out_of_dictionary
        );
    }
    builtins.report("builtins");
    assert_eq!(builtins.translated, 10);
    assert!(srgs.translated > 100, "only {} translated", srgs.translated);
    assert!(
        srgs.sentences_checked > 100,
        "{} sentences",
        srgs.sentences_checked
    );
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every grammar in the VoiceXML IR documents: inline `<grammar>`s, the grammar files beside
/// them, and `<option>`/`<choice>` phrases.
fn ir_grammars() -> Vec<(String, Result<Grammar, String>)> {
    let mut out = Vec::new();
    let root = Path::new(IR);
    for path in files(root, &|p| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("txml" | "vxml" | "grxml" | "gram")
        )
    }) {
        let id = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if content_type(&path).is_some() {
            out.push((id, load_linked(&path)));
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Ok(doc) = roxmltree::Document::parse(&text) else {
            continue;
        };
        let base = url::Url::from_file_path(&path).expect("absolute path");
        for (n, node) in doc
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "grammar")
            .filter(|n| n.attribute("src").is_none() && n.attribute("srcexpr").is_none())
            .enumerate()
        {
            let has_rules = node
                .children()
                .any(|c| c.is_element() && c.tag_name().name() == "rule");
            let grammar = if has_rules {
                Grammar::from_element(node, Some(&base)).map_err(|e| e.to_string())
            } else {
                let text: String = node.children().filter_map(|c| c.text()).collect();
                let text = text.trim();
                let abnf = if text.starts_with("#ABNF") {
                    text.to_owned()
                } else {
                    format!("#ABNF 1.0;\n{text}")
                };
                Grammar::parse(&abnf, Some("application/srgs"), Some(&base))
                    .map_err(|e| e.to_string())
            };
            out.push((format!("{id}#grammar{n}"), grammar));
        }
        for (n, node) in doc
            .descendants()
            .filter(|n| n.is_element() && matches!(n.tag_name().name(), "option" | "choice"))
            .enumerate()
        {
            let phrase: String = node
                .descendants()
                .filter_map(|c| c.text())
                .collect::<Vec<_>>()
                .join(" ");
            let words: Vec<String> = phrase
                .split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '&')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            if words.is_empty() {
                continue;
            }
            let grammar = format!(
                "<grammar mode=\"voice\" root=\"r\"><rule id=\"r\">{}</rule></grammar>",
                words.join(" ")
            );
            out.push((
                format!("{id}#{}{n}", node.tag_name().name()),
                Grammar::parse(&grammar, Some("application/srgs+xml"), None)
                    .map_err(|e| e.to_string()),
            ));
        }
    }
    out
}

/// Speaks `phrase` with espeak-ng into a 16 kHz mono WAV at `wav`.
fn speak(phrase: &str, wav: &Path) {
    let raw = wav.with_extension("22k.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&raw)
        .arg(phrase)
        .status()
        .unwrap_or_else(|e| panic!("espeak-ng cannot run ({e}); {INSTALL}"));
    assert!(status.success(), "espeak-ng failed on {phrase:?}");
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-b", "16", "-c", "1"])
        .arg(wav)
        .status()
        .unwrap_or_else(|e| panic!("sox cannot run ({e}); {INSTALL}"));
    assert!(status.success(), "sox failed on {phrase:?}");
}

/// What pocketsphinx hears in `wav` with the JSGF grammar `jsgf`.
fn recognise(jsgf: &str, wav: &Path, dir: &Path) -> String {
    let gram = dir.join("r.gram");
    fs::write(&gram, jsgf).expect("write the grammar");
    let out = Command::new("pocketsphinx_continuous")
        .arg("-infile")
        .arg(wav)
        .arg("-jsgf")
        .arg(&gram)
        .args(["-logfn", "/dev/null"])
        .output()
        .unwrap_or_else(|e| panic!("pocketsphinx_continuous cannot run ({e}); {INSTALL}"));
    assert!(
        out.status.success(),
        "pocketsphinx_continuous failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The chain, not the accuracy (issue 15 measures that over G.711): the phrases are ones the
/// en-us model hears right from espeak-ng at 16 kHz. Some it does not, and those are left
/// out here: espeak-ng's "seven" comes back as "two" or "one", and "the fifth of may" as
/// "the fifth of july".
#[test]
fn recognises_espeak_speech_with_translated_grammars() {
    require("pocketsphinx_continuous");
    require("espeak-ng");
    let dir = scratch("speech");
    let cities = Grammar::parse(
        r#"<grammar xmlns="http://www.w3.org/2001/06/grammar" xml:lang="en-US" version="1.0"
             root="city" tag-format="semantics/1.0-literals">
           <rule id="city"><item repeat="0-1">to</item><one-of>
             <item>Chicago<tag>ORD</tag></item>
             <item>San Francisco<tag>SFO</tag></item>
             <item>New York<tag>JFK</tag></item>
             <item>London<tag>LHR</tag></item>
             <item>Tokyo<tag>HND</tag></item>
             <item>Hackensack<tag>HCK</tag></item>
           </one-of><item repeat="0-1">please</item></rule></grammar>"#,
        Some("application/srgs+xml"),
        None,
    )
    .expect("the city grammar");
    let builtin = |spec: &str| Grammar::builtin(spec, Mode::Voice).expect("a builtin");
    let s = |v: &str| SemanticValue::String(v.to_owned());
    let cases = [
        ("san francisco please", cities.clone(), s("SFO")),
        ("hackensack", cities, s("HCK")),
        ("four two nine", builtin("digits?length=3"), s("429")),
        ("yes", builtin("boolean"), SemanticValue::Bool(true)),
        ("no", builtin("boolean"), SemanticValue::Bool(false)),
        ("march third", builtin("date"), s("????0303")),
        (
            "march third twenty twenty six",
            builtin("date"),
            s("20260303"),
        ),
        ("december twenty fifth", builtin("date"), s("????1225")),
        ("may fifth", builtin("date"), s("????0505")),
        (
            "two hundred forty five",
            builtin("number"),
            SemanticValue::Number(245.0),
        ),
        ("three thirty p m", builtin("time"), s("0330p")),
    ];
    let mut failures = Vec::new();
    for (n, (phrase, grammar, expected)) in cases.iter().enumerate() {
        let wav = dir.join(format!("{n}.wav"));
        speak(phrase, &wav);
        let jsgf = grammar.to_jsgf().expect("a speech form");
        let heard = recognise(&jsgf.text, &wav, &dir);
        let words: Vec<&str> = heard.split_whitespace().collect();
        let value = match grammar.match_tokens(&words) {
            Match::Complete(i) | Match::Extendable(i) => Some(i.value),
            _ => None,
        };
        println!("said {phrase:?}, heard {heard:?}, value {value:?}");
        if value.as_ref() != Some(expected) {
            failures.push(format!(
                "said {phrase:?}, heard {heard:?}: {value:?}, expected {expected:?}"
            ));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
