//! Listening for the callee's speech (a VoiceXML field with a voice grammar), sans-IO.
//!
//! A [`Listener`] takes the G.711 payloads of received RTP packets, decodes them to linear
//! PCM16 at 8 kHz, and finds one utterance by voice activity detection:
//!
//! - **Start of speech**: [`ONSET_PACKETS`] packets in a row with sound in them. A packet has
//!   sound when the mean absolute amplitude of its samples exceeds both [`SOUND_LEVEL`] and
//!   [`NOISE_MARGIN`] times the noise floor (the quietest recent packets, tracked as the
//!   listener runs from the first packet, so a noisy line needs louder speech). The utterance keeps the
//!   [`PRE_ROLL`] of audio before the onset, so the first consonant is not clipped.
//! - **End of speech**: `end_silence` since the last packet with sound (a gap in the received
//!   stream counts as silence), or `max_speech` after the start, or a full buffer.
//!
//! The pre-roll ring (300 ms) is allocated when listening starts, and the utterance's buffer
//! (`max_speech`) once, when speech starts: memory follows the callers who speak, not the
//! calls that listen (a DTMF menu with a voice form listens on every call), and nothing is
//! allocated per packet. The finished utterance is handed out as that
//! buffer (moved, not copied). A listener hears one utterance; control starts a new one for
//! the next field.
//!
//! Why by hand: the decision is two thresholds and two timers over the per-packet energy the
//! recorder already measures ([`super::record`]); a VAD crate (WebRTC's, Silero) would bring
//! a C or ONNX dependency to the core thread for no gain on G.711 telephone speech, where the
//! recognizer does its own speech/non-speech modelling afterwards.

use std::time::{Duration, Instant};

use super::g711;
use crate::api::Codec;

/// Mean absolute PCM16 amplitude below which a packet is never sound (about −42 dBov): the
/// recorder's.
pub use super::record::SOUND_LEVEL;

/// A packet is sound only when louder than this many times the noise floor.
pub const NOISE_MARGIN: u32 = 3;

/// Packets with sound in a row that start an utterance (60 ms at 20 ms a packet).
pub const ONSET_PACKETS: u8 = 3;

/// Audio kept from before the onset.
pub const PRE_ROLL: Duration = Duration::from_millis(300);

/// Longest utterance accepted; longer `max_speech`s are cut to this.
pub const MAX_SPEECH: Duration = Duration::from_secs(60);

/// Samples per second.
const RATE: u64 = g711::SAMPLE_RATE as u64;

/// Samples of a packet looked at before the onset (60 ms: any sane `ptime`); the rest of a
/// longer payload is not measured.
const QUIET_PACKET_SAMPLES: usize = 480;

/// Samples in the pre-roll.
const PRE_ROLL_SAMPLES: usize = (PRE_ROLL.as_millis() as usize) * (RATE as usize) / 1000;

/// How an utterance is bounded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ListenParams {
    /// Longest speech (`maxspeechtimeout`), capped at [`MAX_SPEECH`].
    pub max_speech: Duration,
    /// Silence after speech that ends the utterance (`completetimeout`).
    pub end_silence: Duration,
}

/// What listening found.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Heard {
    /// The callee started speaking.
    SpeechStarted,
    /// The utterance is over.
    Utterance(Utterance),
}

/// One finished utterance.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Utterance {
    /// Linear PCM16, 8 kHz, mono: the pre-roll, then the speech and its trailing silence.
    pub pcm: Vec<i16>,
    /// Whether `max_speech` (or the buffer's end) cut it.
    pub max_speech: bool,
}

/// Where a listener is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    /// No speech yet: samples go round the pre-roll ring.
    Quiet,
    /// Speaking since `started`, last sound at `last_sound`.
    Speaking {
        started: Instant,
        last_sound: Instant,
    },
    /// The utterance was handed out.
    Done,
}

/// One listen in progress.
#[derive(Debug)]
pub struct Listener {
    id: u32,
    params: ListenParams,
    phase: Phase,
    /// The pre-roll ring while quiet, then the utterance from its start.
    buffer: Vec<i16>,
    /// Samples the utterance may take: the pre-roll and `max_speech`.
    capacity: usize,
    /// Samples written: ring position (mod the pre-roll) while quiet, length while speaking.
    len: usize,
    /// Packets with sound in a row while quiet.
    onset: u8,
    /// The noise floor: the mean amplitude of quiet packets, smoothed; `None` before the
    /// first packet.
    noise: Option<u32>,
}

impl Listener {
    /// A listener for one utterance; allocates its pre-roll ring now.
    pub fn new(id: u32, params: ListenParams) -> Self {
        let params = ListenParams {
            max_speech: params.max_speech.min(MAX_SPEECH),
            end_silence: params.end_silence.min(MAX_SPEECH),
        };
        Self {
            id,
            params,
            phase: Phase::Quiet,
            buffer: vec![0; PRE_ROLL_SAMPLES],
            capacity: PRE_ROLL_SAMPLES + g711::samples_in(params.max_speech),
            len: 0,
            onset: 0,
            noise: None,
        }
    }

    /// The id given at the start.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether the callee is speaking now.
    pub fn is_speaking(&self) -> bool {
        matches!(self.phase, Phase::Speaking { .. })
    }

    /// Takes one received G.711 payload of law `codec`.
    pub fn hear(&mut self, now: Instant, codec: Codec, payload: &[u8]) -> Option<Heard> {
        match self.phase {
            Phase::Done => None,
            Phase::Quiet => self.hear_quiet(now, codec, payload),
            Phase::Speaking { started, .. } => {
                let free = self.buffer.get_mut(self.len..).unwrap_or_default();
                let written = g711::decode(codec, payload, free);
                let level = g711::mean_level(free.get(..written).unwrap_or_default());
                self.len += written;
                if self.is_sound(level) {
                    self.phase = Phase::Speaking {
                        started,
                        last_sound: now,
                    };
                }
                (self.len >= self.buffer.len()).then(|| self.finish(true))
            }
        }
    }

    /// A packet before the onset: into the pre-roll ring, and maybe the start of speech.
    fn hear_quiet(&mut self, now: Instant, codec: Codec, payload: &[u8]) -> Option<Heard> {
        let mut decoded = [0i16; QUIET_PACKET_SAMPLES];
        let written = g711::decode(codec, payload, &mut decoded);
        let samples = decoded.get(..written).unwrap_or_default();
        let level = g711::mean_level(samples);
        if self.noise.is_none() {
            // The first packet sets the floor: listening starts before the field's prompts
            // play, so what arrives first is the line at rest.
            self.noise = Some(level);
        }
        let ring = self.buffer.get_mut(..PRE_ROLL_SAMPLES).unwrap_or_default();
        if !ring.is_empty() {
            for &sample in samples {
                ring[self.len % PRE_ROLL_SAMPLES] = sample;
                self.len = self.len.wrapping_add(1);
            }
        }
        if !self.is_sound(level) {
            self.onset = 0;
            self.track_noise(level);
            return None;
        }
        self.onset += 1;
        if self.onset < ONSET_PACKETS {
            return None;
        }
        // Unroll the ring so the utterance starts with the oldest pre-roll sample.
        let kept = self.len.min(PRE_ROLL_SAMPLES);
        let ring = self.buffer.get_mut(..PRE_ROLL_SAMPLES).unwrap_or_default();
        if self.len > PRE_ROLL_SAMPLES {
            ring.rotate_left(self.len % PRE_ROLL_SAMPLES);
        }
        self.len = kept;
        // The utterance's buffer: one allocation, for the whole of `max_speech`.
        if self.buffer.len() < self.capacity {
            self.buffer.reserve_exact(self.capacity - self.buffer.len());
            self.buffer.resize(self.capacity, 0);
        }
        self.phase = Phase::Speaking {
            started: now,
            last_sound: now,
        };
        Some(Heard::SpeechStarted)
    }

    /// The ending that time alone has brought about by `now`, if any.
    pub fn check(&mut self, now: Instant) -> Option<Heard> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let Phase::Speaking { started, .. } = self.phase else {
            return None;
        };
        let cut = now >= started + self.params.max_speech;
        Some(self.finish(cut))
    }

    /// When [`Listener::check`] next may end the utterance.
    pub fn deadline(&self) -> Option<Instant> {
        let Phase::Speaking {
            started,
            last_sound,
        } = self.phase
        else {
            return None;
        };
        Some((started + self.params.max_speech).min(last_sound + self.params.end_silence))
    }

    /// Forgets speech heard so far (a prompt that may not be interrupted is playing: what
    /// the callee says over it is not input).
    pub fn reset(&mut self) {
        if self.phase != Phase::Done {
            self.phase = Phase::Quiet;
            self.len = 0;
            self.onset = 0;
        }
    }

    fn finish(&mut self, max_speech: bool) -> Heard {
        self.phase = Phase::Done;
        let mut pcm = std::mem::take(&mut self.buffer);
        pcm.truncate(self.len);
        Heard::Utterance(Utterance { pcm, max_speech })
    }

    fn is_sound(&self, level: u32) -> bool {
        let floor = self.noise.unwrap_or(0);
        level > SOUND_LEVEL && level > floor.saturating_mul(NOISE_MARGIN)
    }

    /// Follows the line's noise: down at once, up slowly (1/16 of the step a packet), so
    /// speech that never reaches the onset does not raise the floor much.
    fn track_noise(&mut self, level: u32) {
        let floor = self.noise.unwrap_or(level);
        self.noise = Some(if level < floor {
            level
        } else {
            floor + (level - floor) / 16
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: ListenParams = ListenParams {
        max_speech: Duration::from_secs(2),
        end_silence: Duration::from_millis(500),
    };

    /// One 20 ms µ-law packet of a tone at `amplitude` (0 = digital silence).
    fn packet(amplitude: f64) -> Vec<u8> {
        let pcm: Vec<i16> = (0..160)
            .map(|n| (amplitude * (n as f64 * 0.3).sin()) as i16)
            .collect();
        let mut out = vec![0u8; 160];
        g711::encode(Codec::Pcmu, &pcm, &mut out);
        out
    }

    /// Feeds `count` packets 20 ms apart from `at`; returns what was heard and the next time.
    fn feed(
        l: &mut Listener,
        at: Instant,
        count: u32,
        amplitude: f64,
    ) -> (Vec<(u32, Heard)>, Instant) {
        let payload = packet(amplitude);
        let mut heard = Vec::new();
        let mut now = at;
        for n in 0..count {
            if let Some(h) = l.check(now) {
                heard.push((n, h));
            }
            if let Some(h) = l.hear(now, Codec::Pcmu, &payload) {
                heard.push((n, h));
            }
            now += Duration::from_millis(20);
        }
        (heard, now)
    }

    /// A listener that has heard 200 ms of the line at rest, and the time after it.
    fn at_rest(t0: Instant) -> (Listener, Instant) {
        let mut l = Listener::new(1, PARAMS);
        let (heard, t) = feed(&mut l, t0, 10, 30.0);
        assert!(heard.is_empty(), "{heard:?}");
        (l, t)
    }

    #[test]
    fn speech_starts_after_the_onset_and_ends_after_the_silence_with_its_pre_roll() {
        let t0 = Instant::now();
        let mut l = Listener::new(7, PARAMS);
        // 1 s of line noise, then 600 ms of speech, then silence.
        let (heard, t) = feed(&mut l, t0, 50, 30.0);
        assert!(heard.is_empty(), "{heard:?}");
        let (heard, t) = feed(&mut l, t, 30, 8000.0);
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(
            heard[0],
            (2, Heard::SpeechStarted),
            "on the third loud packet"
        );
        assert!(l.is_speaking());
        let (heard, _) = feed(&mut l, t, 40, 30.0);
        let [(n, Heard::Utterance(u))] = heard.as_slice() else {
            panic!("one utterance: {heard:?}");
        };
        // The last sound was at packet 29 of the speech; 500 ms later is 25 packets on,
        // i.e. packet 24 of the silence (checked before that packet is heard).
        assert_eq!(*n, 24);
        assert!(!u.max_speech);
        // Pre-roll (300 ms) + the 27 speech packets after the onset's third + 24 silent ones.
        let expected = PRE_ROLL_SAMPLES + 27 * 160 + 24 * 160;
        assert_eq!(u.pcm.len(), expected);
        // The pre-roll ends with the onset's loud packets, in order; it starts with noise.
        assert!(u.pcm[..160].iter().all(|s| s.unsigned_abs() < 100));
        assert!(g711::mean_level(&u.pcm[PRE_ROLL_SAMPLES - 160..PRE_ROLL_SAMPLES]) > 1000);
        // Done: nothing more is heard.
        let (heard, _) = feed(&mut l, t0 + Duration::from_secs(10), 10, 8000.0);
        assert!(heard.is_empty(), "{heard:?}");
    }

    #[test]
    fn speech_after_digital_silence_starts() {
        // Digital silence (level 0) before the speech: the floor is 0, not "unknown", so the
        // first loud packet is not taken for the line's noise.
        let t0 = Instant::now();
        let mut l = Listener::new(1, PARAMS);
        let (heard, t) = feed(&mut l, t0, 20, 0.0);
        assert!(heard.is_empty(), "{heard:?}");
        let (heard, _) = feed(&mut l, t, 5, 2000.0);
        assert_eq!(heard.first(), Some(&(2, Heard::SpeechStarted)), "{heard:?}");
    }

    #[test]
    fn a_click_or_a_short_burst_does_not_start_speech() {
        let t0 = Instant::now();
        let mut l = Listener::new(1, PARAMS);
        let mut t = t0;
        for _ in 0..20 {
            let (heard, next) = feed(&mut l, t, 2, 8000.0);
            assert!(heard.is_empty(), "{heard:?}");
            let (heard, next) = feed(&mut l, next, 3, 0.0);
            assert!(heard.is_empty(), "{heard:?}");
            t = next;
        }
        assert!(!l.is_speaking());
        assert_eq!(
            l.deadline(),
            None,
            "no timer while quiet: noinput is the session's"
        );
    }

    #[test]
    fn a_noisy_line_needs_louder_speech() {
        let t0 = Instant::now();
        let mut l = Listener::new(1, PARAMS);
        // Steady noise at 600: above the absolute level, so only the floor keeps it quiet.
        let (heard, t) = feed(&mut l, t0, 100, 900.0);
        assert!(heard.is_empty(), "noise is not speech: {heard:?}");
        let (heard, _) = feed(&mut l, t, 5, 9000.0);
        assert_eq!(heard.first().map(|h| &h.1), Some(&Heard::SpeechStarted));
    }

    #[test]
    fn max_speech_cuts_a_long_utterance_and_the_buffer_never_grows() {
        let t0 = Instant::now();
        let (mut l, t0) = at_rest(t0);
        assert_eq!(
            l.buffer.capacity(),
            PRE_ROLL_SAMPLES,
            "only the pre-roll before speech"
        );
        let (heard, t) = feed(&mut l, t0, 3, 8000.0);
        assert_eq!(heard.len(), 1, "speech started: {heard:?}");
        let capacity = l.buffer.capacity();
        assert_eq!(
            capacity,
            PRE_ROLL_SAMPLES + 2 * 8000,
            "max_speech allocated at once"
        );
        let (heard, _) = feed(&mut l, t, 197, 8000.0);
        let utterance = heard.iter().find_map(|(n, h)| match h {
            Heard::Utterance(u) => Some((*n, u)),
            Heard::SpeechStarted => None,
        });
        let Some((n, u)) = utterance else {
            panic!("cut: {heard:?}")
        };
        assert!(u.max_speech);
        // Started at packet 2 of the first feed; 2 s is 100 packets later, packet 99 of this.
        assert_eq!(n, 99);
        assert!(u.pcm.len() <= capacity);
        assert_eq!(
            u.pcm.capacity(),
            capacity,
            "the buffer was handed out, not copied"
        );
    }

    #[test]
    fn a_gap_in_the_stream_counts_as_silence() {
        let t0 = Instant::now();
        let (mut l, t0) = at_rest(t0);
        let (_, t) = feed(&mut l, t0, 10, 8000.0);
        assert!(l.is_speaking());
        assert_eq!(
            l.deadline(),
            Some(t - Duration::from_millis(20) + PARAMS.end_silence)
        );
        assert_eq!(l.check(t + Duration::from_millis(400)), None);
        let Some(Heard::Utterance(u)) = l.check(t + Duration::from_millis(500)) else {
            panic!("ended by the silence");
        };
        assert!(!u.max_speech);
    }

    #[test]
    fn reset_forgets_speech_over_a_prompt_that_may_not_be_interrupted() {
        let t0 = Instant::now();
        let (mut l, t0) = at_rest(t0);
        let (_, t) = feed(&mut l, t0, 10, 8000.0);
        assert!(l.is_speaking());
        l.reset();
        assert!(!l.is_speaking());
        assert_eq!(l.deadline(), None);
        let (heard, _) = feed(&mut l, t, 5, 8000.0);
        assert_eq!(heard.first().map(|h| &h.1), Some(&Heard::SpeechStarted));
    }

    #[test]
    fn hostile_payloads_never_panic() {
        let t0 = Instant::now();
        let mut l = Listener::new(
            1,
            ListenParams {
                max_speech: Duration::from_millis(100),
                end_silence: Duration::MAX,
            },
        );
        let mut t = t0;
        for len in [0usize, 1, 159, 160, 161, 1500, 65_535] {
            let loud = vec![0x00u8; len];
            for _ in 0..10 {
                let _ = l.hear(t, Codec::Pcma, &loud);
                let _ = l.check(t);
                t += Duration::from_millis(20);
            }
        }
    }
}
