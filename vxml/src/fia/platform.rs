//! The interpreter's side of the platform boundary: requests it awaits, outputs it emits.
//!
//! The interpreter is an `async fn` polled by the [`crate::Session`] with a no-op waker. When
//! it needs the platform (a fetch, caller input, a recording, a transfer) it awaits
//! [`Platform::ask`]: the request goes into the shared slot and the future stays pending
//! until the session has put the matching [`Response`] there. Prompts and logs are pushed to
//! the outbox as they are produced; the session turns them into actions.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use url::Url;

use super::grammars::{Compiled, Mode, SemValue};
use crate::prompt::Prompt;
use crate::session::{
    Enctype, FetchFailure, FetchPurpose, Fetched, FormFile, Method, Recording, TransferFailure,
    TransferKind, TransferOutcome,
};

/// A fetch the interpreter needs.
#[derive(Debug, Clone)]
pub(crate) struct FetchSpec {
    /// Absolute URL without fragment.
    pub(crate) url: Url,
    /// HTTP method.
    pub(crate) method: Method,
    /// What is fetched.
    pub(crate) purpose: FetchPurpose,
    /// Submitted values.
    pub(crate) form: Vec<(String, String)>,
    /// Submitted recordings.
    pub(crate) files: Vec<FormFile>,
    /// Encoding of the values.
    pub(crate) enctype: Enctype,
    /// `fetchtimeout`.
    pub(crate) timeout: Option<Duration>,
    /// `maxage`.
    pub(crate) maxage: Option<Duration>,
    /// `maxstale`.
    pub(crate) maxstale: Option<Duration>,
    /// `fetchaudio`, absolute.
    pub(crate) fetchaudio: Option<String>,
    /// `fetchaudiodelay` in effect at the time of the fetch.
    pub(crate) fetchaudio_delay: Duration,
    /// `fetchaudiominimum` in effect at the time of the fetch.
    pub(crate) fetchaudio_minimum: Duration,
}

/// Input collection for the current item.
#[derive(Debug)]
pub(crate) struct Collect {
    /// The active grammars, in priority order.
    pub(crate) grammars: Vec<Arc<Compiled>>,
    /// `timeout`: silence before `noinput`.
    pub(crate) timeout: Duration,
    /// `interdigittimeout`.
    pub(crate) interdigit: Duration,
    /// `termchar` (`None` when empty).
    pub(crate) termchar: Option<char>,
    /// `termtimeout`: after a complete DTMF match, how long to wait for the `termchar`.
    pub(crate) termtimeout: Duration,
    /// `confidencelevel`: a recognition below it is a nomatch.
    pub(crate) confidence_level: f32,
    /// DTMF is accepted (`inputmodes`) and a DTMF grammar is active.
    pub(crate) dtmf: bool,
    /// Voice is accepted and a voice grammar is active.
    pub(crate) voice: bool,
    /// How speech is timed (used when `voice`).
    pub(crate) speech: SpeechTiming,
}

/// The speech timeouts of a collection (VoiceXML 2.0 §6.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechTiming {
    /// `completetimeout`: silence after speech that matches a grammar completely.
    pub complete: Duration,
    /// `incompletetimeout`: silence after speech that does not (yet) match.
    pub incomplete: Duration,
    /// `maxspeechtimeout`: the longest speech; longer throws `maxspeechtimeout`.
    pub max_speech: Duration,
}

impl SpeechTiming {
    /// This platform's defaults (§6.3.2 leaves them to the platform): 0.8 s after a complete
    /// match, 1.5 s after an incomplete one, at most 20 s of speech.
    pub const DEFAULT: Self = Self {
        complete: Duration::from_millis(800),
        incomplete: Duration::from_millis(1500),
        max_speech: Duration::from_secs(20),
    };
}

/// A `<record>` for the platform.
#[derive(Debug, Clone)]
pub(crate) struct RecordSpec {
    /// Beep first.
    pub(crate) beep: bool,
    /// Longest recording.
    pub(crate) max_time: Duration,
    /// Silence that ends it.
    pub(crate) final_silence: Duration,
    /// A key ends it.
    pub(crate) dtmfterm: bool,
    /// Noinput timeout.
    pub(crate) timeout: Duration,
    /// Media type.
    pub(crate) media_type: String,
}

/// A `<transfer>` for the platform.
#[derive(Debug, Clone)]
pub(crate) struct TransferSpec {
    /// Destination.
    pub(crate) dest: String,
    /// Kind.
    pub(crate) kind: TransferKind,
    /// Ring timeout.
    pub(crate) connect_timeout: Duration,
    /// Longest bridge.
    pub(crate) max_time: Option<Duration>,
    /// `aai`.
    pub(crate) aai: Option<String>,
}

/// What the interpreter waits for.
#[derive(Debug)]
pub(crate) enum Request {
    /// A fetch.
    Fetch(FetchSpec),
    /// Caller input.
    Collect(Collect),
    /// A recording.
    Record(RecordSpec),
    /// A transfer.
    Transfer(TransferSpec),
}

/// How a collection ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Collected {
    /// Grammar `grammar` matched.
    Matched {
        /// Index into [`Collect::grammars`].
        grammar: usize,
        /// What was said or keyed.
        utterance: String,
        /// `dtmf` or `voice`.
        mode: Mode,
        /// Recognition confidence.
        confidence: f32,
        /// The semantic result.
        value: SemValue,
    },
    /// Input that matched nothing.
    NoMatch {
        /// What was said or keyed.
        utterance: String,
        /// `dtmf` or `voice`.
        mode: Mode,
    },
    /// No input before the timeout.
    NoInput,
}

/// The platform's answer to a [`Request`].
#[derive(Debug)]
pub(crate) enum Response {
    /// A fetch finished.
    Fetched(Result<Fetched, FetchFailure>),
    /// A collection finished.
    Collected(Collected),
    /// A recording finished.
    Recorded(Result<Recording, String>),
    /// A transfer finished.
    Transferred(Result<TransferOutcome, TransferFailure>),
    /// The caller hung up while the interpreter waited.
    Hangup,
    /// The platform failed the wait with an error event (a prompt it could not render):
    /// thrown where the interpreter waits.
    Error {
        /// The event, e.g. `error.noresource`.
        event: String,
        /// `_message`.
        message: String,
    },
}

/// Output produced while running, in order.
#[derive(Debug)]
pub(crate) enum Output {
    /// A prompt for the queue.
    Prompt {
        /// The prompt.
        prompt: Prompt,
        /// `bargeintype="hotword"`: only input that matches a grammar interrupts it.
        hotword: bool,
    },
    /// A `<log>` or a warning.
    Log {
        /// Label.
        label: Option<String>,
        /// Text.
        text: String,
    },
    /// `<disconnect>`.
    Disconnect {
        /// `namelist` values.
        values: Vec<(String, String)>,
    },
}

/// The last `<mark>` played before a recognition result (VoiceXML 2.1 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkPosition {
    /// The mark's name (`markname`).
    pub(crate) name: String,
    /// Audio played after it until the barge-in or the end of the prompt (`marktime`).
    pub(crate) since: Duration,
}

/// State shared by the session and the interpreter future.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Produced output, drained by the session.
    pub(crate) outbox: Vec<Output>,
    /// The request the interpreter waits on, taken by the session.
    pub(crate) request: Option<Request>,
    /// The answer, put by the session.
    pub(crate) response: Option<Response>,
    /// The caller has hung up.
    pub(crate) hung_up: bool,
    /// The mark for the recognition result being delivered, put by the session.
    pub(crate) mark: Option<MarkPosition>,
}

/// A handle on the shared state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Platform(Arc<Mutex<Shared>>);

impl Platform {
    /// Locks the shared state (a poisoned lock is still usable: the data is plain values).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Emits one output.
    pub(crate) fn emit(&self, output: Output) {
        self.lock().outbox.push(output);
    }

    /// Whether the caller has hung up.
    pub(crate) fn hung_up(&self) -> bool {
        self.lock().hung_up
    }

    /// Asks the platform and waits for its answer.
    pub(crate) fn ask(&self, request: Request) -> Ask {
        Ask {
            platform: self.clone(),
            request: Some(request),
        }
    }
}

/// The future of one [`Platform::ask`].
#[derive(Debug)]
pub(crate) struct Ask {
    platform: Platform,
    request: Option<Request>,
}

impl Future for Ask {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Response> {
        let platform = self.platform.clone();
        let mut shared = platform.lock();
        if let Some(request) = self.request.take() {
            shared.response = None;
            shared.request = Some(request);
            return Poll::Pending;
        }
        match shared.response.take() {
            Some(response) => Poll::Ready(response),
            None => Poll::Pending,
        }
    }
}
