//! One SMTP session (`smtp::Session`, sans-IO) fed arbitrary client input: never a panic;
//! every reply is whole CRLF lines with a code in 200–599; nothing follows `Close`; every
//! delivered message is within the size limit with CRLF lines only (no bare CR or LF, no
//! NUL); and the same input fed whole or in pieces (sizes taken from the input) gives the
//! same replies and deliveries. Each input byte picks a token of the protocol (`EHLO `,
//! `MAIL FROM:`, `<a@outdial.test>`, `\r\n.\r\n`, a bare `\n`, …), so random input reaches
//! deep states; the raw bytes are fed too.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_control::smtp::{Answer, Event, Reply, Session, SessionConfig};

const TOKENS: [&[u8]; 48] = [
    b"EHLO ",
    b"HELO ",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"VRFY ",
    b"HELP",
    b"STARTTLS",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b" ",
    b"\r\n",
    b"\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"..",
    b"\r\n.\r\n",
    b"<a@outdial.test>",
    b"<>",
    b"<nobody@outdial.test>",
    b"b@c.example",
    b"<\xc3\xa9@outdial.test>",
    b" SIZE=",
    b"100",
    b"99999999999999999999",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b" BODY=BINARYMIME",
    b"AHUAcHc=",
    b"dQ==",
    b"cHc=",
    b"*",
    b"=",
    b"\0",
    b"x",
    b"Subject: s",
    b"GET / HTTP/1.1",
    b"BDAT 5 LAST",
    b"<a@xn--->",
    b"AUTH CRAM-MD5",
    b"\r\n\r\n",
    b"aaaaaaaaaaaaaaaaaaaa",
    b":",
];

fn config(starttls: bool) -> SessionConfig {
    SessionConfig {
        hostname: "fuzz.outdial.test".to_owned(),
        max_message_bytes: 256,
        max_recipients: 3,
        max_line_bytes: 80,
        max_errors: 20,
        starttls,
        auth_on_loopback: true,
        ..SessionConfig::default()
    }
}

/// Replies sent and messages delivered.
#[derive(Debug, PartialEq, Eq, Default)]
struct Transcript {
    sent: Vec<u8>,
    delivered: Vec<(Vec<String>, Vec<u8>)>,
    closed: bool,
}

fn check_replies(bytes: &[u8]) {
    assert!(bytes.ends_with(b"\r\n"), "{bytes:?}");
    for line in bytes[..bytes.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(!line.contains(&b'\r'), "{line:?}");
        let code: u16 = std::str::from_utf8(&line[..3])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!((200..600).contains(&code), "{line:?}");
        assert!(matches!(line.get(3), Some(b' ' | b'-')), "{line:?}");
    }
}

fn pump(session: &mut Session, now: Instant, limit: usize, t: &mut Transcript) {
    while let Some(event) = session.poll_event() {
        assert!(!t.closed, "{event:?} after Close");
        match event {
            Event::Send(bytes) => {
                check_replies(&bytes);
                t.sent.extend_from_slice(&bytes);
            }
            Event::Close => t.closed = true,
            Event::StartTls => session.handle_answer(now, Answer::TlsEstablished),
            Event::CheckRecipient { recipient, .. } => {
                let answer = if recipient.starts_with("nobody") {
                    Err(Reply::new(550, (5, 1, 1), "no"))
                } else {
                    Ok(())
                };
                session.handle_answer(now, Answer::Recipient(answer));
            }
            Event::Authenticate { password, user } => {
                session.handle_answer(
                    now,
                    Answer::Authenticated((password == "pw").then_some(user)),
                );
            }
            Event::Deliver { envelope, message } => {
                assert!(message.len() <= limit);
                assert!(!message.contains(&0));
                for (i, &b) in message.iter().enumerate() {
                    if b == b'\r' {
                        assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR");
                    }
                    if b == b'\n' {
                        assert!(i > 0 && message[i - 1] == b'\r', "bare LF");
                    }
                }
                let reply = if message.len() % 2 == 0 {
                    Reply::new(250, (2, 0, 0), "ok")
                } else {
                    Reply::new(554, (5, 6, 0), "odd\r\nsmuggled")
                };
                t.delivered.push((envelope.rcpt_to, message));
                session.handle_answer(now, Answer::Delivered(reply));
            }
        }
    }
}

fn run(input: &[u8], pieces: &[usize], starttls: bool, end: bool) -> Transcript {
    let now = Instant::now();
    let config = config(starttls);
    let limit = config.max_message_bytes;
    let peer = SocketAddr::from(([127, 0, 0, 1], 2525));
    let mut session = Session::new(Arc::new(config), peer, false, now);
    let mut t = Transcript::default();
    pump(&mut session, now, limit, &mut t);
    let mut rest = input;
    for &size in pieces {
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        session.handle_input(now, piece);
        pump(&mut session, now, limit, &mut t);
        rest = tail;
    }
    session.handle_input(now, rest);
    pump(&mut session, now, limit, &mut t);
    if end {
        session.handle_timeout(now + Duration::from_secs(3600));
        pump(&mut session, now, limit, &mut t);
        assert!(
            session.is_closed() || t.closed,
            "a late timeout must close the session"
        );
        session.handle_input(now, b"NOOP\r\n");
        pump(&mut session, now, limit, &mut t);
    }
    t
}

fn exercise(input: &[u8], seed: &[u8]) {
    run(input, &[], true, true);
    let whole = run(input, &[], false, false);
    let pieces: Vec<usize> = seed.iter().map(|&b| usize::from(b % 13) + 1).collect();
    assert_eq!(
        run(input, &pieces, false, false),
        whole,
        "split into {pieces:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    exercise(data, data);
    let tokens: Vec<u8> = data
        .iter()
        .flat_map(|&byte| TOKENS[usize::from(byte) % TOKENS.len()].iter().copied())
        .collect();
    exercise(&tokens, data);
});
