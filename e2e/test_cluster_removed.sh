#!/usr/bin/env bash
# e2e/test_cluster_removed.sh: a member removed while it is partitioned
# learns it was removed once it can reach the others again, and stops by
# itself, as etcd (issue 8). etcd's peers answer a removed member's
# messages with 410 Gone and it stops with "the member has been permanently
# removed from the cluster"; kshimd's peers refuse its HELLO with status
# REMOVED (raft/peer/). Every member runs in a network namespace of its own
# (e2e/netns_lib.sh). In order:
#   1. three members; a key written through all of them;
#   2. a follower F is partitioned (its peer link down; clients still reach
#      it), killed (-9) and started again while cut off, so that the leader's
#      last messages, queued on the old connection, can never reach it: it
#      can learn its removal only from a peer's refusal. It is removed with
#      `member remove` through the majority, which then writes a newer value
#      of the key; F, cut off, still runs and never serves a linearizable
#      read (it has no leader);
#   3. the link is healed: F must stop by itself within a few seconds with
#      etcd's text in its log, and while it still runs every linearizable
#      read through it fails or returns the newer value (never the stale
#      view); the majority lists two members and takes writes;
#   4. F restarted on its data dir (which never applied its removal) stops
#      again by itself, with the same text.
# Needs root (network namespaces). KSHIM_E2E_TARGET=etcd runs the same
# against real etcd 3.4. E2E_NETNS_PREFIX names the namespaces (default kr).
set -euo pipefail
# The whole test runs in the hub namespace (etcdctl).
source "$(dirname "$0")/netns_lib.sh"
net_reexec_in_hub "${E2E_NETNS_PREFIX:-kr}" "$@"
source "$(dirname "$0")/lib.sh"
trap 'e2e_cleanup; net_down' EXIT

KIND=$KSHIM_E2E_TARGET
ALL="1 2 3"
STOP_WITHIN=10 # seconds after the heal
TEXT="the member has been permanently removed from the cluster"

others() { local i; for i in $ALL; do [ "$i" = "$1" ] || printf '%s ' "$i"; done; }

# value_at I [serializable]: the value of rm/k read through member I, "ERR" if the read fails.
value_at() {
    local out
    if out=$(hctl "$1" get rm/k --print-value-only --command-timeout=1s ${2:+--consistency=s} 2>/dev/null); then
        echo "$out"
    else
        echo ERR
    fi
}

# wait_exit I SECONDS: 0 once member I's process is gone (reaped), 1 if it still runs.
# Meanwhile every linearizable read through it must not see the stale value.
STALE=0 READS=0
wait_exit() {
    local i=$1 deadline=$((SECONDS + $2)) v
    while kill -0 "${MPID[$i]}" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        v=$(value_at "$i")
        READS=$((READS + 1))
        [ "$v" = v1 ] && STALE=$((STALE + 1))
        sleep 0.1
    done
    EXIT_RC=0
    wait "${MPID[$i]}" 2>/dev/null || EXIT_RC=$?
    forget_pid "${MPID[$i]}"
    return 0
}

net_up 3
for i in $ALL; do member_start "$KIND" "$i" new; done
for i in $ALL; do member_ready "$i" 30 || die "member $i did not start"; done
L=$(wait_leader "$ALL" 20) || die "no leader"
log "leader: m$L"

log "== 1. a key through every member"
hctl "$L" put rm/k v1 >/dev/null || die "put v1"
for i in $ALL; do check_eq "m$i reads v1" v1 "$(value_at "$i")"; done

log "== 2. partition a follower, remove it through the majority"
F=$(others "$L" | awk '{print $NF}')
FID=$(hctl "$L" member list -w json | "$PY" -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    if m.get("name") == "m'"$F"'": print("%x" % m["ID"])')
[ -n "$FID" ] || die "no id for m$F"
partition "$F"
kill9_server "${MPID[$F]}"
member_start "$KIND" "$F" new
sleep 1
# --strict-reconfig-check: the remaining voters must be connected; retry a little.
deadline=$((SECONDS + 20))
until hctl "$L" member remove "$FID" >"$E2E_TMP/remove.out" 2>&1; do
    [ $SECONDS -lt $deadline ] || break
    sleep 1
done
grep -q "removed from cluster" "$E2E_TMP/remove.out" && pass "member remove m$F while it is partitioned" ||
    { fail "member remove m$F"; cat "$E2E_TMP/remove.out"; }
hctl "$L" put rm/k v2 >/dev/null && pass "the majority writes v2" || fail "the majority writes v2"
sleep 3
kill -0 "${MPID[$F]}" 2>/dev/null && pass "the cut-off m$F still runs (it cannot know)" ||
    fail "the cut-off m$F stopped before it could learn its removal"
check_eq "the cut-off m$F refuses a linearizable read" ERR "$(value_at "$F")"
# Restarted while cut off, it has not published again: as etcd it serves no client yet.
check_eq "the restarted cut-off m$F serves no serializable read either" ERR "$(value_at "$F" s)"

log "== 3. heal: m$F must stop by itself"
heal "$F"
t0=$(date +%s%N)
if wait_exit "$F" "$STOP_WITHIN"; then
    ms=$((($(date +%s%N) - t0) / 1000000))
    pass "the removed m$F stopped by itself ${ms} ms after the heal (exit status $EXIT_RC)"
    check_eq "its exit status" 0 "$EXIT_RC"
else
    fail "the removed m$F still runs ${STOP_WITHIN} s after the heal; its log ends:"
    tail -5 "$E2E_TMP/$KIND-m$F.log" | cut -c1-300
    kill9_server "${MPID[$F]}"
fi
check_eq "no linearizable read through m$F saw the stale value ($READS reads)" 0 "$STALE"
grep -q "$TEXT" "$E2E_TMP/$KIND-m$F.log" && pass "its log says \"$TEXT\"" ||
    fail "its log lacks \"$TEXT\""
n=$(hctl "$L" member list -w json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["members"]))')
check_eq "the majority lists 2 members" 2 "$n"
hctl "$L" put rm/k v3 >/dev/null && pass "the majority still writes" || fail "the majority still writes"
for i in $(others "$F"); do check_eq "m$i reads v3" v3 "$(value_at "$i")"; done

log "== 4. restart the removed member on its data dir"
before=$(grep -c "$TEXT" "$E2E_TMP/$KIND-m$F.log" || true)
member_start "$KIND" "$F" new
if wait_exit "$F" "$STOP_WITHIN"; then
    pass "the restarted removed m$F stopped by itself"
    check_eq "its exit status" 0 "$EXIT_RC"
else
    fail "the restarted removed m$F still runs after ${STOP_WITHIN} s"
    kill9_server "${MPID[$F]}"
fi
after=$(grep -c "$TEXT" "$E2E_TMP/$KIND-m$F.log" || true)
[ "$after" -gt "$before" ] && pass "the restart logs \"$TEXT\" again" || fail "the restart does not log \"$TEXT\""
check_eq "no linearizable read through the restarted m$F saw the stale value" 0 "$STALE"
check_eq "the majority still reads v3" v3 "$(value_at "$L")"

finish
