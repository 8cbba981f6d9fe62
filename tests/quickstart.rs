//! The README's "Your first call, on one machine", command by command: `outdial serve`,
//! `outdial bench callee` as the phone, `outdial bench appserver --dir docs/examples`, the
//! call placed with curl. The only difference from the README is the ports (free ones, so
//! tests run side by side).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outdial_tests::{Outdial, TempDir, free_tcp_port, free_udp_port, outdial_bin, project_root};
use serde_json::Value;

/// A child process killed on drop, its output in a file.
struct Running {
    child: Child,
    output: std::path::PathBuf,
}

impl Running {
    fn start(dir: &TempDir, name: &str, args: &[&str]) -> Self {
        let output = dir.path().join(format!("{name}.out"));
        let file = std::fs::File::create(&output).expect("output file");
        let child = Command::new(outdial_bin())
            .args(args)
            .current_dir(project_root())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn outdial");
        Self { child, output }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits until the output has a line containing `wanted`.
    fn wait_for(&self, wanted: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.lines().any(|l| l.contains(wanted)) {
                return output;
            }
            assert!(Instant::now() < deadline, "no {wanted:?} in:\n{output}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quickstart_places_a_call_and_prints_the_submit() {
    assert!(Path::new(&project_root().join("docs/examples/order.vxml")).is_file());
    let outdial = Outdial::start("");
    let dir = TempDir::new("quickstart");
    let phone = format!("127.0.0.1:{}", free_udp_port());
    let apps = format!("127.0.0.1:{}", free_tcp_port());
    let callee = Running::start(
        &dir,
        "callee",
        &["bench", "callee", "--listen", &phone, "--dtmf", "from-uri"],
    );
    let appserver = Running::start(
        &dir,
        "appserver",
        &[
            "bench",
            "appserver",
            "--dir",
            "docs/examples",
            "--listen",
            &apps,
        ],
    );
    appserver.wait_for("serving on", Duration::from_secs(20));
    // The phones must be up before the call dials them (else: ICMP port unreachable).
    callee.wait_for("listening on", Duration::from_secs(20));

    let body = format!(
        r#"{{"to":"sip:press-14711@{phone}","url":"http://{apps}/order.vxml",
       "vars":{{"customer":"Ada"}},"status_callback":"http://{apps}/status"}}"#
    );
    let curl = Command::new("curl")
        .args(["-s", &format!("{}/v1/calls", outdial.api)])
        .args(["-H", &format!("Authorization: Bearer {}", outdial.api_key)])
        .args(["-H", "Content-Type: application/json", "-d", &body])
        .output()
        .expect("curl: apt-get install curl");
    let created: Value = serde_json::from_slice(&curl.stdout).expect("curl printed the call");
    let id = created["id"].as_str().expect("an id").to_owned();

    let call = outdial.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{}\n{}",
        callee.output(),
        outdial.log()
    );
    assert_eq!(
        call["result"],
        serde_json::json!({ "number": "4711" }),
        "{call}"
    );
    let printed = appserver.wait_for(&format!("status {id} completed"), Duration::from_secs(30));
    assert!(
        printed.contains("submit POST /order number=4711"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "status {id} completed sip=200 result={{\"number\":\"4711\"}}"
        )),
        "{printed}"
    );
}
