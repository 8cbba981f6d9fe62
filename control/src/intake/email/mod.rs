//! The e-mail intake: a message received by the SMTP gateway (`crate::smtp`) becomes call
//! requests, reformatted into [`crate::intake::CallRequest`]s and checked by the same
//! [`crate::intake::Validator`] as the HTTP API. `docs/email.md` is the user's reference.
//!
//! In the order a message flows through it:
//! - [`address`]: the recipient selects the tenant (`tenant@domain`) and optionally one of
//!   its applications (`application+tenant@domain`);
//! - [`message`]: MIME with `mail-parser` (multipart, encoded words, base64 and
//!   quoted-printable, charsets);
//! - [`dkim`]: which domains signed the message, for tenants that require it;
//! - [`fields`]: the request format (`Key: value` body lines or `X-Outdial-*` headers);
//! - [`attachments`]: an attached VoiceXML application and the files beside it;
//! - [`delivery`]: [`EmailIntake`], the [`crate::smtp::Delivery`] that ties them together
//!   and stores the calls (and files) in one transaction;
//! - [`reply`]: the SMTP replies, each naming its rule; [`replies`]: acknowledgement and
//!   rejection mails through a durable outbox; [`settings`]: `[email]`.

pub mod address;
pub mod attachments;
pub mod delivery;
pub mod dkim;
pub mod fields;
pub mod message;
pub mod replies;
mod reply;
pub mod settings;

pub use delivery::EmailIntake;
pub use replies::ReplySender;
pub use settings::{EmailConfig, EmailTenant};

#[cfg(test)]
mod tests;
