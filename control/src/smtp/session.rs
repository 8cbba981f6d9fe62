//! One SMTP session (RFC 5321), sans-IO: bytes and answers in, replies and requests out.
//!
//! The caller (the listener, a test, a fuzz target) drives it:
//!
//! ```text
//! Session::new(config, peer, tls, now)          queues the 220 greeting
//! handle_input(now, bytes)                      bytes from the client, any split
//! handle_answer(now, answer)                    the answer to the pending Event request
//! handle_timeout(now) at poll_timeout()         421 and close when the client is too slow
//! handle_shutdown(now) / handle_eof()
//! poll_event() until None                       after every handle_*
//! ```
//!
//! Events come out in the order they must happen: bytes to send, then (at most one at a time)
//! a request to the pipeline (`CheckRecipient`, `Authenticate`, `Deliver`) or to the shell
//! (`StartTls`, `Close`). While a request is pending, input is kept and read after the answer.
//! Command syntax is parsed by `smtp-proto`; the `DATA` body by [`DataReader`], which refuses
//! bare CR and LF (SMTP smuggling).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_proto::Request;

use super::address::{self, AddressProblem};
use super::data::{DataEnd, DataReader};
use super::delivery::{Envelope, Reply};
use super::sasl::{self, Mechanism};

/// What a session allows and offers; shared by every session of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The name in the greeting and the `EHLO` reply.
    pub hostname: String,
    /// Largest message accepted, in bytes after dot-stuffing is removed (`SIZE`).
    pub max_message_bytes: usize,
    /// Most recipients in one message; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_bytes: usize,
    /// Refused commands after which the session ends with `421 4.5.0`.
    pub max_errors: u32,
    /// Time to send each command line (and the whole greeting-to-first-command wait).
    pub command_timeout: Duration,
    /// Time to send a whole message after `354`.
    pub data_timeout: Duration,
    /// Whether `STARTTLS` is offered (the listener has a certificate).
    pub starttls: bool,
    /// Whether `AUTH` is offered without TLS to clients on the loopback interface.
    pub auth_on_loopback: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".to_owned(),
            max_message_bytes: 10 << 20,
            max_recipients: 100,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            starttls: false,
            auth_on_loopback: false,
        }
    }
}

/// The longest command line by default: RFC 5321's text-line limit (§4.5.3.1.6), room for
/// `SMTPUTF8` addresses and `AUTH PLAIN` responses beyond the 512 of §4.5.3.1.4.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1000;

/// What the session needs done, in order.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes to write to the client (one or more complete replies).
    Send(Vec<u8>),
    /// Ask the pipeline about one recipient; answer with [`Answer::Recipient`].
    CheckRecipient {
        /// The envelope so far.
        envelope: Envelope,
        /// The `RCPT TO` address, without angle brackets.
        recipient: String,
    },
    /// Ask the pipeline to check credentials; answer with [`Answer::Authenticated`].
    Authenticate {
        /// The user name (authentication identity).
        user: String,
        /// The password. Never logged (see the `Debug` impl).
        password: String,
    },
    /// Hand a complete message to the pipeline; answer with [`Answer::Delivered`].
    Deliver {
        /// The envelope.
        envelope: Envelope,
        /// The message: CRLF lines, dot-stuffing removed.
        message: Vec<u8>,
    },
    /// Write everything sent so far, then run the TLS handshake; answer with
    /// [`Answer::TlsEstablished`], or close the connection if it fails.
    StartTls,
    /// Close the connection (after writing what was sent).
    Close,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(bytes) => write!(f, "Send({:?})", String::from_utf8_lossy(bytes)),
            Self::CheckRecipient { recipient, .. } => {
                write!(f, "CheckRecipient({recipient:?})")
            }
            Self::Authenticate { user, .. } => write!(f, "Authenticate({user:?}, <password>)"),
            Self::Deliver { message, .. } => write!(f, "Deliver({} bytes)", message.len()),
            Self::StartTls => f.write_str("StartTls"),
            Self::Close => f.write_str("Close"),
        }
    }
}

/// The answer to the pending request of an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// For [`Event::CheckRecipient`]: accepted, or the refusal to send.
    Recipient(Result<(), Reply>),
    /// For [`Event::Authenticate`]: the identity proved, or `None` for wrong credentials.
    Authenticated(Option<String>),
    /// For [`Event::Deliver`]: the reply to `DATA`.
    Delivered(Reply),
    /// For [`Event::StartTls`]: the handshake completed.
    TlsEstablished,
}

/// What the session is doing.
#[derive(Debug)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Reading the message after `354`.
    Data(DataReader),
    /// Reading a SASL response line after `334`.
    AuthResponse(AuthStep),
    /// Waiting for the answer to a request.
    Waiting(Pending),
    /// `STARTTLS` accepted; waiting for the handshake.
    StartingTls,
    /// Done: nothing more is read or sent.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Recipient,
    Auth,
    Delivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthStep {
    /// PLAIN: the whole response.
    Plain,
    /// LOGIN: the user name.
    LoginUser,
    /// LOGIN: the password, for this user.
    LoginPassword(String),
}

/// The mail transaction between `MAIL` and the end of `DATA`.
#[derive(Debug, Clone)]
struct Transaction {
    mail_from: String,
    smtputf8: bool,
    rcpt_to: Vec<String>,
}

/// One SMTP session. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: SocketAddr,
    tls: bool,
    helo: Option<String>,
    authenticated: Option<String>,
    transaction: Option<Transaction>,
    /// The address of the `RCPT` being checked.
    pending_recipient: Option<String>,
    phase: Phase,
    /// Received bytes not read yet.
    input: Vec<u8>,
    /// After an over-long line: drop bytes up to the next LF.
    skipping_line: bool,
    errors: u32,
    deadline: Option<Instant>,
    shutting_down: bool,
    events: VecDeque<Event>,
}

/// The HTTP methods whose arrival means a browser or proxy was pointed at this port.
const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

impl Session {
    /// A new session with a client at `peer`; `tls` when the connection is already encrypted.
    /// Queues the `220` greeting.
    pub fn new(config: Arc<SessionConfig>, peer: SocketAddr, tls: bool, now: Instant) -> Self {
        let mut session = Self {
            deadline: Some(now + config.command_timeout),
            config,
            peer,
            tls,
            helo: None,
            authenticated: None,
            transaction: None,
            pending_recipient: None,
            phase: Phase::Command,
            input: Vec::new(),
            skipping_line: false,
            errors: 0,
            shutting_down: false,
            events: VecDeque::new(),
        };
        let greeting = format!("220 {} ESMTP Outdial\r\n", session.config.hostname);
        session.send(greeting.as_bytes());
        session
    }

    /// The next thing to do, if any. Drain after every `handle_*` call.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` while waiting for an
    /// answer or once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the session reads input now (not waiting for an answer, a handshake or closed).
    pub fn wants_input(&self) -> bool {
        matches!(
            self.phase,
            Phase::Command | Phase::Data(_) | Phase::AuthResponse(_)
        )
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Bytes from the client, in any split.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed | Phase::StartingTls) {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.run(now);
    }

    /// The answer to the pending request. An answer nobody asked for is ignored.
    pub fn handle_answer(&mut self, now: Instant, answer: Answer) {
        match (&self.phase, answer) {
            (Phase::Waiting(Pending::Recipient), Answer::Recipient(result)) => {
                self.phase = Phase::Command;
                match result {
                    Ok(()) => {
                        self.accept_pending_recipient();
                        self.reply(250, (2, 1, 5), "Recipient ok");
                    }
                    Err(refusal) => {
                        self.pending_recipient = None;
                        self.refuse_with(&refusal);
                    }
                }
            }
            (Phase::Waiting(Pending::Auth), Answer::Authenticated(identity)) => {
                self.phase = Phase::Command;
                match identity {
                    Some(identity) => {
                        self.authenticated = Some(identity);
                        self.reply(235, (2, 7, 0), "Authentication succeeded");
                    }
                    None => self.refuse(535, (5, 7, 8), "Authentication credentials invalid"),
                }
            }
            (Phase::Waiting(Pending::Delivery), Answer::Delivered(reply)) => {
                self.phase = Phase::Command;
                self.transaction = None;
                self.send_reply(&reply);
            }
            (Phase::StartingTls, Answer::TlsEstablished) => {
                // RFC 3207 §4.2: forget everything learnt before the handshake.
                self.phase = Phase::Command;
                self.tls = true;
                self.helo = None;
                self.authenticated = None;
                self.transaction = None;
                self.input.clear();
            }
            _ => return,
        }
        if !self.is_closed() {
            self.deadline = Some(now + self.config.command_timeout);
        }
        self.run(now);
    }

    /// The deadline from [`poll_timeout`](Self::poll_timeout) passed (checked against `now`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_closed() && self.deadline.is_some_and(|deadline| now >= deadline) {
            let text = format!("{} timeout: closing the connection", self.config.hostname);
            self.reply(421, (4, 4, 2), &text);
            self.close();
        }
    }

    /// The server is stopping: the session ends at its next command boundary with `421`; a
    /// message being received or delivered is finished first.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.run(now);
    }

    /// The client closed its side. A message not yet complete is dropped, never delivered.
    pub fn handle_eof(&mut self) {
        if !matches!(self.phase, Phase::Waiting(_)) {
            self.phase = Phase::Closed;
            self.deadline = None;
        }
    }

    /// Reads as much of the input as the current phase allows.
    fn run(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Command | Phase::AuthResponse(_) => {
                    if self.shutting_down && matches!(self.phase, Phase::Command) {
                        let text = format!("{} shutting down", self.config.hostname);
                        self.reply(421, (4, 3, 2), &text);
                        self.close();
                        return;
                    }
                    let Some(line) = self.next_line() else {
                        return;
                    };
                    self.deadline = Some(now + self.config.command_timeout);
                    match line {
                        Line::TooLong => self.refuse(500, (5, 5, 2), "Line too long"),
                        Line::Complete(line) => {
                            if let Phase::AuthResponse(step) = &self.phase {
                                let step = step.clone();
                                self.phase = Phase::Command;
                                self.auth_response(step, &line);
                            } else {
                                self.command(now, &line);
                            }
                        }
                    }
                }
                Phase::Data(reader) => {
                    if self.input.is_empty() {
                        return;
                    }
                    let (used, end) = reader.feed(&self.input);
                    self.input.drain(..used);
                    let Some(end) = end else {
                        return;
                    };
                    self.phase = Phase::Command;
                    self.deadline = Some(now + self.config.command_timeout);
                    self.data_end(end);
                }
                Phase::Waiting(_) | Phase::StartingTls | Phase::Closed => return,
            }
        }
    }

    /// The next command line from the input, without its line ending.
    fn next_line(&mut self) -> Option<Line> {
        loop {
            let newline = memchr::memchr(b'\n', &self.input);
            if self.skipping_line {
                match newline {
                    Some(at) => {
                        self.input.drain(..=at);
                        self.skipping_line = false;
                        continue;
                    }
                    None => {
                        self.input.clear();
                        return None;
                    }
                }
            }
            let Some(at) = newline else {
                if self.input.len() > self.config.max_line_bytes {
                    self.input.clear();
                    self.skipping_line = true;
                    return Some(Line::TooLong);
                }
                return None;
            };
            if at + 1 > self.config.max_line_bytes {
                self.input.drain(..=at);
                return Some(Line::TooLong);
            }
            let mut line: Vec<u8> = self.input.drain(..=at).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Some(Line::Complete(line));
        }
    }

    /// One command line (without CRLF).
    fn command(&mut self, now: Instant, line: &[u8]) {
        let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let verb = String::from_utf8_lossy(&line[..verb_end]).to_ascii_uppercase();
        if HTTP_METHODS.contains(&verb.as_str()) {
            self.reply(502, (5, 7, 0), "This is an SMTP server, not a web server");
            self.close();
            return;
        }
        if line.iter().any(|&b| b == b'\r' || b == 0) {
            self.refuse(500, (5, 5, 2), "Bare CR or NUL in the command line");
            return;
        }
        let normalized = normalize_path(&verb, line);
        let mut framed = normalized.into_owned();
        framed.extend_from_slice(b"\r\n");
        let parsed = Request::parse(&mut framed.iter());
        let request = match parsed {
            Ok(request) => request,
            Err(error) => {
                self.parse_error(&verb, &error);
                return;
            }
        };
        let rest = String::from_utf8_lossy(&line[verb_end..]).trim().to_owned();
        match request {
            Request::Ehlo { host } => self.hello(&host, true),
            Request::Helo { host } => self.hello(&host, false),
            Request::Mail { from } => self.mail(&from, line),
            Request::Rcpt { to } => self.rcpt(&to),
            Request::Data => self.data(now),
            Request::Rset => {
                self.transaction = None;
                self.reply(250, (2, 0, 0), "OK");
            }
            Request::Noop { .. } => self.reply(250, (2, 0, 0), "OK"),
            Request::Quit => {
                let text = format!("{} closing the connection", self.config.hostname);
                self.reply(221, (2, 0, 0), &text);
                self.close();
            }
            Request::Vrfy { .. } => self.reply(
                252,
                (2, 5, 0),
                "Cannot verify addresses; send the message and RCPT will tell",
            ),
            Request::Help { .. } => self.reply(
                214,
                (2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            ),
            Request::StartTls => self.starttls(&rest),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            other => {
                let text = format!("{} is not offered", other.name());
                self.refuse(502, (5, 5, 1), &text);
            }
        }
    }

    fn parse_error(&mut self, verb: &str, error: &smtp_proto::Error) {
        use smtp_proto::Error as E;
        match error {
            E::UnknownCommand => self.refuse(500, (5, 5, 1), "Unknown command"),
            E::InvalidSenderAddress => self.refuse(501, (5, 1, 7), "Malformed sender address"),
            E::InvalidRecipientAddress => {
                self.refuse(501, (5, 1, 3), "Malformed recipient address");
            }
            E::UnsupportedParameter { .. } => {
                self.refuse(
                    555,
                    (5, 5, 4),
                    "Parameter not recognized or not implemented",
                );
            }
            E::SyntaxError { syntax } if matches!(verb, "MAIL" | "RCPT") => {
                let text = format!("Syntax: {syntax}");
                self.refuse(500, (5, 5, 2), &text);
            }
            E::SyntaxError { syntax } => {
                let text = format!("Syntax: {syntax}");
                self.refuse(501, (5, 5, 4), &text);
            }
            E::InvalidParameter { param } => {
                let text = format!("Invalid parameter {param}");
                self.refuse(501, (5, 5, 4), &text);
            }
            E::NeedsMoreData { .. } | E::ResponseTooLong | E::InvalidResponse { .. } => {
                self.refuse(500, (5, 5, 2), "Syntax error")
            }
        }
    }

    fn hello(&mut self, host: &str, extended: bool) {
        self.transaction = None;
        self.helo = Some(host.to_owned());
        if !extended {
            let text = format!("{} at your service", self.config.hostname);
            self.send(format!("250 {text}\r\n").as_bytes());
            return;
        }
        let mut lines = vec![
            format!("{} at your service", self.config.hostname),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.config.max_message_bytes),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if self.config.starttls && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        lines.push("HELP".to_owned());
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let separator = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("250{separator}{line}\r\n"));
        }
        self.send(out.as_bytes());
    }

    fn auth_offered(&self) -> bool {
        self.tls || (self.config.auth_on_loopback && self.peer.ip().to_canonical().is_loopback())
    }

    fn mail(&mut self, from: &smtp_proto::MailFrom<Cow<'_, str>>, line: &[u8]) {
        if self.helo.is_none() {
            return self.refuse(503, (5, 5, 1), "Send EHLO or HELO first");
        }
        if self.transaction.is_some() {
            return self.refuse(
                503,
                (5, 5, 1),
                "Sender already given: send RSET to start over",
            );
        }
        let allowed =
            smtp_proto::MAIL_BODY_7BIT | smtp_proto::MAIL_BODY_8BITMIME | smtp_proto::MAIL_SMTPUTF8;
        let extras = from.trans_id.is_some()
            || from.env_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.by != 0
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0;
        if from.flags & !allowed != 0 || extras {
            return self.refuse(
                555,
                (5, 5, 4),
                "Only SIZE, BODY=7BIT/8BITMIME and SMTPUTF8 are offered",
            );
        }
        if declared_size(line).is_some_and(|size| size > self.config.max_message_bytes as u64) {
            let text = format!(
                "Message size exceeds the limit of {} bytes",
                self.config.max_message_bytes
            );
            return self.refuse(552, (5, 3, 4), &text);
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        if !from.address.is_empty()
            && let Err(problem) = address::check(&from.address, smtputf8)
        {
            let (code, enhanced, text) = match problem {
                AddressProblem::TooLong => (501, (5, 1, 7), "Sender address too long"),
                AddressProblem::Malformed => (501, (5, 1, 7), "Malformed sender address"),
                AddressProblem::BadDomain => (501, (5, 1, 8), "Malformed sender domain"),
                AddressProblem::NeedsSmtputf8 => {
                    (553, (5, 6, 7), "Non-ASCII sender address without SMTPUTF8")
                }
            };
            return self.refuse(code, enhanced, text);
        }
        self.transaction = Some(Transaction {
            mail_from: from.address.to_string(),
            smtputf8,
            rcpt_to: Vec::new(),
        });
        self.reply(250, (2, 1, 0), "Sender ok");
    }

    fn rcpt(&mut self, to: &smtp_proto::RcptTo<Cow<'_, str>>) {
        let Some(tx) = &self.transaction else {
            return self.refuse(503, (5, 5, 1), "Send MAIL first");
        };
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            return self.refuse(555, (5, 5, 4), "RCPT parameters are not offered");
        }
        if to.address.is_empty() {
            return self.refuse(501, (5, 1, 3), "A recipient address is required");
        }
        if let Err(problem) = address::check(&to.address, tx.smtputf8) {
            let (code, enhanced, text) = match problem {
                AddressProblem::TooLong => (501, (5, 1, 3), "Destination address too long"),
                AddressProblem::Malformed => (501, (5, 1, 3), "Malformed destination address"),
                AddressProblem::BadDomain => (501, (5, 1, 2), "Malformed destination domain"),
                AddressProblem::NeedsSmtputf8 => (
                    553,
                    (5, 6, 7),
                    "Non-ASCII destination address without SMTPUTF8",
                ),
            };
            return self.refuse(code, enhanced, text);
        }
        if tx.rcpt_to.len() >= self.config.max_recipients {
            // Not counted as an error: RFC 5321 §4.5.3.1.10 clients send the rest later.
            let text = format!(
                "Too many recipients: at most {} per message",
                self.config.max_recipients
            );
            self.reply(452, (4, 5, 3), &text);
            return;
        }
        let envelope = self.envelope();
        self.pending_recipient = Some(to.address.to_string());
        self.phase = Phase::Waiting(Pending::Recipient);
        self.deadline = None;
        self.events.push_back(Event::CheckRecipient {
            envelope,
            recipient: to.address.to_string(),
        });
    }

    fn accept_pending_recipient(&mut self) {
        if let (Some(tx), Some(recipient)) =
            (self.transaction.as_mut(), self.pending_recipient.take())
        {
            tx.rcpt_to.push(recipient);
        }
    }

    fn data(&mut self, now: Instant) {
        if self.helo.is_none() {
            return self.refuse(503, (5, 5, 1), "Send EHLO or HELO first");
        }
        let Some(tx) = &self.transaction else {
            return self.refuse(503, (5, 5, 1), "Send MAIL first");
        };
        if tx.rcpt_to.is_empty() {
            return self.refuse(554, (5, 5, 1), "No valid recipients");
        }
        self.send(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        self.phase = Phase::Data(DataReader::new(self.config.max_message_bytes));
        self.deadline = Some(now + self.config.data_timeout);
    }

    fn data_end(&mut self, end: DataEnd) {
        match end {
            DataEnd::Message(message) => {
                let envelope = self.envelope();
                self.phase = Phase::Waiting(Pending::Delivery);
                self.deadline = None;
                self.events.push_back(Event::Deliver { envelope, message });
            }
            DataEnd::BareLineEnding => {
                // The framing cannot be trusted: whatever follows might be a smuggled message.
                self.transaction = None;
                self.reply(
                    521,
                    (5, 5, 2),
                    "Bare CR or LF in the message: lines must end with CRLF; closing",
                );
                self.close();
            }
            DataEnd::TooBig => {
                self.transaction = None;
                let text = format!(
                    "Message too big: the limit is {} bytes",
                    self.config.max_message_bytes
                );
                self.reply(552, (5, 3, 4), &text);
            }
            DataEnd::Nul => {
                self.transaction = None;
                self.reply(554, (5, 6, 0), "NUL octet in the message");
            }
        }
    }

    fn starttls(&mut self, rest: &str) {
        if !self.config.starttls {
            return self.refuse(502, (5, 5, 1), "STARTTLS is not offered");
        }
        if self.tls {
            return self.refuse(503, (5, 5, 1), "TLS is already active");
        }
        if !rest.is_empty() {
            return self.refuse(501, (5, 5, 4), "STARTTLS takes no parameters");
        }
        self.reply(220, (2, 0, 0), "Ready to start TLS");
        // RFC 3207 §4.2 and CVE-2011-0411: nothing sent before the handshake may run after it.
        self.input.clear();
        self.phase = Phase::StartingTls;
        self.events.push_back(Event::StartTls);
    }

    fn auth(&mut self, mechanism: u64, initial: &str) {
        if !self.auth_offered() {
            if self.config.starttls {
                return self.refuse(503, (5, 7, 10), "AUTH needs TLS: send STARTTLS first");
            }
            return self.refuse(502, (5, 5, 1), "AUTH is not offered");
        }
        if self.authenticated.is_some() {
            return self.refuse(503, (5, 5, 1), "Already authenticated");
        }
        if self.transaction.is_some() {
            return self.refuse(503, (5, 5, 1), "AUTH is not allowed during a transaction");
        }
        let mechanism = match mechanism {
            smtp_proto::AUTH_PLAIN => Mechanism::Plain,
            smtp_proto::AUTH_LOGIN => Mechanism::Login,
            _ => {
                return self.refuse(
                    504,
                    (5, 5, 4),
                    "Unrecognized authentication mechanism: use PLAIN or LOGIN",
                );
            }
        };
        match (mechanism, initial.is_empty()) {
            (Mechanism::Plain, true) => self.challenge("", AuthStep::Plain),
            (Mechanism::Plain, false) => self.auth_response(AuthStep::Plain, initial.as_bytes()),
            (Mechanism::Login, true) => {
                self.challenge(sasl::LOGIN_USER_PROMPT, AuthStep::LoginUser);
            }
            (Mechanism::Login, false) => {
                self.auth_response(AuthStep::LoginUser, initial.as_bytes());
            }
        }
    }

    fn challenge(&mut self, text: &str, step: AuthStep) {
        self.send(format!("334 {text}\r\n").as_bytes());
        self.phase = Phase::AuthResponse(step);
    }

    fn auth_response(&mut self, step: AuthStep, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        if line.trim() == "*" {
            return self.refuse(501, (5, 0, 0), "AUTH canceled");
        }
        let Ok(decoded) = sasl::decode(&line) else {
            return self.refuse(501, (5, 5, 2), "Cannot decode the AUTH response (base64)");
        };
        let (user, password) = match step {
            AuthStep::Plain => match sasl::plain(&decoded) {
                Ok(credentials) => credentials,
                Err(_) => {
                    return self.refuse(
                        501,
                        (5, 5, 2),
                        "Cannot decode the AUTH response (authzid NUL user NUL password)",
                    );
                }
            },
            AuthStep::LoginUser => {
                return self.challenge(
                    sasl::LOGIN_PASSWORD_PROMPT,
                    AuthStep::LoginPassword(decoded),
                );
            }
            AuthStep::LoginPassword(user) => (user, decoded),
        };
        self.phase = Phase::Waiting(Pending::Auth);
        self.deadline = None;
        self.events
            .push_back(Event::Authenticate { user, password });
    }

    fn envelope(&self) -> Envelope {
        let tx = self.transaction.as_ref();
        Envelope {
            peer: self.peer,
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: tx.map(|tx| tx.mail_from.clone()).unwrap_or_default(),
            rcpt_to: tx.map(|tx| tx.rcpt_to.clone()).unwrap_or_default(),
            authenticated: self.authenticated.clone(),
            tls: self.tls,
        }
    }

    /// Sends a refusal and counts it; past `max_errors` the session ends with `421` instead.
    fn refuse(&mut self, code: u16, enhanced: (u8, u16, u16), text: &str) {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.reply(421, (4, 5, 0), "Too many errors: closing the connection");
            self.close();
            return;
        }
        self.reply(code, enhanced, text);
    }

    fn refuse_with(&mut self, reply: &Reply) {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.reply(421, (4, 5, 0), "Too many errors: closing the connection");
            self.close();
            return;
        }
        self.send_reply(reply);
    }

    fn reply(&mut self, code: u16, enhanced: (u8, u16, u16), text: &str) {
        let (class, subject, detail) = enhanced;
        let line = format!("{code} {class}.{subject}.{detail} {}\r\n", clean(text));
        self.send(line.as_bytes());
    }

    /// A reply from the pipeline, checked: a code outside 200–599 becomes a local error.
    fn send_reply(&mut self, reply: &Reply) {
        if !(200..600).contains(&reply.code) {
            self.reply(451, (4, 3, 0), "Local error in processing");
            return;
        }
        self.reply(reply.code, reply.enhanced, &reply.text);
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(Event::Send(buffer)) = self.events.back_mut() {
            buffer.extend_from_slice(bytes);
        } else {
            self.events.push_back(Event::Send(bytes.to_vec()));
        }
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.deadline = None;
        self.input = Vec::new();
        self.events.push_back(Event::Close);
    }
}

/// A command line as the reader found it.
enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// Reply text on one line of at most 400 characters, without control characters.
fn clean(text: &str) -> String {
    text.chars()
        .take(400)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `MAIL FROM: user@host` and `RCPT TO: user@host` (no angle brackets) are common enough from
/// scripts to accept: the bare path is bracketed before parsing.
fn normalize_path<'a>(verb: &str, line: &'a [u8]) -> Cow<'a, [u8]> {
    let keyword: &[u8] = match verb {
        "MAIL" => b"FROM:",
        "RCPT" => b"TO:",
        _ => return Cow::Borrowed(line),
    };
    let start = 5; // after "MAIL " / "RCPT "
    let Some(after_verb) = line.get(start..) else {
        return Cow::Borrowed(line);
    };
    if after_verb.len() < keyword.len()
        || !after_verb[..keyword.len()].eq_ignore_ascii_case(keyword)
    {
        return Cow::Borrowed(line);
    }
    let path_start = start
        + keyword.len()
        + after_verb[keyword.len()..]
            .iter()
            .take_while(|&&b| b == b' ')
            .count();
    let rest = &line[path_start..];
    if rest.is_empty() || rest[0] == b'<' {
        return Cow::Borrowed(line);
    }
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let mut out = line[..path_start].to_vec();
    out.push(b'<');
    out.extend_from_slice(&rest[..end]);
    out.push(b'>');
    out.extend_from_slice(&rest[end..]);
    Cow::Owned(out)
}

/// The `SIZE=` the client declared on `MAIL`; an overflowing number counts as the largest.
fn declared_size(line: &[u8]) -> Option<u64> {
    let line = String::from_utf8_lossy(line);
    line.split(' ').skip(2).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.eq_ignore_ascii_case("SIZE") {
            return None;
        }
        Some(value.parse::<u64>().unwrap_or(u64::MAX))
    })
}

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;
