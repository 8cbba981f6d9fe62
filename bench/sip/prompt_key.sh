#!/usr/bin/env bash
# Call setup with an application that talks and listens, side by side with SIPp, in one run
# (issue 14, item 1 (b)): every call plays a short prompt, reads one key and reports it.
#   (d-key) HTTP API -> outdial serve -> SIPp uas (scenarios/uas_key.xml)
#           `outdial bench load --app key --expect-digits 1 --final-callbacks-only`: the
#           application says "Press a key.", the uas listens PRESS_MS after the ACK and
#           presses 1 (RFC 4733), the field fills, the application submits it to the load
#           tool's server and plays its goodbye, Outdial hangs up. A call counts when the
#           submitted key, the stored result and the final status `completed` all check.
#   (a-key) SIPp uac (scenarios/uac_prompt.xml) -> the same SIPp uas
#           SIPp's uac plays a prompt and holds each call for the median hold (answer to
#           end) Outdial's calls had in (d-key), then hangs up: the same signalling, the
#           same hold and media both ways, no application, no store.
# Both runs place CALLS calls with at most CONCURRENCY at once and no rate limit, so calls/s
# is what each sustains with calls of that length: CONCURRENCY / hold is the ceiling.
#
#   bench/sip/prompt_key.sh [CALLS] [CONCURRENCY] [PRESS_MS]   (defaults 2000, 200, 1000)
#
# Needs sipp (apt-get install sip-tester, with its pcap files) and python3. Builds the
# release binary (OUTDIAL_BIN=path measures that binary instead). Exits non-zero if either
# run fails a call. Logs stay in a temp dir (named at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-2000}
concurrency=${2:-200}
press_ms=${3:-1000}
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
[ -f /usr/share/sip-tester/dtmf_2833_1.pcap ] || { echo "SIPp's pcap files are missing (/usr/share/sip-tester)" >&2; exit 1; }

. bench/common.sh
outdial_bin
# Outdial keeps 5 descriptors per call it may run; SIPp one per pcap play.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
dir=$(mktemp -d "${TMPDIR:-/tmp}/outdial-prompt-key.XXXXXX")
scenarios=$PWD/bench/sip/scenarios
now() { date +%s.%N; }

# SIPp's uas pressing 1 PRESS_MS after the ACK; sets uas_port.
start_uas() {
    uas_port=$(free DGRAM)
    sipp -sf "$scenarios/uas_key.xml" -i 127.0.0.1 -p "$uas_port" -mi 127.0.0.1 -mp "$(free_ports 4 DGRAM)" \
        -d "$press_ms" -nostdin -buff_size 4194304 -trace_stat -stf "$dir/uas-$1.csv" \
        >"$dir/uas-$1.log" 2>&1 &
    pids+=($!)
    sleep 0.5
}

echo "== (d-key) HTTP -> outdial serve -> SIPp uas pressing 1: $calls calls, $concurrency at once" >&2
start_uas d
http_port=$(free STREAM)
unlimited_serve_toml "$http_port" "$(free_sip)" "$dir/data" $((concurrency + 100)) >"$dir/outdial.toml"
"$bin" serve --config "$dir/outdial.toml" >"$dir/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_ready "$dir/data" "$http_port"
"$bin" bench load --api "http://127.0.0.1:$http_port" --api-key-file "$dir/data/dev-api-key" \
    --callee "127.0.0.1:$uas_port" --app key --expect-digits 1 --final-callbacks-only \
    --concurrency "$concurrency" --count "$calls" --quiet --json >"$dir/bench-load.json" \
    2>"$dir/bench-load.log" || true
stop_all
read -r ok_d failed_d rate_d hold_ms < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["checks"]["ok"]
hold = r["latency_ms"].get("answered_to_ended", {}).get("p50", 0)
print(ok, r["requested"] - ok, round(ok / r["total_secs"]), round(hold))' "$dir/bench-load.json")

echo "== (a-key) SIPp uac holding ${hold_ms} ms -> SIPp uas pressing 1" >&2
# The uac's prompt: the first second of SIPp's g711a.pcap (the whole file is 7 s, longer
# than a call is held).
python3 - /usr/share/sip-tester/g711a.pcap "$dir/prompt.pcap" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
out, off, packets = [data[:24]], 24, 0
while off < len(data) and packets < 50:
    length = struct.unpack("<I", data[off + 8:off + 12])[0]
    out.append(data[off:off + 16 + length])
    off += 16 + length
    packets += 1
open(sys.argv[2], "wb").write(b"".join(out))
PY
sed "s|/usr/share/sip-tester/g711a.pcap|$dir/prompt.pcap|" "$scenarios/uac_prompt.xml" >"$dir/uac_prompt.xml"
start_uas a
t0=$(now)
sipp -sf "$dir/uac_prompt.xml" "127.0.0.1:$uas_port" -i 127.0.0.1 -p "$(free DGRAM)" \
    -mi 127.0.0.1 -mp "$(free_ports 4 DGRAM)" -d "$hold_ms" -r 1000000 -l "$concurrency" -m "$calls" \
    -nostdin -buff_size 4194304 -trace_stat -stf "$dir/uac.csv" >"$dir/uac.log" 2>&1 || true
t1=$(now)
stop_all
read -r ok_a failed_a < <(python3 -c '
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
h, last = rows[0], rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])' "$dir/uac.csv")
rate_a=$(python3 -c "print(round($ok_a / ($t1 - $t0)))")

ratio() { python3 -c "print(f'{$1 / $2:.2f}' if $2 else '-')"; }
printf '\n%-30s %9s %7s %8s %7s\n' run completed failed calls/s ratio
printf '%-30s %9s %7s %8s %7s\n' "(a-key) sipp uac -> sipp uas" "$ok_a" "$failed_a" "$rate_a" 1.00
printf '%-30s %9s %7s %8s %7s\n' "(d-key) HTTP -> outdial -> uas" "$ok_d" "$failed_d" "$rate_d" "$(ratio "$rate_d" "$rate_a")"
echo "hold (answer to end, median of Outdial's calls): $hold_ms ms; ceiling at $concurrency at once: $(python3 -c "print(round($concurrency * 1000 / max($hold_ms, 1)))") calls/s"
echo "logs: $dir"
[ "$failed_a" = 0 ] && [ "$failed_d" = 0 ]
