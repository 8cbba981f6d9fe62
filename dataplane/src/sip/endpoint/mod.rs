//! The user agent for every call on one core: places outbound calls (RFC 3261 §13.2 as UAC),
//! answers what arrives unasked (§8.2 as UAS), and keeps transactions and dialogs.
//!
//! Drive it like every sans-IO machine here: after each `dial`, `hangup`, `handle_message`
//! or `handle_timeout`, drain `poll_transmit_via` and `poll_event` until `None`, then sleep
//! until `poll_timeout`. Responses to requests go back to the address the request came from
//! (symmetric response routing, RFC 3581), which is also what `rport` asks for, on the
//! transport it came on (RFC 3261 §18.2.2).
//!
//! Transports (`docs/sip.md`, "Transports"): a call goes on the transport its target names
//! (`;transport=tcp`) or [`DialParams::transport`]; an incoming call on the one its INVITE
//! came on. A request bound for UDP that is larger than [`SipConfig::udp_mtu_switch`] goes
//! over TCP instead (RFC 3261 §18.1.1), unless its URI named `;transport=udp`. For a stream
//! transport the address `poll_transmit_via` returns stands for the connection to or from
//! that peer: the owner reuses an open one or opens one.

mod auth;
mod call;
mod early_media;
mod inbound;
mod inbound_early;
mod prack;
mod refresh_invite;
mod reoffer;
mod session_timer;
mod transfer;
mod unreachable;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use self::call::{Call, CancelReason, failure_outcome};
use crate::api::{CallId, Disposition, Outcome, TransferError, TransferOutcome};
use crate::sip::auth::{Authenticator, Credentials};
use crate::sip::dialog::{Dialog, LocalParty};
use crate::sip::message::print::{Writer, reason_phrase};
use crate::sip::message::{HeaderName, Host, Message, Method, Recovered};
use crate::sip::pike::Pike;
use crate::sip::refer::TransferReport;
use crate::sip::register::{Registration, RegistrationConfig, RegistrationEvent};
use crate::sip::transaction::{
    AckTemplate, ClientInvite, ClientNonInvite, ResponseAction, ServerTransaction, Timing,
};
use crate::sip::transport::Transport;

/// Datagrams longer than this are dropped unread (a SIP message over UDP should fit the
/// path MTU, RFC 3261 §18.1.1; 8 KiB leaves room for large SDP and many headers).
pub const MAX_MESSAGE_BYTES: usize = 8192;
/// Requests from strangers (outside our dialogs) answered per source IP per window.
pub const STRANGER_LIMIT: u32 = 20;
/// The window of [`STRANGER_LIMIT`].
pub const STRANGER_WINDOW: Duration = Duration::from_secs(2);
/// Source IPs the stranger limit remembers at once.
pub const STRANGER_SOURCES: usize = 4096;
/// Requests bound for UDP larger than this many bytes go over TCP (RFC 3261 §18.1.1: 200
/// bytes below a 1500-byte MTU; [`SipConfig::udp_mtu_switch`]).
pub const UDP_MTU_SWITCH: usize = 1300;

pub use inbound_early::{EARLY_MEDIA_LIMIT, NoEarlyMedia, PROGRESS_REPEAT};
pub use session_timer::MIN_SESSION_EXPIRES;

pub(crate) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, UPDATE";

/// What strangers (requests outside our dialogs) may make an endpoint send
/// (`docs/sip.md`, "What a stranger gets"). The defaults are the constants above, and a
/// stranger's INVITE unanswered.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BorderConfig {
    /// Datagrams longer than this are dropped unread.
    pub max_message_bytes: usize,
    /// Requests from strangers answered per source IP per `stranger_window`.
    pub stranger_limit: u32,
    /// The window of `stranger_limit`.
    pub stranger_window: Duration,
    /// Source IPs the limit remembers at once.
    pub stranger_sources: usize,
    /// Answer an INVITE outside our dialogs with one `404` (never retransmitted) instead
    /// of nothing.
    pub answer_stranger_invite: bool,
}

impl Default for BorderConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: MAX_MESSAGE_BYTES,
            stranger_limit: STRANGER_LIMIT,
            stranger_window: STRANGER_WINDOW,
            stranger_sources: STRANGER_SOURCES,
            answer_stranger_invite: false,
        }
    }
}

/// Per-core SIP settings.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SipConfig {
    /// The address our SIP socket is bound to; used in Via, Contact and Call-ID.
    pub local: SocketAddr,
    /// RTT estimate T1 (RFC 3261 §17.1.1.1; 500 ms).
    pub t1: Duration,
    /// Longest retransmit interval T2 (4 s).
    pub t2: Duration,
    /// Longest network lifetime T4 (5 s).
    pub t4: Duration,
    /// User-Agent header value.
    pub user_agent: String,
    /// What strangers may make this endpoint send.
    pub border: BorderConfig,
    /// Networks whose out-of-dialog INVITEs are incoming calls (the registrars we register
    /// with are added); an INVITE from anywhere else is a stranger's.
    pub inbound_sources: Vec<ipnet::IpNet>,
    /// This core's index, written into the ids of its incoming calls.
    pub core: usize,
    /// Incoming INVITEs are answered `503` while this many calls are live here.
    pub max_calls: usize,
    /// The session interval our INVITEs ask for (RFC 4028, `refresher=uas`); `None`: no
    /// session timers (a peer's refreshes are still answered).
    pub session_expires: Option<Duration>,
    /// A request bound for UDP and longer than this many bytes goes over TCP, unless its
    /// URI named `;transport=udp` (RFC 3261 §18.1.1; default [`UDP_MTU_SWITCH`]).
    pub udp_mtu_switch: usize,
}

/// What to dial.
#[derive(Clone, Copy, Debug)]
pub struct DialParams<'a> {
    /// Request-URI, e.g. `sip:+15550001@127.0.0.1:5070`.
    pub target: &'a str,
    /// Where to send the INVITE, when the target's host is a name resolved by the caller;
    /// `None` = the target's own IP literal (or `localhost`) and port.
    pub destination: Option<SocketAddr>,
    /// From URI, e.g. `sip:outdial@127.0.0.1`.
    pub from: &'a str,
    /// SDP offer for the INVITE body.
    pub sdp_offer: &'a [u8],
    /// From sending the INVITE to giving up with CANCEL.
    pub ring_timeout: Duration,
    /// From answer to hanging up with BYE.
    pub max_duration: Duration,
    /// Digest credentials for 401/407 challenges to this call's INVITE and BYE; `None`
    /// ends a challenged call `AuthFailed`.
    pub credentials: Option<&'a Credentials>,
    /// `P-Asserted-Identity` URI (RFC 3325), e.g. `sip:+15550100@carrier.example`.
    pub asserted_identity: Option<&'a str>,
    /// `Privacy` value (RFC 3323), e.g. `id` or `none`.
    pub privacy: Option<&'a str>,
    /// End the call [`Disposition::Unreachable`] when nothing answers the INVITE this long
    /// (not even `100 Trying`); `None` = Timer B.
    pub no_response_timeout: Option<Duration>,
    /// What the INVITE and the call's dialog travel on, unless the target names a
    /// `;transport=` (which wins). UDP requests may still move to TCP when large.
    pub transport: Transport,
}

/// What the endpoint tells its owner.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum SipEvent {
    /// An INVITE from an allowed source: `100 Trying` is sent; answer it with
    /// [`Endpoint::accept`] or [`Endpoint::reject`] (within 64*T1, or it is refused 480).
    Incoming {
        /// The id given to the call ([`CallId::inbound`]).
        call: CallId,
        /// The Request-URI.
        request_uri: String,
        /// The caller's From URI.
        from: String,
        /// The To URI.
        to: String,
        /// Where the INVITE came from.
        source: SocketAddr,
        /// The INVITE's Call-ID.
        sip_call_id: String,
        /// The caller's SDP offer; empty for an offerless INVITE (the owner then accepts
        /// with an offer, and `Answered` brings the caller's answer from its ACK).
        sdp: Vec<u8>,
    },
    /// First 180/183 for the call.
    Ringing {
        /// The call.
        call: CallId,
    },
    /// A provisional response (usually `183 Session Progress`) carried the SDP answer before
    /// the call is answered: early media (RFC 3960 §2, the gateway model). Once per call,
    /// from the first early dialog that sent SDP; later early dialogs' SDP (forks) and
    /// repeats are ignored. `Answered` still follows at the 2xx (its `sdp` may be empty or
    /// the same session, or a new one that replaces this). Comes after `Ringing`. For an
    /// incoming call: we sent a 183 ([`Endpoint::progress`]), and `sdp` is the caller's offer.
    EarlyMedia {
        /// The call.
        call: CallId,
        /// The SDP answer in the provisional response (an incoming call's offer).
        sdp: Vec<u8>,
        /// Where the provisional response came from (what media latching trusts).
        peer: SocketAddr,
    },
    /// 2xx to the INVITE arrived; the ACK is already queued. `sdp` is the answer body (may be
    /// empty). For an incoming call: the caller's ACK arrived, and `sdp` is its offer.
    Answered {
        /// The call.
        call: CallId,
        /// The SDP answer.
        sdp: Vec<u8>,
        /// Where the 2xx came from: the signalling peer (what media latching trusts).
        peer: SocketAddr,
    },
    /// A new offer in an answered call (a re-INVITE or UPDATE with SDP: hold, resume, new
    /// media address); answer it with [`Endpoint::answer_reoffer`].
    Reoffer {
        /// The call.
        call: CallId,
        /// The peer's offer.
        sdp: Vec<u8>,
    },
    /// A transfer started with [`Endpoint::refer`] ended; `Ended` follows when it
    /// succeeded (our leg is hung up). Not emitted when the call ends first.
    TransferDone {
        /// The call.
        call: CallId,
        /// The id given to `refer`.
        id: u32,
        /// The outcome, or why the transfer could not be tried.
        result: Result<TransferOutcome, TransferError>,
        /// What happened, in words.
        detail: String,
    },
    /// A registration attempt ended (see [`Endpoint::register`]).
    Registration {
        /// The id given to `register`.
        id: u32,
        /// What happened.
        event: RegistrationEvent,
    },
    /// The call is over (emitted exactly once per dialed call).
    Ended {
        /// The call.
        call: CallId,
        /// How it ended.
        outcome: Outcome,
    },
}

/// Why a call could not be dialed. Nothing is sent when `dial` fails.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum SipError {
    /// The target is not a usable SIP URI.
    #[error("target `{0}` is not a SIP URI without headers; write it as sip:user@host[:port]")]
    BadTarget(String),
    /// The target host is a name that would need DNS.
    #[error("target host `{0}` needs DNS, which is not supported; use an IP address or localhost")]
    NeedsDns(String),
    /// The From URI does not parse.
    #[error("from `{0}` is not a SIP URI; write it as sip:user@host")]
    BadFrom(String),
    /// A call with this id exists already.
    #[error("call {0:?} is already in progress; use a new call id")]
    DuplicateCall(CallId),
    /// The P-Asserted-Identity is not a SIP URI.
    #[error("asserted identity `{0}` is not a SIP URI; write it as sip:user@host")]
    BadIdentity(String),
    /// The Privacy value is not a list of tokens.
    #[error(
        "privacy `{0}` is not a Privacy value; write tokens such as id, header or none, separated by ;"
    )]
    BadPrivacy(String),
}

/// Whose timers a heap entry belongs to.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
enum Owner {
    Call(CallId),
    Server(u64),
    Registration(u32),
}

/// A server transaction and the keys it is found by.
struct ServerEntry {
    keys: [Option<String>; 2],
    transaction: ServerTransaction,
    /// The incoming call whose INVITE this transaction answers.
    call: Option<CallId>,
}

/// The SIP user agent of one core.
pub struct Endpoint {
    config: SipConfig,
    timing: Timing,
    rng: SmallRng,
    calls: HashMap<CallId, Call>,
    live_calls: usize,
    /// Client transaction branch → call.
    by_branch: HashMap<String, CallId>,
    /// Call-ID → call, for requests inside our dialogs.
    by_call_id: HashMap<String, CallId>,
    servers: HashMap<u64, ServerEntry>,
    server_keys: HashMap<String, u64>,
    next_server: u64,
    /// Deadlines; entries may be stale (then `handle_timeout` is a no-op for them).
    timers: BinaryHeap<Reverse<(Instant, Owner)>>,
    /// Owners that may have datagrams to send.
    ready: VecDeque<Owner>,
    /// Stateless messages (error responses, ACKs for stray 2xx).
    stateless: VecDeque<(Transport, SocketAddr, Vec<u8>)>,
    events: VecDeque<SipEvent>,
    /// A transfer outcome carried by the NOTIFY being answered; acted on once the answer
    /// is queued.
    notified: Option<(CallId, TransferReport)>,
    /// Keys the To-tags of stateless answers.
    tag_secret: u64,
    /// Rate limit on answers to strangers.
    pike: Pike,
    /// Registrations kept alive, by control's id.
    registrations: HashMap<u32, Registration>,
    /// Incoming calls so far: the next one's number in its [`CallId::inbound`].
    next_inbound: u64,
}

impl Endpoint {
    /// An endpoint with no calls. `seed` drives tags, branches and Call-IDs.
    pub fn new(config: SipConfig, seed: u64) -> Self {
        let timing = Timing {
            t1: config.t1,
            t2: config.t2,
            t4: config.t4,
        };
        let pike = Pike::new(
            config.border.stranger_limit,
            config.border.stranger_window,
            config.border.stranger_sources,
        );
        Self {
            config,
            timing,
            rng: SmallRng::seed_from_u64(seed),
            calls: HashMap::new(),
            live_calls: 0,
            by_branch: HashMap::new(),
            by_call_id: HashMap::new(),
            servers: HashMap::new(),
            server_keys: HashMap::new(),
            next_server: 0,
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            stateless: VecDeque::new(),
            events: VecDeque::new(),
            notified: None,
            tag_secret: SmallRng::seed_from_u64(!seed).random(),
            pike,
            registrations: HashMap::new(),
            next_inbound: 0,
        }
    }

    /// Starts (or restarts) registration `register.id`: REGISTERs from this endpoint's
    /// address, refreshed before expiry and retried after failures, for as long as the
    /// endpoint runs. Each attempt's end is a [`SipEvent::Registration`].
    pub fn register(&mut self, now: Instant, register: &crate::api::Register) {
        let local = self.config.local;
        let config = RegistrationConfig {
            registrar: register.registrar.clone(),
            aor: register.aor.clone(),
            contact: format!("sip:{}@{local}", register.contact_user),
            destination: register.destination,
            alternatives: register.alternatives.clone(),
            local,
            expires: register.expires,
            credentials: register.credentials.clone(),
            user_agent: self.config.user_agent.clone(),
        };
        let seed = self.rng.random();
        self.registrations.insert(
            register.id,
            Registration::new(now, config, self.timing, seed),
        );
        self.touch(Owner::Registration(register.id));
    }

    /// Removes registration `id`'s binding (see [`Registration::unregister`]); its outcome
    /// is a [`SipEvent::Registration`] with `RegistrationEvent::Unregistered`. Nothing
    /// happens for an unknown id.
    pub fn unregister(&mut self, now: Instant, id: u32) {
        if let Some(registration) = self.registrations.get_mut(&id) {
            registration.unregister(now);
            self.registration_events(id);
        }
    }

    /// A request in `id`'s dialog that may refresh its session timer.
    fn refreshed_by(&mut self, now: Instant, id: CallId, request: &Message<'_>) {
        if let Some(expires) = session_timer::SessionExpires::of(request) {
            self.session_refreshed(now, id, expires);
        }
    }

    fn registration_events(&mut self, id: u32) {
        if let Some(registration) = self.registrations.get_mut(&id) {
            while let Some(event) = registration.poll_event() {
                self.events.push_back(SipEvent::Registration { id, event });
            }
        }
        self.touch(Owner::Registration(id));
    }

    /// Sends an INVITE to `params.destination`, or else to the host:port of `target` (IP
    /// literal or `localhost`; default port 5060). Errors (bad URI, a hostname with no
    /// destination given, duplicate call id) are returned, nothing is sent.
    pub fn dial(
        &mut self,
        now: Instant,
        call: CallId,
        params: &DialParams<'_>,
    ) -> Result<(), SipError> {
        if self.calls.contains_key(&call) {
            return Err(SipError::DuplicateCall(call));
        }
        let bad_target = || SipError::BadTarget(params.target.to_owned());
        let target = super::target::dial_target(params.target).map_err(|_| bad_target())?;
        let named_transport = super::target::transport_param(&target);
        let transport = named_transport.unwrap_or(params.transport);
        let Some(destination) = params.destination.or_else(|| target.socket_addr()) else {
            return Err(match target.host {
                Host::Name(name) => SipError::NeedsDns(name.to_owned()),
                _ => bad_target(),
            });
        };
        if super::target::from_uri(params.from).is_err() {
            return Err(SipError::BadFrom(params.from.to_owned()));
        }

        if let Some(identity) = params.asserted_identity
            && super::target::from_uri(identity).is_err()
        {
            return Err(SipError::BadIdentity(identity.to_owned()));
        }
        if let Some(privacy) = params.privacy
            && !super::target::is_privacy_value(privacy)
        {
            return Err(SipError::BadPrivacy(privacy.to_owned()));
        }

        let local = self.config.local;
        let local_tag = self.random_token();
        let branch = format!("z9hG4bK{}", self.random_token());
        let call_id = format!(
            "{}{}@{}",
            self.random_token(),
            self.random_token(),
            local.ip()
        );
        let via = via_value(transport, local, &branch);
        let mut identity_headers = Vec::new();
        if let Some(identity) = params.asserted_identity {
            identity_headers.push(("P-Asserted-Identity", format!("<{identity}>")));
        }
        if let Some(privacy) = params.privacy {
            identity_headers.push(("Privacy", privacy.to_owned()));
        }
        let template = AckTemplate {
            request_uri: params.target.to_owned(),
            via: via.clone(),
            from: format!("<{}>;tag={local_tag}", params.from),
            call_id: call_id.clone(),
            cseq: 1,
        };
        let placeholder = ClientInvite::new(
            now,
            self.timing,
            transport,
            destination,
            Vec::new(),
            template.clone(),
        );
        let mut state = Call {
            destination,
            target: params.target.to_owned(),
            from_uri: params.from.to_owned(),
            call_id: call_id.clone(),
            local_tag,
            invite_branch: branch.clone(),
            invite_cseq: 1,
            via,
            sdp_offer: params.sdp_offer.to_vec(),
            identity_headers,
            invite: placeholder,
            old_invites: Vec::new(),
            auth: Authenticator::new(params.credentials.cloned()),
            cancel: None,
            byes: Vec::new(),
            main_bye: None,
            dialog: None,
            transfer: None,
            ack: Vec::new(),
            ack_destination: destination,
            ack_transport: transport,
            ack_pending: false,
            transport,
            transport_named: named_transport.is_some(),
            ring_timeout: params.ring_timeout,
            max_duration: params.max_duration,
            ring_deadline: Some(now + params.ring_timeout),
            max_deadline: None,
            cancel_guard: None,
            cancel_reason: None,
            rang: false,
            final_status: None,
            ended: false,
            incoming: None,
            reoffer: None,
            early: None,
            early_media: None,
            pracks: Vec::new(),
            session_timer: None,
            peer_allows_update: false,
            refresh_invite: None,
            no_response_timeout: params.no_response_timeout,
            silence_deadline: params.no_response_timeout.map(|t| now + t),
            redirect: None,
            session_expires: self.config.session_expires,
            interval_raised: false,
        };
        let (sent_on, invite) = auth::write_invite_on(&self.config, &mut state, &[]);
        let template = AckTemplate {
            via: state.via.clone(),
            ..template
        };
        state.invite = ClientInvite::new(now, self.timing, sent_on, destination, invite, template);

        self.by_branch.insert(branch, call);
        self.by_call_id.insert(call_id, call);
        self.calls.insert(call, state);
        self.live_calls += 1;
        self.touch(Owner::Call(call));
        Ok(())
    }

    /// CANCEL before a final response (RFC 3261 §9.1: only after a provisional arrived; if none yet,
    /// send it as soon as one arrives), BYE after 2xx. Emits Ended{Canceled} / Ended{Completed}.
    ///
    /// Before answer, `Ended` follows the INVITE's final response (487, or 200 which is then
    /// ACKed and BYEd), or 64*T1 after the CANCEL if none comes.
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        if self.calls.get(&call).is_none_or(|state| state.ended) {
            return;
        }
        if self.incoming_hangup(now, call) {
            return;
        }
        if state_is_answered(self.calls.get(&call)) {
            let incoming = self.calls.get(&call).is_some_and(|c| c.incoming.is_some());
            self.send_bye(now, call);
            self.end(
                call,
                Outcome {
                    disposition: Disposition::Completed,
                    sip_status: state_status(self.calls.get(&call)),
                    reason: if incoming {
                        "hung up by the application"
                    } else {
                        "caller hung up"
                    }
                    .to_owned(),
                },
            );
        } else {
            self.request_cancel(now, call, CancelReason::Hangup);
        }
        self.touch(Owner::Call(call));
    }

    /// Feeds one received UDP datagram: [`Endpoint::handle_message`] on [`Transport::Udp`].
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.handle_message(now, Transport::Udp, from, data);
    }

    /// Feeds one complete SIP message received on `transport` from `from` (for a stream,
    /// a [`crate::sip::transport::Frame::Message`] and the connection's peer; answers go
    /// back on that transport to that address). Malformed input is answered (requests whose
    /// Via, From, To, Call-ID and CSeq are recoverable) or dropped; it never panics.
    pub fn handle_message(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        data: &[u8],
    ) {
        if data.len() > self.config.border.max_message_bytes {
            return;
        }
        match Message::parse(data) {
            Ok(message) if message.status().is_some() => self.handle_response(now, from, &message),
            Ok(message) => self.handle_request(now, transport, from, &message),
            Err(error) => {
                if let Some(recovered) = Recovered::scan(data) {
                    let is_ack = data.starts_with(b"ACK ");
                    if !is_ack && self.pike.allow(now, from.ip()) {
                        self.respond_stateless(transport, from, &recovered, error.status());
                    }
                }
            }
        }
    }

    /// Runs every timer due at `now`. Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<Owner> = Vec::new();
        while let Some(Reverse((deadline, owner))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if !due.contains(&owner) {
                due.push(owner);
            }
        }
        for owner in due {
            match owner {
                Owner::Call(call) => self.call_timeout(now, call),
                Owner::Server(id) => {
                    let mut unacknowledged = None;
                    if let Some(entry) = self.servers.get_mut(&id)
                        && entry.transaction.handle_timeout(now)
                    {
                        unacknowledged = entry.call;
                    }
                    self.touch(owner);
                    if let Some(call) = unacknowledged {
                        self.incoming_unacknowledged(now, call);
                    }
                }
                Owner::Registration(id) => {
                    if let Some(registration) = self.registrations.get_mut(&id) {
                        registration.handle_timeout(now);
                    }
                    self.registration_events(id);
                }
            }
        }
    }

    /// Like [`Endpoint::poll_transmit_via`], without the transport (for UDP-only owners
    /// and tests).
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.poll_transmit_via(buf)
            .map(|(_, destination)| destination)
    }

    /// Writes the next message into `buf` (cleared first) and returns what it goes on and
    /// where. For a stream transport the address is the peer of the connection to use: an
    /// open one to or from it, else a new one.
    pub fn poll_transmit_via(&mut self, buf: &mut Vec<u8>) -> Option<(Transport, SocketAddr)> {
        if let Some((transport, destination, bytes)) = self.stateless.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some((transport, destination));
        }
        while let Some(owner) = self.ready.front().copied() {
            let sent = match owner {
                Owner::Call(call) => self.calls.get_mut(&call).and_then(|c| c.poll_transmit(buf)),
                Owner::Server(id) => self.servers.get_mut(&id).and_then(|e| {
                    let transport = e.transaction.transport();
                    e.transaction.poll_transmit(buf).map(|to| (transport, to))
                }),
                Owner::Registration(id) => self
                    .registrations
                    .get_mut(&id)
                    .and_then(|r| r.poll_transmit(buf))
                    .map(|to| (Transport::Udp, to)),
            };
            if sent.is_some() {
                return sent;
            }
            self.ready.pop_front();
            self.forget_if_finished(owner);
        }
        None
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// The SIP Call-ID of a dialed call (kept until its transactions finish, after Ended).
    pub fn sip_call_id(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|c| c.call_id.as_str())
    }

    /// True while a call not yet ended talks to `peer` over `transport` (TCP or TLS): its
    /// INVITE's destination (for an incoming call, the caller's address) or its dialog's
    /// next hop. The owner keeps such a connection open however long it is quiet, since the
    /// peer's requests in the dialog (its BYE) may come only on it. Walks the calls: for an
    /// occasional sweep, not per message.
    pub fn uses_stream_peer(&self, transport: Transport, peer: SocketAddr) -> bool {
        self.stream_peer_call(transport, peer, false).is_some()
    }

    /// A call whose INVITE or dialog goes to `peer` over `transport`, if any, ended ones
    /// included (their BYE may be on its way): to find whose TLS settings or connection
    /// reach a dialog hop. Walks the calls: not for every message.
    pub fn call_using_stream_peer(&self, transport: Transport, peer: SocketAddr) -> Option<CallId> {
        self.stream_peer_call(transport, peer, true)
    }

    /// Every (transport, peer) [`Self::uses_stream_peer`] is true of, in one walk of the
    /// calls: for a caller that asks of many connections at once (which accepted connection
    /// may make way for a newcomer), so that it walks the calls once, not once per
    /// connection.
    pub fn stream_peers_in_use(&self) -> HashSet<(Transport, SocketAddr)> {
        self.calls
            .values()
            .filter(|call| !call.ended)
            .flat_map(|call| {
                let initial = (call.transport, call.destination);
                let in_dialog = call.dialog.as_ref().map_or(initial, |dialog| {
                    (
                        dialog.next_hop_transport().0,
                        dialog.next_hop().unwrap_or(call.destination),
                    )
                });
                [initial, in_dialog]
            })
            .collect()
    }

    fn stream_peer_call(
        &self,
        transport: Transport,
        peer: SocketAddr,
        ended: bool,
    ) -> Option<CallId> {
        self.calls
            .iter()
            .filter(|(_, call)| ended || !call.ended)
            .find(|(_, call)| {
                let initial = call.transport == transport && call.destination == peer;
                // The transport first: the next hop is parsed from the dialog's route.
                let in_dialog = call.dialog.as_ref().is_some_and(|dialog| {
                    dialog.next_hop_transport().0 == transport
                        && dialog.next_hop().unwrap_or(call.destination) == peer
                });
                initial || in_dialog
            })
            .map(|(&id, _)| id)
    }

    /// Where an incoming call's INVITE came from (its caller's connection, over a stream);
    /// `None` for a call we dialled.
    pub fn incoming_source(&self, call: CallId) -> Option<SocketAddr> {
        self.calls
            .get(&call)
            .filter(|c| c.incoming.is_some())
            .map(|c| c.destination)
    }

    /// The Contact of the 3xx that ended `call`'s INVITE, if one did (kept, like the
    /// Call-ID, until the call's transactions finish).
    pub fn redirect_target(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).and_then(|c| c.redirect.as_deref())
    }

    /// Calls dialed and not yet Ended.
    pub fn active_calls(&self) -> usize {
        self.live_calls
    }

    /// True when nothing is kept: no call, transaction, timer or queued output. Calls stay
    /// tracked after Ended until their transactions' timers run out (about 64*T1).
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
            && self.registrations.is_empty()
            && self.by_branch.is_empty()
            && self.by_call_id.is_empty()
            && self.servers.is_empty()
            && self.server_keys.is_empty()
            && self
                .timers
                .iter()
                .all(|Reverse((_, owner))| !self.owner_exists(*owner))
            && self.ready.is_empty()
            && self.stateless.is_empty()
            && self.events.is_empty()
            && self.notified.is_none()
    }

    // ----- responses to our requests (UAC) -----

    fn handle_response(&mut self, now: Instant, from: SocketAddr, response: &Message<'_>) {
        let (Some(branch), Some(cseq)) =
            (response.via().and_then(|via| via.branch()), response.cseq())
        else {
            return;
        };
        let registration = self
            .registrations
            .iter()
            .find(|(_, r)| r.branch() == Some(branch))
            .map(|(id, _)| *id);
        if let Some(id) = registration {
            if let Some(registration) = self.registrations.get_mut(&id) {
                registration.handle_response(now, response);
            }
            self.registration_events(id);
            return;
        }
        let Some(&id) = self.by_branch.get(branch) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if cseq.method == Method::Invite {
            call.silence_deadline = None;
        }
        match cseq.method {
            Method::Invite
                if branch == call.invite_branch
                    && call.invite.handle_response(now, response) == ResponseAction::Deliver =>
            {
                self.on_invite_response(now, id, from, response);
            }
            Method::Invite
                if call
                    .refresh_invite
                    .as_ref()
                    .is_some_and(|r| r.branch == branch) =>
            {
                self.refresh_invite_response(now, id, response);
            }
            Method::Invite => {
                // A retransmitted 401/407 to an INVITE we already retried: its transaction
                // absorbs it and sends the ACK again (nothing is found for the current one).
                if let Some((_, old)) = call.old_invites.iter_mut().find(|(b, _)| b == branch) {
                    old.handle_response(now, response);
                }
            }
            Method::Cancel => {
                if let Some(cancel) = call.cancel.as_mut() {
                    cancel.handle_response(now, response);
                }
            }
            Method::Bye => {
                let delivered = call
                    .byes
                    .iter_mut()
                    .find(|(b, _)| b == branch)
                    .map(|(_, bye)| bye.handle_response(now, response));
                let challenged = matches!(response.status(), Some(401 | 407));
                if delivered == Some(ResponseAction::Deliver)
                    && challenged
                    && call.main_bye.as_deref() == Some(branch)
                {
                    self.retry_bye(now, id, response);
                }
            }
            Method::Other("REFER") => self.on_refer_response(now, id, branch, response),
            Method::Other("PRACK") => {
                if let Some((_, prack)) = call.pracks.iter_mut().find(|(b, _)| b == branch) {
                    prack.handle_response(now, response);
                }
            }
            Method::Other("UPDATE") => {
                let delivered = call
                    .pracks
                    .iter_mut()
                    .find(|(b, _)| b == branch)
                    .map(|(_, update)| update.handle_response(now, response));
                if delivered == Some(ResponseAction::Deliver) {
                    self.refresh_answered(now, id, response);
                }
            }
            _ => {}
        }
        self.touch(Owner::Call(id));
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        id: CallId,
        from: SocketAddr,
        response: &Message<'_>,
    ) {
        let Some(status) = response.status() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // A 422's Min-SE, when it is one we may still ask for.
        let raised_interval = (status == 422 && !call.interval_raised)
            .then(|| response.header(HeaderName::Other("Min-SE")))
            .flatten()
            .and_then(|v| v.split(';').next()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .filter(|&min| {
                call.session_expires.is_some_and(|asked| min > asked)
                    && min <= Duration::from_secs(86_400)
            });
        match status {
            100..=199 => {
                if call.cancel_reason.is_some() && call.cancel.is_none() {
                    self.send_cancel(now, id);
                } else if status > 100 && !call.rang && !call.ended {
                    call.rang = true;
                    self.events.push_back(SipEvent::Ringing { call: id });
                }
                if status > 100 {
                    self.acknowledge_provisional(now, id, response);
                    self.early_media(id, from, response);
                }
            }
            200..=299 => self.on_2xx(now, id, from, response),
            422 if call.cancel_reason.is_none() && !call.ended && raised_interval.is_some() => {
                // RFC 4028 §7.4: ask again with the interval the callee needs, once.
                let interval = raised_interval.unwrap_or_default();
                call.session_expires = Some(interval);
                call.interval_raised = true;
                let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
                let min_se = [("Min-SE", interval.as_secs().to_string())];
                self.resend_invite(now, id, &min_se, branch);
            }
            401 | 407 if call.cancel_reason.is_none() && !call.ended => {
                if let Err(outcome) = self.retry_invite(now, id, response) {
                    call_final_status(self.calls.get_mut(&id), status);
                    self.end(id, outcome);
                }
            }
            _ => {
                call.final_status.get_or_insert(status);
                if (300..400).contains(&status) {
                    call.redirect = response.contact().map(|c| c.uri.as_str().to_owned());
                }
                let outcome = if call.cancel_reason.is_some() && status == 487 {
                    call.cancel_outcome(Some(status))
                } else {
                    failure_outcome(status, response.reason().unwrap_or(""))
                };
                self.end(id, outcome);
            }
        }
    }

    fn on_2xx(&mut self, now: Instant, id: CallId, from: SocketAddr, response: &Message<'_>) {
        let local = self.config.local;
        let early_cseq = self.early_cseq(id, response.to().and_then(|to| to.tag()).unwrap_or(""));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let status = response.status().unwrap_or(200);
        let to_tag = response.to().and_then(|to| to.tag()).unwrap_or("");
        if let Some(dialog) = &call.dialog {
            if dialog.remote_tag == to_tag {
                // A retransmitted 2xx: the ACK goes again (RFC 3261 §13.2.2.4).
                call.ack_pending = true;
            } else {
                // Another fork answered: ACK it, then BYE it (RFC 3261 §13.2.2.4).
                self.ack_and_bye_fork(now, id, response);
            }
            return;
        }
        let party = LocalParty {
            call_id: &call.call_id,
            local_tag: &call.local_tag,
            local_uri: &call.from_uri,
            remote_uri: &call.target,
            invite_cseq: call.invite_cseq,
        };
        let mut dialog = match Dialog::from_2xx(&party, response) {
            Ok(dialog) => dialog,
            // Tolerate a 2xx without Contact: address in-dialog requests to the target.
            Err(_) => Dialog::new(&party, to_tag, &call.target, Vec::new()),
        };
        if let Some(cseq) = early_cseq {
            // PRACKs used CSeq numbers in this dialog already (RFC 3262 §7.2).
            dialog.local_cseq = dialog.local_cseq.max(cseq);
        }
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        dialog.transport = call.transport;
        dialog.write_ack(&mut call.ack, local, &branch);
        call.ack_destination = dialog.next_hop().unwrap_or(call.destination);
        call.ack_transport = dialog.next_hop_transport().0;
        call.peer_allows_update = refresh_invite::allows_update(response);
        call.ack_pending = true;
        call.dialog = Some(dialog);
        call.final_status.get_or_insert(status);
        if call.cancel_reason.is_some() {
            // 200 crossed our CANCEL: ACK, then BYE; the call still counts as not answered.
            let outcome = call.cancel_outcome(Some(status));
            self.send_bye(now, id);
            self.end(id, outcome);
        } else if !call.ended {
            call.max_deadline = Some(now + call.max_duration);
            call.ring_deadline = None;
            self.events.push_back(SipEvent::Answered {
                call: id,
                sdp: response.body().to_vec(),
                peer: from,
            });
            let expires = session_timer::SessionExpires::of(response);
            let we_refresh = expires.is_some_and(|e| e.refresher_uac == Some(true));
            self.start_session_timer(now, id, expires, we_refresh);
        }
    }

    fn ack_and_bye_fork(&mut self, now: Instant, id: CallId, response: &Message<'_>) {
        let local = self.config.local;
        let user_agent = self.config.user_agent.clone();
        let ack_branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let bye_branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let party = LocalParty {
            call_id: &call.call_id,
            local_tag: &call.local_tag,
            local_uri: &call.from_uri,
            remote_uri: &call.target,
            invite_cseq: call.invite_cseq,
        };
        let Ok(mut fork) = Dialog::from_2xx(&party, response) else {
            return;
        };
        fork.transport = call.transport;
        let destination = fork.next_hop().unwrap_or(call.destination);
        let (transport, _) = fork.next_hop_transport();
        let mut ack = Vec::new();
        fork.write_ack(&mut ack, local, &ack_branch);
        self.stateless.push_back((transport, destination, ack));
        let mut bye = Vec::new();
        fork.write_request(&mut bye, "BYE", local, &bye_branch, &user_agent);
        call.byes.push((
            bye_branch.clone(),
            ClientNonInvite::new(now, self.timing, transport, destination, bye),
        ));
        self.by_branch.insert(bye_branch, id);
    }

    fn request_cancel(&mut self, now: Instant, id: CallId, reason: CancelReason) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.cancel_reason.is_some() {
            return;
        }
        call.cancel_reason = Some(reason);
        if call.invite.is_cancellable() {
            self.send_cancel(now, id);
        }
    }

    /// CANCEL (RFC 3261 §9.1): the INVITE's Request-URI, Call-ID, From, To, top Via and CSeq
    /// number, method CANCEL; arms the 64*T1 guard for the INVITE's final response.
    fn send_cancel(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut cancel = Vec::new();
        let mut writer = Writer::request(&mut cancel, "CANCEL", &call.target);
        writer
            .header("Via", &call.via)
            .header("Max-Forwards", "70")
            .header_fmt(
                "From",
                format_args!("<{}>;tag={}", call.from_uri, call.local_tag),
            )
            .header_fmt("To", format_args!("<{}>", call.target))
            .header("Call-ID", &call.call_id)
            .header_fmt("CSeq", format_args!("{} CANCEL", call.invite_cseq))
            .header("User-Agent", &self.config.user_agent);
        writer.finish(None, b"");
        // The CANCEL follows its INVITE (same Via, so the same transport).
        call.cancel = Some(ClientNonInvite::new(
            now,
            self.timing,
            call.invite.transport(),
            call.destination,
            cancel,
        ));
        call.cancel_guard = Some(now + self.timing.timeout());
        call.ring_deadline = None;
    }

    fn send_bye(&mut self, now: Instant, id: CallId) {
        let local = self.config.local;
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut bye = Vec::new();
        dialog.write_request(&mut bye, "BYE", local, &branch, &self.config.user_agent);
        let destination = dialog.next_hop().unwrap_or(call.destination);
        let transport = switch_if_large(dialog, self.config.udp_mtu_switch, &mut bye);
        call.auth.start_request();
        call.main_bye = Some(branch.clone());
        call.byes.push((
            branch.clone(),
            ClientNonInvite::new(now, self.timing, transport, destination, bye),
        ));
        call.max_deadline = None;
        self.by_branch.insert(branch, id);
    }

    fn call_timeout(&mut self, now: Instant, id: CallId) {
        self.session_timeout(now, id);
        self.progress_timeout(now, id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let invite_timed_out = call.invite.handle_timeout(now);
        if let Some(cancel) = call.cancel.as_mut() {
            cancel.handle_timeout(now);
        }
        for (_, transaction) in call.byes.iter_mut().chain(call.pracks.iter_mut()) {
            transaction.handle_timeout(now);
        }
        for (_, old) in &mut call.old_invites {
            old.handle_timeout(now);
        }
        let refresh_timed_out = call
            .refresh_invite
            .as_mut()
            .is_some_and(|refresh| refresh.transaction.handle_timeout(now));
        if refresh_timed_out {
            // No answer to our refresh re-INVITE (Timer B): the session is gone, as on 408.
            self.refresh_timed_out(now, id);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let transfer_report = call
            .transfer
            .as_mut()
            .and_then(|transfer| transfer.handle_timeout(now));
        if let Some(report) = transfer_report {
            self.transfer_done(now, id, report);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if invite_timed_out {
            let outcome = match call.cancel_reason {
                Some(CancelReason::Hangup) => call.cancel_outcome(None),
                _ => Outcome {
                    disposition: Disposition::Unreachable,
                    sip_status: None,
                    reason: format!("no response from {} (Timer B)", call.destination),
                },
            };
            self.end(id, outcome);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call
            .silence_deadline
            .is_some_and(|deadline| deadline <= now)
        {
            call.silence_deadline = None;
            let silent = call.invite.state() == crate::sip::transaction::InviteClientState::Calling;
            if silent && !call.ended && call.cancel_reason.is_none() {
                // Nothing, not even 100 Trying: as dead as Timer B, sooner.
                call.invite.terminate();
                let outcome = Outcome {
                    disposition: Disposition::Unreachable,
                    sip_status: None,
                    reason: format!(
                        "no response from {} within {} ms (sip.no_response_timeout_ms)",
                        call.destination,
                        call.no_response_timeout.map_or(0, |t| t.as_millis())
                    ),
                };
                self.end(id, outcome);
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.ring_deadline.is_some_and(|deadline| deadline <= now) {
            call.ring_deadline = None;
            if call.incoming.is_some() {
                // Nobody answered the incoming call in time (control is gone or stuck, or
                // early media lasted too long).
                self.incoming_too_late(now, id);
            } else if !call.ended && call.dialog.is_none() {
                self.request_cancel(now, id, CancelReason::RingTimeout);
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.max_deadline.is_some_and(|deadline| deadline <= now) {
            call.max_deadline = None;
            if call.is_answered() && !call.ended {
                let status = call.final_status;
                self.send_bye(now, id);
                self.end(
                    id,
                    Outcome {
                        disposition: Disposition::Completed,
                        sip_status: status,
                        reason: "max duration reached".to_owned(),
                    },
                );
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.cancel_guard.is_some_and(|deadline| deadline <= now) {
            call.cancel_guard = None;
            if call.invite.state() == crate::sip::transaction::InviteClientState::Proceeding {
                // RFC 3261 §9.1: no final response 64*T1 after CANCEL; destroy the INVITE
                // transaction and consider the call cancelled.
                call.invite.terminate();
            }
            if !call.ended {
                let outcome = call.cancel_outcome(None);
                self.end(id, outcome);
            }
        }
        self.touch(Owner::Call(id));
    }

    fn end(&mut self, id: CallId, outcome: Outcome) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.ended {
            return;
        }
        call.ended = true;
        if let Some(transfer) = call.transfer.as_mut() {
            transfer.abandon();
        }
        call.ring_deadline = None;
        call.max_deadline = None;
        call.cancel_guard = None;
        self.live_calls = self.live_calls.saturating_sub(1);
        self.events.push_back(SipEvent::Ended { call: id, outcome });
    }

    // ----- requests we receive (UAS) -----

    fn handle_request(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        request: &Message<'_>,
    ) {
        let Some(method) = request.method() else {
            return;
        };
        if let Err(error) = request.check_request() {
            if let (true, Some(recovered)) =
                (method != Method::Ack, Recovered::from_message(request))
                && self.pike.allow(now, from.ip())
            {
                self.respond_stateless(transport, from, &recovered, error.status());
            }
            return;
        }
        let key = server_key(request, method);
        if method == Method::Ack {
            let ack_key = invite_ack_key(request);
            let found = self
                .server_keys
                .get(&server_key(request, Method::Invite))
                .or_else(|| self.server_keys.get(&ack_key));
            if let Some(&id) = found {
                let mut acked_call = None;
                if let Some(entry) = self.servers.get_mut(&id) {
                    entry.transaction.handle_ack(now);
                    acked_call = entry.call;
                }
                self.touch(Owner::Server(id));
                if let Some(call) = acked_call {
                    self.incoming_acked(now, call, request.body());
                }
            }
            return;
        }
        if let Some(&id) = self.server_keys.get(&key) {
            if let Some(entry) = self.servers.get_mut(&id) {
                entry.transaction.handle_retransmission();
            }
            self.touch(Owner::Server(id));
            return;
        }
        let Some(recovered) = Recovered::from_message(request) else {
            return;
        };
        // The border: only a peer in one of our dialogs has shown it receives what we send
        // it. Anyone else is answered once per request, statelessly, and never again.
        let verified = self.in_our_dialog(request, method);
        if !verified
            && method == Method::Invite
            && !recovered.to_has_tag()
            && self.inbound_allowed(from.ip())
        {
            self.incoming_invite(now, transport, from, request, &recovered);
            return;
        }
        if !verified
            && method == Method::Invite
            && !recovered.to_has_tag()
            && !self.config.border.answer_stranger_invite
        {
            // No incoming calls: a stranger's INVITE gets nothing at all, not even counted
            // against its limit (nothing is sent, nothing is kept).
            return;
        }
        if !verified && !self.pike.allow(now, from.ip()) {
            return;
        }
        if verified && let Some(call) = self.reoffer_call(request, method) {
            self.reoffer(now, (transport, from), request, &recovered, method, call);
            return;
        }
        let (status, body) = self.answer(now, request, method);
        let to_tag = if recovered.to_has_tag() {
            String::new()
        } else if let Some(tag) = self.canceled_call_tag(request, method) {
            // RFC 3261 §9.2: the 200 to a CANCEL carries the To tag of the INVITE's answer.
            tag
        } else if verified {
            self.random_token()
        } else {
            // Same request, same tag: a retransmission gets the identical answer without
            // any state kept for the stranger (RFC 3261 §8.2.6.2).
            self.stateless_tag(request)
        };
        let mut response = Vec::new();
        let mut writer = recovered.response(&mut response, status, reason_phrase(status), &to_tag);
        if matches!(status, 200 | 405) {
            writer.header("Allow", ALLOW);
        }
        if method == Method::Options && status == 200 {
            writer.header("Accept", "application/sdp");
        }
        if status == 420 {
            writer.header(
                "Unsupported",
                request.header(HeaderName::Require).unwrap_or(""),
            );
        }
        if method == Method::Invite && status == 200 {
            writer.header("Contact", &contact_value(transport, self.config.local));
        }
        if verified
            && status == 200
            && matches!(method, Method::Invite | Method::Other("UPDATE"))
            && let Some(expires) = session_timer::SessionExpires::of(request)
        {
            // RFC 4028 §9: the answer to a refresh confirms the interval and refresher.
            writer
                .header("Session-Expires", &expires.header())
                .header("Require", "timer");
        }
        writer.header("User-Agent", &self.config.user_agent);
        writer.finish(Some("application/sdp"), &body);
        if !verified {
            self.stateless.push_back((transport, from, response));
            return;
        }

        let mut transaction =
            ServerTransaction::new(self.timing, method == Method::Invite, transport, from);
        transaction.respond(now, response, true);
        let id = self.next_server;
        self.next_server += 1;
        let ack_key = (method == Method::Invite).then(|| invite_ack_key(request));
        for key in [Some(&key), ack_key.as_ref()].into_iter().flatten() {
            self.server_keys.insert(key.clone(), id);
        }
        self.servers.insert(
            id,
            ServerEntry {
                keys: [Some(key), ack_key],
                transaction,
                call: None,
            },
        );
        self.touch(Owner::Server(id));
        self.after_notify(now);
    }

    /// The status (and body) for a new request (RFC 3261 §8.2, §12.2.2, §15.1.2).
    fn answer(
        &mut self,
        now: Instant,
        request: &Message<'_>,
        method: Method<'_>,
    ) -> (u16, Vec<u8>) {
        if method != Method::Cancel && request.header(HeaderName::Require).is_some() {
            return (420, Vec::new());
        }
        let in_dialog = request.to().and_then(|to| to.tag()).is_some();
        let dialog_call = request
            .call_id()
            .and_then(|call_id| self.by_call_id.get(call_id).copied())
            .filter(|id| {
                self.calls
                    .get(id)
                    .and_then(|c| c.dialog.as_ref())
                    .is_some_and(|dialog| dialog.matches(request))
            });
        match method {
            Method::Options => (200, Vec::new()),
            Method::Invite if !in_dialog => (404, Vec::new()),
            Method::Invite => match dialog_call {
                Some(id) => {
                    self.refreshed_by(now, id, request);
                    let sdp = self.calls.get(&id).map(|c| c.sdp_offer.clone());
                    (200, sdp.unwrap_or_default())
                }
                None => (481, Vec::new()),
            },
            Method::Bye => match dialog_call {
                Some(id) => {
                    if let Some(dialog) = self.calls.get_mut(&id).and_then(|c| c.dialog.as_mut()) {
                        dialog.accept_remote_cseq(request.cseq().map_or(0, |c| c.number));
                    }
                    let call = self.calls.get(&id);
                    let status = call.and_then(|c| c.final_status);
                    let reason = if call.is_some_and(|c| c.incoming.is_some()) {
                        "caller hung up"
                    } else {
                        "callee hung up"
                    };
                    self.end(
                        id,
                        Outcome {
                            disposition: Disposition::Completed,
                            sip_status: status,
                            reason: reason.to_owned(),
                        },
                    );
                    self.touch(Owner::Call(id));
                    (200, Vec::new())
                }
                None => (481, Vec::new()),
            },
            // An UPDATE without an offer (a session refresh, RFC 3311 §5.2).
            Method::Other("UPDATE") => match dialog_call {
                Some(id) => {
                    self.refreshed_by(now, id, request);
                    (200, Vec::new())
                }
                None => (481, Vec::new()),
            },
            Method::Other("NOTIFY") => match dialog_call {
                Some(id) => (self.on_notify(now, id, request), Vec::new()),
                None => (481, Vec::new()),
            },
            Method::Cancel => match self.server_keys.get(&server_key(request, Method::Invite)) {
                Some(server) => {
                    let call = self.servers.get(server).and_then(|entry| entry.call);
                    if let Some(call) = call {
                        self.incoming_canceled(now, call);
                    }
                    (200, Vec::new())
                }
                None => (481, Vec::new()),
            },
            other if other.is_known() => (405, Vec::new()),
            _ => (501, Vec::new()),
        }
    }

    /// For a CANCEL of an incoming call's INVITE: the To tag the INVITE is answered with.
    fn canceled_call_tag(&self, request: &Message<'_>, method: Method<'_>) -> Option<String> {
        if method != Method::Cancel {
            return None;
        }
        let server = self.server_keys.get(&server_key(request, Method::Invite))?;
        let call = self.servers.get(server)?.call?;
        self.calls.get(&call).map(|c| c.local_tag.clone())
    }

    /// True when `request` belongs to a dialog of one of our calls (or CANCELs a request
    /// that did): its source has shown it can receive what we send it.
    fn in_our_dialog(&self, request: &Message<'_>, method: Method<'_>) -> bool {
        if method == Method::Cancel {
            return self
                .server_keys
                .contains_key(&server_key(request, Method::Invite));
        }
        request
            .call_id()
            .and_then(|call_id| self.by_call_id.get(call_id))
            .and_then(|id| self.calls.get(id))
            .and_then(|call| call.dialog.as_ref())
            .is_some_and(|dialog| dialog.matches(request))
    }

    /// A To-tag derived from the request's transaction identity and this endpoint's
    /// secret, so a stateless answer is identical for every retransmission.
    fn stateless_tag(&self, request: &Message<'_>) -> String {
        let mut hasher = std::hash::DefaultHasher::new();
        self.tag_secret.hash(&mut hasher);
        request.via().and_then(|via| via.branch()).hash(&mut hasher);
        request.call_id().hash(&mut hasher);
        request.from().and_then(|from| from.tag()).hash(&mut hasher);
        request.cseq().map(|cseq| cseq.number).hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn respond_stateless(
        &mut self,
        transport: Transport,
        to: SocketAddr,
        recovered: &Recovered<'_>,
        status: u16,
    ) {
        let tag = self.random_token();
        let mut response = Vec::new();
        let mut writer = recovered.response(&mut response, status, reason_phrase(status), &tag);
        writer.header("User-Agent", &self.config.user_agent);
        writer.finish(None, b"");
        self.stateless.push_back((transport, to, response));
    }

    // ----- bookkeeping -----

    fn owner_exists(&self, owner: Owner) -> bool {
        match owner {
            Owner::Call(id) => self.calls.contains_key(&id),
            Owner::Server(id) => self.servers.contains_key(&id),
            Owner::Registration(id) => self.registrations.contains_key(&id),
        }
    }

    /// After an owner changed: queue it for transmission and re-arm its timer.
    fn touch(&mut self, owner: Owner) {
        // Entries go stale when deadlines move or owners end. When they outnumber the live
        // owners four to one, the heap is rebuilt from each live owner's one current deadline:
        // O(owners) at most once per 3 × owners touches. (Dropping only the dead owners'
        // entries kept a live owner's stale ones, so under load the heap stayed over the bound
        // and was walked on every touch: 24 % of a core at 500 calls/s.)
        let owners = self.calls.len() + self.servers.len() + self.registrations.len();
        if self.timers.len() > 64 + 4 * owners {
            self.rebuild_timers();
        }
        let deadline = match owner {
            Owner::Call(id) => self.calls.get(&id).and_then(Call::next_timeout),
            Owner::Server(id) => self
                .servers
                .get(&id)
                .and_then(|e| e.transaction.poll_timeout()),
            Owner::Registration(id) => self
                .registrations
                .get(&id)
                .and_then(Registration::poll_timeout),
        };
        if let Some(deadline) = deadline {
            self.timers.push(Reverse((deadline, owner)));
        }
        if self.ready.back() != Some(&owner) {
            self.ready.push_back(owner);
        }
    }

    /// The timer heap anew: one entry per live owner that has a deadline.
    fn rebuild_timers(&mut self) {
        let mut entries = std::mem::take(&mut self.timers).into_vec();
        entries.clear();
        entries.extend(self.calls.iter().filter_map(|(id, call)| {
            call.next_timeout()
                .map(|deadline| Reverse((deadline, Owner::Call(*id))))
        }));
        entries.extend(self.servers.iter().filter_map(|(id, server)| {
            server
                .transaction
                .poll_timeout()
                .map(|deadline| Reverse((deadline, Owner::Server(*id))))
        }));
        entries.extend(self.registrations.iter().filter_map(|(id, registration)| {
            registration
                .poll_timeout()
                .map(|deadline| Reverse((deadline, Owner::Registration(*id))))
        }));
        self.timers = BinaryHeap::from(entries);
    }

    /// Drops a call whose transactions are all done, or a terminated server transaction.
    fn forget_if_finished(&mut self, owner: Owner) {
        match owner {
            // A registration lasts as long as the endpoint.
            Owner::Registration(_) => {}
            Owner::Call(id) => {
                if !self.calls.get(&id).is_some_and(Call::is_finished) {
                    return;
                }
                if let Some(call) = self.calls.remove(&id) {
                    self.by_branch.remove(&call.invite_branch);
                    let byes = call.byes.iter().map(|(branch, _)| branch);
                    for branch in byes.chain(call.old_invites.iter().map(|(branch, _)| branch)) {
                        self.by_branch.remove(branch);
                    }
                    if let Some(transfer) = &call.transfer {
                        self.by_branch.remove(transfer.branch());
                    }
                    for (branch, _) in &call.pracks {
                        self.by_branch.remove(branch);
                    }
                    self.by_call_id.remove(&call.call_id);
                }
            }
            Owner::Server(id) => {
                let terminated = self.servers.get(&id).is_some_and(|e| {
                    e.transaction.state() == crate::sip::transaction::ServerState::Terminated
                });
                if !terminated {
                    return;
                }
                if let Some(entry) = self.servers.remove(&id) {
                    for key in entry.keys.iter().flatten() {
                        if self.server_keys.get(key) == Some(&id) {
                            self.server_keys.remove(key);
                        }
                    }
                }
            }
        }
    }

    fn random_token(&mut self) -> String {
        random_token(&mut self.rng)
    }
}

/// The top Via we send: `SIP/2.0/<transport> <local>;branch=<branch>;rport`.
pub(super) fn via_value(transport: Transport, local: SocketAddr, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {local};branch={branch};rport",
        transport.via_token()
    )
}

/// Our Contact: `<sip:outdial@<local>>`, with `;transport=` when it is not UDP (so the
/// peer's requests in the dialog come over the same transport).
pub(super) fn contact_value(transport: Transport, local: SocketAddr) -> String {
    match transport {
        Transport::Udp => format!("<sip:outdial@{local}>"),
        other => format!("<sip:outdial@{local};transport={}>", other.uri_param()),
    }
}

/// RFC 3261 §18.1.1: a request bound for UDP and larger than `mtu_switch` bytes goes over
/// TCP, unless its URI named `;transport=udp` (`named`). The top Via (the first header we
/// write) is rewritten in place: `UDP` and `TCP` are the same length, so the size, and the
/// decision, do not change. Returns the transport to send on.
pub(super) fn switch_transport(
    transport: Transport,
    named: bool,
    mtu_switch: usize,
    request: &mut [u8],
) -> Transport {
    if transport != Transport::Udp || named || request.len() <= mtu_switch {
        return transport;
    }
    const VIA: &[u8] = b"\r\nVia: SIP/2.0/UDP ";
    if let Some(at) = request.windows(VIA.len()).position(|w| w == VIA) {
        let token = at + VIA.len() - 4;
        request[token..token + 3].copy_from_slice(b"TCP");
    }
    Transport::Tcp
}

/// [`switch_transport`] for an in-dialog request of `dialog`.
pub(super) fn switch_if_large(dialog: &Dialog, mtu_switch: usize, request: &mut [u8]) -> Transport {
    let (transport, named) = dialog.next_hop_transport();
    switch_transport(transport, named, mtu_switch, request)
}

fn random_token(rng: &mut SmallRng) -> String {
    format!("{:016x}", rng.random::<u64>())
}

/// Keeps the first final status of a call.
fn call_final_status(call: Option<&mut Call>, status: u16) {
    if let Some(call) = call {
        call.final_status.get_or_insert(status);
    }
}

fn state_is_answered(call: Option<&Call>) -> bool {
    call.is_some_and(Call::is_answered)
}

fn state_status(call: Option<&Call>) -> Option<u16> {
    call.and_then(|call| call.final_status)
}

/// Server transaction key (RFC 3261 §17.2.3): branch and method, or for RFC 2543 peers
/// without the magic cookie, Call-ID, CSeq number, From tag and method.
fn server_key(request: &Message<'_>, method: Method<'_>) -> String {
    let method = if method == Method::Ack {
        Method::Invite
    } else {
        method
    };
    match request
        .via()
        .and_then(|via| via.branch())
        .filter(|b| b.starts_with("z9hG4bK"))
    {
        Some(branch) => format!("{branch}|{method}"),
        None => format!(
            "2543|{}|{}|{}|{method}",
            request.call_id().unwrap_or(""),
            request.cseq().map_or(0, |c| c.number),
            request.from().and_then(|f| f.tag()).unwrap_or("")
        ),
    }
}

/// Finds the INVITE server transaction an ACK for a 2xx belongs to (the ACK has a new
/// branch, RFC 3261 §13.2.2.4): Call-ID and CSeq number.
fn invite_ack_key(request: &Message<'_>) -> String {
    format!(
        "ack|{}|{}",
        request.call_id().unwrap_or(""),
        request.cseq().map_or(0, |c| c.number)
    )
}

#[cfg(test)]
mod timer_heap_tests {
    use super::*;

    fn endpoint() -> Endpoint {
        let config = SipConfig {
            local: "192.0.2.1:5060".parse().expect("address"),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            user_agent: "outdial-test".into(),
            border: BorderConfig::default(),
            inbound_sources: Vec::new(),
            core: 0,
            max_calls: usize::MAX,
            session_expires: None,
            udp_mtu_switch: UDP_MTU_SWITCH,
        };
        Endpoint::new(config, 7)
    }

    /// A plain dial of `target` over `transport`.
    fn params(target: &str, transport: Transport) -> DialParams<'_> {
        DialParams {
            target,
            destination: None,
            from: "sip:outdial@192.0.2.1",
            sdp_offer: b"v=0\r\n",
            ring_timeout: Duration::from_secs(30),
            max_duration: Duration::from_secs(3600),
            credentials: None,
            asserted_identity: None,
            privacy: None,
            no_response_timeout: None,
            transport,
        }
    }

    #[test]
    fn the_stream_peers_in_use_are_those_uses_stream_peer_names() {
        let mut endpoint = endpoint();
        let now = Instant::now();
        let targets = [
            ("sip:+15550001@192.0.2.4:5070", Transport::Tcp),
            ("sip:+15550002@192.0.2.5:5070", Transport::Tcp),
            ("sip:+15550003@192.0.2.6:5070", Transport::Udp),
        ];
        for (id, (target, transport)) in targets.into_iter().enumerate() {
            endpoint
                .dial(now, CallId(id as u64), &params(target, transport))
                .expect("dials");
        }
        let in_use = endpoint.stream_peers_in_use();
        let at = |host: u8| SocketAddr::from(([192, 0, 2, host], 5070));
        for transport in [Transport::Tcp, Transport::Udp, Transport::Tls] {
            for host in 3..8 {
                assert_eq!(
                    in_use.contains(&(transport, at(host))),
                    endpoint.uses_stream_peer(transport, at(host)),
                    "{transport} {}",
                    at(host)
                );
            }
        }
        assert!(in_use.contains(&(Transport::Tcp, at(4))));
        assert!(in_use.contains(&(Transport::Udp, at(6))));
        assert!(!in_use.contains(&(Transport::Tcp, at(6))));
        assert_eq!(in_use.len(), 3);
    }

    #[test]
    fn stale_deadlines_of_live_calls_are_dropped_and_the_heap_stays_bounded() {
        let mut endpoint = endpoint();
        let now = Instant::now();
        let params = params("sip:+15550001@192.0.2.4:5070", Transport::Udp);
        for id in 0..10 {
            endpoint.dial(now, CallId(id), &params).expect("dials");
        }
        // Every touch of a live call leaves its previous deadline behind in the heap.
        for round in 0..10_000u64 {
            endpoint.touch(Owner::Call(CallId(round % 10)));
            assert!(
                endpoint.timers.len() <= 64 + 4 * 10 + 1,
                "{} entries for 10 calls after {round} touches",
                endpoint.timers.len()
            );
        }
        // Every live call still has its deadline.
        endpoint.rebuild_timers();
        assert_eq!(endpoint.timers.len(), 10);
        assert!(endpoint.poll_timeout().is_some_and(|t| t > now));
    }
}
