#!/usr/bin/env bash
# e2e/test_metrics_health.sh: --listen-metrics-urls (issue 9 item 8). Real
# etcd 3.4 and kshimd each serve a metrics URL; over HTTP/1.1 (curl and raw
# sockets) the test compares:
#   - /health, /health?exclude=NOSPACE&serializable=true (kubeadm's liveness
#     and startup probe), /health?serializable=true: same status and body;
#   - POST /health (405), /version and /nope on the metrics port (404 in
#     etcd 3.4): same status and body;
#   - /metrics: every "# TYPE" line kshimd exports is in etcd's, same type;
#     has_leader, is_leader are 1, the current revision is the store's, and
#     etcd_server_health_success counts the probes made;
#   - a malformed request gets "HTTP/1.1 400" and the server still answers;
#   - a partial request held open does not block other connections, and is
#     answered once completed; two pipelined requests get two answers; a
#     HEAD answer has no body (the next answer follows its headers);
#   - 400 connections of random, cut and garbage requests leave it serving.
#
# Ports: 25300 (real etcd, peer 25350, metrics 25302), 25301 (target, metrics 25303)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

start_etcd etcd-m 25300 --listen-metrics-urls http://127.0.0.1:25302
ETCD_PID=$SERVER_PID
start_target kshimd-m 25301 --listen-metrics-urls http://127.0.0.1:25303
TARGET_PID=$SERVER_PID
wait_ready "$ETCD_PID" 25300
wait_ready "$TARGET_PID" 25301

# probe PORT PATH [curl args...]: "STATUS BODY"
probe() {
    local port=$1 path=$2
    shift 2
    curl -s -o "$E2E_TMP/body" -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" >"$E2E_TMP/code" || true
    echo "$(cat "$E2E_TMP/code") $(cat "$E2E_TMP/body")"
}

for path in "/health" "/health?exclude=NOSPACE&serializable=true" "/health?serializable=true" \
    "/version" "/nope"; do
    check_eq "GET $path" "$(probe 25302 "$path")" "$(probe 25303 "$path")"
done
check_eq "POST /health" "$(probe 25302 /health -X POST)" "$(probe 25303 /health -X POST)"

# /metrics: names and types must be etcd's.
ctl 25301 put /m v >/dev/null
curl -s http://127.0.0.1:25302/metrics >"$E2E_TMP/etcd.metrics"
curl -s -D "$E2E_TMP/target.headers" http://127.0.0.1:25303/metrics >"$E2E_TMP/target.metrics"
grep '^# TYPE' "$E2E_TMP/etcd.metrics" | sort >"$E2E_TMP/etcd.types"
grep '^# TYPE' "$E2E_TMP/target.metrics" | sort >"$E2E_TMP/target.types"
missing=$(comm -13 "$E2E_TMP/etcd.types" "$E2E_TMP/target.types")
check_eq "every kshimd metric is etcd's, same type" "" "$missing"
check_eq "kshimd exports metrics" "1" "$([ "$(wc -l <"$E2E_TMP/target.types")" -ge 15 ] && echo 1)"
value() { awk -v n="$1" '$1 == n { print $2 }' "$E2E_TMP/target.metrics"; }
check_eq "etcd_server_has_leader" "1" "$(value etcd_server_has_leader)"
check_eq "etcd_server_is_leader" "1" "$(value etcd_server_is_leader)"
check_eq "etcd_server_leader_changes_seen_total" "1" "$(value etcd_server_leader_changes_seen_total)"
check_eq "etcd_server_proposals_failed_total" "0" "$(value etcd_server_proposals_failed_total)"
rev=$(ctl 25301 get /m -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
check_eq "etcd_debugging_mvcc_current_revision" "$rev" "$(value etcd_debugging_mvcc_current_revision)"
check_eq "etcd_server_health_success counts probes as etcd" \
    "$(awk '$1 == "etcd_server_health_success" { print $2 }' "$E2E_TMP/etcd.metrics")" "$(value etcd_server_health_success)"
check_eq "process_open_fds > 0" "1" "$(awk '$1 == "process_open_fds" && $2 > 0 { print 1 }' "$E2E_TMP/target.metrics")"
check_eq "metrics content type" "1" \
    "$(grep -c -i '^Content-Type: text/plain; version=0.0.4' "$E2E_TMP/target.headers" || true)"

check_eq "/health is true" "200 {\"health\":\"true\"}" "$(probe 25303 /health)"

# Raw sockets: malformed, partial, pipelined.
raw_checks() {
    python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s
def read_all(s):
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        out += b
    return out
s = conn(); s.sendall(b"GARBAGE\r\n\r\n")
print("malformed:", read_all(s).split(b"\r\n")[0].decode()); s.close()
s = conn(); s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
print("bad header:", read_all(s).split(b"\r\n")[0].decode()); s.close()
slow = conn(); slow.sendall(b"GET /heal")
other = conn(); other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("other while partial:", read_all(other).split(b"\r\n")[0].decode()); other.close()
slow.sendall(b"th HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("partial completed:", read_all(slow).split(b"\r\n")[0].decode()); slow.close()
h = conn(); h.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
head, _, rest = read_all(h).partition(b"\r\n\r\n")
print("HEAD then GET:", head.split(b"\r\n")[0].decode(), "| no body, next:", rest.split(b"\r\n")[0].decode()); h.close()
p = conn(); p.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("pipelined answers:", read_all(p).count(b"HTTP/1.1 200 OK")); p.close()
PY
}
raw_checks 25302 >"$E2E_TMP/etcd.raw"
raw_checks 25303 >"$E2E_TMP/target.raw"
diff_files "raw HTTP/1.1 requests" "$E2E_TMP/etcd.raw" "$E2E_TMP/target.raw"
cat "$E2E_TMP/target.raw"
# 400 connections of random, cut, garbage, oversized and pipelined requests,
# closed early or held: the server must still answer and stay up.
python3 - 25303 <<'PY'
import random, socket, sys
port = int(sys.argv[1])
random.seed(9)
reqs = [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /metrics HTTP/1.1\r\n\r\n", b"GARBAGE\r\n\r\n", b"\x00\x01\x02",
        b"GET /x?" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"GET /health HTTP/1.0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
held = []
for _ in range(400):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    data = b"".join(random.choice(reqs) for _ in range(random.randint(1, 4)))
    cut = random.randint(0, len(data))
    try:
        s.sendall(data[:cut])
        if random.random() < 0.5:
            s.close()
            continue
        s.sendall(data[cut:])
        if random.random() < 0.5:
            s.recv(100)
    except OSError:
        pass
    (held.append if random.random() < 0.3 else lambda c: c.close())(s)
for s in held:
    s.close()
PY
check_eq "still healthy after bad requests" "200 {\"health\":\"true\"}" "$(probe 25303 /health)"
kill -0 "$TARGET_PID" && pass "kshimd alive" || fail "kshimd died"

stop_server "$TARGET_PID"
stop_server "$ETCD_PID"
finish
