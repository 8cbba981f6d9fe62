//! Telephone band to the model's band: 8 kHz PCM16 (decoded G.711) to the 16 kHz the en-US
//! model was trained on.
//!
//! Two steps, both measured on the accuracy set (`docs/benchmarks.md`, "Speech recognition"):
//! a windowed-sinc 2x interpolator (cut-off 3.8 kHz), then a faint deterministic noise fill
//! above 4 kHz. The model's mel filters reach 6.8 kHz; upsampled G.711 leaves the top filters
//! empty, their log energies at the floor, and the cepstra far from anything the model saw.
//! A fill at about -56 dBFS gives those filters a steady floor that cepstral mean
//! normalisation then removes. The MLLR transform (`bench/speech/adapt.sh`) was estimated on
//! audio through this same path.

/// Taps of the interpolation filter (odd, linear phase).
const TAPS: usize = 63;
/// Cut-off of the interpolation filter as a fraction of the 16 kHz output rate (3.8 kHz).
const CUTOFF: f64 = 3800.0 / 16000.0;

/// The 2x interpolator and band fill; build once, reuse for every utterance.
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// Low-pass taps with unity DC gain.
    taps: [f32; TAPS],
    /// RMS of the fill above 4 kHz, in PCM16 units (0 = none).
    fill_rms: f32,
}

impl Upsampler {
    /// `fill_rms`: RMS of the high-band fill in PCM16 units (0 turns it off).
    pub fn new(fill_rms: f32) -> Self {
        let mut taps = [0f32; TAPS];
        let mid = (TAPS / 2) as f64;
        let mut sum = 0.0;
        for (i, tap) in taps.iter_mut().enumerate() {
            let x = i as f64 - mid;
            let sinc = if x == 0.0 {
                2.0 * CUTOFF
            } else {
                (2.0 * std::f64::consts::PI * CUTOFF * x).sin() / (std::f64::consts::PI * x)
            };
            // Blackman window.
            let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (TAPS - 1) as f64).cos()
                + 0.08 * (4.0 * std::f64::consts::PI * i as f64 / (TAPS - 1) as f64).cos();
            *tap = (sinc * w) as f32;
            sum += sinc * w;
        }
        for tap in &mut taps {
            *tap /= sum as f32;
        }
        Self { taps, fill_rms }
    }

    /// 16 kHz samples for 8 kHz `pcm8k`, written into `out` (cleared first).
    pub fn upsample(&self, pcm8k: &[i16], out: &mut Vec<i16>) {
        out.clear();
        let n = pcm8k.len() * 2;
        out.reserve(n);
        let delay = TAPS / 2;
        // Noise generator (xorshift32, fixed seed: the same audio gives the same result).
        let mut state: u32 = 0x9E37_79B9;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            // Uniform in [-1, 1): RMS 1/sqrt(3).
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        let fill_gain = self.fill_rms * 3f32.sqrt();
        let mut noise_line = [0f32; TAPS];
        for i in 0..n {
            // Zero-stuffed input z[j] = pcm8k[j / 2] for even j, 0 for odd j; output at
            // i + delay so the result lines up with the input. Gain 2 restores the level.
            let centre = i + delay;
            let mut acc = 0f32;
            for (k, tap) in self.taps.iter().enumerate() {
                let Some(j) = centre.checked_sub(k) else {
                    break;
                };
                if j % 2 == 0 && j / 2 < pcm8k.len() {
                    acc += tap * f32::from(pcm8k[j / 2]);
                }
            }
            let mut y = 2.0 * acc;
            if fill_gain > 0.0 {
                // High-pass noise = noise - low-pass(noise), delay-matched.
                noise_line.rotate_right(1);
                noise_line[0] = noise() * fill_gain;
                let low: f32 = self.taps.iter().zip(&noise_line).map(|(t, v)| t * v).sum();
                y += noise_line[delay] - low;
            }
            out.push(y.round().clamp(-32768.0, 32767.0) as i16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn a_tone_keeps_its_level_and_lines_up() {
        let up = Upsampler::new(0.0);
        let input = tone(1000.0, 8000.0, 800);
        let mut out = Vec::new();
        up.upsample(&input, &mut out);
        assert_eq!(out.len(), 1600);
        let want = tone(1000.0, 16000.0, 1600);
        // Away from the edges the output is the 16 kHz tone, in phase.
        let err: Vec<i16> = out[100..1500]
            .iter()
            .zip(&want[100..1500])
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&err) < 80.0, "error rms {}", rms(&err));
    }

    #[test]
    fn no_image_above_four_kilohertz() {
        // A 3 kHz tone's image after zero-stuffing sits at 5 kHz; the filter removes it, so
        // the output correlates with a 3 kHz tone and not with a 5 kHz one.
        let up = Upsampler::new(0.0);
        let mut out = Vec::new();
        up.upsample(&tone(3000.0, 8000.0, 1600), &mut out);
        let corr = |f: f64| {
            let (mut s, mut c) = (0.0, 0.0);
            for (i, &v) in out[200..3000].iter().enumerate() {
                let t = 2.0 * std::f64::consts::PI * f * (i + 200) as f64 / 16000.0;
                s += f64::from(v) * t.sin();
                c += f64::from(v) * t.cos();
            }
            (s * s + c * c).sqrt() / 2800.0
        };
        assert!(corr(3000.0) > 3000.0, "3 kHz {}", corr(3000.0));
        assert!(corr(5000.0) < 100.0, "5 kHz image {}", corr(5000.0));
    }

    #[test]
    fn the_fill_is_faint_and_repeatable() {
        let up = Upsampler::new(40.0);
        let silence = vec![0i16; 8000];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        up.upsample(&silence, &mut a);
        up.upsample(&silence, &mut b);
        assert_eq!(a, b);
        let level = rms(&a);
        assert!((20.0..45.0).contains(&level), "fill rms {level}");
    }
}
