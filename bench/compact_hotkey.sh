#!/usr/bin/env bash
# bench/compact_hotkey.sh -- compaction of a hot key, real etcd vs kshimd.
#
# Owns: the servers it starts (fresh data dirs under $WORK, 127.0.0.1 client
# ports PORT (etcd, peer PORT+50) and PORT+1 (kshimd), one after the other,
# stopped by PID), $WORK, and the Go client it builds from
# e2e/compact_hotkey.go (GOPATH mode, offline, cached by source hash).
#
# For each server: VERSIONS versions of one key plus OTHERS other keys, then
# Compact at the head revision with physical=true while another client does
# puts and ranges in closed loops. Prints a table: how long the physical
# compaction took, the server's peak RSS (VmHWM from /proc/PID/status, whole
# run incl. the load), and the other client's put/range p50/p99/max and
# errors during the compaction.
#
# Usage: bench/compact_hotkey.sh [VERSIONS [OTHERS]]      (default 20000 10000)
# Env:   ETCD=/usr/bin/etcd  KSHIMD=<repo>/build/kshimd  PORT=24140
#        WORK=/tmp/kshim-compact-bench  KEEP=1 (keep $WORK)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ETCD=${ETCD:-/usr/bin/etcd}
KSHIMD=${KSHIMD:-$SRC/build/kshimd}
PORT=${PORT:-24140}
WORK=${WORK:-/tmp/kshim-compact-bench}
VERSIONS=${1:-20000}
OTHERS=${2:-10000}

[ -x "$KSHIMD" ] || { echo "no kshimd at $KSHIMD (build it first)" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
PIDS=()
cleanup() {
  local p
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -9 "$p" 2>/dev/null || true; done
  for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

build_client() {
  local cache=${KSHIM_BUILD:-$SRC/build}/e2e-go
  local hash bin
  hash=$(sha256sum "$SRC/e2e/compact_hotkey.go" | cut -c1-16)
  bin=$cache/compact_hotkey-$hash
  if [ ! -x "$bin" ]; then
    mkdir -p "$cache/gocache" "$WORK/go"
    cp "$SRC/e2e/compact_hotkey.go" "$WORK/go/main.go"
    (cd "$WORK/go" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$cache/gocache" \
      go build -o "$bin.tmp" .) >&2
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

wait_port() { # PID PORT
  local i
  for i in $(seq 100); do
    kill -0 "$1" 2>/dev/null || { echo "server died, log:" >&2; tail "$WORK"/*.log >&2; return 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $2 not ready" >&2
  return 1
}

proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# run NAME PORT CMD...: start the server, run the client, print one result line.
run() {
  local name=$1 port=$2
  shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$pid" "$port"
  sleep 0.5
  local line
  line=$("$CLIENT" "127.0.0.1:$port" bench "$VERSIONS" "$OTHERS" 2>>"$WORK/$name.client.log" | tail -1)
  local hwm rss
  hwm=$(proc_kb "$pid" VmHWM)
  rss=$(proc_kb "$pid" VmRSS)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$name $line hwm_kb=$hwm rss_kb=$rss"
}

field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }

CLIENT=$(build_client)
echo "hot key compaction: $VERSIONS versions of one key + $OTHERS other keys, compact at the head (physical)" >&2
R_ETCD=$(run etcd "$PORT" "$ETCD" --name bench --data-dir "$WORK/etcd.data" \
  --listen-client-urls "http://127.0.0.1:$PORT" --advertise-client-urls "http://127.0.0.1:$PORT" \
  --listen-peer-urls "http://127.0.0.1:$((PORT + 50))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 50))" \
  --initial-cluster "bench=http://127.0.0.1:$((PORT + 50))")
R_KSHIM=$(run kshimd "$((PORT + 1))" "$KSHIMD" --name bench --data-dir "$WORK/kshimd.data" \
  --listen-client-urls "http://127.0.0.1:$((PORT + 1))" \
  --advertise-client-urls "http://127.0.0.1:$((PORT + 1))")

printf '| %-32s | %12s | %12s |\n' "" etcd kshimd
printf '|%s|%s|%s|\n' "----------------------------------" "--------------" "--------------"
row() { # LABEL FIELD [SCALE]
  local a b
  a=$(field "$R_ETCD" "$2")
  b=$(field "$R_KSHIM" "$2")
  if [ -n "${3:-}" ]; then
    a=$(awk -v x="$a" 'BEGIN {printf "%.1f", x / 1024}')
    b=$(awk -v x="$b" 'BEGIN {printf "%.1f", x / 1024}')
  fi
  printf '| %-32s | %12s | %12s |\n' "$1" "$a" "$b"
}
row "load (s)" load_s
row "compact physical (ms)" compact_ms
row "compact answer" compact
row "peak RSS VmHWM (MB)" hwm_kb mb
row "RSS after (MB)" rss_kb mb
row "puts during compaction" puts
row "put errors" put_errors
row "put p50 (ms)" put_p50_ms
row "put p99 (ms)" put_p99_ms
row "put max (ms)" put_max_ms
row "ranges during compaction" ranges
row "range errors" range_errors
row "range p99 (ms)" range_p99_ms
row "range max (ms)" range_max_ms
