#!/usr/bin/env bash
# Generates the speech accuracy set (docs/benchmarks.md, "Speech recognition"): phrases for
# the grammars in bench/speech/grammars/ spoken by several espeak-ng voices and rates, passed
# through G.711 (µ-law and A-law) and back to 8 kHz PCM16, clean, with white noise at 20 dB
# SNR, or with 2 % of the 20 ms packets lost; plus out-of-grammar sentences and silence.
#
#   bash bench/speech/make_set.sh OUTDIR [--small | --calibration | --calibration-festival | --flite]
#
# OUTDIR/manifest.tsv has one line per file:
#   file  kind(in|oog|silence)  grammar(or -)  expected(or -)  law  impairment  voice  rate
# The full set has 1,452 files; --small makes 16. The same arguments always give the
# same files. None of the voices here is one bench/speech/adapt.sh adapts with.
# --calibration makes the set the confidence is fitted on instead (1,566 files): the same
# phrases spoken by the 8 voices of adapt.sh (none of them a test voice), one G.711 law per
# voice, and 8 out-of-grammar sentences other than the test set's and 3 city names not in
# the list (near misses: "san bernardino" is close to "san diego").
# --flite makes the test set with another synthesizer instead: flite's voices kal16, awb,
# rms and slt (apt-get install flite), a check that what was adapted on espeak-ng voices does
# not only fit espeak-ng.
# --calibration-festival makes a second calibration set with a third synthesizer: the
# calibration set's phrases and out-of-grammar sentences spoken by Festival's English voices
# kal_diphone, ked_diphone and cmu_us_slt_arctic_hts (apt-get install festival
# festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts), both G.711 laws (1,182 files), so
# the confidence is not fitted on one synthesizer's speech. flite's kal16 and slt are the
# same speakers (kal16 is built from the same diphones), awb and rms are not.
# Needs espeak-ng (or flite, or festival's text2wave), sox and python3.
set -euo pipefail

usage() {
	echo "usage: $0 OUTDIR [--small | --calibration | --calibration-festival | --flite]" >&2
	exit 64
}
[[ $# -ge 1 ]] || usage
out=$1
small=0
calibration=0
flite=0
festival=0
case ${2:-} in
'') ;;
--small) small=1 ;;
--calibration) calibration=1 ;;
--calibration-festival)
	calibration=1
	festival=1
	;;
--flite) flite=1 ;;
*) usage ;;
esac
synth=espeak-ng packages=espeak-ng
((flite)) && synth=flite packages=flite
((festival)) && synth=text2wave \
	packages="festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
for tool in $synth sox python3; do
	command -v "$tool" >/dev/null || {
		echo "$0: $tool is missing (apt-get install $packages sox python3)" >&2
		exit 2
	}
done
if ((festival)); then
	for dir in english/kal_diphone english/ked_diphone us/cmu_us_slt_arctic_hts; do
		[[ -d /usr/share/festival/voices/$dir ]] || {
			echo "$0: the Festival voice $dir is missing (apt-get install $packages)" >&2
			exit 2
		}
	done
fi
here=$(cd "$(dirname "$0")" && pwd)
. "$here/telephone.sh"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# grammar|phrase
phrases=(
	"yesno|yes" "yesno|no" "yesno|yeah" "yesno|nope"
	"digits|four" "digits|seven" "digits|one two" "digits|nine oh" "digits|three five eight"
	"digits|six zero two" "digits|two four six eight" "digits|five one nine three" "digits|eight"
	"digits|zero seven seven"
	"numbers|seven" "numbers|twelve" "numbers|fifteen" "numbers|twenty" "numbers|thirty three"
	"numbers|forty eight" "numbers|fifty" "numbers|sixty one" "numbers|seventy nine"
	"numbers|ninety four"
	"cities|new york" "cities|los angeles" "cities|chicago" "cities|houston" "cities|phoenix"
	"cities|philadelphia" "cities|san antonio" "cities|san diego" "cities|dallas"
	"cities|san jose" "cities|austin" "cities|boston" "cities|seattle" "cities|denver"
	"cities|miami" "cities|atlanta" "cities|detroit" "cities|portland" "cities|las vegas"
	"cities|nashville"
	"dates|january first" "dates|february fourteenth" "dates|march third"
	"dates|april twenty second" "dates|may fifth" "dates|the tenth of june" "dates|july fourth"
	"dates|august thirty first" "dates|september ninth" "dates|the twelfth of december"
)
oog=(
	"what time is it"
	"i would like to speak to a manager"
	"the weather is lovely today"
	"can you call me back later"
	"hello who is this"
	"please remove me from your list"
)
voices=(en-us en-gb-x-rp en-us+f3 en+m3)
rates=(150 190)
laws=(u-law a-law)
impairments=(clean noise loss)
if ((small)); then
	phrases=("yesno|yes" "yesno|no" "digits|three five eight" "cities|chicago" "cities|san diego"
		"numbers|forty eight")
	oog=("the weather is lovely today")
	voices=(en-us en+m3)
	laws=(u-law)
	impairments=(clean)
fi
if ((calibration)); then
	oog=(
		"i am not sure"
		"could you repeat that please"
		"my name is john smith"
		"is this a recording"
		"good morning"
		"sorry i was busy"
		"we already have one thank you"
		"hold on a second"
		"san bernardino"
		"fort worth"
		"columbus"
	)
	voices=(en-gb-scotland en-029 en-gb-x-gbclan en-gb-x-gbcwmd en-us-nyc en-gb+f2 en-us+m5 en-us+f4)
fi
((flite)) && voices=(kal16 awb rms slt)
((festival)) && voices=(kal_diphone ked_diphone cmu_us_slt_arctic_hts)

manifest="$out/manifest.tsv"
: >"$manifest"

# speak KIND GRAMMAR EXPECTED TEXT VOICE RATE NAME: one utterance in every condition.
speak() {
	local kind=$1 grammar=$2 expected=$3 text=$4 voice=$5 rate=$6 name=$7
	if [[ $kind == silence ]]; then
		sox -q -R -n -r 22050 -c 1 -b 16 "$tmp/src.wav" trim 0 "$text"
	elif ((flite)); then
		# flite has no words-a-minute setting: its durations stretched by 1.1 at 150, 0.87 at 190.
		flite -voice "$voice" --setf duration_stretch="$(awk -v r="$rate" 'BEGIN { print 150 / r * 1.1 }')" \
			-t "$text" -o "$tmp/src.wav"
	elif ((festival)); then
		# As for flite: durations stretched by 1.1 at 150, 0.87 at 190 (the HTS voice takes a
		# speed, the inverse, from hts_engine's -r).
		local stretch speed=()
		stretch=$(awk -v r="$rate" 'BEGIN { print 150 / r * 1.1 }')
		[[ $voice == *_hts ]] && speed=(-eval "(set! hts_engine_params (append hts_engine_params \
'((\"-r\" $(awk -v s="$stretch" 'BEGIN { print 1 / s }')))))")
		echo "$text" | text2wave -eval "(voice_$voice)" \
			-eval "(Parameter.set 'Duration_Stretch $stretch)" "${speed[@]}" -o "$tmp/src.wav"
	else
		espeak-ng -v "$voice" -s "$rate" -w "$tmp/src.wav" "$text"
	fi
	local law imp file
	for law in "${laws[@]}"; do
		for imp in "${impairments[@]}"; do
			file="$name-${law/-/}-$imp.wav"
			telephone "$tmp/src.wav" "$out/$file" "$law" "$imp" "$tmp"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$kind" "$grammar" "$expected" \
				"${law/-/}" "$imp" "$voice" "$rate" >>"$manifest"
		done
	done
}

n=0
for v in "${!voices[@]}"; do
	voice=${voices[$v]}
	if ((calibration && !festival)); then
		laws=(u-law)
		((v % 2)) && laws=(a-law)
	fi
	for p in "${!phrases[@]}"; do
		grammar=${phrases[$p]%%|*}
		text=${phrases[$p]#*|}
		rate=${rates[$(((p + v) % 2))]}
		n=$((n + 1))
		speak in "$grammar" "$text" "$text" "$voice" "$rate" "$(printf 'in-%04d' $n)"
	done
	for p in "${!oog[@]}"; do
		rate=${rates[$(((p + v) % 2))]}
		n=$((n + 1))
		speak oog - - "${oog[$p]}" "$voice" "$rate" "$(printf 'oog-%04d' $n)"
	done
done
for seconds in 1 2; do
	speak silence - - "$seconds" - - "silence-${seconds}s"
done
echo "$(wc -l <"$manifest") files in $out (manifest.tsv)"
