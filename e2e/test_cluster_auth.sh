#!/usr/bin/env bash
# e2e/test_cluster_auth.sh: auth and forwarded writes in a 3-member cluster.
#
# Differential (real etcd 3.4, then kshimd, same ports, etcdctl):
#   root and alice (role rw: readwrite on /a/), auth enabled through the
#   leader; alice writes and reads through a follower; the leader revokes
#   rw's permission; alice's next write and read through the follower are
#   refused "permission denied" (kshimd checks a write again at apply
#   against the auth revision it was checked at, as etcd; clientv3 retries
#   "revision of auth store is old" with a new token, so etcdctl shows the
#   final refusal); root still writes through the follower; the outputs of
#   both runs must be identical.
# kshimd only: a write through a follower while the leader hands its
#   leadership to a stopped member (the leader's Raft refuses proposals
#   meanwhile) is answered at once with an error ("etcdserver: too many
#   requests"), not after the 7 s request timeout ("request timed out", what
#   etcd's follower answers); once the member runs again writes go on.
#
# Ports: clients 24701-24703, peers 24751-24753.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/cluster_lib.sh"
Q_TIMEOUT=10s
cluster_ports 24700 24750

value_is() { [ "$(q "$1" --user root:rootpw get "$2" --consistency=s --print-value-only)" = "$3" ]; }

start_cluster() {
    local kind=$1 n
    for n in 1 2 3; do start_member "$kind" $n; done
    for n in 1 2 3; do wait_ready "${PID[$n]}" $((24700 + n)) 30 || return 1; done
    wait_for "one leader" 20 one_leader "$ALL"
}

# FOLLOWER: a client port that is not the leader's.
follower_of() {
    local p
    for p in 24701 24702 24703; do [ "$p" = "$1" ] || { echo "$p"; return; }; done
}

auth_scenario() {
    local kind=$1 lead f n
    start_cluster "$kind" || return 1
    lead=$(leaders "$ALL")
    f=$(follower_of "$lead")
    echo "## set-up through the leader"
    q "$lead" user add root:rootpw
    q "$lead" role add root
    q "$lead" user grant-role root root
    q "$lead" user add alice:apw
    q "$lead" role add rw
    q "$lead" role grant-permission rw readwrite /a/ --prefix
    q "$lead" user grant-role alice rw
    q "$lead" auth enable
    echo "## alice through a follower"
    q "$f" --user alice:apw put /a/1 v1
    q "$f" --user alice:apw get /a/1 --print-value-only
    echo "## revoke through the leader, then alice again through the follower"
    q "$lead" --user root:rootpw role revoke-permission rw /a/ --prefix
    wait_for "the follower to apply the revoke" 10 value_is "$f" /a/1 v1
    q "$f" --user alice:apw put /a/2 v2
    q "$f" --user alice:apw get /a/1 --print-value-only
    q "$f" --user alice:apw txn <<<$'\nput /a/3 v3\n\n'
    echo "## root through the follower"
    q "$f" --user root:rootpw put /a/4 v4
    q "$lead" --user root:rootpw get /a/ --prefix --keys-only --consistency=s | grep .
    for n in 1 2 3; do stop_server "${PID[$n]}"; done
}

# kshimd only: writes through a follower during a leader transfer to a
# stopped member. Prints the first error one got.
refusal_scenario() {
    local lead f x n err="" out i
    start_cluster kshimd || return 1
    lead=$(leaders "$ALL")
    f=$(follower_of "$lead")
    for x in 24701 24702 24703; do [ "$x" = "$lead" ] || [ "$x" = "$f" ] || break; done
    q "$f" put /r0 v
    local xid
    xid=$(q "$lead" member list | awk -F', ' -v u="http://127.0.0.1:$x" '$5 == u { print $1 }')
    for i in 1 2 3 4 5; do
        kill -STOP "${PID[$((x - 24700))]}"
        "$ETCDCTL" --endpoints "127.0.0.1:$lead" --command-timeout=3s move-leader "$xid" \
            >/dev/null 2>&1 &
        local mv=$!
        sleep 0.1
        out=$(q "$f" --command-timeout=10s put /r$i v)
        wait $mv 2>/dev/null || true
        kill -CONT "${PID[$((x - 24700))]}"
        if [ "$out" != OK ]; then
            err=$out
            break
        fi
        wait_for "one leader" 20 one_leader "$ALL"
        lead=$(leaders "$ALL")
        f=$(follower_of "$lead")
        for x in 24701 24702 24703; do [ "$x" = "$lead" ] || [ "$x" = "$f" ] || break; done
        xid=$(q "$lead" member list | awk -F', ' -v u="http://127.0.0.1:$x" '$5 == u { print $1 }')
    done
    echo "refused write: $err"
    wait_for "one leader" 20 one_leader "$ALL"
    wait_for "writes going on" 20 bash -c "[ \"\$('$ETCDCTL' --endpoints $ALL --command-timeout=3s put /after v 2>&1)\" = OK ]"
    echo "writes after: OK"
    for n in 1 2 3; do stop_server "${PID[$n]}"; done
}

log "real etcd"
auth_scenario etcd >"$E2E_TMP/etcd.out" 2>"$E2E_TMP/etcd.err" || { cat "$E2E_TMP/etcd.err"; fail "etcd scenario"; }
log "kshimd"
auth_scenario kshimd >"$E2E_TMP/kshimd.out" 2>"$E2E_TMP/kshimd.err" ||
    { cat "$E2E_TMP/kshimd.err"; fail "kshimd scenario"; }
cat "$E2E_TMP/kshimd.out"
diff_files cluster_auth "$E2E_TMP/etcd.out" "$E2E_TMP/kshimd.out"
grep -q '^Error: etcdserver: permission denied' "$E2E_TMP/kshimd.out" && pass "revoked write refused" ||
    fail "revoked write refused"

log "kshimd: a forwarded write refused by the leader"
rm -rf "$E2E_TMP"/kshimd-m*.data
refusal_scenario >"$E2E_TMP/refusal.out" 2>"$E2E_TMP/refusal.err" ||
    { cat "$E2E_TMP/refusal.err"; fail "refusal scenario"; }
cat "$E2E_TMP/refusal.out"
grep -q '^refused write: Error: etcdserver: too many requests' "$E2E_TMP/refusal.out" &&
    pass "forwarded write refused at once" || fail "forwarded write refused at once"
grep -q '^writes after: OK' "$E2E_TMP/refusal.out" && pass "writes after the refusal" ||
    fail "writes after the refusal"
finish
