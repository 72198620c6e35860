#!/usr/bin/env bash
# e2e/test_crash_safety.sh: acknowledged writes survive kill -9.
# Starts the target (kshimd; a real etcd with KSHIM_E2E_TARGET=etcd), runs
# crash_writer.py (sequential puts, each acknowledged put logged with its
# header revision and flushed), kills the server with SIGKILL at random
# moments (KILLS times, every 0.3-1.5 s), restarts it on the same data dir,
# then checks with `crash_writer.py verify` that every acknowledged put is
# present with the acknowledged mod_revision, revisions strictly increase
# with no gaps between consecutive acknowledged puts, and the store revision
# accounts for exactly the keys present. Spot-checks a few keys through
# etcdctl -w json as well.
#
# Port: 23908 (peer 23958 when the target is etcd).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=23908
KILLS=${KILLS:-8}
ACKLOG=$E2E_TMP/acks.txt
STOP=$E2E_TMP/stop

start_target crash "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

"$PY" "$E2E_DIR/crash_writer.py" write "$PORT" "$ACKLOG" "$STOP" >"$E2E_TMP/writer.out" 2>&1 &
WRITER=$!
E2E_PIDS+=("$WRITER")

acks() { grep -c '^ack' "$ACKLOG" 2>/dev/null || true; }

restarts_ok=0
for k in $(seq "$KILLS"); do
    sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 1.2 }')"
    before=$(acks)
    kill9_server "$PID"
    log "kill -9 #$k after $before acks"
    start_target crash "$PORT"
    PID=$SERVER_PID
    if wait_ready "$PID" "$PORT" 30; then
        restarts_ok=$((restarts_ok + 1))
    else
        fail "restart #$k did not come up"
        break
    fi
done
check_eq "restarts after kill -9" "$KILLS" "$restarts_ok"

# Let the writer make progress on the last incarnation, then stop it.
sleep 1
touch "$STOP"
wait_deadline=$((SECONDS + 20))
while kill -0 "$WRITER" 2>/dev/null && [ $SECONDS -lt $wait_deadline ]; do sleep 0.1; done
if kill -0 "$WRITER" 2>/dev/null; then
    fail "writer did not stop"
    kill -9 "$WRITER" 2>/dev/null || true
fi
wait "$WRITER" 2>/dev/null || true
forget_pid "$WRITER"
cat "$E2E_TMP/writer.out"

# One more crash right after the last write, so the final state comes from
# recovery too.
kill9_server "$PID"
start_target crash "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" 30 || die "final restart did not come up"

n=$(acks)
[ "$n" -ge 50 ] && pass "writer made progress ($n acknowledged puts)" ||
    fail "writer made too little progress ($n acknowledged puts)"
nfail=$(grep -c '^fail' "$ACKLOG" || true)
[ "$nfail" -ge 1 ] && pass "crashes were observed by the writer ($nfail failed puts)" ||
    fail "no put ever failed: were the kills effective?"

if "$PY" "$E2E_DIR/crash_writer.py" verify "$PORT" "$ACKLOG" >"$E2E_TMP/verify.out" 2>&1; then
    pass "verify: every acknowledged put durable"
else
    fail "verify found problems"
fi
cat "$E2E_TMP/verify.out"

# Independent spot check through etcdctl for the first, a middle and the last ack.
for line in "$(grep '^ack' "$ACKLOG" | head -1)" \
    "$(grep '^ack' "$ACKLOG" | sed -n "$(((n + 1) / 2))p")" \
    "$(grep '^ack' "$ACKLOG" | tail -1)"; do
    read -r _ i rev <<<"$line"
    got=$(ctl "$PORT" get "crash/$(printf %06d "$i")" -w json | grep -o '"mod_revision":[0-9]*' | cut -d: -f2)
    check_eq "etcdctl sees crash/$i at mod_revision $rev" "$rev" "$got"
done
finish
