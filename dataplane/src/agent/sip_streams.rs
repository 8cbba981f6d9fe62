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
//! - **Connecting.** A connection we open that is not established within the connect
//!   timeout (`sip.tcp_connect_timeout_ms`) is given up the same way: a peer that drops our
//!   SYN would otherwise hold the call for the kernel's minutes of SYN retries.
//! - **Idle.** A connection that carried nothing for [`IDLE_TIMEOUT`] is closed, unless a
//!   live call still talks to its peer; the next message to or from its peer opens another.
//! - **Strangers.** One address may hold at most [`Strangers::per_address`] accepted
//!   connections (`sip.tcp_connections_per_source`; more are closed at once), and an accepted
//!   connection that has not carried a SIP message within [`Strangers::first_message`]
//!   (`sip.tcp_first_message_timeout_ms`) is closed: connections opened and left silent
//!   cannot fill the core's table. When accepted connections fill their share of it (the
//!   loop keeps the rest for the connections this core opens: `core::stream`), a newcomer
//!   takes the place of the quietest one no live call uses.
//!
//! The loop gives each read as one slice; nothing here allocates per message once a
//! connection's buffers have grown to its messages' size. Connections are few (one per
//! trunk or peer) and their messages are signalling, so a hash lookup per message is fine.
//! Deadlines are kept in order of arrival (each kind has one fixed timeout), so finding the
//! next one does not walk the connections.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{StrangerCounters, StrangersClosed};
use crate::api::TlsClient;
use crate::core::{Io, StreamClosed, StreamId};
use crate::sip::tls::TlsStream;
use crate::sip::transport::{Frame, KEEPALIVE_PONG, StreamFramer, Transport};

/// Requests kept per connection until it is up (for failing their calls fast).
pub(super) const UNCONFIRMED_KEPT: usize = 8;
/// A connection that carried nothing this long is closed, unless a live call uses it (an
/// idle connection costs a descriptor; the next message opens another).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// What connections others open to us may hold.
#[derive(Clone, Copy, Debug)]
pub(super) struct Strangers {
    /// Accepted connections one address may hold at once.
    pub per_address: u16,
    /// An accepted connection that carried no SIP message this long after it was accepted
    /// is closed (a keep-alive does not count).
    pub first_message: Duration,
}
/// Entries in the first-message queue past which those of closed connections are dropped.
const QUIET_COMPACT_AT: usize = 4096;

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
    /// The peer is there: bytes came back over TCP, SIP (or a keep-alive) over TLS, or we
    /// accepted the connection.
    confirmed: bool,
    unconfirmed: Vec<Vec<u8>>,
    last_activity: Instant,
    /// Opened by us and not yet established: given up at this instant.
    connect_deadline: Option<Instant>,
    /// Accepted and no SIP message yet: closed at this instant.
    quiet_deadline: Option<Instant>,
    /// Accepted from the peer (counted in `SipStreams::accepted_by_address`).
    accepted: bool,
    /// Accepted and nothing read yet: its first byte says plain SIP or TLS.
    sniff: bool,
}

/// The first byte of a TLS connection: a handshake record (RFC 8446 §5.1). No SIP message
/// starts with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// Every SIP connection of one core.
pub(super) struct SipStreams {
    by_peer: HashMap<(Transport, SocketAddr), StreamId>,
    connections: HashMap<StreamId, Connection>,
    /// TLS settings of the peers our dials named, by address.
    tls_peers: HashMap<SocketAddr, TlsClient>,
    /// Our certificate for peers that connect with TLS (`sip.tls_cert_file`), and the CAs
    /// their own must chain to if `sip.tls_client_ca_file` is set; `None`: TLS connections
    /// are refused.
    tls_server: Option<Arc<rustls::ServerConfig>>,
    max_message: usize,
    connect_timeout: Duration,
    strangers: Strangers,
    plain: Vec<u8>,
    cipher: Vec<u8>,
    next_sweep: Option<Instant>,
    /// Connect deadlines, earliest first (one fixed timeout, so in the order they were set).
    connecting: VecDeque<(Instant, StreamId)>,
    /// Accepted connections' deadlines for a first SIP message, earliest first.
    quiet: VecDeque<(Instant, StreamId)>,
    /// Accepted connections open, by the peer's address.
    accepted_by_address: HashMap<IpAddr, u16>,
    /// Accepted connections closed, by reason, and those counts as last published.
    closed: StrangersClosed,
    published: StrangersClosed,
}

impl SipStreams {
    /// No connections; messages over `max_message` bytes close their connection, a
    /// connection we open that is not up within `connect_timeout` is given up, and those
    /// others open are held to `strangers`.
    pub(super) fn new(max_message: usize, connect_timeout: Duration, strangers: Strangers) -> Self {
        Self {
            by_peer: HashMap::new(),
            connections: HashMap::new(),
            tls_peers: HashMap::new(),
            tls_server: None,
            max_message,
            connect_timeout,
            strangers,
            plain: Vec::new(),
            cipher: Vec::new(),
            next_sweep: None,
            connecting: VecDeque::new(),
            quiet: VecDeque::new(),
            accepted_by_address: HashMap::new(),
            closed: StrangersClosed::default(),
            published: StrangersClosed::default(),
        }
    }

    /// Stores the closed-connection counts in `counters` if they changed.
    pub(super) fn publish(&mut self, counters: &StrangerCounters) {
        if self.closed != self.published {
            counters.store(self.closed);
            self.published = self.closed;
        }
    }

    /// Remembers how to reach `peer` over TLS (from a dial's trunk settings).
    pub(super) fn set_tls_peer(&mut self, peer: SocketAddr, tls: TlsClient) {
        self.tls_peers.insert(peer, tls);
    }

    /// Whether a message to `peer` over `transport` has a way to go: an open connection
    /// (or an alias of one), or, for TLS, settings to open one with.
    pub(super) fn can_reach(&self, transport: Transport, peer: SocketAddr) -> bool {
        self.by_peer.contains_key(&(transport, peer))
            || (transport == Transport::Tls && self.tls_peers.contains_key(&peer))
    }

    /// Messages to `alias` over `transport` go on the open connection of `peer`, if there is
    /// one (a caller's connection carries its dialog to the address its Contact names).
    /// True when it was made.
    pub(super) fn alias(
        &mut self,
        transport: Transport,
        alias: SocketAddr,
        peer: SocketAddr,
    ) -> bool {
        match self.by_peer.get(&(transport, peer)).copied() {
            Some(stream) => {
                self.by_peer.insert((transport, alias), stream);
                true
            }
            None => false,
        }
    }

    /// Sends one SIP message to `to` over `transport` (TCP or TLS), on the connection to or
    /// from that peer, opening one if there is none. `Err` says why it could not leave, as
    /// what happened to `to` (the call's reason puts the address in front of it).
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
            return Err(format!("lost its {transport} connection"));
        };
        connection.last_activity = now;
        if !connection.confirmed && connection.unconfirmed.len() < UNCONFIRMED_KEPT {
            connection.unconfirmed.push(data.to_vec());
        }
        if self.write(io, stream, data) {
            Ok(())
        } else {
            Err(format!(
                "could not be sent the message: its {transport} connection is closed or full"
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
                    return Err(
                        "has no TLS settings: only a trunk with transport = \"tls\" is dialled over TLS"
                            .to_owned(),
                    );
                };
                let stream = TlsStream::client(peer.config.clone(), &peer.server_name)
                    .map_err(|e| format!("could not be reached over TLS: {e}"))?;
                Some(Box::new(stream))
            }
            _ => None,
        };
        let stream = io
            .connect(to)
            .map_err(|e| format!("could not be connected to over {transport}: {e}"))?;
        self.insert(stream, to, transport, tls, false, now);
        if let Some(connection) = self.connections.get_mut(&stream) {
            let at = now + self.connect_timeout;
            connection.connect_deadline = Some(at);
            self.connecting.push_back((at, stream));
        }
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
                connect_deadline: None,
                quiet_deadline: None,
                accepted: false,
                sniff: false,
            },
        );
        self.next_sweep.get_or_insert(now + SWEEP_EVERY);
    }

    /// Serves TLS on the SIP listener with `config`: a connection whose first byte is a TLS
    /// handshake record is SIP over TLS (RFC 3261 §26.2), any other plain SIP over TCP.
    pub(super) fn serve_tls(&mut self, config: Arc<rustls::ServerConfig>) {
        self.tls_server = Some(config);
    }

    /// A peer connected to our TCP listener. Closed at once if its address holds
    /// [`Strangers::per_address`] accepted connections already.
    pub(super) fn accepted(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        stream: StreamId,
        peer: SocketAddr,
    ) {
        let held = self.accepted_by_address.entry(peer.ip()).or_insert(0);
        let most = self.strangers.per_address;
        if *held >= most {
            self.closed.over_per_source += 1;
            tracing::debug!(%peer, "a SIP connection was refused: its address holds {most} already (sip.tcp_connections_per_source)");
            io.close_stream(stream);
            return;
        }
        *held += 1;
        self.insert(stream, peer, Transport::Tcp, None, true, now);
        if let Some(connection) = self.connections.get_mut(&stream) {
            let at = now + self.strangers.first_message;
            connection.sniff = true;
            connection.accepted = true;
            connection.quiet_deadline = Some(at);
            if self.quiet.len() >= QUIET_COMPACT_AT {
                // Connections opened and closed faster than the limit leave entries behind:
                // keep those still waiting (at most the table's size), so the queue stays
                // bounded under churn.
                let connections = &self.connections;
                self.quiet.retain(|&(at, id)| {
                    connections
                        .get(&id)
                        .is_some_and(|c| c.quiet_deadline == Some(at))
                });
            }
            self.quiet.push_back((at, stream));
        }
    }

    /// Counts a connection from `peer` the loop closed as it accepted it because there was
    /// no room: as over its address's limit if the address is full (it would have been
    /// closed for that anyway), as no room otherwise.
    pub(super) fn refused(&mut self, peer: SocketAddr) {
        if self.address_is_full(peer.ip()) {
            self.closed.over_per_source += 1;
        } else {
            self.closed.no_room += 1;
            tracing::debug!(%peer, "a SIP connection was refused: every accepted connection carries a call");
        }
    }

    /// True when `address` holds [`Strangers::per_address`] accepted connections: another
    /// from it would be closed as accepted.
    pub(super) fn address_is_full(&self, address: IpAddr) -> bool {
        self.accepted_by_address
            .get(&address)
            .is_some_and(|&held| held >= self.strangers.per_address)
    }

    /// Closes the accepted connection that has been quiet longest, unless `in_use` says a
    /// live call talks to its peer: room for a newcomer when accepted connections fill their
    /// share of the core's table. False when every accepted connection is in use.
    ///
    /// Asks `in_use` about the quietest accepted connection first, and about the others only
    /// if that one is in use: a stranger opening connection after connection must not cost
    /// a question per accepted connection each time (each one was a walk of the calls).
    pub(super) fn close_idlest_accepted(
        &mut self,
        io: &mut impl Io,
        mut in_use: impl FnMut(Transport, SocketAddr) -> bool,
    ) -> bool {
        let quietest = |free: &mut dyn FnMut(&Connection) -> bool| {
            self.connections
                .iter()
                .filter(|(_, c)| c.accepted && free(c))
                .min_by_key(|(_, c)| c.last_activity)
                .map(|(&id, c)| (id, c.transport, c.peer))
        };
        let idlest = match quietest(&mut |_| true) {
            Some((id, transport, peer)) if !in_use(transport, peer) => Some(id),
            Some(_) => quietest(&mut |c| !in_use(c.transport, c.peer)).map(|(id, _, _)| id),
            None => None,
        };
        let Some(stream) = idlest else {
            return false;
        };
        if let Some(connection) = self.connections.get(&stream) {
            tracing::debug!(peer = %connection.peer, "closing the quietest accepted SIP connection to let a new one in");
        }
        self.closed.idlest += 1;
        self.close(io, stream);
        true
    }

    /// A connection we opened is established: its connect timeout no longer runs.
    pub(super) fn connected(&mut self, stream: StreamId) {
        if let Some(connection) = self.connections.get_mut(&stream) {
            connection.connect_deadline = None;
        }
        self.drop_settled_deadlines();
    }

    /// Drops the deadlines at the front of both queues that no longer apply (the connection
    /// is up, spoke, or is gone), so the front is the next one due.
    fn drop_settled_deadlines(&mut self) {
        let connections = &self.connections;
        let applies = |at: Instant, id: &StreamId, of: fn(&Connection) -> Option<Instant>| {
            connections.get(id).is_some_and(|c| of(c) == Some(at))
        };
        while let Some((at, id)) = self.connecting.front()
            && !applies(*at, id, |c| c.connect_deadline)
        {
            self.connecting.pop_front();
        }
        while let Some((at, id)) = self.quiet.front()
            && !applies(*at, id, |c| c.quiet_deadline)
        {
            self.quiet.pop_front();
        }
    }

    /// The first bytes of an accepted connection: TLS or plain? False when it was closed.
    fn sniff(&mut self, io: &mut impl Io, stream: StreamId, first: u8) -> bool {
        let Some(connection) = self.connections.get_mut(&stream) else {
            return false;
        };
        connection.sniff = false;
        if first != TLS_HANDSHAKE {
            return true;
        }
        let peer = connection.peer;
        let started = match &self.tls_server {
            Some(config) => TlsStream::server(Arc::clone(config)).map_err(|e| e.to_string()),
            None => Err("sip.tls_cert_file is not set, so SIP over TLS is not served".to_owned()),
        };
        match started {
            Ok(tls) => {
                connection.tls = Some(Box::new(tls));
                connection.transport = Transport::Tls;
                if self.by_peer.get(&(Transport::Tcp, peer)) == Some(&stream) {
                    self.by_peer.remove(&(Transport::Tcp, peer));
                }
                self.by_peer.entry((Transport::Tls, peer)).or_insert(stream);
                true
            }
            Err(why) => {
                tracing::warn!(%peer, "a TLS connection was refused: {why}");
                self.close(io, stream);
                false
            }
        }
    }

    /// Bytes arrived on `stream`: each complete SIP message goes to `deliver` with the loop
    /// (for a copy to send) and the transport and peer it came from. If TLS fails before the peer sent anything over it,
    /// the connection is closed and the requests written to it come back, with why (the TLS
    /// error's advice, e.g. to set `tls_ca_file`).
    pub(super) fn received<I: Io>(
        &mut self,
        io: &mut I,
        now: Instant,
        stream: StreamId,
        data: &[u8],
        mut deliver: impl FnMut(&mut I, Transport, SocketAddr, &[u8]),
    ) -> Option<Unreached> {
        if self.connections.get(&stream)?.sniff
            && let Some(&first) = data.first()
            && !self.sniff(io, stream, first)
        {
            return None;
        }
        let connection = self.connections.get_mut(&stream)?;
        connection.last_activity = now;
        connection.connect_deadline = None;
        let bytes: &[u8] = match connection.tls.as_mut() {
            Some(tls) => {
                self.plain.clear();
                if let Err(e) = tls.receive_ciphertext(data) {
                    tracing::warn!(peer = %connection.peer, error = %e, "SIP over TLS failed; closing the connection");
                    let unreached = (!connection.confirmed).then(|| Unreached {
                        sent: std::mem::take(&mut connection.unconfirmed),
                        why: format!("could not be reached over TLS: {e}"),
                    });
                    self.cipher.clear();
                    tls.poll_ciphertext(&mut self.cipher);
                    if !self.cipher.is_empty() {
                        io.send_stream(stream, &self.cipher);
                    }
                    self.close(io, stream);
                    return unreached;
                }
                // Only SIP from the peer confirms it: under TLS 1.3 a server refuses our
                // client certificate after our side of the handshake is done.
                if tls.read_plaintext(&mut self.plain) > 0 {
                    connection.confirmed = true;
                }
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
                        connection.quiet_deadline = None;
                        let message = &connection.framer.buffer()[range];
                        deliver(io, connection.transport, connection.peer, message);
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
        self.drop_settled_deadlines();
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
        tracing::debug!(peer = %connection.peer, transport = %connection.transport, ?why, answered = connection.confirmed, "a SIP connection closed");
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

    /// Gives up connections not established by their connect deadline (their requests go
    /// to `failed` with why), and closes connections idle for [`IDLE_TIMEOUT`], when a sweep
    /// is due, but those `in_use` says a live call still talks to (the peer may send its BYE
    /// only on that connection: a peer behind NAT cannot connect to us).
    pub(super) fn handle_timeout(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        in_use: impl Fn(Transport, SocketAddr) -> bool,
        mut failed: impl FnMut(&[u8], &str),
    ) {
        while let Some(&(at, stream)) = self.connecting.front()
            && at <= now
        {
            self.connecting.pop_front();
            // Only a deadline the connection still has counts: it may be up, or gone.
            let Some(connection) = self
                .connections
                .get_mut(&stream)
                .filter(|c| c.connect_deadline == Some(at))
            else {
                continue;
            };
            let unconfirmed = std::mem::take(&mut connection.unconfirmed);
            let why = format!(
                "did not accept the {} connection within {} ms (sip.tcp_connect_timeout_ms)",
                connection.transport,
                self.connect_timeout.as_millis()
            );
            tracing::debug!(peer = %connection.peer, "{why}");
            self.close(io, stream);
            for sent in &unconfirmed {
                failed(sent, &why);
            }
        }
        while let Some(&(at, stream)) = self.quiet.front()
            && at <= now
        {
            self.quiet.pop_front();
            if let Some(connection) = self.connections.get(&stream)
                && connection.quiet_deadline == Some(at)
            {
                self.closed.no_message += 1;
                tracing::debug!(peer = %connection.peer, "a SIP connection sent no SIP message within {} ms of being accepted (sip.tcp_first_message_timeout_ms); closing it", self.strangers.first_message.as_millis());
                self.close(io, stream);
            }
        }
        if self.next_sweep.is_none_or(|at| at > now) {
            return;
        }
        let idle: Vec<StreamId> = self
            .connections
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_activity) >= IDLE_TIMEOUT)
            .filter(|(_, c)| !in_use(c.transport, c.peer))
            .map(|(&id, _)| id)
            .collect();
        for stream in idle {
            self.close(io, stream);
        }
        self.next_sweep = (!self.connections.is_empty()).then_some(now + SWEEP_EVERY);
    }

    /// When [`SipStreams::handle_timeout`] wants to run: the next sweep, or an earlier
    /// connect or first-message deadline.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_sweep,
            self.connecting.front().map(|&(at, _)| at),
            self.quiet.front().map(|&(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min()
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
        // Its own peer's entry and any alias ([`SipStreams::alias`]).
        self.by_peer.retain(|_, s| *s != stream);
        if connection.accepted
            && let Some(held) = self.accepted_by_address.get_mut(&connection.peer.ip())
        {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.accepted_by_address.remove(&connection.peer.ip());
            }
        }
        self.drop_settled_deadlines();
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::core::{ListenerId, SocketId};

    /// An `Io` with streams only: connects get the next id (or fail when refused), and
    /// every write and close is recorded.
    #[derive(Default)]
    struct FakeIo {
        next: u32,
        connects: Vec<(StreamId, SocketAddr)>,
        written: Vec<(StreamId, Vec<u8>)>,
        closed: Vec<StreamId>,
    }

    impl Io for FakeIo {
        fn bind(&mut self, _addr: SocketAddr) -> std::io::Result<(SocketId, SocketAddr)> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn close(&mut self, _socket: SocketId) {}
        fn send(&mut self, _socket: SocketId, _to: SocketAddr, _data: &[u8]) {}
        fn listen(&mut self, _addr: SocketAddr) -> std::io::Result<(ListenerId, SocketAddr)> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn connect(&mut self, to: SocketAddr) -> std::io::Result<StreamId> {
            let id = StreamId(self.next);
            self.next += 1;
            self.connects.push((id, to));
            Ok(id)
        }
        fn send_stream(&mut self, stream: StreamId, data: &[u8]) -> bool {
            if self.closed.contains(&stream) {
                return false;
            }
            self.written.push((stream, data.to_vec()));
            true
        }
        fn close_stream(&mut self, stream: StreamId) {
            self.closed.push(stream);
        }
    }

    impl FakeIo {
        fn written_on(&self, stream: StreamId) -> Vec<&[u8]> {
            self.written
                .iter()
                .filter(|(s, _)| *s == stream)
                .map(|(_, data)| data.as_slice())
                .collect()
        }
    }

    const PEER: &str = "192.0.2.10:5060";
    const CONNECT: Duration = Duration::from_secs(2);
    const STRANGERS: Strangers = Strangers {
        per_address: 32,
        first_message: Duration::from_secs(10),
    };
    const INVITE: &[u8] = b"INVITE sip:a@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
    const OPTIONS: &[u8] = b"OPTIONS sip:a@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n";
    const RESPONSE: &[u8] = b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody";

    /// No connections (messages up to 4 KiB, [`CONNECT`], [`STRANGERS`]), an empty fake
    /// loop, and the time now.
    fn fresh() -> (SipStreams, FakeIo, Instant) {
        (
            SipStreams::new(4096, CONNECT, STRANGERS),
            FakeIo::default(),
            Instant::now(),
        )
    }

    fn peer() -> SocketAddr {
        PEER.parse().expect("address")
    }

    /// A message `received` delivered: (transport, peer, message).
    type Delivered = (Transport, SocketAddr, Vec<u8>);

    /// Everything `received` delivered, and what it handed back.
    fn receive(
        streams: &mut SipStreams,
        io: &mut FakeIo,
        now: Instant,
        stream: StreamId,
        data: &[u8],
    ) -> (Vec<Delivered>, Option<Unreached>) {
        let mut delivered = Vec::new();
        let unreached = streams.received(io, now, stream, data, |_, t, p, m| {
            delivered.push((t, p, m.to_vec()));
        });
        (delivered, unreached)
    }

    /// What `closed` hands to the failure callback, as (request, why).
    fn close(
        streams: &mut SipStreams,
        stream: StreamId,
        why: StreamClosed,
    ) -> Vec<(Vec<u8>, String)> {
        let mut failed = Vec::new();
        streams.closed(stream, why, |sent, why| {
            failed.push((sent.to_vec(), why.to_owned()))
        });
        failed
    }

    #[test]
    fn two_sends_to_one_peer_share_one_connection_and_an_accepted_one_is_reused() {
        let (mut streams, mut io, now) = fresh();
        streams
            .send(&mut io, now, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        streams
            .send(&mut io, now, Transport::Tcp, peer(), OPTIONS)
            .expect("sent");
        assert_eq!(io.connects, [(StreamId(0), peer())]);
        assert_eq!(io.written_on(StreamId(0)), [INVITE, OPTIONS]);
        // A peer that connected to us is answered on its own connection.
        let caller: SocketAddr = "192.0.2.20:40000".parse().expect("address");
        streams.accepted(&mut io, now, StreamId(7), caller);
        streams
            .send(&mut io, now, Transport::Tcp, caller, RESPONSE)
            .expect("sent");
        assert_eq!(io.connects.len(), 1, "no new connect: {:?}", io.connects);
        assert_eq!(io.written_on(StreamId(7)), [RESPONSE]);
        // TLS to the same address is another connection (and needs the trunk's settings).
        let refused = streams.send(&mut io, now, Transport::Tls, peer(), INVITE);
        assert!(refused.is_err_and(|e| e.contains("transport = \"tls\"")));
    }

    #[test]
    fn a_message_split_across_reads_is_delivered_once_and_whole() {
        let (mut streams, mut io, now) = fresh();
        streams
            .send(&mut io, now, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        let (first, second) = RESPONSE.split_at(40);
        let (delivered, _) = receive(&mut streams, &mut io, now, StreamId(0), first);
        assert!(delivered.is_empty(), "{delivered:?}");
        let (delivered, _) = receive(&mut streams, &mut io, now, StreamId(0), second);
        assert_eq!(delivered, [(Transport::Tcp, peer(), RESPONSE.to_vec())]);
        // Two messages in one read: both, in order.
        let both = [RESPONSE, RESPONSE].concat();
        let (delivered, _) = receive(&mut streams, &mut io, now, StreamId(0), &both);
        assert_eq!(delivered.len(), 2);
    }

    #[test]
    fn a_keepalive_ping_gets_a_pong_on_its_connection() {
        let (mut streams, mut io, now) = fresh();
        streams.accepted(&mut io, now, StreamId(3), peer());
        let (delivered, _) = receive(&mut streams, &mut io, now, StreamId(3), b"\r\n\r\n");
        assert!(delivered.is_empty());
        assert_eq!(io.written_on(StreamId(3)), [KEEPALIVE_PONG]);
        assert!(io.closed.is_empty());
    }

    #[test]
    fn a_framing_error_closes_the_connection_and_the_next_send_opens_another() {
        let (mut streams, mut io, now) = fresh();
        streams
            .send(&mut io, now, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        let no_length = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP x\r\n\r\n";
        let (delivered, _) = receive(&mut streams, &mut io, now, StreamId(0), no_length);
        assert!(delivered.is_empty(), "{delivered:?}");
        assert_eq!(io.closed, [StreamId(0)]);
        streams
            .send(&mut io, now, Transport::Tcp, peer(), OPTIONS)
            .expect("sent");
        assert_eq!(io.connects.len(), 2, "{:?}", io.connects);
        assert_eq!(io.written_on(StreamId(1)), [OPTIONS]);
    }

    #[test]
    fn a_refused_connection_hands_back_its_requests_and_one_that_answered_does_not() {
        let (mut streams, mut io, now) = fresh();
        streams
            .send(&mut io, now, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        streams
            .send(&mut io, now, Transport::Tcp, peer(), OPTIONS)
            .expect("sent");
        let refused = StreamClosed::Error(std::io::ErrorKind::ConnectionRefused);
        let failed = close(&mut streams, StreamId(0), refused);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed[0].0, INVITE);
        assert_eq!(failed[1].0, OPTIONS);
        assert!(
            failed[0].1.contains("refused the TCP connection"),
            "{}",
            failed[0].1
        );
        // Forgotten: the next send connects again.
        streams
            .send(&mut io, now, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        assert_eq!(io.connects.len(), 2);
        // This one carried a response back: its peer was there, its requests are not failed.
        receive(&mut streams, &mut io, now, StreamId(1), RESPONSE);
        assert!(close(&mut streams, StreamId(1), refused).is_empty());
        // Nor are ours when we closed it.
        streams
            .send(&mut io, now, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        assert!(close(&mut streams, StreamId(2), StreamClosed::Local).is_empty());
    }

    #[test]
    fn a_tls_connection_that_fails_before_its_handshake_hands_back_its_requests() {
        let (mut streams, mut io, now) = fresh();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let tls = TlsClient {
            config: Arc::new(config),
            server_name: "sip.test".into(),
        };
        streams.set_tls_peer(peer(), tls);
        streams
            .send(&mut io, now, Transport::Tls, peer(), INVITE)
            .expect("sent");
        // The ClientHello left; the INVITE waits for the handshake.
        let hello = io.written_on(StreamId(0));
        assert_eq!(hello.len(), 1);
        assert_eq!(hello[0][0], 0x16, "a TLS handshake record");
        // The peer answers in plain SIP: not TLS. Bytes came back, yet nobody was there to
        // take our INVITE over TLS.
        let (delivered, unreached) = receive(&mut streams, &mut io, now, StreamId(0), RESPONSE);
        assert!(delivered.is_empty());
        let unreached = unreached.expect("the kept INVITE comes back");
        assert_eq!(unreached.sent, [INVITE.to_vec()]);
        assert!(
            unreached.why.starts_with("could not be reached over TLS: "),
            "{}",
            unreached.why
        );
        assert!(unreached.why.contains("speaks TLS"), "{}", unreached.why);
        assert!(io.closed.contains(&StreamId(0)));
    }

    #[test]
    fn an_idle_connection_is_closed_after_the_idle_timeout_and_not_before() {
        let (mut streams, mut io, start) = fresh();
        streams
            .send(&mut io, start, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        streams.connected(StreamId(0));
        streams.accepted(
            &mut io,
            start,
            StreamId(9),
            "192.0.2.20:40000".parse().expect("address"),
        );
        // The accepted one keeps talking (a request, then keep-alives); ours goes quiet.
        receive(&mut streams, &mut io, start, StreamId(9), OPTIONS);
        let mut now = start;
        while now < start + IDLE_TIMEOUT - SWEEP_EVERY {
            now = streams.poll_timeout().expect("a sweep is due");
            assert!(now > start, "sweeps move on");
            streams.handle_timeout(&mut io, now, |_, _| false, |_, _| {});
            receive(&mut streams, &mut io, now, StreamId(9), b"\r\n\r\n");
        }
        // Every sweep up to 570 s ran, and closed nothing.
        assert!(
            io.closed.is_empty(),
            "closed before {IDLE_TIMEOUT:?}: {:?}",
            io.closed
        );
        let due = streams.poll_timeout().expect("a sweep is due");
        assert!(due <= start + IDLE_TIMEOUT + SWEEP_EVERY, "{due:?}");
        let at = due.max(start + IDLE_TIMEOUT);
        // A live call still talks to it: kept, however quiet.
        let ours = |t: Transport, p: SocketAddr| t == Transport::Tcp && p == peer();
        streams.handle_timeout(&mut io, at, ours, |_, _| {});
        assert!(io.closed.is_empty(), "{:?}", io.closed);
        // The call ended: the next sweep closes it.
        let at = streams.poll_timeout().expect("a sweep is due");
        streams.handle_timeout(&mut io, at, |_, _| false, |_, _| {});
        assert_eq!(io.closed, [StreamId(0)], "only the quiet one");
        // Its peer gets a new connection next time.
        streams
            .send(&mut io, at, Transport::Tcp, peer(), OPTIONS)
            .expect("sent");
        assert_eq!(io.connects.len(), 2);
    }

    #[test]
    fn an_accepted_connection_starting_with_a_tls_handshake_is_closed_when_tls_is_not_served() {
        let mut streams = SipStreams::new(8192, CONNECT, STRANGERS);
        let mut io = FakeIo::default();
        let now = Instant::now();
        let (tls_stream, plain_stream) = (StreamId(7), StreamId(8));
        streams.accepted(&mut io, now, tls_stream, peer());
        streams.accepted(
            &mut io,
            now,
            plain_stream,
            "192.0.2.11:5060".parse().expect("address"),
        );
        // A TLS 1.2/1.3 ClientHello record header: handshake (22), version 3.1.
        let (delivered, _) = receive(&mut streams, &mut io, now, tls_stream, &[0x16, 3, 1, 0, 5]);
        assert!(delivered.is_empty());
        assert_eq!(io.closed, [tls_stream], "refused at its first byte");
        let (delivered, _) = receive(&mut streams, &mut io, now, plain_stream, INVITE);
        assert_eq!(
            delivered.len(),
            1,
            "plain SIP on the same listener still works"
        );
        assert_eq!(delivered[0].0, Transport::Tcp);
    }

    /// What `handle_timeout` at `at` hands to the failure callback, as (request, why).
    fn time_out(streams: &mut SipStreams, io: &mut FakeIo, at: Instant) -> Vec<(Vec<u8>, String)> {
        let mut failed = Vec::new();
        streams.handle_timeout(
            io,
            at,
            |_, _| false,
            |sent, why| failed.push((sent.to_vec(), why.to_owned())),
        );
        failed
    }

    #[test]
    fn a_connection_not_up_by_the_connect_timeout_is_given_up_and_its_requests_fail() {
        let (mut streams, mut io, start) = fresh();
        streams
            .send(&mut io, start, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        assert_eq!(streams.poll_timeout(), Some(start + CONNECT));
        assert!(
            time_out(
                &mut streams,
                &mut io,
                start + CONNECT - Duration::from_millis(1)
            )
            .is_empty()
        );
        assert!(io.closed.is_empty());
        let failed = time_out(&mut streams, &mut io, start + CONNECT);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, INVITE);
        assert!(failed[0].1.contains("within 2000 ms"), "{}", failed[0].1);
        assert!(
            failed[0].1.contains("sip.tcp_connect_timeout_ms"),
            "{}",
            failed[0].1
        );
        assert_eq!(io.closed, [StreamId(0)]);
        // The next message opens a new connection with a deadline of its own.
        let later = start + CONNECT * 3;
        streams
            .send(&mut io, later, Transport::Tcp, peer(), OPTIONS)
            .expect("sent");
        assert_eq!(io.connects.len(), 2);
        assert_eq!(streams.poll_timeout(), Some(later + CONNECT));
    }

    #[test]
    fn an_established_or_answering_connection_is_not_given_up() {
        let (mut streams, mut io, start) = fresh();
        streams
            .send(&mut io, start, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        streams.connected(StreamId(0));
        let other: SocketAddr = "192.0.2.11:5060".parse().expect("address");
        streams
            .send(&mut io, start, Transport::Tcp, other, OPTIONS)
            .expect("sent");
        // The second peer answers before it is reported connected.
        receive(&mut streams, &mut io, start, StreamId(1), RESPONSE);
        // Only the idle sweep is left to run.
        let due = streams.poll_timeout().expect("a sweep is due");
        assert_eq!(due, start + SWEEP_EVERY);
        assert!(time_out(&mut streams, &mut io, due).is_empty());
        assert!(io.closed.is_empty(), "{:?}", io.closed);
    }

    #[test]
    fn an_alias_sends_on_the_callers_connection_until_it_closes() {
        let (mut streams, mut io, now) = fresh();
        let caller: SocketAddr = "192.0.2.20:40000".parse().expect("address");
        let contact: SocketAddr = "192.0.2.20:5061".parse().expect("address");
        assert!(
            !streams.alias(Transport::Tcp, contact, caller),
            "no connection yet"
        );
        streams.accepted(&mut io, now, StreamId(9), caller);
        assert!(!streams.can_reach(Transport::Tcp, contact));
        assert!(streams.alias(Transport::Tcp, contact, caller));
        assert!(streams.can_reach(Transport::Tcp, contact));
        streams
            .send(&mut io, now, Transport::Tcp, contact, OPTIONS)
            .expect("sent");
        assert!(io.connects.is_empty(), "no new connection");
        assert_eq!(io.written_on(StreamId(9)), [OPTIONS]);
        // Closed: the alias goes with it, and the next message opens a connection.
        close(&mut streams, StreamId(9), StreamClosed::Peer);
        assert!(!streams.can_reach(Transport::Tcp, contact));
        streams
            .send(&mut io, now, Transport::Tcp, contact, OPTIONS)
            .expect("sent");
        assert_eq!(io.connects, [(StreamId(0), contact)]);
    }

    #[test]
    fn one_address_holds_at_most_its_share_of_accepted_connections() {
        let (mut streams, mut io, now) = fresh();
        let stranger = |port: u16| SocketAddr::from(([192, 0, 2, 66], port));
        let share = u32::from(STRANGERS.per_address);
        for n in 0..share {
            assert!(!streams.address_is_full(stranger(0).ip()));
            streams.accepted(&mut io, now, StreamId(n), stranger(40_000 + n as u16));
        }
        assert!(io.closed.is_empty(), "{:?}", io.closed);
        assert!(streams.address_is_full(stranger(0).ip()));
        assert!(!streams.address_is_full(peer().ip()));
        // One more from the same address is closed at once; another address is served.
        streams.accepted(&mut io, now, StreamId(share), stranger(50_000));
        assert_eq!(io.closed, [StreamId(share)]);
        streams.accepted(&mut io, now, StreamId(share + 1), peer());
        assert_eq!(io.closed, [StreamId(share)]);
        // The loop reports the refused one closed: nothing to forget.
        streams.closed(StreamId(share), StreamClosed::Local, |_, _| {});
        // One of the address's connections closes: it may open another.
        streams.closed(StreamId(0), StreamClosed::Peer, |_, _| {});
        streams.accepted(&mut io, now, StreamId(share + 2), stranger(50_001));
        assert_eq!(io.closed, [StreamId(share)]);
    }

    #[test]
    fn a_connection_the_loop_refused_counts_by_whether_its_address_was_full() {
        let (mut streams, mut io, now) = fresh();
        let stranger = |port: u16| SocketAddr::from(([192, 0, 2, 67], port));
        for n in 0..u32::from(STRANGERS.per_address) {
            streams.accepted(&mut io, now, StreamId(n), stranger(40_000 + n as u16));
        }
        streams.refused(stranger(50_000));
        streams.refused(peer());
        streams.refused(peer());
        let counters = StrangerCounters::default();
        streams.publish(&counters);
        let expected = StrangersClosed {
            over_per_source: 1,
            no_room: 2,
            ..StrangersClosed::default()
        };
        assert_eq!(counters.get(), expected);
    }

    #[test]
    fn an_accepted_connection_that_sends_no_sip_message_is_closed_at_the_quiet_limit() {
        let (mut streams, mut io, start) = fresh();
        let (silent, pinging, talking) = (StreamId(1), StreamId(2), StreamId(3));
        for (stream, port) in [(silent, 40_001), (pinging, 40_002), (talking, 40_003)] {
            let from = SocketAddr::from(([192, 0, 2, 20], port));
            streams.accepted(&mut io, start, stream, from);
        }
        // A keep-alive is not a SIP message; a request is.
        receive(&mut streams, &mut io, start, pinging, b"\r\n\r\n");
        receive(&mut streams, &mut io, start, talking, OPTIONS);
        let due = streams.poll_timeout().expect("a deadline");
        assert_eq!(due, start + STRANGERS.first_message);
        streams.handle_timeout(
            &mut io,
            due - Duration::from_millis(1),
            |_, _| false,
            |_, _| {},
        );
        assert!(io.closed.is_empty(), "{:?}", io.closed);
        streams.handle_timeout(&mut io, due, |_, _| false, |_, _| {});
        assert_eq!(io.closed, [silent, pinging]);
        // What is left to wait for is the idle sweep.
        assert_eq!(streams.poll_timeout(), Some(start + SWEEP_EVERY));
    }

    #[test]
    fn room_for_a_newcomer_is_made_by_closing_the_quietest_accepted_connection_not_in_use() {
        let (mut streams, mut io, start) = fresh();
        // Ours, opened first and quiet since: never a candidate.
        streams
            .send(&mut io, start, Transport::Tcp, peer(), INVITE)
            .expect("sent");
        let caller = |port: u16| SocketAddr::from(([192, 0, 2, 30], port));
        for (n, stream) in [StreamId(10), StreamId(11), StreamId(12)]
            .into_iter()
            .enumerate()
        {
            let at = start + Duration::from_secs(n as u64 + 1);
            streams.accepted(&mut io, at, stream, caller(41_000 + n as u16));
            receive(&mut streams, &mut io, at, stream, OPTIONS);
        }
        // 10 is the quietest, but a live call talks to its peer.
        let in_call = |_: Transport, p: SocketAddr| p == caller(41_000);
        assert!(streams.close_idlest_accepted(&mut io, in_call));
        assert_eq!(io.closed, [StreamId(11)]);
        assert!(streams.close_idlest_accepted(&mut io, in_call));
        assert_eq!(io.closed, [StreamId(11), StreamId(12)]);
        assert!(
            !streams.close_idlest_accepted(&mut io, in_call),
            "only the one in a call is left"
        );
        assert_eq!(io.closed.len(), 2);
    }

    #[test]
    fn only_the_quietest_accepted_connection_is_asked_about_when_it_is_free() {
        let (mut streams, mut io, start) = fresh();
        let stranger = |port: u16| SocketAddr::from(([192, 0, 2, 31], port));
        for n in 0..20u16 {
            let at = start + Duration::from_secs(u64::from(n) + 1);
            streams.accepted(&mut io, at, StreamId(u32::from(n)), stranger(42_000 + n));
        }
        let mut asked = Vec::new();
        assert!(streams.close_idlest_accepted(&mut io, |_, p| {
            asked.push(p);
            false
        }));
        assert_eq!(asked, [stranger(42_000)]);
        assert_eq!(io.closed, [StreamId(0)]);
        // The quietest in use: it is asked about, then the others, and the next quietest goes.
        asked.clear();
        assert!(streams.close_idlest_accepted(&mut io, |_, p| {
            asked.push(p);
            p == stranger(42_001)
        }));
        assert_eq!(asked.first(), Some(&stranger(42_001)));
        assert_eq!(io.closed, [StreamId(0), StreamId(2)]);
    }
}
