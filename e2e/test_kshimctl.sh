#!/usr/bin/env bash
# e2e/test_kshimctl.sh: end-to-end test of kshimctl.
#
# Part A (real etcd only): kshimctl and etcdctl 3.4 give identical output
# for the same read commands on the same etcd (get in simple/json, endpoint
# status and member list in every format, error messages and exit codes),
# and kshimctl's TLS works: CA + client cert, wrong CA, missing client cert,
# a server certificate that does not name the host, --insecure-skip-tls-verify.
# Part B (differential): one kshimctl scenario (put/get/del/compact/endpoint
# status/health/member list) runs against a fresh real etcd and a fresh
# kshimd, plain and over TLS; outputs are compared after removing ids,
# versions, db sizes, raft indexes, ports and timings. Part B is skipped
# only when KSHIM_E2E_ETCD_ONLY=1; otherwise a kshimd that does not work fails.
#
# Ports (all 127.0.0.1): 23820/23821 etcd, 23823/23824 etcd TLS,
# 23826/23827 etcd with a wrong-name certificate, 23828/23829 etcd for part B,
# 23832/23833 etcd TLS for part B, 23830 kshimd, 23831 kshimd TLS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KSHIMCTL=${KSHIMCTL:-${KSHIM_BUILD:-build}/kshimctl}
[ -x "$KSHIMCTL" ] || die "KSHIMCTL is not an executable kshimctl (got '$KSHIMCTL')"
CERTS=$E2E_TMP/certs

# etcd_at NAME PORT PEER_PORT SCHEME [flags...]: a real etcd on our ports.
etcd_at() {
    local name=$1 port=$2 peer=$3 scheme=$4
    shift 4
    "$ETCD" --name t --data-dir "$E2E_TMP/$name.data" \
        --listen-client-urls "$scheme://127.0.0.1:$port" \
        --advertise-client-urls "$scheme://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "t=http://127.0.0.1:$peer" \
        "$@" >>"$E2E_TMP/$name.log" 2>&1 &
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
}

# wait_tls PID PORT: like wait_ready, for a TLS endpoint with client certs.
wait_tls() {
    local pid=$1 port=$2 deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$E2E_TMP"/*.log >&2; return 1; }
        "$ETCDCTL" --endpoints "https://127.0.0.1:$port" --cacert "$CERTS/ca.crt" \
            --cert "$CERTS/root.crt" --key "$CERTS/root.key" --dial-timeout=1s \
            endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

tls_flags() {
    echo --cert-file "$CERTS/$1.crt" --key-file "$CERTS/$1.key" \
        --trusted-ca-file "$CERTS/ca.crt" --client-cert-auth
}

# A server certificate from the dev CA naming only wrong.example.
make_wrong_name_cert() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CERTS/wrong.key" 2>/dev/null
    openssl req -new -key "$CERTS/wrong.key" -subj "/CN=wrong.example" -out "$CERTS/wrong.csr" 2>/dev/null
    printf 'subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth\n' >"$CERTS/wrong.ext"
    openssl x509 -req -in "$CERTS/wrong.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
        -CAcreateserial -days 2 -extfile "$CERTS/wrong.ext" -out "$CERTS/wrong.crt" 2>/dev/null
}

# Output filters: timings always; ids/versions/sizes/ports for part B.
untime() {
    sed -E -e 's/took = [0-9.]+(ns|µs|ms|s)/took = T/' -e 's/"took":"[^"]*"/"took":"T"/g' \
        -e '/^\{"level":/d'
}
# What legitimately differs between two single-node servers: ids, names,
# versions, db sizes (JSON omits a zero size, so the fields go entirely),
# terms, raft indexes, ports, peer URLs.
norm() {
    sed -E -e 's/127\.0\.0\.1:238[0-9][0-9]/127.0.0.1:PORT/g' \
        -e 's/"(cluster_id|member_id|leader|ID)":[0-9]+/"\1":ID/g' \
        -e 's/"(raft_term|raftTerm)":[0-9]+/"\1":TERM/g' \
        -e 's/"(raftIndex|raftAppliedIndex)":[0-9]+/"\1":IDX/g' \
        -e 's/"dbSize":[0-9]+,//; s/,"dbSizeInUse":[0-9]+//' \
        -e 's/"version":"[^"]*"/"version":"VER"/g' \
        -e 's/^([a-z]+:\/\/)?(127\.0\.0\.1:PORT), [0-9a-f]+, [^,]*, [^,]*, (true|false), (true|false), [0-9]+, [0-9]+, [0-9]+, /\1\2, ID, VER, SIZE, \3, \4, TERM, IDX, IDX, /' \
        -e 's/^[0-9a-f]+, started, [^,]*, .*, ([a-z]+:\/\/127\.0\.0\.1:PORT), (true|false)$/ID, started, NAME, PEERS, \1, \2/'
}

# run TOOL ARGS...: record the command, its stdout+stderr and exit code.
run() {
    printf '### %s\n' "${*:2}"
    local rc=0
    "$@" 2>&1 || rc=$?
    echo "rc=$rc"
}

KFLAGS=() # extra kshimctl flags for part B (TLS)
kctl() {
    "$KSHIMCTL" --endpoints "$EP" --dial-timeout=2s --command-timeout=5s \
        ${KFLAGS[@]+"${KFLAGS[@]}"} "$@"
}
ectl() { "$ETCDCTL" --endpoints "$EP" --dial-timeout=2s --command-timeout=5s "$@"; }

# ---------- part A: kshimctl == etcdctl on the same etcd ----------

# same NAME ARGS...: kshimctl and etcdctl outputs must be identical.
same() {
    local name=$1
    shift
    run kctl "$@" | untime >"$E2E_TMP/a.k"
    run ectl "$@" | untime >"$E2E_TMP/a.e"
    # etcdctl says "etcdctl version"; the rest must match.
    if diff -u --label "etcdctl/$name" --label "kshimctl/$name" "$E2E_TMP/a.e" "$E2E_TMP/a.k" \
        >"$E2E_TMP/diff.out"; then
        pass "same output: $name"
    else
        fail "kshimctl differs from etcdctl: $name"
        cat "$E2E_TMP/diff.out"
    fi
}

part_a_plain() {
    EP=127.0.0.1:23820
    etcd_at a 23820 23821 http
    wait_ready "$SERVER_PID" 23820 || die "etcd did not start"
    sleep 0.5 # let etcd publish its cluster version before comparing statuses
    check_eq "put" "OK" "$(kctl put a 1)"
    kctl put b 2 >/dev/null
    kctl put c/x 3 >/dev/null
    same "get" get a
    same "get json" get a -w json
    same "get prefix" get "" --prefix
    same "get range" get a c
    same "get keys-only" get c --prefix --keys-only
    same "get limit json" get "" --prefix --limit 1 -w json
    same "get missing" get nothere
    same "get future rev" get a --rev 1000
    same "get no args" get
    expect_fail "unknown flag" "Error: unknown flag: --bogus" --endpoints "$EP" get a --bogus
    expect_fail "flag of another command" "Error: unknown flag: --prefix" --endpoints "$EP" put a b --prefix
    same "bad format" get a -w yaml
    same "endpoint status" endpoint status
    same "endpoint status table" endpoint status -w table
    same "endpoint status json" endpoint status -w json
    same "member list" member list
    same "member list table" member list -w table
    same "member list json" member list -w json
    check_eq "endpoint health" "127.0.0.1:23820 is healthy: successfully committed proposal: took = T" \
        "$(kctl endpoint health | untime)"
    check_eq "del" "1" "$(kctl del a)"
    check_eq "del prefix json" '"deleted":2}' "$(kctl del "" --prefix -w json | grep -o '"deleted.*')"
    check_eq "compact" "compacted revision 3" "$(kctl compact 3)"
    same "compacted rev" get a --rev 2
    local out rc=0
    out=$("$KSHIMCTL" --endpoints 127.0.0.1:23849 --dial-timeout=300ms get a 2>&1) || rc=$?
    check_eq "unreachable endpoint exits 1" "1" "$rc"
    case "$out" in Error:*refused*) pass "unreachable error message" ;;
    *) fail "unreachable error message: $out" ;; esac
    check_eq "second endpoint used when first is down" "OK" \
        "$("$KSHIMCTL" --endpoints 127.0.0.1:23849,127.0.0.1:23820 put z 1)"
}

# expect_fail NAME PATTERN ARGS...: kshimctl must exit 1 with PATTERN on stderr.
expect_fail() {
    local name=$1 pattern=$2 out rc=0
    shift 2
    out=$("$KSHIMCTL" --dial-timeout=2s "$@" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" = 1 ] && [[ "$out" == *$pattern* ]]; then
        pass "$name"
    else
        fail "$name: rc=$rc, stderr [$out], wanted [$pattern]"
    fi
}

part_a_tls() {
    etcd_at atls 23823 23824 https $(tls_flags server)
    wait_tls "$SERVER_PID" 23823 || die "TLS etcd did not start"
    local ok="--cacert $CERTS/ca.crt --cert $CERTS/root.crt --key $CERTS/root.key"
    EP=https://127.0.0.1:23823
    check_eq "tls put" "OK" "$(kctl $ok put t 1)"
    check_eq "tls get via localhost name" "$(printf 't\n1')" \
        "$("$KSHIMCTL" --endpoints https://localhost:23823 $ok get t)"
    check_eq "tls bare endpoint with --cacert" "$(printf 't\n1')" \
        "$("$KSHIMCTL" --endpoints 127.0.0.1:23823 $ok get t)"
    check_eq "tls insecure-skip-tls-verify" "$(printf 't\n1')" \
        "$(kctl --insecure-skip-tls-verify --cert "$CERTS/root.crt" --key "$CERTS/root.key" get t)"
    expect_fail "tls wrong CA" "verify" --endpoints "$EP" --cacert "$CERTS/other-ca.crt" \
        --cert "$CERTS/root.crt" --key "$CERTS/root.key" get t
    expect_fail "tls without client cert" "Error:" --endpoints "$EP" --cacert "$CERTS/ca.crt" get t
    expect_fail "plain client on TLS server" "Error:" --endpoints http://127.0.0.1:23823 get t

    make_wrong_name_cert
    etcd_at wrong 23826 23827 https $(tls_flags wrong)
    sleep 2
    expect_fail "tls certificate for another host" "not valid for 127.0.0.1" \
        --endpoints https://127.0.0.1:23826 $ok get t
    check_eq "tls another host accepted when skipping verification" "" \
        "$("$KSHIMCTL" --endpoints https://127.0.0.1:23826 --insecure-skip-tls-verify \
            --cert "$CERTS/root.crt" --key "$CERTS/root.key" get nothere)"
}

# ---------- part B: the same kshimctl scenario on etcd and kshimd ----------

scenario() {
    run kctl put k1 v1
    run kctl put k2 v2
    run kctl put k3 v3 --prev-kv -w json
    run kctl put k1 v1b --prev-kv
    run kctl get k1
    run kctl get k1 -w json
    run kctl get k --prefix
    run kctl get k --prefix -w json
    run kctl get k1 k3
    run kctl get k --prefix --keys-only
    run kctl get k --prefix --count-only
    run kctl get k --prefix --count-only -w json
    run kctl get k --prefix --limit 1 -w json
    run kctl get k1 --rev 2 -w json
    run kctl get k1 --rev 100
    run kctl get "" --from-key --keys-only
    run kctl get nothere
    run kctl get nothere -w json
    run kctl del k1
    run kctl del nothere -w json
    run kctl del k --prefix --prev-kv -w json
    run kctl put k4 v4
    run kctl compact 3
    run kctl compact 3
    run kctl get k4 --rev 2
    run kctl compact 100
    run kctl endpoint health
    run kctl endpoint health -w json
    run kctl endpoint status
    run kctl endpoint status -w json
    run kctl member list
}

# differential NAME REF_EP TGT_EP [kshimctl flags...]
differential() {
    local name=$1 ref=$2 tgt=$3
    shift 3
    EP=$ref run_scenario "$@" >"$E2E_TMP/$name.ref"
    EP=$tgt run_scenario "$@" >"$E2E_TMP/$name.tgt"
    diff_files "$name" "$E2E_TMP/$name.ref" "$E2E_TMP/$name.tgt"
}

run_scenario() {
    KFLAGS=("$@")
    scenario | untime | norm
    KFLAGS=()
}

part_b() {
    etcd_at b 23828 23829 http
    local etcd_pid=$SERVER_PID
    start_kshimd kb 23830
    local kshimd_pid=$SERVER_PID
    wait_ready "$etcd_pid" 23828 || die "etcd did not start"
    if ! wait_ready "$kshimd_pid" 23830; then
        fail "kshimd did not start (set KSHIM_E2E_ETCD_ONLY=1 to test against etcd only)"
        return
    fi
    sleep 0.5
    differential "kshimctl scenario (plain)" 127.0.0.1:23828 127.0.0.1:23830

    etcd_at btls 23832 23833 https $(tls_flags server)
    etcd_pid=$SERVER_PID
    # start_kshimd listens on http://, so start the TLS kshimd directly.
    "$KSHIMD" --name t --data-dir "$E2E_TMP/kbtls.data" \
        --listen-client-urls https://127.0.0.1:23831 --advertise-client-urls https://127.0.0.1:23831 \
        $(tls_flags server) >>"$E2E_TMP/kbtls.log" 2>&1 &
    kshimd_pid=$!
    E2E_PIDS+=("$kshimd_pid")
    wait_tls "$etcd_pid" 23832 || die "TLS etcd did not start"
    if ! wait_tls "$kshimd_pid" 23831; then
        fail "kshimd with TLS did not start"
        return
    fi
    sleep 0.5
    differential "kshimctl scenario (TLS)" https://127.0.0.1:23832 https://127.0.0.1:23831 \
        --cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" --key "$CERTS/root.key"
}

bash "$KSHIM_SRC/certs/gen.sh" "$CERTS" --other-ca 2>/dev/null ||
    bash "$(dirname "$0")/../certs/gen.sh" "$CERTS" --other-ca
part_a_plain
part_a_tls
if [ "${KSHIM_E2E_ETCD_ONLY:-0}" = 1 ]; then
    echo "KSHIM_E2E_ETCD_ONLY=1: skipping the kshimd half"
else
    part_b
fi
finish
