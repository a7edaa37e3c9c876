#!/usr/bin/env bash
# Installs rollguard's build and test dependencies from Debian packages.
# Idempotent and non-interactive: installs only what is missing, and does not
# touch the package index when nothing is missing.
#
#   scripts/install-deps.sh [--bench-compare]
#
# --bench-compare  also installs libboost-dev (Boost.Beast/Asio headers) for
#                  bench/compare_http_servers.sh; opt-in, never needed to build or test
#                  rollguard (CI runs without it).
set -euo pipefail

bench_compare=0
while (($#)); do
  case "$1" in
    --bench-compare) bench_compare=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install-deps: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake pkg-config
  libcurl4-openssl-dev
  libssl-dev  # OpenSSL 3 libcrypto: SHA-256, HMAC-SHA256, CRYPTO_memcmp (agent/src/hooks/signing.cpp)
  libre2-dev  # RE2: the =~ / !~ label matchers, Prometheus semantics in linear time
  prometheus-cpp-dev
  libmicrohttpd-dev  # the HTTP listener: event-driven (epoll), connection caps and timeouts
  wrk  # bench/bench_http.sh: the listener under 100 keep-alive clients
  libtomlplusplus-dev
  libspdlog-dev
  catch2
  libsimdjson-dev
  libcli11-dev
  libsystemd-dev  # sd_notify(3), sd_watchdog_enabled(3): agent/src/daemon/sd_notify.cpp
  systemd  # systemd-analyze: the [systemd] tests verify and rate the unit
  python3
  prometheus-alertmanager
  prometheus-node-exporter
  prometheus
  openssl
  clang-14 libclang-rt-14-dev  # libFuzzer targets under ASan+UBSan (tests/fuzz, scripts/fuzz.sh)
  mtail  # bench/bench_vs_mtail.sh: the ingest comparison
)
if [ "$bench_compare" -eq 1 ]; then
  packages+=(libboost-dev)  # bench/compare_http_servers.sh: the Boost.Beast/Asio server
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
