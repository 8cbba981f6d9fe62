//! Answering-machine detection (AMD) on received G.711 audio, sans-IO.
//!
//! [`MachineDetector`] listens to the callee from the answer on and says whether a person
//! or a machine answered, the way Asterisk's `AMD()` does: it cuts the audio into 20 ms
//! frames, calls a frame voiced when its mean absolute sample is over
//! [`AmdConfig::silence_threshold`] and [`NOISE_MARGIN`] times the line's noise floor (the
//! quietest frame of the [`FLOOR_WINDOW`] before it, capped at [`MAX_FLOOR`] times the
//! threshold), and then follows the pattern of words and
//! silences:
//!
//! - a person answers briefly ("Hello?") and waits: a word, then
//!   [`AmdConfig::after_greeting_silence`] of silence gives [`AnsweredBy::Human`]
//!   (`"human-silence"`);
//! - a machine talks on: [`AmdConfig::greeting`] of voiced audio (the pauses between words
//!   not counted) gives [`AnsweredBy::Machine`] (`"long-greeting"`), and so do more than
//!   [`AmdConfig::max_words`] words (`"too-many-words"`); a word is a voiced run of at least
//!   [`AmdConfig::min_word`], and words are separated by at least
//!   [`AmdConfig::between_words_silence`];
//! - a pure tone of [`MIN_TONE`] or more heard while analysing (a beep straight away, or
//!   after a greeting too short to be called a machine) gives Machine (`"beep"`);
//! - nothing said for [`AmdConfig::initial_silence`] gives [`AnsweredBy::Unknown`]
//!   (`"initial-silence"`), and no verdict by [`AmdConfig::total_analysis`] gives Unknown
//!   (`"too-long"`).
//!
//! **Initial silence is Unknown, not Machine** (Asterisk says MACHINE, Twilio `unknown`).
//! A silent callee is more often a machine with a late greeting or a dead line, but many
//! people now answer unknown numbers and wait for the caller to speak first; calling them
//! machines would hang up on live people, which abandoned-call rules (FCC, Ofcom) count
//! against the operator. Unknown lets the operator choose: map it to the machine path when
//! that risk is acceptable.
//!
//! With [`AmdConfig::wait_for_beep`], a Machine verdict is followed by [`AmdEvent::Beep`] at
//! the end of the voicemail beep (the moment to start the message) or by
//! [`AmdEvent::NoBeep`] after [`AmdConfig::beep_timeout`]. A frame holds a tone when one
//! frequency between [`TONE_HZ`] carries at least [`TONE_SHARE`] of its energy; a beep is
//! [`MIN_TONE`] or more of such frames at one frequency (within [`TONE_DRIFT_HZ`]). Speech
//! does not pass: a vowel spreads its energy over harmonics of a varying pitch. The tone
//! test (a two-tap linear predictor for the frequency, then Goertzel probes around it) runs
//! only while waiting for the beep, and while analysing only on the first frames of each
//! voiced run, until one fails; other frames cost one decode and one add per sample.
//!
//! Time is an argument: [`MachineDetector::feed`] takes each payload with its arrival time
//! since the answer, and [`MachineDetector::poll`] lets time pass with no audio (lost
//! packets, a silent callee) at [`MachineDetector::next_deadline`]. Arrival gaps longer than
//! [`GAP_TOLERANCE`] count as silence; shorter ones are jitter.
//!
//! ```
//! use std::time::Duration;
//! use outdial_dataplane::api::Codec;
//! use outdial_dataplane::rtp::amd::{AmdConfig, AmdEvent, AnsweredBy, MachineDetector};
//!
//! let mut amd = MachineDetector::new(AmdConfig::default());
//! // 300 ms of a loud voice, then nothing more arrives.
//! let voice: Vec<u8> = (0..160).map(|i| if i % 2 == 0 { 0x20 } else { 0xa0 }).collect();
//! for n in 1..=15 {
//!     assert_eq!(amd.feed(Duration::from_millis(20 * n), Codec::Pcmu, &voice), None);
//! }
//! let deadline = amd.next_deadline().unwrap();
//! let event = amd.poll(deadline);
//! assert_eq!(
//!     event,
//!     Some(AmdEvent::Classified {
//!         answered_by: AnsweredBy::Human,
//!         after: Duration::from_millis(1100),
//!         reason: "human-silence",
//!     })
//! );
//! assert!(amd.is_finished());
//! ```

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::api::Codec;

use super::g711;

/// Samples per analysis frame: 20 ms at 8 kHz.
pub const FRAME_LEN: usize = 160;

/// A gap between arrivals longer than this is silence (lost or absent packets); shorter
/// ones are jitter and shift the audio instead.
pub const GAP_TOLERANCE: Duration = Duration::from_millis(40);

/// A frame is voiced only when its level is this many times the noise floor (6 dB; tuned
/// on the generated set, docs/amd.md: 2.5 lost words in noise, 1.6 took noise for words).
pub const NOISE_MARGIN: f32 = 2.0;

/// The noise floor is at most this many times [`AmdConfig::silence_threshold`] (about
/// -31 dBFS of white noise with the default threshold).
pub const MAX_FLOOR: f32 = 3.0;

/// The noise floor is the quietest frame heard in this window.
pub const FLOOR_WINDOW: Duration = Duration::from_millis(1600);

/// Share of a frame's energy that one frequency must carry for the frame to be a tone.
pub const TONE_SHARE: f32 = 0.8;

/// Frequencies a beep may have, in Hz.
pub const TONE_HZ: RangeInclusive<f32> = 380.0..=2300.0;

/// The shortest steady tone taken for a beep.
pub const MIN_TONE: Duration = Duration::from_millis(120);

/// How far a beep's frames may stray from its first frame's frequency, in Hz.
pub const TONE_DRIFT_HZ: f32 = 25.0;

const FRAME: Duration = Duration::from_millis(20);
/// Frames per noise-floor block; [`FLOOR_BLOCKS`] blocks make the [`FLOOR_WINDOW`].
const FLOOR_BLOCK_FRAMES: u8 = 10;
const FLOOR_BLOCKS: usize = 8;
/// Goertzel probes at the predicted frequency and this far apart on either side: the
/// prediction is biased by noise (about 20 Hz at 440 Hz with a 22 dB signal-to-noise ratio).
const PROBE_STEP_HZ: f32 = 16.0;
const PROBES: [f32; 5] = [-2.0, -1.0, 0.0, 1.0, 2.0];

/// Analysis settings; the defaults are Asterisk `amd.conf`'s.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct AmdConfig {
    /// After a Machine verdict, report the end of the voicemail beep ([`AmdEvent::Beep`]) or
    /// its absence ([`AmdEvent::NoBeep`]). Default false.
    pub wait_for_beep: bool,
    /// No word by then gives Unknown (`"initial-silence"`). Default 2500 ms.
    pub initial_silence: Duration,
    /// This much voiced audio (pauses between words not counted) gives Machine
    /// (`"long-greeting"`). Default 1500 ms.
    pub greeting: Duration,
    /// A word, then this much silence, gives Human (`"human-silence"`). Default 800 ms.
    pub after_greeting_silence: Duration,
    /// No verdict by then gives Unknown (`"too-long"`). Default 5000 ms.
    pub total_analysis: Duration,
    /// Shorter voiced runs are not words. Default 100 ms.
    pub min_word: Duration,
    /// Silence that separates two words. Default 50 ms.
    pub between_words_silence: Duration,
    /// More words than this give Machine (`"too-many-words"`). Default 3.
    pub max_words: u8,
    /// Lowest level of a voiced 20 ms frame: mean absolute sample, linear 16-bit. Default 256.
    pub silence_threshold: u16,
    /// With `wait_for_beep`: no beep this long after the Machine verdict gives
    /// [`AmdEvent::NoBeep`]. Default 30 s.
    pub beep_timeout: Duration,
}

impl Default for AmdConfig {
    fn default() -> Self {
        Self {
            wait_for_beep: false,
            initial_silence: Duration::from_millis(2500),
            greeting: Duration::from_millis(1500),
            after_greeting_silence: Duration::from_millis(800),
            total_analysis: Duration::from_millis(5000),
            min_word: Duration::from_millis(100),
            between_words_silence: Duration::from_millis(50),
            max_words: 3,
            silence_threshold: 256,
            beep_timeout: Duration::from_secs(30),
        }
    }
}

/// Who answered.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum AnsweredBy {
    /// A person.
    Human,
    /// An answering machine or voicemail.
    Machine,
    /// Undecided: silence, or no pattern within the analysis time.
    Unknown,
}

impl AnsweredBy {
    /// `"human"`, `"machine"` or `"unknown"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Machine => "machine",
            Self::Unknown => "unknown",
        }
    }
}

/// What the detector found; times are measured from the answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AmdEvent {
    /// The verdict, once per call.
    Classified {
        /// Who answered.
        answered_by: AnsweredBy,
        /// When the audio decided it.
        after: Duration,
        /// Which rule decided: `"human-silence"`, `"long-greeting"`, `"too-many-words"`,
        /// `"beep"`, `"initial-silence"` or `"too-long"`.
        reason: &'static str,
    },
    /// With `wait_for_beep`, after a Machine verdict: the end of the voicemail beep.
    Beep {
        /// When the tone stopped.
        after: Duration,
    },
    /// With `wait_for_beep`, after a Machine verdict: no beep within `beep_timeout`.
    NoBeep {
        /// When the wait ended.
        after: Duration,
    },
}

/// Answering-machine detection for one call; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct MachineDetector {
    config: AmdConfig,
    phase: Phase,
    /// Samples taken so far, the frame in progress included: the audio clock.
    heard: u64,
    /// The audio clock at the end of the last payload.
    last_audio: u64,
    frame: [i16; FRAME_LEN],
    filled: usize,
    /// The frame in progress holds silence standing in for missing audio.
    padded: bool,
    floor: NoiseFloor,
    words: u8,
    in_word: bool,
    /// Voiced time of the current run (voiced frames joined by silences shorter than a
    /// word gap).
    run: Duration,
    /// Voiced time since the answer.
    voiced: Duration,
    last_voiced_end: Option<Duration>,
    /// Start of the silence that counts towards `after_greeting_silence`.
    quiet_since: Option<Duration>,
    /// Every frame of the current voiced run so far was a tone.
    tone_possible: bool,
    tone: Option<ToneRun>,
    queue: [Option<AmdEvent>; 2],
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    Analysing,
    AwaitingBeep { deadline: Duration },
    Finished,
}

/// Consecutive frames holding one frequency.
#[derive(Clone, Copy, Debug)]
struct ToneRun {
    start: Duration,
    end: Duration,
    hz: f32,
}

/// Minimum frame level over the last [`FLOOR_WINDOW`], kept as per-block minima.
#[derive(Clone, Debug)]
struct NoiseFloor {
    blocks: [f32; FLOOR_BLOCKS],
    next: usize,
    current: f32,
    frames: u8,
}

impl MachineDetector {
    /// A detector at the moment of the answer.
    pub fn new(config: AmdConfig) -> Self {
        Self {
            config,
            phase: Phase::Analysing,
            heard: 0,
            last_audio: 0,
            frame: [0; FRAME_LEN],
            filled: 0,
            padded: false,
            floor: NoiseFloor::new(),
            words: 0,
            in_word: false,
            run: Duration::ZERO,
            voiced: Duration::ZERO,
            last_voiced_end: None,
            quiet_since: None,
            tone_possible: true,
            tone: None,
            queue: [None; 2],
        }
    }

    /// One received G.711 payload (any length, usually 160 samples = 20 ms); `since_answer`
    /// is the arrival time measured from the answer. Returns an event when one happens.
    pub fn feed(
        &mut self,
        since_answer: Duration,
        codec: Codec,
        payload: &[u8],
    ) -> Option<AmdEvent> {
        if self.phase != Phase::Finished {
            let start = samples_at(since_answer).saturating_sub(payload.len() as u64);
            if start >= self.heard + samples_at(GAP_TOLERANCE) {
                self.advance_silence(start);
            }
            for &code in payload {
                if self.phase == Phase::Finished {
                    break;
                }
                if let Some(slot) = self.frame.get_mut(self.filled) {
                    *slot = g711::decode_sample(codec, code);
                }
                self.filled += 1;
                self.heard += 1;
                if self.filled == FRAME_LEN {
                    self.end_frame();
                }
            }
            self.last_audio = self.heard;
        }
        self.pop()
    }

    /// Time passing with no audio (a silent or absent callee): returns an event if a
    /// timeout decided. Until [`GAP_TOLERANCE`] after the last audio nothing is decided.
    pub fn poll(&mut self, since_answer: Duration) -> Option<AmdEvent> {
        let to = samples_at(since_answer);
        if self.phase != Phase::Finished && to >= self.last_audio + samples_at(GAP_TOLERANCE) {
            self.advance_silence(to);
        }
        self.pop()
    }

    /// When `poll` must next be called if nothing arrives (None when finished).
    pub fn next_deadline(&self) -> Option<Duration> {
        let now = self.now();
        if self.queue[0].is_some() {
            return Some(now);
        }
        let decision = match self.phase {
            Phase::Finished => return None,
            Phase::Analysing => {
                let silence = match (self.words, self.quiet_since) {
                    (0, _) => self.config.initial_silence,
                    (_, Some(since)) => since + self.config.after_greeting_silence,
                    // Silence would start with the missing audio.
                    (_, None) => now + self.config.after_greeting_silence,
                };
                silence.min(self.config.total_analysis)
            }
            // A tone in progress ends when the audio stops.
            Phase::AwaitingBeep { deadline } if self.tone.is_some() => deadline.min(now + FRAME),
            Phase::AwaitingBeep { deadline } => deadline,
        };
        Some(decision.max(duration_of(self.last_audio) + GAP_TOLERANCE))
    }

    /// No more events will come.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished && self.queue[0].is_none()
    }

    /// The audio clock: the end of the audio taken so far.
    fn now(&self) -> Duration {
        duration_of(self.heard)
    }

    fn pop(&mut self) -> Option<AmdEvent> {
        let event = self.queue[0].take();
        self.queue.swap(0, 1);
        event
    }

    fn emit(&mut self, event: AmdEvent) {
        // At most a verdict and then a beep outcome: two slots are enough.
        if let Some(slot) = self.queue.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(event);
        }
    }

    /// Silence (digital zeros) up to sample `to`, frame by frame, until a verdict ends it.
    fn advance_silence(&mut self, to: u64) {
        while self.heard < to && self.phase != Phase::Finished {
            let room = FRAME_LEN - self.filled;
            let n = room.min(usize::try_from(to - self.heard).unwrap_or(room));
            if let Some(rest) = self.frame.get_mut(self.filled..self.filled + n) {
                rest.fill(0);
            }
            self.filled += n;
            self.heard += n as u64;
            self.padded = true;
            if self.filled == FRAME_LEN {
                self.end_frame();
            }
        }
        // The deadline may fall inside the last, unfinished frame.
        self.check_time(self.now());
    }

    fn end_frame(&mut self) {
        let end = self.now();
        let sum: u32 = self
            .frame
            .iter()
            .map(|&x| u32::from(x.unsigned_abs()))
            .sum();
        let level = sum as f32 / FRAME_LEN as f32;
        let threshold = f32::from(self.config.silence_threshold);
        // A voice from the first packet on would otherwise set the floor itself.
        let floor = self.floor.get().min(MAX_FLOOR * threshold);
        let voiced = level >= threshold && level >= NOISE_MARGIN * floor;
        // Stand-in silence says nothing about the line's noise.
        if !self.padded {
            self.floor.add(level);
        }
        self.filled = 0;
        self.padded = false;
        match self.phase {
            Phase::Analysing => self.analyse(end, voiced),
            Phase::AwaitingBeep { .. } => self.listen_for_beep(end, voiced),
            Phase::Finished => {}
        }
    }

    fn analyse(&mut self, end: Duration, voiced: bool) {
        let start = end.saturating_sub(FRAME);
        if voiced {
            let gap = self
                .last_voiced_end
                .map_or(start, |last| start.saturating_sub(last));
            if gap >= self.config.between_words_silence {
                self.run = Duration::ZERO;
                self.in_word = false;
            }
            if gap > Duration::ZERO {
                self.tone_possible = true;
                self.tone = None;
            }
            self.last_voiced_end = Some(end);
            self.run += FRAME;
            self.voiced += FRAME;
            if self.tone_possible {
                match tone_frequency(&self.frame) {
                    Some(hz) => {
                        let run = self.extend_tone(start, end, hz);
                        if run.end - run.start >= MIN_TONE {
                            return self.classify(AnsweredBy::Machine, end, "beep");
                        }
                    }
                    None => {
                        self.tone_possible = false;
                        self.tone = None;
                    }
                }
            }
            if self.run >= self.config.min_word {
                self.quiet_since = None;
                if !self.in_word {
                    self.in_word = true;
                    self.words = self.words.saturating_add(1);
                    if self.words > self.config.max_words {
                        return self.classify(AnsweredBy::Machine, end, "too-many-words");
                    }
                }
            }
            if self.voiced >= self.config.greeting {
                return self.classify(AnsweredBy::Machine, end, "long-greeting");
            }
        } else {
            self.quiet_since.get_or_insert(start);
            self.tone = None;
        }
        self.check_time(end);
    }

    /// The verdicts and the beep timeout that time alone decides, at audio time `now`.
    fn check_time(&mut self, now: Duration) {
        if let Phase::AwaitingBeep { deadline } = self.phase {
            if now >= deadline {
                self.emit(AmdEvent::NoBeep { after: deadline });
                self.phase = Phase::Finished;
            }
            return;
        }
        if self.phase != Phase::Analysing {
            return;
        }
        let config = self.config;
        if self.words == 0 && now >= config.initial_silence {
            self.classify(
                AnsweredBy::Unknown,
                config.initial_silence,
                "initial-silence",
            );
        } else if let Some(since) = self.quiet_since.filter(|_| self.words > 0)
            && now >= since + config.after_greeting_silence
        {
            let at = since + config.after_greeting_silence;
            self.classify(AnsweredBy::Human, at, "human-silence");
        } else if now >= config.total_analysis {
            self.classify(AnsweredBy::Unknown, config.total_analysis, "too-long");
        }
    }

    fn listen_for_beep(&mut self, end: Duration, voiced: bool) {
        let start = end.saturating_sub(FRAME);
        let hz = if voiced {
            tone_frequency(&self.frame)
        } else {
            None
        };
        let same_tone = matches!((hz, self.tone), (Some(hz), Some(run)) if (hz - run.hz).abs() <= TONE_DRIFT_HZ);
        if same_tone {
            if let Some(run) = &mut self.tone {
                run.end = end;
            }
        } else {
            if let Some(run) = self.tone.take()
                && run.end - run.start >= MIN_TONE
            {
                self.emit(AmdEvent::Beep { after: run.end });
                self.phase = Phase::Finished;
                return;
            }
            self.tone = hz.map(|hz| ToneRun { start, end, hz });
        }
        self.check_time(end);
    }

    /// Continues the current tone run with this frame, or starts one.
    fn extend_tone(&mut self, start: Duration, end: Duration, hz: f32) -> ToneRun {
        let run = match self.tone {
            Some(run) if (hz - run.hz).abs() <= TONE_DRIFT_HZ => ToneRun { end, ..run },
            _ => ToneRun { start, end, hz },
        };
        self.tone = Some(run);
        run
    }

    fn classify(&mut self, answered_by: AnsweredBy, after: Duration, reason: &'static str) {
        self.emit(AmdEvent::Classified {
            answered_by,
            after,
            reason,
        });
        self.phase = if answered_by == AnsweredBy::Machine && self.config.wait_for_beep {
            // A tone that decided the verdict (or runs on from it) may still be the beep.
            if !self.tone_possible {
                self.tone = None;
            }
            Phase::AwaitingBeep {
                deadline: after + self.config.beep_timeout,
            }
        } else {
            Phase::Finished
        };
    }
}

impl NoiseFloor {
    fn new() -> Self {
        Self {
            blocks: [f32::INFINITY; FLOOR_BLOCKS],
            next: 0,
            current: f32::INFINITY,
            frames: 0,
        }
    }

    fn add(&mut self, level: f32) {
        self.current = self.current.min(level);
        self.frames += 1;
        if self.frames == FLOOR_BLOCK_FRAMES {
            if let Some(block) = self.blocks.get_mut(self.next) {
                *block = self.current;
            }
            self.next = (self.next + 1) % FLOOR_BLOCKS;
            self.current = f32::INFINITY;
            self.frames = 0;
        }
    }

    /// The floor of the frames before this one; zero before any was heard.
    fn get(&self) -> f32 {
        let floor = self.blocks.iter().fold(self.current, |a, &b| a.min(b));
        if floor.is_finite() { floor } else { 0.0 }
    }
}

/// The frequency of the pure tone this frame holds, if one frequency in [`TONE_HZ`] carries
/// [`TONE_SHARE`] of its energy.
fn tone_frequency(frame: &[i16; FRAME_LEN]) -> Option<f32> {
    // A sine obeys x[n] + x[n-2] = 2cos(w)·x[n-1]: fit the coefficient by least squares.
    let mut energy = 0.0f32;
    let mut cross = 0.0f32;
    let mut middle = 0.0f32;
    for (n, &x) in frame.iter().enumerate() {
        let x = f32::from(x);
        energy += x * x;
        if let (Some(&x1), Some(&x2)) = (frame.get(n.wrapping_sub(1)), frame.get(n.wrapping_sub(2)))
        {
            let x1 = f32::from(x1);
            cross += x1 * (x + f32::from(x2));
            middle += x1 * x1;
        }
    }
    if middle <= 0.0 {
        return None;
    }
    let rate = g711::SAMPLE_RATE as f32;
    let w = (cross / middle / 2.0).clamp(-1.0, 1.0).acos();
    let predicted = w * rate / std::f32::consts::TAU;
    let margin = PROBES.len() as f32 / 2.0 * PROBE_STEP_HZ;
    if predicted < TONE_HZ.start() - margin || predicted > TONE_HZ.end() + margin {
        return None;
    }
    // A sine of amplitude A gives Goertzel power (A·N/2)² and energy A²·N/2.
    let full = energy * FRAME_LEN as f32 / 2.0;
    let (hz, power) = PROBES
        .iter()
        .map(|k| {
            let hz = predicted + k * PROBE_STEP_HZ;
            (hz, goertzel(frame, hz))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (power >= TONE_SHARE * full && TONE_HZ.contains(&hz)).then_some(hz)
}

/// Goertzel power of `frame` at `hz`.
fn goertzel(frame: &[i16; FRAME_LEN], hz: f32) -> f32 {
    let coefficient = 2.0 * (std::f32::consts::TAU * hz / g711::SAMPLE_RATE as f32).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in frame {
        let s = f32::from(x) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

/// Whole samples in `time` at 8 kHz.
fn samples_at(time: Duration) -> u64 {
    let samples = time.as_nanos() * u128::from(g711::SAMPLE_RATE) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

fn duration_of(samples: u64) -> Duration {
    Duration::from_nanos(samples.saturating_mul(1_000_000_000) / u64::from(g711::SAMPLE_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: usize = 8;

    fn silence(ms: usize) -> Vec<i16> {
        vec![0; ms * MS]
    }

    /// A word stand-in: white noise of mean absolute level about `level`.
    fn burst(ms: usize, level: f32, seed: u32) -> Vec<i16> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..ms * MS)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                // Uniform in [-1, 1): mean absolute value 1/2.
                let u = (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
                (u * 2.0 * level) as i16
            })
            .collect()
    }

    /// Sum of sines (Hz, amplitude), from sample `start`.
    fn tones(parts: &[(f32, f32)], ms: usize, start: usize) -> Vec<i16> {
        (start..start + ms * MS)
            .map(|n| {
                let t = n as f32 / 8000.0;
                let v: f32 = parts
                    .iter()
                    .map(|&(hz, a)| a * (std::f32::consts::TAU * hz * t).sin())
                    .sum();
                v.clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    /// A vowel stand-in: harmonics of a pitch gliding from `f0` up by a tenth.
    fn vowel(f0: f32, ms: usize) -> Vec<i16> {
        let amplitudes = [3000.0, 5000.0, 4000.0, 2500.0, 1500.0, 800.0];
        let mut phase = [0.0f32; 6];
        (0..ms * MS)
            .map(|n| {
                let pitch = f0 * (1.0 + 0.1 * n as f32 / (ms * MS) as f32);
                let mut v = 0.0;
                for (k, (p, a)) in phase.iter_mut().zip(amplitudes).enumerate() {
                    *p += std::f32::consts::TAU * pitch * (k + 1) as f32 / 8000.0;
                    v += a * p.sin();
                }
                v as i16
            })
            .collect()
    }

    fn concat(parts: &[Vec<i16>]) -> Vec<i16> {
        parts.concat()
    }

    /// Feeds `pcm` as 20 ms packets arriving at the end of their audio, polling at every
    /// deadline that comes first, then lets time pass until the detector finishes.
    fn run(config: AmdConfig, codec: Codec, pcm: &[i16]) -> Vec<AmdEvent> {
        let mut amd = MachineDetector::new(config);
        let mut events = Vec::new();
        let mut payload = [0u8; FRAME_LEN];
        for (i, chunk) in pcm.chunks(FRAME_LEN).enumerate() {
            let arrival = duration_of(((i * FRAME_LEN) + chunk.len()) as u64);
            while let Some(deadline) = amd.next_deadline().filter(|&d| d <= arrival) {
                events.extend(amd.poll(deadline));
            }
            let n = g711::encode(codec, chunk, &mut payload);
            events.extend(amd.feed(arrival, codec, &payload[..n]));
        }
        while let Some(deadline) = amd.next_deadline() {
            events.extend(amd.poll(deadline));
            assert!(deadline < Duration::from_secs(120), "never finishes");
        }
        events
    }

    fn verdict(events: &[AmdEvent]) -> (AnsweredBy, Duration, &'static str) {
        match events.first() {
            Some(&AmdEvent::Classified {
                answered_by,
                after,
                reason,
            }) => (answered_by, after, reason),
            other => panic!("no verdict first: {other:?}"),
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn beeping() -> AmdConfig {
        AmdConfig {
            wait_for_beep: true,
            ..AmdConfig::default()
        }
    }

    #[test]
    fn a_short_hello_then_silence_is_human_in_either_law() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let pcm = concat(&[silence(300), burst(400, 3000.0, 1), silence(4000)]);
            let events = run(AmdConfig::default(), codec, &pcm);
            assert_eq!(
                events,
                [AmdEvent::Classified {
                    answered_by: AnsweredBy::Human,
                    after: ms(300 + 400 + 800),
                    reason: "human-silence",
                }],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_long_continuous_greeting_is_a_machine_at_the_greeting_length() {
        let pcm = concat(&[silence(500), burst(4000, 3000.0, 2), silence(1000)]);
        let (by, after, reason) = verdict(&run(AmdConfig::default(), Codec::Pcmu, &pcm));
        assert_eq!((by, reason), (AnsweredBy::Machine, "long-greeting"));
        assert_eq!(after, ms(500 + 1500));
    }

    #[test]
    fn four_short_words_are_a_machine() {
        let mut parts = vec![silence(200)];
        for seed in 0..5 {
            parts.push(burst(200, 2500.0, seed));
            parts.push(silence(240));
        }
        let (by, after, reason) = verdict(&run(AmdConfig::default(), Codec::Pcma, &concat(&parts)));
        assert_eq!((by, reason), (AnsweredBy::Machine, "too-many-words"));
        // The fourth word counts once it has lasted min_word.
        assert_eq!(after, ms(200 + 3 * 440 + 100));
    }

    #[test]
    fn silence_is_unknown_whether_packets_arrive_or_not() {
        let events = run(AmdConfig::default(), Codec::Pcmu, &silence(4000));
        let expected = AmdEvent::Classified {
            answered_by: AnsweredBy::Unknown,
            after: ms(2500),
            reason: "initial-silence",
        };
        assert_eq!(events, [expected]);

        let mut amd = MachineDetector::new(AmdConfig::default());
        assert_eq!(amd.next_deadline(), Some(ms(2500)));
        assert_eq!(amd.poll(ms(1000)), None);
        assert_eq!(amd.poll(ms(2500)), Some(expected));
        assert!(amd.is_finished());
    }

    #[test]
    fn line_noise_is_not_speech() {
        // About -35 dBFS of white noise throughout, a word in the middle.
        let noise = |ms, seed| burst(ms, 470.0, seed);
        let mut word = burst(300, 3000.0, 7);
        for (w, n) in word.iter_mut().zip(noise(300, 8)) {
            *w = w.saturating_add(n);
        }
        let pcm = concat(&[noise(600, 9), word, noise(3000, 10)]);
        let (by, after, reason) = verdict(&run(AmdConfig::default(), Codec::Pcmu, &pcm));
        assert_eq!((by, reason), (AnsweredBy::Human, "human-silence"));
        assert_eq!(after, ms(600 + 300 + 800));
    }

    #[test]
    fn no_verdict_within_the_analysis_time_is_unknown() {
        let config = AmdConfig {
            max_words: 20,
            ..AmdConfig::default()
        };
        let mut parts = vec![];
        for seed in 0..8 {
            parts.push(burst(200, 3000.0, seed));
            parts.push(silence(600));
        }
        let (by, after, reason) = verdict(&run(config, Codec::Pcmu, &concat(&parts)));
        assert_eq!(
            (by, after, reason),
            (AnsweredBy::Unknown, ms(5000), "too-long")
        );
    }

    #[test]
    fn the_beep_after_a_greeting_is_reported_at_its_end() {
        for (hz, beep_ms) in [(1000.0, 400), (440.0, 200), (850.0, 800), (1400.0, 300)] {
            let pcm = concat(&[
                silence(400),
                burst(2500, 3000.0, 3),
                silence(300),
                tones(&[(hz, 8000.0)], beep_ms, 0),
                silence(3000),
            ]);
            let events = run(beeping(), Codec::Pcma, &pcm);
            let (by, _, reason) = verdict(&events);
            assert_eq!((by, reason), (AnsweredBy::Machine, "long-greeting"));
            let end = (400 + 2500 + 300 + beep_ms) as u64;
            match events.get(1) {
                Some(&AmdEvent::Beep { after }) => {
                    assert!(
                        after <= ms(end) && after + FRAME >= ms(end),
                        "{hz} Hz: {after:?}"
                    )
                }
                other => panic!("{hz} Hz: {other:?}"),
            }
            assert_eq!(events.len(), 2);
        }
    }

    #[test]
    fn a_tone_first_is_a_machine_and_its_end_the_beep() {
        let pcm = concat(&[
            silence(500),
            tones(&[(1000.0, 6000.0)], 500, 0),
            silence(2000),
        ]);
        let events = run(beeping(), Codec::Pcmu, &pcm);
        assert_eq!(
            verdict(&events),
            (AnsweredBy::Machine, ms(500 + 120), "beep")
        );
        assert_eq!(events.get(1), Some(&AmdEvent::Beep { after: ms(1000) }));

        let events = run(AmdConfig::default(), Codec::Pcmu, &pcm);
        assert_eq!(verdict(&events).2, "beep");
        assert_eq!(events.len(), 1, "no beep events unless asked: {events:?}");
    }

    #[test]
    fn a_vowel_is_not_a_beep() {
        for f0 in [110.0, 180.0, 240.0] {
            let frame: [i16; FRAME_LEN] = vowel(f0, 20).try_into().unwrap();
            assert_eq!(tone_frequency(&frame), None, "{f0} Hz");
        }
        let pcm = concat(&[
            burst(2000, 3000.0, 4),
            silence(200),
            vowel(220.0, 1000),
            silence(200),
            vowel(130.0, 600),
        ]);
        let events = run(beeping(), Codec::Pcmu, &pcm);
        assert_eq!(verdict(&events).0, AnsweredBy::Machine);
        assert_eq!(
            events.get(1),
            Some(&AmdEvent::NoBeep {
                after: ms(1500) + AmdConfig::default().beep_timeout
            })
        );
    }

    #[test]
    fn pure_tones_in_range_are_found_between_goertzel_bins() {
        for hz in [400.0, 440.0, 851.0, 1000.0, 1412.5, 2100.0] {
            let frame: [i16; FRAME_LEN] = tones(&[(hz, 4000.0)], 20, 3).try_into().unwrap();
            let found = tone_frequency(&frame).unwrap_or_else(|| panic!("{hz} Hz"));
            assert!((found - hz).abs() < 10.0, "{hz} Hz: {found}");
        }
        let low: [i16; FRAME_LEN] = tones(&[(200.0, 4000.0)], 20, 0).try_into().unwrap();
        assert_eq!(tone_frequency(&low), None, "below the beep range");
        let two: [i16; FRAME_LEN] = tones(&[(700.0, 4000.0), (1200.0, 3000.0)], 20, 0)
            .try_into()
            .unwrap();
        assert_eq!(tone_frequency(&two), None, "two tones");
        let noise: [i16; FRAME_LEN] = burst(20, 3000.0, 5).try_into().unwrap();
        assert_eq!(tone_frequency(&noise), None, "noise");
    }

    #[test]
    fn a_machine_without_beep_gives_no_beep_at_the_timeout() {
        let pcm = concat(&[silence(200), burst(3000, 3000.0, 6)]);
        let events = run(beeping(), Codec::Pcmu, &pcm);
        assert_eq!(verdict(&events).1, ms(1700));
        assert_eq!(events.get(1), Some(&AmdEvent::NoBeep { after: ms(31_700) }));
    }

    #[test]
    fn missing_packets_count_as_silence_and_jitter_does_not() {
        let codec = Codec::Pcmu;
        let mut word = [0u8; FRAME_LEN];
        g711::encode(codec, &burst(20, 3000.0, 1), &mut word);
        let mut amd = MachineDetector::new(AmdConfig::default());
        // 200 ms of voice, the packets 30 ms late, one lost.
        for n in (1..=10).filter(|&n| n != 4) {
            assert_eq!(amd.feed(ms(20 * n + 30), codec, &word), None);
        }
        // The lateness shifted nothing; the loss added 50 ms of silence (230 ms of audio
        // in all); then nothing: silence from the end of the audio.
        assert_eq!(amd.next_deadline(), Some(ms(230 + 800)));
        assert_eq!(amd.poll(ms(1000)), None);
        // Silence is judged in 20 ms frames: the frame holding the audio's end is half
        // voice and half silence, and counts as either.
        let deadline = amd.next_deadline().unwrap();
        assert!(deadline == ms(1020) || deadline == ms(1040), "{deadline:?}");
        let (by, after, _) = verdict(&[amd.poll(deadline).unwrap()]);
        assert_eq!((by, after), (AnsweredBy::Human, deadline));
    }

    #[test]
    fn nothing_comes_after_finishing() {
        let mut amd = MachineDetector::new(AmdConfig::default());
        assert!(amd.poll(ms(3000)).is_some());
        assert!(amd.is_finished());
        assert_eq!(amd.next_deadline(), None);
        let mut loud = [0u8; FRAME_LEN];
        g711::encode(Codec::Pcma, &burst(20, 3000.0, 1), &mut loud);
        for n in 0..400 {
            assert_eq!(amd.feed(ms(3000 + 20 * n), Codec::Pcma, &loud), None);
        }
        assert_eq!(amd.poll(ms(60_000)), None);
        assert!(amd.is_finished());
    }

    #[test]
    fn as_str_names() {
        let names =
            [AnsweredBy::Human, AnsweredBy::Machine, AnsweredBy::Unknown].map(AnsweredBy::as_str);
        assert_eq!(names, ["human", "machine", "unknown"]);
    }
}
