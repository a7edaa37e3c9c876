#!/usr/bin/env bash
# Configures and builds rollguard into a build directory (default: build/).
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
#   ROLLGUARD_BUILD_TARGET=name builds one target instead of all.
# Installs missing dependencies first. CI=true (or ROLLGUARD_WERROR=ON) turns warnings
# into errors.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-"$root/build"}
shift || true

"$root/scripts/install-deps.sh"

# Only an explicit request changes the cached setting, so the demo and the tests can
# share build/ without reconfiguring each other.
args=()
if [ "${CI:-}" = "true" ]; then
  args+=(-DROLLGUARD_WERROR=ON)
elif [ -n "${ROLLGUARD_WERROR:-}" ]; then
  args+=(-DROLLGUARD_WERROR="$ROLLGUARD_WERROR")
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$root" -B "$build_dir" "${args[@]}" "$@" >/dev/null
cmake --build "$build_dir" -j"$jobs" ${ROLLGUARD_BUILD_TARGET:+--target "$ROLLGUARD_BUILD_TARGET"}
