//! SIP (RFC 3261) over UDP and TCP, sans-IO: messages, transactions, dialogs and the user agent
//! for outbound calls.
//!
//! - [`message`]: zero-copy parser and printer (RFC 3261 §7, §19, §20, §25).
//! - [`transaction`]: client INVITE / non-INVITE and server machines with their timers (§17).
//! - [`auth`]: digest authentication answering 401/407 (RFC 8760, RFC 7616).
//! - [`dialog`]: UAC dialog state and in-dialog requests (§12).
//! - [`endpoint`]: the user agent for all calls on one core.
//! - [`refer`]: blind transfer with REFER and its NOTIFYs (RFC 3515).
//! - [`register`]: registration with refresh and retry (RFC 3261 §10.2).
//! - [`transport`]: UDP/TCP/TLS names and the stream framer (RFC 3261 §18.3).
//! - [`target`]: what may be dialled, checked alike by the endpoint and the API.
//! - [`pike`]: per-source rate limit for requests from strangers.
//! - [`hep`]: HEP v3 copies of SIP messages for a capture server (Homer, sngrep).
//! - [`tls`]: TLS between a TCP stream and the SIP framer (rustls, sans-IO).

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod hep;
pub mod message;
pub mod pike;
pub mod refer;
pub mod register;
pub mod target;
pub mod tls;
pub mod transaction;
pub mod transport;

pub use endpoint::{
    BorderConfig, DialParams, EARLY_MEDIA_LIMIT, Endpoint, NoEarlyMedia, PROGRESS_REPEAT,
    SipConfig, SipError, SipEvent,
};
pub use message::{Message, ParseError, parse_message};
pub use transport::{Frame, FramingError, StreamFramer, Transport};
