//! End-to-end: call requests by e-mail. Real clients (swaks, Python's smtplib, a raw TCP
//! client) send to the real `outdial serve`; SIPp answers the calls.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use outdial_tests::{AppServer, Outdial, Sipp, TempDir, free_tcp_port};
use serde_json::Value;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you. Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

/// Plays the WAV attached beside it (a relative reference), then hangs up.
const PLAYS_WAV: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><audio src="hello.wav"/><disconnect/></block></form>
</vxml>
"#;

/// Half a second of a 440 Hz tone: 8 kHz, 16-bit mono PCM WAV.
fn tone_wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..4000)
        .map(|n| {
            let t = f64::from(n) / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    wav
}

/// `outdial serve` with SMTP on a free port, AUTH offered on loopback, requests at
/// `@outdial.test`, and the HTTP access log (to see which files the interpreter fetched).
fn start(max_message_bytes: usize) -> (Outdial, u16) {
    start_with(max_message_bytes, "")
}

/// [`start`], with `email_lines` added to `[email]`.
fn start_with(max_message_bytes: usize, email_lines: &str) -> (Outdial, u16) {
    let port = free_tcp_port();
    let outdial = Outdial::start(&format!(
        "[smtp]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nauth_on_loopback = true\n\
         max_message_bytes = {max_message_bytes}\n\n\
         [email]\ndomains = [\"outdial.test\"]\n{email_lines}\n\n\
         [log]\nlevel = \"info,outdial_control::access=debug\"\n"
    ));
    // The HTTP port answers from its bind; the SMTP listener starts just after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "SMTP never listened:\n{}",
            outdial.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (outdial, port)
}

fn swaks(port: u16, args: &[&str]) -> Output {
    Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args([
            "--from",
            "scheduler@clinic.example",
            "--helo",
            "clinic.example",
        ])
        .args(args)
        .output()
        .expect("run swaks: install it with `apt-get install swaks`")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The call ids in a `250` reply.
fn call_ids(reply: &str) -> Vec<String> {
    reply
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("call_") && w.len() == 31)
        .map(str::to_owned)
        .collect()
}

async fn all_calls(outdial: &Outdial) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{}/v1/calls?limit=100", outdial.api))
        .bearer_auth(&outdial.api_key)
        .send()
        .await
        .expect("GET /v1/calls")
        .json()
        .await
        .expect("JSON");
    page["calls"].as_array().cloned().unwrap_or_default()
}

/// swaks sends an attached VoiceXML document and the WAV it plays; the call is placed,
/// SIPp answers, the interpreter fetches both from the request's files URL, and the call
/// completes. Afterwards the files are no longer served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_sends_an_attached_application_whose_wav_plays_on_a_sipp_call() {
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let (outdial, port) = start(1 << 20);
    let files = TempDir::new("mail");
    let app = files.path().join("app.vxml");
    let wav = files.path().join("hello.wav");
    std::fs::write(&app, PLAYS_WAV).expect("write app");
    std::fs::write(&wav, tone_wav()).expect("write wav");
    let body = format!("Destination: {}\nVar-patient: Ada\n", sipp.uri("+15550001"));
    let sent = swaks(
        port,
        &[
            "--to",
            "dev@outdial.test",
            "--auth",
            "PLAIN",
            "--auth-user",
            "dev",
            "--auth-password",
            &outdial.api_key,
            "--body",
            &body,
            "--attach-type",
            "application/voicexml+xml",
            "--attach-name",
            "app.vxml",
            "--attach",
            &format!("@{}", app.display()),
            "--attach-type",
            "audio/wav",
            "--attach-name",
            "hello.wav",
            "--attach",
            &format!("@{}", wav.display()),
        ],
    );
    let said = text(&sent);
    assert!(
        sent.status.success(),
        "swaks failed:\n{said}\n{}",
        outdial.log()
    );
    let ids = call_ids(&said);
    assert_eq!(ids.len(), 1, "{said}");
    let call = outdial.wait_final(&ids[0], CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["vars"]["patient"], "Ada");
    let url = call["url"].as_str().unwrap_or_default().to_owned();
    let prefix = format!("{}/v1/files/fil_", outdial.api);
    assert!(
        url.starts_with(&prefix) && url.ends_with("/app.vxml"),
        "{url}"
    );
    assert!(sipp_status.success(), "SIPp did not see our BYE:\n{trace}");
    // The interpreter fetched the document and the WAV beside it from the files URL.
    let path = url.trim_start_matches(&outdial.api).to_owned();
    let wav_path = path.replace("/app.vxml", "/hello.wav");
    let log = outdial.log();
    for fetched in [&path, &wav_path] {
        let served = log
            .lines()
            .any(|l| l.contains(fetched.as_str()) && l.contains("status=200"));
        assert!(served, "{fetched} was not served:\n{log}");
    }
    let after = reqwest::get(&url).await.expect("GET files").status();
    assert_eq!(after.as_u16(), 404, "files outlive the call");
}

/// Python's smtplib (AUTH, then one message listing two destinations): two calls, both
/// answered by SIPp and completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_sends_several_destinations_and_each_becomes_a_call() {
    let app = AppServer::start().await;
    app.vxml("/goodbye.vxml", GOODBYE);
    let sipp = Sipp::uas_calls("answer_wait_bye.xml", &[], 2);
    let (outdial, port) = start(1 << 20);
    let script = r#"
import smtplib, sys
port, key, a, b, url = sys.argv[1:6]
body = ("From: scheduler@clinic.example\r\nTo: dev@outdial.test\r\nSubject: reminders\r\n\r\n"
        f"Destination: {a}\r\nDestination: {b}\r\nApplication: {url}\r\nPriority: 8\r\n\r\nThanks\r\n")
with smtplib.SMTP("127.0.0.1", int(port), timeout=30) as s:
    s.ehlo("clinic.example")
    s.login("dev", key)
    s.mail("scheduler@clinic.example")
    s.rcpt("dev@outdial.test")
    code, reply = s.data(body)
    print(code, reply.decode())
"#;
    let output = Command::new("python3")
        .args(["-c", script, &port.to_string(), &outdial.api_key])
        .arg(sipp.uri("alice"))
        .arg(sipp.uri("bob"))
        .arg(app.url("/goodbye.vxml"))
        .output()
        .expect("run python3");
    let said = text(&output);
    assert!(
        output.status.success() && said.starts_with("250 "),
        "{said}\n{}",
        outdial.log()
    );
    let ids = call_ids(&said);
    assert_eq!(ids.len(), 2, "{said}");
    for id in &ids {
        let call = outdial.wait_final(id, CALL_TIMEOUT).await;
        assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
        assert_eq!(call["priority"], 8);
    }
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    let mut users: Vec<String> = outdial_tests::sip_invites(&trace)
        .into_iter()
        .map(|(uri, _)| uri)
        .collect();
    users.sort();
    assert_eq!(users.len(), 2, "{trace}");
}

/// Reads one SMTP reply (all its lines); returns the last line.
fn reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return line;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_owned();
        }
    }
}

/// Refusals store nothing: an unknown tenant, no AUTH, a message over the size limit, a
/// malformed request, and a client that disconnects in the middle of DATA. One valid message
/// afterwards is the only call stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_interrupted_messages_store_nothing() {
    let app = AppServer::start().await;
    app.vxml("/goodbye.vxml", GOODBYE);
    let (outdial, port) = start(8192);
    let auth = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "dev",
        "--auth-password",
        &outdial.api_key,
    ];
    let request = format!(
        "Destination: sip:nobody@127.0.0.1:9\nApplication: {}\n",
        app.url("/goodbye.vxml")
    );
    let request = request.as_str();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            [
                &["--to", "nobody@outdial.test", "--body", request][..],
                &auth[..],
            ]
            .concat(),
            "550 5.1.1",
        ),
        (
            vec!["--to", "dev@outdial.test", "--body", request],
            "530 5.7.0",
        ),
        (
            [
                &["--to", "dev@elsewhere.test", "--body", request][..],
                &auth[..],
            ]
            .concat(),
            "550 5.1.2",
        ),
        (
            [
                &[
                    "--to",
                    "dev@outdial.test",
                    "--body",
                    "Destination: +0123\nApplication: http://127.0.0.1:9/a.vxml\n",
                ][..],
                &auth[..],
            ]
            .concat(),
            "554 5.6.0 e164",
        ),
    ];
    for (args, expected) in cases {
        let output = swaks(port, &args);
        let said = text(&output);
        assert!(!output.status.success(), "{args:?} was accepted:\n{said}");
        assert!(
            said.contains(expected),
            "{args:?}: expected {expected}:\n{said}"
        );
    }
    let big = format!("{request}\n{}\n", "x".repeat(10_000));
    let output = swaks(
        port,
        &[&["--to", "dev@outdial.test", "--body", &big][..], &auth[..]].concat(),
    );
    assert!(text(&output).contains("552 5.3.4"), "{}", text(&output));

    // A client that stops in the middle of DATA.
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0dev\0{}", outdial.api_key));
    assert!(reply(&mut reader).starts_with("220"));
    let steps = [
        ("EHLO clinic.example\r\n".to_owned(), "250"),
        (format!("AUTH PLAIN {plain}\r\n"), "235"),
        ("MAIL FROM:<scheduler@clinic.example>\r\n".to_owned(), "250"),
        ("RCPT TO:<dev@outdial.test>\r\n".to_owned(), "250"),
        ("DATA\r\n".to_owned(), "354"),
    ];
    for (command, expected) in steps {
        writer.write_all(command.as_bytes()).expect("write");
        let answer = reply(&mut reader);
        assert!(answer.starts_with(expected), "{command:?} → {answer}");
    }
    writer
        .write_all(b"Subject: cut\r\n\r\nDestination: sip:a@127.0.0.1:9\r\nApplication: http://127.0.0.1:9/a.vxml\r\n")
        .expect("write");
    drop(writer);
    drop(reader);

    // The server is still up, and a valid message is stored: the only call.
    let output = swaks(
        port,
        &[
            &["--to", "dev@outdial.test", "--body", request][..],
            &auth[..],
        ]
        .concat(),
    );
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let calls = all_calls(&outdial).await;
    let ids: Vec<&str> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, call_ids(&said), "{said}");
}

/// Submits a value, then says goodbye and hangs up.
const SUBMITS: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form>
    <var name="answer" expr="'forty-two'"/>
    <block><submit next="/goodbye.vxml" namelist="answer"/></block>
  </form>
</vxml>
"#;

/// A real SMTP server as the operator's relay: aiosmtpd (`pip install aiosmtpd`) writing
/// what it receives to a Maildir. Killed when dropped.
struct MailSink {
    child: std::process::Child,
    port: u16,
    maildir: TempDir,
}

impl MailSink {
    fn start() -> Self {
        let port = free_tcp_port();
        let maildir = TempDir::new("maildir");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run python3 -m aiosmtpd: install it with `pip install aiosmtpd`");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            maildir,
        }
    }

    /// Every message received so far, as text.
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("box").join("new");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Result-Mail: yes`: when the call ends, its result (status and submitted values) reaches
/// the sender by mail through the relay, threaded under the request, after the
/// acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_mail_reaches_the_sender_when_the_call_ends() {
    let relay = MailSink::start();
    let app = AppServer::start().await;
    app.vxml("/app.vxml", SUBMITS);
    app.vxml("/goodbye.vxml", GOODBYE);
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let (outdial, port) = start_with(
        1 << 20,
        &format!(
            "reply_relay = \"127.0.0.1:{}\"\nreply_from = \"outdial@outdial.test\"",
            relay.port
        ),
    );
    let body = format!(
        "Destination: {}\nApplication: {}\nResult-Mail: yes\n",
        sipp.uri("+15550009"),
        app.url("/app.vxml")
    );
    let sent = swaks(
        port,
        &[
            "--to",
            "dev@outdial.test",
            "--auth",
            "PLAIN",
            "--auth-user",
            "dev",
            "--auth-password",
            &outdial.api_key,
            "--header",
            "Subject: Reminder for Ada",
            "--header",
            "Message-Id: <req-9@clinic.example>",
            "--body",
            &body,
        ],
    );
    let said = text(&sent);
    assert!(
        sent.status.success(),
        "swaks failed:\n{said}\n{}",
        outdial.log()
    );
    let ids = call_ids(&said);
    assert_eq!(ids.len(), 1, "{said}");
    let call = outdial.wait_final(&ids[0], CALL_TIMEOUT).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");

    // The reply worker polls every second and the webhook outbox at once: wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        let messages = relay.messages();
        if let Some(found) = messages.iter().find(|m| m.contains("Subject: Result: ")) {
            // The body is quoted-printable: join its soft line breaks.
            break found.replace("=\r\n", "").replace("=\n", "");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no result mail; the relay got {messages:?}\n{}",
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        result.contains("Subject: Result: Reminder for Ada"),
        "{result}"
    );
    assert!(
        result.contains("In-Reply-To: <req-9@clinic.example>"),
        "{result}"
    );
    assert!(result.contains("To: scheduler@clinic.example"), "{result}");
    assert!(result.contains(&format!("Call {} to ", ids[0])), "{result}");
    assert!(result.contains("ended: completed."), "{result}");
    assert!(result.contains("answer: forty-two"), "{result}");
    let acknowledged = relay
        .messages()
        .iter()
        .any(|m| m.contains("Subject: Accepted: Reminder for Ada"));
    assert!(acknowledged, "the acknowledgement came too");
    // One result per call: every later status change is not final, none is mailed again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let results = relay
        .messages()
        .iter()
        .filter(|m| m.contains("Subject: Result: "))
        .count();
    assert_eq!(results, 1);
}
