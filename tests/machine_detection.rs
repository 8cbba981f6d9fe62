//! Answering-machine detection end to end: `outdial serve` calls `bench callee` phones that
//! answer with real speech (espeak-ng through sox, then G.711): a person who says "Hello?"
//! and waits, and a voicemail greeting followed by its beep. Each request's
//! `machine_detection` mode decides what the call does with the verdict.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outdial_tests::{AppServer, BenchCallee, Outdial, TempDir, form_pairs};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Submits who answered (and the call's tag), then ends.
const APP: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block>
    <var name="who" expr="typeof session.connection.outdial == 'undefined' ? 'unclassified' : session.connection.outdial.answered_by"/>
    <var name="tag" expr="session.tag"/>
    <submit next="/submit" method="post" namelist="who tag"/>
  </block></form>
</vxml>"#;

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml"><form><block><exit/></block></form></vxml>"#;

/// Runs a command that makes audio; its failure names the missing tool.
fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install espeak-ng and sox (the README's test command does)"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

/// `text` spoken by espeak-ng as 8 kHz mono 16-bit PCM, with `before` and `after` seconds of
/// silence around it.
fn speech(dir: &Path, name: &str, text: &str, before: &str, after: &str) -> String {
    let raw = dir.join(format!("{name}-raw.wav"));
    let out = dir.join(format!("{name}.wav"));
    run(
        "espeak-ng",
        &["-v", "en-us", "-w", &raw.to_string_lossy(), text],
    );
    run(
        "sox",
        &[
            &raw.to_string_lossy(),
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            &out.to_string_lossy(),
            "pad",
            before,
            after,
        ],
    );
    out.to_string_lossy().into_owned()
}

/// A voicemail greeting, then a 1 kHz beep of 0.5 s, then silence.
fn voicemail(dir: &Path) -> String {
    let greeting = speech(
        dir,
        "greeting",
        "Hi, you have reached the Smith family. We cannot take your call right now. \
         Please leave a message after the tone.",
        "0.3",
        "0.4",
    );
    let beep = dir.join("beep.wav");
    let out = dir.join("voicemail.wav");
    run(
        "sox",
        &[
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            &beep.to_string_lossy(),
            "synth",
            "0.5",
            "sine",
            "1000",
            "vol",
            "0.5",
        ],
    );
    run(
        "sox",
        &[
            &greeting,
            &beep.to_string_lossy(),
            &out.to_string_lossy(),
            "pad",
            "0",
            "20",
        ],
    );
    out.to_string_lossy().into_owned()
}

fn phone(prompt: &str) -> BenchCallee {
    BenchCallee::with_args(&["--media", "prompt", "--prompt", prompt, "--max-call", "60"])
}

async fn place(outdial: &Outdial, app: &AppServer, to: String, mode: &str, tag: &str) -> String {
    let mut body = json!({
        "to": to,
        "url": app.url("/app.vxml"),
        "vars": { "tag": tag },
    });
    if mode != "off" {
        body["machine_detection"] = json!(mode);
    }
    let (status, created) = outdial.create_call(&body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created.get("machine_detection").and_then(Value::as_str),
        (mode != "off").then_some(mode),
        "{created}"
    );
    created["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_acts_on_a_person_and_a_voicemail() {
    let dir = TempDir::new("amd");
    let hello = speech(dir.path(), "hello", "Hello?", "0.3", "8");
    let voicemail = voicemail(dir.path());
    let person = phone(&hello);
    let machine = phone(&voicemail);
    let app = AppServer::start().await;
    app.vxml("/app.vxml", APP);
    app.vxml("/submit", GOODBYE);
    let outdial = Outdial::start("");

    let cases = [
        ("person-detect", &person, "detect", "human"),
        ("person-hangup", &person, "hangup", "human"),
        ("machine-detect", &machine, "detect", "machine"),
        ("machine-hangup", &machine, "hangup", "machine"),
        ("machine-beep", &machine, "wait_for_beep", "machine"),
        ("person-off", &person, "off", ""),
    ];
    let mut calls = Vec::new();
    // The harness gives a server RTP ports for 6 calls at once (3 a core): two waves of three.
    for wave in cases.chunks(3) {
        let mut ids = Vec::new();
        for (tag, callee, mode, _) in wave {
            let to = format!("sip:{tag}@{}", callee.addr);
            ids.push(place(&outdial, &app, to, mode, tag).await);
        }
        for id in &ids {
            calls.push(outdial.wait_final(id, CALL_TIMEOUT).await);
        }
    }
    let submits: Vec<_> = {
        let received = app.received();
        for ((tag, _, mode, expected), call) in cases.iter().zip(&calls) {
            let context = format!(
                "{tag}: {call}\nperson:\n{}\nmachine:\n{}\n{}",
                person.output(),
                machine.output(),
                outdial.log()
            );
            assert_eq!(call["status"], "completed", "{context}");
            let submitted: Vec<_> = received
                .iter()
                .filter(|r| r.path == "/submit")
                .map(|r| form_pairs(&r.body))
                .filter(|pairs| pairs.contains(&("tag".to_owned(), (*tag).to_owned())))
                .collect();
            if *mode == "off" {
                assert!(call.get("answered_by").is_none(), "{context}");
                assert_eq!(
                    submitted,
                    [vec![
                        ("who".to_owned(), "unclassified".to_owned()),
                        ("tag".to_owned(), (*tag).to_owned())
                    ]],
                    "{context}"
                );
                continue;
            }
            assert_eq!(call["answered_by"], *expected, "{context}");
            if *mode == "hangup" && *expected == "machine" {
                // The application never ran: the call ended on the verdict.
                assert!(submitted.is_empty(), "{context}");
                assert!(
                    call["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("a machine answered")),
                    "{context}"
                );
            } else {
                assert_eq!(
                    submitted,
                    [vec![
                        ("who".to_owned(), (*expected).to_owned()),
                        ("tag".to_owned(), (*tag).to_owned())
                    ]],
                    "{context}"
                );
            }
            // The verdict is in the call's history.
            let (status, history) = outdial
                .request(
                    &outdial.api_key,
                    reqwest::Method::GET,
                    &format!("/v1/calls/{}/events", call["id"].as_str().unwrap_or("")),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{history}");
            let said = format!(
                "answered by {}",
                if *expected == "human" {
                    "a person"
                } else {
                    "a machine"
                }
            );
            assert!(
                history["events"].as_array().is_some_and(|events| events
                    .iter()
                    .any(|e| e["cause"].as_str().is_some_and(|c| c.starts_with(&said)))),
                "{tag}: {history}"
            );
        }
        calls
    };
    assert_eq!(submits.len(), cases.len());
    // wait_for_beep started the application only once the beep had ended.
    assert!(
        outdial.log().contains("machine beep heard"),
        "{}",
        outdial.log()
    );
    let cdrs = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/cdrs", None)
        .await
        .1;
    let classified = cdrs["cdrs"]
        .as_array()
        .map(|cdrs| cdrs.iter().filter(|c| c["answered_by"].is_string()).count());
    assert_eq!(classified, Some(5), "{cdrs}");
}
