//! The W3C VoiceXML 2.0/2.1 Implementation Report (IR) tests, run in virtual time.
//!
//! For each row of `shared/conformance/vxml-ir/INDEX.tsv` the harness starts a [`Session`] on
//! `http://ir.test/<dir>/<entry>` and runs it with [`caller::run`]:
//! - the fetcher serves `http://ir.test/PATH` from `converted/PATH`; like W3C's server, a
//!   request for `X.vxml` gets `X.txml`, and a path that names a folder the flat copy does not
//!   have (`w3c/a74-var-root.txml` from inside `w3c/`, a cudl edit) gets the file of that name in
//!   the test's folder, answered like a redirect to its real URL; `http://localhost/vxml/NAME` (the W3C operator's server, named by a few tests) is
//!   served from the test's folder too. Anything else is a 404; other hosts are unreachable.
//! - the IR caller reads the prompts it heard since its last input and does what they say:
//!   "Press 'D'" → DTMF D; "Say 'X'" → the utterance x; "No input expected" → silence; "Say
//!   something unrecognizable" → an utterance no grammar holds; "Hang up now" → hang up;
//!   "Recite ..." → a recording.
//! - `tests/ir/entries.tsv` corrects INDEX.tsv's guessed entry document where it picked a
//!   cudl-authored variant over the W3C original. `tests/ir/transfers.tsv` says how each `<transfer>` test's
//!   far end behaves (busy, noanswer, ...), which W3C left to the test operator.
//! - the verdict is the first of `pass`/`fail` among the prompt texts; a run that ends without
//!   either, passes 300 virtual seconds or 10,000 actions fails.
//! - `tests/ir/judged.tsv` says how a test without a `conf:pass` is judged ([`Judging`]):
//!   `clean-exit` (it exits without saying `fail`), `prompt` (it says `pass` itself), or what
//!   the W3C listener checked by ear, read from what the interpreter asks the platform to
//!   play: `hears` (phrases in the prompt texts, in order) and `plays` (an audio clip's URL).
//!
//! `tests/ir/not-applicable.tsv` lists the tests a DTMF+text platform cannot judge, with the
//! reason; `tests/ir/expected-failures.tsv` the applicable tests that fail today, with the
//! reason. A failure not listed fails this test; a listed test that passes is reported so it
//! can be removed from the list.
//!
//! Environment:
//! - `OUTDIAL_IR_REPORT=1` rewrites `docs/conformance.md` (keeping its SRGS section);
//! - `OUTDIAL_IR_BLESS=1` rewrites `tests/ir/expected-failures.tsv` to today's failures;
//! - `OUTDIAL_IR_ONLY=ID[,ID]` runs only those tests and prints their transcripts.
//!
//! Run: `cargo test -p outdial-vxml --test ir -- --nocapture`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outdial_vxml::caller::{
    self, AudioPlay, Caller, CallerInput, Entry, Fetcher, RunLimits, Transcript, TransferAnswer,
    default_transfer_outcome, parse_transfer_answer,
};
use outdial_vxml::srgs::{Grammar, jsgf_union};
use outdial_vxml::{
    Fetch, FetchFailure, Fetched, Limits, Session, SessionConfig, SessionEnd, SpeechListen,
    TransferRequest,
};

const IR_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/vxml-ir"
);
const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ir");
const REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/conformance.md");
const BASE: &str = "http://ir.test/";
/// The W3C operator's own server, which some tests name in absolute URLs; served from the
/// test's folder.
const OPERATOR_BASE: &str = "http://localhost/vxml/";
/// Where the cudl authors' later, well-formed versions of some files live.
const EDITED_DIR: &str = "cudl/w3c-cudl-edited";
const LIMITS: RunLimits = RunLimits {
    max_virtual_time: Duration::from_secs(300),
    max_actions: 10_000,
};
/// What the IR caller says when asked for something unrecognizable.
const GIBBERISH: &str = "xylophone quagmire zeppelin";
/// What the IR caller says into a recording.
const RECITAL: &str = "little miss muffet sat on a tuffet eating her curds and whey";
const SRGS_BEGIN: &str = "<!-- srgs:begin -->";
const SRGS_END: &str = "<!-- srgs:end -->";

/// How a test's outcome is read (`tests/ir/judged.tsv`; the W3C rule otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judging {
    /// The first of `pass`/`fail` among the prompts (the W3C rule).
    Prompt,
    /// Tests whose pass cannot be heard (no `conf:pass`, or the caller has hung up before
    /// it): pass when the session ends by `<exit>` (or runs out of dialogs) without saying
    /// `fail` or logging a `failure ...` (every `conf:fail` logs one).
    CleanExit,
    /// Tests a W3C listener judged by ear (`<enumerate>`): pass when the prompt texts, read
    /// as one stream of words ([`words`]), hold each phrase, in this order, each after the
    /// one before, and the session ends cleanly as for [`Judging::CleanExit`].
    Hears(Vec<String>),
    /// Tests a W3C listener judged by ear (an audio clip): pass when a prompt plays the clip
    /// at this URL (the file named in `judged.tsv`, resolved against the entry document),
    /// and the session ends cleanly as for [`Judging::CleanExit`].
    Plays(String),
}

impl Judging {
    /// Reads a `judged.tsv` row after the id: `clean-exit<TAB>why`, `prompt<TAB>why`,
    /// `hears<TAB>PHRASE|PHRASE|...<TAB>why` or `plays<TAB>FILE<TAB>why`. `entry_url` is the
    /// test's entry document, against which a `plays` file is resolved.
    fn parse(row: &str, entry_url: &str) -> Result<Self, String> {
        let mut cols = row.split('\t').map(str::trim);
        let mode = cols.next().unwrap_or_default();
        let mut argument = || {
            cols.next()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("{mode} needs an argument: {mode}<TAB>...<TAB>why"))
        };
        match mode {
            "prompt" => Ok(Self::Prompt),
            "clean-exit" => Ok(Self::CleanExit),
            "hears" => {
                let phrases: Vec<String> = argument()?.split('|').map(words).collect();
                if phrases.iter().any(String::is_empty) {
                    return Err("hears: a phrase has no words".to_owned());
                }
                Ok(Self::Hears(phrases))
            }
            "plays" => {
                let file = argument()?;
                let url = url::Url::parse(entry_url)
                    .and_then(|base| base.join(file))
                    .map_err(|e| format!("plays: {file:?} against {entry_url}: {e}"))?;
                Ok(Self::Plays(url.into()))
            }
            other => Err(format!(
                "unknown mode {other:?}; use clean-exit, prompt, hears or plays"
            )),
        }
    }
}

/// Text as a listener compares it: lower case, every run of punctuation and white space one
/// space (`"For alpha, press 1."` → `"for alpha press 1"`).
fn words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One INDEX.tsv row.
#[derive(Debug, Clone)]
struct Test {
    /// `vxml20/2`.
    id: String,
    suite: String,
    dir: String,
    entry: String,
    input: String,
    has_pass: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    NotApplicable,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::NotApplicable => "N/A",
        }
    }
}

#[derive(Debug, Clone)]
struct Outcome {
    test: Test,
    verdict: Verdict,
    reason: String,
    transcript: Option<Transcript>,
}

fn read_index() -> Vec<Test> {
    let path = Path::new(IR_DIR).join("INDEX.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the IR corpus is missing ({}: {e}); it lives in shared/conformance/vxml-ir beside the repository; bench/corpora/fetch.sh says why it cannot be fetched",
            path.display()
        )
    });
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(cols.len() >= 6, "INDEX.tsv: short row {line:?}");
            Test {
                id: format!("{}/{}", cols[0], cols[1]),
                suite: cols[0].to_owned(),
                dir: cols[2].to_owned(),
                entry: cols[3].to_owned(),
                input: cols[4].to_owned(),
                has_pass: cols[5] == "yes",
            }
        })
        .collect()
}

/// Reads `id<TAB>text` lines (blank lines and `#` comments skipped).
fn read_table(name: &str) -> BTreeMap<String, String> {
    let path = Path::new(DATA_DIR).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    let mut table = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, rest) = line.split_once('\t').unwrap_or((line, ""));
        let previous = table.insert(id.trim().to_owned(), rest.trim().to_owned());
        assert!(previous.is_none(), "{name}: {id} is listed twice");
    }
    table
}

/// Serves `http://ir.test/PATH` from `converted/PATH`, as W3C's server did.
struct IrFetcher {
    converted: PathBuf,
    /// Folders (relative to `converted/`) searched by file name when a path does not exist.
    folders: Vec<String>,
}

impl IrFetcher {
    /// The file for `path`, and the URL it is served from when that differs from the request
    /// (a folder the flat copy lacks: answered like a redirect, so that every document of a
    /// test has one URL and relative references agree).
    fn find(&self, path: &str) -> Option<(PathBuf, Option<String>)> {
        if path.split('/').any(|segment| segment == "..") {
            return None;
        }
        let mut names = vec![path.to_owned()];
        if let Some(stem) = path.strip_suffix(".vxml") {
            names.push(format!("{stem}.txml"));
        }
        for name in names.iter().filter(|name| !name.contains(':')) {
            let candidate = self.converted.join(name);
            if candidate.is_file() {
                return Some((candidate, None));
            }
        }
        for name in &names {
            let file = name.rsplit('/').next().unwrap_or(name);
            for folder in &self.folders {
                let candidate = self.converted.join(folder).join(file);
                if candidate.is_file() {
                    let moved = (!name.contains(':')).then(|| format!("{BASE}{folder}/{file}"));
                    return Some((candidate, moved));
                }
            }
        }
        None
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("txml" | "vxml") => "application/voicexml+xml",
        Some("grxml") => "application/srgs+xml",
        Some("js") => "application/javascript",
        Some("wav") => "audio/wav",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

impl Fetcher for IrFetcher {
    fn fetch(&mut self, request: &Fetch) -> Result<Fetched, FetchFailure> {
        let (rest, operator) = if let Some(rest) = request.url.strip_prefix(BASE) {
            (rest, false)
        } else if let Some(rest) = request.url.strip_prefix(OPERATOR_BASE) {
            (rest, true)
        } else {
            return Err(FetchFailure {
                status: None,
                message: format!(
                    "host not found (the IR harness serves only {BASE} and {OPERATOR_BASE})"
                ),
            });
        };
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        let path = if operator {
            // A bare name: looked up in the test's folders.
            format!("{OPERATOR_BASE}{path}")
        } else {
            path.to_owned()
        };
        let Some((file, moved)) = self.find(&path) else {
            return Err(FetchFailure {
                status: Some(404),
                message: "Not Found".into(),
            });
        };
        let body = std::fs::read(&file).map_err(|e| FetchFailure {
            status: Some(500),
            message: e.to_string(),
        })?;
        let url =
            moved.unwrap_or_else(|| request.url.split('#').next().unwrap_or_default().to_owned());
        Ok(Fetched {
            url,
            content_type: Some(content_type(&file).to_owned()),
            body,
        })
    }
}

/// Does what the prompts say.
struct IrCaller {
    transfer: Option<TransferAnswer>,
    /// Speaks the words into the real recognizer (the audio lane), or says them as text.
    ear: Option<AudioEar>,
}

/// The audio lane: each utterance is synthesised by espeak-ng, sent through G.711 µ-law and
/// recognised by Outdial's recognizer with the field's voice grammars translated to JSGF, by
/// `outdial speech recognize` (the binary built beside this test, as `.ci/run` builds it).
struct AudioEar {
    outdial: PathBuf,
    dir: PathBuf,
    /// What was said and what was recognised, for the report.
    heard: Vec<(String, String, f32)>,
}

impl AudioEar {
    fn new(test: &str) -> Self {
        // invariant: a test executable always has a path; it lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let outdial = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps")
            .join("outdial");
        assert!(
            outdial.exists(),
            "{} is missing: the audio lane recognises through it; build it first with \
             `cargo build -p outdial-control --bin outdial` (.ci/run does)",
            outdial.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "outdial-ir-audio-{}-{}",
            std::process::id(),
            test.replace('/', "-")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            outdial,
            dir,
            heard: Vec::new(),
        }
    }

    fn recognise(&mut self, words: &str, speech: &SpeechListen) -> (String, f32) {
        let grammars: Vec<&Grammar> = speech.grammars.iter().collect();
        let jsgf = jsgf_union(&grammars).expect("the voice grammars translate to JSGF");
        let grammar = self.dir.join(format!("{:016x}.gram", jsgf.key));
        std::fs::write(&grammar, &jsgf.text).expect("write grammar");
        let output = std::process::Command::new(&self.outdial)
            .args(["speech", "recognize", "--law", "pcmu", "--jsgf"])
            .arg(&grammar)
            .arg("--say")
            .arg(words)
            .output()
            .expect("run outdial speech recognize");
        assert!(
            output.status.success(),
            "outdial speech recognize failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // One line: confidence, a tab, the words recognised.
        let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let (confidence, text) = line.split_once('\t').unwrap_or((line.as_str(), ""));
        let confidence = confidence.parse::<f32>().unwrap_or(0.0);
        self.heard
            .push((words.to_owned(), text.to_owned(), confidence));
        (text.to_owned(), confidence)
    }
}

impl Drop for AudioEar {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The caller action a prompt asks for, if it is an instruction.
fn instruction(text: &str, voice: bool) -> Option<CallerInput> {
    let quoted = |after: &str| {
        let start = text.find(after)? + after.len();
        let rest = text.get(start..)?;
        Some(rest.get(..rest.find('\'')?)?.to_owned())
    };
    if let Some(keys) = quoted("Press '") {
        return Some(CallerInput::Dtmf(keys));
    }
    if let Some(words) = quoted("Say '") {
        return Some(CallerInput::Say(words.to_lowercase()));
    }
    if text.contains("No input expected") || text.contains("Say nothing") {
        return Some(CallerInput::NoInput);
    }
    if text.contains("Say something unrecognizable") {
        return Some(if voice {
            CallerInput::Say(GIBBERISH.to_owned())
        } else {
            CallerInput::Dtmf("*#*#".to_owned())
        });
    }
    // A few tests write the instruction by hand: "Say New York."
    if let Some(start) = text.find("Say ") {
        let rest = text.get(start + "Say ".len()..).unwrap_or_default();
        let words = rest.split('.').next().unwrap_or_default().trim();
        if !words.is_empty() && words.chars().all(|c| c.is_alphabetic() || c == ' ') {
            return Some(CallerInput::Say(words.to_lowercase()));
        }
    }
    if text.contains("Hang up now") {
        return Some(CallerInput::Hangup);
    }
    if text.contains("Recite") {
        return Some(CallerInput::Say(RECITAL.to_owned()));
    }
    None
}

impl Caller for IrCaller {
    fn respond(&mut self, transcript: &Transcript) -> CallerInput {
        let voice = transcript
            .entries
            .iter()
            .rev()
            .find_map(|e| match e.entry {
                Entry::Listen { voice, .. } => Some(voice),
                _ => None,
            })
            .unwrap_or(true);
        let heard = transcript.prompts_since_input();
        if let Some(input) = heard.iter().rev().find_map(|t| instruction(t, voice)) {
            return input;
        }
        // Re-entered without a new prompt: do again what was last asked.
        let all: Vec<&str> = transcript.prompt_texts().collect();
        all.iter()
            .rev()
            .find_map(|t| instruction(t, voice))
            .unwrap_or(CallerInput::NoInput)
    }

    fn hear(&mut self, words: &str, speech: Option<&SpeechListen>) -> (String, f32) {
        match (&mut self.ear, speech) {
            (Some(ear), Some(speech)) => ear.recognise(words, speech),
            _ => (words.to_owned(), 1.0),
        }
    }

    fn transfer(&mut self, request: &TransferRequest, _transcript: &Transcript) -> TransferAnswer {
        self.transfer
            .clone()
            .unwrap_or_else(|| TransferAnswer::Outcome(default_transfer_outcome(request.kind)))
    }
}

fn normalized(text: &str) -> String {
    text.trim().trim_end_matches('.').trim().to_lowercase()
}

/// The outcome of `transcript` judged as `judging` says, with the reason for a failure.
fn verdict(transcript: &Transcript, judging: &Judging) -> (Verdict, String) {
    let prompts: Vec<&str> = transcript.prompt_texts().collect();
    let unclean = unclean_end(transcript, &prompts);
    match judging {
        Judging::Prompt => first_pass_or_fail(transcript, &prompts),
        Judging::CleanExit if unclean.is_none() => (Verdict::Pass, String::new()),
        Judging::CleanExit => first_pass_or_fail(transcript, &prompts),
        Judging::Hears(phrases) => match (heard_in_order(&prompts, phrases), unclean) {
            (Ok(()), None) => (Verdict::Pass, String::new()),
            (Err(why), _) | (Ok(()), Some(why)) => (Verdict::Fail, why),
        },
        Judging::Plays(url) => {
            let played = transcript
                .entries
                .iter()
                .any(|e| matches!(&e.entry, Entry::Prompt { audio, .. } if audio.contains(&AudioPlay::Played(url.clone()))));
            match (played, unclean) {
                (true, None) => (Verdict::Pass, String::new()),
                (true, Some(why)) => (Verdict::Fail, why),
                (false, _) => {
                    let clips: Vec<String> = transcript
                        .entries
                        .iter()
                        .filter_map(|e| match &e.entry {
                            Entry::Prompt { audio, .. } => Some(audio),
                            _ => None,
                        })
                        .flatten()
                        .map(ToString::to_string)
                        .collect();
                    (
                        Verdict::Fail,
                        format!("no prompt played {url}; clips played: {clips:?}"),
                    )
                }
            }
        }
    }
}

/// Why the session did not end cleanly (by `<exit>` or out of dialogs, never saying `fail`
/// nor logging a `failure ...`, which every `conf:fail` does); `None` when it did.
fn unclean_end(transcript: &Transcript, prompts: &[&str]) -> Option<String> {
    if let Some(i) = prompts.iter().position(|t| normalized(t) == "fail") {
        let why = prompts.get(i + 1).map_or("(no reason given)", |t| t.trim());
        return Some(format!("fail: {why}"));
    }
    let failure = transcript.entries.iter().find_map(|e| match &e.entry {
        Entry::Log { text, .. } if text.trim_start().starts_with("failure") => Some(text),
        _ => None,
    });
    if let Some(text) = failure {
        return Some(format!("logged {}", text.trim()));
    }
    if let Some(stop) = transcript.stopped() {
        return Some(format!("no end: {stop}"));
    }
    match transcript.end() {
        Some(SessionEnd::Exit { .. }) => None,
        Some(other) => Some(format!("{} instead of <exit>", Entry::End(other.clone()))),
        None => Some("no end".to_owned()),
    }
}

/// Whether the prompts, read as one stream of [`words`], hold every phrase (already in
/// [`words`] form) in order, each starting after the one before ends; else what is missing.
fn heard_in_order(prompts: &[&str], phrases: &[String]) -> Result<(), String> {
    let heard = prompts
        .iter()
        .map(|t| words(t))
        .collect::<Vec<_>>()
        .join(" ");
    let stream: Vec<&str> = heard.split(' ').filter(|w| !w.is_empty()).collect();
    let mut from = 0;
    let mut previous: Option<&str> = None;
    for phrase in phrases {
        let wanted: Vec<&str> = phrase.split(' ').collect();
        let found = stream
            .get(from..)
            .unwrap_or_default()
            .windows(wanted.len())
            .position(|window| window == wanted.as_slice());
        let Some(at) = found else {
            let after = previous.map_or_else(String::new, |p| format!(" after {p:?}"));
            return Err(format!(
                "did not hear {phrase:?}{after}; heard {:?}",
                one_line(&heard, 120)
            ));
        };
        from += at + wanted.len();
        previous = Some(phrase);
    }
    Ok(())
}

/// The first of `pass`/`fail` among the prompts (the W3C rule), with the reason for a
/// failure.
fn first_pass_or_fail(transcript: &Transcript, prompts: &[&str]) -> (Verdict, String) {
    for (i, text) in prompts.iter().enumerate() {
        match normalized(text).as_str() {
            "pass" => return (Verdict::Pass, String::new()),
            "fail" => {
                let why = prompts.get(i + 1).map_or("(no reason given)", |t| t.trim());
                return (Verdict::Fail, format!("fail: {why}"));
            }
            _ => {}
        }
    }
    if let Some(stop) = transcript.stopped() {
        return (Verdict::Fail, format!("no pass/fail: {stop}"));
    }
    let end = transcript
        .entries
        .iter()
        .rev()
        .find(|e| matches!(e.entry, Entry::End(_)))
        .map_or_else(|| "no end".to_owned(), |e| e.entry.to_string());
    (Verdict::Fail, format!("no pass/fail before {end}"))
}

/// Keeps a reason on one table row.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// Where a test starts.
struct Location {
    /// The entry document's URL.
    url: String,
    /// Folders (relative to `converted/`) searched for the files the test names.
    folders: Vec<String>,
    /// Said after the reason when the entry is not the test's own.
    note: String,
}

fn locate(test: &Test) -> Location {
    let converted = Path::new(IR_DIR).join("converted");
    let mut folders = vec![test.dir.clone()];
    let mut dir = test.dir.clone();
    let mut note = String::new();
    if !converted.join(&test.dir).join(&test.entry).is_file()
        && converted.join(EDITED_DIR).join(&test.entry).is_file()
    {
        dir = EDITED_DIR.to_owned();
        folders.insert(0, EDITED_DIR.to_owned());
        note = format!(" (entry from {EDITED_DIR})");
    }
    Location {
        url: format!("{BASE}{dir}/{}", test.entry),
        folders,
        note,
    }
}

/// How `judged.tsv`'s row (if any) says `test` is judged.
fn judging_of(test: &Test, judged: &BTreeMap<String, String>) -> Result<Judging, String> {
    judged.get(&test.id).map_or(Ok(Judging::Prompt), |row| {
        Judging::parse(row, &locate(test).url)
    })
}

fn run_test(
    test: &Test,
    transfers: &BTreeMap<String, String>,
    judging: &Judging,
) -> (Verdict, String, Transcript) {
    let (verdict, reason, transcript, _) = run_test_with(test, transfers, judging, None);
    (verdict, reason, transcript)
}

/// Runs one test, its caller speaking through `ear` when given; what the ear heard.
fn run_test_with(
    test: &Test,
    transfers: &BTreeMap<String, String>,
    judging: &Judging,
    ear: Option<AudioEar>,
) -> (Verdict, String, Transcript, Vec<(String, String, f32)>) {
    let converted = Path::new(IR_DIR).join("converted");
    let Location { url, folders, note } = locate(test);
    let start = Instant::now();
    let session = match Session::new(
        SessionConfig {
            url,
            vars: vec![],
            local_uri: "sip:outdial@ir.test".into(),
            remote_uri: "sip:caller@ir.test".into(),
            answered_by: None,
            limits: Limits::default(),
        },
        start,
    ) {
        Ok(session) => session,
        Err(e) => {
            return (
                Verdict::Fail,
                format!("session refused: {e}"),
                Transcript::default(),
                Vec::new(),
            );
        }
    };
    let transfer = transfers.get(&test.id).map(|row| {
        let answer = row.split('\t').next().unwrap_or_default().trim();
        parse_transfer_answer(answer)
            .unwrap_or_else(|| panic!("transfers.tsv: {}: bad answer {answer:?}", test.id))
    });
    let mut fetcher = IrFetcher { converted, folders };
    let mut caller = IrCaller { transfer, ear };
    let transcript = caller::run(session, start, &mut fetcher, &mut caller, LIMITS);
    let (verdict, reason) = verdict(&transcript, judging);
    let heard = caller
        .ear
        .as_mut()
        .map(|ear| std::mem::take(&mut ear.heard))
        .unwrap_or_default();
    (verdict, format!("{reason}{note}"), transcript, heard)
}

fn run_all(
    tests: &[Test],
    not_applicable: &BTreeMap<String, String>,
    judged: &BTreeMap<String, String>,
) -> Vec<Outcome> {
    let transfers = read_table("transfers.tsv");
    tests
        .iter()
        .map(|test| {
            if let Some(reason) = not_applicable.get(&test.id) {
                return Outcome {
                    test: test.clone(),
                    verdict: Verdict::NotApplicable,
                    reason: reason.clone(),
                    transcript: None,
                };
            }
            let judging =
                judging_of(test, judged).unwrap_or_else(|e| panic!("judged.tsv: {}: {e}", test.id));
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_test(test, &transfers, &judging)
            }));
            let (verdict, reason, transcript) = match run {
                Ok((verdict, reason, transcript)) => (verdict, reason, Some(transcript)),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    (Verdict::Fail, format!("PANIC: {message}"), None)
                }
            };
            Outcome {
                test: test.clone(),
                verdict,
                reason,
                transcript,
            }
        })
        .collect()
}

struct Figures {
    passed: usize,
    failed: usize,
    not_applicable: usize,
}

impl Figures {
    fn of(outcomes: &[Outcome]) -> Self {
        let count = |v| outcomes.iter().filter(|o| o.verdict == v).count();
        Self {
            passed: count(Verdict::Pass),
            failed: count(Verdict::Fail),
            not_applicable: count(Verdict::NotApplicable),
        }
    }

    fn rate(&self) -> f64 {
        let applicable = self.passed + self.failed;
        if applicable == 0 {
            0.0
        } else {
            100.0 * self.passed as f64 / applicable as f64
        }
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} not applicable (pass rate {:.1}% of applicable)",
            self.passed,
            self.failed,
            self.not_applicable,
            self.rate()
        )
    }
}

fn suite_name(suite: &str) -> &str {
    match suite {
        "vxml20" => "VoiceXML 2.0",
        "vxml21" => "VoiceXML 2.1",
        other => other,
    }
}

/// Escapes Markdown table cell or list text (`|` splits cells, `<` starts HTML).
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;")
}

fn write_report(outcomes: &[Outcome], judged: &BTreeMap<String, String>, elapsed: Duration) {
    let existing = std::fs::read_to_string(REPORT).unwrap_or_default();
    let srgs = match (existing.find(SRGS_BEGIN), existing.find(SRGS_END)) {
        (Some(begin), Some(end)) if begin < end => existing
            .get(begin..end + SRGS_END.len())
            .unwrap_or_default()
            .to_owned(),
        _ => format!(
            "{SRGS_BEGIN}\n_To be filled: SRGS 1.0 XML/ABNF + SISR figures from \
             `cargo test -p outdial-vxml --test srgs_conformance` against \
             `shared/conformance/srgs/` (passed / failed / not applicable, per-suite table). This \
             section, between the `srgs:begin`/`srgs:end` markers, is kept when the IR part is \
             regenerated._\n{SRGS_END}"
        ),
    };
    let figures = Figures::of(outcomes);
    let by_suite = |suite: &str| {
        let subset: Vec<Outcome> = outcomes
            .iter()
            .filter(|o| o.test.suite == suite)
            .cloned()
            .collect();
        Figures::of(&subset)
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Conformance\n");
    let _ = writeln!(
        md,
        "<!-- Generated by `OUTDIAL_IR_REPORT=1 cargo test -p outdial-vxml --test ir`; edit \
         vxml/tests/ir.rs or vxml/tests/ir/*.tsv, not this file (except the SRGS section). -->\n"
    );
    let _ = writeln!(md, "## VoiceXML: the W3C Implementation Report tests\n");
    let _ = writeln!(
        md,
        "The corpus is the public part of the W3C VoiceXML 2.0 (2004) and 2.1 (2007) IR suites: \
         168 assertions, stored in `shared/conformance/vxml-ir/` (see its README for where each \
         file came from). Each test runs in virtual time against the interpreter with a scripted \
         caller that does what the test's prompts ask (press a key, say a city, stay silent, \
         hang up, recite a sentence). A test passes when the first of `pass`/`fail` it speaks \
         is `pass`.\n"
    );
    let _ = writeln!(md, "**{figures}.**\n");
    let _ = writeln!(
        md,
        "| suite | passed | failed | not applicable | pass rate |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for suite in ["vxml20", "vxml21"] {
        let f = by_suite(suite);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1}% |",
            suite_name(suite),
            f.passed,
            f.failed,
            f.not_applicable,
            f.rate()
        );
    }
    let _ = writeln!(
        md,
        "\nThe whole suite runs in under {} s of wall time (debug build).\n",
        elapsed.as_secs() + 1
    );
    let _ = writeln!(md, "### How to run\n");
    let _ = writeln!(md, "```sh");
    let _ = writeln!(
        md,
        "cargo test -p outdial-vxml --test ir -- --nocapture           # one line per test + totals"
    );
    let _ = writeln!(
        md,
        "OUTDIAL_IR_ONLY=vxml20/2 cargo test -p outdial-vxml --test ir -- --nocapture  # with transcripts"
    );
    let _ = writeln!(
        md,
        "OUTDIAL_IR_REPORT=1 cargo test -p outdial-vxml --test ir       # regenerate this file"
    );
    let _ = writeln!(
        md,
        "OUTDIAL_IR_BLESS=1 cargo test -p outdial-vxml --test ir        # rewrite expected-failures.tsv"
    );
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "The test fails when an applicable test fails that `vxml/tests/ir/expected-failures.tsv` \
         does not list; a listed test that passes is reported, to be removed from the list. Not \
         applicable tests and their reasons are in `vxml/tests/ir/not-applicable.tsv`; how the \
         far end of each `<transfer>` test behaves (the W3C operator's set-up) is in \
         `vxml/tests/ir/transfers.tsv`.\n"
    );
    let _ = writeln!(
        md,
        "How the harness plays the W3C test server and caller:\n"
    );
    let _ = writeln!(
        md,
        "- documents are served from `converted/` at `http://ir.test/<folder>/`; a request for \
         `X.vxml` gets `X.txml` (as W3C's and JVoiceXML's servers did), and a path naming a \
         folder the flat copy lacks (the cudl authors prefixed some links with `w3c/`) gets \
         the file of that name in the test's folder, answered like a redirect to its real URL \
         so that every document of a test has one URL;"
    );
    let _ = writeln!(
        md,
        "- `http://localhost/vxml/NAME`, the W3C operator's own server named by a few tests \
         (526, 528, 530, 1003), is served from the test's folder;"
    );
    let _ = writeln!(
        md,
        "- `assert143.txml` is not well-formed in its first committed version, so test 143 \
         runs the cudl authors' corrected copy from `cudl/w3c-cudl-edited/`; \
         `vxml/tests/ir/entries.tsv` names the W3C original where INDEX.tsv guessed a cudl \
         variant as the entry document;"
    );
    let _ = writeln!(
        md,
        "- `vxml/tests/ir/judged.tsv` says how tests without a `conf:pass` are judged (listed \
         below): `clean-exit` passes when the session exits without saying `fail` or logging a \
         `failure`; `prompt` is the W3C rule, for tests that speak `pass` themselves; `hears` \
         and `plays` judge by machine what W3C left to a listener, from what the interpreter \
         asks the platform to play. `hears P1|P2|...` passes when the prompt texts, read as one \
         stream of whole words (case and punctuation ignored), hold P1, then P2 after it, and \
         so on, and the session ends as for `clean-exit`: a missing or reordered phrase \
         (choice, or key in a template) fails. `plays FILE` passes when a prompt plays the audio clip at \
         FILE resolved against the entry document (the exact URL; audio is never fetched, so \
         what the clip says is not checked) and the session ends as for `clean-exit`;"
    );
    let _ = writeln!(
        md,
        "- prompts play in virtual time (60 ms a character, 1 s an audio clip, which is never \
         fetched); the caller answers once the prompt queue has drained; utterances reach the \
         interpreter as text (a recognition result with confidence 1.0);"
    );
    let _ = writeln!(
        md,
        "- a run fails if it ends without `pass`/`fail`, or passes 300 virtual seconds or \
         10,000 actions (several tests loop on purpose when broken).\n"
    );
    let _ = writeln!(md, "### Results\n");
    let _ = writeln!(md, "| test | spec | entry document | result | reason |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for o in outcomes {
        let _ = writeln!(
            md,
            "| {} | {} | `{}/{}` | {} | {} |",
            o.test.id,
            suite_name(&o.test.suite),
            o.test.dir,
            o.test.entry,
            o.verdict.label(),
            cell(&one_line(&o.reason, 160))
        );
    }
    let _ = writeln!(md, "\n### Judged by machine\n");
    let _ = writeln!(
        md,
        "Tests without a `conf:pass`, judged as `vxml/tests/ir/judged.tsv` says (mode, its \
         argument, why):\n"
    );
    for o in outcomes {
        if let Some(row) = judged.get(&o.test.id) {
            let cols: Vec<&str> = row.split('\t').map(str::trim).collect();
            let (mode, why) = match cols.as_slice() {
                [mode, argument, why, ..] => (format!("`{mode} {argument}`"), *why),
                [mode, why] => (format!("`{mode}`"), *why),
                _ => (format!("`{row}`"), ""),
            };
            let _ = writeln!(
                md,
                "- **{}** ({}): {}: {}",
                o.test.id,
                o.verdict.label(),
                mode,
                why.replace('<', "&lt;")
            );
        }
    }
    let _ = writeln!(md, "\n### Not applicable\n");
    for o in outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::NotApplicable)
    {
        let _ = writeln!(md, "- **{}**: {}", o.test.id, cell(&o.reason));
    }
    let _ = writeln!(md, "\n## SRGS and SISR\n");
    let _ = writeln!(md, "{srgs}");
    std::fs::write(REPORT, md).unwrap_or_else(|e| panic!("cannot write {REPORT}: {e}"));
    println!("wrote {REPORT}");
}

/// The speech lane with audio: every IR test whose caller speaks (`speech:` in INDEX.tsv's
/// input column) runs with its words synthesised by espeak-ng, sent through G.711 µ-law and
/// recognised by Outdial's recognizer with the field's grammars, instead of handed over as
/// text. Each must pass as it does in the text lane.
#[test]
fn w3c_ir_speech_tests_with_audio() {
    let tests = load_tests();
    let not_applicable = read_table("not-applicable.tsv");
    let judged = read_table("judged.tsv");
    let expected = read_table("expected-failures.tsv");
    let transfers = read_table("transfers.tsv");
    let speech: Vec<&Test> = tests
        .iter()
        .filter(|t| t.input.contains("speech:"))
        .filter(|t| !not_applicable.contains_key(&t.id) && !expected.contains_key(&t.id))
        .collect();
    assert!(
        speech.len() >= 10,
        "the speech lane lost its tests: {}",
        speech.len()
    );
    let mut failed = Vec::new();
    // Tests whose caller spoke into the recognizer (some speech: tests end on keys or
    // silence before anything is said).
    let mut spoken = 0;
    for test in &speech {
        let judging =
            judging_of(test, &judged).unwrap_or_else(|e| panic!("judged.tsv: {}: {e}", test.id));
        let ear = AudioEar::new(&test.id);
        let (verdict, reason, _, heard) = run_test_with(test, &transfers, &judging, Some(ear));
        let heard: Vec<String> = heard
            .iter()
            .map(|(said, got, confidence)| format!("{said:?} → {got:?} ({confidence:.2})"))
            .collect();
        println!(
            "{:<12} {:<4} {}",
            test.id,
            verdict.label(),
            heard.join(", ")
        );
        if !heard.is_empty() {
            spoken += 1;
        }
        if verdict != Verdict::Pass {
            failed.push(format!(
                "{}: {} [{}]",
                test.id,
                one_line(&reason, 200),
                heard.join(", ")
            ));
        }
    }
    println!(
        "speech lane with audio: {} of {} pass, {spoken} spoke into the recognizer",
        speech.len() - failed.len(),
        speech.len()
    );
    assert!(
        spoken * 2 >= speech.len(),
        "only {spoken} tests spoke into the recognizer"
    );
    assert!(failed.is_empty(), "with audio:\n{}", failed.join("\n"));
}

fn bless(outcomes: &[Outcome]) {
    let path = Path::new(DATA_DIR).join("expected-failures.tsv");
    let mut text = String::from(
        "# Applicable IR tests that fail today: id<TAB>reason. A failing test not listed here\n\
         # fails `cargo test --test ir`; remove a line when its test passes.\n\
         # Regenerated with OUTDIAL_IR_BLESS=1 from the harness's own reasons.\n",
    );
    for o in outcomes.iter().filter(|o| o.verdict == Verdict::Fail) {
        let _ = writeln!(text, "{}\t{}", o.test.id, one_line(&o.reason, 200));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote {}", path.display());
}

/// INDEX.tsv's tests, with `entries.tsv`'s corrections to their entry documents.
fn load_tests() -> Vec<Test> {
    let mut tests = read_index();
    let entries = read_table("entries.tsv");
    for test in &mut tests {
        if let Some(row) = entries.get(&test.id) {
            row.split('\t')
                .next()
                .unwrap_or_default()
                .clone_into(&mut test.entry);
        }
    }
    tests
}

#[test]
fn w3c_ir_tests() {
    let mut tests = load_tests();
    assert_eq!(tests.len(), 168, "INDEX.tsv should list 168 assertions");
    let not_applicable = read_table("not-applicable.tsv");
    let blessing = std::env::var_os("OUTDIAL_IR_BLESS").is_some();
    // When blessing, the old list is about to be replaced: do not judge it.
    let expected = if blessing {
        BTreeMap::new()
    } else {
        read_table("expected-failures.tsv")
    };
    let judged = read_table("judged.tsv");
    let transfers = read_table("transfers.tsv");
    let entries = read_table("entries.tsv");
    for test in tests.iter().filter(|t| judged.contains_key(&t.id)) {
        if let Err(e) = judging_of(test, &judged) {
            panic!("judged.tsv: {}: {e}", test.id);
        }
    }
    for id in not_applicable
        .keys()
        .chain(expected.keys())
        .chain(judged.keys())
        .chain(transfers.keys())
        .chain(entries.keys())
    {
        assert!(
            tests.iter().any(|t| &t.id == id),
            "{id} is listed in tests/ir but is not in INDEX.tsv"
        );
    }
    for id in expected.keys() {
        assert!(
            !not_applicable.contains_key(id),
            "{id} is both not applicable and an expected failure; keep it in one list"
        );
    }
    for test in &tests {
        assert!(
            test.has_pass || not_applicable.contains_key(&test.id) || judged.contains_key(&test.id),
            "{} has no conf:pass: list it in not-applicable.tsv, or say in judged.tsv how it is judged",
            test.id
        );
    }
    let only: Option<Vec<String>> = std::env::var("OUTDIAL_IR_ONLY")
        .ok()
        .map(|ids| ids.split(',').map(|s| s.trim().to_owned()).collect());
    if let Some(only) = &only {
        tests.retain(|t| only.contains(&t.id));
    }

    let started = Instant::now();
    let outcomes = run_all(&tests, &not_applicable, &judged);
    let elapsed = started.elapsed();

    let mut unexpected = Vec::new();
    let mut fixed = Vec::new();
    for o in &outcomes {
        println!(
            "{:<12} {:<4} {}",
            o.test.id,
            o.verdict.label(),
            one_line(&o.reason, 200)
        );
        if only.is_some()
            && let Some(transcript) = &o.transcript
        {
            println!("  input column of INDEX.tsv: {}", o.test.input);
            for line in transcript.to_string().lines() {
                println!("    {line}");
            }
        }
        match o.verdict {
            Verdict::Fail if !expected.contains_key(&o.test.id) => {
                unexpected.push(format!("{}: {}", o.test.id, one_line(&o.reason, 200)));
            }
            Verdict::Pass if expected.contains_key(&o.test.id) => fixed.push(o.test.id.clone()),
            _ => {}
        }
    }
    let figures = Figures::of(&outcomes);
    println!("{figures} in {:.1} s", elapsed.as_secs_f64());
    if !fixed.is_empty() {
        println!(
            "now passing, remove from tests/ir/expected-failures.tsv: {}",
            fixed.join(" ")
        );
    }
    if only.is_some() {
        return;
    }
    if std::env::var_os("OUTDIAL_IR_REPORT").is_some() {
        write_report(&outcomes, &judged, elapsed);
    }
    if blessing {
        bless(&outcomes);
        return;
    }
    assert!(
        unexpected.is_empty(),
        "{} IR test(s) fail that tests/ir/expected-failures.tsv does not list (fix them, or \
         list them with the reason; OUTDIAL_IR_BLESS=1 lists all of today's):\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use outdial_vxml::caller::Stamped;

    const ENTRY: &str = "http://ir.test/cudl/w3c/369.txml";

    fn judging(row: &str) -> Judging {
        Judging::parse(row, ENTRY).unwrap_or_else(|e| panic!("{row:?}: {e}"))
    }

    /// A transcript of these prompts (text, audio URLs), then `end`.
    fn transcript(prompts: &[(&str, &[&str])], end: SessionEnd) -> Transcript {
        let mut entries: Vec<Stamped> = prompts
            .iter()
            .map(|(text, audio)| Stamped {
                at: Duration::ZERO,
                entry: Entry::Prompt {
                    text: (*text).to_owned(),
                    audio: audio
                        .iter()
                        .map(|a| AudioPlay::Played((*a).to_owned()))
                        .collect(),
                    bargein: true,
                },
            })
            .collect();
        entries.push(Stamped {
            at: Duration::from_secs(1),
            entry: Entry::End(end),
        });
        Transcript { entries }
    }

    fn exit() -> SessionEnd {
        SessionEnd::Exit { value: None }
    }

    fn judge(prompts: &[(&str, &[&str])], end: SessionEnd, row: &str) -> Verdict {
        verdict(&transcript(prompts, end), &judging(row)).0
    }

    const TEMPLATE: &str =
        "hears\tfor alpha press 1|for bravo press 2|for charlie press 3|for delta press 4\twhy";

    #[test]
    fn hears_passes_the_phrases_in_order_whatever_the_case_and_punctuation() {
        let heard = [(
            "For ALPHA, press 1. For bravo; press 2 — For charlie, press 3! For delta, press 4?",
            &[][..],
        )];
        assert_eq!(judge(&heard, exit(), TEMPLATE), Verdict::Pass);
        // Spread over several prompts, with other words around them.
        let spread = [
            ("No input expected. Say nothing.", &[][..]),
            ("alpha", &[][..]),
            ("then bravo and charlie", &[][..]),
            ("delta.", &[][..]),
        ];
        let row = "hears\tno input expected|alpha|bravo|charlie|delta\twhy";
        assert_eq!(judge(&spread, exit(), row), Verdict::Pass);
    }

    #[test]
    fn hears_fails_a_missing_reordered_or_misnumbered_choice() {
        let row = "hears\talpha|bravo|charlie|delta\twhy";
        let missing = [("alpha bravo delta", &[][..])];
        let (v, why) = verdict(&transcript(&missing, exit()), &judging(row));
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("\"charlie\" after \"bravo\""), "{why}");
        let reordered = [("alpha charlie bravo delta", &[][..])];
        assert_eq!(judge(&reordered, exit(), row), Verdict::Fail);
        // The choices before the prompt that must come first (219: heard in the noinput catch).
        let early = [
            ("alpha bravo charlie delta", &[][..]),
            ("No input expected. Say nothing.", &[][..]),
        ];
        let after = "hears\tno input expected|alpha|bravo|charlie|delta\twhy";
        assert_eq!(judge(&early, exit(), after), Verdict::Fail);
        let swapped_keys = [(
            "For alpha, press 2. For bravo, press 1. For charlie, press 3. For delta, press 4.",
            &[][..],
        )];
        assert_eq!(judge(&swapped_keys, exit(), TEMPLATE), Verdict::Fail);
        // Whole words only: "press 10" is not "press 1", "alphabet" is not "alpha".
        let longer = [(
            "For alpha, press 10. For bravo, press 2. For charlie, press 3. For delta, press 4.",
            &[][..],
        )];
        assert_eq!(judge(&longer, exit(), TEMPLATE), Verdict::Fail);
        let alphabet = [("alphabet bravo charlie delta", &[][..])];
        assert_eq!(judge(&alphabet, exit(), row), Verdict::Fail);
        // Without the carrier phrase the template was not used.
        let bare = [("alpha 1 bravo 2 charlie 3 delta 4", &[][..])];
        assert_eq!(judge(&bare, exit(), TEMPLATE), Verdict::Fail);
    }

    #[test]
    fn hears_fails_when_the_session_says_fail_or_ends_otherwise() {
        let row = "hears\talpha|bravo|charlie|delta\twhy";
        let heard = ("alpha bravo charlie delta", &[][..]);
        let failed = [
            heard,
            ("fail", &[][..]),
            ("caught unexpected event", &[][..]),
        ];
        let (v, why) = verdict(&transcript(&failed, exit()), &judging(row));
        assert_eq!(
            (v, why.as_str()),
            (Verdict::Fail, "fail: caught unexpected event")
        );
        assert_eq!(judge(&[heard], SessionEnd::Hangup, row), Verdict::Fail);
        let error = SessionEnd::Error {
            event: "error.semantic".into(),
            message: "x".into(),
        };
        assert_eq!(judge(&[heard], error, row), Verdict::Fail);
        let mut logged = transcript(&[heard], exit());
        logged.entries.insert(
            0,
            Stamped {
                at: Duration::ZERO,
                entry: Entry::Log {
                    label: None,
                    text: "failure expression: x".into(),
                },
            },
        );
        assert_eq!(verdict(&logged, &judging(row)).0, Verdict::Fail);
    }

    #[test]
    fn plays_passes_only_the_clip_resolved_against_the_entry_document() {
        let row = "plays\t369.wav\twhy";
        assert_eq!(
            judging(row),
            Judging::Plays("http://ir.test/cudl/w3c/369.wav".into())
        );
        let right = [("", &["http://ir.test/cudl/w3c/369.wav"][..])];
        assert_eq!(judge(&right, exit(), row), Verdict::Pass);
        let wrong_file = [("", &["http://ir.test/cudl/w3c/371.wav"][..])];
        assert_eq!(judge(&wrong_file, exit(), row), Verdict::Fail);
        let wrong_folder = [("", &["http://ir.test/cudl/369.wav"][..])];
        assert_eq!(judge(&wrong_folder, exit(), row), Verdict::Fail);
        let longer_name = [("", &["http://ir.test/cudl/w3c/x369.wav"][..])];
        assert_eq!(judge(&longer_name, exit(), row), Verdict::Fail);
        // Saying the file name is not playing it.
        let spoken = [("http://ir.test/cudl/w3c/369.wav", &[][..])];
        assert_eq!(judge(&spoken, exit(), row), Verdict::Fail);
        let then_fail = [right[0], ("fail", &[][..])];
        assert_eq!(judge(&then_fail, exit(), row), Verdict::Fail);
        assert_eq!(judge(&right, SessionEnd::Disconnect, row), Verdict::Fail);
    }

    #[test]
    fn judged_rows_are_checked() {
        for bad in [
            "hears",
            "hears\t\twhy",
            "hears\talpha||delta\twhy",
            "plays",
            "heard\tx",
        ] {
            assert!(Judging::parse(bad, ENTRY).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(judging("clean-exit\twhy"), Judging::CleanExit);
        assert_eq!(judging("prompt\twhy"), Judging::Prompt);
    }

    /// The real runs, judged against a wrong expectation, fail: the modes read what the
    /// interpreter did, not what `judged.tsv` says.
    #[test]
    fn real_runs_fail_a_wrong_expectation() {
        let tests = load_tests();
        let transfers = BTreeMap::new();
        let run = |id: &str, row: &str| {
            let test = tests
                .iter()
                .find(|t| t.id == id)
                .unwrap_or_else(|| panic!("{id} is not in INDEX.tsv"));
            let judging =
                Judging::parse(row, &locate(test).url).unwrap_or_else(|e| panic!("{row:?}: {e}"));
            run_test(test, &transfers, &judging).0
        };
        let judged = read_table("judged.tsv");
        for id in [
            "vxml20/216",
            "vxml20/217",
            "vxml20/219",
            "vxml20/369",
            "vxml20/371",
        ] {
            let row = judged.get(id).map_or("", String::as_str);
            assert_eq!(run(id, row), Verdict::Pass, "{id} as judged.tsv says");
        }
        let wrong = [
            ("vxml20/216", "hears\talpha|charlie|bravo|delta\tx"),
            ("vxml20/216", "hears\talpha|bravo|charlie|delta|echo\tx"),
            (
                "vxml20/217",
                "hears\tfor alpha press 1|for bravo press 3\tx",
            ),
            (
                "vxml20/217",
                "hears\tfor bravo press 2|for alpha press 1\tx",
            ),
            // 219's choices come after the menu prompt, not before it.
            ("vxml20/219", "hears\talpha|delta|no input expected\tx"),
            ("vxml20/369", "plays\t371.wav\tx"),
            ("vxml20/371", "plays\t369.wav\tx"),
        ];
        for (id, row) in wrong {
            assert_eq!(run(id, row), Verdict::Fail, "{id} judged as {row:?}");
        }
    }
}
