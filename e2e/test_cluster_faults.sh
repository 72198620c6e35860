#!/usr/bin/env bash
# e2e/test_cluster_faults.sh: a 3-member kshimd cluster stays linearizable
# under faults (issue 8). Every member runs in a network namespace of its
# own (e2e/netns_lib.sh: peer and client links on two bridges in a hub
# namespace). e2e/histclient.go (9 workers, 3 per member, 8 keys, 1 s
# per-op timeout, a watch on every member) runs through ALL three members'
# client URLs during the whole test while the script, in order:
#   1. kill -9s the leader (found with `etcdctl endpoint status -w json`),
#      waits for a new one among the other two, restarts it (it usually gets
#      a snapshot while replaying its WAL at start: the regression test of
#      the start-up install that waited 60 s for the idle loop, fail-stop);
#   2. partitions the leader (its peer link down; clients still reach it),
#      waits for the majority to elect another, checks that a write and a
#      linearizable read through the cut-off member fail, heals;
#   3. removes a follower (member remove: it exits), wipes its data dir, adds
#      it again (member add, started with --initial-cluster-state existing);
#   4. stops a follower, writes 1500 keys (outside the checked keys) so the
#      leader's log moves past it, restarts it: it must catch up from a
#      snapshot ("installed the snapshot" in its log);
#   5. (after the history is recorded, idle) partitions the leader, has it
#      append 5 writes it cannot replicate, kill -9s it once the others
#      elected a leader (a shorter log), heals and restarts it: it must
#      serve without any further write;
# then: lincheck on the whole history prints OK with the number of
# operations, watchcheck: every member's watch stream complete, ordered,
# no gaps or duplicates, the same events everywhere, acknowledged writes in
# real-time order; check_checkers_fail: corrupted copies are rejected. A
# summary line gives ops checked, unknown ops, kills, partitions and leader
# changes. Needs root (network namespaces). KSHIM_E2E_TARGET=etcd runs the
# same against real etcd 3.4.
set -euo pipefail
# The whole test runs in the hub namespace (clients, etcdctl, histclient).
source "$(dirname "$0")/netns_lib.sh"
net_reexec_in_hub "kf" "$@"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/history_lib.sh"
trap 'e2e_cleanup; net_down' EXIT

KIND=$KSHIM_E2E_TARGET
ALL="1 2 3"
KILLS=0 PARTITIONS=0 CHANGES=0 LEADER=""

# note_leader L: count a leader change.
note_leader() {
    [ -n "$LEADER" ] && [ "$1" != "$LEADER" ] && CHANGES=$((CHANGES + 1))
    LEADER=$1
    log "leader: m$1 (changes so far: $CHANGES)"
}

# all_alive STEP: every member still runs, else the test ends here (a member
# that stopped by itself is a bug; its log tail is shown).
all_alive() {
    local i
    for i in $ALL; do
        kill -0 "${MPID[$i]}" 2>/dev/null && continue
        fail "after $1: member m$i is not running; its log ends:"
        tail -8 "$E2E_TMP/$KIND-m$i.log" | cut -c1-300
        finish
    done
}

others() { local i; for i in $ALL; do [ "$i" = "$1" ] || printf '%s ' "$i"; done; }

# wait_caught_up I L: member I reaches the revision member L has now (serializable reads).
rev_of() { hctl "$1" get lc/k0 --consistency=s -w json 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])' 2>/dev/null || echo -1; }
wait_caught_up() {
    local deadline=$((SECONDS + 30)) target r
    target=$(rev_of "$2")
    until r=$(rev_of "$1") && [ "$target" -ge 0 ] && [ "$r" -ge "$target" ]; do
        [ $SECONDS -lt $deadline ] || {
            fail "m$1 did not catch up with m$2 (revision $r, m$2 had $target)"
            return 0
        }
        [ "$target" -ge 0 ] || target=$(rev_of "$2")
        sleep 0.3
    done
    pass "m$1 caught up with m$2 (revision $r >= $target)"
}

net_up 3
for i in $ALL; do member_start "$KIND" "$i" new; done
for i in $ALL; do member_ready "$i" 30 || die "member $i did not start"; done
l=$(wait_leader "$ALL" 20) || die "no leader"
note_leader "$l"

start_histclient "$(member_url 1),$(member_url 2),$(member_url 3)" 9 8
sleep 3

log "== 1. kill -9 the leader m$LEADER"
old=$LEADER
kill9_server "${MPID[$old]}"
KILLS=$((KILLS + 1))
l=$(wait_leader "$(others "$old")" 20) && pass "a new leader after kill -9 (m$l)" || fail "no new leader after kill -9"
[ -n "$l" ] && note_leader "$l"
sleep 2
member_start "$KIND" "$old" new
member_ready "$old" 30 && pass "killed member restarted" || fail "killed member restarted"
wait_caught_up "$old" "$LEADER"
sleep 2
all_alive "the kill -9 of the leader"

log "== 2. partition the leader m$LEADER"
old=$LEADER
partition "$old"
PARTITIONS=$((PARTITIONS + 1))
l=$(wait_leader "$(others "$old")" 20) && pass "the majority elected a new leader (m$l)" ||
    fail "no new leader in the majority"
[ -n "$l" ] && note_leader "$l"
# The cut-off member must not take a write or serve a linearizable read.
if hctl "$old" put lc/partitioned x >/dev/null 2>&1; then
    fail "the partitioned old leader accepted a write"
else
    pass "the partitioned old leader refuses a write"
fi
if hctl "$old" get lc/k0 >/dev/null 2>&1; then
    fail "the partitioned old leader served a linearizable read"
else
    pass "the partitioned old leader refuses a linearizable read"
fi
sleep 2
heal "$old"
l=$(wait_leader "$ALL" 20) && pass "one leader after healing (m$l)" || fail "no common leader after healing"
[ -n "$l" ] && note_leader "$l"
wait_caught_up "$old" "$LEADER"
all_alive "the partition"

log "== 3. remove a follower, wipe it, add it again"
f=$(others "$LEADER" | awk '{print $1}')
fid=$(hctl "$LEADER" member list -w json | "$PY" -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    if m.get("name") == "m'"$f"'": print("%x" % m["ID"])')
hctl "$LEADER" member remove "$fid" && pass "member remove m$f" || fail "member remove m$f"
deadline=$((SECONDS + 20))
while kill -0 "${MPID[$f]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
if kill -0 "${MPID[$f]}" 2>/dev/null; then
    fail "the removed member did not exit"
    kill9_server "${MPID[$f]}"
else
    pass "the removed member exited"
    wait "${MPID[$f]}" 2>/dev/null || true
    forget_pid "${MPID[$f]}"
fi
rm -rf "$E2E_TMP/$KIND-m$f.data"
# strict reconfig check: the voters must have been connected for 5 s
deadline=$((SECONDS + 30))
until hctl "$LEADER" member add "m$f" --peer-urls "http://10.77.1.$f:2380" >"$E2E_TMP/add.out" 2>&1; do
    [ $SECONDS -lt $deadline ] || break
    sleep 1
done
grep -q 'added to cluster' "$E2E_TMP/add.out" && pass "member add m$f" || { fail "member add m$f"; cat "$E2E_TMP/add.out"; }
member_start "$KIND" "$f" existing
member_ready "$f" 30 && pass "re-added member started" || fail "re-added member started"
wait_caught_up "$f" "$LEADER"
l=$(wait_leader "$ALL" 20) && note_leader "$l"
all_alive "the remove and re-add"

log "== 4. stop a follower, write past its log, restart it (snapshot catch-up)"
f=$(others "$LEADER" | awk '{print $2}')
stop_server "${MPID[$f]}"
wait_member_forgotten
w=$(others "$f" | awk '{print $1}')
hub "$PY" -c "
import etcd3, sys, time
c = etcd3.client(host='10.77.2.$w', port=2379, timeout=2)
deadline = time.time() + 60
for i in range(1500):
    while True:
        try:
            c.put('bulk/%04d' % i, 'v%d' % i)
            break
        except Exception:
            if time.time() > deadline: sys.exit('bulk writes: no progress')
" && pass "1500 writes while m$f is down" || fail "bulk writes while m$f is down"
logline=$(wc -l <"$E2E_TMP/$KIND-m$f.log")
member_start "$KIND" "$f" new
member_ready "$f" 30 && pass "stopped member restarted" || fail "stopped member restarted"
wait_caught_up "$f" "$LEADER"
if [ "$KIND" = kshimd ]; then
    # One snapshot, then appends: the leader keeps the entries after the
    # snapshot while it is in flight (before, under the history client's
    # writes it sent one after another, and a slow member never caught up).
    check_eq "m$f caught up from one snapshot" 1 \
        "$(tail -n +$((logline + 1)) "$E2E_TMP/$KIND-m$f.log" | grep -c 'installed the snapshot')"
fi
check_eq "m$f holds the bulk keys" 1500 "$(hctl "$f" get bulk/ --prefix --keys-only --consistency=s | grep -c '^bulk/')"
sleep 2
l=$(wait_leader "$ALL" 20) && note_leader "$l"
all_alive "the snapshot catch-up"

stop_histclient
check_history 1
check_watch
check_checkers_fail

log "== 5. idle cluster: a leader with entries the others never got restarts"
# The leader is partitioned and appends writes it cannot replicate, the
# others elect a leader (a shorter log), the old one is killed, healed and
# restarted: with no more writes it must still start serving (its WAL ends
# past anything the cluster will commit).
l=$(wait_leader "$ALL" 20) && note_leader "$l"
partition "$l"
PARTITIONS=$((PARTITIONS + 1))
puts=()
for k in 1 2 3 4 5; do
    hctl "$l" put "idle/k$k" v >/dev/null 2>&1 &
    puts+=($!)
done
n=$(wait_leader "$(others "$l")" 20) && pass "the two others elected m$n" || fail "no leader among the two others"
[ -n "$n" ] && note_leader "$n"
for p in "${puts[@]}"; do wait "$p" || true; done
kill9_server "${MPID[$l]}"
KILLS=$((KILLS + 1))
heal "$l"
member_start "$KIND" "$l" new
member_ready "$l" 20 && pass "the old leader serves again with no further writes" ||
    fail "the old leader did not start serving (its WAL ends past the cluster's log)"
check_eq "a write through it" OK "$(hctl "$l" put idle/after v 2>&1)"

nops=$(grep -vc '^#' "$HIST" || true)
nunknown=$(grep -c ' unknown ?$' "$HIST" || true)
echo "SUMMARY: $nops ops checked, $nunknown unknown, $KILLS kills, $PARTITIONS partitions," \
    "$CHANGES leader changes, 1 remove/re-add, 1 snapshot catch-up"
for i in $ALL; do stop_server "${MPID[$i]}"; done
finish
