//! Answering-machine detection on one attempt: what the call does with the core's verdict.
//!
//! Sans-IO: fed the core's [`AmdEvent`]s and the time, it says when the application starts
//! or the call hangs up. The classifier itself runs on the call's core
//! (`outdial_dataplane::rtp::amd`); this is the request's policy on top of it.

use std::time::{Duration, Instant};

use outdial_dataplane::api::{AmdConfig, AmdEvent, AnsweredBy};

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

/// The classifier's settings for a request's mode; `None` when detection is off.
pub(super) fn core_config(mode: MachineDetection) -> Option<AmdConfig> {
    match mode {
        MachineDetection::Off => None,
        MachineDetection::Detect | MachineDetection::Hangup => Some(AmdConfig::default()),
        MachineDetection::WaitForBeep => Some(AmdConfig {
            wait_for_beep: true,
            ..AmdConfig::default()
        }),
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
    pub(super) fn start(mode: MachineDetection, answered: Instant) -> Option<Self> {
        let config = core_config(mode)?;
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

    #[test]
    fn off_detects_nothing() {
        assert!(core_config(MachineDetection::Off).is_none());
        assert!(Detection::start(MachineDetection::Off, Instant::now()).is_none());
        assert!(core_config(MachineDetection::WaitForBeep).is_some_and(|c| c.wait_for_beep));
        assert!(core_config(MachineDetection::Detect).is_some_and(|c| !c.wait_for_beep));
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
            let Some(mut detection) = Detection::start(mode, t0) else {
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
            let Some(mut detection) = Detection::start(MachineDetection::WaitForBeep, t0) else {
                panic!("detects");
            };
            let decided = t0 + Duration::from_secs(2);
            assert_eq!(
                detection.on_event(&classified(AnsweredBy::Machine), decided),
                Step::Wait
            );
            // The wait now lasts the beep timeout from the verdict, not the analysis time.
            let config = core_config(MachineDetection::WaitForBeep).unwrap_or_default();
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
        let Some(mut detection) = Detection::start(MachineDetection::Hangup, t0) else {
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
