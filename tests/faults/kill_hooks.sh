#!/usr/bin/env bash
# kill -9 during rollback hooks (issue #10): the incident latch holds, the rollback is
# resumed after the restart, and no hook runs twice except the one that was running.
#
#   tests/faults/kill_hooks.sh [--build DIR] [--trials N] [--seed S] [--keep]
#
# Per trial: a critical error-ratio rule fires with hooks [env (env_file), s1 (script:
# sleeps 0-300 ms at random, appends "start/end s1 PID" to a ledger), hook (webhook to a
# local receiver that logs each Idempotency-Key and answers after 0-150 ms), s2 (like
# s1)]. Once the incident record is on disk the daemon gets SIGKILL after a random 0-500 ms
# (the hooks take ~0-750 ms, so some kills land after the rollback finished, some between
# two hooks); a script it left running is let finish,
# then the daemon restarts on the same state_dir while the breach goes on. Checks: one
# incident record, complete; rollguard_incidents_total 0 after the restart and the latch
# set (no second incident); every hook finished (ok) once; a hook ran twice only when it
# was the one running at the kill (the README's contract); the receiver saw exactly one
# distinct Idempotency-Key; the env file has the rolled-back value.
# Needs BUILD/rollguard, python3 and curl; loopback only; exit 0 all checks hold, 1 one
# failed (printed), 2 bad usage.
set -euo pipefail

build=build
trials=20
seed=$RANDOM
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while (($#)); do
    case "$1" in
        --build) build=${2:?}; shift 2 ;;
        --trials) trials=${2:?}; shift 2 ;;
        --seed) seed=${2:?}; shift 2 ;;
        --keep) FAULT_KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "kill_hooks: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$trials" =~ ^[1-9][0-9]*$ ]] || { echo "kill_hooks: --trials wants a positive integer" >&2; exit 2; }
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "kill_hooks: --seed wants an integer" >&2; exit 2; }

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
fault_need_bins "$build"
trap fault_cleanup EXIT
trap 'exit 1' INT TERM
RANDOM=$seed

work=""
fault_tempdir work
fault_start_receiver 0 "$work/received.log" --delay-ms 150

# The script hook: sleeps 0-300 ms (from /dev/urandom: the daemon's runs are not ours to
# seed), records its start and its end with its pid in the trial's ledger.
cat >"$work/step.sh" <<'SH'
#!/bin/sh
name=$1; ledger=$2
echo "start $name $$" >> "$ledger"
ms=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
ms=$((ms % 301))
sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
echo "end $name $$" >> "$ledger"
SH
chmod +x "$work/step.sh"

declare -A killed_in=()
t0=$SECONDS
for ((trial = 1; trial <= trials; trial++)); do
    d="$work/t$trial"
    mkdir -p "$d"
    : >"$d/app.log"
    : >"$d/ledger"
    printf '# the router\nFEATURE=on\nOTHER=1\n' >"$d/feature.env"
    port=$(fault_free_port)
    cat >"$d/rollguard.toml" <<TOML
[agent]
state_dir = "$d/state"
listen = "127.0.0.1:$port"
tick = "100ms"
checkpoint_interval = "100ms"

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
window = "1m"
severity = "critical"
min_samples = 5
hooks = ["env", "s1", "hook", "s2"]

[[hook]]
name = "env"
type = "env_file"
path = "$d/feature.env"
set = { FEATURE = "off" }

[[hook]]
name = "s1"
type = "script"
command = ["$work/step.sh", "s1", "$d/ledger"]

[[hook]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:$RECEIVER_PORT/t$trial"
format = "json"
retries = 3
retry_backoff = "50ms"

[[hook]]
name = "s2"
type = "script"
command = ["$work/step.sh", "s2", "$d/ledger"]
TOML
    "$ROLLGUARD" run -c "$d/rollguard.toml" >"$d/out1" 2>"$d/err1" &
    daemon=$!
    FAULT_PIDS+=("$daemon")
    fault_wait 10 fault_healthy "$port" ||
        { fault_check "trial $trial" 1 "the daemon did not answer /healthz within 10 s, want healthy"; continue; }
    fault_status_lines 20 503 >>"$d/app.log"
    if ! fault_wait 10 compgen -G "$d/state/incidents/*.json" >/dev/null; then
        fault_check "trial $trial" 1 "no incident record 10 s after the breach, want one"
        fault_stop_pid "$daemon" KILL
        continue
    fi
    delay_ms=$((RANDOM % 501))
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    fault_expect "trial $trial" "the daemon had exited before its SIGKILL, want running" kill -KILL "$daemon"
    wait "$daemon" 2>/dev/null || true
    # The hook running at the kill, as the record on disk says ("-": none, all done).
    running=$(python3 - "$d/state/incidents" <<'PY'
import json, os, sys
d = sys.argv[1]
names = [n for n in os.listdir(d) if n.endswith(".json")]
r = json.load(open(os.path.join(d, names[0])))
run = [h["hook"] for h in r["hooks"] if h["status"] == "running"]
print(run[0] if run else ("-" if r["complete"] else "between"))
PY
) || running="unknown"  # the checks below say why
    killed_in[$running]=$((${killed_in[$running]:-0} + 1))
    # A script left running (its own process group outlives the daemon) finishes first.
    for pid in $(awk '$1 == "start" { s[$3] = 1 } $1 == "end" { delete s[$3] } END { for (p in s) print p }' "$d/ledger"); do
        fault_wait 5 bash -c "! kill -0 $pid 2>/dev/null" || true
    done

    "$ROLLGUARD" run -c "$d/rollguard.toml" >"$d/out2" 2>"$d/err2" &
    daemon=$!
    FAULT_PIDS+=("$daemon")
    fault_wait 10 fault_healthy "$port" || true
    fault_status_lines 20 503 >>"$d/app.log"  # the breach goes on
    record_complete() {
        python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
names = [n for n in os.listdir(d) if n.endswith(".json")]
sys.exit(0 if len(names) == 1 and json.load(open(os.path.join(d, names[0])))["complete"] else 1)
PY
    }
    fault_wait 10 record_complete "$d/state/incidents" || true
    # Ten more ticks of the still-breaching rule: a broken latch would open incident 2.
    fault_wait_ticks "$port" 10 || true
    state=$(fault_metric "$port" 'rollguard_rule_state{group="",rule="errors",severity="critical"}')
    latched=$(fault_metric "$port" 'rollguard_rule_rollback_latched{group="",rule="errors",severity="critical"}')
    opened=$(fault_metric "$port" rollguard_incidents_total)
    fault_expect "trial $trial" "the restarted daemon had exited before its stop, want running" kill -0 "$daemon"
    fault_stop_pid "$daemon" TERM

    # ---- checks ----
    summary=$(python3 - "$d" "$running" "$trial" <<'PY'
import json, os, sys, collections
d, running, trial = sys.argv[1], sys.argv[2], sys.argv[3]
errs = []
names = [n for n in os.listdir(d + "/state/incidents") if n.endswith(".json")]
if len(names) != 1:
    errs.append(f"{len(names)} incident records, want 1")
else:
    r = json.load(open(d + "/state/incidents/" + names[0]))
    if not r["complete"]:
        errs.append("incident record not complete after the restart, want complete")
    runs = {h["hook"]: h["runs"] for h in r["hooks"]}
    for h in r["hooks"]:
        if h["status"] != "ok":
            errs.append(f"hook {h['hook']} {h['status']} ({h['message']}), want ok")
    ends = collections.Counter(l.split()[1] for l in open(d + "/ledger") if l.startswith("end "))
    starts = collections.Counter(l.split()[1] for l in open(d + "/ledger") if l.startswith("start "))
    # The record counts a run when the daemon marks the hook running, just before it
    # starts the process: a kill in between counts a run that never began.
    for s in ("s1", "s2"):
        low = runs.get(s, 0) - (1 if s == running else 0)
        if not (low <= starts[s] <= runs.get(s, 0)):
            errs.append(f"{s}: ledger has {starts[s]} starts, want {low} to {runs.get(s, 0)} (the record's runs)")
    keys = collections.Counter()
    for l in open(os.path.dirname(d) + "/received.log"):
        p = l.split()
        if p[0] == f"/t{trial}":
            keys[p[1]] += 1
    deliveries = sum(keys.values())
    if len(keys) != 1:
        errs.append(f"{len(keys)} distinct Idempotency-Keys at the receiver, want 1")
    # Executions: scripts by their ledger ends, the webhook by deliveries, env by record runs.
    done = {"env": runs.get("env", 0), "s1": ends["s1"], "hook": deliveries, "s2": ends["s2"]}
    twice = [h for h, n in done.items() if n > 1]
    never = [h for h, n in done.items() if n < 1]
    if never:
        errs.append(f"never finished: {never}, want every hook once at least")
    if any(n > 2 for n in done.values()):
        errs.append(f"a hook ran more than twice: {done}, want 2 at most")
    if len(twice) > 1 or (twice and twice[0] != running):
        errs.append(f"ran twice: {twice}, want only the hook running at the kill ({running})")
    env = open(d + "/feature.env").read()
    if env != "# the router\nFEATURE=off\nOTHER=1\n":
        errs.append(f"env file is {env!r}, want FEATURE=off in it, the rest as it was")
    print(("ok" if not errs else "FAIL " + "; ".join(errs)) + f" | runs {done}")
PY
) || summary="FAIL the checker failed (its error above): ${summary:-no output}"
    failed=0
    [[ "$summary" == ok* ]] || failed=1
    [[ "$opened" == 0 ]] || { failed=1; summary+=" | rollguard_incidents_total after restart=$opened (want 0)"; }
    [[ "$latched" == 1 ]] || { failed=1; summary+=" | latched=$latched (want 1)"; }
    [[ "$state" == 2 ]] || { failed=1; summary+=" | rule state=$state (want 2, still firing)"; }
    printf 'trial %2d: kill after %3d ms, running: %-7s %s\n' "$trial" "$delay_ms" "$running" "$summary"
    fault_check "trial $trial" "$failed" "$summary"
done

echo
echo "kill_hooks: $trials trials in $((SECONDS - t0)) s (seed $seed); kill landed in:"
for k in "${!killed_in[@]}"; do
    printf '  %-8s %d\n' "$k" "${killed_in[$k]}"
done
fault_failed_exit kill_hooks "in $trials trials"
echo "kill_hooks: all $trials trials passed: one incident each, latch held, every hook finished, only the interrupted one ran twice, one Idempotency-Key per event"
