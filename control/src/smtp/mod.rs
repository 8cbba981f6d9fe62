//! The SMTP gateway: call requests by e-mail.
//!
//! **Entry point (stable):**
//!
//! ```text
//! pub async fn smtp::spawn(
//!     config: &SmtpConfig,                     // [smtp] of the configuration file
//!     delivery: Arc<dyn Delivery>,             // the e-mail intake
//!     shutdown: tokio::sync::watch::Receiver<bool>,  // send `true` to stop
//! ) -> Result<SmtpServer, SmtpError>
//! ```
//!
//! It binds `config.listen`, loads the STARTTLS certificate, and serves in a spawned task.
//! `SmtpServer::local_addr()` is the bound address; `SmtpServer::stopped().await` returns once
//! the listener has stopped after `shutdown` turned `true` (sessions end at their next command
//! boundary with `421 4.3.2`; a message being received or delivered is finished first).
//! `serve` calls it only when `config.enabled`.
//!
//! - [`delivery`]: the seam between the SMTP session (the wire) and the pipeline (what a
//!   message means): the session asks a [`Delivery`] whether a recipient exists, who an
//!   `AUTH` identity is, and finally hands it the whole message and sends the [`Reply`] it
//!   answers. The e-mail intake (`intake::email`) implements it.
//! - [`session`]: one SMTP session, sans-IO (bytes and answers in, replies and requests out).
//! - [`data`]: the `DATA` reader (end of message, dot-stuffing, bare CR/LF refusal).
//! - [`address`], [`sasl`]: address checks; AUTH PLAIN/LOGIN decoding.
//! - [`listener`]: the tokio shell: sockets, connection caps, STARTTLS ([`tls`]), shutdown.

pub mod address;
pub mod data;
pub mod delivery;
pub mod listener;
pub mod sasl;
pub mod session;
pub mod tls;

pub use delivery::{Delivery, DeliveryFuture, Envelope, Reply};
pub use listener::{SmtpError, SmtpServer, spawn};
pub use session::{Answer, Event, Session, SessionConfig};
