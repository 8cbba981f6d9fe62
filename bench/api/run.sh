#!/usr/bin/env bash
# Durable single creates per second through the real API, against the same server's
# GET /healthz (the HTTP ceiling) and one-commit-per-insert SQLite on the same disk; and call
# requests by e-mail (`outdial bench smtp`, one call per message) in the same run.
#
#   bench/api/run.sh [CONNECTIONS] [SECONDS]      (defaults 64 and 10)
#
# Needs wrk (apt-get install wrk) and python3. Builds the release binary. The data directory
# is under $BENCH_DIR (default: a new directory in the target dir, i.e. on the build disk).
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${1:-64}
seconds=${2:-10}
threads=2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/outdial-target}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --locked -p outdial-control --bin outdial >&2
bin="$CARGO_TARGET_DIR/release/outdial"
dir=$(mktemp -d "${BENCH_DIR:-$CARGO_TARGET_DIR}/outdial-bench.XXXXXX")
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
smtp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sip=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/outdial.toml" <<TOML
[http]
listen = "127.0.0.1:$port"
[sip]
listen = "127.0.0.1:$sip"
[store]
data_dir = "$dir/data"
[calls]
# One call dials (to a TEST-NET address that never answers); every other call stays queued.
max_concurrent = 1
ring_timeout_secs = 3600
[smtp]
enabled = true
listen = "127.0.0.1:$smtp"
auth_on_loopback = true
max_connections = $((connections + 8))
max_connections_per_source = $((connections + 8))
[log]
level = "warn"
TOML
"$bin" serve --config "$dir/outdial.toml" >"$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    [ -s "$dir/data/dev-api-key" ] && curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done
export OUTDIAL_KEY=$(cat "$dir/data/dev-api-key")
api="http://127.0.0.1:$port"

# wrk's "Requests/sec" and its 99% latency, in ms.
measure() {
    local out rps p99 non2xx
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$@")
    echo "$out" >&2
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    if [ -n "$non2xx" ]; then echo "error: $non2xx answers were not 2xx" >&2; exit 1; fi
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}')
    echo "$rps $p99"
}

echo "== GET /healthz, $connections connections, ${seconds}s" >&2
read -r health health_p99 < <(measure "$api/healthz")
echo "== POST /v1/calls, $connections connections, ${seconds}s" >&2
read -r creates creates_p99 < <(measure -s bench/api/create_call.lua "$api/v1/calls")
echo "== POST /v1/calls/batch (10,000 calls each), 2 clients, ${seconds}s" >&2
read -r batch batch_p99 < <(python3 bench/api/batch_creates.py "$api" "$OUTDIAL_KEY" "$seconds" 2)
# bench smtp prints one JSON object: accepted per second and latency percentiles (us).
smtp_measure() {
    local out
    out=$("$bin" bench smtp --server "127.0.0.1:$smtp" --connections "$connections" --duration "$seconds" --json "$@")
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(r["per_second"], r["latency_us"]["p99"] / 1000)' "$out"
}
echo "== e-mail, one call per message with the document attached, $connections SMTP sessions, ${seconds}s" >&2
read -r mail_attached mail_attached_p99 < <(smtp_measure --attach docs/examples/order.vxml)
echo "== SQLite, one commit per insert, ${seconds}s, same disk" >&2
read -r sqlite sqlite_p99 < <(python3 bench/api/sqlite_commits.py "$dir/commits.sqlite" "$seconds")

stored=$(curl -fs -H "Authorization: Bearer $OUTDIAL_KEY" "$api/metrics" | awk '$1 == "outdial_api_calls_created_total" {print $2}')
printf '\n%-34s %12s %10s\n' "" "per second" "p99 ms"
printf '%-34s %12.0f %10.2f\n' "GET /healthz (HTTP ceiling)" "$health" "$health_p99"
printf '%-34s %12.0f %10.2f\n' "POST /v1/calls (durable creates)" "$creates" "$creates_p99"
printf '%-34s %12.0f %10.2f\n' "POST /v1/calls/batch (calls)" "$batch" "$batch_p99"
printf '%-34s %12.0f %10.2f\n' "e-mail, attached document (calls)" "$mail_attached" "$mail_attached_p99"
printf '%-34s %12.0f %10.2f\n' "SQLite, one commit per insert" "$sqlite" "$sqlite_p99"
awk -v c="$creates" -v h="$health" -v s="$sqlite" -v m="$mail_attached" 'BEGIN {
    printf "\ncreates / HTTP ceiling = %.2f×   creates / one-commit SQLite = %.1f×   e-mail / creates = %.2f×\n", c / h, c / s, m / c }'
echo "calls stored by the server: $stored (wrk counted only 201s)"
echo "machine: $(nproc) cores, $(uname -r); connections $connections, threads $threads, ${seconds}s each"
