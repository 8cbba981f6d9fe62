//! Dialogue tests of the sans-IO session, each also fed at every split of its input.

use super::*;

/// A pipeline for tests. Recipients `…@testserver` and `…@outdial.test` exist, except
/// `nobody@…`; `user@testserver` / `secretpassword` is the one account; a message whose
/// header section has a line that is neither a header field nor a continuation is refused
/// like a MIME parser would (`554 5.6.0`); anything else is accepted.
#[derive(Debug, Default)]
pub(super) struct TestPipeline {
    pub(super) delivered: Vec<(Envelope, Vec<u8>)>,
    pub(super) asked: Vec<String>,
}

impl TestPipeline {
    fn answer(&mut self, event: Event) -> Option<Answer> {
        match event {
            Event::CheckRecipient { recipient, .. } => {
                self.asked.push(recipient.clone());
                let known = (recipient.ends_with("@testserver")
                    || recipient.ends_with("@outdial.test"))
                    && !recipient.starts_with("nobody@");
                Some(Answer::Recipient(if known {
                    Ok(())
                } else {
                    Err(Reply::new(550, (5, 1, 1), "No such tenant address"))
                }))
            }
            Event::Authenticate { user, password } => Some(Answer::Authenticated(
                (user == "user@testserver" && password == "secretpassword").then_some(user),
            )),
            Event::Deliver { envelope, message } => {
                let header = message
                    .split(|&b| b == b'\n')
                    .take_while(|line| *line != b"\r")
                    .all(|line| {
                        line.first().is_some_and(|b| *b == b' ' || *b == b'\t')
                            || line.contains(&b':')
                    });
                if !header {
                    return Some(Answer::Delivered(Reply::new(
                        554,
                        (5, 6, 0),
                        "Error parsing message",
                    )));
                }
                self.delivered.push((envelope, message));
                Some(Answer::Delivered(Reply::new(
                    250,
                    (2, 0, 0),
                    "Message accepted",
                )))
            }
            Event::StartTls => Some(Answer::TlsEstablished),
            Event::Send(_) | Event::Close => None,
        }
    }
}

/// A session under test with everything it sent.
pub(super) struct Harness {
    pub(super) session: Session,
    pub(super) now: Instant,
    pub(super) pipeline: TestPipeline,
    pub(super) out: Vec<u8>,
    pub(super) closed: bool,
    pub(super) tls_handshakes: usize,
}

impl Harness {
    pub(super) fn new(config: SessionConfig, peer: &str, tls: bool) -> Self {
        let now = Instant::now();
        let peer: SocketAddr = peer
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([192, 0, 2, 1], 4000)));
        let mut harness = Self {
            session: Session::new(Arc::new(config), peer, tls, now),
            now,
            pipeline: TestPipeline::default(),
            out: Vec::new(),
            closed: false,
            tls_handshakes: 0,
        };
        harness.pump();
        harness
    }

    /// Runs every event, answering requests at once.
    pub(super) fn pump(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Send(bytes) => self.out.extend_from_slice(&bytes),
                Event::Close => self.closed = true,
                other => {
                    if matches!(other, Event::StartTls) {
                        self.tls_handshakes += 1;
                    }
                    if let Some(answer) = self.pipeline.answer(other) {
                        self.session.handle_answer(self.now, answer);
                    }
                }
            }
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.session.handle_input(self.now, bytes);
        self.pump();
    }

    /// Everything sent since the last call, as text.
    pub(super) fn take(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.out)).into_owned()
    }

    /// Reply codes of everything sent since the last call (last line of multi-line replies).
    pub(super) fn codes(&mut self) -> Vec<u16> {
        self.take()
            .lines()
            .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
            .filter_map(|line| line.get(..3)?.parse().ok())
            .collect()
    }
}

/// The whole transcript and deliveries for `input` fed in the given pieces.
pub(super) fn transcript(
    config: &SessionConfig,
    tls: bool,
    pieces: &[&[u8]],
) -> (String, Vec<Vec<u8>>, bool) {
    let mut harness = Harness::new(config.clone(), "192.0.2.1:4000", tls);
    for piece in pieces {
        harness.feed(piece);
    }
    let delivered = harness
        .pipeline
        .delivered
        .iter()
        .map(|(_, message)| message.clone())
        .collect();
    (harness.take(), delivered, harness.closed)
}

/// Asserts that `input` gives the same replies, deliveries and end whether fed whole, one
/// byte at a time, or split in two at every offset (every `stride`-th one when it is long).
pub(super) fn assert_split_invariant(config: &SessionConfig, tls: bool, input: &[u8]) {
    let whole = transcript(config, tls, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(transcript(config, tls, &bytes), whole, "byte at a time");
    let stride = if input.len() > 4096 {
        (input.len() / 200).max(997)
    } else {
        1
    };
    for split in (0..=input.len()).step_by(stride) {
        let (a, b) = input.split_at(split);
        assert_eq!(
            transcript(config, tls, &[a, b]),
            whole,
            "split at {split} of {:?}",
            String::from_utf8_lossy(&input[..input.len().min(200)])
        );
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.outdial.test".to_owned(),
        max_message_bytes: 4096,
        max_recipients: 3,
        max_errors: 5,
        starttls: true,
        ..SessionConfig::default()
    }
}

const TRANSACTION: &[u8] =
    b"EHLO client.example\r\nMAIL FROM:<sender@example.com> SIZE=60 BODY=8BITMIME\r\n\
RCPT TO:<reminders+acme@outdial.test>\r\nRCPT TO:<ops@outdial.test>\r\nDATA\r\n\
Subject: call\r\n\r\nTo: +15550001\r\n..dots\r\n.\r\nQUIT\r\n";

#[test]
fn a_pipelined_transaction_is_delivered_once_with_its_envelope() {
    let mut h = Harness::new(config(), "192.0.2.7:5000", false);
    h.feed(TRANSACTION);
    let text = h.take();
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["220", "250", "250", "250", "250", "354", "250", "221"],
        "{text}"
    );
    assert!(h.closed);
    assert_eq!(h.pipeline.delivered.len(), 1);
    let (envelope, message) = &h.pipeline.delivered[0];
    assert_eq!(message, b"Subject: call\r\n\r\nTo: +15550001\r\n.dots\r\n");
    assert_eq!(envelope.mail_from, "sender@example.com");
    assert_eq!(
        envelope.rcpt_to,
        ["reminders+acme@outdial.test", "ops@outdial.test"]
    );
    assert_eq!(envelope.helo, "client.example");
    assert_eq!(envelope.peer, SocketAddr::from(([192, 0, 2, 7], 5000)));
    assert!(!envelope.tls);
    assert_eq!(envelope.authenticated, None);
    assert_split_invariant(&config(), false, TRANSACTION);
}

#[test]
fn ehlo_offers_the_extensions_and_auth_only_where_allowed() {
    let mut h = Harness::new(config(), "192.0.2.7:5000", false);
    h.feed(b"EHLO a\r\n");
    let text = h.take();
    for ext in [
        "PIPELINING",
        "SIZE 4096",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(text.contains(&format!("250-{ext}\r\n")), "{ext}: {text}");
    }
    assert!(text.ends_with("250 HELP\r\n"), "{text}");
    assert!(!text.contains("AUTH"), "no AUTH in clear: {text}");

    let mut h = Harness::new(config(), "192.0.2.7:5000", true);
    h.feed(b"EHLO a\r\n");
    let text = h.take();
    assert!(text.contains("250-AUTH PLAIN LOGIN\r\n"), "{text}");
    assert!(!text.contains("STARTTLS"), "{text}");

    let loopback = SessionConfig {
        auth_on_loopback: true,
        starttls: false,
        ..config()
    };
    let mut h = Harness::new(loopback.clone(), "127.0.0.1:5000", false);
    h.feed(b"EHLO a\r\n");
    assert!(h.take().contains("AUTH PLAIN LOGIN"));
    let mut h = Harness::new(loopback.clone(), "[::ffff:127.0.0.1]:5000", false);
    h.feed(b"EHLO a\r\n");
    assert!(h.take().contains("AUTH PLAIN LOGIN"));
    let mut h = Harness::new(loopback, "192.0.2.7:5000", false);
    h.feed(b"EHLO a\r\nAUTH PLAIN\r\n");
    let text = h.take();
    assert!(!text.contains("AUTH PLAIN LOGIN"), "{text}");
    assert!(
        text.ends_with("502 5.5.1 AUTH is not offered\r\n"),
        "{text}"
    );
}

#[test]
fn commands_out_of_sequence_are_refused_with_503() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"MAIL FROM:<a@b.example>\r\nDATA\r\nHELO x\r\nRCPT TO:<u@outdial.test>\r\n");
    assert_eq!(h.codes(), [220, 503, 503, 250, 503]);
    h.feed(b"MAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n");
    assert_eq!(h.codes(), [250, 503]);
    let mut h = Harness::new(config(), "", false);
    h.feed(b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@outdial.test>\r\nDATA\r\n");
    let text = h.take();
    assert!(
        text.contains("550 5.1.1 No such tenant address\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("554 5.5.1 No valid recipients\r\n"),
        "{text}"
    );
}

#[test]
fn mail_parameters_and_declared_size_are_checked() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\n");
    h.take();
    for (line, expected) in [
        ("MAIL FROM:<a@b.example> SIZE=4097", "552 5.3.4"),
        (
            "MAIL FROM:<a@b.example> SIZE=99999999999999999999999",
            "552 5.3.4",
        ),
        ("MAIL FROM:<a@b.example> BODY=BINARYMIME", "555 5.5.4"),
        ("MAIL FROM:<a@b.example> RET=FULL", "555 5.5.4"),
    ] {
        let mut h = Harness::new(config(), "", false);
        h.feed(format!("EHLO x\r\n{line}\r\n").as_bytes());
        let text = h.take();
        assert!(
            text.lines().last().is_some_and(|l| l.starts_with(expected)),
            "{line}: {text}"
        );
    }
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FROM:<a@b.example> SIZE=4096 BODY=7BIT\r\n");
    assert_eq!(h.codes(), [220, 250, 250]);
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<jos\xc3\xa9@outdial.test>\r\n");
    let text = h.take();
    assert!(
        text.ends_with("553 5.6.7 Non-ASCII destination address without SMTPUTF8\r\n"),
        "{text}"
    );
    assert!(h.pipeline.asked.is_empty());
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\nRCPT TO:<jos\xc3\xa9@outdial.test>\r\n");
    assert_eq!(h.codes(), [220, 250, 250, 250]);
    assert_eq!(h.pipeline.asked, ["josé@outdial.test"]);
}

#[test]
fn recipients_past_the_limit_get_452_and_the_rest_is_delivered() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FROM:<>\r\n");
    for i in 0..5 {
        h.feed(format!("RCPT TO:<r{i}@outdial.test>\r\n").as_bytes());
    }
    h.feed(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n");
    let text = h.take();
    assert_eq!(text.matches("452 4.5.3 ").count(), 2, "{text}");
    assert_eq!(h.pipeline.delivered.len(), 1);
    assert_eq!(
        h.pipeline.delivered[0].0.rcpt_to,
        ["r0@outdial.test", "r1@outdial.test", "r2@outdial.test"]
    );
    assert_eq!(
        h.pipeline.asked.len(),
        3,
        "refused before asking the pipeline"
    );
}

#[test]
fn an_oversize_message_is_refused_and_the_session_goes_on() {
    let mut input = b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@outdial.test>\r\nDATA\r\n".to_vec();
    for _ in 0..100 {
        input.extend_from_slice(&[b'a'; 78]);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b".\r\nNOOP\r\n");
    let mut h = Harness::new(config(), "", false);
    h.feed(&input);
    let text = h.take();
    assert!(
        text.contains("552 5.3.4 Message too big: the limit is 4096 bytes\r\n250 2.0.0 OK\r\n"),
        "{text}"
    );
    assert!(h.pipeline.delivered.is_empty());
    assert_split_invariant(&config(), false, &input);
}

#[test]
fn the_pipeline_reply_is_sent_as_one_clean_line() {
    let now = Instant::now();
    let peer = SocketAddr::from(([192, 0, 2, 1], 1));
    let mut session = Session::new(Arc::new(config()), peer, false, now);
    session.handle_input(
        now,
        b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@outdial.test>\r\n",
    );
    while let Some(event) = session.poll_event() {
        if matches!(event, Event::CheckRecipient { .. }) {
            session.handle_answer(now, Answer::Recipient(Ok(())));
        }
    }
    session.handle_input(now, b"DATA\r\nx\r\n.\r\n");
    let mut sent = Vec::new();
    while let Some(event) = session.poll_event() {
        match event {
            Event::Send(bytes) => sent.extend_from_slice(&bytes),
            // Hostile text from the pipeline must not become a second reply.
            Event::Deliver { .. } => session.handle_answer(
                now,
                Answer::Delivered(Reply::new(550, (5, 7, 1), "bad\r\n250 2.0.0 smuggled")),
            ),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&sent);
    assert!(
        text.ends_with(
            "354 End data with <CR><LF>.<CR><LF>\r\n550 5.7.1 bad  250 2.0.0 smuggled\r\n"
        ),
        "{text}"
    );
    // The session goes on.
    session.handle_input(now, b"MAIL FROM:<>\r\n");
    assert!(matches!(session.poll_event(), Some(Event::Send(b)) if b.starts_with(b"250 ")));
}

#[test]
fn a_command_timeout_closes_with_421() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FR");
    h.take();
    let deadline = h.session.poll_timeout().unwrap_or(h.now);
    assert_eq!(deadline, h.now + config().command_timeout);
    h.session
        .handle_timeout(deadline - Duration::from_millis(1));
    h.pump();
    assert!(!h.closed, "not before the deadline");
    h.session.handle_timeout(deadline);
    h.pump();
    assert!(h.closed);
    assert!(h.take().starts_with("421 4.4.2 "));
}

#[test]
fn a_data_timeout_closes_with_421_and_delivers_nothing() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@outdial.test>\r\nDATA\r\nSubject: x\r\n");
    let deadline = h.session.poll_timeout().unwrap_or(h.now);
    assert_eq!(deadline, h.now + config().data_timeout);
    h.session.handle_timeout(deadline);
    h.pump();
    assert!(h.closed);
    assert!(
        h.take()
            .ends_with("421 4.4.2 mx.outdial.test timeout: closing the connection\r\n")
    );
    assert!(h.pipeline.delivered.is_empty());
}

#[test]
fn a_disconnect_in_the_middle_of_data_delivers_nothing() {
    let mut h = Harness::new(config(), "", false);
    h.feed(
        b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@outdial.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n",
    );
    h.session.handle_eof();
    h.pump();
    assert!(h.session.is_closed());
    h.feed(b".\r\n");
    assert!(h.pipeline.delivered.is_empty());
}

#[test]
fn too_many_errors_end_the_session() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nFOO\r\nBAR\r\nBAZ\r\nQUX\r\nQUUX\r\nNOOP\r\n");
    let text = h.take();
    assert_eq!(
        text.matches("500 5.5.1 Unknown command").count(),
        4,
        "{text}"
    );
    assert!(
        text.ends_with("421 4.5.0 Too many errors: closing the connection\r\n"),
        "{text}"
    );
    assert!(h.closed);
}

#[test]
fn starttls_discards_what_was_pipelined_after_it() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nSTARTTLS\r\nRSET\r\n");
    let text = h.take();
    assert!(text.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{text}");
    assert_eq!(h.tls_handshakes, 1);
    assert!(h.session.is_tls());
    // After the handshake the client must say EHLO again; nothing before it is remembered.
    h.feed(b"MAIL FROM:<>\r\nEHLO x\r\nSTARTTLS\r\n");
    let text = h.take();
    assert!(
        text.starts_with("503 5.5.1 Send EHLO or HELO first\r\n"),
        "{text}"
    );
    assert!(text.contains("250-AUTH PLAIN LOGIN\r\n"), "{text}");
    assert!(
        text.ends_with("503 5.5.1 TLS is already active\r\n"),
        "{text}"
    );
    let mut h = Harness::new(
        SessionConfig {
            starttls: false,
            ..config()
        },
        "",
        false,
    );
    h.feed(b"EHLO x\r\nSTARTTLS\r\n");
    assert!(h.take().ends_with("502 5.5.1 STARTTLS is not offered\r\n"));
}

#[test]
fn auth_plain_and_login_run_their_exchanges() {
    let plain = "AHVzZXJAdGVzdHNlcnZlcgBzZWNyZXRwYXNzd29yZA=="; // \0user@testserver\0secretpassword
    let mut h = Harness::new(config(), "", true);
    h.feed(format!("EHLO x\r\nAUTH PLAIN {plain}\r\nAUTH PLAIN {plain}\r\n").as_bytes());
    assert_eq!(h.codes(), [220, 250, 235, 503]);
    h.feed(b"MAIL FROM:<>\r\nRCPT TO:<u@outdial.test>\r\nDATA\r\nSubject: x\r\n\r\nb\r\n.\r\n");
    assert_eq!(h.pipeline.delivered.len(), 1);
    let envelope = &h.pipeline.delivered[0].0;
    assert_eq!(envelope.authenticated.as_deref(), Some("user@testserver"));
    assert!(envelope.tls);

    let mut h = Harness::new(config(), "", true);
    h.feed(b"EHLO x\r\nAUTH LOGIN\r\n");
    assert!(h.take().ends_with("334 VXNlcm5hbWU6\r\n"));
    h.feed(b"dXNlckB0ZXN0c2VydmVy\r\n");
    assert_eq!(h.take(), "334 UGFzc3dvcmQ6\r\n");
    h.feed(b"d3Jvbmc=\r\n");
    assert_eq!(h.take(), "535 5.7.8 Authentication credentials invalid\r\n");
    h.feed(b"AUTH LOGIN dXNlckB0ZXN0c2VydmVy\r\nc2VjcmV0cGFzc3dvcmQ=\r\n");
    assert_eq!(h.codes(), [334, 235]);

    let mut h = Harness::new(config(), "", true);
    h.feed(b"EHLO x\r\nAUTH PLAIN\r\n*\r\nMAIL FROM:<>\r\nAUTH PLAIN\r\nRSET\r\nAUTH CRAM-MD5\r\n");
    assert_eq!(h.codes(), [220, 250, 334, 501, 250, 503, 250, 504]);
}

#[test]
fn shutdown_waits_for_a_message_in_flight_then_says_421() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<u@outdial.test>\r\nDATA\r\nSubject: x\r\n");
    h.take();
    h.session.handle_shutdown(h.now);
    h.pump();
    assert!(!h.closed);
    h.feed(b"\r\nbody\r\n.\r\nMAIL FROM:<>\r\n");
    let text = h.take();
    assert!(
        text.starts_with("250 2.0.0 Message accepted\r\n421 4.3.2 "),
        "{text}"
    );
    assert!(h.closed);
    assert_eq!(h.pipeline.delivered.len(), 1);

    let mut h = Harness::new(config(), "", false);
    h.session.handle_shutdown(h.now);
    h.pump();
    assert!(h.closed);
    assert!(
        h.take()
            .ends_with("421 4.3.2 mx.outdial.test shutting down\r\n")
    );
}

#[test]
fn an_overlong_line_is_refused_and_the_next_one_is_read() {
    let mut input = b"EHLO ".to_vec();
    input.extend_from_slice(&[b'a'; 1200]);
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let mut h = Harness::new(config(), "", false);
    h.feed(&input);
    assert_eq!(
        h.take(),
        "220 mx.outdial.test ESMTP Outdial\r\n500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"
    );
    assert_split_invariant(&config(), false, &input);
    // A line that never ends is not buffered without bound.
    let mut h = Harness::new(config(), "", false);
    for _ in 0..1000 {
        h.feed(&[b'x'; 1000]);
    }
    assert!(h.session.input.len() <= config().max_line_bytes);
    assert_eq!(h.codes(), [220, 500]);
}

#[test]
fn the_small_commands_answer_politely() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"EHLO x\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nNOOP\r\nRSET\r\nBDAT 10 LAST\r\nQUIT\r\nNOOP\r\n");
    let text = h.take();
    assert_eq!(h.codes(), Vec::<u16>::new());
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .map(|l| l.get(..9).unwrap_or(l))
        .collect();
    assert_eq!(
        codes,
        [
            "220 mx.ou",
            "250 HELP",
            "252 2.5.0",
            "502 5.5.1",
            "214 2.0.0",
            "250 2.0.0",
            "250 2.0.0",
            "502 5.5.1",
            "221 2.0.0"
        ]
    );
    assert!(h.closed);
}

#[test]
fn a_web_request_is_refused_and_closed() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"POST /v1/calls HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        h.take()
            .ends_with("502 5.7.0 This is an SMTP server, not a web server\r\n")
    );
    assert!(h.closed);
}

#[test]
fn bare_cr_and_nul_in_commands_are_refused() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"HELO a\rb\r\nHELO a\0b\r\nHELO ok\r\n");
    assert_eq!(h.codes(), [220, 500, 500, 250]);
    // A bare LF ends a command line (only DATA is strict).
    let mut h = Harness::new(config(), "", false);
    h.feed(b"HELO a\nNOOP\n");
    assert_eq!(h.codes(), [220, 250, 250]);
}

#[test]
fn unbracketed_paths_are_accepted() {
    let mut h = Harness::new(config(), "", false);
    h.feed(b"HELO a\r\nMAIL FROM: a@b.example\r\nRCPT TO: user@testserver\r\n");
    assert_eq!(h.codes(), [220, 250, 250, 250]);
    assert_eq!(h.pipeline.asked, ["user@testserver"]);
}

#[test]
fn a_session_closed_by_a_refused_answer_stays_closed() {
    // Found by the fuzz target: the error limit reached by a pipeline's refusal closed the
    // session, then the answer's deadline was set again and a timeout sent a second 421.
    let mut h = Harness::new(
        SessionConfig {
            max_errors: 2,
            ..config()
        },
        "",
        false,
    );
    h.feed(b"EHLO x\r\nFOO\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@outdial.test>\r\n");
    let text = h.take();
    assert!(
        text.ends_with("421 4.5.0 Too many errors: closing the connection\r\n"),
        "{text}"
    );
    assert!(h.closed);
    assert_eq!(h.session.poll_timeout(), None);
    h.session.handle_timeout(h.now + Duration::from_secs(3600));
    h.pump();
    assert_eq!(h.take(), "");
}
