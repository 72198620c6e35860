#!/usr/bin/env bash
# bench/lock.sh: the Lock service (v3lockpb) on real etcd 3.4 and kshimd, one
# after the other on fresh single-member data dirs: bench/lock.go measures
# uncontended Lock+Unlock pairs per second (1 and 16 clients), the hand-off
# latency from an Unlock's answer to the waiter's Lock answer (p50, p99 of
# 200), and the time for WAITERS Lock calls queued on one name at once to
# pass the lock down the chain, and each server's peak RSS (VmHWM) after it
# all. Prints one table. A benchmark, not a test:
# exits 0 unless a server fails to start.
#
# Usage: bash bench/lock.sh [WAITERS]        (default 1000)
# Env:   KSHIMD (default build/kshimd), ETCD (/usr/bin/etcd), ETCDCTL,
#        PORT (26700: client PORT, peer PORT+50).
# Run it inside a network namespace of your own when others share the host.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WAITERS=${1:-1000}
KSHIMD=${KSHIMD:-$ROOT/build/kshimd}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
PORT=${PORT:-26700}
TMP=$(mktemp -d /tmp/kshim-lockbench.XXXXXX)
export ETCDCTL_API=3
SPID=

cleanup() {
    [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null || true
    [ -n "$SPID" ] && wait "$SPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

build_go() {
    local cache=${KSHIM_BUILD:-/tmp/kshim-go-cache}/bench-go hash bin
    hash=$(sha256sum "$HERE/lock.go" | cut -c1-16)
    bin="$cache/lock-$hash"
    if [ ! -x "$bin" ]; then
        mkdir -p "$cache/gocache" "$TMP/go/lock"
        cp "$HERE/lock.go" "$TMP/go/lock/main.go"
        (cd "$TMP/go/lock" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
            GOCACHE="$cache/gocache" go build -o "$bin.tmp" .) >&2
        mv "$bin.tmp" "$bin"
    fi
    echo "$bin"
}
BIN=$(build_go)

# run KIND: start the server, measure, stop it; the numbers in $TMP/KIND.out.
run() {
    local kind=$1 bin=$ETCD
    [ "$kind" = kshimd ] && bin=$KSHIMD
    "$bin" --name b --data-dir "$TMP/$kind.data" \
        --listen-client-urls "http://127.0.0.1:$PORT" --advertise-client-urls "http://127.0.0.1:$PORT" \
        --listen-peer-urls "http://127.0.0.1:$((PORT + 50))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 50))" \
        --initial-cluster "b=http://127.0.0.1:$((PORT + 50))" >"$TMP/$kind.log" 2>&1 &
    SPID=$!
    local i
    for i in $(seq 100); do
        "$ETCDCTL" --endpoints "127.0.0.1:$PORT" --dial-timeout=1s endpoint health >/dev/null 2>&1 && break
        kill -0 "$SPID" 2>/dev/null || { tail "$TMP/$kind.log" >&2; exit 1; }
        sleep 0.1
    done
    "$BIN" "127.0.0.1:$PORT" "$WAITERS" >"$TMP/$kind.out" 2>"$TMP/$kind.err" || {
        cat "$TMP/$kind.err" >&2
        exit 1
    }
    echo "rss-after $(awk '/VmHWM/ {print $2}' /proc/$SPID/status) KiB(peak)" >>"$TMP/$kind.out"
    kill "$SPID"
    wait "$SPID" 2>/dev/null || true
    SPID=
}
run etcd
run kshimd

echo "ratio = kshimd / etcd (pairs/s: higher is better; ms, s, KiB: lower is better)"
printf '%-18s %14s %14s %8s\n' row etcd kshimd ratio
while read -r name ev unit; do
    kv=$(awk -v n="$name" '$1 == n {print $2}' "$TMP/kshimd.out")
    ratio=$(awk -v a="$ev" -v b="$kv" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')
    printf '%-18s %14s %14s %8s\n' "$name" "$ev $unit" "$kv $unit" "$ratio"
done <"$TMP/etcd.out"
