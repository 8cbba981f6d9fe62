//! End-to-end operability: the real `outdial serve` as an operator runs it — one server per
//! data directory, bounded HTTP connections with file descriptors kept for calls, readiness,
//! draining on SIGTERM, and metrics.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use outdial_tests::{AppServer, Outdial, Sipp};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Answered, the application waits four seconds for a key, then hangs up: the call ends on
/// its own, `completed`.
const SHORT_APP: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <property name="timeout" value="4s"/>
    <field name="key" type="digits"><noinput><disconnect/></noinput></field>
  </form>
</vxml>
"#;

/// A second server on the same data directory refuses to start, names the first one, and
/// leaves the first one's live call alone (it used to mark it `failed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let sipp = Sipp::uas("ring_forever.xml", &[]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550101"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
            "ring_timeout": 60,
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let ringing = outdial.wait_status(id, "ringing", CALL_TIMEOUT).await;
    assert_eq!(ringing["status"], "ringing", "{ringing}");

    let (exit, output) = tokio::task::block_in_place(|| outdial.second_on_same_data());
    assert_eq!(exit.code(), Some(1), "{output}");
    assert!(
        output.contains("is in use by another `outdial serve`")
            && output.contains(&format!("pid {}", outdial.pid())),
        "{output}"
    );
    let still = outdial.get_call(id).await;
    assert_eq!(
        still["status"], "ringing",
        "the first server's call is untouched: {still}"
    );

    let (status, body) = outdial.cancel_call(id).await;
    assert_eq!(status, 202, "{body}");
    let call = outdial.wait_final(id, Duration::from_secs(20)).await;
    assert_eq!(call["status"], "canceled", "{call}");
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
}

/// Sends `request` on `stream` and reads one HTTP/1.1 answer; returns (status, body).
fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).expect("send request");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {line:?}"));
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("content-length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// More idle connections than the server has file descriptors: the server serves what its
/// cap allows (its descriptor limit minus the reserve for calls), answers the rest 503 or
/// closes them, and a call placed over one of the held connections still gets its RTP port
/// and completes. (Before the cap, 1,100 idle connections made calls fail with "cannot bind
/// an RTP port: Too many open files".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_are_refused_and_calls_still_get_descriptors() {
    const FD_LIMIT: u32 = 600;
    const MAX_CALLS: u64 = 50;
    const CONNECTIONS: usize = 800;
    // The server's own arithmetic: limit - 256 - 5 per call.
    let cap = (u64::from(FD_LIMIT) - 256 - 5 * MAX_CALLS) as usize;

    let app = AppServer::start().await;
    app.vxml("/app.vxml", SHORT_APP);
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let outdial = Outdial::start_with_http(
        "header_timeout_secs = 300\nidle_timeout_secs = 300",
        &format!("[calls]\nmax_concurrent = {MAX_CALLS}\n"),
        Some(FD_LIMIT),
    );
    assert!(
        outdial.log().contains(&format!("up to {cap} connections")),
        "{}",
        outdial.log()
    );
    let addr = outdial.api.trim_start_matches("http://").to_owned();

    let (mut held, refused) = tokio::task::block_in_place(|| {
        let mut open: Vec<(TcpStream, Vec<u8>)> = (0..CONNECTIONS)
            .map(|_| {
                let stream = TcpStream::connect(&addr).expect("connect");
                stream.set_nonblocking(true).expect("nonblocking");
                (stream, Vec::new())
            })
            .collect();
        // The server accepts them in its own time: watch until only the cap's worth is open
        // (each refused one is answered and closed; the held ones stay silent).
        let (mut refused, mut answered_503) = (0, 0);
        let deadline = Instant::now() + CALL_TIMEOUT;
        while open.len() > cap && Instant::now() < deadline {
            open.retain_mut(|(stream, answer)| {
                let mut chunk = [0u8; 512];
                loop {
                    match stream.read(&mut chunk) {
                        Ok(0) => {
                            refused += 1;
                            let text = String::from_utf8_lossy(answer);
                            if !text.is_empty() {
                                assert!(
                                    text.starts_with("HTTP/1.1 503")
                                        && text.contains("too_many_connections"),
                                    "{text}"
                                );
                                answered_503 += 1;
                            }
                            return false;
                        }
                        Ok(n) => answer.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                        Err(e) => panic!("unexpected error on an idle connection: {e}"),
                    }
                }
            });
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(answered_503 > 0, "refused connections are told why");
        let held: Vec<TcpStream> = open
            .into_iter()
            .map(|(stream, answer)| {
                assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(CALL_TIMEOUT))
                    .expect("timeout");
                stream
            })
            .collect();
        (held, refused)
    });
    assert_eq!(held.len(), cap, "{}", outdial.log());
    assert_eq!(refused, CONNECTIONS - cap);

    // A call over one of the held connections: created, placed, completed.
    let mut stream = held.pop().expect("a held connection");
    let key = outdial.api_key.clone();
    let body = json!({ "to": sipp.uri("+15550102"), "url": app.url("/app.vxml") }).to_string();
    let (status, created) = tokio::task::block_in_place(|| {
        exchange(
            &mut stream,
            &format!(
                "POST /v1/calls HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    });
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).expect("JSON");
    let id = created["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + CALL_TIMEOUT;
    let call = loop {
        let (status, call) = tokio::task::block_in_place(|| {
            exchange(
                &mut stream,
                &format!(
                    "GET /v1/calls/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\r\n"
                ),
            )
        });
        assert_eq!(status, 200, "{call}");
        let call: Value = serde_json::from_str(&call).expect("JSON");
        if call["ended_at"].is_string() {
            break call;
        }
        assert!(Instant::now() < deadline, "{call}\n{}", outdial.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert!(
        !outdial.log().contains("Too many open files"),
        "{}",
        outdial.log()
    );
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
}

/// SIGTERM drains: `/readyz` turns 503 `draining`, the API still answers and queues new
/// calls without placing them, the live call runs on to its own end (`completed`, not hung
/// up), and then the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_live_calls_and_places_no_new_ones() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", SHORT_APP);
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let mut outdial = Outdial::start("[calls]\ndrain_grace_secs = 60\n");
    let client = reqwest::Client::new();
    let readyz = |client: reqwest::Client, api: String| async move {
        let response = client
            .get(format!("{api}/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("JSON"))
    };
    let (status, ready) = readyz(client.clone(), outdial.api.clone()).await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &json!("ready")),
        "{ready}"
    );

    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550103"), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let live = created["id"].as_str().expect("id").to_owned();
    let call = outdial
        .wait_status(&live, "in-progress", CALL_TIMEOUT)
        .await;
    assert_eq!(call["status"], "in-progress", "{call}");

    outdial.signal_terminate();
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let (status, ready) = readyz(client.clone(), outdial.api.clone()).await;
        if status == 503 {
            assert_eq!(ready["status"], "draining", "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "never draining: {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, queued) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550104"), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(
        status, 201,
        "calls are still accepted while draining: {queued}"
    );
    let queued = queued["id"].as_str().expect("id").to_owned();
    let (first, second) = (
        outdial.get_call(&live).await,
        outdial.get_call(&queued).await,
    );
    assert_eq!(first["status"], "in-progress", "{first}");
    assert_eq!(second["status"], "queued", "{second}");

    let exit = loop {
        if let Some(exit) = outdial.exited() {
            break exit;
        }
        assert!(Instant::now() < deadline, "{}", outdial.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit}\n{}", outdial.log());
    let log = outdial.log();
    assert!(log.contains("draining"), "{log}");
    assert!(
        !log.contains("hanging up live calls"),
        "the call ended within the grace: {log}"
    );
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    assert_eq!(
        trace.matches("INVITE sip:").count(),
        1,
        "one call placed, not two:\n{trace}"
    );

    tokio::task::block_in_place(|| outdial.restart());
    let first = outdial.get_call(&live).await;
    assert_eq!(first["status"], "completed", "{first}");
    let reason = first["reason"].as_str().unwrap_or_default();
    assert!(!reason.contains("shutting down"), "{first}");
}

/// The metrics of a real server, scraped right after start: every sample belongs to a family
/// with `# HELP` and `# TYPE`, counters (and only counters) end in `_total`, and the series
/// operators alert on are there before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_has_help_and_type_from_start() {
    let outdial = Outdial::start("");
    let text = outdial.metrics_text().await;
    let mut help = std::collections::HashSet::new();
    let mut types = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("help text");
            assert!(!text.trim().is_empty(), "{line}");
            help.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type");
            types.insert(name.to_owned(), kind.to_owned());
        }
    }
    let mut samples = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        samples += 1;
        let name = line.split(['{', ' ']).next().expect("name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(help.contains(family), "no # HELP for {family}:\n{text}");
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("no # TYPE for {family}:\n{text}"));
        assert_eq!(
            family.ends_with("_total"),
            kind == "counter",
            "{family} is a {kind}"
        );
    }
    assert!(samples > 20, "{text}");
    for family in [
        "outdial_calls_ended_total",
        "outdial_calls_in_flight",
        "outdial_webhook_failures_total",
        "outdial_http_connections_refused_total",
        "outdial_core_alive",
        "outdial_core_long_turns_total{core=\"0\",over=\"2ms\"}",
        "outdial_core_busy_ratio{core=\"0\"}",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} missing at start:\n{text}"
        );
    }
    // A datagram to core 0's SIP port is a turn of its loop: the count moves within the
    // second's publication.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe
        .send_to(b"\r\n\r\n", outdial.sip)
        .expect("keep-alive to core 0");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = outdial.metrics_text().await;
        let turns: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("outdial_core_turns_total{core=\"0\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no turn count for core 0:\n{text}"));
        if turns > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "core 0 counted no turn:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for histogram in [
        "outdial_call_setup_seconds",
        "outdial_post_dial_delay_seconds",
        "outdial_answer_to_prompt_seconds",
    ] {
        assert_eq!(
            types.get(histogram).map(String::as_str),
            Some("histogram"),
            "{text}"
        );
    }
    assert!(
        text.contains("outdial_build_info{") && text.contains("version=\""),
        "{text}"
    );
    assert!(
        text.contains("outdial_calls_ended_total{status=\"busy\"} 0"),
        "{text}"
    );
}

/// Info-level logs carry the call id on every per-call line, no Rust `Debug` dumps, status
/// words as the API spells them, and no personal data: the callee number and the
/// application's `<log>` text are masked (`[log] redact` defaults to true). Each API request
/// has a debug access line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_are_redacted_and_free_of_debug_dumps() {
    const APP: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><log>the PIN is 4321</log><disconnect/></block></form>
</vxml>
"#;
    let app = AppServer::start().await;
    app.vxml("/app.vxml", APP);
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550109876"), "url": app.url("/app.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "completed", "{call}");
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");

    let log = outdial.log();
    let info: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("outdial_control"))
        .collect();
    let per_call: Vec<&&str> = info.iter().filter(|l| l.contains(&id)).collect();
    for needle in ["dialing", "answered", "vxml log", "attempt finished"] {
        assert!(
            per_call.iter().any(|l| l.contains(needle)),
            "no `{needle}` line with the call id:\n{log}"
        );
    }
    assert!(
        per_call.iter().any(|l| l.contains("status=completed")),
        "{log}"
    );
    // From the answer on, every line of the call names its SIP Call-ID, as stored.
    let sip_call_id = call["sip_call_id"].as_str().expect("sip_call_id");
    for needle in ["answered", "vxml log", "attempt finished"] {
        assert!(
            per_call
                .iter()
                .any(|l| l.contains(needle) && l.contains(&format!("sip_call_id={sip_call_id}"))),
            "no `{needle}` line with the SIP Call-ID {sip_call_id}:\n{log}"
        );
    }
    assert!(
        per_call
            .iter()
            .any(|l| l.contains("[redacted: 15 characters]")),
        "{log}"
    );
    for line in &info {
        assert!(
            !line.contains("15550109876"),
            "callee number at info: {line}"
        );
        // The whole phrase: the digits alone also turn up in random SIP Call-IDs.
        assert!(!line.contains("PIN is 4321"), "<log> text at info: {line}");
        assert!(
            !line.contains("Some(") && !line.contains(" { "),
            "Debug formatting: {line}"
        );
    }
    assert!(
        log.lines().any(|l| l.contains(" DEBUG ")
            && l.contains("outdial_control::access")
            && l.contains("method=\"POST\"")
            && l.contains("path=\"/v1/calls\"")
            && l.contains("status=201")),
        "no access line for the POST:\n{log}"
    );
}

/// `outdial call --config FILE` finds the server and its key from the server's own
/// configuration; Ctrl-C (SIGINT) without a terminal to ask on cancels the call through the
/// API instead of leaving it ringing, and the command reports the canceled call (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_outdial_call_cancels_the_call() {
    let sipp = Sipp::uas("ring_forever.xml", &[]);
    let outdial = Outdial::start("");
    let config = outdial.dir.path().join("outdial.toml");
    let child = std::process::Command::new(outdial_tests::outdial_bin())
        .arg("call")
        .arg("--config")
        .arg(&config)
        .args(["--to", &sipp.uri("+15550107")])
        .args(["--url", "http://127.0.0.1:9/never-fetched.vxml"])
        .args(["--ring-timeout", "60", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn outdial call");
    // Wait until the server has a ringing call, then interrupt the command.
    let deadline = Instant::now() + CALL_TIMEOUT;
    let id = loop {
        let list: Value = reqwest::Client::new()
            .get(format!("{}/v1/calls", outdial.api))
            .bearer_auth(&outdial.api_key)
            .send()
            .await
            .expect("GET /v1/calls")
            .json()
            .await
            .expect("JSON");
        let ringing = list["calls"]
            .as_array()
            .and_then(|calls| calls.iter().find(|c| c["status"] == "ringing"));
        if let Some(call) = ringing {
            break call["id"].as_str().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "{list}\n{}", outdial.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    let output = tokio::task::block_in_place(|| child.wait_with_output()).expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("canceling {id}")), "{stderr}");
    let record: Value = serde_json::from_str(&stdout).expect("the final record as JSON");
    assert_eq!(record["status"], "canceled", "{record}");
    let call = outdial.get_call(&id).await;
    assert_eq!(call["status"], "canceled", "{call}");
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "SIPp expected our CANCEL:\n{trace}");
}

/// `outdial config check` refuses what `serve` would only warn about or misread: a log level
/// that is not one, and a text-to-speech program that does not exist.
#[test]
fn config_check_refuses_unknown_log_levels_and_missing_tts() {
    let dir = std::env::temp_dir().join(format!("outdial-ops-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let check = |text: &str| {
        let path = dir.join("o.toml");
        std::fs::write(&path, text).expect("write");
        let output = std::process::Command::new(outdial_tests::outdial_bin())
            .args(["config", "check"])
            .arg(&path)
            .output()
            .expect("run config check");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(check("[tts]\ncommand = \"sh\"\n").0, Some(0));
    let (code, message) = check("[log]\nlevel = \"verbose\"\n[tts]\ncommand = \"sh\"\n");
    assert_eq!(code, Some(1), "{message}");
    assert!(
        message.contains("log.level") && message.contains("verbose"),
        "{message}"
    );
    let (code, message) = check("[tts]\ncommand = \"no-such-speaker\"\n");
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("tts.command"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dataplane comes first: the started server's core threads run under `SCHED_FIFO` at
/// `[dataplane] realtime_priority` (this test runs as root in CI; as another user without
/// `RLIMIT_RTPRIO` they stay at normal priority and the log says why), and every other
/// thread runs at `control_nice`; transparent huge pages are off for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cores_run_under_sched_fifo_and_control_below_them() {
    let outdial =
        Outdial::start("[dataplane]\ncores = 2\nrealtime_priority = 7\ncontrol_nice = 9\n");
    let readable = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let mut cores = Vec::new();
    let mut others = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{}/task", outdial.pid())).expect("tasks");
    for task in tasks.flatten() {
        let name = readable(task.path().join("comm")).trim_end().to_owned();
        // Fields after the name's closing parenthesis: nice is the 17th, rt_priority the
        // 38th and policy the 39th (proc(5), counting from state).
        let stat = readable(task.path().join("stat"));
        let fields: Vec<i64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(1)
                    .map(|f| f.parse().unwrap_or(-1))
                    .collect()
            })
            .unwrap_or_default();
        let (nice, rt_priority, policy) = (fields[15], fields[36], fields[37]);
        if name.starts_with("outdial-core-") {
            cores.push((name, rt_priority, policy));
        } else {
            others.push((name, nice, policy));
        }
    }
    cores.sort();
    // Effective uid 0: the second number of /proc/self/status's `Uid:` line.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    // sched(7): SCHED_OTHER is 0, SCHED_FIFO 1.
    let expected = if root { (7, 1) } else { (0, 0) };
    assert_eq!(cores.len(), 2, "{cores:?}");
    for (name, rt_priority, policy) in &cores {
        assert_eq!((*rt_priority, *policy), expected, "{name}");
    }
    if !root {
        assert!(
            outdial.log().contains("SCHED_FIFO needs root"),
            "{}",
            outdial.log()
        );
    }
    assert!(!others.is_empty());
    for (name, nice, policy) in &others {
        assert_eq!((*nice, *policy), (9, 0), "{name}");
    }
    // And no core stalls zeroing a transparent huge page in a fault: they are off for the
    // whole process (`control/src/huge_pages.rs`).
    let served = readable(format!("/proc/{}/status", outdial.pid()).into());
    assert!(
        served.lines().any(|line| line == "THP_enabled:\t0"),
        "{served}"
    );
}
