#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds with warnings as errors, runs every
# test through CTest, validates every shipped config with `rollguard check`, runs the
# multithreaded parts (recorder, tailer threads, hook worker, HTTP listener, daemon)
# under ThreadSanitizer, then builds with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs the whole suite there too.
#   ROLLGUARD_SKIP_SANITIZERS=1 skips both sanitizer passes (quicker local runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ROLLGUARD_WERROR=ON
jobs=$(nproc 2>/dev/null || echo 2)

echo "==> build (warnings are errors)"
"$root/scripts/build.sh" "$root/build"
echo "==> tests"
(cd "$root/build" && ctest --output-on-failure -j"$jobs" --timeout 300)

echo "==> rollguard check on every shipped config"
find "$root/config" -name '*.toml' -print0 | sort -z | while IFS= read -r -d '' f; do
  "$root/build/rollguard" check --config "$f"
done

if [ "${ROLLGUARD_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "==> multithreaded parts under ThreadSanitizer"
  ROLLGUARD_BUILD_TARGET=rollguard_unit_tests "$root/scripts/build.sh" "$root/build-tsan" \
    -DROLLGUARD_SANITIZE=thread -DROLLGUARD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$root/build-tsan/tests/rollguard_unit_tests" \
    "[recorder],[thread],[daemon],[exporters],[hooks],[source]"

  echo "==> build and tests under ASan+UBSan"
  "$root/scripts/build.sh" "$root/build-asan" -DROLLGUARD_SANITIZE="address;undefined" -DROLLGUARD_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=Debug
  (cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$jobs" --timeout 600)
fi
echo "==> all tests passed"
