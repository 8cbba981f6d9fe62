//! SIP over TCP and TLS on one core: which connection carries which peer, framing what
//! arrives into messages for the endpoint, and TLS between the two when a trunk asks.
//!
//! - **Reuse.** Connections are found by transport and peer address, whichever side opened
//!   them, so a peer's requests and our responses share one (RFC 3261 §18.2.2), and every
//!   call to a trunk rides one connection.
//! - **Framing.** What a connection carries goes through a [`StreamFramer`] (Content-Length
//!   framing, RFC 3261 §18.3); a framing error closes the connection. A keep-alive ping
//!   (CRLF CRLF, RFC 5626) is answered with one CRLF.
//! - **Failure.** Requests written before a connection was up are kept (at most
//!   [`UNCONFIRMED_KEPT`]); if the connection then fails, an INVITE among them ends its call
//!   at once as unreachable, as an ICMP error does on UDP, instead of waiting for Timer B.
//! - **Idle.** A connection that carried nothing for [`IDLE_TIMEOUT`] is closed; the next
//!   message to or from its peer opens another.
//!
//! The loop gives each read as one slice; nothing here allocates per message once a
//! connection's buffers have grown to its messages' size. Connections are few (one per
//! trunk or peer) and their messages are signalling, so a hash lookup per message is fine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::TlsClient;
use crate::core::{Io, StreamClosed, StreamId};
use crate::sip::tls::TlsStream;
use crate::sip::transport::{Frame, KEEPALIVE_PONG, StreamFramer, Transport};

/// Requests kept per connection until it is up (for failing their calls fast).
pub(super) const UNCONFIRMED_KEPT: usize = 8;
/// A connection that carried nothing this long is closed (longer than a session refresh's
/// half interval would be kinder to long calls, but an idle connection costs a descriptor;
/// the next message opens another).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Requests written to a connection that failed before the peer was there, and why, for
/// [`crate::sip::Endpoint::handle_transport_failure`].
pub(super) struct Unreached {
    pub sent: Vec<Vec<u8>>,
    pub why: String,
}

struct Connection {
    peer: SocketAddr,
    transport: Transport,
    framer: StreamFramer,
    tls: Option<Box<TlsStream>>,
    /// The peer is there: bytes came back over TCP, the TLS handshake finished, or we
    /// accepted the connection.
    confirmed: bool,
    unconfirmed: Vec<Vec<u8>>,
    last_activity: Instant,
}

/// Every SIP connection of one core.
pub(super) struct SipStreams {
    by_peer: HashMap<(Transport, SocketAddr), StreamId>,
    connections: HashMap<StreamId, Connection>,
    /// TLS settings of the peers our dials named, by address.
    tls_peers: HashMap<SocketAddr, TlsClient>,
    max_message: usize,
    plain: Vec<u8>,
    cipher: Vec<u8>,
    next_sweep: Option<Instant>,
}

impl SipStreams {
    /// No connections; messages over `max_message` bytes close their connection.
    pub(super) fn new(max_message: usize) -> Self {
        Self {
            by_peer: HashMap::new(),
            connections: HashMap::new(),
            tls_peers: HashMap::new(),
            max_message,
            plain: Vec::new(),
            cipher: Vec::new(),
            next_sweep: None,
        }
    }

    /// Remembers how to reach `peer` over TLS (from a dial's trunk settings).
    pub(super) fn set_tls_peer(&mut self, peer: SocketAddr, tls: TlsClient) {
        self.tls_peers.insert(peer, tls);
    }

    /// Sends one SIP message to `to` over `transport` (TCP or TLS), on the connection to or
    /// from that peer, opening one if there is none. `Err` says why it could not leave.
    pub(super) fn send(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        transport: Transport,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<(), String> {
        let stream = match self.by_peer.get(&(transport, to)) {
            Some(&stream) => stream,
            None => self.open(io, now, transport, to)?,
        };
        let Some(connection) = self.connections.get_mut(&stream) else {
            return Err(format!("no connection to {to}"));
        };
        connection.last_activity = now;
        if !connection.confirmed && connection.unconfirmed.len() < UNCONFIRMED_KEPT {
            connection.unconfirmed.push(data.to_vec());
        }
        if self.write(io, stream, data) {
            Ok(())
        } else {
            Err(format!(
                "the {transport} connection to {to} could not take the message"
            ))
        }
    }

    fn open(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        transport: Transport,
        to: SocketAddr,
    ) -> Result<StreamId, String> {
        let tls = match transport {
            Transport::Tls => {
                let Some(peer) = self.tls_peers.get(&to) else {
                    return Err(format!(
                        "no TLS settings for {to}: only a trunk with transport = \"tls\" is dialled over TLS"
                    ));
                };
                let stream = TlsStream::client(peer.config.clone(), &peer.server_name)
                    .map_err(|e| format!("TLS to {to}: {e}"))?;
                Some(Box::new(stream))
            }
            _ => None,
        };
        let stream = io
            .connect(to)
            .map_err(|e| format!("cannot open a {transport} connection to {to}: {e}"))?;
        self.insert(stream, to, transport, tls, false, now);
        // The TLS client's hello leaves with the connect.
        self.flush_tls(io, stream);
        Ok(stream)
    }

    fn insert(
        &mut self,
        stream: StreamId,
        peer: SocketAddr,
        transport: Transport,
        tls: Option<Box<TlsStream>>,
        confirmed: bool,
        now: Instant,
    ) {
        self.by_peer.entry((transport, peer)).or_insert(stream);
        self.connections.insert(
            stream,
            Connection {
                peer,
                transport,
                framer: StreamFramer::new(self.max_message),
                tls,
                confirmed,
                unconfirmed: Vec::new(),
                last_activity: now,
            },
        );
        self.next_sweep.get_or_insert(now + SWEEP_EVERY);
    }

    /// A peer connected to our TCP listener.
    pub(super) fn accepted(&mut self, now: Instant, stream: StreamId, peer: SocketAddr) {
        self.insert(stream, peer, Transport::Tcp, None, true, now);
    }

    /// Bytes arrived on `stream`: each complete SIP message goes to `deliver` with the
    /// transport and peer it came from. If TLS fails before its handshake finished, the
    /// connection is closed and the requests written to it come back, with why (the TLS
    /// error's advice, e.g. to set `tls_ca_file`).
    pub(super) fn received(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        stream: StreamId,
        data: &[u8],
        mut deliver: impl FnMut(Transport, SocketAddr, &[u8]),
    ) -> Option<Unreached> {
        let connection = self.connections.get_mut(&stream)?;
        connection.last_activity = now;
        let bytes: &[u8] = match connection.tls.as_mut() {
            Some(tls) => {
                self.plain.clear();
                if let Err(e) = tls.receive_ciphertext(data) {
                    tracing::warn!(peer = %connection.peer, error = %e, "SIP over TLS failed; closing the connection");
                    let unreached = (!connection.confirmed).then(|| Unreached {
                        sent: std::mem::take(&mut connection.unconfirmed),
                        why: format!("failed the TLS handshake: {e}"),
                    });
                    self.cipher.clear();
                    tls.poll_ciphertext(&mut self.cipher);
                    if !self.cipher.is_empty() {
                        io.send_stream(stream, &self.cipher);
                    }
                    self.close(io, stream);
                    return unreached;
                }
                if !tls.is_handshaking() {
                    connection.confirmed = true;
                }
                tls.read_plaintext(&mut self.plain);
                &self.plain
            }
            None => {
                connection.confirmed = true;
                data
            }
        };
        if connection.confirmed {
            connection.unconfirmed.clear();
        }
        let mut failed = connection.framer.extend(bytes).err();
        let mut pings = 0usize;
        if failed.is_none() {
            while let Some(frame) = connection.framer.next_frame() {
                match frame {
                    Ok(Frame::Message(range)) => {
                        let message = &connection.framer.buffer()[range];
                        deliver(connection.transport, connection.peer, message);
                    }
                    Ok(Frame::Ping) => pings += 1,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        let peer = connection.peer;
        // Handshake answers, then a pong per ping.
        self.flush_tls(io, stream);
        for _ in 0..pings.min(4) {
            self.write(io, stream, KEEPALIVE_PONG);
        }
        if let Some(e) = failed {
            tracing::warn!(%peer, error = %e, "a SIP connection sent what cannot be framed; closing it");
            self.close(io, stream);
        }
        None
    }

    /// The loop reports `stream` closed: forget it. If it never carried anything back, the
    /// requests written to it are handed to `failed` with why.
    pub(super) fn closed(
        &mut self,
        stream: StreamId,
        why: StreamClosed,
        mut failed: impl FnMut(&[u8], &str),
    ) {
        let Some(connection) = self.forget(stream) else {
            return;
        };
        if connection.confirmed {
            return;
        }
        let reason = match why {
            StreamClosed::Error(std::io::ErrorKind::ConnectionRefused) => format!(
                "refused the {} connection (nothing listens there)",
                connection.transport
            ),
            StreamClosed::Error(kind) => {
                format!("could not be reached over {}: {kind}", connection.transport)
            }
            StreamClosed::Peer => format!(
                "closed the {} connection before answering",
                connection.transport
            ),
            StreamClosed::Overflow | StreamClosed::Local => return,
        };
        for sent in &connection.unconfirmed {
            failed(sent, &reason);
        }
    }

    /// Closes connections idle for [`IDLE_TIMEOUT`], when a sweep is due.
    pub(super) fn handle_timeout(&mut self, io: &mut impl Io, now: Instant) {
        if self.next_sweep.is_none_or(|at| at > now) {
            return;
        }
        let idle: Vec<StreamId> = self
            .connections
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_activity) >= IDLE_TIMEOUT)
            .map(|(&id, _)| id)
            .collect();
        for stream in idle {
            self.close(io, stream);
        }
        self.next_sweep = (!self.connections.is_empty()).then_some(now + SWEEP_EVERY);
    }

    /// When [`SipStreams::handle_timeout`] wants to run.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    fn close(&mut self, io: &mut impl Io, stream: StreamId) {
        if let Some(connection) = self.connections.get_mut(&stream)
            && let Some(tls) = connection.tls.as_mut()
        {
            tls.close();
            self.cipher.clear();
            tls.poll_ciphertext(&mut self.cipher);
            if !self.cipher.is_empty() {
                io.send_stream(stream, &self.cipher);
            }
        }
        io.close_stream(stream);
        self.forget(stream);
    }

    fn forget(&mut self, stream: StreamId) -> Option<Connection> {
        let connection = self.connections.remove(&stream)?;
        let key = (connection.transport, connection.peer);
        if self.by_peer.get(&key) == Some(&stream) {
            self.by_peer.remove(&key);
        }
        Some(connection)
    }

    /// Writes `data` on `stream`, through TLS when the connection has it. False when the
    /// connection could not take it (it is closed).
    fn write(&mut self, io: &mut impl Io, stream: StreamId, data: &[u8]) -> bool {
        let Some(connection) = self.connections.get_mut(&stream) else {
            return false;
        };
        match connection.tls.as_mut() {
            Some(tls) => {
                if let Err(e) = tls.write_plaintext(data) {
                    tracing::warn!(peer = %connection.peer, error = %e, "cannot send over TLS");
                    return false;
                }
                self.flush_tls(io, stream);
                true
            }
            None => io.send_stream(stream, data),
        }
    }

    fn flush_tls(&mut self, io: &mut impl Io, stream: StreamId) {
        let Some(tls) = self
            .connections
            .get_mut(&stream)
            .and_then(|c| c.tls.as_mut())
        else {
            return;
        };
        self.cipher.clear();
        tls.poll_ciphertext(&mut self.cipher);
        if !self.cipher.is_empty() {
            io.send_stream(stream, &self.cipher);
        }
    }
}
