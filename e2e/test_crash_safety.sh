#!/usr/bin/env bash
# e2e/test_crash_safety.sh: acknowledged writes survive kill -9.
# Starts the target (kshimd; a real etcd with KSHIM_E2E_TARGET=etcd) and
# runs crash_writer.py writers that log every acknowledged put with its
# header revision (flushed per ack), while the server is killed with SIGKILL
# at random moments (every 0.3-1.5 s) and restarted on the same data dir:
#   phase 1: one sequential writer alone, KILLS_ALONE kills (default 5);
#   phase 2: three concurrent writers (group commit), KILLS_SHARED kills
#            (default 4);
# then one last kill -9 + restart, so the final state comes from recovery.
# `crash_writer.py verify` then checks every acknowledged put is present
# with the acknowledged mod_revision, revisions strictly increase per
# writer with no gaps between consecutive acked puts of the lone writer,
# and the keys' revisions are exactly 2..store revision (nothing lost,
# nothing applied twice). Spot-checks a few keys through etcdctl -w json.
#
# Port: 23908 (peer 23958 when the target is etcd).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=23908
KILLS_ALONE=${KILLS_ALONE:-5}
KILLS_SHARED=${KILLS_SHARED:-4}
STOP=$E2E_TMP/stop
WRITERS=()

start_target crash "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

# start_writer PREFIX MODE: background writer logging to $E2E_TMP/acks.<n>
start_writer() {
    local log=$E2E_TMP/acks.$((${#WRITERS[@]} + ${WRITERS_DONE:-0}))
    "$PY" "$E2E_DIR/crash_writer.py" write "$PORT" "$1" "$2" "$log" "$STOP" \
        >>"$E2E_TMP/writer.out" 2>&1 &
    WRITERS+=($!)
    E2E_PIDS+=($!)
}

# stop_writers: let them make progress on this incarnation, then stop them.
stop_writers() {
    local w deadline
    sleep 1
    touch "$STOP"
    deadline=$((SECONDS + 20))
    for w in "${WRITERS[@]}"; do
        while kill -0 "$w" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if kill -0 "$w" 2>/dev/null; then
            fail "writer $w did not stop"
            kill -9 "$w" 2>/dev/null || true
        fi
        wait "$w" 2>/dev/null || true
        forget_pid "$w"
    done
    WRITERS_DONE=$((${WRITERS_DONE:-0} + ${#WRITERS[@]}))
    WRITERS=()
    rm -f "$STOP"
}

acks() { cat "$E2E_TMP"/acks.* 2>/dev/null | grep -c '^ack' || true; }

# crash_loop N: N times: random sleep, kill -9, restart, wait until ready.
crash_loop() {
    local k ok=0
    for k in $(seq "$1"); do
        sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 1.2 }')"
        kill9_server "$PID"
        log "kill -9 after $(acks) acks"
        start_target crash "$PORT"
        PID=$SERVER_PID
        if wait_ready "$PID" "$PORT" 30; then
            ok=$((ok + 1))
        else
            fail "restart after kill -9 did not come up"
            return 0
        fi
    done
    check_eq "restarts after $1 kill -9" "$1" "$ok"
}

start_writer crash/s/ alone
crash_loop "$KILLS_ALONE"
stop_writers

for w in 0 1 2; do start_writer "crash/c$w/" shared; done
crash_loop "$KILLS_SHARED"
stop_writers
cat "$E2E_TMP/writer.out"

kill9_server "$PID"
start_target crash "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" 30 || die "final restart did not come up"

n=$(acks)
[ "$n" -ge 100 ] && pass "writers made progress ($n acknowledged puts)" ||
    fail "writers made too little progress ($n acknowledged puts)"
nfail=$(cat "$E2E_TMP"/acks.* | grep -c '^fail' || true)
[ "$nfail" -ge 1 ] && pass "crashes were observed by the writers ($nfail failed puts)" ||
    fail "no put ever failed: were the kills effective?"

if "$PY" "$E2E_DIR/crash_writer.py" verify "$PORT" "$E2E_TMP"/acks.* >"$E2E_TMP/verify.out" 2>&1; then
    pass "verify: every acknowledged put durable"
else
    fail "verify found problems"
fi
cat "$E2E_TMP/verify.out"

# Independent spot check through etcdctl: first, middle and last ack of the
# lone writer.
alone=$E2E_TMP/acks.0
na=$(grep -c '^ack' "$alone" || true)
for line in "$(grep '^ack' "$alone" | head -1)" \
    "$(grep '^ack' "$alone" | sed -n "$(((na + 1) / 2))p")" \
    "$(grep '^ack' "$alone" | tail -1)"; do
    read -r _ key rev <<<"$line"
    got=$(ctl "$PORT" get "$key" -w json | grep -o '"mod_revision":[0-9]*' | cut -d: -f2)
    check_eq "etcdctl sees $key at mod_revision $rev" "$rev" "$got"
done
finish
