#!/usr/bin/env bash
# e2e/test_max_streams.sh: --max-concurrent-streams compared with real etcd
# (etcd's TestV3Curl_MaxStreams_* limit, seen on the gRPC port).
#
# max_streams_client.py reads the server's SETTINGS_MAX_CONCURRENT_STREAMS:
# without the flag both advertise 4294967295 (etcd 3.4's grpc-go); with
# --max-concurrent-streams 2 both advertise 2, serve two Watch streams opened
# at once, refuse the third with RST_STREAM REFUSED_STREAM and serve a new
# one once a stream was cancelled, keeping the connection. The transcripts
# must be identical. Then three concurrent `etcdctl watch` processes (one
# connection each) are all served by the limited target. Last, the JSON
# gateway under the limit (etcd's TestV3Curl_MaxStreams_*: etcd's gateway
# reaches the server through one gRPC connection, so the bound is on the
# gateway's requests together): with two curl watches open, a third
# request (a range) waits and curl times out, on both servers; once a
# watch is gone, a range is answered.
#
# Ports: 26420 (etcd) / 26421 (target); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=26420
TGT_PORT=26421

run_client() { # PORT OUT
    "$PY" "$E2E_DIR/max_streams_client.py" "$1" >"$2" 2>&1 || echo "client failed: $(tail -1 "$2")" >>"$2"
}

# gateway_limit PORT: two curl watches through /v3/watch, then ranges.
gateway_limit() {
    local url="http://127.0.0.1:$1" w1 w2 out
    local watch='{"create_request":{"key":"Zm9v","start_revision":1}}' range='{"key":"Zm9v"}'
    curl -s -N "$url/v3/watch" -d "$watch" >/dev/null 2>&1 &
    w1=$!
    curl -s -N "$url/v3/watch" -d "$watch" >/dev/null 2>&1 &
    w2=$!
    sleep 1
    if out=$(curl -s -m 2 "$url/v3/kv/range" -d "$range" 2>&1); then
        echo "range with 2 watches: answered ($out)"
    else
        echo "range with 2 watches: timed out"
    fi
    kill "$w1" 2>/dev/null || true
    wait "$w1" 2>/dev/null || true
    out=$(curl -s -m 5 "$url/v3/kv/range" -d "$range" 2>&1) || true
    case "$out" in *'"revision"'*) echo "range after a watch ended: answered" ;;
                   *) echo "range after a watch ended: $out" ;; esac
    kill "$w2" 2>/dev/null || true
    wait "$w2" 2>/dev/null || true
}

for limit in default 2; do
    flags=()
    [ "$limit" = default ] || flags=(--max-concurrent-streams "$limit")
    start_etcd "ref$limit" "$REF_PORT" ${flags[@]+"${flags[@]}"}
    REF_PID=$SERVER_PID
    start_target "tgt$limit" "$TGT_PORT" ${flags[@]+"${flags[@]}"}
    TGT_PID=$SERVER_PID
    wait_ready "$REF_PID" "$REF_PORT" || die "etcd ($limit streams) did not start"
    wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($limit streams) did not start"
    run_client "$REF_PORT" "$E2E_TMP/ref-$limit.txt"
    run_client "$TGT_PORT" "$E2E_TMP/tgt-$limit.txt"
    diff_files "max streams $limit: transcript" "$E2E_TMP/ref-$limit.txt" "$E2E_TMP/tgt-$limit.txt"
    if [ "$limit" = default ]; then
        check_eq "default: unlimited advertised" "advertised max_concurrent_streams: 4294967295" \
            "$(cat "$E2E_TMP/tgt-$limit.txt")"
    else
        check_eq "limit 2: enforced" "advertised max_concurrent_streams: 2
stream 1 of 3 opened at once: created
stream 2 of 3 opened at once: created
stream 3 of 3 opened at once: reset REFUSED_STREAM
stream opened after one was cancelled: created
connection: open" "$(cat "$E2E_TMP/tgt-$limit.txt")"
        # separate connections are not limited by it
        ctl "$TGT_PORT" put /w0 x >/dev/null
        pids=()
        for i in 1 2 3; do
            "$ETCDCTL" --endpoints "127.0.0.1:$TGT_PORT" watch /w0 --rev 1 >"$E2E_TMP/watch$i.txt" 2>&1 &
            pids+=($!)
        done
        for i in 1 2 3; do
            for _ in $(seq 50); do
                grep -q '^x$' "$E2E_TMP/watch$i.txt" && break
                sleep 0.1
            done
        done
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
        n=$( (grep -l '^x$' "$E2E_TMP"/watch[123].txt || true) | wc -l)
        check_eq "limit 2: three etcdctl watch processes all served" 3 "$n"
        for side in ref tgt; do
            port=$REF_PORT
            [ "$side" = tgt ] && port=$TGT_PORT
            check_eq "limit 2, $side: gateway requests past the bound wait" "$(gateway_limit "$port")" \
                "range with 2 watches: timed out
range after a watch ended: answered"
        done
    fi
    kill -0 "$TGT_PID" 2>/dev/null && pass "target alive ($limit)" || fail "target died ($limit)"
    stop_server "$REF_PID"
    stop_server "$TGT_PID"
done
finish
