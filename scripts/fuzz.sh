#!/usr/bin/env bash
# Runs rollguard's libFuzzer targets (tests/fuzz) under ASan+UBSan.
#
#   scripts/fuzz.sh [options] TARGET|all [SECONDS]     (default: 30 seconds per target)
#
# Targets (tests/fuzz/fuzz_<name>.cpp; `all` runs every one, one after another):
#   line_parser    JSON log line extractor: field paths, units, error predicates, labels,
#                  timestamps; parseMany() == parse() line by line
#   exposition     Prometheus text / OpenMetrics parser + histogramQuantile
#   json_endpoint  `json` scrape sources: document check, numbers by JSON Pointer
#   env_file       rewriteEnvText: only K's lines change, K gets V, idempotent
#   config         parseConfig: never crashes, every refusal has a line:col error
#   values         parseDuration/formatDuration round trip, RFC 3339, thresholds,
#                  byte sizes, percentiles
#   label_matcher  =~ / !~ (RE2): compile or refuse with a message, =~ == !(!~); its
#                  regression `(a+)+$` on "aaa...!" hangs a backtracking engine
#
# Options:
#   -B, --build-dir DIR  the build dir (default: build-asan, the tree scripts/test.sh runs
#                        the suite in). Configured when it has no CMakeCache.txt (the `asan`
#                        preset of CMakePresets.json: clang-14 -O0 -g, ROLLGUARD_FUZZ=ON,
#                        ASan+UBSan; ccache when installed), then the fuzz targets are
#                        built (incremental: seconds when nothing changed).
#   --no-build           use the binaries as they are (fail when one is missing)
#   -j, --jobs N         run N targets at a time (default 1); each takes one core
#   --merge              afterwards, fold the inputs that add coverage back into the repo
#                        corpus tests/fuzz/corpus/<name>/ (libFuzzer -merge=1)
#   -h, --help           this text
#
# Each target starts from a scratch copy of its repo corpus plus the inputs that once
# crashed it (tests/fuzz/regressions/<name>/; the repo is not modified without --merge),
# with tests/fuzz/<name>.dict when present, -timeout=10 (s per input),
# -rss_limit_mb=2048, and halt_on_error for ASan and UBSan so every finding is a crash.
# Prints per target: seconds, runs, exec/s, coverage (cov: edges, ft: features), corpus
# size, and on failure the crash file (kept in DIR/fuzz-artifacts/<name>/).
# Exit: 0 when no target crashed, 1 when one did (named on stderr), 2 on bad usage or
# when the build fails.
set -euo pipefail

targets_all=(line_parser exposition json_endpoint env_file config values label_matcher)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="build-asan"
jobs=1
do_build=1
merge=0
positional=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -B|--build-dir) [[ $# -ge 2 ]] || { echo "fuzz.sh: $1 needs a value" >&2; exit 2; }; build=$2; shift 2 ;;
        --no-build) do_build=0; shift ;;
        -j|--jobs) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: $1 needs a positive number" >&2; exit 2; }
            jobs=$2; shift 2 ;;
        --merge) merge=1; shift ;;
        -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) positional+=("$1"); shift ;;
    esac
done
if [[ ${#positional[@]} -lt 1 || ${#positional[@]} -gt 2 ]]; then
    echo "usage: scripts/fuzz.sh [options] TARGET|all [SECONDS]  (see --help)" >&2
    exit 2
fi
which=${positional[0]}
seconds=${positional[1]:-30}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2
    exit 2
fi
if [[ $which == all ]]; then
    targets=("${targets_all[@]}")
elif [[ " ${targets_all[*]} " == *" $which "* ]]; then
    targets=("$which")
else
    echo "fuzz.sh: unknown target '$which' (targets: ${targets_all[*]}, all)" >&2
    exit 2
fi
[[ $build == /* ]] || build="$root/$build"

if [[ $do_build -eq 1 ]]; then
    if [[ ! -f $build/CMakeCache.txt ]]; then
        launcher=()
        if command -v ccache >/dev/null; then
            launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
        fi
        echo "fuzz.sh: configuring $build" >&2
        cmake -S "$root" -B "$build" --preset asan -DROLLGUARD_WERROR=ON "${launcher[@]}" >/dev/null || exit 2
    fi
    build_targets=()
    for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
    cmake --build "$build" -j2 --target "${build_targets[@]}" >&2 || { echo "fuzz.sh: build failed" >&2; exit 2; }
fi
for t in "${targets[@]}"; do
    if [[ ! -x $build/tests/fuzz/fuzz_$t ]]; then
        echo "fuzz.sh: $build/tests/fuzz/fuzz_$t not found; build it: cmake --preset asan && cmake --build build-asan" \
             "-j2 --target rollguard_fuzz" >&2
        exit 2
    fi
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-fuzz.XXXXXX")
cleanup() {
    local f
    # Each running fuzzer's pid is in $scratch/<target>.pid while it runs.
    for f in "$scratch"/*.pid; do
        [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# run_target T: fuzzes T; its table line (and on failure the fuzzer's output) goes to
# $scratch/T.report, its exit status to $scratch/T.rc.
run_target() {
    local t=$1 bin repo_corpus corpus artifacts log args start rc elapsed status cov ft corp runs eps crash result
    bin="$build/tests/fuzz/fuzz_$t"
    repo_corpus="$root/tests/fuzz/corpus/$t"
    corpus="$scratch/corpus-$t"
    artifacts="$build/fuzz-artifacts/$t"
    log="$scratch/$t.log"
    mkdir -p "$corpus" "$artifacts"
    if [[ -d $repo_corpus ]]; then
        cp -r "$repo_corpus/." "$corpus/"
    fi
    # Inputs that once crashed the target are seeds too: every run replays them first.
    if [[ -d $root/tests/fuzz/regressions/$t ]]; then
        cp -r "$root/tests/fuzz/regressions/$t/." "$corpus/"
    fi
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$artifacts/")
    if [[ -f $root/tests/fuzz/$t.dict ]]; then
        args+=(-dict="$root/tests/fuzz/$t.dict")
    fi
    start=$(date +%s)
    rc=0
    "$bin" "${args[@]}" "$corpus" >"$log" 2>&1 &
    echo $! >"$scratch/$t.pid"
    wait $! || rc=$?
    rm -f "$scratch/$t.pid"
    elapsed=$(( $(date +%s) - start ))
    # The last status line (#N ... cov: C ft: F corp: K/... exec/s: E) and the final stats.
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    [[ -n $runs ]] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$status")
    [[ -n $eps ]] || eps=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$status")
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [[ $rc -eq 0 ]]; then
        result=ok
    else
        result="FAILED (exit $rc)"
    fi
    {
        printf '%-14s %7s %10s %8s %7s %7s %7s  %s\n' "$t" "$elapsed" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
            "${corp:-?}" "$result"
        if [[ $rc -ne 0 ]]; then
            echo "---- fuzz_$t output (last 60 lines) ----"
            tail -n 60 "$log"
            echo "---- crash file: ${crash:-none written} (reproduce: $bin ${crash:-FILE}) ----"
        fi
        if [[ $merge -eq 1 && $rc -eq 0 ]]; then
            mkdir -p "$repo_corpus"
            before=$(find "$repo_corpus" -type f | wc -l)
            "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 "$repo_corpus" "$corpus" >"$scratch/$t.merge.log" 2>&1 || {
                echo "fuzz.sh: merging into $repo_corpus failed:"; tail -n 20 "$scratch/$t.merge.log"; }
            after=$(find "$repo_corpus" -type f | wc -l)
            echo "  merged: $repo_corpus has $after inputs (was $before)"
        fi
    } >"$scratch/$t.report"
    echo "$rc" >"$scratch/$t.rc"
}

# At most $jobs targets at a time; reports are printed in the targets' order as soon as
# each one and those before it have finished.
failed=()
printed=0
print_finished() {
    while ((printed < ${#targets[@]})) && [[ -f $scratch/${targets[printed]}.rc ]]; do
        local t=${targets[printed]}
        cat "$scratch/$t.report"
        [[ $(cat "$scratch/$t.rc") == 0 ]] || failed+=("$t")
        printed=$((printed + 1))
    done
}
printf '%-14s %7s %10s %8s %7s %7s %7s  %s\n' target seconds runs exec/s cov ft corpus result
running=0
for t in "${targets[@]}"; do
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
        print_finished
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait || true
print_finished

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all ${#targets[@]} target(s) ran ${seconds}s each without a finding"
