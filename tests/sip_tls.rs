//! SIP over TLS end to end: the real `outdial serve` dials baresip (Debian `baresip-core`),
//! which serves SIP over TLS on its SIP port + 1 with a certificate made at test time by the
//! `openssl` CLI and answers at once (`answermode=auto`), through a trunk with
//! `transport = "tls"` and `tls_ca_file`. A trunk that trusts another CA fails its call at
//! once, with a reason naming `tls_ca_file`; one without a client certificate, dialling an
//! `openssl s_server` that demands one over TLS 1.3, fails at once naming `tls_cert_file`.
//! With `sip.tls_client_ca_file`, the listener answers `openssl s_client`'s OPTIONS over TLS
//! only when it presents a client certificate signed by that CA. (SIPp here is built without
//! TLS.)

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outdial_tests::{AppServer, Outdial, TempDir, dialed_to_ended};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The reminder application (confirm or cancel by key): it waits for a key.
const REMINDER: &str = include_str!("apps/reminder.vxml");

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA `<name>.pem`/`<name>.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            // Unique per test: two tests' CAs never share a name.
            &format!(
                "/CN={name} {}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

/// Certificates in `dir`: `ca.pem`, a server certificate it signs for 127.0.0.1 and 127.0.0.2 with its key
/// in one PEM (`server-bundle.pem`, as baresip reads it), and an unrelated `other-ca.pem`.
fn make_pki(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,IP:127.0.0.2\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let bundle = [
        std::fs::read(dir.join("server.pem")).expect("server.pem"),
        std::fs::read(dir.join("server.key")).expect("server.key"),
    ]
    .concat();
    std::fs::write(dir.join("server-bundle.pem"), bundle).expect("write bundle");
}

/// `count` consecutive ports free for UDP and TCP on 127.0.0.1, at or above `from`, below the
/// kernel's ephemeral range and Outdial's RTP blocks (as in `inbound_baresip.rs`).
/// Each call starts 10 ports above the last one's: two callees starting side by side do
/// not pick the same ports before either holds them.
fn free_ports(from: u16, count: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = NEXT.fetch_add(10, Ordering::Relaxed);
    let base = (13_000 + (std::process::id() % 600) as u16 * 10 + offset).max(from);
    (base..20_000)
        .find(|&first| {
            (first..first + count).all(|port| {
                UdpSocket::bind(("127.0.0.1", port)).is_ok()
                    && TcpListener::bind(("127.0.0.1", port)).is_ok()
            })
        })
        .expect("free ports between 13000 and 20000")
}

/// baresip 1.0 answering every call at once, serving SIP over TLS on `tls`; killed on drop.
struct TlsCallee {
    child: Option<Child>,
    /// Where it serves SIP over TLS (its `sip_listen` port + 1).
    tls: SocketAddr,
    /// Its `cons` console: each UDP datagram is typed in as keys.
    console: SocketAddr,
    dir: TempDir,
}

impl TlsCallee {
    fn start(bundle: &Path) -> Self {
        let dir = TempDir::new("baresip-tls");
        let port = free_ports(0, 2);
        let sip = SocketAddr::from(([127, 0, 0, 1], port));
        let console = SocketAddr::from(([127, 0, 0, 1], free_ports(sip.port() + 2, 1)));
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t{sip}\n\
             sip_certificate\t{}\n\
             call_max_calls\t1\n\
             audio_player\taubridge,nowhere\n\
             audio_alert\taubridge,nowhere\n\
             audio_source\tausine,440\n\
             ausrc_srate\t48000\n\
             ausrc_channels\t2\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\tausine.so\n\
             module\taubridge.so\n\
             module\tcons.so\n\
             module_tmp\taccount.so\n\
             module_app\tmenu.so\n\
             cons_listen\t{console}\n",
            bundle.display()
        );
        std::fs::write(dir.path().join("config"), config).expect("write baresip config");
        std::fs::write(
            dir.path().join("accounts"),
            "<sip:+15550001@127.0.0.1>;regint=0;answermode=auto\n",
        )
        .expect("write baresip accounts");
        let out = std::fs::File::create(dir.path().join("baresip.out")).expect("baresip out");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .args(["-n", "127.0.0.1", "-s", "-v", "-t", "60"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn baresip: install it with `apt-get install baresip-core`");
        let tls = SocketAddr::from(([127, 0, 0, 1], port + 1));
        // Dial only once it listens: binding its TLS port fails from then on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(tls).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child: Some(child),
            tls,
            console,
            dir,
        }
    }

    /// Types `line` (and a newline) on its console.
    fn command(&self, line: &str) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        socket
            .send_to(format!("{line}\n").as_bytes(), self.console)
            .expect("send to baresip's console");
    }

    /// What it printed so far (colour codes and carriage returns removed).
    fn log(&self) -> String {
        let raw = std::fs::read(self.dir.path().join("baresip.out")).unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .replace("\x1b[36;1m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[;m", "")
            .replace('\r', "")
    }

    /// Waits until its log contains `text`; false after `timeout`.
    async fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for TlsCallee {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Outdial with a default trunk `carrier` over TLS to `edge`, trusting `ca`.
fn outdial_with_tls_trunk(edge: SocketAddr, ca: &Path) -> Outdial {
    outdial_with_tls_trunk_serving(edge, ca, "")
}

/// The same, with more `[sip]` lines (e.g. our own certificate for the TLS listener).
fn outdial_with_tls_trunk_serving(edge: SocketAddr, ca: &Path, sip_lines: &str) -> Outdial {
    Outdial::start_with_sip(
        "127.0.0.1",
        &format!("default_trunk = \"carrier\"\n{sip_lines}"),
        &format!(
            "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{{number}}@127.0.0.1\"\n\
             proxy = \"{edge}\"\ntransport = \"tls\"\ntls_ca_file = \"{}\"\n",
            ca.display()
        ),
    )
}

/// Places a call to `to` through the default trunk; returns its id.
async fn place(outdial: &Outdial, to: &str, url: &str) -> String {
    let (status, created) = outdial.create_call(&json!({"to": to, "url": url})).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

fn pki() -> (TempDir, PathBuf) {
    let dir = TempDir::new("pki");
    make_pki(dir.path());
    let path = dir.path().to_owned();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_trunk_call_is_answered_by_baresip_and_completes() {
    let (_pki, certs) = pki();
    let callee = TlsCallee::start(&certs.join("server-bundle.pem"));
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let outdial = outdial_with_tls_trunk(callee.tls, &certs.join("ca.pem"));
    let id = place(&outdial, "+15550001", &app.url("/app.vxml")).await;
    let call: Value = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{}\n{}",
        callee.log(),
        outdial.log()
    );
    assert_eq!(call["sip_status"], 200, "{call}");
    assert!(call["answered_at"].is_string(), "{call}");
    // baresip answered over TLS and saw our BYE end it.
    assert!(
        callee
            .wait_log("session closed", Duration::from_secs(5))
            .await,
        "{}",
        callee.log()
    );
    let log = callee.log();
    assert!(log.contains("Call established"), "{log}");
    assert!(log.contains("Via: SIP/2.0/TLS "), "{log}");
}

/// A TCP relay from a port on 127.0.0.2 to `to`, as a carrier's edge in front of its
/// servers: each connection is copied both ways, TLS and all, untouched.
async fn relay_to(to: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let edge = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    edge
}

/// The trunk's edge is a relay on 127.0.0.2 while the callee's Contact names its own address
/// (127.0.0.1): our ACK and BYE go to the Contact over TLS with the trunk's settings, and
/// the callee sees our BYE there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_callee_whose_contact_is_another_address_gets_our_ack_and_bye() {
    let (_pki, certs) = pki();
    let callee = TlsCallee::start(&certs.join("server-bundle.pem"));
    let edge = relay_to(callee.tls).await;
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let outdial = outdial_with_tls_trunk(edge, &certs.join("ca.pem"));
    let id = place(&outdial, "+15550001", &app.url("/app.vxml")).await;
    let call: Value = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{}\n{}",
        callee.log(),
        outdial.log()
    );
    assert!(
        callee
            .wait_log("session closed", Duration::from_secs(5))
            .await,
        "{}",
        callee.log()
    );
    let log = callee.log();
    assert!(log.contains("Call established"), "{log}");
    // Our BYE reached it at its Contact, not through the edge.
    let contact = format!("@{};transport=tls SIP/2.0", callee.tls);
    assert!(
        log.lines()
            .any(|line| line.starts_with("BYE sip:") && line.ends_with(&contact)),
        "no BYE to `{contact}` in {log}\n{}",
        outdial.log()
    );
}

/// A TLS callee's BYE arrives on a new TLS connection to our Contact (`;transport=tls`, the
/// SIP port): the listener sees a TLS handshake as the first byte, serves TLS with
/// `sip.tls_cert_file`, and the BYE ends the call at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_callee_that_hangs_up_ends_the_call() {
    let (_pki, certs) = pki();
    let callee = TlsCallee::start(&certs.join("server-bundle.pem"));
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    let outdial = outdial_with_tls_trunk_serving(
        callee.tls,
        &certs.join("ca.pem"),
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            certs.join("server.pem").display(),
            certs.join("server.key").display()
        ),
    );
    let id = place(&outdial, "+15550001", &app.url("/app.vxml")).await;
    let up = outdial.wait_status(&id, "in-progress", CALL_TIMEOUT).await;
    assert_eq!(up["status"], "in-progress", "{up}\n{}", callee.log());
    assert!(
        callee
            .wait_log("Call established", Duration::from_secs(5))
            .await,
        "{}",
        callee.log()
    );
    let hung_up = Instant::now();
    callee.command("/hangup");
    let mut call = outdial.get_call(&id).await;
    while !outdial_tests::is_final(&call) && hung_up.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        call = outdial.get_call(&id).await;
    }
    let took = hung_up.elapsed();
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{}\n{}",
        callee.log(),
        outdial.log()
    );
    assert!(
        took < Duration::from_secs(3),
        "the callee's BYE ended the call after {took:?}: {call}\n{}\n{}",
        callee.log(),
        outdial.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_from_an_untrusted_ca_fails_the_call_at_once_naming_tls_ca_file() {
    let (_pki, certs) = pki();
    let callee = TlsCallee::start(&certs.join("server-bundle.pem"));
    let outdial = outdial_with_tls_trunk(callee.tls, &certs.join("other-ca.pem"));
    let id = place(&outdial, "+15550002", "http://127.0.0.1:9/never.vxml").await;
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let took = dialed_to_ended(&call);
    assert_eq!(call["status"], "failed", "{call}\n{}", outdial.log());
    assert_eq!(call["disposition"], "unreachable", "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("tls_ca_file"), "{call}");
    assert!(
        took < Duration::from_secs(1),
        "ended in {took:?}, not at once: {call}"
    );
    assert!(!callee.log().contains("Call established"));
}

/// `openssl s_server` demanding a client certificate (`-Verify 1`) over TLS 1.3, on a free
/// loopback port; killed on drop.
struct MutualTlsServer {
    child: Child,
    addr: SocketAddr,
}

impl MutualTlsServer {
    fn start(certs: &Path) -> Self {
        let mut child = Command::new("openssl")
            // `-rev` (echo lines reversed) reads no stdin, which would end it at once.
            .args([
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
                "-rev",
            ])
            .args([
                "-cert",
                "server.pem",
                "-key",
                "server.key",
                "-CAfile",
                "ca.pem",
            ])
            .args(["-Verify", "1", "-tls1_3"])
            .current_dir(certs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // "ACCEPT 127.0.0.1:PORT" once it listens.
        let addr = loop {
            let line = lines
                .next()
                .expect("s_server says where it listens")
                .expect("s_server output");
            if let Some(address) = line.strip_prefix("ACCEPT ") {
                break address.parse().expect("host:port");
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }
}

impl Drop for MutualTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Under TLS 1.3 the server refuses a missing client certificate after our side of the
/// handshake is done: the call still fails at once, saying to set `tls_cert_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_demanding_a_client_certificate_fails_the_call_at_once_naming_tls_cert_file() {
    let (_pki, certs) = pki();
    let server = MutualTlsServer::start(&certs);
    let outdial = outdial_with_tls_trunk(server.addr, &certs.join("ca.pem"));
    let id = place(&outdial, "+15550003", "http://127.0.0.1:9/never.vxml").await;
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let took = dialed_to_ended(&call);
    assert_eq!(call["status"], "failed", "{call}\n{}", outdial.log());
    assert_eq!(call["disposition"], "unreachable", "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("tls_cert_file"),
        "{call}\n{}",
        outdial.log()
    );
    assert!(
        took < Duration::from_secs(1),
        "ended in {took:?}, not at once: {call}"
    );
}

/// A client certificate `<name>.pem` with its key `<name>.key` in `dir`, signed by the CA
/// `<ca>.pem`.
fn make_client(dir: &Path, name: &str, ca: &str) {
    let (key, csr, ext, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
        format!("{name}.pem"),
    );
    let subject = format!("/CN={name}.peer.test");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    );
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=DNS:peer.test\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write extensions");
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// The `[sip]` lines serving TLS with the test's server certificate; with `client_ca`, asking
/// TLS peers for a certificate signed by it.
fn tls_listener_lines(certs: &Path, client_ca: Option<&str>) -> String {
    let mut lines = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        certs.join("server.pem").display(),
        certs.join("server.key").display()
    );
    if let Some(ca) = client_ca {
        lines += &format!("tls_client_ca_file = \"{}\"\n", certs.join(ca).display());
    }
    lines
}

const OPTIONS: &str = "OPTIONS sip:outdial@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-mtls-1\r\n\
Max-Forwards: 70\r\n\
From: <sip:peer@peer.test>;tag=m1\r\n\
To: <sip:outdial@127.0.0.1>\r\n\
Call-ID: mtls-1@peer.test\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

/// What `openssl s_client` showed of one OPTIONS sent over TLS.
struct Exchange {
    /// What came back over TLS.
    received: String,
    /// Whether the connection ended (rather than the wait for an answer).
    closed: bool,
    /// s_client's own messages (handshake, alerts).
    stderr: String,
}

/// Connects to `to` with `openssl s_client` (`version`: `-tls1_3` or `-tls1_2`), trusting
/// `ca.pem` for the server and presenting `<identity>.pem` if given, sends an OPTIONS and
/// waits up to 20 s for a whole SIP response or the connection's end.
fn options_over_tls(
    certs: &Path,
    to: SocketAddr,
    identity: Option<&str>,
    version: &str,
) -> Exchange {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-quiet", "-verify_return_error", version])
        .args(["-verify_ip", "127.0.0.1", "-CAfile", "ca.pem"])
        .arg("-connect")
        .arg(to.to_string());
    if let Some(name) = identity {
        command.args([
            "-cert",
            &format!("{name}.pem"),
            "-key",
            &format!("{name}.key"),
        ]);
    }
    let mut child = command
        .current_dir(certs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client starts");
    // s_client sends it once the handshake is done; `-quiet` keeps it running after stdin's
    // end, until the server closes.
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(OPTIONS.as_bytes())
        .expect("request for s_client");
    let (chunks, arrived) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = stdout.read(&mut buffer) {
            if chunks.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut received = Vec::new();
    let mut closed = false;
    loop {
        let text = String::from_utf8_lossy(&received);
        if text.starts_with("SIP/2.0 ") && text.contains("\r\n\r\n") {
            break;
        }
        match arrived.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => received.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                closed = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    Exchange {
        received: String::from_utf8_lossy(&received).into_owned(),
        closed,
        stderr: errors.join().unwrap_or_default(),
    }
}

/// Waits up to 10 s for `outdial`'s log to hold `count` lines containing every one of `texts`.
async fn wait_log_lines(outdial: &Outdial, texts: &[&str], count: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let log = outdial.log();
        let found = log
            .lines()
            .filter(|line| texts.iter().all(|text| line.contains(text)))
            .count();
        if found >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// With `sip.tls_client_ca_file`, a TLS peer presenting a certificate signed by that CA is
/// answered (`200` to its OPTIONS, over TLS); one presenting none, under TLS 1.3 or 1.2, or
/// one signed by another CA, has its handshake refused and its connection closed, gets no SIP
/// answer, and a warning names its address and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_with_a_client_ca_answers_only_peers_presenting_a_certificate_it_signed() {
    let (_pki, certs) = pki();
    make_client(&certs, "client", "ca");
    make_client(&certs, "stranger", "other-ca");
    let outdial =
        Outdial::start_with_sip("127.0.0.1", &tls_listener_lines(&certs, Some("ca.pem")), "");

    let trusted = options_over_tls(&certs, outdial.sip, Some("client"), "-tls1_3");
    assert!(
        trusted.received.starts_with("SIP/2.0 200 "),
        "{}\n{}\n{}",
        trusted.received,
        trusted.stderr,
        outdial.log()
    );
    assert!(
        trusted.received.contains("CSeq: 1 OPTIONS"),
        "{}",
        trusted.received
    );

    let refusals = [
        (None, "-tls1_3", "sent no client certificate"),
        (None, "-tls1_2", "sent no client certificate"),
        (Some("stranger"), "-tls1_3", "not signed by a CA in"),
    ];
    for (done, &(identity, version, why)) in refusals.iter().enumerate() {
        let refused = options_over_tls(&certs, outdial.sip, identity, version);
        assert!(
            !refused.received.contains("SIP/2.0"),
            "{identity:?} {version}: answered\n{}\n{}",
            refused.received,
            outdial.log()
        );
        assert!(
            refused.closed,
            "{identity:?} {version}: the connection stayed open\n{}",
            refused.stderr
        );
        // Each refusal is a warning line with the peer's address and why, naming the setting.
        let count = refusals[..=done].iter().filter(|r| r.2 == why).count();
        let texts = ["WARN", "peer=127.0.0.1:", why, "sip.tls_client_ca_file"];
        assert!(
            wait_log_lines(&outdial, &texts, count).await,
            "{identity:?} {version}: no warning saying `{why}`\n{}",
            outdial.log()
        );
    }
}

/// Without `sip.tls_client_ca_file` the listener asks for no certificate: a peer presenting
/// none is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_without_a_client_ca_answers_a_peer_without_a_certificate() {
    let (_pki, certs) = pki();
    let outdial = Outdial::start_with_sip("127.0.0.1", &tls_listener_lines(&certs, None), "");
    let answered = options_over_tls(&certs, outdial.sip, None, "-tls1_3");
    assert!(
        answered.received.starts_with("SIP/2.0 200 "),
        "{}\n{}\n{}",
        answered.received,
        answered.stderr,
        outdial.log()
    );
}

/// `outdial serve` refuses a client CA without a TLS certificate to serve, and a client CA
/// file that holds no certificate, naming `sip.tls_client_ca_file`.
#[test]
fn a_bad_client_ca_setting_refuses_start_up_naming_it() {
    let (_pki, certs) = pki();
    let alone = format!(
        "tls_client_ca_file = \"{}\"\n",
        certs.join("ca.pem").display()
    );
    let no_certificate = tls_listener_lines(&certs, Some("ca.key"));
    for sip_lines in [alone, no_certificate] {
        let (status, output) = Outdial::refused("127.0.0.1", &sip_lines);
        assert!(!status.success(), "{sip_lines}: started\n{output}");
        assert!(
            output.contains("sip.tls_client_ca_file"),
            "{sip_lines}: {output}"
        );
    }
}
