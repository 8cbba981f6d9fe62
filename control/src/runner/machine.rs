//! Answering-machine detection on one attempt: what the call does with the core's verdict.
//!
//! Sans-IO: fed the core's [`AmdEvent`]s and the time, it says when the application starts
//! or the call hangs up. The classifier itself runs on the call's core
//! (`outdial_dataplane::rtp::amd`); this is the request's policy on top of it.

use std::time::{Duration, Instant};

use outdial_dataplane::api::{AmdConfig, AmdEvent, AnsweredBy};
use serde::{Deserialize, Serialize};

use crate::model::MachineDetection;

/// Past the core's own limits, how long the call waits for a verdict it never sent before it
/// starts the application anyway (a stalled or restarted core must not hold a call silent).
const SLACK: Duration = Duration::from_secs(2);

/// What the call does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Keep waiting (the application has not started).
    Wait,
    /// Start the application now.
    StartSession,
    /// End the call: a machine answered and the request said `hangup`.
    HangUp,
}

/// Where detection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Answered; no verdict yet.
    Classifying,
    /// A machine; waiting for the end of its beep.
    WaitingForBeep,
    /// Decided: nothing more to wait for.
    Done,
}

/// One attempt's detection, from the answer to the verdict (and the beep).
#[derive(Debug, Clone)]
pub(super) struct Detection {
    mode: MachineDetection,
    phase: Phase,
    deadline: Instant,
    beep_timeout: Duration,
}

/// `[machine_detection]`: the classifier's settings for every call that asks for detection
/// (`docs/amd.md`). The defaults are Asterisk's `amd.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineDetectionConfig {
    /// No word by then: `unknown`.
    pub initial_silence_ms: u64,
    /// This much speech (pauses not counted): `machine`.
    pub greeting_ms: u64,
    /// A word, then this much silence: `human`.
    pub after_greeting_silence_ms: u64,
    /// No verdict by then: `unknown`.
    pub total_analysis_ms: u64,
    /// Shorter voiced runs are not words.
    pub min_word_ms: u64,
    /// Silence that separates two words.
    pub between_words_silence_ms: u64,
    /// More words than this: `machine`.
    pub max_words: u8,
    /// Lowest level of speech in a 20 ms frame (mean absolute 16-bit sample).
    pub silence_threshold: u16,
    /// `wait_for_beep`: the longest wait for a machine's beep after the verdict.
    pub beep_timeout_secs: u64,
}

impl Default for MachineDetectionConfig {
    fn default() -> Self {
        let core = AmdConfig::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            initial_silence_ms: ms(core.initial_silence),
            greeting_ms: ms(core.greeting),
            after_greeting_silence_ms: ms(core.after_greeting_silence),
            total_analysis_ms: ms(core.total_analysis),
            min_word_ms: ms(core.min_word),
            between_words_silence_ms: ms(core.between_words_silence),
            max_words: core.max_words,
            silence_threshold: core.silence_threshold,
            beep_timeout_secs: core.beep_timeout.as_secs(),
        }
    }
}

impl MachineDetectionConfig {
    /// Checks every key's range; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let ranges: [(&str, u64, u64, u64); 9] = [
            ("initial_silence_ms", self.initial_silence_ms, 500, 10_000),
            ("greeting_ms", self.greeting_ms, 300, 10_000),
            (
                "after_greeting_silence_ms",
                self.after_greeting_silence_ms,
                100,
                5_000,
            ),
            ("total_analysis_ms", self.total_analysis_ms, 1_000, 30_000),
            ("min_word_ms", self.min_word_ms, 20, 2_000),
            (
                "between_words_silence_ms",
                self.between_words_silence_ms,
                20,
                2_000,
            ),
            ("max_words", u64::from(self.max_words), 1, 20),
            (
                "silence_threshold",
                u64::from(self.silence_threshold),
                1,
                32_767,
            ),
            ("beep_timeout_secs", self.beep_timeout_secs, 1, 120),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!(
                    "`machine_detection.{key}` must be {low}-{high}, not {value}"
                ));
            }
        }
        if self.total_analysis_ms <= self.initial_silence_ms {
            return Err(format!(
                "`machine_detection.total_analysis_ms` ({}) must exceed initial_silence_ms ({}): \
                 otherwise no one is ever heard",
                self.total_analysis_ms, self.initial_silence_ms
            ));
        }
        Ok(())
    }

    /// The classifier's settings for a request's mode; `None` when detection is off.
    pub(super) fn core(&self, mode: MachineDetection) -> Option<AmdConfig> {
        let wait_for_beep = match mode {
            MachineDetection::Off => return None,
            MachineDetection::Detect | MachineDetection::Hangup => false,
            MachineDetection::WaitForBeep => true,
        };
        Some(AmdConfig {
            wait_for_beep,
            initial_silence: Duration::from_millis(self.initial_silence_ms),
            greeting: Duration::from_millis(self.greeting_ms),
            after_greeting_silence: Duration::from_millis(self.after_greeting_silence_ms),
            total_analysis: Duration::from_millis(self.total_analysis_ms),
            min_word: Duration::from_millis(self.min_word_ms),
            between_words_silence: Duration::from_millis(self.between_words_silence_ms),
            max_words: self.max_words,
            silence_threshold: self.silence_threshold,
            beep_timeout: Duration::from_secs(self.beep_timeout_secs),
        })
    }
}

/// The history event's text for a verdict, e.g. `answered by a machine (long-greeting) after
/// 1.62 s`.
pub(super) fn cause(answered_by: AnsweredBy, reason: &str, after: Duration) -> String {
    let who = match answered_by {
        AnsweredBy::Human => "a person",
        AnsweredBy::Machine => "a machine",
        AnsweredBy::Unknown => "no one we could classify",
    };
    format!(
        "answered by {who} ({reason}) after {:.2} s",
        after.as_secs_f64()
    )
}

impl Detection {
    /// Detection for an attempt answered at `answered`; `None` when the request turned it off.
    pub(super) fn start(
        mode: MachineDetection,
        settings: &MachineDetectionConfig,
        answered: Instant,
    ) -> Option<Self> {
        let config = settings.core(mode)?;
        Some(Self {
            mode,
            phase: Phase::Classifying,
            deadline: answered + config.total_analysis + SLACK,
            beep_timeout: config.beep_timeout,
        })
    }

    /// When [`Self::on_timeout`] is due, while there is something to wait for.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (self.phase != Phase::Done).then_some(self.deadline)
    }

    /// The core's event, received at `now`.
    pub(super) fn on_event(&mut self, event: &AmdEvent, now: Instant) -> Step {
        match (self.phase, event) {
            (Phase::Classifying, AmdEvent::Classified { answered_by, .. }) => {
                match (self.mode, answered_by) {
                    (MachineDetection::Hangup, AnsweredBy::Machine) => self.finish(Step::HangUp),
                    (MachineDetection::WaitForBeep, AnsweredBy::Machine) => {
                        self.phase = Phase::WaitingForBeep;
                        self.deadline = now + self.beep_timeout + SLACK;
                        Step::Wait
                    }
                    _ => self.finish(Step::StartSession),
                }
            }
            // A beep heard before any other verdict ends the wait as well.
            (
                Phase::Classifying | Phase::WaitingForBeep,
                AmdEvent::Beep { .. } | AmdEvent::NoBeep { .. },
            ) => self.finish(Step::StartSession),
            _ => Step::Wait,
        }
    }

    /// Time passed `deadline` without the event the call waited for: start the application
    /// (as for `unknown`).
    pub(super) fn on_timeout(&mut self, now: Instant) -> Step {
        if self.phase == Phase::Done || now < self.deadline {
            return Step::Wait;
        }
        self.finish(Step::StartSession)
    }

    fn finish(&mut self, step: Step) -> Step {
        self.phase = Phase::Done;
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(answered_by: AnsweredBy) -> AmdEvent {
        AmdEvent::Classified {
            answered_by,
            after: Duration::from_millis(1_600),
            reason: "test",
        }
    }

    fn start(mode: MachineDetection, at: Instant) -> Option<Detection> {
        Detection::start(mode, &MachineDetectionConfig::default(), at)
    }

    #[test]
    fn off_detects_nothing() {
        let settings = MachineDetectionConfig::default();
        assert!(settings.core(MachineDetection::Off).is_none());
        assert!(start(MachineDetection::Off, Instant::now()).is_none());
        assert!(
            settings
                .core(MachineDetection::WaitForBeep)
                .is_some_and(|c| c.wait_for_beep)
        );
        assert!(
            settings
                .core(MachineDetection::Detect)
                .is_some_and(|c| !c.wait_for_beep)
        );
    }

    #[test]
    fn settings_default_to_the_classifiers_and_are_range_checked() {
        let settings = MachineDetectionConfig::default();
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(
            settings.core(MachineDetection::Hangup),
            Some(AmdConfig::default())
        );
        let bad = MachineDetectionConfig {
            max_words: 0,
            ..settings
        };
        assert!(
            bad.validate()
                .is_err_and(|e| e.contains("machine_detection.max_words"))
        );
        let never_heard = MachineDetectionConfig {
            total_analysis_ms: 2_000,
            ..settings
        };
        assert!(
            never_heard
                .validate()
                .is_err_and(|e| e.contains("total_analysis_ms"))
        );
        let tuned = MachineDetectionConfig {
            greeting_ms: 2_000,
            beep_timeout_secs: 10,
            ..settings
        };
        let core = tuned
            .core(MachineDetection::WaitForBeep)
            .unwrap_or_default();
        assert_eq!(core.greeting, Duration::from_secs(2));
        assert_eq!(core.beep_timeout, Duration::from_secs(10));
    }

    #[test]
    fn each_mode_acts_on_each_verdict() {
        use AnsweredBy::{Human, Machine, Unknown};
        use MachineDetection::{Detect, Hangup, WaitForBeep};
        use Step::{HangUp, StartSession, Wait};
        let t0 = Instant::now();
        for (mode, verdict, step) in [
            (Detect, Human, StartSession),
            (Detect, Machine, StartSession),
            (Detect, Unknown, StartSession),
            (Hangup, Human, StartSession),
            (Hangup, Machine, HangUp),
            (Hangup, Unknown, StartSession),
            (WaitForBeep, Human, StartSession),
            (WaitForBeep, Machine, Wait),
            (WaitForBeep, Unknown, StartSession),
        ] {
            let Some(mut detection) = start(mode, t0) else {
                panic!("{mode:?} detects");
            };
            assert!(detection.deadline().is_some());
            assert_eq!(
                detection.on_event(&classified(verdict), t0),
                step,
                "{mode:?} {verdict:?}"
            );
            assert_eq!(
                detection.deadline().is_some(),
                step == Wait,
                "{mode:?} {verdict:?}"
            );
            // A second verdict changes nothing.
            if step != Wait {
                assert_eq!(detection.on_event(&classified(Machine), t0), Wait);
                assert_eq!(detection.deadline(), None);
            }
        }
    }

    #[test]
    fn a_machine_waits_for_its_beep_or_its_absence() {
        let t0 = Instant::now();
        for end in [
            AmdEvent::Beep {
                after: Duration::from_secs(9),
            },
            AmdEvent::NoBeep {
                after: Duration::from_secs(35),
            },
        ] {
            let Some(mut detection) = start(MachineDetection::WaitForBeep, t0) else {
                panic!("detects");
            };
            let decided = t0 + Duration::from_secs(2);
            assert_eq!(
                detection.on_event(&classified(AnsweredBy::Machine), decided),
                Step::Wait
            );
            // The wait now lasts the beep timeout from the verdict, not the analysis time.
            let config = MachineDetectionConfig::default()
                .core(MachineDetection::WaitForBeep)
                .unwrap_or_default();
            assert_eq!(
                detection.deadline(),
                Some(decided + config.beep_timeout + SLACK)
            );
            assert_eq!(detection.on_event(&end, decided), Step::StartSession);
            assert_eq!(detection.deadline(), None);
        }
    }

    #[test]
    fn a_core_that_never_answers_does_not_hold_the_call() {
        let t0 = Instant::now();
        let Some(mut detection) = start(MachineDetection::Hangup, t0) else {
            panic!("detects");
        };
        let Some(deadline) = detection.deadline() else {
            panic!("a deadline while classifying");
        };
        let config = AmdConfig::default();
        assert_eq!(deadline, t0 + config.total_analysis + SLACK);
        assert_eq!(
            detection.on_timeout(deadline - Duration::from_millis(1)),
            Step::Wait
        );
        assert_eq!(detection.on_timeout(deadline), Step::StartSession);
        assert_eq!(detection.on_timeout(deadline + SLACK), Step::Wait);
    }

    #[test]
    fn causes_name_the_verdict_the_reason_and_the_time() {
        assert_eq!(
            cause(
                AnsweredBy::Machine,
                "long-greeting",
                Duration::from_millis(1_620)
            ),
            "answered by a machine (long-greeting) after 1.62 s"
        );
    }
}
