#!/usr/bin/env bash
# bench/scale.sh: issue 10's scale rows, real etcd and kshimd in the same run.
#
#   restart  load KEYS keys of 1 KiB (etcd's benchmark tool), stop the server,
#            start it again and time until it answers a linearizable Get
#            (RESTARTS times, each after a clean stop; the best and the median
#            are reported, every time on stderr); RSS after the load (and its
#            anonymous and mapped-file parts), RSS after the restart, data dir size
#   conns    CONNS idle client connections (each answered one Get): server
#            RSS before and with them, KiB per connection
#   watchers WATCHERS watchers over STREAMS streams on one connection: server
#            RSS before and with them, bytes per watcher
#
# A benchmark, not a test: it prints a table (etcd, kshimd, ratio) and exits 0
# unless a server fails to start. Run it in a network namespace of your own.
#
# Usage: bash bench/scale.sh [restart] [conns] [watchers]   (default: all)
# Env:   KSHIMD (build/kshimd), ETCD (/usr/bin/etcd), KEYS (500000), RESTARTS (3),
#        CONNS (10000), WATCHERS (100000), STREAMS (100), PORT (26200),
#        KSHIMD_BEFORE (optional second kshimd, e.g. main's: an extra
#        "kshimd-before" column), BENCHMARK (etcd's tool, /tmp/perf/bin/benchmark; see
#        ../shared/anchors/build-etcd-benchmark.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KSHIMD=${KSHIMD:-$ROOT/build/kshimd}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
BENCHMARK=${BENCHMARK:-/tmp/perf/bin/benchmark}
KEYS=${KEYS:-500000}
RESTARTS=${RESTARTS:-3}
CONNS=${CONNS:-10000}
WATCHERS=${WATCHERS:-100000}
STREAMS=${STREAMS:-100}
PORT=${PORT:-26200}
ROWS=("$@")
[ ${#ROWS[@]} -eq 0 ] && ROWS=(restart conns watchers)
TMP=$(mktemp -d /tmp/kshim-scale.XXXXXX)
PID=
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

build_go() {
    local cache=${KSHIM_BUILD:-/tmp/kshim-go-cache}/bench-go hash bin
    hash=$(sha256sum "$HERE/scale.go" | cut -c1-16)
    bin="$cache/scale-$hash"
    if [ ! -x "$bin" ]; then
        mkdir -p "$cache/gocache" "$TMP/go/scale"
        cp "$HERE/scale.go" "$TMP/go/scale/main.go"
        (cd "$TMP/go/scale" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
            GOCACHE="$cache/gocache" go build -o "$bin.tmp" .) >&2
        mv "$bin.tmp" "$bin"
    fi
    echo "$bin"
}

now_ms() { date +%s%3N; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# VmRSS = RssAnon (what the process allocated: heaps, memtables, caches) +
# RssFile (pages of files it maps that are in memory: clean page cache the
# kernel can drop; LevelDB maps its tables, etcd its bbolt file).
anon_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
file_kb() { awk '/^RssFile/ {print $2}' "/proc/$1/status"; }

# start NAME BINARY [fresh|keep]: starts the server (PID); START_MS = ms until
# it answered a linearizable Get.
start() {
    local name=$1 bin=$2 mode=${3:-fresh} ep="http://127.0.0.1:$PORT" peer="http://127.0.0.1:$((PORT + 1))"
    [ "$mode" = fresh ] && rm -rf "$TMP/$name.data"
    local t0
    t0=$(now_ms)
    "$bin" --name "$name" --data-dir "$TMP/$name.data" --quota-backend-bytes 8589934592 \
        --listen-client-urls "$ep" --advertise-client-urls "$ep" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$name=$peer" >>"$TMP/$name.log" 2>&1 &
    PID=$!
    # First the port (a client that dials too early sits in gRPC's reconnect
    # backoff for a second), then a linearizable Get.
    for _ in $(seq 30000); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.002
    done
    for _ in $(seq 3000); do
        if "$ETCDCTL" --endpoints "127.0.0.1:$PORT" --command-timeout=1s get probe >/dev/null 2>&1; then
            START_MS=$(($(now_ms) - t0))
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    echo "$name did not start; log:" >&2
    tail -20 "$TMP/$name.log" >&2
    exit 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

declare -A R
row_restart() { # NAME BINARY
    local name=$1 bin=$2
    start "$name" "$bin"
    "$BENCHMARK" --endpoints "127.0.0.1:$PORT" --conns 10 --clients 100 put --total "$KEYS" \
        --key-size 32 --val-size 1024 --key-space-size "$KEYS" --sequential-keys >"$TMP/$name-load.log" 2>&1
    R[$name,load_rss]=$(rss_kb "$PID")
    R[$name,load_hwm]=$(hwm_kb "$PID")
    R[$name,load_anon]=$(anon_kb "$PID")
    R[$name,load_file]=$(file_kb "$PID")
    stop
    local times=() i
    for i in $(seq "$RESTARTS"); do
        start "$name" "$bin" keep
        times+=("$START_MS")
        if [ "$i" = "$RESTARTS" ]; then
            sleep 1
            R[$name,restart_rss]=$(rss_kb "$PID")
            R[$name,disk_kb]=$(du -sk "$TMP/$name.data" | cut -f1)
        fi
        stop
    done
    echo "$name restarts (ms): ${times[*]}" >&2
    local sorted
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    R[$name,restart_ms]=$(echo "$sorted" | head -1)
    R[$name,restart_med]=$(echo "$sorted" | sed -n "$(((RESTARTS + 1) / 2))p")
}

hold() { # BIN MODE ARGS...: runs the Go client until READY; its stdin is a fifo we keep open
    local fifo=$TMP/hold.fifo
    rm -f "$fifo"
    mkfifo "$fifo"
    "$@" <"$fifo" >"$TMP/hold.out" 2>"$TMP/hold.err" &
    HOLD_PID=$!
    exec 9>"$fifo"
    for _ in $(seq 6000); do
        grep -q READY "$TMP/hold.out" 2>/dev/null && return 0
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "client failed:" >&2
    cat "$TMP/hold.err" >&2
    return 1
}

release() {
    exec 9>&-
    wait "$HOLD_PID" 2>/dev/null || true
}

row_conns() {
    local name=$1 bin=$2 before
    start "$name" "$bin"
    sleep 1
    before=$(rss_kb "$PID")
    hold "$SCALE" conns -endpoint "127.0.0.1:$PORT" -n "$CONNS"
    sleep 2
    R[$name,conns_rss]=$(rss_kb "$PID")
    R[$name,conn_kb]=$(awk -v a="$before" -v b="${R[$name,conns_rss]}" -v n="$CONNS" 'BEGIN {printf "%.1f", (b - a) / n}')
    release
    stop
}

row_watchers() {
    local name=$1 bin=$2 before
    start "$name" "$bin"
    sleep 1
    before=$(rss_kb "$PID")
    hold "$SCALE" watchers -endpoint "127.0.0.1:$PORT" -n "$WATCHERS" -streams "$STREAMS"
    sleep 2
    R[$name,watch_rss]=$(rss_kb "$PID")
    R[$name,watcher_b]=$(awk -v a="$before" -v b="${R[$name,watch_rss]}" -v n="$WATCHERS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
    release
    stop
}

SCALE=$(build_go)
SERVERS=("etcd:$ETCD")
[ -n "${KSHIMD_BEFORE:-}" ] && SERVERS+=("kshimd-before:$KSHIMD_BEFORE")
SERVERS+=("kshimd:$KSHIMD")
for row in "${ROWS[@]}"; do
    for sv in "${SERVERS[@]}"; do
        echo "running $row on ${sv%%:*} ..." >&2
        "row_$row" "${sv%%:*}" "${sv#*:}"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }'; }
# line LABEL ETCD KSHIMD [KSHIMD_BEFORE]
line() {
    if [ -n "${KSHIMD_BEFORE:-}" ]; then
        printf '| %-34s | %12s | %12s | %12s | %6s |\n' "$1" "$2" "${4:-}" "$3" "$(ratio "$2" "$3")"
    else
        printf '| %-34s | %12s | %12s | %6s |\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"
    fi
}
echo
if [ -n "${KSHIMD_BEFORE:-}" ]; then
    echo "| row | etcd | kshimd-before | kshimd | kshimd/etcd |"
    echo "|---|---|---|---|---|"
else
    echo "| row | etcd | kshimd | kshimd/etcd |"
    echo "|---|---|---|---|"
fi
for row in "${ROWS[@]}"; do
    case $row in
    restart)
        b=kshimd-before
        line "RSS after loading $KEYS x 1 KiB (MB)" $((R[etcd,load_rss] / 1024)) $((R[kshimd,load_rss] / 1024)) \
            $((${R[$b,load_rss]:-0} / 1024))
        line "- of it anonymous (RssAnon, MB)" $((R[etcd,load_anon] / 1024)) $((R[kshimd,load_anon] / 1024)) \
            $((${R[$b,load_anon]:-0} / 1024))
        line "- of it mapped files (RssFile, MB)" $((R[etcd,load_file] / 1024)) $((R[kshimd,load_file] / 1024)) \
            $((${R[$b,load_file]:-0} / 1024))
        line "peak RSS during the load (MB)" $((R[etcd,load_hwm] / 1024)) $((R[kshimd,load_hwm] / 1024)) \
            $((${R[$b,load_hwm]:-0} / 1024))
        line "restart until a linearizable Get, best of $RESTARTS (ms)" "${R[etcd,restart_ms]}" \
            "${R[kshimd,restart_ms]}" "${R[$b,restart_ms]:-}"
        line "restart until a linearizable Get, median (ms)" "${R[etcd,restart_med]}" "${R[kshimd,restart_med]}" \
            "${R[$b,restart_med]:-}"
        line "RSS after the restart (MB)" $((R[etcd,restart_rss] / 1024)) $((R[kshimd,restart_rss] / 1024)) \
            $((${R[$b,restart_rss]:-0} / 1024))
        line "data dir (MB)" $((R[etcd,disk_kb] / 1024)) $((R[kshimd,disk_kb] / 1024)) $((${R[$b,disk_kb]:-0} / 1024))
        ;;
    conns)
        line "RSS with $CONNS idle conns (MB)" $((R[etcd,conns_rss] / 1024)) $((R[kshimd,conns_rss] / 1024))
        line "per idle connection (KiB)" "${R[etcd,conn_kb]}" "${R[kshimd,conn_kb]}"
        ;;
    watchers)
        line "RSS with $WATCHERS watchers (MB)" $((R[etcd,watch_rss] / 1024)) $((R[kshimd,watch_rss] / 1024))
        line "per watcher (bytes)" "${R[etcd,watcher_b]}" "${R[kshimd,watcher_b]}"
        ;;
    esac
done
echo "(lower is better in every row; ratio < 1 means kshimd uses less)"
