//! Isolation on live calls (issue 9): runaway VoiceXML applications beside a normal call and
//! API clients. The real `outdial serve`, SIPp as the callee, the hostile documents of
//! `vxml/tests/hostile/`.
//!
//! Asserted: the normal call completes with its result, every API request is answered, the
//! runaway that is left alone ends with `error.semantic` naming `vxml.call_script_budget`, and
//! the one that is deleted ends `canceled` because the cancel stopped its running session.
//! Measured and printed (not asserted: timing belongs in `bench/`): the normal call's time
//! beside the runaways over its time alone, and the API's latency percentiles (run with
//! `-- --nocapture`; `OUTDIAL_TEST_LOG=1` prints the server's log too).

use std::time::{Duration, Instant};

use outdial_tests::{AppServer, Outdial, Sipp, project_root};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Speaks for a few seconds, then submits a value and ends (the submit's empty answer).
const NORMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <var name="answer" expr="'forty-two'"/>
    <block>
      <prompt>This is the neighbouring call. It speaks for a few seconds while the others spin.</prompt>
      <submit next="/done" namelist="answer"/>
    </block>
  </form>
</vxml>
"#;

/// Interrupt checks per call: with the unoptimised engine of a debug build a few seconds of
/// CPU, so the runaways spin through the whole normal call.
const CONFIG: &str = "[vxml]\ncall_script_budget = 600\n";

fn runaway_document() -> String {
    std::fs::read_to_string(project_root().join("vxml/tests/hostile/runaway_catch_loop.vxml"))
        .expect("the hostile document vxml/tests/hostile/runaway_catch_loop.vxml")
}

/// Places the normal call and waits for its end; its record and how long it took.
async fn normal_call(outdial: &Outdial, app: &AppServer, to: String) -> (Value, Duration) {
    let started = Instant::now();
    let (status, created) = outdial
        .create_call(&json!({ "to": to, "url": app.url("/normal.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    (call, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_applications_neither_starve_the_api_nor_a_neighbouring_call() {
    let app = AppServer::start().await;
    app.vxml("/normal.vxml", NORMAL);
    app.route("/done", 200, "text/plain", "");
    app.vxml("/runaway.vxml", runaway_document());
    let outdial = Outdial::start(CONFIG);

    // The normal call alone, for comparison.
    let alone = Sipp::uas("answer_wait_bye.xml", &[]);
    let (call, time_alone) = normal_call(&outdial, &app, alone.uri("+15550100")).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["result"], json!({ "answer": "forty-two" }), "{call}");
    let (sipp_status, trace) = alone.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");

    // Two runaways, then the normal call beside them, with API clients throughout.
    let sipp = Sipp::uas_calls("answer_wait_bye.xml", &[], 3);
    let mut runaways = Vec::new();
    for n in 0..2 {
        let (status, created) = outdial
            .create_call(&json!({
                "to": sipp.uri(&format!("+1555020{n}")),
                "url": app.url("/runaway.vxml"),
            }))
            .await;
        assert_eq!(status, 201, "{created}");
        runaways.push(created["id"].as_str().expect("id").to_owned());
    }
    for id in &runaways {
        let call = outdial.wait_status(id, "in-progress", CALL_TIMEOUT).await;
        assert_eq!(call["status"], "in-progress", "{call}");
    }

    let api = outdial.api.clone();
    let key = outdial.api_key.clone();
    let watched = runaways[0].clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let clients = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        while !*stop_rx.borrow() {
            for path in ["/healthz".to_owned(), format!("/v1/calls/{watched}")] {
                let sent = Instant::now();
                let answer = client
                    .get(format!("{api}{path}"))
                    .bearer_auth(&key)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                latencies.push(sent.elapsed());
                match answer {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => failures.push(format!("{path}: {}", response.status())),
                    Err(e) => failures.push(format!("{path}: {e}")),
                }
            }
            tokio::select! {
                _ = stop_rx.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        (latencies, failures)
    });

    // The second runaway is deleted while its script spins: once both have their document.
    let fetched = Instant::now();
    while app
        .received()
        .iter()
        .filter(|r| r.path == "/runaway.vxml")
        .count()
        < 2
    {
        assert!(
            fetched.elapsed() < CALL_TIMEOUT,
            "the runaways never fetched their document"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deleted_at = Instant::now();
    let (status, body) = outdial.cancel_call(&runaways[1]).await;
    assert_eq!(status, 202, "{body}");
    let cancel_watch = {
        let (api, key, id) = (
            outdial.api.clone(),
            outdial.api_key.clone(),
            runaways[1].clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let call: Value = match client
                    .get(format!("{api}/v1/calls/{id}"))
                    .bearer_auth(&key)
                    .send()
                    .await
                {
                    Ok(response) => response.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                if call["ended_at"].is_string() || deleted_at.elapsed() > CALL_TIMEOUT {
                    return deleted_at.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let (call, time_beside) = normal_call(&outdial, &app, sipp.uri("+15550300")).await;
    let _ = stop_tx.send(true);
    let (mut latencies, failures) = clients.await.expect("API clients");
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["result"], json!({ "answer": "forty-two" }), "{call}");
    assert!(failures.is_empty(), "API requests failed: {failures:?}");
    assert!(!latencies.is_empty(), "the API clients made no request");

    let cancel_took = cancel_watch.await.expect("cancel watcher");
    let deleted = outdial.wait_final(&runaways[1], CALL_TIMEOUT).await;
    assert_eq!(
        deleted["status"],
        "canceled",
        "{deleted}\n{}",
        outdial.log()
    );
    assert_eq!(deleted["reason"], "canceled by API request", "{deleted}");

    let left = outdial.wait_final(&runaways[0], CALL_TIMEOUT).await;
    assert_eq!(left["status"], "failed", "{left}");
    let reason = left["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("error.semantic") && reason.contains("vxml.call_script_budget"),
        "the runaway ends with the reason naming the budget: {left}"
    );
    let log = outdial.log();
    assert!(
        log.contains("the platform stopped the session"),
        "the cancel must stop the running session, not wait for its budget:\n{log}"
    );
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(20)).await;
    assert!(
        sipp_status.success(),
        "every call ends with our BYE:\n{trace}"
    );

    if std::env::var_os("OUTDIAL_TEST_LOG").is_some() {
        eprintln!("{log}");
    }
    latencies.sort();
    eprintln!(
        "isolation: normal call alone {time_alone:?}, beside two runaways {time_beside:?} \
         (ratio {:.2}); API {} requests p50 {:?} p99 {:?} max {:?}; DELETE to canceled {cancel_took:?}",
        time_beside.as_secs_f64() / time_alone.as_secs_f64(),
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
}
