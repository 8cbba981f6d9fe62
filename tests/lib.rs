//! Support for the end-to-end tests: the real `outdial` binary, a real SIPp, and a small
//! HTTP server that plays the third party (serves VoiceXML, records what is submitted).
//!
//! Everything runs on loopback with ephemeral ports so tests can run side by side.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The project root (where `Cargo.toml` of the workspace is).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `bash bench/SCRIPT ARGS…` on the debug binary (`OUTDIAL_BIN`) with its temporary
/// files in a fresh directory; prints its standard output and returns it, with the directory
/// (the script's logs live there until it is dropped), after requiring that it succeeded.
pub fn run_bench_script(script: &str, args: &[&str]) -> (TempDir, String) {
    let dir = TempDir::new("bench-script");
    let output = Command::new("bash")
        .arg(project_root().join("bench").join(script))
        .args(args)
        .env("OUTDIAL_BIN", outdial_bin())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run bench/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "bench/{script} {args:?} failed (a call failed?): {}\n{stdout}\n{stderr}",
        output.status
    );
    (dir, stdout)
}

/// `../shared` beside the project root: corpora and conformance suites.
pub fn shared_dir() -> PathBuf {
    project_root().join("../shared")
}

/// The `outdial` binary built next to this test executable.
pub fn outdial_bin() -> PathBuf {
    // invariant: a test executable always has a path; it lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join("outdial");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p outdial-control --bin outdial` (.ci/run does)",
        bin.display()
    );
    bin
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `outdial-e2e-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU16 = AtomicU16::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("outdial-e2e-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("OUTDIAL_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The statuses a call never leaves.
pub const FINAL_STATUSES: [&str; 7] = [
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
    "expired",
    "refused",
];

/// True when the call record's status is final.
pub fn is_final(call: &Value) -> bool {
    call["status"]
        .as_str()
        .is_some_and(|s| FINAL_STATUSES.contains(&s))
}

/// (Request-URI, Call-ID) of every INVITE in a SIPp message trace (retransmissions included).
pub fn sip_invites(trace: &str) -> Vec<(String, String)> {
    let trace = trace.replace('\r', "");
    let mut found = Vec::new();
    for (at, _) in trace.match_indices("\nINVITE sip:") {
        let message = &trace[at + 1..];
        let end = message.find("\n\n").unwrap_or(message.len());
        let message = &message[..end];
        let uri = message
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let call_id = message
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                (name.eq_ignore_ascii_case("call-id") || name == "i").then(|| value.trim())
            })
            .unwrap_or_default()
            .to_owned();
        found.push((uri, call_id));
    }
    found
}

/// A UDP port free right now on 127.0.0.1 (even, with the next one free too: RTP convention).
pub fn free_udp_port() -> u16 {
    loop {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = socket.local_addr().expect("local addr").port();
        if port.is_multiple_of(2)
            && port < 65534
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

/// How long a call took from its dial to its end, by its record's `dialed_at` and
/// `ended_at` (the server's clock, not the test's polling).
pub fn dialed_to_ended(call: &Value) -> Duration {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let stamp = |name: &str| {
        call[name]
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .unwrap_or_else(|| panic!("{name} in {call}"))
    };
    let took = stamp("ended_at") - stamp("dialed_at");
    Duration::try_from(took).unwrap_or_default()
}

/// A SIP port for `outdial serve`: it and the next one (core 1) free for UDP and TCP, above
/// the kernel's ephemeral range (32768–60999), so no outgoing connection of this host takes
/// the TCP port between this check and the server's listen (`sip.tcp` is on by default).
/// Distinct per call in this process.
pub fn free_sip_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let first = (std::process::id() % 220) as u16 * 20;
    for _ in 0..2_200 {
        let offset = (first + NEXT.fetch_add(2, Ordering::Relaxed)) % 4_400;
        let port = 61_000 + offset;
        let free = |p: u16| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        };
        if free(port) && free(port + 1) {
            return port;
        }
    }
    panic!("no free SIP port pair between 61000 and 65400");
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    listener.local_addr().expect("local addr").port()
}

/// A block of 12 RTP ports below the kernel's ephemeral range, distinct per test in this
/// process (up to 20 servers a process): a call takes an RTP/RTCP pair, and each of a server's
/// cores (one per CPU) gets an equal share of the block, so 2 cores hold 3 calls each.
pub fn rtp_block() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % 20;
    let base = 21_000 + (std::process::id() % 40) as u16 * 250 + slot * 12;
    (base, base + 11)
}

/// A base port for SIPp's media (`-mp`: audio RTP and RTCP, video RTP and RTCP: four
/// ports), free right now, below the kernel's ephemeral range and outside the servers'
/// [`rtp_block`]s, distinct per test in this process: a port from the ephemeral range could
/// be taken by any other socket between this check and SIPp's bind (CI saw `errno 98`).
pub fn sipp_media_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..200 {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed) % 50;
        let port = 12_000 + (std::process::id() % 40) as u16 * 200 + slot * 4;
        let free = (port..port + 4)
            .take_while(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .count();
        if free == 4 {
            return port;
        }
    }
    panic!("no four free UDP ports for SIPp's media in 12000-19999 on 127.0.0.1");
}

/// Spawns `outdial serve --config config_path`, appending its output to `dir/outdial.log`.
fn launch(dir: &TempDir, config_path: &Path) -> Child {
    launch_limited(dir, config_path, None)
}

/// Like [`launch`], with the file descriptor limit (soft and hard) set to `fd_limit`.
fn launch_limited(dir: &TempDir, config_path: &Path, fd_limit: Option<u32>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("outdial.log"))
        .expect("log file");
    let mut command = match fd_limit {
        Some(limit) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(outdial_bin());
            sh
        }
        None => Command::new(outdial_bin()),
    };
    command
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .env(
            "RUST_LOG",
            // `Outdial::start_with_rust_log` leaves its filter in the directory.
            std::fs::read_to_string(dir.path().join("rust-log"))
                .unwrap_or_else(|_| "info,outdial_control=debug,outdial_dataplane=debug".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .spawn()
        .expect("spawn outdial serve")
}

/// A running `outdial serve`, killed on drop.
pub struct Outdial {
    child: Child,
    /// Base URL of its HTTP API.
    pub api: String,
    /// The development tenant's API key.
    pub api_key: String,
    /// Where its SIP core 0 listens.
    pub sip: SocketAddr,
    /// Its data directory (SQLite store, dev key, log).
    pub dir: TempDir,
}

impl Outdial {
    /// Starts the binary with a config on free ports; `extra` is appended to the TOML
    /// (e.g. `[calls]\nring_timeout_secs = 2`).
    pub fn start(extra_sections: &str) -> Self {
        let (dir, config_path, data_dir) = Self::write_config_on("127.0.0.1", "", extra_sections);
        Self::spawn(dir, &config_path, &data_dir)
    }

    /// Like [`Outdial::start`], logging with the `RUST_LOG` filter `rust_log`.
    pub fn start_with_rust_log(rust_log: &str, extra_sections: &str) -> Self {
        let (dir, config_path, data_dir) = Self::write_config_on("127.0.0.1", "", extra_sections);
        std::fs::write(dir.path().join("rust-log"), rust_log).expect("write rust-log");
        Self::spawn(dir, &config_path, &data_dir)
    }

    /// Like [`Outdial::start`], with `http_lines` added to the `[http]` section and the file
    /// descriptor limit set to `fd_limit` (with `ulimit -n`) when given.
    pub fn start_with_http(http_lines: &str, extra_sections: &str, fd_limit: Option<u32>) -> Self {
        let (dir, config_path, data_dir) = Self::write_config_on("127.0.0.1", "", extra_sections);
        let config = std::fs::read_to_string(&config_path).expect("read config");
        let config = config.replacen("[http]\n", &format!("[http]\n{http_lines}\n"), 1);
        std::fs::write(&config_path, config).expect("write config");
        Self::spawn_limited(dir, &config_path, &data_dir, fd_limit)
    }

    /// Like [`Outdial::start`], with `sip_lines` added to the `[sip]` section and
    /// `sip_listen_ip` instead of 127.0.0.1.
    pub fn start_with_sip(sip_listen_ip: &str, sip_lines: &str, extra_sections: &str) -> Self {
        let (dir, config_path, data_dir) =
            Self::write_config_on(sip_listen_ip, sip_lines, extra_sections);
        Self::spawn(dir, &config_path, &data_dir)
    }

    /// Runs `outdial serve` on a config expected to be refused; returns its exit status and output.
    pub fn refused(sip_listen_ip: &str, sip_lines: &str) -> (ExitStatus, String) {
        let (dir, config_path, _) = Self::write_config_on(sip_listen_ip, sip_lines, "");
        let output = Command::new(outdial_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .output()
            .expect("run outdial serve");
        drop(dir);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    }

    fn write_config_on(
        sip_listen_ip: &str,
        sip_lines: &str,
        extra_sections: &str,
    ) -> (TempDir, PathBuf, PathBuf) {
        let dir = TempDir::new("outdial");
        let http_port = free_tcp_port();
        let sip_port = free_sip_port();
        let (rtp_min, rtp_max) = rtp_block();
        let data_dir = dir.path().join("data");
        let config = format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
             [sip]\nlisten = \"{sip_listen_ip}:{sip_port}\"\n{sip_lines}\n\n\
             [rtp]\nport_min = {rtp_min}\nport_max = {rtp_max}\n\n\
             [store]\ndata_dir = \"{}\"\n\n{extra_sections}\n",
            data_dir.display()
        );
        let config_path = dir.path().join("outdial.toml");
        std::fs::write(&config_path, config).expect("write config");
        (dir, config_path, data_dir)
    }

    fn spawn(dir: TempDir, config_path: &Path, data_dir: &Path) -> Self {
        Self::spawn_limited(dir, config_path, data_dir, None)
    }

    fn spawn_limited(
        dir: TempDir,
        config_path: &Path,
        data_dir: &Path,
        fd_limit: Option<u32>,
    ) -> Self {
        let config = std::fs::read_to_string(config_path).expect("read config");
        let port = |section: &str| -> u16 {
            let start = config.find(section).expect("section");
            let line = config[start..]
                .lines()
                .find(|l| l.starts_with("listen"))
                .expect("listen");
            line.trim_end_matches('"')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port")
        };
        let (http_port, sip_port) = (port("[http]"), port("[sip]"));
        let child = launch_limited(&dir, config_path, fd_limit);
        let mut server = Self {
            child,
            api: format!("http://127.0.0.1:{http_port}"),
            api_key: String::new(),
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            dir,
        };
        server.wait_ready(data_dir);
        server
    }

    /// Sends SIGTERM and waits (up to 30 s) for the server to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "outdial serve ignored SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and returns at once (see [`Outdial::wait_exit`]).
    pub fn signal_terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// The exit status, once the server has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll child")
    }

    /// Starts the server again on the same configuration and data.
    pub fn restart(&mut self) {
        self.restart_after(|_| {});
    }

    /// [`Self::restart`], calling `between` with the data directory while no server runs
    /// (to read the store as the crash left it).
    pub fn restart_after(&mut self, between: impl FnOnce(&Path)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        between(&self.dir.path().join("data"));
        let config_path = self.dir.path().join("outdial.toml");
        self.child = launch(&self.dir, &config_path);
        let data_dir = self.dir.path().join("data");
        self.wait_ready(&data_dir);
    }

    fn wait_ready(&mut self, data_dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let key_file = data_dir.join("dev-api-key");
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                panic!(
                    "outdial serve exited early ({status}); log:\n{}",
                    self.log()
                );
            }
            let healthy = std::net::TcpStream::connect_timeout(
                &self
                    .api
                    .trim_start_matches("http://")
                    .parse()
                    .expect("addr"),
                Duration::from_millis(200),
            )
            .is_ok();
            if healthy && let Ok(key) = std::fs::read_to_string(&key_file) {
                self.api_key = key.trim().to_owned();
                if !self.api_key.is_empty() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "outdial serve not ready after 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a second `outdial serve` on this server's data directory (with its own HTTP and
    /// SIP ports) and waits for it to exit; returns its exit status and output.
    pub fn second_on_same_data(&self) -> (ExitStatus, String) {
        let (dir, config_path, _) = Self::write_config_on("127.0.0.1", "", "");
        let config = std::fs::read_to_string(&config_path).expect("read config");
        let mine = self.dir.path().join("data");
        let config = config.replace(
            &dir.path().join("data").display().to_string(),
            &mine.display().to_string(),
        );
        std::fs::write(&config_path, config).expect("write config");
        let output = Command::new(outdial_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .output()
            .expect("run outdial serve");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The RTP ports the server binds (`[rtp] port_min..=port_max` of its config).
    pub fn rtp_ports(&self) -> std::ops::RangeInclusive<u16> {
        let config =
            std::fs::read_to_string(self.dir.path().join("outdial.toml")).expect("read config");
        let key = |name: &str| -> u16 {
            config
                .lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .trim()
                        .strip_prefix('=')?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("{name} in {config}"))
        };
        key("port_min")..=key("port_max")
    }

    /// `GET /metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.api))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The sum of a Prometheus series (all its label sets) from `GET /metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("outdial.log")).unwrap_or_default()
    }

    /// Any API request with `key`, a body of `content_type` when given; returns (status,
    /// JSON, or the text as a JSON string when it is not JSON).
    pub async fn request(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(key);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST /v1/calls with `body`; returns (status, JSON).
    pub async fn create_call(&self, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/calls", self.api))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .expect("POST /v1/calls");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// GET /v1/calls/{id}.
    pub async fn get_call(&self, id: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v1/calls/{id}", self.api))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("GET /v1/calls/{id}")
            .json()
            .await
            .expect("JSON body")
    }

    /// DELETE /v1/calls/{id}; returns (status, JSON).
    pub async fn cancel_call(&self, id: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .delete(format!("{}/v1/calls/{id}", self.api))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("DELETE /v1/calls/{id}");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Polls until the call has status `wanted` (or any final status); returns the record.
    pub async fn wait_status(&self, id: &str, wanted: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let call = self.get_call(id).await;
            if call["status"] == wanted || call["ended_at"].is_string() {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "call {id} never reached {wanted}: {call}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the call until its status is final; panics with the server log after `timeout`.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let call = self.get_call(id).await;
            if is_final(&call) {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "call {id} not final after {timeout:?}: {call}\nserver log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Outdial {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The RFC 4733 event for `key` as SIPp plays it (`play_pcap_audio`), from the shared corpus.
pub fn dtmf_pcap(key: &str) -> String {
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

/// A phrase spoken by espeak-ng (`voice`, e.g. `en-us`) as a pcap of G.711 µ-law RTP that
/// SIPp plays (`play_pcap_audio`): 400 ms of line silence first (a phone's stream before
/// the caller speaks), the phrase, 200 ms of silence after; an empty `text` gives two
/// seconds of silence. Written into `dir`; the path.
pub fn speech_pcap(dir: &Path, text: &str, voice: &str) -> String {
    let wav = dir.join(format!("speech-{}.wav", text.len()));
    let raw = dir.join(format!("speech-{}.ul", text.len()));
    let pcap = dir.join(format!("speech-{}-{voice}.pcap", text.len()));
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install espeak-ng and sox"));
        assert!(status.success(), "{program} failed: {status}");
    };
    let mut audio = vec![0xffu8; 3200];
    if text.is_empty() {
        // Only the line's silence, two seconds of it.
        audio.resize(16_000, 0xff);
        std::fs::write(&pcap, rtp_pcap(&audio, 0)).expect("write pcap");
        return pcap.to_string_lossy().into_owned();
    }
    run(
        "espeak-ng",
        &[
            "-v".as_ref(),
            voice.as_ref(),
            "-w".as_ref(),
            wav.as_os_str(),
            text.as_ref(),
        ],
    );
    run(
        "sox",
        &[
            wav.as_os_str(),
            "-r".as_ref(),
            "8000".as_ref(),
            "-c".as_ref(),
            "1".as_ref(),
            "-t".as_ref(),
            "ul".as_ref(),
            raw.as_os_str(),
        ],
    );
    audio.extend(std::fs::read(&raw).expect("sox output"));
    audio.extend(std::iter::repeat_n(0xffu8, 1600));
    std::fs::write(&pcap, rtp_pcap(&audio, 0)).expect("write pcap");
    pcap.to_string_lossy().into_owned()
}

/// A pcap (Ethernet, IPv4, UDP) of RTP packets carrying `audio` (G.711 octets) with payload
/// type `payload_type`, 160 octets every 20 ms.
pub fn rtp_pcap(audio: &[u8], payload_type: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        if word == 0x0004_0002 {
            out.extend(2u16.to_le_bytes());
            out.extend(4u16.to_le_bytes());
        } else {
            out.extend(word.to_le_bytes());
        }
    }
    for (n, chunk) in audio.chunks(160).enumerate() {
        let mut payload = vec![0xffu8; 160];
        payload[..chunk.len()].copy_from_slice(chunk);
        let mut rtp = vec![0x80, payload_type | if n == 0 { 0x80 } else { 0 }];
        rtp.extend((n as u16).to_be_bytes());
        rtp.extend(((n as u32) * 160).to_be_bytes());
        rtp.extend(0x5eec_4a11u32.to_be_bytes());
        rtp.extend(payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend([
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ]);
        frame.extend([127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend([
            0x1f,
            0x40,
            0x1f,
            0x42,
            (udp_len >> 8) as u8,
            udp_len as u8,
            0,
            0,
        ]);
        frame.extend(rtp);
        let micros = n as u64 * 20_000;
        out.extend(((micros / 1_000_000) as u32).to_le_bytes());
        out.extend(((micros % 1_000_000) as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    out
}

/// A SIPp UAS (or UAC) running one scenario, killed on drop.
pub struct Sipp {
    child: Option<Child>,
    /// Where it receives SIP.
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Sipp {
    /// Starts `sipp` as a UAS with `tests/scenarios/<scenario>`, after replacing each
    /// `@KEY@` in the scenario with its value.
    pub fn uas(scenario: &str, replacements: &[(&str, String)]) -> Self {
        Self::uas_calls(scenario, replacements, 1)
    }

    /// Like [`Sipp::uas`], for `calls` calls (which may overlap).
    pub fn uas_calls(scenario: &str, replacements: &[(&str, String)], calls: u32) -> Self {
        Self::uas_lasting(scenario, replacements, calls, Duration::from_secs(60))
    }

    /// Like [`Sipp::uas_calls`], SIPp giving up (as an error) after `lifetime` instead of
    /// 60 s: for calls that are placed late on purpose.
    pub fn uas_lasting(
        scenario: &str,
        replacements: &[(&str, String)],
        calls: u32,
        lifetime: Duration,
    ) -> Self {
        Self::spawn(scenario, replacements, calls, lifetime, None, false)
    }

    /// Like [`Sipp::uas_calls`], over TCP with one socket (`-t t1`): SIPp listens on TCP
    /// only and accepts one connection, which every call shares.
    pub fn uas_tcp(scenario: &str, replacements: &[(&str, String)], calls: u32) -> Self {
        Self::spawn(
            scenario,
            replacements,
            calls,
            Duration::from_secs(60),
            None,
            true,
        )
    }

    /// Like [`Sipp::uac`], over TCP with one socket (`-t t1`): SIPp connects to `remote`.
    pub fn uac_tcp(
        scenario: &str,
        replacements: &[(&str, String)],
        remote: SocketAddr,
        service: &str,
    ) -> Self {
        Self::spawn(
            scenario,
            replacements,
            1,
            Duration::from_secs(60),
            Some((remote, service)),
            true,
        )
    }

    /// Starts `sipp` as a UAC calling `service` (the Request-URI's user) at `remote`, once,
    /// with `tests/scenarios/<scenario>` (`@KEY@` replaced as for [`Sipp::uas`]).
    pub fn uac(
        scenario: &str,
        replacements: &[(&str, String)],
        remote: SocketAddr,
        service: &str,
    ) -> Self {
        Self::spawn(
            scenario,
            replacements,
            1,
            Duration::from_secs(60),
            Some((remote, service)),
            false,
        )
    }

    fn spawn(
        scenario: &str,
        replacements: &[(&str, String)],
        calls: u32,
        lifetime: Duration,
        remote: Option<(SocketAddr, &str)>,
        tcp: bool,
    ) -> Self {
        let dir = TempDir::new("sipp");
        let mut text =
            std::fs::read_to_string(project_root().join("tests/scenarios").join(scenario))
                .expect("read scenario");
        for (key, value) in replacements {
            text = text.replace(&format!("@{key}@"), value);
        }
        let scenario_path = dir.path().join(scenario);
        std::fs::write(&scenario_path, text).expect("write scenario");
        // Over TCP, SIPp listens on the port for TCP: it must be free for both.
        let port = loop {
            let port = free_udp_port();
            if !tcp || TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let media_port = sipp_media_port();
        let out = std::fs::File::create(dir.path().join("sipp.out")).expect("sipp out");
        let mut command = Command::new("sipp");
        command
            .current_dir(dir.path())
            .args(["-sf"])
            .arg(&scenario_path)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args([
                "-m",
                &calls.to_string(),
                "-nostdin",
                "-timeout",
                &format!("{}s", lifetime.as_secs()),
                "-timeout_error",
            ])
            .args(["-trace_err", "-trace_msg"]);
        if tcp {
            command.args(["-t", "t1"]);
        }
        if let Some((remote, service)) = remote {
            command.args(["-s", service]).arg(remote.to_string());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn sipp: install it with `apt-get install sip-tester`");
        if remote.is_none() {
            // A UAS must be listening before anyone dials it: an INVITE to a port nobody
            // holds yet fails at once (ICMP port unreachable). Wait until SIPp holds it.
            // (Over TCP, binding the port fails once SIPp listens on it.)
            let deadline = Instant::now() + Duration::from_secs(10);
            let free = || {
                if tcp {
                    TcpListener::bind(("127.0.0.1", port)).is_ok()
                } else {
                    UdpSocket::bind(("127.0.0.1", port)).is_ok()
                }
            };
            while free() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Self {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }

    /// SIP URI that reaches this UAS for `user`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.addr)
    }

    /// Waits for SIPp to finish its one call; returns its exit status and its message trace.
    pub async fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("sipp child");
        loop {
            if let Some(status) = child.try_wait().expect("poll sipp") {
                return (status, self.trace());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait().expect("wait sipp");
                return (status, self.trace());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every file SIPp wrote (message trace, errors, screen), for assertions and diagnostics.
    pub fn trace(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "xml") {
                    continue;
                }
                if let Ok(text) = std::fs::read_to_string(&path) {
                    all.push_str(&format!("==== {}\n{text}\n", path.display()));
                }
            }
        }
        all
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request the application server received.
#[derive(Clone, Debug)]
pub struct Received {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Content-Type header.
    pub content_type: Option<String>,
    /// Body as text (binary parts replaced, see [`String::from_utf8_lossy`]).
    pub body: String,
    /// Body as sent.
    pub body_bytes: Vec<u8>,
    /// The `webhook-signature` header, if any.
    pub webhook_signature: Option<String>,
}

#[derive(Default)]
struct AppState {
    routes: HashMap<String, (u16, &'static str, String)>,
    received: Vec<Received>,
}

/// The third party's web server: serves fixed documents by path and records every request.
#[derive(Clone)]
pub struct AppServer {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    state: Arc<Mutex<AppState>>,
}

impl AppServer {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(AppState::default()));
        let app = Router::new()
            .fallback(serve_route)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app server");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Serves `body` at `path` with `status` and content type.
    pub fn route(
        &self,
        path: &str,
        status: u16,
        content_type: &'static str,
        body: impl Into<String>,
    ) {
        let mut state = self.state.lock().expect("app state");
        state
            .routes
            .insert(path.to_owned(), (status, content_type, body.into()));
    }

    /// Serves a VoiceXML document at `path`.
    pub fn vxml(&self, path: &str, body: impl Into<String>) {
        self.route(path, 200, "application/voicexml+xml", body);
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("app state").received.clone()
    }
}

async fn serve_route(
    State(state): State<Arc<Mutex<AppState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut state = state.lock().expect("app state");
    state.received.push(Received {
        method: method.to_string(),
        path,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
        body_bytes: body.to_vec(),
        webhook_signature: headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    match state.routes.get(uri.path()) {
        Some((status, content_type, body)) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, *content_type)],
            body.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such document").into_response(),
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Clone, Debug)]
pub struct Part {
    /// The `name` of its Content-Disposition.
    pub name: String,
    /// The `filename` of its Content-Disposition, for files.
    pub filename: Option<String>,
    /// Its Content-Type, for files.
    pub content_type: Option<String>,
    /// Its content.
    pub data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (RFC 7578) sent with `content_type`; `None` when it
/// is not one, or is malformed.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("\r\n--{boundary}");
    // The first delimiter may start the body without the CRLF before it.
    let mut text = Vec::with_capacity(body.len() + 2);
    text.extend_from_slice(b"\r\n");
    text.extend_from_slice(body);
    let at: Vec<usize> = text
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    let mut parts = Vec::new();
    for pair in at.windows(2) {
        let part = text.get(pair[0] + delimiter.len() + 2..pair[1])?;
        let split = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(part.get(..split)?).into_owned();
        let param = |key: &str| {
            head.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix(&format!("{key}=\""))
                    .and_then(|v| v.split('"').next())
                    .map(str::to_owned)
            })
        };
        parts.push(Part {
            name: param("name")?,
            filename: param("filename"),
            content_type: head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type:").map(|v| v.trim().to_owned())),
            data: part.get(split + 4..)?.to_vec(),
        });
    }
    Some(parts)
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `outdial bench callee` as a child process, killed on drop; its output in a file.
pub struct BenchCallee {
    child: Child,
    /// Where the phones listen for SIP.
    pub addr: SocketAddr,
    output: PathBuf,
    _dir: TempDir,
}

impl BenchCallee {
    /// Phones that press the keys their URI asks for (`--dtmf from-uri`).
    pub fn pressing_from_uri() -> Self {
        Self::with_args(&["--dtmf", "from-uri"])
    }

    /// Phones with these options besides `--listen`.
    pub fn with_args(args: &[&str]) -> Self {
        let dir = TempDir::new("callee");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let output = dir.path().join("callee.out");
        let file = std::fs::File::create(&output).expect("output file");
        let child = Command::new(outdial_bin())
            .args(["bench", "callee", "--listen", &addr.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn outdial bench callee");
        // Calls placed before the callee has bound its port would meet an ICMP port
        // unreachable: wait until the port is taken.
        let deadline = Instant::now() + Duration::from_secs(20);
        while UdpSocket::bind(addr).is_ok() {
            assert!(Instant::now() < deadline, "bench callee never bound {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            addr,
            output,
            _dir: dir,
        }
    }

    /// Waits for the process to exit (it does after `--calls` calls or `--duration`).
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }

    /// What it printed so far (standard output and error).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for BenchCallee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_split_into_fields_and_files() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"menu\"\r\n\r\nsales\r\n\
            --xyz\r\nContent-Disposition: form-data; name=\"msg\"; filename=\"msg.wav\"\r\n\
            Content-Type: audio/wav\r\n\r\nRIFF\r\n--xy\0\r\n--xyz--\r\n";
        let parts = multipart_parts("multipart/form-data; boundary=xyz", body).expect("parts");
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data.as_slice()),
            ("menu", &b"sales"[..])
        );
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].filename.as_deref(), Some("msg.wav"));
        assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
        assert_eq!(parts[1].data, b"RIFF\r\n--xy\0");
        assert!(multipart_parts("text/plain", body).is_none());
    }
}
