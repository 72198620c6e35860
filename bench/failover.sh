#!/usr/bin/env bash
# bench/failover.sh: issue 8's failover measurement. A 3-member kshimd
# cluster and, in the same run, a 3-member real etcd 3.4 cluster with the
# same timeouts (--heartbeat-interval 100 --election-timeout 1000, the
# defaults), ROUNDS times each: bench/failover.go puts through a member that
# is not the leader every 10 ms (100 ms per-op timeout), kill -9s the leader
# and prints the time from the kill until a put invoked after it succeeds;
# then the killed member restarts on its data dir and catches up (same
# revision as the others) before the next round. Prints min / median / max
# per server. A benchmark, not a test: exits 0 unless a server fails to start.
#
# Usage: bash bench/failover.sh [ROUNDS]        (default 20)
# Env:   KSHIMD (default build/kshimd), ETCD (/usr/bin/etcd), ETCDCTL,
#        PORT (26600: clients PORT+1..3, peers PORT+51..53).
# Run it inside a network namespace of your own when others share the host.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${1:-20}
KSHIMD=${KSHIMD:-$ROOT/build/kshimd}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
PORT=${PORT:-26600}
TMP=$(mktemp -d /tmp/kshim-failover.XXXXXX)
export ETCDCTL_API=3
declare -A PID
# shellcheck source=lib/members.sh
. "$HERE/lib/members.sh"

cleanup() {
    local p
    for p in "${PID[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
    done
    for p in "${PID[@]:-}"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

build_go() {
    local cache=${KSHIM_BUILD:-/tmp/kshim-go-cache}/bench-go hash bin
    hash=$(sha256sum "$HERE/failover.go" | cut -c1-16)
    bin="$cache/failover-$hash"
    if [ ! -x "$bin" ]; then
        mkdir -p "$cache/gocache" "$TMP/go/fo"
        cp "$HERE/failover.go" "$TMP/go/fo/main.go"
        (cd "$TMP/go/fo" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
            GOCACHE="$cache/gocache" go build -o "$bin.tmp" .) >&2
        mv "$bin.tmp" "$bin"
    fi
    echo "$bin"
}

# start KIND N: member mN of KIND (etcd|kshimd) on its data dir.
start() {
    local kind=$1 n=$2 bin=$ETCD
    [ "$kind" = kshimd ] && bin=$KSHIMD
    member_start "$bin" "$PORT" "$n" "$TMP/$kind-m$n.data" "$TMP/$kind-m$n.log"
    PID[$n]=$!
}

leader() { members_leader "$PORT"; }
in_step() { members_in_step "$PORT"; }
has_leader() { members_have_leader "$PORT"; }

# run KIND: prints one gap (ms) per line.
run() {
    local kind=$1 n l s r gap
    for n in 1 2 3; do start "$kind" "$n"; done
    wait_until 30 has_leader || { echo "$kind: no leader" >&2; return 1; }
    for r in $(seq "$ROUNDS"); do
        l=$(leader)
        s=$(( l % 3 + 1 ))
        gap=$("$PROBE" "127.0.0.1:$((PORT + s))" "${PID[$l]}" 100 | awk '{print $2}')
        wait "${PID[$l]}" 2>/dev/null || true
        echo "$gap"
        echo "[$kind] round $r: leader m$l killed, put via m$s ok again after $gap ms" >&2
        start "$kind" "$l"
        wait_until 30 has_leader || { echo "$kind: no leader after the restart" >&2; return 1; }
        wait_until 30 in_step || echo "[$kind] round $r: m$l not in step after 30 s" >&2
        sleep 1
    done
    for n in 1 2 3; do kill "${PID[$n]}" 2>/dev/null || true; done
    for n in 1 2 3; do wait "${PID[$n]}" 2>/dev/null || true; done
    PID=()
}

stats() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "no data"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%d rounds: min %.0f ms, median %.0f ms, max %.0f ms\n", NR, v[1], m, v[NR] }'
}

PROBE=$(build_go)
run etcd >"$TMP/etcd.gaps"
run kshimd >"$TMP/kshimd.gaps"
echo "failover (kill -9 of the leader until a put through a survivor succeeds; heartbeat 100 ms, election 1000 ms)"
printf '%-8s %s\n' etcd "$(grep -v timeout "$TMP/etcd.gaps" | stats) $(grep -c timeout "$TMP/etcd.gaps" || true) timeouts"
printf '%-8s %s\n' kshimd "$(grep -v timeout "$TMP/kshimd.gaps" | stats) $(grep -c timeout "$TMP/kshimd.gaps" || true) timeouts"
