//! A scripted caller in virtual time: runs a [`Session`] to its end without a clock, a
//! network or a telephone, and writes down what happened as a [`Transcript`].
//!
//! The driver plays the platform's part of the sans-IO contract:
//! - every `Fetch` goes to a [`Fetcher`] and its result is fed back at once (fetches take no
//!   virtual time);
//! - every `Play` takes a virtual time proportional to what it says ([`play_duration`]); plays
//!   finish in order and each is reported with `PlaybackDone`;
//! - when the session waits for input (`Listen`) the driver asks the [`Caller`] at once (it has
//!   every prompt queued so far in the transcript) and delivers the answer when the prompt
//!   queue has drained, or at once for [`CallerInput::BargeIn`]; [`CallerInput::NoInput`] lets
//!   the noinput timer fire. A key that arrives while a barge-in prompt is still queued (the
//!   second key of `"1#"` after the first one filled a field, or a barge-in) stops every queued
//!   barge-in prompt, as a telephony platform does. A `<record>` is answered when it starts
//!   (after the prompts);
//! - `Transfer` requests are answered by [`Caller::transfer`] (default: blind and consultation
//!   transfers succeed, a bridge gets `noanswer` after `connecttimeout`, because the virtual
//!   destination has nobody at it);
//! - when nothing is queued, time jumps to [`Session::poll_timeout`].
//!
//! The run stops when the session ends, or at [`RunLimits`]. Nothing here reads a clock: the
//! caller passes the `Instant` the session was created with, and virtual time counts from it.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::prompt::{Prompt, PromptItem};
use crate::session::{
    Action, Fetch, FetchFailure, FetchPurpose, Fetched, Input, Listen, Method, RecordRequest,
    Recording, Session, SessionEnd, SpeechListen, TransferFailure, TransferKind, TransferOutcome,
    TransferRequest,
};

/// Virtual time to speak one character of prompt text.
const TIME_PER_CHAR: Duration = Duration::from_millis(60);
/// Virtual time to play one audio clip (its length is unknown: it is never fetched).
const TIME_PER_AUDIO: Duration = Duration::from_secs(1);
/// Shortest virtual duration of a prompt.
const MIN_PLAY_TIME: Duration = Duration::from_millis(200);
/// Virtual time to say one character of a recorded utterance.
const RECORD_TIME_PER_CHAR: Duration = Duration::from_millis(80);
/// Length of a recording the caller ends with a key.
const KEYED_RECORDING: Duration = Duration::from_secs(2);
/// Sample rate of synthetic recordings.
const WAV_RATE: u32 = 8000;
/// Longest synthetic recording (keeps a misbehaving `maxtime` from allocating much).
const MAX_RECORDING: Duration = Duration::from_secs(60);

/// Fetches what a session asks for (documents, submits, scripts, data, grammars).
pub trait Fetcher {
    /// Answers one fetch. For `GET` the submitted `form` values are not in `request.url`: a
    /// fetcher that talks HTTP appends them as the query.
    fn fetch(&mut self, request: &Fetch) -> Result<Fetched, FetchFailure>;

    /// Fetches the audio clip at `url` as a call would before playing it (not decoded);
    /// `Err` says why it cannot be played. A fetcher that leaves audio alone (the default)
    /// reports every clip playable.
    fn fetch_audio(&mut self, url: &str) -> Result<(), String> {
        let _ = url;
        Ok(())
    }
}

/// What became of one `<audio>` of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPlay {
    /// The clip at this URL plays.
    Played(String),
    /// A recording the session made plays back.
    Recording {
        /// Its length.
        duration: Duration,
        /// Its size in bytes.
        bytes: usize,
        /// Its media type.
        content_type: String,
    },
    /// The clip could not be fetched: its fallback text is spoken instead.
    Fallback {
        /// The clip's URL.
        url: String,
        /// Why it could not be played.
        reason: String,
        /// The text spoken.
        text: String,
    },
    /// The clip could not be fetched and has no fallback: the prompt fails with
    /// `error.badfetch` (VoiceXML 2.0 §4.1.3), as on a call.
    Failed {
        /// The clip's URL.
        url: String,
        /// Why it could not be played.
        reason: String,
    },
}

impl fmt::Display for AudioPlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Played(url) => write!(f, "audio({url})"),
            Self::Recording {
                duration,
                bytes,
                content_type,
            } => write!(
                f,
                "recording({:.1} s, {bytes} bytes {content_type})",
                duration.as_secs_f64()
            ),
            Self::Fallback { url, reason, text } => {
                write!(f, "audio({url} unplayable: {reason}; fallback {text:?})")
            }
            Self::Failed { url, reason } => {
                write!(f, "audio({url} unplayable: {reason}; no fallback)")
            }
        }
    }
}

/// The person at the other end of the call.
pub trait Caller {
    /// The answer to the session's latest request for input: the last entry of `transcript`
    /// is the `Listen` (or `Record`) being answered, and the prompts before it are what the
    /// caller heard.
    fn respond(&mut self, transcript: &Transcript) -> CallerInput;

    /// How a `<transfer>` goes; by default [`default_transfer_outcome`].
    fn transfer(&mut self, request: &TransferRequest, transcript: &Transcript) -> TransferAnswer {
        let _ = transcript;
        TransferAnswer::Outcome(default_transfer_outcome(request.kind))
    }

    /// What a recognizer makes of `words`, said while the session listens with `speech`
    /// (`None` when it announced no voice grammar): the recognised text and its confidence.
    /// By default the words themselves with confidence 1.0, as a text caller; a caller that
    /// speaks them (synthesised, through G.711, into a real recognizer) overrides it.
    fn hear(&mut self, words: &str, speech: Option<&SpeechListen>) -> (String, f32) {
        let _ = speech;
        (words.to_owned(), 1.0)
    }
}

/// How a `<transfer>` goes, as the caller (or the test operator's network) decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferAnswer {
    /// The transfer ends with this outcome.
    Outcome(TransferOutcome),
    /// The transfer cannot be tried; the session throws the failure's event.
    Failed(TransferFailure),
    /// The caller hangs up during the transfer.
    Hangup,
}

impl fmt::Display for TransferAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Outcome(outcome) => f.write_str(outcome.name()),
            Self::Failed(failure) => write!(f, "{}: {}", failure.event, failure.message),
            Self::Hangup => f.write_str("the caller hung up"),
        }
    }
}

/// A transfer outcome when the caller has no opinion: blind and consultation transfers are
/// handed over (`transferred`); a bridge rings out (`noanswer`).
pub fn default_transfer_outcome(kind: TransferKind) -> TransferOutcome {
    match kind {
        TransferKind::Blind | TransferKind::Consultation => TransferOutcome::Transferred,
        TransferKind::Bridge => TransferOutcome::NoAnswer,
    }
}

/// What the caller does when asked for input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerInput {
    /// Press these keys (`0-9`, `*`, `#`, `A-D`), one after another, once the prompts have
    /// played. To a `<record>`: talk for a moment, then press the first key.
    Dtmf(String),
    /// Press these keys at once, without waiting for the prompts: a barge-in prompt playing is
    /// stopped; under a prompt without barge-in the platform discards them (VoiceXML 2.0
    /// §4.1.5). To a `<record>`: as [`CallerInput::Dtmf`].
    BargeIn(String),
    /// Say this (delivered as a recognition result with confidence 1.0). To a `<record>`:
    /// a recording as long as it takes to say it.
    Say(String),
    /// Stay silent until the noinput timer fires. To a `<record>`: a silent recording.
    NoInput,
    /// Hang up.
    Hangup,
    /// The caller has nothing more to say (e.g. its script ran out), so it hangs up.
    Exhausted,
}

impl fmt::Display for CallerInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dtmf(keys) => write!(f, "dtmf {keys}"),
            Self::BargeIn(keys) => write!(f, "dtmf {keys} (barge-in)"),
            Self::Say(text) => write!(f, "say {text:?}"),
            Self::NoInput => f.write_str("noinput"),
            Self::Hangup => f.write_str("hangup"),
            Self::Exhausted => f.write_str("hangup (no more scripted input)"),
        }
    }
}

/// Why a scripted input list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputScriptError {
    /// A DTMF token holds something that is not a key.
    #[error(
        "input {index} ({token:?}) is not DTMF keys; use 0-9 * # A-D (!KEYS to barge in), or noinput, hangup, say:WORDS, transfer:OUTCOME"
    )]
    BadKeys {
        /// 1-based position in the list.
        index: usize,
        /// The token.
        token: String,
    },
    /// A `transfer:` token names no outcome.
    #[error(
        "input {index} ({token:?}) names no transfer outcome; use transferred, busy, noanswer, network_busy, near_end_disconnect, far_end_disconnect, network_disconnect, maxtime_disconnect, unknown, hangup or an error.* event"
    )]
    BadTransfer {
        /// 1-based position in the list.
        index: usize,
        /// The token.
        token: String,
    },
    /// A `say:` token has nothing to say.
    #[error("input {index} is `say:` with no words; write e.g. say:new york")]
    EmptySay {
        /// 1-based position in the list.
        index: usize,
    },
}

/// One scripted step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Answer a Listen or Record.
    Input(CallerInput),
    /// Answer a Transfer.
    Transfer(TransferAnswer),
}

/// A caller that answers from a fixed list, as the command line gives it:
/// `"1,noinput,2#,say:new york,transfer:busy,hangup"`.
///
/// Tokens (comma-separated, surrounding blanks ignored): DTMF keys (`1`, `2#`, `*9`), keys
/// pressed without waiting for the prompts (`!1`, barge-in), `noinput`, `hangup`, `say:WORDS`, `transfer:OUTCOME` (how the next `<transfer>` goes,
/// skipped by requests for input: an outcome as VoiceXML names it, `transferred`, `hangup`, or
/// an `error.*` event the session throws). When the list runs out the caller hangs up and the
/// transcript says so; a transfer with no `transfer:` token next gets
/// [`default_transfer_outcome`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptedInputs {
    steps: VecDeque<Step>,
}

impl ScriptedInputs {
    /// Parses the comma-separated list; an empty string is an empty list.
    pub fn parse(script: &str) -> Result<Self, InputScriptError> {
        let mut steps = VecDeque::new();
        for (position, token) in script.split(',').map(str::trim).enumerate() {
            let index = position + 1;
            if token.is_empty() {
                continue;
            }
            let step = match token {
                "noinput" => Step::Input(CallerInput::NoInput),
                "hangup" => Step::Input(CallerInput::Hangup),
                _ => {
                    if let Some(words) = token.strip_prefix("say:") {
                        let words = words.trim();
                        if words.is_empty() {
                            return Err(InputScriptError::EmptySay { index });
                        }
                        Step::Input(CallerInput::Say(words.to_owned()))
                    } else if let Some(answer) = token.strip_prefix("transfer:") {
                        Step::Transfer(parse_transfer_answer(answer.trim()).ok_or_else(|| {
                            InputScriptError::BadTransfer {
                                index,
                                token: token.to_owned(),
                            }
                        })?)
                    } else {
                        let (bargein, keys) = match token.strip_prefix('!') {
                            Some(keys) => (true, keys.trim().to_ascii_uppercase()),
                            None => (false, token.to_ascii_uppercase()),
                        };
                        if keys.is_empty() || !keys.chars().all(is_dtmf_key) {
                            return Err(InputScriptError::BadKeys {
                                index,
                                token: token.to_owned(),
                            });
                        }
                        Step::Input(if bargein {
                            CallerInput::BargeIn(keys)
                        } else {
                            CallerInput::Dtmf(keys)
                        })
                    }
                }
            };
            steps.push_back(step);
        }
        Ok(Self { steps })
    }

    /// Steps not yet used.
    pub fn remaining(&self) -> usize {
        self.steps.len()
    }
}

impl Caller for ScriptedInputs {
    fn respond(&mut self, _transcript: &Transcript) -> CallerInput {
        while let Some(step) = self.steps.pop_front() {
            if let Step::Input(input) = step {
                return input;
            }
        }
        CallerInput::Exhausted
    }

    fn transfer(&mut self, request: &TransferRequest, _transcript: &Transcript) -> TransferAnswer {
        if matches!(self.steps.front(), Some(Step::Transfer(_)))
            && let Some(Step::Transfer(answer)) = self.steps.pop_front()
        {
            return answer;
        }
        TransferAnswer::Outcome(default_transfer_outcome(request.kind))
    }
}

/// A DTMF key (RFC 4733 events 0-15).
fn is_dtmf_key(key: char) -> bool {
    matches!(key, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// A transfer answer as scripts write it: an outcome ([`TransferOutcome::from_name`]), `hangup`,
/// or an `error.*` event.
pub fn parse_transfer_answer(text: &str) -> Option<TransferAnswer> {
    if text == "hangup" {
        return Some(TransferAnswer::Hangup);
    }
    if text.starts_with("error.") && text.len() > "error.".len() {
        return Some(TransferAnswer::Failed(TransferFailure {
            event: text.to_owned(),
            message: "scripted transfer failure".to_owned(),
        }));
    }
    TransferOutcome::from_name(text).map(TransferAnswer::Outcome)
}

/// Bounds on one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Stop when virtual time passes this.
    pub max_virtual_time: Duration,
    /// Stop after this many session actions.
    pub max_actions: usize,
}

impl Default for RunLimits {
    /// One virtual hour, 100,000 actions.
    fn default() -> Self {
        Self {
            max_virtual_time: Duration::from_secs(3600),
            max_actions: 100_000,
        }
    }
}

/// A file sent with a submit (its bytes are not kept in the transcript).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// Form field name.
    pub name: String,
    /// Content type.
    pub content_type: String,
    /// Size in bytes.
    pub bytes: usize,
}

/// Why a run stopped before the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Virtual time passed [`RunLimits::max_virtual_time`].
    VirtualTime,
    /// The session produced more than [`RunLimits::max_actions`] actions.
    Actions,
    /// The session waits for nothing the driver can give: no prompt, timer or request.
    Stalled,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VirtualTime => "the virtual time limit was reached",
            Self::Actions => "the action limit was reached",
            Self::Stalled => "the session waits for nothing (no prompt, timer or request)",
        })
    }
}

/// One thing that happened in a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A prompt was queued.
    Prompt {
        /// Its text (text runs joined by a space; audio fallback excluded).
        text: String,
        /// Its `<audio>` clips and recordings, in order, and what became of each.
        audio: Vec<AudioPlay>,
        /// Whether input may interrupt it.
        bargein: bool,
    },
    /// The session started waiting for input.
    Listen {
        /// DTMF grammars are active.
        dtmf: bool,
        /// Voice grammars are active.
        voice: bool,
        /// The noinput timeout.
        timeout: Duration,
    },
    /// What the caller did when asked.
    Input(String),
    /// Input the session consumed and what it matched (typed-ahead keys included).
    Heard(crate::Heard),
    /// The fetch that follows carries `fetchaudio` (VoiceXML 2.0 §6.1.1): a platform plays
    /// `url` once the fetch has taken `delay`, for at least `minimum` once started.
    FetchAudio {
        /// The audio, absolute URL.
        url: String,
        /// `fetchaudiodelay` in effect.
        delay: Duration,
        /// `fetchaudiominimum` in effect.
        minimum: Duration,
    },
    /// A document, script, data or grammar fetch.
    Fetch {
        /// Absolute URL (without GET form values).
        url: String,
        /// HTTP method.
        method: Method,
        /// What it is for.
        purpose: FetchPurpose,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// A `<submit>`.
    Submit {
        /// Absolute URL.
        url: String,
        /// HTTP method.
        method: Method,
        /// Submitted values, in order.
        values: Vec<(String, String)>,
        /// Submitted files.
        files: Vec<FileSummary>,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// A `<record>` and what the caller gave it.
    Record {
        /// Beep first.
        beep: bool,
        /// Longest recording.
        max_time: Duration,
        /// What was recorded, e.g. `2.4 s of speech`.
        result: String,
    },
    /// A `<transfer>` and its outcome.
    Transfer {
        /// Destination URI.
        dest: String,
        /// How it connects.
        kind: TransferKind,
        /// The outcome (VoiceXML name) or the error event thrown.
        outcome: String,
    },
    /// A `<log>` or an interpreter warning.
    Log {
        /// `label`.
        label: Option<String>,
        /// Text.
        text: String,
    },
    /// `<disconnect>`: the platform hung up.
    Disconnect {
        /// `namelist` values.
        values: Vec<(String, String)>,
    },
    /// The session ended.
    End(SessionEnd),
    /// The run was stopped before the session ended.
    Stopped(Stop),
}

/// An entry with the virtual time it happened at.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    /// Virtual time since the session started.
    pub at: Duration,
    /// What happened.
    pub entry: Entry,
}

/// Everything that happened in one run, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// The entries.
    pub entries: Vec<Stamped>,
}

impl Transcript {
    /// How the session ended, if it did.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.entries.iter().rev().find_map(|e| match &e.entry {
            Entry::End(end) => Some(end),
            _ => None,
        })
    }

    /// Why the run stopped early, if it did.
    pub fn stopped(&self) -> Option<Stop> {
        self.entries.iter().rev().find_map(|e| match e.entry {
            Entry::Stopped(stop) => Some(stop),
            _ => None,
        })
    }

    /// Texts of every prompt, in order.
    pub fn prompt_texts(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| match &e.entry {
            Entry::Prompt { text, .. } => Some(text.as_str()),
            _ => None,
        })
    }

    /// Texts of the prompts queued since the caller last gave input (what it just heard).
    pub fn prompts_since_input(&self) -> Vec<&str> {
        let since = self
            .entries
            .iter()
            .rposition(|e| matches!(e.entry, Entry::Input(_)))
            .map_or(0, |i| i + 1);
        self.entries
            .get(since..)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| match &e.entry {
                Entry::Prompt { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn push(&mut self, at: Duration, entry: Entry) {
        self.entries.push(Stamped { at, entry });
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for stamped in &self.entries {
            writeln!(f, "{stamped}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Stamped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>4}.{:03}] {}",
            self.at.as_secs(),
            self.at.subsec_millis(),
            self.entry
        )
    }
}

/// `GET`/`POST`.
pub fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
    }
}

/// The purpose in lower case (`document`, `submit`, `script`, `data`, `grammar`).
pub fn purpose_name(purpose: FetchPurpose) -> &'static str {
    match purpose {
        FetchPurpose::Document => "document",
        FetchPurpose::Submit => "submit",
        FetchPurpose::Script => "script",
        FetchPurpose::Data => "data",
        FetchPurpose::Grammar => "grammar",
    }
}

/// `blind`, `bridge` or `consultation`.
pub fn transfer_kind_name(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Blind => "blind",
        TransferKind::Bridge => "bridge",
        TransferKind::Consultation => "consultation",
    }
}

/// Writes `name="value"` pairs separated by spaces.
fn write_values(f: &mut fmt::Formatter<'_>, values: &[(String, String)]) -> fmt::Result {
    for (name, value) in values {
        write!(f, " {name}={value:?}")?;
    }
    Ok(())
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prompt {
                text,
                audio,
                bargein,
            } => {
                write!(f, "prompt {text:?}")?;
                for clip in audio {
                    write!(f, " {clip}")?;
                }
                if !bargein {
                    f.write_str(" (no barge-in)")?;
                }
                Ok(())
            }
            Self::Listen {
                dtmf,
                voice,
                timeout,
            } => {
                let modes = match (dtmf, voice) {
                    (true, true) => "dtmf+voice",
                    (true, false) => "dtmf",
                    (false, true) => "voice",
                    (false, false) => "nothing",
                };
                write!(f, "listen {modes}, timeout {timeout:?}")
            }
            Self::Input(text) => write!(f, "input {text}"),
            Self::Heard(heard) => {
                write!(f, "heard {} {}", heard.mode, heard.input)?;
                if heard.typeahead {
                    f.write_str(" (typed ahead)")?;
                }
                match &heard.matched {
                    Some(value) => write!(f, ": matched {value:?}"),
                    None => f.write_str(": no match"),
                }
            }
            Self::FetchAudio {
                url,
                delay,
                minimum,
            } => write!(f, "fetchaudio {url} after {delay:?}, at least {minimum:?}"),
            Self::Fetch {
                url,
                method,
                purpose,
                error,
            } => {
                write!(
                    f,
                    "fetch {} {url} ({})",
                    method_name(*method),
                    purpose_name(*purpose)
                )?;
                match error {
                    Some(error) => write!(f, " failed: {error}"),
                    None => Ok(()),
                }
            }
            Self::Submit {
                url,
                method,
                values,
                files,
                error,
            } => {
                write!(f, "submit {} {url}", method_name(*method))?;
                write_values(f, values)?;
                for file in files {
                    write!(
                        f,
                        " {}=<{}, {} bytes>",
                        file.name, file.content_type, file.bytes
                    )?;
                }
                match error {
                    Some(error) => write!(f, " failed: {error}"),
                    None => Ok(()),
                }
            }
            Self::Record {
                beep,
                max_time,
                result,
            } => write!(
                f,
                "record (max {max_time:?}{}): {result}",
                if *beep { ", beep" } else { "" }
            ),
            Self::Transfer {
                dest,
                kind,
                outcome,
            } => write!(
                f,
                "transfer {} {dest}: {outcome}",
                transfer_kind_name(*kind)
            ),
            Self::Log { label, text } => match label {
                Some(label) => write!(f, "log [{label}] {text}"),
                None => write!(f, "log {text}"),
            },
            Self::Disconnect { values } => {
                f.write_str("disconnect")?;
                write_values(f, values)
            }
            Self::End(end) => match end {
                SessionEnd::Exit { value: None } => f.write_str("end: exit"),
                SessionEnd::Exit { value: Some(value) } => write!(f, "end: exit {value}"),
                SessionEnd::Disconnect => f.write_str("end: disconnect"),
                SessionEnd::Hangup => f.write_str("end: hangup"),
                SessionEnd::Error { event, message } => write!(f, "end: {event}: {message}"),
            },
            Self::Stopped(stop) => write!(f, "stopped: {stop}"),
        }
    }
}

/// How long a prompt plays in virtual time: its text at a steady speaking rate, one second
/// per audio clip, its breaks; at least 200 ms.
pub fn play_duration(prompt: &Prompt) -> Duration {
    prompt
        .items
        .iter()
        .map(item_duration)
        .fold(Duration::ZERO, Duration::saturating_add)
        .max(MIN_PLAY_TIME)
}

/// Where each `<mark>` of a prompt falls in its virtual play time, in order.
pub fn mark_offsets(prompt: &Prompt) -> Vec<(String, Duration)> {
    let mut offset = Duration::ZERO;
    let mut marks = Vec::new();
    for item in &prompt.items {
        if let PromptItem::Mark(name) = item {
            marks.push((name.clone(), offset));
        }
        offset = offset.saturating_add(item_duration(item));
    }
    marks
}

/// The last mark at or before `played` into a prompt, and the time since it.
fn mark_at(marks: &[(String, Duration)], played: Duration) -> Option<(&str, Duration)> {
    marks
        .iter()
        .rev()
        .find(|(_, offset)| *offset <= played)
        .map(|(name, offset)| (name.as_str(), played.saturating_sub(*offset)))
}

/// Virtual play time of one prompt item.
fn item_duration(item: &PromptItem) -> Duration {
    match item {
        PromptItem::Text(_) | PromptItem::Ssml(_) => {
            let chars = item.spoken_text().map_or(0, |text| text.len());
            TIME_PER_CHAR.saturating_mul(u32::try_from(chars).unwrap_or(u32::MAX))
        }
        PromptItem::Audio { .. } => TIME_PER_AUDIO,
        PromptItem::Recording(clip) => clip.duration,
        PromptItem::Break(pause) => *pause,
        PromptItem::Mark(_) => Duration::ZERO,
    }
}

/// A mono 16-bit PCM WAV file at 8 kHz: a 440 Hz tone, or silence.
pub fn synthetic_wav(duration: Duration, tone: bool) -> Vec<u8> {
    let duration = duration.min(MAX_RECORDING);
    // invariant: MAX_RECORDING * WAV_RATE fits in u32 many times over.
    let samples = (duration.as_secs_f64() * f64::from(WAV_RATE)) as u32;
    let pcm: Vec<i16> = (0..samples)
        .map(|n| {
            if tone {
                let phase = f64::from(n) * 440.0 * std::f64::consts::TAU / f64::from(WAV_RATE);
                (phase.sin() * 8000.0) as i16
            } else {
                0
            }
        })
        .collect();
    Recording::wav_file(&pcm, WAV_RATE)
}

/// Runs `session` to its end (or to `limits`) against `fetcher` and `caller`. `start` is the
/// `Instant` the session was created with; virtual time counts from it.
pub fn run(
    session: Session,
    start: Instant,
    fetcher: &mut dyn Fetcher,
    caller: &mut dyn Caller,
    limits: RunLimits,
) -> Transcript {
    let mut driver = Driver {
        session,
        start,
        now: start,
        fetcher,
        caller,
        limits,
        transcript: Transcript::default(),
        plays: VecDeque::new(),
        play_ends: None,
        inbox: VecDeque::new(),
        listen: None,
        speech: None,
        held: None,
        record: None,
        transfer: None,
        listen_seen: false,
        asked_without_listen: false,
        actions: 0,
        ended: false,
    };
    driver.run();
    driver.transcript
}

/// A queued play.
struct Play {
    id: u32,
    bargein: bool,
    duration: Duration,
    /// Its marks and where they fall ([`mark_offsets`]).
    marks: Vec<(String, Duration)>,
}

/// The virtual platform.
struct Driver<'a> {
    session: Session,
    start: Instant,
    now: Instant,
    fetcher: &'a mut dyn Fetcher,
    caller: &'a mut dyn Caller,
    limits: RunLimits,
    transcript: Transcript,
    plays: VecDeque<Play>,
    play_ends: Option<Instant>,
    inbox: VecDeque<Input>,
    listen: Option<Listen>,
    /// What the session's latest wait for input listens for by voice.
    speech: Option<SpeechListen>,
    /// The caller's answer, waiting for the prompts to finish.
    held: Option<CallerInput>,
    record: Option<RecordRequest>,
    transfer: Option<TransferRequest>,
    /// A `Listen` action has been seen: the session announces its waits.
    listen_seen: bool,
    /// For a session that never sends `Listen`: the caller has been asked since the session
    /// last did something.
    asked_without_listen: bool,
    actions: usize,
    ended: bool,
}

impl Driver<'_> {
    fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    fn note(&mut self, entry: Entry) {
        let at = self.elapsed();
        self.transcript.push(at, entry);
    }

    fn run(&mut self) {
        // Every pass consumes an action, an input, a pending request or virtual time; the step
        // bound only guards against a session that asks for a timer it never consumes.
        let max_steps = self.limits.max_actions.saturating_mul(4).max(1000);
        let mut steps = 0usize;
        loop {
            self.drain();
            if self.ended {
                return;
            }
            steps += 1;
            if self.actions > self.limits.max_actions || steps > max_steps {
                self.note(Entry::Stopped(Stop::Actions));
                return;
            }
            if let Some(input) = self.inbox.pop_front() {
                if matches!(input, Input::PlaybackFailed { .. }) {
                    // The failure ends the wait the session announced: nobody answers it.
                    self.listen = None;
                }
                self.session.handle_input(self.now, input);
                continue;
            }
            if self.listen.take().is_some() {
                self.ask();
                continue;
            }
            if self.plays.is_empty() && self.answer_pending() {
                continue;
            }
            let next = [self.play_ends, self.session.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else {
                self.note(Entry::Stopped(Stop::Stalled));
                return;
            };
            if next.saturating_duration_since(self.start) > self.limits.max_virtual_time {
                self.now = self.start + self.limits.max_virtual_time;
                self.note(Entry::Stopped(Stop::VirtualTime));
                return;
            }
            self.now = self.now.max(next);
            if self.play_ends == Some(next) {
                self.finish_play();
            } else {
                self.session.handle_timeout(self.now);
            }
        }
    }

    /// Plays out the prompt at the head of the queue.
    fn finish_play(&mut self) {
        if let Some(play) = self.plays.pop_front() {
            if let Some((name, since)) = mark_at(&play.marks, play.duration) {
                let mark = Input::MarkReached {
                    id: play.id,
                    name: name.to_owned(),
                    since,
                };
                self.session.handle_input(self.now, mark);
            }
            self.session.handle_input(
                self.now,
                Input::PlaybackDone {
                    id: play.id,
                    interrupted: false,
                },
            );
        }
        self.play_ends = self.plays.front().map(|p| self.now + p.duration);
    }

    /// Takes every queued action.
    fn drain(&mut self) {
        while let Some(action) = self.session.poll_action() {
            self.actions += 1;
            self.asked_without_listen = false;
            self.act(action);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Fetch(fetch) => self.fetch(fetch),
            Action::Play { id, prompt } => {
                let duration = play_duration(&prompt);
                let mut texts = Vec::new();
                let mut audio = Vec::new();
                for item in &prompt.items {
                    match item {
                        PromptItem::Text(_) | PromptItem::Ssml(_) => {
                            texts.extend(item.spoken_text());
                        }
                        PromptItem::Audio { url, fallback } => {
                            audio.push(match (self.fetcher.fetch_audio(url), fallback) {
                                (Ok(()), _) => AudioPlay::Played(url.clone()),
                                (Err(reason), Some(text)) if !text.trim().is_empty() => {
                                    AudioPlay::Fallback {
                                        url: url.clone(),
                                        reason,
                                        text: text.clone(),
                                    }
                                }
                                (Err(reason), _) => AudioPlay::Failed {
                                    url: url.clone(),
                                    reason,
                                },
                            });
                        }
                        // Played back as what it is, not as a URL.
                        PromptItem::Recording(clip) => audio.push(AudioPlay::Recording {
                            duration: clip.duration,
                            bytes: clip.audio.len(),
                            content_type: clip.content_type.clone(),
                        }),
                        PromptItem::Break(_) | PromptItem::Mark(_) => {}
                    }
                }
                let failed = audio.iter().find_map(|clip| match clip {
                    AudioPlay::Failed { url, reason } => Some(format!(
                        "audio {url} cannot be played and has no fallback: {reason}"
                    )),
                    _ => None,
                });
                self.note(Entry::Prompt {
                    text: texts.join(" "),
                    audio,
                    bargein: prompt.bargein,
                });
                if let Some(message) = failed {
                    // As on a call: the prompt does not play, the session hears why.
                    self.inbox.push_back(Input::PlaybackFailed {
                        id,
                        event: "error.badfetch".to_owned(),
                        message,
                    });
                    return;
                }
                if self.plays.is_empty() {
                    self.play_ends = Some(self.now + duration);
                }
                self.plays.push_back(Play {
                    id,
                    bargein: prompt.bargein,
                    duration,
                    marks: mark_offsets(&prompt),
                });
            }
            Action::StopPlayback => self.stop_playback(),
            Action::Listen(listen) => {
                self.note(Entry::Listen {
                    dtmf: listen.dtmf,
                    voice: listen.voice,
                    timeout: listen.timeout,
                });
                self.listen_seen = true;
                self.speech.clone_from(&listen.speech);
                self.listen = Some(listen);
            }
            Action::Record(request) => self.record = Some(request),
            Action::Transfer(request) => self.transfer = Some(request),
            Action::Disconnect { values } => self.note(Entry::Disconnect { values }),
            Action::Log { label, text } => self.note(Entry::Log { label, text }),
            Action::Heard(heard) => self.note(Entry::Heard(heard)),
            Action::End(end) => {
                self.note(Entry::End(end));
                self.ended = true;
            }
        }
    }

    fn fetch(&mut self, fetch: Fetch) {
        if let Some(url) = &fetch.fetchaudio {
            self.note(Entry::FetchAudio {
                url: url.clone(),
                delay: fetch.fetchaudio_delay,
                minimum: fetch.fetchaudio_minimum,
            });
        }
        let result = self.fetcher.fetch(&fetch);
        let error = result.as_ref().err().map(|failure| match failure.status {
            Some(status) => format!("HTTP {status}: {}", failure.message),
            None => failure.message.clone(),
        });
        let entry = if fetch.purpose == FetchPurpose::Submit {
            Entry::Submit {
                url: fetch.url,
                method: fetch.method,
                values: fetch.form,
                files: fetch
                    .files
                    .iter()
                    .map(|file| FileSummary {
                        name: file.name.clone(),
                        content_type: file.content_type.clone(),
                        bytes: file.data.len(),
                    })
                    .collect(),
                error,
            }
        } else {
            Entry::Fetch {
                url: fetch.url,
                method: fetch.method,
                purpose: fetch.purpose,
                error,
            }
        };
        self.note(entry);
        self.inbox.push_back(Input::Fetched {
            id: fetch.id,
            result,
        });
    }

    /// Asks the caller what it does about the wait just announced; holds the answer until the
    /// prompts have played unless it barges in.
    fn ask(&mut self) {
        let input = self.caller.respond(&self.transcript);
        if self.plays.is_empty() || matches!(input, CallerInput::BargeIn(_)) {
            self.deliver(input);
        } else {
            self.held = Some(input);
        }
    }

    /// Answers a held input, a pending Record or Transfer (the prompt queue is empty); `false`
    /// if there was none.
    fn answer_pending(&mut self) -> bool {
        if let Some(input) = self.held.take() {
            self.deliver(input);
        } else if let Some(request) = self.record.take() {
            self.answer_record(&request);
        } else if let Some(request) = self.transfer.take() {
            self.answer_transfer(&request);
        } else if !self.listen_seen
            && !self.asked_without_listen
            && self.session.poll_timeout().is_some()
        {
            // A session that does not announce its waits: a timer with nothing playing is
            // taken as a wait for input.
            self.asked_without_listen = true;
            let input = self.caller.respond(&self.transcript);
            self.deliver(input);
        } else {
            return false;
        }
        true
    }

    /// Carries out the caller's answer to a wait for input.
    fn deliver(&mut self, input: CallerInput) {
        self.note(Entry::Input(input.to_string()));
        match input {
            CallerInput::Dtmf(keys) | CallerInput::BargeIn(keys) => {
                for key in keys.chars() {
                    self.key(key);
                    self.drain();
                    if self.ended {
                        return;
                    }
                }
            }
            CallerInput::Say(words) => {
                let (utterance, confidence) = self.caller.hear(&words, self.speech.as_ref());
                self.barge_in();
                self.session.handle_input(
                    self.now,
                    Input::Recognition {
                        utterance,
                        confidence,
                    },
                );
            }
            CallerInput::NoInput => {}
            CallerInput::Hangup | CallerInput::Exhausted => self.hang_up(),
        }
    }

    /// Delivers one key, stopping queued barge-in prompts if the one playing allows it.
    fn key(&mut self, key: char) {
        if self.plays.front().is_some_and(|p| p.bargein) {
            self.report_head_mark();
        }
        let stopped = self.barge_in_ids();
        self.session.handle_input(self.now, Input::Dtmf(key));
        self.report_interrupted(&stopped);
    }

    /// Stops queued barge-in prompts before delivering an utterance.
    fn barge_in(&mut self) {
        if self.plays.front().is_some_and(|p| p.bargein) {
            self.report_head_mark();
        }
        let stopped = self.barge_in_ids();
        self.report_interrupted(&stopped);
    }

    /// The queued barge-in prompts input would stop now, removed from the queue.
    fn barge_in_ids(&mut self) -> Vec<u32> {
        if !self.plays.front().is_some_and(|p| p.bargein) {
            return Vec::new();
        }
        let stopped: Vec<u32> = self
            .plays
            .iter()
            .filter(|p| p.bargein)
            .map(|p| p.id)
            .collect();
        self.plays.retain(|p| !p.bargein);
        self.play_ends = self.plays.front().map(|p| self.now + p.duration);
        stopped
    }

    /// Reports the last mark the playing prompt has passed by now (VoiceXML 2.1 §4).
    fn report_head_mark(&mut self) {
        let (Some(play), Some(ends)) = (self.plays.front(), self.play_ends) else {
            return;
        };
        let played = play
            .duration
            .saturating_sub(ends.saturating_duration_since(self.now));
        if let Some((name, since)) = mark_at(&play.marks, played) {
            let mark = Input::MarkReached {
                id: play.id,
                name: name.to_owned(),
                since,
            };
            self.session.handle_input(self.now, mark);
        }
    }

    /// `StopPlayback` (a hotword match): every queued prompt stops now, as interrupted.
    fn stop_playback(&mut self) {
        self.report_head_mark();
        let stopped: Vec<u32> = self.plays.drain(..).map(|p| p.id).collect();
        self.play_ends = None;
        self.report_interrupted(&stopped);
    }

    fn report_interrupted(&mut self, stopped: &[u32]) {
        for id in stopped {
            self.session.handle_input(
                self.now,
                Input::PlaybackDone {
                    id: *id,
                    interrupted: true,
                },
            );
        }
    }

    fn hang_up(&mut self) {
        self.plays.clear();
        self.play_ends = None;
        self.session.handle_input(self.now, Input::Hangup);
    }

    fn answer_record(&mut self, request: &RecordRequest) {
        let input = self.caller.respond(&self.transcript);
        self.note(Entry::Input(input.to_string()));
        let (duration, termchar, silent, how) = match input {
            CallerInput::Hangup | CallerInput::Exhausted => {
                self.note(Entry::Record {
                    beep: request.beep,
                    max_time: request.max_time,
                    result: "the caller hung up".to_owned(),
                });
                self.hang_up();
                return;
            }
            CallerInput::NoInput => (request.timeout, None, true, "silence"),
            CallerInput::Say(text) => (
                RECORD_TIME_PER_CHAR
                    .saturating_mul(u32::try_from(text.len()).unwrap_or(u32::MAX))
                    .max(Duration::from_secs(1)),
                None,
                false,
                "speech",
            ),
            CallerInput::Dtmf(keys) | CallerInput::BargeIn(keys) => (
                KEYED_RECORDING,
                keys.chars().next().filter(|_| request.dtmfterm),
                false,
                "speech",
            ),
        };
        let maxtime = duration >= request.max_time;
        let duration = duration.min(request.max_time).min(MAX_RECORDING);
        let ended_by = if maxtime {
            "ended at maxtime".to_owned()
        } else if let Some(key) = termchar {
            format!("ended by key {key}")
        } else if silent {
            "no sound".to_owned()
        } else {
            "ended by silence".to_owned()
        };
        self.note(Entry::Record {
            beep: request.beep,
            max_time: request.max_time,
            result: format!("{:.1} s of {how}, {ended_by}", duration.as_secs_f64()),
        });
        let trailing = if silent || maxtime || termchar.is_some() {
            Duration::ZERO
        } else {
            request.final_silence
        };
        self.now += duration + trailing;
        let recording = Recording {
            content_type: "audio/wav".to_owned(),
            audio: synthetic_wav(duration, !silent),
            duration,
            termchar,
            maxtime,
            silent,
        };
        self.session.handle_input(
            self.now,
            Input::Recorded {
                id: request.id,
                result: Ok(recording),
            },
        );
    }

    fn answer_transfer(&mut self, request: &TransferRequest) {
        let answer = self.caller.transfer(request, &self.transcript);
        self.note(Entry::Transfer {
            dest: request.dest.clone(),
            kind: request.kind,
            outcome: answer.to_string(),
        });
        let result = match answer {
            TransferAnswer::Outcome(outcome) => Ok(outcome),
            TransferAnswer::Failed(failure) => Err(failure),
            TransferAnswer::Hangup => {
                self.hang_up();
                return;
            }
        };
        if result == Ok(TransferOutcome::NoAnswer) {
            self.now += request.connect_timeout;
        }
        self.session.handle_input(
            self.now,
            Input::TransferDone {
                id: request.id,
                result,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Limits, SessionConfig};

    /// Serves documents from a list of (URL, body) pairs.
    struct Documents(Vec<(&'static str, &'static str)>);

    impl Fetcher for Documents {
        fn fetch(&mut self, request: &Fetch) -> Result<Fetched, FetchFailure> {
            let path = request.url.split('?').next().unwrap_or_default();
            match self.0.iter().find(|(url, _)| *url == path) {
                Some((url, body)) => Ok(Fetched {
                    url: (*url).to_owned(),
                    content_type: Some("application/voicexml+xml".to_owned()),
                    body: body.as_bytes().to_vec(),
                }),
                None => Err(FetchFailure {
                    status: Some(404),
                    message: "Not Found".to_owned(),
                }),
            }
        }
    }

    fn run_app(
        documents: Vec<(&'static str, &'static str)>,
        inputs: &str,
        limits: RunLimits,
    ) -> Transcript {
        let start = Instant::now();
        let session = Session::new(
            SessionConfig {
                url: documents[0].0.to_owned(),
                vars: vec![],
                local_uri: "sip:a@b".to_owned(),
                remote_uri: "sip:c@d".to_owned(),
                answered_by: None,
                limits: Limits::default(),
            },
            start,
        )
        .unwrap();
        let mut caller = ScriptedInputs::parse(inputs).unwrap();
        run(
            session,
            start,
            &mut Documents(documents),
            &mut caller,
            limits,
        )
    }

    const MENU: &str = r#"<vxml version="2.1">
      <form>
        <field name="choice" type="digits?length=1">
          <prompt>Press a key.</prompt>
          <noinput>Nothing heard.</noinput>
          <filled><prompt>You pressed <value expr="choice"/>.</prompt></filled>
        </field>
        <block><submit next="http://app.test/done" namelist="choice" method="post"/></block>
      </form>
    </vxml>"#;

    #[test]
    fn scripted_inputs_parse_the_command_line_syntax() {
        let mut inputs =
            ScriptedInputs::parse(" 1, noinput ,2#,say:new york,transfer:busy,hangup,a,!9")
                .unwrap();
        assert_eq!(inputs.remaining(), 8);
        let t = Transcript::default();
        assert_eq!(inputs.respond(&t), CallerInput::Dtmf("1".into()));
        assert_eq!(inputs.respond(&t), CallerInput::NoInput);
        assert_eq!(inputs.respond(&t), CallerInput::Dtmf("2#".into()));
        assert_eq!(inputs.respond(&t), CallerInput::Say("new york".into()));
        // A request for input skips the transfer answer.
        assert_eq!(inputs.respond(&t), CallerInput::Hangup);
        assert_eq!(inputs.respond(&t), CallerInput::Dtmf("A".into()));
        assert_eq!(inputs.respond(&t), CallerInput::BargeIn("9".into()));
        assert_eq!(inputs.respond(&t), CallerInput::Exhausted);
        assert_eq!(ScriptedInputs::parse("").unwrap().remaining(), 0);
    }

    #[test]
    fn scripted_inputs_refuse_bad_tokens_naming_the_position() {
        assert_eq!(
            ScriptedInputs::parse("1,12x"),
            Err(InputScriptError::BadKeys {
                index: 2,
                token: "12x".into()
            })
        );
        assert!(matches!(
            ScriptedInputs::parse("transfer:maybe"),
            Err(InputScriptError::BadTransfer { index: 1, .. })
        ));
        assert_eq!(
            ScriptedInputs::parse("say: "),
            Err(InputScriptError::EmptySay { index: 1 })
        );
        assert!(matches!(
            ScriptedInputs::parse("!"),
            Err(InputScriptError::BadKeys { index: 1, .. })
        ));
    }

    #[test]
    fn transfers_take_the_scripted_outcome_or_the_default() {
        let request = |kind| TransferRequest {
            id: 1,
            dest: "sip:x@y".into(),
            kind,
            connect_timeout: Duration::from_secs(30),
            max_time: None,
            aai: None,
        };
        let t = Transcript::default();
        let mut inputs = ScriptedInputs::parse(
            "transfer:far_end_disconnect,transfer:hangup,transfer:error.connection.baddestination",
        )
        .unwrap();
        let bridge = request(TransferKind::Bridge);
        assert_eq!(
            inputs.transfer(&bridge, &t),
            TransferAnswer::Outcome(TransferOutcome::FarEndDisconnect)
        );
        assert_eq!(inputs.transfer(&bridge, &t), TransferAnswer::Hangup);
        assert!(matches!(
            inputs.transfer(&bridge, &t),
            TransferAnswer::Failed(f) if f.event == "error.connection.baddestination"
        ));
        assert_eq!(
            inputs.transfer(&bridge, &t),
            TransferAnswer::Outcome(TransferOutcome::NoAnswer)
        );
        assert_eq!(
            inputs.transfer(&request(TransferKind::Blind), &t),
            TransferAnswer::Outcome(TransferOutcome::Transferred)
        );
        assert_eq!(parse_transfer_answer("error."), None);
        for outcome in [
            TransferOutcome::Busy,
            TransferOutcome::NetworkBusy,
            TransferOutcome::MaxTimeDisconnect,
            TransferOutcome::Unknown,
        ] {
            assert_eq!(TransferOutcome::from_name(outcome.name()), Some(outcome));
        }
    }

    #[test]
    fn typed_ahead_keys_are_transcribed_as_heard_with_what_they_matched() {
        // The second key arrives while the next document is fetched: typeahead for its field.
        const ONE: &str = r#"<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml"><form>
            <field name="a" type="digits?length=1"><prompt>First.</prompt>
            <filled><log>a <value expr="a"/></log><goto next="two.vxml"/></filled></field>
            </form></vxml>"#;
        const TWO: &str = r#"<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml"><form>
            <field name="b" type="digits?length=1"><prompt>Second.</prompt></field>
            <block><log>b <value expr="b"/></log><exit/></block></form></vxml>"#;
        let t = run_app(
            vec![
                ("http://app.test/menu.vxml", ONE),
                ("http://app.test/two.vxml", TWO),
            ],
            "12",
            RunLimits::default(),
        );
        let text = t.to_string();
        assert!(text.contains("heard dtmf 1: matched \"1\""), "{text}");
        assert!(
            text.contains("heard dtmf 2 (typed ahead): matched \"2\""),
            "{text}"
        );
        assert!(text.contains("log b 2"), "{text}");
    }

    #[test]
    fn a_key_answers_the_field_and_the_submit_is_transcribed() {
        let t = run_app(
            vec![("http://app.test/menu.vxml", MENU)],
            "7",
            RunLimits::default(),
        );
        let text = t.to_string();
        assert!(text.contains("prompt \"Press a key.\""), "{text}");
        assert!(text.contains("input dtmf 7"), "{text}");
        assert!(text.contains("prompt \"You pressed 7.\""), "{text}");
        assert!(
            text.contains("submit POST http://app.test/done choice=\"7\" failed: HTTP 404"),
            "{text}"
        );
        assert!(
            matches!(t.end(), Some(SessionEnd::Error { event, .. }) if event == "error.badfetch"),
            "{text}"
        );
        // The key came after the prompt played: virtual time moved.
        let input_at = t
            .entries
            .iter()
            .find(|e| matches!(e.entry, Entry::Input(_)))
            .map(|e| e.at);
        assert!(input_at.is_some_and(|at| at >= MIN_PLAY_TIME), "{text}");
    }

    #[test]
    fn a_fetch_carries_fetchaudio_with_the_timing_properties_in_scope() {
        const SUBMITS: &str = r#"<vxml version="2.1">
          <property name="fetchaudiodelay" value="500ms"/>
          <form>
            <property name="fetchaudiominimum" value="3s"/>
            <block>
              <prompt>Wait.</prompt>
              <submit next="http://app.test/slow" fetchaudio="hold.wav"/>
            </block>
          </form>
        </vxml>"#;
        const FALLS_BACK: &str = r#"<vxml version="2.1">
          <property name="fetchaudio" value="music/hold.wav"/>
          <form><block><goto next="http://app.test/gone.vxml"/></block></form>
        </vxml>"#;
        let t = run_app(
            vec![
                ("http://app.test/first.vxml", SUBMITS),
                ("http://app.test/slow", FALLS_BACK),
            ],
            "",
            RunLimits::default(),
        );
        let audio: Vec<_> = t
            .entries
            .iter()
            .filter_map(|e| match &e.entry {
                Entry::FetchAudio {
                    url,
                    delay,
                    minimum,
                } => Some((url.as_str(), *delay, *minimum)),
                _ => None,
            })
            .collect();
        let text = t.to_string();
        assert_eq!(
            audio,
            [
                (
                    "http://app.test/hold.wav",
                    Duration::from_millis(500),
                    Duration::from_secs(3)
                ),
                (
                    "http://app.test/music/hold.wav",
                    crate::session::DEFAULT_FETCHAUDIO_DELAY,
                    crate::session::DEFAULT_FETCHAUDIO_MINIMUM
                ),
            ],
            "{text}"
        );
        assert!(
            text.contains("fetchaudio http://app.test/hold.wav after 500ms, at least 3s"),
            "{text}"
        );
        // The prompt queued before the fetch is handed over first (§4.1.8), and the
        // fetchaudio is noted just before the fetch it belongs to.
        let position =
            |wanted: &dyn Fn(&Entry) -> bool| t.entries.iter().position(|e| wanted(&e.entry));
        let prompt = position(&|e| matches!(e, Entry::Prompt { text, .. } if text == "Wait."));
        let fetchaudio = position(&|e| matches!(e, Entry::FetchAudio { .. }));
        let submit = position(&|e| matches!(e, Entry::Submit { .. }));
        assert!(
            prompt < fetchaudio && fetchaudio.map(|i| i + 1) == submit,
            "{text}"
        );
    }

    #[test]
    fn silence_lets_the_noinput_timer_fire_and_an_empty_script_hangs_up() {
        let t = run_app(
            vec![("http://app.test/menu.vxml", MENU)],
            "noinput",
            RunLimits::default(),
        );
        let text = t.to_string();
        let heard = text.find("prompt \"Nothing heard.\"");
        let silent = text.find("input noinput");
        assert!(silent.is_some() && heard > silent, "{text}");
        assert!(
            text.contains("input hangup (no more scripted input)"),
            "{text}"
        );
        assert_eq!(t.end(), Some(&SessionEnd::Hangup), "{text}");
    }

    #[test]
    fn a_recording_is_synthesized_and_submitted_as_a_file() {
        let app = r#"<vxml version="2.1"><form>
            <record name="msg" beep="true" maxtime="10s" type="audio/wav">
              <prompt>Leave a message.</prompt>
            </record>
            <block><submit next="http://app.test/save" method="post"
              enctype="multipart/form-data" namelist="msg"/></block>
          </form></vxml>"#;
        let words = "see you on tuesday at noon";
        let t = run_app(
            vec![("http://app.test/rec.vxml", app)],
            &format!("say:{words}"),
            RunLimits::default(),
        );
        let record = t.entries.iter().find_map(|e| match &e.entry {
            Entry::Record { beep, result, .. } => Some((*beep, result.clone())),
            _ => None,
        });
        assert!(
            record
                .as_ref()
                .is_some_and(|(beep, result)| *beep && result.contains("s of speech")),
            "{t}"
        );
        let files = t.entries.iter().find_map(|e| match &e.entry {
            Entry::Submit { files, .. } => Some(files.clone()),
            _ => None,
        });
        let files = files.unwrap_or_default();
        assert_eq!(files.len(), 1, "{t}");
        assert_eq!(files[0].name, "msg");
        assert_eq!(files[0].content_type, "audio/wav");
        // As long as it takes to say the words, as 16-bit samples after the 44-byte header.
        let spoken = RECORD_TIME_PER_CHAR * u32::try_from(words.len()).unwrap();
        let samples = (spoken.as_secs_f64() * f64::from(WAV_RATE)) as usize;
        assert_eq!(files[0].bytes, 44 + 2 * samples, "{t}");
    }

    #[test]
    fn a_transfer_gets_the_scripted_outcome() {
        let app = r#"<vxml version="2.1"><form>
            <transfer name="xfer" dest="tel:+15551234" bridge="true" connecttimeout="20s"/>
            <block><prompt>Result <value expr="xfer"/>.</prompt></block>
          </form></vxml>"#;
        let t = run_app(
            vec![("http://app.test/xfer.vxml", app)],
            "transfer:busy",
            RunLimits::default(),
        );
        let text = t.to_string();
        assert!(
            text.contains("transfer bridge tel:+15551234: busy"),
            "{text}"
        );
        assert!(text.contains("prompt \"Result busy.\""), "{text}");

        let t = run_app(
            vec![("http://app.test/xfer.vxml", app)],
            "",
            RunLimits::default(),
        );
        let text = t.to_string();
        assert!(text.contains("prompt \"Result noanswer.\""), "{text}");
        // Nobody answered for the whole connect timeout.
        let result_at = t.entries.iter().find_map(|e| match &e.entry {
            Entry::Prompt { text, .. } if text.starts_with("Result") => Some(e.at),
            _ => None,
        });
        assert!(
            result_at.is_some_and(|at| at >= Duration::from_secs(20)),
            "{text}"
        );
    }

    #[test]
    fn barge_in_keys_stop_the_prompt_and_waiting_keys_do_not() {
        let app = r#"<vxml version="2.1"><form>
            <field name="k" type="digits?length=1">
              <prompt>This is a long welcome message that takes a good while to read.</prompt>
            </field>
            <block><prompt>Got <value expr="k"/>.</prompt></block>
          </form></vxml>"#;
        let at_of = |t: &Transcript, wanted: &str| {
            t.entries.iter().find_map(|e| match &e.entry {
                Entry::Prompt { text, .. } if text == wanted => Some(e.at),
                _ => None,
            })
        };
        let waited = run_app(
            vec![("http://app.test/b.vxml", app)],
            "5",
            RunLimits::default(),
        );
        let barged = run_app(
            vec![("http://app.test/b.vxml", app)],
            "!5",
            RunLimits::default(),
        );
        let long = Duration::from_secs(3);
        assert!(
            at_of(&waited, "Got 5.").is_some_and(|at| at >= long),
            "{waited}"
        );
        assert!(
            at_of(&barged, "Got 5.").is_some_and(|at| at < long),
            "{barged}"
        );
        assert!(
            barged.to_string().contains("input dtmf 5 (barge-in)"),
            "{barged}"
        );
    }

    #[test]
    fn a_looping_application_is_stopped_at_the_virtual_time_limit() {
        let looping = r#"<vxml version="2.1"><form id="f">
            <field name="x" type="digits"><prompt>Again.</prompt>
              <noinput><reprompt/></noinput></field></form></vxml>"#;
        let inputs = vec!["noinput"; 50].join(",");
        let t = run_app(
            vec![("http://app.test/loop.vxml", looping)],
            &inputs,
            RunLimits {
                max_virtual_time: Duration::from_secs(30),
                max_actions: 10_000,
            },
        );
        assert_eq!(t.stopped(), Some(Stop::VirtualTime), "{t}");
        assert!(
            t.entries
                .last()
                .is_some_and(|e| e.at == Duration::from_secs(30))
        );
    }

    #[test]
    fn marks_fall_after_the_items_before_them_and_report_the_time_since() {
        let prompt = Prompt {
            bargein: true,
            items: vec![
                PromptItem::Mark("start".into()),
                PromptItem::Text("abcde".into()),
                PromptItem::Mark("mid".into()),
                PromptItem::Break(Duration::from_millis(700)),
            ],
        };
        let marks = mark_offsets(&prompt);
        let five_chars = TIME_PER_CHAR * 5;
        assert_eq!(
            marks,
            [
                ("start".to_owned(), Duration::ZERO),
                ("mid".to_owned(), five_chars)
            ]
        );
        let ms = Duration::from_millis;
        assert_eq!(mark_at(&marks, ms(100)), Some(("start", ms(100))));
        assert_eq!(mark_at(&marks, five_chars + ms(50)), Some(("mid", ms(50))));
        assert_eq!(mark_at(&marks[1..], ms(10)), None, "before its only mark");
    }

    #[test]
    fn play_duration_grows_with_text_audio_and_breaks() {
        let prompt = |items| Prompt {
            items,
            bargein: true,
        };
        let short = play_duration(&prompt(vec![PromptItem::Text("hi".into())]));
        let long = play_duration(&prompt(vec![PromptItem::Text(
            "hello there, caller".into(),
        )]));
        assert_eq!(short, MIN_PLAY_TIME);
        assert!(long > short);
        let with_break = play_duration(&prompt(vec![
            PromptItem::Text("hello there, caller".into()),
            PromptItem::Break(Duration::from_secs(2)),
        ]));
        assert_eq!(with_break, long + Duration::from_secs(2));
        // SSML plays for its words, not its markup; marks take no time.
        let marked = play_duration(&prompt(vec![
            PromptItem::Ssml(
                r#"<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis"><emphasis level="strong">hello there,</emphasis> caller</speak>"#
                    .into(),
            ),
            PromptItem::Mark("m".into()),
        ]));
        assert_eq!(marked, long);
    }

    #[test]
    fn synthetic_wav_has_a_valid_header_and_length() {
        let wav = synthetic_wav(Duration::from_millis(500), true);
        assert_eq!(wav.get(0..4), Some(&b"RIFF"[..]));
        assert_eq!(wav.get(8..16), Some(&b"WAVEfmt "[..]));
        assert_eq!(wav.len(), 44 + 4000 * 2);
        let riff_len = u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]);
        assert_eq!(riff_len as usize, wav.len() - 8);
        assert!(wav[44..].iter().any(|b| *b != 0), "a tone is not silence");
        let silence = synthetic_wav(Duration::from_millis(100), false);
        assert!(silence[44..].iter().all(|b| *b == 0));
        assert_eq!(
            synthetic_wav(Duration::from_secs(3600), true).len(),
            44 + 60 * 8000 * 2
        );
    }
}
