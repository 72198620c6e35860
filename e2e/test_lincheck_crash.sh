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
# Port: 26500 (peer 26550 when the target is etcd).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=26500
KILLS=${LINCHECK_KILLS:-5}
RUN_S=${LINCHECK_SECONDS:-20}
LINCHECK=${LINCHECK:-${KSHIM_BUILD:-build}/lincheck}
[ -x "$LINCHECK" ] || die "LINCHECK is not set to the lincheck binary (got '$LINCHECK')"

log "building histclient.go"
BIN=$(build_go "$E2E_DIR/histclient.go" histclient) || die "cannot build histclient.go"

start_target lc "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

HIST=$E2E_TMP/history
STOP=$E2E_TMP/stop
# runs until $STOP exists (600 s at most)
"$BIN" "127.0.0.1:$PORT" 8 8 600 1000 "$HIST" "$E2E_TMP/watch" "$STOP" >"$E2E_TMP/hist.out" 2>"$E2E_TMP/hist.err" &
HC=$!
E2E_PIDS+=("$HC")

# KILLS kills over RUN_S seconds: sleep 0.5..1.5 x the mean interval before
# each, then let the clients run on the last incarnation for a while too
mean=$(awk -v r="$RUN_S" -v k="$KILLS" 'BEGIN { printf "%.2f", r / (k + 1) }')
restarts=0
for k in $(seq "$KILLS"); do
    sleep "$(awk -v s="$RANDOM" -v m="$mean" 'BEGIN { srand(s); printf "%.2f", m * (0.5 + rand()) }')"
    kill -0 "$HC" 2>/dev/null || break
    kill9_server "$PID"
    log "kill -9 #$k ($(wc -l <"$HIST" 2>/dev/null || echo 0) history lines flushed so far)"
    start_target lc "$PORT"
    PID=$SERVER_PID
    wait_ready "$PID" "$PORT" 30 && restarts=$((restarts + 1)) || fail "restart after kill -9 #$k did not come up"
done
check_eq "restarts after $KILLS kill -9" "$KILLS" "$restarts"
sleep "$mean"
touch "$STOP"

rc=0
wait "$HC" || rc=$?
forget_pid "$HC"
cat "$E2E_TMP/hist.out"
check_eq "histclient exit status" 0 "$rc"
grep -v -e "retrying of unary invoker failed" "$E2E_TMP/hist.err" | head -5 >&2 || true

nops=$(grep -vc '^#' "$HIST" || true)
nunknown=$(grep -c ' unknown ?$' "$HIST" || true)
[ "$nops" -ge 1000 ] && pass "history recorded ($nops operations, $nunknown with unknown outcome)" ||
    fail "history too short ($nops operations)"
[ "$nunknown" -ge 1 ] && pass "the crashes were observed ($nunknown operations with unknown outcome)" ||
    fail "no operation had an unknown outcome: were the kills effective?"

# the checker on the recorded history
lrc=0
"$LINCHECK" "$HIST" >"$E2E_TMP/lincheck.out" 2>"$E2E_TMP/lincheck.err" || lrc=$?
cat "$E2E_TMP/lincheck.out" | head -40
cat "$E2E_TMP/lincheck.err"
check_eq "lincheck verdict on the recorded history (0 = linearizable)" 0 "$lrc"
if grep -q "^OK: $nops operations checked on 8 keys$" "$E2E_TMP/lincheck.out"; then
    pass "lincheck: $(cat "$E2E_TMP/lincheck.out")"
else
    fail "lincheck did not print 'OK: $nops operations checked on 8 keys'"
fi

# the watch guarantees (one member for now: ordering, completeness, contents)
if "$PY" "$E2E_DIR/watchcheck.py" --contiguous --history "$HIST" "$E2E_TMP"/watch.* >"$E2E_TMP/watch.out" 2>&1; then
    pass "$(tail -1 "$E2E_TMP/watch.out")"
else
    fail "watch check:"
    cat "$E2E_TMP/watch.out"
fi

# The test can fail: corrupted copies of the history must be rejected.
# corrupt MODE OUT: stale = one get (the last possible) returns the value of
# a completed write w that a completed write x replaced before the get
# began (writes are unique values, so w can never come back); unwritten =
# one get returns a value no op wrote.
corrupt() {
    "$PY" - "$HIST" "$1" "$2" <<'EOF'
import sys
src, mode, out = sys.argv[1:]
lines = open(src).read().splitlines()
ops = []
for i, l in enumerate(lines):
    if l.startswith("#") or not l.strip():
        continue
    f = l.split()
    ops.append((i, f))
def acked_write(f):
    return f[6] != "unknown" and ((f[1] == "put") or (f[1] == "cas" and f[7] == "true"))
pick = None
for i, g in reversed(ops):
    if g[1] != "get" or g[6] == "unknown":
        continue
    if mode == "unwritten":
        pick = (i, "never-written")
        break
    # x: the last write done before the get began; w: the last one done
    # before x began (the freshest value that is certainly stale)
    call = int(g[5])
    writes = sorted((f for _, f in ops if f[2] == g[2] and acked_write(f)), key=lambda f: int(f[6]))
    for x in reversed([x for x in writes if int(x[6]) < call]):
        ws = [w for w in writes if int(w[6]) < int(x[5]) and w[3] != g[7]]
        if ws:
            pick = (i, ws[-1][3])
            break
    if pick:
        break
if not pick:
    sys.exit("no read to corrupt")
i, val = pick
f = lines[i].split()
print("corrupted line %d: %s -> %s" % (i + 1, lines[i], val), file=sys.stderr)
f[7] = val
lines[i] = " ".join(f)
open(out, "w").write("\n".join(lines) + "\n")
EOF
}
for mode in stale unwritten; do
    if ! corrupt "$mode" "$E2E_TMP/history.$mode" 2>"$E2E_TMP/corrupt.$mode"; then
        fail "could not corrupt the history ($mode): $(cat "$E2E_TMP/corrupt.$mode")"
        continue
    fi
    cat "$E2E_TMP/corrupt.$mode"
    crc=0
    "$LINCHECK" "$E2E_TMP/history.$mode" >"$E2E_TMP/lincheck.$mode" 2>&1 || crc=$?
    head -12 "$E2E_TMP/lincheck.$mode"
    check_eq "lincheck rejects the history with one read corrupted ($mode; exit 1)" 1 "$crc"
    grep -q "^VIOLATION on key lc/k" "$E2E_TMP/lincheck.$mode" && pass "violation reported with its window ($mode)" ||
        fail "no VIOLATION line ($mode)"
done

# The watch checker can fail too: a copy without one event (a gap), one
# with an event twice, a second "member" whose stream differs at one
# revision, and one where two PUT events far apart swapped values (the
# revision order then contradicts the acknowledgements' real-time order).
W0=$(ls "$E2E_TMP"/watch.* | head -1)
mkdir -p "$E2E_TMP/bad"
awk 'NR == 100 { next } { print }' "$W0" >"$E2E_TMP/bad/gap"
awk 'NR == 100 { print } { print }' "$W0" >"$E2E_TMP/bad/dup"
awk 'NR == 100 { $4 = "other" } { print }' "$W0" >"$E2E_TMP/bad/differs"
awk '$3 == "PUT" { n++; if (n == 100) a = NR; if (n == 5000) b = NR } { l[NR] = $0 }
     END { split(l[a], x, " "); split(l[b], y, " "); t = x[4]; x[4] = y[4]; y[4] = t
           l[a] = x[1] " " x[2] " " x[3] " " x[4]; l[b] = y[1] " " y[2] " " y[3] " " y[4]
           for (i = 1; i <= NR; i++) print l[i] }' "$W0" >"$E2E_TMP/bad/swapped"
for bad in gap dup; do
    if "$PY" "$E2E_DIR/watchcheck.py" --contiguous "$E2E_TMP/bad/$bad" >"$E2E_TMP/bad/$bad.out" 2>&1; then
        fail "watchcheck accepted a stream with a $bad"
    else
        pass "watchcheck rejects a stream with a $bad: $(head -1 "$E2E_TMP/bad/$bad.out")"
    fi
done
if "$PY" "$E2E_DIR/watchcheck.py" "$W0" "$E2E_TMP/bad/differs" >"$E2E_TMP/bad/differs.out" 2>&1; then
    fail "watchcheck accepted two members with different events"
else
    pass "watchcheck rejects members that differ: $(head -1 "$E2E_TMP/bad/differs.out")"
fi
if "$PY" "$E2E_DIR/watchcheck.py" --history "$HIST" "$E2E_TMP/bad/swapped" >"$E2E_TMP/bad/swapped.out" 2>&1; then
    fail "watchcheck accepted revisions against real time"
else
    pass "watchcheck rejects revisions against real time: $(head -1 "$E2E_TMP/bad/swapped.out")"
fi

stop_server "$PID"
finish
