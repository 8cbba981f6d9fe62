//! The SMTP listener against real clients: Python's `smtplib` (and raw sockets for what
//! smtplib will not do) and `swaks`, with an in-process listener and a `Delivery` that
//! records what it was given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use outdial_control::config::SmtpConfig;
use outdial_control::smtp::{self, Delivery, DeliveryFuture, Envelope, Reply, SmtpServer};
use tokio::sync::watch;

/// Accepts recipients `…@outdial.test` except `nobody@…`; one account `acme` / `s3cret`;
/// records every message.
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl Recorder {
    fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.delivered.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

impl Delivery for Recorder {
    fn check_recipient<'a>(
        &'a self,
        _envelope: &'a Envelope,
        recipient: &'a str,
    ) -> DeliveryFuture<'a, Result<(), Reply>> {
        Box::pin(async move {
            if recipient.ends_with("@outdial.test") && !recipient.starts_with("nobody@") {
                Ok(())
            } else {
                Err(Reply::new(550, (5, 1, 1), "No such tenant address"))
            }
        })
    }

    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> DeliveryFuture<'a, Option<String>> {
        Box::pin(async move { (user == "acme" && password == "s3cret").then(|| "acme".to_owned()) })
    }

    fn deliver(&self, envelope: Envelope, message: Vec<u8>) -> DeliveryFuture<'_, Reply> {
        Box::pin(async move {
            let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            delivered.push((envelope, message));
            Reply::new(250, (2, 0, 0), format!("Queued as {}", delivered.len()))
        })
    }
}

struct Running {
    server: SmtpServer,
    stop: watch::Sender<bool>,
    recorder: Arc<Recorder>,
}

impl Running {
    fn port(&self) -> String {
        self.server.local_addr().port().to_string()
    }
}

fn base_config() -> SmtpConfig {
    SmtpConfig {
        enabled: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hostname: "mx.outdial.test".to_owned(),
        ..SmtpConfig::default()
    }
}

async fn start(config: SmtpConfig) -> Running {
    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = watch::channel(false);
    let delivery: Arc<dyn Delivery> = recorder.clone();
    let server = smtp::spawn(&config, delivery, stopped)
        .await
        .unwrap_or_else(|e| panic!("SMTP listener: {e}"));
    Running {
        server,
        stop,
        recorder,
    }
}

/// Runs a program to completion: (success, stdout, stderr).
async fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} must be installed (see .ci/run): {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn python(script: &str, args: &[&str]) -> String {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = run("python3", &all).await;
    assert!(ok, "python failed:\n{stdout}\n{stderr}");
    stdout
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made with the openssl CLI.
async fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (ok, stdout, stderr) = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &cert.to_string_lossy(),
        ],
    )
    .await;
    assert!(ok, "openssl: {stdout}{stderr}");
    (cert, key)
}

/// Reads one (possibly multi-line) reply from a socket file; defined in each raw script.
const PY_REPLY: &str = r#"
import socket, sys
def connect(port):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    return s, s.makefile("rb")
def reply(f):
    last = ""
    while True:
        line = f.readline().decode()
        if not line:
            return last or "EOF"
        last = line.rstrip("\r\n")
        if line[3:4] != "-":
            return last
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_sends_a_plain_message() {
    let running = start(base_config()).await;
    let script = r#"
import smtplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "clinic@example.com"
m["To"] = "reminders+acme@outdial.test"
m["Subject"] = "call request"
m.set_content("To: +15550001\nUrl: http://127.0.0.1/app.vxml\n.leading dot\n")
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo("clinic.example")
    assert "pipelining" in s.esmtp_features and "8bitmime" in s.esmtp_features
    assert "auth" not in s.esmtp_features, "no AUTH without TLS"
    refused = s.send_message(m, to_addrs=["reminders+acme@outdial.test", "ops@outdial.test"])
    print("refused", refused)
"#;
    let out = python(script, &[&running.port()]).await;
    assert!(out.contains("refused {}"), "{out}");
    let messages = running.recorder.messages();
    assert_eq!(messages.len(), 1);
    let (envelope, message) = &messages[0];
    assert_eq!(envelope.mail_from, "clinic@example.com");
    assert_eq!(
        envelope.rcpt_to,
        ["reminders+acme@outdial.test", "ops@outdial.test"]
    );
    assert_eq!(envelope.helo, "clinic.example");
    assert!(!envelope.tls && envelope.authenticated.is_none());
    let text = String::from_utf8_lossy(message);
    assert!(text.contains("Subject: call request\r\n"), "{text}");
    assert!(
        text.contains("\r\nTo: +15550001\r\n") && text.contains("\r\n.leading dot\r\n"),
        "dot-stuffing undone, CRLF kept: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_client_gets_every_reply_in_order() {
    let running = start(base_config()).await;
    let script = format!(
        "{PY_REPLY}{}",
        r#"
s, f = connect(sys.argv[1])
print(reply(f)[:3])
s.sendall(b"EHLO pipe.example\r\nMAIL FROM:<p@example.com>\r\nRCPT TO:<a@outdial.test>\r\n"
          b"RCPT TO:<nobody@outdial.test>\r\nRCPT TO:<b@outdial.test>\r\nDATA\r\n")
for _ in range(6):
    print(reply(f)[:9])
s.sendall(b"Subject: pipelined\r\n\r\nhello\r\n.\r\nQUIT\r\n")
for _ in range(2):
    print(reply(f)[:9])
"#
    );
    let out = python(&script, &[&running.port()]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "220",
            "250 HELP",
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "354 End d",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    let messages = running.recorder.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.rcpt_to, ["a@outdial.test", "b@outdial.test"]);
    assert_eq!(messages[0].1, b"Subject: pipelined\r\n\r\nhello\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_authenticates_after_starttls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = certificate(dir.path()).await;
    let running = start(SmtpConfig {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..base_config()
    })
    .await;
    let script = r#"
import smtplib, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo()
    assert s.has_extn("starttls") and not s.has_extn("auth")
    try:
        s.login("acme", "s3cret")
        print("login in clear worked")
    except smtplib.SMTPNotSupportedError:
        print("no auth in clear")
    s.starttls(context=ssl.create_default_context(cafile=cafile))
    s.ehlo()
    print("auth", s.esmtp_features.get("auth", "").strip())
    try:
        s.login("acme", "wrong")
    except smtplib.SMTPAuthenticationError as e:
        print("wrong password", e.smtp_code)
    s.login("acme", "s3cret")
    s.sendmail("ops@example.com", ["reminders@outdial.test"], b"Subject: tls\r\n\r\nsecret call\r\n")
    print("sent")
"#;
    let out = python(script, &[&running.port(), &cert.to_string_lossy()]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "no auth in clear",
            "auth PLAIN LOGIN",
            "wrong password 535",
            "sent"
        ],
        "{out}"
    );
    let messages = running.recorder.messages();
    assert_eq!(messages.len(), 1);
    let (envelope, message) = &messages[0];
    assert!(envelope.tls);
    assert_eq!(envelope.authenticated.as_deref(), Some("acme"));
    assert_eq!(message, b"Subject: tls\r\n\r\nsecret call\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_sends_plain_pipelined_and_with_starttls_auth() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = certificate(dir.path()).await;
    let running = start(SmtpConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..base_config()
    })
    .await;
    let port = running.port();
    let common = [
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--from",
        "monitor@example.com",
        "--helo",
        "swaks.example",
    ];
    let mut plain = common.to_vec();
    plain.extend([
        "--to",
        "alerts@outdial.test,oncall@outdial.test",
        "--pipeline",
        "--header",
        "Subject: swaks plain",
        "--body",
        "To: +15550002",
    ]);
    let (ok, stdout, stderr) = run("swaks", &plain).await;
    assert!(ok, "swaks plain:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("<** 250 2.0.0 Queued as 1")
            || stdout.contains("<-  250 2.0.0 Queued as 1"),
        "{stdout}"
    );

    let mut tls = common.to_vec();
    tls.extend([
        "--to",
        "alerts@outdial.test",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "acme",
        "--auth-password",
        "s3cret",
        "--header",
        "Subject: swaks tls",
    ]);
    let (ok, stdout, stderr) = run("swaks", &tls).await;
    assert!(ok, "swaks tls:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("235 2.7.0 Authentication succeeded"),
        "{stdout}"
    );

    let mut login = common.to_vec();
    login.extend([
        "--to",
        "alerts@outdial.test",
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "acme",
        "--auth-password",
        "wrong",
    ]);
    let (ok, stdout, _) = run("swaks", &login).await;
    assert!(!ok, "a wrong password must fail: {stdout}");
    assert!(stdout.contains("535 5.7.8"), "{stdout}");

    let messages = running.recorder.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].0.rcpt_to,
        ["alerts@outdial.test", "oncall@outdial.test"]
    );
    assert!(!messages[0].0.tls);
    assert!(String::from_utf8_lossy(&messages[0].1).contains("Subject: swaks plain\r\n"));
    assert!(messages[1].0.tls);
    assert_eq!(messages[1].0.authenticated.as_deref(), Some("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_too_many_recipients_are_refused() {
    let running = start(SmtpConfig {
        max_message_bytes: 2048,
        max_recipients: 2,
        ..base_config()
    })
    .await;
    let script = format!(
        "{PY_REPLY}{}",
        r#"
import smtplib
port = sys.argv[1]
big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40
with smtplib.SMTP("127.0.0.1", int(port)) as s:
    try:
        s.sendmail("a@example.com", ["r@outdial.test"], big)
    except smtplib.SMTPSenderRefused as e:
        print("declared", e.smtp_code)
    refused = s.sendmail("a@example.com", ["r1@outdial.test", "r2@outdial.test", "r3@outdial.test"],
                         b"Subject: three\r\n\r\nbody\r\n")
    print("refused", {k: v[0] for k, v in refused.items()})
# Without SIZE= the message is read to its end and refused there.
s, f = connect(port)
reply(f)
s.sendall(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<r@outdial.test>\r\nDATA\r\n")
for _ in range(4):
    reply(f)
s.sendall(big + b".\r\nNOOP\r\n")
print("undeclared", reply(f)[:9])
print("then", reply(f)[:9])
"#
    );
    let out = python(&script, &[&running.port()]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "declared 552",
            "refused {'r3@outdial.test': 452}",
            "undeclared 552 5.3.4",
            "then 250 2.0.0"
        ],
        "{out}"
    );
    let messages = running.recorder.messages();
    assert_eq!(messages.len(), 1, "only the small message");
    assert_eq!(
        messages[0].0.rcpt_to,
        ["r1@outdial.test", "r2@outdial.test"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_in_the_middle_of_data_delivers_nothing() {
    let running = start(base_config()).await;
    let script = format!(
        "{PY_REPLY}{}",
        r#"
port = sys.argv[1]
s, f = connect(port)
reply(f)
s.sendall(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<r@outdial.test>\r\nDATA\r\n")
for _ in range(4):
    reply(f)
s.sendall(b"Subject: cut\r\n\r\nTo: +15550003\r\n")
s.close()
# A whole message on a second connection: it alone is delivered.
s, f = connect(port)
reply(f)
s.sendall(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<r@outdial.test>\r\nDATA\r\n")
for _ in range(4):
    reply(f)
s.sendall(b"Subject: whole\r\n\r\nbody\r\n.\r\nQUIT\r\n")
print(reply(f)[:3], reply(f)[:3])
"#
    );
    let out = python(&script, &[&running.port()]).await;
    assert_eq!(out.trim(), "250 221");
    let messages = running.recorder.messages();
    assert_eq!(messages.len(), 1);
    assert!(String::from_utf8_lossy(&messages[0].1).starts_with("Subject: whole\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_timed_out_with_421() {
    let running = start(SmtpConfig {
        command_timeout_secs: 1,
        ..base_config()
    })
    .await;
    let script = format!(
        "{PY_REPLY}{}",
        r#"
s, f = connect(sys.argv[1])
print(reply(f)[:3])
s.sendall(b"EHLO x\r\nMAIL FROM:<a@exa")
print(reply(f)[:3])
print(reply(f)[:9])
print(reply(f))
"#
    );
    let out = python(&script, &[&running.port()]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["220", "250", "421 4.4.2", "EOF"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_are_capped() {
    let running = start(SmtpConfig {
        max_connections_per_source: 2,
        ..base_config()
    })
    .await;
    let script = format!(
        "{PY_REPLY}{}",
        r#"
import time
port = sys.argv[1]
a, fa = connect(port)
b, fb = connect(port)
print(reply(fa)[:3], reply(fb)[:3])
c, fc = connect(port)
print(reply(fc)[:9], reply(fc))
a.sendall(b"QUIT\r\n")
print(reply(fa)[:3])
a.close()
# The slot comes back once the server has seen the first connection end.
for _ in range(200):
    d, fd = connect(port)
    first = reply(fd)[:3]
    if first == "220":
        break
    d.close()
    time.sleep(0.05)
print(first)
"#
    );
    let out = python(&script, &[&running.port()]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["220 220", "421 4.7.0 EOF", "221", "220"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_421_to_idle_sessions_and_stops() {
    use tokio::io::AsyncBufReadExt as _;
    let running = start(base_config()).await;
    let script = format!(
        "{PY_REPLY}{}",
        r#"
s, f = connect(sys.argv[1])
print(reply(f)[:3])
s.sendall(b"EHLO x\r\n")
print(reply(f)[:3], flush=True)
print(reply(f)[:9])
print(reply(f))
"#
    );
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", &script, &running.port()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    // Stop only once the session is established (its EHLO answered).
    while let Ok(Some(line)) = lines.next_line().await {
        let ehlo_answered = line == "250";
        seen.push(line);
        if ehlo_answered {
            break;
        }
    }
    let _ = running.stop.send(true);
    running.server.stopped().await;
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    assert_eq!(seen, ["220", "250", "421 4.3.2", "EOF"]);
    assert!(child.wait().await.is_ok_and(|status| status.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_name_what_to_fix() {
    let (_stop, stopped) = watch::channel(false);
    let missing = SmtpConfig {
        tls_cert: Some(PathBuf::from("/nonexistent/cert.pem")),
        tls_key: Some(PathBuf::from("/nonexistent/key.pem")),
        ..base_config()
    };
    let delivery: Arc<dyn Delivery> = Arc::new(Recorder::default());
    let err = smtp::spawn(&missing, Arc::clone(&delivery), stopped.clone())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("/nonexistent/cert.pem") && err.contains("tls_cert"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, _) = certificate(dir.path()).await;
    let mismatched = SmtpConfig {
        tls_cert: Some(cert.clone()),
        tls_key: Some(cert),
        ..base_config()
    };
    let err = smtp::spawn(&mismatched, Arc::clone(&delivery), stopped.clone())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("cert.pem") && err.contains("tls_key"), "{err}");

    let running = start(base_config()).await;
    let taken = SmtpConfig {
        listen: running.server.local_addr(),
        ..base_config()
    };
    let err = smtp::spawn(&taken, delivery, stopped)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("[smtp] listen"), "{err}");
}
