# Shared by the benchmark scripts in bench/*/run.sh (sourced, not run): the binary to measure,
# the processes a run starts, free ports, the server's readiness and its metrics.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/outdial-target}"

# Sets `bin`: OUTDIAL_BIN if given, else the release binary, built first.
outdial_bin() {
    bin=${OUTDIAL_BIN:-}
    if [ -z "$bin" ]; then
        cargo build --release --locked -p outdial-control --bin outdial >&2
        bin="$CARGO_TARGET_DIR/release/outdial"
    fi
}

# Background processes of the current step: add each pid to `pids`; `stop_all` ends them
# (and runs at exit).
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

# A free port on 127.0.0.1: `free DGRAM` (UDP) or `free STREAM` (TCP).
free() { python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_$1); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# The first of COUNT consecutive ports on 127.0.0.1 free for each socket type listed
# (DGRAM, STREAM): `free_ports 1500 DGRAM` for a reflector's sockets.
free_ports() { # COUNT TYPE...
    python3 - "$@" <<'PY'
import socket, sys
count, kinds = int(sys.argv[1]), [getattr(socket, "SOCK_" + k) for k in sys.argv[2:]]
for _ in range(200):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    first = probe.getsockname()[1]
    probe.close()
    if first + count > 65536:
        continue
    held = []
    try:
        for port in range(first, first + count):
            for kind in kinds:
                s = socket.socket(socket.AF_INET, kind)
                held.append(s)
                s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        for s in held:
            s.close()
    print(first)
    break
else:
    raise SystemExit(f"no {count} consecutive free ports on 127.0.0.1")
PY
}

# A port P free for SIP: P and P+1 (core 1 listens on `[sip] listen` + 1), each for UDP and
# for TCP (`[sip] tcp` listens on the same port).
free_sip() { free_ports 2 DGRAM STREAM; }

# Prints an `outdial serve` config on the embedded default with no release limit (the run
# measures the most the path sustains): HTTP on 127.0.0.1:HTTP_PORT, SIP on
# 127.0.0.1:SIP_PORT, the store in DATA_DIR, at most MAX_CALLS at once, warnings only.
# Scripts append their own sections.
unlimited_serve_toml() { # HTTP_PORT SIP_PORT DATA_DIR MAX_CALLS
    cat <<TOML
[http]
listen = "127.0.0.1:$1"
[sip]
listen = "127.0.0.1:$2"
[store]
data_dir = "$3"
[calls]
max_concurrent = $4
[scheduler]
calls_per_second = 0
node_calls_per_second = 0
[log]
level = "warn"
TOML
}

# Waits (up to 10 s) until UDP port PORT on 127.0.0.1 is bound by someone (a reflector that
# binds its ports in order has bound them all once its last one is taken).
wait_udp_bound() { # PORT
    for _ in $(seq 1 100); do
        python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $1))" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "nothing bound UDP port $1 within 10 s" >&2
    return 1
}

# Waits (up to 10 s) until `outdial serve` with data directory DATA_DIR and API on port PORT
# has written its key and answers /readyz.
wait_ready() { # DATA_DIR PORT
    for _ in $(seq 1 100); do
        [ -s "$1/dev-api-key" ] && curl -fs "http://127.0.0.1:$2/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "outdial serve on port $2 is not ready after 10 s" >&2
    return 1
}

# NAME [LABELS]: the sum of the series' samples on http://127.0.0.1:$http/metrics (awk: light
# enough to poll while calls run, unlike a python start per poll).
metric() {
    curl -fs "http://127.0.0.1:$http/metrics" | awk -v name="$1" -v labels="${2:-}" '
        index($0, name) == 1 && substr($0, length(name) + 1, 1) ~ /[ {]/ && index($0, labels) { total += $NF }
        END { printf "%d\n", total }'
}
