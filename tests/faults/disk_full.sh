#!/usr/bin/env bash
# Disk full and read-only state directory (issue #10): the daemon keeps evaluating and
# rolling back, reports the persistence failure (one log line per kind, metrics), and
# recovers when space returns.
#
#   tests/faults/disk_full.sh [--build DIR] [--size 256k] [--keep]
#
# Needs root (mount -t tmpfs); without it prints "skipped: needs root" and exits 77.
# state_dir is a tmpfs of --size. While the daemon runs, the tmpfs is filled with dd, then
# remounted read-only. Meanwhile a critical rule fires: its env_file hook (outside the
# tmpfs) must still roll back and its webhook (to a local receiver) still be delivered.
# Checks while full/read-only: rollguard_evaluations_total rises and /healthz is 200;
# rollguard_state_write_failing{file=checkpoint|rules_state|incident_records} are 1 and
# the *_failures_total counters and rollguard_hook_spool_write_failures_total rise; each
# kind of failure is logged once (not once per tick). After remount rw and rm of the
# filler: the failing gauges go back to 0, checkpoints are written again, the incident
# record (complete, hooks ok) and rules.state appear, "written again" is logged; a
# restarted daemon finds the latch and does not roll back a second time.
# Needs BUILD/rollguard, python3, curl, mount; loopback only; exit 0 all checks hold, 1 one
# failed (printed), 2 bad usage, 77 skipped (not root).
set -euo pipefail

build=build
size=256k
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while (($#)); do
    case "$1" in
        --build) build=${2:?}; shift 2 ;;
        --size) size=${2:?}; shift 2 ;;
        --keep) FAULT_KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "disk_full: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$size" =~ ^[0-9]+[kKmM]?$ ]] || { echo "disk_full: --size wants e.g. 256k" >&2; exit 2; }

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
fault_need_bins "$build"
if [[ $(id -u) != 0 ]]; then
    echo "disk_full: skipped: needs root (mount -t tmpfs for a small state_dir)"
    exit 77
fi

trap fault_cleanup EXIT
trap 'exit 1' INT TERM
d=""
fault_tempdir d
mnt="$d/state"
mkdir -p "$mnt"
FAULT_EXTRA_CLEANUP="mountpoint -q '$mnt' && umount -l '$mnt'"
mount -t tmpfs -o "size=$size,mode=0700" rollguard-fault "$mnt" || { echo "disk_full: cannot mount a tmpfs on $mnt" >&2; exit 1; }

fault_start_receiver 0 "$d/received.log"
port=$(fault_free_port)
: >"$d/app.log"
printf 'FEATURE=on\n' >"$d/feature.env"
cat >"$d/rollguard.toml" <<TOML
[agent]
state_dir = "$mnt"
listen = "127.0.0.1:$port"
tick = "200ms"
checkpoint_interval = "200ms"

[[source]]
name = "app"
type = "json_log"
paths = ["$d/app.log"]
read_from = "beginning"
error = { field = "status", gte = 500 }

[[rule]]
name = "errors"
source = "app"
metric = "error_ratio"
above = 0.5
window = "10m"
severity = "critical"
min_samples = 5
hooks = ["env", "notify"]

[[hook]]
name = "env"
type = "env_file"
path = "$d/feature.env"
set = { FEATURE = "off" }

[[hook]]
name = "notify"
type = "webhook"
url = "http://127.0.0.1:$RECEIVER_PORT/hook"
format = "json"
TOML

metric() { fault_metric "$port" "$1"; }
metric_ge() { fault_metric_ge "$port" "$1" "$2"; }
metric_is() { [[ "$(metric "$1")" == "$2" ]]; }
check_metric() {  # check_metric NAME WANT: equal
    local v
    v=$(metric "$1")
    [[ "$v" == "$2" ]]; fault_check "$1" $? "is '${v}', want $2"
}
t0=$SECONDS
"$ROLLGUARD" run -c "$d/rollguard.toml" >"$d/out" 2>"$d/err" &
daemon=$!
FAULT_PIDS+=("$daemon")
fault_wait 10 fault_healthy "$port" || { echo "disk_full: daemon did not start" >&2; cat "$d/err" >&2; exit 1; }
fault_status_lines 20 200 >>"$d/app.log"
fault_wait 10 metric_ge rollguard_checkpoints_total 1 || true
check_metric 'rollguard_state_write_failing{file="checkpoint"}' 0

echo "disk_full: filling the $size tmpfs"
dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null || true
df -k "$mnt" | tail -1
fault_status_lines 20 200 >>"$d/app.log"  # new data: a checkpoint is due
fault_wait 10 metric_is 'rollguard_state_write_failing{file="checkpoint"}' 1 || true
check_metric 'rollguard_state_write_failing{file="checkpoint"}' 1
evals_full=$(metric rollguard_evaluations_total)

echo "disk_full: breach while the disk is full"
fault_status_lines 60 503 >>"$d/app.log"
fault_wait 10 grep -q '^FEATURE=off$' "$d/feature.env" || true
grep -q '^FEATURE=off$' "$d/feature.env"; fault_check "rollback while full" $? "env file not rolled back: $(cat "$d/feature.env")"
fault_wait 10 bash -c "grep -q ' errors firing' '$d/received.log'" || true
grep -q ' errors firing' "$d/received.log"; fault_check "webhook while full" $? "no delivery at the receiver"
fault_wait 10 metric_is rollguard_incidents_open 0 || true
check_metric rollguard_incidents_total 1
check_metric 'rollguard_state_write_failing{file="incident_records"}' 1
check_metric 'rollguard_state_write_failing{file="rules_state"}' 1
check_metric rollguard_incident_records_unsaved 1
metric_ge rollguard_incident_record_failures_total 1; fault_check incident_record_failures $? "not counted"
metric_ge rollguard_rules_state_failures_total 1; fault_check rules_state_failures $? "not counted"
metric_ge 'rollguard_hook_spool_write_failures_total{hook="notify"}' 1; fault_check spool_write_failures $? "not counted"
n_incident_files=$(find "$mnt/incidents" -name '*.json' 2>/dev/null | wc -l)
fault_check "no record while full" $((n_incident_files == 0 ? 0 : 1)) "$n_incident_files record files on a full disk?"

echo "disk_full: remount read-only"
mount -o remount,ro "$mnt"
fault_status_lines 20 503 >>"$d/app.log"
evals_ro=$(metric rollguard_evaluations_total)
fault_wait 10 metric_ge rollguard_evaluations_total $((evals_ro + 10)) || true
evals_ro_end=$(metric rollguard_evaluations_total)
fault_check "evaluating while full/read-only" $((evals_ro_end > evals_full ? 0 : 1)) "evaluations $evals_full -> $evals_ro_end"
fault_healthy "$port"; fault_check "healthz while read-only" $? "not 200"
check_metric 'rollguard_state_write_failing{file="checkpoint"}' 1
kill -0 "$daemon" 2>/dev/null; fault_check "daemon alive" $? "the daemon died"

# One log line per kind for the whole outage (ENOSPC then EROFS), not one per tick.
count() { grep -c -- "$1" "$d/err" || true; }
for pattern in 'checkpoint: .*retried every' 'rules state: .*not persisted' 'cannot write its record' 'cannot write spool entry'; do
    n=$(count "$pattern")
    fault_check "logged once: $pattern" $((n == 1 ? 0 : 1)) "$n lines"
done

echo "disk_full: space returns (remount rw, rm filler)"
t_back=$SECONDS
mount -o remount,rw "$mnt"
rm -f "$mnt/filler"
fault_status_lines 20 503 >>"$d/app.log"
fault_wait 10 bash -c "[ \"\$(curl -sf http://127.0.0.1:$port/metrics | grep -c '^rollguard_state_write_failing{.*} 0')\" = 3 ]" || true
recovered_in=$((SECONDS - t_back))
check_metric 'rollguard_state_write_failing{file="checkpoint"}' 0
check_metric 'rollguard_state_write_failing{file="rules_state"}' 0
check_metric 'rollguard_state_write_failing{file="incident_records"}' 0
check_metric rollguard_incident_records_unsaved 0
metric_ge rollguard_last_checkpoint_timestamp_seconds 1; fault_check "checkpoint after recovery" $? "no checkpoint timestamp"
[[ -s "$mnt/rules.state" ]]; fault_check "rules.state written" $? "missing"
complete=$(python3 - "$mnt/incidents" <<'PY'
import json, os, sys
d = sys.argv[1]
names = [n for n in os.listdir(d) if n.endswith(".json")] if os.path.isdir(d) else []
ok = len(names) == 1 and all(
    (r := json.load(open(os.path.join(d, names[0]))))["complete"] and all(h["status"] == "ok" and h["runs"] == 1 for h in r["hooks"])
    for _ in [0])
print("ok" if ok else f"{len(names)} records")
PY
)
[[ "$complete" == ok ]]; fault_check "incident record after recovery" $? "$complete"
for pattern in 'checkpoint: written again' 'rules state: written again' 'incident records: written again'; do
    n=$(count "$pattern")
    fault_check "logged: $pattern" $((n == 1 ? 0 : 1)) "$n lines"
done
ck_fail=$(metric rollguard_checkpoint_failures_total)
ck_ok=$(metric rollguard_checkpoints_total)
rs_fail=$(metric rollguard_rules_state_failures_total)
ir_fail=$(metric rollguard_incident_record_failures_total)
sp_fail=$(metric 'rollguard_hook_spool_write_failures_total{hook="notify"}')
evals_end=$(metric rollguard_evaluations_total)
kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true

# The latch reached the disk: a restart with the breach still in the window does not roll back again.
printf 'FEATURE=on\n' >"$d/feature.env"
"$ROLLGUARD" run -c "$d/rollguard.toml" >"$d/out2" 2>"$d/err2" &
daemon=$!
FAULT_PIDS+=("$daemon")
fault_wait 10 fault_healthy "$port" || true
fault_status_lines 20 503 >>"$d/app.log"
e=$(metric rollguard_evaluations_total)
fault_wait 10 metric_ge rollguard_evaluations_total $((${e:-0} + 10)) || true
check_metric rollguard_incidents_total 0
grep -q '^FEATURE=on$' "$d/feature.env"; fault_check "latch after restart" $? "rolled back again"
kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true

echo
echo "disk_full: tmpfs $size; full then read-only for $((t_back - t0))s in all; recovered in ${recovered_in}s"
echo "  evaluations: $evals_full when full -> $evals_ro_end read-only -> $evals_end at the end"
echo "  failed writes: checkpoint $ck_fail (checkpoints written: $ck_ok), rules_state $rs_fail, incident records $ir_fail, spool $sp_fail"
echo "  error lines logged while failing: $(grep -c '^[^ ]* error ' "$d/err" || true) (the rest of the log: $(wc -l <"$d/err") lines)"
if ((${#FAULT_FAILED[@]})); then
    echo "disk_full: FAILED:"
    printf '  %s\n' "${FAULT_FAILED[@]}"
    exit 1
fi
echo "disk_full: passed: kept evaluating and rolling back while full/read-only, one error per kind, recovered"
