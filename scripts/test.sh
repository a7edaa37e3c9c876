#!/usr/bin/env bash
# The whole test suite (`.ci/run` runs exactly this). In order:
#   1. build with warnings as errors (optimised: RelWithDebInfo) the programs: the agent,
#      the tools of tests/tools and the benchmarks (every target, test binaries included,
#      with ROLLGUARD_SKIP_SANITIZERS=1, when the suite runs on this build);
#   2. `rollguard check` on every shipped config;
#   3. the short versions of the proofs of docs/RELIABILITY.md and docs/PERFORMANCE.md on
#      that optimised build: soak, kill -9 during ingest and during rollback hooks, a
#      receiver outage, a full and read-only state dir (root only), and the benchmarks
#      against mtail and wc -l, the footprint and the detection latency (figures only);
#   4. the multithreaded parts (recorder, tailer threads, hook worker, HTTP listener,
#      daemon) under ThreadSanitizer;
#   5. every CTest test (unit, integration, golden, shipped configs...) under
#      AddressSanitizer + UndefinedBehaviorSanitizer: the one full run of the suite;
#   6. every libFuzzer target (clang-14, ASan+UBSan) for FUZZ_SECONDS (default 30) each,
#      each seeded with its corpus and every past crash (tests/fuzz/regressions).
# ROLLGUARD_SKIP_SANITIZERS=1 skips 4-6 and runs the suite on the optimised build instead
# (a quicker local run). ROLLGUARD_SKIP_PROOFS=1 skips 3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ROLLGUARD_WERROR=ON
jobs=$(nproc 2>/dev/null || echo 2)
skip_sanitizers=${ROLLGUARD_SKIP_SANITIZERS:-0}
step() { echo "==> $* ($(date -u +%H:%M:%S))"; }

if [ "$skip_sanitizers" = 1 ]; then
  step "build (warnings are errors)"
  "$root/scripts/build.sh" "$root/build"
else
  # The suite runs in the sanitizer builds below; this optimised build makes the agent,
  # the tools the proofs run and the benchmarks (target rollguard_programs).
  step "build the programs (warnings are errors)"
  ROLLGUARD_BUILD_TARGET=rollguard_programs "$root/scripts/build.sh" "$root/build"
fi

step "rollguard check on every shipped config"
find "$root/config" -name '*.toml' -print0 | sort -z | while IFS= read -r -d '' f; do
  "$root/build/rollguard" check --config "$f"
done

if [ "$skip_sanitizers" = 1 ]; then
  step "tests"
  (cd "$root/build" && ctest --output-on-failure -j"$jobs" --timeout 300)
fi

if [ "${ROLLGUARD_SKIP_PROOFS:-0}" != 1 ]; then
  b="$root/build"
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
  step "benchmark: ingest against mtail and wc -l"
  "$root/bench/bench_vs_mtail.sh" "$b" 200000
  step "benchmark: footprint idle and at 100k lines/s"
  "$root/bench/bench_footprint.sh" "$b" --seconds 5
  step "benchmark: detection latency"
  "$root/bench/bench_detection.sh" "$b" --incidents 5
fi

if [ "$skip_sanitizers" != 1 ]; then
  step "multithreaded parts under ThreadSanitizer"
  ROLLGUARD_BUILD_TARGET=rollguard_unit_tests "$root/scripts/build.sh" "$root/build-tsan" \
    -DROLLGUARD_SANITIZE=thread -DROLLGUARD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$root/build-tsan/tests/rollguard_unit_tests" \
    "[recorder],[thread],[daemon],[exporters],[hooks],[source]"

  step "build and the whole suite under ASan+UBSan"
  "$root/scripts/build.sh" "$root/build-asan" -DROLLGUARD_SANITIZE="address;undefined" -DROLLGUARD_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=Debug
  (cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$jobs" --timeout 600)

  step "every fuzz target, ${FUZZ_SECONDS:-30} s each (clang-14, ASan+UBSan)"
  "$root/scripts/fuzz.sh" all "${FUZZ_SECONDS:-30}"
fi
step "all tests passed"
