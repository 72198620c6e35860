#!/usr/bin/env bash
# e2e/test_http_gateway.sh: plain HTTP on the client port and etcd's
# grpc-gateway JSON API, differential against real etcd 3.4. Each request is
# made with curl against both servers, the answers normalized by gw_norm.py
# (ids, tokens, remaining TTLs, sizes) and compared status and body:
#   - GET /health, /metrics (HTTP/1.1 and HTTP/2 prior knowledge: kshimd
#     serves cleartext HTTP/2 too, etcd 3.4 only after TLS ALPN), /version
#     (same keys; kshimd reports the API level it implements), /readyz and
#     /livez (404: etcd 3.4 has neither), /v3alpha (404 in 3.4);
#   - the JSON API over HTTP/1.1 and HTTP/2: put, range (prefix, count_only,
#     keys_only), deleterange with prev_kv, txn (both branches), compaction,
#     lease grant / keepalive / timetolive / leases / revoke (also the
#     /v3/kv/lease/ aliases), member list, maintenance status, /v3beta/;
#   - errors: malformed JSON, a missing key, an unknown lease, GET on a
#     POST path, an unknown /v3/ path;
#   - watch: a streaming answer of {"result":...} lines that shows a later put;
#   - auth: user add / grant, enable, a request without a token, a bad
#     password, a token in Authorization denied (403 permission denied) and
#     one allowed, disable;
#   - https with client certificates (certs/gen.sh): /health over HTTP/1.1
#     and HTTP/2 (ALPN), put and range; no client certificate: refused;
#   - python3-etcd3gw (put/get/prefix/lease/watch/delete/revoke) prints the
#     same transcript against both.
#
# Ports: 25500 (etcd, peer 25550), 25501 (target), 25502 (etcd https, peer
# 25552), 25503 (target https).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NORM="$E2E_DIR/gw_norm.py"
CERTS=$E2E_TMP/certs
bash "$KSHIM_SRC/certs/gen.sh" "$CERTS" >/dev/null
CURL_TLS=(--cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" --key "$CERTS/root.key")

start_etcd etcd-gw 25500
ETCD_PID=$SERVER_PID
start_target kshimd-gw 25501
TARGET_PID=$SERVER_PID
wait_ready "$ETCD_PID" 25500
wait_ready "$TARGET_PID" 25501

# req BASE_URL PATH [curl args...]: "STATUS\nBODY", normalized.
req() {
    local base=$1 path=$2
    shift 2
    curl -s -m 5 -o "$E2E_TMP/body" -w '%{http_code}\n' "$@" "$base$path" >"$E2E_TMP/code" || true
    cat "$E2E_TMP/code" "$E2E_TMP/body" | "$PY" "$NORM"
}

# both NAME PATH [curl args...]: the same request to etcd and the target, compared.
both() {
    local name=$1 path=$2
    shift 2
    req "http://127.0.0.1:25500" "$path" "$@" >"$E2E_TMP/etcd.out"
    req "http://127.0.0.1:25501" "$path" "$@" >"$E2E_TMP/target.out"
    diff_files "$name" "$E2E_TMP/etcd.out" "$E2E_TMP/target.out"
}

post() { both "$1" "$2" -X POST -d "$3" "${@:4}"; }

# both_h2c NAME PATH [curl args...]: the target over cleartext HTTP/2 (prior
# knowledge) against etcd over HTTP/1.1: etcd 3.4 serves plain HTTP/2 only
# after TLS ALPN (its cleartext port sends only gRPC to HTTP/2), kshimd on
# both.
both_h2c() {
    local name=$1 path=$2
    shift 2
    req "http://127.0.0.1:25500" "$path" "$@" >"$E2E_TMP/etcd.out"
    req "http://127.0.0.1:25501" "$path" --http2-prior-knowledge "$@" >"$E2E_TMP/target.out"
    diff_files "$name" "$E2E_TMP/etcd.out" "$E2E_TMP/target.out"
}

# ---- plain endpoints
both "GET /health (HTTP/1.1)" /health
both_h2c "GET /health (h2c)" /health
both "GET /readyz" /readyz
both "GET /livez" /livez
both "GET /nope" /nope
both "POST /version" /version -X POST
both "OPTIONS /v3/kv/range (CORS preflight)" /v3/kv/range -X OPTIONS
both "GET /v3 (redirect)" /v3
both "PUT /v3/kv/range" /v3/kv/range -X PUT -d '{}'
both "POST /v3alpha/kv/range" /v3alpha/kv/range -X POST -d '{"key":"YQ=="}'
keys() { curl -s "$@" | "$PY" -c 'import json,sys; print(sorted(json.load(sys.stdin)))'; }
check_eq "GET /version: etcd's keys" "$(keys http://127.0.0.1:25500/version)" "$(keys http://127.0.0.1:25501/version)"
check_eq "GET /version over HTTP/2" "$(keys http://127.0.0.1:25500/version)" \
    "$(keys --http2-prior-knowledge http://127.0.0.1:25501/version)"
for proto in --http1.1 --http2-prior-knowledge; do
    code=$(curl -s -o "$E2E_TMP/metrics" -w '%{http_code}' "$proto" http://127.0.0.1:25501/metrics || true)
    check_eq "GET /metrics $proto" "200 1" "$code $(grep -c '^etcd_server_has_leader 1$' "$E2E_TMP/metrics")"
done

# ---- KV
post "put a" /v3/kv/put '{"key":"YQ==","value":"MQ=="}'
both_h2c "put b (h2c)" /v3/kv/put -X POST -d '{"key":"Yg==","value":"Mg==","prev_kv":true}'
post "put b again, prev_kv" /v3/kv/put '{"key":"Yg==","value":"Mw==","prev_kv":true}'
post "range a" /v3/kv/range '{"key":"YQ=="}'
post "range [a, c) (camelCase rangeEnd)" /v3/kv/range '{"key":"YQ==","rangeEnd":"Yw=="}'
post "range count_only" /v3/kv/range '{"key":"YQ==","range_end":"Yw==","count_only":true}'
post "range keys_only, limit, sort" /v3/kv/range \
    '{"key":"YQ==","range_end":"Yw==","keys_only":true,"limit":1,"sort_order":"DESCEND","sort_target":"KEY"}'
both_h2c "range (h2c)" /v3/kv/range -X POST -d '{"key":"Yg=="}'
post "range via /v3beta/" /v3beta/kv/range '{"key":"YQ=="}'
post "range with an unknown field" /v3/kv/range '{"key":"YQ==","nope":[1,{"x":2}]}'
post "txn: success branch" /v3/kv/txn \
    '{"compare":[{"key":"YQ==","target":"VALUE","result":"EQUAL","value":"MQ=="}],"success":[{"request_put":{"key":"YQ==","value":"NA=="}}],"failure":[{"request_range":{"key":"YQ=="}}]}'
post "txn: failure branch" /v3/kv/txn \
    '{"compare":[{"key":"YQ==","target":"VERSION","result":"GREATER","version":"5"}],"success":[{"request_put":{"key":"YQ==","value":"NQ=="}}],"failure":[{"request_range":{"key":"YQ=="}}]}'
post "deleterange b, prev_kv" /v3/kv/deleterange '{"key":"Yg==","prev_kv":true}'
post "compaction" /v3/kv/compaction '{"revision":"2"}'
post "range at a compacted revision" /v3/kv/range '{"key":"YQ==","revision":"1"}'

# Header names of a JSON answer (Date and the framing headers aside).
hnames() {
    curl -s -D - -o /dev/null -X POST -d '{"key":"YQ=="}' "http://127.0.0.1:$1/v3/kv/range" | tr -d '\r' |
        sed -n 's/^\([A-Za-z-]*\): .*/\1/p' | tr 'A-Z' 'a-z' | grep -vE '^(date|content-length)$' | sort | tr '\n' ' '
}
check_eq "range: etcd's response headers" "$(hnames 25500)" "$(hnames 25501)"

# ---- errors
post "malformed JSON" /v3/kv/range '{"key":"YQ=="'
i=0
for body in '{"key":5}' '{"key":"***"}' '{"key":"YQ"}' '{"key":"YQ==","limit":"x"}' '{"key":"YQ==","limit":1.5}' \
    '{"key":"YQ==","sort_order":"SIDEWAYS"}' '{"key":"YQ==","keys_only":"yes"}' '[1]' '{key}' '{"key" 1}' \
    '{"key":"YQ==" "limit":1}' 'null' '{"key":"YQ=="} trailing' '{"key":"YQ==","sort_order":2}' \
    '{"key":"YQ==","limit":"5"}'; do
    i=$((i + 1))
    post "bad or odd JSON $i: $body" /v3/kv/range "$body"
done
post "range without a key" /v3/kv/range '{}'
post "empty body" /v3/kv/put ''
both "GET on a POST path" /v3/kv/range
# Over --max-request-bytes (etcd: request is too large) and over the gRPC
# message limit (max-request-bytes + 512 KiB: ResourceExhausted, 429).
for size in 1700000 2200000; do
    "$PY" -c "import base64, json; print(json.dumps({'key': 'YQ==', 'value': base64.b64encode(b'x' * $size).decode()}))" \
        >"$E2E_TMP/big.json"
    both "put of a $size-byte value" /v3/kv/put -X POST --data-binary @"$E2E_TMP/big.json"
done
post "unknown /v3/ path" /v3/kv/nope '{}'

# ---- leases (a chosen ID, so both servers answer the same)
post "lease grant" /v3/lease/grant '{"TTL":"60","ID":"4242"}'
post "lease grant: exists" /v3/lease/grant '{"TTL":60,"ID":4242}'
post "put with the lease" /v3/kv/put '{"key":"bA==","value":"MQ==","lease":"4242"}'
post "lease timetolive with keys" /v3/lease/timetolive '{"ID":"4242","keys":true}'
post "lease timetolive (/v3/kv/lease/)" /v3/kv/lease/timetolive '{"ID":"4242"}'
post "lease leases" /v3/lease/leases '{}'
post "lease keepalive (first message of the stream)" /v3/lease/keepalive '{"ID":"4242"}' -m 2
post "lease revoke" /v3/lease/revoke '{"ID":"4242"}'
post "lease revoke again: not found" /v3/kv/lease/revoke '{"ID":"4242"}'
post "range the lease's key after revoke" /v3/kv/range '{"key":"bA=="}'

# ---- cluster, maintenance
# Names and URLs differ by set-up. Known difference: kshimd's MemberList
# header carries a revision, etcd 3.4's cluster header has none (svc_cluster.c
# fills it; the gateway only forwards): compared without it.
for port in 25500 25501; do
    req "http://127.0.0.1:$port" /v3/cluster/member/list -X POST -d '{}' |
        sed -E -e 's/"(name|clientURLs|peerURLs)": ("[^"]*"|\[[^]]*\])/"\1": X/g' \
            -e 's/, "revision": "[0-9]+"\}/}/' >"$E2E_TMP/members.$port"
done
diff_files "member list" "$E2E_TMP/members.25500" "$E2E_TMP/members.25501"
post "maintenance status" /v3/maintenance/status '{}'

# ---- watch: created, then the event of a later put
watch_both() {
    local port
    for port in 25500 25501; do
        curl -s -N -m 4 -X POST -d '{"create_request":{"key":"dw==","prev_kv":true}}' \
            "http://127.0.0.1:$port/v3/watch" >"$E2E_TMP/watch.$port" &
        local cpid=$!
        sleep 1
        curl -s -X POST -d '{"key":"dw==","value":"eA=="}' "http://127.0.0.1:$port/v3/kv/put" >/dev/null
        wait "$cpid" || true
        (echo 200; cat "$E2E_TMP/watch.$port") | "$PY" "$NORM" >"$E2E_TMP/watch.$port.norm"
    done
    diff_files "watch stream shows a later put" "$E2E_TMP/watch.25500.norm" "$E2E_TMP/watch.25501.norm"
    check_eq "watch stream has 2 result lines" "2" "$(grep -c '"result"' "$E2E_TMP/watch.25501.norm")"
}
watch_both

# ---- auth
post "user add root" /v3/auth/user/add '{"name":"root","password":"rootpw"}'
post "grant root the root role" /v3/auth/user/grant '{"user":"root","role":"root"}'
post "user add bob" /v3/auth/user/add '{"name":"bob","password":"bobpw"}'
post "user add with <, > and & in the name" /v3/auth/user/add '{"name":"a<b>&c","password":"x"}'
both "user list (Go escapes <, >, & in strings)" /v3/auth/user/list -X POST -d '{}'
curl -s -X POST -d '{}' http://127.0.0.1:25501/v3/auth/user/list >"$E2E_TMP/users.raw"
check_eq "user list: the raw bytes escape as etcd" \
    "$(curl -s -X POST -d '{}' http://127.0.0.1:25500/v3/auth/user/list | sed 's/"header":{[^}]*}//')" \
    "$(sed 's/"header":{[^}]*}//' "$E2E_TMP/users.raw")"
post "auth enable" /v3/auth/enable '{}'
post "range without a token" /v3/kv/range '{"key":"YQ=="}'
post "authenticate: bad password" /v3/auth/authenticate '{"name":"root","password":"nope"}'
post "authenticate bob" /v3/auth/authenticate '{"name":"bob","password":"bobpw"}'
token() {
    curl -s -X POST -d "{\"name\":\"$2\",\"password\":\"$3\"}" "http://127.0.0.1:$1/v3/auth/authenticate" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
for who in "bob bobpw" "root rootpw"; do
    set -- $who
    req "http://127.0.0.1:25500" /v3/kv/range -X POST -d '{"key":"YQ=="}' -H "Authorization: $(token 25500 $1 $2)" \
        >"$E2E_TMP/etcd.out"
    req "http://127.0.0.1:25501" /v3/kv/range -X POST -d '{"key":"YQ=="}' -H "Authorization: $(token 25501 $1 $2)" \
        >"$E2E_TMP/target.out"
    diff_files "range with $1's token" "$E2E_TMP/etcd.out" "$E2E_TMP/target.out"
    [ "$1" = bob ] && check_eq "bob's token is denied (403, code 7)" \
        '403 {"code": 7, "error": "etcdserver: permission denied", "message": "etcdserver: permission denied"}' \
        "$(tr '\n' ' ' <"$E2E_TMP/target.out" | sed 's/ $//')"
done
req "http://127.0.0.1:25500" /v3/auth/disable -X POST -d '{}' -H "Authorization: $(token 25500 root rootpw)" \
    >"$E2E_TMP/etcd.out"
req "http://127.0.0.1:25501" /v3/auth/disable -X POST -d '{}' -H "Authorization: $(token 25501 root rootpw)" \
    >"$E2E_TMP/target.out"
diff_files "auth disable with root's token" "$E2E_TMP/etcd.out" "$E2E_TMP/target.out"

# ---- python3-etcd3gw (etcd 3.4 serves /v3/, not the client's default /v3alpha/)
for port in 25500 25501; do
    timeout 30 "$PY" "$E2E_DIR/gw_client.py" "$port" >"$E2E_TMP/py.$port" 2>&1 || echo "exit $?" >>"$E2E_TMP/py.$port"
done
diff_files "python3-etcd3gw transcript" "$E2E_TMP/py.25500" "$E2E_TMP/py.25501"
check_eq "python3-etcd3gw saw the watch event" "1" "$(grep -c '^watch event' "$E2E_TMP/py.25501")"

# ---- https with client certificates
"$ETCD" --name etcd-gws --data-dir "$E2E_TMP/etcd-gws.data" \
    --listen-client-urls https://127.0.0.1:25502 --advertise-client-urls https://127.0.0.1:25502 \
    --listen-peer-urls http://127.0.0.1:25552 --initial-advertise-peer-urls http://127.0.0.1:25552 \
    --initial-cluster etcd-gws=http://127.0.0.1:25552 \
    --cert-file "$CERTS/server.crt" --key-file "$CERTS/server.key" \
    --trusted-ca-file "$CERTS/ca.crt" --client-cert-auth >>"$E2E_TMP/etcd-gws.log" 2>&1 &
E2E_PIDS+=("$!")
"$KSHIMD" --name kshimd-gws --data-dir "$E2E_TMP/kshimd-gws.data" \
    --listen-client-urls https://127.0.0.1:25503 --advertise-client-urls https://127.0.0.1:25503 \
    --cert-file "$CERTS/server.crt" --key-file "$CERTS/server.key" \
    --trusted-ca-file "$CERTS/ca.crt" --client-cert-auth >>"$E2E_TMP/kshimd-gws.log" 2>&1 &
TLS_TARGET_PID=$!
E2E_PIDS+=("$TLS_TARGET_PID")
for port in 25502 25503; do
    for _ in $(seq 100); do
        curl -s "${CURL_TLS[@]}" "https://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
done
tboth() {
    local name=$1 path=$2
    shift 2
    req "https://127.0.0.1:25502" "$path" "${CURL_TLS[@]}" "$@" >"$E2E_TMP/etcd.out"
    req "https://127.0.0.1:25503" "$path" "${CURL_TLS[@]}" "$@" >"$E2E_TMP/target.out"
    diff_files "https: $name" "$E2E_TMP/etcd.out" "$E2E_TMP/target.out"
}
tboth "GET /health (HTTP/1.1)" /health --http1.1
tboth "GET /health (HTTP/2, ALPN h2)" /health --http2
tboth "put (HTTP/1.1)" /v3/kv/put --http1.1 -X POST -d '{"key":"dA==","value":"MQ=="}'
tboth "range (HTTP/2)" /v3/kv/range --http2 -X POST -d '{"key":"dA=="}'
alpn() { curl -s -o /dev/null -w '%{http_version}' "${CURL_TLS[@]}" "$@" || true; }
check_eq "https: ALPN h2 is chosen when offered" "2" "$(alpn --http2 https://127.0.0.1:25503/health)"
check_eq "https: ALPN http/1.1 alone" "1.1" "$(alpn --http1.1 https://127.0.0.1:25503/health)"
# TLS without ALPN: the protocol is told by the first bytes (HTTP/1.1 here).
noalpn() {
    printf 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
        timeout 10 openssl s_client -quiet -connect "127.0.0.1:$1" -cert "$CERTS/root.crt" -key "$CERTS/root.key" \
            -CAfile "$CERTS/ca.crt" 2>/dev/null | tr -d '\r' | sed -n -e '1p' -e '/^{/p'
}
check_eq "https without ALPN: HTTP/1.1 /health" "$(noalpn 25502)" "$(noalpn 25503)"
nocert() { curl -s -m 5 --cacert "$CERTS/ca.crt" -o /dev/null "$1/health" && echo served || echo refused; }
check_eq "https without a client certificate" "$(nocert https://127.0.0.1:25502)" "$(nocert https://127.0.0.1:25503)"
ctl_tls() {
    "$ETCDCTL" --endpoints https://127.0.0.1:25503 --cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" \
        --key "$CERTS/root.key" --dial-timeout=2s --command-timeout=5s "$@"
}
ctl_tls put t b >/dev/null || true
check_eq "gRPC still works on the https port" "b" "$(ctl_tls get t --print-value-only || true)"
check_eq "gRPC still works on the plain port" "x" "$(ctl 25501 get w --print-value-only)"

# A clean stop, so a sanitizer build reports leaks (finish checks the logs).
stop_server "$TARGET_PID"
stop_server "$TLS_TARGET_PID"
finish
