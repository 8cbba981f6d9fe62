//! Early media on one attempt: when the VoiceXML application starts.
//!
//! Sans-IO: fed the core's `EarlyMedia` and `Answered` events, it says what the call does.
//! A request with `early_media` starts its application on the first early media (a 183 with
//! SDP), so it hears announcements and keys before the answer; without it, the application
//! starts at the answer as always (the core still runs the media from the 183, so nothing
//! the callee says right after answering is clipped). Either way the history notes early
//! media once, the status stays `ringing` until the 200 OK, and answered time (billing)
//! is the 200 OK's.
//!
//! An incoming call to an `[[inbound]]` number with `early_media` starts its application on
//! the 183 we send, and [`AnswerRule`] says when the 200 OK goes.

/// What the call does on early media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnEarlyMedia {
    /// Record it in the history, and start the application now.
    NoteAndStart,
    /// Record it in the history; the application waits for the answer.
    Note,
    /// Nothing: a repeat, a late report, or a call being canceled.
    Ignore,
}

/// What the call does at the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnAnswer {
    /// Start the application (after machine detection, when the request asks for it).
    Start,
    /// The application runs already, since early media: it goes on.
    Continue,
}

/// One attempt's early media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EarlyMedia {
    /// The request asked for the application on early media.
    asked: bool,
    /// Early media came (it is noted once).
    heard: bool,
    /// The application started on it.
    started: bool,
    /// The answer came: early media is over.
    answered: bool,
}

impl EarlyMedia {
    /// For a request with `early_media` set to `asked`.
    pub(super) fn new(asked: bool) -> Self {
        Self {
            asked,
            heard: false,
            started: false,
            answered: false,
        }
    }

    /// The core reported early media; `canceled`: the call is being given up.
    pub(super) fn on_early_media(&mut self, canceled: bool) -> OnEarlyMedia {
        if self.heard || self.answered || canceled {
            return OnEarlyMedia::Ignore;
        }
        self.heard = true;
        if self.asked {
            self.started = true;
            OnEarlyMedia::NoteAndStart
        } else {
            OnEarlyMedia::Note
        }
    }

    /// The 200 OK.
    pub(super) fn on_answer(&mut self) -> OnAnswer {
        self.answered = true;
        if self.started {
            OnAnswer::Continue
        } else {
            OnAnswer::Start
        }
    }
}

/// The history event's text.
pub(super) const CAUSE: &str = "early media from 183";

/// The history event's text for an incoming call we put in early media.
pub(super) const INBOUND_CAUSE: &str = "early media: 183 sent before the answer";

/// What an incoming call's application in early media just did, for [`AnswerRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Its last prompt in flight finished (played out, stopped by barge-in, or failed).
    PromptsDone,
    /// It waits for input; `playing`: prompts are still in flight.
    Listens { playing: bool },
    /// It records the caller.
    Records,
    /// It transfers the caller (a REFER needs the confirmed dialog).
    Transfers,
}

/// When an incoming call in early media (`[[inbound]] early_media`) is answered: once its
/// application's first prompts have all finished and it goes on (so announcements and keys
/// pressed over them happen before the answer), or sooner when it needs an answered call:
/// it records, transfers, or waits for input with nothing playing. An application that
/// ends or disconnects before that, or right after those prompts, refuses the call (the
/// core's `480`): the runner reports `PromptsDone` only after the session has taken in the
/// end of its prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AnswerRule {
    pending: bool,
}

impl AnswerRule {
    /// `pending`: the call is in early media and waits for its answer.
    pub(super) fn new(pending: bool) -> Self {
        Self { pending }
    }

    /// True (once) when `step` means the call is answered now.
    pub(super) fn on(&mut self, step: Step) -> bool {
        let now = match step {
            Step::PromptsDone | Step::Records | Step::Transfers => true,
            Step::Listens { playing } => !playing,
        };
        let answer = self.pending && now;
        if answer {
            self.pending = false;
        }
        answer
    }

    /// The call was answered (or ended): nothing more to do.
    pub(super) fn settled(&mut self) {
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_for_the_application_starts_on_early_media_and_goes_on_at_the_answer() {
        let mut early = EarlyMedia::new(true);
        assert_eq!(early.on_early_media(false), OnEarlyMedia::NoteAndStart);
        assert_eq!(
            early.on_early_media(false),
            OnEarlyMedia::Ignore,
            "noted once"
        );
        assert_eq!(early.on_answer(), OnAnswer::Continue);
    }

    #[test]
    fn not_asked_early_media_is_noted_and_the_application_waits_for_the_answer() {
        let mut early = EarlyMedia::new(false);
        assert_eq!(early.on_early_media(false), OnEarlyMedia::Note);
        assert_eq!(early.on_answer(), OnAnswer::Start);
    }

    #[test]
    fn without_early_media_the_answer_starts_the_application() {
        assert_eq!(EarlyMedia::new(true).on_answer(), OnAnswer::Start);
        assert_eq!(EarlyMedia::new(false).on_answer(), OnAnswer::Start);
    }

    #[test]
    fn an_incoming_call_is_answered_once_when_its_first_prompts_finish_or_it_needs_the_answer() {
        let mut rule = AnswerRule::new(true);
        assert!(
            !rule.on(Step::Listens { playing: true }),
            "prompts still play"
        );
        assert!(rule.on(Step::PromptsDone));
        assert!(!rule.on(Step::Records), "answered once");
        for step in [
            Step::Records,
            Step::Transfers,
            Step::Listens { playing: false },
        ] {
            let mut rule = AnswerRule::new(true);
            assert!(rule.on(step), "{step:?} needs an answered call");
        }
        let mut settled = AnswerRule::new(true);
        settled.settled();
        assert!(!settled.on(Step::PromptsDone));
        assert!(
            !AnswerRule::new(false).on(Step::Records),
            "not in early media"
        );
    }

    #[test]
    fn a_call_being_canceled_or_already_answered_starts_nothing_early() {
        let mut canceled = EarlyMedia::new(true);
        assert_eq!(canceled.on_early_media(true), OnEarlyMedia::Ignore);
        assert_eq!(canceled.on_answer(), OnAnswer::Start);
        let mut late = EarlyMedia::new(true);
        assert_eq!(late.on_answer(), OnAnswer::Start);
        assert_eq!(late.on_early_media(false), OnEarlyMedia::Ignore);
    }
}
