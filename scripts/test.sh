#!/usr/bin/env bash
# The whole test suite (`.ci/run` runs exactly this): about 13 minutes from a fresh clone
# on 2 cores, package installs included (README, "Testing", has the step-by-step timing).
#
# Three builds, each with warnings as errors, configured by the presets of
# CMakePresets.json (`cmake --preset NAME` gives a developer the same trees):
#   build/       release: g++ -O2, the programs: the agent, the tools the proofs run and
#                the benchmarks
#   build-asan/  asan: clang-14 -O0 -g, ASan+UBSan with libFuzzer's coverage
#                instrumentation: every test binary and every fuzz target (one build
#                serves both)
#   build-tsan/  tsan: clang-14 -O0 -g, ThreadSanitizer: the unit tests
# What runs, in order:
#   1. build-asan/ and then build-tsan/ start compiling in the background at the lowest
#      CPU priority (nice 19), and keep at it through steps 2-4: they take the CPU that
#      the foreground leaves (build/'s links and serial tail; the proofs mostly wait on
#      real time);
#   2. build/ on both cores;
#   3. `rollguard check` on every shipped config;
#   4. the short versions of the proofs of docs/RELIABILITY.md and docs/PERFORMANCE.md on
#      build/: the benchmarks against mtail and wc -l, the footprint, the HTTP listener and the detection
#      latency (figures only), soak, kill -9 during ingest and during rollback hooks, a
#      receiver outage, a full and read-only state dir (root only). So the proofs run on
#      a loaded machine, as they must pass on one; the benchmarks' figures compare
#      against their baselines (wc -l, mtail) measured in the same run, under the same
#      load;
#   5. the background builds get their normal priority back; once build-asan/ is done,
#      every CTest test (unit, integration, golden, rule tests, shipped configs...) under
#      ASan+UBSan: the one full run of the suite (build-tsan/ goes on compiling), and
#      beside it at nice 19 every libFuzzer target for FUZZ_SECONDS (default 30) each,
#      two at a time, each seeded with its corpus and every past crash
#      (tests/fuzz/regressions);
#   6. the multithreaded parts (recorder, tailer threads, hook worker, HTTP listener,
#      daemon) under ThreadSanitizer;
#   7. the fuzzers' results (the run fails on a finding).
# The end prints each step's wall time.
# ROLLGUARD_SKIP_SANITIZERS=1 skips the sanitizer builds and 5-7, and runs the suite on
# build/ instead (every target built there): a quicker local run. ROLLGUARD_SKIP_PROOFS=1
# skips 4.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ROLLGUARD_WERROR=ON
jobs=$(nproc 2>/dev/null || echo 2)
skip_sanitizers=${ROLLGUARD_SKIP_SANITIZERS:-0}
skip_proofs=${ROLLGUARD_SKIP_PROOFS:-0}
started=$SECONDS

# step NAME: starts a step (and ends the one before); the table at the end lists them.
step_names=()
step_starts=()
step() {
  check_background
  step_names+=("$*")
  step_starts+=("$SECONDS")
  echo "==> $* ($(date -u +%H:%M:%S), $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s in)"
}
timing_table() {
  local i end
  echo "step times (wall):"
  for i in "${!step_names[@]}"; do
    end=${step_starts[i + 1]:-$SECONDS}
    printf '  %4ss  %s\n' "$((end - step_starts[i]))" "${step_names[i]}"
  done
  printf '  %4ss  in all\n' "$((SECONDS - started))"
}
# tree_pids PID: PID and everything it started (the background builds' compilers).
tree_pids() {
  local child
  echo "$1"
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    tree_pids "$child"
  done
}
kill_tree() {
  kill $(tree_pids "$1") 2>/dev/null || true
}
bg_pid=""
fuzz_pid=""
on_exit() {
  local rc=$?
  if [ -n "$bg_pid" ]; then
    kill_tree "$bg_pid"
  fi
  if [ -n "$fuzz_pid" ]; then
    kill_tree "$fuzz_pid"
  fi
  if [ "$rc" != 0 ]; then
    echo "==> FAILED (exit $rc) in: ${step_names[-1]:-setup}" >&2
  fi
}
trap on_exit EXIT

# The background builds (step 1): each one's output goes to DIR/build.log and its exit
# status to DIR/build.status; await_build waits for one and fails with the log's tail
# when it failed.
background_build() {  # background_build DIR PRESET [TARGET]
  local dir=$1 preset=$2 target=${3:-}
  local rc=0
  mkdir -p "$dir"
  rm -f "$dir/build.status"
  ROLLGUARD_BUILD_TARGET=$target nice -n 19 "$root/scripts/build.sh" "$dir" --preset "$preset" \
    >"$dir/build.log" 2>&1 || rc=$?
  echo "$rc" >"$dir/build.status"
}
check_background() {  # a background build that already failed ends the run at once
  local dir
  for dir in "$root/build-asan" "$root/build-tsan"; do
    if [ -n "$bg_pid" ] && [ -f "$dir/build.status" ] && [ "$(cat "$dir/build.status")" != 0 ]; then
      await_build "$dir"
    fi
  done
}
await_build() {  # await_build DIR: waits until DIR's background build ends; fails if it failed
  local rc
  while [ ! -f "$1/build.status" ] && kill -0 "$bg_pid" 2>/dev/null; do
    sleep 1
  done
  rc=$(cat "$1/build.status" 2>/dev/null || echo "none")
  if [ "$rc" != 0 ]; then
    echo "build of $1 failed (exit $rc); the end of $1/build.log:" >&2
    tail -n 60 "$1/build.log" >&2
    exit 1
  fi
}

"$root/scripts/install-deps.sh"

if [ "$skip_sanitizers" != 1 ]; then
  # One background job builds both sanitizer trees, one after the other, at the lowest
  # CPU priority: while build/ compiles it takes the cores that build/'s make leaves idle
  # (links, the serial tail), while the proofs run nearly both.
  rm -f "$root/build-asan/build.status" "$root/build-tsan/build.status"
  (
    background_build "$root/build-asan" asan
    if [ "$(cat "$root/build-asan/build.status")" = 0 ]; then
      background_build "$root/build-tsan" tsan rollguard_unit_tests
    fi
  ) &
  bg_pid=$!
  echo "    (building build-asan/ then build-tsan/ in the background at nice 19: logs in build-*/build.log)"
fi

if [ "$skip_sanitizers" = 1 ]; then
  step "build/: every target (g++ -O2)"
  "$root/scripts/build.sh" "$root/build" --preset release
else
  # The suite runs in the sanitizer builds; build/ makes the programs (agent, tools,
  # benchmarks: target rollguard_programs).
  step "build/: the programs (g++ -O2)"
  ROLLGUARD_BUILD_TARGET=rollguard_programs "$root/scripts/build.sh" "$root/build" --preset release
fi

step "hardening of build/rollguard: PIE, full RELRO, stack protector, _FORTIFY_SOURCE"
"$root/scripts/check-hardening.sh" "$root/build/rollguard"

step "rollguard check on every shipped config"
find "$root/config" -name '*.toml' -print0 | sort -z | while IFS= read -r -d '' f; do
  "$root/build/rollguard" check --config "$f"
done

if [ "$skip_proofs" != 1 ]; then
  b="$root/build"
  step "benchmark: ingest against mtail and wc -l"
  # The sparse log (1,000 lines/s of event time) has as many ticks per line at any length:
  # 100,000 lines show its cost at half the time of the dense run.
  "$root/bench/bench_vs_mtail.sh" "$b" 200000 --sparse-lines 100000
  step "benchmark: footprint idle and at 100k lines/s"
  "$root/bench/bench_footprint.sh" "$b" --seconds 5
  step "benchmark: detection latency"
  "$root/bench/bench_detection.sh" "$b" --incidents 5 --for 2s
  step "benchmark: HTTP listener under 100 keep-alive clients, and with 1000 idle connections"
  (ulimit -n 8192 2>/dev/null || true; "$root/bench/bench_http.sh" "$b" --seconds 3)
  step "soak, 90 s at 50k lines/s, rename rotation every 15 s (RSS is checked from 80 s)"
  "$root/tests/faults/soak.sh" --build "$b" --seconds 90 --rotate-every 15
  step "kill -9 during ingest"
  "$root/tests/faults/kill_ingest.sh" --build "$b" --trials 10
  step "kill -9 during rollback hooks"
  "$root/tests/faults/kill_hooks.sh" --build "$b" --trials 5
  step "receiver outage during an incident"
  "$root/tests/faults/receiver_outage.sh" --build "$b" --outage-seconds 15
  step "disk full and read-only state dir"
  rc=0; "$root/tests/faults/disk_full.sh" --build "$b" || rc=$?
  if [ "$rc" = 77 ]; then echo "disk_full: skipped (needs root for its tmpfs)"; elif [ "$rc" != 0 ]; then exit "$rc"; fi
fi

if [ "$skip_sanitizers" = 1 ]; then
  step "tests (build/)"
  (cd "$root/build" && ctest --output-on-failure -j"$jobs" --timeout 300)
else
  step "waiting for the background build of build-asan/"
  # The proofs are done: the builds get their full share again (children started from
  # here on inherit it from make). Against another load on the machine a nice 19 build
  # would get almost nothing. Raising a priority needs root; otherwise the builds stay
  # niced.
  renice -n 0 -p $(tree_pids "$bg_pid") >/dev/null 2>&1 || true
  await_build "$root/build-asan"

  # The fuzzers run for a fixed time each, beside the suite at the lowest priority: they
  # take the CPU the suite leaves (its integration tests mostly wait on real time), so
  # they add nothing to the wall time, only run fewer inputs than on an idle machine
  # (their table gives exec/s).
  fuzz_seconds=${FUZZ_SECONDS:-30}
  nice -n 19 "$root/scripts/fuzz.sh" --no-build -B "$root/build-asan" -j 2 all "$fuzz_seconds" \
    >"$root/build-asan/fuzz.log" 2>&1 &
  fuzz_pid=$!

  # Two tests per core: the integration tests spend nearly all their time waiting on real
  # time (a guide scenario: 18 s of wall time, 0.5 s of CPU), so one per core leaves the
  # cores idle while they wait. Every test must pass on a loaded machine anyway.
  step "the whole suite under ASan+UBSan (build-asan/); every fuzz target beside it"
  (cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$((jobs * 2))" --timeout 600)

  step "waiting for the background build of build-tsan/"
  await_build "$root/build-tsan"
  bg_pid=""

  step "multithreaded parts under ThreadSanitizer (build-tsan/)"
  (cd "$root/build-tsan" && ctest --output-on-failure -R '^tsan[.]' --timeout 900)

  step "every fuzz target, $fuzz_seconds s each, two at a time (build-asan/, started beside the suite)"
  rc=0
  wait "$fuzz_pid" || rc=$?
  fuzz_pid=""
  cat "$root/build-asan/fuzz.log"
  if [ "$rc" != 0 ]; then
    exit "$rc"
  fi
fi
step "all tests passed"
timing_table
