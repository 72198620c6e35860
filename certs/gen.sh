#!/usr/bin/env bash
# certs/gen.sh -- development PKI for kshim and its tests (openssl CLI only).
#
# Owns: every file it writes under OUTDIR. It never overwrites an existing
# file: each certificate/key pair is issued only when its .crt is missing
# (reusing an existing .key if one is there), and an existing CA is always
# reused, so re-running changes nothing and leaves already issued certs valid.
#
# Usage:
#   certs/gen.sh OUTDIR [--rsa] [--client NAME]... [--expired NAME]... [--other-ca]
#                [--revoked NAME]... [--future NAME]... [--no-cn NAME]... [--verbose]
#
# Always ensured in OUTDIR (see certs/README.md):
#   ca.crt ca.key                        dev CA, 10 years
#   server.crt server.key                SANs DNS:localhost IP:127.0.0.1 IP:::1,
#                                        EKU serverAuth+clientAuth
#   peer.crt peer.key                    same SANs and EKU, for the peer port
#   root.crt root.key                    client cert, CN=root
#   kube-apiserver-etcd-client.crt/.key  client cert, CN=kube-apiserver-etcd-client
# Extra, for tests:
#   --client NAME    NAME.crt/NAME.key: client cert with CN=NAME from the dev CA
#   --expired NAME   NAME.crt/NAME.key: client cert with CN=NAME from the dev CA,
#                    valid only 2020-01-01..2020-01-02 (already expired)
#   --other-ca       other-ca.crt/.key: a second, unrelated CA, and
#                    other-client.crt/.key: CN=root issued by that other CA
#   --revoked NAME   NAME.crt/NAME.key: client cert with CN=NAME from the dev CA,
#                    and ca.crl (PEM, signed by the dev CA, 10 years) revoking
#                    every --revoked cert (written only when ca.crl is missing)
#   --future NAME    NAME.crt/NAME.key: client cert with CN=NAME from the dev CA,
#                    valid only 2099-01-01..2099-12-31 (not yet valid)
#   --no-cn NAME     NAME.crt/NAME.key: client cert from the dev CA whose subject
#                    has no CN (O only) and whose only name is SAN DNS:NAME
#   --rsa            new keys are RSA 2048 instead of ECDSA P-256 (KEY_TYPE=rsa too)
#
# Exit status is non-zero on any failure; nothing is printed unless
# something was issued and --verbose is given, or on error.
set -euo pipefail

DAYS=3650
KEY_TYPE=${KEY_TYPE:-ec}
VERBOSE=0
OUT=
EXTRA_CLIENTS=()
EXPIRED_CLIENTS=()
REVOKED_CLIENTS=()
FUTURE_CLIENTS=()
NOCN_CLIENTS=()
OTHER_CA=0

die() { echo "certs/gen.sh: $*" >&2; exit 1; }
say() { [ "$VERBOSE" = 1 ] && echo "certs/gen.sh: $*" >&2; true; }

usage() {
  echo "usage: certs/gen.sh OUTDIR [--rsa] [--client NAME]... [--expired NAME]... [--other-ca] [--revoked NAME]... [--future NAME]... [--no-cn NAME]... [--verbose]" >&2
  exit 2
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --rsa) KEY_TYPE=rsa ;;
      --ec) KEY_TYPE=ec ;;
      --verbose|-v) VERBOSE=1 ;;
      --client) [ $# -ge 2 ] || usage; EXTRA_CLIENTS+=("$2"); shift ;;
      --expired) [ $# -ge 2 ] || usage; EXPIRED_CLIENTS+=("$2"); shift ;;
      --other-ca) OTHER_CA=1 ;;
      --future) [ $# -ge 2 ] || usage; FUTURE_CLIENTS+=("$2"); shift ;;
      --no-cn) [ $# -ge 2 ] || usage; NOCN_CLIENTS+=("$2"); shift ;;
      --revoked) [ $# -ge 2 ] || usage; REVOKED_CLIENTS+=("$2"); shift ;;
      -h|--help) usage ;;
      -*) echo "certs/gen.sh: unknown option $1" >&2; usage ;;
      *) [ -z "$OUT" ] || usage; OUT=$1 ;;
    esac
    shift
  done
  [ -n "$OUT" ] || usage
  case "$KEY_TYPE" in ec|rsa) ;; *) die "KEY_TYPE must be ec or rsa" ;; esac
}

# A file name becomes a path under OUT; NAME must be a plain CN-safe word.
check_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad certificate name '$1'"
}

# new_key PATH: write a fresh private key (mode 0600) unless PATH exists.
new_key() {
  local path=$1
  [ -e "$path" ] && return 0
  ( umask 077
    if [ "$KEY_TYPE" = rsa ]; then
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$path" 2>/dev/null
    else
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$path" 2>/dev/null
    fi ) || die "cannot generate key $path"
}

random_serial() { echo "0x$(openssl rand -hex 16)"; }

# ext_leaf KIND: the X.509v3 extension section for a leaf certificate.
# KIND is "server" (server+peer: SANs, serverAuth+clientAuth), "client", or
# "client-san:NAME" (a client cert whose one name is SAN DNS:NAME).
ext_leaf() {
  local ku="digitalSignature"
  [ "$KEY_TYPE" = rsa ] && ku="digitalSignature,keyEncipherment"
  echo "[v3]"
  echo "basicConstraints = critical,CA:FALSE"
  echo "keyUsage = critical,$ku"
  echo "subjectKeyIdentifier = hash"
  echo "authorityKeyIdentifier = keyid,issuer"
  if [ "$1" = server ]; then
    echo "extendedKeyUsage = serverAuth,clientAuth"
    echo "subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1"
  else
    echo "extendedKeyUsage = clientAuth"
  fi
  case "$1" in client-san:*) echo "subjectAltName = DNS:${1#client-san:}" ;; esac
}

# make_ca NAME CN: self-signed CA NAME.crt/NAME.key unless NAME.crt exists.
make_ca() {
  local name=$1 cn=$2 crt="$OUT/$1.crt" key="$OUT/$1.key"
  if [ -e "$crt" ]; then
    [ -e "$key" ] || die "$crt exists but $key is missing: cannot issue certificates"
    return 0
  fi
  new_key "$key"
  openssl req -x509 -new -key "$key" -sha256 -days "$DAYS" -subj "/O=kshim dev/CN=$cn" \
    -set_serial "$(random_serial)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$crt" 2>/dev/null || die "cannot create CA $crt"
  say "issued CA $crt"
}

# make_leaf CA NAME CN KIND [STARTDATE ENDDATE]: NAME.crt/NAME.key signed by
# CA.crt/CA.key unless NAME.crt exists (CN "" leaves the CN out of the
# subject). With dates the cert is issued through `openssl ca`, which (unlike
# `openssl x509` in OpenSSL 3.0) can set both ends of the validity period, so
# it can be issued already expired or not yet valid.
make_leaf() {
  local ca=$1 name=$2 cn=$3 kind=$4 start=${5:-} end=${6:-}
  local crt="$OUT/$name.crt" key="$OUT/$name.key" tmp subj="/O=kshim dev/CN=$cn"
  [ -e "$crt" ] && return 0
  [ -n "$cn" ] || subj="/O=kshim dev"
  new_key "$key"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/kshim-certs.XXXXXX")
  ext_leaf "$kind" > "$tmp/ext.cnf"
  if ! openssl req -new -key "$key" -subj "$subj" -out "$tmp/req.csr" 2>"$tmp/err"; then
    cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot create request for $crt"
  fi
  if [ -z "$start" ]; then
    openssl x509 -req -in "$tmp/req.csr" -CA "$OUT/$ca.crt" -CAkey "$OUT/$ca.key" \
      -set_serial "$(random_serial)" -sha256 -days "$DAYS" \
      -extfile "$tmp/ext.cnf" -extensions v3 -out "$tmp/cert.pem" 2>"$tmp/err" || {
        cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot sign $crt"; }
  else
    sign_with_dates "$ca" "$tmp" "$start" "$end" || {
        cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot sign $crt"; }
  fi
  # Write the cert last and atomically: its presence means "done".
  mv "$tmp/cert.pem" "$crt"
  chmod 0644 "$crt"
  rm -rf "$tmp"
  say "issued $crt (CN=$cn, $kind)"
}

# sign_with_dates CA TMPDIR START END: sign TMPDIR/req.csr into TMPDIR/cert.pem
# with a throw-away `openssl ca` database in TMPDIR.
sign_with_dates() {
  local ca=$1 tmp=$2 start=$3 end=$4
  : > "$tmp/index.txt"
  openssl rand -hex 16 > "$tmp/serial"
  cat > "$tmp/ca.cnf" <<EOF
[ca]
default_ca = dev
[dev]
database = $tmp/index.txt
serial = $tmp/serial
new_certs_dir = $tmp
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
organizationName = optional
commonName = supplied
EOF
  openssl ca -batch -notext -config "$tmp/ca.cnf" -cert "$OUT/$ca.crt" -keyfile "$OUT/$ca.key" \
    -startdate "$start" -enddate "$end" -extfile "$tmp/ext.cnf" -extensions v3 \
    -in "$tmp/req.csr" -out "$tmp/cert.pem" >/dev/null 2>"$tmp/err"
}

# make_crl CA NAME...: CA.crl revoking NAME.crt... unless CA.crl exists,
# through `openssl ca -revoke` / `-gencrl` on a throw-away database.
make_crl() {
  local ca=$1 tmp n
  shift
  [ -e "$OUT/$ca.crl" ] && return 0
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/kshim-certs.XXXXXX")
  : > "$tmp/index.txt"
  echo 01 > "$tmp/crlnumber"
  cat > "$tmp/ca.cnf" <<EOF
[ca]
default_ca = dev
[dev]
database = $tmp/index.txt
crlnumber = $tmp/crlnumber
default_md = sha256
default_crl_days = $DAYS
EOF
  for n in "$@"; do
    openssl ca -batch -config "$tmp/ca.cnf" -cert "$OUT/$ca.crt" -keyfile "$OUT/$ca.key" \
      -revoke "$OUT/$n.crt" >/dev/null 2>"$tmp/err" || {
        cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot revoke $n.crt"; }
  done
  openssl ca -batch -config "$tmp/ca.cnf" -cert "$OUT/$ca.crt" -keyfile "$OUT/$ca.key" \
    -gencrl -out "$tmp/crl.pem" >/dev/null 2>"$tmp/err" || {
      cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot make $ca.crl"; }
  mv "$tmp/crl.pem" "$OUT/$ca.crl"
  chmod 0644 "$OUT/$ca.crl"
  rm -rf "$tmp"
  say "issued $OUT/$ca.crl revoking $*"
}

main() {
  parse_args "$@"
  command -v openssl >/dev/null || die "openssl not found"
  mkdir -p "$OUT"

  make_ca ca "kshim dev CA"
  make_leaf ca server "localhost" server
  make_leaf ca peer "kshim-peer" server
  make_leaf ca root "root" client
  make_leaf ca kube-apiserver-etcd-client "kube-apiserver-etcd-client" client

  local n
  for n in "${EXTRA_CLIENTS[@]+"${EXTRA_CLIENTS[@]}"}"; do
    check_name "$n"; make_leaf ca "$n" "$n" client
  done
  for n in "${EXPIRED_CLIENTS[@]+"${EXPIRED_CLIENTS[@]}"}"; do
    check_name "$n"; make_leaf ca "$n" "$n" client 20200101000000Z 20200102000000Z
  done
  for n in "${REVOKED_CLIENTS[@]+"${REVOKED_CLIENTS[@]}"}"; do
    check_name "$n"; make_leaf ca "$n" "$n" client
  done
  for n in "${FUTURE_CLIENTS[@]+"${FUTURE_CLIENTS[@]}"}"; do
    check_name "$n"; make_leaf ca "$n" "$n" client 20990101000000Z 20991231000000Z
  done
  for n in "${NOCN_CLIENTS[@]+"${NOCN_CLIENTS[@]}"}"; do
    check_name "$n"; make_leaf ca "$n" "" "client-san:$n"
  done
  if [ ${#REVOKED_CLIENTS[@]} -gt 0 ]; then
    make_crl ca "${REVOKED_CLIENTS[@]}"
  fi
  if [ "$OTHER_CA" = 1 ]; then
    make_ca other-ca "kshim unrelated dev CA"
    make_leaf other-ca other-client "root" client
  fi
}

main "$@"
