#!/bin/sh
# Regenerates the WAV test vectors used by `src/prompts.rs` (sox 14.4).
# Each is 0.2 s at half of full scale, so an 8 kHz conversion has exactly 1,600 samples.
set -eu
cd "$(dirname "$0")"
tone() { # name rate channels encoding bits effect...
    name=$1 rate=$2 channels=$3 encoding=$4 bits=$5
    shift 5
    sox -n -r "$rate" -c "$channels" -e "$encoding" -b "$bits" "$name" synth 0.2 "$@" vol 0.5
}
tone tone1k_16k_s16.wav      16000 1 signed-integer 16 sine 1000
tone tone1k_44k1_s16.wav     44100 1 signed-integer 16 sine 1000
tone tone1k2k_44k1_stereo.wav 44100 2 signed-integer 16 sine 1000 sine 2000
tone tone1k_8k_ulaw.wav       8000 1 u-law 8 sine 1000
tone tone1k_8k_alaw.wav       8000 1 a-law 8 sine 1000
tone tone1k_22k05_u8.wav     22050 1 unsigned-integer 8 sine 1000
tone tone1k_48k_s24.wav      48000 1 signed-integer 24 sine 1000
tone tone1k_32k_s32.wav      32000 1 signed-integer 32 sine 1000
tone tone1k_44k1_f32.wav     44100 1 floating-point 32 sine 1000
tone tone6k_44k1_s16.wav     44100 1 signed-integer 16 sine 6000
tone tone6k_16k_s16.wav      16000 1 signed-integer 16 sine 6000
