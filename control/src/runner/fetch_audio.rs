//! When to play a fetch's `fetchaudio` (VoiceXML 2.0 §6.1.1, §6.3.5), as a sans-IO state
//! machine driven by the call runner.
//!
//! - The prompts queued before the fetch play to completion first (§4.1.8).
//! - `fetchaudiodelay`: a fetch that completes within this time (counted from its start)
//!   plays no audio at all; a few seconds of silence beat a clip cut off at once.
//! - Once started, the audio plays once (it does not loop) until the fetch completes, and
//!   for at least `fetchaudiominimum` even when the fetch completes sooner: the fetch result
//!   is held back from the session until then, so the next document's prompts neither cut
//!   the audio short nor overlap it.
//! - The audio ending (or failing to load) by itself releases a held result at once.

use std::time::{Duration, Instant};

/// What the runner must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Queue the audio on the call now.
    Start,
    /// Stop the audio, then hand the fetch result to the session.
    StopAndRelease,
    /// Hand the fetch result to the session (no audio is playing).
    Release,
}

/// Where the audio is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started: the delay runs, or the earlier prompts still play.
    Waiting,
    /// Queued on the call at `since`.
    Playing { since: Instant },
    /// Ended by itself, stopped, or never to be played.
    Over,
}

/// The `fetchaudio` schedule of one outstanding fetch.
#[derive(Debug)]
pub(super) struct FetchAudio {
    /// When the delay is over.
    start_at: Instant,
    /// `fetchaudiominimum`.
    minimum: Duration,
    phase: Phase,
    /// Prompts issued before the fetch are still playing.
    prompts_busy: bool,
    /// The fetch completed; its result waits for [`Step::Release`] or [`Step::StopAndRelease`].
    fetched: bool,
}

impl FetchAudio {
    /// A fetch that started at `now`, with the properties in effect for it.
    pub(super) fn new(
        now: Instant,
        delay: Duration,
        minimum: Duration,
        prompts_busy: bool,
    ) -> Self {
        Self {
            start_at: now + delay,
            minimum,
            phase: Phase::Waiting,
            prompts_busy,
            fetched: false,
        }
    }

    /// When [`Self::handle_timeout`] must be called next, if at all.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting if !self.prompts_busy && !self.fetched => Some(self.start_at),
            Phase::Playing { since } if self.fetched => Some(since + self.minimum),
            _ => None,
        }
    }

    /// Time passed.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Option<Step> {
        match self.phase {
            Phase::Waiting => self.try_start(now),
            Phase::Playing { since } if self.fetched && now >= since + self.minimum => {
                self.phase = Phase::Over;
                Some(Step::StopAndRelease)
            }
            _ => None,
        }
    }

    /// The prompts issued before the fetch finished playing.
    pub(super) fn prompts_idle(&mut self, now: Instant) -> Option<Step> {
        self.prompts_busy = false;
        self.try_start(now)
    }

    /// The fetch completed (successfully or not).
    pub(super) fn fetch_done(&mut self, now: Instant) -> Option<Step> {
        self.fetched = true;
        match self.phase {
            Phase::Waiting | Phase::Over => {
                self.phase = Phase::Over;
                Some(Step::Release)
            }
            Phase::Playing { .. } => self.handle_timeout(now),
        }
    }

    /// The audio finished playing, was interrupted, or could not be loaded.
    pub(super) fn audio_ended(&mut self) -> Option<Step> {
        let was_playing = matches!(self.phase, Phase::Playing { .. });
        self.phase = Phase::Over;
        (was_playing && self.fetched).then_some(Step::Release)
    }

    /// The audio is queued on the call and has not ended.
    pub(super) fn playing(&self) -> bool {
        matches!(self.phase, Phase::Playing { .. })
    }

    fn try_start(&mut self, now: Instant) -> Option<Step> {
        let due = self.phase == Phase::Waiting
            && !self.prompts_busy
            && !self.fetched
            && now >= self.start_at;
        if due {
            self.phase = Phase::Playing { since: now };
        }
        due.then_some(Step::Start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(2);
    const MINIMUM: Duration = Duration::from_secs(5);

    /// Drives `audio` through its timers up to `until`, collecting each step with its time.
    fn run_to(audio: &mut FetchAudio, until: Instant, steps: &mut Vec<(Instant, Step)>) {
        while let Some(at) = audio.poll_timeout().filter(|at| *at <= until) {
            if let Some(step) = audio.handle_timeout(at) {
                steps.push((at, step));
            }
        }
    }

    #[test]
    fn a_fetch_faster_than_the_delay_plays_nothing() {
        let t0 = Instant::now();
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, false);
        let mut steps = Vec::new();
        run_to(&mut audio, t0 + Duration::from_millis(1500), &mut steps);
        assert!(steps.is_empty());
        assert_eq!(
            audio.fetch_done(t0 + Duration::from_millis(1500)),
            Some(Step::Release)
        );
        assert_eq!(audio.poll_timeout(), None);
        run_to(&mut audio, t0 + Duration::from_secs(60), &mut steps);
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn a_slow_fetch_starts_the_audio_at_the_delay_and_stops_it_at_completion() {
        let t0 = Instant::now();
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, false);
        let mut steps = Vec::new();
        run_to(&mut audio, t0 + Duration::from_secs(9), &mut steps);
        assert_eq!(steps, [(t0 + DELAY, Step::Start)]);
        assert!(audio.playing());
        // Completed after the minimum: stopped at once.
        let done = t0 + Duration::from_secs(9);
        assert_eq!(audio.fetch_done(done), Some(Step::StopAndRelease));
        assert!(!audio.playing());
        assert_eq!(audio.poll_timeout(), None);
    }

    #[test]
    fn completion_before_the_minimum_stops_the_audio_at_the_minimum() {
        let t0 = Instant::now();
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, false);
        let mut steps = Vec::new();
        run_to(&mut audio, t0 + Duration::from_secs(3), &mut steps);
        assert_eq!(steps, [(t0 + DELAY, Step::Start)]);
        assert_eq!(audio.fetch_done(t0 + Duration::from_secs(3)), None);
        run_to(&mut audio, t0 + Duration::from_secs(60), &mut steps);
        assert_eq!(
            steps,
            [
                (t0 + DELAY, Step::Start),
                (t0 + DELAY + MINIMUM, Step::StopAndRelease)
            ]
        );
    }

    #[test]
    fn audio_that_ends_by_itself_releases_the_held_result_without_a_stop() {
        let t0 = Instant::now();
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, false);
        assert_eq!(audio.handle_timeout(t0 + DELAY), Some(Step::Start));
        assert_eq!(audio.fetch_done(t0 + DELAY + Duration::from_secs(1)), None);
        assert_eq!(audio.audio_ended(), Some(Step::Release));
        assert_eq!(audio.poll_timeout(), None);
        // Ended before the fetch completed: nothing to hold, nothing to stop.
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, false);
        assert_eq!(audio.handle_timeout(t0 + DELAY), Some(Step::Start));
        assert_eq!(audio.audio_ended(), None);
        assert_eq!(audio.fetch_done(t0 + DELAY + MINIMUM), Some(Step::Release));
    }

    #[test]
    fn earlier_prompts_play_first_and_the_minimum_counts_from_the_real_start() {
        let t0 = Instant::now();
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, true);
        assert_eq!(audio.poll_timeout(), None, "no timer while prompts play");
        let idle = t0 + Duration::from_secs(4);
        assert_eq!(audio.prompts_idle(idle), Some(Step::Start));
        assert_eq!(audio.fetch_done(idle + Duration::from_secs(1)), None);
        assert_eq!(audio.poll_timeout(), Some(idle + MINIMUM));
        // Prompts done before the delay: the delay still applies.
        let mut audio = FetchAudio::new(t0, DELAY, MINIMUM, true);
        assert_eq!(audio.prompts_idle(t0 + Duration::from_secs(1)), None);
        assert_eq!(audio.poll_timeout(), Some(t0 + DELAY));
    }

    #[test]
    fn a_zero_delay_and_minimum_start_at_once_and_stop_at_completion() {
        let t0 = Instant::now();
        let mut audio = FetchAudio::new(t0, Duration::ZERO, Duration::ZERO, false);
        assert_eq!(audio.handle_timeout(t0), Some(Step::Start));
        assert_eq!(audio.fetch_done(t0), Some(Step::StopAndRelease));
    }
}
