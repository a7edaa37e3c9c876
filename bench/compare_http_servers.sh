#!/usr/bin/env bash
# libmicrohttpd (rollguard's listener settings) against Boost.Beast/Asio: two minimal
# servers (bench/http_compare/) answering the same fixed bodies, GET /small (58-byte JSON,
# like the deploy gate) and GET /large (30 KiB, like /metrics), measured the same way.
#
#   bench/compare_http_servers.sh [--seconds N] [--servers mhd,beast]   (defaults: 10, mhd,beast)
#
# Builds both with g++ -O2 -std=c++20 -Wall -Wextra -Werror into a temp dir (no CMake).
# For each server, on a free 127.0.0.1 port, one after the other:
#   - wrk -t2 -c100 -dNs --latency on /small, then on /large: requests/s, p50/p99/max;
#   - 1000 idle TCP connections and 20 slow-drip ones (one header byte a second) held
#     open (bench/http_compare/hold_clients.py, which reopens any the server closes);
#     with them held: 50 curl requests on fresh connections (max time_total, failures),
#     then wrk on /small again;
#   - VmRSS of the server idle, with the held connections, and after the wrk runs (held
#     connections released).
# The MHD server runs with rollguard's flags and caps except the per-IP limit (64 in
# rollguard): here 0 (none), since wrk and the held clients all come from 127.0.0.1.
# Requires g++, pkg-config, libmicrohttpd-dev, libboost-dev, wrk, curl, python3.
# Exit: 0 table printed, 1 a server did not start, 2 bad usage or missing dependency.
set -euo pipefail
seconds=10
servers=mhd,beast
here=$(cd "$(dirname "$0")" && pwd)
src=$here/http_compare
while (($#)); do
    case "$1" in
        --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
        --servers) servers=${2:?--servers needs a value}; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "compare_http_servers: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "compare_http_servers: --seconds wants a positive integer" >&2; exit 2; }
for tool in g++ pkg-config wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "compare_http_servers: $tool is missing (scripts/install-deps.sh)" >&2; exit 2; }
done
pkg-config --exists libmicrohttpd || { echo "compare_http_servers: libmicrohttpd-dev is missing (scripts/install-deps.sh)" >&2; exit 2; }
if ! printf '#include <boost/beast/http.hpp>\n#include <boost/asio/io_context.hpp>\n' | g++ -E -x c++ - >/dev/null 2>&1; then
    echo "compare_http_servers: the Boost headers (libboost-dev: Beast, Asio) are missing;" \
         "install with scripts/install-deps.sh --bench-compare" >&2
    exit 2
fi

d=$(mktemp -d)
server_pid=
holder_pid=
cleanup() {
    [ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$d"
}
trap cleanup EXIT

cxx=(g++ -std=c++20 -O2 -Wall -Wextra -Werror)
echo "compare_http_servers: building (g++ -O2, C++20) in $d" >&2
"${cxx[@]}" "$src/mhd_server.cpp" -o "$d/mhd_server" $(pkg-config --cflags --libs libmicrohttpd) &
b1=$!
"${cxx[@]}" "$src/beast_server.cpp" -o "$d/beast_server" -pthread &
b2=$!
wait "$b1" && wait "$b2" || { echo "compare_http_servers: build failed" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# wrk's figures as "rps p50 p99 max errors" (latencies in ms; errors = socket errors + non-2xx).
wrk_figures() {
    wrk -t2 -c100 -d"${seconds}s" --latency "$1" | awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
            return v
        }
        $1 == "Latency" && NF >= 4 && !max { max = ms($4) }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        /Socket errors/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx/ { err += $NF }
        END { printf "%.0f %.2f %.2f %.2f %d\n", rps, p50, p99, max, err }'
}

# Lines of Beast's protective code: code lines inside "// guard{" ... "// guard}" blocks
# (each marker alone on its line) plus lines ending in "// guard (one line)".
loc=$(awk '/^[[:space:]]*\/\/ guard\{[[:space:]]*$/ { on = 1; next } /^[[:space:]]*\/\/ guard\}[[:space:]]*$/ { on = 0; next }
           on && !/^[[:space:]]*(\/\/|$)/ { n++ }
           !on && /\/\/ guard \(one line\)/ { n++ }
           END { print n }' "$src/beast_server.cpp")

results=()
extra_lines=()
IFS=, read -r -a order <<<"$servers"
for name in "${order[@]}"; do
    case "$name" in
        mhd) cmd=("$d/mhd_server") extra=(0) ;;
        beast) cmd=("$d/beast_server") extra=() ;;
        *) echo "compare_http_servers: unknown server $name (mhd, beast)" >&2; exit 2 ;;
    esac
    port=$(free_port)
    base=http://127.0.0.1:$port
    "${cmd[@]}" "$port" "${extra[@]}" >"$d/$name.out" 2>"$d/$name.err" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q ready "$d/$name.out" 2>/dev/null && break
        sleep 0.05
    done
    curl -fsS -o /dev/null "$base/small" || { echo "compare_http_servers: $name did not start" >&2; cat "$d/$name.err" >&2; exit 1; }
    sleep 0.5
    rss_idle=$(rss_kb "$server_pid")
    echo "compare_http_servers: $name on port $port: wrk /small, /large (${seconds}s each)" >&2
    read -r s_rps s_p50 s_p99 s_max s_err < <(wrk_figures "$base/small")
    read -r l_rps l_p50 l_p99 l_max l_err < <(wrk_figures "$base/large")

    echo "compare_http_servers: $name: holding 1000 idle + 20 slow-drip connections" >&2
    rm -f "$d/ready" "$d/stats"
    python3 "$src/hold_clients.py" 127.0.0.1 "$port" 1000 20 "$d/ready" "$d/stats" &
    holder_pid=$!
    for _ in $(seq 200); do [ -f "$d/ready" ] && break; sleep 0.05; done
    [ -f "$d/ready" ] || { echo "compare_http_servers: the held connections did not open" >&2; exit 1; }
    sleep 1
    rss_held=$(rss_kb "$server_pid")
    fresh_max=0 fresh_fail=0
    for _ in $(seq 50); do
        if t=$(curl -fsS -o /dev/null --max-time 5 -w '%{time_total}' "$base/small"); then
            fresh_max=$(awk -v a="$fresh_max" -v b="$t" 'BEGIN { b *= 1000; print (b > a ? b : a) }')
        else
            fresh_fail=$((fresh_fail + 1))
        fi
    done
    read -r h_rps h_p50 h_p99 h_max h_err < <(wrk_figures "$base/small")
    kill -TERM "$holder_pid"
    wait "$holder_pid" 2>/dev/null || true
    holder_pid=
    held_stats=$(cat "$d/stats" 2>/dev/null || echo "n/a")
    sleep 1
    rss_after=$(rss_kb "$server_pid")
    kill -TERM "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=

    results+=("$(printf '%-6s %-22s %8s %8s %8s %8s %5s' "$name" "/small" "$s_rps" "$s_p50" "$s_p99" "$s_max" "$s_err")")
    results+=("$(printf '%-6s %-22s %8s %8s %8s %8s %5s' "$name" "/large" "$l_rps" "$l_p50" "$l_p99" "$l_max" "$l_err")")
    results+=("$(printf '%-6s %-22s %8s %8s %8s %8s %5s' "$name" "/small +1020 held" "$h_rps" "$h_p50" "$h_p99" "$h_max" "$h_err")")
    extra_lines+=("$(printf '%-6s RSS idle %6d KiB | 1000 idle+20 drip held %6d KiB | after wrk %6d KiB | fresh conn x50 while held: max %.1f ms, %d failed | held: %s' \
        "$name" "$rss_idle" "$rss_held" "$rss_after" "$fresh_max" "$fresh_fail" "$held_stats")")
done

echo
echo "wrk -t2 -c100 -d${seconds}s --latency (latencies in ms; err = socket errors + non-2xx)"
printf '%-6s %-22s %8s %8s %8s %8s %5s\n' server test req/s p50 p99 max err
printf '%s\n' "${results[@]}"
echo
printf '%s\n' "${extra_lines[@]}"
echo
echo "Beast protective code (lines between // guard{ and // guard} in bench/http_compare/beast_server.cpp): $loc lines"
echo "(MHD: the same protection is 4 MHD_OPTION_* arguments; per-IP limit 0 here, 64 in rollguard)"
