#!/usr/bin/env bash
# The rollguard demo, end to end, in under a minute:
#   a canary router writes JSON access logs; a few seconds in it degrades (latency x4,
#   ~8% 5xx). rollguard tails the log, the warning rule notifies, the critical rule goes
#   pending then firing, and the rollback runs: the env file is rewritten, the webhook is
#   POSTed, the script runs. Then a summary of what happened.
# Installs dependencies and builds as needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ROLLGUARD_BUILD_DIR:-"$root/build"}

echo "==> building rollguard (first run installs Debian packages and compiles; later runs are quick)" >&2
# The programs only (the agent, the tools below, the benchmarks), as scripts/test.sh
# builds in build/: the test binaries are compiled by the sanitizer builds.
ROLLGUARD_BUILD_TARGET=rollguard_programs "$root/scripts/build.sh" "$build" >/dev/null

DEMO_DIR=$(mktemp -d /tmp/rollguard-demo.XXXXXX)
export DEMO_DIR
mkdir -p "$DEMO_DIR/logs"
: > "$DEMO_DIR/logs/access.log"
cat > "$DEMO_DIR/router.env" <<'ENV'
# Router settings, owned by the deploy pipeline.
export LOG_FORMAT=json

# The canary: the new router is on.
NEW_ROUTER_ENABLED=1
ROUTER_WORKERS=8
ENV
cp "$DEMO_DIR/router.env" "$DEMO_DIR/router.env.before"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$build/tests/rollguard-webhook_sink" --port-file "$DEMO_DIR/webhook.port" --out "$DEMO_DIR/webhooks.txt" &
pids+=($!)
for _ in $(seq 100); do [ -s "$DEMO_DIR/webhook.port" ] && break; sleep 0.05; done
DEMO_WEBHOOK_PORT=$(cat "$DEMO_DIR/webhook.port")
export DEMO_WEBHOOK_PORT

echo "==> demo directory: $DEMO_DIR; webhook receiver on 127.0.0.1:$DEMO_WEBHOOK_PORT" >&2
echo "==> rollguard run --config config/demo.toml" >&2
"$build/rollguard" run --config "$root/config/demo.toml" 2> "$DEMO_DIR/rollguard.log" &
rollguard_pid=$!
pids+=($rollguard_pid)
tail -n +1 -f "$DEMO_DIR/rollguard.log" --pid "$rollguard_pid" | sed -u 's/^/    rollguard | /' >&2 &
pids+=($!)

"$build/tests/rollguard-loggen" --out "$DEMO_DIR/logs/access.log" --rate 200 --healthy 6 --degraded 30 \
  2> >(sed -u 's/^/    workload  | /' >&2) &
loggen_pid=$!
pids+=($loggen_pid)

# Wait for the rollback (env file rewritten, script ran, webhook received), at most 45 s.
done_ok=0
for _ in $(seq 450); do
  if ! cmp -s "$DEMO_DIR/router.env" "$DEMO_DIR/router.env.before" && [ -s "$DEMO_DIR/script.out" ] \
     && grep -q '/hooks/rollback' "$DEMO_DIR/webhooks.txt" 2>/dev/null; then
    done_ok=1
    break
  fi
  sleep 0.1
done
sleep 1
metrics_port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$DEMO_DIR/rollguard.log" | head -n1 | sed 's/.*://')
status_json=""
if [ -n "$metrics_port" ]; then
  status_json=$(python3 -c "import sys,urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics',timeout=2).read().decode())" 2>/dev/null \
    | grep -E '^rollguard_(rule_state|rule_value|incidents_total|hook_runs_total|source_lines_total)' || true)
fi
kill "$loggen_pid" 2>/dev/null || true
kill -TERM "$rollguard_pid" 2>/dev/null || true
wait "$rollguard_pid" 2>/dev/null || true
sleep 0.2

echo
echo "================================ demo summary ================================"
echo "-- rule timeline (from rollguard's log):"
grep -E ' -> |running hooks|hook .*(ok|FAILED)|latched' "$DEMO_DIR/rollguard.log" | sed 's/^/   /'
echo
echo "-- env file before:"
sed 's/^/   /' "$DEMO_DIR/router.env.before"
echo "-- env file after:"
sed 's/^/   /' "$DEMO_DIR/router.env"
echo
echo "-- webhooks received by 127.0.0.1:$DEMO_WEBHOOK_PORT:"
sed 's/^/   /' "$DEMO_DIR/webhooks.txt" 2>/dev/null || echo "   (none)"
echo "-- rollback script saw:"
sed 's/^/   /' "$DEMO_DIR/script.out" 2>/dev/null || echo "   (script did not run)"
if [ -n "$status_json" ]; then
  echo
  echo "-- /metrics at the end (excerpt):"
  echo "$status_json" | sed 's/^/   /'
fi
echo
echo "-- the incident record (rollguard incidents --config config/demo.toml [ID]):"
incident=$("$build/rollguard" incidents --config "$root/config/demo.toml" 2>/dev/null | awk 'NR==2 {print $1}')
if [ -n "$incident" ]; then
  "$build/rollguard" incidents --config "$root/config/demo.toml" "$incident" 2>/dev/null | sed 's/^/   /'
else
  echo "   (no incident record)"
fi
echo
echo "-- the same log replayed: what rollguard decided, tick by tick, on the lines' own time:"
"$build/rollguard" replay --config "$root/config/demo.toml" --html "$DEMO_DIR/timeline.html" \
  "$DEMO_DIR/logs/access.log" 2>/dev/null | sed -n '/^rule timeline/,$p' | sed 's/^/   /'
echo "   picture: $DEMO_DIR/timeline.html (one self-contained page: each rule's metric, threshold, pending/firing, hooks)"
echo "==============================================================================="
if [ "$done_ok" = 1 ]; then
  echo "demo: the bad canary was rolled back automatically. Files are in $DEMO_DIR"
  exit 0
fi
echo "demo: the rollback did not complete in time; see $DEMO_DIR/rollguard.log" >&2
exit 1
