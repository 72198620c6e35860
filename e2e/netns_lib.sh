# e2e/netns_lib.sh: a kshimd (or etcd) cluster whose members each live in a
# network namespace of their own, for fault tests (sourced first, before
# lib.sh, never run). Owns the namespaces, bridges and veth pairs, starting and
# stopping the members in them, running clients from the hub namespace, and
# partitioning a member (its peer link down) and healing it.
#
# Topology (NET_NS is unique per run): a hub namespace ${NET_NS}h with two
# bridges, brp (peers, 10.77.1.0/24) and brc (clients, 10.77.2.0/24); member
# i in ${NET_NS}m<i> has eth0 = 10.77.1.i on brp (its peer URL
# http://10.77.1.i:2380) and eth1 = 10.77.2.i on brc (its client URL
# http://10.77.2.i:2379). Partitioning member i sets its brp link down: it
# cannot reach the other members, while clients still reach it (so the test
# sees what a cut-off member answers). Clients and etcdctl run in the hub
# (a test re-runs itself there: net_reexec_in_hub, before lib.sh makes its
# E2E_TMP).
#
#   net_reexec_in_hub PREFIX ARGS...  outside the hub: creates the hub
#                            ${PREFIX}$$h, re-runs the script there with ARGS
#                            (NET_IN_HUB=1, NET_NS=${PREFIX}$$), deletes the
#                            namespaces and exits with its status; inside
#                            the hub: returns
#   net_up N                 the hub and N member namespaces
#   net_down                 deletes them (also at exit)
#   member_start KIND I STATE [flags]  sets MPID[I]; KIND etcd|kshimd,
#                            STATE new|existing; log $E2E_TMP/<kind>-m<I>.log
#   hub CMD...               CMD in the hub namespace
#   hctl I ARGS...           etcdctl against member I (from the hub)
#   member_ready I [TIMEOUT] endpoint health answers
#   partition I / heal I     cut / restore member I's peer link
#   leader_of "I J ..."      the member number the members I J ... call leader

NET_NS=${NET_NS:-kf$$}
NET_N=0
NET_IC=""
declare -A MPID

net_reexec_in_hub() {
    local ns=$1$$ rc=0 n
    shift
    [ -z "${NET_IN_HUB:-}" ] || return 0
    ip netns add "${ns}h" || { echo "FATAL: cannot create a network namespace (root needed)"; exit 1; }
    ip netns exec "${ns}h" env NET_IN_HUB=1 NET_NS="$ns" bash "$0" "$@" || rc=$?
    for n in h m1 m2 m3; do ip netns del "${ns}$n" 2>/dev/null || true; done
    exit $rc
}

net_down() {
    local i
    for i in $(seq "$NET_N"); do ip netns del "${NET_NS}m$i" 2>/dev/null || true; done
    ip netns del "${NET_NS}h" 2>/dev/null || true
}

net_up() {
    local n=$1 i ns
    NET_N=$n
    [ -e "/run/netns/${NET_NS}h" ] || ip netns add "${NET_NS}h" || die "cannot create network namespaces (root needed)"
    hub ip link set lo up
    hub ip link add brp type bridge
    hub ip link add brc type bridge
    hub ip addr add 10.77.1.254/24 dev brp
    hub ip addr add 10.77.2.254/24 dev brc
    hub ip link set brp up
    hub ip link set brc up
    NET_IC=""
    for i in $(seq "$n"); do
        ns="${NET_NS}m$i"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "${NET_NS}h" link add "p$i" type veth peer name eth0 netns "$ns"
        ip -n "${NET_NS}h" link add "c$i" type veth peer name eth1 netns "$ns"
        ip -n "$ns" addr add "10.77.1.$i/24" dev eth0
        ip -n "$ns" addr add "10.77.2.$i/24" dev eth1
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set eth1 up
        hub ip link set "p$i" master brp up
        hub ip link set "c$i" master brc up
        NET_IC="$NET_IC${NET_IC:+,}m$i=http://10.77.1.$i:2380"
    done
}

hub() { ip netns exec "${NET_NS}h" "$@"; }

member_url() { echo "http://10.77.2.$1:2379"; }

# member_start KIND I STATE [extra flags]
member_start() {
    local kind=$1 i=$2 state=$3 bin=$ETCD
    shift 3
    [ "$kind" = kshimd ] && bin=$KSHIMD
    ip netns exec "${NET_NS}m$i" "$bin" --name "m$i" --data-dir "$E2E_TMP/$kind-m$i.data" \
        --listen-client-urls "http://10.77.2.$i:2379" --advertise-client-urls "http://10.77.2.$i:2379" \
        --listen-peer-urls "http://10.77.1.$i:2380" --initial-advertise-peer-urls "http://10.77.1.$i:2380" \
        --initial-cluster "$NET_IC" --initial-cluster-state "$state" "$@" >>"$E2E_TMP/$kind-m$i.log" 2>&1 &
    MPID[$i]=$!
    E2E_PIDS+=("${MPID[$i]}")
}

hctl() {
    local i=$1
    shift
    hub "$ETCDCTL" --endpoints "10.77.2.$i:2379" --dial-timeout=1s --command-timeout=3s "$@"
}

member_ready() {
    local i=$1 deadline=$((SECONDS + ${2:-30}))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "${MPID[$i]}" 2>/dev/null || { echo "member $i died; log tail:" >&2; tail -20 "$E2E_TMP"/*-m$i.log >&2; return 1; }
        hctl "$i" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "member $i not ready" >&2
    return 1
}

partition() { hub ip link set "p$1" down; }
heal() { hub ip link set "p$1" up; }

# leader_of "I J ...": the member (number) that the listed members report as
# leader, if they agree on one that is among them; else nothing.
leader_of() {
    local eps="" i
    for i in $1; do eps="$eps${eps:+,}10.77.2.$i:2379"; done
    hub "$ETCDCTL" --endpoints "$eps" --dial-timeout=1s --command-timeout=2s endpoint status -w json 2>/dev/null |
        "$PY" -c '
import json, sys
st = json.load(sys.stdin)
ids = {s["Status"]["header"]["member_id"]: s["Endpoint"] for s in st}
leaders = {s["Status"].get("leader", 0) for s in st}
if len(leaders) == 1 and len(st) == len(sys.argv) - 1:
    l = leaders.pop()
    if l in ids:
        print(ids[l].split(":")[0].split(".")[-1])
' $1 || true
}

# wait_leader "I J ..." TIMEOUT: prints the agreed leader once there is one.
wait_leader() {
    local deadline=$((SECONDS + $2)) l
    while [ $SECONDS -lt $deadline ]; do
        l=$(leader_of "$1")
        [ -n "$l" ] && { echo "$l"; return 0; }
        sleep 0.2
    done
    return 1
}
