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
use std::time::Instant;

use url::Url;

use crate::document::Document;
use crate::event::{Event, names};
use crate::fia::{Collect, FetchRequest, Interpreter, Output, StepLimit, Suspend};
use crate::grammar::{Interpretation, Match, best_match};
use crate::prompt::Prompt;
use crate::script::{DataModel, QuickJs, Scope, ScriptError, ScriptLimits, Value};

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
    /// Resource limits.
    pub limits: Limits,
}

/// Resource limits of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Interrupt checks one expression or script may use (each about 10,000 ECMAScript
    /// operations) before it is stopped with `error.semantic`.
    pub script_budget: u32,
    /// Bytes the ECMAScript heap may use.
    pub script_memory_bytes: usize,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Most dialog steps (transitions, events, form items) between two waits for the caller.
    pub max_goto_chain: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            script_budget: 200,
            script_memory_bytes: 1 << 20,
            max_document_bytes: 1 << 20,
            max_goto_chain: 1000,
        }
    }
}

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
    /// `<disconnect>`: hang up the call now. The session goes on (it handles
    /// `connection.disconnect.hangup`, may still submit) and ends later with `End`.
    Disconnect {
        /// `<disconnect namelist>` values (VoiceXML 2.1) for the platform.
        values: Vec<(String, String)>,
    },
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
    /// `fetchaudio`: audio to play while the fetch is outstanding, absolute URL.
    pub fetchaudio: Option<String>,
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// DTMF grammars are active.
    pub dtmf: bool,
    /// Voice grammars are active.
    pub voice: bool,
    /// The noinput timeout.
    pub timeout: std::time::Duration,
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
    /// Waiting for a fetch.
    Fetching {
        /// The outstanding fetch.
        id: FetchId,
        /// Whether it is a `<submit>` (an empty body then ends the session).
        submit: bool,
        /// Dialog to start in the fetched document.
        fragment: Option<String>,
        /// When fetching an application root: the leaf document waiting for it.
        root_for: Option<Box<Document>>,
    },
    /// Collecting caller input for a field.
    Collecting(Collector),
    /// Over; waiting for queued prompts before emitting `End`.
    Ending(SessionEnd),
    /// `End` has been emitted.
    Ended,
}

/// How a collection step ended.
#[derive(Debug)]
enum Outcome {
    /// Still collecting.
    Pending,
    /// The keys matched with this interpretation.
    Filled(String, Interpretation),
    /// The keys cannot match.
    NoMatch,
    /// The timeout passed without a key.
    NoInput,
}

/// Key collection for one field.
#[derive(Debug)]
struct Collector {
    spec: Collect,
    keys: String,
    noinput_at: Option<Instant>,
    interdigit_at: Option<Instant>,
}

/// A running VoiceXML session.
#[derive(Debug)]
pub struct Session {
    interpreter: Interpreter,
    state: State,
    actions: VecDeque<Action>,
    playing: VecDeque<(u32, bool)>,
    typeahead: String,
    next_fetch: u32,
    next_play: u32,
    submitted: Option<Vec<(String, String)>>,
    last_fetch_url: Option<String>,
    caller_gone: bool,
    max_document_bytes: usize,
}

impl Session {
    /// Starts a session; queues the initial Fetch.
    pub fn new(config: SessionConfig, now: Instant) -> Result<Self, Error> {
        let url = Url::parse(&config.url).map_err(|source| Error::InvalidUrl {
            url: config.url.clone(),
            source,
        })?;
        let mut model = QuickJs::new(ScriptLimits {
            budget: config.limits.script_budget,
            memory_bytes: config.limits.script_memory_bytes,
        })?;
        model.push_scope(Scope::Session)?;
        let text = |s: &str| Value::String(s.to_owned());
        let connection = Value::Object(vec![
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
        ]);
        model.declare_value(Scope::Session, "connection", &connection)?;
        for (name, json) in &config.vars {
            model
                .declare_value(Scope::Session, name, &Value::Json(json.clone()))
                .map_err(|e| Error::SessionVar {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
        }
        model.seal_scope(Scope::Session)?;
        let mut session = Self {
            interpreter: Interpreter::new(model, StepLimit(config.limits.max_goto_chain)),
            state: State::Ended,
            actions: VecDeque::new(),
            playing: VecDeque::new(),
            typeahead: String::new(),
            next_fetch: 0,
            next_play: 0,
            submitted: None,
            last_fetch_url: None,
            caller_gone: false,
            max_document_bytes: config.limits.max_document_bytes,
        };
        session.resume(
            now,
            Suspend::Fetch(FetchRequest {
                url,
                post: false,
                form: Vec::new(),
                submit: false,
                fragment: None,
                root_for: None,
            }),
        );
        Ok(session)
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Fetched { id, result } => self.on_fetched(now, id, result),
            Input::PlaybackDone { id, .. } => self.on_playback_done(now, id),
            Input::Dtmf(key) => self.on_key(now, key),
            Input::Hangup => self.on_hangup(now),
            // Not produced by this slice's actions.
            Input::Recognition { .. } | Input::Recorded { .. } | Input::TransferDone { .. } => {}
        }
    }

    /// Fires timers due at `now`; spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Collecting(collector) = &mut self.state else {
            return;
        };
        let outcome = if collector.interdigit_at.is_some_and(|at| at <= now) {
            collector.interdigit_at = None;
            match best_match(&collector.spec.grammars, &collector.keys) {
                Match::Complete(value) | Match::Extendable(value) => {
                    Outcome::Filled(std::mem::take(&mut collector.keys), value)
                }
                Match::Prefix | Match::NoMatch => Outcome::NoMatch,
            }
        } else if collector.noinput_at.is_some_and(|at| at <= now) {
            collector.noinput_at = None;
            Outcome::NoInput
        } else {
            Outcome::Pending
        };
        if let Some(suspend) = self.conclude(outcome) {
            self.resume(now, suspend);
        }
    }

    /// Hands a finished collection to the interpreter.
    fn conclude(&mut self, outcome: Outcome) -> Option<Suspend> {
        Some(match outcome {
            Outcome::Pending => return None,
            Outcome::Filled(keys, value) => self.interpreter.filled(&keys, &value),
            Outcome::NoMatch => self.interpreter.throw(Event::new(
                names::NOMATCH,
                "the input matched no active grammar",
            )),
            Outcome::NoInput => self
                .interpreter
                .throw(Event::new(names::NOINPUT, "no input before the timeout")),
        })
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

    /// A fetch result: start the document, or throw `error.badfetch` where the fetch began.
    fn on_fetched(&mut self, now: Instant, id: FetchId, result: Result<Fetched, FetchFailure>) {
        let State::Fetching {
            id: expected,
            submit,
            ..
        } = &self.state
        else {
            return;
        };
        if *expected != id {
            return;
        }
        let submit = *submit;
        let State::Fetching {
            fragment, root_for, ..
        } = std::mem::replace(&mut self.state, State::Ended)
        else {
            return;
        };
        let suspend = match result {
            Err(failure) => {
                let status = failure
                    .status
                    .map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}"));
                let url = self.last_fetch_url().unwrap_or_default();
                self.interpreter.throw(Event::new(
                    names::BADFETCH,
                    format!("fetching {url} failed: {status}: {}", failure.message),
                ))
            }
            Ok(fetched) if submit && fetched.body.iter().all(u8::is_ascii_whitespace) => {
                Suspend::End(SessionEnd::Exit { value: None })
            }
            Ok(fetched) => match Url::parse(&fetched.url) {
                Err(e) => self.interpreter.throw(Event::new(
                    names::BADFETCH,
                    format!(
                        "the fetched document's URL {:?} is not absolute: {e}",
                        fetched.url
                    ),
                )),
                Ok(url) => match Document::parse(
                    url,
                    fetched.content_type.as_deref(),
                    &fetched.body,
                    self.max_document_bytes,
                ) {
                    Ok(document) => match root_for {
                        Some(leaf) => self.interpreter.load_root(document, *leaf, fragment),
                        None => self.interpreter.load(document, fragment),
                    },
                    Err(e) => self
                        .interpreter
                        .throw(Event::new(names::BADFETCH, e.to_string())),
                },
            },
        };
        self.resume(now, suspend);
    }

    /// The URL of the most recent Fetch action (for failure messages).
    fn last_fetch_url(&self) -> Option<String> {
        self.last_fetch_url.clone()
    }

    /// A Play finished: start the noinput timer or emit the pending End when the queue empties.
    fn on_playback_done(&mut self, now: Instant, id: u32) {
        self.playing.retain(|(play, _)| *play != id);
        if !self.playing.is_empty() {
            return;
        }
        match &mut self.state {
            State::Collecting(c)
                if c.keys.is_empty() && c.interdigit_at.is_none() && c.noinput_at.is_none() =>
            {
                c.noinput_at = Some(now + c.spec.timeout);
            }
            State::Ending(_) => {
                if let State::Ending(end) = std::mem::replace(&mut self.state, State::Ended) {
                    self.actions.push_back(Action::End(end));
                }
            }
            _ => {}
        }
    }

    /// A key: input for the collecting field, typeahead, or discarded under a no-barge-in
    /// prompt.
    fn on_key(&mut self, now: Instant, key: char) {
        if matches!(self.state, State::Ending(_) | State::Ended) {
            return;
        }
        if self.playing.front().is_some_and(|(_, bargein)| !bargein) {
            return;
        }
        if matches!(self.state, State::Collecting(_)) {
            if let Some(suspend) = self.feed(now, key) {
                self.resume(now, suspend);
            }
        } else if self.typeahead.len() < MAX_KEYS {
            self.typeahead.push(key);
        }
    }

    /// The caller hung up.
    fn on_hangup(&mut self, now: Instant) {
        self.caller_gone = true;
        self.playing.clear();
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Ended => {}
            State::Ending(end) => self.actions.push_back(Action::End(end)),
            State::Fetching { .. } | State::Collecting(_) => {
                let suspend = self
                    .interpreter
                    .throw(Event::new(names::HANGUP, "the caller hung up"));
                self.resume(now, suspend);
            }
        }
    }

    /// Adds a key to the collector; `Some` when the field's input is complete.
    fn feed(&mut self, now: Instant, key: char) -> Option<Suspend> {
        let State::Collecting(collector) = &mut self.state else {
            return None;
        };
        collector.noinput_at = None;
        let outcome = if collector.spec.termchar == Some(key) {
            collector.interdigit_at = None;
            match best_match(&collector.spec.grammars, &collector.keys) {
                Match::Complete(value) | Match::Extendable(value) => {
                    Outcome::Filled(std::mem::take(&mut collector.keys), value)
                }
                Match::Prefix | Match::NoMatch => Outcome::NoMatch,
            }
        } else {
            collector.keys.push(key);
            match best_match(&collector.spec.grammars, &collector.keys) {
                _ if collector.keys.len() > MAX_KEYS => Outcome::NoMatch,
                Match::Complete(value) => {
                    collector.interdigit_at = None;
                    Outcome::Filled(std::mem::take(&mut collector.keys), value)
                }
                Match::NoMatch => Outcome::NoMatch,
                Match::Extendable(_) | Match::Prefix => {
                    collector.interdigit_at = Some(now + collector.spec.interdigit);
                    Outcome::Pending
                }
            }
        };
        self.conclude(outcome)
    }

    /// Emits the interpreter's output and enters the state `suspend` asks for.
    fn resume(&mut self, now: Instant, suspend: Suspend) {
        let mut next = Some(suspend);
        while let Some(suspend) = next.take() {
            // Typeahead barges in on barge-in prompts before they start (§4.1.5), so a field
            // that typeahead is about to fill does not play them.
            let skip_bargein = matches!(suspend, Suspend::Collect(_)) && !self.typeahead.is_empty();
            self.flush_outbox(skip_bargein);
            next = self.enter(now, suspend);
        }
    }

    /// Logs go out at once; prompts become Play actions unless the caller is gone.
    fn flush_outbox(&mut self, skip_bargein: bool) {
        for output in self.interpreter.drain_outbox() {
            match output {
                Output::Log { label, text } => self.actions.push_back(Action::Log { label, text }),
                Output::Prompt(prompt) if !(self.caller_gone || skip_bargein && prompt.bargein) => {
                    let id = self.next_play;
                    self.next_play = self.next_play.wrapping_add(1);
                    self.playing.push_back((id, prompt.bargein));
                    self.actions.push_back(Action::Play { id, prompt });
                }
                Output::Prompt(_) => {}
            }
        }
    }

    /// Enters a wait state; returns the next suspension if typeahead completed a field at once.
    fn enter(&mut self, now: Instant, suspend: Suspend) -> Option<Suspend> {
        match suspend {
            Suspend::Fetch(request) => {
                let id = FetchId(self.next_fetch);
                self.next_fetch = self.next_fetch.wrapping_add(1);
                if request.submit {
                    self.submitted = Some(request.form.clone());
                }
                self.last_fetch_url = Some(request.url.to_string());
                self.actions.push_back(Action::Fetch(Fetch {
                    id,
                    url: request.url.to_string(),
                    method: if request.post {
                        Method::Post
                    } else {
                        Method::Get
                    },
                    purpose: if request.submit {
                        FetchPurpose::Submit
                    } else {
                        FetchPurpose::Document
                    },
                    form: request.form,
                    files: Vec::new(),
                    enctype: Enctype::UrlEncoded,
                    timeout: None,
                    maxage: None,
                    maxstale: None,
                    fetchaudio: None,
                }));
                self.state = State::Fetching {
                    id,
                    submit: request.submit,
                    fragment: request.fragment,
                    root_for: request.root_for,
                };
                None
            }
            Suspend::End(end) => {
                if self.playing.is_empty() || self.caller_gone {
                    self.playing.clear();
                    self.actions.push_back(Action::End(end));
                    self.state = State::Ended;
                } else {
                    self.state = State::Ending(end);
                }
                None
            }
            Suspend::Collect(spec) => {
                let noinput_at = self.playing.is_empty().then(|| now + spec.timeout);
                self.state = State::Collecting(Collector {
                    spec,
                    keys: String::new(),
                    noinput_at,
                    interdigit_at: None,
                });
                let typeahead = std::mem::take(&mut self.typeahead);
                let mut keys = typeahead.chars();
                for key in keys.by_ref() {
                    if let Some(next) = self.feed(now, key) {
                        self.typeahead = keys.collect();
                        return Some(next);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

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

    #[test]
    fn the_first_action_is_the_initial_fetch() {
        let config = SessionConfig {
            url: "http://x.test/a.vxml".into(),
            vars: vec![],
            local_uri: "sip:a@b".into(),
            remote_uri: "sip:c@d".into(),
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
            }))
        );
        assert_eq!(session.poll_action(), None);
        assert_eq!(session.poll_timeout(), None);
    }
}
