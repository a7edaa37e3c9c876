#!/usr/bin/env bash
# Soak: rollguard follows a log written at a steady rate, with rename rotations, while
# /metrics is scraped every second; at the end every line is counted exactly once, RSS
# did not grow, nothing was logged at warn or above.
#
#   tests/faults/soak.sh [--build DIR] [--seconds N] [--rate L] [--rotate-every S]
#
# Defaults: --build build, --seconds 60, --rate 50000 (lines/s), --rotate-every 60.
# The documented soak is --seconds 600 --rotate-every 60 (docs/RELIABILITY.md, "Soak").
# The shortest run that checks RSS is 80 s (see 3.): CI runs --seconds 90 --rotate-every 15.
#
# Builds nothing: needs DIR/rollguard and DIR/tests/rollguard-logwriter, and curl.
# Loopback only; everything lives in a temp dir removed at exit (children killed).
#
# What runs:
#   - `rollguard run` with one json_log source following WORK/logs/app.log* (read_from =
#     beginning, a state_dir, checkpoints every 5 s, listen on 127.0.0.1:0: the port is
#     read from its log), two rules over 1 minute (p99 latency, error ratio);
#     log_format = json.
#   - rollguard-logwriter appending RATE lines/s (~170 bytes each, in 10 ms batches) for
#     N seconds, rotating by rename app.log -> app.log.1 (replacing it) every S seconds.
#   - a monitor, once a second: GET /metrics (must be HTTP 200 and parse as Prometheus
#     text: every line a # HELP/# TYPE comment or `name{label="v",...} value`; NaN in
#     any case, as prometheus-cpp writes "Nan" and Prometheus' parser accepts it), and the
#     agent's VmRSS (/proc/PID/status) and CPU time (/proc/PID/stat utime + stime).
#
# Checks (exit 0 when all hold, 1 naming each that failed, 2 on bad usage):
#   1. lines: after the writer stops, the agent catches up (polled until
#      rollguard_source_lines_total equals the lines written, or stops rising for 30 s):
#      rollguard_source_lines_total == lines written EXACTLY; the bad lines
#      (rollguard_source_bad_lines_total, every reason) and the too_late drops are 0.
#   2. scrapes: every scrape answered HTTP 200 and parsed (and there were at least
#      N/2 of them: a monitor that could not run is a failure too).
#   3. RSS: warm-up W = 60 s, that is min(20% of N, 60 s) for runs of 5 minutes and more,
#      and never less than the agent's longest window: every source with a latency field
#      has a fixed 1-minute window (agent/src/daemon/daemon.cpp, for /metrics' latency
#      summary), and a window's memory follows its data until it is full (sealed slots
#      are kept sparse), so RSS grows by design for the first minute (~4 MB at 50k
#      lines/s). Samples taken while the writer runs, at t >= W (t: seconds since the
#      writer started), give the mean M; the samples of the last quarter (t >= 0.75 N)
#      give the maximum X; growth = X / M - 1 must be < 5%. Runs shorter than 80 s have
#      no last quarter after warm-up: RSS is reported, not checked.
#   4. log: no agent stderr line at level warn, error or critical (rollguard logs
#      trace, debug, info, warn, error, critical: agent/src/util/log_format.cpp), and
#      every stderr line is a JSON log record (anything else, a crash message say, fails).
#   5. the agent is still running at the end, and stops cleanly on SIGTERM (exit 0).
# Reported, not checked: CPU-seconds of the agent (user + system) and per million lines,
# the writer's CPU-seconds, rotations seen, scrape latency.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

build=build
seconds=60
rate=50000
rotate_every=60
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) build=${2:?}; shift 2 ;;
        --seconds) seconds=${2:?}; shift 2 ;;
        --rate) rate=${2:?}; shift 2 ;;
        --rotate-every) rotate_every=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$seconds" "$rate" "$rotate_every"; do
    if ! [[ "$v" =~ ^[0-9]+$ ]] || [[ "$v" -eq 0 ]]; then
        echo "soak: --seconds, --rate and --rotate-every take positive integers (got '$v')" >&2
        exit 2
    fi
done
if [[ "$seconds" -lt 10 ]]; then
    echo "soak: --seconds must be at least 10" >&2
    exit 2
fi

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"  # need_bins, the checks (fault_expect_value)
need_bins "$build" rollguard=rollguard writer=tests/rollguard-logwriter
need_commands curl

work=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-soak.XXXXXX")
agent_pid=""
writer_pid=""
monitor_pid=""
cleanup() {
    local pid
    for pid in "$monitor_pid" "$writer_pid" "$agent_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "${SOAK_KEEP:-}" ]]; then
        echo "soak: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir -p "$work/logs"
warmup=60  # see 3. in the header
rss_checked=$((seconds >= 80 ? 1 : 0))
cat >"$work/rollguard.toml" <<EOF
[agent]
tick = "1s"
listen = "127.0.0.1:0"
state_dir = "$work/state"
checkpoint_interval = "5s"
log_format = "json"

[[source]]
name = "app"
type = "json_log"
paths = ["$work/logs/app.log*"]
read_from = "beginning"
latency = { field = "duration_ms", unit = "ms" }
error = { field = "status", gte = 500 }

[[rule]]
name = "p99-latency"
severity = "warning"
source = "app"
metric = "p99"
above = "10s"
window = "1m"

[[rule]]
name = "error-ratio"
severity = "warning"
source = "app"
metric = "error_ratio"
above = 0.5
window = "1m"

EOF

now() { date +%s.%N; }
clk_tck=$(getconf CLK_TCK)
# CPU seconds (user + system) of PID so far; empty when it is gone.
cpu_of() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    # Fields after the command (which may hold spaces) start at field 3: utime is 14, stime 15.
    awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' <<<"$stat"
}
rss_of() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}
# Prometheus text format, strictly: 0 when every line parses.
parse_metrics() {
    awk '
        /^$/ { next }
        /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]*( .*)?$/ { next }
        /^#/ { print "bad comment: " $0; bad = 1; next }
        {
            line = $0
            if (!match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) { print "bad name: " $0; bad = 1; next }
            line = substr(line, RLENGTH + 1)
            if (substr(line, 1, 1) == "{") {
                if (!match(line, /^\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*,?)?\}/)) {
                    print "bad labels: " $0; bad = 1; next
                }
                line = substr(line, RLENGTH + 1)
            }
            if (!match(line, /^ ([-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?|[Nn][Aa][Nn]|[-+]?[Ii]nf)( -?[0-9]+)?$/)) {
                print "bad value: " $0; bad = 1; next
            }
            samples++
        }
        END { if (samples == 0) { print "no samples"; bad = 1 } exit bad }'
}
# The value of the first sample of metric NAME whose labels contain SUBSTRING, in FILE.
metric_value() {
    awk -v name="$1" -v sel="$2" '
        /^#/ { next }
        {
            split($1, parts, "{")
            if (parts[1] != name || index($1, sel) == 0) next
            printf "%.0f\n", $2; found = 1; exit
        }
        END { if (!found) print "" }' "$3"
}
# Sum of every sample of METRIC in FILE.
metric_sum() {
    awk -v name="$1" '/^#/ { next } { split($1, p, "{"); if (p[1] == name) s += $2 } END { printf "%.0f\n", s }' "$2"
}

echo "soak: $seconds s at $rate lines/s, rename rotation every $rotate_every s; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

"$rollguard" run -c "$work/rollguard.toml" >"$work/agent.out" 2>"$work/agent.err" &
agent_pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$work/agent.err" 2>/dev/null | head -1 | cut -d: -f2 || true)
    if [[ -n "$port" ]]; then
        break
    fi
    if ! kill -0 "$agent_pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [[ -z "$port" ]]; then
    echo "soak: FAIL: the agent did not start listening; its stderr:" >&2
    cat "$work/agent.err" >&2
    exit 1
fi
url="http://127.0.0.1:$port/metrics"
cpu_start=$(cpu_of "$agent_pid")

# The monitor: one row a second, "t rss_kb http_code parsed lines_total scrape_seconds".
monitor() {
    local t0=$1 next=$1 t code parsed lines s0 s1
    while :; do
        t=$(now)
        s0=$t
        code=$(curl -s -o "$work/scrape" -w '%{http_code}' --max-time 10 "$url" || true)
        s1=$(now)
        parsed=0
        lines=-1
        if [[ "$code" == 200 ]]; then
            if parse_metrics <"$work/scrape" >"$work/parse.out"; then
                parsed=1
                lines=$(metric_value rollguard_source_lines_total 'source="app"' "$work/scrape")
            else
                cp "$work/scrape" "$work/unparsed.$(date +%s%N)"
                cat "$work/parse.out" >>"$work/parse.errors"
            fi
        fi
        echo "$(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.2f", a - b }') $(rss_of "$agent_pid") $code $parsed ${lines:--1} $(awk -v a="$s1" -v b="$s0" 'BEGIN { printf "%.3f", a - b }')" >>"$work/monitor.tsv"
        next=$(awk -v n="$next" 'BEGIN { printf "%.3f", n + 1 }')
        sleep "$(awk -v n="$next" -v t="$(now)" 'BEGIN { d = n - t; printf "%.3f", (d > 0 ? d : 0) }')"
    done
}

: >"$work/monitor.tsv"  # read at the end even if the monitor never wrote a row
t0=$(now)
"$writer" -o "$work/logs/app.log" --rate "$rate" --seconds "$seconds" --rotate-every "$rotate_every" \
    >"$work/writer.out" 2>"$work/writer.err" &
writer_pid=$!
monitor "$t0" &
monitor_pid=$!

writer_status=0
wait "$writer_pid" || writer_status=$?
writer_pid=""
t_written=$(now)
if [[ "$writer_status" -ne 0 ]]; then
    echo "soak: FAIL: the writer failed (exit $writer_status):" >&2
    cat "$work/writer.err" >&2
    exit 1
fi
written=$(sed -n 's/^written=\([0-9]*\) .*/\1/p' "$work/writer.out")
rotations=$(sed -n 's/.* rotations=\([0-9]*\) .*/\1/p' "$work/writer.out")

# Catch up: poll until the count equals what was written, or has not risen for 30 s.
: >"$work/final"  # read below even if no scrape succeeds (the checks then say what failed)
counted=-1
last=-1
last_change=$(now)
while :; do
    if curl -s -o "$work/final" --max-time 10 "$url" && [[ -s "$work/final" ]]; then
        counted=$(metric_value rollguard_source_lines_total 'source="app"' "$work/final")
        counted=${counted:--1}
    fi
    if [[ "$counted" == "$written" ]]; then
        break
    fi
    if [[ "$counted" != "$last" ]]; then
        last=$counted
        last_change=$(now)
    elif awk -v a="$(now)" -v b="$last_change" 'BEGIN { exit !(a - b > 30) }'; then
        break
    fi
    sleep 0.2
done
t_caught_up=$(now)
kill "$monitor_pid" 2>/dev/null || true
wait "$monitor_pid" 2>/dev/null || true
monitor_pid=""

cpu_end=$(cpu_of "$agent_pid")
agent_alive=1
kill -0 "$agent_pid" 2>/dev/null || agent_alive=0
bad_lines=$(metric_sum rollguard_source_bad_lines_total "$work/final")
too_late=$(metric_sum rollguard_source_lines_dropped_total "$work/final")
seen_rotations=$(metric_value rollguard_source_rotations_total 'source="app"' "$work/final")
read_errors=$(metric_value rollguard_source_read_errors_total 'source="app"' "$work/final")
stop_status=-1
if [[ "$agent_alive" == 1 ]]; then
    kill -TERM "$agent_pid" 2>/dev/null || true  # it may die meanwhile: wait says how
    stop_status=0
    wait "$agent_pid" || stop_status=$?
fi
agent_pid=""

# RSS and scrapes from the monitor's rows.
read -r samples rss_mean rss_max_last rss_first rss_peak <<<"$(awk -v n="$seconds" -v w="$warmup" '
    BEGIN { if (n < 80) w = 0.5 * n }  # too short to check: the second half, for the report
    $2 != "" && $1 <= n {
        if (first == "") first = $2
        if ($2 > peak) peak = $2
        if ($1 >= w) { sum += $2; cnt++ }
        if ($1 >= 0.75 * n && $2 > maxl) maxl = $2
    }
    END { printf "%d %.0f %.0f %d %d\n", cnt, cnt ? sum / cnt : 0, maxl, first, peak }' "$work/monitor.tsv")"
rss_growth=$(awk -v x="$rss_max_last" -v m="$rss_mean" 'BEGIN { printf "%.2f", (m > 0 ? (x / m - 1) * 100 : 999) }')
read -r scrapes scrape_bad scrape_max <<<"$(awk '
    { n++; if (!($3 == 200 && $4 == 1)) bad++; if ($6 > mx) mx = $6 }
    END { printf "%d %d %.3f\n", n, bad, mx }' "$work/monitor.tsv")"
scrape_p50=$(awk '{ print $6 }' "$work/monitor.tsv" | sort -n | awk '{ d[NR] = $1 } END { printf "%.3f\n", NR ? d[int((NR + 1) / 2)] : 0 }')
bad_log=$(grep -c -v -E '^\{"ts":"[^"]*","level":"(trace|debug|info)",' "$work/agent.err" || true)
agent_cpu=$(awk -v a="$cpu_end" -v b="$cpu_start" 'BEGIN { printf "%.2f", a - b }')
cpu_per_m=$(awk -v c="$agent_cpu" -v n="$written" 'BEGIN { printf "%.3f", (n > 0 ? c / n * 1e6 : 0) }')
catch_up=$(awk -v a="$t_caught_up" -v b="$t_written" 'BEGIN { printf "%.1f", a - b }')

printf '\n%-34s %s\n' "soak" "$seconds s, $rate lines/s, rotate every $rotate_every s"
printf '%-34s %s\n' "lines written" "$written"
printf '%-34s %s\n' "lines counted (lines_total)" "$counted"
printf '%-34s %s\n' "bad lines / too_late / read errors" "$bad_lines / $too_late / ${read_errors:-?}"
printf '%-34s %s\n' "rotations written / seen" "$rotations / ${seen_rotations:-?}"
printf '%-34s %s\n' "catch-up after the writer stopped" "$catch_up s"
printf '%-34s %s\n' "scrapes (bad)" "$scrapes ($scrape_bad), median $scrape_p50 s, max $scrape_max s"
printf '%-34s %s\n' "RSS first / peak (kB)" "$rss_first / $rss_peak"
printf '%-34s %s\n' "RSS mean after warm-up (kB)" "$rss_mean ($samples samples)"
printf '%-34s %s\n' "RSS max of last quarter (kB)" "$rss_max_last"
if [[ "$rss_checked" == 1 ]]; then
    printf '%-34s %s\n' "RSS growth" "$rss_growth% (limit 5%)"
else
    printf '%-34s %s\n' "RSS growth" "$rss_growth% (not checked: run < 80 s; windows still filling)"
fi
printf '%-34s %s\n' "agent CPU (user+sys)" "$agent_cpu s ($cpu_per_m s per million lines)"
printf '%-34s %s\n' "stderr lines at warn+ / total" "$bad_log / $(wc -l <"$work/agent.err")"
printf '%-34s %s\n' "load average at end" "$(cut -d' ' -f1-3 /proc/loadavg)"

fault_expect_value "lines counted (rollguard_source_lines_total)" "$counted" == "$written"
fault_expect_value "bad lines (rollguard_source_bad_lines_total, every reason)" "$bad_lines" == 0
fault_expect_value "lines dropped too_late" "$too_late" == 0
fault_expect_value "scrapes not HTTP 200 or not parsed (of $scrapes)" "$scrape_bad" == 0
fault_expect_value "scrapes in $seconds s" "$scrapes" '>=' $((seconds / 2))
if [[ "$rss_checked" == 1 ]]; then
    fault_expect_value "RSS growth, % (max of the last quarter / mean after warm-up - 1)" "$rss_growth" '<' 5
    fault_expect_value "RSS samples after warm-up" "$samples" '>' 0
fi
fault_expect_value "agent stderr lines at warn or above, or not a log record" "$bad_log" == 0
fault_expect_value "agent running at the end (1: yes)" "$agent_alive" == 1
fault_expect_value "agent's exit status on SIGTERM (-1: not stopped, it had died)" "$stop_status" == 0

if ((${#FAULT_FAILED[@]})); then
    grep -v -E '^\{"ts":"[^"]*","level":"(trace|debug|info)",' "$work/agent.err" | head -20 >&2 || true
    if [[ -f "$work/parse.errors" ]]; then
        head -20 "$work/parse.errors" >&2
    fi
fi
fault_failed_exit soak
echo
echo "soak: OK"
