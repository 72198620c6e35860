#!/usr/bin/env bash
# e2e/test_tls_reload.sh: server certificate rotation without dropping
# connections (issue 4). kshimd serves https with --client-cert-auth from
# certificates made by certs/gen.sh. Then:
#   1. the server certificate is re-issued (same CA): within a few seconds new
#      connections see the new certificate (file change detected), while a
#      watch opened before the rotation keeps receiving events;
#   2. it is re-issued again with the files' old modification time restored,
#      so only SIGHUP can reveal the change: after SIGHUP new connections see
#      the third certificate;
#   3. a broken certificate file is refused and the last good one kept.
# Port: 23914.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=23914
CERTS=$E2E_TMP/certs
bash "$KSHIM_SRC/certs/gen.sh" "$CERTS" >/dev/null
TLS=(--cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" --key "$CERTS/root.key")

"$KSHIMD" --name tls --data-dir "$E2E_TMP/tls.data" \
    --listen-client-urls "https://127.0.0.1:$PORT" --advertise-client-urls "https://127.0.0.1:$PORT" \
    --cert-file "$CERTS/server.crt" --key-file "$CERTS/server.key" \
    --trusted-ca-file "$CERTS/ca.crt" --client-cert-auth >>"$E2E_TMP/tls.log" 2>&1 &
PID=$!
E2E_PIDS+=("$PID")

tctl() { "$ETCDCTL" --endpoints "https://127.0.0.1:$PORT" "${TLS[@]}" --dial-timeout=2s --command-timeout=5s "$@"; }
served_fingerprint() {
    openssl s_client -connect "127.0.0.1:$PORT" -alpn h2 -cert "$CERTS/root.crt" -key "$CERTS/root.key" \
        -CAfile "$CERTS/ca.crt" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
file_fingerprint() { openssl x509 -in "$CERTS/server.crt" -noout -fingerprint -sha256; }
reissue_server_cert() { rm -f "$CERTS/server.crt" "$CERTS/server.key"; bash "$KSHIM_SRC/certs/gen.sh" "$CERTS" >/dev/null; }
# wait_served FINGERPRINT: up to 10 s for new connections to present it.
wait_served() {
    local i
    for i in $(seq 50); do
        [ "$(served_fingerprint)" = "$1" ] && return 0
        sleep 0.2
    done
    return 1
}

for _ in $(seq 100); do tctl endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
check_eq "serves the first certificate" "$(file_fingerprint)" "$(served_fingerprint)"

# etcdctl itself in the background (not the tctl function, whose subshell
# would be the PID the cleanup kills, leaving etcdctl running)
"$ETCDCTL" --endpoints "https://127.0.0.1:$PORT" "${TLS[@]}" --dial-timeout=2s \
    watch rotate/ --prefix >"$E2E_TMP/watch.out" 2>&1 &
WATCH=$!
E2E_PIDS+=("$WATCH")
sleep 1
tctl put rotate/before 1 >/dev/null

# 1. File change.
reissue_server_cert
if wait_served "$(file_fingerprint)"; then pass "new connections get the re-issued certificate"; else fail "certificate not reloaded on file change"; fi
check_eq "writes over a new connection" "OK" "$(tctl put rotate/after 2)"
sleep 1
if grep -q 'rotate/after' "$E2E_TMP/watch.out" && grep -q 'rotate/before' "$E2E_TMP/watch.out"; then
    pass "the watch opened before the rotation still receives events"
else
    fail "the old connection lost its watch: $(cat "$E2E_TMP/watch.out")"
fi

# 2. SIGHUP only: same modification time as the files being replaced.
ref=$E2E_TMP/mtime.ref
touch -r "$CERTS/server.crt" "$ref"
reissue_server_cert
touch -r "$ref" "$CERTS/server.crt" "$CERTS/server.key"
sleep 2
second=$(served_fingerprint)
check_eq "no reload without a change or SIGHUP" "yes" "$([ "$second" != "$(file_fingerprint)" ] && echo yes || echo no)"
kill -HUP "$PID"
if wait_served "$(file_fingerprint)"; then pass "SIGHUP reloads the certificate"; else fail "SIGHUP did not reload"; fi

# 3. A broken file keeps the last good certificate.
good=$(served_fingerprint)
echo "not a certificate" >"$CERTS/server.crt"
kill -HUP "$PID"
sleep 2
check_eq "a broken certificate file is refused, the old one kept" "$good" "$(served_fingerprint)"
if grep -q 'cannot reload' "$E2E_TMP/tls.log"; then pass "the refused reload is logged"; else fail "no log line for the refused reload"; fi
kill -0 "$PID" 2>/dev/null && pass "kshimd still running" || fail "kshimd died"
stop_server "$WATCH"
stop_server "$PID"
finish
