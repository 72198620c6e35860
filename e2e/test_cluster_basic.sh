#!/usr/bin/env bash
# e2e/test_cluster_basic.sh: a 3-member cluster, run the same way against
# real etcd 3.4 and against kshimd (same ports one after the other, so the
# member ids, which etcd derives from the peer URLs and the cluster token,
# are the same), with etcdctl:
#   - member list: 3 started members with names and client URLs;
#   - put via member 1, get (linearizable and --consistency=s) via 2 and 3;
#   - endpoint status: exactly one leader, the same raft index everywhere;
#   - move-leader to another voter: that voter leads after it;
#   - the membership errors (duplicate peer URL, unknown id, promoting a
#     voter, a bad URL, a second learner) and their texts; member update of
#     an unstarted learner;
#   - kill -9 of the leader: a new leader, writes through both survivors
#     (600 of them: kshimd's restarted member catches up from a snapshot);
#   - a learner: member add --learner, started with
#     --initial-cluster-state existing, catches up, refuses a write ("rpc not
#     supported for learner"), promoted, restarted after kill -9, removed
#     (and then exits);
# and the recorded outputs of both runs must be identical (learner ids,
# which etcd derives from the time, are normalized).
#
# Ports: clients 24301-24304, peers 24351-24354.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/cluster_lib.sh"
cluster_ports 24300 24350

started_count() { [ "$(q 24301 member list | grep -c ', started, m')" = "$1" ]; }
same_index() {
    [ "$("$ETCDCTL" --endpoints "$1" --dial-timeout=1s --command-timeout=2s endpoint status 2>/dev/null |
        awk -F', ' '{print $8}' | sort -u | wc -l)" = 1 ]
}
value_is() { [ "$(q "$1" get "$2" --consistency=s --print-value-only)" = "$3" ]; }
gone() { ! kill -0 "$1" 2>/dev/null; }
learner_id() { q 24301 member list | awk -F', ' '$3 == "l4" || ($2 == "unstarted") { print $1 }' | head -1; }

scenario() {
    local kind=$1 n lead port lid
    for n in 1 2 3; do start_member "$kind" $n; done
    for n in 1 2 3; do wait_ready "${PID[$n]}" $((24300 + n)) 30 || return 1; done
    wait_for "3 started members" 20 started_count 3
    echo "## member list"
    q 24301 member list | sort
    echo "## put via m1, get via m2 (linearizable) and m3 (serializable)"
    q 24301 put /k v1
    q 24302 get /k --print-value-only
    q 24303 get /k --consistency=s --print-value-only
    wait_for "one leader" 20 one_leader "$ALL"
    echo "## one leader: $(leaders "$ALL" | wc -l)"
    wait_for "one raft index" 10 same_index "$ALL"
    echo "## same raft index on all: ok"

    echo "## move-leader"
    lead=$(leaders "$ALL")
    local target
    target=$(q "$lead" member list | awk -F', ' -v me="http://127.0.0.1:$lead" '$5 != me { print $1; exit }')
    q "$lead" move-leader "$target" | sed -E 's/from [0-9a-f]+ to [0-9a-f]+/from LEADER to TARGET/'
    echo "leader is the target: $(q "$lead" endpoint status -w fields | awk -F' : ' '/"Leader"/ { print $2 }' |
        xargs printf '%x\n' | grep -qx "$target" && echo yes)"
    # etcd refuses changes until every peer was connected for 5 s (HealthInterval).
    sleep 6
    echo "## errors"
    q 24301 member add x --peer-urls=http://127.0.0.1:24352
    q 24301 member remove 1234
    q 24302 member promote 751f383534fac39c
    q 24301 member add y --peer-urls=bad
    q 24301 member update 1234 --peer-urls=http://127.0.0.1:24359
    echo "## member update (an unstarted learner)"
    q 24302 member add l9 --learner --peer-urls=http://127.0.0.1:24359 | grep -E 'added|Error' |
        sed -E 's/Member +[0-9a-f]+ added/Member L9 added/'
    lid=$(learner_id)
    # etcd 3.4 forgets the learner flag in the member list on an update
    q 24303 member update "$lid" --peer-urls=http://127.0.0.1:24358 | sed -E "s/ +$lid/ L9/"
    q 24301 member update "$lid" --peer-urls=http://127.0.0.1:24352
    q 24301 member list | sed "s/^$lid,/L9,/" | sort
    q 24301 member remove "$lid" | sed -E "s/ +$lid/ L9/"

    echo "## kill -9 the leader"
    lead=$(leaders "$ALL")
    n=$((lead - 24300))
    kill9_server "${PID[$n]}"
    local rest="" others=()
    for port in 24301 24302 24303; do
        [ "$port" = "$lead" ] || { rest="$rest${rest:+,}127.0.0.1:$port"; others+=("$port"); }
    done
    wait_for "a new leader" 20 one_leader "$rest"
    echo "new leader elected: $( [ "$(leaders "$rest")" != "$lead" ] && echo yes)"
    q "${others[0]}" put /k v2
    q "${others[1]}" put /k2 w2
    q "${others[1]}" get /k --print-value-only
    q "${others[0]}" get /k2 --print-value-only
    # 600 more entries while it is down: kshimd's leader compacts its log
    # past them, so the restarted member catches up from a snapshot
    wait_member_forgotten
    "$PY" -c "
import etcd3
c = etcd3.client(host='127.0.0.1', port=${others[0]})
for i in range(600): c.put('/s/%04d' % i, 'v%d' % i)
"
    start_member "$kind" $n
    wait_ready "${PID[$n]}" "$lead" 30 || return 1
    wait_for "the restarted member to catch up" 30 value_is "$lead" /s/0599 v599
    echo "restarted member: $(q "$lead" get /k --print-value-only) $(q "$lead" get /k2 --print-value-only)" \
        "$(q "$lead" get /s/ --prefix --keys-only --consistency=s | grep -c /s/)"
    wait_for "one raft index" 10 same_index "$ALL"

    sleep 6 # HealthInterval: etcd checks the connections for a learner too
    echo "## a learner"
    q 24301 member add l4 --learner --peer-urls=http://127.0.0.1:24354 | grep -E 'added|Error' |
        sed -E 's/Member +[0-9a-f]+ added/Member LEARNER added/'
    q 24301 member add l5 --learner --peer-urls=http://127.0.0.1:24355
    lid=$(learner_id)
    ensure_port_free 24304
    ensure_port_free 24354
    local bin=$ETCD
    [ "$kind" = kshimd ] && bin=$KSHIMD
    "$bin" --name l4 --data-dir "$E2E_TMP/$kind-l4.data" \
        --listen-client-urls http://127.0.0.1:24304 --advertise-client-urls http://127.0.0.1:24304 \
        --listen-peer-urls http://127.0.0.1:24354 --initial-advertise-peer-urls http://127.0.0.1:24354 \
        --initial-cluster "$IC,l4=http://127.0.0.1:24354" --initial-cluster-state existing \
        >>"$E2E_TMP/$kind-l4.log" 2>&1 &
    PID[4]=$!
    E2E_PIDS+=("${PID[4]}")
    wait_for "the learner to start" 30 started_count 4
    wait_for "the learner to catch up" 20 value_is 24304 /k2 w2
    echo "learner serializable get: $(q 24304 get /k --consistency=s --print-value-only)"
    q 24304 put /k v3
    q 24301 member list | sed "s/^$lid,/LEARNER,/" | sort
    local promoted
    promote_ok() { promoted=$(q 24301 member promote "$lid"); ! grep -q 'in sync with leader' <<<"$promoted"; }
    wait_for "the promotion" 20 promote_ok
    sed -E "s/ +$lid/ LEARNER/" <<<"$promoted"
    q 24301 member list | sed "s/^$lid,/LEARNER,/" | sort
    q 24304 put /k v4
    q 24301 get /k --print-value-only
    # the joined member restarts from its data dir (the --initial-* flags are ignored then)
    kill9_server "${PID[4]}"
    q 24302 put /k v5
    "$bin" --name l4 --data-dir "$E2E_TMP/$kind-l4.data" \
        --listen-client-urls http://127.0.0.1:24304 --advertise-client-urls http://127.0.0.1:24304 \
        --listen-peer-urls http://127.0.0.1:24354 --initial-advertise-peer-urls http://127.0.0.1:24354 \
        --initial-cluster "$IC,l4=http://127.0.0.1:24354" --initial-cluster-state existing \
        >>"$E2E_TMP/$kind-l4.log" 2>&1 &
    PID[4]=$!
    E2E_PIDS+=("${PID[4]}")
    wait_ready "${PID[4]}" 24304 30 || return 1
    echo "restarted joined member: $(q 24304 get /k --print-value-only)"
    sleep 6 # HealthInterval again before a voter removal
    q 24302 member remove "$lid" | sed -E "s/ +$lid/ LEARNER/"
    wait_for "the removed member to exit" 20 gone "${PID[4]}"
    echo "removed member exited"
    q 24301 member list | sort

    for n in 1 2 3 4; do stop_server "${PID[$n]}"; done
}

log "real etcd"
scenario etcd >"$E2E_TMP/etcd.out" 2>"$E2E_TMP/etcd.err" || { cat "$E2E_TMP/etcd.err"; fail "etcd scenario"; }
log "kshimd"
scenario kshimd >"$E2E_TMP/kshimd.out" 2>"$E2E_TMP/kshimd.err" || { cat "$E2E_TMP/kshimd.err"; fail "kshimd scenario"; }
cat "$E2E_TMP/kshimd.out"
diff_files cluster_basic "$E2E_TMP/etcd.out" "$E2E_TMP/kshimd.out"
grep -q '^## same raft index on all: ok' "$E2E_TMP/kshimd.out" && pass "same raft index" || fail "same raft index"
grep -q '^restarted member: v2 w2 600' "$E2E_TMP/kshimd.out" && pass "restarted member caught up" ||
    fail "restarted member caught up"
grep -q 'installed the snapshot' "$E2E_TMP"/kshimd-m*.log && pass "caught up from a snapshot" ||
    fail "caught up from a snapshot"
grep -q '^leader is the target: yes' "$E2E_TMP/kshimd.out" && pass "move-leader" || fail "move-leader"
grep -q '^removed member exited' "$E2E_TMP/kshimd.out" && pass "removed member exited" || fail "removed member exited"
finish
