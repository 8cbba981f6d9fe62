//! The per-core [`Driver`]: one SIP endpoint plus one RTP media session per call, joined to
//! control through the core's command and event queues.
//!
//! Each call binds a port pair from the core's range: an even RTP port and the next, odd,
//! port for RTCP (RFC 3550 §11), so **a call takes two ports and two file descriptors**
//! from dial to end. Datagrams on the RTCP socket go to the media session's
//! [`MediaSession::handle_rtcp_datagram`]; its reports leave from that socket, and so does
//! the RTCP BYE sent when the call ends, before both sockets are closed.
//!
//! With [`AgentConfig::hep`] set, every SIP datagram the core sends, and every one it
//! receives that is within `max_message_bytes`, is also copied as a HEP v3 packet
//! ([`crate::sip::hep`]) to the capture server, from a socket of its own.
//!
//! Everything here is still sans-IO in spirit: it reads no monotonic clock, reads the wall
//! clock only through [`AgentConfig::wall_clock`] (for RTCP's NTP timestamps and HEP's
//! capture times), and opens sockets only through [`Io`]. The loop in [`crate::core`] feeds it.

mod call_table;
mod media_timers;
mod sip_streams;
mod turn_stats;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_queue::ArrayQueue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::api::{
    AmdConfig, CallId, Command, Dial, Disposition, Event, IncomingCall, Outcome, TransferKind,
};
use crate::core::{Driver, Io, ListenerId, SocketId, StreamClosed, StreamId, WakeFd};
use crate::icmp::IcmpError;
use crate::rtp::{
    EncodedCache, ListenParams, MediaConfig, MediaEvent, MediaSession, RecordParams, Recorded,
    RtcpConfig, SourcePolicy,
};
use crate::sdp;
use crate::sip::Transport;
use crate::sip::hep::{Exporter, HepConfig, HepStats};
use crate::sip::register::RegistrationEvent;
use crate::sip::{BorderConfig, DialParams, Endpoint, NoEarlyMedia, SipConfig, SipEvent};
use call_table::{CallKey, CallTable, Channel, MediaSockets};
use media_timers::{MediaTimer, MediaTimers};
use sip_streams::{SipStreams, Strangers};
pub use turn_stats::{LONG_TURNS, TurnCounters, TurnStats};

/// Largest RTP packet we build: 12-byte header plus 160 G.711 samples, with room to spare.
const RTP_BUFFER: usize = 1500;

/// The queues and counters a core shares with control. All lock-free.
#[derive(Clone)]
pub struct CoreLink {
    /// Control → core.
    pub commands: Arc<ArrayQueue<Command>>,
    /// Core → control.
    pub events: Arc<ArrayQueue<Event>>,
    /// Signalled by the core after pushing events.
    pub event_wake: Arc<WakeFd>,
    /// Calls live on this core; read by the dispatcher's power-of-two choice.
    pub load: Arc<AtomicUsize>,
    /// Set by control to stop the core's loop.
    pub stop: Arc<AtomicBool>,
    /// True while the core's loop runs; cleared when its thread exits for any reason.
    pub alive: Arc<AtomicBool>,
    /// HEP packets this core sent and dropped; updated at the end of each turn.
    pub hep: Arc<HepCounters>,
    /// How long this core's turns run; updated at the end of each turn.
    pub turns: Arc<TurnCounters>,
    /// SIP connections others opened that this core closed; updated at the end of a turn.
    pub strangers: Arc<StrangerCounters>,
}

/// SIP connections others opened that a core closed, by reason
/// (`outdial_sip_connections_closed_total{reason}`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct StrangersClosed {
    /// Over `sip.tcp_connections_per_source` from one address.
    pub over_per_source: u64,
    /// No SIP message within `sip.tcp_first_message_timeout_ms`.
    pub no_message: u64,
    /// The quietest, closed to let a newcomer in when accepted connections filled their
    /// share of the core's streams.
    pub idlest: u64,
    /// Closed as accepted: the core's streams, or the accepted share of them, were full and
    /// every accepted connection carried a call.
    pub no_room: u64,
}

/// A core's [`StrangersClosed`] as control reads them.
#[derive(Debug, Default)]
pub struct StrangerCounters {
    over_per_source: AtomicU64,
    no_message: AtomicU64,
    idlest: AtomicU64,
    no_room: AtomicU64,
}

impl StrangerCounters {
    /// The counts now.
    pub fn get(&self) -> StrangersClosed {
        StrangersClosed {
            over_per_source: self.over_per_source.load(Ordering::Relaxed),
            no_message: self.no_message.load(Ordering::Relaxed),
            idlest: self.idlest.load(Ordering::Relaxed),
            no_room: self.no_room.load(Ordering::Relaxed),
        }
    }

    fn store(&self, closed: StrangersClosed) {
        self.over_per_source
            .store(closed.over_per_source, Ordering::Relaxed);
        self.no_message.store(closed.no_message, Ordering::Relaxed);
        self.idlest.store(closed.idlest, Ordering::Relaxed);
        self.no_room.store(closed.no_room, Ordering::Relaxed);
    }
}

/// A core's HEP counters as control reads them (`outdial_hep_packets_total`,
/// `outdial_hep_dropped_total`).
#[derive(Debug, Default)]
pub struct HepCounters {
    /// Packets handed to the loop for the capture server.
    pub sent: AtomicU64,
    /// Messages not copied: over `sip.hep_max_per_second`, or too large for HEP.
    pub dropped: AtomicU64,
}

impl HepCounters {
    /// The counts now.
    pub fn get(&self) -> HepStats {
        HepStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Settings of one core's agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// SIP over UDP is received and sent here.
    pub sip_listen: SocketAddr,
    /// The address callees reach us at: written into Via, Contact and SDP.
    pub public_ip: IpAddr,
    /// Ports this core may bind for media: each call takes an even port for RTP and the
    /// next one for RTCP, both within this range.
    pub rtp_ports: RangeInclusive<u16>,
    /// RFC 3261 timer T1.
    pub t1: Duration,
    /// RFC 3261 timer T2.
    pub t2: Duration,
    /// RFC 3261 timer T4.
    pub t4: Duration,
    /// User-Agent header value.
    pub user_agent: String,
    /// What strangers may make this core's SIP endpoint send.
    pub border: BorderConfig,
    /// Seed for tags, branches, SSRCs, ports, RTCP CNAMEs and report intervals.
    pub seed: u64,
    /// The wall clock, read once per answered call for RTCP's NTP timestamps and once per
    /// HEP copy (`SystemTime::now` in production, a fixed time in tests).
    pub wall_clock: fn() -> SystemTime,
    /// This core's index (in its incoming calls' ids).
    pub core: usize,
    /// Networks whose INVITEs are incoming calls (`sip.inbound_sources`).
    pub inbound_sources: Vec<ipnet::IpNet>,
    /// Incoming INVITEs get `503` while this many calls are live on the core.
    pub max_calls: usize,
    /// The RFC 4028 session interval our INVITEs ask for; `None`: no session timers.
    pub session_expires: Option<Duration>,
    /// Copy SIP to this capture server as HEP v3; `None` = off.
    pub hep: Option<HepConfig>,
    /// Listen for SIP over TCP on the SIP port too.
    pub sip_tcp: bool,
    /// Requests bound for UDP longer than this go over TCP (RFC 3261 §18.1.1); `None`:
    /// never.
    pub udp_mtu_switch: Option<usize>,
    /// A SIP connection we open that is not established within this is given up, and its
    /// requests fail as unreachable.
    pub tcp_connect_timeout: Duration,
    /// Accepted SIP connections one address may hold at once; more are closed at once.
    pub tcp_connections_per_source: u16,
    /// An accepted SIP connection that carried no SIP message this long is closed.
    pub tcp_first_message_timeout: Duration,
    /// Our certificate for SIP over TLS on the SIP listener (a connection that starts with
    /// a TLS handshake); `None`: TLS connections are refused.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
}

/// Copies SIP datagrams to the capture server as HEP.
struct HepTap {
    exporter: Exporter,
    /// Bound at start: a wildcard address of the capture server's family, any port.
    socket: Option<SocketId>,
    /// Our SIP address as written in Via and Contact: the local end of every copy.
    local: SocketAddr,
    /// The counts last stored in [`CoreLink::hep`].
    published: HepStats,
}

impl HepTap {
    /// Copies one SIP datagram sent from `source` to `destination`.
    fn copy(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        wall_clock: fn() -> SystemTime,
        transport: Transport,
        route: (SocketAddr, SocketAddr),
        payload: &[u8],
    ) {
        let Some(socket) = self.socket else {
            return;
        };
        let capture = self.exporter.capture();
        if let Some(packet) = self
            .exporter
            .export(now, wall_clock(), transport, route, payload)
        {
            io.send(socket, capture, packet);
        }
    }

    /// Stores the counters for control when they moved.
    fn publish(&mut self, counters: &HepCounters) {
        let stats = self.exporter.stats();
        if stats != self.published {
            counters.sent.store(stats.sent, Ordering::Relaxed);
            counters.dropped.store(stats.dropped, Ordering::Relaxed);
            self.published = stats;
        }
    }
}

/// Per-call dataplane state.
struct CallSlot {
    rtp_socket: SocketId,
    /// The RTCP socket: the RTP port + 1.
    rtcp_socket: SocketId,
    media: Option<MediaSession>,
    /// Barge-ins on this call so far; a `Play` from an older epoch is dropped.
    epoch: u32,
    /// The media deadline this call has in the timer heap, so a packet that does not move
    /// it adds no heap entry.
    armed: Option<Instant>,
    /// Set when we end the call for a reason SIP does not know (e.g. unusable SDP answer).
    failure: Option<String>,
    /// The SIP Call-ID of the call's INVITE.
    sip_call_id: Option<String>,
    /// Latch media to the signalling peer's source (the dial command's `media_latching`).
    media_latching: bool,
    /// Classify the answer as a person or a machine (the dial command's
    /// `machine_detection`).
    machine_detection: Option<AmdConfig>,
    /// An incoming call's SDP answer, built when its INVITE arrived and sent with the 200 OK
    /// when control answers.
    sdp_answer: Option<Vec<u8>>,
    /// Our SDP's `o=` session id and the version last sent (one more per new answer).
    sdp_origin: (u64, u64),
    /// Where we receive RTP, as our SDP says.
    local_rtp: SocketAddr,
    /// The `o=` of the 183's SDP when early media started: a 2xx with the same one keeps
    /// the session as it is.
    early_origin: Option<sdp::Origin>,
    /// The trunk's TLS settings of a call dialled over TLS: a dialog hop at another address
    /// (the callee's Contact, a Record-Route) is reached with them too.
    tls: Option<crate::api::TlsClient>,
}

impl CallSlot {
    /// A call with its media sockets (RTP, RTCP) and our SDP's address and `o=` ids; no
    /// media yet, no latching, no machine detection, no TLS.
    fn new(
        sip_call_id: Option<String>,
        [rtp_socket, rtcp_socket]: [SocketId; 2],
        local_rtp: SocketAddr,
        sdp_origin: (u64, u64),
    ) -> Self {
        Self {
            rtp_socket,
            rtcp_socket,
            media: None,
            epoch: 0,
            armed: None,
            failure: None,
            sip_call_id,
            media_latching: false,
            machine_detection: None,
            sdp_answer: None,
            sdp_origin,
            local_rtp,
            early_origin: None,
            tls: None,
        }
    }
}

impl MediaSockets for CallSlot {
    fn media_sockets(&self) -> [SocketId; 2] {
        [self.rtp_socket, self.rtcp_socket]
    }
}

/// The [`Driver`] run by each core.
pub struct Agent {
    config: AgentConfig,
    link: CoreLink,
    sip: Endpoint,
    sip_socket: Option<SocketId>,
    /// SIP over TCP and TLS: the connections, and the listener when `sip_tcp`.
    streams: SipStreams,
    sip_listener: Option<ListenerId>,
    /// HEP copies of SIP (`None` = off).
    hep: Option<HepTap>,
    /// The calls, by id for control's commands and by index for packets and timers.
    calls: CallTable<CallSlot>,
    /// Media deadlines on a wheel of [`MEDIA_TICK`]s counted from the loop's start, lazily
    /// invalidated: an entry may be stale (its call gone, or re-armed for another time), and
    /// a spurious `handle_timeout` on a media session is a no-op.
    media_timers: MediaTimers,
    /// The timers a turn found due (kept for its capacity).
    due_timers: Vec<MediaTimer>,
    /// Dials that found every port pair in use, oldest first, with when they came.
    waiting_for_ports: VecDeque<(Instant, Box<Dial>)>,
    /// When to try binding for them again.
    port_retry: Option<Instant>,
    /// The wait before the next timed retry: [`PORT_RETRY`], doubled after each retry that
    /// dialled nothing, up to [`PORT_RETRY_MAX`].
    port_backoff: Duration,
    /// Set (to the turn's time, so the next turn comes at once) when a turn left control's
    /// commands in the queue.
    commands_left: Option<Instant>,
    /// Prompt audio encoded once per law for every call on this core.
    encoded: EncodedCache,
    /// Events that did not fit in the event queue; retried every turn, never dropped.
    overflow: VecDeque<Event>,
    /// When to retry `overflow` if nothing else wakes the core first.
    overflow_retry: Option<Instant>,
    next_port: u16,
    rng: SmallRng,
    sip_buf: Vec<u8>,
    rtp_buf: Box<[u8; RTP_BUFFER]>,
    woke_control: bool,
    ready: Option<mpsc::Sender<Result<(), String>>>,
}

impl Agent {
    /// A new agent; nothing is bound until the loop calls [`Driver::start`].
    pub fn new(config: AgentConfig, link: CoreLink) -> Self {
        let sip = Endpoint::new(
            SipConfig {
                local: SocketAddr::new(config.public_ip, config.sip_listen.port()),
                t1: config.t1,
                t2: config.t2,
                t4: config.t4,
                user_agent: config.user_agent.clone(),
                border: config.border,
                inbound_sources: config.inbound_sources.clone(),
                core: config.core,
                max_calls: config.max_calls,
                session_expires: config.session_expires,
                udp_mtu_switch: config.udp_mtu_switch.unwrap_or(usize::MAX),
            },
            config.seed,
        );
        let mut rng = SmallRng::seed_from_u64(config.seed ^ 0x005e_ed0f_a9e7);
        let span = u32::from(*config.rtp_ports.end()) - u32::from(*config.rtp_ports.start()) + 1;
        let next_port = *config.rtp_ports.start() + (rng.random_range(0..span) as u16);
        let hep = config.hep.clone().map(|hep| HepTap {
            exporter: Exporter::new(hep),
            socket: None,
            local: SocketAddr::new(config.public_ip, config.sip_listen.port()),
            published: HepStats::default(),
        });
        let mut streams = SipStreams::new(
            config.border.max_message_bytes,
            config.tcp_connect_timeout,
            Strangers {
                per_address: config.tcp_connections_per_source,
                first_message: config.tcp_first_message_timeout,
            },
        );
        if let Some(tls) = &config.tls_server {
            streams.serve_tls(Arc::clone(tls));
        }
        Self {
            config,
            link,
            sip,
            sip_socket: None,
            streams,
            sip_listener: None,
            hep,
            calls: CallTable::default(),
            media_timers: MediaTimers::new(MEDIA_TICK),
            due_timers: Vec::new(),
            waiting_for_ports: VecDeque::new(),
            port_retry: None,
            port_backoff: PORT_RETRY,
            commands_left: None,
            encoded: EncodedCache::new(),
            overflow: VecDeque::new(),
            overflow_retry: None,
            next_port,
            rng,
            sip_buf: Vec::with_capacity(4096),
            rtp_buf: Box::new([0; RTP_BUFFER]),
            woke_control: false,
            ready: None,
        }
    }

    /// Reports on `ready` once the SIP socket is bound (or why it could not be).
    pub fn notify_when_ready(&mut self, ready: mpsc::Sender<Result<(), String>>) {
        self.ready = Some(ready);
    }

    fn emit(&mut self, event: Event) {
        if self.overflow.is_empty() {
            match self.link.events.push(event) {
                Ok(()) => {}
                Err(event) => self.overflow.push_back(event),
            }
        } else {
            self.overflow.push_back(event);
        }
        self.woke_control = true;
    }

    fn flush_overflow(&mut self) {
        while let Some(event) = self.overflow.pop_front() {
            if let Err(event) = self.link.events.push(event) {
                self.overflow.push_front(event);
                break;
            }
            self.woke_control = true;
        }
    }

    /// Binds an RTP/RTCP port pair from this core's range (an even port and the next one,
    /// both free and both in the range), starting where the last search stopped and trying
    /// each port once. Returns the RTP socket and address, and the RTCP socket.
    fn bind_pair(&mut self, io: &mut impl Io) -> std::io::Result<(SocketId, SocketAddr, SocketId)> {
        let (start, end) = (*self.config.rtp_ports.start(), *self.config.rtp_ports.end());
        let span = u32::from(end) - u32::from(start) + 1;
        let ip = self.config.sip_listen.ip();
        let mut last_error = None;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port >= end { start } else { port + 1 };
            if port % 2 == 1 || port >= end {
                continue;
            }
            let (rtp, rtp_local) = match io.bind(SocketAddr::new(ip, port)) {
                Ok(bound) => bound,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            match io.bind(SocketAddr::new(ip, port + 1)) {
                Ok((rtcp, _)) => return Ok((rtp, rtp_local, rtcp)),
                Err(e) => {
                    io.close(rtp);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free RTP/RTCP port pair (even port and the next) in this core's range: \
                 widen [rtp] port_min..port_max",
            )
        }))
    }

    /// Dials `dial`, or keeps it until a port pair frees up (see [`PORT_WAIT`]).
    fn place(&mut self, io: &mut impl Io, now: Instant, dial: Box<Dial>) {
        if self
            .waiting_for_ports
            .iter()
            .any(|(_, d)| d.call == dial.call)
        {
            self.emit(failed(dial.call, "duplicate call id on this core".into()));
            return;
        }
        // Behind the dials already waiting: they get the first pair that frees up.
        let busy = if self.waiting_for_ports.is_empty() {
            match self.dial(io, now, &dial) {
                Ok(()) => return,
                Err(busy) => busy,
            }
        } else {
            std::io::ErrorKind::AddrInUse.into()
        };
        if self.waiting_for_ports.len() >= MAX_WAITING_FOR_PORTS {
            self.emit(failed(
                dial.call,
                format!("cannot bind an RTP/RTCP port pair: {busy}"),
            ));
            return;
        }
        if self.waiting_for_ports.is_empty() {
            tracing::warn!(
                core = self.config.core,
                "every RTP/RTCP port pair is in use: new calls wait for one (up to {}s)",
                PORT_WAIT.as_secs()
            );
        }
        if self.waiting_for_ports.is_empty() {
            self.port_backoff = PORT_RETRY;
        }
        self.waiting_for_ports.push_back((now, dial));
        self.port_retry.get_or_insert(now + PORT_RETRY);
    }

    /// Dials the calls waiting for a port pair, oldest first, while pairs bind; fails those
    /// that waited [`PORT_WAIT`].
    fn retry_waiting_dials(&mut self, io: &mut impl Io, now: Instant) {
        self.port_retry = None;
        let mut dialled = false;
        while let Some((since, dial)) = self.waiting_for_ports.pop_front() {
            let Err(busy) = self.dial(io, now, &dial) else {
                dialled = true;
                continue;
            };
            if now.saturating_duration_since(since) < PORT_WAIT {
                self.waiting_for_ports.push_front((since, dial));
                break;
            }
            self.emit(failed(
                dial.call,
                format!(
                    "cannot bind an RTP/RTCP port pair for {}s: {busy}",
                    PORT_WAIT.as_secs()
                ),
            ));
        }
        // Each retry tries every pair of the range: back off while none frees up (a call
        // ending on this core retries at once, see `release_ports`), but never past the
        // oldest dial's deadline.
        self.port_backoff = if dialled {
            PORT_RETRY
        } else {
            (self.port_backoff * 2).min(PORT_RETRY_MAX)
        };
        if let Some((since, _)) = self.waiting_for_ports.front() {
            self.port_retry = Some((now + self.port_backoff).min(*since + PORT_WAIT));
        }
    }

    /// A call ended and closed its pair: dials waiting for one try at the next turn (the
    /// sockets are closed once the ring has cancelled their receives, before that turn).
    fn release_ports(&mut self, io: &mut impl Io, rtp: SocketId, rtcp: SocketId, now: Instant) {
        io.close(rtp);
        io.close(rtcp);
        if !self.waiting_for_ports.is_empty() {
            self.port_retry = Some(now);
        }
    }

    /// Dials at once; `Err` only when every port pair is in use (the caller may wait).
    fn dial(&mut self, io: &mut impl Io, now: Instant, dial: &Dial) -> std::io::Result<()> {
        if self.calls.contains(dial.call) {
            self.emit(failed(dial.call, "duplicate call id on this core".into()));
            return Ok(());
        }
        if dial.transport == Transport::Tls && (dial.tls.is_none() || dial.destination.is_none()) {
            self.emit(failed(
                dial.call,
                "a TLS dial needs its trunk's TLS settings and a resolved destination".into(),
            ));
            return Ok(());
        }
        let (rtp_socket, rtp_local, rtcp_socket) = match self.bind_pair(io) {
            Ok(bound) => bound,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => {
                self.emit(failed(
                    dial.call,
                    format!("cannot bind an RTP/RTCP port pair: {e}"),
                ));
                return Ok(());
            }
        };
        let sdp_session: u64 = self.rng.random::<u32>().into();
        let offer = sdp::build_offer(sdp_session, 1, self.config.public_ip, rtp_local.port());
        let params = DialParams {
            target: &dial.target,
            destination: dial.destination,
            from: &dial.from,
            sdp_offer: &offer,
            ring_timeout: dial.ring_timeout,
            max_duration: dial.max_duration,
            credentials: dial.credentials.as_ref(),
            asserted_identity: dial.asserted_identity.as_deref(),
            privacy: dial.privacy.as_deref(),
            no_response_timeout: dial.no_response_timeout,
            transport: dial.transport,
        };
        if let Some(tls) = &dial.tls
            && let Some(destination) = dial.destination
        {
            self.streams.set_tls_peer(destination, tls.clone());
        }
        if let Err(e) = self.sip.dial(now, dial.call, &params) {
            // The pair goes back like a finished call's: a dial waiting for one may take it.
            self.release_ports(io, rtp_socket, rtcp_socket, now);
            self.emit(failed(
                dial.call,
                format!("cannot dial {}: {e}", dial.target),
            ));
            return Ok(());
        }
        let sip_call_id = self.sip.sip_call_id(dial.call).map(str::to_owned);
        let local_rtp = SocketAddr::new(self.config.public_ip, rtp_local.port());
        let slot = CallSlot {
            media_latching: dial.media_latching,
            machine_detection: dial.machine_detection,
            tls: dial.tls.clone(),
            ..CallSlot::new(
                sip_call_id,
                [rtp_socket, rtcp_socket],
                local_rtp,
                (sdp_session, 1),
            )
        };
        self.calls.insert(dial.call, slot);
        self.link.load.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn handle_command(&mut self, io: &mut impl Io, now: Instant, command: Command) {
        match command {
            Command::Dial(dial) => self.place(io, now, dial),
            Command::Answer {
                call,
                max_duration,
                media_latching,
            } => {
                let answer = self.calls.get_mut(call).and_then(|slot| {
                    slot.media_latching = media_latching;
                    slot.sdp_answer.take()
                });
                if let Some(answer) = answer {
                    self.sip.accept(now, call, &answer, max_duration);
                }
            }
            Command::EarlyMedia {
                call,
                max_duration,
                media_latching,
            } => self.incoming_early_media(now, call, max_duration, media_latching),
            Command::Reject {
                call,
                status,
                retry_after,
            } => {
                self.sip.reject(now, call, status, retry_after);
            }
            Command::Register(register) => self.sip.register(now, &register),
            Command::Unregister { id } => self.sip.unregister(now, id),
            Command::Play {
                call,
                id,
                audio,
                bargein,
                epoch,
            } => match self.calls.get_mut(call) {
                Some(CallSlot {
                    media: Some(media),
                    epoch: current,
                    ..
                }) if epoch >= *current => {
                    match self.encoded.get(&audio, media.config().codec) {
                        Some(encoded) => media.play_encoded(now, id, audio, encoded, bargein),
                        None => media.play(now, id, audio, bargein),
                    }
                    self.drain_media(io, call, Origin::Control);
                }
                // Not answered (yet or any more), or overtaken by a barge-in on its way here.
                _ => self.emit(Event::PlaybackDone {
                    call,
                    id,
                    interrupted: true,
                    played: 0,
                }),
            },
            Command::StopPlayback { call } => {
                if let Some(media) = self
                    .calls
                    .get_mut(call)
                    .and_then(|slot| slot.media.as_mut())
                {
                    media.stop_playback();
                    self.drain_media(io, call, Origin::Control);
                }
            }
            Command::Hangup { call } => {
                if let Some(at) = self
                    .waiting_for_ports
                    .iter()
                    .position(|(_, d)| d.call == call)
                {
                    self.waiting_for_ports.remove(at);
                    self.emit(Event::Ended {
                        call,
                        outcome: Outcome {
                            disposition: Disposition::Canceled,
                            sip_status: None,
                            reason: "hung up while waiting for an RTP/RTCP port pair".into(),
                        },
                        sip_call_id: None,
                        media: None,
                        redirect: None,
                    });
                } else {
                    self.sip.hangup(now, call);
                }
            }
            Command::Record {
                call,
                id,
                max_time,
                final_silence,
                no_input,
                dtmfterm,
                beep,
            } => {
                let params = RecordParams {
                    max_time,
                    final_silence,
                    no_input,
                    dtmfterm,
                };
                match self
                    .calls
                    .get_mut(call)
                    .and_then(|slot| slot.media.as_mut())
                {
                    Some(media) => {
                        media.record(now, id, params, beep);
                        self.drain_media(io, call, Origin::Control);
                    }
                    // Not answered (yet or any more): nothing to record.
                    None => self.emit(Event::Recorded {
                        call,
                        id,
                        pcm: Vec::new(),
                        termchar: None,
                        maxtime: false,
                        silent: true,
                    }),
                }
            }
            Command::Listen {
                call,
                id,
                max_speech,
                end_silence,
                hotword,
            } => {
                let params = ListenParams {
                    max_speech,
                    end_silence,
                };
                if let Some(media) = self
                    .calls
                    .get_mut(call)
                    .and_then(|slot| slot.media.as_mut())
                {
                    media.listen(now, id, params, hotword);
                    self.drain_media(io, call, Origin::Control);
                }
            }
            Command::StopListening { call, id } => {
                if let Some(media) = self
                    .calls
                    .get_mut(call)
                    .and_then(|slot| slot.media.as_mut())
                {
                    media.stop_listening(Some(id));
                }
            }
            Command::StopRecording { call, id } => {
                if let Some(media) = self
                    .calls
                    .get_mut(call)
                    .and_then(|slot| slot.media.as_mut())
                {
                    media.stop_recording(Some(id));
                    self.drain_media(io, call, Origin::Control);
                }
            }
            Command::Transfer {
                call,
                id,
                target,
                kind: TransferKind::Blind,
                connect_timeout,
            } => {
                if let Err(error) = self.sip.refer(now, call, id, &target, connect_timeout) {
                    self.emit(Event::TransferDone {
                        call,
                        id,
                        result: Err(error),
                        detail: format!("cannot transfer to {target}: {error}"),
                    });
                }
            }
        }
    }

    /// Sends what SIP wants sent and acts on what it reports, until it has nothing more.
    fn drain_sip(&mut self, io: &mut impl Io, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some((transport, to)) = self.sip.poll_transmit_via(&mut self.sip_buf) {
                progressed = true;
                trace_sip("out", to, &self.sip_buf);
                if transport != Transport::Udp {
                    if transport == Transport::Tls && !self.streams.can_reach(transport, to) {
                        self.learn_tls_hop(to);
                    }
                    if let Err(why) = self.streams.send(io, now, transport, to, &self.sip_buf) {
                        tracing::warn!(peer = %to, %transport, "{why}");
                        self.sip.handle_transport_failure(now, &self.sip_buf, &why);
                        continue;
                    }
                } else if let Some(socket) = self.sip_socket {
                    io.send(socket, to, &self.sip_buf);
                } else {
                    continue;
                }
                if let Some(tap) = self.hep.as_mut() {
                    let route = (tap.local, to);
                    let wall_clock = self.config.wall_clock;
                    tap.copy(io, now, wall_clock, transport, route, &self.sip_buf);
                }
            }
            while let Some(event) = self.sip.poll_event() {
                self.handle_sip_event(io, now, event);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// A TLS message is bound for `to`, an address no dial named and no connection serves,
    /// in the dialog of a live call:
    /// - a call dialled over TLS (its callee's Contact or a Record-Route at another address
    ///   than the trunk's): the call's trunk settings reach it too: the same CAs and client
    ///   certificate, and the trunk's name for the certificate (the peer that gave us the hop
    ///   proved that name; a hop's IP literal rarely appears in a certificate);
    /// - an incoming call over TLS (the caller's Contact names its listening port, not the
    ///   port its connection came from): the caller's connection carries it, as RFC 5923
    ///   intends. We hold no client settings for callers, and a caller behind NAT cannot be
    ///   connected to at all.
    fn learn_tls_hop(&mut self, to: SocketAddr) {
        let Some(call) = self.sip.call_using_stream_peer(Transport::Tls, to) else {
            return;
        };
        if let Some(tls) = self.calls.get(call).and_then(|slot| slot.tls.clone()) {
            self.streams.set_tls_peer(to, tls);
        } else if let Some(caller) = self.sip.incoming_source(call) {
            self.streams.alias(Transport::Tls, to, caller);
        }
    }

    /// An INVITE from an allowed source: read its offer, bind the call's port pair, build
    /// the answer and ask control. An offer without G.711 is refused 488, a core out of
    /// ports 503; control hears of neither (the core's `Ended` for them is an orphan).
    fn incoming(&mut self, io: &mut impl Io, now: Instant, incoming: IncomingCall, sdp: &[u8]) {
        let call = incoming.call;
        // An INVITE without an offer gets ours in the 200; the ACK brings the answer.
        let offer = if sdp.is_empty() {
            None
        } else {
            match sdp::read_offer(sdp) {
                Ok(offer) => Some(offer),
                Err(e) => {
                    tracing::debug!(source = %incoming.source, error = %e, "incoming call refused: unusable offer");
                    self.sip.reject(now, call, 488, None);
                    return;
                }
            }
        };
        let (rtp_socket, rtp_local, rtcp_socket) = match self.bind_pair(io) {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!(error = %e, "incoming call refused: no RTP port pair free");
                self.sip.reject(now, call, 503, Some(5));
                return;
            }
        };
        let sdp_session: u64 = self.rng.random::<u32>().into();
        let local_rtp = SocketAddr::new(self.config.public_ip, rtp_local.port());
        let answer = match &offer {
            Some(offer) => sdp::build_answer(sdp_session, local_rtp, offer),
            None => sdp::build_offer(sdp_session, 1, self.config.public_ip, rtp_local.port()),
        };
        let slot = CallSlot {
            sdp_answer: Some(answer),
            ..CallSlot::new(
                Some(incoming.sip_call_id.clone()),
                [rtp_socket, rtcp_socket],
                local_rtp,
                (sdp_session, sdp_session),
            )
        };
        self.calls.insert(call, slot);
        self.link.load.fetch_add(1, Ordering::Relaxed);
        self.emit(Event::Incoming(Box::new(IncomingCall {
            // Offerless: our offer's first law, until the ACK's answer says.
            codec: offer.map_or(crate::api::Codec::Pcmu, |offer| offer.codec),
            ..incoming
        })));
    }

    /// Control asked for early media on an incoming call: a 183 with the answer the 200
    /// will carry (kept for it); the endpoint's `EarlyMedia` starts the media. A call that
    /// cannot have it (the caller requires 100rel, or sent no offer) is answered at once.
    fn incoming_early_media(
        &mut self,
        now: Instant,
        call: CallId,
        max_duration: Duration,
        media_latching: bool,
    ) {
        let Some(slot) = self.calls.get_mut(call) else {
            return;
        };
        slot.media_latching = media_latching;
        let Some(answer) = slot.sdp_answer.clone() else {
            return;
        };
        match self.sip.progress(now, call, &answer) {
            Ok(()) => {}
            Err(NoEarlyMedia::NotOffered) => {}
            Err(why) => {
                tracing::debug!(?call, %why, "no early media: answering at once");
                slot.sdp_answer = None;
                self.sip.accept(now, call, &answer, max_duration);
            }
        }
    }

    /// A peer's new offer in an answered call (hold, resume, a new address): the media
    /// session follows it and our answer mirrors its direction; an offer without the call's
    /// law, or for a call without media yet, is refused 488 and changes nothing.
    fn reoffer(&mut self, io: &mut impl Io, now: Instant, call: CallId, offer: &[u8]) {
        let answer = self.calls.get_mut(call).and_then(|slot| {
            let media = slot.media.as_mut()?;
            let offer = sdp::negotiate_keeping(offer, media.config().codec).ok()?;
            let on_hold = !offer.direction.receives() || offer.remote_rtp.ip().is_unspecified();
            media.renegotiate(offer.remote_rtp, offer.remote_rtcp, !on_hold);
            slot.sdp_origin.1 += 1;
            let (session, version) = slot.sdp_origin;
            let direction = offer.direction.answer();
            tracing::debug!(?call, held = on_hold, remote = %offer.remote_rtp, "new offer");
            Some(sdp::build_answer_directed(
                session,
                version,
                slot.local_rtp,
                &offer,
                direction,
            ))
        });
        match answer {
            Some(answer) => {
                self.sip.answer_reoffer(now, call, Ok(&answer));
                self.drain_media(io, call, Origin::Control);
            }
            None => {
                self.sip.answer_reoffer(now, call, Err(488));
            }
        }
    }

    fn handle_sip_event(&mut self, io: &mut impl Io, now: Instant, event: SipEvent) {
        match event {
            SipEvent::Reoffer { call, sdp } => self.reoffer(io, now, call, &sdp),
            SipEvent::Incoming {
                call,
                request_uri,
                from,
                to,
                source,
                sip_call_id,
                sdp,
            } => {
                let incoming = IncomingCall {
                    call,
                    request_uri,
                    from,
                    to,
                    source,
                    sip_call_id,
                    codec: crate::api::Codec::Pcmu,
                };
                self.incoming(io, now, incoming, &sdp);
            }
            SipEvent::Ringing { call } => self.emit(Event::Ringing { call }),
            SipEvent::Registration { id, event } => self.emit(registration_event(id, event)),
            SipEvent::TransferDone {
                call,
                id,
                result,
                detail,
            } => self.emit(Event::TransferDone {
                call,
                id,
                result,
                detail,
            }),
            SipEvent::EarlyMedia { call, sdp, peer } => self.early_media(io, now, call, &sdp, peer),
            SipEvent::Answered { call, sdp, peer } => self.answered(io, now, call, &sdp, peer),
            SipEvent::Ended { call, mut outcome } => {
                let mut sip_call_id = None;
                let mut media_stats = None;
                if let Some(mut slot) = self.calls.remove(call) {
                    sip_call_id = slot.sip_call_id.take();
                    // A recording cut short by the hangup keeps what it captured.
                    if let Some(media) = slot.media.as_mut() {
                        // RFC 3550 §6.6: the last compound says goodbye.
                        media.end_rtcp();
                        while let Some((to, len)) = media.poll_rtcp_transmit(&mut self.rtp_buf[..])
                        {
                            if let Some(packet) = self.rtp_buf.get(..len) {
                                io.send(slot.rtcp_socket, to, packet);
                            }
                        }
                        media.stop_recording(None);
                        while let Some(event) = media.poll_event() {
                            if let MediaEvent::Recorded(recorded) = event {
                                self.emit(recorded_event(call, recorded));
                            }
                        }
                    }
                    // After the BYE, so the counters include it.
                    media_stats = slot.media.as_ref().map(MediaSession::stats);
                    self.release_ports(io, slot.rtp_socket, slot.rtcp_socket, now);
                    if let Some(reason) = slot.failure {
                        outcome.disposition = Disposition::Failed;
                        outcome.reason = reason;
                    }
                    self.link.load.fetch_sub(1, Ordering::Relaxed);
                }
                let redirect = self.sip.redirect_target(call).map(Box::from);
                self.emit(Event::Ended {
                    call,
                    outcome,
                    sip_call_id,
                    media: media_stats,
                    redirect,
                });
            }
        }
    }

    /// A new media session for `call` from a negotiated answer, with RTCP on; `peer` is where
    /// the answer came from (what latching trusts).
    fn new_media(
        &mut self,
        now: Instant,
        negotiated: &sdp::Negotiated,
        peer: SocketAddr,
        latching: bool,
    ) -> MediaSession {
        let mut media = MediaSession::new(
            MediaConfig {
                ssrc: self.rng.random(),
                initial_seq: self.rng.random(),
                initial_timestamp: self.rng.random(),
                codec: negotiated.codec,
                remote: negotiated.remote_rtp,
                dtmf_payload_type: negotiated.dtmf_payload_type,
                source: if latching {
                    SourcePolicy::Latch {
                        signalling_ip: peer.ip(),
                    }
                } else {
                    SourcePolicy::Sdp
                },
            },
            now,
        );
        media.enable_rtcp(RtcpConfig {
            wall_clock_at_start: (self.config.wall_clock)(),
            cname: RtcpConfig::cname_from(self.rng.random()),
            seed: self.rng.random(),
            remote_rtcp: negotiated.remote_rtcp,
        });
        media
    }

    /// A 183 with SDP before the answer: the call's media starts now (no machine detection
    /// yet: that listens from the answer on). An early answer we cannot use is passed over:
    /// the call goes on, and its media starts at the 200 OK as usual.
    fn early_media(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        call: CallId,
        answer: &[u8],
        peer: SocketAddr,
    ) {
        let Some(latching) = self
            .calls
            .get(call)
            .filter(|slot| slot.media.is_none())
            .map(|slot| slot.media_latching)
        else {
            return;
        };
        let negotiated = match sdp::negotiate(answer) {
            Ok(negotiated) => negotiated,
            Err(e) => {
                tracing::debug!(?call, error = %e, "early media passed over: unusable SDP in the 183");
                return;
            }
        };
        let media = self.new_media(now, &negotiated, peer, latching);
        let Some(slot) = self.calls.get_mut(call) else {
            return;
        };
        slot.media = Some(media);
        slot.early_origin = sdp::origin(answer);
        let sip_call_id = slot.sip_call_id.clone();
        self.emit(Event::EarlyMedia {
            call,
            codec: negotiated.codec,
            sip_call_id,
        });
        self.drain_media(io, call, Origin::Control);
    }

    /// The 2xx (or an incoming call's ACK): media starts, or goes on from early media. After
    /// early media, a 2xx without SDP or with the early session's own `o=` changes nothing;
    /// another session moves the media where it says (a new law starts a new session).
    fn answered(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        call: CallId,
        answer: &[u8],
        peer: SocketAddr,
    ) {
        let Some(slot) = self.calls.get_mut(call) else {
            return;
        };
        let latching = slot.media_latching;
        let amd = slot.machine_detection;
        let early_codec = slot.media.as_ref().map(|media| media.config().codec);
        let unchanged = early_codec.is_some()
            && (answer.is_empty()
                || slot.early_origin.is_some() && sdp::origin(answer) == slot.early_origin);
        let kept = match (early_codec, unchanged) {
            (Some(codec), true) => Some(codec),
            (Some(codec), false) => match sdp::negotiate_keeping(answer, codec) {
                Ok(moved) => {
                    let receives =
                        moved.direction.receives() && !moved.remote_rtp.ip().is_unspecified();
                    if let Some(media) = slot.media.as_mut() {
                        media.renegotiate(moved.remote_rtp, moved.remote_rtcp, receives);
                    }
                    tracing::debug!(?call, remote = %moved.remote_rtp, "the answer moved early media");
                    Some(codec)
                }
                Err(_) => None,
            },
            (None, _) => None,
        };
        let codec = match kept {
            Some(codec) => codec,
            None => match sdp::negotiate(answer) {
                Ok(negotiated) => {
                    let media = self.new_media(now, &negotiated, peer, latching);
                    let Some(slot) = self.calls.get_mut(call) else {
                        return;
                    };
                    // A session early media started is replaced (its counters with it).
                    slot.media = Some(media);
                    negotiated.codec
                }
                Err(e) => {
                    slot_failure(&mut self.calls, call, &e);
                    self.sip.hangup(now, call);
                    return;
                }
            },
        };
        let Some(slot) = self.calls.get_mut(call) else {
            return;
        };
        if let (Some(amd), Some(media)) = (amd, slot.media.as_mut()) {
            media.detect_machine(amd, now);
        }
        let sip_call_id = slot.sip_call_id.clone();
        self.emit(Event::Answered {
            call,
            codec,
            sip_call_id,
        });
        self.drain_media(io, call, Origin::Control);
    }

    /// Sends a call's pending RTP, reports its media events and re-arms its timer.
    fn drain_media(&mut self, io: &mut impl Io, call: CallId, origin: Origin) {
        if let Some(key) = self.calls.key(call) {
            self.drain_media_at(io, key, origin);
        }
    }

    /// [`Self::drain_media`] for the call in `key`'s slot: what packets and timers call.
    fn drain_media_at(&mut self, io: &mut impl Io, key: CallKey, origin: Origin) {
        let Some((call, slot)) = self.calls.by_key_mut(key) else {
            return;
        };
        let Some(media) = slot.media.as_mut() else {
            return;
        };
        while let Some((to, len)) = media.poll_transmit(&mut self.rtp_buf[..]) {
            if let Some(packet) = self.rtp_buf.get(..len) {
                io.send(slot.rtp_socket, to, packet);
            }
        }
        while let Some((to, len)) = media.poll_rtcp_transmit(&mut self.rtp_buf[..]) {
            if let Some(packet) = self.rtp_buf.get(..len) {
                io.send(slot.rtcp_socket, to, packet);
            }
        }
        let mut events: smallvec::SmallVec<[MediaEvent; 4]> = smallvec::SmallVec::new();
        while let Some(event) = media.poll_event() {
            events.push(event);
        }
        // Only a received packet (a key) interrupts playback on its own: that is a barge-in.
        let barged_in = origin == Origin::Packet
            && events.iter().any(|e| {
                matches!(
                    e,
                    MediaEvent::PlaybackDone {
                        interrupted: true,
                        ..
                    }
                )
            });
        if barged_in {
            slot.epoch = slot.epoch.wrapping_add(1);
        }
        let epoch = slot.epoch;
        let deadline = media.poll_timeout();
        if deadline != slot.armed {
            slot.armed = deadline;
            if let Some(deadline) = deadline {
                self.media_timers.push(MediaTimer {
                    deadline,
                    key,
                    call,
                });
            }
        }
        if barged_in {
            self.emit(Event::BargeIn { call, epoch });
        }
        for event in events {
            match event {
                MediaEvent::Dtmf(digit) => self.emit(Event::Dtmf { call, digit }),
                MediaEvent::PlaybackDone {
                    id,
                    interrupted,
                    played,
                } => self.emit(Event::PlaybackDone {
                    call,
                    id,
                    interrupted,
                    played,
                }),
                MediaEvent::Recorded(recorded) => self.emit(recorded_event(call, recorded)),
                MediaEvent::SpeechStarted { id } => self.emit(Event::SpeechStarted { call, id }),
                MediaEvent::Utterance { id, utterance } => self.emit(Event::Utterance {
                    call,
                    id,
                    pcm: utterance.pcm,
                    max_speech: utterance.max_speech,
                }),
                MediaEvent::SourceRefused(from) => {
                    self.emit(Event::MediaSourceRefused { call, from });
                }
                MediaEvent::Machine(event) => self.emit(Event::MachineDetection { call, event }),
            }
        }
    }

    /// How soon a full event queue is tried again.
    const OVERFLOW_RETRY: Duration = Duration::from_millis(1);

    /// Carries out at most [`COMMANDS_PER_TURN`] of control's commands. More left in the
    /// queue make the next turn come at once, and that turn serves the media due first.
    fn handle_commands(&mut self, io: &mut impl Io, now: Instant) {
        self.commands_left = None;
        for _ in 0..COMMANDS_PER_TURN {
            let Some(command) = self.link.commands.pop() else {
                return;
            };
            self.handle_command(io, now, command);
            self.drain_sip(io, now);
        }
        if !self.link.commands.is_empty() {
            self.commands_left = Some(now);
        }
    }

    fn finish_turn(&mut self, now: Instant) {
        if let Some(tap) = self.hep.as_mut() {
            tap.publish(&self.link.hep);
        }
        self.streams.publish(&self.link.strangers);
        self.flush_overflow();
        self.overflow_retry = (!self.overflow.is_empty()).then(|| now + Self::OVERFLOW_RETRY);
        if self.woke_control {
            self.woke_control = false;
            self.link.event_wake.notify();
        }
    }
}

impl Driver for Agent {
    fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()> {
        self.media_timers.start(now);
        let bound = io
            .bind(self.config.sip_listen)
            .map_err(|e| {
                let message = format!(
                    "cannot bind SIP on {}: {e} (is another SIP server on that port? set [sip] listen)",
                    self.config.sip_listen
                );
                (e, message)
            })
            .and_then(|(socket, bound)| {
                self.sip_socket = Some(socket);
                if self.config.sip_tcp {
                    let (listener, _) = io.listen(bound).map_err(|e| {
                        let message = format!(
                            "cannot listen for SIP over TCP on {bound}: {e} (is another SIP \
                             server on that port? set [sip] tcp = false to go without TCP)"
                        );
                        (e, message)
                    })?;
                    self.sip_listener = Some(listener);
                }
                let Some(tap) = self.hep.as_mut() else {
                    return Ok(());
                };
                // Any local address and port of the capture server's family: the copies
                // take whatever route reaches it, whichever address SIP listens on.
                let capture = tap.exporter.capture();
                let any = match capture {
                    SocketAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
                    SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
                };
                let (socket, _) = io.bind(any).map_err(|e| {
                    let message = format!(
                        "cannot bind a socket to send HEP copies to {capture}: {e} \
                         (check [sip] hep_capture, or unset it)"
                    );
                    (e, message)
                })?;
                tap.socket = Some(socket);
                Ok(())
            });
        let ready = self.ready.take();
        match bound {
            Ok(()) => {
                if let Some(ready) = ready {
                    let _ = ready.send(Ok(()));
                }
                Ok(())
            }
            Err((e, message)) => {
                if let Some(ready) = ready {
                    let _ = ready.send(Err(message));
                }
                Err(e)
            }
        }
    }

    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    ) {
        if Some(socket) == self.sip_socket {
            trace_sip("in", from, data);
            if let Some(tap) = self.hep.as_mut()
                && data.len() <= self.config.border.max_message_bytes
            {
                let route = (from, tap.local);
                tap.copy(io, now, self.config.wall_clock, Transport::Udp, route, data);
            }
            self.sip.handle_datagram(now, from, data);
            self.drain_sip(io, now);
        } else if let Some((key, channel)) = self.calls.by_socket(socket)
            && let Some(media) = self
                .calls
                .by_key_mut(key)
                .and_then(|(_, slot)| slot.media.as_mut())
        {
            match channel {
                Channel::Rtp => media.handle_datagram(now, from, data),
                Channel::Rtcp => media.handle_rtcp_datagram(now, from, data),
            }
            self.drain_media_at(io, key, Origin::Packet);
        }
        self.finish_turn(now);
    }

    fn handle_icmp_error(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        socket: SocketId,
        error: IcmpError,
        quoted: &[u8],
    ) {
        // Only SIP acts on it (a dead callee host). An RTP peer that stopped listening is
        // the callee's business; its BYE or our timers end the call.
        if Some(socket) == self.sip_socket {
            self.sip.handle_icmp_error(&error, quoted);
            self.drain_sip(io, now);
        }
        self.finish_turn(now);
    }

    fn make_room_for_accept(&mut self, io: &mut impl Io, _now: Instant, peer: SocketAddr) -> bool {
        // A newcomer its own address's limit will refuse gets no one's place.
        if self.streams.address_is_full(peer.ip()) {
            return false;
        }
        // The quietest is asked about with one walk of the calls; should it be in use, the
        // others are looked up in what the calls use, gathered in one more walk.
        let sip = &self.sip;
        let (mut asked, mut in_use) = (false, None);
        self.streams.close_idlest_accepted(io, |transport, peer| {
            if !std::mem::replace(&mut asked, true) {
                return sip.uses_stream_peer(transport, peer);
            }
            in_use
                .get_or_insert_with(|| sip.stream_peers_in_use())
                .contains(&(transport, peer))
        })
    }

    fn handle_accept_refused(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        listener: ListenerId,
        peer: SocketAddr,
    ) {
        if Some(listener) == self.sip_listener {
            self.streams.refused(peer);
        }
    }

    fn handle_stream_accepted(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        listener: ListenerId,
        stream: StreamId,
        peer: SocketAddr,
    ) {
        if Some(listener) == self.sip_listener {
            self.streams.accepted(io, now, stream, peer);
        }
    }

    fn handle_stream_data(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        stream: StreamId,
        data: &[u8],
    ) {
        let (sip, hep, wall_clock) = (&mut self.sip, &mut self.hep, self.config.wall_clock);
        let unreached =
            self.streams
                .received(io, now, stream, data, |io, transport, peer, message| {
                    trace_sip("in", peer, message);
                    if let Some(tap) = hep.as_mut() {
                        let route = (peer, tap.local);
                        tap.copy(io, now, wall_clock, transport, route, message);
                    }
                    sip.handle_message(now, transport, peer, message);
                });
        if let Some(unreached) = unreached {
            for sent in &unreached.sent {
                self.sip.handle_transport_failure(now, sent, &unreached.why);
            }
        }
        self.drain_sip(io, now);
        self.finish_turn(now);
    }

    fn handle_stream_connected(&mut self, _io: &mut impl Io, _now: Instant, stream: StreamId) {
        self.streams.connected(stream);
    }

    fn handle_stream_closed(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        stream: StreamId,
        why: StreamClosed,
    ) {
        let sip = &mut self.sip;
        self.streams.closed(stream, why, |sent, why| {
            sip.handle_transport_failure(now, sent, why);
        });
        self.drain_sip(io, now);
        self.finish_turn(now);
    }

    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant) {
        // Commands a turn left over are carried out after the media below.
        let commands_left = self.commands_left.take().is_some();
        if self.port_retry.is_some_and(|at| at <= now) {
            self.retry_waiting_dials(io, now);
        }
        self.sip.handle_timeout(now);
        let sip = &mut self.sip;
        let mut late = Vec::new();
        self.streams.handle_timeout(
            io,
            now,
            |transport, peer| sip.uses_stream_peer(transport, peer),
            |sent, why| late.push((sent.to_vec(), why.to_owned())),
        );
        for (sent, why) in &late {
            self.sip.handle_transport_failure(now, sent, why);
        }
        self.drain_sip(io, now);
        let mut due = std::mem::take(&mut self.due_timers);
        self.media_timers.drain_due(now, &mut due);
        for MediaTimer {
            deadline,
            key,
            call,
        } in due.drain(..)
        {
            // The slot may hold a later call by now: its own deadlines are on the wheel.
            let Some(slot) = self
                .calls
                .by_key_mut(key)
                .and_then(|(now_there, slot)| (now_there == call).then_some(slot))
            else {
                continue;
            };
            // Entries whose deadline is no longer the armed one are stale: the live one is
            // also in the heap.
            if slot.armed != Some(deadline) {
                continue;
            }
            slot.armed = None;
            let Some(media) = slot.media.as_mut() else {
                continue;
            };
            media.handle_timeout(now);
            self.drain_media_at(io, key, Origin::Timer);
        }
        self.due_timers = due;
        if commands_left {
            self.handle_commands(io, now);
        }
        self.finish_turn(now);
    }

    fn handle_wake(&mut self, io: &mut impl Io, now: Instant) {
        self.handle_commands(io, now);
        self.finish_turn(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // Media wakes on the tick boundary at or after its earliest slot, and that turn sends
        // every packet due by then: one wake per tick for all calls, not one per call slot.
        [
            self.sip.poll_timeout(),
            self.media_timers.next_deadline(),
            self.port_retry,
            self.commands_left,
            self.overflow_retry,
            self.streams.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn turn_finished(&mut self, busy: Duration) {
        self.link.turns.record(busy);
    }

    fn should_stop(&self) -> bool {
        self.link.stop.load(Ordering::Acquire)
    }
}

/// Control's commands carried out in one turn at most (a dial binds two sockets and sends an
/// INVITE: tens of microseconds): a burst of new calls is spread over turns instead of
/// holding back the media of the calls already up.
const COMMANDS_PER_TURN: usize = 16;

/// How long a dial waits for a port pair when every pair of the core's range is in use
/// (calls ending free theirs; a server restarted after a crash finds the old process's
/// sockets held until the kernel has torn down its rings) before it fails.
pub const PORT_WAIT: Duration = Duration::from_secs(10);
/// How soon a waiting dial tries to bind again (then less often, see [`PORT_RETRY_MAX`]).
const PORT_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between two timed retries while no pair frees up: each tries every pair
/// of the range (a bind each), so a core whose range stays full spends at most one scan a
/// second on it.
const PORT_RETRY_MAX: Duration = Duration::from_secs(1);
/// Dials that may wait for ports at once; more fail at once.
const MAX_WAITING_FOR_PORTS: usize = 1024;

/// Media is woken at most once per tick: a packet leaves at most this late (by the core's
/// clock), within the dataplane's 2 ms pacing target, and a core carrying a thousand calls
/// wakes a thousand times a second for them instead of tens of thousands (measured with
/// `bench/media/run.sh`: docs/benchmarks.md).
pub const MEDIA_TICK: Duration = Duration::from_millis(1);

/// What made the agent look at a call's media session.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Origin {
    /// A command from control.
    Control,
    /// A datagram from the callee.
    Packet,
    /// The session's timer.
    Timer,
}

/// Marks `call` as ended for an unusable SDP answer (the reason its `Ended` carries).
fn slot_failure(calls: &mut CallTable<CallSlot>, call: CallId, error: &sdp::SdpError) {
    if let Some(slot) = calls.get_mut(call) {
        slot.failure = Some(format!("callee's SDP answer is unusable: {error}"));
    }
}

fn recorded_event(call: CallId, recorded: Recorded) -> Event {
    Event::Recorded {
        call,
        id: recorded.id,
        pcm: recorded.pcm,
        termchar: recorded.termchar,
        maxtime: recorded.maxtime,
        silent: recorded.silent,
    }
}

fn failed(call: CallId, reason: String) -> Event {
    Event::Ended {
        call,
        outcome: Outcome {
            disposition: Disposition::Failed,
            sip_status: None,
            reason,
        },
        sip_call_id: None,
        media: None,
        redirect: None,
    }
}

/// The per-call SIP trace: one debug line per SIP datagram a core sends or receives, under
/// the target `outdial_dataplane::sip_trace` (`RUST_LOG=outdial_dataplane::sip_trace=debug`):
/// direction, peer, method or status, Call-ID and CSeq, so a call's messages can be followed
/// by its Call-ID (which the call's own log lines carry). Never its URIs, numbers, bodies or
/// credentials (HEP capture is the place for whole messages). Costs one check when off.
fn trace_sip(direction: &'static str, peer: SocketAddr, data: &[u8]) {
    if !tracing::enabled!(target: "outdial_dataplane::sip_trace", tracing::Level::DEBUG) {
        return;
    }
    match crate::sip::parse_message(data) {
        Ok(message) => {
            let kind = message.method().map_or_else(
                || message.status().map_or_else(String::new, |s| s.to_string()),
                |method| method.to_string(),
            );
            tracing::debug!(
                target: "outdial_dataplane::sip_trace",
                direction,
                %peer,
                kind = %kind,
                sip_call_id = message.call_id().unwrap_or(""),
                cseq = message.header(crate::sip::message::HeaderName::CSeq).unwrap_or(""),
                bytes = data.len(),
                "SIP"
            );
        }
        Err(e) => tracing::debug!(
            target: "outdial_dataplane::sip_trace",
            direction,
            %peer,
            bytes = data.len(),
            error = %e,
            "SIP (unparseable)"
        ),
    }
}

/// A registration attempt's end, for control.
fn registration_event(id: u32, event: RegistrationEvent) -> Event {
    match event {
        RegistrationEvent::Registered { expires } => Event::Registration {
            id,
            expires: Some(expires),
            sip_status: Some(200),
            detail: format!("registered for {} s", expires.as_secs()),
        },
        RegistrationEvent::Failed {
            status,
            reason,
            retry_in,
        } => Event::Registration {
            id,
            expires: None,
            sip_status: status,
            detail: format!("{reason}; next attempt in {} s", retry_in.as_secs()),
        },
        RegistrationEvent::Unregistered { status, reason } => Event::Unregistered {
            id,
            sip_status: status,
            detail: reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::{Codec, TransferError, TransferOutcome};
    use crate::rtp::packet::Header;

    /// An `Io` that binds nothing real: it hands out ids and records every datagram.
    #[derive(Default)]
    struct FakeIo {
        next: u32,
        bound: Vec<(SocketId, SocketAddr)>,
        closed: Vec<SocketId>,
        sent: Vec<(SocketId, SocketAddr, Vec<u8>)>,
        /// Ports another process holds: binding them fails.
        taken: Vec<u16>,
        /// Streams the agent closed.
        closed_streams: Vec<StreamId>,
    }

    impl Io for FakeIo {
        fn bind(&mut self, addr: SocketAddr) -> std::io::Result<(SocketId, SocketAddr)> {
            if self.taken.contains(&addr.port()) {
                return Err(std::io::ErrorKind::AddrInUse.into());
            }
            let id = SocketId(self.next);
            self.next += 1;
            self.bound.push((id, addr));
            Ok((id, addr))
        }
        fn close(&mut self, socket: SocketId) {
            self.closed.push(socket);
        }
        fn send(&mut self, socket: SocketId, to: SocketAddr, data: &[u8]) {
            self.sent.push((socket, to, data.to_vec()));
        }
        fn listen(&mut self, _addr: SocketAddr) -> std::io::Result<(ListenerId, SocketAddr)> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn connect(&mut self, _to: SocketAddr) -> std::io::Result<StreamId> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn send_stream(&mut self, _stream: StreamId, _data: &[u8]) -> bool {
            false
        }
        fn close_stream(&mut self, stream: StreamId) {
            self.closed_streams.push(stream);
        }
    }

    const CALLEE: &str = "127.0.0.1:5070";
    const CALLEE_RTP: &str = "127.0.0.1:6000";

    fn agent() -> (Agent, CoreLink) {
        agent_with_event_queue(64)
    }

    /// An agent started on a [`FakeIo`] where another process holds the ports `taken`.
    fn started_with_ports_taken(
        taken: impl IntoIterator<Item = u16>,
    ) -> (Agent, CoreLink, FakeIo, Instant) {
        let (mut agent, link) = agent();
        let mut io = FakeIo {
            taken: taken.into_iter().collect(),
            ..FakeIo::default()
        };
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        (agent, link, io, now)
    }

    fn agent_with_event_queue(capacity: usize) -> (Agent, CoreLink) {
        agent_with(capacity, None)
    }

    fn agent_with(capacity: usize, hep: Option<HepConfig>) -> (Agent, CoreLink) {
        let link = CoreLink {
            commands: Arc::new(ArrayQueue::new(64)),
            events: Arc::new(ArrayQueue::new(capacity)),
            event_wake: Arc::new(WakeFd::new().expect("eventfd")),
            load: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            alive: Arc::new(AtomicBool::new(true)),
            hep: Arc::default(),
            turns: Arc::default(),
            strangers: Arc::default(),
        };
        let config = AgentConfig {
            sip_listen: "127.0.0.1:5060".parse().expect("addr"),
            public_ip: IpAddr::from([127, 0, 0, 1]),
            rtp_ports: 20000..=20009,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            user_agent: "test".into(),
            border: BorderConfig::default(),
            seed: 7,
            wall_clock: || SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            core: 0,
            inbound_sources: vec!["127.0.0.0/8".parse().expect("network")],
            max_calls: 4,
            session_expires: None,
            hep,
            sip_tcp: false,
            udp_mtu_switch: None,
            tcp_connect_timeout: Duration::from_secs(2),
            tcp_connections_per_source: 32,
            tcp_first_message_timeout: Duration::from_secs(10),
            tls_server: None,
        };
        (Agent::new(config, link.clone()), link)
    }

    /// The SIP datagrams sent so far, as text, in order.
    fn sip_sent(io: &FakeIo) -> Vec<String> {
        io.sent
            .iter()
            .filter(|(socket, _, _)| *socket == SocketId(0))
            .map(|(_, _, data)| String::from_utf8_lossy(data).into_owned())
            .collect()
    }

    /// A response to `request` from the callee, with its tag and optional SDP.
    fn respond(request: &str, status: &str, body: &str) -> Vec<u8> {
        let copy = |name: &str| {
            request
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {request}"))
                .to_owned()
        };
        let to = copy("To:");
        let to = if to.contains("tag=") {
            to
        } else {
            format!("{to};tag=callee1")
        };
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "SIP/2.0 {status}\r\n{}\r\n{}\r\n{to}\r\n{}\r\n{}\r\nContact: <sip:callee@{CALLEE}>\r\n\
             {content_type}Content-Length: {}\r\n\r\n{body}",
            copy("Via:"),
            copy("From:"),
            copy("Call-ID:"),
            copy("CSeq:"),
            body.len()
        )
        .into_bytes()
    }

    /// Queues a dial of `target` and lets the agent act on it.
    fn dial(
        agent: &mut Agent,
        link: &CoreLink,
        io: &mut FakeIo,
        now: Instant,
        call: CallId,
        target: &str,
    ) {
        let dial = Dial {
            call,
            target: target.to_owned(),
            destination: None,
            from: "sip:outdial@127.0.0.1".into(),
            ring_timeout: Duration::from_secs(30),
            max_duration: Duration::from_secs(3600),
            media_latching: false,
            credentials: None,
            asserted_identity: None,
            privacy: None,
            machine_detection: None,
            no_response_timeout: None,
            transport: Transport::Udp,
            tls: None,
        };
        link.commands
            .push(Command::Dial(Box::new(dial)))
            .expect("queue");
        agent.handle_wake(io, now);
    }

    fn events(link: &CoreLink) -> Vec<Event> {
        std::iter::from_fn(|| link.events.pop()).collect()
    }

    /// Reads a HEP v3 packet back: (type, value) of each generic chunk, strictly.
    fn hep_chunks(packet: &[u8]) -> Vec<(u16, Vec<u8>)> {
        assert_eq!(&packet[..4], b"HEP3");
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[4], packet[5]])),
            packet.len()
        );
        let mut chunks = Vec::new();
        let mut at = 6;
        while at < packet.len() {
            let field = |i: usize| u16::from_be_bytes([packet[at + i], packet[at + i + 1]]);
            let (vendor, kind, len) = (field(0), field(2), usize::from(field(4)));
            assert_eq!(vendor, 0);
            assert!(len >= 6 && at + len <= packet.len(), "chunk {kind}");
            chunks.push((kind, packet[at + 6..at + len].to_vec()));
            at += len;
        }
        chunks
    }

    fn hep_value(chunks: &[(u16, Vec<u8>)], kind: u16) -> &[u8] {
        chunks
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_else(|| panic!("no chunk {kind}"))
    }

    #[test]
    fn with_a_capture_address_sip_sent_and_received_is_copied_as_hep() {
        use crate::sip::hep::chunk;
        let capture: SocketAddr = "127.0.0.9:9060".parse().expect("addr");
        let (mut agent, link) = agent_with(
            64,
            Some(HepConfig {
                capture,
                agent_id: 2001,
                password: Some("pw".into()),
                max_per_second: 100,
            }),
        );
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        assert_eq!(
            io.bound[1],
            (SocketId(1), "0.0.0.0:0".parse().expect("any"))
        );

        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            CallId(1),
            &format!("sip:+15550001@{CALLEE}"),
        );
        let invite = sip_sent(&io).pop().expect("INVITE sent");
        let copies: Vec<&Vec<u8>> = io
            .sent
            .iter()
            .filter(|(socket, to, _)| *socket == SocketId(1) && *to == capture)
            .map(|(_, _, data)| data)
            .collect();
        assert_eq!(copies.len(), 1, "one copy: the INVITE");
        let chunks = hep_chunks(copies[0]);
        assert_eq!(hep_value(&chunks, chunk::PAYLOAD), invite.as_bytes());
        assert_eq!(hep_value(&chunks, chunk::IP_FAMILY), [2]);
        assert_eq!(hep_value(&chunks, chunk::IP_PROTOCOL), [17]);
        assert_eq!(hep_value(&chunks, chunk::IPV4_SOURCE), [127, 0, 0, 1]);
        assert_eq!(
            hep_value(&chunks, chunk::SOURCE_PORT),
            5060u16.to_be_bytes()
        );
        assert_eq!(hep_value(&chunks, chunk::IPV4_DESTINATION), [127, 0, 0, 1]);
        assert_eq!(
            hep_value(&chunks, chunk::DESTINATION_PORT),
            5070u16.to_be_bytes()
        );
        assert_eq!(
            hep_value(&chunks, chunk::TIMESTAMP_SECONDS),
            1_700_000_000u32.to_be_bytes()
        );
        assert_eq!(
            hep_value(&chunks, chunk::TIMESTAMP_MICROS),
            0u32.to_be_bytes()
        );
        assert_eq!(hep_value(&chunks, chunk::PROTOCOL_TYPE), [1]);
        assert_eq!(
            hep_value(&chunks, chunk::CAPTURE_AGENT_ID),
            2001u32.to_be_bytes()
        );
        assert_eq!(hep_value(&chunks, chunk::AUTH_KEY), b"pw");

        // A response from the callee is copied as received: from the callee, to us.
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        let ringing = respond(&invite, "180 Ringing", "");
        agent.handle_datagram(&mut io, now, SocketId(0), callee, &ringing);
        let (socket, to, copy) = io.sent.last().expect("a copy");
        assert_eq!((*socket, *to), (SocketId(1), capture));
        let chunks = hep_chunks(copy);
        assert_eq!(hep_value(&chunks, chunk::PAYLOAD), ringing.as_slice());
        assert_eq!(
            hep_value(&chunks, chunk::SOURCE_PORT),
            5070u16.to_be_bytes()
        );
        assert_eq!(
            hep_value(&chunks, chunk::DESTINATION_PORT),
            5060u16.to_be_bytes()
        );

        // Over max_message_bytes: dropped unread by SIP, and not copied either.
        let sent_before = io.sent.len();
        let flood = vec![b'x'; BorderConfig::default().max_message_bytes + 1];
        agent.handle_datagram(&mut io, now, SocketId(0), callee, &flood);
        assert_eq!(io.sent.len(), sent_before);
        assert_eq!(
            link.hep.get(),
            HepStats {
                sent: 2,
                dropped: 0
            }
        );
    }

    #[test]
    fn hep_copies_beyond_the_cap_are_dropped_and_counted_not_sip() {
        let capture: SocketAddr = "[::1]:9060".parse().expect("addr");
        let (mut agent, link) = agent_with(
            64,
            Some(HepConfig {
                capture,
                agent_id: 1,
                password: None,
                max_per_second: 2,
            }),
        );
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        assert_eq!(
            io.bound[1].1,
            "[::]:0".parse().expect("any"),
            "the capture's family"
        );
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        for n in 0..5 {
            let options = format!(
                "OPTIONS sip:outdial@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLEE};branch=z9hG4bK{n}\r\n\
                 From: <sip:a@{CALLEE}>;tag={n}\r\nTo: <sip:outdial@127.0.0.1>\r\nCall-ID: o{n}\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            agent.handle_datagram(&mut io, now, SocketId(0), callee, options.as_bytes());
        }
        let sip = io.sent.iter().filter(|(s, _, _)| *s == SocketId(0)).count();
        let hep = io.sent.iter().filter(|(s, _, _)| *s == SocketId(1)).count();
        assert_eq!(sip, 5, "every OPTIONS answered");
        assert_eq!(hep, 2, "copies stop at the cap");
        assert_eq!(
            link.hep.get(),
            HepStats {
                sent: 2,
                dropped: 8
            }
        );
    }

    #[test]
    fn a_call_runs_from_dial_through_media_and_dtmf_to_bye() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        assert_eq!(agent.sip_socket, Some(SocketId(0)));

        let call = CallId(42);
        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            call,
            &format!("sip:+15550001@{CALLEE}"),
        );
        assert_eq!(link.load.load(Ordering::Relaxed), 1);
        let (rtp_socket, rtp_addr) = io.bound[1];
        let (rtcp_socket, rtcp_addr) = io.bound[2];
        assert!(rtp_addr.port() % 2 == 0 && (20000..=20009).contains(&rtp_addr.port()));
        assert_eq!(
            rtcp_addr.port(),
            rtp_addr.port() + 1,
            "RTCP on the next port"
        );
        let invite = sip_sent(&io).pop().expect("INVITE sent");
        assert!(
            invite.starts_with(&format!("INVITE sip:+15550001@{CALLEE} SIP/2.0")),
            "{invite}"
        );
        assert!(
            invite.contains(&format!("m=audio {} RTP/AVP 0 8 101", rtp_addr.port())),
            "{invite}"
        );

        let answer = "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&invite, "180 Ringing", ""),
        );
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&invite, "200 OK", answer),
        );
        assert!(
            sip_sent(&io).last().is_some_and(|m| m.starts_with("ACK ")),
            "ACK after 200"
        );
        let got = events(&link);
        assert!(
            matches!(got[0], Event::Ringing { call: c } if c == call),
            "{got:?}"
        );
        let invite_call_id = invite
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .expect("Call-ID in the INVITE")
            .to_owned();
        assert!(
            matches!(
                &got[1],
                Event::Answered {
                    codec: Codec::Pcma,
                    sip_call_id: Some(id),
                    ..
                } if *id == invite_call_id
            ),
            "{got:?}"
        );

        // Media: one packet per 20 ms to the answer's address, from the call's RTP socket.
        let audio: crate::api::Pcm8k = vec![1000i16; 800].into();
        link.commands
            .push(Command::Play {
                call,
                id: 9,
                audio,
                bargein: true,
                epoch: 0,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let before = io.sent.len();
        for _ in 0..10 {
            now += Duration::from_millis(20);
            if agent.poll_timeout().is_some_and(|t| t <= now) {
                agent.handle_timeout(&mut io, now);
            }
        }
        let rtp: Vec<_> = io.sent[before..]
            .iter()
            .filter(|(s, _, _)| *s == rtp_socket)
            .collect();
        assert!(
            (9..=11).contains(&rtp.len()),
            "about one packet per 20 ms: {}",
            rtp.len()
        );
        assert!(
            rtp.iter()
                .all(|(_, to, _)| *to == CALLEE_RTP.parse::<SocketAddr>().expect("addr"))
        );
        let done: Vec<_> = events(&link);
        assert!(
            done.iter().any(|e| matches!(
                e,
                Event::PlaybackDone {
                    id: 9,
                    interrupted: false,
                    ..
                }
            )),
            "800 samples = 5 packets, done within 200 ms: {done:?}"
        );

        // An RFC 4733 event from the callee becomes one Dtmf event.
        let packet = key_packet(5, 160);
        let from: SocketAddr = CALLEE_RTP.parse().expect("addr");
        agent.handle_datagram(&mut io, now, rtp_socket, from, &packet);
        agent.handle_datagram(&mut io, now, rtp_socket, from, &packet);
        let dtmf: Vec<_> = events(&link)
            .into_iter()
            .filter_map(|e| match e {
                Event::Dtmf { digit, .. } => Some(digit),
                _ => None,
            })
            .collect();
        assert_eq!(dtmf, vec!['5'], "a repeated event packet is one key");

        // Hangup: BYE, then Ended with the RTP socket closed and the load released.
        link.commands.push(Command::Hangup { call }).expect("queue");
        agent.handle_wake(&mut io, now);
        let bye = sip_sent(&io).pop().expect("BYE");
        assert!(
            bye.starts_with("BYE sip:callee@127.0.0.1:5070"),
            "BYE to the Contact: {bye}"
        );
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&bye, "200 OK", ""),
        );
        let ended: Vec<_> = events(&link)
            .into_iter()
            .filter_map(|e| match e {
                Event::Ended {
                    call: c,
                    outcome,
                    sip_call_id,
                    media,
                    ..
                } if c == call => Some((outcome, sip_call_id, media)),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1, "exactly one Ended");
        let media = ended[0]
            .2
            .expect("an answered call reports its media counters");
        assert!(media.packets_sent > 0, "{media:?}");
        let (ended, ended_call_id) = (vec![ended[0].0.clone()], ended[0].1.clone());
        assert_eq!(
            ended_call_id,
            Some(invite_call_id),
            "Ended names the Call-ID"
        );
        assert_eq!(ended[0].disposition, Disposition::Completed);
        assert_eq!(ended[0].sip_status, Some(200));
        assert_eq!(io.closed, vec![rtp_socket, rtcp_socket]);
        assert_eq!(link.load.load(Ordering::Relaxed), 0);
        assert!(agent.calls.is_empty() && agent.calls.routed_sockets() == 0);
    }

    #[test]
    fn an_unusable_sdp_answer_hangs_up_and_fails_the_call_with_the_reason() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(1);
        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            call,
            &format!("sip:callee@{CALLEE}"),
        );
        let invite = sip_sent(&io).pop().expect("INVITE");
        let video_only = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n";
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&invite, "200 OK", video_only),
        );
        let bye = sip_sent(&io).pop().expect("BYE after the unusable answer");
        assert!(bye.starts_with("BYE "), "{bye}");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&bye, "200 OK", ""),
        );
        let outcome = events(&link)
            .into_iter()
            .find_map(|e| match e {
                Event::Ended { outcome, .. } => Some(outcome),
                _ => None,
            })
            .expect("Ended");
        assert_eq!(outcome.disposition, Disposition::Failed);
        assert!(outcome.reason.contains("SDP answer"), "{}", outcome.reason);
    }

    #[test]
    fn a_dial_to_a_hostname_fails_at_once_and_frees_its_port() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            CallId(3),
            "sip:someone@example.invalid",
        );
        let event = link.events.pop().expect("Ended");
        assert!(
            matches!(&event, Event::Ended { outcome, .. } if outcome.disposition == Disposition::Failed && outcome.reason.contains("example.invalid")),
            "{event:?}"
        );
        assert_eq!(
            io.closed,
            vec![io.bound[1].0, io.bound[2].0],
            "the RTP and RTCP sockets are closed again"
        );
        assert_eq!(link.load.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn events_that_do_not_fit_wait_and_are_delivered_in_order_never_dropped() {
        let (mut agent, link) = agent_with_event_queue(1);
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        for n in 0..3 {
            dial(
                &mut agent,
                &link,
                &mut io,
                now,
                CallId(n),
                "sip:x@unresolvable.invalid",
            );
        }
        let mut delivered = Vec::new();
        for _ in 0..10 {
            if let Some(Event::Ended { call, .. }) = link.events.pop() {
                delivered.push(call.0);
            }
            let Some(retry) = agent.poll_timeout() else {
                break;
            };
            now = now.max(retry);
            agent.handle_timeout(&mut io, now);
        }
        assert_eq!(delivered, vec![0, 1, 2]);
        assert_eq!(agent.poll_timeout(), None, "nothing left to retry");
    }

    /// Dials and answers a call (PCMA, telephone-event 101); returns its RTP socket.
    fn answered(
        agent: &mut Agent,
        link: &CoreLink,
        io: &mut FakeIo,
        now: Instant,
        call: CallId,
    ) -> SocketId {
        dial(
            agent,
            link,
            io,
            now,
            call,
            &format!("sip:+15550001@{CALLEE}"),
        );
        let (rtp_socket, _) = io.bound[io.bound.len() - 2];
        let invite = sip_sent(io).pop().expect("INVITE");
        let answer = "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            io,
            now,
            SocketId(0),
            callee,
            &respond(&invite, "200 OK", answer),
        );
        events(link);
        rtp_socket
    }

    const EARLY_ANSWER: &str = "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

    /// Dials, takes a 183 with `EARLY_ANSWER`, plays a prompt for 100 ms; returns the INVITE,
    /// the RTP socket, the time reached and the events so far.
    fn early_call(
        agent: &mut Agent,
        link: &CoreLink,
        io: &mut FakeIo,
        mut now: Instant,
        call: CallId,
    ) -> (String, SocketId, Instant, Vec<Event>) {
        agent.start(io, now).expect("start");
        dial(
            agent,
            link,
            io,
            now,
            call,
            &format!("sip:+15550001@{CALLEE}"),
        );
        let (rtp_socket, _) = io.bound[1];
        let invite = sip_sent(io).pop().expect("INVITE");
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        let progress = respond(&invite, "183 Session Progress", EARLY_ANSWER);
        agent.handle_datagram(io, now, SocketId(0), callee, &progress);
        let audio: crate::api::Pcm8k = vec![1000i16; 8000].into();
        link.commands
            .push(Command::Play {
                call,
                id: 1,
                audio,
                bargein: false,
                epoch: 0,
            })
            .expect("queue");
        agent.handle_wake(io, now);
        for _ in 0..5 {
            now += Duration::from_millis(20);
            if agent.poll_timeout().is_some_and(|t| t <= now) {
                agent.handle_timeout(io, now);
            }
        }
        (invite, rtp_socket, now, events(link))
    }

    /// (destination, SSRC) of each RTP packet sent from `socket` after the first `from`.
    fn rtp_sent(io: &FakeIo, socket: SocketId, from: usize) -> Vec<(SocketAddr, u32)> {
        io.sent[from..]
            .iter()
            .filter(|(s, _, _)| *s == socket)
            .map(|(_, to, data)| {
                (
                    *to,
                    u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
                )
            })
            .collect()
    }

    fn run_for(agent: &mut Agent, io: &mut FakeIo, now: &mut Instant, ms: u64) {
        for _ in 0..ms / 20 {
            *now += Duration::from_millis(20);
            if agent.poll_timeout().is_some_and(|t| t <= *now) {
                agent.handle_timeout(io, *now);
            }
        }
    }

    #[test]
    fn early_media_plays_and_hears_before_the_answer_and_the_same_sdp_keeps_it_going() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let call = CallId(3);
        let (invite, rtp_socket, mut now, got) =
            early_call(&mut agent, &link, &mut io, Instant::now(), call);
        assert!(
            matches!(
                got[..2],
                [
                    Event::Ringing { .. },
                    Event::EarlyMedia {
                        codec: Codec::Pcma,
                        sip_call_id: Some(_),
                        ..
                    }
                ]
            ),
            "{got:?}"
        );
        assert!(!got.iter().any(|e| matches!(e, Event::Answered { .. })));
        let early = rtp_sent(&io, rtp_socket, 0);
        assert!(
            early.len() >= 4,
            "the prompt plays before the answer: {early:?}"
        );
        let callee_rtp: SocketAddr = CALLEE_RTP.parse().expect("addr");
        assert!(early.iter().all(|(to, _)| *to == callee_rtp));
        let ssrc = early[0].1;
        // A key during early media is heard.
        agent.handle_datagram(&mut io, now, rtp_socket, callee_rtp, &key_packet(7, 160));
        assert!(
            events(&link)
                .iter()
                .any(|e| matches!(e, Event::Dtmf { digit: '7', .. }))
        );
        // The 200 repeats the 183's session: Answered, and the same stream goes on.
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        let ok = respond(&invite, "200 OK", EARLY_ANSWER);
        agent.handle_datagram(&mut io, now, SocketId(0), callee, &ok);
        assert!(
            matches!(
                events(&link)[..],
                [Event::Answered {
                    codec: Codec::Pcma,
                    ..
                }]
            ),
            "Answered still comes at the 200"
        );
        let before = io.sent.len();
        run_for(&mut agent, &mut io, &mut now, 100);
        let after = rtp_sent(&io, rtp_socket, before);
        assert!(!after.is_empty());
        assert!(
            after.iter().all(|&(to, s)| to == callee_rtp && s == ssrc),
            "{after:?}"
        );
        // The counters cover early media too.
        agent.handle_command(&mut io, now, Command::Hangup { call });
        agent.drain_sip(&mut io, now);
        let ended = events(&link)
            .into_iter()
            .find_map(|e| match e {
                Event::Ended { media, .. } => media,
                _ => None,
            })
            .expect("Ended with media counters");
        assert!(ended.packets_sent >= early.len() as u64 + after.len() as u64);
        assert!(ended.packets_received >= 1);
    }

    #[test]
    fn a_200_with_another_session_moves_early_media_and_one_without_sdp_keeps_it() {
        for (body, expected) in [
            (
                EARLY_ANSWER
                    .replace("o=callee 1 1", "o=callee 1 2")
                    .replace("6000", "6010"),
                "127.0.0.1:6010",
            ),
            (String::new(), CALLEE_RTP),
        ] {
            let (mut agent, link) = agent();
            let mut io = FakeIo::default();
            let call = CallId(4);
            let (invite, rtp_socket, mut now, _) =
                early_call(&mut agent, &link, &mut io, Instant::now(), call);
            let ssrc = rtp_sent(&io, rtp_socket, 0)[0].1;
            let callee: SocketAddr = CALLEE.parse().expect("addr");
            agent.handle_datagram(
                &mut io,
                now,
                SocketId(0),
                callee,
                &respond(&invite, "200 OK", &body),
            );
            assert!(
                matches!(events(&link)[..], [Event::Answered { .. }]),
                "answered with {body:?}"
            );
            let before = io.sent.len();
            run_for(&mut agent, &mut io, &mut now, 100);
            let after = rtp_sent(&io, rtp_socket, before);
            let expected: SocketAddr = expected.parse().expect("addr");
            assert!(!after.is_empty());
            assert!(
                after.iter().all(|&(to, s)| to == expected && s == ssrc),
                "one stream, to {expected}: {after:?}"
            );
        }
    }

    #[test]
    fn a_failure_after_early_media_ends_the_call_and_its_media() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let call = CallId(5);
        let (invite, rtp_socket, mut now, _) =
            early_call(&mut agent, &link, &mut io, Instant::now(), call);
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&invite, "486 Busy Here", ""),
        );
        let got = events(&link);
        let (outcome, media) = got
            .iter()
            .find_map(|e| match e {
                Event::Ended { outcome, media, .. } => Some((outcome.clone(), *media)),
                _ => None,
            })
            .expect("Ended");
        assert_eq!(outcome.disposition, Disposition::Busy);
        assert_eq!(outcome.sip_status, Some(486));
        assert!(media.is_some_and(|m| m.packets_sent >= 4), "{media:?}");
        assert!(io.closed.contains(&rtp_socket));
        let before = io.sent.len();
        run_for(&mut agent, &mut io, &mut now, 100);
        assert!(
            rtp_sent(&io, rtp_socket, before).is_empty(),
            "media stopped"
        );
    }

    /// A telephone-event packet for `event` with sequence number `seq`, SSRC 5.
    fn key_packet_seq(event: u8, seq: u16) -> Vec<u8> {
        let mut packet = key_packet(event, 777);
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet
    }

    /// A re-INVITE from the callee of the answered call whose INVITE was `invite`.
    fn reinvite(invite: &str, cseq: u32, body: &str) -> Vec<u8> {
        let line = |name: &str| {
            invite
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_owned())
                .unwrap_or_default()
        };
        format!(
            "INVITE sip:outdial@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLEE};branch=z9hG4bKre{cseq}\r\n\
             From: <sip:+15550001@{CALLEE}>;tag=callee1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:callee@{CALLEE}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            line("From:"),
            line("Call-ID:"),
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_hold_offer_stops_our_rtp_and_a_resume_sends_it_to_the_new_address() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let t0 = Instant::now();
        agent.start(&mut io, t0).expect("start");
        let call = CallId(31);
        let rtp_socket = answered(&mut agent, &link, &mut io, t0, call);
        let invite = sip_sent(&io)
            .into_iter()
            .find(|m| m.starts_with("INVITE "))
            .expect("INVITE");
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        let rtp_to = |io: &FakeIo| -> Vec<SocketAddr> {
            io.sent
                .iter()
                .filter(|(socket, _, _)| *socket == rtp_socket)
                .map(|(_, to, _)| *to)
                .collect()
        };
        let mut now = t0;
        let mut run_for = |agent: &mut Agent, io: &mut FakeIo, ms: u64| {
            let end = now + Duration::from_millis(ms);
            while now < end {
                now += Duration::from_millis(5);
                agent.handle_timeout(io, now);
            }
            now
        };
        run_for(&mut agent, &mut io, 200);
        assert!(rtp_to(&io).len() >= 8, "RTP flows before the hold");
        io.sent.clear();

        let hold = "v=0\r\no=callee 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
        let at = run_for(&mut agent, &mut io, 0);
        agent.handle_datagram(
            &mut io,
            at,
            SocketId(0),
            callee,
            &reinvite(&invite, 2, hold),
        );
        let answer = sip_sent(&io).pop().expect("200 to the re-INVITE");
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        assert!(
            answer.contains("a=recvonly"),
            "we answer sendonly with recvonly: {answer}"
        );
        assert!(
            answer.contains("RTP/AVP 8"),
            "the call's law is kept: {answer}"
        );
        io.sent.clear();
        run_for(&mut agent, &mut io, 300);
        assert!(
            rtp_to(&io).is_empty(),
            "no RTP while held: {:?}",
            rtp_to(&io)
        );

        let moved = "v=0\r\no=callee 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 6100 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let at = run_for(&mut agent, &mut io, 0);
        agent.handle_datagram(
            &mut io,
            at,
            SocketId(0),
            callee,
            &reinvite(&invite, 3, moved),
        );
        let answer = sip_sent(&io).pop().expect("200 to the resume");
        assert!(answer.contains("a=sendrecv"), "{answer}");
        assert!(answer.contains("RTP/AVP 8 101"), "still PCMA: {answer}");
        io.sent.clear();
        run_for(&mut agent, &mut io, 200);
        let sent = rtp_to(&io);
        assert!(sent.len() >= 8, "RTP flows again: {sent:?}");
        let moved_to: SocketAddr = "127.0.0.1:6100".parse().expect("addr");
        assert!(
            sent.iter().all(|to| *to == moved_to),
            "to the new port: {sent:?}"
        );

        // An offer without the call's law is refused and changes nothing.
        let pcmu_only = "v=0\r\no=callee 1 4 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                         m=audio 6200 RTP/AVP 0\r\n";
        let at = run_for(&mut agent, &mut io, 0);
        agent.handle_datagram(
            &mut io,
            at,
            SocketId(0),
            callee,
            &reinvite(&invite, 4, pcmu_only),
        );
        let answer = sip_sent(&io).pop().expect("488");
        assert!(answer.starts_with("SIP/2.0 488"), "{answer}");
        io.sent.clear();
        run_for(&mut agent, &mut io, 100);
        assert!(rtp_to(&io).iter().all(|to| *to == moved_to));
    }

    #[test]
    fn a_natted_callee_is_heard_and_answered_only_when_the_dial_asks_for_latching() {
        let nat: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        for latching in [false, true] {
            let (mut agent, link) = agent();
            let mut io = FakeIo::default();
            let now = Instant::now();
            agent.start(&mut io, now).expect("start");
            let call = CallId(21);
            let dial = Dial {
                call,
                target: format!("sip:+15550001@{CALLEE}"),
                destination: None,
                from: "sip:outdial@127.0.0.1".into(),
                ring_timeout: Duration::from_secs(30),
                max_duration: Duration::from_secs(3600),
                media_latching: latching,
                credentials: None,
                asserted_identity: None,
                privacy: None,
                machine_detection: None,
                no_response_timeout: None,
                transport: Transport::Udp,
                tls: None,
            };
            link.commands
                .push(Command::Dial(Box::new(dial)))
                .expect("queue");
            agent.handle_wake(&mut io, now);
            let (rtp_socket, _) = io.bound[io.bound.len() - 2];
            let invite = sip_sent(&io).pop().expect("INVITE");
            // The SDP names port 6000; the callee's packets come from port 7000 (NAT).
            let answer = "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                          m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
            let callee: SocketAddr = CALLEE.parse().expect("addr");
            agent.handle_datagram(
                &mut io,
                now,
                SocketId(0),
                callee,
                &respond(&invite, "200 OK", answer),
            );
            events(&link);
            for seq in 1..=3 {
                agent.handle_datagram(&mut io, now, rtp_socket, nat, &key_packet_seq(4, seq));
            }
            let got = events(&link);
            let later = now + Duration::from_millis(20);
            agent.handle_timeout(&mut io, later);
            let rtp_to = io
                .sent
                .iter()
                .rev()
                .find(|(s, _, _)| *s == rtp_socket)
                .map(|(_, to, _)| *to);
            link.commands.push(Command::Hangup { call }).expect("queue");
            agent.handle_wake(&mut io, later);
            let media = events(&link).into_iter().find_map(|e| match e {
                Event::Ended { media, .. } => media,
                _ => None,
            });
            let media = media.expect("the answered call's counters");
            if latching {
                assert!(
                    matches!(got.as_slice(), [Event::Dtmf { digit: '4', .. }]),
                    "{got:?}"
                );
                assert_eq!(rtp_to, Some(nat), "our RTP follows the latched source");
                assert_eq!(media.dropped_foreign, 0, "{media:?}");
            } else {
                assert!(
                    matches!(got.as_slice(), [Event::MediaSourceRefused { from, .. }] if *from == nat),
                    "reported once, never heard: {got:?}"
                );
                assert_eq!(rtp_to, Some("127.0.0.1:6000".parse().expect("addr")));
                assert_eq!(media.dropped_foreign, 3, "{media:?}");
            }
        }
    }

    fn key_packet(event: u8, timestamp: u32) -> Vec<u8> {
        let mut packet = [0u8; 16];
        let header = Header {
            marker: true,
            payload_type: 101,
            sequence_number: 1,
            timestamp,
            ssrc: 5,
        };
        let len = header.write(&mut packet).expect("header");
        packet[len..len + 4].copy_from_slice(&[event, 0x0a, 0x00, 0xa0]);
        packet[..len + 4].to_vec()
    }

    /// One 20 ms PCMA packet: a 500 Hz square wave at `level`, or silence at 0.
    fn audio_packet(seq: u16, level: i16) -> Vec<u8> {
        let mut packet = vec![0u8; 12 + 160];
        let header = Header {
            marker: false,
            payload_type: 8,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 5,
        };
        let len = header.write(&mut packet).expect("header");
        let pcm: Vec<i16> = (0..160)
            .map(|n| if (n / 8) % 2 == 0 { level } else { -level })
            .collect();
        crate::rtp::g711::encode(Codec::Pcma, &pcm, &mut packet[len..]);
        packet
    }

    fn record(call: CallId, id: u32, dtmfterm: bool, beep: bool) -> Command {
        Command::Record {
            call,
            id,
            max_time: Duration::from_secs(3),
            final_silence: Duration::from_millis(400),
            no_input: Duration::from_secs(2),
            dtmfterm,
            beep,
        }
    }

    /// Runs the agent in 20 ms steps from `*now` for `steps` steps, feeding one packet of
    /// `level` per step; returns the events.
    #[allow(clippy::too_many_arguments)]
    fn talk(
        agent: &mut Agent,
        link: &CoreLink,
        io: &mut FakeIo,
        rtp_socket: SocketId,
        now: &mut Instant,
        seq: &mut u16,
        steps: usize,
        level: i16,
    ) -> Vec<Event> {
        let from: SocketAddr = CALLEE_RTP.parse().expect("addr");
        let mut got = Vec::new();
        for _ in 0..steps {
            *now += Duration::from_millis(20);
            if agent.poll_timeout().is_some_and(|t| t <= *now) {
                agent.handle_timeout(io, *now);
            }
            *seq += 1;
            agent.handle_datagram(io, *now, rtp_socket, from, &audio_packet(*seq, level));
            got.extend(events(link));
        }
        got
    }

    fn recorded(events: &[Event]) -> Vec<(u32, usize, Option<char>, bool, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Recorded {
                    id,
                    pcm,
                    termchar,
                    maxtime,
                    silent,
                    ..
                } => Some((*id, pcm.len(), *termchar, *maxtime, *silent)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_recording_after_the_beep_ends_on_final_silence_after_speech() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(11);
        let rtp_socket = answered(&mut agent, &link, &mut io, now, call);
        link.commands
            .push(record(call, 4, true, true))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let sent_before = io.sent.len();
        let mut seq = 0;
        // 200 ms of beep: what arrives meanwhile is not recorded.
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 10, 6000,
        );
        assert!(recorded(&got).is_empty(), "{got:?}");
        let beep_frames = io.sent[sent_before..]
            .iter()
            .filter(|(s, _, p)| *s == rtp_socket && p[12..].iter().any(|&b| b != 0xd5))
            .count();
        assert!(
            (9..=11).contains(&beep_frames),
            "the beep is sent: {beep_frames}"
        );
        // One second of speech, then silence: the recording ends 400 ms after the speech.
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 50, 6000,
        );
        assert!(recorded(&got).is_empty(), "{got:?}");
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 19, 0,
        );
        assert!(
            recorded(&got).is_empty(),
            "not before 400 ms of silence: {got:?}"
        );
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 2, 0,
        );
        let done = recorded(&got);
        assert_eq!(done.len(), 1, "{got:?}");
        let (id, samples, termchar, maxtime, silent) = done[0];
        assert_eq!((id, termchar, maxtime, silent), (4, None, false, false));
        assert!(
            (69 * 160..=71 * 160).contains(&samples),
            "speech and the silence after it: {samples}"
        );
        assert!(
            !got.iter().any(|e| matches!(e, Event::PlaybackDone { .. })),
            "the beep is not a prompt: {got:?}"
        );
        // Once over, packets are not recorded any more.
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 150, 6000,
        );
        assert!(recorded(&got).is_empty(), "{got:?}");
    }

    #[test]
    fn a_recording_ends_at_max_time_and_a_silent_one_at_the_noinput_timeout() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(12);
        let rtp_socket = answered(&mut agent, &link, &mut io, now, call);
        let mut seq = 0;
        link.commands
            .push(record(call, 1, false, false))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 160, 6000,
        );
        let done = recorded(&got);
        assert_eq!(done.len(), 1, "{got:?}");
        let (id, samples, _, maxtime, silent) = done[0];
        assert_eq!((id, maxtime, silent), (1, true, false));
        assert!((149 * 160..=150 * 160).contains(&samples), "3 s: {samples}");

        link.commands
            .push(record(call, 2, false, false))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let got = talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 105, 30,
        );
        let done = recorded(&got);
        assert_eq!(done.len(), 1, "{got:?}");
        let (id, _, _, maxtime, silent) = done[0];
        assert_eq!(
            (id, maxtime, silent),
            (2, false, true),
            "2 s of hiss is no input"
        );
    }

    #[test]
    fn a_key_ends_a_dtmfterm_recording_as_its_termchar_and_is_no_input() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(13);
        let rtp_socket = answered(&mut agent, &link, &mut io, now, call);
        let mut seq = 0;
        link.commands
            .push(record(call, 7, true, false))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 25, 6000,
        );
        let from: SocketAddr = CALLEE_RTP.parse().expect("addr");
        agent.handle_datagram(&mut io, now, rtp_socket, from, &key_packet(11, 9000));
        let got = events(&link);
        assert_eq!(recorded(&got), vec![(7, 25 * 160, Some('#'), false, false)]);
        assert!(
            !got.iter().any(|e| matches!(e, Event::Dtmf { .. })),
            "{got:?}"
        );

        // Without dtmfterm a key is a key and the recording goes on.
        link.commands
            .push(record(call, 8, false, false))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        agent.handle_datagram(&mut io, now, rtp_socket, from, &key_packet(1, 20000));
        let got = events(&link);
        assert!(recorded(&got).is_empty(), "{got:?}");
        assert!(
            got.iter()
                .any(|e| matches!(e, Event::Dtmf { digit: '1', .. })),
            "{got:?}"
        );
        // StopRecording ends it with what it has; a stale id does nothing.
        link.commands
            .push(Command::StopRecording { call, id: 7 })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        assert!(recorded(&events(&link)).is_empty());
        link.commands
            .push(Command::StopRecording { call, id: 8 })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        assert_eq!(recorded(&events(&link)), vec![(8, 0, None, false, true)]);
    }

    #[test]
    fn a_hangup_ends_the_recording_before_the_call_and_an_unanswered_call_records_nothing() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(14);
        let rtp_socket = answered(&mut agent, &link, &mut io, now, call);
        let mut seq = 0;
        link.commands
            .push(record(call, 3, true, false))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        talk(
            &mut agent, &link, &mut io, rtp_socket, &mut now, &mut seq, 10, 6000,
        );
        link.commands.push(Command::Hangup { call }).expect("queue");
        agent.handle_wake(&mut io, now);
        let bye = sip_sent(&io).pop().expect("BYE");
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&bye, "200 OK", ""),
        );
        let got = events(&link);
        assert_eq!(recorded(&got), vec![(3, 1600, None, false, false)]);
        assert!(
            matches!(got.last(), Some(Event::Ended { .. })),
            "Recorded comes before Ended: {got:?}"
        );

        link.commands
            .push(record(CallId(99), 5, true, true))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        assert_eq!(recorded(&events(&link)), vec![(5, 0, None, false, true)]);
    }

    #[test]
    fn a_barge_in_starts_a_new_epoch_and_prompts_from_the_old_one_are_refused() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(7);
        let rtp_socket = answered(&mut agent, &link, &mut io, now, call);
        let play = |id: u32, epoch: u32| Command::Play {
            call,
            id,
            audio: vec![0i16; 8000].into(),
            bargein: true,
            epoch,
        };
        link.commands.push(play(1, 0)).expect("queue");
        link.commands.push(play(2, 0)).expect("queue");
        agent.handle_wake(&mut io, now);

        let from: SocketAddr = CALLEE_RTP.parse().expect("addr");
        agent.handle_datagram(&mut io, now, rtp_socket, from, &key_packet(3, 800));
        let got = events(&link);
        assert!(
            matches!(got.first(), Some(Event::BargeIn { epoch: 1, .. })),
            "BargeIn comes first: {got:?}"
        );
        let interrupted: Vec<u32> = got
            .iter()
            .filter_map(|e| match e {
                Event::PlaybackDone {
                    id,
                    interrupted: true,
                    ..
                } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(interrupted, vec![1, 2], "{got:?}");
        assert!(
            matches!(got.last(), Some(Event::Dtmf { digit: '3', .. })),
            "{got:?}"
        );

        // Issued before the barge-in, arriving after it: refused, reported interrupted.
        link.commands.push(play(3, 0)).expect("queue");
        // Issued in answer to the key: played.
        link.commands.push(play(4, 1)).expect("queue");
        agent.handle_wake(&mut io, now);
        let got = events(&link);
        assert_eq!(
            got.len(),
            1,
            "only the stale prompt is answered at once: {got:?}"
        );
        assert!(
            matches!(
                got[0],
                Event::PlaybackDone {
                    id: 3,
                    interrupted: true,
                    ..
                }
            ),
            "{got:?}"
        );

        // A key during a prompt that is already over is not a barge-in.
        let mut later = now;
        for _ in 0..60 {
            later += Duration::from_millis(20);
            agent.handle_timeout(&mut io, later);
        }
        let got = events(&link);
        assert!(
            got.iter().any(|e| matches!(
                e,
                Event::PlaybackDone {
                    id: 4,
                    interrupted: false,
                    ..
                }
            )),
            "{got:?}"
        );
        agent.handle_datagram(&mut io, later, rtp_socket, from, &key_packet(5, 4000));
        let got = events(&link);
        assert!(
            !got.iter().any(|e| matches!(e, Event::BargeIn { .. })),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|e| matches!(e, Event::Dtmf { digit: '5', .. })),
            "{got:?}"
        );
    }

    /// A NOTIFY from the callee in the dialog the REFER was sent in.
    fn notify(refer: &str, cseq: u32, sipfrag: &str) -> Vec<u8> {
        let line = |name: &str| {
            refer
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {refer}"))
                .to_owned()
        };
        let to = line("From:").replacen("From:", "To:", 1);
        let from = line("To:").replacen("To:", "From:", 1);
        format!(
            "NOTIFY sip:outdial@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLEE};branch=z9hG4bKn{cseq}\r\n\
             {from}\r\n{to}\r\n{}\r\nCSeq: {cseq} NOTIFY\r\nEvent: refer\r\n\
             Subscription-State: active\r\nContent-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{sipfrag}",
            line("Call-ID:"),
            sipfrag.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_blind_transfer_refers_the_callee_then_hangs_up_when_the_target_answers() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let call = CallId(5);
        let rtp_socket = answered(&mut agent, &link, &mut io, now, call);
        let transfer = |id: u32, target: &str| Command::Transfer {
            call,
            id,
            target: target.to_owned(),
            kind: TransferKind::Blind,
            connect_timeout: Duration::from_secs(30),
        };
        link.commands.push(transfer(3, "not a uri")).expect("queue");
        agent.handle_wake(&mut io, now);
        assert!(
            matches!(
                events(&link).as_slice(),
                [Event::TransferDone { id: 3, result: Err(TransferError::BadDestination), detail, .. }]
                    if detail.contains("not a uri")
            ),
            "a bad target is refused at once"
        );

        link.commands
            .push(transfer(4, "sip:agent@127.0.0.1:5090"))
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let refer = sip_sent(&io).pop().expect("REFER sent");
        assert!(refer.starts_with("REFER sip:callee@"), "{refer}");
        assert!(
            refer.contains("Refer-To: <sip:agent@127.0.0.1:5090>\r\n"),
            "{refer}"
        );
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&refer, "202 Accepted", ""),
        );
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &notify(&refer, 1, "SIP/2.0 180 Ringing\r\n"),
        );
        assert!(events(&link).is_empty(), "progress is not an outcome");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &notify(&refer, 2, "SIP/2.0 200 OK\r\n"),
        );
        let got = events(&link);
        assert!(
            matches!(
                got.as_slice(),
                [
                    Event::TransferDone { id: 4, result: Ok(TransferOutcome::Transferred), .. },
                    Event::Ended { outcome, .. },
                ] if outcome.disposition == Disposition::Completed
                    && outcome.reason.contains("transferred to sip:agent@127.0.0.1:5090")
            ),
            "{got:?}"
        );
        let sent = sip_sent(&io);
        let tail: Vec<&str> = sent
            .iter()
            .rev()
            .take(2)
            .rev()
            .map(|m| m.lines().next().unwrap_or(""))
            .collect();
        assert_eq!(tail[0], "SIP/2.0 200 OK", "{tail:?}");
        assert!(tail[1].starts_with("BYE "), "{tail:?}");
        assert!(io.closed.contains(&rtp_socket), "media is released");
        assert_eq!(link.load.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_answered_call_reports_rtcp_from_its_pair_and_says_bye_at_hangup() {
        use crate::rtp::rtcp::{Compound, Packet as RtcpPacket};
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let t0 = Instant::now();
        agent.start(&mut io, t0).expect("start");
        let call = CallId(31);
        let rtp_socket = answered(&mut agent, &link, &mut io, t0, call);
        let (rtcp_socket, rtcp_local) = *io.bound.last().expect("RTCP socket");
        let rtp_local = io.bound[io.bound.len() - 2].1;
        assert_eq!(rtcp_local.port(), rtp_local.port() + 1);
        assert_eq!(rtp_local.port() % 2, 0);
        let callee_rtcp: SocketAddr = "127.0.0.1:6001".parse().expect("addr");
        // Virtual time, woken only when the agent asks: the first report within 3.75 s.
        let mut now = t0;
        let first = loop {
            now = agent
                .poll_timeout()
                .expect("media keeps a deadline")
                .max(now);
            assert!(
                now - t0 <= Duration::from_millis(3_750),
                "no SR by {:?}",
                now - t0
            );
            agent.handle_timeout(&mut io, now);
            if let Some((_, to, data)) = io.sent.iter().find(|(s, _, _)| *s == rtcp_socket) {
                break (*to, data.clone());
            }
        };
        assert_eq!(first.0, callee_rtcp, "to the answer's RTP port + 1");
        let packets: Vec<RtcpPacket<'_>> = Compound::parse(&first.1)
            .expect("a valid compound")
            .packets()
            .collect();
        assert!(
            matches!(
                packets.as_slice(),
                [
                    RtcpPacket::SenderReport { .. },
                    RtcpPacket::SourceDescription { cname: Some(_), .. }
                ]
            ),
            "{packets:?}"
        );
        assert!(
            !io.sent
                .iter()
                .any(|(s, _, d)| *s == rtp_socket && Compound::parse(d).is_ok()),
            "RTCP never leaves from the RTP socket"
        );
        // The callee's RR on the RTCP socket is heard; a stranger's is dropped.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 5];
        agent.handle_datagram(&mut io, now, rtcp_socket, callee_rtcp, &rr);
        let stranger: SocketAddr = "127.0.0.1:6003".parse().expect("addr");
        agent.handle_datagram(&mut io, now, rtcp_socket, stranger, &rr);
        events(&link);

        link.commands.push(Command::Hangup { call }).expect("queue");
        agent.handle_wake(&mut io, now);
        let bye = sip_sent(&io).pop().expect("BYE");
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            now,
            SocketId(0),
            callee,
            &respond(&bye, "200 OK", ""),
        );
        let (_, to, last) = io
            .sent
            .iter()
            .rev()
            .find(|(s, _, _)| *s == rtcp_socket)
            .expect("a last compound");
        assert_eq!(*to, callee_rtcp);
        let packets: Vec<RtcpPacket<'_>> =
            Compound::parse(last).expect("valid").packets().collect();
        assert!(
            matches!(packets.last(), Some(RtcpPacket::Goodbye { count: 1, .. })),
            "{packets:?}"
        );
        assert_eq!(io.closed, vec![rtp_socket, rtcp_socket]);
        let media = events(&link)
            .into_iter()
            .find_map(|e| match e {
                Event::Ended { media, .. } => media,
                _ => None,
            })
            .expect("counters");
        assert_eq!((media.rtcp_sent, media.rtcp_received), (2, 1), "{media:?}");
        assert_eq!(media.dropped_foreign, 1, "{media:?}");
        assert_eq!(agent.calls.routed_sockets(), 0);
    }

    #[test]
    fn a_pair_needs_both_ports_free_and_in_the_range() {
        // Every RTCP port but the last pair's is taken.
        let (mut agent, link, mut io, now) = started_with_ports_taken([20001, 20003, 20005, 20007]);
        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            CallId(1),
            &format!("sip:a@{CALLEE}"),
        );
        let ports: Vec<u16> = io.bound[1..].iter().map(|(_, a)| a.port()).collect();
        let (last_rtp, last_rtcp) = (ports[ports.len() - 2], ports[ports.len() - 1]);
        assert_eq!((last_rtp, last_rtcp), (20008, 20009), "{ports:?}");
        // Each RTP port whose RTCP port was taken was closed again.
        assert_eq!(
            io.closed.len(),
            ports.len() - 2,
            "{ports:?} {:?}",
            io.closed
        );
        assert!(events(&link).is_empty(), "dialling");

        // The only free pair is in use now: the next dial waits for one, then says so.
        let mut io2 = FakeIo {
            taken: vec![20001, 20003, 20005, 20007, 20008],
            ..FakeIo::default()
        };
        let (mut agent, link) = agent_with_event_queue(4);
        agent.start(&mut io2, now).expect("start");
        dial(
            &mut agent,
            &link,
            &mut io2,
            now,
            CallId(2),
            &format!("sip:a@{CALLEE}"),
        );
        assert!(events(&link).is_empty(), "waiting for a pair");
        let mut at = now;
        while at < now + PORT_WAIT {
            at = agent.poll_timeout().expect("a retry is armed");
            agent.handle_timeout(&mut io2, at);
        }
        let got = events(&link);
        assert!(
            matches!(got.as_slice(), [Event::Ended { outcome, .. }] if outcome.reason.contains("RTP/RTCP port pair")),
            "{got:?}"
        );
        assert_eq!(agent.link.load.load(Ordering::Relaxed), 0);
        let open: Vec<SocketId> = io2.bound[1..]
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !io2.closed.contains(id))
            .collect();
        assert!(open.is_empty(), "every half pair closed: {open:?}");
        assert!(
            agent
                .poll_timeout()
                .is_none_or(|next| next > at + PORT_WAIT)
        );
    }

    #[test]
    fn a_burst_of_commands_is_spread_over_turns() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        for call in 0..40 {
            link.commands
                .push(Command::Hangup { call: CallId(call) })
                .expect("queue");
        }
        agent.handle_wake(&mut io, now);
        assert_eq!(link.commands.len(), 40 - COMMANDS_PER_TURN);
        // The next turn comes at once; it serves the media due, then more commands.
        assert!(agent.poll_timeout().is_some_and(|next| next <= now));
        agent.handle_timeout(&mut io, now);
        assert_eq!(link.commands.len(), 40 - 2 * COMMANDS_PER_TURN);
        agent.handle_timeout(&mut io, now);
        assert!(link.commands.is_empty());
        assert!(agent.poll_timeout().is_none_or(|next| next > now));
    }

    #[test]
    fn a_dial_waits_for_a_port_pair_to_free_up_and_may_be_hung_up_meanwhile() {
        // Every pair of the range (20000-20009) is held, as by a crashed server's sockets.
        let (mut agent, link, mut io, now) = started_with_ports_taken(20000..=20009);
        for call in [1, 2] {
            dial(
                &mut agent,
                &link,
                &mut io,
                now,
                CallId(call),
                &format!("sip:a@{CALLEE}"),
            );
        }
        assert!(events(&link).is_empty() && sip_sent(&io).is_empty());
        // The second is hung up while it waits: it ends canceled, having sent nothing.
        link.commands
            .push(Command::Hangup { call: CallId(2) })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let got = events(&link);
        assert!(
            matches!(got.as_slice(), [Event::Ended { call: CallId(2), outcome, .. }]
                if outcome.disposition == Disposition::Canceled),
            "{got:?}"
        );
        // Two seconds later the ports are free: the next retry dials the first.
        let retry = agent.poll_timeout().expect("retry armed");
        assert!(retry <= now + Duration::from_millis(100));
        agent.handle_timeout(&mut io, retry);
        assert!(sip_sent(&io).is_empty(), "still held");
        io.taken.clear();
        let later = now + Duration::from_secs(2);
        agent.handle_timeout(&mut io, later);
        let invites = sip_sent(&io);
        assert_eq!(invites.len(), 1, "{invites:?}");
        assert!(invites[0].starts_with("INVITE sip:a@"), "{}", invites[0]);
        assert!(events(&link).is_empty(), "no failure: {:?}", events(&link));
        assert_eq!(agent.link.load.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn waiting_dials_back_off_while_no_pair_frees_and_go_at_once_when_a_call_ends() {
        // One pair of the range is free; call 1 takes it, and another process the rest.
        let (mut agent, link, mut io, now) =
            started_with_ports_taken((20000..=20009).filter(|p| !matches!(p, 20004 | 20005)));
        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            CallId(1),
            &format!("sip:a@{CALLEE}"),
        );
        let invite = sip_sent(&io).pop().expect("call 1's INVITE");
        io.taken.extend([20004, 20005]);
        dial(
            &mut agent,
            &link,
            &mut io,
            now,
            CallId(2),
            &format!("sip:b@{CALLEE}"),
        );
        assert_eq!(sip_sent(&io).len(), 1, "call 2 waits");
        // While nothing frees up, each retry (a bind per pair of the range) waits twice as
        // long as the last, up to a second.
        let mut gaps = Vec::new();
        let mut at = now;
        for _ in 0..7 {
            let next = agent.port_retry.expect("a retry is armed");
            gaps.push(next - at);
            at = next;
            agent.handle_timeout(&mut io, at);
        }
        let ms = Duration::from_millis;
        assert_eq!(gaps, [50, 100, 200, 400, 800, 1000, 1000].map(ms));
        // Call 1 ends and frees its pair: call 2 is dialled at the next turn, not a second
        // later.
        io.taken.retain(|p| !matches!(p, 20004 | 20005));
        let ended = at + ms(10);
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            ended,
            SocketId(0),
            callee,
            &respond(&invite, "486 Busy Here", ""),
        );
        assert!(events(&link).iter().any(|e| matches!(
            e,
            Event::Ended {
                call: CallId(1),
                ..
            }
        )));
        assert_eq!(agent.port_retry, Some(ended));
        agent.handle_timeout(&mut io, ended);
        let sent = sip_sent(&io);
        assert!(
            sent.iter().any(|m| m.starts_with("INVITE sip:b@")),
            "{sent:?}"
        );
        assert!(agent.waiting_for_ports.is_empty() && agent.port_retry.is_none());
    }

    #[test]
    fn the_answers_rtcp_attribute_moves_our_reports() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let t0 = Instant::now();
        agent.start(&mut io, t0).expect("start");
        let call = CallId(32);
        dial(
            &mut agent,
            &link,
            &mut io,
            t0,
            call,
            &format!("sip:+15550001@{CALLEE}"),
        );
        let (rtcp_socket, _) = *io.bound.last().expect("RTCP socket");
        let invite = sip_sent(&io).pop().expect("INVITE");
        let answer = "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 6000 RTP/AVP 8\r\na=rtcp:6100\r\n";
        let callee: SocketAddr = CALLEE.parse().expect("addr");
        agent.handle_datagram(
            &mut io,
            t0,
            SocketId(0),
            callee,
            &respond(&invite, "200 OK", answer),
        );
        let mut now = t0;
        while now - t0 < Duration::from_secs(4) {
            now = agent.poll_timeout().expect("deadline").max(now);
            agent.handle_timeout(&mut io, now);
            if io.sent.iter().any(|(s, _, _)| *s == rtcp_socket) {
                break;
            }
        }
        let to: Vec<SocketAddr> = io
            .sent
            .iter()
            .filter(|(s, _, _)| *s == rtcp_socket)
            .map(|(_, to, _)| *to)
            .collect();
        assert_eq!(to, ["127.0.0.1:6100".parse::<SocketAddr>().expect("addr")]);
    }

    /// An INVITE from a caller at [`CALLEE`] (inside the agent's `inbound_sources`) with
    /// `offer` as its body.
    fn caller_invite(call_id: &str, offer: &str) -> Vec<u8> {
        format!(
            "INVITE sip:+15550100@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bKin1;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+15550199@127.0.0.1>;tag=caller1\r\nTo: <sip:+15550100@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{CALLEE}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        )
        .into_bytes()
    }

    #[test]
    fn an_offerless_incoming_call_is_offered_our_codecs_and_takes_the_acks_answer() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let caller: SocketAddr = CALLEE.parse().expect("addr");
        let invite = caller_invite("late1@127.0.0.1", "");
        agent.handle_datagram(&mut io, now, SocketId(0), caller, &invite);
        let call = CallId::inbound(0, 0);
        assert!(matches!(&events(&link)[..], [Event::Incoming(i)] if i.call == call));
        let (_, rtp_addr) = io.bound[1];
        link.commands
            .push(Command::Answer {
                call,
                max_duration: Duration::from_secs(3600),
                media_latching: false,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let ok = sip_sent(&io).pop().expect("200 sent");
        assert!(
            ok.contains(&format!("m=audio {} RTP/AVP 0 8 101", rtp_addr.port())),
            "our full offer in the 200: {ok}"
        );
        let to = ok.lines().find(|l| l.starts_with("To: ")).expect("To");
        let answer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let ack = format!(
            "ACK sip:outdial@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bKack1;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+15550199@127.0.0.1>;tag=caller1\r\n{to}\r\nCall-ID: late1@127.0.0.1\r\n\
             CSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        agent.handle_datagram(&mut io, now, SocketId(0), caller, ack.as_bytes());
        let got = events(&link);
        assert!(
            matches!(
                &got[..],
                [Event::Answered {
                    codec: Codec::Pcma,
                    ..
                }]
            ),
            "the caller chose PCMA in its ACK: {got:?}"
        );
    }

    #[test]
    fn an_incoming_caller_behind_nat_is_heard_only_when_the_answer_asks_for_latching() {
        let nat: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        for latching in [false, true] {
            let (mut agent, link) = agent();
            let mut io = FakeIo::default();
            let now = Instant::now();
            agent.start(&mut io, now).expect("start");
            let caller: SocketAddr = CALLEE.parse().expect("addr");
            let offer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
            let invite = caller_invite("nat1@127.0.0.1", offer);
            agent.handle_datagram(&mut io, now, SocketId(0), caller, &invite);
            events(&link);
            let call = CallId::inbound(0, 0);
            let (rtp_socket, _) = io.bound[1];
            link.commands
                .push(Command::Answer {
                    call,
                    max_duration: Duration::from_secs(3600),
                    media_latching: latching,
                })
                .expect("queue");
            agent.handle_wake(&mut io, now);
            let ok = sip_sent(&io).pop().expect("200 sent");
            let to = ok.lines().find(|l| l.starts_with("To: ")).expect("To");
            let ack = format!(
                "ACK sip:outdial@127.0.0.1:5060 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bKack1;rport\r\nMax-Forwards: 70\r\n\
                 From: <sip:+15550199@127.0.0.1>;tag=caller1\r\n{to}\r\nCall-ID: nat1@127.0.0.1\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            agent.handle_datagram(&mut io, now, SocketId(0), caller, ack.as_bytes());
            assert!(matches!(events(&link)[..], [Event::Answered { .. }]));
            for seq in 1..=3 {
                agent.handle_datagram(&mut io, now, rtp_socket, nat, &key_packet_seq(4, seq));
            }
            let got = events(&link);
            if latching {
                assert!(
                    matches!(got.as_slice(), [Event::Dtmf { digit: '4', .. }]),
                    "{got:?}"
                );
            } else {
                assert!(
                    matches!(got.as_slice(), [Event::MediaSourceRefused { from, .. }] if *from == nat),
                    "{got:?}"
                );
            }
        }
    }

    #[test]
    fn an_incoming_call_is_offered_answered_and_hung_up() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let caller: SocketAddr = CALLEE.parse().expect("addr");
        let offer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n";
        let invite = caller_invite("in1@127.0.0.1", offer);
        agent.handle_datagram(&mut io, now, SocketId(0), caller, &invite);
        assert!(
            sip_sent(&io)
                .last()
                .is_some_and(|m| m.starts_with("SIP/2.0 100 Trying\r\n")),
            "{:?}",
            sip_sent(&io)
        );
        let got = events(&link);
        let call = CallId::inbound(0, 0);
        assert!(
            matches!(
                &got[..],
                [Event::Incoming(incoming)] if incoming.call == call
                    && incoming.codec == Codec::Pcmu
                    && incoming.source == caller
                    && incoming.sip_call_id == "in1@127.0.0.1"
                    && incoming.from == "sip:+15550199@127.0.0.1"
            ),
            "{got:?}"
        );
        assert_eq!(link.load.load(Ordering::Relaxed), 1);
        let (rtp_socket, rtp_addr) = io.bound[1];
        let (rtcp_socket, _) = io.bound[2];

        link.commands
            .push(Command::Answer {
                call,
                max_duration: Duration::from_secs(3600),
                media_latching: false,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let ok = sip_sent(&io).pop().expect("200 sent");
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert!((20000..=20009).contains(&rtp_addr.port()));
        assert!(
            ok.contains(&format!("m=audio {} RTP/AVP 0 101", rtp_addr.port())),
            "the answer names the call's RTP port: {ok}"
        );
        let to = ok
            .lines()
            .find(|l| l.starts_with("To: "))
            .expect("To in the 200");
        assert!(to.contains(";tag="), "{to}");
        assert!(events(&link).is_empty(), "Answered waits for the ACK");

        let ack = format!(
            "ACK sip:outdial@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bKack1;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+15550199@127.0.0.1>;tag=caller1\r\n{to}\r\nCall-ID: in1@127.0.0.1\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        agent.handle_datagram(&mut io, now, SocketId(0), caller, ack.as_bytes());
        let got = events(&link);
        assert!(
            matches!(
                &got[..],
                [Event::Answered { call: c, codec: Codec::Pcmu, sip_call_id: Some(id) }]
                    if *c == call && id == "in1@127.0.0.1"
            ),
            "{got:?}"
        );

        link.commands.push(Command::Hangup { call }).expect("queue");
        agent.handle_wake(&mut io, now);
        let bye = sip_sent(&io).pop().expect("BYE sent");
        assert!(
            bye.starts_with(&format!("BYE sip:caller@{CALLEE} SIP/2.0\r\n")),
            "{bye}"
        );
        assert!(
            io.sent
                .iter()
                .rev()
                .find(|(socket, _, _)| *socket == SocketId(0))
                .is_some_and(|(_, to, _)| *to == caller)
        );
        let got = events(&link);
        assert!(
            matches!(
                &got[..],
                [Event::Ended { call: c, outcome, media: Some(_), .. }]
                    if *c == call && outcome.disposition == Disposition::Completed
            ),
            "{got:?}"
        );
        assert_eq!(link.load.load(Ordering::Relaxed), 0);
        assert!(io.closed.contains(&rtp_socket) && io.closed.contains(&rtcp_socket));
    }

    #[test]
    fn incoming_early_media_plays_and_hears_before_the_200_and_keeps_its_session() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let mut now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let caller: SocketAddr = CALLEE.parse().expect("addr");
        let offer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let invite = caller_invite("early-in@127.0.0.1", offer);
        agent.handle_datagram(&mut io, now, SocketId(0), caller, &invite);
        events(&link);
        let call = CallId::inbound(0, 0);
        let (rtp_socket, _) = io.bound[1];
        link.commands
            .push(Command::EarlyMedia {
                call,
                max_duration: Duration::from_secs(3600),
                media_latching: false,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let progress = sip_sent(&io).pop().expect("183 sent");
        assert!(
            progress.starts_with("SIP/2.0 183 Session Progress\r\n"),
            "{progress}"
        );
        let early_sdp = progress.split("\r\n\r\n").nth(1).expect("SDP").to_owned();
        assert!(early_sdp.contains("m=audio"), "{progress}");
        let got = events(&link);
        assert!(
            matches!(
                &got[..],
                [Event::EarlyMedia { call: c, codec: Codec::Pcmu, sip_call_id: Some(_) }] if *c == call
            ),
            "{got:?}"
        );
        // A prompt plays and a key is heard before any answer.
        let audio: crate::api::Pcm8k = vec![1000i16; 8000].into();
        link.commands
            .push(Command::Play {
                call,
                id: 1,
                audio,
                bargein: false,
                epoch: 0,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        run_for(&mut agent, &mut io, &mut now, 100);
        let caller_rtp: SocketAddr = "127.0.0.1:6000".parse().expect("addr");
        let early = rtp_sent(&io, rtp_socket, 0);
        assert!(early.len() >= 4, "the prompt plays early: {early:?}");
        assert!(early.iter().all(|(to, _)| *to == caller_rtp));
        let ssrc = early[0].1;
        agent.handle_datagram(&mut io, now, rtp_socket, caller_rtp, &key_packet(7, 160));
        let got = events(&link);
        assert!(
            got.iter()
                .any(|e| matches!(e, Event::Dtmf { digit: '7', .. })),
            "{got:?}"
        );
        assert!(!got.iter().any(|e| matches!(e, Event::Answered { .. })));

        // The answer: a 200 with the 183's SDP, and at the ACK the same stream goes on.
        link.commands
            .push(Command::Answer {
                call,
                max_duration: Duration::from_secs(3600),
                media_latching: false,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let ok = sip_sent(&io).pop().expect("200 sent");
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert_eq!(ok.split("\r\n\r\n").nth(1), Some(early_sdp.as_str()));
        let to = ok.lines().find(|l| l.starts_with("To: ")).expect("To");
        assert!(
            progress.contains(to),
            "the 183 and the 200 share our To tag"
        );
        let ack = format!(
            "ACK sip:outdial@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bKack1;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+15550199@127.0.0.1>;tag=caller1\r\n{to}\r\nCall-ID: early-in@127.0.0.1\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        agent.handle_datagram(&mut io, now, SocketId(0), caller, ack.as_bytes());
        assert!(
            matches!(
                events(&link)[..],
                [Event::Answered {
                    codec: Codec::Pcmu,
                    ..
                }]
            ),
            "Answered at the ACK"
        );
        let before = io.sent.len();
        run_for(&mut agent, &mut io, &mut now, 100);
        let after = rtp_sent(&io, rtp_socket, before);
        assert!(!after.is_empty());
        assert!(
            after.iter().all(|&(to, s)| to == caller_rtp && s == ssrc),
            "the early stream goes on: {after:?}"
        );
    }

    #[test]
    fn an_incoming_caller_requiring_100rel_is_answered_at_once_without_early_media() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let caller: SocketAddr = CALLEE.parse().expect("addr");
        let offer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 0\r\n";
        let invite = String::from_utf8(caller_invite("rel@127.0.0.1", offer))
            .expect("text")
            .replacen(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRequire: 100rel\r\n",
                1,
            );
        agent.handle_datagram(&mut io, now, SocketId(0), caller, invite.as_bytes());
        events(&link);
        link.commands
            .push(Command::EarlyMedia {
                call: CallId::inbound(0, 0),
                max_duration: Duration::from_secs(3600),
                media_latching: false,
            })
            .expect("queue");
        agent.handle_wake(&mut io, now);
        let sent = sip_sent(&io);
        assert!(
            !sent.iter().any(|m| m.starts_with("SIP/2.0 183")),
            "{sent:?}"
        );
        assert!(
            sent.last()
                .is_some_and(|m| m.starts_with("SIP/2.0 200 OK\r\n")),
            "{sent:?}"
        );
        assert!(events(&link).is_empty(), "no early media");
    }

    #[test]
    fn an_incoming_offer_without_g711_is_refused_488() {
        let (mut agent, link) = agent();
        let mut io = FakeIo::default();
        let now = Instant::now();
        agent.start(&mut io, now).expect("start");
        let caller: SocketAddr = CALLEE.parse().expect("addr");
        let offer = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let invite = caller_invite("in2@127.0.0.1", offer);
        agent.handle_datagram(&mut io, now, SocketId(0), caller, &invite);
        let sent = sip_sent(&io);
        assert!(
            sent.last()
                .is_some_and(|m| m.starts_with("SIP/2.0 488 ") && m.contains("CSeq: 1 INVITE")),
            "{sent:?}"
        );
        let got = events(&link);
        assert!(
            !got.iter().any(|e| matches!(e, Event::Incoming(_))),
            "{got:?}"
        );
        assert_eq!(link.load.load(Ordering::Relaxed), 0);
        assert_eq!(io.bound.len(), 1, "no RTP ports taken for it");
    }

    #[test]
    fn a_newcomer_its_address_would_refuse_takes_no_ones_place() {
        let (mut agent, _link, mut io, start) = started_with_ports_taken([]);
        let listener = ListenerId(0);
        agent.sip_listener = Some(listener);
        let quiet: SocketAddr = "192.0.2.50:40000".parse().expect("addr");
        agent.handle_stream_accepted(&mut io, start, listener, StreamId(0), quiet);
        let later = start + Duration::from_secs(1);
        let full = |port: u16| SocketAddr::from(([192, 0, 2, 66], port));
        for n in 1..=32u16 {
            agent.handle_stream_accepted(&mut io, later, listener, StreamId(n.into()), full(n));
        }
        assert!(io.closed_streams.is_empty(), "{:?}", io.closed_streams);
        // The loop asks for room for a 33rd from the full address: no one makes way.
        assert!(!agent.make_room_for_accept(&mut io, later, full(50_000)));
        assert!(io.closed_streams.is_empty(), "{:?}", io.closed_streams);
        // For a newcomer from elsewhere, the quietest accepted connection does.
        let elsewhere: SocketAddr = "192.0.2.77:40000".parse().expect("addr");
        assert!(agent.make_room_for_accept(&mut io, later, elsewhere));
        assert_eq!(io.closed_streams, [StreamId(0)]);
    }
}
