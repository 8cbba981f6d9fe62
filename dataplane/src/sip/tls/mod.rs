//! SIP over TLS (RFC 3261 §26.3.1, RFC 5630 `sips:` aside), sans-IO: rustls between a TCP
//! stream and the SIP framer.
//!
//! It lives under `sip` although nothing in it parses SIP: its errors speak of a trunk's
//! `tls_*` keys, its limits are sized for SIP messages, and SIP is its only user.
//!
//! - [`stream`]: [`TlsStream`], one TLS connection (client or server side) fed ciphertext
//!   and plaintext, handing back both, with bounded buffers. No socket, no thread.
//! - [`config`]: rustls configurations from PEM files or the system's CA certificates,
//!   built once per trunk (or listener) and shared by its connections.
//!
//! rustls reads the system clock itself to check certificate validity; that is the one
//! exception to "sans-IO is fed the time" here.

pub mod config;
pub mod stream;

pub use config::{ClientTlsFiles, TlsConfigError, client_config, server_config};
pub use stream::{MAX_UNREAD_PLAINTEXT, MAX_UNSENT_BYTES, TlsError, TlsStream};
