#!/usr/bin/env bash
# e2e/test_lincheck_crash.sh: a recorded history under crashes is
# linearizable. One member (kshimd; real etcd with KSHIM_E2E_TARGET=etcd)
# serves e2e/histclient.go (8 workers, each with its own client, random
# linearizable get / put / delete / compare-and-set txn on 8 keys, unique
# values, 1 s per-op timeout) for LINCHECK_SECONDS (20) while the member is
# kill -9ed and restarted on the same data dir LINCHECK_KILLS (5) times at
# random moments. Then:
#   - build/lincheck on the history must print "OK: N operations checked on
#     K keys" (operations whose outcome the client could not know are
#     modeled as possibly applied at any point after their invocation);
#   - e2e/watchcheck.py on the recorded watch stream (prefix lc/ from
#     revision 1, resumed by clientv3 across restarts): complete to the head
#     revision, ordered, no duplicates, revisions exactly 2..head, every
#     acknowledged write in it once, nothing in it that no op wrote, and the
#     writes' revisions in real-time order;
#   - the test can fail: copies of the history with one read made stale (it
#     returns a value two completed writes before it replaced) and with one
#     read of a value never written must be reported as violations (exit 1);
#     copies of the watch stream with a gap, a duplicate, a second stream
#     that differs at one revision, and two PUTs' values swapped must be
#     rejected by watchcheck.py.
#
# The recording and checking helpers are in history_lib.sh (for the cluster
# fault tests too).
#
# Port: 26500 (peer 26550 when the target is etcd).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/history_lib.sh"

PORT=26500
KILLS=${LINCHECK_KILLS:-5}
RUN_S=${LINCHECK_SECONDS:-20}

start_target lc "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "target ($KSHIM_E2E_TARGET) did not start"
start_histclient "127.0.0.1:$PORT" 8 8

# KILLS kills over RUN_S seconds: sleep 0.5..1.5 x the mean interval before
# each, then let the clients run on the last incarnation for a while too
mean=$(awk -v r="$RUN_S" -v k="$KILLS" 'BEGIN { printf "%.2f", r / (k + 1) }')
restarts=0
for k in $(seq "$KILLS"); do
    sleep "$(awk -v s="$RANDOM" -v m="$mean" 'BEGIN { srand(s); printf "%.2f", m * (0.5 + rand()) }')"
    kill -0 "$HC_PID" 2>/dev/null || break
    kill9_server "$PID"
    log "kill -9 #$k ($(wc -l <"$HIST" 2>/dev/null || echo 0) history lines flushed so far)"
    start_target lc "$PORT"
    PID=$SERVER_PID
    wait_ready "$PID" "$PORT" 30 && restarts=$((restarts + 1)) || fail "restart after kill -9 #$k did not come up"
done
check_eq "restarts after $KILLS kill -9" "$KILLS" "$restarts"
sleep "$mean"
stop_histclient

check_history 1
check_watch --contiguous
check_checkers_fail

stop_server "$PID"
finish
