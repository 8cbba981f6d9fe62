#!/usr/bin/env bash
# Concurrent calls with two-way media, side by side with the physical limit, in one run.
# For each concurrency N:
#   (bare)    `outdial bench udp`: N paced streams of 172-octet RTP packets every 20 ms, each
#             on its own socket, echoed by a reflector: the dataplane's core loop and sockets
#             with no call logic, pinned to CPU 0 as Outdial's core 0 is.
#   (outdial) `outdial serve` (embedded default but `dataplane.cores = 1`) places N calls asked for
#             by `outdial bench load --app long-prompt`; `outdial bench callee --media echo`
#             answers each, echoes the prompt's RTP back, and presses the call's keys SECONDS
#             after answering (barge-in), so each call carries two-way media for SECONDS.
# Clean means zero loss (sequence-number loss at the receivers, and no UDP receive-buffer
# drop counted by the kernel during the run) and p99 send lateness under 2 ms (fewer than
# 1 % of packets sent more than 2 ms after their slot). For the bare sender it is measured by
# the sender (waking once per millisecond tick, `--tick-us 1000`); for Outdial by the dataplane's own counters (outdial_rtp_sent_late_total).
# CPU per stream: the loop thread's CPU time per second per stream (Outdial: its core thread
# `outdial-core-0`, sampled while all N calls are up). Over the same window: the peer's CPU
# (the reflector, or bench callee) in cores, and the share of the machine's CPU left idle.
#
#   bench/media/run.sh [SECONDS] [N ...]     (defaults 20 and 250 500 1000 1500 2000)
#
# Prints a table and the largest clean N of each, and their ratio. Needs python3 and curl;
# builds the release binary (OUTDIAL_BIN=path measures that binary instead).
# CONTROL_NICE=N sets Outdial's dataplane.control_nice (default: the server's own, 10; 0 = off).
# REALTIME_PRIORITY=N sets Outdial's dataplane.realtime_priority and runs the bare sender the
# same way (default 10; 0 = both at normal priority).
# The reflector has a socket per stream, as bench callee has one per call (on loopback the
# sender pays for delivery into the receiving socket); REFLECTOR_PORTS=1 gives it one socket.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
shift || true
levels=("$@")
[ ${#levels[@]} -gt 0 ] || levels=(250 500 1000 1500 2000)
. bench/common.sh
outdial_bin
dir=$(mktemp -d "${TMPDIR:-/tmp}/outdial-media-bench.XXXXXX")
# UDP datagrams the kernel dropped for a full receive buffer, machine-wide.
rcvbuf_errors() { awk '/^Udp: [0-9]/ {print $6}' /proc/net/snmp; }
# CPU seconds of thread NAME of process PID.
thread_cpu() {
    python3 - "$1" "$2" <<'PY'
import os, sys
pid, name = sys.argv[1], sys.argv[2]
tick = os.sysconf("SC_CLK_TCK")
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        if open(f"/proc/{pid}/task/{tid}/comm").read().strip() == name:
            ns = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
            print(ns / 1e9)
            break
    except OSError:
        pass
else:
    print(0)
PY
}
# CPU seconds of process PID (user + system).
proc_cpu() { python3 -c "import os,sys; f=open('/proc/$1/stat').read().rsplit(')',1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))"; }
# Idle CPU seconds of the machine, summed over its CPUs.
idle_cpu() { python3 -c "import os; f=open('/proc/stat').readline().split(); print((int(f[4])+int(f[5]))/os.sysconf('SC_CLK_TCK'))"; }
# Over a window: the peer's CPU in cores and the machine's idle share, from two samples.
window_figures() { # PEER_CPU0 PEER_CPU1 IDLE0 IDLE1 SECONDS
    python3 -c "import os; print(f'{($2 - $1) / $5:.2f}', f'{($4 - $3) / $5 / os.cpu_count() * 100:.0f}')"
}

# The bare sender runs as Outdial's core does: SCHED_FIFO at [dataplane] realtime_priority
# (REALTIME_PRIORITY, default the server's own 10; 0 = both at normal priority).
realtime=${REALTIME_PRIORITY:-10}
bare_realtime=()
[ "$realtime" -gt 0 ] && bare_realtime=(--realtime-priority "$realtime")

results="$dir/results.tsv"
: >"$results"
for n in "${levels[@]}"; do
    echo "== $n streams, bare sender" >&2
    ports=${REFLECTOR_PORTS:-$n}
    reflector=$(free_ports "$ports" DGRAM)
    "$bin" bench udp --reflect "127.0.0.1:$reflector" --ports "$ports" 2>"$dir/reflector-$n.log" &
    reflector_pid=$!
    pids+=($reflector_pid)
    wait_udp_bound "$((reflector + ports - 1))"
    before=$(rcvbuf_errors)
    "$bin" bench udp --to "127.0.0.1:$reflector" --ports "$ports" --streams "$n" --seconds "$seconds" --cpu 0 \
        ${bare_realtime[@]+"${bare_realtime[@]}"} --json >"$dir/bare-$n.json" 2>"$dir/bare-$n.log" &
    sender_pid=$!
    window=$(python3 -c "print($seconds / 2)")
    sleep "$(python3 -c "print($seconds / 4)")"
    p0=$(proc_cpu "$reflector_pid"); i0=$(idle_cpu)
    sleep "$window"
    p1=$(proc_cpu "$reflector_pid"); i1=$(idle_cpu)
    wait "$sender_pid" || true
    kernel_drops=$(( $(rcvbuf_errors) - before ))
    stop_all
    read -r peer idle < <(window_figures "$p0" "$p1" "$i0" "$i1" "$window")
    python3 - "$dir/bare-$n.json" "$n" "$kernel_drops" "$peer" "$idle" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n, drops, peer, idle = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
lost = r["lost"] + drops
late = r["sent_late_2ms"] / max(r["sent"], 1)
print("bare", n, lost, f"{late * 100:.3f}", r["lateness_us"][1], f"{r['cpu_us_per_stream_second']:.1f}", "ok", peer, idle, sep="\t")
PY

    echo "== $n calls, outdial" >&2
    http=$(free STREAM); sip=$(free_sip); callee=$(free DGRAM)
    cat >"$dir/outdial-$n.toml" <<TOML
[http]
listen = "127.0.0.1:$http"
[sip]
listen = "127.0.0.1:$sip"
[store]
data_dir = "$dir/data-$n"
[calls]
max_concurrent = $((n + 100))
[log]
level = "warn"
[dataplane]
# One core, pinned to CPU 0 as the bare sender is: the two loops compared on equal terms.
cores = 1
TOML
    printf 'realtime_priority = %s\n' "$realtime" >>"$dir/outdial-$n.toml"
    if [ -n "${CONTROL_NICE:-}" ]; then
        printf 'control_nice = %s\n' "$CONTROL_NICE" >>"$dir/outdial-$n.toml"
    fi
    "$bin" serve --config "$dir/outdial-$n.toml" >"$dir/serve-$n.log" 2>&1 &
    serve=$!
    pids+=($serve)
    wait_ready "$dir/data-$n" "$http"
    "$bin" bench callee --listen "127.0.0.1:$callee" --media echo --dtmf from-uri \
        --dtmf-delay "$((seconds * 1000))" --calls "$n" --progress 0 --json \
        >"$dir/callee-$n.json" 2>"$dir/callee-$n.log" &
    callee_pid=$!
    pids+=($callee_pid)
    sleep 0.3
    before=$(rcvbuf_errors)
    "$bin" bench load --api "http://127.0.0.1:$http" --api-key-file "$dir/data-$n/dev-api-key" \
        --callee "127.0.0.1:$callee" --app long-prompt --concurrency "$n" --count "$n" \
        --call-timeout $((seconds + 120)) --quiet --json >"$dir/load-$n.json" 2>"$dir/load-$n.log" &
    load_pid=$!
    # Sample the core's CPU once every call is up, over half the hold time.
    cpu_per_stream=""
    peer=nan
    idle=nan
    for _ in $(seq 1 $((seconds * 4))); do
        live=$(metric outdial_core_live_calls || echo 0)
        if [ "$live" -ge "$n" ]; then
            window=$(python3 -c "print($seconds / 2)")
            c0=$(thread_cpu "$serve" outdial-core-0)
            p0=$(proc_cpu "$callee_pid"); i0=$(idle_cpu)
            sleep "$window"
            c1=$(thread_cpu "$serve" outdial-core-0)
            p1=$(proc_cpu "$callee_pid"); i1=$(idle_cpu)
            cpu_per_stream=$(python3 -c "print(f'{($c1 - $c0) * 1e6 / $window / $n:.1f}')")
            read -r peer idle < <(window_figures "$p0" "$p1" "$i0" "$i1" "$window")
            break
        fi
        sleep 0.5
    done
    load_ok=ok
    wait "$load_pid" || load_ok=failed
    kernel_drops=$(( $(rcvbuf_errors) - before ))
    sent=$(metric outdial_rtp_packets_sent_total)
    late=$(metric outdial_rtp_sent_late_total 'over="2ms"')
    for _ in $(seq 1 100); do kill -0 "$callee_pid" 2>/dev/null || break; sleep 0.1; done
    kill -INT "$callee_pid" 2>/dev/null || true
    wait "$callee_pid" 2>/dev/null || true
    stop_all
    python3 - "$dir/callee-$n.json" "$n" "$kernel_drops" "$sent" "$late" "${cpu_per_stream:-nan}" "$load_ok" "$peer" "$idle" >>"$results" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
n, drops, sent, late, cpu, ok = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
peer, idle = sys.argv[8], sys.argv[9]
lost = c["rx_lost"] + drops
print("outdial", n, lost, f"{late / max(sent, 1) * 100:.3f}", "", cpu, ok, peer, idle, sep="\t")
PY
done

python3 - "$results" "$seconds" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print(f"{'':8} {'N':>6} {'lost':>8} {'>2ms %':>8} {'p99 µs':>8} {'CPU µs/stream/s':>16} {'checks':>7} {'peer cores':>10} {'idle %':>6} clean")
best = {}
cpu = {}
for kind, n, lost, late, p99, per, ok, peer, idle in rows:
    clean = int(lost) == 0 and float(late) < 1.0 and ok == "ok"
    print(f"{kind:8} {n:>6} {lost:>8} {late:>8} {p99:>8} {per:>16} {ok:>7} {peer:>10} {idle:>6} {'yes' if clean else 'no'}")
    if clean:
        best[kind] = max(best.get(kind, 0), int(n))
    cpu[(kind, n)] = per
print(f"\nlargest clean concurrency ({sys.argv[2]} s holds): bare {best.get('bare', 0)}, outdial {best.get('outdial', 0)}", end="")
if best.get("bare"):
    print(f", ratio {best.get('outdial', 0) / best['bare']:.2f}")
else:
    print()
for (kind, n), per in cpu.items():
    if kind == "outdial" and ("bare", n) in cpu:
        try:
            print(f"CPU per stream at {n}: outdial / bare = {float(per) / float(cpu[('bare', n)]):.2f}")
        except (ValueError, ZeroDivisionError):
            pass
PY
echo "logs: $dir" >&2
