//! The three delays of a call's setup that operators watch, as Prometheus histograms:
//! request → INVITE (`outdial_call_setup_seconds`), INVITE → first 180/183 or 200
//! (`outdial_post_dial_delay_seconds`), and 200 OK → first prompt audio handed to the core
//! (`outdial_answer_to_prompt_seconds`; the core sends its first packet at its next 20 ms tick).

use std::time::Instant;
use time::OffsetDateTime;

/// Records request → INVITE for a call created at `created_at`, now that its INVITE is sent.
pub fn dialed(created_at: OffsetDateTime) {
    let waited = (OffsetDateTime::now_utc() - created_at).as_seconds_f64();
    metrics::histogram!("outdial_call_setup_seconds").record(waited.max(0.0));
}

/// One call's clock from its INVITE on.
#[derive(Debug, Clone, Copy)]
pub struct CallTiming {
    dialed: Instant,
    progressed: bool,
    answered: Option<Instant>,
}

impl CallTiming {
    /// Starts the clock: the INVITE has just been handed to the core.
    pub fn new(dialed: Instant) -> Self {
        Self {
            dialed,
            progressed: false,
            answered: None,
        }
    }

    /// A 180/183 (or, without one, the 200) arrived: the post-dial delay, recorded once.
    pub fn progress(&mut self, now: Instant) {
        if !self.progressed {
            self.progressed = true;
            let delay = now.saturating_duration_since(self.dialed);
            metrics::histogram!("outdial_post_dial_delay_seconds").record(delay.as_secs_f64());
        }
    }

    /// The 200 OK arrived.
    pub fn answer(&mut self, now: Instant) {
        self.progress(now);
        self.answered = Some(now);
    }

    /// When the call was answered, if it was.
    pub fn answered(&self) -> Option<Instant> {
        self.answered
    }
}

/// Records answer → first prompt once, for a call answered at `answered`.
#[derive(Debug)]
pub struct FirstPrompt(Option<Instant>);

impl FirstPrompt {
    /// Waits for the first prompt of a call answered at `answered` (`None`: nothing to record).
    pub fn new(answered: Option<Instant>) -> Self {
        Self(answered)
    }

    /// A prompt's audio was handed to the core.
    pub fn sent(&mut self, now: Instant) {
        if let Some(answered) = self.0.take() {
            let delay = now.saturating_duration_since(answered);
            metrics::histogram!("outdial_answer_to_prompt_seconds").record(delay.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn each_delay_is_recorded_once_per_call() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let start = Instant::now();
            dialed(OffsetDateTime::now_utc() - Duration::from_millis(250));
            let mut timing = CallTiming::new(start);
            timing.progress(start + Duration::from_millis(800));
            timing.progress(start + Duration::from_millis(900)); // a 183 after the 180
            timing.answer(start + Duration::from_secs(3));
            assert_eq!(timing.answered(), Some(start + Duration::from_secs(3)));
            let mut first = FirstPrompt::new(timing.answered());
            first.sent(start + Duration::from_millis(3100));
            first.sent(start + Duration::from_secs(9));
            FirstPrompt::new(None).sent(start);
        });
        let text = handle.render();
        let sample = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        };
        assert_eq!(sample("outdial_post_dial_delay_seconds_count"), "1");
        assert_eq!(sample("outdial_post_dial_delay_seconds_sum"), "0.8");
        assert_eq!(sample("outdial_answer_to_prompt_seconds_count"), "1");
        assert!(sample("outdial_answer_to_prompt_seconds_sum").starts_with("0.1"));
        let setup: f64 = sample("outdial_call_setup_seconds_sum")
            .parse()
            .unwrap_or(0.0);
        assert!((0.25..10.0).contains(&setup), "{setup}");
    }
}
