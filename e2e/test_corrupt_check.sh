#!/usr/bin/env bash
# e2e/test_corrupt_check.sh: the CORRUPT alarm raised where a hash check
# finds divergence (etcd 3.4's etcdserver/corrupt.go), run the same way
# against a real etcd 3.4 cluster and a kshimd cluster, each member in a
# network namespace of its own (e2e/netns_lib.sh; same peer URLs and token,
# so the same member ids), and the recorded outputs of both must be
# identical. Every member runs with --experimental-corrupt-check-time 1s.
#
# One member's data diverges honestly:
#   kshimd: m3 starts with KSHIM_FAILPOINTS=mvcc_put_corrupt=1, so the first
#           Put it applies is stored with an altered value on m3 alone;
#   etcd:   (no gofail in Debian's build) after the same Put, m3 is stopped
#           and the value's bytes are changed in place in its bbolt file
#           (bbolt has no checksum on data pages), then m3 is started again.
# Then, in order:
#   1. the leader's periodic check raises CORRUPT: `alarm list` shows
#      "alarm:CORRUPT " (etcd 3.4.23 raises it for member 0, which the
#      text format leaves out);
#   2. with CORRUPT active: put, del, txn with a put, compaction, lease grant
#      and lease revoke are refused "etcdserver: corrupt cluster"; get is
#      served; `endpoint status -w json` lists the alarm in its errors;
#   3. m3 restarted with --experimental-initial-corrupt-check refuses to
#      start: exit status 1, "found data inconsistency with peers" logged;
#   4. with m3 down, `alarm disarm`, then a put succeeds (m1 and m2 agree);
#   5. m3 started again (without the initial check) becomes the leader
#      (move-leader); the alarm is disarmed again and m3, the odd one out as
#      leader, raises it: its log says "same compact revision then hashes
#      must match".
# Needs root (network namespaces). KSHIM_E2E_ONLY=kshimd|etcd runs one side
# only (no comparison).
set -euo pipefail
# The whole test runs in the hub namespace (etcdctl from there).
source "$(dirname "$0")/netns_lib.sh"
net_reexec_in_hub "${KSHIM_NETNS_PREFIX:-kc}" "$@"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
trap 'e2e_cleanup; net_down' EXIT

ALL="1 2 3"
VALUE=corrupt-check-value-A # etcd: changed to ...-B in m3's bbolt file
# --snapshot-count 5: etcd 3.4's initial check reads the member list from
# the v2 store, which a restarted member has only from a Raft snapshot on
# disk (without one it finds no peer and passes: the TODO in corrupt.go's
# getPeerHashKVs); kshimd ignores the flag (its member table is in the
# store). --logger zap: etcd's zap messages, which kshimd logs too.
CHECK=(--experimental-corrupt-check-time 1s --snapshot-count 5 --logger zap --log-outputs stderr)

# out KIND NAME TEXT: one line of the recorded transcript of KIND.
out() { printf '%s: %s\n' "$2" "$3" >>"$E2E_TMP/$1.out"; }

# q I ARGS: etcdctl against member I; its stdout, or its "Error: ..." line.
q() {
    local i=$1
    shift
    out_or_error hctl "$i" "$@"
}

alarmed() { q "$1" alarm list | grep -q 'alarm:CORRUPT'; }
status_errors() {
    hctl "$1" endpoint status -w json 2>/dev/null |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"].get("errors"))' 2>/dev/null || echo "?"
}
leader_is() { [ "$(leader_of "$ALL")" = "$1" ]; }

# member_id I: member I's id in hex, from the member list.
member_id() {
    q 1 member list -w json | "$PY" -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    if m.get("name") == "m'"$1"'": print("%x" % m["ID"])'
}

# diverge_etcd: the value's bytes changed in place in m3's bbolt file.
diverge_etcd() {
    stop_server "${MPID[3]}"
    [ -f "$E2E_TMP/etcd-m3.data/member/snap/db" ] || {
        ls -lR "$E2E_TMP/etcd-m3.data" >&2
        tail -5 "$E2E_TMP/etcd-m3.log" >&2
        die "etcd m3 has no bbolt file"
    }
    "$PY" - "$E2E_TMP/etcd-m3.data/member/snap/db" "$VALUE" <<'EOF'
import sys
path, value = sys.argv[1], sys.argv[2].encode()
data = open(path, "rb").read()
n = data.count(value)
assert n >= 1, "value not found in the db"
open(path, "r+b").write(data.replace(value, value[:-1] + b"B"))
print("changed %d copies" % n, file=sys.stderr)
EOF
    member_start etcd 3 new "${CHECK[@]}"
    member_ready 3 30 || die "etcd m3 did not start again"
}

run_kind() {
    local kind=$1 i l
    log "==== $kind"
    : >"$E2E_TMP/$kind.out"
    for i in 1 2; do member_start "$kind" "$i" new "${CHECK[@]}"; done
    if [ "$kind" = kshimd ]; then
        export KSHIM_FAILPOINTS=mvcc_put_corrupt=1
        member_start "$kind" 3 new "${CHECK[@]}"
        unset KSHIM_FAILPOINTS
    else
        member_start "$kind" 3 new "${CHECK[@]}"
    fi
    for i in $ALL; do member_ready "$i" 30 || die "$kind member $i did not start"; done
    l=$(wait_leader "$ALL" 20) || die "$kind: no leader"
    log "$kind: leader m$l"

    # Before the divergence: a lease for the revoke below, then the put.
    local lease
    lease=$(q 1 lease grant 600 | awk '{print $2}')
    out "$kind" "put before" "$(q 1 put ck/k "$VALUE")"
    wait_for "m3 to apply the put" 10 test "$(q 3 get ck/k --consistency=s --print-value-only)" != "" || true
    [ "$kind" = etcd ] && diverge_etcd
    local v3
    v3=$(q 3 get ck/k --consistency=s --print-value-only)
    [ "$v3" != "$VALUE" ] && [ -n "$v3" ] && pass "$kind: m3 holds another value ($v3)" ||
        fail "$kind: m3's value did not diverge ($v3)"

    log "== 1. the periodic check raises CORRUPT"
    if wait_for "the CORRUPT alarm" 20 alarmed 1; then pass "$kind: CORRUPT raised"; else fail "$kind: no CORRUPT alarm within 20 s"; fi
    out "$kind" "alarm list" "$(q 1 alarm list)"

    log "== 2. refusals"
    out "$kind" "put" "$(q 1 put ck/k2 v)"
    out "$kind" "put via m3" "$(q 3 put ck/k2 v)"
    out "$kind" "del" "$(q 2 del ck/k)"
    out "$kind" "txn" "$(printf '\nput ck/t v\n\n\n' | q 1 txn)"
    out "$kind" "compaction" "$(q 1 compaction 1)"
    out "$kind" "lease grant" "$(q 1 lease grant 60)"
    out "$kind" "lease revoke" "$(q 1 lease revoke "$lease" | sed "s/$lease/LEASE/")"
    out "$kind" "get" "$(q 2 get ck/k --print-value-only)"
    out "$kind" "get via m3 serializable" "$(q 3 get ck/k2 --consistency=s)"
    for i in $ALL; do out "$kind" "status errors m$i" "$(status_errors "$i")"; done

    log "== 3. m3 restarted with --experimental-initial-corrupt-check"
    stop_server "${MPID[3]}"
    local before id3 rc=0
    before=$(grep -c 'found data inconsistency with peers' "$E2E_TMP/$kind-m3.log" || true)
    member_start "$kind" 3 new "${CHECK[@]}" --experimental-initial-corrupt-check
    local deadline=$((SECONDS + 40))
    while kill -0 "${MPID[3]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "${MPID[3]}" 2>/dev/null; then
        fail "$kind: m3 still runs with the initial check"
        stop_server "${MPID[3]}"
        rc=running
    else
        wait "${MPID[3]}" || rc=$?
        forget_pid "${MPID[3]}"
    fi
    out "$kind" "initial check exit status" "$rc"
    local after
    after=$(grep -c 'found data inconsistency with peers' "$E2E_TMP/$kind-m3.log" || true)
    [ "$after" -gt "$before" ] && pass "$kind: m3 logged 'found data inconsistency with peers'" ||
        fail "$kind: m3 did not log the inconsistency"
    id3=$(member_id 3)
    grep -q "$id3 found data inconsistency with peers" "$E2E_TMP/$kind-m3.log" &&
        pass "$kind: the message names m3 ($id3)" || fail "$kind: the message does not name m3 ($id3)"

    log "== 4. m3 down: disarm, then writes work"
    wait_leader "1 2" 20 >/dev/null || fail "$kind: m1 and m2 have no leader with m3 down"
    out "$kind" "alarm disarm" "$(q 1 alarm disarm)"
    sleep 3 # three rounds of the leader's check: m1 and m2 agree
    out "$kind" "alarm list after disarm" "$(q 1 alarm list)"
    out "$kind" "put after disarm" "$(q 1 put ck/k3 v3)"

    log "== 5. m3 back, made leader: it finds itself the odd one out"
    member_start "$kind" 3 new "${CHECK[@]}"
    member_ready 3 30 || die "$kind m3 did not start again"
    if wait_for "the CORRUPT alarm" 20 alarmed 1; then pass "$kind: CORRUPT raised again with m3 back"; else fail "$kind: not raised again"; fi
    out "$kind" "move-leader" "$(q "$(leader_of "$ALL")" move-leader "$id3" | sed -E 's/[0-9a-f]{16}|[0-9a-f]{15}/ID/g')"
    wait_for "m3 to lead" 10 leader_is 3 || fail "$kind: m3 did not become leader"
    before=$(grep -c 'same compact revision then hashes must match' "$E2E_TMP/$kind-m3.log" || true)
    out "$kind" "alarm disarm again" "$(q 1 alarm disarm)"
    if wait_for "the CORRUPT alarm" 20 alarmed 2; then pass "$kind: m3 as leader raised CORRUPT"; else fail "$kind: m3 as leader did not raise it"; fi
    after=$(grep -c 'same compact revision then hashes must match' "$E2E_TMP/$kind-m3.log" || true)
    [ "$after" -gt "$before" ] && pass "$kind: m3's log: same compact revision then hashes must match" ||
        fail "$kind: m3 (leader) did not log the follower mismatch"
    out "$kind" "alarm list at the end" "$(q 2 alarm list)"

    for i in $ALL; do stop_server "${MPID[$i]}"; done
}

net_up 3
case "${KSHIM_E2E_ONLY:-}" in
kshimd) run_kind kshimd ;;
etcd) run_kind etcd ;;
*)
    run_kind etcd
    run_kind kshimd
    diff_files "corrupt check transcript" "$E2E_TMP/etcd.out" "$E2E_TMP/kshimd.out"
    ;;
esac
cat "$E2E_TMP/${KSHIM_E2E_ONLY:-kshimd}.out" >&2
finish
