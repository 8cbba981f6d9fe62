# Sourced by make_set.sh and make_fsdd_set.sh: one utterance through the telephone path.

# telephone SRC OUT LAW IMPAIRMENT TMPDIR: the utterance SRC (a WAV at any rate), with white
# noise 20 dB below its RMS added before the codec as line noise is (IMPAIRMENT noise; a
# fixed -50 dBFS for silence), through G.711 LAW (u-law or a-law) and back to 8 kHz PCM16,
# with 2 % of its 20 ms packets replaced by silence (IMPAIRMENT loss; clean: neither), as
# OUT. TMPDIR holds the steps. The same arguments always give the same file.
telephone() {
	local src=$1 out=$2 law=$3 imp=$4 tmp=$5 rms vol
	case $imp in
	noise)
		rms=$(sox "$src" -n stat 2>&1 | awk '/RMS +amplitude/ {print $3}')
		vol=$(awk -v r="$rms" 'BEGIN { v = r / 10 * 1.732; if (v < 0.0055) v = 0.0055; print v }')
		sox -q -R "$src" -p synth whitenoise vol "$vol" >"$tmp/noise.sox"
		sox -q -R -m -v 1 "$src" -v 1 "$tmp/noise.sox" "$tmp/in.wav"
		;;
	*) cp "$src" "$tmp/in.wav" ;;
	esac
	sox -q -R "$tmp/in.wav" -r 8000 -c 1 -e "$law" -t wav "$tmp/g711.wav"
	sox -q -R "$tmp/g711.wav" -e signed-integer -b 16 "$tmp/pcm.wav"
	if [[ $imp == loss ]]; then
		python3 "$(dirname "${BASH_SOURCE[0]}")/drop_frames.py" "$tmp/pcm.wav" "$out" 0.02
	else
		mv "$tmp/pcm.wav" "$out"
	fi
}
