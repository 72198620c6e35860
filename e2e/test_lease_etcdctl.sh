#!/usr/bin/env bash
# e2e/test_lease_etcdctl.sh: differential test of the Lease surface through
# the real etcdctl 3.4 binary: lease grant (minimum TTL, too-large TTL),
# put --lease (attach, re-attach, detach, --ignore-lease, unknown lease),
# lease timetolive [--keys], keep-alive --once, list, revoke (keys deleted in
# one revision), expiry, and the same leases and attachments after a restart
# of the server. One script runs against a fresh real etcd and against the
# target at the same time; transcripts (stdout+stderr, exit codes) are
# normalized (lease ids -> L1.., TTL jitter, see lease_norm.py) and compared.
# A python3-etcd3 part checks client-chosen ids and "lease already exists".
#
# Ports: 25110 (real etcd), 25111 (target); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25110
TGT_PORT=25111

c() {
    printf '### %s\n' "$*"
    local rc=0
    ctl "$PORT" "$@" 2>&1 || rc=$?
    echo "rc=$rc"
}

# grant_id TTL: grant a lease (recorded like c) and print nothing else;
# the id is left in $OUT/last_id.
grant_id() {
    printf '### lease grant %s\n' "$1"
    local out rc=0
    out=$(ctl "$PORT" lease grant "$1" 2>&1) || rc=$?
    printf '%s\nrc=%s\n' "$out" "$rc"
    awk '/granted/ {print $2}' <<<"$out" >"$OUT/last_id"
}

section_grant() {
    grant_id 60
    grant_id 100
    c lease grant 1
    c lease grant 0 -w json
    c lease grant 9000000001
    c lease grant 9000000000 -w json
    c lease grant -5
}

section_attach() {
    local l1 l2
    grant_id 60
    l1=$(cat "$OUT/last_id")
    grant_id 120 # distinct TTLs: lease list orders by deadline, ties are random in etcd
    l2=$(cat "$OUT/last_id")
    echo "$l1 $l2" >"$OUT/ids"
    c put --lease="$l1" a 1
    c put --lease="$l1" b 2
    c put --lease="$l2" c 3 -w json
    c lease timetolive "$l1"
    c lease timetolive --keys "$l1"
    c lease timetolive --keys "$l1" -w json
    c lease keep-alive --once "$l1"
    c lease keep-alive --once "$l2" -w json
    c put --lease=1234 x y
    c put --lease=1234 x y -w json
    c get x
    c put --lease="$l2" a 10 # re-attach
    c lease timetolive --keys "$l1"
    c lease timetolive --keys "$l2"
    c put a 11 # no lease: detach
    c get a -w json
    c put --ignore-lease b 12
    c get b -w json
    c del b
    c lease timetolive --keys "$l1"
    c put --lease="$l1" d 4
    c put --lease="$l1" e 5
    c get --prefix '' -w json
    c lease revoke "$l1"
    c get --prefix '' -w json
    c lease revoke "$l1"
    c lease revoke 1234
    c lease timetolive 1234
    c lease timetolive "$l1" --keys -w json
    c lease keep-alive --once 1234
    c lease keep-alive --once "$l1"
    c lease list
    c lease list -w json
}

section_expiry() {
    local l
    grant_id 2
    l=$(cat "$OUT/last_id")
    c put --lease="$l" short-lived v
    c get short-lived --print-value-only
    sleep 4.5 # TTL 2 s + the leader's expiry scan + the revoke's apply
    c get short-lived
    c lease timetolive "$l"
    c lease keep-alive --once "$l"
    c get --prefix '' --keys-only
    # the keepalive stream renews a TTL-2 lease for longer than its TTL
    grant_id 2
    l=$(cat "$OUT/last_id")
    c put --lease="$l" kept-alive v
    printf '### lease keep-alive %s (4 s, distinct lines)\n' "$l"
    timeout 4 "$ETCDCTL" --endpoints "127.0.0.1:$PORT" lease keep-alive "$l" 2>&1 | sort -u || true
    c get kept-alive --print-value-only
    c lease timetolive "$l"
    c lease revoke "$l" # keeps the restart section free of timing
    c get kept-alive
}

section_restart() {
    local l1 l2
    read -r l1 l2 <"$OUT/ids"
    c lease timetolive --keys "$l2"
    c lease list
    c get c -w json
    c put --lease="$l2" after-restart v
    c lease revoke "$l2"
    c get --prefix '' --keys-only
}

# normalize_lease: like test_etcdctl_kv's normalize_ctl plus lease_norm.py.
normalize_lease() {
    sed -E -e 's/"ts":"[^"]*",//' -e 's/"target":"[^"]*",//' \
        -e "s/127\.0\.0\.1:($REF_PORT|$TGT_PORT)/ENDPOINT/g" |
        normalize | normalize_term | "$PY" "$E2E_DIR/lease_norm.py"
}

# python3-etcd3: client-chosen ids, duplicates, revoke of keys.
py_client() {
    "$PY" - "$PORT" <<'EOF'
import sys, etcd3
c = etcd3.client(host="127.0.0.1", port=int(sys.argv[1]))
l = c.lease(30, lease_id=424242)
print("granted", l.id, l.granted_ttl)
try:
    c.lease(30, lease_id=424242)
    print("duplicate granted?!")
except Exception as e:
    print("duplicate:", type(e).__name__, e)
c.put("/py/a", "1", lease=l)
c.put("/py/b", "2", lease=l)
print("keys", sorted(k.decode() for k in l.keys))
print("refresh ttl", l.refresh()[0].TTL)
c.revoke_lease(424242)
print("after revoke", [m.key.decode() for _, m in c.get_prefix("/py/")])
print("remaining after revoke", l.remaining_ttl)
EOF
}

run_server() {
    mkdir -p "$OUT"
    local s
    for s in grant attach expiry; do
        "section_$s" >"$OUT/$s.raw" 2>&1
    done
    py_client >"$OUT/py.raw" 2>&1 || echo "python client exit $?" >>"$OUT/py.raw"
}

run_restart() {
    section_restart >"$OUT/restart.raw" 2>&1
}

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

PORT=$REF_PORT OUT=$E2E_TMP/ref run_server &
REF_JOB=$!
PORT=$TGT_PORT OUT=$E2E_TMP/tgt run_server &
TGT_JOB=$!
wait "$REF_JOB" "$TGT_JOB"

# restart both servers (SIGTERM), then check leases and attachments
stop_server "$REF_PID"
stop_server "$TGT_PID"
start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not restart"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target did not restart"
PORT=$REF_PORT OUT=$E2E_TMP/ref run_restart
PORT=$TGT_PORT OUT=$E2E_TMP/tgt run_restart

# Ids carry over between sections: normalize each side's transcript as one.
for side in ref tgt; do
    for s in grant attach expiry py restart; do
        printf '=== %s\n' "$s"
        cat "$E2E_TMP/$side/$s.raw"
    done | normalize_lease >"$E2E_TMP/$side/all.txt"
done
term_values "$E2E_TMP"/ref/*.raw >"$E2E_TMP/ref/terms"
term_values "$E2E_TMP"/tgt/*.raw >"$E2E_TMP/tgt/terms"
diff_files "raft terms reported" "$E2E_TMP/ref/terms" "$E2E_TMP/tgt/terms"
for s in grant attach expiry py restart; do
    awk -v s="$s" '/^=== /{on = ($2 == s); next} on' "$E2E_TMP/ref/all.txt" >"$E2E_TMP/ref/$s.txt"
    awk -v s="$s" '/^=== /{on = ($2 == s); next} on' "$E2E_TMP/tgt/all.txt" >"$E2E_TMP/tgt/$s.txt"
    diff_files "$s" "$E2E_TMP/ref/$s.txt" "$E2E_TMP/tgt/$s.txt"
done
# Guard against a vacuous pass: the reference transcript must show real work.
if grep -q 'attached keys(\[a b\])' "$E2E_TMP/ref/attach.txt" &&
    grep -q 'too large lease TTL' "$E2E_TMP/ref/grant.txt" &&
    grep -q 'already expired' "$E2E_TMP/ref/expiry.txt" &&
    grep -q 'duplicate: PreconditionFailedError' "$E2E_TMP/ref/py.txt"; then
    pass "reference transcript is meaningful"
else
    fail "reference transcript lacks expected content"
fi
kill -0 "$TGT_PID" 2>/dev/null && pass "target still running" || fail "target died"
finish
