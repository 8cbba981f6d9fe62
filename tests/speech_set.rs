//! The speech accuracy set's small subset in CI (issue 15): `bench/speech/make_set.sh --small`
//! makes 16 files (two voices; yes/no, digits, cities, numbers; out-of-grammar sentences;
//! silence) through µ-law, and each goes through `outdial speech recognize` with its grammar
//! from `bench/speech/grammars/`, as a live call would hear it. No timing is asserted; the
//! thresholds sit below what the full set measures (`docs/benchmarks.md`).

use std::path::Path;
use std::process::Command;

use outdial_tests::{TempDir, outdial_bin, project_root};

/// What the recognizer made of one file: its words and confidence.
fn recognise(wav: &Path, grammar: &str) -> (String, f32) {
    let jsgf = project_root().join(format!("bench/speech/grammars/{grammar}.jsgf"));
    let output = Command::new(outdial_bin())
        .args(["speech", "recognize", "--law", "none", "--jsgf"])
        .arg(&jsgf)
        .arg("--wav")
        .arg(wav)
        .output()
        .expect("run outdial speech recognize");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned();
    let (confidence, text) = line.split_once('\t').unwrap_or((line.as_str(), ""));
    (text.to_owned(), confidence.parse().unwrap_or(f32::NAN))
}

/// Yes/no by meaning, as a boolean field takes it; other grammars by their words.
fn same_meaning(grammar: &str, expected: &str, heard: &str) -> bool {
    let yes = |w: &str| matches!(w, "yes" | "yeah" | "yep");
    let no = |w: &str| matches!(w, "no" | "nope");
    match grammar {
        "yesno" => yes(expected) && yes(heard) || no(expected) && no(heard),
        _ => expected == heard,
    }
}

#[test]
fn the_small_speech_set_is_recognised_over_g711() {
    let dir = TempDir::new("speech-set");
    let status = Command::new("bash")
        .arg(project_root().join("bench/speech/make_set.sh"))
        .arg(dir.path())
        .arg("--small")
        .status()
        .expect("run bench/speech/make_set.sh");
    assert!(status.success(), "make_set.sh failed: {status}");
    let manifest =
        std::fs::read_to_string(dir.path().join("manifest.tsv")).expect("the set's manifest");
    let (mut spoken, mut right, mut accepted) = (0, 0, 0);
    let mut report = Vec::new();
    for row in manifest.lines() {
        let fields: Vec<&str> = row.split('\t').collect();
        let [file, kind, grammar, expected, ..] = fields.as_slice() else {
            panic!("bad manifest row {row:?}");
        };
        let wav = dir.path().join(file);
        match *kind {
            "in" => {
                let (heard, confidence) = recognise(&wav, grammar);
                spoken += 1;
                if same_meaning(grammar, expected, &heard) {
                    right += 1;
                    if confidence >= 0.5 {
                        accepted += 1;
                    }
                }
                report.push(format!(
                    "{file}: {expected:?} → {heard:?} ({confidence:.2})"
                ));
            }
            "oog" => {
                let (heard, confidence) = recognise(&wav, "cities");
                assert!(
                    confidence < 0.5,
                    "{file}: out-of-grammar speech accepted as {heard:?} ({confidence})"
                );
            }
            "silence" => {
                let (heard, _) = recognise(&wav, "digits");
                assert!(heard.is_empty(), "{file}: silence heard as {heard:?}");
            }
            other => panic!("unknown kind {other:?} in {row:?}"),
        }
    }
    let report = report.join("\n");
    assert_eq!(spoken, 12, "{report}");
    assert!(right >= 10, "{right} of {spoken} right:\n{report}");
    assert!(
        accepted >= 8,
        "{accepted} of {spoken} right and confident:\n{report}"
    );
}
