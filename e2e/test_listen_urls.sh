#!/usr/bin/env bash
# e2e/test_listen_urls.sh: the listen URLs etcd accepts, and refuses, for
# binding (issue 9 item 1; etcd's own e2e tests start every member with
# --listen-client-urls http://localhost:PORT). Real etcd 3.4 and kshimd get
# the same flags:
#   - http://localhost:PORT serves (bound to 127.0.0.1): a put and a get work,
#     and so does `etcdctl --endpoints http://localhost:PORT endpoint status`
#     (grpc-go then sends the scheme in :authority, issue 9 item 2);
#   - a host name other than localhost is refused at start-up (exit non-zero).
#
# Ports: 23960 (etcd), 23962 (kshimd), peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# serve_localhost KIND PORT: start KIND (etcd|kshimd) on http://localhost:PORT
# and print what a put + get answers.
serve_localhost() {
    local kind=$1 port=$2 bin
    bin=$ETCD
    [ "$kind" = kshimd ] && bin=$KSHIMD
    ensure_port_free "$port"
    "$bin" --name "$kind-lh" --data-dir "$E2E_TMP/$kind-lh.data" \
        --listen-client-urls "http://localhost:$port" \
        --advertise-client-urls "http://localhost:$port" \
        --listen-peer-urls "http://localhost:$((port + 50))" \
        --initial-advertise-peer-urls "http://localhost:$((port + 50))" \
        --initial-cluster "$kind-lh=http://localhost:$((port + 50))" \
        >>"$E2E_TMP/$kind-lh.log" 2>&1 &
    local pid=$!
    E2E_PIDS+=("$pid")
    wait_ready "$pid" "$port" >&2 || { echo "did not start"; return 0; }
    ctl "$port" put /lh v1
    ctl "$port" get /lh --print-value-only
    # a scheme in the endpoint: grpc-go sends it in :authority (issue 9 item 2)
    "$ETCDCTL" --endpoints "http://localhost:$port" --dial-timeout=2s --command-timeout=5s \
        endpoint status >/dev/null 2>&1 && echo "endpoint status with a scheme: ok" ||
        echo "endpoint status with a scheme: failed"
    stop_server "$pid" >&2
}

# refuses_hostname KIND PORT: exit status class of a start with a host name.
refuses_hostname() {
    local kind=$1 port=$2 bin rc=0
    bin=$ETCD
    [ "$kind" = kshimd ] && bin=$KSHIMD
    timeout 10 "$bin" --name "$kind-hn" --data-dir "$E2E_TMP/$kind-hn.data" \
        --listen-client-urls "http://etcd-e2e.invalid:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        >>"$E2E_TMP/$kind-hn.log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then echo "started"; else echo "refused"; fi
}

serve_localhost etcd 23960 >"$E2E_TMP/etcd.out"
serve_localhost kshimd 23962 >"$E2E_TMP/kshimd.out"
diff_files "localhost listen URL: put + get" "$E2E_TMP/etcd.out" "$E2E_TMP/kshimd.out"
check_eq "localhost serves" "OK
v1
endpoint status with a scheme: ok" "$(cat "$E2E_TMP/kshimd.out")"

check_eq "etcd refuses a host name for binding" refused "$(refuses_hostname etcd 23964)"
check_eq "kshimd refuses a host name for binding" refused "$(refuses_hostname kshimd 23966)"

finish
