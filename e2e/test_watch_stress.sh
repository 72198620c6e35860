#!/usr/bin/env bash
# e2e/test_watch_stress.sh: 1,000 watchers on overlapping ranges (half of
# them replaying from revision 2 while writes go on) over 4 connections and
# 40 streams, while 100,000 puts/deletes/prefix deletes/txns run from 32
# clients; every watcher must receive exactly the events of its range from
# its start revision, in revision order, with the right values and prev_kv,
# none missing or duplicated. The reference history comes from the write
# responses themselves (e2e/watch_stress.go). Prints the throughput.
#
# WATCH_STRESS_OPS overrides the number of writes (default 100000).
# Port: 25040.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=25040
OPS=${WATCH_STRESS_OPS:-100000}
WATCHERS=1000

log "building watch_stress.go"
BIN=$(build_go "$E2E_DIR/watch_stress.go" watch_stress) || die "cannot build watch_stress.go"

start_target stress "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "target did not start"

log "$OPS writes, $WATCHERS watchers"
rc=0
timeout 240 "$BIN" "127.0.0.1:$PORT" "$OPS" "$WATCHERS" >"$E2E_TMP/stress.out" 2>&1 || rc=$?
cat "$E2E_TMP/stress.out"
if [ "$rc" = 0 ]; then
    pass "every watcher saw exactly its events ($OPS writes, $WATCHERS watchers)"
else
    fail "watch stress (rc=$rc)"
fi
if kill -0 "$PID" 2>/dev/null; then
    pass "server alive after the run"
    grep VmHWM "/proc/$PID/status" || true
else
    fail "server died during the run"
    tail -n 20 "$E2E_TMP/stress.log" || true
fi
stop_server "$PID"
finish
