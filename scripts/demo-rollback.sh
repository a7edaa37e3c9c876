#!/bin/sh
# The demo's rollback script. rollguard runs it as an argv list (never through a shell
# string) with the breach in ROLLGUARD_* environment variables.
echo "demo-rollback: $* (rule $ROLLGUARD_RULE: $ROLLGUARD_METRIC=$ROLLGUARD_VALUE above $ROLLGUARD_THRESHOLD since $ROLLGUARD_SINCE)"
if [ -n "${DEMO_DIR:-}" ]; then
    {
        echo "argv: $*"
        env | grep '^ROLLGUARD_' | sort
    } > "$DEMO_DIR/script.out"
fi
