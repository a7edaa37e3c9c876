#!/usr/bin/env bash
# kill -9 during ingest: rollguard is killed with SIGKILL at random moments while a writer
# appends and rotates, and restarted from its state_dir checkpoints; every line must be
# counted exactly once over all the runs.
#
#   tests/faults/kill_ingest.sh [--build DIR] [--trials N] [--lines-per-trial N]
#                               [--rate L] [--rotation rename|copytruncate] [--seed S]
#                               [--no-kill]
#
# Defaults: --build build, --trials 20, --lines-per-trial 20000, --rate 10000 (lines/s),
# --rotation rename, --seed 1. Builds nothing: needs DIR/rollguard and
# DIR/tests/rollguard-logwriter, and curl. Loopback only; a temp dir removed at exit
# (KILL_KEEP=1 keeps it), children killed even on failure.
#
# Counting across restarts: rollguard_source_lines_total starts at 0 in every process, so
# the count that survives a restart is a rule window's: the checkpoint holds the read
# positions and the windows' slots taken together (tests/integration/test_checkpoint.cpp
# has the same idea). The config has one rule "everything": metric count over 1 hour
# (much longer than the run), read from /metrics (rollguard_rule_value{rule="everything"}).
# Checkpoints every 300 ms, tick 100 ms, read_from = beginning.
#
# One trial: rollguard-logwriter appends LINES lines at RATE lines/s (to WORK/logs/app.log)
# and rotates once, at a random line; the running agent is killed with SIGKILL at a random
# moment of the writing (uniform over its duration), restarted after a random 0-500 ms
# down, and in one trial out of four killed once more 0-300 ms after that restart (while
# it restores and catches up) and restarted again. After the writer ends, the agent's
# count is polled until it rose by the lines written, or has not changed for 15 s (3 s
# with copytruncate, where a shortfall is expected). --no-kill runs the same trials
# without killing (a baseline: what copytruncate loses with the agent up).
#
# --rotation rename: app.log -> app.log.N (the first free N), a new app.log; the source
#   follows app.log*. Check: after every trial, counted == written in total, EXACTLY
#   (exit 1 naming the trials that miscounted).
# --rotation copytruncate: app.log is copied to app.log.N, 20 more lines are appended
#   (the application writing between logrotate's copy and its truncate), then it is
#   truncated; the source follows app.log only (following the copies too would count
#   every line twice). Nothing is checked: the script reports, per trial and in total,
#   counted - written (negative: lost, positive: counted twice; a trial that both loses and
#   double-counts shows only the net) and exits 0 unless the agent could not run.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

build=build
trials=20
lines=20000
rate=10000
rotation=rename
seed=1
no_kill=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) build=${2:?}; shift 2 ;;
        --trials) trials=${2:?}; shift 2 ;;
        --lines-per-trial) lines=${2:?}; shift 2 ;;
        --rate) rate=${2:?}; shift 2 ;;
        --rotation) rotation=${2:?}; shift 2 ;;
        --seed) seed=${2:?}; shift 2 ;;
        --no-kill) no_kill=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "kill_ingest: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$trials" "$lines" "$rate" "$seed"; do
    if ! [[ "$v" =~ ^[0-9]+$ ]] || [[ "$v" -eq 0 ]]; then
        echo "kill_ingest: --trials, --lines-per-trial, --rate and --seed take positive integers (got '$v')" >&2
        exit 2
    fi
done
if [[ "$rotation" != rename && "$rotation" != copytruncate ]]; then
    echo "kill_ingest: --rotation is rename or copytruncate (got '$rotation')" >&2
    exit 2
fi
if [[ "$lines" -lt 10 ]]; then
    echo "kill_ingest: --lines-per-trial must be at least 10" >&2
    exit 2
fi

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"  # need_bins, the checks (fault_expect_value)
need_bins "$build" rollguard=rollguard writer=tests/rollguard-logwriter
need_commands curl

work=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-kill-ingest.XXXXXX")
agent_pid=""
writer_pid=""
cleanup() {
    local pid
    for pid in "$writer_pid" "$agent_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "${KILL_KEEP:-}" ]]; then
        echo "kill_ingest: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [[ "$rotation" == rename ]]; then
    paths="\"$work/logs/app.log*\""
    gap=0
    stall=15
else
    paths="\"$work/logs/app.log\""
    gap=20
    stall=3  # a count that falls short stays short: do not wait 15 s for it every trial
fi
mkdir -p "$work/logs"
cat >"$work/rollguard.toml" <<EOF
[agent]
tick = "100ms"
listen = "127.0.0.1:0"
state_dir = "$work/state"
checkpoint_interval = "300ms"

[[source]]
name = "app"
type = "json_log"
paths = [$paths]
read_from = "beginning"
poll_interval = "100ms"
latency = { field = "duration_ms", unit = "ms" }
error = { field = "status", gte = 500 }

[[rule]]
name = "everything"
severity = "warning"
source = "app"
metric = "count"
above = 1e15
window = "1h"
EOF

RANDOM=$seed
# Sets u to a uniform random number in [0, 1) from bash's seeded generator. Not called in
# a $(...): a subshell would reseed RANDOM, and the trials would not replay with --seed.
rand01() {
    local r=$(( (RANDOM << 15) | RANDOM ))
    u=$(awk -v r="$r" 'BEGIN { printf "%.4f", r / 1073741824 }')
}
now() { date +%s.%N; }

runs=0
port=""
# Starts the agent (its log in WORK/runN.err); sets agent_pid. The port is found later.
start_agent() {
    runs=$((runs + 1))
    "$rollguard" run -c "$work/rollguard.toml" >"$work/run$runs.out" 2>"$work/run$runs.err" &
    agent_pid=$!
    port=""
}
# Sets `port` from the current run's log; false when it is not there yet.
find_port() {
    port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$work/run$runs.err" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [[ -n "$port" ]]
}
kill_agent() {
    kill -KILL "$agent_pid" 2>/dev/null || true  # already gone: its status below says how
    local status=0
    { wait "$agent_pid"; } 2>/dev/null || status=$?  # no "Killed" job notice
    agent_pid=""
    kills=$((kills + 1))
    if [[ "$status" -ne 137 ]]; then
        echo "kill_ingest: FAIL: the agent (run $runs) exited $status before its SIGKILL (want 137: killed by it); its log:" >&2
        tail -20 "$work/run$runs.err" >&2
        exit 1
    fi
}
# The "everything" window's count, empty when it cannot be read.
counted_now() {
    if [[ -z "$port" ]] && ! find_port; then
        return 0
    fi
    curl -s --max-time 5 "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk '/^rollguard_rule_value\{/ && index($1, "rule=\"everything\"") { printf "%.0f\n", $2; exit }' || true
}

echo "kill_ingest: $trials trials of $lines lines at $rate lines/s, $rotation rotation, seed $seed;" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
printf '%-6s %-8s %-7s %-10s %-10s %-10s %-8s %s\n' trial kill_at kills written counted diff catchup result

total=0
seq_next=0
kills=0
miscounted=()
lost=0
doubled=0
t_start=$(now)
start_agent
for trial in $(seq 1 "$trials"); do
    duration=$(awk -v l="$lines" -v r="$rate" 'BEGIN { printf "%.3f", l / r }')
    rand01
    rotate_at=$(awk -v l="$lines" -v u="$u" 'BEGIN { printf "%d", 1 + u * (l - 2) }')
    rand01
    kill_at=$(awk -v d="$duration" -v u="$u" 'BEGIN { printf "%.3f", d * u }')
    rand01
    down=$(awk -v u="$u" 'BEGIN { printf "%.3f", 0.5 * u }')
    second_kill=""
    if [[ $((RANDOM % 4)) -eq 0 ]]; then
        rand01
        second_kill=$(awk -v u="$u" 'BEGIN { printf "%.3f", 0.3 * u }')
    fi
    "$writer" -o "$work/logs/app.log" --lines "$lines" --rate "$rate" --rotate-lines "$rotate_at" \
        --rotation "$rotation" --numbered --gap-lines "$gap" --seq-start "$seq_next" --seed "$((seed * 1000 + trial))" \
        >"$work/writer$trial.out" 2>"$work/writer$trial.err" &
    writer_pid=$!
    trial_kills=0
    if [[ "$no_kill" == 0 ]]; then
        sleep "$kill_at"
        kill_agent
        sleep "$down"
        start_agent
        trial_kills=1
    fi
    if [[ "$no_kill" == 0 && -n "$second_kill" ]]; then
        sleep "$second_kill"
        kill_agent
        start_agent
        trial_kills=2
    fi
    writer_status=0
    wait "$writer_pid" || writer_status=$?
    writer_pid=""
    if [[ "$writer_status" -ne 0 ]]; then
        echo "kill_ingest: FAIL: the writer failed (exit $writer_status):" >&2
        cat "$work/writer$trial.err" >&2
        exit 1
    fi
    written=$(sed -n 's/^written=\([0-9]*\) .*/\1/p' "$work/writer$trial.out")
    seq_next=$(sed -n 's/.* seq_end=\([0-9]*\).*/\1/p' "$work/writer$trial.out")
    total=$((total + written))

    # Catch up: until the count rose by what was written, or has not changed for $stall s.
    target=$((${prev_counted:-0} + written))
    t_written=$(now)
    counted=""
    last=""
    last_change=$(now)
    while :; do
        counted=$(counted_now)
        if [[ "$counted" == "$target" ]]; then
            break
        fi
        if [[ "$counted" != "$last" ]]; then
            last=$counted
            last_change=$(now)
        elif awk -v a="$(now)" -v b="$last_change" -v s="$stall" 'BEGIN { exit !(a - b > s) }'; then
            break
        fi
        if ! kill -0 "$agent_pid" 2>/dev/null; then
            echo "kill_ingest: FAIL: the agent (run $runs) died; its log:" >&2
            tail -20 "$work/run$runs.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    catchup=$(awk -v a="$(now)" -v b="$t_written" 'BEGIN { printf "%.1fs", a - b }')
    if [[ -z "$counted" ]]; then
        echo "kill_ingest: FAIL: trial $trial: the count could not be read (run $runs); its log:" >&2
        tail -20 "$work/run$runs.err" >&2
        exit 1
    fi
    # This trial's own error: what the count rose by minus what was written (a late
    # change from an earlier trial would show here too).
    diff=$((counted - ${prev_counted:-0} - written))
    prev_counted=$counted
    if [[ "$diff" -eq 0 ]]; then
        result=exact
    elif [[ "$diff" -lt 0 ]]; then
        result="lost $((-diff))"
        lost=$((lost - diff))
    else
        result="double $diff"
        doubled=$((doubled + diff))
    fi
    if [[ "$diff" -ne 0 ]]; then
        miscounted+=("$trial ($result)")
    fi
    printf '%-6s %-8s %-7s %-10s %-10s %-10s %-8s %s\n' "$trial" "${kill_at}s" "$trial_kills" "$total" "$counted" \
        "$diff" "$catchup" "$result"
done
elapsed=$(awk -v a="$(now)" -v b="$t_start" 'BEGIN { printf "%.0f", a - b }')
final=$(counted_now)

# The agent still stops cleanly.
kill -TERM "$agent_pid" 2>/dev/null || true  # it may have died: wait says how
stop_status=0
wait "$agent_pid" || stop_status=$?
agent_pid=""

echo
printf '%-38s %s\n' "trials / kills / runs" "$trials / $kills / $runs"
printf '%-38s %s\n' "lines written" "$total"
printf '%-38s %s\n' "lines counted (final)" "$final"
printf '%-38s %s\n' "lost / counted twice (net per trial)" "$lost / $doubled"
printf '%-38s %s\n' "rotation" "$rotation"
printf '%-38s %s\n' "elapsed" "${elapsed}s"

fault_expect_value "the last agent's exit status on SIGTERM" "$stop_status" == 0
if [[ "$rotation" == rename ]]; then
    fault_expect_value "miscounted trials (counted - written; want each exact)" "${miscounted[*]:-none}" == none
    fault_expect_value "lines counted in all (the final count, against the lines written)" "$final" == "$total"
    fault_failed_exit kill_ingest
    echo "kill_ingest: OK (no loss, no double count)"
else
    fault_failed_exit kill_ingest
    echo "kill_ingest: copytruncate is reported, not checked: ${#miscounted[@]} of $trials trials miscounted"
fi
