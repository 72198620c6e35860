#!/usr/bin/env bash
# e2e/test_python_kv.sh: differential test of the KV surface through
# python3-etcd3 (grpc C core, Debian package, /usr/bin/python3). Runs the
# fixed scenario of kv_client.py against a fresh real etcd and against the
# target (kshimd, or a second etcd with KSHIM_E2E_TARGET=etcd) and compares
# the two canonical JSON transcripts line by line (kv_client.py already drops
# cluster/member ids; see its header).
#
# Ports: 23902 (real etcd), 23903 (target); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=23902
TGT_PORT=23903

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

run_client() {
    local port=$1 out=$2 rc=0
    timeout 60 "$PY" "$E2E_DIR/kv_client.py" "127.0.0.1:$port" >"$out" 2>"$out.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "kv_client.py against port $port exited $rc:"
        tail -n 20 "$out.err"
    fi
    return "$rc"
}

if run_client "$REF_PORT" "$E2E_TMP/ref.jsonl"; then
    pass "scenario runs against real etcd"
else
    fail "scenario against real etcd"
fi
if run_client "$TGT_PORT" "$E2E_TMP/tgt.jsonl"; then
    pass "scenario runs against target"
else
    fail "scenario against target"
fi

# raft_term is compared once, on its own (a fresh single-node etcd is at term
# 2), so that a different term does not hide the real differences below.
check_eq "raft_term values" "$(grep -o '"raft_term": [^,}]*' "$E2E_TMP/ref.jsonl" | sort | uniq -c)" \
    "$(grep -o '"raft_term": [^,}]*' "$E2E_TMP/tgt.jsonl" | sort | uniq -c)"
for f in ref tgt; do
    sed -E -i 's/"raft_term": "?[0-9]+"?/"raft_term": "TERM"/g' "$E2E_TMP/$f.jsonl"
done

# One diff per scenario step so a failure names the operation.
steps=$(wc -l <"$E2E_TMP/ref.jsonl")
[ "$steps" -ge 60 ] && pass "reference transcript has $steps steps" ||
    fail "reference transcript has only $steps steps"
bad=0
for i in $(seq "$steps"); do
    ref=$(sed -n "${i}p" "$E2E_TMP/ref.jsonl")
    tgt=$(sed -n "${i}p" "$E2E_TMP/tgt.jsonl")
    if [ "$ref" != "$tgt" ]; then
        bad=$((bad + 1))
        fail "step $i ($(echo "$ref" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["op"])')) differs:"
        diff -u --label etcd --label target <(echo "$ref" | "$PY" -m json.tool) \
            <(echo "${tgt:-null}" | "$PY" -m json.tool 2>/dev/null || echo "$tgt") || true
    fi
done
[ "$bad" -eq 0 ] && pass "all $steps steps identical"
check_eq "target transcript length" "$steps" "$(wc -l <"$E2E_TMP/tgt.jsonl")"
if ctl "$TGT_PORT" get a >/dev/null 2>&1; then
    pass "target still serving"
else
    fail "target not serving after scenario"
fi
finish
