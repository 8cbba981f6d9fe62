#!/usr/bin/env bash
# Call setup side by side with SIPp, in one run, against the same kind of peer:
#   (a) SIPp uac   -> SIPp uas        the reference
#   (b) bench sip  -> SIPp uas        Outdial's SIP user agent as the caller   (ratio b/a)
#   (c) SIPp uac   -> bench callee    Outdial's simulated phones as the callee (ratio c/a)
#   (d) HTTP API   -> outdial serve -> SIPp uas
#                                     Outdial end to end (ratio d/a): `outdial bench load
#                                     --app hangup --final-callbacks-only` creates each call
#                                     by POST /v1/calls with a status callback for its final
#                                     status, the embedded server (SQLite, default cores)
#                                     dials it, the application exits at once and Outdial
#                                     hangs up; a call counts when its final status
#                                     `completed` has been stored and called back.
#   (e) as (d), with every status change called back (dialing, ringing, in-progress,
#                                     completed: four webhooks per call).
# Each run places CALLS calls (INVITE, 180, 200, ACK, BYE, 200; no media) with at most
# CONCURRENCY at once and no rate limit, so its calls/s is the most the pair sustains.
#
#   bench/sip/run.sh [CALLS] [CONCURRENCY] [HTTP_CALLS]   (defaults 50000, 200, CALLS/5)
#
# Needs sipp (apt-get install sip-tester) and python3. Builds the release binary
# (OUTDIAL_BIN=path measures that binary instead). Exits
# non-zero if any run fails a call. Results go to standard output; logs stay in a temp dir
# (kept and named on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-50000}
concurrency=${2:-200}
http_calls=${3:-$((calls / 5))}
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }

. bench/common.sh
outdial_bin
dir=$(mktemp -d "${TMPDIR:-/tmp}/outdial-sip-bench.XXXXXX")
uas_pid=""
cleanup() {
    if [ -n "$uas_pid" ]; then kill "$uas_pid" 2>/dev/null || true; wait "$uas_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
buf=4194304
free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):.0f}')"; }

# SIPp's uas on a fresh port; sets uas_port and uas_pid.
start_uas() {
    uas_port=$(free_port)
    sipp -sn uas -i 127.0.0.1 -p "$uas_port" -nostdin -buff_size "$buf" \
        >"$dir/uas-$1.log" 2>&1 &
    uas_pid=$!
    sleep 0.5
}
stop_uas() { cleanup; uas_pid=""; }

# SIPp's uac against 127.0.0.1:$1; prints "successful failed".
sipp_uac() {
    local port=$1 name=$2
    sipp -sn uac "127.0.0.1:$port" -i 127.0.0.1 -p "$(free_port)" -r 1000000 -l "$concurrency" \
        -m "$calls" -nostdin -buff_size "$buf" -timeout 600s \
        -trace_stat -stf "$dir/$name.csv" -fd 1 >"$dir/$name.log" 2>&1 || true
    python3 - "$dir/$name.csv" <<'PY'
import sys
rows = [line.rstrip("\n").split(";") for line in open(sys.argv[1])]
head, last = rows[0], rows[-1]
print(last[head.index("SuccessfulCall(C)")], last[head.index("FailedCall(C)")])
PY
}

echo "== (a) SIPp uac -> SIPp uas: $calls calls, $concurrency at once" >&2
start_uas a
t0=$(now); read -r ok_a failed_a < <(sipp_uac "$uas_port" uac-a); t1=$(now)
stop_uas
rate_a=$(rate "$ok_a" "$t0" "$t1")

echo "== (b) bench sip -> SIPp uas" >&2
start_uas b
t0=$(now)
"$bin" bench sip "sip:service@127.0.0.1:$uas_port" --concurrency "$concurrency" \
    --calls "$calls" --progress 0 --json >"$dir/bench-sip.json" 2>"$dir/bench-sip.log" || true
t1=$(now)
stop_uas
read -r ok_b failed_b < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["completed"], s["failed"])' "$dir/bench-sip.json")
rate_b=$(rate "$ok_b" "$t0" "$t1")

echo "== (c) SIPp uac -> bench callee" >&2
callee_port=$(free_port)
"$bin" bench callee --listen "127.0.0.1:$callee_port" --calls "$calls" --progress 0 --json \
    >"$dir/bench-callee.json" 2>"$dir/bench-callee.log" &
callee_pid=$!
sleep 0.5
t0=$(now); read -r ok_c failed_c < <(sipp_uac "$callee_port" uac-c); t1=$(now)
wait "$callee_pid" || true
rate_c=$(rate "$ok_c" "$t0" "$t1")

# Outdial end to end against a fresh SIPp uas: $1 names the run, the rest go to bench load.
# Prints "completed failed calls/s".
outdial_run() {
    local name=$1
    shift
    start_uas "$name"
    local http_port
    http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    unlimited_serve_toml "$http_port" "$(free_sip)" "$dir/data-$name" $((concurrency * 2)) \
        >"$dir/outdial-$name.toml"
    "$bin" serve --config "$dir/outdial-$name.toml" >"$dir/serve-$name.log" 2>&1 &
    local serve_pid=$!
    wait_ready "$dir/data-$name" "$http_port"
    "$bin" bench load --api "http://127.0.0.1:$http_port" --api-key-file "$dir/data-$name/dev-api-key" \
        --callee "127.0.0.1:$uas_port" --app hangup --concurrency "$concurrency" \
        --count "$http_calls" --quiet --json "$@" >"$dir/bench-load-$name.json" \
        2>"$dir/bench-load-$name.log" || true
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    stop_uas
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["checks"]["ok"]
secs = r["total_secs"]
print(ok, r["requested"] - ok, round(ok / secs))' "$dir/bench-load-$name.json"
}

echo "== (d) HTTP -> outdial serve -> SIPp uas, final status called back: $http_calls calls, $concurrency at once" >&2
read -r ok_d failed_d rate_d < <(outdial_run d --final-callbacks-only)
echo "== (e) the same, every status change called back" >&2
read -r ok_e failed_e rate_e < <(outdial_run e)

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '%-28s %8s %8s %10s %7s\n' run completed failed calls/s ratio
printf '%-28s %8s %8s %10s %7s\n' "(a) sipp uac -> sipp uas" "$ok_a" "$failed_a" "$rate_a" 1.00
printf '%-28s %8s %8s %10s %7s\n' "(b) bench sip -> sipp uas" "$ok_b" "$failed_b" "$rate_b" "$(ratio "$rate_b" "$rate_a")"
printf '%-28s %8s %8s %10s %7s\n' "(c) sipp uac -> bench callee" "$ok_c" "$failed_c" "$rate_c" "$(ratio "$rate_c" "$rate_a")"
printf '%-28s %8s %8s %10s %7s\n' "(d) HTTP -> outdial -> uas" "$ok_d" "$failed_d" "$rate_d" "$(ratio "$rate_d" "$rate_a")"
printf '%-28s %8s %8s %10s %7s\n' "(e) (d), every callback" "$ok_e" "$failed_e" "$rate_e" "$(ratio "$rate_e" "$rate_a")"
if [ "$failed_a" != 0 ] || [ "$failed_b" != 0 ] || [ "$failed_c" != 0 ] || [ "$failed_d" != 0 ] \
    || [ "$failed_e" != 0 ] || [ "$ok_b" != "$calls" ] || [ "$ok_c" != "$calls" ] \
    || [ "$ok_d" != "$http_calls" ] || [ "$ok_e" != "$http_calls" ]; then
    echo "error: some calls failed; logs in $dir" >&2
    exit 1
fi
rm -rf "$dir"
