//! What the SMTP session asks of the pipeline, and what it answers.
//!
//! The session owns the wire (syntax, limits, TLS, timeouts); a [`Delivery`] owns the
//! meaning (tenants, request fields, storage). Every answer is a complete [`Reply`] so the
//! pipeline chooses the code, the enhanced status code and the text the client sees.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// A boxed future, so [`Delivery`] stays object-safe.
pub type DeliveryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One SMTP reply: `code`, RFC 3463 enhanced status `class.subject.detail`, and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Basic reply code, 200–599.
    pub code: u16,
    /// Enhanced status code (RFC 3463), e.g. `(5, 1, 1)`.
    pub enhanced: (u8, u16, u16),
    /// Human-readable text, one line, no CR or LF.
    pub text: String,
}

impl Reply {
    /// A reply from its parts.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// Whether the reply is a 2xx success.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The envelope of one message, as the session saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The client's address.
    pub peer: SocketAddr,
    /// The name given in `EHLO`/`HELO`.
    pub helo: String,
    /// The `MAIL FROM` reverse-path, without angle brackets; empty for the null path `<>`.
    pub mail_from: String,
    /// The accepted `RCPT TO` forward-paths, without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The identity `AUTH` proved, with the tenant it belongs to, if the client authenticated.
    pub authenticated: Option<String>,
    /// Whether the session ran over TLS (STARTTLS) when the message was sent.
    pub tls: bool,
}

/// The pipeline side of the SMTP gateway.
pub trait Delivery: Send + Sync + 'static {
    /// Checks one `RCPT TO` address before it is accepted: `Ok` accepts it (`250 2.1.5`);
    /// `Err` is the refusal sent instead (e.g. `550 5.1.1` for an unknown tenant address).
    fn check_recipient<'a>(
        &'a self,
        envelope: &'a Envelope,
        recipient: &'a str,
    ) -> DeliveryFuture<'a, Result<(), Reply>>;

    /// Checks `AUTH` credentials: `Some(identity)` when they are right, `None` otherwise.
    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> DeliveryFuture<'a, Option<String>>;

    /// Takes a complete message (headers and body, CRLF line endings, dot-stuffing already
    /// removed). The reply is the answer to `DATA`: a 2xx only once every call the message
    /// asks for is durably stored; otherwise a 4xx/5xx whose text names the rule, with
    /// nothing of the message stored.
    fn deliver(&self, envelope: Envelope, message: Vec<u8>) -> DeliveryFuture<'_, Reply>;
}
