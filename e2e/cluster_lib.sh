# e2e/cluster_lib.sh: the helpers of the 3-member cluster tests (sourced
# after lib.sh, never run). Owns polling for a condition, the etcdctl
# "stdout or its Error: line" transcript form, and a cluster of members on
# loopback ports: member N listens for clients on CLUSTER_CLIENT_BASE+N and
# for peers on CLUSTER_PEER_BASE+N (cluster_ports sets them, IC and ALL).
#
#   wait_for DESC TIMEOUT_S CMD...   poll until CMD succeeds (1 on timeout)
#   out_or_error CMD...              CMD's stdout, or its last "Error:" line
#   cluster_ports CB PB [SCHEME]     ports CB+N / PB+N, peer URL SCHEME
#                                    (http); sets IC and ALL (members 1-3)
#   start_member KIND N [flags]      member mN of KIND (etcd runs $ETCD, any
#                                    other kind $KSHIMD), data dir and log
#                                    $E2E_TMP/KIND-mN.{data,log}; sets PID[N]
#   q PORT ARGS                      out_or_error etcdctl against PORT,
#                                    --command-timeout=$Q_TIMEOUT (5s)
#   leaders ENDPOINTS                the client ports whose status says leader
#   one_leader ENDPOINTS             exactly one of them leads

Q_TIMEOUT=${Q_TIMEOUT:-5s}
CLUSTER_CLIENT_BASE=""
CLUSTER_PEER_BASE=""
CLUSTER_PEER_SCHEME=http
declare -A PID

wait_for() {
    local desc=$1 t=$2 deadline
    shift 2
    deadline=$((SECONDS + t))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $desc" >&2; return 1; }
        sleep 0.2
    done
}

out_or_error() {
    local out
    out=$("$@" 2>"$E2E_TMP/q.err") || true
    if grep -q '^Error:' "$E2E_TMP/q.err"; then grep '^Error:' "$E2E_TMP/q.err" | tail -1; else echo "$out"; fi
}

cluster_ports() {
    local n
    CLUSTER_CLIENT_BASE=$1 CLUSTER_PEER_BASE=$2 CLUSTER_PEER_SCHEME=${3:-http}
    IC="" ALL=""
    for n in 1 2 3; do
        IC+="${IC:+,}m$n=$CLUSTER_PEER_SCHEME://127.0.0.1:$((CLUSTER_PEER_BASE + n))"
        ALL+="${ALL:+,}127.0.0.1:$((CLUSTER_CLIENT_BASE + n))"
    done
}

start_member() {
    local kind=$1 n=$2 bin=$KSHIMD client peer
    shift 2
    [ "$kind" = etcd ] && bin=$ETCD
    client=$((CLUSTER_CLIENT_BASE + n)) peer=$((CLUSTER_PEER_BASE + n))
    ensure_port_free "$client"
    ensure_port_free "$peer"
    "$bin" --name "m$n" --data-dir "$E2E_TMP/$kind-m$n.data" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "$CLUSTER_PEER_SCHEME://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "$CLUSTER_PEER_SCHEME://127.0.0.1:$peer" \
        --initial-cluster "$IC" "$@" >>"$E2E_TMP/$kind-m$n.log" 2>&1 &
    PID[$n]=$!
    E2E_PIDS+=("${PID[$n]}")
}

q() {
    local port=$1
    shift
    out_or_error "$ETCDCTL" --endpoints "127.0.0.1:$port" --dial-timeout=2s --command-timeout="$Q_TIMEOUT" "$@"
}

leaders() {
    "$ETCDCTL" --endpoints "$1" --dial-timeout=1s --command-timeout=2s endpoint status 2>/dev/null |
        awk -F', ' '$5 == "true" { sub(/.*:/, "", $1); print $1 }'
}

one_leader() { [ "$(leaders "$1" | wc -l)" = 1 ]; }
