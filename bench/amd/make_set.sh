#!/usr/bin/env bash
# Generates the answering-machine detection accuracy set (docs/amd.md): 8 kHz mono 16-bit
# WAV files of synthetic callees, each passed through G.711 (µ-law or A-law) and back.
#
#   bash bench/amd/make_set.sh OUTDIR [--small]
#
# The truth is in each file name:
#   human-NNN-LAW-NOISE.wav                      a short answer, then 4 s of silence
#   machine-beep-HZhz-MSms-endENDms-LAW-NOISE-NNN.wav
#                                                a greeting, a beep of HZ Hz lasting MS ms
#                                                that ends END ms into the file, 3 s of silence
#   machine-nobeep-LAW-NOISE-NNN.wav             a greeting, then 3 s of silence
# LAW is ulaw or alaw; NOISE is clean, or white or pink (about -35 dBFS of line noise).
# The full set has 255 files (135 humans, 120 machines of which 100 beep); --small picks
# 21 of them for CI. The same arguments always give the same files.
# Needs espeak-ng and sox (apt-get install espeak-ng sox).
set -euo pipefail

usage() {
	echo "usage: $0 OUTDIR [--small]" >&2
	exit 64
}
[[ $# -ge 1 ]] || usage
out=$1
small=0
case ${2:-} in
'') ;;
--small) small=1 ;;
*) usage ;;
esac
for tool in espeak-ng sox soxi; do
	command -v "$tool" >/dev/null || {
		echo "$0: $tool is missing: install espeak-ng and sox (apt-get install espeak-ng sox)" >&2
		exit 2
	}
done

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
RANDOM=20240514 # every run draws the same levels, pauses and beeps
pcm=(-r 8000 -c 1 -b 16 -e signed-integer)

humans=(
	"Hello?"
	"Hi"
	"Yes?"
	"Hello, who is this?"
	"This is Mary"
	"Hello, Johnson residence"
	"Yeah?"
	"Good morning"
	"Speaking"
)
machines=(
	"Hi, you've reached Mark, I can't take your call right now, please leave a message after the tone."
	"The person you are calling is not available. Please leave a message after the tone."
	"Hello, this is Sarah. Sorry I missed you. Leave your name and number and I'll call you back."
	"You have reached the voicemail of five five five, zero one two three. Please leave a message."
	"Thank you for calling Acme Plumbing. Our office is now closed. Please leave a message and we will return your call on the next business day."
	"Hey, it's Dave. Leave a message."
	"The number you have dialed is not available at the moment. Please record your message after the beep."
	"Hi, we're not home right now. Please leave a message after the tone and we'll get back to you."
)
voices=(en-us en-gb en+f3 en+m3 en-us+f2)
rates=(140 175 210)
beeps=(440 850 1000 1400)

silence() { # FILE MS
	sox -n "${pcm[@]}" "$1" trim 0 "$(ms_to_s "$2")"
}
ms_to_s() {
	printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}
samples_ms() { # FILE -> its length in ms
	echo $(($(soxi -s "$1") / 8))
}

# speak TEXT VOICE RATE: $tmp/speech.wav at a level between -1 and -8 dB of espeak's own.
speak() {
	espeak-ng -v "$2" -s "$3" -w "$tmp/raw.wav" "$1"
	sox "$tmp/raw.wav" "${pcm[@]}" "$tmp/speech.wav" gain -$((1 + RANDOM % 8))
}

# finish NAME PARTS...: concatenates PARTS, adds the noise and the law named in NAME.
finish() {
	local name=$1
	shift
	sox "$@" "$tmp/clean.wav"
	local law=ulaw encoding=u-law noise=clean
	((count % 2)) && law=alaw encoding=a-law
	case $((count / 2 % 3)) in
	1) noise=white ;;
	2) noise=pink ;;
	esac
	if [[ $noise == clean ]]; then
		cp "$tmp/clean.wav" "$tmp/mixed.wav"
	else
		local length volume=0.078
		[[ $noise == pink ]] && volume=0.1
		length=$(ms_to_s "$(samples_ms "$tmp/clean.wav")")
		sox -n "${pcm[@]}" "$tmp/noise.wav" synth "$length" "${noise}noise" vol "$volume"
		sox -m -v 1 "$tmp/clean.wav" -v 1 "$tmp/noise.wav" "$tmp/mixed.wav"
	fi
	sox -D "$tmp/mixed.wav" -t wav -e "$encoding" "$tmp/law.wav"
	sox -D "$tmp/law.wav" "${pcm[@]}" "$out/${name//LAW-NOISE/$law-$noise}.wav"
	count=$((count + 1))
}

count=0
beeped=0
combo=0
for text in "${humans[@]}"; do
	for voice in "${voices[@]}"; do
		for rate in "${rates[@]}"; do
			combo=$((combo + 1))
			((small && combo % 13 != 1)) && continue
			speak "$text" "$voice" "$rate"
			silence "$tmp/lead.wav" $((200 + RANDOM % 1000))
			silence "$tmp/tail.wav" 4000
			finish "$(printf 'human-%03d-LAW-NOISE' "$combo")" "$tmp/lead.wav" "$tmp/speech.wav" "$tmp/tail.wav"
		done
	done
done

combo=0
for text in "${machines[@]}"; do
	for voice in "${voices[@]}"; do
		for rate in "${rates[@]}"; do
			combo=$((combo + 1))
			((small && combo % 12 != 1)) && continue
			speak "$text" "$voice" "$rate"
			lead=$((200 + RANDOM % 1000))
			silence "$tmp/lead.wav" "$lead"
			silence "$tmp/tail.wav" 3000
			index=$(printf '%03d' "$combo")
			if ((combo % 6 == 0 || (small && combo % 48 == 1))); then
				finish "machine-nobeep-LAW-NOISE-$index" "$tmp/lead.wav" "$tmp/speech.wav" "$tmp/tail.wav"
				continue
			fi
			gap=$((200 + RANDOM % 500))
			beep=$((200 + RANDOM % 601))
			hz=${beeps[$((beeped % 4))]}
			beeped=$((beeped + 1))
			silence "$tmp/gap.wav" "$gap"
			sox -n "${pcm[@]}" "$tmp/beep.wav" synth "$(ms_to_s "$beep")" sine "$hz" vol 0.$((3 + RANDOM % 4))
			end=$((lead + $(samples_ms "$tmp/speech.wav") + gap + beep))
			finish "machine-beep-${hz}hz-${beep}ms-end${end}ms-LAW-NOISE-$index" \
				"$tmp/lead.wav" "$tmp/speech.wav" "$tmp/gap.wav" "$tmp/beep.wav" "$tmp/tail.wav"
		done
	done
done
echo "$0: $count files in $out" >&2
