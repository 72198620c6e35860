#!/usr/bin/env bash
# e2e/test_cluster_tls.sh: a 3-member kshimd cluster over https:// peer URLs
# (the --peer-* flags wired to the peer transport):
#   - mutual TLS with the dev CA (certs/gen.sh) and --peer-cert-allowed-cn
#     matching the peers' CN: a leader, a put via one member read via another;
#   - --peer-cert-allowed-cn naming another CN: the peers refuse each other,
#     no leader (endpoint status reports "etcdserver: no leader");
#   - --peer-auto-tls: self-signed peer certificates in
#     <data-dir>/fixtures/peer, the cluster works.
#
# Ports: clients 24401-24403, peers 24451-24453.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SRC=${KSHIM_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
bash "$SRC/certs/gen.sh" "$E2E_TMP/pki" >/dev/null 2>&1 || die "certs/gen.sh failed"
P=$E2E_TMP/pki
source "$(dirname "$0")/cluster_lib.sh"
cluster_ports 24400 24450 https
PIDS=()

# cluster RUN [flags]: starts 3 kshimd members with fresh data dirs named RUN-mN.
cluster() {
    local run=$1 n
    shift
    PIDS=()
    for n in 1 2 3; do
        start_member "$run" $n "$@"
        PIDS+=("${PID[$n]}")
    done
}

stop_cluster() {
    local p
    for p in "${PIDS[@]}"; do stop_server "$p"; done
}

TLS=(--peer-cert-file "$P/peer.crt" --peer-key-file "$P/peer.key" --peer-trusted-ca-file "$P/ca.crt"
    --peer-client-cert-auth)

cluster mtls "${TLS[@]}" --peer-cert-allowed-cn kshim-peer
if wait_for "one leader" 20 one_leader "$ALL"; then pass "mutual TLS: a leader"; else fail "mutual TLS: a leader"; fi
check_eq "mutual TLS: put" OK "$(ctl 24401 put /tls v1 2>/dev/null)"
check_eq "mutual TLS: get via another member" v1 "$(ctl 24402 get /tls --print-value-only 2>/dev/null)"
stop_cluster

cluster badcn "${TLS[@]}" --peer-cert-allowed-cn someone-else
sleep 4 # a few election timeouts: nobody may win without its peers
check_eq "wrong allowed CN: no leader" 0 "$(leaders "$ALL" | wc -l)"
# Without a leader a member never publishes, so it never serves clients (etcd
# serves clients only after its publish): endpoint status cannot succeed.
check_eq "wrong allowed CN: no member serves clients" 1 \
    "$(ctl 24401 --command-timeout=2s endpoint status >/dev/null 2>&1 && echo 0 || echo 1)"
stop_cluster

cluster auto --peer-auto-tls
if wait_for "one leader" 20 one_leader "$ALL"; then pass "peer auto TLS: a leader"; else fail "peer auto TLS: a leader"; fi
check_eq "peer auto TLS: put" OK "$(ctl 24403 put /auto v2 2>/dev/null)"
check_eq "peer auto TLS: get via another member" v2 "$(ctl 24401 get /auto --print-value-only 2>/dev/null)"
[ -s "$E2E_TMP/auto-m1.data/fixtures/peer/cert.pem" ] && pass "peer auto TLS: certificate made" ||
    fail "peer auto TLS: certificate made"
stop_cluster
finish
