//! `outdial bench load` end to end: the real binary asks the real `outdial serve` for calls
//! through its HTTP API, SIPp answers each call and presses a key, and the tool's own
//! application server receives the submits and status callbacks it checks.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use outdial_tests::{BenchCallee, Outdial, Sipp, TempDir, free_tcp_port, outdial_bin, shared_dir};
use serde_json::Value;

/// The SIPp scenario's key, as RFC 4733 events.
fn dtmf_pcap(key: &str) -> String {
    let path = shared_dir().join(format!("corpus/rtp-dtmf-sipp-pcaps/dtmf_2833_{key}.pcap"));
    assert!(
        path.exists(),
        "missing test corpus file {}: run bench/corpora/fetch.sh",
        path.display()
    );
    // invariant: the corpus path is valid UTF-8 (it is built from ASCII names).
    path.canonicalize()
        .expect("canonical path")
        .to_str()
        .expect("utf-8")
        .to_owned()
}

/// The harness gives each server 12 RTP ports (an RTP/RTCP pair a call, split between the
/// cores): at most 4 calls at once keeps clear of that, the rest wait queued.
const FOUR_AT_ONCE: &str = "[calls]\nmax_concurrent = 4\n";

/// A SIPp UAS that answers `calls` calls and presses 1 in each.
fn presses_one(calls: u32) -> Sipp {
    Sipp::uas_calls(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "500".into()),
        ],
        calls,
    )
}

/// Runs `outdial bench load --json` against `outdial`; returns its exit status, its JSON
/// report and its text report.
async fn bench_load(
    outdial: &Outdial,
    callee: SocketAddr,
    args: &[&str],
) -> (ExitStatus, Value, String) {
    let mut command = Command::new(outdial_bin());
    command
        .args(["bench", "load", "--json", "--quiet"])
        .args(["--api", &outdial.api, "--api-key", &outdial.api_key])
        .args(["--callee", &callee.to_string()])
        .args(args)
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run outdial bench load");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); standard error:\n{text}"));
    (output.status, report, text)
}

/// Every call asked for is created (in batches), completes, and submits the key SIPp pressed;
/// the report's counts add up, and the server's records agree with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_completes_with_the_pressed_key_submitted() {
    let sipp = presses_one(12);
    let outdial = Outdial::start(FOUR_AT_ONCE);
    let args = [
        "--count",
        "12",
        "--rate",
        "8",
        "--batch",
        "4",
        "--expect-digits",
        "1",
    ];
    let (status, report, text) = bench_load(&outdial, sipp.addr, &args).await;
    assert!(status.success(), "{status}\n{text}\n{}", outdial.log());
    assert_eq!(report["passed"], true, "{text}");
    assert_eq!(report["requested"], 12, "{text}");
    assert_eq!(report["created"], 12, "{text}");
    assert_eq!(
        report["create_requests"], 3,
        "three batches of four: {text}"
    );
    assert_eq!(
        report["outcomes"],
        serde_json::json!({ "completed": 12 }),
        "{text}"
    );
    assert_eq!(report["checks"]["ok"], 12, "{text}");
    for key in ["request_to_invite", "post_dial_delay", "dtmf_to_submit"] {
        assert_eq!(report["latency_ms"][key]["count"], 12, "{key}: {text}");
    }
    assert_eq!(report["latency_ms"]["create_request"]["count"], 3, "{text}");
    let seconds: u64 = report["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|s| s["requested"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        seconds <= 12,
        "the timeline asks for at most every call: {seconds}"
    );
    assert!(text.contains("PASS"), "{text}");

    let page: Value = reqwest::Client::new()
        .get(format!("{}/v1/calls?limit=100", outdial.api))
        .bearer_auth(&outdial.api_key)
        .send()
        .await
        .expect("list calls")
        .json()
        .await
        .expect("JSON");
    let calls = page["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 12, "{page}");
    for call in calls {
        assert_eq!(call["status"], "completed", "{call}");
        assert_eq!(call["result"]["digits"], "1", "{call}");
        assert!(
            call["to"]
                .as_str()
                .is_some_and(|to| to.starts_with("sip:press-1@")),
            "{call}"
        );
    }
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(20)).await;
    assert!(
        sipp_status.success(),
        "SIPp did not complete its 12 calls:\n{trace}"
    );
}

/// `--app key` (a short prompt and one key, `bench/sip/prompt_key.sh`'s application): the key
/// SIPp presses is submitted and stored, and the report gives each call's hold, which cannot
/// be shorter than the half second SIPp waits before pressing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_application_submits_the_one_key_pressed_and_reports_the_hold() {
    let sipp = presses_one(3);
    let outdial = Outdial::start(FOUR_AT_ONCE);
    let args = [
        "--app",
        "key",
        "--count",
        "3",
        "--concurrency",
        "2",
        "--expect-digits",
        "1",
    ];
    let (status, report, text) = bench_load(&outdial, sipp.addr, &args).await;
    assert!(status.success(), "{status}\n{text}\n{}", outdial.log());
    assert_eq!(report["checks"]["ok"], 3, "{text}");
    let hold = &report["latency_ms"]["answered_to_ended"];
    assert_eq!(hold["count"], 3, "{text}");
    let median = hold["p50"].as_f64().expect("a median hold");
    assert!(median >= 500.0, "held {median} ms: {text}");
    assert!(text.contains("answer -> end (hold)"), "{text}");
}

/// A callee that presses other keys than it was asked for is a mismatch, named per call, and
/// the exit status says the run failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_other_than_asked_for_fail_the_run() {
    let sipp = presses_one(3);
    let outdial = Outdial::start(FOUR_AT_ONCE);
    let args = ["--count", "3", "--concurrency", "2", "--expect-digits", "2"];
    let (status, report, text) = bench_load(&outdial, sipp.addr, &args).await;
    assert_eq!(status.code(), Some(2), "{text}");
    assert_eq!(report["passed"], false, "{text}");
    assert_eq!(report["checks"]["mismatch"], 3, "{text}");
    assert_eq!(report["checks"]["ok"], 0, "{text}");
    assert_eq!(report["outcomes"]["completed"], 3, "{text}");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 3, "{text}");
    assert!(
        failures
            .iter()
            .all(|f| f.as_str().is_some_and(|f| f.contains("submitted \"1\""))),
        "{text}"
    );
    assert!(text.contains("FAIL"), "{text}");
}

/// Calls nobody answers within --call-timeout are lost, and fail the run. The callee's port
/// is bound and silent: a port with no listener would fail the calls at once (ICMP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_final_status_in_time_are_lost() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a silent callee");
    let nobody = silent.local_addr().expect("its address");
    let outdial = Outdial::start("");
    let args = ["--count", "2", "--call-timeout", "2"];
    let (status, report, text) = bench_load(&outdial, nobody, &args).await;
    assert_eq!(status.code(), Some(2), "{text}");
    assert_eq!(report["checks"]["lost"], 2, "{text}");
    assert_eq!(report["created"], 2, "{text}");
    assert!(
        text.contains("no final status within --call-timeout"),
        "{text}"
    );
}

/// Unusable arguments are refused before any call is asked for, with what to change.
#[test]
fn unusable_arguments_are_refused_with_exit_status_1() {
    let output = Command::new(outdial_bin())
        .args([
            "bench",
            "load",
            "--callee",
            "127.0.0.1:9",
            "--ramp",
            "1:5",
            "--duration",
            "0",
        ])
        .args(["--api-key", "k"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--duration must be a number above 0"),
        "{stderr}"
    );
}

/// Issue 11's small-scale run: 50 calls through `bench load` against `bench callee` on the
/// embedded server; every call completes with the random keys its callee was asked to press
/// submitted and stored, and the report's counts add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_calls_against_bench_callee_submit_the_keys_each_was_asked_for() {
    let callee = BenchCallee::pressing_from_uri();
    let outdial = Outdial::start(FOUR_AT_ONCE);
    let args = [
        "--count",
        "50",
        "--concurrency",
        "4",
        "--digits",
        "5",
        "--seed",
        "11",
    ];
    let (status, report, text) = bench_load(&outdial, callee.addr, &args).await;
    assert!(
        status.success(),
        "{status}\n{text}\ncallee:\n{}\n{}",
        callee.output(),
        outdial.log()
    );
    assert_eq!(report["requested"], 50, "{text}");
    assert_eq!(report["created"], 50, "{text}");
    assert_eq!(
        report["outcomes"],
        serde_json::json!({ "completed": 50 }),
        "{text}"
    );
    let checks = report["checks"].as_object().expect("checks");
    let counted: u64 = checks.values().filter_map(Value::as_u64).sum();
    assert_eq!(counted, 50, "every call has one verdict: {text}");
    assert_eq!(report["checks"]["ok"], 50, "{text}");
    assert_eq!(
        report["latency_ms"]["dtmf_to_submit"]["count"], 50,
        "{text}"
    );

    let page: Value = reqwest::Client::new()
        .get(format!("{}/v1/calls?limit=100", outdial.api))
        .bearer_auth(&outdial.api_key)
        .send()
        .await
        .expect("list calls")
        .json()
        .await
        .expect("JSON");
    let calls = page["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 50, "{page}");
    let mut distinct = std::collections::BTreeSet::new();
    for call in calls {
        let to = call["to"].as_str().expect("to");
        let keys = to
            .strip_prefix("sip:press-")
            .and_then(|rest| rest.split('@').next())
            .expect("a press- URI");
        assert_eq!(keys.len(), 5, "{call}");
        assert_eq!(call["result"]["digits"], keys, "{call}");
        distinct.insert(keys.to_owned());
    }
    assert!(distinct.len() > 40, "random keys per call: {distinct:?}");
}

/// `bench callee --dtmf-after-prompt`: phones press their keys in answer to the survey's
/// prompt, as people do: once Outdial's spoken prompt (espeak-ng over RTP) has been heard and
/// has ended. Every call submits its keys, and each phone's first key came after the prompt
/// (the prompt alone lasts over a second; `--dtmf-delay 0` would otherwise press at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_press_their_keys_in_answer_to_the_prompt() {
    let dir = TempDir::new("prompt-answer");
    let report_file = dir.path().join("calls.jsonl");
    let report_arg = report_file.to_string_lossy().into_owned();
    let callee = BenchCallee::with_args(&[
        "--dtmf",
        "from-uri",
        "--dtmf-after-prompt",
        "400",
        "--dtmf-delay",
        "0",
        "--report",
        &report_arg,
        "--calls",
        "4",
    ]);
    let outdial = Outdial::start(FOUR_AT_ONCE);
    let args = ["--count", "4", "--concurrency", "2", "--digits", "3"];
    let (status, report, text) = bench_load(&outdial, callee.addr, &args).await;
    assert!(
        status.success(),
        "{status}\n{text}\ncallee:\n{}\n{}",
        callee.output(),
        outdial.log()
    );
    assert_eq!(report["checks"]["ok"], 4, "{text}");
    // The callee writes its report lines as calls end; it exits after its 4 calls.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let text = std::fs::read_to_string(&report_file).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 4 || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lines.len(), 4, "{}", callee.output());
    for line in &lines {
        let first_key = line["first_key_ms"].as_u64().expect("a key was pressed");
        let first_packet = line["first_packet_ms"].as_u64().unwrap_or(0);
        assert!(
            first_key >= first_packet + 1_000 + 400,
            "first key {first_key} ms after the answer, before the prompt could end: {line}"
        );
    }
}

/// A carrier-like trunk to `bench callee --challenge`: the callee answers 401, Outdial's
/// digest answer (the trunk's credentials) is checked by the callee and the call is taken;
/// with a wrong password the callee challenges again and the call ends `auth-failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_callee_challenges_and_checks_the_trunks_digest_credentials() {
    // The application URL answers nothing: what is checked is the SIP leg (its disposition).
    for (password, disposition, counted) in [
        (
            "pw-right",
            "completed",
            "1 challenged (401), 0 wrong credentials",
        ),
        (
            "pw-wrong",
            "auth-failed",
            "1 challenged (401), 1 wrong credentials",
        ),
    ] {
        let mut callee = BenchCallee::with_args(&[
            "--challenge",
            "outdial-acct:pw-right",
            "--hangup-after",
            "1",
            "--calls",
            "1",
            "--duration",
            "4",
            "--progress",
            "0",
        ]);
        let trunk = format!(
            "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{{number}}@carrier.test\"\n\
             proxy = \"{}\"\nauth_user = \"outdial-acct\"\nauth_password = \"{password}\"\n",
            callee.addr
        );
        let outdial = Outdial::start_with_sip("127.0.0.1", "default_trunk = \"carrier\"", &trunk);
        let (code, created) = outdial
            .create_call(&serde_json::json!({
                "to": "+15550003",
                "url": "http://127.0.0.1:9/app.vxml",
            }))
            .await;
        assert_eq!(code, 201, "{created}");
        let id = created["id"].as_str().expect("id");
        let call = outdial.wait_final(id, Duration::from_secs(60)).await;
        assert_eq!(
            call["disposition"],
            disposition,
            "{call}\n{}",
            callee.output()
        );
        if password == "pw-right" {
            assert_eq!(call["sip_status"], 200, "{call}");
        }
        // It exits after its one call, or (never taking the call) at --duration.
        callee.wait();
        let output = callee.output();
        assert!(output.contains(counted), "{password}: {output}");
    }
}

/// `bench load --smtp`: the same checked run with every call asked for by e-mail through the
/// SMTP gateway (one message per call, AUTH as the tenant), against `bench callee`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_asked_for_by_email_complete_with_the_keys_each_was_asked_for() {
    let callee = BenchCallee::pressing_from_uri();
    let smtp = free_tcp_port();
    let outdial = Outdial::start(&format!(
        "{FOUR_AT_ONCE}\n[smtp]\nenabled = true\nlisten = \"127.0.0.1:{smtp}\"\nauth_on_loopback = true\n"
    ));
    let server = format!("127.0.0.1:{smtp}");
    let args = [
        "--smtp",
        server.as_str(),
        "--count",
        "12",
        "--concurrency",
        "4",
        "--seed",
        "5",
    ];
    let (status, report, text) = bench_load(&outdial, callee.addr, &args).await;
    assert!(
        status.success(),
        "{status}\n{text}\ncallee:\n{}\n{}",
        callee.output(),
        outdial.log()
    );
    assert_eq!(report["created"], 12, "{text}");
    assert_eq!(report["checks"]["ok"], 12, "{text}");
    let log = outdial.log();
    assert_eq!(
        log.matches("e-mail request accepted").count(),
        12,
        "every call came by e-mail:\n{log}"
    );
}
