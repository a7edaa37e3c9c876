#!/usr/bin/env bash
# Ingest: rollguard replay vs mtail --one_shot vs wc -l, on the same JSON access log, in
# the same run (issue #10, "Benchmarks against the alternatives").
#
#   bench/bench_vs_mtail.sh [BUILD_DIR] [LINES] [--sparse-lines N]
#                              (defaults: build, 1000000, N = LINES; CI: 200000, N 100000)
#
# Builds nothing: needs BUILD_DIR/rollguard and BUILD_DIR/tests/rollguard-loggen
# (cmake --build BUILD_DIR --target rollguard rollguard-loggen) and mtail on the PATH
# (Debian package `mtail`). Measures two logs of the same kind of lines at two densities
# of event time, since the rule timeline costs per tick of event time as well as per line:
#   - dense: LINES lines at 20,000 lines/s (1M lines: 50 s, 50 ticks);
#   - sparse: N lines at 1,000 lines/s, a realistic rate for one service (1M lines:
#     1,000 s, 1,000 ticks).
# For each, it generates the lines (~250 bytes, --wide; the last 20% degraded: latency
# x4, ~8% 5xx) with rollguard-loggen, warms the page cache, then runs, best of 3,
# alternating within each round so other load falls on all three alike:
#   - rollguard replay with a config holding one json_log source (latency histogram,
#     error = status >= 500) and an error-ratio rule evaluated at every tick of the
#     lines' own timestamps (the rule timeline); and once more without `timestamp`
#     (no timeline: reading and aggregating only), an extra row;
#   - mtail --one_shot with bench/mtail/router.mtail (a regex for status and duration_ms,
#     a latency histogram with 10 buckets, an error counter);
#   - wc -l, the floor.
# Both tools must report the same totals (lines/events == histogram count, same error
# count), or the script fails: they did the same work. Prints one table per density: wall
# seconds, lines/s, CPU seconds (user + sys) for each, and the ratios rollguard/mtail and
# rollguard/wc, and replay's own rate for its read loop alone (no start-up, no report);
# then both densities' ratios side by side.
# (This replaces bench/bench_replay.sh, which measured replay against wc -l only.)
# Every contender is single-threaded except mtail (Go: GC and runtime
# threads), so CPU seconds is the fair "one core" measure; the targets (rollguard >= 25x
# mtail, >= 25% of wc -l) are printed next to the figures, never enforced.
# Exit: 0 figures printed, 1 a tool failed or the totals differ, 2 bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
positional=()
sparse_lines=
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --sparse-lines)
            if (($# < 2)); then usage >&2; exit 2; fi
            sparse_lines=$2
            shift 2
            ;;
        -*) usage >&2; exit 2 ;;
        *) positional+=("$1"); shift ;;
    esac
done
if ((${#positional[@]} > 2)); then usage >&2; exit 2; fi
build=${positional[0]:-build}
lines=${positional[1]:-1000000}
sparse_lines=${sparse_lines:-$lines}
for n in "$lines" "$sparse_lines"; do
    if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1000)); then
        echo "bench_vs_mtail: LINES and --sparse-lines must be integers >= 1000, got '$n'" >&2
        exit 2
    fi
done
here=$(cd "$(dirname "$0")" && pwd)
program="$here/mtail/router.mtail"
# shellcheck source=../tests/faults/lib.sh
source "$here/../tests/faults/lib.sh"  # need_bins, the checks (fault_expect_value)
need_bins "$build" rollguard=rollguard loggen=tests/rollguard-loggen
mtail=$(command -v mtail || true)
if [[ -z "$mtail" ]]; then
    echo "bench_vs_mtail: mtail not found (apt-get install mtail; scripts/install-deps.sh installs it)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-bench-mtail.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM
log="$work/access.log"
config="$work/bench.toml"
cat >"$config" <<'EOF'
[agent]
listen = ""

[[source]]
name = "router"
type = "json_log"
paths = ["/unused/*.log"]   # replay reads the file given on its command line
timestamp = "ts"            # the lines' time drives the rule timeline
latency = { field = "duration_ms", unit = "ms" }
error = { field = "status", gte = 500 }

[[rule]]
name = "router-error-ratio"
severity = "warning"
source = "router"
metric = "error_ratio"
above = 0.05
window = "1m"
EOF
# The same without `timestamp`: replay reads and aggregates but builds no rule timeline
# (the rule is not evaluated). One more row, to show what the timeline costs.
plain_config="$work/bench-plain.toml"
grep -v '^timestamp = ' "$config" >"$plain_config"

fail() {
    echo "bench_vs_mtail: FAIL: $*" >&2
    exit 1
}
# run NAME OUT CMD...: runs CMD once with stdout to OUT; prints "wall user sys" seconds.
run() {
    local name=$1 out=$2
    shift 2
    local TIMEFORMAT='%R %U %S' rc=0 times
    times=$({ time "$@" >"$out" 2>"$out.err"; } 2>&1) || rc=$?
    if ((rc != 0)); then
        sed 's/^/  /' "$out.err" >&2
        fail "$name exited with $rc"
    fi
    echo "$times"
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

# measure NAME LINES RATE: generates LINES lines at RATE lines/s of event time, runs the
# contenders, checks their totals and prints the table; leaves the ratios in summary[NAME].
declare -A summary
# shellcheck disable=SC2154  # need_bins (tests/faults/lib.sh) sets loggen and rollguard
measure() {
    local density=$1 lines=$2 rate=$3
    local healthy=$((lines * 8 / 10 / rate))
    local wc_lines rg_lines rg_events rg_errors rg_latency_count mt_errors mt_count
    local tool t wall user sys lps read_loop_lps=0 bytes
    local -A best_wall=() best_cpu=()
    echo "== $density: $lines lines at $rate lines/s of event time ($((lines / rate)) s, as many ticks)"
    rm -f "$log" # loggen appends
    "$loggen" -o "$log" --count "$lines" --no-sleep --wide --rate "$rate" --healthy "$healthy" --seed 42 \
        --start 2026-01-01T00:00:00Z 2>"$work/loggen.err" || { cat "$work/loggen.err" >&2; fail "rollguard-loggen failed"; }
    bytes=$(stat -c %s "$log")
    cat "$log" >/dev/null # page cache warm for every contender

    for _ in 1 2 3; do
        for tool in wc rollguard plain mtail; do
            case $tool in
                wc) t=$(run "wc -l" "$work/wc.out" wc -l "$log") ;;
                rollguard) t=$(run "rollguard replay" "$work/rg.json" "$rollguard" replay --config "$config" --json - "$log") ;;
                plain) t=$(run "rollguard replay (no timeline)" "$work/plain.json" "$rollguard" replay --config "$plain_config" --json - "$log") ;;
                mtail) t=$(run "mtail --one_shot" "$work/mtail.json" "$mtail" --one_shot --one_shot_format json \
                    --progs "$program" --logs "$log" --address 127.0.0.1 --port 0 --emit_prog_label=false --logtostderr) ;;
            esac
            read -r wall user sys <<<"$t"
            if [[ "$tool" == rollguard ]]; then
                # replay's own figure for its read loop alone (no start-up, no report): the
                # best of the rounds, shown under the table.
                lps=$(grep -o '"lines_per_second":[0-9.eE+-]*' "$work/rg.json" | head -1 | cut -d: -f2 || true)
                read_loop_lps=$(awk -v a="${read_loop_lps:-0}" -v b="${lps:-0}" 'BEGIN { print (b + 0 > a + 0 ? b : a) }')
            fi
            best_wall[$tool]=$(min "${best_wall[$tool]:-}" "$wall")
            best_cpu[$tool]=$(min "${best_cpu[$tool]:-}" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')")
        done
    done

    # The totals: same lines, same count in the histogram, same errors. (`|| true`: a field
    # missing is reported by its check below, not by set -e ending the script here.)
    wc_lines=$(awk '{ print $1 }' "$work/wc.out")
    rg_lines=$(grep -o '"lines":[0-9]*' "$work/rg.json" | head -1 | cut -d: -f2 || true)
    rg_events=$(grep -o '"events":[0-9]*' "$work/rg.json" | head -1 | cut -d: -f2 || true)
    rg_errors=$(grep -o '"errors":[0-9]*' "$work/rg.json" | head -1 | cut -d: -f2 || true)
    rg_latency_count=$(grep -o '"latency_seconds":{"count":[0-9]*' "$work/rg.json" | head -1 | grep -o '[0-9]*$' || true)
    # mtail's JSON is indented: the first "Value": N after the error counter's name, and the
    # histogram's "Count": N.
    mt_errors=$(awk '/"router_errors_total": \[/ { on = 1 } on && /"Value": [0-9]+/ { gsub(/[^0-9]/, ""); print; exit }' "$work/mtail.json")
    mt_count=$(awk '/"Count": [0-9]+/ { gsub(/[^0-9]/, ""); print; exit }' "$work/mtail.json")
    echo "totals: wc -l $wc_lines lines; rollguard $rg_lines lines, $rg_events events, latency count $rg_latency_count, $rg_errors errors; mtail histogram count ${mt_count:-?}, ${mt_errors:-?} errors"
    fault_expect_value "wc -l lines (loggen wrote LINES)" "$wc_lines" == "$lines"
    fault_expect_value "rollguard replay lines" "$rg_lines" == "$lines"
    fault_expect_value "rollguard replay events" "$rg_events" == "$lines"
    fault_expect_value "rollguard replay latency count" "$rg_latency_count" == "$lines"
    fault_expect_value "rollguard replay errors (a count)" "$rg_errors" '>=' 0
    fault_expect_value "mtail histogram count" "${mt_count:-}" == "$lines"
    fault_expect_value "mtail errors (rollguard replay's count)" "${mt_errors:-}" == "$rg_errors"
    fault_failed_exit bench_vs_mtail "(the tools did not do the same work)"

    awk -v lines="$lines" -v bytes="$bytes" \
        -v wcw="${best_wall[wc]}" -v rgw="${best_wall[rollguard]}" -v mtw="${best_wall[mtail]}" \
        -v wcc="${best_cpu[wc]}" -v rgc="${best_cpu[rollguard]}" -v mtc="${best_cpu[mtail]}" \
        -v plw="${best_wall[plain]}" -v plc="${best_cpu[plain]}" -v loop="$read_loop_lps" \
        -v load="$(cut -d' ' -f1-3 /proc/loadavg)" -v cores="$(nproc)" 'BEGIN {
        printf "file: %d lines, %.1f MB, %.0f bytes/line; %d cores, load average %s\n", lines, bytes / 1e6, bytes / lines, cores, load
        printf "best of 3 (wall and CPU each the best of its 3 runs); CPU = user + sys\n"
        printf "%-18s %9s %13s %9s %15s\n", "tool", "wall s", "lines/s", "CPU s", "lines/CPU-s"
        printf "%-18s %9.3f %13.0f %9.3f %15.0f\n", "wc -l", wcw, lines / wcw, wcc, lines / (wcc > 0 ? wcc : 0.001)
        printf "%-18s %9.3f %13.0f %9.3f %15.0f\n", "rollguard replay", rgw, lines / rgw, rgc, lines / rgc
        printf "%-18s %9.3f %13.0f %9.3f %15.0f   (without the rule timeline)\n", "  no timeline", plw, lines / plw, plc, lines / plc
        printf "%-18s %9.3f %13.0f %9.3f %15.0f\n", "mtail --one_shot", mtw, lines / mtw, mtc, lines / mtc
        printf "rollguard / mtail: %.1fx by wall time, %.1fx by CPU time   (target >= 25x)\n", mtw / rgw, mtc / rgc
        printf "rollguard / wc -l: %.1f%% of its line rate by wall time, %.1f%% by CPU time   (target >= 25%%)\n", 100 * wcw / rgw, 100 * wcc / rgc
        printf "rollguard replay'"'"'s read loop alone (its --json lines_per_second, best of 3): %.0f lines/s, %.1f%% of wc -l by wall time\n", loop, 100 * loop / (lines / wcw)
    }'
    summary[$density]=$(awk -v rgc="${best_cpu[rollguard]}" -v mtc="${best_cpu[mtail]}" -v wcc="${best_cpu[wc]}" \
        -v plc="${best_cpu[plain]}" 'BEGIN { printf "%.1fx mtail, %.1f%% of wc -l by CPU time (no timeline: %.1fx, %.1f%%)", mtc / rgc, 100 * wcc / rgc, mtc / plc, 100 * wcc / plc }')
}

measure dense "$lines" 20000
echo
measure sparse "$sparse_lines" 1000
echo
echo "rollguard replay with its rule timeline (targets: >= 25x mtail, >= 25% of wc -l):"
echo "  dense  (20,000 lines/s): ${summary[dense]}"
echo "  sparse  (1,000 lines/s): ${summary[sparse]}"
