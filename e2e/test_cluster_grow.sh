#!/usr/bin/env bash
# e2e/test_cluster_grow.sh: a single kshimd grows into a cluster, as an etcd
# member does: member add on the single voter (its peer transport starts
# then), the new member started with --initial-cluster-state existing gets
# the data written before, writes through either member are read through the
# other, and both restart as a 2-member cluster.
#
# Ports: clients 24501-24502, peers 24551-24552.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

IC1="m1=http://127.0.0.1:24551"
IC2="$IC1,m2=http://127.0.0.1:24552"

start() {
    local n=$1
    shift
    ensure_port_free $((24500 + n))
    "$KSHIMD" --name "m$n" --data-dir "$E2E_TMP/m$n.data" \
        --listen-client-urls "http://127.0.0.1:$((24500 + n))" \
        --advertise-client-urls "http://127.0.0.1:$((24500 + n))" \
        --listen-peer-urls "http://127.0.0.1:$((24550 + n))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((24550 + n))" "$@" >>"$E2E_TMP/m$n.log" 2>&1 &
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
}

start 1 --initial-cluster "$IC1"
P1=$SERVER_PID
wait_ready "$P1" 24501 || die "m1 did not start"
check_eq "single member: put" OK "$(ctl 24501 put /before v1 2>/dev/null)"
added=$(ctl 24501 member add m2 --peer-urls=http://127.0.0.1:24552 2>&1 | grep -c 'added to cluster' || true)
check_eq "member add on a single voter" 1 "$added"
start 2 --initial-cluster "$IC2" --initial-cluster-state existing
P2=$SERVER_PID
wait_ready "$P2" 24502 30 || die "m2 did not start"
check_eq "the new member has the old data" v1 "$(ctl 24502 get /before --print-value-only 2>/dev/null)"
check_eq "put via the new member" OK "$(ctl 24502 put /after v2 2>/dev/null)"
check_eq "read via the first" v2 "$(ctl 24501 get /after --print-value-only 2>/dev/null)"
check_eq "two started members" 2 "$(ctl 24501 member list 2>/dev/null | grep -c ', started, m')"

stop_server "$P1"
stop_server "$P2"
start 1 --initial-cluster "$IC1"
P1=$SERVER_PID
start 2 --initial-cluster "$IC2" --initial-cluster-state existing
P2=$SERVER_PID
wait_ready "$P1" 24501 30 || die "m1 did not restart"
wait_ready "$P2" 24502 30 || die "m2 did not restart"
check_eq "after a restart of both: put" OK "$(ctl 24501 put /restarted v3 2>/dev/null)"
check_eq "after a restart of both: get via the other" v3 \
    "$(ctl 24502 get /restarted --print-value-only 2>/dev/null)"
stop_server "$P1"
stop_server "$P2"
finish
