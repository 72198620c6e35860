# shellcheck shell=bash
# bench/lib/members.sh -- how the bench scripts start a 3-member cluster of
# real etcd or of kshimd on 127.0.0.1, and ask it who leads. Sourced (bash)
# by bench/failover.sh and bench/cluster.sh; owns nothing by itself: the
# caller gives the ports, data dirs and log files, keeps the PIDs and stops
# them.
#
# Ports from a base B: member n (1..3) serves clients on B+n and peers on
# B+50+n; members are named m1..m3, with etcd's default timeouts
# (--heartbeat-interval 100 --election-timeout 1000) unless MEMBERS_FLAGS
# says otherwise. Needs ETCDCTL (etcdctl 3.x) and python3.

MEMBERS_FLAGS=${MEMBERS_FLAGS:---heartbeat-interval 100 --election-timeout 1000}

# members_ic BASE: the --initial-cluster value of the three members
members_ic() {
    local b=$1
    echo "m1=http://127.0.0.1:$((b + 51)),m2=http://127.0.0.1:$((b + 52)),m3=http://127.0.0.1:$((b + 53))"
}

# members_endpoints BASE: the three client endpoints, comma-separated
members_endpoints() {
    local b=$1
    echo "127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
}

# member_start BIN BASE N DATADIR LOG [TOKEN]: starts member mN in the
# background (log appended to LOG); its PID is in $! afterwards. The data dir
# is reused if it exists (a restart), else made by the server.
member_start() {
    local bin=$1 b=$2 n=$3 data=$4 logf=$5 token=${6:-}
    # shellcheck disable=SC2086
    "$bin" --name "m$n" --data-dir "$data" \
        --listen-client-urls "http://127.0.0.1:$((b + n))" \
        --advertise-client-urls "http://127.0.0.1:$((b + n))" \
        --listen-peer-urls "http://127.0.0.1:$((b + 50 + n))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((b + 50 + n))" \
        --initial-cluster "$(members_ic "$b")" --initial-cluster-state new \
        ${token:+--initial-cluster-token "$token"} \
        $MEMBERS_FLAGS >>"$logf" 2>&1 &
}

members_status() { # BASE: etcdctl endpoint status of all three, as json
    "$ETCDCTL" --dial-timeout=1s --command-timeout=2s --endpoints "$(members_endpoints "$1")" \
        endpoint status -w json 2>/dev/null
}

# members_leader BASE: the member number (1..3) all three name as leader,
# "" if they do not agree or one does not answer
members_leader() {
    members_status "$1" | python3 -c '
import json, sys
st = json.load(sys.stdin)
ids = {s["Status"]["header"]["member_id"]: s["Endpoint"] for s in st}
ls = {s["Status"].get("leader", 0) for s in st}
if len(st) == 3 and len(ls) == 1 and list(ls)[0] in ids:
    print(int(ids[list(ls)[0]].rsplit(":", 1)[1]) - '"$1"')' 2>/dev/null || true
}

# members_in_step BASE: true when all three answer with the same revision
members_in_step() {
    [ "$(members_status "$1" | python3 -c '
import json, sys
st = json.load(sys.stdin)
print(len(st) == 3 and len({s["Status"]["header"]["revision"] for s in st}) == 1)' 2>/dev/null)" = True ]
}

members_have_leader() { [ -n "$(members_leader "$1")" ]; }

# wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds; false
# after SECONDS
wait_until() {
    local t=$1 deadline
    shift
    deadline=$((SECONDS + t))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}
