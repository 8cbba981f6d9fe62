//! The audio the simulated phones send, encoded once per G.711 law and shared by every
//! call: a tone, a speech-like answering-machine greeting, the voicemail beep and an
//! optional prompt from a WAV file. In-band DTMF frames are computed per packet into the
//! packet buffer (no allocation).

use std::path::Path;
use std::sync::Arc;

use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::{SAMPLES_PER_PACKET, g711};

/// One sound encoded in both laws, a whole number of 20 ms frames (padded with silence).
#[derive(Clone, Debug)]
pub struct Encoded {
    pcmu: Arc<[u8]>,
    pcma: Arc<[u8]>,
}

impl Encoded {
    /// Encodes linear 8 kHz samples.
    pub fn new(pcm: &[i16]) -> Self {
        let frames = pcm.len().div_ceil(SAMPLES_PER_PACKET).max(1);
        let encode = |codec| {
            let mut out = vec![g711::silence(codec); frames * SAMPLES_PER_PACKET];
            g711::encode(codec, pcm, &mut out);
            Arc::<[u8]>::from(out)
        };
        Self {
            pcmu: encode(Codec::Pcmu),
            pcma: encode(Codec::Pcma),
        }
    }

    /// Frames of 160 octets.
    pub fn frames(&self) -> usize {
        self.pcmu.len() / SAMPLES_PER_PACKET
    }

    /// Frame `index` (modulo the length, so a sound loops) in `codec`.
    pub fn frame(&self, codec: Codec, index: u64) -> &[u8] {
        let data = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        let at = (index % self.frames() as u64) as usize * SAMPLES_PER_PACKET;
        data.get(at..at + SAMPLES_PER_PACKET).unwrap_or_default()
    }
}

/// Every sound a population uses.
#[derive(Clone, Debug)]
pub struct Sounds {
    /// A 440 Hz tone at −15 dBFS (one second, loops seamlessly).
    pub tone: Encoded,
    /// One second of speech-like bursts (loops): what an answering machine's greeting sounds like.
    pub greeting: Encoded,
    /// The beep after the greeting (the dataplane's record beep: 1 kHz, 200 ms).
    pub beep: Encoded,
    /// The prompt read from `--prompt`, if any (loops).
    pub prompt: Option<Encoded>,
}

impl Sounds {
    /// Builds the fixed sounds and reads the prompt file, if given.
    pub fn new(prompt: Option<&Path>) -> Result<Self, SoundError> {
        let prompt = prompt
            .map(read_wav)
            .transpose()?
            .map(|pcm| Encoded::new(&pcm));
        Ok(Self {
            tone: Encoded::new(&sine(&[440.0], -15.0, 8000)),
            greeting: Encoded::new(&greeting()),
            beep: Encoded::new(&outdial_dataplane::rtp::record::beep()),
            prompt,
        })
    }
}

/// Why a prompt file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SoundError {
    /// Not a readable WAV file.
    #[error("cannot read the prompt {path}: {reason}; give a WAV file (8 kHz, mono, 16-bit PCM)")]
    Unreadable {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A WAV file in another format.
    #[error(
        "the prompt {path} is {rate} Hz, {channels} channel(s), {bits}-bit; convert it to \
         8 kHz mono 16-bit PCM (sox in.wav -r 8000 -c 1 -b 16 out.wav)"
    )]
    Format {
        /// The file.
        path: String,
        /// Its sample rate.
        rate: u32,
        /// Its channels.
        channels: u16,
        /// Its bits per sample.
        bits: u16,
    },
}

/// Longest prompt read (one minute): more would only cost memory.
const MAX_PROMPT_SAMPLES: usize = 60 * 8000;

fn read_wav(path: &Path) -> Result<Vec<i16>, SoundError> {
    let name = path.display().to_string();
    let unreadable = |e: hound::Error| SoundError::Unreadable {
        path: name.clone(),
        reason: e.to_string(),
    };
    let reader = hound::WavReader::open(path).map_err(unreadable)?;
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(SoundError::Format {
            path: name,
            rate: spec.sample_rate,
            channels: spec.channels,
            bits: spec.bits_per_sample,
        });
    }
    reader
        .into_samples::<i16>()
        .take(MAX_PROMPT_SAMPLES)
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)
}

/// `samples` of the sum of sines at `freqs`, each at `level_db` dBFS.
fn sine(freqs: &[f64], level_db: f64, samples: usize) -> Vec<i16> {
    let amplitude = 32767.0 * 10f64.powf(level_db / 20.0);
    (0..samples)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let v: f64 = freqs
                .iter()
                .map(|f| (std::f64::consts::TAU * f * t).sin())
                .sum();
            (amplitude * v) as i16
        })
        .collect()
}

/// One second: syllable-like bursts of 180 ms at varying pitch with 70 ms pauses.
fn greeting() -> Vec<i16> {
    let mut pcm = Vec::with_capacity(8000);
    for pitch in [180.0, 220.0, 150.0, 200.0] {
        pcm.extend(sine(&[pitch, pitch * 2.0, pitch * 3.0], -24.0, 1440));
        pcm.extend(std::iter::repeat_n(0, 560));
    }
    pcm
}

/// DTMF frequencies (ITU-T Q.23) of a key.
fn dtmf_pair(key: char) -> Option<(f32, f32)> {
    let (row, col) = match key.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    let rows = [697.0, 770.0, 852.0, 941.0];
    let cols = [1209.0, 1336.0, 1477.0, 1633.0];
    Some((rows[row], cols[col]))
}

/// Writes 20 ms of `key`'s dual tone (−10 dBFS per tone) starting at sample `offset` of the
/// tone into `out` (160 octets) in `codec`. Returns false for a character that is no key.
pub fn inband_frame(codec: Codec, key: char, offset: u64, out: &mut [u8]) -> bool {
    let Some((low, high)) = dtmf_pair(key) else {
        return false;
    };
    let amplitude = 32767.0 * 10f32.powf(-10.0 / 20.0);
    let mut pcm = [0i16; SAMPLES_PER_PACKET];
    for (n, sample) in pcm.iter_mut().enumerate() {
        let t = (offset + n as u64) as f32 / 8000.0;
        let v = (std::f32::consts::TAU * low * t).sin() + (std::f32::consts::TAU * high * t).sin();
        *sample = (amplitude * v) as i16;
    }
    g711::encode(codec, &pcm, out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use outdial_dataplane::rtp::inband::InbandDetector;

    #[test]
    fn sounds_are_whole_frames_and_loop() {
        let sounds = Sounds::new(None).unwrap();
        assert_eq!(sounds.tone.frames(), 50);
        assert_eq!(sounds.greeting.frames(), 50);
        assert_eq!(sounds.beep.frames(), 10);
        assert_eq!(
            sounds.tone.frame(Codec::Pcma, 50),
            sounds.tone.frame(Codec::Pcma, 0)
        );
        assert_ne!(
            sounds.tone.frame(Codec::Pcmu, 0),
            sounds.tone.frame(Codec::Pcma, 0)
        );
        assert!(sounds.prompt.is_none());
    }

    #[test]
    fn inband_frames_are_heard_by_the_dataplane_detector() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut heard = String::new();
            for key in "159#".chars() {
                let mut detector = InbandDetector::new();
                let mut frame = [0u8; SAMPLES_PER_PACKET];
                for n in 0..5u64 {
                    assert!(inband_frame(codec, key, n * 160, &mut frame));
                    heard.extend(detector.feed(codec, &frame));
                }
                let silence = [g711::silence(codec); SAMPLES_PER_PACKET];
                for _ in 0..5 {
                    heard.extend(detector.feed(codec, &silence));
                }
            }
            assert_eq!(heard, "159#", "{codec:?}");
        }
        assert!(!inband_frame(Codec::Pcmu, 'x', 0, &mut [0u8; 160]));
    }

    #[test]
    fn a_prompt_in_another_format_is_refused_with_the_conversion() {
        let dir = std::env::temp_dir().join(format!("bench-sounds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        writer.write_sample(0i16).unwrap();
        writer.finalize().unwrap();
        let error = Sounds::new(Some(&path)).unwrap_err().to_string();
        assert!(
            error.contains("16000 Hz") && error.contains("sox"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
