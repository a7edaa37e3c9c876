# shellcheck shell=bash disable=SC2034
# Shared helpers of the fault scripts (tests/faults/*.sh); sourced, not run.
# Every process started here is remembered in FAULT_PIDS and ended by fault_cleanup.

FAULT_PIDS=()
FAULT_DIRS=()
FAULT_FAILED=()
FAULT_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# fault_need_bins BUILD: sets ROLLGUARD; exits 2 with the cmake command when missing.
# shellcheck source=../../scripts/need_bins.sh
source "$FAULT_HERE/../../scripts/need_bins.sh"
fault_need_bins() {
    need_bins "$1" ROLLGUARD=rollguard
}

fault_tempdir() {  # fault_tempdir VAR: a new temp dir in VAR, removed by fault_cleanup
    local made
    made=$(mktemp -d "${TMPDIR:-/tmp}/rollguard-fault.XXXXXX")
    FAULT_DIRS+=("$made")
    printf -v "$1" '%s' "$made"
}

fault_cleanup() {
    local pid
    for pid in "${FAULT_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${FAULT_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    FAULT_PIDS=()
    if [[ -n "${FAULT_EXTRA_CLEANUP:-}" ]]; then
        eval "$FAULT_EXTRA_CLEANUP" || true
    fi
    if [[ -z "${FAULT_KEEP:-}" ]]; then
        rm -rf "${FAULT_DIRS[@]}" 2>/dev/null || true
    else
        echo "kept: ${FAULT_DIRS[*]}" >&2
    fi
}

fault_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# fault_wait SECONDS CMD...: polls CMD every 50 ms until it succeeds; 1 on timeout.
fault_wait() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.05
    done
}

# fault_metric PORT NAME_WITH_LABELS: the sample's value from /metrics (empty if absent).
fault_metric() {
    curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n && !f { print $2; f = 1 }' || true
}

fault_healthy() { curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; }

# fault_start_receiver PORT LOG [ARGS...]: starts receiver.py on PORT (0: any), logging to
# LOG; sets RECEIVER_PID and RECEIVER_PORT once it listens.
fault_start_receiver() {
    rm -f "$2.port"
    python3 "$FAULT_HERE/receiver.py" --port "$1" --port-file "$2.port" --log "$2" "${@:3}" &
    FAULT_PIDS+=($!)
    RECEIVER_PID=$!
    fault_wait 10 test -s "$2.port" || { echo "receiver did not start" >&2; return 1; }
    RECEIVER_PORT=$(cat "$2.port")
}

fault_stop_pid() {  # fault_stop_pid PID [SIGNAL]
    kill "-${2:-TERM}" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# fault_check NAME CONDITION_STATUS DETAIL: records a failed check.
fault_check() {
    if [[ "$2" != 0 ]]; then
        FAULT_FAILED+=("$1: $3")
        echo "  FAIL $1: $3"
    fi
}

fault_status_lines() {  # fault_status_lines N STATUS
    local i
    for ((i = 0; i < $1; i++)); do
        echo "{\"status\":$2}"
    done
}

# fault_metric_ge PORT NAME MIN: the sample exists and is >= MIN.
fault_metric_ge() {
    local v
    v=$(fault_metric "$1" "$2")
    [[ -n "$v" ]] && awk -v a="$v" -v b="$3" 'BEGIN { exit !(a >= b) }'
}
