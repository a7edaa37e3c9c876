#!/usr/bin/env bash
# Checks that a release binary carries the hardening the build asks for (ROLLGUARD_HARDEN,
# CMakeLists.txt), with readelf from binutils: what `hardening-check` (devscripts) looks
# at, without installing devscripts and its dependencies.
#
#   scripts/check-hardening.sh BINARY
#
# PIE (ELF type DYN), full RELRO (a GNU_RELRO segment and BIND_NOW), the stack protector
# (__stack_chk_fail imported) and _FORTIFY_SOURCE (at least one __*_chk function imported).
# Prints one line per property. Exit: 0 all present, 1 one is missing, 2 bad usage.
set -euo pipefail
case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") echo "usage: scripts/check-hardening.sh BINARY" >&2; exit 2 ;;
esac
bin=$1
[ -f "$bin" ] || { echo "check-hardening: no such file: $bin" >&2; exit 2; }
command -v readelf >/dev/null || { echo "check-hardening: readelf is missing (binutils)" >&2; exit 2; }

missing=0
check() {  # check NAME CONDITION-OUTPUT
  if [ -n "$2" ]; then
    printf '  %-28s yes (%s)\n' "$1" "$2"
  else
    printf '  %-28s NO\n' "$1"
    missing=1
  fi
}
symbols=$(readelf --dyn-syms -W "$bin")
check "PIE" "$(readelf -hW "$bin" | awk '/Type:/ && $2 == "DYN" { print "ELF type DYN" }')"
check "RELRO" "$(readelf -lW "$bin" | awk '$1 == "GNU_RELRO" { print "GNU_RELRO segment"; exit }')"
check "BIND_NOW (full RELRO)" "$(readelf -dW "$bin" | grep -Eo 'BIND_NOW|Flags: NOW' | head -1 || true)"
check "stack protector" "$(grep -o '__stack_chk_fail' <<<"$symbols" | head -1 || true)"
fortified=$(grep -Eo '__[a-z_]+_chk\b' <<<"$symbols" | grep -v '__stack_chk' | sort -u || true)
check "_FORTIFY_SOURCE" "$(if [ -n "$fortified" ]; then echo "$(wc -l <<<"$fortified") __*_chk functions, e.g. $(head -1 <<<"$fortified")"; fi)"
if [ "$missing" != 0 ]; then
  echo "check-hardening: $bin lacks hardening (build it with the release preset, ROLLGUARD_HARDEN=ON)" >&2
  exit 1
fi
echo "check-hardening: $bin: all present"
