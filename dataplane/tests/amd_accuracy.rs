//! Answering-machine detection accuracy on synthetic callees (docs/amd.md).
//!
//! Generates the small set with `bench/amd/make_set.sh --small` (espeak-ng voices, sox
//! silences, beeps and line noise, through G.711), plays every file to a
//! [`MachineDetector`] as 20 ms packets in virtual time, prints the figures and asserts
//! loose floors. With `AMD_SET=/path/to/full/set` it measures and prints that set too:
//!
//! ```text
//! bash bench/amd/make_set.sh /tmp/amdset
//! AMD_SET=/tmp/amdset cargo test -p outdial-dataplane --test amd_accuracy -- --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::amd::{AmdConfig, AmdEvent, AnsweredBy, MachineDetector};
use outdial_dataplane::rtp::g711;

const PACKET: usize = 160;
/// A beep is found when reported this close to its true end.
const BEEP_TOLERANCE: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Truth {
    Human,
    Machine { beep_end: Option<Duration> },
}

/// One file's truth and what the detector said.
#[derive(Debug)]
struct Outcome {
    name: String,
    truth: Truth,
    codec: Codec,
    noisy: bool,
    verdict: Option<(AnsweredBy, Duration, &'static str)>,
    beep: Option<Duration>,
}

#[test]
fn amd_accuracy_on_the_small_set_and_beep_ends() {
    for tool in ["espeak-ng", "sox"] {
        let found = Command::new(tool).arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is missing: install espeak-ng and sox (apt-get install espeak-ng sox); \
             this test generates its audio with them"
        );
    }
    let dir = std::env::temp_dir().join(format!("outdial-amd-small-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/amd/make_set.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg("--small")
        .status()
        .expect("run bench/amd/make_set.sh");
    assert!(status.success(), "{} --small failed", script.display());
    let outcomes = measure(&dir);
    std::fs::remove_dir_all(&dir).ok();
    let figures = report("small set (bench/amd/make_set.sh --small)", &outcomes);
    assert!(
        outcomes.len() >= 20,
        "only {} files generated",
        outcomes.len()
    );
    assert!(
        figures.machine_precision >= 0.8 && figures.machine_recall >= 0.8,
        "machine precision {:.2}, recall {:.2}",
        figures.machine_precision,
        figures.machine_recall
    );
    assert!(figures.human_accuracy >= 0.8, "{figures:?}");
    for outcome in &outcomes {
        if let Truth::Machine {
            beep_end: Some(end),
        } = outcome.truth
        {
            let found = outcome
                .beep
                .is_some_and(|at| at.abs_diff(end) <= BEEP_TOLERANCE);
            assert!(found, "beep ending at {end:?} not found: {outcome:?}");
        }
    }

    if let Some(full) = std::env::var_os("AMD_SET") {
        let outcomes = measure(Path::new(&full));
        assert!(!outcomes.is_empty(), "no WAV files in AMD_SET={full:?}");
        report(&format!("AMD_SET={}", full.to_string_lossy()), &outcomes);
    }
}

/// Plays every WAV file of `dir` to a detector that waits for the beep.
fn measure(dir: &Path) -> Vec<Outcome> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "wav"))
        .collect();
    paths.sort();
    paths.iter().map(|path| play(path)).collect()
}

fn play(path: &Path) -> Outcome {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("UTF-8 file name")
        .to_owned();
    let parts: Vec<&str> = name.split('-').collect();
    let codec = if parts.contains(&"alaw") {
        Codec::Pcma
    } else {
        Codec::Pcmu
    };
    let noisy = !parts.contains(&"clean");
    let truth = match parts.first() {
        Some(&"human") => Truth::Human,
        Some(&"machine") => Truth::Machine {
            beep_end: parts.iter().find_map(|p| {
                let ms = p.strip_prefix("end")?.strip_suffix("ms")?;
                Some(Duration::from_millis(ms.parse().ok()?))
            }),
        },
        _ => panic!("{name}: the name does not say human- or machine-"),
    };
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16),
        "{name}"
    );
    let pcm: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    let config = AmdConfig {
        wait_for_beep: true,
        ..AmdConfig::default()
    };
    let mut amd = MachineDetector::new(config);
    let mut events = Vec::new();
    let mut payload = [0u8; PACKET];
    for (i, chunk) in pcm.chunks(PACKET).enumerate() {
        let arrival = Duration::from_micros(((i * PACKET + chunk.len()) * 125) as u64);
        while let Some(deadline) = amd.next_deadline().filter(|&d| d <= arrival) {
            events.extend(amd.poll(deadline));
        }
        let n = g711::encode(codec, chunk, &mut payload);
        events.extend(amd.feed(arrival, codec, &payload[..n]));
    }
    while let Some(deadline) = amd.next_deadline() {
        events.extend(amd.poll(deadline));
    }
    let verdict = events.iter().find_map(|e| match *e {
        AmdEvent::Classified {
            answered_by,
            after,
            reason,
        } => Some((answered_by, after, reason)),
        _ => None,
    });
    let beep = events.iter().find_map(|e| match *e {
        AmdEvent::Beep { after } => Some(after),
        _ => None,
    });
    Outcome {
        name,
        truth,
        codec,
        noisy,
        verdict,
        beep,
    }
}

/// Which files a row of the report counts.
type Filter = dyn Fn(&Outcome) -> bool;

#[derive(Debug)]
struct Figures {
    machine_precision: f64,
    machine_recall: f64,
    human_accuracy: f64,
}

/// Prints the figures for the whole set and per law and noise; returns the whole set's.
fn report(title: &str, outcomes: &[Outcome]) -> Figures {
    println!("\nAMD accuracy, {title}: {} files", outcomes.len());
    println!(
        "{:<14} {:>5} {:>9} {:>9} {:>8} {:>8} {:>11} {:>6} {:>13} {:>15} {:>15}",
        "condition",
        "files",
        "m.prec",
        "m.recall",
        "h.acc",
        "unknown",
        "beeps",
        "false",
        "beep err ms",
        "human p50/p90",
        "machine p50/p90"
    );
    let groups: [(&str, &Filter); 7] = [
        ("all", &|_| true),
        ("µ-law", &|o| o.codec == Codec::Pcmu),
        ("A-law", &|o| o.codec == Codec::Pcma),
        ("clean", &|o| !o.noisy),
        ("noisy", &|o| o.noisy),
        ("µ-law noisy", &|o| o.codec == Codec::Pcmu && o.noisy),
        ("A-law noisy", &|o| o.codec == Codec::Pcma && o.noisy),
    ];
    let mut all = None;
    for (label, keep) in groups {
        let group: Vec<&Outcome> = outcomes.iter().filter(|o| keep(o)).collect();
        let figures = print_row(label, &group);
        all.get_or_insert(figures);
    }
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| {
            let said = o.verdict.map(|v| v.0);
            match o.truth {
                Truth::Human => said != Some(AnsweredBy::Human),
                Truth::Machine { .. } => said != Some(AnsweredBy::Machine),
            }
        })
        .map(|o| {
            let (by, after, reason) = o.verdict.map_or(("none", 0, ""), |(by, after, reason)| {
                (by.as_str(), after.as_millis(), reason)
            });
            format!("  {}: {by} after {after} ms ({reason})", o.name)
        })
        .collect();
    println!("misclassified ({}):\n{}", wrong.len(), wrong.join("\n"));
    all.expect("the first group is every file")
}

fn print_row(label: &str, group: &[&Outcome]) -> Figures {
    let said = |o: &Outcome| o.verdict.map(|v| v.0);
    let is_machine = |o: &Outcome| matches!(o.truth, Truth::Machine { .. });
    let called_machine = group
        .iter()
        .filter(|o| said(o) == Some(AnsweredBy::Machine));
    let (true_machines, false_machines) = called_machine.fold((0, 0), |(t, f), o| {
        if is_machine(o) {
            (t + 1, f)
        } else {
            (t, f + 1)
        }
    });
    let machines = group.iter().filter(|o| is_machine(o)).count();
    let humans = group.len() - machines;
    let human_right = group
        .iter()
        .filter(|o| !is_machine(o) && said(o) == Some(AnsweredBy::Human))
        .count();
    let unknown = group
        .iter()
        .filter(|o| said(o) == Some(AnsweredBy::Unknown))
        .count();
    let mut beeps = 0;
    let mut beep_found = 0;
    let mut false_beeps = 0;
    let mut errors = Vec::new();
    for o in group {
        if let Truth::Machine {
            beep_end: Some(end),
        } = o.truth
        {
            beeps += 1;
            if let Some(at) = o.beep.filter(|at| at.abs_diff(end) <= BEEP_TOLERANCE) {
                beep_found += 1;
                errors.push(at.as_millis() as i64 - end.as_millis() as i64);
                continue;
            }
        }
        false_beeps += usize::from(o.beep.is_some());
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    let figures = Figures {
        machine_precision: ratio(true_machines, true_machines + false_machines),
        machine_recall: ratio(true_machines, machines),
        human_accuracy: ratio(human_right, humans),
    };
    let times = |machine: bool| {
        let mut times: Vec<u128> = group
            .iter()
            .filter(|o| is_machine(o) == machine)
            .filter_map(|o| o.verdict.map(|v| v.1.as_millis()))
            .collect();
        times.sort_unstable();
        let at = |p: usize| {
            times
                .get((times.len().max(1) - 1) * p / 100)
                .copied()
                .unwrap_or(0)
        };
        format!("{}/{}", at(50), at(90))
    };
    let mean_error = if errors.is_empty() {
        0
    } else {
        errors.iter().sum::<i64>() / errors.len() as i64
    };
    let worst_error = errors.iter().map(|e| e.abs()).max().unwrap_or(0);
    println!(
        "{label:<14} {:>5} {:>9.3} {:>9.3} {:>8.3} {unknown:>8} {:>11} {false_beeps:>6} {:>13} {:>15} {:>15}",
        group.len(),
        figures.machine_precision,
        figures.machine_recall,
        figures.human_accuracy,
        format!("{beep_found}/{beeps}"),
        format!("{mean_error:+}/{worst_error}"),
        times(false),
        times(true),
    );
    figures
}
