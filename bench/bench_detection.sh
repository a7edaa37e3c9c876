#!/usr/bin/env bash
# Detection latency: from the moment a breach condition has been met for `for` (by the
# lines' event time) to the start of the rollback hook's process, over N incidents, each
# starting at a random phase of the evaluation interval.
#
#   bench/bench_detection.sh [BUILD_DIR] [--incidents N] [--tick D] [--every D] [--for D]
#                            [--rule count|p99]
#                    (defaults: build, 20, 1000ms, the agent's default, 10s, count;
#                     CI: --incidents 5 --for 2s)
#
# --tick and --every set [agent] tick and evaluation_interval (milliseconds, e.g. 1000ms
# and 100ms); without --every the agent evaluates at its default, every 100 ms for a tick
# of 1 s: the defaults are what a user runs.
#
# Builds nothing: needs BUILD_DIR/rollguard and BUILD_DIR/tests/rollguard-hookstamp
# (cmake --build BUILD_DIR --target rollguard rollguard-hookstamp); curl on the PATH.
# Starts `rollguard run` on a temp dir with one json_log source (the lines' `ts` is their
# time, labels = { level = "level" }) and one critical rule whose moment of breach is
# exact:
#     metric = "count", labels = { level = "error" }, above = K - 1 (K = 10),
#     window = "1s", for = FOR
# i.e. "K error lines within a second, for FOR" (--rule count), or
#     metric = "p99", above = "100ms", window = "30s", for = FOR
# (--rule p99: a step of every request's latency from 21.5 ms to 107.5 ms, x5, at 100
# requests a second; the condition is met when more than 1% of the last 30 s are slow,
# about 0.3 s after the step: the moment is computed from the lines written, with the
# store's rank rule, max(1, floor(0.99 N + 0.5)), over exactly 30 s). Each incident:
# healthy lines (level info,
# status 200, 100/s) for window + 2 ticks and until /api/v1/status shows the rule
# inactive; a pause of a random fraction of a tick, so the breach begins anywhere between
# two evaluations; then K error lines appended at once, the last one stamped (ts = wall time) as
# it is written: that is the moment the condition is met; then K more every 100 ms, so it
# stays met, until the hook has started (p99: slow lines at 100/s from the step on, and
# "condition met" is the first line after which the p99 over the last 30 s is above
# 100 ms). Latency = hook start - (condition met + FOR):
# what rollguard adds to the `for` the user asked for. The rule's only hook is a script hook running
# rollguard-hookstamp, whose first action appends CLOCK_REALTIME to a file: the hook
# process's start. Latency = hook start - condition met, both on this machine's wall
# clock; it is also split at the evaluation that fired (the daemon's "-> firing"
# log line, ms precision): the wait for the evaluation, then firing -> hook start (the incident
# record and the latch written, the hook worker, fork/exec). Between incidents `rollguard
# rearm` (through the daemon's socket) clears the rollback latch; every incident must
# leave one incident record. Prints min, median, p95 and max against the targets (beyond
# `for`: a median <= 100 ms and a max <= 200 ms, since the condition here crosses at once,
# with the K-th line; printed, never enforced). The writer is this script (bash builtins only:
# printf, $EPOCHREALTIME; no fork per line).
# Exit: 0 figures printed, 1 the daemon died, a hook never ran or an incident left no
# record (printed: what was observed, what was wanted), 2 bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
build=build
incidents=20
tick=1000ms
every=""
for_=10s
rule=count
build_set=0
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --incidents) incidents=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --tick) tick=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --every) every=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --for) for_=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --rule) rule=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        -*) usage >&2; exit 2 ;;
        *) if ((build_set)); then usage >&2; exit 2; fi; build=$1; build_set=1; shift ;;
    esac
done
if ! [[ "$incidents" =~ ^[0-9]+$ ]] || ((incidents < 1)); then
    echo "bench_detection: --incidents must be an integer >= 1" >&2
    exit 2
fi
if ! [[ "$tick" =~ ^([0-9]+)ms$ ]] || ((BASH_REMATCH[1] < 10 || BASH_REMATCH[1] > 5000)); then
    echo "bench_detection: --tick must be milliseconds between 10ms and 5000ms, e.g. 500ms" >&2
    exit 2
fi
tick_ms=${tick%ms}
if [[ -n "$every" ]] && { ! [[ "$every" =~ ^([0-9]+)ms$ ]] || ((BASH_REMATCH[1] < 10 || tick_ms % BASH_REMATCH[1] != 0)); }; then
    echo "bench_detection: --every must be milliseconds, at least 10ms, dividing --tick, e.g. 100ms" >&2
    exit 2
fi
# The agent's evaluation interval: --every, else its default (the longest of at most
# 100 ms that divides the tick; these ticks are whole milliseconds).
if [[ -n "$every" ]]; then
    every_ms=${every%ms}
else
    every_ms=$tick_ms
    if ((tick_ms > 100)); then
        n=$(((tick_ms + 99) / 100))
        while ((tick_ms % n != 0)); do n=$((n + 1)); done
        every_ms=$((tick_ms / n))
    fi
fi
if ! [[ "$for_" =~ ^([0-9]+)s$ ]] || ((BASH_REMATCH[1] > 600)); then
    echo "bench_detection: --for must be whole seconds between 0s and 600s, e.g. 10s" >&2
    exit 2
fi
for_ms=$((${for_%s} * 1000))
if [[ "$rule" != count && "$rule" != p99 ]]; then
    echo "bench_detection: --rule must be count or p99" >&2
    exit 2
fi
# shellcheck source=../tests/faults/lib.sh
source "$(dirname "$0")/../tests/faults/lib.sh"  # need_bins, the checks (fault_expect_value)
need_bins "$build" rollguard=rollguard hookstamp=tests/rollguard-hookstamp
need_commands curl

work=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-bench-detection.XXXXXX")
agent_pid=""
cleanup() {
    if [[ -n "$agent_pid" ]]; then
        kill "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "bench_detection: FAIL: $*" >&2
    [[ -f "$work/agent.err" ]] && tail -8 "$work/agent.err" | sed 's/^/  agent: /' >&2
    exit 1
}

k=10
mkdir -p "$work/logs" "$work/state"
log="$work/logs/router.log"
stamps="$work/hook-starts"
: >"$log"
: >"$stamps"
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/admin.token")
cat >"$work/detection.toml" <<EOF
[agent]
tick = "$tick"
$([[ -n "$every" ]] && echo "evaluation_interval = \"$every\"")
listen = "127.0.0.1:0"
state_dir = "$work/state"
admin_token_file = "$work/admin.token"

[[source]]
name = "router"
type = "json_log"
paths = ["$work/logs/*.log"]
read_from = "beginning"
timestamp = "ts"
labels = { level = "level" }
latency = { field = "duration_ms", unit = "ms" }
error = { field = "status", gte = 500 }

[[rule]]
name = "router-errors"
severity = "critical"
source = "router"
$(if [[ "$rule" == count ]]; then
    printf 'labels = { level = "error" }\nmetric = "count"\nabove = %d\nwindow = "1s"\n' $((k - 1))
else
    printf 'metric = "p99"\nabove = "100ms"\nwindow = "30s"\n'
fi)
for = "$for_"
hooks = ["stamp"]

[[hook]]
name = "stamp"
type = "script"
command = ["$hookstamp", "$stamps"]
timeout = "5s"
EOF
"$rollguard" check -c "$work/detection.toml" >/dev/null || fail "rollguard check refused the generated config"

"$rollguard" run -c "$work/detection.toml" >"$work/agent.out" 2>"$work/agent.err" &
agent_pid=$!
port=""
for _ in $(seq 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/agent.err" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [[ -n "$port" ]] && break
    kill -0 "$agent_pid" 2>/dev/null || fail "the daemon exited at start"
    sleep 0.1
done
[[ -n "$port" ]] || fail "the daemon did not log its listen address within 10 s"
# `rollguard rearm` reaches the daemon at its config's listen address: the same config
# with the port the daemon took.
sed "s/^listen = \"127.0.0.1:0\"$/listen = \"127.0.0.1:$port\"/" "$work/detection.toml" >"$work/rearm.toml"

# line LEVEL STATUS [DURATION_MS]: appends one access-log line stamped now (and its time
# and duration to $written, the p99 oracle's input); sets `line_us` to its time in
# microseconds since the epoch. Builtins only.
written="$work/written"
: >"$written"
line() {
    local now=$EPOCHREALTIME
    local s=${now%.*} us=${now#*.}
    local ts duration=${3:-21.5}
    TZ=UTC printf -v ts '%(%Y-%m-%dT%H:%M:%S)T.%sZ' "$s" "${us:0:3}"
    printf '{"ts":"%s","level":"%s","method":"GET","route":"/api/orders","status":%d,"duration_ms":%s,"variant":"canary"}\n' \
        "$ts" "$1" "$2" "$duration" >>"$log"
    line_us=$((10#$s * 1000000 + 10#$us))
    printf '%d %s\n' "$line_us" "$duration" >>"$written"
}
# breach_line: one line of the breach (an error line; p99: a slow healthy one).
breach_line() {
    if [[ "$rule" == count ]]; then line error 500; else line info 200 107.5; fi
}
# crossed_at STEP_US: the time of the first line from STEP_US on after which the p99 of
# the lines of the last 30 s is above 100 ms (rank max(1, floor(0.99 N + 0.5)), as the
# store ranks), from $written.
crossed_at() {
    awk -v start="$1" -v w=30000000 -v thr=100 '
        $1 >= start - w - 1000000 { t[n] = $1; d[n] = $2; n++ }
        END {
            head = 0; fast = 0; count = 0
            for (i = 0; i < n; i++) {
                count++; if (d[i] <= thr) fast++
                while (t[head] <= t[i] - w) { count--; if (d[head] <= thr) fast--; head++ }
                if (t[i] >= start) {
                    rank = int(0.99 * count + 0.5); if (rank < 1) rank = 1
                    if (fast < rank) { print t[i]; exit }
                }
            }
        }' "$written"
}
# rule_state: the rule's state from /api/v1/status ("inactive", "firing", ...).
rule_state() {
    curl -fsS "http://127.0.0.1:$port/api/v1/status" 2>/dev/null |
        grep -o '"name":"router-errors"[^}]*"state":"[a-z_]*"' | grep -o '"state":"[a-z_]*"' | head -1 | cut -d'"' -f4 || true
}

window_s=1
[[ "$rule" == p99 ]] && window_s=30
healthy_s=$(awk -v t="$tick_ms" -v w="$window_s" 'BEGIN { printf "%.3f", w + 2 * t / 1000 }')
crossings=()
latencies=()
waits=()
runs=()
for i in $(seq "$incidents"); do
    # Healthy traffic, 100 lines/s, for window + 2 ticks and until the rule is inactive.
    deadline=$((${EPOCHREALTIME/./} + ${healthy_s/./} * 1000))
    n=0
    while :; do
        line info 200
        n=$((n + 1))
        if ((${EPOCHREALTIME/./} >= deadline)) && [[ "$(rule_state)" == "inactive" ]]; then break; fi
        ((n < 3000)) || fail "incident $i: rule state after 3000 healthy lines: '$(rule_state)', want inactive"
        kill -0 "$agent_pid" 2>/dev/null || fail "the daemon exited"
        sleep 0.01
    done
    before=$(wc -l <"$stamps")
    # Anywhere between two evaluations (and two ticks).
    sleep "$(awk -v t="$tick_ms" -v seed="$RANDOM$i" 'BEGIN { srand(seed); printf "%.3f", rand() * t / 1000 }')"
    # The breach: K error lines at once; the K-th completes the condition. Then K more
    # every 100 ms until the hook has started, so the condition holds through `for`.
    step_us=${EPOCHREALTIME/./}
    for _ in $(seq "$k"); do breach_line; done
    met_us=$line_us
    give_up=$((met_us + for_ms * 1000 + 10000000))
    while (($(wc -l <"$stamps") <= before)); do
        ((${EPOCHREALTIME/./} < give_up)) ||
            fail "incident $i: no hook start 10 s after condition met + for: $(wc -l <"$stamps"), want $((before + 1))"
        kill -0 "$agent_pid" 2>/dev/null || fail "the daemon exited"
        sleep 0.1
        for _ in $(seq "$k"); do breach_line; done
    done
    if [[ "$rule" == p99 ]]; then
        met_us=$(crossed_at "$step_us")
        [[ -n "$met_us" ]] || fail "incident $i: the p99 over 30 s never crossed 100 ms in the lines written"
    fi
    crossings+=($(((met_us - step_us) / 1000)))
    hook=$(tail -1 "$stamps")
    hook_us=$((10#${hook%.*} * 1000000 + 10#${hook#*.}))
    fired=$(grep 'rule router-errors (critical): [a-z]* -> firing' "$work/agent.err" | sed -n "${i}p" | cut -d' ' -f1 || true)
    [[ -n "$fired" ]] ||
        fail "incident $i: '-> firing' log lines: $(grep -c 'router-errors (critical): [a-z]* -> firing' "$work/agent.err" || true), want $i"
    fired_ns=$(date -d "$fired" +%s%N) || fail "incident $i: the firing log line's time '$fired' does not parse"
    fired_us=$((fired_ns / 1000))
    due_us=$((met_us + for_ms * 1000))
    latencies+=($(((hook_us - due_us) / 1000)))
    waits+=($(((fired_us - due_us) / 1000)))
    runs+=($(((hook_us - fired_us) / 1000)))
    printf 'incident %2d: condition met %3d ms after the step; hook started %3d ms after condition met + for (%3d ms to the evaluation that fired, %3d ms from there)\n' \
        "$i" "${crossings[-1]}" "${latencies[-1]}" "${waits[-1]}" "${runs[-1]}"
    # Clear the latch for the next incident (through the daemon's admin API).
    if ((i < incidents)); then
        "$rollguard" rearm --config "$work/rearm.toml" >"$work/rearm.out" 2>&1 ||
            { cat "$work/rearm.out" >&2; fail "incident $i: rollguard rearm failed"; }
    fi
done
fault_expect_value "incident records (one per incident)" "$(fault_count_files "$work/state/incidents" '*.json')" == "$incidents"

# stats NAME VALUES...: min, median, p95 (nearest rank) and max of the values, in ms.
stats() {
    local name=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v name="$name" '{ v[NR] = $1 } END {
        n = NR; r = int(0.95 * n); if (r < 0.95 * n) { r++ }
        med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%-44s min %4d  median %4.0f  p95 %4d  max %4d\n", name, v[1], med, v[r], v[n]
    }'
}
echo "$incidents incidents, rule $rule, tick $tick_ms ms, evaluation every $every_ms ms, for $for_, random phase; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
stats "step -> condition met (the window crossing):" "${crossings[@]}"
stats "condition met + for -> hook process start (ms):" "${latencies[@]}"
stats "  condition met + for -> evaluation that fired:" "${waits[@]}"
stats "  evaluation that fired -> hook start:" "${runs[@]}"
# The targets, beyond the window crossing (count: none, the K-th line completes the
# condition; p99: from the step to the crossing, printed above): the wait for the next
# evaluation and the hook's start.
median=$(printf '%s\n' "${latencies[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
over=$(printf '%s\n' "${latencies[@]}" | awk '$1 > 200' | wc -l)
echo "target median <= 100 ms beyond for: $(awk -v m="$median" 'BEGIN { print (m <= 100) ? "met" : "missed" }') (median $median ms)"
if ((over == 0)); then
    echo "target max <= 200 ms beyond for: met by every incident"
else
    echo "target max <= 200 ms beyond for: missed by $over of $incidents incidents"
fi
fault_failed_exit bench_detection
