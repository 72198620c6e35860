#!/usr/bin/env bash
# bench/list_interference.sh: issue 7's acceptance benchmark for reads off
# the event loop: "a 20 MB LIST runs while 50 other clients put and range:
# their p99 with and without the LIST", real etcd and kshimd in the same run.
#
# For each server (real etcd, then every kshimd given): a fresh data dir,
# 10,000 keys of 2 KiB under /li/list/ (bench/list_interference.go -load),
# then 50 clients alternating a Put and a single-key Range for SECONDS
# (baseline), then the same while one more client loops unpaginated LISTs of
# the prefix (~20 MB each). A benchmark, not a test: it prints a table and
# exits 0 unless a server fails to start.
#
# Usage: bash bench/list_interference.sh [SECONDS]      (default 10)
# Env:   KSHIMD (default build/kshimd), KSHIMD_BEFORE (optional second kshimd,
#        e.g. main's, reported as "kshimd-before"), ETCD (/usr/bin/etcd),
#        CLIENTS (50), KEYS (10000), VALUE (2048), PORT (26100; PORT+1 peer).
# Run it inside a network namespace of your own when others share the host.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SECONDS_RUN=${1:-10}
KSHIMD=${KSHIMD:-$ROOT/build/kshimd}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-10000}
VALUE=${VALUE:-2048}
PORT=${PORT:-26100}
TMP=$(mktemp -d /tmp/kshim-li.XXXXXX)
PID=

cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

build_go() {
    local cache=${KSHIM_BUILD:-/tmp/kshim-go-cache}/bench-go
    local hash bin
    hash=$(sha256sum "$HERE/list_interference.go" | cut -c1-16)
    bin="$cache/list_interference-$hash"
    if [ ! -x "$bin" ]; then
        mkdir -p "$cache/gocache" "$TMP/go/li"
        cp "$HERE/list_interference.go" "$TMP/go/li/main.go"
        (cd "$TMP/go/li" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
            GOCACHE="$cache/gocache" go build -o "$bin.tmp" .) >&2
        mv "$bin.tmp" "$bin"
    fi
    echo "$bin"
}

start() { # NAME BINARY
    local name=$1 bin=$2 ep="http://127.0.0.1:$PORT" peer="http://127.0.0.1:$((PORT + 1))"
    "$bin" --name "$name" --data-dir "$TMP/$name.data" \
        --listen-client-urls "$ep" --advertise-client-urls "$ep" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$name=$peer" >"$TMP/$name.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        if "$ETCDCTL" --endpoints "127.0.0.1:$PORT" endpoint health >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "$name did not start; log:" >&2
    cat "$TMP/$name.log" >&2
    exit 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

field() { # LINE NAME
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

BIN=$(build_go)
SERVERS=("etcd:$ETCD")
[ -n "${KSHIMD_BEFORE:-}" ] && SERVERS+=("kshimd-before:$KSHIMD_BEFORE")
SERVERS+=("kshimd:$KSHIMD")
ROWS=()
for entry in "${SERVERS[@]}"; do
    name=${entry%%:*}
    bin=${entry#*:}
    start "$name" "$bin"
    args=(-endpoint "127.0.0.1:$PORT" -keys "$KEYS" -value "$VALUE" -clients "$CLIENTS" -seconds "$SECONDS_RUN")
    base=$("$BIN" "${args[@]}" -load)
    with=$("$BIN" "${args[@]}" -list)
    stop
    echo "$name baseline: $base" >&2
    echo "$name with LIST: $with" >&2
    for mode in base with; do
        line=${!mode}
        label=$([ "$mode" = base ] && echo "no LIST" || echo "LIST loop")
        ROWS+=("$(printf '| %-13s | %-9s | %8s | %6s | %6s | %6s | %6s | %6s | %5s | %7s | %5s |' \
            "$name" "$label" "$(field "$line" ops)" "$(field "$line" put_p50_ms)" \
            "$(field "$line" put_p99_ms)" "$(field "$line" get_p50_ms)" "$(field "$line" get_p99_ms)" \
            "$(field "$line" all_p99_ms)" "$(field "$line" lists)" "$(field "$line" list_p50_ms)" \
            "$(field "$line" list_mb)")")
    done
done
echo
echo "$CLIENTS clients x ${SECONDS_RUN}s (put + single-key range), $KEYS keys x $VALUE B under the LIST prefix"
echo
echo "| server        | phase     |      ops | put50  | put99  | get50  | get99  | all99  | lists | list50  | MB    |"
echo "|---------------|-----------|----------|--------|--------|--------|--------|--------|-------|---------|-------|"
printf '%s\n' "${ROWS[@]}"
echo
echo "(latencies in ms; lists = unpaginated LISTs completed during the phase)"
