#!/usr/bin/env bash
# `outdial bench load` against the embedded default (one `outdial serve`, SQLite, one core's
# dataplane) with `outdial bench callee --dtmf from-uri` as the callees (each answers and
# presses the random keys its address asks for), and docs/benchmarks.md regenerated from the
# reports (OUTDIAL_BIN=path measures that binary instead of building the release one):
#
#   bench/load/run.sh [RATE] [SECONDS]      (defaults 20 calls/s and 30 s)
#
# Three runs: single creates at RATE for SECONDS; the same calls in batches of 100; and a
# fixed concurrency of 4 × RATE for RATE × SECONDS calls. Reports (JSON) and plots (SVG) go to
# bench/load/results/. Needs python3 and curl. Builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-20}
seconds=${2:-30}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/outdial-target}"

bin=${OUTDIAL_BIN:-}    # a binary to measure instead of building the release one
if [ -z "$bin" ]; then
    cargo build --release --locked -p outdial-control --bin outdial >&2
    bin="$CARGO_TARGET_DIR/release/outdial"
fi
dir=$(mktemp -d "${BENCH_DIR:-$CARGO_TARGET_DIR}/outdial-load.XXXXXX")
out=bench/load/results
mkdir -p "$out"
. bench/common.sh # free ports; its trap and pids are replaced below
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$dir"' EXIT

http=$(free STREAM); sip=$(free_sip); callee=$(free DGRAM)
cat > "$dir/outdial.toml" <<TOML
[http]
listen = "127.0.0.1:$http"
[sip]
listen = "127.0.0.1:$sip"
[store]
data_dir = "$dir/data"
[log]
level = "warn"
TOML
"$bin" serve --config "$dir/outdial.toml" >"$dir/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    [ -s "$dir/data/dev-api-key" ] && curl -fs "http://127.0.0.1:$http/readyz" >/dev/null && break
    sleep 0.1
done

"$bin" bench callee --listen "127.0.0.1:$callee" --dtmf from-uri >"$dir/callee.out" 2>&1 &
pids+=($!)
sleep 1

load() {
    local name=$1
    shift
    echo "== bench load $*" >&2
    "$bin" bench load --api "http://127.0.0.1:$http" --api-key-file "$dir/data/dev-api-key" \
        --callee "127.0.0.1:$callee" --json --plot "$out/$name.svg" "$@" \
        > "$out/$name.json" || echo "(the run failed its checks: see $out/$name.json)" >&2
}
load single --rate "$rate" --duration "$seconds"
load batch --rate "$rate" --duration "$seconds" --batch 100
load concurrency --concurrency $((rate * 4)) --count $((rate * seconds))
python3 bench/load/to_markdown.py "$out/single.json" "$out/batch.json" "$out/concurrency.json"
echo "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
