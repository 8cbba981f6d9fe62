#!/usr/bin/env bash
# Makes an accuracy set of real people's speech (docs/benchmarks.md, "Speech recognition",
# "Real speakers") from the Free Spoken Digit Dataset: six men (two with US accents, four
# with Belgian French, German, Greek and other accents) saying single digits, recorded at
# 8 kHz. The recordings are not in this project: pass a checkout's recordings/ folder
# (https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0).
#
#   bash bench/speech/make_fsdd_set.sh FSDD_RECORDINGS_DIR OUTDIR [TAKES]
#
# Per speaker and digit, TAKES recordings (default 5: 300 utterances), each padded with
# 0.3 s of silence on both sides (the recordings are cut close to the word; the core's VAD
# hands the recognizer its pre-roll and the trailing silence), through µ-law (even takes) or
# A-law (odd takes) and back to 8 kHz PCM16, clean, with white noise at 20 dB SNR, or with
# 2 % of the 20 ms packets lost. The manifest is make_set.sh's: each utterance is in the
# digits grammar, and its clean copies are also out-of-grammar speech for the yes/no and
# city grammars (real speech forced onto a grammar that does not cover it).
set -euo pipefail

[[ $# -ge 2 ]] || {
	echo "usage: $0 FSDD_RECORDINGS_DIR OUTDIR [TAKES]" >&2
	exit 64
}
src=$1 out=$2 takes=${3:-5}
[[ $takes =~ ^[0-9]+$ ]] && ((takes >= 1 && takes <= 50)) || {
	echo "$0: TAKES must be from 1 to 50 (FSDD has 50 recordings of each digit by each speaker)" >&2
	exit 64
}
for tool in sox python3; do
	command -v "$tool" >/dev/null || {
		echo "$0: $tool is missing (apt-get install sox python3)" >&2
		exit 2
	}
done
[[ -f $src/7_jackson_0.wav ]] || {
	echo "$0: $src does not look like FSDD's recordings/ folder (no 7_jackson_0.wav)" >&2
	exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/telephone.sh"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
words=(zero one two three four five six seven eight nine)
speakers=(george jackson lucas nicolas theo yweweler)
manifest="$out/manifest.tsv"
: >"$manifest"
# line KIND GRAMMAR EXPECTED: the manifest line of the current file.
line() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$file" "$1" "$2" "$3" "${law/-/}" "$imp" "$speaker" >>"$manifest"; }
for speaker in "${speakers[@]}"; do
	for digit in "${!words[@]}"; do
		for ((take = 0; take < takes; take++)); do
			law=u-law
			((take % 2)) && law=a-law
			name="$digit-$speaker-$take"
			sox -q -R "$src/${digit}_${speaker}_$take.wav" -r 8000 -c 1 -b 16 "$tmp/src.wav" pad 0.3 0.3
			for imp in clean noise loss; do
				file="$name-${law/-/}-$imp.wav"
				telephone "$tmp/src.wav" "$out/$file" "$law" "$imp" "$tmp"
				line in digits "${words[$digit]}"
				if [[ $imp == clean ]]; then
					line oog yesno -
					line oog cities -
				fi
			done
		done
	done
done
echo "$(wc -l <"$manifest") decisions in $out (manifest.tsv)"
