//! End-to-end: `outdial bench callee` and `outdial bench sip` against the real `outdial
//! serve` and a real SIPp, over loopback, at small scale (no timing assertions).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use outdial_tests::{AppServer, Outdial, TempDir, free_udp_port, outdial_bin};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Reads a code ended by # and submits it.
const CODE_APP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form id="code">
    <field name="code" type="digits">
      <prompt>Enter your code, then press pound.</prompt>
      <noinput>Please enter your code. <reprompt/></noinput>
      <filled>
        <submit next="submit" namelist="code" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#;

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you.</prompt><disconnect/></block></form>
</vxml>
"#;

/// A child process (bench tool or SIPp) with its output in files, killed on drop.
struct Tool {
    child: Option<Child>,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Tool {
    fn spawn(dir: &TempDir, name: &str, command: &mut Command) -> Self {
        let stdout = dir.path().join(format!("{name}.out"));
        let stderr = dir.path().join(format!("{name}.err"));
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e} (SIPp: apt-get install sip-tester)"));
        Self {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Waits for the exit (killing it after `timeout`); returns the status and stdout.
    async fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                break child.wait().expect("wait child");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        (
            status,
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until something has bound UDP `port` on loopback (the tool is listening).
async fn wait_bound(port: u16, tool: &Tool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port}: {}",
            tool.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `outdial bench callee` on a free port with `args`, writing its per-call report in `dir`.
fn callee(dir: &TempDir, port: u16, args: &[&str]) -> Tool {
    let mut command = Command::new(outdial_bin());
    command
        .args(["bench", "callee", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--progress", "0", "--json", "--report"])
        .arg(dir.path().join("report.jsonl"))
        .args(args);
    Tool::spawn(dir, "callee", &mut command)
}

fn report_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("callee report")
        .lines()
        .map(|line| serde_json::from_str(line).expect("report line is JSON"))
        .collect()
}

/// Outdial dials `bench callee` with press-<digits> users; the application reads the digits;
/// every call's submitted code is what the callee says it pressed (then #).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outdial_calls_bench_callee_and_every_submitted_code_is_what_the_callee_pressed() {
    let dir = TempDir::new("bench-callee");
    let port = free_udp_port();
    let codes = ["4821", "7", "0099", "135"];
    let phones = callee(&dir, port, &["--dtmf", "from-uri", "--calls", "4"]);
    wait_bound(port, &phones).await;
    let app = AppServer::start().await;
    app.vxml("/app.vxml", CODE_APP);
    app.vxml("/submit", GOODBYE);
    let outdial = Outdial::start("");

    let mut ids = Vec::new();
    for code in codes {
        let (status, created) = outdial
            .create_call(&json!({
                "to": format!("sip:press-{code}@127.0.0.1:{port}"),
                "url": app.url("/app.vxml"),
            }))
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let mut calls = Vec::new();
    for id in &ids {
        calls.push(outdial.wait_final(id, CALL_TIMEOUT).await);
    }
    let (status, summary) = phones.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "bench callee failed: {summary}");
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    let records = report_lines(&dir.path().join("report.jsonl"));

    for (code, call) in codes.iter().zip(&calls) {
        assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
        assert_eq!(call["result"], json!({ "code": code }), "{call}");
        let sip_call_id = call["sip_call_id"].as_str().expect("sip_call_id");
        let record = records
            .iter()
            .find(|r| r["call_id"] == sip_call_id)
            .unwrap_or_else(|| panic!("no callee record for {sip_call_id}: {records:?}"));
        assert_eq!(record["user"], format!("press-{code}"));
        assert_eq!(record["keys_sent"], format!("{code}#"), "{record}");
        assert_eq!(record["outcome"], "answered");
        assert_eq!(record["ended_by"], "caller", "Outdial hung up: {record}");
        assert!(record["rx"]["packets"].as_u64() > Some(0), "{record}");
    }
    assert_eq!(records.len(), 4);
    assert_eq!(summary["calls"], 4);
    assert_eq!(summary["outcomes"], json!({ "answered": 4 }));
    let pressed: usize = codes.iter().map(|c| c.len() + 1).sum();
    assert_eq!(summary["keys_sent"], pressed);
}

/// SIPp's built-in uac completes its calls against `bench callee`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_completes_its_calls_against_bench_callee() {
    let dir = TempDir::new("bench-callee-sipp");
    let port = free_udp_port();
    let phones = callee(&dir, port, &["--calls", "40"]);
    wait_bound(port, &phones).await;
    let uac = Tool::spawn(
        &dir,
        "sipp",
        Command::new("sipp")
            .args(["-sn", "uac"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-i", "127.0.0.1", "-p"])
            .arg(free_udp_port().to_string())
            .args(["-r", "20", "-m", "40", "-nostdin", "-timeout", "60s"])
            .args(["-timeout_error", "-trace_stat", "-fd", "1"]),
    );
    let (sipp_status, _) = uac.finish(Duration::from_secs(90)).await;
    let (status, summary) = phones.finish(Duration::from_secs(30)).await;
    let stats = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "csv"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect::<String>();
    assert!(sipp_status.success(), "SIPp uac failed: {stats}");
    assert!(status.success(), "bench callee failed: {summary}");
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    assert_eq!(summary["calls"], 40, "{summary}");
    assert_eq!(summary["outcomes"], json!({ "answered": 40 }));
    let records = report_lines(&dir.path().join("report.jsonl"));
    assert_eq!(records.len(), 40);
    assert!(
        records.iter().all(|r| r["ended_by"] == "caller"),
        "{records:?}"
    );
}

/// `bench sip` completes its calls against SIPp's built-in uas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sip_completes_its_calls_against_sipp_uas() {
    let dir = TempDir::new("bench-sip");
    let port = free_udp_port();
    let uas = Tool::spawn(
        &dir,
        "sipp",
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-m", "40", "-nostdin", "-timeout", "60s", "-timeout_error"]),
    );
    wait_bound(port, &uas).await;
    let load = Tool::spawn(
        &dir,
        "bench-sip",
        Command::new(outdial_bin())
            .args(["bench", "sip"])
            .arg(format!("sip:service@127.0.0.1:{port}"))
            .args(["--rate", "20", "--calls", "40", "--progress", "0", "--json"]),
    );
    let (status, summary) = load.finish(Duration::from_secs(90)).await;
    let (sipp_status, _) = uas.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "bench sip failed: {summary}");
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    assert_eq!(
        (
            &summary["dialed"],
            &summary["completed"],
            &summary["failed"]
        ),
        (&json!(40), &json!(40), &json!(0)),
        "{summary}"
    );
    assert_eq!(summary["setup_us"]["count"], 40);
    assert!(sipp_status.success(), "SIPp uas did not see 40 good calls");
}

/// `bench sip --media` against `bench callee` echoing: both count the other's RTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sip_with_media_against_an_echoing_bench_callee() {
    let dir = TempDir::new("bench-media");
    let port = free_udp_port();
    let phones = callee(&dir, port, &["--media", "echo", "--calls", "5"]);
    wait_bound(port, &phones).await;
    let load = Tool::spawn(
        &dir,
        "bench-sip",
        Command::new(outdial_bin())
            .args(["bench", "sip"])
            .arg(format!("sip:echo@127.0.0.1:{port}"))
            .args(["--concurrency", "5", "--calls", "5", "--hold", "1000"])
            .args(["--media", "--progress", "0", "--json"]),
    );
    let (status, summary) = load.finish(Duration::from_secs(60)).await;
    let (callee_status, callee_summary) = phones.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "bench sip failed: {summary}");
    assert!(
        callee_status.success(),
        "bench callee failed: {callee_summary}"
    );
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    assert_eq!(summary["completed"], 5, "{summary}");
    let (sent, received) = (
        summary["rtp_sent"].as_u64().unwrap_or(0),
        summary["rtp_received"].as_u64().unwrap_or(0),
    );
    assert!(sent > 0 && received > 0, "{summary}");
    assert!(received <= sent, "only echoes come back: {summary}");
    let records = report_lines(&dir.path().join("report.jsonl"));
    assert_eq!(records.len(), 5);
    for record in &records {
        let rx = record["rx"]["packets"].as_u64().unwrap_or(0);
        assert!(rx > 0, "{record}");
        assert_eq!(
            record["tx_packets"], rx,
            "every packet echoed once: {record}"
        );
    }
}

/// SIGTERM stops `bench callee`, which still prints its summary and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_callee_stops_on_sigterm_with_its_summary() {
    let dir = TempDir::new("bench-callee-term");
    let port = free_udp_port();
    let phones = callee(&dir, port, &[]);
    wait_bound(port, &phones).await;
    let pid = phones.child.as_ref().expect("child").id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let (status, summary) = phones.finish(Duration::from_secs(30)).await;
    assert!(status.success(), "{summary}");
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    assert_eq!(summary["calls"], 0);
}
