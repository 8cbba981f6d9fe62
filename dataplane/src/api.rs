//! What crosses between the control plane and a dataplane core.
//!
//! Control sends [`Command`]s to a core; the core answers with [`Event`]s. Both travel
//! through bounded lock-free queues (see [`crate::Dataplane`]); nothing here locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::rtp::MediaStats;
pub use crate::rtp::amd::{AmdConfig, AmdEvent, AnsweredBy};
pub use crate::sip::Transport;
pub use crate::sip::auth::Credentials;

/// Identifies one call across control and dataplane. Control assigns outbound calls' ids
/// (counting up from 1); a core assigns an incoming call's id itself, with
/// [`CallId::INBOUND`] set and the core's index in bits 40..63 ([`CallId::inbound`]).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct CallId(pub u64);

impl CallId {
    /// The bit that marks an id a core chose for an incoming call.
    pub const INBOUND: u64 = 1 << 63;

    /// The `n`th incoming call on `core`.
    pub fn inbound(core: usize, n: u64) -> Self {
        Self(Self::INBOUND | ((core as u64 & 0x7f_ffff) << 40) | (n & 0xff_ffff_ffff))
    }

    /// For an incoming call's id, the core that chose it.
    pub fn inbound_core(self) -> Option<usize> {
        (self.0 & Self::INBOUND != 0).then_some(((self.0 >> 40) & 0x7f_ffff) as usize)
    }
}

/// Linear 16-bit PCM at 8,000 Hz, mono: the one audio format control hands to a core.
/// The core encodes it to the negotiated G.711 law when it packetises.
pub type Pcm8k = Arc<[i16]>;

/// A request to place one outbound call.
#[derive(Clone, Debug)]
pub struct Dial {
    /// The call this dial belongs to.
    pub call: CallId,
    /// Request-URI to dial, e.g. `sip:+15550001@127.0.0.1:5070`.
    pub target: String,
    /// Where to send the INVITE when the target's host is a name that control resolved
    /// (the core does no DNS); `None` = the target's IP address and port.
    pub destination: Option<SocketAddr>,
    /// From URI, e.g. `sip:outdial@127.0.0.1`.
    pub from: String,
    /// Time from sending the INVITE to giving up with CANCEL (status `no-answer`).
    pub ring_timeout: Duration,
    /// Hard limit on an answered call's length; the core sends BYE when it passes.
    pub max_duration: Duration,
    /// Symmetric RTP latching for a callee behind NAT (`docs/sip.md`, "Media source"):
    /// hear (and send to) the first source on the signalling peer's IP that sends
    /// well-formed RTP of a negotiated payload type. Off: only the SDP's address and port.
    pub media_latching: bool,
    /// Digest credentials answering 401/407 to the INVITE and BYE (the trunk's); its
    /// `Debug` hides them.
    pub credentials: Option<Credentials>,
    /// `P-Asserted-Identity` URI (RFC 3325), e.g. `sip:+15550100@carrier.example`.
    pub asserted_identity: Option<String>,
    /// `Privacy` header value (RFC 3323), e.g. `id` or `none`.
    pub privacy: Option<String>,
    /// Answering-machine detection on the callee's audio from the answer
    /// ([`Event::MachineDetection`]); `None` = off.
    pub machine_detection: Option<AmdConfig>,
    /// Give up (as [`Disposition::Unreachable`]) when nothing at all, not even `100
    /// Trying`, answers the INVITE this long; `None` = wait for Timer B (64·T1).
    pub no_response_timeout: Option<Duration>,
    /// The transport of the INVITE and its dialog, unless the target's `;transport=` names
    /// one (the trunk's `transport`).
    pub transport: Transport,
    /// For [`Transport::Tls`]: whom to trust and the name the server's certificate must
    /// carry (the trunk's TLS settings). A TLS dial without it fails at once.
    pub tls: Option<TlsClient>,
}

/// A trunk's TLS client settings, shared by every connection to it.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// Built once per trunk (`sip::tls::client_config`).
    pub config: Arc<rustls::ClientConfig>,
    /// The name (or IP literal) the server's certificate must carry.
    pub server_name: String,
}

/// A registration to keep alive (RFC 3261 §10.2): a trunk's address-of-record bound to this
/// core's SIP address.
#[derive(Clone, Debug)]
pub struct Register {
    /// Chosen by control; echoed in [`Event::Registration`]. A new `Register` with the same
    /// id replaces the old one.
    pub id: u32,
    /// Request-URI, e.g. `sip:carrier.example`.
    pub registrar: String,
    /// The address-of-record, e.g. `sip:acct-1234@carrier.example`.
    pub aor: String,
    /// The user part of our Contact (`sip:<user>@<this core's address>`).
    pub contact_user: String,
    /// Where the REGISTERs go.
    pub destination: SocketAddr,
    /// The registrar's other addresses (RFC 3263), best first: a REGISTER that gets no
    /// response or a 503 is sent to the next one at once, before any retry delay.
    pub alternatives: Vec<SocketAddr>,
    /// The binding lifetime asked for.
    pub expires: Duration,
    /// Digest credentials (its `Debug` hides them).
    pub credentials: Option<Credentials>,
}

/// Control → core.
#[derive(Clone, Debug)]
pub enum Command {
    /// Place a call.
    Dial(Box<Dial>),
    /// Answer an incoming call ([`Event::Incoming`]) with 200 OK and our SDP answer. Media
    /// starts when the caller's ACK arrives ([`Event::Answered`]).
    Answer {
        /// The incoming call.
        call: CallId,
        /// Hard limit on the call's length; the core sends BYE when it passes.
        max_duration: Duration,
        /// Symmetric RTP latching for a caller behind NAT, as [`Dial::media_latching`].
        media_latching: bool,
    },
    /// Start early media on an incoming call ([`Event::Incoming`]) before answering it:
    /// `183 Session Progress` with our SDP answer, and the call's media at once (prompts
    /// play, keys are heard), reported by [`Event::EarlyMedia`]. A later
    /// [`Command::Answer`] sends the 200 OK with the same SDP; a [`Command::Hangup`] before
    /// it refuses the call `480`. A caller whose INVITE requires 100rel or has no offer
    /// gets no 183: the call is answered at once instead, as by [`Command::Answer`].
    EarlyMedia {
        /// The incoming call.
        call: CallId,
        /// As [`Command::Answer`]'s, for a call answered at once instead.
        max_duration: Duration,
        /// Symmetric RTP latching for a caller behind NAT, as [`Dial::media_latching`].
        media_latching: bool,
    },
    /// Refuse an incoming call with a final error response (e.g. 404, 486, 503). Ends with
    /// [`Event::Ended`].
    Reject {
        /// The incoming call.
        call: CallId,
        /// 400–699.
        status: u16,
        /// `Retry-After` in seconds (RFC 3261 §20.33), for 503 and 486.
        retry_after: Option<u32>,
    },
    /// Register with a registrar and keep the binding refreshed; reports
    /// [`Event::Registration`] after every attempt.
    Register(Box<Register>),
    /// Remove registration `id`'s binding (`Expires: 0`) and stop refreshing it; reports
    /// [`Event::Unregistered`]. Sent at shutdown.
    Unregister {
        /// The id given in [`Command::Register`].
        id: u32,
    },
    /// Queue audio to play on an answered call, after whatever is queued already.
    Play {
        /// The call.
        call: CallId,
        /// Chosen by control; echoed in [`Event::PlaybackDone`].
        id: u32,
        /// The audio.
        audio: Pcm8k,
        /// Whether a DTMF key pressed during this item stops it and flushes the rest of the queue.
        bargein: bool,
        /// The call's barge-in count when the application issued this prompt (see
        /// [`Event::BargeIn`]). A prompt older than the core's count was overtaken by a
        /// barge-in on its way here: the core drops it and reports it interrupted.
        epoch: u32,
    },
    /// Stop what is playing and drop everything queued.
    StopPlayback {
        /// The call.
        call: CallId,
    },
    /// End the call: CANCEL before answer, BYE after. Ends with [`Event::Ended`].
    Hangup {
        /// The call.
        call: CallId,
    },
    /// Record the callee (VoiceXML `<record>`): optionally a beep, then received audio until
    /// one of the bounds ends it (see [`crate::rtp::record`]). Ends with [`Event::Recorded`],
    /// sent before [`Event::Ended`] when the call ends first. A recording in progress ends
    /// (as stopped) before a new one starts.
    Record {
        /// The call.
        call: CallId,
        /// Chosen by control; echoed in [`Event::Recorded`].
        id: u32,
        /// Longest recording (at most [`crate::rtp::record::MAX_RECORD_TIME`]).
        max_time: Duration,
        /// Silence after sound that ends the recording.
        final_silence: Duration,
        /// No sound at all for this long ends the recording as silent.
        no_input: Duration,
        /// Any DTMF key ends the recording, as its `termchar` (it is not reported as a key).
        dtmfterm: bool,
        /// Play a short beep (1 kHz, 200 ms) first; capture starts when it ends.
        beep: bool,
    },
    /// End the recording `id` now, keeping what it captured.
    StopRecording {
        /// The call.
        call: CallId,
        /// The recording's id.
        id: u32,
    },
    /// Listen for one utterance (a VoiceXML field with a voice grammar): voice activity
    /// detection on received audio (see [`crate::rtp::listen`]) reports
    /// [`Event::SpeechStarted`], then [`Event::Utterance`] with the audio. A listen in
    /// progress is dropped. A call without media (not answered, no early media) hears
    /// nothing: the application's noinput timeout ends the wait.
    Listen {
        /// The call.
        call: CallId,
        /// Chosen by control; echoed in the events.
        id: u32,
        /// Longest speech (`maxspeechtimeout`; at most [`crate::rtp::listen::MAX_SPEECH`]).
        max_speech: Duration,
        /// Silence after speech that ends the utterance (`completetimeout`).
        end_silence: Duration,
        /// `bargeintype="hotword"`: speech is heard over every prompt (hotword prompts are
        /// sent without barge-in) and stops none; control stops them on a grammar match.
        /// Otherwise the start of speech stops a prompt that allows barge-in, as a key does,
        /// and speech over one that does not is not heard.
        hotword: bool,
    },
    /// Stop listening `id`; nothing more is reported for it.
    StopListening {
        /// The call.
        call: CallId,
        /// The listen's id.
        id: u32,
    },
    /// Transfer the callee elsewhere (VoiceXML `<transfer>`). Ends with
    /// [`Event::TransferDone`]; when the call ends first, [`Event::Ended`] is the answer.
    Transfer {
        /// The call (answered).
        call: CallId,
        /// Chosen by control; echoed in [`Event::TransferDone`].
        id: u32,
        /// Where to send the callee: a `sip:`, `sips:` or `tel:` URI.
        target: String,
        /// How the transfer connects.
        kind: TransferKind,
        /// How long the target may take to answer before the outcome is `NoAnswer`.
        connect_timeout: Duration,
    },
}

/// How a [`Command::Transfer`] connects the callee to its target.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TransferKind {
    /// Blind transfer (RFC 3515 REFER in the call's dialog): the callee calls the target
    /// itself and reports progress in NOTIFYs; once the target answers, our leg ends with
    /// BYE. Bridged transfers are not offered by the core yet.
    Blind,
}

/// How a transfer attempt ended (the target's answer, as reported by the callee).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TransferOutcome {
    /// The target answered: the callee is with it now and our leg is being ended.
    Transferred,
    /// The target was busy (486, 600).
    Busy,
    /// The target did not answer (408, 480, 487, or no final report within the connect timeout).
    NoAnswer,
    /// The network could not reach the target (503).
    NetworkBusy,
    /// Any other failure the callee reported, or none at all.
    Unknown,
}

/// Why a transfer could not be attempted: the callee (or the core) refused it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum TransferError {
    /// The callee answered the REFER with this failure status (e.g. 403, 405, 501).
    #[error("the callee refused the transfer (REFER answered {status})")]
    Refused {
        /// The REFER's final status.
        status: u16,
    },
    /// The REFER got no final response (RFC 3261 Timer F).
    #[error("the callee never answered the REFER (Timer F); check that it supports REFER")]
    NoResponse,
    /// The target is not a usable URI.
    #[error("the transfer target is not a URI; write it as sip:user@host or tel:+number")]
    BadDestination,
    /// The call is not answered, or is already ending.
    #[error("the call is not answered or is already ending: nothing to transfer")]
    NotConnected,
    /// A transfer is already in progress on this call.
    #[error("a transfer is already in progress on this call; wait for its outcome")]
    InProgress,
}

/// An INVITE from an allowed source (`sip.inbound_sources`, or a registrar we register
/// with): a new incoming call, answered `100 Trying` and waiting for control's
/// [`Command::Answer`] or [`Command::Reject`].
#[derive(Clone, Debug)]
pub struct IncomingCall {
    /// The id the core gave it ([`CallId::inbound`]).
    pub call: CallId,
    /// The INVITE's Request-URI, e.g. `sip:+15550100@198.51.100.7`.
    pub request_uri: String,
    /// The caller's From URI.
    pub from: String,
    /// The To URI (who was called).
    pub to: String,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// The INVITE's Call-ID.
    pub sip_call_id: String,
    /// The codec our answer will choose from the caller's offer (PCMU, our offer's first,
    /// for an INVITE without an offer: [`Event::Answered`] has the one the caller chose).
    pub codec: Codec,
}

/// Core → control.
#[derive(Clone, Debug)]
pub enum Event {
    /// A new incoming call (not a reply to anything control sent).
    Incoming(Box<IncomingCall>),
    /// A [`Command::Register`] attempt ended (not a call's event).
    Registration {
        /// The id given in [`Command::Register`].
        id: u32,
        /// Bound for this long; `None` when the attempt failed.
        expires: Option<Duration>,
        /// The final status of the REGISTER, when one came.
        sip_status: Option<u16>,
        /// What happened, e.g. `registered for 600 s` or `403 Forbidden; retry in 30 s`.
        detail: String,
    },
    /// A [`Command::Unregister`] ended: the binding is gone, or removing it failed (a
    /// non-2xx status, or none). Nothing more is sent for the registration.
    Unregistered {
        /// The id given in [`Command::Register`].
        id: u32,
        /// The final status of the REGISTER, when one came.
        sip_status: Option<u16>,
        /// What happened, e.g. `200 OK`.
        detail: String,
    },
    /// A provisional response (180/183) arrived.
    Ringing {
        /// The call.
        call: CallId,
    },
    /// A provisional response (183 Session Progress) brought an SDP answer before the
    /// answer: the call's media runs from now (prompts play, keys and recordings are heard).
    /// Once per call, after `Ringing`; `Answered` still follows at the 200 OK. For an
    /// incoming call: our 183 went after [`Command::EarlyMedia`] (no `Ringing` before it),
    /// and `Answered` follows the caller's ACK of our later 200.
    EarlyMedia {
        /// The call.
        call: CallId,
        /// Codec chosen from the early answer (kept at the 200 unless its SDP changes it).
        codec: Codec,
        /// The call's SIP Call-ID (for records and logs).
        sip_call_id: Option<String>,
    },
    /// 200 OK arrived, ACK sent, media negotiated (or kept from early media).
    Answered {
        /// The call.
        call: CallId,
        /// Codec chosen from the answer.
        codec: Codec,
        /// The call's SIP Call-ID (for records and logs).
        sip_call_id: Option<String>,
    },
    /// A key stopped a barge-in prompt and flushed the queue; `epoch` is the call's barge-in
    /// count after it. Sent before the `PlaybackDone` and `Dtmf` events the key caused.
    BargeIn {
        /// The call.
        call: CallId,
        /// Barge-ins on this call so far.
        epoch: u32,
    },
    /// A DTMF key: `0-9 * # A-D`.
    Dtmf {
        /// The call.
        call: CallId,
        /// The key.
        digit: char,
    },
    /// A queued [`Command::Play`] item finished or was dropped.
    PlaybackDone {
        /// The call.
        call: CallId,
        /// The id given in [`Command::Play`].
        id: u32,
        /// True when barge-in, [`Command::StopPlayback`] or hangup cut it short.
        interrupted: bool,
        /// Samples of the audio sent before it ended (all of them when it played out; 0 when
        /// it was dropped unplayed): where an interrupted prompt stopped, for VoiceXML 2.1
        /// `<mark>` reporting.
        played: usize,
    },
    /// A [`Command::Record`] recording ended. A call that is not answered (or no longer
    /// is) answers at once with an empty, silent recording.
    Recorded {
        /// The call.
        call: CallId,
        /// The id given in [`Command::Record`].
        id: u32,
        /// The recording: linear PCM16, 8 kHz, mono.
        pcm: Vec<i16>,
        /// The key that ended it (`dtmfterm`).
        termchar: Option<char>,
        /// Whether `max_time` ended it.
        maxtime: bool,
        /// Whether the callee made no sound (nothing above the sound level).
        silent: bool,
    },
    /// The callee started speaking during [`Command::Listen`] `id`. When the speech stopped a
    /// barge-in prompt, [`Event::BargeIn`] and its `PlaybackDone` events came first.
    SpeechStarted {
        /// The call.
        call: CallId,
        /// The listen's id.
        id: u32,
    },
    /// The utterance [`Command::Listen`] `id` waited for is over.
    Utterance {
        /// The call.
        call: CallId,
        /// The listen's id.
        id: u32,
        /// Linear PCM16, 8 kHz, mono: about 300 ms before the speech started, the speech,
        /// and the silence that ended it.
        pcm: Vec<i16>,
        /// Whether `max_speech` cut it.
        max_speech: bool,
    },
    /// A [`Command::Transfer`] ended. A successful blind transfer is followed by
    /// [`Event::Ended`] (we hang up our leg).
    TransferDone {
        /// The call.
        call: CallId,
        /// The id given in [`Command::Transfer`].
        id: u32,
        /// The outcome, or why no transfer was attempted.
        result: Result<TransferOutcome, TransferError>,
        /// What happened, for logs and error messages, e.g. `NOTIFY sipfrag 486 Busy Here`.
        detail: String,
    },
    /// The first RTP datagram of an answered call dropped for its source (another address
    /// than the callee's SDP named, or than the source the call latched to). Sent once per
    /// call; the rest are counted in [`Event::Ended`]'s `media`.
    MediaSourceRefused {
        /// The call.
        call: CallId,
        /// Where the datagram came from.
        from: SocketAddr,
    },
    /// Answering-machine detection ([`Dial::machine_detection`]) classified the answer, or
    /// heard (or stopped waiting for) a machine's beep.
    MachineDetection {
        /// The call.
        call: CallId,
        /// What it found.
        event: AmdEvent,
    },
    /// The call is over; the last event for this call.
    Ended {
        /// The call.
        call: CallId,
        /// How it ended.
        outcome: Outcome,
        /// The call's SIP Call-ID; `None` when no INVITE was ever sent.
        sip_call_id: Option<String>,
        /// The call's RTP counters; `None` when it was never answered.
        media: Option<MediaStats>,
        /// For an INVITE ended by a 3xx: its first Contact, where the callee says to go
        /// (control decides whether to follow it).
        redirect: Option<Box<str>>,
    },
}

/// Audio codec negotiated for a call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
}

/// How a call ended.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Outcome {
    /// Classification.
    pub disposition: Disposition,
    /// Final SIP status of the INVITE, when one arrived.
    pub sip_status: Option<u16>,
    /// Human-readable detail, e.g. `486 Busy Here` or `no response to INVITE (Timer B)`.
    pub reason: String,
}

/// Classification of a call's end.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Disposition {
    /// Answered, then hung up by either side.
    Completed,
    /// 486 or 600.
    Busy,
    /// Rang past the ring timeout (we sent CANCEL), or 408/480.
    NoAnswer,
    /// Any other final failure: 4xx-6xx, bad SDP.
    Failed,
    /// Nothing answered the INVITE: no response at all (Timer B, or the no-response
    /// timeout of [`Dial::no_response_timeout`]) or an ICMP error. Another address of the
    /// same trunk may work (RFC 3263 §4.3).
    Unreachable,
    /// Control hung up before answer.
    Canceled,
    /// The peer demanded digest authentication (401/407) and refused or could not be
    /// given credentials (none configured, refused, unsupported challenge).
    AuthFailed,
}
