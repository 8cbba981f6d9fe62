//! Issue 10: an incoming call from a real softphone. baresip (Debian `baresip-core`) calls
//! the real `outdial serve` from an allowed source, headless (a sine tone for a microphone,
//! an unconnected `aubridge` device for a speaker, no sound card); once the call is
//! established it presses 7 (an RFC 4733 telephone-event, `/sndcode 7` over its `cons` UDP
//! console). The number's application hears the key, submits it with the caller's URI and
//! hangs up: the record is an inbound, completed call with `choice = 7`, and baresip's own
//! log shows the call established and ended by Outdial's BYE.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outdial_tests::{AppServer, Outdial, TempDir, form_pairs, is_final};
use serde_json::Value;

const INBOUND_APP: &str = include_str!("apps/inbound.vxml");

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `count` consecutive ports free for UDP and TCP on 127.0.0.1, at or above `from`, below the
/// kernel's ephemeral range (32768–60999) and Outdial's RTP blocks (21000–31000): baresip
/// listens on both transports with one port (SIP also on TCP one above it; its `cons`
/// console), and a port the kernel picked for UDP is too often taken for TCP a moment later by
/// an outgoing connection (or still held by one in TIME_WAIT), the console then failing.
/// Each call starts 10 ports above the last one's: two baresips starting side by side (the
/// TLS one binds its SIP port + 1 too) do not pick the same ports before either holds them.
fn free_ports(from: u16, count: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let offset = NEXT.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
    let base = (12_000 + (std::process::id() % 700) as u16 * 10 + offset).max(from);
    (base..20_000)
        .find(|&first| {
            (first..first + count).all(|port| {
                UdpSocket::bind(("127.0.0.1", port)).is_ok()
                    && TcpListener::bind(("127.0.0.1", port)).is_ok()
            })
        })
        .expect("free ports between 12000 and 20000")
}

/// A baresip 1.0 user agent placing one call, killed on drop; its configuration and its
/// output (debug log and SIP trace) in a temp directory.
struct Baresip {
    child: Option<Child>,
    /// Where it listens for SIP.
    sip: SocketAddr,
    /// Its `cons` console: each UDP datagram is typed in as keys.
    console: SocketAddr,
    dir: TempDir,
}

impl Baresip {
    /// Starts baresip with a local account that does not register, dialing `target` at once.
    fn dial(target: &str) -> Self {
        Self::dial_with(target, "")
    }

    /// The same, with more lines of baresip `config` (e.g. its TLS certificate).
    fn dial_with(target: &str, more_config: &str) -> Self {
        let dir = TempDir::new("baresip");
        let sip = SocketAddr::from(([127, 0, 0, 1], free_ports(0, 3)));
        let console = SocketAddr::from(([127, 0, 0, 1], free_ports(sip.port() + 3, 1)));
        // No sound card: the microphone is `ausine` (48 kHz stereo only, resampled for
        // G.711), the speaker and the alert an `aubridge` device no source reads.
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t{sip}\n\
             call_local_timeout\t120\n\
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
             cons_listen\t{console}\n\
             {more_config}"
        );
        std::fs::write(dir.path().join("config"), config).expect("write baresip config");
        std::fs::write(
            dir.path().join("accounts"),
            "<sip:caller@127.0.0.1>;regint=0\n",
        )
        .expect("write baresip accounts");
        let out = std::fs::File::create(dir.path().join("baresip.out")).expect("baresip out");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            // The loopback address for media too: Outdial hears an incoming call's media only
            // from the address its SDP names (no latching yet), and baresip would otherwise
            // name the host's first interface while sending from 127.0.0.1.
            .args(["-n", "127.0.0.1"])
            .args(["-s", "-v"])
            // A backstop: quit after 120 s whatever happens.
            .args(["-t", "120"])
            .arg("-e")
            .arg(format!("/dial {target}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn baresip: install it with `apt-get install baresip-core`");
        Self {
            child: Some(child),
            sip,
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

    /// Asks it to quit and waits for it (killing it after `timeout`); returns its log.
    async fn quit(&mut self, timeout: Duration) -> String {
        self.command("/quit");
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + timeout;
            while child.try_wait().expect("poll baresip").is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.log()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The calls the dev tenant can list (newest first).
async fn calls(outdial: &Outdial) -> Vec<Value> {
    let (status, page) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/calls", None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["calls"].as_array().cloned().unwrap_or_default()
}

/// The id of the call once it is `in-progress` with its application (`app_path`) fetched.
async fn in_progress_call(outdial: &Outdial, app: &AppServer, app_path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = calls(outdial).await;
        if let Some(call) = listed.iter().find(|c| c["status"] == "in-progress")
            && app.received().iter().any(|r| r.path == app_path)
        {
            return call["id"].as_str().expect("id").to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the call never went in-progress with its application: {listed:?}\n{}",
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The call's record once it is final, within `CALL_TIMEOUT`.
async fn final_call(outdial: &Outdial, id: &str, baresip: &Baresip) -> Value {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let call = outdial.get_call(id).await;
        if is_final(&call) {
            return call;
        }
        assert!(
            Instant::now() < deadline,
            "call {id} not final after {CALL_TIMEOUT:?}: {call}\n==== baresip\n{}\n==== outdial\n{}",
            baresip.log(),
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_in_presses_7_and_is_hung_up_on_by_the_application() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let sections = format!(
        "[[inbound]]\nnumber = \"+15550100\"\nurl = \"{}\"\n",
        app.url("/in.vxml")
    );
    let outdial =
        Outdial::start_with_sip("127.0.0.1", "inbound_sources = [\"127.0.0.1\"]", &sections);
    let mut baresip = Baresip::dial(&format!("sip:+15550100@{}", outdial.sip));

    // Established on both sides, and the application fetched: now the key.
    assert!(
        baresip
            .wait_log("Call established", Duration::from_secs(20))
            .await,
        "baresip's call was not established:\n{}\n{}",
        baresip.log(),
        outdial.log()
    );
    let console = format!("cons: UI console listening on {}", baresip.console);
    assert!(
        baresip.log().contains(&console),
        "baresip's console did not start:\n{}",
        baresip.log()
    );
    let id = in_progress_call(&outdial, &app, "/in.vxml").await;
    baresip.command("/sndcode 7");
    let call = final_call(&outdial, &id, &baresip).await;
    // Our BYE reached baresip before its /quit can (which would send its own BYE otherwise).
    baresip
        .wait_log("session closed", Duration::from_secs(10))
        .await;
    let log = baresip.quit(Duration::from_secs(10)).await;
    let context = format!(
        "{call}\n==== baresip\n{log}\n==== outdial\n{}",
        outdial.log()
    );
    assert_eq!(calls(&outdial).await.len(), 1, "{context}");
    assert_eq!(call["direction"], "inbound", "{context}");
    assert_eq!(call["status"], "completed", "{context}");
    assert_eq!(call["to"], "+15550100", "{context}");
    assert!(
        call["target_uri"]
            .as_str()
            .is_some_and(|uri| uri.starts_with("sip:caller@127.0.0.1")),
        "the caller's From URI: {context}"
    );
    assert_eq!(call["sip_status"], 200, "{context}");
    assert_eq!(call["result"]["choice"], "7", "{context}");

    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}\n{context}");
    let pairs = form_pairs(&submits[0].body);
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("choice"), "7", "{pairs:?}");
    assert!(
        value("caller").starts_with("sip:caller@127.0.0.1"),
        "{pairs:?}"
    );
    assert!(value("called").contains("+15550100"), "{pairs:?}");

    // baresip's side: it sent the key as a telephone-event, and its call ended by our BYE
    // (which it answered), not by one of its own.
    assert!(log.contains("send DTMF digit: '7'"), "{log}");
    let ours = format!("UDP {} -> {}\nBYE sip:", outdial.sip, baresip.sip);
    let theirs = format!("UDP {} -> {}\nBYE sip:", baresip.sip, outdial.sip);
    assert!(
        log.contains(&ours),
        "no BYE from Outdial in baresip's trace:\n{log}"
    );
    assert!(!log.contains(&theirs), "baresip hung up itself:\n{log}");
    let answered = format!("UDP {} -> {}\nSIP/2.0 200 OK", baresip.sip, outdial.sip);
    assert!(
        log[log.find(&ours).unwrap_or(0)..].contains(&answered),
        "baresip did not answer the BYE:\n{log}"
    );
    assert!(
        log.contains("session closed: Connection reset by peer"),
        "baresip did not see the remote end close the call:\n{log}"
    );
    // (Its "Call with … terminated (duration: …)" line is left out for calls under a second.)

    // Media both ways: the key came over RTP from where baresip's SDP said.
    let (status, cdrs) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/cdrs", None)
        .await;
    assert_eq!(status, 200, "{cdrs}");
    assert_eq!(cdrs["cdrs"][0]["call_id"], id.as_str(), "{cdrs}");
    assert!(
        cdrs["cdrs"][0]["media"]["packets_received"].as_u64() > Some(0),
        "{cdrs}"
    );
}

/// A self-signed certificate for 127.0.0.1 in `dir`: `cert.pem`, `key.pem`, and both in
/// `bundle.pem` (as baresip reads its own).
fn self_signed(dir: &std::path::Path) {
    let made = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let bundle = [
        std::fs::read(dir.join("cert.pem")).expect("cert.pem"),
        std::fs::read(dir.join("key.pem")).expect("key.pem"),
    ]
    .concat();
    std::fs::write(dir.join("bundle.pem"), bundle).expect("write bundle.pem");
}

/// An incoming call over TLS: baresip calls our TLS listener (`sip.tls_cert_file`). Its
/// Contact names its own TLS port, not the port its connection came from, and we hold no TLS
/// client settings for callers: our BYE goes back on its connection, and it answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_in_over_tls_and_gets_our_bye_on_its_connection() {
    let certs = TempDir::new("tls-listener");
    self_signed(certs.path());
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let sections = format!(
        "[[inbound]]\nnumber = \"+15550100\"\nurl = \"{}\"\n",
        app.url("/in.vxml")
    );
    let sip_lines = format!(
        "inbound_sources = [\"127.0.0.1\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, &sections);
    let mut baresip = Baresip::dial_with(
        &format!("sip:+15550100@{};transport=tls", outdial.sip),
        &format!(
            "sip_certificate\t{}\n",
            certs.path().join("bundle.pem").display()
        ),
    );
    assert!(
        baresip
            .wait_log("Call established", Duration::from_secs(20))
            .await,
        "baresip's call over TLS was not established:\n{}\n{}",
        baresip.log(),
        outdial.log()
    );
    let id = in_progress_call(&outdial, &app, "/in.vxml").await;
    baresip.command("/sndcode 7");
    let call = final_call(&outdial, &id, &baresip).await;
    baresip
        .wait_log("session closed", Duration::from_secs(10))
        .await;
    let log = baresip.quit(Duration::from_secs(10)).await;
    let context = format!(
        "{call}\n==== baresip\n{log}\n==== outdial\n{}",
        outdial.log()
    );
    assert_eq!(call["direction"], "inbound", "{context}");
    assert_eq!(call["status"], "completed", "{context}");
    assert_eq!(call["result"]["choice"], "7", "{context}");
    // Our BYE came over TLS from our SIP port (the connection baresip opened), and baresip
    // did not hang up itself.
    let ours = format!("TLS {} -> ", outdial.sip);
    let bye_from_us = log.match_indices(&ours).any(|(at, _)| {
        log[at..]
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("BYE sip:"))
    });
    assert!(
        bye_from_us,
        "no BYE from Outdial over TLS in baresip's trace:\n{context}"
    );
    assert!(
        log.contains("session closed"),
        "baresip did not see the call end:\n{context}"
    );
}
