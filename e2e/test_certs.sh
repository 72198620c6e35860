#!/usr/bin/env bash
# e2e/test_certs.sh -- tests for certs/gen.sh, the dev PKI generator.
#
# Owns: its temp dir and the real etcd it starts on https://127.0.0.1:24101
# (peer 24102), stopped by PID on exit.
#
# Checks: a second run changes nothing (checksums); partial regeneration
# reuses the CA (and an existing key); a CA cert without its key is an error;
# chains verify; SANs and EKUs are right; keys are 0600; the expired cert is
# expired and the other-CA cert does not chain; RSA mode works; and real etcd
# with --client-cert-auth accepts etcdctl with root / kube-apiserver certs
# and rejects no cert, an expired cert and an other-CA cert.
# Prints "N passed, M failed"; exits non-zero if anything failed.
set -uo pipefail

SRC=${KSHIM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
GEN="$SRC/certs/gen.sh"
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
PORT=24101
PPORT=24102

PASS=0
FAIL=0
TMP=$(mktemp -d /tmp/kshim-test-certs.XXXXXX)
ETCD_PID=

cleanup() {
  if [ -n "$ETCD_PID" ] && kill -0 "$ETCD_PID" 2>/dev/null; then
    kill -TERM "$ETCD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$ETCD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ETCD_PID" 2>/dev/null
    wait "$ETCD_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

ok()   { PASS=$((PASS + 1)); echo "ok   $1"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL $1"; }
# check NAME CMD...: passes when CMD succeeds
check() { local n=$1; shift; if "$@" >/dev/null 2>&1; then ok "$n"; else bad "$n"; fi; }
# check_not NAME CMD...: passes when CMD fails
check_not() { local n=$1; shift; if "$@" >/dev/null 2>&1; then bad "$n"; else ok "$n"; fi; }

sums() { (cd "$1" && sha256sum -- * | sort); }
pubkey() { openssl pkey -in "$1" -pubout 2>/dev/null | sha256sum; }
verify_ok() { openssl verify -CAfile "$1" "$2" | grep -q ': OK$'; }
has_text() { openssl x509 -in "$1" -noout -text | grep -q -- "$2"; }
subject_cn_is() { openssl x509 -in "$1" -noout -subject -nameopt multiline | grep -q "commonName *= $2\$"; }
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }

D=$TMP/pki
GEN_ARGS=(--client alice --expired old --other-ca)

# ---------------------------------------------------------------- generation
check "first run succeeds" bash "$GEN" "$D" "${GEN_ARGS[@]}"
for f in ca server peer root kube-apiserver-etcd-client alice old other-ca other-client; do
  check "$f.crt and $f.key exist" test -s "$D/$f.crt" -a -s "$D/$f.key"
done
before=$(sums "$D")
out=$(bash "$GEN" "$D" "${GEN_ARGS[@]}" 2>&1); rc=$?
check "second run succeeds quietly" test "$rc" = 0 -a -z "$out"
check "second run changes nothing" test "$before" = "$(sums "$D")"

# ---------------------------------------------------------------- chains, names
for f in server peer root kube-apiserver-etcd-client alice; do
  check "$f.crt verifies against ca.crt" verify_ok "$D/ca.crt" "$D/$f.crt"
done
check "server cert has SAN DNS:localhost" has_text "$D/server.crt" "DNS:localhost"
check "server cert has SAN IP 127.0.0.1" has_text "$D/server.crt" "IP Address:127.0.0.1"
check "server cert has SAN IP ::1" has_text "$D/server.crt" "IP Address:0:0:0:0:0:0:0:1"
check "server cert is serverAuth" has_text "$D/server.crt" "TLS Web Server Authentication"
check "server cert is clientAuth (peers)" has_text "$D/server.crt" "TLS Web Client Authentication"
check "peer cert has SAN IP 127.0.0.1" has_text "$D/peer.crt" "IP Address:127.0.0.1"
check "peer cert is serverAuth+clientAuth" has_text "$D/peer.crt" "TLS Web Server Authentication, TLS Web Client Authentication"
check "root cert is clientAuth" has_text "$D/root.crt" "TLS Web Client Authentication"
check_not "root cert is not serverAuth" has_text "$D/root.crt" "TLS Web Server Authentication"
check "ca is a CA" has_text "$D/ca.crt" "CA:TRUE"
check_not "leaf is not a CA" has_text "$D/root.crt" "CA:TRUE"
check "root cert CN=root" subject_cn_is "$D/root.crt" root
check "kube client CN" subject_cn_is "$D/kube-apiserver-etcd-client.crt" kube-apiserver-etcd-client
check "extra client CN=alice" subject_cn_is "$D/alice.crt" alice
check "default keys are ECDSA P-256" has_text "$D/server.crt" "NIST CURVE: P-256"
check "keys are mode 0600" mode_is "$D/root.key" 600
check "ca key is mode 0600" mode_is "$D/ca.key" 600
check "leaf valid for ~10 years" openssl x509 -in "$D/server.crt" -noout -checkend $((9 * 365 * 86400))
check "ca valid for ~10 years" openssl x509 -in "$D/ca.crt" -noout -checkend $((9 * 365 * 86400))

# ---------------------------------------------------------------- negative certs
check_not "expired cert fails verify" verify_ok "$D/ca.crt" "$D/old.crt"
check "expired cert: error is expiry" bash -c "openssl verify -CAfile '$D/ca.crt' '$D/old.crt' 2>&1 | grep -q 'certificate has expired'"
check_not "expired cert -checkend 0 says expired" openssl x509 -in "$D/old.crt" -noout -checkend 0
check "expired cert chains when time is ignored" bash -c "openssl verify -no_check_time -CAfile '$D/ca.crt' '$D/old.crt' | grep -q ': OK$'"
check_not "other-CA client fails against ca.crt" verify_ok "$D/ca.crt" "$D/other-client.crt"
check "other-CA client verifies against other-ca.crt" verify_ok "$D/other-ca.crt" "$D/other-client.crt"
check "other-CA client also says CN=root" subject_cn_is "$D/other-client.crt" root

# ---------------------------------------------------------------- partial regeneration
ca_sum=$(sha256sum < "$D/ca.crt")
peer_pub=$(pubkey "$D/peer.key")
server_sum=$(sha256sum < "$D/server.crt")
rm -f "$D/root.crt" "$D/root.key" "$D/peer.crt"
check "rerun with missing leaves succeeds" bash "$GEN" "$D"
check "CA kept" test "$ca_sum" = "$(sha256sum < "$D/ca.crt")"
check "other leaves kept" test "$server_sum" = "$(sha256sum < "$D/server.crt")"
check "missing root reissued from the same CA" verify_ok "$D/ca.crt" "$D/root.crt"
check "peer reissued with its existing key" test "$peer_pub" = "$(pubkey "$D/peer.key")"
check "reissued peer matches its key" test "$(openssl x509 -in "$D/peer.crt" -noout -pubkey | sha256sum)" = "$peer_pub"

E=$TMP/nokey
mkdir -p "$E" && cp "$D/ca.crt" "$E/"
check_not "CA cert without CA key is an error" bash "$GEN" "$E"
check "and writes no leaf" test ! -e "$E/server.crt"
check_not "unknown option is an error" bash "$GEN" "$TMP/x" --bogus
check_not "bad client name is an error" bash "$GEN" "$TMP/y" --client "../evil"

R=$TMP/rsa
check "RSA mode succeeds" bash "$GEN" "$R" --rsa
check "RSA server cert is RSA 2048" has_text "$R/server.crt" "Public-Key: (2048 bit)"
check "RSA chain verifies" verify_ok "$R/ca.crt" "$R/root.crt"

# ---------------------------------------------------------------- real etcd
EP=https://127.0.0.1:$PORT
start_etcd() {
  "$ETCD" --name certs --data-dir "$TMP/etcd.data" \
    --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "certs=http://127.0.0.1:$PPORT" \
    --cert-file "$D/server.crt" --key-file "$D/server.key" \
    --trusted-ca-file "$D/ca.crt" --client-cert-auth > "$TMP/etcd.log" 2>&1 &
  ETCD_PID=$!
}
ctl() { # ctl CERTNAME|none ARGS...
  local who=$1; shift
  local tls=(--cacert "$D/ca.crt")
  [ "$who" != none ] && tls+=(--cert "$D/$who.crt" --key "$D/$who.key")
  "$ETCDCTL" --endpoints "$EP" --dial-timeout 1s --command-timeout 2s "${tls[@]}" "$@"
}
value_is() { [ "$(ctl "$1" get "$2" --print-value-only 2>/dev/null)" = "$3" ]; }
if [ -x "$ETCD" ] && [ -x "$ETCDCTL" ]; then
  start_etcd
  up=0
  for _ in $(seq 100); do
    if ctl root endpoint health >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$ETCD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$up" = 1 ]; then
    ok "etcd starts with the dev server cert"
    check "etcdctl with root cert: put" ctl root put /certs/k v1
    check "etcdctl with root cert: get" value_is root /certs/k v1
    check "etcdctl with kube-apiserver cert: get" ctl kube-apiserver-etcd-client get /certs/k
    check "etcdctl with extra client cert: get" ctl alice get /certs/k
    check_not "etcdctl without client cert is rejected" ctl none get /certs/k
    check_not "etcdctl with expired cert is rejected" ctl old get /certs/k
    check_not "etcdctl with other-CA cert is rejected" ctl other-client get /certs/k
    check_not "etcdctl trusting other CA rejects server" \
      "$ETCDCTL" --endpoints "$EP" --dial-timeout 2s --command-timeout 3s \
      --cacert "$D/other-ca.crt" --cert "$D/root.crt" --key "$D/root.key" get /certs/k
    # the rejections above must be TLS verdicts, not timeouts for another reason
    check "etcd log: no client cert rejected" grep -q "client didn't provide a certificate" "$TMP/etcd.log"
    check "etcd log: expired cert rejected" grep -q "certificate has expired" "$TMP/etcd.log"
    check "etcd log: other-CA cert rejected" grep -q "certificate signed by unknown authority" "$TMP/etcd.log"
  else
    bad "etcd starts with the dev server cert (log: $(tail -3 "$TMP/etcd.log" | tr '\n' ' '))"
  fi
else
  bad "real etcd/etcdctl present at $ETCD / $ETCDCTL"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
