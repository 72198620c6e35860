#!/usr/bin/env bash
# e2e/test_overload.sh: bounded queues under a write storm (issue 7). kshimd
# runs with a tiny in-flight bound (--max-pending-proposals 16, a kshim
# extension; etcd's bound is 5000 committed-but-unapplied entries) and
# e2e/overload.go runs 5,000 concurrent writers over 8 connections, each
# doing 3 Puts in a row (15,000 proposals, 5,000 in flight at a time), while a
# separate client keeps doing Range and Put on its own connection and
# etcdctl puts run in a loop. Checked
# (no timing assertions): every Put either succeeds or gets etcd's
# ErrTooManyRequests (ResourceExhausted "etcdserver: too many requests", as
# clientv3 sees it), some of each; every success is readable at its
# acknowledged revision and no refused key is stored; the separate client is
# answered throughout; kshimd's peak RSS (VmHWM) stays under 512 MiB; every
# etcdctl put either succeeds or prints "Error: etcdserver: too many
# requests". Numbers (refused, refusal latency, RSS) are printed for the report.
#
# Port: 25320.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=25320
N=${OVERLOAD_N:-5000}
CONNS=${OVERLOAD_CONNS:-8}
ROUNDS=${OVERLOAD_ROUNDS:-3}
[ "$KSHIM_E2E_TARGET" = kshimd ] || { echo "kshimd only (--max-pending-proposals)"; echo "1 passed, 0 failed"; exit 0; }

log "building overload.go"
BIN=$(build_go "$E2E_DIR/overload.go" overload) || die "cannot build overload.go"

start_kshimd ovl "$PORT" --max-pending-proposals 16
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not start"
rss() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$PID/status"; }
log "before the storm: VmRSS $(rss VmRSS) kB, VmHWM $(rss VmHWM) kB"

RC=0
"$BIN" "127.0.0.1:$PORT" "$N" "$CONNS" "$ROUNDS" >"$E2E_TMP/overload.out" 2>"$E2E_TMP/overload.err" &
OVL=$!
E2E_PIDS+=("$OVL")
# etcdctl during the storm: each put succeeds or is refused with etcd's text
CTL_OK=0
CTL_REFUSED=0
CTL_OTHER=0
i=0
while kill -0 "$OVL" 2>/dev/null; do
    i=$((i + 1))
    if out=$(ctl "$PORT" put "ctl/$i" v 2>&1); then
        CTL_OK=$((CTL_OK + 1))
    elif [ "${out##*$'\n'}" = "Error: etcdserver: too many requests" ]; then   # last line (after clientv3's warnings)
        CTL_REFUSED=$((CTL_REFUSED + 1))
    else
        CTL_OTHER=$((CTL_OTHER + 1))
        echo "etcdctl: $out" >&2
    fi
done
wait "$OVL" || RC=$?
forget_pid "$OVL"
cat "$E2E_TMP/overload.out"
# clientv3 logs every refused attempt as a warning: show only the rest
grep -v -e "retrying of unary invoker failed" "$E2E_TMP/overload.err" | head -20 >&2 || true
check_eq "overload.go invariants (see FAIL lines above)" 0 "$RC"
echo "etcdctl during the storm: $CTL_OK ok, $CTL_REFUSED 'Error: etcdserver: too many requests', $CTL_OTHER other"
check_eq "etcdctl puts during the storm: OK or too many requests" 0 "$CTL_OTHER"
HWM=$(rss VmHWM)
echo "kshimd after the storm: VmRSS $(rss VmRSS) kB, VmHWM $HWM kB"
if [ "$HWM" -lt $((512 * 1024)) ]; then
    pass "peak RSS bounded ($HWM kB < 512 MiB)"
else
    fail "peak RSS $HWM kB"
fi
check_eq "the member still serves after the storm" "v" "$(ctl "$PORT" put after v >/dev/null && ctl "$PORT" get after --print-value-only)"
grep -a -E "too many|stopping|fail" "$E2E_TMP/ovl.log" | head -5 || true
stop_server "$PID"
finish
