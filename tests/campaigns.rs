//! A campaign of 1,000 callees against SIPp: uploaded as CSV, opted-out numbers skipped (never
//! dialled), bad rows reported by number, every other callee dialled once, at the campaign's
//! pacing as SIPp measures it (the time each INVITE arrived), and progress by status.

use std::collections::HashMap;
use std::time::Duration;

use outdial_tests::{Outdial, Sipp, TempDir, outdial_bin, sip_invites};
use serde_json::{Value, json};

const CALLEES: usize = 1000;
const OPTED_OUT: usize = 10;
const PACE: f64 = 50.0;

async fn send(
    outdial: &Outdial,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    outdial.request(&outdial.api_key, method, path, body).await
}

/// Seconds since midnight of the time SIPp logged each message it received, by Call-ID, for
/// INVITEs (the first of each Call-ID: retransmissions are not new calls).
fn invite_times(trace: &str) -> Vec<f64> {
    let mut stamp = None;
    let mut first: HashMap<String, f64> = HashMap::new();
    let mut in_invite = false;
    for line in trace.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("----") {
            // "----------------------------------------------- 2026-12-05	06:33:12.123456"
            stamp = line.split_whitespace().find_map(|token| {
                let mut parts = token.split(':');
                let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
                Some(
                    h.parse::<f64>().ok()? * 3600.0
                        + m.parse::<f64>().ok()? * 60.0
                        + s.parse::<f64>().ok()?,
                )
            });
            in_invite = false;
        } else if line.starts_with("INVITE sip:") {
            in_invite = true;
        } else if in_invite && line.to_ascii_lowercase().starts_with("call-id:") {
            let id = line[8..].trim().to_owned();
            if let Some(at) = stamp {
                first.entry(id).or_insert(at);
            }
            in_invite = false;
        }
    }
    let mut times: Vec<f64> = first.into_values().collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The most INVITEs in any window of `secs` seconds.
fn most_in_window(times: &[f64], secs: f64) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= secs {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_a_thousand_callees_is_paced_and_skips_opt_outs() {
    let dialled = CALLEES - OPTED_OUT;
    let sipp = Sipp::uas_calls("busy.xml", &[], u32::try_from(dialled).expect("count"));
    let outdial =
        Outdial::start_with_sip("127.0.0.1", &format!("trunk = \"sip:{}\"", sipp.addr), "");
    let numbers: Vec<String> = (0..CALLEES).map(|i| format!("+1555020{i:04}")).collect();
    let put = reqwest::Method::PUT;
    for number in numbers.iter().step_by(CALLEES / OPTED_OUT) {
        let (status, body) = send(
            &outdial,
            put.clone(),
            &format!("/v1/callees/{number}/opt-out"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // The campaign's pacing spaces the calls' due times; the tenant's token bucket at the same
    // rate keeps a late release (a busy machine) from catching up in a burst.
    let policy = json!({ "calls_per_second": PACE as u32, "burst": 1 }).to_string();
    let (status, body) = send(
        &outdial,
        put,
        "/v1/policy",
        Some(("application/json", policy)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(6)).await; // the scheduler reads tenant rates every 5 s
    let spec = json!({ "name": "reminders", "url": "http://127.0.0.1:9/app.vxml", "calls_per_second": PACE, "vars": { "clinic": "North" } });
    let (status, campaign) = send(
        &outdial,
        reqwest::Method::POST,
        "/v1/campaigns",
        Some(("application/json", spec.to_string())),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let id = campaign["id"].as_str().expect("id").to_owned();

    let mut csv = String::from("to,name\n");
    for (i, number) in numbers.iter().enumerate() {
        csv.push_str(&format!("{number},\"Patient {i}\"\n"));
        if i == 500 {
            csv.push_str("not-a-number,Nobody\n+15550209999,too,many\n");
        }
    }
    let (status, report) = send(
        &outdial,
        reqwest::Method::POST,
        &format!("/v1/campaigns/{id}/callees"),
        Some(("text/csv", csv)),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            &report["accepted"],
            &report["skipped"],
            &report["invalid"],
            &report["rows"]
        ),
        (
            &json!(dialled),
            &json!(OPTED_OUT),
            &json!(2),
            &json!(CALLEES + 2)
        ),
        "{report}"
    );
    let errors = report["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e["row"] == 502 && e["rule"] == "sip_uri"),
        "{report}"
    );
    assert!(errors.iter().any(|e| e["row"] == 503), "{report}");
    assert_eq!(
        errors.iter().filter(|e| e["code"] == "opted_out").count(),
        OPTED_OUT
    );

    let (sipp_status, trace) = sipp.finish(Duration::from_secs(120)).await;
    assert!(
        sipp_status.success(),
        "SIPp did not see its {dialled} calls:\n{}",
        outdial.log()
    );
    let times = invite_times(&trace);
    assert_eq!(
        times.len(),
        dialled,
        "every accepted callee dialled once, no opted-out one"
    );
    let span = times[times.len() - 1] - times[0];
    let rate = (times.len() - 1) as f64 / span;
    let per_second = most_in_window(&times, 1.0);
    let per_five = most_in_window(&times, 5.0);
    println!(
        "campaign pacing at SIPp: {dialled} INVITEs over {span:.2} s = {rate:.2}/s (pacing {PACE}/s); most in 1 s: {per_second}, in 5 s: {per_five}"
    );
    // Correctness, not speed: never faster than the pacing (plus the bucket's burst of 1 and
    // 0.2 s of scheduling jitter), however slow the machine.
    assert!(
        per_five as f64 <= PACE * 5.2 + 1.0,
        "{per_five} INVITEs in 5 s at {PACE}/s"
    );
    assert!(
        span >= (dialled - 1) as f64 / PACE * 0.95,
        "{span} s is faster than the pacing"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, progress) = send(
            &outdial,
            reqwest::Method::GET,
            &format!("/v1/campaigns/{id}"),
            None,
        )
        .await;
        if progress["calls"]["busy"] == json!(dialled) {
            assert_eq!(
                (&progress["accepted"], &progress["skipped"]),
                (&json!(dialled), &json!(OPTED_OUT))
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "progress never counted every call: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server is killed (SIGKILL) in the middle of a campaign and started again: the campaign
/// goes on from the store, every call ends, and nobody is dialled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_cut_by_a_crash_resumes_without_dialling_anyone_twice() {
    const COUNT: usize = 200;
    let sipp = Sipp::uas_calls("busy.xml", &[], u32::try_from(COUNT).expect("count"));
    let mut outdial =
        Outdial::start_with_sip("127.0.0.1", &format!("trunk = \"sip:{}\"", sipp.addr), "");
    let spec = json!({ "url": "http://127.0.0.1:9/app.vxml", "calls_per_second": 25 });
    let (status, campaign) = send(
        &outdial,
        reqwest::Method::POST,
        "/v1/campaigns",
        Some(("application/json", spec.to_string())),
    )
    .await;
    assert_eq!(status, 201, "{campaign}");
    let id = campaign["id"].as_str().expect("id").to_owned();
    let rows: String = (0..COUNT)
        .map(|i| format!("{{\"to\": \"+1555030{i:04}\"}}\n"))
        .collect();
    let (status, report) = send(
        &outdial,
        reqwest::Method::POST,
        &format!("/v1/campaigns/{id}/callees"),
        Some(("application/x-ndjson", rows)),
    )
    .await;
    assert_eq!(
        (status, &report["accepted"]),
        (200, &json!(COUNT)),
        "{report}"
    );

    // Kill it once some calls have been placed and most have not.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sip_invites(&sipp.trace()).len() < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "no calls placed:\n{}",
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The calls the crash leaves live, read from the store while no server runs: exactly
    // these are failed as interrupted at the next start.
    let mut live_at_crash = 0;
    outdial.restart_after(|data| {
        let db = rusqlite::Connection::open(data.join("outdial.sqlite")).expect("open the store");
        live_at_crash = db
            .query_row(
                "SELECT COUNT(*) FROM calls WHERE status IN ('dialing', 'ringing', 'in-progress')",
                [],
                |row| row.get::<_, i64>(0),
            )
            .ok()
            .and_then(|count| u64::try_from(count).ok())
            .expect("count live calls");
    });

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let progress = loop {
        let (_, progress) = send(
            &outdial,
            reqwest::Method::GET,
            &format!("/v1/campaigns/{id}"),
            None,
        )
        .await;
        let calls = progress["calls"].as_object().cloned().unwrap_or_default();
        let done = ["busy", "failed"]
            .iter()
            .map(|s| calls.get(*s).and_then(Value::as_u64).unwrap_or(0))
            .sum::<u64>();
        if done == COUNT as u64 {
            break progress;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every call ended: {progress}\n{}",
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, trace) = sipp.finish(Duration::from_secs(5)).await;
    let mut calls_per_callee: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    for (uri, call_id) in sip_invites(&trace) {
        calls_per_callee.entry(uri).or_default().insert(call_id);
    }
    let twice: Vec<_> = calls_per_callee
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(twice.is_empty(), "dialled twice: {twice:?}");
    // A call cut while it was being placed ends `failed` (interrupted), never redialled; the
    // rest were all placed.
    let interrupted = progress["calls"]["failed"].as_u64().unwrap_or(0);
    println!(
        "crash in a campaign of {COUNT}: {} callees dialled once, {interrupted} interrupted",
        calls_per_callee.len()
    );
    assert!(
        calls_per_callee.len() as u64 + interrupted >= COUNT as u64,
        "{progress}"
    );
    // Why each failed call failed, for the message below.
    let reasons: Vec<String> = {
        let db = rusqlite::Connection::open(outdial.dir.path().join("data/outdial.sqlite"))
            .expect("open the store");
        let mut statement = db
            .prepare("SELECT id, status, reason, attempts FROM calls WHERE status = 'failed'")
            .expect("prepare");
        statement
            .query_map([], |row| {
                Ok(format!(
                    "{} {} {:?} {}",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, i64>(3)?
                ))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        interrupted, live_at_crash,
        "only calls in flight at the crash are lost to it: {progress}, failed: {reasons:#?}"
    );
    // The campaign releases 25 calls a second and each is answered busy at once: more than
    // two seconds' worth live at the crash would mean calls claimed long before they are
    // dialled, all of them lost to a crash.
    assert!(
        live_at_crash < 50,
        "{live_at_crash} calls were live at the crash: {progress}"
    );
}

/// `outdial campaign create | upload | status --follow` against the same server: the command
/// line drives a small campaign to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_creates_uploads_and_follows_a_campaign() {
    let sipp = Sipp::uas_calls("busy.xml", &[], 5);
    let outdial =
        Outdial::start_with_sip("127.0.0.1", &format!("trunk = \"sip:{}\"", sipp.addr), "");
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(outdial_bin())
            .args(["campaign"])
            .args(args)
            .args(["--api", &outdial.api, "--api-key", &outdial.api_key])
            .output()
            .expect("run outdial campaign");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<Value>(&stdout).expect("JSON on standard output")
    };
    let created = cli(&[
        "create",
        "--url",
        "http://127.0.0.1:9/app.vxml",
        "--rate",
        "10",
        "--var",
        "clinic=North",
    ]);
    let id = created["id"].as_str().expect("id").to_owned();
    let dir = TempDir::new("campaign-cli");
    let file = dir.path().join("callees.csv");
    let rows: String = (0..5)
        .map(|i| format!("+155504000{i},Patient {i}\n"))
        .collect();
    std::fs::write(&file, format!("to,name\n{rows}")).expect("write CSV");
    let report = cli(&["upload", &id, file.to_str().expect("path")]);
    assert_eq!(
        (&report["accepted"], &report["invalid"]),
        (&json!(5), &json!(0)),
        "{report}"
    );
    let status = cli(&["status", &id, "--follow"]);
    assert_eq!(status["calls"], json!({ "busy": 5 }), "{status}");
    let (sipp_status, _) = sipp.finish(Duration::from_secs(20)).await;
    assert!(sipp_status.success());
}
