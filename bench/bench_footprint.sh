#!/usr/bin/env bash
# Footprint: RSS and CPU of the daemon, idle and at 100k lines/s, with config/demo.toml or
# another config (issue #10, "Benchmarks against the alternatives").
#
#   bench/bench_footprint.sh [BUILD_DIR] [--seconds N] [--rate R] [--config FILE]
#                                    (defaults: build, 10 s, 100000 lines/s, config/demo.toml;
#                                     CI: --seconds 5)
#   bench/bench_footprint.sh build --config bench/data/footprint-5m.toml --seconds 400
#                                    (what users run: a p99 over 5 minutes, two labels, a
#                                     state_dir; the 5-minute windows fill after 300 s)
#
# The config's source must be called "router" and read ${DEMO_DIR}/logs/*.log.
# Builds nothing: needs BUILD_DIR/rollguard and BUILD_DIR/tests/rollguard-loggen
# (cmake --build BUILD_DIR --target rollguard rollguard-loggen); curl on the PATH.
# Starts `rollguard run -c config/demo.toml` in a temp dir (DEMO_DIR; DEMO_WEBHOOK_PORT
# points at a port nobody serves: the healthy traffic fires no hook; /metrics on a free
# loopback port), then two phases of N seconds each:
#   idle: an empty log file (at most 60 s);
#   load: rollguard-loggen appends healthy JSON access-log lines at R lines/s (paced,
#         one write per line) for N seconds.
# For each phase: the daemon's CPU (user + sys from /proc/PID/stat, as cores = CPU
# seconds / wall seconds), VmRSS at the end, VmHWM (peak RSS so far) and threads; for the
# load phase also the writer's own CPU, and how long the daemon took after the writer
# stopped to count every line (rollguard_source_lines_total == lines written: it kept up).
# A load phase of 60 s or more also prints VmRSS every 30 s. Then idle again for min(N, 60)
# s, the windows now full of the load's data (what an evaluation costs when its quantiles
# have histograms to walk). Then the bytes the daemon wrote per second of the load (all its
# writes, /proc/PID/io wchar; and its checkpoints' alone,
# rollguard_checkpoint_written_bytes_total). At the end, where the memory goes: the
# daemon's own breakdown (`memory` in /api/v1/status).
# Targets (printed, never enforced): <= 20 MB RSS, <= 1 core at 100k lines/s, idle CPU
# <= 0.2% of a core.
# Exit: 0 figures printed, 1 the daemon died or never counted every line, 2 bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
build=build
seconds=10
rate=100000
demo_config=""
config_name=""
build_set=0
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --seconds) seconds=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --rate) rate=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --config) demo_config=${2:-}; config_name=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        -*) usage >&2; exit 2 ;;
        *) if ((build_set)); then usage >&2; exit 2; fi; build=$1; build_set=1; shift ;;
    esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds < 1)) || ! [[ "$rate" =~ ^[0-9]+$ ]] || ((rate < 1 || rate > 1000000)); then
    echo "bench_footprint: --seconds must be an integer >= 1 and --rate an integer in 1..1000000" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
if [[ -z "$demo_config" ]]; then
    demo_config="$here/../config/demo.toml"
    config_name=config/demo.toml
fi
[[ -f "$demo_config" ]] || { echo "bench_footprint: no config file $demo_config" >&2; exit 2; }
# shellcheck source=../scripts/need_bins.sh
source "$here/../scripts/need_bins.sh"
need_bins "$build" rollguard=rollguard loggen=tests/rollguard-loggen
need_commands curl

work=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-bench-footprint.XXXXXX")
agent_pid=""
writer_pid=""
cleanup() {
    if [[ -n "$writer_pid" ]]; then
        # The writer is a subshell timing rollguard-loggen: stop the child, then it.
        pkill -P "$writer_pid" 2>/dev/null || true
        kill "$writer_pid" 2>/dev/null || true
    fi
    if [[ -n "$agent_pid" ]]; then
        kill "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "bench_footprint: FAIL: $*" >&2
    [[ -f "$work/agent.err" ]] && tail -5 "$work/agent.err" | sed 's/^/  agent: /' >&2
    exit 1
}

mkdir -p "$work/logs"
log="$work/logs/router.log"
: >"$log"
DEMO_DIR="$work" DEMO_WEBHOOK_PORT=9 DEMO_METRICS_PORT=0 "$rollguard" run -c "$demo_config" \
    >"$work/agent.out" 2>"$work/agent.err" &
agent_pid=$!
port=""
for _ in $(seq 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/agent.err" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [[ -n "$port" ]] && break
    kill -0 "$agent_pid" 2>/dev/null || fail "the daemon exited at start"
    sleep 0.1
done
[[ -n "$port" ]] || fail "the daemon did not log its listen address within 10 s"
counted() {
    curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^rollguard_source_lines_total\{source="router"\}/ { print $2 }'
}

clk_tck=$(getconf CLK_TCK)
# cpu_ticks PID: user + system clock ticks of PID (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 has no spaces here). It and status_kb fail (with the
# message) when the daemon is gone: in `x=$(...)` set -e then ends the script, not silently.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || fail "the daemon exited (no /proc/$1)"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || fail "the daemon exited (no /proc/$1)"; }
now_ns() { date +%s%N; }

# One second to settle after start-up (the first tick, the listener), then the idle phase
# (N seconds, at most 60: idle figures do not change over a long run).
idle_seconds=$((seconds < 60 ? seconds : 60))
sleep 1
kill -0 "$agent_pid" 2>/dev/null || fail "the daemon exited"
t0=$(now_ns); c0=$(cpu_ticks "$agent_pid")
sleep "$idle_seconds"
t1=$(now_ns); c1=$(cpu_ticks "$agent_pid")
idle_rss=$(status_kb "$agent_pid" VmRSS); idle_hwm=$(status_kb "$agent_pid" VmHWM)
idle_threads=$(status_kb "$agent_pid" Threads)

# Bytes the daemon wrote (write(2) and friends, files and sockets: /proc/PID/io wchar) and
# bytes its checkpoints wrote (the counter; empty for versions without it).
wchar() { awk '$1 == "wchar:" { print $2 }' "/proc/$1/io" 2>/dev/null || fail "the daemon exited (no /proc/$1)"; }
checkpoint_written() {
    curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^rollguard_checkpoint_written_bytes_total / { print $2 }'
}
# Load phase: the writer paces R lines/s for N seconds (healthy traffic only).
expected=$((rate * seconds))
w2=$(wchar "$agent_pid"); k2=$(checkpoint_written || true)
t2=$(now_ns); c2=$(cpu_ticks "$agent_pid")
(
    TIMEFORMAT='%U %S'
    { time "$loggen" -o "$log" --rate "$rate" --healthy "$seconds" --degraded 0 --seed 7 2>/dev/null; } 2>"$work/writer.time"
) &
writer_pid=$!
# The daemon's peak thread count and RSS while loaded, sampled every 0.5 s.
load_threads=0
samples=0
rss_over_time=""
while kill -0 "$writer_pid" 2>/dev/null; do
    n=$(status_kb "$agent_pid" Threads)
    ((n > load_threads)) && load_threads=$n
    sleep 0.5
    samples=$((samples + 1))
    if ((seconds >= 60 && samples % 60 == 0)); then
        rss_over_time+=" $((samples / 2))s:$(($(status_kb "$agent_pid" VmRSS) / 1024))MB"
    fi
done
wait "$writer_pid" || fail "the writer failed"
writer_pid=""
t3=$(now_ns); c3=$(cpu_ticks "$agent_pid")
w3=$(wchar "$agent_pid"); k3=$(checkpoint_written || true)
written=$(wc -l <"$log")
# Catch-up: how long after the writer stopped until every line is counted (<= 30 s).
caught_up_ms=""
for _ in $(seq 300); do
    if [[ "$(counted)" == "$written" ]]; then
        caught_up_ms=$((($(now_ns) - t3) / 1000000))
        break
    fi
    kill -0 "$agent_pid" 2>/dev/null || fail "the daemon exited under load"
    sleep 0.1
done
load_rss=$(status_kb "$agent_pid" VmRSS); load_hwm=$(status_kb "$agent_pid" VmHWM)
[[ -n "$caught_up_ms" ]] ||
    fail "lines counted 30 s after the writer stopped (rollguard_source_lines_total): $(counted || true), want $written"
# Idle again, now with the windows full of what the load left (at most 60 s): the rules
# then compute quantiles over real histograms at every evaluation.
t4=$(now_ns); c4=$(cpu_ticks "$agent_pid")
sleep "$idle_seconds"
t5=$(now_ns); c5=$(cpu_ticks "$agent_pid")
after_rss=$(status_kb "$agent_pid" VmRSS); after_hwm=$(status_kb "$agent_pid" VmHWM)
read -r wu ws <"$work/writer.time" || fail "the writer's CPU time is missing: '$(cat "$work/writer.time")'"
errors=$(grep -c ' error ' "$work/agent.err" || true)

awk -v secs="$seconds" -v rate="$rate" -v tck="$clk_tck" -v written="$written" -v expected="$expected" \
    -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v t2="$t2" -v t3="$t3" -v c2="$c2" -v c3="$c3" \
    -v t4="$t4" -v t5="$t5" -v c4="$c4" -v c5="$c5" -v arss="$after_rss" -v ahwm="$after_hwm" \
    -v irss="$idle_rss" -v ihwm="$idle_hwm" -v ithr="$idle_threads" -v lrss="$load_rss" -v lhwm="$load_hwm" \
    -v lthr="$load_threads" -v wcpu="$(awk -v u="$wu" -v s="$ws" 'BEGIN { print u + s }')" \
    -v catch="$caught_up_ms" -v errors="$errors" \
    -v load="$(cut -d' ' -f1-3 /proc/loadavg)" -v cores="$(nproc)" -v config="$config_name" 'BEGIN {
    iw = (t1 - t0) / 1e9; ic = (c1 - c0) / tck
    lw = (t3 - t2) / 1e9; lc = (c3 - c2) / tck
    aw = (t5 - t4) / 1e9; ac = (c5 - c4) / tck
    printf "daemon: rollguard run -c %s; %d cores, load average %s at the end\n", config, cores, load
    printf "%-22s %8s %8s %8s %9s %9s %8s\n", "phase", "wall s", "CPU s", "cores", "VmRSS MB", "VmHWM MB", "threads"
    printf "%-22s %8.2f %8.2f %8.3f %9.1f %9.1f %8d\n", "idle", iw, ic, ic / iw, irss / 1024, ihwm / 1024, ithr
    printf "%-22s %8.2f %8.2f %8.3f %9.1f %9.1f %8d\n", sprintf("load %dk lines/s", rate / 1000), lw, lc, lc / lw, lrss / 1024, lhwm / 1024, lthr
    printf "%-22s %8.2f %8.2f %8.3f %9.1f %9.1f\n", "idle, windows full", aw, ac, ac / aw, arss / 1024, ahwm / 1024
    printf "%-22s %8.2f %8.2f %8.3f\n", "writer (loggen)", lw, wcpu, wcpu / lw
    printf "lines: %d written (%d asked, %.0f lines/s achieved); all counted %d ms after the writer stopped; %d error line(s) logged\n", written, expected, written / lw, catch, errors
    printf "daemon CPU per line: %.2f us; targets: <= 20 MB RSS (peak %.1f MB), <= 1 core at 100k lines/s (%.3f), idle CPU <= 0.002 cores (%.4f; windows full %.4f)\n", 1e6 * lc / written, lhwm / 1024, lc / lw, ic / iw, ac / aw
}'
awk -v w="$((w3 - w2))" -v t2="$t2" -v t3="$t3" -v k2="$k2" -v k3="$k3" 'BEGIN {
    lw = (t3 - t2) / 1e9
    printf "written during the load: %.0f KB/s by the daemon (wchar)", w / lw / 1024
    if (k2 != "" && k3 != "") printf ", %.0f KB/s by its checkpoints", (k3 - k2) / lw / 1024
    printf "\n"
}'
if [[ -n "$rss_over_time" ]]; then
    echo "VmRSS during the load:$rss_over_time"
fi
# Where the memory goes, as the daemon itself reports it.
curl -fsS "http://127.0.0.1:$port/api/v1/status" |
    grep -o '"memory":{[^}]*}' | tr -d '"{}' | sed 's/^memory://' | tr ',' '\n' |
    awk -F: '{ printf "%s%s %.1f MB", (NR > 1 ? ", " : "memory (/api/v1/status): "), $1, $2 / 1048576 } END { print "" }' ||
    echo "memory (/api/v1/status): not available"
