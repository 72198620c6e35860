# e2e/auth_lib.sh: shell helpers shared by the auth e2e tests (sourced
# after lib.sh, never run).
#
# Owns: the users/roles/seed keys every auth test starts from (setup), and
# starting and reaching a TLS server with --client-cert-auth (start_tls,
# tctl, wait_tls; start_pair: etcd and the target side by side, set up). The caller sets CERTS (a certs/gen.sh directory) and
# TLSFLAGS (the server's TLS flags).
#
# Users: root/rootpw (root role), ro/ropw (read [/m/, /m0)), wo/wopw (write
# [/m/, /m0)), pfx/pfxpw (readwrite [/m/p/, /m/p0)), and
# kube-apiserver-etcd-client (no password; readwrite [/registry, /registry0)
# and compact_rev_key). Keys /m/a, /m/p/a, /x.

# target_kind: "etcd" or "kshimd", what start_tls starts for the target.
target_kind() {
    if [ "$KSHIM_E2E_TARGET" = etcd ]; then echo etcd; else echo kshimd; fi
}

# setup PORT [etcdctl flags...]: the users, roles and seed keys of the auth
# tests, then auth enable (log in $E2E_TMP/setup-PORT.log).
setup() {
    local port=$1
    shift
    local e=("$ETCDCTL" --endpoints "$port" --dial-timeout=2s --command-timeout=5s "$@")
    local logf=$E2E_TMP/setup-${port##*:}.log
    {
        "${e[@]}" put /m/a a
        "${e[@]}" put /m/p/a pa
        "${e[@]}" put /x x
        "${e[@]}" user add root:rootpw
        "${e[@]}" user grant-role root root
        for u in ro wo pfx; do "${e[@]}" user add "$u:${u}pw"; "${e[@]}" role add "$u"; done
        "${e[@]}" role grant-permission ro read /m/ --prefix
        "${e[@]}" role grant-permission wo write /m/ --prefix
        "${e[@]}" role grant-permission pfx readwrite /m/p/ --prefix
        for u in ro wo pfx; do "${e[@]}" user grant-role "$u" "$u"; done
        "${e[@]}" user add kube-apiserver-etcd-client --no-password
        "${e[@]}" role add kube
        "${e[@]}" role grant-permission kube readwrite /registry /registry0
        "${e[@]}" role grant-permission kube readwrite compact_rev_key
        "${e[@]}" user grant-role kube-apiserver-etcd-client kube
        "${e[@]}" auth enable
    } >"$logf" 2>&1 || { tail -3 "$logf" >&2; return 1; }
}

# start_pair REFNAME REFPORT TGTNAME TGTPORT [extra etcd flags...]: etcd on
# REFPORT and the target on TGTPORT (start_tls), both reached (wait_tls; die
# if not) and set up as root by certificate (setup with $CERTS/root.*); sets
# REF_PID and TGT_PID.
start_pair() {
    local refname=$1 refport=$2 tgtname=$3 tgtport=$4 p
    shift 4
    start_tls "$refname" "$refport" etcd "$@"
    REF_PID=$SERVER_PID
    start_tls "$tgtname" "$tgtport" "$(target_kind)"
    TGT_PID=$SERVER_PID
    wait_tls "$REF_PID" "$refport" || die "TLS etcd did not start"
    wait_tls "$TGT_PID" "$tgtport" || die "TLS target did not start"
    for p in "$refport" "$tgtport"; do
        setup "https://127.0.0.1:$p" --cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" \
            --key "$CERTS/root.key" || fail "TLS setup on port $p failed"
    done
}

# start_tls NAME PORT KIND [extra server flags...]: etcd (KIND etcd, peer
# PORT+50) or kshimd on https://127.0.0.1:PORT with TLSFLAGS; sets SERVER_PID.
start_tls() {
    local name=$1 port=$2 kind=$3 peer=$(($2 + 50))
    shift 3
    ensure_port_free "$port"
    local common=(--name "$name" --data-dir "$E2E_TMP/$name.data"
        --listen-client-urls "https://127.0.0.1:$port"
        --advertise-client-urls "https://127.0.0.1:$port" "${TLSFLAGS[@]}" "$@")
    if [ "$kind" = etcd ]; then
        ensure_port_free "$peer"
        "$ETCD" "${common[@]}" --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$name=http://127.0.0.1:$peer" >>"$E2E_TMP/$name.log" 2>&1 &
    else
        "$KSHIMD" "${common[@]}" --bcrypt-cost 4 >>"$E2E_TMP/$name.log" 2>&1 &
    fi
    SERVER_PID=$!
    E2E_PIDS+=("$SERVER_PID")
}

# tctl PORT CERTNAME args...: etcdctl over TLS as $CERTS/CERTNAME.crt.
tctl() {
    local port=$1 cert=$2
    shift 2
    "$ETCDCTL" --endpoints "https://127.0.0.1:$port" --cacert "$CERTS/ca.crt" \
        --cert "$CERTS/$cert.crt" --key "$CERTS/$cert.key" \
        --dial-timeout=2s --command-timeout=5s "$@"
}

# wait_tls PID PORT: until `endpoint health` works as root (20 s).
wait_tls() {
    local deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$1" 2>/dev/null || return 1
        tctl "$2" root endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

