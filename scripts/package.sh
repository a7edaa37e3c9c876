#!/usr/bin/env bash
# Builds the Debian package: build-pkg/rollguard_<version>_<arch>.deb, with the
# distribution layout (/usr/bin/rollguard, /lib/systemd/system/rollguard.service,
# /etc/rollguard/rollguard.toml, /usr/share/doc/rollguard, /var/lib/rollguard).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build-pkg" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DROLLGUARD_BUILD_TESTS=OFF -DROLLGUARD_BUILD_BENCH=OFF >/dev/null
cmake --build "$root/build-pkg" -j"$(nproc)" --target rollguard
(cd "$root/build-pkg" && cpack -G DEB)
ls -1 "$root"/build-pkg/*.deb
