#!/usr/bin/env bash
# e2e/test_client_crl.sh: --client-crl-file compared with real etcd
# (etcd's TestCtlV3GetRevokedCRL).
#
# certs/gen.sh makes client certs "bad" and "other" from the dev CA and two
# CRLs of that CA: one revoking "bad", one revoking "other", and a second CA
# with a client cert "other-client". With mTLS (--client-cert-auth, both CAs
# trusted) and --client-crl-file = the first, etcd and kshimd both refuse
# "bad" (the handshake fails: etcdctl cannot connect) and serve "root",
# "other" and "other-client" (its CA has no CRL: not a reason to refuse). Then kshimd alone: the CRL file is replaced by the
# second one and reloaded (as the other TLS files are, on change), after
# which "other" is refused and "bad" is served; a DER CRL works too.
#
# Ports: 26410 (etcd) / 26411 (target), TLS; etcd's peer port +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SRC=${KSHIM_SRC:-$(cd "$E2E_DIR/.." && pwd)}
REF_PORT=26410
TGT_PORT=26411
CERTS=$E2E_TMP/certs

bash "$SRC/certs/gen.sh" "$CERTS" --revoked other || die "certs/gen.sh --revoked other failed"
mv "$CERTS/ca.crl" "$CERTS/crl-other.pem"
bash "$SRC/certs/gen.sh" "$CERTS" --revoked bad --other-ca || die "certs/gen.sh --revoked bad failed"
cat "$CERTS/ca.crt" "$CERTS/other-ca.crt" >"$CERTS/trusted.crt"
mv "$CERTS/ca.crl" "$CERTS/crl-bad.pem"
openssl crl -in "$CERTS/crl-bad.pem" -outform DER -out "$CERTS/crl-bad.der" || die "openssl crl failed"
cp "$CERTS/crl-bad.pem" "$E2E_TMP/client.crl"

start_tls() { # NAME PORT KIND CRLFILE
    local name=$1 port=$2 kind=$3 crl=$4 peer=$(($2 + 50))
    ensure_port_free "$port"
    local common=(--name "$name" --data-dir "$E2E_TMP/$name.data"
        --listen-client-urls "https://127.0.0.1:$port"
        --advertise-client-urls "https://127.0.0.1:$port"
        --cert-file "$CERTS/server.crt" --key-file "$CERTS/server.key"
        --trusted-ca-file "$CERTS/trusted.crt" --client-cert-auth --client-crl-file "$crl")
    if [ "$kind" = etcd ]; then
        ensure_port_free "$peer"
        "$ETCD" "${common[@]}" --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$name=http://127.0.0.1:$peer" >>"$E2E_TMP/$name.log" 2>&1 &
    else
        "$KSHIMD" "${common[@]}" >>"$E2E_TMP/$name.log" 2>&1 &
    fi
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
}

tctl() { # PORT CERTNAME args...
    local port=$1 cert=$2
    shift 2
    "$ETCDCTL" --endpoints "https://127.0.0.1:$port" --cacert "$CERTS/ca.crt" \
        --cert "$CERTS/$cert.crt" --key "$CERTS/$cert.key" \
        --dial-timeout=2s --command-timeout=3s "$@"
}

wait_tls() { # PID PORT
    local deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$1" 2>/dev/null || return 1
        tctl "$2" root endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

# who PORT: one line per client cert, "NAME: served" or "NAME: refused".
who() {
    local c
    for c in root bad other other-client; do
        if tctl "$1" "$c" get /crl --print-value-only >/dev/null 2>&1; then
            echo "$c: served"
        else
            echo "$c: refused"
        fi
    done
}

start_tls refcrl "$REF_PORT" etcd "$CERTS/crl-bad.pem"
REF_PID=$SERVER_PID
if [ "$KSHIM_E2E_TARGET" = etcd ]; then
    start_tls tgtcrl "$TGT_PORT" etcd "$E2E_TMP/client.crl"
else
    start_tls tgtcrl "$TGT_PORT" kshimd "$E2E_TMP/client.crl"
fi
TGT_PID=$SERVER_PID
wait_tls "$REF_PID" "$REF_PORT" || die "etcd with a CRL did not start: $(tail -3 "$E2E_TMP/refcrl.log")"
wait_tls "$TGT_PID" "$TGT_PORT" || die "target with a CRL did not start: $(tail -3 "$E2E_TMP/tgtcrl.log")"
tctl "$REF_PORT" root put /crl v >/dev/null
tctl "$TGT_PORT" root put /crl v >/dev/null
expect="root: served
bad: refused
other: served
other-client: served"
check_eq "etcd: revoked client refused, good clients served" "$expect" "$(who "$REF_PORT")"
check_eq "target: revoked client refused, good clients served" "$expect" "$(who "$TGT_PORT")"
stop_server "$REF_PID"

if [ "$KSHIM_E2E_TARGET" = kshimd ]; then
    # the CRL file is reloaded with the other TLS files when it changes
    sleep 1.1 # a different mtime even on a coarse clock
    cp "$CERTS/crl-other.pem" "$E2E_TMP/client.crl.new"
    mv "$E2E_TMP/client.crl.new" "$E2E_TMP/client.crl"
    expect2="root: served
bad: served
other: refused
other-client: served"
    got=
    for _ in $(seq 30); do
        got=$(who "$TGT_PORT")
        [ "$got" = "$expect2" ] && break
        sleep 0.2
    done
    check_eq "target: a replaced CRL file is reloaded" "$expect2" "$got"
    stop_server "$TGT_PID"

    start_tls tgtder "$TGT_PORT" kshimd "$CERTS/crl-bad.der"
    TGT_PID=$SERVER_PID
    wait_tls "$TGT_PID" "$TGT_PORT" || die "target with a DER CRL did not start: $(tail -3 "$E2E_TMP/tgtder.log")"
    tctl "$TGT_PORT" root put /crl v >/dev/null
    check_eq "target: DER CRL" "$expect" "$(who "$TGT_PORT")"
    stop_server "$TGT_PID"
fi
finish
