#!/usr/bin/env bash
# e2e/test_auto_compaction.sh: --auto-compaction-mode / --auto-compaction-retention.
#   - revision mode, retention 10 (kshimd checks every 300 ms here instead of
#     etcd's 5 minutes: KSHIM_TEST_AUTO_COMPACT_INTERVAL_MS): after 30 puts
#     the compact revision becomes current - 10; a client's get --rev of an
#     old revision gets etcd's compacted error, the last 10 revisions are
#     served;
#   - periodic mode, retention "2s", against real etcd with the same flags:
#     puts, an idle pause longer than the retention, more puts: right after
#     the second burst nothing newer than the first burst is compacted, and
#     both servers end up compacted at the first burst's last revision (the
#     revision seen one retention ago), with the same error for a get below.
# Polls are bounded (20 s); nothing asserts how fast a compaction happens.
#
# Ports: 25420 (real etcd, peer 25470), 25421 (revision mode), 25422 (periodic)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

compact_rev() { ctl "$1" endpoint hashkv -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["compact_revision"])'; }
revision() { ctl "$1" get nothing -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])'; }
get_rev() { ctl "$1" get k1 --rev "$2" --print-value-only 2>&1 | grep -v '^{"level"'; }
# wait_compact PORT REV: until the compact revision is at least REV (20 s at most)
wait_compact() {
    local i
    for i in $(seq 200); do
        [ "$(compact_rev "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- revision mode ----
KSHIM_TEST_AUTO_COMPACT_INTERVAL_MS=300 start_target kshimd-rev 25421 \
    --auto-compaction-mode revision --auto-compaction-retention 10
REV_PID=$SERVER_PID
wait_ready "$REV_PID" 25421
check_eq "revision mode: nothing compacted before writes" -1 "$(compact_rev 25421)"
for i in $(seq 1 30); do ctl 25421 put k1 "v$i" >/dev/null; done
cur=$(revision 25421)
check_eq "30 puts" 31 "$cur"
if wait_compact 25421 $((cur - 10)); then pass "revision mode compacts"; else fail "revision mode never compacted"; fi
sleep 1 # more checks: the retention holds, nothing beyond current - 10
check_eq "revision mode: compacted at current - retention" $((cur - 10)) "$(compact_rev 25421)"
check_eq "get --rev of an old revision: compacted" \
    "Error: etcdserver: mvcc: required revision has been compacted" "$(get_rev 25421 5)"
check_eq "get --rev of the oldest kept revision" "v$((cur - 10 - 1))" "$(get_rev 25421 $((cur - 10)))"
check_eq "get --rev inside the retention" "v25" "$(get_rev 25421 26)"
grep -q "auto-compaction: proposed compaction at revision $((cur - 10))" "$E2E_TMP/kshimd-rev.log" &&
    pass "the compaction was proposed by the auto-compactor" || fail "no auto-compaction in the log"
stop_server "$REV_PID"

# ---- periodic mode, against real etcd ----
start_etcd etcd-per 25420 --auto-compaction-mode periodic --auto-compaction-retention 2s
ETCD_PID=$SERVER_PID
start_target kshimd-per 25422 --auto-compaction-mode periodic --auto-compaction-retention 2s
PER_PID=$SERVER_PID
wait_ready "$ETCD_PID" 25420
wait_ready "$PER_PID" 25422
for p in 25420 25422; do for i in $(seq 1 20); do ctl $p put k1 "v$i" >/dev/null; done; done
first=$(revision 25422)
check_eq "periodic: same revisions" "$(revision 25420)" "$first"
sleep 3.5 # idle for more than the retention
for p in 25420 25422; do for i in $(seq 21 40); do ctl $p put k1 "v$i" >/dev/null; done; done
for p in 25420 25422; do
    c=$(compact_rev $p)
    check_eq "periodic ($p): nothing newer than one retention ago compacted" 1 "$([ "$c" -le "$first" ] && echo 1)"
done
for p in 25420 25422; do
    if wait_compact $p "$first"; then pass "periodic ($p) compacts"; else fail "periodic ($p) never compacted"; fi
done
check_eq "periodic: the same error below the compacted revision" "$(get_rev 25420 3)" "$(get_rev 25422 3)"
stop_server "$PER_PID"
stop_server "$ETCD_PID"
finish
