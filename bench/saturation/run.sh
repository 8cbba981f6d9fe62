#!/usr/bin/env bash
# The dataplane comes first (issue 14, item 2): while a storm of new calls saturates control,
# calls already up keep their media pacing, and callees that answered see no INVITE
# retransmission.
#
#   bench/saturation/run.sh [MEDIA_CALLS] [SECONDS] [STORM_CALLS]
#
# Two runs, each on a fresh `outdial serve` (embedded default: one dataplane core per CPU,
# scheduler release limits off):
#   (quiet) MEDIA_CALLS calls carry two-way G.711 for SECONDS: `bench load --app long-prompt`
#           against `bench callee --media echo` (which presses each call's keys after SECONDS);
#   (storm) the same, and once they are all up `bench load --app hangup` places STORM_CALLS
#           more calls, 200 at once and as fast as control takes them, against SIPp's uas:
#           HTTP create, INVITE, 200, ACK, BYE, final webhook, each.
# For each run it prints: media packets sent more than 2 ms after their slot (the share of all
# RTP sent, by Outdial's own counters), packets lost at the phones, the dataplane cores' and
# control's CPU over the storm's window, the storm's calls/s, and SIPp's retransmissions
# (a retransmitted INVITE it had already answered, or its own 200 OK re-sent because the ACK was
# late: each means a core did not read or answer in time).
#
# The phones' own view of the media calls' audio is printed too: the longest gap between two
# packets of a call (p99 over calls) and RFC 3550 jitter (p99 over calls).
#
# Needs sipp (apt-get install sip-tester), python3 and curl. Builds the release binary
# (OUTDIAL_BIN=path measures that binary instead; CONTROL_NICE=N sets dataplane.control_nice;
# REALTIME_PRIORITY=N sets dataplane.realtime_priority, 0 = the cores at normal priority).
# Exits non-zero if a call failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
media=${1:-500}
seconds=${2:-30}
storm=${3:-20000}
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
. bench/common.sh
outdial_bin
dir=$(mktemp -d "${TMPDIR:-/tmp}/outdial-saturation.XXXXXX")
# CPU seconds of process PID: "cores all" (cores = its outdial-core-* threads; all = the
# process, user + system, exited threads included).
split_cpu() {
    python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
cores = 0
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        ns = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
    except OSError:
        continue
    if name.startswith("outdial-core-"):
        cores += ns
f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
print(cores / 1e9, (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))
PY
}

results="$dir/results.tsv"
: >"$results"
status=0
for run in quiet storm; do
    echo "== ($run) $media media calls for ${seconds}s$([ "$run" = storm ] && echo ", then $storm calls as fast as they go")" >&2
    http=$(free STREAM); sip=$(free_sip); callee=$(free DGRAM); uas=$(free DGRAM)
    # No release limit: the storm goes as fast as control takes it.
    unlimited_serve_toml "$http" "$sip" "$dir/data-$run" $((media + 400)) >"$dir/outdial-$run.toml"
    if [ -n "${CONTROL_NICE:-}${REALTIME_PRIORITY:-}" ]; then
        printf '[dataplane]\n' >>"$dir/outdial-$run.toml"
        [ -n "${CONTROL_NICE:-}" ] && printf 'control_nice = %s\n' "$CONTROL_NICE" >>"$dir/outdial-$run.toml"
        [ -n "${REALTIME_PRIORITY:-}" ] && printf 'realtime_priority = %s\n' "$REALTIME_PRIORITY" >>"$dir/outdial-$run.toml"
    fi
    "$bin" serve --config "$dir/outdial-$run.toml" >"$dir/serve-$run.log" 2>&1 &
    serve=$!
    pids+=($serve)
    wait_ready "$dir/data-$run" "$http"
    sipp -sn uas -i 127.0.0.1 -p "$uas" -nostdin -buff_size 4194304 \
        -trace_stat -stf "$dir/uas-$run.csv" -fd 1 >"$dir/uas-$run.log" 2>&1 &
    pids+=($!)
    "$bin" bench callee --listen "127.0.0.1:$callee" --media echo --dtmf from-uri \
        --dtmf-delay "$((seconds * 1000))" --calls "$media" --progress 0 --json \
        >"$dir/callee-$run.json" 2>"$dir/callee-$run.log" &
    callee_pid=$!
    pids+=($callee_pid)
    sleep 0.5
    "$bin" bench load --api "http://127.0.0.1:$http" --api-key-file "$dir/data-$run/dev-api-key" \
        --callee "127.0.0.1:$callee" --app long-prompt --concurrency "$media" --count "$media" \
        --call-timeout $((seconds + 120)) --quiet --json >"$dir/media-$run.json" \
        2>"$dir/media-$run.log" &
    media_pid=$!
    for _ in $(seq 1 $((seconds * 4))); do
        [ "$(metric outdial_core_live_calls || echo 0)" -ge "$media" ] && break
        sleep 0.5
    done
    read -r cores0 control0 < <(split_cpu "$serve")
    t0=$(date +%s.%N)
    storm_rate=""
    if [ "$run" = storm ]; then
        "$bin" bench load --api "http://127.0.0.1:$http" --api-key-file "$dir/data-$run/dev-api-key" \
            --callee "127.0.0.1:$uas" --app hangup --concurrency 200 --count "$storm" \
            --final-callbacks-only --quiet --json >"$dir/storm.json" 2>"$dir/storm.log" || status=1
        storm_rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["checks"]["ok"] / r["total_secs"]))' "$dir/storm.json")
    else
        sleep "$(python3 -c "print($seconds / 2)")"
    fi
    t1=$(date +%s.%N)
    read -r cores1 control1 < <(split_cpu "$serve")
    wait "$media_pid" || status=1
    sent=$(metric outdial_rtp_packets_sent_total)
    late=$(metric outdial_rtp_sent_late_total 'over="2ms"')
    for _ in $(seq 1 100); do kill -0 "$callee_pid" 2>/dev/null || break; sleep 0.1; done
    kill -INT "$callee_pid" 2>/dev/null || true
    wait "$callee_pid" 2>/dev/null || true
    sleep 1.2 # SIPp writes its statistics once a second
    stop_all
    python3 - "$run" "$dir/callee-$run.json" "$dir/uas-$run.csv" "$sent" "$late" "$cores0" "$cores1" \
        "$control0" "$control1" "$t0" "$t1" "${storm_rate:-}" >>"$results" <<'PY'
import json, sys
run, callee, uas = sys.argv[1:4]
sent, late = int(sys.argv[4]), int(sys.argv[5])
c0, c1, k0, k1, t0, t1 = map(float, sys.argv[6:12])
rate = sys.argv[12] or "-"
phones = json.load(open(callee))
lost = phones["rx_lost"]
gap = phones["max_gap_ms"]["p99"]
jitter = phones["jitter_us"]["p99"]
rows = [line.rstrip("\n").split(";") for line in open(uas) if line.strip()]
head, last = rows[0], rows[-1]
retrans = sum(int(last[i]) for i, name in enumerate(head) if name.startswith("Retransmissions") and name.endswith("(C)"))
window = t1 - t0
control = (k1 - k0) - (c1 - c0)
print(run, f"{late / max(sent, 1) * 100:.3f}", lost, gap, jitter, f"{(c1 - c0) / window:.2f}", f"{control / window:.2f}", rate, retrans, sep="\t")
PY
done

printf '%-6s %8s %6s %12s %14s %11s %13s %10s %13s\n' run ">2ms %" lost "gap p99 ms" "jitter p99 µs" "cores CPUs" "control CPUs" "storm c/s" "SIPp retrans"
while IFS=$'\t' read -r run late lost gap jitter cores control rate retrans; do
    printf '%-6s %8s %6s %12s %14s %11s %13s %10s %13s\n' "$run" "$late" "$lost" "$gap" "$jitter" "$cores" "$control" "$rate" "$retrans"
done <"$results"
echo "logs: $dir"
exit "$status"
