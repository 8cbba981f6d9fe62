//! `outdial bench smtp`: call requests by e-mail, as fast as the gateway accepts them.
//!
//! Each of `--connections` clients keeps one SMTP session (lettre's connection over our own
//! TCP_NODELAY socket: EHLO, AUTH PLAIN once, then MAIL, RCPT, DATA per message, no
//! pipelining, as most sending MTAs do) and
//! sends one call request per message, each with its own Message-ID (the gateway treats a
//! repeated Message-ID as the same request). A message counts as accepted when the gateway
//! answered the end of DATA with 250, which it does only after the calls are durably stored.
//! The report gives accepted messages per second and the latency of DATA's final reply; any
//! refusal makes the exit status non-zero, as wrk's non-2xx line fails `bench/api/run.sh`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::percentiles::{Percentiles, histogram};

/// Exit status when a message was refused or a session failed.
const EXIT_REFUSED: u8 = 2;

/// `outdial bench smtp`.
#[derive(Debug, Args)]
#[command(after_help = SMTP_HELP)]
pub struct SmtpArgs {
    /// The gateway's SMTP address.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub server: String,
    /// Tenant id: the AUTH user and the recipient's local part (`TENANT@DOMAIN`).
    #[arg(long, default_value = "dev")]
    pub tenant: String,
    /// Recipient domain.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// API key of the tenant (the AUTH password); default: $OUTDIAL_KEY.
    #[arg(long, env = "OUTDIAL_KEY", hide_env_values = true)]
    pub key: String,
    /// The callee each message asks for (the `Destination:` line).
    #[arg(long, default_value = "sip:+15550100@192.0.2.1:5060")]
    pub destination: String,
    /// Application URL (an `Application:` line); the gateway checks it is reachable.
    #[arg(long, value_name = "URL", conflicts_with = "attach")]
    pub application: Option<String>,
    /// VoiceXML document attached to every message instead of an application URL.
    #[arg(long, value_name = "FILE")]
    pub attach: Option<PathBuf>,
    /// SMTP sessions at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub connections: usize,
    /// Seconds to send for.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many messages (whichever of this and --duration comes first).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

const SMTP_HELP: &str = "\
Measures the e-mail intake the way bench/api/run.sh measures POST /v1/calls: messages
accepted per second (250 after DATA, given only once the calls are stored) from several
concurrent SMTP sessions, and the latency of that final reply. The gateway must allow AUTH on
the connection ([smtp] auth_on_loopback = true on loopback). Any refusal fails the run.

Example (one call request per message, to a TEST-NET callee that is never answered):
  outdial bench smtp --server 127.0.0.1:2525 --attach docs/examples/order.vxml \\
    --connections 32 --duration 10";

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct SmtpReport {
    /// SMTP sessions used.
    pub connections: usize,
    /// Messages answered 250 after DATA.
    pub accepted: u64,
    /// Messages refused (any other reply), or lost with their session.
    pub refused: u64,
    /// Seconds from the first connection to the last reply.
    pub seconds: f64,
    /// Accepted messages per second.
    pub per_second: f64,
    /// From the first byte of MAIL to DATA's final reply, microseconds.
    pub latency_us: Percentiles,
    /// The first few refusals, as the gateway worded them.
    pub refusals: Vec<String>,
}

/// Runs the load; prints the report; returns the exit status.
pub async fn run(args: SmtpArgs) -> u8 {
    use std::io::Write as _;
    match measure(&args).await {
        Ok(report) => {
            let text = if args.json {
                serde_json::to_string(&report).unwrap_or_default()
            } else {
                let mut text = format!(
                    "{} messages accepted in {:.1} s: {:.0}/s over {} connections; {} refused\nlatency {}",
                    report.accepted,
                    report.seconds,
                    report.per_second,
                    report.connections,
                    report.refused,
                    report.latency_us.line("us"),
                );
                for refusal in &report.refusals {
                    text.push_str(&format!("\nrefused: {refusal}"));
                }
                text
            };
            // A closed standard output (`| head`) is not an error of the run.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            if report.refused > 0 || report.accepted == 0 {
                EXIT_REFUSED
            } else {
                0
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            1
        }
    }
}

/// Shared by the clients: counters and the latency histogram.
struct Tally {
    sent: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    refusals: Mutex<Vec<String>>,
}

async fn measure(args: &SmtpArgs) -> Result<SmtpReport, String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let duration = Duration::try_from_secs_f64(args.duration)
        .map_err(|_| "--duration must be a non-negative number of seconds".to_owned())?;
    let attachment = match &args.attach {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)
        }
        None => None,
    };
    if attachment.is_none() && args.application.is_none() {
        return Err(
            "give --application URL or --attach FILE: the call needs an application".into(),
        );
    }
    let template = Arc::new(Template::new(args, attachment.as_deref()));
    let tally = Arc::new(Tally {
        sent: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        latency: Mutex::new(histogram()),
        refusals: Mutex::new(Vec::new()),
    });
    let run_id = run_id();
    let start = Instant::now();
    let deadline = start + duration;
    let mut clients = Vec::with_capacity(args.connections);
    for client in 0..args.connections {
        let template = Arc::clone(&template);
        let tally = Arc::clone(&tally);
        let server = args.server.clone();
        let credentials = Credentials::new(args.tenant.clone(), args.key.clone());
        let limit = args.count;
        let run_id = run_id.clone();
        clients.push(tokio::spawn(async move {
            let result = client_loop(
                &server,
                &credentials,
                &template,
                &tally,
                deadline,
                limit,
                &format!("{run_id}.{client}"),
            )
            .await;
            if let Err(message) = result {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                let mut refusals = tally.refusals.lock().await;
                if refusals.len() < 10 {
                    refusals.push(message);
                }
            }
        }));
    }
    for client in clients {
        client.await.map_err(|e| format!("a client failed: {e}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let latency_us = Percentiles::of(&*tally.latency.lock().await);
    let refusals = tally.refusals.lock().await.clone();
    Ok(SmtpReport {
        connections: args.connections,
        accepted,
        refused: tally.refused.load(Ordering::Relaxed),
        seconds,
        per_second: accepted as f64 / seconds.max(f64::EPSILON),
        latency_us,
        refusals,
    })
}

/// An authenticated SMTP session to `server`, on our own TCP_NODELAY socket: lettre writes a
/// message and its final `.` in two writes, and Nagle's algorithm would hold the second until
/// the server's delayed ACK (40 ms a message) — a cost of the client, not of the gateway.
pub(crate) async fn connect(
    server: &str,
    credentials: &Credentials,
) -> Result<AsyncSmtpConnection, String> {
    let hello = ClientId::Domain("bench.outdial.invalid".into());
    let timeout = Duration::from_secs(30);
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(server))
        .await
        .map_err(|_| format!("connect to {server}: timed out"))?
        .map_err(|e| format!("connect to {server}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
        .await
        .map_err(|e| format!("EHLO to {server}: {e}"))?;
    connection
        .auth(&[Mechanism::Plain], credentials)
        .await
        .map_err(|e| format!("AUTH PLAIN: {e}"))?;
    Ok(connection)
}

/// One SMTP session sending messages until the deadline or the shared count.
async fn client_loop(
    server: &str,
    credentials: &Credentials,
    template: &Template,
    tally: &Tally,
    deadline: Instant,
    limit: Option<u64>,
    client_id: &str,
) -> Result<(), String> {
    let mut connection = connect(server, credentials).await?;
    let envelope = template.envelope()?;
    let mut n = 0u64;
    while Instant::now() < deadline {
        let sequence = tally.sent.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|limit| sequence >= limit) {
            break;
        }
        let message = template.message(&format!("{client_id}.{n}"));
        n += 1;
        let sent_at = Instant::now();
        match connection.send(&envelope, &message).await {
            Ok(response) if response.is_positive() => {
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                // A value past the histogram's hour is clamped, not lost.
                tally.latency.lock().await.saturating_record(micros);
            }
            Ok(response) => {
                return Err(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    // A session cut short by the server is not a lost message; QUIT's reply does not matter.
    let _ = connection.quit().await;
    Ok(())
}

/// The message every client sends, but for its Message-ID.
struct Template {
    from: String,
    to: String,
    head: String,
    body: String,
}

impl Template {
    fn new(args: &SmtpArgs, attachment: Option<&[u8]>) -> Self {
        let from = format!("bench@{}", args.domain);
        let to = format!("{}@{}", args.tenant, args.domain);
        let mut fields = format!("Destination: {}\r\nVar-name: bench\r\n", args.destination);
        if let Some(url) = &args.application {
            fields.push_str(&format!("Application: {url}\r\n"));
        }
        let (content_type, body) = match attachment {
            None => ("text/plain; charset=utf-8".to_owned(), fields),
            Some(document) => {
                let boundary = "outdial-bench-boundary";
                let encoded = base64::engine::general_purpose::STANDARD.encode(document);
                let mut lines = String::new();
                for chunk in encoded.as_bytes().chunks(76) {
                    lines.push_str(&String::from_utf8_lossy(chunk));
                    lines.push_str("\r\n");
                }
                (
                    format!("multipart/mixed; boundary=\"{boundary}\""),
                    format!(
                        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{fields}\r\n\
                         --{boundary}\r\nContent-Type: application/voicexml+xml\r\n\
                         Content-Disposition: attachment; filename=\"app.vxml\"\r\n\
                         Content-Transfer-Encoding: base64\r\n\r\n{lines}--{boundary}--\r\n"
                    ),
                )
            }
        };
        let head = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: call request\r\n\
             Date: Thu, 03 Dec 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: {content_type}\r\n"
        );
        Self {
            from,
            to,
            head,
            body,
        }
    }

    fn envelope(&self) -> Result<Envelope, String> {
        let parse = |a: &str| {
            a.parse()
                .map_err(|e| format!("address {a} is not valid: {e}"))
        };
        Envelope::new(Some(parse(&self.from)?), vec![parse(&self.to)?])
            .map_err(|e| format!("envelope: {e}"))
    }

    fn message(&self, unique: &str) -> Vec<u8> {
        format!(
            "{}Message-ID: <{unique}@bench.outdial.invalid>\r\n\r\n{}",
            self.head, self.body
        )
        .into_bytes()
    }
}

/// A per-run prefix for Message-IDs, so a second run against the same store is not taken for
/// retransmissions of the first.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{}", now.as_millis(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SmtpArgs,
    }

    fn args(line: &str) -> SmtpArgs {
        let words = std::iter::once("smtp").chain(line.split_whitespace());
        Cli::try_parse_from(words).expect("valid options").args
    }

    #[test]
    fn a_message_carries_the_fields_and_a_unique_message_id() {
        let template = Template::new(
            &args("--key k --application http://127.0.0.1:8000/a.vxml"),
            None,
        );
        let one = String::from_utf8(template.message("r.0.1")).expect("utf-8");
        let two = String::from_utf8(template.message("r.0.2")).expect("utf-8");
        assert!(one.contains("Message-ID: <r.0.1@bench.outdial.invalid>\r\n\r\n"));
        assert!(one.contains("Destination: sip:+15550100@192.0.2.1:5060\r\n"));
        assert!(one.contains("Application: http://127.0.0.1:8000/a.vxml\r\n"));
        assert_ne!(one, two);
        assert_eq!(template.to, "dev@localhost");
    }

    #[test]
    fn an_attached_document_is_base64_in_lines_of_76() {
        let document = vec![b'x'; 200];
        let template = Template::new(&args("--key k"), Some(&document));
        let message = String::from_utf8(template.message("u")).expect("utf-8");
        assert!(message.contains("multipart/mixed"));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&document);
        assert!(message.contains(&format!("{}\r\n", &encoded[..76])));
        assert!(message.lines().all(|line| line.len() <= 998));
        assert!(message.trim_end().ends_with("--outdial-bench-boundary--"));
    }

    #[tokio::test]
    async fn no_application_is_an_error_before_any_connection() {
        let result = measure(&args("--key k --server 127.0.0.1:9")).await;
        assert!(result.expect_err("refused").contains("--application"));
    }
}
