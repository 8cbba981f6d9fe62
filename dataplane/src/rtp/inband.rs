//! In-band DTMF (ITU-T Q.23 tones, Q.24 reception) detected in received G.711 audio.
//!
//! Used only when the answer negotiated no telephone-event payload type. Eight Goertzel
//! filters run over blocks of [`BLOCK_LEN`] samples; a block holds a key when its strongest
//! row and column tones are loud enough, within the twist limits, clearly above the other
//! tones of their group, and together carry most of the block's energy (talk-off guard).
//! A key is reported after [`HITS_TO_BEGIN`] consecutive blocks (about 25 ms) and not again
//! until [`MISSES_TO_END`] blocks without it.

use crate::api::Codec;

use super::g711;

/// Samples per Goertzel block: 12.75 ms at 8 kHz, 78 Hz bins.
pub const BLOCK_LEN: u32 = 102;

/// Consecutive blocks that must hold a key before it is reported.
pub const HITS_TO_BEGIN: u8 = 2;

/// Consecutive blocks without the key before the same key can be reported again.
pub const MISSES_TO_END: u8 = 2;

/// Row (low group) then column (high group) frequencies in Hz (Q.23).
const FREQUENCIES: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];

const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Smallest per-tone amplitude accepted (linear 16-bit): about −38 dBm0.
const MIN_AMPLITUDE: f32 = 300.0;
/// Column weaker than row by at most 8 dB (power ratio 6.3), Q.24 "normal twist".
const NORMAL_TWIST: f32 = 6.3;
/// Column stronger than row by at most 4 dB (power ratio 2.5), "reverse twist".
const REVERSE_TWIST: f32 = 2.5;
/// The strongest tone of a group exceeds every other tone of that group by 8 dB.
const RELATIVE_PEAK: f32 = 6.3;
/// The two tones carry at least this share of the block's energy.
const MIN_SHARE_OF_ENERGY: f32 = 0.6;

/// Goertzel state for the eight DTMF frequencies over the current block.
#[derive(Clone, Debug)]
pub struct InbandDetector {
    coefficients: [f32; 8],
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
    samples: u32,
    candidate: Option<char>,
    hits: u8,
    misses: u8,
    reported: Option<char>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// A detector that has heard nothing.
    pub fn new() -> Self {
        let coefficients = FREQUENCIES
            .map(|f| 2.0 * (2.0 * std::f32::consts::PI * f / g711::SAMPLE_RATE as f32).cos());
        Self {
            coefficients,
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            samples: 0,
            candidate: None,
            hits: 0,
            misses: 0,
            reported: None,
        }
    }

    /// Feeds one G.711 payload; returns a key when one is newly recognised in it.
    pub fn feed(&mut self, codec: Codec, payload: &[u8]) -> Option<char> {
        let mut key = None;
        for &code in payload {
            let x = f32::from(g711::decode_sample(codec, code));
            for ((s1, s2), coefficient) in
                self.s1.iter_mut().zip(&mut self.s2).zip(&self.coefficients)
            {
                let s = x + coefficient * *s1 - *s2;
                *s2 = *s1;
                *s1 = s;
            }
            self.energy += x * x;
            self.samples += 1;
            if self.samples == BLOCK_LEN {
                let block_key = self.classify_block();
                self.reset_block();
                // Debounce every block, even after a key was found in this payload.
                if let Some(found) = self.debounce(block_key) {
                    key.get_or_insert(found);
                }
            }
        }
        key
    }

    /// The key this block holds, if it passes every check.
    fn classify_block(&self) -> Option<char> {
        let mut power = [0.0f32; 8];
        for (p, ((s1, s2), c)) in power
            .iter_mut()
            .zip(self.s1.iter().zip(&self.s2).zip(&self.coefficients))
        {
            *p = s1 * s1 + s2 * s2 - c * s1 * s2;
        }
        let (rows, columns) = power.split_at(4);
        let (row, row_power) = strongest(rows)?;
        let (column, column_power) = strongest(columns)?;

        // A sine of amplitude A gives Goertzel power (A·N/2)².
        let min_power = (MIN_AMPLITUDE * BLOCK_LEN as f32 / 2.0).powi(2);
        let loud_enough = row_power >= min_power && column_power >= min_power;
        let twist_ok =
            column_power * NORMAL_TWIST >= row_power && column_power <= row_power * REVERSE_TWIST;
        let peaks_clear = |group: &[f32], best: usize, best_power: f32| {
            group
                .iter()
                .enumerate()
                .all(|(i, &p)| i == best || p * RELATIVE_PEAK < best_power)
        };
        // Two pure tones give row + column power = energy · N/2 exactly.
        let share = (row_power + column_power) / (self.energy * BLOCK_LEN as f32 / 2.0);
        let accepted = loud_enough
            && twist_ok
            && peaks_clear(rows, row, row_power)
            && peaks_clear(columns, column, column_power)
            && share >= MIN_SHARE_OF_ENERGY;
        accepted
            .then(|| KEYS.get(row)?.get(column).copied())
            .flatten()
    }

    fn reset_block(&mut self) {
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.samples = 0;
    }

    fn debounce(&mut self, block_key: Option<char>) -> Option<char> {
        let Some(key) = block_key else {
            self.candidate = None;
            self.hits = 0;
            self.misses = self.misses.saturating_add(1);
            if self.misses >= MISSES_TO_END {
                self.reported = None;
            }
            return None;
        };
        self.misses = 0;
        if self.candidate == Some(key) {
            self.hits = self.hits.saturating_add(1);
        } else {
            self.candidate = Some(key);
            self.hits = 1;
        }
        if self.hits >= HITS_TO_BEGIN && self.reported != Some(key) {
            self.reported = Some(key);
            return Some(key);
        }
        None
    }
}

/// Index and power of the strongest entry.
fn strongest(powers: &[f32]) -> Option<(usize, f32)> {
    powers
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: usize = 160;

    /// `ms` milliseconds of the given tones (Hz, amplitude), G.711-encoded, phase continuous
    /// from sample `start`.
    fn tones(codec: Codec, tones: &[(f32, f32)], start: usize, ms: usize) -> Vec<u8> {
        let pcm: Vec<i16> = (start..start + ms * 8)
            .map(|n| {
                let t = n as f32 / 8000.0;
                let v: f32 = tones
                    .iter()
                    .map(|&(f, a)| a * (2.0 * std::f32::consts::PI * f * t).sin())
                    .sum();
                v.clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        let mut out = vec![0u8; pcm.len()];
        g711::encode(codec, &pcm, &mut out);
        out
    }

    fn detect(codec: Codec, audio: &[u8]) -> String {
        let mut detector = InbandDetector::new();
        audio
            .chunks(PACKET)
            .filter_map(|packet| detector.feed(codec, packet))
            .collect()
    }

    fn key_tones(key: char, amplitude: f32, detune: f32) -> Vec<(f32, f32)> {
        let (row, column) = KEYS
            .iter()
            .enumerate()
            .find_map(|(r, keys)| Some((r, keys.iter().position(|&k| k == key)?)))
            .unwrap();
        vec![
            (FREQUENCIES[row] * detune, amplitude),
            (FREQUENCIES[4 + column] * detune, amplitude * 1.25),
        ]
    }

    #[test]
    fn each_key_is_detected_once_in_either_law() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut audio = Vec::new();
            for (i, key) in "123A456B789C*0#D".chars().enumerate() {
                audio.extend(tones(codec, &key_tones(key, 5000.0, 1.0), i * 800, 70));
                audio.extend(tones(codec, &[], 0, 60));
            }
            assert_eq!(detect(codec, &audio), "123A456B789C*0#D", "{codec:?}");
        }
    }

    #[test]
    fn a_key_held_long_is_reported_once_and_a_repeat_after_a_pause_again() {
        let mut audio = tones(Codec::Pcmu, &key_tones('5', 4000.0, 1.0), 0, 600);
        audio.extend(tones(Codec::Pcmu, &[], 0, 50));
        audio.extend(tones(Codec::Pcmu, &key_tones('5', 4000.0, 1.0), 0, 60));
        assert_eq!(detect(Codec::Pcmu, &audio), "55");
    }

    #[test]
    fn quiet_keys_and_the_twist_limits_are_accepted() {
        let codec = Codec::Pcmu;
        let quiet = tones(codec, &key_tones('2', 700.0, 1.0), 0, 100);
        assert_eq!(detect(codec, &quiet), "2", "about -30 dBm0 per tone");
        let normal_twist = tones(codec, &[(941.0, 8000.0), (1633.0, 3400.0)], 0, 100);
        assert_eq!(detect(codec, &normal_twist), "D", "column 7.4 dB under row");
        let reverse_twist = tones(codec, &[(852.0, 3000.0), (1477.0, 4500.0)], 0, 100);
        assert_eq!(detect(codec, &reverse_twist), "9", "column 3.5 dB over row");
    }

    #[test]
    fn tones_within_q24_tolerance_are_accepted_and_far_off_ones_rejected() {
        let near = tones(Codec::Pcmu, &key_tones('9', 5000.0, 1.015), 0, 100);
        assert_eq!(detect(Codec::Pcmu, &near), "9");
        let far = tones(Codec::Pcmu, &key_tones('9', 5000.0, 1.06), 0, 100);
        assert_eq!(detect(Codec::Pcmu, &far), "");
    }

    #[test]
    fn talk_off_cases_are_rejected() {
        let codec = Codec::Pcma;
        let single = tones(codec, &[(697.0, 8000.0)], 0, 200);
        assert_eq!(detect(codec, &single), "", "one tone is not a key");
        let quiet = tones(codec, &key_tones('1', 100.0, 1.0), 0, 200);
        assert_eq!(detect(codec, &quiet), "", "below the level floor");
        let twisted = tones(codec, &[(697.0, 8000.0), (1209.0, 1500.0)], 0, 200);
        assert_eq!(detect(codec, &twisted), "", "column 14.5 dB under row");
        let mut chord = key_tones('1', 5000.0, 1.0);
        chord.push((770.0, 5000.0));
        assert_eq!(detect(codec, &tones(codec, &chord, 0, 200)), "", "two rows");
        let mut noisy = key_tones('1', 3000.0, 1.0);
        noisy.extend([(300.0, 6000.0), (2400.0, 6000.0), (3100.0, 6000.0)]);
        assert_eq!(
            detect(codec, &tones(codec, &noisy, 0, 200)),
            "",
            "speech-like energy"
        );
        let mut seed = 0x2545_f491_u32;
        let noise: Vec<i16> = (0..16000)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 16) as i16 / 2
            })
            .collect();
        let mut encoded = vec![0u8; noise.len()];
        g711::encode(codec, &noise, &mut encoded);
        assert_eq!(detect(codec, &encoded), "", "white noise");
    }
}
