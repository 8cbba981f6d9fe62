//! One call's VoiceXML session: the sans-IO boundary between the platform and the interpreter.
//!
//! The platform feeds [`Input`]s and timeouts in, and drains [`Action`]s until
//! [`Session::poll_action`] returns `None`; [`Session::poll_timeout`] says when to call
//! [`Session::handle_timeout`]. Nothing here reads a clock, opens a socket or spawns a thread.
//!
//! Playback model: `Play` actions are queued and the platform plays them in order, reporting
//! each with `PlaybackDone`. When the caller presses a key during a prompt with barge-in, the
//! key counts as input and the platform stops that prompt and every queued barge-in prompt
//! (reporting them `interrupted`). Keys pressed during a prompt without barge-in are discarded
//! (VoiceXML 2.0 §4.1.5). Keys pressed while no field is collecting are kept as typeahead.
//!
//! Collection (VoiceXML 2.0 Appendix D): the `timeout` (noinput) timer starts when the last
//! queued prompt has been reported done, or at once if none is playing. Keys are collected
//! until `termchar`, until the grammar cannot take more (e.g. `maxlength`), or until
//! `interdigittimeout` passes after the last key.
//!
//! `<submit>`: the response body is the next document. An empty (or all-whitespace) 2xx body
//! ends the session normally with [`SessionEnd::Exit`] (no value): a submit-and-hang-up server has nothing more
//! to say, and treating that as `error.badfetch` would report a failure for a finished call.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use url::Url;

use crate::document::DocumentCache;
use crate::document::cache::GrammarCache;
use crate::event::names;
use crate::fia::Interp;
use crate::fia::grammars::{self, DtmfOutcome, Mode, SemValue};
pub use crate::fia::platform::SpeechTiming;
use crate::fia::platform::{Collect, Collected, MarkPosition, Output, Platform, Request, Response};
use crate::prompt::Prompt;
use crate::script::{DataModel, LazyModel, Meter, Scope, ScriptError, ScriptLimits, Value};

/// Most keys kept as typeahead or collected for one field.
const MAX_KEYS: usize = 128;

/// How a session starts.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The initial document.
    pub url: String,
    /// Request variables: name and JSON text. Each becomes `session.<name>` and resolves
    /// unqualified.
    pub vars: Vec<(String, String)>,
    /// Our SIP URI (`session.connection.local.uri`).
    pub local_uri: String,
    /// The callee's SIP URI (`session.connection.remote.uri`).
    pub remote_uri: String,
    /// Who answered, when the platform classified the answer (answering-machine detection):
    /// `session.connection.outdial.answered_by` (`human`, `machine` or `unknown`); the object
    /// `session.connection.outdial` exists only when this is set.
    pub answered_by: Option<String>,
    /// Resource limits.
    pub limits: Limits,
}

/// Resource limits of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Interrupt checks one expression or script may use (each about 10,000 ECMAScript
    /// operations) before it is stopped with `error.semantic`.
    pub script_budget: u32,
    /// Interrupt checks all the session's scripts together may use over the whole call; past
    /// it the session ends with `error.semantic` naming this budget (a runaway script that a
    /// `<catch>` restarts again and again).
    pub call_script_budget: u32,
    /// Bytes the ECMAScript heap may use.
    pub script_memory_bytes: usize,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Most dialog steps (transitions, events, form items) between two waits for the caller.
    pub max_goto_chain: u32,
    /// Most fetches (documents, submits, scripts, data, grammars) in the whole session; later
    /// ones fail with `error.badfetch` naming this limit.
    pub max_fetches: u32,
    /// Most characters of text one prompt may speak (its text, SSML words and audio fallback
    /// text); a longer prompt throws `error.noresource` naming this limit.
    pub max_prompt_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            script_budget: 200,
            call_script_budget: DEFAULT_CALL_SCRIPT_BUDGET,
            script_memory_bytes: 1 << 20,
            max_document_bytes: 1 << 20,
            max_goto_chain: 1000,
            max_fetches: DEFAULT_MAX_FETCHES,
            max_prompt_chars: DEFAULT_MAX_PROMPT_CHARS,
        }
    }
}

/// The default [`Limits::call_script_budget`]: 2,000 interrupt checks, about 2 s of one
/// CPU for a tight loop (a release build on the 2-core reference machine); ten times what one
/// script may use.
pub const DEFAULT_CALL_SCRIPT_BUDGET: u32 = 2_000;

/// The default [`Limits::max_fetches`]: an hour-long call fetching every ten seconds.
pub const DEFAULT_MAX_FETCHES: u32 = 360;

/// The default [`Limits::max_prompt_chars`]: about twenty minutes of speech, far beyond any
/// prompt written to be heard, and what text-to-speech renders within its time limit.
pub const DEFAULT_MAX_PROMPT_CHARS: usize = 20_000;

/// Identifies a fetch so its result can be matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchId(pub u32);

/// HTTP method of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// What the session asks the platform to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Fetch a resource: a document (initial, `<goto>`, `<subdialog>`), a `<submit>`, a
    /// `<script src>`, a `<data src>` or an external grammar.
    Fetch(Fetch),
    /// Play one prompt (queued; the platform plays Play actions in order).
    Play {
        /// Echoed in [`Input::PlaybackDone`].
        id: u32,
        /// The prompt.
        prompt: Prompt,
    },
    /// The session now waits for caller input (informational: the session owns the timers).
    /// A scripted caller answers this; a telephony platform may ignore it.
    Listen(Listen),
    /// Record the caller (`<record>`). Emitted once every queued Play has been reported done;
    /// answered with [`Input::Recorded`].
    Record(RecordRequest),
    /// Transfer the caller (`<transfer>`); answered with [`Input::TransferDone`].
    Transfer(TransferRequest),
    /// `<disconnect>`: hang up the call now. Emitted once every Play queued before the
    /// `<disconnect>` has been reported done, so the caller hears the goodbye. The session goes
    /// on (it handles `connection.disconnect.hangup`, may still submit) and ends later with
    /// `End`.
    Disconnect {
        /// `<disconnect namelist>` values (VoiceXML 2.1) for the platform.
        values: Vec<(String, String)>,
    },
    /// Stop what is playing and drop every queued Play, reporting each with
    /// [`Input::PlaybackDone`] `interrupted` (preceded by [`Input::MarkReached`] where a mark
    /// was passed). Emitted when input matched a grammar during a `bargeintype="hotword"`
    /// prompt (VoiceXML 2.0 §4.1.5.1): such a prompt is sent without barge-in because only the
    /// interpreter can tell a match from other input.
    StopPlayback,
    /// Caller input the session consumed, and what it matched: keys collected for a field
    /// (typed ahead ones too) or an utterance. Informational (a transcript shows it); the
    /// input may be private (a PIN), so a platform should not log it at info level.
    Heard(Heard),
    /// Log from `<log>` (label, text), or an interpreter warning (label `vxml.warning`).
    Log {
        /// `label`.
        label: Option<String>,
        /// Text.
        text: String,
    },
    /// The session is over; nothing follows. Emitted only after every Play has been reported
    /// done (at once after a hangup).
    End(SessionEnd),
}

/// Input consumed by the session ([`Action::Heard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// `dtmf` or `voice`.
    pub mode: &'static str,
    /// The keys or words.
    pub input: String,
    /// The keys were pressed before the field asked (typeahead, VoiceXML 2.0 §4.1.8).
    pub typeahead: bool,
    /// What they matched (the interpretation as text), or `None`: no match.
    pub matched: Option<String>,
}

/// What a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPurpose {
    /// A VoiceXML document (initial, `<goto>`, `<subdialog>`, application root).
    Document,
    /// A `<submit>`: the response is the next document; an empty 2xx body ends the session.
    Submit,
    /// A `<script src>`.
    Script,
    /// A `<data src>` (XML).
    Data,
    /// An external grammar.
    Grammar,
}

/// How `<submit>`/`<subdialog>` values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enctype {
    /// `application/x-www-form-urlencoded` (the default).
    UrlEncoded,
    /// `multipart/form-data` (required to submit recordings).
    Multipart,
}

/// One fetch the session asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    /// Echoed in [`Input::Fetched`].
    pub id: FetchId,
    /// Absolute URL (for GET, without the submitted values: the platform appends them).
    pub url: String,
    /// HTTP method.
    pub method: Method,
    /// What is fetched.
    pub purpose: FetchPurpose,
    /// Submitted text values (`namelist`, subdialog params), in order.
    pub form: Vec<(String, String)>,
    /// Submitted recordings (sent as files; they force multipart).
    pub files: Vec<FormFile>,
    /// How the values are encoded.
    pub enctype: Enctype,
    /// `fetchtimeout`: give up (and answer with a failure) after this long.
    pub timeout: Option<std::time::Duration>,
    /// `maxage`: a cached copy older than this must be revalidated.
    pub maxage: Option<std::time::Duration>,
    /// `maxstale`: a cached copy stale by up to this long may be used.
    pub maxstale: Option<std::time::Duration>,
    /// `fetchaudio`: audio to play while the fetch is outstanding, absolute URL
    /// (VoiceXML 2.0 §6.1.1). Played once, after the prompts queued before the fetch, and
    /// interrupted when the fetch completes.
    pub fetchaudio: Option<String>,
    /// `fetchaudiodelay` (§6.3.5): silence allowed at the start of the fetch before
    /// `fetchaudio` starts ([`DEFAULT_FETCHAUDIO_DELAY`] unless the application sets it).
    pub fetchaudio_delay: std::time::Duration,
    /// `fetchaudiominimum` (§6.3.5): once started, `fetchaudio` plays at least this long,
    /// even when the fetch completes sooner ([`DEFAULT_FETCHAUDIO_MINIMUM`] unless set).
    pub fetchaudio_minimum: std::time::Duration,
}

/// This platform's `fetchaudiodelay` (VoiceXML 2.0 §6.3.5 leaves it to the platform).
pub const DEFAULT_FETCHAUDIO_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// This platform's `fetchaudiominimum` (VoiceXML 2.0 §6.3.5 leaves it to the platform).
pub const DEFAULT_FETCHAUDIO_MINIMUM: std::time::Duration = std::time::Duration::from_secs(5);

/// A recording submitted as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormFile {
    /// Form field name (the `<record>` variable name).
    pub name: String,
    /// Content type, e.g. `audio/wav`.
    pub content_type: String,
    /// The file's bytes.
    pub data: Vec<u8>,
}

/// The session waits for input.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// DTMF grammars are active.
    pub dtmf: bool,
    /// Voice grammars are active.
    pub voice: bool,
    /// The noinput timeout.
    pub timeout: std::time::Duration,
    /// What a recognizer needs, when `voice`.
    pub speech: Option<SpeechListen>,
}

/// What a recognizer needs to listen for one collection. The platform answers with
/// [`Input::SpeechStarted`] when the caller starts speaking (the session stops its noinput
/// timer), then [`Input::Recognition`] with what was recognised (matched again against the
/// grammars here), or [`Input::RecognitionFailed`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechListen {
    /// The active voice grammars, in priority order (external ones linked).
    pub grammars: Vec<crate::srgs::Grammar>,
    /// The speech timeouts.
    pub timing: SpeechTiming,
    /// A `bargeintype="hotword"` prompt is queued: speech over it stops it only when it
    /// matches a grammar (the session then emits [`Action::StopPlayback`]), and speech that
    /// does not match is ignored (listen again).
    pub hotword: bool,
}

/// A `<record>` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    /// Echoed in [`Input::Recorded`].
    pub id: u32,
    /// Play a beep before recording.
    pub beep: bool,
    /// Longest recording.
    pub max_time: std::time::Duration,
    /// Silence after speech that ends the recording.
    pub final_silence: std::time::Duration,
    /// Any DTMF key ends the recording.
    pub dtmfterm: bool,
    /// No sound at all for this long raises `noinput`.
    pub timeout: std::time::Duration,
    /// Wanted media type, e.g. `audio/wav`.
    pub media_type: String,
}

/// What a recording produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Media type of `audio`, e.g. `audio/wav`.
    pub content_type: String,
    /// The recording as a file.
    pub audio: Vec<u8>,
    /// Length of the recording.
    pub duration: std::time::Duration,
    /// The key that ended it, if one did.
    pub termchar: Option<char>,
    /// Whether it ended because `max_time` passed.
    pub maxtime: bool,
    /// Whether the caller said nothing (no sound above the silence threshold).
    pub silent: bool,
}

impl Recording {
    /// A RIFF WAVE file of 16-bit linear PCM, mono, at `sample_rate`: the form recordings are
    /// submitted in. Samples beyond what a RIFF size field can hold are dropped.
    pub fn wav_file(pcm: &[i16], sample_rate: u32) -> Vec<u8> {
        let samples = pcm.len().min((u32::MAX as usize - 36) / 2);
        // invariant: `samples` was bounded so the sizes fit in u32.
        let data_len = u32::try_from(samples * 2).unwrap_or(0);
        let mut wav = Vec::with_capacity(44 + samples * 2);
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(36 + data_len).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
        wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
        wav.extend_from_slice(&1u16.to_le_bytes()); // mono
        wav.extend_from_slice(&sample_rate.to_le_bytes());
        wav.extend_from_slice(&sample_rate.saturating_mul(2).to_le_bytes()); // byte rate
        wav.extend_from_slice(&2u16.to_le_bytes()); // block align
        wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&data_len.to_le_bytes());
        for sample in &pcm[..samples] {
            wav.extend_from_slice(&sample.to_le_bytes());
        }
        wav
    }
}

/// How a transfer connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// Hand the call over; the session ends (`connection.disconnect.transfer`).
    Blind,
    /// Bridge caller and callee; the session resumes when the far leg ends.
    Bridge,
    /// Consult the callee first, then complete as blind.
    Consultation,
}

/// A `<transfer>` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Echoed in [`Input::TransferDone`].
    pub id: u32,
    /// Destination URI (`sip:`, `tel:`).
    pub dest: String,
    /// How it connects.
    pub kind: TransferKind,
    /// Give up ringing after this long (`noanswer`).
    pub connect_timeout: std::time::Duration,
    /// Longest bridged call, if limited (`maxtime_disconnect`).
    pub max_time: Option<std::time::Duration>,
    /// Application-to-application information (`aai`).
    pub aai: Option<String>,
}

/// How a transfer ended (VoiceXML 2.0 §2.3.7, the form item variable's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Blind or consultation transfer handed over.
    Transferred,
    /// The callee was busy.
    Busy,
    /// The callee did not answer within `connect_timeout`.
    NoAnswer,
    /// The network refused the call.
    NetworkBusy,
    /// The caller hung up during the bridge.
    NearPartyDisconnect,
    /// The callee hung up during the bridge.
    FarEndDisconnect,
    /// The network ended the bridge.
    NetworkDisconnect,
    /// The bridge reached `max_time`.
    MaxTimeDisconnect,
    /// Anything else.
    Unknown,
}

impl TransferOutcome {
    /// Every outcome.
    pub const ALL: [Self; 9] = [
        Self::Transferred,
        Self::Busy,
        Self::NoAnswer,
        Self::NetworkBusy,
        Self::NearPartyDisconnect,
        Self::FarEndDisconnect,
        Self::NetworkDisconnect,
        Self::MaxTimeDisconnect,
        Self::Unknown,
    ];

    /// The outcome as the `<transfer>` form item variable holds it (VoiceXML 2.0
    /// §2.3.7.2.1 spells the caller's hang-up `near_end_disconnect`); `transferred` for a
    /// handed-over call, which the variable never holds.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transferred => "transferred",
            Self::Busy => "busy",
            Self::NoAnswer => "noanswer",
            Self::NetworkBusy => "network_busy",
            Self::NearPartyDisconnect => "near_end_disconnect",
            Self::FarEndDisconnect => "far_end_disconnect",
            Self::NetworkDisconnect => "network_disconnect",
            Self::MaxTimeDisconnect => "maxtime_disconnect",
            Self::Unknown => "unknown",
        }
    }

    /// The outcome [`TransferOutcome::name`] spells `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.name() == name)
    }
}

/// Why a transfer could not be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFailure {
    /// The event to throw, e.g. `error.unsupported.transfer.bridge`,
    /// `error.connection.baddestination`, `error.connection.noauthorization`.
    pub event: String,
    /// What went wrong.
    pub message: String,
}

/// What the platform tells the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A fetch finished.
    Fetched {
        /// The fetch's id.
        id: FetchId,
        /// The document, or why there is none.
        result: Result<Fetched, FetchFailure>,
    },
    /// A Play finished or was stopped by barge-in.
    PlaybackDone {
        /// The Play's id.
        id: u32,
        /// Whether it was cut short.
        interrupted: bool,
    },
    /// A Play could not be rendered: text-to-speech failed or ran out of time, or an
    /// `<audio>` could not be played and had no fallback. The Play counts as done, and the
    /// session throws `event` (`error.noresource` for speech, `error.badfetch` for audio)
    /// where it waits: in a field collecting input, a fetch, or before a record or transfer.
    /// A session already ending only logs it.
    PlaybackFailed {
        /// The Play's id.
        id: u32,
        /// The event to throw.
        event: String,
        /// Why (`_message`).
        message: String,
    },
    /// The last `<mark>` a Play passed (VoiceXML 2.1 §4), sent just before its
    /// `PlaybackDone`, whether it played out or was cut short; not sent when the Play passed
    /// no mark. Sets `markname`/`marktime` of the next recognition result.
    MarkReached {
        /// The Play's id.
        id: u32,
        /// The mark's `name`.
        name: String,
        /// Audio played after the mark until the barge-in or the end of the Play.
        since: std::time::Duration,
    },
    /// The caller pressed a key (`0-9`, `*`, `#`, `A-D`).
    Dtmf(char),
    /// A recognizer's result for speech input (or a scripted caller's utterance): matched
    /// against the active voice grammars. A DTMF-only platform never sends it.
    Recognition {
        /// The words recognised.
        utterance: String,
        /// Confidence, 0.0 to 1.0.
        confidence: f32,
    },
    /// A `<record>` finished.
    Recorded {
        /// The Record action's id.
        id: u32,
        /// The recording, or why there is none.
        result: Result<Recording, String>,
    },
    /// A `<transfer>` finished.
    TransferDone {
        /// The Transfer action's id.
        id: u32,
        /// How it ended, or the error event to throw.
        result: Result<TransferOutcome, TransferFailure>,
    },
    /// The caller started speaking during a voice collection: the noinput timer stops; the
    /// result follows as [`Input::Recognition`] or [`Input::RecognitionFailed`].
    SpeechStarted,
    /// The recognizer could not give a result for the speech (no recognizer free, an
    /// unusable grammar, speech longer than `maxspeechtimeout`): the collection throws
    /// `event` (`error.noresource`, `error.unsupported.format`, `maxspeechtimeout`).
    RecognitionFailed {
        /// The event to throw.
        event: String,
        /// Why (`_message`).
        message: String,
    },
    /// The caller hung up (raises `connection.disconnect.hangup`).
    Hangup,
}

/// A fetched document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Final URL after redirects.
    pub url: String,
    /// Content-Type header.
    pub content_type: Option<String>,
    /// Body.
    pub body: Vec<u8>,
}

/// A failed fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// HTTP status, if the server answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// `<exit>`, or the application ran out of dialogs.
    Exit {
        /// `<exit expr>` value as a string.
        value: Option<String>,
    },
    /// The application ran `<disconnect>`.
    Disconnect,
    /// The caller hung up.
    Hangup,
    /// An uncaught error event.
    Error {
        /// The event, e.g. `error.badfetch`.
        event: String,
        /// The cause: URL, HTTP status, XML line:col, expression.
        message: String,
    },
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The initial URL is not absolute.
    #[error(
        "initial document URL {url:?} is not an absolute URL ({source}); use e.g. https://host/app.vxml"
    )]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// The parser's reason.
        source: url::ParseError,
    },
    /// A request variable has a bad name or is not JSON.
    #[error(
        "session variable {name:?} is unusable: {reason}; names are identifiers and values JSON text"
    )]
    SessionVar {
        /// The variable name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The ECMAScript engine could not start.
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// What the session is doing.
#[derive(Debug)]
enum State {
    /// The interpreter is running (between polls).
    Running,
    /// Waiting for a fetch.
    Fetching {
        /// The outstanding fetch.
        id: FetchId,
    },
    /// Collecting caller input.
    Collecting(Collector),
    /// Waiting for the prompt queue to drain before recording or transferring.
    Draining(PendingAction),
    /// Waiting for a recording.
    Recording {
        /// The Record action's id.
        id: u32,
    },
    /// Waiting for a transfer.
    Transferring {
        /// The Transfer action's id.
        id: u32,
    },
    /// Over; waiting for queued prompts before emitting `End`.
    Ending(SessionEnd),
    /// `End` has been emitted.
    Ended,
}

/// A Record or Transfer waiting for the prompts before it.
#[derive(Debug)]
enum PendingAction {
    /// `<record>`.
    Record(RecordRequest),
    /// `<transfer>`.
    Transfer(TransferRequest),
}

/// How a collection step ended.
#[derive(Debug)]
enum Outcome {
    /// Still collecting.
    Pending,
    /// Collection is over.
    Done(Collected),
}

/// Input collection for one field.
#[derive(Debug)]
struct Collector {
    spec: Collect,
    keys: String,
    noinput_at: Option<Instant>,
    /// When the keys so far are judged: `interdigittimeout` after a key, or `termtimeout`
    /// after a complete match that waits for its `termchar`.
    interdigit_at: Option<Instant>,
    /// The keys are a complete match waiting `termtimeout` for the `termchar`.
    awaiting_termchar: bool,
    /// The caller is speaking (or was, and the result is awaited): no noinput.
    speaking: bool,
}

impl Collector {
    /// The caller has pressed keys for this collection (they wait for more, or for the
    /// termchar).
    fn keying(&self) -> bool {
        !self.keys.is_empty() || self.interdigit_at.is_some() || self.awaiting_termchar
    }
}

/// How caller input may interrupt a playing prompt (VoiceXML 2.0 §4.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barge {
    /// `bargein="false"`: input is discarded while it plays.
    Off,
    /// `bargeintype="speech"`: any input interrupts it (the platform stops it).
    Speech,
    /// `bargeintype="hotword"`: only input that matches a grammar counts; the rest is
    /// ignored. The platform is told the prompt has no barge-in (it cannot tell a match
    /// from other input); a match stops it with [`Action::StopPlayback`].
    Hotword,
}

/// The interpreter, as the future the session polls.
type Interpreter = Pin<Box<dyn Future<Output = SessionEnd> + Send>>;

/// A running VoiceXML session.
pub struct Session {
    interpreter: Interpreter,
    io: Platform,
    state: State,
    actions: VecDeque<Action>,
    /// Prompts queued by the interpreter, not yet handed to the platform (§4.1.8).
    held: Vec<(Prompt, Barge)>,
    playing: VecDeque<(u32, Barge)>,
    typeahead: String,
    next_fetch: u32,
    next_play: u32,
    next_request: u32,
    submitted: Option<Vec<(String, String)>>,
    caller_gone: bool,
    /// A `<disconnect>` waiting for the prompts queued before it.
    pending_disconnect: Option<Vec<(String, String)>>,
    /// The last `<mark>` the platform reported passed since the last recognition result.
    mark: Option<MarkPosition>,
    /// A hotword match stopped playback; the stopped prompts are not all reported yet.
    hotword_stopped: bool,
    /// The session's script work over the call, and its stop flag.
    meter: Meter,
    /// Whether the session's script context has started ([`crate::script::LazyModel`]).
    script_started: Arc<std::sync::atomic::AtomicBool>,
    /// Fetches asked for so far, and the most allowed.
    fetches: (u32, u32),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("playing", &self.playing)
            .finish_non_exhaustive()
    }
}

/// The document cache of sessions started with [`Session::new`].
fn shared_documents() -> Arc<DocumentCache> {
    static SHARED: OnceLock<Arc<DocumentCache>> = OnceLock::new();
    Arc::clone(SHARED.get_or_init(|| Arc::new(DocumentCache::default())))
}

impl Session {
    /// The parsed-document cache every session started with [`Session::new`] shares (for its
    /// statistics, or to clear it).
    pub fn shared_documents() -> Arc<DocumentCache> {
        shared_documents()
    }

    /// The parsed-grammar cache every session started with [`Session::new`] shares: external
    /// grammars parsed once per body, linked per session (for its statistics, or to clear
    /// it). A session started with [`Session::with_cache`] uses its cache's
    /// [`DocumentCache::grammars`].
    pub fn shared_grammars() -> Arc<GrammarCache> {
        Arc::clone(shared_documents().grammars())
    }

    /// Starts a session; queues the initial Fetch. Parsed documents are shared with every
    /// other session of the process.
    pub fn new(config: SessionConfig, now: Instant) -> Result<Self, Error> {
        Self::with_cache(config, shared_documents(), now)
    }

    /// Starts a session whose parsed documents come from (and go to) `documents`.
    pub fn with_cache(
        config: SessionConfig,
        documents: Arc<DocumentCache>,
        now: Instant,
    ) -> Result<Self, Error> {
        let url = Url::parse(&config.url).map_err(|source| Error::InvalidUrl {
            url: config.url.clone(),
            source,
        })?;
        // The QuickJS context starts only when the application needs ECMAScript.
        let mut model = LazyModel::new(ScriptLimits {
            budget: config.limits.script_budget,
            memory_bytes: config.limits.script_memory_bytes,
        });
        model.push_scope(Scope::Session)?;
        let text = |s: &str| Value::String(s.to_owned());
        let mut connection = vec![
            (
                "local".to_owned(),
                Value::Object(vec![("uri".to_owned(), text(&config.local_uri))]),
            ),
            (
                "remote".to_owned(),
                Value::Object(vec![("uri".to_owned(), text(&config.remote_uri))]),
            ),
            (
                "protocol".to_owned(),
                Value::Object(vec![
                    ("name".to_owned(), text("sip")),
                    ("version".to_owned(), text("2.0")),
                ]),
            ),
        ];
        if let Some(answered_by) = &config.answered_by {
            connection.push((
                "outdial".to_owned(),
                Value::Object(vec![("answered_by".to_owned(), text(answered_by))]),
            ));
        }
        model.declare_value(Scope::Session, "connection", &Value::Object(connection))?;
        for (name, json) in &config.vars {
            if let Some(problem) = crate::session_var_problem(name) {
                return Err(Error::SessionVar {
                    name: name.clone(),
                    reason: format!("the name {problem}"),
                });
            }
            // Refused here rather than by the engine, so starting a session never starts one.
            if let Err(e) = serde_json::from_str::<serde_json::Value>(json) {
                return Err(Error::SessionVar {
                    name: name.clone(),
                    reason: format!("the value is not JSON: {e}"),
                });
            }
            model
                .declare_value(Scope::Session, name, &Value::Json(json.clone()))
                .map_err(|e| Error::SessionVar {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
        }
        model.seal_scope(Scope::Session)?;
        let meter = Meter::new(config.limits.call_script_budget);
        model.set_meter(meter.clone());
        let io = Platform::default();
        let script_started = model.started_flag();
        let interp = Interp::new(model, io.clone(), config.limits, documents);
        let mut session = Self {
            interpreter: Box::pin(interp.run(url)),
            io,
            state: State::Running,
            actions: VecDeque::new(),
            held: Vec::new(),
            playing: VecDeque::new(),
            typeahead: String::new(),
            next_fetch: 0,
            next_play: 0,
            next_request: 0,
            submitted: None,
            caller_gone: false,
            pending_disconnect: None,
            mark: None,
            hotword_stopped: false,
            meter,
            script_started,
            fetches: (0, config.limits.max_fetches),
        };
        session.pump(now);
        Ok(session)
    }

    /// The session's script meter: what its scripts have spent of
    /// [`Limits::call_script_budget`], and [`Meter::stop`], which any thread may call to end a
    /// session that is running (a canceled call): its script stops at the engine's next
    /// interrupt check and the session ends with `error.semantic` at its next step.
    pub fn meter(&self) -> Meter {
        self.meter.clone()
    }

    /// Whether the application has needed ECMAScript yet. Starting a session never does; a
    /// session whose context never started frees nothing shared when dropped, so neither its
    /// start nor its drop can wait for another session's script.
    pub fn script_started(&self) -> bool {
        self.script_started
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Fetched { id, result } => {
                if matches!(self.state, State::Fetching { id: expected } if expected == id) {
                    self.respond(now, Response::Fetched(result));
                }
            }
            Input::PlaybackDone { id, .. } => self.on_playback_done(now, id),
            Input::PlaybackFailed { id, event, message } => {
                self.on_playback_failed(now, id, event, message);
            }
            Input::MarkReached { id, name, since } => {
                // Marks of a hotword prompt stopped by a match arrive after its result.
                if !self.hotword_stopped && self.playing.iter().any(|(play, _)| *play == id) {
                    self.mark = Some(MarkPosition { name, since });
                }
            }
            Input::Dtmf(key) => self.on_key(now, key),
            Input::Recognition {
                utterance,
                confidence,
            } => self.on_recognition(now, &utterance, confidence),
            Input::Recorded { id, result } => {
                if matches!(self.state, State::Recording { id: expected } if expected == id) {
                    self.respond(now, Response::Recorded(result));
                }
            }
            Input::TransferDone { id, result } => {
                if matches!(self.state, State::Transferring { id: expected } if expected == id) {
                    self.respond(now, Response::Transferred(result));
                }
            }
            Input::SpeechStarted => {
                if let State::Collecting(c) = &mut self.state
                    && c.spec.voice
                {
                    c.speaking = true;
                    c.noinput_at = None;
                }
            }
            Input::RecognitionFailed { event, message } => {
                if matches!(&self.state, State::Collecting(c) if c.spec.voice) {
                    self.respond(now, Response::Error { event, message });
                }
            }
            Input::Hangup => self.on_hangup(now),
        }
    }

    /// Whether the session is collecting input with a voice grammar active: while it is not,
    /// a platform need not listen for speech.
    /// Once the caller has started keying, the collection is theirs by DTMF: speech is no
    /// longer listened for.
    pub fn listens_for_voice(&self) -> bool {
        matches!(&self.state, State::Collecting(c) if c.spec.voice && !c.keying())
    }

    /// Fires timers due at `now`; spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Collecting(collector) = &mut self.state else {
            return;
        };
        let outcome = if collector.interdigit_at.is_some_and(|at| at <= now) {
            collector.interdigit_at = None;
            let keys = std::mem::take(&mut collector.keys);
            Outcome::Done(
                match grammars::match_dtmf(&collector.spec.grammars, &keys) {
                    DtmfOutcome::Complete(grammar, value)
                    | DtmfOutcome::Extendable(grammar, value) => dtmf_match(grammar, keys, value),
                    DtmfOutcome::Prefix | DtmfOutcome::NoMatch => Collected::NoMatch {
                        utterance: keys,
                        mode: Mode::Dtmf,
                    },
                },
            )
        } else if collector.noinput_at.is_some_and(|at| at <= now) {
            collector.noinput_at = None;
            Outcome::Done(Collected::NoInput)
        } else {
            Outcome::Pending
        };
        if let Outcome::Done(collected) = outcome {
            self.deliver(now, collected);
        }
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Collecting(c) => match (c.noinput_at, c.interdigit_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => None,
        }
    }

    /// Values submitted so far (last `<submit>` namelist), for the platform's call record.
    pub fn submitted(&self) -> Option<&[(String, String)]> {
        self.submitted.as_deref()
    }

    /// Answers the interpreter's outstanding request and runs it on.
    fn respond(&mut self, now: Instant, response: Response) {
        self.io.lock().response = Some(response);
        self.state = State::Running;
        self.pump(now);
    }

    /// Polls the interpreter until it waits for the platform or ends; turns its output and
    /// request into actions.
    fn pump(&mut self, now: Instant) {
        let mut context = Context::from_waker(Waker::noop());
        loop {
            if !matches!(self.state, State::Running) {
                return;
            }
            let poll = self.interpreter.as_mut().poll(&mut context);
            self.drain_outbox();
            match poll {
                Poll::Ready(end) => {
                    self.flush_prompts(false);
                    self.finish(end);
                    return;
                }
                Poll::Pending => {
                    let request = self.io.lock().request.take();
                    let Some(request) = request else {
                        // The interpreter waits on nothing: a bug, but never a hang.
                        self.finish(SessionEnd::Error {
                            event: names::SEMANTIC.to_owned(),
                            message: "the interpreter stopped without a request".to_owned(),
                        });
                        return;
                    };
                    if let Some(response) = self.enter(now, request) {
                        self.io.lock().response = Some(response);
                        self.state = State::Running;
                    }
                }
            }
        }
    }

    /// Logs and disconnects go out at once; prompts are held until the next wait.
    fn drain_outbox(&mut self) {
        let outputs = std::mem::take(&mut self.io.lock().outbox);
        for output in outputs {
            match output {
                Output::Log { label, text } => self.actions.push_back(Action::Log { label, text }),
                Output::Prompt { prompt, hotword } => {
                    let barge = match (prompt.bargein, hotword) {
                        (false, _) => Barge::Off,
                        (true, false) => Barge::Speech,
                        (true, true) => Barge::Hotword,
                    };
                    if !self.caller_gone {
                        self.held.push((prompt, barge));
                    }
                }
                Output::Disconnect { values } => {
                    self.flush_prompts(false);
                    if self.playing.is_empty() {
                        self.actions.push_back(Action::Disconnect { values });
                    } else {
                        self.pending_disconnect = Some(values);
                    }
                }
            }
        }
    }

    /// Hands held prompts to the platform. With `skip_bargein` (typeahead about to fill the
    /// field), barge-in prompts are dropped: the keys already barged in (§4.1.5).
    fn flush_prompts(&mut self, skip_bargein: bool) {
        for (mut prompt, barge) in std::mem::take(&mut self.held) {
            if self.caller_gone || skip_bargein && barge != Barge::Off {
                continue;
            }
            let id = self.next_play;
            self.next_play = self.next_play.wrapping_add(1);
            self.playing.push_back((id, barge));
            prompt.bargein = barge == Barge::Speech;
            self.actions.push_back(Action::Play { id, prompt });
        }
    }

    /// Ends the session now, or once the prompts playing are done.
    fn finish(&mut self, end: SessionEnd) {
        if self.playing.is_empty() || self.caller_gone {
            self.playing.clear();
            self.actions.push_back(Action::End(end));
            self.state = State::Ended;
        } else {
            self.state = State::Ending(end);
        }
    }

    /// Enters the wait `request` asks for; an immediate answer (typeahead) is returned.
    fn enter(&mut self, now: Instant, request: Request) -> Option<Response> {
        match request {
            Request::Fetch(spec) => {
                let (made, most) = self.fetches;
                if made >= most {
                    return Some(Response::Fetched(Err(FetchFailure {
                        status: None,
                        message: format!(
                            "{} not fetched: this call already made {most} fetches, its limit (vxml.max_fetches_per_call); look for a <goto> or <submit> loop",
                            spec.url
                        ),
                    })));
                }
                self.fetches.0 = made + 1;
                if spec.fetchaudio.is_some() {
                    self.flush_prompts(false);
                }
                let id = FetchId(self.next_fetch);
                self.next_fetch = self.next_fetch.wrapping_add(1);
                if spec.purpose == FetchPurpose::Submit {
                    self.submitted = Some(spec.form.clone());
                }
                self.actions.push_back(Action::Fetch(Fetch {
                    id,
                    url: spec.url.to_string(),
                    method: spec.method,
                    purpose: spec.purpose,
                    form: spec.form,
                    files: spec.files,
                    enctype: spec.enctype,
                    timeout: spec.timeout,
                    maxage: spec.maxage,
                    maxstale: spec.maxstale,
                    fetchaudio: spec.fetchaudio,
                    fetchaudio_delay: spec.fetchaudio_delay,
                    fetchaudio_minimum: spec.fetchaudio_minimum,
                }));
                self.state = State::Fetching { id };
                None
            }
            Request::Collect(spec) => {
                if self.caller_gone {
                    return Some(Response::Hangup);
                }
                self.flush_prompts(!self.typeahead.is_empty());
                let speech = spec.voice.then(|| SpeechListen {
                    grammars: grammars::voice_grammars(&spec.grammars),
                    timing: spec.speech,
                    hotword: self
                        .held
                        .iter()
                        .map(|(_, barge)| barge)
                        .chain(self.playing.iter().map(|(_, barge)| barge))
                        .any(|barge| *barge == Barge::Hotword),
                });
                self.actions.push_back(Action::Listen(Listen {
                    dtmf: spec.dtmf,
                    voice: spec.voice,
                    timeout: spec.timeout,
                    speech,
                }));
                let noinput_at = self.playing.is_empty().then(|| now + spec.timeout);
                self.state = State::Collecting(Collector {
                    spec,
                    keys: String::new(),
                    noinput_at,
                    interdigit_at: None,
                    awaiting_termchar: false,
                    speaking: false,
                });
                let typeahead = std::mem::take(&mut self.typeahead);
                let mut keys = typeahead.chars();
                for key in keys.by_ref() {
                    if let Outcome::Done(collected) = self.feed(now, key) {
                        // `feed` may have put back a key that followed a complete match.
                        self.typeahead.extend(keys);
                        self.heard(&collected, true);
                        self.publish_mark();
                        return Some(Response::Collected(collected));
                    }
                }
                None
            }
            Request::Record(spec) => {
                if self.caller_gone {
                    return Some(Response::Hangup);
                }
                self.flush_prompts(false);
                let id = self.next_request;
                self.next_request = self.next_request.wrapping_add(1);
                let request = RecordRequest {
                    id,
                    beep: spec.beep,
                    max_time: spec.max_time,
                    final_silence: spec.final_silence,
                    dtmfterm: spec.dtmfterm,
                    timeout: spec.timeout,
                    media_type: spec.media_type,
                };
                self.start_or_drain(PendingAction::Record(request));
                None
            }
            Request::Transfer(spec) => {
                if self.caller_gone {
                    return Some(Response::Hangup);
                }
                self.flush_prompts(false);
                let id = self.next_request;
                self.next_request = self.next_request.wrapping_add(1);
                let request = TransferRequest {
                    id,
                    dest: spec.dest,
                    kind: spec.kind,
                    connect_timeout: spec.connect_timeout,
                    max_time: spec.max_time,
                    aai: spec.aai,
                };
                self.start_or_drain(PendingAction::Transfer(request));
                None
            }
        }
    }

    /// Emits a Record/Transfer now if nothing is playing, else after the queue drains.
    fn start_or_drain(&mut self, pending: PendingAction) {
        if !self.playing.is_empty() {
            self.state = State::Draining(pending);
            return;
        }
        match pending {
            PendingAction::Record(request) => {
                self.state = State::Recording { id: request.id };
                self.actions.push_back(Action::Record(request));
            }
            PendingAction::Transfer(request) => {
                self.state = State::Transferring { id: request.id };
                self.actions.push_back(Action::Transfer(request));
            }
        }
    }

    /// A Play finished: start the noinput timer, a pending Record/Transfer, or the pending
    /// End when the queue empties.
    fn on_playback_done(&mut self, now: Instant, id: u32) {
        self.playing.retain(|(play, _)| *play != id);
        if !self.playing.is_empty() {
            return;
        }
        self.hotword_stopped = false;
        if let Some(values) = self.pending_disconnect.take() {
            self.actions.push_back(Action::Disconnect { values });
        }
        match std::mem::replace(&mut self.state, State::Running) {
            State::Collecting(mut c) => {
                if c.keys.is_empty()
                    && c.interdigit_at.is_none()
                    && c.noinput_at.is_none()
                    && !c.speaking
                {
                    c.noinput_at = Some(now + c.spec.timeout);
                }
                self.state = State::Collecting(c);
            }
            State::Draining(pending) => self.start_or_drain(pending),
            State::Ending(end) => {
                self.actions.push_back(Action::End(end));
                self.state = State::Ended;
            }
            other => self.state = other,
        }
    }

    /// A Play that could not be rendered: done, and its error thrown where the interpreter
    /// waits (a collection, a fetch, a record or transfer still waiting for the prompts).
    fn on_playback_failed(&mut self, now: Instant, id: u32, event: String, message: String) {
        if !self.playing.iter().any(|(play, _)| *play == id) {
            return;
        }
        let waiting = matches!(
            self.state,
            State::Collecting(_) | State::Fetching { .. } | State::Draining(_)
        );
        if !waiting {
            self.actions.push_back(Action::Log {
                label: Some("vxml.warning".to_owned()),
                text: format!("{event} after the application ended: {message}"),
            });
            self.on_playback_done(now, id);
            return;
        }
        self.playing.retain(|(play, _)| *play != id);
        if self.playing.is_empty() {
            self.hotword_stopped = false;
        }
        self.respond(now, Response::Error { event, message });
    }

    /// A key: input for the collecting field, typeahead, or discarded under a no-barge-in
    /// prompt.
    fn on_key(&mut self, now: Instant, key: char) {
        if matches!(
            self.state,
            State::Ending(_) | State::Ended | State::Recording { .. } | State::Transferring { .. }
        ) {
            return;
        }
        if self
            .playing
            .front()
            .is_some_and(|(_, barge)| *barge == Barge::Off)
        {
            return;
        }
        if let State::Collecting(c) = &self.state {
            if !c.spec.dtmf {
                return;
            }
            if let Outcome::Done(collected) = self.feed(now, key) {
                self.deliver(now, collected);
            }
        } else if self.typeahead.chars().count() < MAX_KEYS {
            self.typeahead.push(key);
        }
    }

    /// Answers the collection with `collected`, unless a hotword prompt is playing and the
    /// input matched nothing: then it is ignored and collection goes on (§4.1.5.1).
    fn deliver(&mut self, now: Instant, collected: Collected) {
        let hotword = self
            .playing
            .front()
            .is_some_and(|(_, barge)| *barge == Barge::Hotword);
        if hotword && matches!(collected, Collected::NoMatch { .. }) {
            return;
        }
        if hotword && matches!(collected, Collected::Matched { .. }) {
            // The match is the barge-in: the hotword prompt (and what is queued) stops now.
            self.actions.push_back(Action::StopPlayback);
            self.hotword_stopped = true;
        }
        self.heard(&collected, false);
        self.publish_mark();
        self.respond(now, Response::Collected(collected));
    }

    /// Reports input about to be handed to the interpreter ([`Action::Heard`]).
    fn heard(&mut self, collected: &Collected, typeahead: bool) {
        let (mode, input, matched) = match collected {
            Collected::Matched {
                utterance,
                mode,
                value,
                ..
            } => (*mode, utterance, Some(value.to_text())),
            Collected::NoMatch { utterance, mode } => (*mode, utterance, None),
            Collected::NoInput => return,
        };
        self.actions.push_back(Action::Heard(Heard {
            mode: match mode {
                Mode::Dtmf => "dtmf",
                Mode::Voice => "voice",
            },
            input: input.clone(),
            typeahead,
            matched,
        }));
    }

    /// Hands the last mark passed to the interpreter for the result about to be delivered
    /// (its `markname`/`marktime`, VoiceXML 2.1 §4); the next result starts without one.
    fn publish_mark(&mut self) {
        self.io.lock().mark = self.mark.take();
    }

    /// A recognition result: matched against the active voice grammars.
    fn on_recognition(&mut self, now: Instant, utterance: &str, confidence: f32) {
        if self
            .playing
            .front()
            .is_some_and(|(_, barge)| *barge == Barge::Off)
        {
            return;
        }
        let State::Collecting(collector) = &mut self.state else {
            return;
        };
        if !collector.spec.voice || collector.keying() {
            // Keys came first (a recognizer may have heard their tones as speech): the
            // collection is the keys'.
            return;
        }
        collector.speaking = false;
        // `confidencelevel` (§6.3.2): a result below it is a nomatch.
        let confident = confidence.is_nan() || confidence >= collector.spec.confidence_level;
        let matched =
            grammars::match_voice(&collector.spec.grammars, utterance).filter(|_| confident);
        let collected = match matched {
            Some((grammar, value)) => Collected::Matched {
                grammar,
                utterance: utterance.to_owned(),
                mode: Mode::Voice,
                confidence,
                value,
            },
            None => Collected::NoMatch {
                utterance: utterance.to_owned(),
                mode: Mode::Voice,
            },
        };
        self.deliver(now, collected);
    }

    /// The caller hung up.
    fn on_hangup(&mut self, now: Instant) {
        if self.caller_gone {
            return;
        }
        self.caller_gone = true;
        self.io.lock().hung_up = true;
        self.playing.clear();
        // The caller is gone already: there is nothing left to disconnect.
        self.pending_disconnect = None;
        self.held.clear();
        match std::mem::replace(&mut self.state, State::Running) {
            State::Ended => self.state = State::Ended,
            State::Ending(end) => {
                self.actions.push_back(Action::End(end));
                self.state = State::Ended;
            }
            State::Running => {}
            // A fetch in flight is abandoned: its result no longer matters to the caller.
            State::Fetching { .. }
            | State::Collecting(_)
            | State::Draining(_)
            | State::Recording { .. }
            | State::Transferring { .. } => self.respond(now, Response::Hangup),
        }
    }

    /// Adds a key to the collector.
    fn feed(&mut self, now: Instant, key: char) -> Outcome {
        let State::Collecting(collector) = &mut self.state else {
            return Outcome::Pending;
        };
        collector.noinput_at = None;
        let awaiting_termchar = std::mem::take(&mut collector.awaiting_termchar);
        if awaiting_termchar && collector.spec.termchar != Some(key) {
            // A complete match waited `termtimeout` for its termchar and got another key:
            // the match stands and the key is typeahead for what comes next.
            collector.interdigit_at = None;
            let keys = std::mem::take(&mut collector.keys);
            if let DtmfOutcome::Complete(grammar, value) =
                grammars::match_dtmf(&collector.spec.grammars, &keys)
            {
                self.typeahead.push(key);
                return Outcome::Done(dtmf_match(grammar, keys, value));
            }
        }
        if collector.spec.termchar == Some(key) && !collector.keys.is_empty() {
            collector.interdigit_at = None;
            let keys = std::mem::take(&mut collector.keys);
            return Outcome::Done(
                match grammars::match_dtmf(&collector.spec.grammars, &keys) {
                    DtmfOutcome::Complete(grammar, value)
                    | DtmfOutcome::Extendable(grammar, value) => dtmf_match(grammar, keys, value),
                    DtmfOutcome::Prefix | DtmfOutcome::NoMatch => Collected::NoMatch {
                        utterance: keys,
                        mode: Mode::Dtmf,
                    },
                },
            );
        }
        collector.keys.push(key);
        if collector.keys.len() > MAX_KEYS {
            let keys = std::mem::take(&mut collector.keys);
            return Outcome::Done(Collected::NoMatch {
                utterance: keys,
                mode: Mode::Dtmf,
            });
        }
        match grammars::match_dtmf(&collector.spec.grammars, &collector.keys) {
            DtmfOutcome::Complete(..)
                if collector.spec.termchar.is_some() && !collector.spec.termtimeout.is_zero() =>
            {
                // §6.3.3: wait `termtimeout` for the termchar before the match is final.
                collector.interdigit_at = Some(now + collector.spec.termtimeout);
                collector.awaiting_termchar = true;
                Outcome::Pending
            }
            DtmfOutcome::Complete(grammar, value) => {
                collector.interdigit_at = None;
                let keys = std::mem::take(&mut collector.keys);
                Outcome::Done(dtmf_match(grammar, keys, value))
            }
            DtmfOutcome::NoMatch => {
                let keys = std::mem::take(&mut collector.keys);
                Outcome::Done(Collected::NoMatch {
                    utterance: keys,
                    mode: Mode::Dtmf,
                })
            }
            DtmfOutcome::Extendable(..) | DtmfOutcome::Prefix => {
                collector.interdigit_at = Some(now + collector.spec.interdigit);
                Outcome::Pending
            }
        }
    }
}

/// A DTMF match as a collection result.
fn dtmf_match(grammar: usize, keys: String, value: SemValue) -> Collected {
    Collected::Matched {
        grammar,
        utterance: keys,
        mode: Mode::Dtmf,
        confidence: 1.0,
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn recordings_are_pcm16_mono_wav_files() {
        let pcm = [0i16, 1, -1, i16::MAX, i16::MIN];
        let wav = Recording::wav_file(&pcm, 8000);
        assert_eq!(wav.len(), 44 + 10);
        let word = |at: usize| u32::from_le_bytes([wav[at], wav[at + 1], wav[at + 2], wav[at + 3]]);
        let half = |at: usize| u16::from_le_bytes([wav[at], wav[at + 1]]);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(word(4), 36 + 10);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(
            (half(20), half(22), word(24)),
            (1, 1, 8000),
            "PCM, mono, 8 kHz"
        );
        assert_eq!((word(28), half(32), half(34)), (16000, 2, 16));
        assert_eq!((&wav[36..40], word(40)), (&b"data"[..], 10));
        let back: Vec<i16> = wav[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(back, pcm);
        assert_eq!(Recording::wav_file(&[], 16000).len(), 44);
    }

    #[test]
    fn session_is_send() {
        assert_send::<Session>();
    }

    #[test]
    fn bad_initial_url_and_bad_vars_are_refused() {
        let config = SessionConfig {
            url: "relative.vxml".into(),
            vars: vec![],
            local_uri: "sip:a@b".into(),
            remote_uri: "sip:c@d".into(),
            answered_by: None,
            limits: Limits::default(),
        };
        assert!(matches!(
            Session::new(config.clone(), Instant::now()),
            Err(Error::InvalidUrl { .. })
        ));
        let config = SessionConfig {
            url: "http://x.test/a.vxml".into(),
            vars: vec![("name".into(), "{not json".into())],
            ..config
        };
        assert!(matches!(
            Session::new(config.clone(), Instant::now()),
            Err(Error::SessionVar { .. })
        ));
        let config = SessionConfig {
            vars: vec![("bad name".into(), "1".into())],
            ..config
        };
        assert!(matches!(
            Session::new(config, Instant::now()),
            Err(Error::SessionVar { .. })
        ));
    }

    /// A session on `http://x.test/a.vxml` with `vars`, its initial fetch answered with
    /// `document` at `now`; and the actions it then asked for.
    fn started_on(
        document: &str,
        vars: Vec<(String, String)>,
        now: Instant,
    ) -> (Session, Vec<Action>) {
        let config = SessionConfig {
            url: "http://x.test/a.vxml".into(),
            vars,
            local_uri: "sip:a@b".into(),
            remote_uri: "sip:c@d".into(),
            answered_by: None,
            limits: Limits::default(),
        };
        started_with(config, document, now)
    }

    /// A session started from `config`, its initial fetch answered with `document`.
    fn started_with(config: SessionConfig, document: &str, now: Instant) -> (Session, Vec<Action>) {
        let mut session = Session::new(config, now).unwrap();
        let Some(Action::Fetch(fetch)) = session.poll_action() else {
            panic!("the initial fetch comes first");
        };
        session.handle_input(
            now,
            Input::Fetched {
                id: fetch.id,
                result: Ok(Fetched {
                    url: fetch.url,
                    content_type: Some("application/voicexml+xml".into()),
                    body: document.as_bytes().to_vec(),
                }),
            },
        );
        let actions: Vec<Action> = std::iter::from_fn(|| session.poll_action()).collect();
        (session, actions)
    }

    #[test]
    fn disconnect_waits_for_the_goodbye_prompt() {
        let now = Instant::now();
        let document = r#"<vxml version="2.1"><form><block>
            <prompt>Goodbye.</prompt><disconnect/>
            <catch event="connection.disconnect.hangup"><log>after</log></catch>
        </block></form></vxml>"#;
        let (mut session, actions) = started_on(document, vec![], now);
        let play = actions.iter().find_map(|a| match a {
            Action::Play { id, .. } => Some(*id),
            _ => None,
        });
        let Some(play) = play else {
            panic!("the goodbye is played: {actions:?}");
        };
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Disconnect { .. })),
            "no hang-up while the goodbye is still playing: {actions:?}"
        );
        session.handle_input(
            now,
            Input::PlaybackDone {
                id: play,
                interrupted: false,
            },
        );
        let after: Vec<Action> = std::iter::from_fn(|| session.poll_action()).collect();
        let disconnect = after
            .iter()
            .position(|a| matches!(a, Action::Disconnect { .. }));
        let end = after.iter().position(|a| matches!(a, Action::End(_)));
        assert!(
            matches!((disconnect, end), (Some(d), Some(e)) if d < e),
            "the goodbye done, the call is hung up, then the session ends: {after:?}"
        );
    }

    /// An application that evaluates nothing ends without a script context ever being built
    /// (the costliest part of starting a session); one with an expression builds one.
    #[test]
    fn a_session_builds_its_script_context_only_when_the_application_needs_one() {
        // This test's thread starts with no QuickJS runtime; the first context makes one
        // (kept, idle, once the context is gone).
        let runtimes = || crate::script::ScriptEngine::thread_pool().len();
        let run = |document: &str| -> (Vec<Action>, usize) {
            let vars = vec![("customer".into(), r#"{"name": "Ada"}"#.into())];
            let (session, actions) = started_on(document, vars, Instant::now());
            assert_eq!(session.script_started(), runtimes() > 0);
            let made = runtimes();
            (actions, made)
        };
        let playing = |actions: &[Action]| actions.iter().any(|a| matches!(a, Action::Play { .. }));
        let (actions, made) = run(
            r#"<vxml version="2.1"><form><block><prompt>Bye.</prompt><disconnect/></block></form></vxml>"#,
        );
        assert!(playing(&actions), "{actions:?}");
        assert_eq!(
            made, 0,
            "no context for an application that evaluates nothing"
        );
        let (actions, made) = run(r#"<vxml version="2.1"><form><block>
                <log expr="session.customer.name"/><prompt>Bye.</prompt><disconnect/></block></form></vxml>"#);
        assert!(playing(&actions), "{actions:?}");
        assert_eq!(made, 1, "the expression needed a context: {actions:?}");
        let logged = actions.iter().any(|a| format!("{a:?}").contains("Ada"));
        assert!(logged, "the replayed session variable is read: {actions:?}");
    }

    #[test]
    fn who_answered_is_a_connection_property_only_when_classified() {
        let document = r#"<vxml version="2.1"><form><block>
            <log expr="typeof session.connection.outdial"/>
            <if cond="typeof session.connection.outdial != 'undefined'">
              <log expr="'by ' + session.connection.outdial.answered_by"/>
            </if><exit/></block></form></vxml>"#;
        let config = |answered_by: Option<&str>| SessionConfig {
            url: "http://x.test/a.vxml".into(),
            vars: vec![],
            local_uri: "sip:a@b".into(),
            remote_uri: "sip:c@d".into(),
            answered_by: answered_by.map(str::to_owned),
            limits: Limits::default(),
        };
        let logs = |actions: &[Action]| -> Vec<String> {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::Log { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect()
        };
        let (_, actions) = started_with(config(Some("machine")), document, Instant::now());
        assert_eq!(logs(&actions), ["object", "by machine"], "{actions:?}");
        let (_, actions) = started_with(config(None), document, Instant::now());
        assert_eq!(logs(&actions), ["undefined"], "{actions:?}");
    }

    #[test]
    fn the_first_action_is_the_initial_fetch() {
        let config = SessionConfig {
            url: "http://x.test/a.vxml".into(),
            vars: vec![],
            local_uri: "sip:a@b".into(),
            remote_uri: "sip:c@d".into(),
            answered_by: None,
            limits: Limits::default(),
        };
        let mut session = Session::new(config, Instant::now()).unwrap();
        assert_eq!(
            session.poll_action(),
            Some(Action::Fetch(Fetch {
                id: FetchId(0),
                url: "http://x.test/a.vxml".into(),
                method: Method::Get,
                purpose: FetchPurpose::Document,
                form: vec![],
                files: vec![],
                enctype: Enctype::UrlEncoded,
                timeout: None,
                maxage: None,
                maxstale: None,
                fetchaudio: None,
                fetchaudio_delay: DEFAULT_FETCHAUDIO_DELAY,
                fetchaudio_minimum: DEFAULT_FETCHAUDIO_MINIMUM,
            }))
        );
        assert_eq!(session.poll_action(), None);
        assert_eq!(session.poll_timeout(), None);
    }
}
