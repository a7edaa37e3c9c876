#!/usr/bin/env bash
# The HTTP listener under load: requests/s and latency percentiles of /api/v1/gate and
# /metrics under 100 concurrent keep-alive clients (wrk, 2 threads, 10 s each), beside
# the same load on /healthz (the cheapest answer: the listener's own cost). Then the same
# while 1000 idle connections are held open (a client that opens and says nothing).
#
#   bench/bench_http.sh [BUILD_DIR] [--seconds N]     (defaults: build, 10)
#
# Builds nothing: needs BUILD_DIR/rollguard; wrk and python3 on the PATH. The agent runs
# the demo-like config below (one json_log source with 1000 lines, three rules, a
# [[hook]]), so /metrics has a realistic size. Prints one line per endpoint: requests/s,
# p50, p99, max (wrk's latency distribution) and the body size.
# Exit: 0 figures printed, 1 the agent did not start, 2 bad usage.
set -euo pipefail
build=build
seconds=10
while (($#)); do
    case "$1" in
        --seconds) seconds=${2:?}; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "bench_http: unknown option $1" >&2; exit 2 ;;
        *) build=$1; shift ;;
    esac
done
# shellcheck source=../tests/faults/lib.sh
source "$(dirname "$0")/../tests/faults/lib.sh"  # need_commands, fault_free_port, fault_wait
need_commands wrk python3 curl
d=$(mktemp -d)
trap 'kill "${agent:-}" "${holder:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$d"' EXIT
port=$(fault_free_port)
for i in $(seq 1000); do
    printf '{"status":%d,"ms":%d,"route":"/r%d"}\n' $((i % 50 == 0 ? 500 : 200)) $((i % 300)) $((i % 20))
done >"$d/app.log"
cat >"$d/rollguard.toml" <<TOML
[agent]
listen = "127.0.0.1:$port"
tick = "1s"

[[source]]
name = "app"
type = "json_log"
paths = ["$d/app.log"]
read_from = "beginning"
error = { field = "status", gte = 500 }
latency = { field = "ms", unit = "ms" }
labels = { route = "route" }

[[rule]]
name = "errors"
source = "app"
metric = "error_ratio"
above = 0.5
window = "5m"
for = "30s"
severity = "critical"
hooks = ["notify"]

[[rule]]
name = "p99"
source = "app"
metric = "p99"
above = 0.4
window = "5m"
severity = "warning"
group_by = ["route"]

[[hook]]
name = "notify"
type = "webhook"
url = "http://127.0.0.1:9/"
TOML
"$build/rollguard" run -c "$d/rollguard.toml" 2>"$d/err" &
agent=$!
ready() { curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; }
fault_wait 10 ready || { echo "bench_http: the agent did not get ready" >&2; cat "$d/err" >&2; exit 1; }

run() {
    local label=$1 path=$2
    local size
    size=$(curl -fsS "http://127.0.0.1:$port$path" | wc -c)
    wrk -t2 -c100 -d"${seconds}s" --latency "http://127.0.0.1:$port$path" >"$d/wrk.txt" 2>&1 || true
    awk -v label="$label" -v size="$size" '
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
        /Latency/ && !max { max = $4 }
        END { printf "  %-34s %10s req/s   p50 %8s   p99 %8s   max %8s   body %s bytes\n", label, rps, p50, p99, max, size }
    ' "$d/wrk.txt"
}

echo "bench_http: 100 keep-alive clients (wrk -t2 -c100, ${seconds}s each), $(nproc) cores"
run "/healthz" /healthz
run "/api/v1/gate" /api/v1/gate
run "/metrics" /metrics
# 1000 idle connections from 20 source addresses (the per-client cap is 64), held open.
python3 - "$port" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
held = []
for a in range(1, 21):
    for _ in range(50):
        s = socket.socket()
        s.bind((f"127.0.1.{a}", 0))
        s.connect(("127.0.0.1", port))
        held.append(s)
time.sleep(3600)
PY
holder=$!
sleep 1
echo "bench_http: the same with 1000 idle connections held open"
run "/api/v1/gate (+1000 idle)" /api/v1/gate
run "/metrics (+1000 idle)" /metrics
