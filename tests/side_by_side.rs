//! The side-by-side benchmark scripts (issue 14, item 6) at small scale, so what
//! `docs/benchmarks.md` quotes stays runnable: each runs its peer and Outdial in one
//! invocation, and every call of every run must complete (the scripts fail otherwise) with
//! nothing lost. No rate, ratio or lateness is asserted: those are measured at scale.
//! The scripts run one at a time: each measures the whole machine (the kernel's UDP drop
//! counter among others), so one must not run beside another.

use std::sync::Mutex;

use outdial_tests::run_bench_script;

/// Held while a script runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `bench/SCRIPT ARGS…` alone; returns its standard output, after requiring that it
/// succeeded.
fn run(script: &str, args: &[&str]) -> String {
    // A script that failed another test leaves nothing behind that this one needs.
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    run_bench_script(script, args).1
}

/// The row of the table that starts with `label`, split on whitespace after it.
fn row<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{stdout}"))
        .split_whitespace()
        .collect()
}

/// `bench/sip/run.sh`: SIPp against SIPp, `bench sip` and `bench callee` against SIPp, and
/// Outdial end to end through its API, both with the final status and with every status
/// called back.
#[test]
fn call_setup_side_by_side_with_sipp_completes_every_call() {
    let stdout = run("sip/run.sh", &["200", "20", "60"]);
    for (label, calls) in [
        ("(a) sipp uac -> sipp uas", "200"),
        ("(b) bench sip -> sipp uas", "200"),
        ("(c) sipp uac -> bench callee", "200"),
        ("(d) HTTP -> outdial -> uas", "60"),
        ("(e) (d), every callback", "60"),
    ] {
        let fields = row(&stdout, label);
        assert_eq!(
            fields[..2],
            [calls, "0"],
            "{label}: completed, failed\n{stdout}"
        );
    }
}

/// `bench/sip/prompt_key.sh`: Outdial's calls play a prompt, read the key SIPp presses and
/// submit it; SIPp's uac then holds its calls as long.
#[test]
fn calls_with_a_prompt_and_a_key_side_by_side_with_sipp_complete() {
    let stdout = run("sip/prompt_key.sh", &["12", "6", "300"]);
    for label in [
        "(a-key) sipp uac -> sipp uas",
        "(d-key) HTTP -> outdial -> uas",
    ] {
        let fields = row(&stdout, label);
        assert_eq!(
            fields[..2],
            ["12", "0"],
            "{label}: completed, failed\n{stdout}"
        );
    }
    let hold = row(&stdout, "hold (answer to end, median of Outdial's calls):");
    let ms: u64 = hold[0].parse().expect("a hold in ms");
    assert!(
        ms >= 300,
        "the callee presses 300 ms after the answer: {ms} ms"
    );
}

/// `bench/media/run.sh`: the bare paced sender and Outdial's calls with two-way media at the
/// same concurrency; nothing is lost and every call's keys check.
#[test]
fn media_side_by_side_with_the_bare_sender_loses_nothing() {
    let stdout = run("media/run.sh", &["3", "20"]);
    let bare = row(&stdout, "bare");
    assert_eq!(bare[..2], ["20", "0"], "bare: streams, lost\n{stdout}");
    let outdial = row(&stdout, "outdial");
    assert_eq!(outdial[..2], ["20", "0"], "outdial: calls, lost\n{stdout}");
    assert!(
        outdial.contains(&"ok"),
        "outdial's calls checked: {outdial:?}"
    );
}
