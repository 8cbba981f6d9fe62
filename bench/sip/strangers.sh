#!/usr/bin/env bash
# What strangers churning a core's accepted SIP connections cost the core while it carries
# calls (docs/benchmarks.md, "Strangers' connections"): one core holds CALLS live calls (a
# long prompt to a SIPp uas that never presses a key), and strangers from 41 loopback
# addresses open TCP connections to its SIP port one after another for SECONDS, silent, so
# that past the accepted share (896) every newcomer makes the core close the quietest. The
# same churn runs first with no call. Prints, for both, the connections opened per second, the
# core thread's CPU over SECONDS without strangers and with them, and the difference per
# connection.
#
#   bash bench/sip/strangers.sh [CALLS] [SECONDS]      (defaults 1000 and 10)
#
# OUTDIAL_BIN=path measures that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-1000}
seconds=${2:-10}
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }

. bench/common.sh
outdial_bin
dir=$(mktemp -d "${TMPDIR:-/tmp}/outdial-strangers.XXXXXX")

# The core thread's CPU seconds (utime + stime) of `outdial serve` PID.
core_cpu() { # PID
    for task in /proc/"$1"/task/*; do
        if [ "$(cat "$task/comm")" = outdial-core-0 ]; then
            awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "$task/stat"
            return
        fi
    done
    echo "no outdial-core-0 thread in $1" >&2
    return 1
}

# One run with LIVE calls held: prints "connections/s quiet-CPU-% churn-CPU-% CPU-µs-per-connection".
run() { # LIVE
    local live=$1 uas_port sip http
    uas_port=$(free DGRAM)
    sipp -sn uas -i 127.0.0.1 -p "$uas_port" -nostdin >"$dir/uas-$live.log" 2>&1 &
    pids+=($!)
    http=$(free STREAM)
    sip=$(free_sip)
    {
        unlimited_serve_toml "$http" "$sip" "$dir/data-$live" $((live + 100))
        printf '\n[dataplane]\ncores = 1\n'
    } >"$dir/serve-$live.toml"
    "$bin" serve --config "$dir/serve-$live.toml" >"$dir/serve-$live.log" 2>&1 &
    local serve=$!
    pids+=("$serve")
    wait_ready "$dir/data-$live" "$http"
    if [ "$live" -gt 0 ]; then
        "$bin" bench load --api "http://127.0.0.1:$http" --api-key-file "$dir/data-$live/dev-api-key" \
            --callee "127.0.0.1:$uas_port" --app long-prompt --concurrency "$live" --count "$live" \
            --call-timeout 600 --quiet >"$dir/load-$live.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 1 600); do
            [ "$(metric outdial_core_live_calls)" -ge "$live" ] && break
            sleep 0.1
        done
        [ "$(metric outdial_core_live_calls)" -ge "$live" ] \
            || { echo "only $(metric outdial_core_live_calls) of $live calls live; logs in $dir" >&2; exit 1; }
    fi
    # The core's own CPU over SECONDS without strangers (the calls' media), then with them.
    # (A connect can wait on a full accept queue: the churn's own wall time is what counts.)
    local quiet0 quiet1 before after opened t0 t1
    quiet0=$(core_cpu "$serve")
    sleep "$seconds"
    quiet1=$(core_cpu "$serve")
    before=$(core_cpu "$serve")
    t0=$(date +%s.%N)
    opened=$(python3 bench/sip/strangers.py 127.0.0.1 "$sip" "$seconds")
    t1=$(date +%s.%N)
    after=$(core_cpu "$serve")
    [ "$live" -eq 0 ] || [ "$(metric outdial_core_live_calls)" -ge "$live" ] \
        || echo "warning: calls ended during the churn; hold them longer (a longer prompt)" >&2
    python3 -c "
opened, secs, wall, quiet, churn = $opened, $seconds, $t1 - $t0, $quiet1 - $quiet0, $after - $before
extra = churn - quiet / secs * wall
print(f'{opened / wall:.0f} {quiet / secs * 100:.0f} {churn / wall * 100:.0f} {extra * 1e6 / max(opened, 1):.1f}')"
    stop_all
}

read -r rate0 quiet0 churn0 cpu0 < <(run 0)
read -r rate1 quiet1 churn1 cpu1 < <(run "$calls")
printf '%-18s %14s %16s %16s %24s\n' "calls on the core" "connections/s" "core CPU quiet" "with strangers" "core CPU µs/connection"
printf '%-18s %14s %15s%% %15s%% %24s\n' 0 "$rate0" "$quiet0" "$churn0" "$cpu0"
printf '%-18s %14s %15s%% %15s%% %24s\n' "$calls" "$rate1" "$quiet1" "$churn1" "$cpu1"
rm -rf "$dir"
