# shellcheck shell=bash disable=SC2034
# Shared helpers of the fault scripts (tests/faults/*.sh) and of the benchmarks' checks
# (bench/*.sh); sourced, not run.
# Every process started here is remembered in FAULT_PIDS and ended by fault_cleanup.
#
# Checks. The scripts run under `set -euo pipefail`, where `cmd; fault_check NAME $? ...`
# never reaches fault_check when cmd fails: the shell exits at cmd, silently. Every check
# goes through one of these instead; each runs its test in a condition (where set -e does
# not apply) and, when it fails, prints and records "NAME: observed ..., want ...":
#   fault_expect NAME DETAIL CMD...           CMD must succeed; DETAIL says what was seen
#                                             and what was wanted
#   fault_expect_value NAME OBSERVED OP WANT  OP: == != >= > <= < (fault_compare)
#   fault_expect_metric PORT SAMPLE OP WANT [NAME]
#                                             the same on a sample of PORT's /metrics
# They return 0 either way: the script goes on to its other checks and ends with
# fault_failed_exit, which prints every failure again and exits 1.
# Beware of the other silent exits of set -e in a script: `x=$(cmd)` when cmd fails (a
# find on a missing directory, grep with no match, head cutting a pipe: add `|| true`,
# or use fault_count_files), `grep -c` (1 on zero matches) and `((n++))` from 0 (status 1).

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

# fault_wait_ticks PORT N: waits (up to 10 s) until the daemon on PORT ran N more
# evaluation ticks (rollguard_evaluations_total); 1 on timeout. /metrics shows the snapshot
# the daemon takes at the end of each tick (agent/src/daemon/daemon.cpp: the hooks'
# delivery counters are copied into it there), so a counter a hook run changed is
# published within 2 ticks of the run's end (1 tick may be one that read the hooks'
# counters before the run ended).
fault_wait_ticks() {
    local e
    e=$(fault_metric "$1" rollguard_evaluations_total)
    fault_wait 10 fault_metric_ge "$1" rollguard_evaluations_total $((${e:-0} + $2))
}

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

# fault_check NAME STATUS DETAIL: records a failed check when STATUS is not 0. STATUS is a
# computed value ($((a == b ? 0 : 1)), a flag), never a bare `$?` after the tested command:
# see "Checks" above. DETAIL holds the observed and the wanted value.
fault_check() {
    if [[ "$2" != 0 ]]; then
        FAULT_FAILED+=("$1: $3")
        echo "  FAIL $1: $3"
    fi
    return 0
}

# fault_expect NAME DETAIL CMD...: runs CMD; when it fails, records "NAME: DETAIL". DETAIL
# is expanded before CMD runs: it states what was observed and what was wanted.
fault_expect() {
    local name=$1 detail=$2
    shift 2
    if ! "$@"; then
        fault_check "$name" 1 "$detail"
    fi
    return 0
}

# fault_compare OBSERVED OP WANT: true when OBSERVED OP WANT holds. OP is one of
# == != >= > <= <. Two numbers compare as numbers ("1" == "1.0"); otherwise == and !=
# compare strings and the orderings are false (an absent metric is not >= 1).
fault_compare() {
    local num='^[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?$'
    case $2 in
        '==' | '!=' | '>=' | '>' | '<=' | '<') ;;
        *) echo "fault_compare: unknown operator '$2'" >&2; return 2 ;;
    esac
    if [[ "$1" =~ $num && "$3" =~ $num ]]; then
        awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
            a += 0; b += 0
            r = op == "==" ? a == b : op == "!=" ? a != b : op == ">=" ? a >= b : op == ">" ? a > b : op == "<=" ? a <= b : a < b
            exit !r }'
        return
    fi
    case $2 in
        '==') [[ "$1" == "$3" ]] ;;
        '!=') [[ "$1" != "$3" ]] ;;
        *) return 1 ;;
    esac
}

# fault_shown VALUE: VALUE as a check prints it: a number as is, other text quoted,
# nothing as "nothing".
fault_shown() {
    if [[ -z "$1" ]]; then
        echo nothing
    elif [[ "$1" =~ ^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$ ]]; then
        echo "$1"
    else
        echo "'$1'"
    fi
}

# fault_expect_value NAME OBSERVED OP WANT: records "NAME: observed OBSERVED, want OP WANT"
# unless fault_compare OBSERVED OP WANT holds.
fault_expect_value() {
    if ! fault_compare "$2" "$3" "$4"; then
        fault_check "$1" 1 "observed $(fault_shown "$2"), want $3 $(fault_shown "$4")"
    fi
    return 0
}

# fault_expect_metric PORT SAMPLE OP WANT [NAME]: fault_expect_value on the sample's value
# in PORT's /metrics (nothing when the sample is absent); NAME defaults to SAMPLE.
fault_expect_metric() {
    local v
    v=$(fault_metric "$1" "$2")
    fault_expect_value "${5:-$2}" "$v" "$3" "$4"
}

# fault_failed_exit SCRIPT [WHAT]: when a check failed, prints "SCRIPT: FAILED[ WHAT]:" and
# every failure, and exits 1; otherwise returns 0.
fault_failed_exit() {
    if ((${#FAULT_FAILED[@]})); then
        echo "$1: FAILED${2:+ $2}:"
        printf '  %s\n' "${FAULT_FAILED[@]}"
        exit 1
    fi
    return 0
}

# fault_count_files DIR NAME_GLOB [FIND_TESTS...]: how many files under DIR match; 0 when
# DIR does not exist (where `$(find DIR ... | wc -l)` under pipefail ends the script).
fault_count_files() {
    local dir=$1 glob=$2
    shift 2
    { find "$dir" -name "$glob" "$@" 2>/dev/null || true; } | wc -l
}

fault_status_lines() {  # fault_status_lines N STATUS
    local i
    for ((i = 0; i < $1; i++)); do
        echo "{\"status\":$2}"
    done
}

# fault_metric_ge PORT NAME MIN: the sample exists and is >= MIN (a condition, for
# fault_wait; checks use fault_expect_metric).
fault_metric_ge() {
    fault_compare "$(fault_metric "$1" "$2")" '>=' "$3"
}
