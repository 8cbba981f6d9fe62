//! One TLS connection, sans-IO: [`TlsStream`] takes the ciphertext read from a TCP stream
//! and the plaintext to send, and hands back the plaintext received and the ciphertext to
//! write. The caller owns the socket.
//!
//! Buffers are bounded, and a full buffer is an error, never silent loss:
//! - received plaintext not yet taken by [`TlsStream::read_plaintext`]: at most
//!   [`MAX_UNREAD_PLAINTEXT`] bytes, beyond which [`TlsError::ReceiveBufferFull`] (the
//!   connection is then unusable);
//! - bytes waiting to leave (plaintext written during the handshake plus ciphertext not yet
//!   taken by [`TlsStream::poll_ciphertext`]): [`TlsStream::write_plaintext`] refuses a write
//!   that would take them past [`MAX_UNSENT_BYTES`] with [`TlsError::SendBufferFull`], and
//!   writes nothing of it. The handshake and alerts rustls produces are never refused (TLS
//!   bounds them: a handshake message is at most 64 KiB), so the ciphertext pending can exceed
//!   the limit by those and by record overhead (22 bytes per 16 KiB record).
//!
//! rustls allocates for each record it decrypts or encrypts; this layer adds no allocation
//! once its buffers have grown to their working size.

use std::io::{self, Read as _, Write as _};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection,
    ProtocolVersion, ServerConfig, ServerConnection,
};

/// Received plaintext kept until [`TlsStream::read_plaintext`] takes it (128 KiB: many SIP
/// messages; the loop should read after each [`TlsStream::receive_ciphertext`]).
pub const MAX_UNREAD_PLAINTEXT: usize = 128 * 1024;

/// Plaintext queued during the handshake plus ciphertext not yet polled, past which
/// [`TlsStream::write_plaintext`] refuses (128 KiB: a peer that reads nothing for that long
/// is stuck).
pub const MAX_UNSENT_BYTES: usize = 128 * 1024;

/// Why a TLS connection failed. After any error but [`TlsError::SendBufferFull`] the
/// connection is unusable: send what [`TlsStream::poll_ciphertext`] still gives (an alert for
/// the peer), then close the TCP stream.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{0}` is not a valid TLS server name: give the trunk a DNS name or an IP address")]
    InvalidServerName(String),
    #[error(
        "the server's certificate is not signed by a CA this host trusts: set the trunk's \
         `tls_ca_file` to the PEM file of the CA that signed it"
    )]
    UntrustedCertificate,
    #[error(
        "the server's certificate is not valid for the name dialled: address the trunk by a \
         name (or IP address) its certificate lists, or have the certificate reissued"
    )]
    WrongServerName,
    #[error(
        "the peer's certificate has expired or is not valid yet: have it renewed, and check \
         this host's clock"
    )]
    CertificateExpired,
    #[error("the peer's certificate was refused ({0:?}): check the certificate chain it sends")]
    BadCertificate(CertificateError),
    #[error(
        "the peer sent no client certificate, and `sip.tls_client_ca_file` requires one: the \
         peer must present a certificate signed by a CA in that file"
    )]
    NoClientCertificate,
    #[error(
        "the peer's client certificate is not signed by a CA in `sip.tls_client_ca_file`: add \
         its CA to that file, or have the peer present one signed by a CA there"
    )]
    UntrustedClientCertificate,
    #[error(
        "the peer refused the TLS connection (alert {0:?}): if it requires a client \
         certificate, set the trunk's `tls_cert_file` and `tls_key_file`; otherwise check \
         that it accepts our TLS versions and trusts our certificate"
    )]
    RefusedByPeer(AlertDescription),
    #[error("TLS failed: {0}; check that the peer speaks TLS on that port")]
    Protocol(rustls::Error),
    #[error("the peer sent data that is not TLS ({0}); check that it speaks TLS on that port")]
    NotTls(String),
    #[error(
        "more than {MAX_UNREAD_PLAINTEXT} bytes received and not read: call read_plaintext \
         after each receive_ciphertext"
    )]
    ReceiveBufferFull,
    #[error(
        "{MAX_UNSENT_BYTES} bytes already wait to be sent: the peer is not reading; retry \
         after sending what poll_ciphertext gives, or close the connection"
    )]
    SendBufferFull,
    #[error(
        "the peer closed the connection during the TLS handshake: check that it speaks TLS on \
         that port and accepts TLS 1.2 or 1.3"
    )]
    ClosedDuringHandshake,
    #[error(
        "the peer closed TCP without a TLS close_notify: the last data it sent may be cut short"
    )]
    Truncated,
    #[error("the TLS connection is closed; open a new one")]
    Closed,
}

impl TlsError {
    /// A server side's view of `error`: what the client's certificate lacked.
    fn from_server(error: rustls::Error) -> Self {
        match error {
            rustls::Error::NoCertificatesPresented => Self::NoClientCertificate,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                Self::UntrustedClientCertificate
            }
            other => other.into(),
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(error: rustls::Error) -> Self {
        use rustls::Error as E;
        match error {
            E::InvalidCertificate(CertificateError::UnknownIssuer) => Self::UntrustedCertificate,
            E::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => Self::WrongServerName,
            E::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => Self::CertificateExpired,
            E::InvalidCertificate(other) => Self::BadCertificate(other),
            E::AlertReceived(alert) => Self::RefusedByPeer(alert),
            E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
                Self::NotTls(error.to_string())
            }
            other => Self::Protocol(other),
        }
    }
}

/// One TLS connection over a byte stream the caller reads and writes.
///
/// Per readable event: [`receive_ciphertext`](Self::receive_ciphertext) with what the socket
/// gave, [`read_plaintext`](Self::read_plaintext) into the SIP framer, then
/// [`poll_ciphertext`](Self::poll_ciphertext) and write that to the socket (the handshake
/// answers too). To send: [`write_plaintext`](Self::write_plaintext), then
/// [`poll_ciphertext`](Self::poll_ciphertext). On TCP EOF: [`receive_eof`](Self::receive_eof).
pub struct TlsStream {
    conn: Connection,
    /// Plaintext written before the handshake finished; encrypted as soon as it does.
    early: Vec<u8>,
    /// Ciphertext for the peer, not yet polled.
    outgoing: Vec<u8>,
    /// Plaintext from the peer, not yet read.
    received: Vec<u8>,
    peer_closed: bool,
    /// We sent close_notify, or the connection failed: nothing more is written.
    closed: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.conn.is_handshaking())
            .field("early", &self.early.len())
            .field("outgoing", &self.outgoing.len())
            .field("received", &self.received.len())
            .field("peer_closed", &self.peer_closed)
            .field("closed", &self.closed)
            .finish()
    }
}

impl TlsStream {
    /// The client side of a connection to `server_name` (a DNS name or an IP address, IPv6
    /// with or without brackets), checked against the server's certificate. Its first
    /// flight is ready in [`poll_ciphertext`](Self::poll_ciphertext) at once.
    pub fn client(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let bare = server_name
            .strip_prefix('[')
            .and_then(|name| name.strip_suffix(']'))
            .unwrap_or(server_name);
        let name = ServerName::try_from(bare)
            .map_err(|_| TlsError::InvalidServerName(server_name.to_owned()))?
            .to_owned();
        let conn = ClientConnection::new(config, name)?;
        Ok(Self::new(conn.into()))
    }

    /// The server side of a connection accepted on a TLS listener.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config)?;
        Ok(Self::new(conn.into()))
    }

    fn new(mut conn: Connection) -> Self {
        // Our own limits apply (module doc); rustls only holds what passes through at once.
        conn.set_buffer_limit(None);
        let mut stream = Self {
            conn,
            early: Vec::new(),
            outgoing: Vec::new(),
            received: Vec::new(),
            peer_closed: false,
            closed: false,
        };
        stream.drain_ciphertext();
        stream
    }

    /// Feeds ciphertext read from the TCP stream: handshake, records, alerts. Decrypted
    /// plaintext waits for [`read_plaintext`](Self::read_plaintext); answers (handshake,
    /// alerts) for [`poll_ciphertext`](Self::poll_ciphertext). After the peer's close_notify
    /// the rest is ignored.
    pub fn receive_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        let mut rest = data;
        while !rest.is_empty() {
            let read = match self.conn.read_tls(&mut rest) {
                Ok(read) => read,
                Err(error) => return Err(self.fail(TlsError::NotTls(error.to_string()))),
            };
            self.process()?;
            if read == 0 {
                break; // close_notify received: rustls reads no more
            }
        }
        Ok(())
    }

    /// The TCP stream reached its end. `Ok` if the peer had sent close_notify; otherwise
    /// [`TlsError::ClosedDuringHandshake`] or [`TlsError::Truncated`]. Plaintext received
    /// before stays readable either way.
    pub fn receive_eof(&mut self) -> Result<(), TlsError> {
        // A read of nothing tells rustls the stream ended.
        if let Err(error) = self.conn.read_tls(&mut io::empty()) {
            return Err(self.fail(TlsError::NotTls(error.to_string())));
        }
        self.process()?;
        if self.peer_closed {
            Ok(())
        } else if self.conn.is_handshaking() {
            Err(TlsError::ClosedDuringHandshake)
        } else {
            Err(TlsError::Truncated)
        }
    }

    /// Appends the plaintext received so far to `out`; returns how many bytes.
    pub fn read_plaintext(&mut self, out: &mut Vec<u8>) -> usize {
        let count = self.received.len();
        out.extend_from_slice(&self.received);
        self.received.clear();
        count
    }

    /// Queues `data` to be sent, whole or not at all. During the handshake it is kept and
    /// encrypted when the handshake completes; afterwards it is encrypted at once. After
    /// [`close`](Self::close) or a failed connection: [`TlsError::Closed`].
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if self.closed {
            return Err(TlsError::Closed);
        }
        if self.unsent_bytes() + data.len() > MAX_UNSENT_BYTES {
            return Err(TlsError::SendBufferFull);
        }
        if self.conn.is_handshaking() {
            self.early.extend_from_slice(data);
            Ok(())
        } else {
            self.encrypt(data)
        }
    }

    /// Appends the ciphertext to write to the TCP stream now to `out`; returns how many
    /// bytes (0: nothing to send).
    pub fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        self.drain_ciphertext();
        let count = self.outgoing.len();
        out.extend_from_slice(&self.outgoing);
        self.outgoing.clear();
        count
    }

    /// Whether [`poll_ciphertext`](Self::poll_ciphertext) has something to give.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty() || self.conn.wants_write()
    }

    /// Plaintext queued during the handshake plus ciphertext not yet polled.
    pub fn unsent_bytes(&self) -> usize {
        self.early.len() + self.outgoing.len()
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The TLS version agreed on, once known.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Whether the peer sent close_notify: it sends nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Sends close_notify (poll it, then close the TCP stream once written); later writes
    /// fail with [`TlsError::Closed`]. Plaintext still waiting for the handshake is dropped.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.early.clear();
            self.conn.send_close_notify();
            self.drain_ciphertext();
        }
    }

    fn process(&mut self) -> Result<(), TlsError> {
        let state = match self.conn.process_new_packets() {
            Ok(state) => state,
            Err(error) => {
                let error = match self.conn {
                    Connection::Server(_) => TlsError::from_server(error),
                    Connection::Client(_) => error.into(),
                };
                return Err(self.fail(error));
            }
        };
        let unread = state.plaintext_bytes_to_read();
        if unread > 0 {
            if self.received.len() + unread > MAX_UNREAD_PLAINTEXT {
                return Err(self.fail(TlsError::ReceiveBufferFull));
            }
            let start = self.received.len();
            self.received.resize(start + unread, 0);
            // rustls said it holds `unread` bytes; a shortfall would be its bug, not a panic.
            let filled = self.conn.reader().read_exact(&mut self.received[start..]);
            if let Err(error) = filled {
                self.received.truncate(start);
                return Err(self.fail(TlsError::Protocol(rustls::Error::General(
                    error.to_string(),
                ))));
            }
        }
        self.peer_closed |= state.peer_has_closed();
        if !self.conn.is_handshaking() && !self.early.is_empty() && !self.closed {
            let early = std::mem::take(&mut self.early);
            let sent = self.encrypt(&early);
            self.early = early; // keep its allocation
            self.early.clear();
            sent?;
        }
        self.drain_ciphertext();
        Ok(())
    }

    /// Marks the connection failed (no more writes) and queues rustls's alert for the peer.
    fn fail(&mut self, error: TlsError) -> TlsError {
        self.closed = true;
        self.early.clear();
        self.drain_ciphertext();
        error
    }

    fn encrypt(&mut self, data: &[u8]) -> Result<(), TlsError> {
        // With no rustls buffer limit, the writer takes everything once the handshake is done.
        self.conn
            .writer()
            .write_all(data)
            .map_err(|e| TlsError::Protocol(rustls::Error::General(e.to_string())))?;
        self.drain_ciphertext();
        Ok(())
    }

    fn drain_ciphertext(&mut self) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail; 0 would mean nothing was left.
            match self.conn.write_tls(&mut self.outgoing) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_become_errors_that_say_what_to_set() {
        let untrusted = TlsError::from(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(matches!(untrusted, TlsError::UntrustedCertificate));
        assert!(untrusted.to_string().contains("`tls_ca_file`"));
        assert!(matches!(
            TlsError::from(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            TlsError::WrongServerName
        ));
        assert!(matches!(
            TlsError::from(rustls::Error::InvalidCertificate(CertificateError::Expired)),
            TlsError::CertificateExpired
        ));
        let refused = TlsError::from(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert!(refused.to_string().contains("`tls_cert_file`"));
        assert!(matches!(
            TlsError::from(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
            TlsError::BadCertificate(CertificateError::Revoked)
        ));
    }

    #[test]
    fn a_servers_client_certificate_errors_name_the_listeners_key() {
        let none = TlsError::from_server(rustls::Error::NoCertificatesPresented);
        assert!(matches!(none, TlsError::NoClientCertificate), "{none:?}");
        let untrusted = TlsError::from_server(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(
            matches!(untrusted, TlsError::UntrustedClientCertificate),
            "{untrusted:?}"
        );
        assert!(untrusted.to_string().contains("`sip.tls_client_ca_file`"));
        // The rest as on the client side.
        assert!(matches!(
            TlsError::from_server(rustls::Error::InvalidCertificate(CertificateError::Expired)),
            TlsError::CertificateExpired
        ));
    }

    #[test]
    fn a_failed_connection_refuses_writes_and_answers_with_an_alert() {
        let config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut tls = TlsStream::client(Arc::new(config), "sip.test").expect("client");
        let mut hello = Vec::new();
        assert!(
            tls.poll_ciphertext(&mut hello) > 0,
            "the ClientHello is ready at once"
        );
        assert!(hello.starts_with(&[22, 3]), "a handshake record");
        let error = tls
            .receive_ciphertext(b"SIP/2.0 400 Bad Request\r\n\r\n")
            .expect_err("not TLS");
        assert!(matches!(error, TlsError::NotTls(_)), "{error:?}");
        let mut alert = Vec::new();
        assert!(tls.poll_ciphertext(&mut alert) > 0, "an alert for the peer");
        assert_eq!(alert[0], 21, "an alert record");
        assert!(matches!(tls.write_plaintext(b"x"), Err(TlsError::Closed)));
    }
}
