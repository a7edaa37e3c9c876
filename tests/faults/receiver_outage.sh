#!/usr/bin/env bash
# Receiver outage during an incident (issue #10): every notification is delivered after
# the receiver comes back, once per Idempotency-Key, from the spool on disk.
#
#   tests/faults/receiver_outage.sh [--build DIR] [--outage-seconds N] [--keep]
#
# The webhook receiver's port is closed (nothing listens) while: a critical rule fires
# (hooks [env, notify]), two warning rules on another source (a critical inhibits
# warnings on its own source) fire (hooks [notify]) and one of them (3 s window) resolves
# — 4 events, 4 Idempotency-Keys. Halfway through the outage the daemon gets SIGKILL and
# is restarted on the same state_dir (the spool must survive it). Then the receiver
# (tests/faults/receiver.py, logging each request's Idempotency-Key) listens again on the
# same port. Checks: while down, the 4 entries sit in state_dir/spool (0600) and the
# rollback's env_file hook ran anyway; after recovery, within spool_max_backoff (4s) plus
# 10 s, exactly 4 distinct keys arrive, each exactly once (no key lost, none twice), for the
# 3 firing and 1 resolved events; each first run made one attempt and returned
# "spooled" (its retries go on in the background), and the spool worker (backoff capped at 4 s) delivers within 7 s; the spool
# empties; the critical rule opened exactly one incident. Default outage 120 s; CI: 15.
# Needs BUILD/rollguard, python3 and curl; loopback only; exit 0 all checks hold, 1 one
# failed (printed), 2 bad usage.
set -euo pipefail

build=build
outage=120
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while (($#)); do
    case "$1" in
        --build) build=${2:?}; shift 2 ;;
        --outage-seconds) outage=${2:?}; shift 2 ;;
        --keep) FAULT_KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "receiver_outage: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ! [[ "$outage" =~ ^[0-9]+$ ]] || ((outage < 8)); then echo "receiver_outage: --outage-seconds wants an integer >= 8" >&2; exit 2; fi

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
fault_need_bins "$build"
trap fault_cleanup EXIT
trap 'exit 1' INT TERM

d=""
fault_tempdir d
rport=$(fault_free_port)
port=$(fault_free_port)
: >"$d/app.log"
: >"$d/api.log"
: >"$d/received.log"
printf 'FEATURE=on\n' >"$d/feature.env"
cat >"$d/rollguard.toml" <<TOML
[agent]
state_dir = "$d/state"
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

[[source]]
name = "api"
type = "json_log"
paths = ["$d/api.log"]
read_from = "beginning"
error = { field = "status", gte = 500 }

[[rule]]
name = "errors-warn"
source = "api"
metric = "error_ratio"
above = 0.3
window = "10m"
severity = "warning"
min_samples = 5
hooks = ["notify"]

[[rule]]
name = "errors-recent"
source = "api"
metric = "error_ratio"
above = 0.3
window = "3s"
severity = "warning"
min_samples = 5
hooks = ["notify"]

[[hook]]
name = "env"
type = "env_file"
path = "$d/feature.env"
set = { FEATURE = "off" }

[[hook]]
name = "notify"
type = "webhook"
url = "http://127.0.0.1:$rport/hook"
format = "json"
timeout = "2s"
retries = 2
retry_backoff = "200ms"
spool_max_backoff = "4s"
TOML

t0=$SECONDS
start_daemon() {
    "$ROLLGUARD" run -c "$d/rollguard.toml" >>"$d/out" 2>>"$d/err$1" &
    daemon=$!
    FAULT_PIDS+=("$daemon")
    fault_wait 10 fault_healthy "$port" || { echo "receiver_outage: daemon did not become healthy" >&2; cat "$d/err$1" >&2; exit 1; }
}
spool_count() { fault_count_files "$d/state/spool" 'notify.*.json' "$@"; }
spool_at_least() { (($(spool_count) >= $1)); }

echo "receiver_outage: receiver down (127.0.0.1:$rport closed) for ${outage}s"
start_daemon 1
fault_status_lines 60 503 >>"$d/app.log"
fault_status_lines 60 503 >>"$d/api.log"
fault_wait 15 spool_at_least 3 || true
fault_expect_value "spool files while down, after the 3 firings" "$(spool_count)" '>=' 3
# errors-recent (3 s window) resolves once its window is empty; the 10-minute windows
# stay breached.
fault_wait 15 spool_at_least 4 || true
fault_expect_value "spool files while down, after 3 firings and 1 resolve" "$(spool_count)" == 4
fault_expect "rollback while the receiver is down" "env file is '$(paste -sd ' ' "$d/feature.env")', want FEATURE=off" \
    grep -q '^FEATURE=off$' "$d/feature.env"
fault_expect_value "spool files not mode 0600" "$(spool_count ! -perm 0600)" == 0

# Halfway: kill -9 and restart; the spool is all that remembers the 4 notifications.
while ((SECONDS - t0 < outage / 2)); do sleep 0.2; done
fault_expect "daemon alive at the kill" "it had exited, want running" kill -0 "$daemon"
fault_stop_pid "$daemon" KILL
start_daemon 2
echo "receiver_outage: daemon killed (-9) and restarted at $((SECONDS - t0))s; $(spool_count) notifications spooled"
while ((SECONDS - t0 < outage)); do sleep 0.2; done
pending_before=$(fault_metric "$port" 'rollguard_hook_spool_pending{hook="notify",type="webhook"}')
[[ -n "$pending_before" ]] || pending_before=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 ~ /^rollguard_hook_spool_pending\{/ && !f { print $2; f = 1 }' || true)

fault_start_receiver "$rport" "$d/received.log"
back=$SECONDS
back_ns=$(date +%s%N)
echo "receiver_outage: receiver back at $((back - t0))s"
distinct() { awk '{ print $2 }' "$d/received.log" | sort -u | wc -l; }
keys_at_least() { (($(distinct) >= $1)); }
fault_wait 14 keys_at_least 4 || true
delivered_ms=$((($(date +%s%N) - back_ns) / 1000000))
delivered_after=$(printf '%d.%03d' $((delivered_ms / 1000)) $((delivered_ms % 1000)))
# Two more spool backoff periods to catch a late duplicate.
sleep 8
fault_expect "daemon alive at its stop" "it had exited, want running" kill -0 "$daemon"
fault_stop_pid "$daemon" TERM

n_keys=$(distinct)
n_req=$(wc -l <"$d/received.log")
fault_expect_value "distinct Idempotency-Keys received" "$n_keys" == 4
fault_expect_value "requests received (once per key: as many as keys)" "$n_req" == "$n_keys"
events=$(awk '{ print $3 "/" $4 }' "$d/received.log" | sort | tr '\n' ' ')
want="errors-recent/firing errors-recent/resolved errors-warn/firing errors/firing "
fault_expect_value "events received (rule/state)" "$events" == "$want"
fault_expect_value "spool files left" "$(spool_count)" == 0
fault_expect_value "incident records" "$(fault_count_files "$d/state/incidents" '*.json')" == 1
attempts=$(grep -ho 'delivered after [0-9]* attempt' "$d"/err* | awk '{ print $3 }' | sort -n | tr '\n' ' ' || true)
ndelivered=$(grep -c 'notification .* delivered after' "$d/err2" || true)
fault_expect_value "'notification ... delivered' log lines" "$ndelivered" == 4
errors_logged=$(grep -c 'FAILED' "$d/err1" || true)
# Each first run made one attempt, then handed the delivery to the hook's delivery thread
# and its spool (the steps after it do not wait for the retries).
in_process=$(grep -c 'not delivered in [0-9]*ms, the next steps go on: .*; spooled, retrying in the background' "$d/err1" || true)
fault_expect_value "runs that made one attempt, then went on in the background (spooled)" "$in_process" == 4
# The spool worker's backoff is capped at 4 s: all delivered within one cap (+3 s slack
# for a loaded machine: the four are sent one after another by one worker).
fault_expect_value "ms from recovery to the last delivery (cap 4 s + 3 s slack)" "$delivered_ms" '<=' 7000

echo
echo "receiver_outage: outage ${outage}s (daemon restarted once during it), then all $n_keys keys delivered ${delivered_after}s after the receiver came back (spool_max_backoff 4s)"
echo "  spool pending before recovery: ${pending_before:-?}; requests received: $n_req for $n_keys keys; attempts per delivery: $attempts"
echo "  hook failures logged while down (first daemon): $errors_logged"
fault_failed_exit receiver_outage
echo "receiver_outage: passed: every notification delivered after recovery, exactly once per Idempotency-Key"
