//! Speech input for a call, sans-IO: when the session collects with a voice grammar, the
//! call's core listens ([`Command::Listen`]); the utterance it hands back goes to a
//! [`Recognizer`], and what that recognised goes to the session as [`Input::Recognition`].
//!
//! [`SpeechInput`] keeps which listen is current, so a late utterance or result for a
//! collection that is over (a key filled the field, noinput came first) is dropped; stops the
//! core's listen when the session no longer collects voice; and listens again when it still
//! does after a result it ignored (speech over a `bargeintype="hotword"` prompt that matched
//! nothing).
//!
//! Where nothing can listen ([`Recognizer`] absent), a field with only voice grammars throws
//! `error.noresource` at once instead of waiting for its noinput; a field that takes keys
//! too simply takes keys.

use std::future::Future;
use std::pin::Pin;

use outdial_dataplane::api::{CallId, Command};
use outdial_vxml::session::SpeechListen;
use outdial_vxml::srgs::Grammar;
use outdial_vxml::{Input, Listen};

/// What a recognizer made of an utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognized {
    /// The words recognised; empty when it heard no words.
    pub text: String,
    /// Confidence, 0.0 to 1.0.
    pub confidence: f32,
}

/// Why there is no result: the event the collection throws, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognitionFailure {
    /// `error.noresource` (no recognizer free), `error.unsupported.format` (a grammar the
    /// recognizer cannot take) or `maxspeechtimeout`.
    pub event: &'static str,
    /// Why, for `_message` and the log.
    pub message: String,
}

/// A recognition under way.
pub type Recognition = Pin<Box<dyn Future<Output = Result<Recognized, RecognitionFailure>> + Send>>;

/// Recognizes utterances against a collection's voice grammars, off the call task.
pub trait Recognizer: Send + Sync {
    /// Starts recognising `pcm` (linear PCM16, 8 kHz, mono) against `grammars` (in priority
    /// order). Fails at once, never waits, when it cannot take the work now.
    fn recognize(
        &self,
        grammars: &[Grammar],
        pcm: Vec<i16>,
    ) -> Result<Recognition, RecognitionFailure>;
}

/// What the call task does next.
#[derive(Debug)]
pub(super) enum Step {
    /// Nothing.
    None,
    /// Send this command to the core.
    Command(Command),
    /// Give the session this input.
    Input(Input),
    /// Recognise the utterance of listen `id`.
    Recognize {
        /// The listen's id.
        id: u32,
        /// The grammars.
        grammars: Vec<Grammar>,
        /// The audio.
        pcm: Vec<i16>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The core listens.
    Listening,
    /// The utterance is with the recognizer.
    Recognizing,
    /// The result was given to the session.
    Done,
}

#[derive(Debug)]
struct Active {
    id: u32,
    speech: SpeechListen,
    phase: Phase,
}

/// One call's speech input.
#[derive(Debug)]
pub(super) struct SpeechInput {
    call: CallId,
    /// Whether a recognizer is there.
    available: bool,
    next_id: u32,
    active: Option<Active>,
}

impl SpeechInput {
    /// Speech input for `call`; `available` when a recognizer is configured.
    pub(super) fn new(call: CallId, available: bool) -> Self {
        Self {
            call,
            available,
            next_id: 1,
            active: None,
        }
    }

    /// The session started a collection.
    pub(super) fn on_listen(&mut self, listen: &Listen) -> Step {
        let Some(speech) = listen.speech.clone().filter(|_| listen.voice) else {
            return self.stop();
        };
        if !self.available {
            self.active = None;
            if listen.dtmf {
                return Step::None;
            }
            return Step::Input(Input::RecognitionFailed {
                event: "error.noresource".to_owned(),
                message: "this server has no speech recognizer ([speech] is off, or PocketSphinx \
                          is missing: its start-up log says which), and the field takes only \
                          voice; give it a DTMF grammar or enable [speech]"
                    .to_owned(),
            });
        }
        self.listen(speech)
    }

    /// The session moved on: stop the core's listen when it no longer collects voice, and
    /// listen again when it still does after a result it ignored.
    pub(super) fn follow(&mut self, session_listens: bool) -> Step {
        match self.active.as_ref().map(|a| a.phase) {
            Some(Phase::Listening) if !session_listens => self.stop(),
            Some(Phase::Done) if session_listens => {
                let speech = self.active.take().map(|a| a.speech);
                speech.map_or(Step::None, |speech| self.listen(speech))
            }
            Some(Phase::Done) => {
                self.active = None;
                Step::None
            }
            _ => Step::None,
        }
    }

    /// The core heard speech start.
    pub(super) fn on_speech_started(&self, id: u32) -> Step {
        if self.is_current(id, Phase::Listening) {
            Step::Input(Input::SpeechStarted)
        } else {
            Step::None
        }
    }

    /// The core's utterance for listen `id`.
    pub(super) fn on_utterance(&mut self, id: u32, pcm: Vec<i16>, max_speech: bool) -> Step {
        if !self.is_current(id, Phase::Listening) {
            return Step::None;
        }
        let Some(active) = self.active.as_mut() else {
            return Step::None;
        };
        if max_speech {
            active.phase = Phase::Done;
            return Step::Input(Input::RecognitionFailed {
                event: "maxspeechtimeout".to_owned(),
                message: format!(
                    "the caller spoke longer than maxspeechtimeout ({} ms)",
                    active.speech.timing.max_speech.as_millis()
                ),
            });
        }
        active.phase = Phase::Recognizing;
        Step::Recognize {
            id,
            grammars: active.speech.grammars.clone(),
            pcm,
        }
    }

    /// The recognizer's answer for listen `id`.
    pub(super) fn on_result(
        &mut self,
        id: u32,
        result: Result<Recognized, RecognitionFailure>,
    ) -> Step {
        if !self.is_current(id, Phase::Recognizing) {
            return Step::None;
        }
        if let Some(active) = self.active.as_mut() {
            active.phase = Phase::Done;
        }
        Step::Input(match result {
            Ok(recognized) => Input::Recognition {
                utterance: recognized.text,
                confidence: recognized.confidence,
            },
            Err(failure) => Input::RecognitionFailed {
                event: failure.event.to_owned(),
                message: failure.message,
            },
        })
    }

    fn is_current(&self, id: u32, phase: Phase) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.id == id && a.phase == phase)
    }

    fn listen(&mut self, speech: SpeechListen) -> Step {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let command = Command::Listen {
            call: self.call,
            id,
            max_speech: speech.timing.max_speech,
            end_silence: speech.timing.complete,
            hotword: speech.hotword,
        };
        self.active = Some(Active {
            id,
            speech,
            phase: Phase::Listening,
        });
        Step::Command(command)
    }

    fn stop(&mut self) -> Step {
        match self.active.take() {
            Some(active) if active.phase == Phase::Listening => {
                Step::Command(Command::StopListening {
                    call: self.call,
                    id: active.id,
                })
            }
            _ => Step::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outdial_vxml::session::SpeechTiming;
    use outdial_vxml::srgs::Mode;

    use super::*;

    const CALL: CallId = CallId(7);

    fn listen(dtmf: bool, voice: bool, hotword: bool) -> Listen {
        Listen {
            dtmf,
            voice,
            timeout: Duration::from_secs(5),
            speech: voice.then(|| SpeechListen {
                grammars: vec![Grammar::builtin("boolean", Mode::Voice).unwrap()],
                timing: SpeechTiming::DEFAULT,
                hotword,
            }),
        }
    }

    fn listen_id(step: &Step) -> u32 {
        match step {
            Step::Command(Command::Listen {
                call,
                id,
                max_speech,
                end_silence,
                ..
            }) => {
                assert_eq!(*call, CALL);
                assert_eq!(*max_speech, SpeechTiming::DEFAULT.max_speech);
                assert_eq!(*end_silence, SpeechTiming::DEFAULT.complete);
                *id
            }
            other => panic!("expected a Listen: {other:?}"),
        }
    }

    #[test]
    fn an_utterance_is_recognised_and_its_result_given_once() {
        let mut s = SpeechInput::new(CALL, true);
        let id = listen_id(&s.on_listen(&listen(true, true, false)));
        assert!(matches!(
            s.on_speech_started(id),
            Step::Input(Input::SpeechStarted)
        ));
        assert!(
            matches!(s.on_speech_started(id + 1), Step::None),
            "another listen's"
        );
        let step = s.on_utterance(id, vec![1, 2, 3], false);
        let Step::Recognize {
            id: got,
            grammars,
            pcm,
        } = step
        else {
            panic!("{step:?}");
        };
        assert_eq!((got, grammars.len(), pcm), (id, 1, vec![1, 2, 3]));
        let result = Recognized {
            text: "yes".into(),
            confidence: 0.9,
        };
        let step = s.on_result(id, Ok(result.clone()));
        assert!(
            matches!(&step, Step::Input(Input::Recognition { utterance, .. }) if utterance == "yes"),
            "{step:?}"
        );
        assert!(
            matches!(s.on_result(id, Ok(result)), Step::None),
            "only once"
        );
        // The field was filled: nothing to stop (the core's listen is over).
        assert!(matches!(s.follow(false), Step::None));
    }

    #[test]
    fn a_collection_that_ends_otherwise_stops_the_core_and_drops_late_audio() {
        let mut s = SpeechInput::new(CALL, true);
        let id = listen_id(&s.on_listen(&listen(true, true, false)));
        // A key filled the field.
        let step = s.follow(false);
        assert!(
            matches!(step, Step::Command(Command::StopListening { call: CALL, id: stopped }) if stopped == id),
            "{step:?}"
        );
        assert!(matches!(s.on_utterance(id, vec![0; 8], false), Step::None));
        assert!(matches!(s.follow(false), Step::None), "stopped once");
    }

    #[test]
    fn a_result_the_session_ignored_listens_again_and_a_new_field_replaces_the_listen() {
        let mut s = SpeechInput::new(CALL, true);
        let first = listen_id(&s.on_listen(&listen(false, true, true)));
        let _ = s.on_utterance(first, vec![0; 8], false);
        let _ = s.on_result(
            first,
            Ok(Recognized {
                text: "maybe".into(),
                confidence: 0.7,
            }),
        );
        // The hotword prompt plays on; the session still collects: listen again.
        let second = listen_id(&s.follow(true));
        assert_ne!(first, second);
        // A new field while listening: the new listen replaces the old one in the core.
        let third = listen_id(&s.on_listen(&listen(false, true, false)));
        assert!(matches!(s.on_speech_started(second), Step::None), "stale");
        assert!(matches!(s.on_speech_started(third), Step::Input(_)));
    }

    #[test]
    fn speech_past_maxspeechtimeout_and_failures_throw_their_events() {
        let mut s = SpeechInput::new(CALL, true);
        let id = listen_id(&s.on_listen(&listen(false, true, false)));
        let step = s.on_utterance(id, vec![0; 8], true);
        assert!(
            matches!(&step, Step::Input(Input::RecognitionFailed { event, .. }) if event == "maxspeechtimeout"),
            "{step:?}"
        );
        let id = listen_id(&s.on_listen(&listen(false, true, false)));
        let _ = s.on_utterance(id, vec![0; 8], false);
        let step = s.on_result(
            id,
            Err(RecognitionFailure {
                event: "error.noresource",
                message: "busy".into(),
            }),
        );
        assert!(
            matches!(&step, Step::Input(Input::RecognitionFailed { event, .. }) if event == "error.noresource"),
            "{step:?}"
        );
    }

    #[test]
    fn without_a_recognizer_a_voice_only_field_fails_and_a_mixed_one_takes_keys() {
        let mut s = SpeechInput::new(CALL, false);
        let step = s.on_listen(&listen(false, true, false));
        assert!(
            matches!(&step, Step::Input(Input::RecognitionFailed { event, .. }) if event == "error.noresource"),
            "{step:?}"
        );
        assert!(matches!(
            s.on_listen(&listen(true, true, false)),
            Step::None
        ));
        assert!(matches!(
            s.on_listen(&listen(true, false, false)),
            Step::None
        ));
    }
}
