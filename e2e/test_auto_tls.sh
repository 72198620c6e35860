#!/usr/bin/env bash
# e2e/test_auto_tls.sh: etcd's --auto-tls. kshimd with an https listen URL,
# --auto-tls and no certificate files makes a self-signed certificate for its
# listen hosts in <data-dir>/fixtures/client and serves it: etcdctl trusting
# that certificate (and only it) talks to it, a restart reuses the same
# certificate, and an https URL without certificates or --auto-tls is refused.
# Port: 23916.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=23916
URL=https://127.0.0.1:$PORT
DATA=$E2E_TMP/auto.data
CERT=$DATA/fixtures/client/cert.pem

start_auto() {
    "$KSHIMD" --name auto --data-dir "$DATA" --listen-client-urls "$URL" \
        --advertise-client-urls "$URL" "$@" >>"$E2E_TMP/auto.log" 2>&1 &
    PID=$!
    E2E_PIDS+=("$PID")
}
actl() { "$ETCDCTL" --endpoints "$URL" --dial-timeout=2s --command-timeout=5s "$@"; }
wait_tls() { for _ in $(seq 100); do actl --cacert "$CERT" endpoint health >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
fingerprint() { openssl x509 -in "$CERT" -noout -fingerprint -sha256; }

start_auto --auto-tls
if wait_tls; then pass "etcdctl trusting the generated certificate connects"; else fail "no TLS service with --auto-tls"; fi
check_eq "put over auto TLS" "OK" "$(actl --cacert "$CERT" put k v)"
check_eq "the certificate names the listen host" "yes" \
    "$(openssl x509 -in "$CERT" -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1' && echo yes || echo no)"
check_eq "key file is private" "600" "$(stat -c %a "$DATA/fixtures/client/key.pem")"
if actl --cacert "$KSHIM_SRC/certs/README.md" get k >/dev/null 2>&1 || \
   "$ETCDCTL" --endpoints "$URL" --dial-timeout=2s --command-timeout=3s get k >/dev/null 2>&1; then
    fail "a client that does not trust the certificate got through"
else
    pass "a client without the certificate as CA is refused"
fi
first=$(fingerprint)
stop_server "$PID"
start_auto --auto-tls
wait_tls || fail "restart with --auto-tls"
check_eq "restart reuses the certificate" "$first" "$(fingerprint)"
check_eq "data survives" "v" "$(actl --cacert "$CERT" get k --print-value-only)"
stop_server "$PID"

# https without certificates and without --auto-tls: refused at start.
start_auto
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then
    fail "kshimd started https without certificates"
    stop_server "$PID"
else
    forget_pid "$PID"
    if grep -q 'needs --cert-file' "$E2E_TMP/auto.log"; then pass "https without certificates is refused with a clear error"; else fail "no clear error"; fi
fi
finish
