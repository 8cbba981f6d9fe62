//! Intake: every way a call request arrives, reformatted into one [`CallRequest`] and checked
//! by one [`Validator`].
//!
//! - [`json`]: the HTTP API's `POST /v1/calls` body (and each item of a batch).
//! - [`batch`]: `POST /v1/calls/batch`, up to 10,000 requests, all-or-nothing or per item.
//! - [`email`]: a message received by the SMTP gateway (one request per destination).
//! - campaign rows reformat into the same [`CallRequest`] when they land.
//!
//! An intake checks only what its wire format says (types, syntax); the [`Validator`] applies
//! the rules, the same for every intake, and every refusal names the field and the rule
//! ([`FieldError`]).

pub mod batch;
pub mod email;
pub mod json;
mod refusal;
mod request;
pub mod validate;

pub use refusal::{FieldError, Rule};
pub use request::{CallRequest, RetrySpec};
pub use validate::{MAX_RING_TIMEOUT_SECS, Validator};
