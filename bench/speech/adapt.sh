#!/usr/bin/env bash
# Makes the telephone-band MLLR transform the speech engine loads (`[speech] mllr = "builtin"`,
# control/src/speech/telephone.mllr): Debian's 16 kHz en-US PocketSphinx model adapted to
# G.711 audio brought back to 16 kHz by the engine's own front-end.
#
#   bash bench/speech/adapt.sh [OUT_FILE]
#   bash bench/speech/adapt.sh --map OUT_DIR
#
# The adaptation audio is the 50 sentences of adapt_sentences.txt spoken by 8 espeak-ng
# voices none of which is in the accuracy set (make_set.sh tests en-us, en-gb-x-rp, en-us+f3
# and en+m3), through µ-law or A-law. sphinxtrain's `bw` collects statistics and
# `mllr_solve` estimates one global transform (a 5 KB text file). Debian's model ships only
# `sendump` (quantised mixture weights) and `bw` needs `mixture_weights`, so
# sendump2mixw.py rebuilds that file first. Nothing is downloaded; the same inputs give the
# same transform.
#
# --map (tried and dropped, docs/benchmarks.md): the 66 sentences of adapt_grammar_words.txt
# too (digit strings, numbers, dates, the city names; none a phrase of the accuracy set),
# then MAP on top of the transform, the CMUSphinx adaptation recipe: `mllr_transform`
# applies the transform to the means, `bw` runs again on that model and `map_adapt` moves
# each Gaussian's mean towards the data it saw. OUT_DIR gets telephone.mllr and
# telephone.means (the model's 838 KB `means` file adapted), which the evaluator takes with
# `--mllr none --ps=-mean --ps=OUT_DIR/telephone.means`.
#
# Needs espeak-ng, sox, python3, pocketsphinx-en-us, sphinxbase-utils
# (sphinx_fe) and sphinxtrain; takes about a minute.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
map=0
if [[ ${1:-} == --map ]]; then
	map=1
	[[ $# -eq 2 ]] || {
		echo "usage: $0 [OUT_FILE] | --map OUT_DIR" >&2
		exit 64
	}
	mkdir -p "$2"
	out=$2/telephone.mllr
else
	out=${1:-$root/control/src/speech/telephone.mllr}
fi
sentences=("$here/adapt_sentences.txt")
((map)) && sentences+=("$here/adapt_grammar_words.txt")
model=/usr/share/pocketsphinx/model/en-us/en-us
dict=/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict
st=/usr/lib/sphinxtrain
for tool in espeak-ng sox python3 sphinx_fe pocketsphinx_mdef_convert "$st/bw" "$st/mllr_solve" "$st/mllr_transform" "$st/map_adapt"; do
	command -v "$tool" >/dev/null || {
		echo "$0: $tool is missing (apt-get install espeak-ng sox sphinxbase-utils pocketsphinx sphinxtrain)" >&2
		exit 2
	}
done
[[ -f $model/mdef ]] || {
	echo "$0: $model is missing (apt-get install pocketsphinx-en-us)" >&2
	exit 2
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/8k" "$tmp/16k" "$tmp/model"

# The engine's front-end, as the evaluator exposes it.
(cd "$root" && cargo build --release --quiet -p outdial-control --example speech_accuracy)
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
frontend="$target/release/examples/speech_accuracy"

voices=(en-gb-scotland en-029 en-gb-x-gbclan en-gb-x-gbcwmd en-us-nyc en-gb+f2 en-us+m5 en-us+f4)
: >"$tmp/adapt.fileids"
: >"$tmp/adapt.transcription"
for i in "${!voices[@]}"; do
	law=u-law
	((i % 2)) && law=a-law
	rate=$((150 + (i % 3) * 20))
	j=0
	while read -r sentence; do
		j=$((j + 1))
		id="a${i}_$j"
		espeak-ng -v "${voices[$i]}" -s "$rate" -w "$tmp/src.wav" "$sentence"
		sox -q -R "$tmp/src.wav" -r 8000 -c 1 -e "$law" -t wav "$tmp/g711.wav"
		sox -q -R "$tmp/g711.wav" -e signed-integer -b 16 "$tmp/8k/$id.wav"
		echo "$id" >>"$tmp/adapt.fileids"
		echo "<s> $sentence </s> ($id)" >>"$tmp/adapt.transcription"
	done < <(cat "${sentences[@]}")
done
"$frontend" upsample "$tmp/16k" "$tmp"/8k/*.wav

for f in "$model"/*; do ln -s "$f" "$tmp/model/"; done
python3 "$here/sendump2mixw.py" "$model/sendump" "$tmp/model/mixture_weights"
pocketsphinx_mdef_convert -text "$model/mdef" "$tmp/mdef.txt" 2>/dev/null
# Noise removal off, as the engine decodes (control/src/speech/engine.rs).
sphinx_fe -argfile "$model/feat.params" -samprate 16000 -remove_noise no -c "$tmp/adapt.fileids" \
	-di "$tmp/16k" -do "$tmp/16k" -ei wav -eo mfc -mswav yes 2>"$tmp/fe.log"
# bw MODEL_DIR ACCUM_DIR: adaptation statistics of the audio against the model.
bw() {
	mkdir -p "$2"
	"$st/bw" -hmmdir "$1" -moddeffn "$tmp/mdef.txt" -ts2cbfn .ptm. -feat 1s_c_d_dd \
		-svspec 0-12/13-25/26-38 -cmn batch -agc none -dictfn "$dict" \
		-ctlfn "$tmp/adapt.fileids" -lsnfn "$tmp/adapt.transcription" -cepdir "$tmp/16k" \
		-accumdir "$2" >"$2.log" 2>&1 || {
		tail -20 "$2.log" >&2
		exit 1
	}
}
# run LOG COMMAND...: the command; its log is shown if it fails.
run() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 || {
		tail -20 "$log" >&2
		exit 1
	}
}
bw "$tmp/model" "$tmp/acc-mllr"
run "$tmp/mllr.log" "$st/mllr_solve" -meanfn "$model/means" -varfn "$model/variances" \
	-outmllrfn "$out" -accumdir "$tmp/acc-mllr"
echo "$out: MLLR transform from $(wc -l <"$tmp/adapt.fileids") utterances ($(grep -c ' ignored' "$tmp/acc-mllr.log" || true) not aligned)"
((map)) || exit 0
# MAP on top of the transformed means: the prior is the transformed model.
mkdir -p "$tmp/mllr-model" "$tmp/map"
for f in "$tmp"/model/*; do ln -s "$(readlink -f "$f")" "$tmp/mllr-model/"; done
rm "$tmp/mllr-model/means"
run "$tmp/transform.log" "$st/mllr_transform" -inmeanfn "$model/means" \
	-outmeanfn "$tmp/mllr-model/means" -mllrmat "$out"
bw "$tmp/mllr-model" "$tmp/acc-map"
run "$tmp/map.log" "$st/map_adapt" -moddeffn "$tmp/mdef.txt" -ts2cbfn .ptm. \
	-meanfn "$tmp/mllr-model/means" -varfn "$model/variances" \
	-mixwfn "$tmp/model/mixture_weights" -tmatfn "$model/transition_matrices" \
	-accumdir "$tmp/acc-map" -mapmeanfn "$2/telephone.means" -mapvarfn "$tmp/map/variances" \
	-mapmixwfn "$tmp/map/mixture_weights" -maptmatfn "$tmp/map/transition_matrices"
echo "$2/telephone.means: MLLR, then MAP means"
