//! G.711 µ-law and A-law (ITU-T G.711; RTP payload types 0 and 8, RFC 3551 §4.5.14).
//!
//! The per-sample work is `audio-codec-algorithms` (decode tables from ITU-T G.191);
//! this module adds the [`Codec`] dispatch and slice helpers that allocate nothing.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

use crate::api::Codec;

/// Samples per second for both laws.
pub const SAMPLE_RATE: u32 = 8000;

/// The RTP static payload type of `codec` (RFC 3551 Table 4).
pub const fn payload_type(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
    }
}

/// The code for digital silence: µ-law 0xFF (+0), A-law 0xD5 (+8, the smallest positive step).
pub const fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xff,
        Codec::Pcma => 0xd5,
    }
}

/// Decodes one code to linear PCM.
pub fn decode_sample(codec: Codec, code: u8) -> i16 {
    match codec {
        Codec::Pcmu => decode_ulaw(code),
        Codec::Pcma => decode_alaw(code),
    }
}

/// Encodes `pcm` into `out`, one octet per sample, as far as the shorter slice allows;
/// returns the number of samples encoded.
pub fn encode(codec: Codec, pcm: &[i16], out: &mut [u8]) -> usize {
    let encode_sample = match codec {
        Codec::Pcmu => encode_ulaw,
        Codec::Pcma => encode_alaw,
    };
    for (code, &sample) in out.iter_mut().zip(pcm) {
        *code = encode_sample(sample);
    }
    pcm.len().min(out.len())
}

/// Decodes `payload` into `out` as far as the shorter slice allows; returns the sample count.
pub fn decode(codec: Codec, payload: &[u8], out: &mut [i16]) -> usize {
    let decode_sample = match codec {
        Codec::Pcmu => decode_ulaw,
        Codec::Pcma => decode_alaw,
    };
    for (sample, &code) in out.iter_mut().zip(payload) {
        *sample = decode_sample(code);
    }
    payload.len().min(out.len())
}

/// Samples in `duration` at [`SAMPLE_RATE`], saturating.
pub fn samples_in(duration: std::time::Duration) -> usize {
    let samples = duration.as_millis().saturating_mul(u128::from(SAMPLE_RATE)) / 1000;
    usize::try_from(samples).unwrap_or(usize::MAX)
}

/// Mean absolute amplitude of `samples` (0 for none): how loud a packet is, as the recorder
/// and the speech listener judge sound.
pub fn mean_level(samples: &[i16]) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    let sum: u64 = samples.iter().map(|s| u64::from(s.unsigned_abs())).sum();
    u32::try_from(sum / samples.len() as u64).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    fn all_codes() -> Vec<u8> {
        (0..=255).collect()
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for codec in BOTH {
            let codes = all_codes();
            let mut pcm = [0i16; 256];
            assert_eq!(decode(codec, &codes, &mut pcm), 256);
            let mut again = [0u8; 256];
            assert_eq!(encode(codec, &pcm, &mut again), 256);
            for (&code, &back) in codes.iter().zip(&again) {
                // µ-law has two zeros (0x7F is -0, 0xFF is +0): both encode back to +0.
                let expected = if codec == Codec::Pcmu && code == 0x7f {
                    0xff
                } else {
                    code
                };
                assert_eq!(back, expected, "{codec:?} code {code:#04x}");
            }
        }
    }

    #[test]
    fn decode_matches_the_crate_tables() {
        let mut pcm = [0i16; 256];
        decode(Codec::Pcmu, &all_codes(), &mut pcm);
        assert!(
            all_codes()
                .iter()
                .all(|&c| pcm[usize::from(c)] == decode_ulaw(c))
        );
        decode(Codec::Pcma, &all_codes(), &mut pcm);
        assert!(
            all_codes()
                .iter()
                .all(|&c| pcm[usize::from(c)] == decode_alaw(c))
        );
    }

    #[test]
    fn round_trip_error_stays_within_the_quantisation_step() {
        for codec in BOTH {
            let samples: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
            let mut codes = vec![0u8; samples.len()];
            let mut back = vec![0i16; samples.len()];
            encode(codec, &samples, &mut codes);
            decode(codec, &codes, &mut back);
            for (&x, &y) in samples.iter().zip(&back) {
                // A segment's step is at most 1/16 of the values in it (G.711 §3), and the
                // smallest step is 16; clipping at full scale costs under 1/16 too.
                let error = (i32::from(x) - i32::from(y)).abs();
                let bound = i32::from(x).abs() / 16 + 16;
                assert!(error <= bound, "{codec:?}: {x} -> {y} (error {error})");
            }
        }
    }

    #[test]
    fn silence_decodes_to_near_zero() {
        for codec in BOTH {
            let mut pcm = [1i16; 1];
            decode(codec, &[silence(codec)], &mut pcm);
            assert!(pcm[0].abs() <= 8, "{codec:?}: {}", pcm[0]);
        }
    }

    #[test]
    fn slices_of_unequal_length_stop_at_the_shorter() {
        let mut out = [0u8; 3];
        assert_eq!(encode(Codec::Pcma, &[0; 10], &mut out), 3);
        let mut pcm = [7i16; 10];
        assert_eq!(decode(Codec::Pcmu, &[0xff; 4], &mut pcm), 4);
        assert_eq!(
            (pcm[3], pcm[4]),
            (0, 7),
            "decoded up to the payload, untouched after"
        );
    }
}
