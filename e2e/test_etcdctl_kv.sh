#!/usr/bin/env bash
# e2e/test_etcdctl_kv.sh: differential test of the KV surface through the real
# etcdctl 3.4 binary. One fixed script of etcdctl commands (put/get/del with
# every flag, txn from stdin and -i, compaction, endpoint status, error cases)
# runs against a fresh real etcd and against the target (kshimd, or a second
# etcd with KSHIM_E2E_TARGET=etcd). Each command's stdout+stderr and exit
# code are recorded, normalized (see normalize_ctl) and compared with diff -u
# per section.
#
# Ports: 23900 (real etcd), 23901 (target); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=23900
TGT_PORT=23901
SPACE_KEY='key with spaces'
UNI_KEY='ключ/ü/日本/🔑'
BIN_KEY=$'bin\x01\x02\x7f\xfe\xff'

# c ARGS...: run one etcdctl command, record it, its output and exit code.
c() {
    printf '### %s\n' "$*"
    local rc=0
    ctl "$PORT" "$@" 2>&1 || rc=$?
    echo "rc=$rc"
}

# ci INPUT ARGS...: like c, with INPUT on stdin.
ci() {
    local input=$1
    shift
    printf '### %s <<< %q\n' "$*" "$input"
    local rc=0
    printf '%s' "$input" | ctl "$PORT" "$@" 2>&1 || rc=$?
    echo "rc=$rc"
}

section_put() {
    c put k1 v1
    c put k1 v2 --prev-kv
    c put k1 v3 --prev-kv -w json
    c put k2 "" # empty value
    c put k2 v2 --prev-kv -w fields
    c put -- k3 -dashvalue
    ci 'value-from-stdin' put k4
    c put k1 --ignore-value
    c put k1 --ignore-value --prev-kv -w json
    c put k1 v5 --ignore-lease
    c put missing --ignore-value
    c put missing v --ignore-lease
    c put k1 v --lease=1234
    c put "$SPACE_KEY" 'value with spaces'
    c put "$UNI_KEY" 'значение-ü-日本'
    c put "$BIN_KEY" $'\x01binval\xff'
    c put --prev-kv -w json "$BIN_KEY" $'\x02binval\xfe'
    c put "$BIN_KEY" plain --hex --prev-kv
    c put '' v
    c put
}

section_get() {
    local k
    for k in a/1 a/2 a/3 b/1 b/2 c; do c put "$k" "val-$k"; done
    c put a/2 val-a/2-second
    c put b/1 zzz
    c get k1
    c get k1 -w json
    c get k1 -w fields
    c get k1 --hex
    c get nokey
    c get nokey -w json
    c get "$SPACE_KEY"
    c get "$UNI_KEY" -w json
    c get "$BIN_KEY"
    c get "$BIN_KEY" -w json
    c get "$BIN_KEY" --hex
    c get a --prefix
    c get a/ --prefix -w json
    c get a/1 b/2
    c get a/1 b/2 -w json
    c get b --from-key
    c get "" --from-key --keys-only
    c get "" --prefix --keys-only -w json
    c get a/ --prefix --limit 2 -w json
    c get a/ --prefix --limit 2
    c get a/ --prefix --keys-only
    c get a/ --prefix --print-value-only
    c get a/ --prefix --limit 1 --keys-only -w json
    c get a/ --prefix --consistency=s -w json
    c get a/ --prefix --consistency=l
    # Sorting: etcd uses Go's sort.Sort, which is a stable insertion sort
    # for up to 12 elements and an unstable pdqsort beyond, so ties (equal
    # versions) are only compared on ranges of at most 12 keys: [a/, k3)
    # holds 9 here. DESCEND is sort.Reverse, which keeps ties in key order.
    local order target
    for target in CREATE KEY MODIFY VALUE VERSION; do
        for order in ASCEND DESCEND; do
            c get a/ k3 --sort-by="$target" --order="$order" -w json
        done
    done
    c get "" --from-key --sort-by=KEY --order=DESCEND --keys-only
    c get a/ --prefix --order=DESCEND
    c get a/ --prefix --order=DESCEND --limit 1 -w json
    c get a/ --prefix --sort-by=VALUE --order=DESCEND --limit 2 -w json
    c get a/ --prefix --sort-by=BOGUS
    c get a/ --prefix --order=SIDEWAYS
    c get a/2 --rev 1 -w json
    c get a/ --prefix --rev 20 -w json
    c get a/2 --rev 24 -w json
    c get a/2 --rev 25 -w json
    c get a/ --prefix --rev 24 -w json
    c get a/2 --rev 1000
    c get "$BIN_KEY" -w protobuf
}

section_del() {
    c del nokey
    c del nokey -w json
    c del k2 --prev-kv
    c del k3 --prev-kv -w json
    c del a/ --prefix --prev-kv -w json
    c get "" --from-key --keys-only
    c del b/1 b/3
    c del c --from-key --prev-kv
    c get "" --from-key --keys-only -w json
    c del "$BIN_KEY" --prev-kv --hex
}

section_txn() {
    c put t1 one
    c put t2 two
    c put t3 three
    ci $'val("t1") = "one"\nver("t2") = "1"\n\nput t1 uno\nget t2\n\nput t1 failed\n\n' txn
    ci $'val("t1") = "one"\n\nput t1 uno-again\n\nget t1\nget t --prefix\n\n' txn
    ci $'val("t1") = "one"\n\nput t1 uno-again\n\nget t1\nget t --prefix\n\n' txn -w json
    ci $'mod("t1") > "0"\ncreate("t3") < "1000"\nver("t3") != "5"\n\ndel t3 --prev-kv\nput t4 four --prev-kv\nget t1 t9\n\n\n' txn -w json
    ci $'create("t3") = "0"\n\nput t3 recreated\n\nget t3\n\n' txn -w json
    ci $'mod("t2") = "1"\n\n\nget t2\ndel t2\n\n' txn -w json
    ci $'\nput t5 five\nput t6 six\n\n\n' txn
    ci $'val("t1") > "a"\nval("t1") < "z"\n\nget t --prefix --keys-only\n\n\n' txn
    ci $'val("nokey") = ""\n\nput x y\n\nput x z\n\n' txn -w json
    ci $'mod("t1") > "0"\n\nget t1\nput t1 interactive\n\nget t --prefix\n\n' txn -i
    ci $'ver("t1") = "1"\n\nput t1 no\n\nget t --prefix --keys-only\ndel t --prefix\n\n' txn -i -w json
    ci $'\nput dup a\nput dup b\n\n\n' txn
    ci $'\nput dup a\ndel dup\n\n\n' txn
    ci $'\nput dupr/a a\ndel dupr/ --prefix\n\n\n' txn
    ci $'\nget dup\nget dup\n\n\n' txn
    local ops128 ops129
    ops128=$(for i in $(seq 128); do echo "put many/$i v$i"; done)
    ops129=$(for i in $(seq 129); do echo "put many/$i v$i"; done)
    ci $'\n'"$ops128"$'\n\n\n' txn
    ci $'\n'"$ops129"$'\n\n\n' txn
    c get many/ --prefix --limit 1 --keys-only -w json
    ci $'bogus\n\n\n\n' txn
}

# current_rev: the store revision of the server on $PORT.
current_rev() {
    ctl "$PORT" get nokey -w json | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2
}

section_compact() {
    c put cmp v1
    c put cmp v2
    c put cmp v3
    c get cmp -w json
    local rev
    rev=$(current_rev)
    c compaction 100000
    c compaction 2
    c compaction 2
    c compaction 1
    c get cmp --rev 1
    c get cmp --rev 2 -w json
    c compaction --physical $((rev - 1))
    c get cmp --rev $((rev - 2))
    c get cmp --rev $((rev - 1)) -w json
    c get cmp --rev "$rev" -w json
    c get cmp -w json
    c get "" --from-key --keys-only -w json
    ci $'\nget cmp --rev '$((rev - 2))$'\n\n\n' txn
    ci $'\nget cmp --rev '$((rev - 1))$'\n\n\n' txn -w json
    c compaction "$rev"
    c get "" --from-key --keys-only --rev "$rev" -w json
}

section_status() {
    c endpoint status -w json
    c endpoint status -w fields
    c endpoint status
    c endpoint health
    c get "" --from-key --keys-only -w json
}

# normalize_ctl: normalize on top of lib.sh's normalize for etcdctl output:
# drops the client-side retry log's timestamp and dial target and the
# endpoint's port; decodes -w protobuf output and zeroes the header ids.
normalize_ctl() {
    "$PY" "$E2E_DIR/pbnorm.py" |
        sed -E -e 's/"ts":"[^"]*",//' -e 's/"target":"[^"]*",//' \
            -e "s/127\.0\.0\.1:($REF_PORT|$TGT_PORT)/ENDPOINT/g" |
        normalize | normalize_term
}

run_all() {
    local s
    for s in put get del txn compact status; do
        "section_$s" >"$OUT/$s.raw"
        normalize_ctl <"$OUT/$s.raw" >"$OUT/$s.txt"
    done
    term_values "$OUT"/*.raw >"$OUT/terms"
}

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

mkdir -p "$E2E_TMP/ref" "$E2E_TMP/tgt"
PORT=$REF_PORT OUT=$E2E_TMP/ref run_all
PORT=$TGT_PORT OUT=$E2E_TMP/tgt run_all

diff_files "raft terms reported" "$E2E_TMP/ref/terms" "$E2E_TMP/tgt/terms"
for s in put get del txn compact status; do
    diff_files "$s" "$E2E_TMP/ref/$s.txt" "$E2E_TMP/tgt/$s.txt"
done
# Guard against a vacuous pass: the reference transcript must show real work.
if grep -aq 'etcdserver: too many operations in txn request' "$E2E_TMP/ref/txn.txt" &&
    grep -aq 'compacted revision 2' "$E2E_TMP/ref/compact.txt"; then
    pass "reference transcript is meaningful"
else
    fail "reference transcript lacks expected content"
fi
kill -0 "$TGT_PID" 2>/dev/null && pass "target still running" || fail "target died"
finish
