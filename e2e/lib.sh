# e2e/lib.sh: shared helpers for the e2e shell tests (sourced, never run).
#
# Owns: the per-test temp directory, building the Go test programs, starting
# real etcd and kshimd on 127.0.0.1 with fresh data dirs, readiness polling,
# stopping servers by PID
# (and the EXIT trap that guarantees it), pass/fail bookkeeping with the final
# "N passed, M failed" line, and the output normalizations the differential
# tests need.
#
# Environment:
#   KSHIMD              path to the kshimd binary (set by ctest)
#   KSHIM_E2E_TARGET    "etcd" runs the kshimd side of a test against a second
#                       real etcd (for developing the tests); default "kshimd"
#   KSHIM_E2E_KEEP=1    keep the temp dir (logs, data dirs) after the run
#   ETCD, ETCDCTL       override /usr/bin/etcd, /usr/bin/etcdctl
#   PY                  python interpreter (default /usr/bin/python3, which has
#                       the Debian python3-etcd3 package)

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
PY=${PY:-/usr/bin/python3}
KSHIM_E2E_TARGET=${KSHIM_E2E_TARGET:-kshimd}
export ETCDCTL_API=3 LC_ALL=C

# kshimd_sanitized: true if the server under test is a sanitizer build of
# kshimd (make test's e2e run): slower, and its memory is no measure of the
# release binary's.
kshimd_sanitized() {
    [ "$KSHIM_E2E_TARGET" = kshimd ] && [ -n "${KSHIMD:-}" ] && grep -q -a __asan_init "$KSHIMD"
}

E2E_TMP=$(mktemp -d /tmp/kshim-e2e.XXXXXX)
E2E_PIDS=()
E2E_MOUNTS=()   # file systems a test mounted under $E2E_TMP: unmounted at exit
E2E_PASS=0
E2E_FAIL=0

e2e_cleanup() {
    local pid
    for pid in ${E2E_PIDS[@]+"${E2E_PIDS[@]}"}; do
        kill -9 "$pid" 2>/dev/null || true
    done
    for pid in ${E2E_PIDS[@]+"${E2E_PIDS[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    local m
    for m in ${E2E_MOUNTS[@]+"${E2E_MOUNTS[@]}"}; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    if [ "${KSHIM_E2E_KEEP:-0}" = 1 ]; then
        echo "kept $E2E_TMP" >&2
    else
        rm -rf "$E2E_TMP"
    fi
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

die() {
    echo "FATAL: $*" >&2
    exit 1
}

# port_busy PORT: true if something accepts connections on 127.0.0.1:PORT.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ensure_port_free PORT: wait up to 5 s for PORT to be free, else die: a
# foreign server there would answer the readiness poll and the test would
# silently run against it.
ensure_port_free() {
    local deadline=$((SECONDS + 5))
    while port_busy "$1"; do
        if [ $SECONDS -ge $deadline ]; then
            ss -ltnp 2>/dev/null | grep ":$1 " >&2 || true
            die "port $1 is already in use by another process"
        fi
        sleep 0.1
    done
}

# build_go SRC NAME: builds a Go test program (one main.go, clientv3 from
# golang-etcd-server-dev, GOPATH mode, offline) and prints the path of the
# binary, cached by the source's hash under $KSHIM_BUILD/e2e-go (Go's build
# cache is safe to share between tests running side by side).
build_go() {
    local src=$1 name=$2
    local cache=${KSHIM_BUILD:-/tmp/kshim-go-cache}/e2e-go
    local hash
    hash=$(sha256sum "$src" | cut -c1-16)
    local bin="$cache/$name-$hash"
    if [ ! -x "$bin" ]; then
        mkdir -p "$cache/gocache" "$E2E_TMP/go/$name"
        cp "$src" "$E2E_TMP/go/$name/main.go"
        (cd "$E2E_TMP/go/$name" &&
            GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$cache/gocache" \
                go build -o "$bin.tmp.$$" .) >&2 || return 1
        mv "$bin.tmp.$$" "$bin" # atomic: two tests side by side may build it at once
    fi
    echo "$bin"
}

# start_etcd NAME PORT [extra etcd flags...]: real etcd, client port PORT,
# peer port PORT+50. Sets SERVER_PID. Data dir $E2E_TMP/NAME.data (fresh
# unless it exists already), log $E2E_TMP/NAME.log (appended).
start_etcd() {
    local name=$1 port=$2
    shift 2
    local peer=$((port + 50))
    ensure_port_free "$port"
    ensure_port_free "$peer"
    "$ETCD" --name "$name" --data-dir "$E2E_TMP/$name.data" \
        --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$name=http://127.0.0.1:$peer" \
        "$@" >>"$E2E_TMP/$name.log" 2>&1 &
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
}

# start_kshimd NAME PORT [extra flags...]: like start_etcd, for $KSHIMD.
start_kshimd() {
    local name=$1 port=$2
    shift 2
    [ -n "${KSHIMD:-}" ] && [ -x "$KSHIMD" ] ||
        die "KSHIMD is not set to an executable kshimd (got '${KSHIMD:-}')"
    ensure_port_free "$port"
    "$KSHIMD" --name "$name" --data-dir "$E2E_TMP/$name.data" \
        --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        "$@" >>"$E2E_TMP/$name.log" 2>&1 &
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
}

# start_target NAME PORT [extra flags...]: the server under test, kshimd by
# default, a real etcd when KSHIM_E2E_TARGET=etcd.
start_target() {
    case "$KSHIM_E2E_TARGET" in
    etcd) start_etcd "$@" ;;
    kshimd) start_kshimd "$@" ;;
    *) die "KSHIM_E2E_TARGET must be etcd or kshimd, got '$KSHIM_E2E_TARGET'" ;;
    esac
}

# wait_ready PID PORT [TIMEOUT_S]: poll `etcdctl endpoint health` until it
# succeeds; fail if the process dies or the timeout (default 20 s) expires.
wait_ready() {
    local pid=$1 port=$2 timeout=${3:-20}
    local deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "server pid $pid on port $port died during start-up; log tail:" >&2
            tail -n 20 "$E2E_TMP"/*.log >&2 || true
            return 1
        fi
        if "$ETCDCTL" --endpoints "127.0.0.1:$port" --dial-timeout=1s \
            --command-timeout=1s endpoint health >/dev/null 2>&1; then
            sleep 0.1
            kill -0 "$pid" 2>/dev/null && return 0
            echo "something answers on port $port but server pid $pid is dead" >&2
            tail -n 20 "$E2E_TMP"/*.log >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "server pid $pid on port $port not ready after ${timeout}s; log tail:" >&2
    tail -n 20 "$E2E_TMP"/*.log >&2 || true
    return 1
}

# forget_pid PID: drop a reaped server from the cleanup list, so the EXIT
# trap never signals a recycled PID.
forget_pid() {
    local keep=() p
    for p in ${E2E_PIDS[@]+"${E2E_PIDS[@]}"}; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    E2E_PIDS=(${keep[@]+"${keep[@]}"})
}

# stop_server PID: SIGTERM, then SIGKILL after 5 s.
stop_server() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || { forget_pid "$pid"; return 0; }
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# kill9_server PID: crash the server, reap it.
kill9_server() {
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

# wait_member_forgotten: after a member stops, before writing past it to
# force a snapshot catch-up. kshimd's leader keeps a member's log entries
# until a whole check-quorum round (an election timeout, 1 s) has passed
# without its answer, so up to 2 s after it went silent; writes and a
# restart inside that window catch up by appends instead (correct, but not
# the snapshot path such a test checks). 3 s covers the window.
wait_member_forgotten() { sleep 3; }

ctl() {
    local port=$1
    shift
    "$ETCDCTL" --endpoints "127.0.0.1:$port" --dial-timeout=2s --command-timeout=5s "$@"
}

pass() {
    E2E_PASS=$((E2E_PASS + 1))
    echo "PASS: $*"
}

fail() {
    E2E_FAIL=$((E2E_FAIL + 1))
    echo "FAIL: $*"
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then
        pass "$1"
    else
        fail "$1: expected [$2], got [$3]"
    fi
}

# diff_files NAME REFERENCE TARGET: pass if identical, else show diff -u.
diff_files() {
    if diff -u --label "etcd/$1" --label "target/$1" "$2" "$3" >"$E2E_TMP/diff.out"; then
        pass "$1"
    else
        fail "$1 differs (- real etcd, + target):"
        cat "$E2E_TMP/diff.out"
    fi
}

# finish: print the summary line and exit with the verdict.
finish() {
    # A sanitizer build of kshimd reports memory errors, undefined behaviour
    # and leaks in its log: any such report fails the test.
    local reports
    reports=$(grep -l -a -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
        "$E2E_TMP"/*.log 2>/dev/null || true)
    if [ -n "$reports" ]; then
        fail "sanitizer reports in: $reports"
        grep -a -h -A12 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $reports | head -40 >&2
    fi
    echo "$E2E_PASS passed, $E2E_FAIL failed"
    [ "$E2E_FAIL" -eq 0 ] && [ "$E2E_PASS" -gt 0 ]
    exit $?
}

# normalize: filter for etcdctl output that removes what legitimately
# differs between two independent single-node clusters (everything else
# must match; raft_term is handled by term_values/normalize_term):
#   cluster_id / member_id / leader ids (json, fields, and the hex member id
#   of `endpoint status` simple output), db sizes, the server version in
#   endpoint status, raft_index / raft_applied_index (etcd counts internal
#   entries such as ConfChange and cluster-version set-up, kshimd need not),
#   and the latency printed by `endpoint health`.
normalize() {
    sed -E \
        -e 's/"(cluster_id|member_id|leader)":[0-9]+/"\1":ID/g' \
        -e 's/"(raftIndex|raft_index|raftAppliedIndex|raft_applied_index)":[0-9]+/"\1":IDX/g' \
        -e 's/"(dbSize|dbSizeInUse)":[0-9]+/"\1":SIZE/g' \
        -e 's/"version":"[0-9][0-9.]*"/"version":"VER"/g' \
        -e 's/^"(ClusterID|MemberID|Leader|RaftIndex|RaftAppliedIndex|DBSize)" : [0-9]+$/"\1" : N/' \
        -e 's/^"Version" : "[0-9.]+"$/"Version" : "VER"/' \
        -e 's/^(ENDPOINT), [0-9a-f]+, [0-9.]+, [0-9.]+ [kMG]?B, (true|false), (true|false), ([0-9]+), [0-9]+, [0-9]+, /\1, ID, VER, SIZE, \2, \3, \4, IDX, IDX, /' \
        -e 's/(is healthy: successfully committed proposal: took = ).*/\1T/'
}

# term_values FILE...: the raft terms an etcdctl transcript reports, counted.
# A fresh single-node etcd is at term 2; tests compare this once and then
# blank the term with normalize_term, so a wrong term is one failure instead
# of hiding every other difference.
term_values() {
    cat "$@" | grep -aoE '"raft_term":[0-9]+|"raftTerm":[0-9]+|"RaftTerm" : [0-9]+|header\.raft_term=[0-9]+' |
        sort | uniq -c
}

normalize_term() {
    sed -E \
        -e 's/"(raft_term|raftTerm)":[0-9]+/"\1":TERM/g' \
        -e 's/^"RaftTerm" : [0-9]+$/"RaftTerm" : TERM/' \
        -e 's/^header\.raft_term=[0-9]+$/header.raft_term=TERM/' \
        -e 's/^(ENDPOINT, ID, VER, SIZE, (true|false), (true|false)), [0-9]+, /\1, TERM, /'
}
