//! Recording what the callee says (VoiceXML 2.0 §2.3.6 `<record>`), sans-IO.
//!
//! A [`Recorder`] takes the G.711 payloads of received RTP packets, decodes them to linear
//! PCM16 at 8 kHz into a buffer allocated once when the recording starts (sized for
//! `max_time`), and decides when the recording is over:
//!
//! - **max time**: `max_time` after capture began, or when the buffer is full;
//! - **final silence**: `final_silence` passed since the last packet with sound in it, once
//!   the callee has made any sound;
//! - **no input**: no sound at all within `no_input` of the start (the recording is `silent`);
//! - **a key**, when `dtmfterm` is set (the key becomes the recording's `termchar`);
//! - **stop** (control asked) or **hangup**, with whatever was captured.
//!
//! Sound is judged per packet: a packet is *sound* when the mean absolute amplitude of its
//! decoded samples exceeds [`SOUND_LEVEL`] (about −42 dBov; G.711 idle-channel noise is near
//! 8, speech frames are in the hundreds to thousands). A gap in the received stream (the
//! callee sends nothing, e.g. silence suppression) counts as silence.
//!
//! The recording starts after the beep, when one is asked for: [`beep`] is a 1 kHz tone of
//! 200 ms generated once per process.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use super::g711;
use crate::api::{Codec, Pcm8k};

/// Longest recording accepted; longer `max_time`s are cut to this (9.6 MB of PCM16).
pub const MAX_RECORD_TIME: Duration = Duration::from_secs(600);

/// Mean absolute PCM16 amplitude above which a packet counts as sound.
pub const SOUND_LEVEL: u32 = 256;

/// Frequency of the beep played before a recording.
pub const BEEP_HZ: u32 = 1000;

/// Length of the beep.
pub const BEEP_DURATION: Duration = Duration::from_millis(200);

/// Samples per second.
const RATE: u64 = g711::SAMPLE_RATE as u64;

static BEEP: LazyLock<Pcm8k> = LazyLock::new(|| {
    let samples = g711::samples_in(BEEP_DURATION);
    let step = std::f64::consts::TAU * f64::from(BEEP_HZ) / RATE as f64;
    // −10 dBFS: loud enough to hear, far from clipping after G.711.
    let amplitude = 32767.0 * 10f64.powf(-10.0 / 20.0);
    (0..samples)
        .map(|n| (amplitude * (step * n as f64).sin()) as i16)
        .collect::<Arc<[i16]>>()
});

/// The beep played before a recording (1 kHz, 200 ms, −10 dBFS), shared by every call.
pub fn beep() -> Pcm8k {
    Arc::clone(&BEEP)
}

/// How a recording is bounded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RecordParams {
    /// Longest recording (capped at [`MAX_RECORD_TIME`]).
    pub max_time: Duration,
    /// Silence after sound that ends the recording.
    pub final_silence: Duration,
    /// No sound at all for this long ends the recording as `silent`.
    pub no_input: Duration,
    /// Any DTMF key ends the recording.
    pub dtmfterm: bool,
}

/// Why a recording ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RecordEnd {
    /// `max_time` passed or the buffer filled.
    MaxTime,
    /// `final_silence` passed after sound.
    FinalSilence,
    /// No sound at all within `no_input`.
    NoInput,
    /// A DTMF key with `dtmfterm`.
    Key(char),
    /// Control stopped it, a new recording replaced it, or the call ended.
    Stopped,
}

/// A finished recording.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Recorded {
    /// The id given when it started.
    pub id: u32,
    /// Linear PCM16, 8 kHz, mono.
    pub pcm: Vec<i16>,
    /// The key that ended it (`dtmfterm`).
    pub termchar: Option<char>,
    /// Whether `max_time` ended it.
    pub maxtime: bool,
    /// Whether no packet had sound in it.
    pub silent: bool,
}

/// One recording in progress.
#[derive(Debug)]
pub struct Recorder {
    id: u32,
    params: RecordParams,
    /// When capture began; `None` while the beep plays.
    started: Option<Instant>,
    /// Allocated once for `max_time`; `len` samples of it are recorded.
    buffer: Vec<i16>,
    len: usize,
    /// Arrival of the last packet with sound in it.
    last_sound: Option<Instant>,
}

impl Recorder {
    /// A recording; capture starts at `start`, or at [`Recorder::begin`] when `start` is
    /// `None` (a beep plays first). Allocates the whole buffer now.
    pub fn new(id: u32, params: RecordParams, start: Option<Instant>) -> Self {
        // Capping every duration also keeps `Instant + duration` from overflowing.
        let params = RecordParams {
            max_time: params.max_time.min(MAX_RECORD_TIME),
            final_silence: params.final_silence.min(MAX_RECORD_TIME),
            no_input: params.no_input.min(MAX_RECORD_TIME),
            ..params
        };
        Self {
            id,
            params,
            started: start,
            buffer: vec![0; g711::samples_in(params.max_time)],
            len: 0,
            last_sound: None,
        }
    }

    /// The id given at the start.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether a key ends this recording.
    pub fn ends_on_key(&self) -> bool {
        self.params.dtmfterm
    }

    /// Starts capturing at `at` (when the beep is over, which may be a little ahead of the
    /// caller's clock); no-op once started.
    pub fn begin(&mut self, at: Instant) {
        self.started.get_or_insert(at);
    }

    /// Takes one received G.711 payload of law `codec`; `Some` when the buffer is full.
    /// Payloads before capture began are ignored.
    pub fn capture(&mut self, now: Instant, codec: Codec, payload: &[u8]) -> Option<RecordEnd> {
        if self.started.is_none_or(|started| now < started) {
            return None;
        }
        let free = self.buffer.get_mut(self.len..).unwrap_or_default();
        let written = g711::decode(codec, payload, free);
        let samples = free.get(..written).unwrap_or_default();
        if g711::mean_level(samples) > SOUND_LEVEL {
            self.last_sound = Some(now);
        }
        self.len += written;
        (self.len >= self.buffer.len()).then_some(RecordEnd::MaxTime)
    }

    /// The ending that time alone has brought about by `now`, if any.
    pub fn check(&self, now: Instant) -> Option<RecordEnd> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let started = self.started?;
        Some(if now >= started + self.params.max_time {
            RecordEnd::MaxTime
        } else if self.last_sound.is_some() {
            RecordEnd::FinalSilence
        } else {
            RecordEnd::NoInput
        })
    }

    /// When [`Recorder::check`] next may end the recording.
    pub fn deadline(&self) -> Option<Instant> {
        let started = self.started?;
        let max_time = started + self.params.max_time;
        let quiet = match self.last_sound {
            Some(sound) => sound + self.params.final_silence,
            None => started + self.params.no_input,
        };
        Some(max_time.min(quiet))
    }

    /// The recording, ended for `end`.
    pub fn finish(mut self, end: RecordEnd) -> Recorded {
        self.buffer.truncate(self.len);
        Recorded {
            id: self.id,
            pcm: self.buffer,
            termchar: match end {
                RecordEnd::Key(key) => Some(key),
                _ => None,
            },
            maxtime: end == RecordEnd::MaxTime,
            silent: self.last_sound.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: RecordParams = RecordParams {
        max_time: Duration::from_secs(2),
        final_silence: Duration::from_millis(500),
        no_input: Duration::from_secs(1),
        dtmfterm: true,
    };

    fn frame(codec: Codec, level: i16) -> [u8; 160] {
        let mut out = [0u8; 160];
        let pcm: Vec<i16> = (0..160)
            .map(|n| if n % 2 == 0 { level } else { -level })
            .collect();
        g711::encode(codec, &pcm, &mut out);
        out
    }

    #[test]
    fn the_beep_is_a_200_ms_tone_with_a_1_khz_period() {
        let beep = beep();
        assert_eq!(beep.len(), 1600);
        assert!(Arc::ptr_eq(&beep, &super::beep()), "generated once");
        let crossings = beep.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((395..=405).contains(&crossings), "{crossings}");
        let peak = beep.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((9000..=10400).contains(&peak), "{peak}");
    }

    #[test]
    fn sound_then_final_silence_ends_the_recording_with_the_audio() {
        let t0 = Instant::now();
        let mut r = Recorder::new(1, PARAMS, Some(t0));
        let mut now = t0;
        for _ in 0..10 {
            assert_eq!(r.capture(now, Codec::Pcmu, &frame(Codec::Pcmu, 4000)), None);
            now += Duration::from_millis(20);
        }
        let last_sound = now - Duration::from_millis(20);
        for _ in 0..5 {
            assert_eq!(r.capture(now, Codec::Pcmu, &frame(Codec::Pcmu, 0)), None);
            now += Duration::from_millis(20);
        }
        assert_eq!(r.deadline(), Some(last_sound + PARAMS.final_silence));
        assert_eq!(r.check(last_sound + Duration::from_millis(499)), None);
        let end = r.check(last_sound + PARAMS.final_silence);
        assert_eq!(end, Some(RecordEnd::FinalSilence));
        let done = r.finish(RecordEnd::FinalSilence);
        assert_eq!(done.pcm.len(), 15 * 160);
        assert!(!done.silent && !done.maxtime && done.termchar.is_none());
        assert!(done.pcm[..1600].iter().all(|s| s.unsigned_abs() > 3000));
    }

    #[test]
    fn quiet_input_ends_at_the_noinput_timeout_as_silent() {
        let t0 = Instant::now();
        let mut r = Recorder::new(2, PARAMS, Some(t0));
        r.capture(t0, Codec::Pcma, &frame(Codec::Pcma, 100));
        assert_eq!(r.check(t0 + PARAMS.no_input), Some(RecordEnd::NoInput));
        let done = r.finish(RecordEnd::NoInput);
        assert!(done.silent);
        assert_eq!(done.pcm.len(), 160);
    }

    #[test]
    fn max_time_ends_by_clock_or_by_a_full_buffer() {
        let t0 = Instant::now();
        let params = RecordParams {
            max_time: Duration::from_millis(100),
            ..PARAMS
        };
        let mut r = Recorder::new(3, params, Some(t0));
        assert_eq!(
            r.check(t0 + Duration::from_millis(100)),
            Some(RecordEnd::MaxTime)
        );
        // 800 samples fit: the fifth frame fills the buffer, a sixth is cut off.
        let loud = frame(Codec::Pcmu, 2000);
        for n in 0..4 {
            assert_eq!(r.capture(t0, Codec::Pcmu, &loud), None, "frame {n}");
        }
        assert_eq!(r.capture(t0, Codec::Pcmu, &loud), Some(RecordEnd::MaxTime));
        assert_eq!(r.capture(t0, Codec::Pcmu, &loud), Some(RecordEnd::MaxTime));
        let done = r.finish(RecordEnd::MaxTime);
        assert!(done.maxtime && !done.silent);
        assert_eq!(done.pcm.len(), 800);
    }

    #[test]
    fn nothing_is_captured_or_timed_before_the_beep_ends() {
        let t0 = Instant::now();
        let mut r = Recorder::new(4, PARAMS, None);
        assert_eq!(r.capture(t0, Codec::Pcmu, &frame(Codec::Pcmu, 4000)), None);
        assert_eq!(r.deadline(), None);
        assert_eq!(r.check(t0 + Duration::from_secs(60)), None);
        let t1 = t0 + BEEP_DURATION;
        r.begin(t1);
        r.begin(t1 + Duration::from_secs(1));
        assert_eq!(r.deadline(), Some(t1 + PARAMS.no_input));
        let done = r.finish(RecordEnd::Key('#'));
        assert_eq!(done.termchar, Some('#'));
        assert!(done.pcm.is_empty() && done.silent);
    }

    #[test]
    fn absurd_durations_are_capped() {
        let params = RecordParams {
            max_time: Duration::MAX,
            final_silence: Duration::MAX,
            no_input: Duration::MAX,
            dtmfterm: false,
        };
        let t0 = Instant::now();
        let mut r = Recorder::new(5, params, Some(t0));
        assert_eq!(r.buffer.len(), g711::samples_in(MAX_RECORD_TIME));
        r.capture(t0, Codec::Pcmu, &frame(Codec::Pcmu, 4000));
        assert_eq!(r.deadline(), Some(t0 + MAX_RECORD_TIME));
    }
}
