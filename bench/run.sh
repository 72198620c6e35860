#!/usr/bin/env bash
# bench/run.sh -- side-by-side benchmark: real etcd vs kshimd, same run, same matrix.
#
# Owns: the servers it starts (fresh data dirs under /tmp, 127.0.0.1 client
# ports PORT (etcd) and PORT+2 (kshimd), peer ports +1, stopped by PID), its
# work dir ($BENCH_WORK/run) and the results file. Builds etcd's own load
# generator with the shared anchor script (build-etcd-benchmark.sh), starts
# both servers, runs each row on etcd then on kshimd, measures RSS and data dir
# size after the put rows, and prints a table of requests/s and p99 with the
# ratio kshimd/etcd. The kube-* rows use the anchors' kubeload instead
# (Kubernetes-like 2 KiB pod puts and paginated LISTs). A second section
# (bench/cluster.sh) runs rows on a 3-member etcd and a 3-member kshimd cluster.
# See bench/README.md.
#
# Usage: bench/run.sh [--section all|single|cluster] [--quick] [--tls] [--sequential] [--repeat N]
#          [--rows a,b,c] [--cluster-rows a,b] [--add-rows a,b] [--no-kube] [--scale X]
#          [--row-timeout S] [--scale-rows restart,conns,watchers] [--out FILE] [--list]
# Env:   SECTION=all  ETCD=/usr/bin/etcd  KSHIMD=<repo>/build/kshimd  ETCDCTL=/usr/bin/etcdctl
#        BENCH_WORK=/tmp/perf  RUNDIR=$BENCH_WORK/run  PORT=24110  CLUSTER_PORT=PORT+20
#        SHARED=<repo>/../shared  CERTS=<repo>/certs/dev  EXTRA_FLAGS="" (passed to every server)
#        --scale-rows runs bench/scale.sh (its env: KEYS, CONNS, WATCHERS, ...) after the
#        sections and adds its table to the report (restart with 500k keys: ~5 min)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ETCD=${ETCD:-/usr/bin/etcd}
KSHIMD=${KSHIMD:-$SRC/build/kshimd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
BENCH_WORK=${BENCH_WORK:-/tmp/perf}
PORT=${PORT:-24110}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
CERTS=${CERTS:-$SRC/certs/dev}
if [ -z "${SHARED:-}" ]; then
  SHARED=$SRC/../shared
  [ -d "$SHARED/anchors" ] || SHARED=/work/shared
fi
OUT=$SRC/bench/results/latest.md
SCALE=1
ROW_TIMEOUT=45
TLS=0
QUICK=0
SEQUENTIAL=0
REPEAT=1
SCALE_ROWS=

# ---------------------------------------------------------------- the rows
# A row is a name with: ops at SCALE=1, an optional setup function run once
# against the fresh server before it, a description, and the benchmark
# arguments (@N@ = scaled op count). "@mem" in a row list is not a benchmark:
# it records RSS and data dir size at that point. Rows run in list order on one
# server instance, so stateful rows (auth) go last. ROW_TOOL says which load
# generator runs the row: "bench" (etcd's tools/benchmark, def_row) or "kube"
# (the anchors' kubeload, def_kube_row; its RESULT line is parsed instead).
KV="--key-size 256 --val-size 1024 --key-space-size 100000"
# ROW_SHOWS says which of the row's numbers mean something: "rps p99"
# (default), "rps" or "p99"; the others are printed as "-".
declare -A ROW_OPS ROW_ARGS ROW_SETUP ROW_DESC ROW_SHOWS ROW_TOOL SETUP_DONE
def_row() { # NAME OPS SETUP DESC ARGS...
  local name=$1; ROW_OPS[$name]=$2; ROW_SETUP[$name]=$3; ROW_DESC[$name]=$4; shift 4
  ROW_ARGS[$name]="$*"
  ROW_SHOWS[$name]="rps p99"
  ROW_TOOL[$name]=bench
}
def_kube_row() { # NAME OPS SETUP DESC KUBELOAD-ARGS...
  def_row "$@"
  ROW_TOOL[$1]=kube
}
def_row put-c1        15000  -  "put 256 B key / 1 KiB value, 1 client, 1 conn, random keys" \
  --conns 1 --clients 1 put $KV --total @N@
def_row put-c100      100000 -  "put, 100 clients over 10 conns, random keys" \
  --conns 10 --clients 100 put $KV --total @N@
def_row put-c1-seq    15000  -  "put, 1 client, sequential keys" \
  --conns 1 --clients 1 put $KV --sequential-keys --total @N@
def_row put-c100-seq  100000 -  "put, 100 clients / 10 conns, sequential keys" \
  --conns 10 --clients 100 put $KV --sequential-keys --total @N@
def_row range-l-c100  100000 setup_range_key "linearizable Range of one 1 KiB key, 100 clients / 10 conns" \
  --conns 10 --clients 100 range /bench/range-key --consistency l --total @N@
def_row range-s-c100  100000 setup_range_key "serializable Range of one 1 KiB key, 100 clients / 10 conns" \
  --conns 10 --clients 100 range /bench/range-key --consistency s --total @N@
def_row txn-put-c100  60000  -  "Txn with one Put, 100 clients / 10 conns" \
  --conns 10 --clients 100 txn-put $KV --txn-ops 1 --total @N@
def_row watch-events  50000  setup_watch_probe "ops = puts to 100 keys watched by 1000 watchers (10 streams x 100), so 10 events per put; req/s = watch events received per second" \
  --conns 10 --clients 10 watch --streams 10 --watch-per-stream 100 --watched-key-total 100 \
  --key-space-size 100 --sequential-keys --put-total @N@ --put-rate 1000000
def_row watch-latency 1000   setup_watch_probe "100 watchers on one key, 100 puts/s; p99 = put ack -> event delivered" \
  --conns 10 --clients 100 watch-latency --put-rate 100 --total @N@ --key-size 256 --val-size 1024
# Kubernetes-like rows, as instance B of the shared etcd-baseline.sh: 10k pods
# of 2 KiB under one namespace prefix, then the apiserver's LIST of them. For
# list rows ops = complete LISTs, req/s = LISTs/s, p99 = whole-LIST latency.
# The list rows' setup loads the pods if kube-load-10k has not (same count).
KUBE_PREFIX=/registry/pods/ns/
KUBE_KEYS=10000
def_kube_row kube-load-10k $KUBE_KEYS - "Kubernetes-like load: put ${KUBE_KEYS} pods of 2 KiB under ${KUBE_PREFIX}, 50 clients on 1 conn (kubeload)" \
  load -prefix ${KUBE_PREFIX}pod- -count @N@ -val-size 2048 -clients 50
def_kube_row kube-list-limit500 50 setup_kube_pods "ops = complete paginated LISTs of ${KUBE_PREFIX} (limit 500, first page linearizable, the rest pinned to its revision); req/s = LISTs/s, p99 = whole LIST" \
  list -prefix $KUBE_PREFIX -limit 500 -iterations @N@
def_kube_row kube-list-nolimit 20 setup_kube_pods "ops = unpaginated LISTs of ${KUBE_PREFIX} (one linearizable Range, ~20 MB); req/s = LISTs/s, p99 = whole LIST" \
  list -prefix $KUBE_PREFIX -limit 0 -iterations @N@
ROW_SHOWS[watch-events]=rps
ROW_SHOWS[watch-latency]=p99
def_row lease-keepalive 50000 - "LeaseKeepAlive round trips, 100 clients / 10 conns" \
  --conns 10 --clients 100 lease-keepalive --total @N@
def_row auth-put-c100 60000  setup_auth "put with auth enabled (user root, password), 100 clients / 10 conns" \
  --conns 10 --clients 100 --user root:benchpw put $KV --total @N@

KUBE_ROWS="kube-load-10k,kube-list-limit500,kube-list-nolimit"
DEFAULT_ROWS="put-c1,put-c100,@mem,range-l-c100,range-s-c100,txn-put-c100,$KUBE_ROWS"
ROWS=$DEFAULT_ROWS
SECTION=${SECTION:-all}
# shellcheck source=cluster.sh
. "$SRC/bench/cluster.sh"
NO_KUBE=0
ADD_ROWS=

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

usage() {
  sed -n '15,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

list_rows() {
  local r
  echo "default rows: $DEFAULT_ROWS"
  echo "default 3-member cluster rows: $CLUSTER_ROWS"
  for r in $(printf '%s\n' "${!ROW_OPS[@]}" | sort); do
    printf '  %-18s %7s ops  %s\n' "$r" "${ROW_OPS[$r]}" "${ROW_DESC[$r]}"
  done
  echo "  @mem               record RSS and data dir size here"
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) QUICK=1; SCALE=0.3; ROW_TIMEOUT=20 ;;
      --tls) TLS=1 ;;
      --sequential) SEQUENTIAL=1 ;;
      --repeat) [ $# -ge 2 ] || usage; REPEAT=$2; shift ;;
      --rows) [ $# -ge 2 ] || usage; ROWS=$2; shift ;;
      --cluster-rows) [ $# -ge 2 ] || usage; CLUSTER_ROWS=$2; shift ;;
      --section) [ $# -ge 2 ] || usage; SECTION=$2; shift ;;
      --add-rows) [ $# -ge 2 ] || usage; ADD_ROWS=$2; shift ;;
      --no-kube) NO_KUBE=1 ;;
      --scale) [ $# -ge 2 ] || usage; SCALE=$2; shift ;;
      --row-timeout) [ $# -ge 2 ] || usage; ROW_TIMEOUT=$2; shift ;;
      --out) [ $# -ge 2 ] || usage; OUT=$2; shift ;;
      --scale-rows) [ $# -ge 2 ] || usage; SCALE_ROWS=$2; shift ;;
      --list) list_rows; exit 0 ;;
      -h|--help) usage ;;
      *) echo "bench/run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
  done
  [ -n "$ADD_ROWS" ] && ROWS="$ROWS,$ADD_ROWS"
  if [ "$NO_KUBE" = 1 ]; then
    ROWS=$(drop_kube_rows "$ROWS"); CLUSTER_ROWS=$(drop_kube_rows "$CLUSTER_ROWS")
  fi
  case "$SECTION" in
    all|single|cluster) ;;
    *) die "--section needs all, single or cluster" ;;
  esac
  [ "$SECTION" = cluster ] || [ -n "$ROWS" ] || die "no rows left to run"
  [ "$SECTION" = single ] || [ -n "$CLUSTER_ROWS" ] || die "no cluster rows left to run"
  [ "$SECTION" = single ] || [ "$TLS" = 0 ] || die "--tls is for the one-member section: add --section single"
  local r
  for r in ${ROWS//,/ } ${CLUSTER_ROWS//,/ }; do
    [ "$r" = @mem ] || [ -n "${ROW_OPS[$r]:-}" ] || die "unknown row '$r' (see --list)"
  done
  [[ "$SCALE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--scale needs a number"
  [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "--repeat needs a count >= 1"
  [[ "$ROW_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--row-timeout needs whole seconds"
  for r in ${SCALE_ROWS//,/ }; do
    case "$r" in restart|conns|watchers) ;; *) die "--scale-rows takes restart, conns, watchers" ;; esac
  done
}

drop_kube_rows() { # ROWLIST -> the list without kube-* rows
  local r out=
  for r in ${1//,/ }; do
    [ "${ROW_TOOL[$r]:-}" = kube ] || out="$out${out:+,}$r"
  done
  echo "$out"
}

scaled() { awk -v x="$1" -v s="$SCALE" 'BEGIN{v=int(x*s); if(v<1)v=1; print v}'; }

# ---------------------------------------------------------------- tools
build_benchmark() {
  local script=$SHARED/anchors/build-etcd-benchmark.sh
  [ -f "$script" ] || die "missing $script (set SHARED=)"
  log "building etcd benchmark tool into $BENCH_WORK/bin"
  WORK=$BENCH_WORK bash "$script" > "$RUNDIR/build-benchmark.log" 2>&1 ||
    { tail -20 "$RUNDIR/build-benchmark.log" >&2; die "benchmark build failed"; }
  BENCH=$BENCH_WORK/bin/benchmark
  KUBELOAD=$BENCH_WORK/bin/kubeload
  [ -x "$BENCH" ] || die "no $BENCH after build"
  [ -x "$KUBELOAD" ] || die "no $KUBELOAD after build"
}

port_busy() {
  if command -v ss >/dev/null; then ss -Htln "sport = :$1" 2>/dev/null | grep -q .
  else (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; fi
}

# ---------------------------------------------------------------- servers
# Per-server state, keyed by tag (etcd, kshimd). By default both servers run
# at once on their own ports and each row runs on etcd then right away on
# kshimd, so load from other tenants of the machine hits both alike;
# --sequential runs all rows on etcd, stops it, then all rows on kshimd.
# SRV_PID: the server's PIDs (three for a cluster, space-separated), SRV_DATA
# its data dirs (same), SRV_EPS its client endpoints (host:port, comma-separated).
declare -A SRV_PID SRV_DATA SRV_EPS
SCHEME=http
TLS_CLIENT=()
TLS_SERVER=()

stop_server() { # TAG (every member of it)
  local tag=$1 pid d
  for pid in ${SRV_PID[$1]:-}; do
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in ${SRV_PID[$1]:-}; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SRV_PID[$tag]=
  for d in ${SRV_DATA[$tag]:-}; do rm -rf "$d"; done
  SRV_DATA[$tag]=
}
stop_all() { local t; for t in "${!SRV_PID[@]}"; do stop_server "$t"; done; }
trap stop_all EXIT
trap 'exit 130' INT TERM

ctl() { # TAG ARGS...
  local tag=$1; shift
  "$ETCDCTL" --endpoints "$(scheme_eps "$tag")" "${TLS_CLIENT[@]}" "$@"
}
scheme_eps() { # TAG: its endpoints with the scheme, comma-separated
  local e out=
  for e in ${SRV_EPS[$1]//,/ }; do out="$out${out:+,}$SCHEME://$e"; done
  echo "$out"
}

start_server() { # TAG BINARY PORT (peer port = PORT+1)
  local tag=$1 bin=$2 port=$3 i
  local pport=$((port + 1))
  for i in $(seq 50); do port_busy "$port" || port_busy "$pport" || break; sleep 0.2; done
  port_busy "$port" && die "port $port is busy"
  port_busy "$pport" && die "port $pport is busy"
  SRV_EPS[$tag]=127.0.0.1:$port
  SRV_DATA[$tag]=$(mktemp -d "/tmp/kshim-bench-$tag.XXXXXX")
  local ep="$SCHEME://127.0.0.1:$port" pp="http://127.0.0.1:$pport"
  # shellcheck disable=SC2086
  "$bin" --name "bench-$tag" --data-dir "${SRV_DATA[$tag]}" \
    --listen-client-urls "$ep" --advertise-client-urls "$ep" \
    --listen-peer-urls "$pp" --initial-advertise-peer-urls "$pp" \
    --initial-cluster "bench-$tag=$pp" --initial-cluster-token "bench-$tag" \
    "${TLS_SERVER[@]}" $EXTRA_FLAGS > "$RUNDIR/$tag-server.log" 2>&1 &
  SRV_PID[$tag]=$!
  for i in $(seq 200); do
    if ctl "$tag" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; then
      log "$tag up: $bin pid ${SRV_PID[$tag]} port $port data ${SRV_DATA[$tag]}"
      printf '%s\t@rss0\t%s\n' "$tag" "$(proc_kb "${SRV_PID[$tag]}" VmRSS)" >> "$MEMF"
      return 0
    fi
    kill -0 "${SRV_PID[$tag]}" 2>/dev/null || { tail -5 "$RUNDIR/$tag-server.log" >&2; die "$tag exited at start"; }
    sleep 0.1
  done
  die "$tag did not become healthy in 20 s (log $RUNDIR/$tag-server.log)"
}

setup_range_key() { head -c 1024 /dev/zero | tr '\0' v | ctl "$1" put /bench/range-key >/dev/null; }
# The watch benchmarks cannot tell a cancelled watch from a fast one
# (watch-latency reads from a closed channel and reports ~0 ms), so a watch
# row only runs after etcdctl has seen one event arrive.
setup_watch_probe() {
  local out=$RUNDIR/$1-watch-probe.out wpid i
  # exec, so that $! is etcdctl itself and the kill below reaches it
  ( exec "$ETCDCTL" --endpoints "$(scheme_eps "$1")" "${TLS_CLIENT[@]}" \
      watch /bench/watch-probe > "$out" 2>&1 ) &
  wpid=$!
  sleep 0.3
  ctl "$1" put /bench/watch-probe probe-value >/dev/null
  for i in $(seq 30); do grep -q probe-value "$out" && break; sleep 0.1; done
  kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
  grep -q probe-value "$out" || { cat "$out"; return 1; }
}
# kube_count TAG: keys under KUBE_PREFIX (etcdctl's json omits a zero count)
kube_count() {
  local n
  n=$(ctl "$1" get "$KUBE_PREFIX" --prefix --limit 1 -w json | grep -o '"count":[0-9]*' | cut -d: -f2)
  echo "${n:-0}"
}
# setup_kube_pods TAG: make sure the LIST rows have the pods kube-load-10k puts
setup_kube_pods() {
  local want have
  want=$(scaled "$KUBE_KEYS"); have=$(kube_count "$1") || return 1
  echo "$have keys under $KUBE_PREFIX, want $want"
  [ "$have" -ge "$want" ] && return 0
  "$KUBELOAD" load -prefix "${KUBE_PREFIX}pod-" -count "$want" -val-size 2048 -clients 50 \
    -endpoints "${SRV_EPS[$1]}" || return 1
  have=$(kube_count "$1") || return 1
  echo "after load: $have keys"
  [ "$have" -ge "$want" ]
}
setup_auth() {
  ctl "$1" user add root --new-user-password benchpw >/dev/null &&
  ctl "$1" user grant-role root root >/dev/null &&
  ctl "$1" auth enable >/dev/null
}

# proc_kb "PID..." FIELD: the sum of a /proc/PID/status field (kB) over the PIDs
proc_kb() {
  local p; for p in $1; do cat "/proc/$p/status" 2>/dev/null; done |
    awk -v k="$2:" '$1==k{s+=$2; n++} END{if(n)print s}'
}
# cpu_ticks "PID...": utime+stime summed over the PIDs
cpu_ticks() {
  local p; for p in $1; do cat "/proc/$p/stat" 2>/dev/null; done | awk '{s+=$14+$15} END{print s+0}'
}
alive() { local p; for p in $1; do kill -0 "$p" 2>/dev/null || return 1; done; } # "PID...": all running
du_kb() { local d s=0 k; for d in $1; do k=$(du -sk "$d" 2>/dev/null | cut -f1); s=$((s + ${k:-0})); done; echo "$s"; }
# busy ticks of the whole machine: user+nice+system+irq+softirq+steal
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }

# parse_bench LOG: the last report block of a benchmark log ->
# "rps p99_ms errors" (same parsing as the shared etcd-baseline.sh)
parse_bench() {
  tr '\r' '\n' < "$1" | awk '
    /[Ss]ummary:/ { delete v; errs = 0; inerr = 0 }
    /Requests\/sec:/ { s=$0; sub(/.*Requests\/sec:[ \t]*/, "", s); split(s, a, " "); v["rps"]=a[1] }
    /^[ \t]*[0-9.]+% in / { v[$1]=$3 }
    /Error distribution:/ { inerr = 1; next }
    inerr && /^[ \t]*\[[0-9]+\]/ { s=$1; gsub(/[\[\]]/, "", s); errs += s }
    END { if (v["rps"] == "") print "- - " errs+0;
          else printf "%.1f %.3f %d\n", v["rps"], v["99%"] * 1000, errs }'
}

# parse_kube LOG: kubeload's RESULT line -> "rps p99_ms errors"; for list rows
# rps = complete LISTs/s and p99 = whole-LIST p99. NOTE: the list shape.
kv() { tr ' ' '\n' <<< "$1" | awk -F= -v k="$2" '$1==k{print $2}'; }
parse_kube() {
  local r
  r=$(grep '^RESULT' "$1" | tail -1 || true)
  case "$(kv "$r" op)" in
    load) echo "$(kv "$r" rps) $(kv "$r" p99_ms) $(kv "$r" errors)" ;;
    list) echo "$(kv "$r" lists_per_s) $(kv "$r" list_p99_ms) 0" ;;
    *) echo "- - 0" ;;
  esac
}
# kube_note TAG ROW LOG: appends "tag row keys pages mb page_p50 page_p99 keys_per_s"
# to $NOTEF for a list row, and after a load row the key count under the prefix
kube_note() {
  local r
  r=$(grep '^RESULT' "$3" | tail -1 || true)
  case "$(kv "$r" op)" in
    list) printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(kv "$r" keys_per_list)" \
            "$(kv "$r" pages_per_list)" "$(kv "$r" mb_per_list)" "$(kv "$r" page_p50_ms)" \
            "$(kv "$r" page_p99_ms)" "$(kv "$r" keys_per_s)" >> "$NOTEF" ;;
    load) printf '%s\t%s\t%s\n' "$1" "$2" "$(kube_count "$1" 2>/dev/null || echo '?')" >> "$NOTEF" ;;
  esac
}

# run_row TAG ROW: appends to $RES one line
#   tag row ops rps p99_ms errs server_cpu_us_per_op status other_cpu_pct
# other_cpu_pct: CPU used on the machine during the row by anything but this
# server and the load generator, in % of one core: >10 means contaminated.
run_row() {
  local tag=$1 row=$2 pid=${SRV_PID[$1]} ops args logf t0 t1 s0 s1 w0 w1 rc=0 st=ok tf setup_st=
  ops=$(scaled "${ROW_OPS[$row]}")
  args=${ROW_ARGS[$row]//@N@/$ops}
  if [ "${ROW_SETUP[$row]}" != - ] && [ -z "${SETUP_DONE[$tag:$row]:-}" ]; then
    SETUP_DONE[$tag:$row]=ok
    "${ROW_SETUP[$row]}" "$tag" > "$RUNDIR/$tag-$row-setup.log" 2>&1 || {
      log "$tag $row: setup ${ROW_SETUP[$row]} failed (log $RUNDIR/$tag-$row-setup.log)"
      SETUP_DONE[$tag:$row]=setup-failed; }
  fi
  [ "${SETUP_DONE[$tag:$row]:-ok}" = ok ] || setup_st=${SETUP_DONE[$tag:$row]}
  if [ -n "$setup_st" ]; then # numbers from a row whose setup failed would mislead
    printf '%s\t%s\t%s\t-\t-\t0\t-\t%s\t-\n' "$tag" "$row" "$ops" "$setup_st" >> "$RES"
    return 0
  fi
  logf=$RUNDIR/$tag-$row.log
  local tool=${ROW_TOOL[$row]} cmd
  if [ "$tool" = kube ] && [ "$TLS" = 1 ]; then # kubeload has no TLS flags
    printf '%s\t%s\t%s\t-\t-\t0\t-\t%s\t-\n' "$tag" "$row" "$ops" no-tls >> "$RES"
    return 0
  fi
  # shellcheck disable=SC2206
  if [ "$tool" = kube ]; then cmd=("$KUBELOAD" $args -endpoints "${SRV_EPS[$tag]}")
  else cmd=("$BENCH" --endpoints "${SRV_EPS[$tag]}" --precise "${TLS_CLIENT[@]}" $args); fi
  log "$tag $row: ${cmd[0]##*/} ${cmd[*]:1}"
  tf=$RUNDIR/time.tmp
  t0=$(cpu_ticks "$pid"); s0=$(sys_ticks); w0=$(date +%s%N)
  { TIMEFORMAT='%U %S'; time timeout "$ROW_TIMEOUT" "${cmd[@]}" > "$logf" 2>&1; } 2> "$tf" || rc=$?
  t1=$(cpu_ticks "$pid"); s1=$(sys_ticks); w1=$(date +%s%N)
  [ "$rc" = 124 ] && st=timeout
  [ "$rc" != 0 ] && [ "$rc" != 124 ] && st="exit$rc"
  alive "$pid" || st=died
  local rps p99 errs cpu other
  if [ "$tool" = kube ]; then
    read -r rps p99 errs <<< "$(parse_kube "$logf")"
    kube_note "$tag" "$row" "$logf"
  else
    read -r rps p99 errs <<< "$(parse_bench "$logf")"
  fi
  [ "$rps" = - ] && [ "$st" = ok ] && st=no-result
  cpu=$(awk -v a="$t0" -v b="$t1" -v h="$HZ" -v o="$ops" 'BEGIN{printf "%.0f", (b-a)/h*1e6/o}')
  other=$(awk -v a="$s0" -v b="$s1" -v e0="$t0" -v e1="$t1" -v h="$HZ" -v w="$(( (w1 - w0) / 1000000 ))" \
            -v c="$(awk '{print $1+$2}' "$tf" 2>/dev/null)" \
            'BEGIN{o=((b-a)-(e1-e0))/h-c; if(o<0)o=0; if(w<1)w=1; printf "%.0f", o*100000/w}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tag" "$row" "$ops" "$rps" "$p99" "$errs" "$cpu" "$st" "$other" >> "$RES"
  [ "$st" = died ] && die "$tag died during $row (log $RUNDIR/$tag-*server.log)"
  true
}

# disk_floor: etcd's documented disk check (fio: 2300-byte writes, each
# followed by fdatasync) in /tmp, where the data dirs are, once per run
# before the rows. One client's put cannot be faster than one fdatasync:
# the report gives put-c1 as a share of this floor. Writes "p50_ms p99_ms
# syncs_per_s" to $FLOORF, or nothing without fio (apt-get install fio).
disk_floor() {
  command -v fio >/dev/null || { log "no fio: the report has no disk floor (apt-get install fio)"; return 0; }
  local d json
  d=$(mktemp -d /tmp/kshim-bench-fio.XXXXXX)
  json=$(fio --rw=write --ioengine=sync --fdatasync=1 --directory="$d" --size=8m --bs=2300 \
             --name=floor --output-format=json 2>/dev/null) || json=
  rm -rf "$d"
  [ -n "$json" ] || { log "fio failed: no disk floor"; return 0; }
  python3 -c '
import json, sys
j = json.loads(sys.stdin.read())["jobs"][0]["sync"]["lat_ns"]
pc = j.get("percentile", {})
p50 = pc.get("50.000000", j["mean"]) / 1e6
p99 = pc.get("99.000000", j["max"]) / 1e6
print("%.3f %.3f %.0f" % (p50, p99, 1e9 / j["mean"]))' <<< "$json" > "$FLOORF" || : > "$FLOORF"
  [ -s "$FLOORF" ] && log "disk floor (fio fdatasync p50 p99 ms, syncs/s): $(cat "$FLOORF")"
  true
}

record_mem() { # TAG
  local tag=$1 pid=${SRV_PID[$1]}
  printf '%s\t@rss\t%s\n%s\t@anon\t%s\n%s\t@hwm\t%s\n%s\t@disk\t%s\n' \
    "$tag" "$(proc_kb "$pid" VmRSS)" "$tag" "$(proc_kb "$pid" RssAnon)" "$tag" "$(proc_kb "$pid" VmHWM)" \
    "$tag" "$(du_kb "${SRV_DATA[$tag]}")" >> "$MEMF"
}

run_rows() { # ROWLIST TAG... : every row, in order, on each of the given servers
  local rows=$1 r t i order
  shift
  for r in ${rows//,/ }; do
    if [ "$r" = @mem ]; then
      for t in "$@"; do record_mem "$t"; done
      continue
    fi
    order=("$@")
    for ((i = 1; i <= REPEAT; i++)); do
      for t in "${order[@]}"; do run_row "$t" "$r"; done
      # rotate who goes first, so none always runs on a warmer machine
      order=("${order[@]:1}" "${order[0]}")
    done
  done
  if [[ ",$rows," != *,@mem,* ]]; then for t in "$@"; do record_mem "$t"; done; fi
}

# ---------------------------------------------------------------- report
# field TAG ROW COLUMN(3=ops 4=rps 5=p99 6=errs 7=cpu 8=status 9=other):
# from the best repetition (of --repeat N): highest req/s, or lowest p99 for
# rows that show only latency
field() {
  local lat=0
  [ "${ROW_SHOWS[$2]}" = p99 ] && lat=1
  awk -F'\t' -v t="$1" -v r="$2" -v c="$3" -v lat="$lat" '
    $1==t && $2==r {
      x = lat ? -($5 == "-" ? 1e18 : $5) : $4 + 0
      if (!seen || x > best) { seen = 1; best = x; v = $c }
    }
    END { print v }' "$RES"
}
mem() { awk -F'\t' -v t="$1" -v r="$2" '$1==t && $2==r {print $3}' "$MEMF"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0 > 0 && b != "" && b != "-") printf "%.2f", b/a; else print "-" }'; }
mb() { awk -v k="$1" 'BEGIN{ if (k == "") print "-"; else printf "%.1f", k/1024 }'; }
cell() { # RPS STATUS ERRS: number, or the reason there is none
  local v=$1
  [ "$2" != ok ] && v="$v ($2)"
  [ -n "$3" ] && [ "$3" != 0 ] && v="$v ($3 err)"
  echo "$v"
}

# kube_notes: one line per kube row in ROWS, from the last run on each server:
# the LIST shape (keys, pages, MB, page latency) for list rows, the key count
# under the prefix after load rows; flags key counts that differ between the
# servers or from the count loaded
kube_notes() {
  local r t want line k got head=0
  want=$(scaled "$KUBE_KEYS")
  for r in ${ROWS//,/ }; do
    [ "${ROW_TOOL[$r]:-}" = kube ] || continue
    line= got=
    for t in etcd kshimd; do
      k=$(awk -F'\t' -v t="$t" -v r="$r" '$1==t && $2==r {v=$3} END {print v}' "$NOTEF")
      [ -n "$k" ] || continue
      got="$got $k"
      if [ "${ROW_ARGS[$r]%% *}" = list ]; then
        line="$line; $t $(awk -F'\t' -v t="$t" -v r="$r" '$1==t && $2==r {
          v = sprintf("%s keys, %s pages, %s MB per LIST, page p50 %s ms, p99 %s ms, %s keys/s", $3, $4, $5, $6, $7, $8) }
          END { print v }' "$NOTEF")"
      else
        line="$line; $t $k keys under $KUBE_PREFIX after the row"
      fi
    done
    [ -n "$line" ] || continue
    for k in $got; do
      [ "$k" = "$want" ] || { line="$line; KEY COUNT MISMATCH (expected $want)"; break; }
    done
    [ "$head" = 1 ] || { echo; echo "Kube rows (last run on each server):"; head=1; }
    echo "- $r:${line#;}"
  done
}

report() {
  echo "# kshimd vs etcd, $(date -u +%FT%TZ)"
  echo
  local ver
  ver=$("$ETCD" --version 2>/dev/null || true)
  echo "- etcd: \`$ETCD\` (${ver%%$'\n'*})"
  echo "- kshimd: \`$KSHIMD\`"
  echo "- transport: $([ "$TLS" = 1 ] && echo "https (TLS, client certs from $CERTS)" || echo "plaintext h2c")," \
       "$([ "$SEQUENTIAL" = 1 ] && echo "sequential (all rows on etcd, then on kshimd)" || echo "interleaved (both up; each row on etcd then kshimd)")"
  echo "- scale $SCALE$([ "$QUICK" = 1 ] && echo " (--quick)"), best of $REPEAT, row timeout ${ROW_TIMEOUT}s," \
       "host $(nproc) vCPU, loadavg at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- ratio = kshimd / etcd for req/s (higher is better for kshimd) and for memory/disk" \
       "(lower is better); only ratios from the same run are comparable"
  [[ ",$ROWS," != *,kube-list-* ]] || [ "$SECTION" = cluster ] ||
    echo "- kube-list-* rows: ops = complete LISTs, req/s = LISTs/s, p99 and cpu us/op per whole LIST"
  echo "- cpu us/op: server CPU time per request (all three members for a cluster); other cpu %: CPU" \
       "used by anything else on the machine during the row (etcd row/kshimd row, % of one core);" \
       "above ~10 the row was disturbed"
  if [ "$SECTION" != cluster ]; then
    echo
    echo "## One member"
    echo
    report_table etcd kshimd "$ROWS"
    echo
    report_mem etcd kshimd ""
    report_floor
    kube_notes
  fi
  if [ "$SECTION" != single ]; then
    echo
    echo "## 3-member clusters"
    echo
    cluster_report_notes
    echo
    report_table etcd3 kshimd3 "$CLUSTER_ROWS"
    echo
    report_mem etcd3 kshimd3 " (sum of 3 members)"
    if [ -n "${KSHIMD_BEFORE:-}" ]; then
      echo
      echo "kshimd before (\`$KSHIMD_BEFORE\`) and after (\`$KSHIMD\`), same run (ratio = after / before):"
      echo
      report_table kshimd3b kshimd3 "$CLUSTER_ROWS" before after
    fi
  fi
  if [ -n "$SCALE_ROWS" ]; then
    echo
    echo "## Scale rows (bench/scale.sh $SCALE_ROWS)"
    echo
    sed "/./,\$!d" "$RUNDIR/scale.md" # without its leading blank lines
    grep 'restarts (ms)' "$RUNDIR/scale.log" | sed 's/^/- /' || true
  fi
  echo
  echo "Rows: $(for r in $(all_rows); do printf '%s = %s; ' "$r" "${ROW_DESC[$r]}"; done)"
  echo
  echo "Raw logs: $RUNDIR"
}

all_rows() { # the distinct rows of the sections that ran
  local l=
  [ "$SECTION" = cluster ] || l=$ROWS
  [ "$SECTION" = single ] || l="$l,$CLUSTER_ROWS"
  tr ',' '\n' <<< "$l" | awk 'NF && $0 != "@mem" && !seen[$0]++'
}

report_table() { # ETCD-TAG KSHIMD-TAG ROWLIST [NAME-A NAME-B]: the req/s and p99 table
  local e=$1 k=$2 rows=$3 a=${4:-etcd} b=${5:-kshimd} r ea ka ep kp
  echo "| row | ops | $a req/s | $b req/s | ratio | $a p99 ms | $b p99 ms | $a cpu us/op | $b cpu us/op | other cpu % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in ${rows//,/ }; do
    [ "$r" = @mem ] && continue
    ea=$(field "$e" "$r" 4); ka=$(field "$k" "$r" 4)
    ep=$(field "$e" "$r" 5); kp=$(field "$k" "$r" 5)
    [[ " ${ROW_SHOWS[$r]} " == *" rps "* ]] || { ea=-; ka=-; }
    [[ " ${ROW_SHOWS[$r]} " == *" p99 "* ]] || { ep=-; kp=-; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" "$(field "$e" "$r" 3)" \
      "$(cell "$ea" "$(field "$e" "$r" 8)" "$(field "$e" "$r" 6)")" \
      "$(cell "$ka" "$(field "$k" "$r" 8)" "$(field "$k" "$r" 6)")" \
      "$(ratio "$ea" "$ka")" "$ep" "$kp" "$(field "$e" "$r" 7)" "$(field "$k" "$r" 7)" \
      "$(field "$e" "$r" 9)/$(field "$k" "$r" 9)"
  done
}

report_floor() { # put-c1 against one fdatasync (disk_floor), when both were measured
  local p50 p99 rate e k
  [ -s "$FLOORF" ] || return 0
  read -r p50 p99 rate < "$FLOORF"
  echo
  echo "Disk floor (fio, etcd's disk check: 2300 B writes each followed by fdatasync, in /tmp" \
       "with the data dirs, before the rows): fdatasync p50 $p50 ms, p99 $p99 ms, mean rate" \
       "$rate syncs/s = the most durable writes one client can make per second."
  [[ ",$ROWS," == *,put-c1,* ]] || return 0
  e=$(field etcd put-c1 4); k=$(field kshimd put-c1 4)
  share() { awk -v a="$1" -v b="$rate" 'BEGIN{ if (a+0 > 0) printf "%s req/s, %.0f%%", a, 100*a/b; else print "no result" }'; }
  echo "put-c1 against that floor: etcd $(share "$e"), kshimd $(share "$k") of it."
}

report_mem() { # ETCD-TAG KSHIMD-TAG SUFFIX: the memory / disk table
  local e=$1 k=$2 key label
  echo "| memory / disk$3 | etcd MB | kshimd MB | ratio |"
  echo "|---|---:|---:|---:|"
  for key in @rss0 @rss @anon @hwm @disk; do
    case $key in
      @rss0) label="RSS idle after start" ;;
      @rss) label="RSS after puts (VmRSS)" ;;
      @anon) label="- of it anonymous (RssAnon; the rest is mapped file pages)" ;;
      @hwm) label="peak RSS so far (VmHWM)" ;;
      @disk) label="data dir after puts" ;;
    esac
    printf '| %s | %s | %s | %s |\n' "$label" "$(mb "$(mem "$e" $key)")" "$(mb "$(mem "$k" $key)")" \
      "$(ratio "$(mem "$e" $key)" "$(mem "$k" $key)")"
  done
}

# bench/scale.sh's rows (issue 10's restart, connection and watcher rows),
# etcd and kshimd on fresh data dirs of their own, after the other sections.
run_scale_rows() {
  log "scale rows ($SCALE_ROWS): bench/scale.sh, log $RUNDIR/scale.log"
  # shellcheck disable=SC2086
  KSHIMD=$KSHIMD ETCD=$ETCD ETCDCTL=$ETCDCTL BENCHMARK=$BENCH PORT=${SCALE_PORT:-26200} \
    bash "$SRC/bench/scale.sh" ${SCALE_ROWS//,/ } > "$RUNDIR/scale.md" 2> "$RUNDIR/scale.log" ||
    { tail -20 "$RUNDIR/scale.log" >&2; die "bench/scale.sh failed"; }
}

main() {
  parse_args "$@"
  HZ=$(getconf CLK_TCK)
  local p
  if [ "$SECTION" != cluster ]; then
    for p in "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3)); do
      port_busy "$p" && die "port $p is busy (another bench run? set PORT=)"
    done
  fi
  [ "$SECTION" = single ] || cluster_check_ports
  RUNDIR=${RUNDIR:-$BENCH_WORK/run}
  [ -n "$RUNDIR" ] && [ "$RUNDIR" != / ] || die "bad RUNDIR"
  rm -rf "$RUNDIR"; mkdir -p "$RUNDIR"
  RES=$RUNDIR/rows.tsv; MEMF=$RUNDIR/mem.tsv; NOTEF=$RUNDIR/notes.tsv; FLOORF=$RUNDIR/floor.txt
  : > "$RES"; : > "$MEMF"; : > "$NOTEF"; : > "$FLOORF"
  [ -x "$ETCD" ] || die "no etcd at $ETCD"
  [ -x "$KSHIMD" ] || die "no kshimd at $KSHIMD (build it, or set KSHIMD=)"
  [ -x "$ETCDCTL" ] || die "no etcdctl at $ETCDCTL"
  command -v timeout >/dev/null || die "needs timeout (coreutils)"
  build_benchmark
  if [ "$TLS" = 1 ]; then
    bash "$SRC/certs/gen.sh" "$CERTS" || die "certs/gen.sh failed"
    SCHEME=https
    TLS_CLIENT=(--cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" --key "$CERTS/root.key")
    TLS_SERVER=(--cert-file "$CERTS/server.crt" --key-file "$CERTS/server.key"
                --trusted-ca-file "$CERTS/ca.crt" --client-cert-auth)
  fi
  local start=$SECONDS
  [ "$SECTION" = cluster ] || disk_floor
  if [ "$SECTION" = cluster ]; then :
  elif [ "$SEQUENTIAL" = 1 ]; then
    start_server etcd "$ETCD" "$PORT"; run_rows "$ROWS" etcd; stop_server etcd
    start_server kshimd "$KSHIMD" "$PORT"; run_rows "$ROWS" kshimd; stop_server kshimd
  else
    start_server etcd "$ETCD" "$PORT"
    start_server kshimd "$KSHIMD" $((PORT + 2))
    run_rows "$ROWS" etcd kshimd
    stop_all
  fi
  [ "$SECTION" = single ] || run_cluster_section
  [ -z "$SCALE_ROWS" ] || run_scale_rows
  mkdir -p "$(dirname "$OUT")"
  report > "$OUT"
  cat "$OUT"
  echo
  echo "results: $OUT  ($((SECONDS - start)) s of benchmarking)"
}

main "$@"
