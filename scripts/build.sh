#!/usr/bin/env bash
# Configures and builds rollguard into a build directory (default: build/).
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# Installs missing dependencies first. CI=true (or ROLLGUARD_WERROR=ON) turns warnings
# into errors.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-"$root/build"}
shift || true

"$root/scripts/install-deps.sh"

werror=${ROLLGUARD_WERROR:-OFF}
if [ "${CI:-}" = "true" ]; then
  werror=ON
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$root" -B "$build_dir" -DROLLGUARD_WERROR="$werror" "$@" >/dev/null
cmake --build "$build_dir" -j"$jobs"
