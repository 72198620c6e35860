#!/usr/bin/env bash
# e2e/test_snapshot_etcd.sh: snapshots in etcd's own format, both ways.
#
# kshimd -> etcd: kshimd is loaded (several versions per key, deletes, a
# compaction, a lease, users and roles with auth left disabled, ~520
# revisions through python3-etcd3 with a 300 KB value); `etcdctl snapshot
# save` from it, `etcdctl snapshot status -w json` (revision = kshimd's,
# total keys sensible), kshimctl's own `snapshot save` gives the same bytes,
# `etcdctl snapshot restore`, real etcd started on the result: `get --prefix
# -w json` (keys, values, create/mod revisions, versions, leases; header
# revision) at the current revision and at older ones, the compact revision,
# leases, users and roles compared with kshimd's.
# etcd -> kshimd: the same load on real etcd, `etcdctl snapshot save`,
# `kshimctl snapshot restore`, kshimd started on it, compared the same way;
# then one more put gets the same revision on both. With auth enabled,
# Snapshot answers as etcd's (root only). Damaged snapshots are
# refused by kshimctl (hash mismatch; a corrupt page with --skip-hash-check).
# kshimctl snapshot status (its own bbolt reader) prints what etcdctl's
# prints for etcd's and kshimd's files (hash over every bucket, key, value).
#
# Ports: 24500 (kshimd source), 24501 (etcd restored), 24502 (etcd source),
# 24503 (kshimd restored); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KSHIMCTL=${KSHIMCTL:-$(dirname "$KSHIMD")/kshimctl}
CMP="$PY $E2E_DIR/snapshot_compare.py"
COMPACT_REV=0

# auth_snapshots PORT NAME: with auth enabled, Snapshot is for root only;
# what etcdctl prints without a user, as a non-root user and as root.
auth_snapshots() {
    local port=$1 out=$E2E_TMP/$2.auth.txt u
    ctl "$port" user add root:rootpw >/dev/null
    ctl "$port" user grant-role root root >/dev/null
    ctl "$port" auth enable >/dev/null
    for u in "" "--user=alice:pw" "--user=root:rootpw"; do
        echo "--- snapshot save $u" >>"$out"
        ctl "$port" $u snapshot save "$E2E_TMP/auth-$port.db" 2>&1 | grep -E '^(Error|Snapshot saved)' |
            sed -E "s|$E2E_TMP/auth-[0-9]+|FILE|" >>"$out" || true
    done
}

# load PORT: the scenario, the same on every server.
load() {
    local port=$1
    ctl "$port" put a 1 >/dev/null
    ctl "$port" put a 2 >/dev/null
    ctl "$port" put b x >/dev/null
    ctl "$port" del b >/dev/null
    ctl "$port" put c y >/dev/null
    local lease
    lease=$(ctl "$port" lease grant 600 | awk '{print $2}')
    ctl "$port" put leased v --lease="$lease" >/dev/null
    ctl "$port" put a 3 >/dev/null
    ctl "$port" compact 5 >/dev/null
    COMPACT_REV=5
    ctl "$port" user add alice:pw >/dev/null
    ctl "$port" user add bob:pw2 >/dev/null
    ctl "$port" role add reader >/dev/null
    ctl "$port" role grant-permission reader read a z >/dev/null
    ctl "$port" role grant-permission reader readwrite --prefix bulk/ >/dev/null
    ctl "$port" user grant-role alice reader >/dev/null
    $CMP load "127.0.0.1:$port"
    ctl "$port" put gone 1 >/dev/null
    ctl "$port" del gone >/dev/null
}

# snap_of PORT NAME: get --prefix as canonical lines at the current revision
# and at older ones, plus leases, users and roles, into $E2E_TMP/NAME.txt.
snap_of() {
    local port=$1 out=$E2E_TMP/$2.txt rev r
    ctl "$port" get "" --prefix -w json >"$E2E_TMP/$2.json"
    $CMP kvs "$E2E_TMP/$2.json" >"$out"
    rev=$(head -1 "$out" | awk '{print $2}')
    for r in $COMPACT_REV 6 7 50 200 400 $((rev - 3)) $((rev - 1)); do
        echo "--- at $r" >>"$out"
        ctl "$port" get "" --prefix --rev="$r" -w json >"$E2E_TMP/$2.rev.json"
        $CMP kvs "$E2E_TMP/$2.rev.json" | tail -n +2 >>"$out"
    done
    echo "--- below the compaction" >>"$out"
    ctl "$port" get a --rev=$((COMPACT_REV - 1)) 2>&1 | grep -v '"level":"warn"' >>"$out" || true
    echo "--- leases" >>"$out"
    local id
    for id in $(ctl "$port" lease list | tail -n +2); do
        ctl "$port" lease timetolive "$id" --keys | sed -E 's/remaining\([0-9-]+s\)/remaining(N)/' >>"$out"
    done
    echo "--- auth" >>"$out"
    ctl "$port" user list >>"$out"
    ctl "$port" role list >>"$out"
    ctl "$port" user get alice >>"$out"
    ctl "$port" role get reader >>"$out"
    ctl "$port" auth status >>"$out"
}

# ---- kshimd -> etcd ----
start_kshimd ks 24500
KS_PID=$SERVER_PID
wait_ready "$KS_PID" 24500
load 24500
ctl 24500 snapshot save "$E2E_TMP/ks.db" >/dev/null 2>&1
"$KSHIMCTL" --endpoints 127.0.0.1:24500 snapshot save "$E2E_TMP/ks-ctl.db" >/dev/null
if cmp -s "$E2E_TMP/ks.db" "$E2E_TMP/ks-ctl.db"; then
    pass "kshimctl snapshot save writes the same bytes as etcdctl snapshot save"
else
    fail "kshimctl and etcdctl snapshot save differ"
fi
KS_REV=$(ctl 24500 get a -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
status=$("$ETCDCTL" snapshot status "$E2E_TMP/ks.db" -w json 2>&1)
echo "kshimd snapshot status: $status"
st_rev=$(echo "$status" | $PY -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
st_keys=$(echo "$status" | $PY -c 'import json,sys; print(json.load(sys.stdin)["totalKey"])')
check_eq "snapshot status revision = kshimd's revision" "$KS_REV" "$st_rev"
live=$(ctl 24500 get "" --prefix --limit 1 -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["count"])')
if [ "$st_keys" -gt "$live" ] && [ "$st_keys" -lt $((KS_REV + 40)) ]; then
    pass "snapshot status totalKey $st_keys: above the $live live keys, at most the versions + metadata"
else
    fail "snapshot status totalKey $st_keys not sensible (live $live, revision $KS_REV)"
fi
snap_of 24500 ks
stop_server "$KS_PID"

if "$ETCDCTL" snapshot restore "$E2E_TMP/ks.db" --data-dir "$E2E_TMP/er.data" --name er \
    --initial-cluster er=http://127.0.0.1:24551 --initial-advertise-peer-urls http://127.0.0.1:24551 \
    >"$E2E_TMP/restore-er.log" 2>&1; then
    pass "etcdctl snapshot restore accepts kshimd's snapshot (sha256 checked)"
else
    fail "etcdctl snapshot restore of kshimd's snapshot: $(tail -3 "$E2E_TMP/restore-er.log")"
fi
start_etcd er 24501
ER_PID=$SERVER_PID
wait_ready "$ER_PID" 24501
snap_of 24501 er
diff_files "etcd restored from kshimd's snapshot serves kshimd's keys, revisions, leases, users" \
    "$E2E_TMP/ks.txt" "$E2E_TMP/er.txt"
ctl 24501 put after-restore x -w json >"$E2E_TMP/er-put.json"
er_put=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["header"]["revision"])' "$E2E_TMP/er-put.json")
check_eq "a put on the restored etcd gets kshimd's revision + 1" "$((KS_REV + 1))" "$er_put"
auth_snapshots 24501 er
stop_server "$ER_PID"

# ---- etcd -> kshimd ----
start_etcd es 24502
ES_PID=$SERVER_PID
wait_ready "$ES_PID" 24502
load 24502
ctl 24502 snapshot save "$E2E_TMP/es.db" >/dev/null 2>&1
ES_REV=$(ctl 24502 get a -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
snap_of 24502 es
stop_server "$ES_PID"

if "$KSHIMCTL" snapshot restore "$E2E_TMP/es.db" --data-dir "$E2E_TMP/kr.data" --name kr \
    --initial-cluster kr=http://127.0.0.1:24553 --initial-advertise-peer-urls http://127.0.0.1:24553 \
    --initial-cluster-token tok >"$E2E_TMP/restore-kr.log" 2>&1; then
    pass "kshimctl snapshot restore of etcd's snapshot: $(cat "$E2E_TMP/restore-kr.log")"
else
    fail "kshimctl snapshot restore: $(cat "$E2E_TMP/restore-kr.log")"
fi
start_kshimd kr 24503 --initial-cluster kr=http://127.0.0.1:24553 \
    --initial-advertise-peer-urls http://127.0.0.1:24553 --initial-cluster-token tok
KR_PID=$SERVER_PID
wait_ready "$KR_PID" 24503
snap_of 24503 kr
diff_files "kshimd restored from etcd's snapshot serves etcd's keys, revisions, leases, users" \
    "$E2E_TMP/es.txt" "$E2E_TMP/kr.txt"
kr_rev=$(head -1 "$E2E_TMP/kr.txt" | awk '{print $2}')
check_eq "header revision of the restored kshimd = etcd's" "$ES_REV" "$kr_rev"
ctl 24503 put after-restore x -w json >"$E2E_TMP/kr-put.json"
kr_put=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["header"]["revision"])' "$E2E_TMP/kr-put.json")
check_eq "a put on the restored kshimd gets etcd's revision + 1" "$((ES_REV + 1))" "$kr_put"
# kshimd's own snapshot of the restored store restores into etcd again
ctl 24503 snapshot save "$E2E_TMP/kr.db" >/dev/null 2>&1
st2=$("$ETCDCTL" snapshot status "$E2E_TMP/kr.db" -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
check_eq "snapshot of the restored kshimd has its revision" "$((ES_REV + 1))" "$st2"
auth_snapshots 24503 kr
diff_files "with auth enabled, Snapshot answers as etcd's (no user, non-root, root)" \
    "$E2E_TMP/er.auth.txt" "$E2E_TMP/kr.auth.txt"
stop_server "$KR_PID"

# ---- kshimctl snapshot status reads both files as etcdctl does ----
for f in ks es kr; do
    for w in json simple; do
        check_eq "kshimctl snapshot status -w $w of $f.db = etcdctl's" \
            "$("$ETCDCTL" snapshot status "$E2E_TMP/$f.db" -w $w 2>&1)" \
            "$("$KSHIMCTL" snapshot status "$E2E_TMP/$f.db" -w $w 2>&1)"
    done
done

# ---- damaged snapshots ----
cp "$E2E_TMP/es.db" "$E2E_TMP/bad.db"
printf '\x55\x55\x55\x55' | dd of="$E2E_TMP/bad.db" bs=1 seek=9000 conv=notrunc 2>/dev/null
if out=$("$KSHIMCTL" snapshot restore "$E2E_TMP/bad.db" --data-dir "$E2E_TMP/bad1.data" 2>&1); then
    fail "a damaged snapshot was restored"
else
    case "$out" in
    *"expected sha256"*) pass "a damaged snapshot is refused by its SHA-256 ($out)" ;;
    *) fail "damaged snapshot: unexpected error: $out" ;;
    esac
fi
head -c 40000 /dev/urandom >"$E2E_TMP/junk.db"
if out=$("$KSHIMCTL" snapshot restore "$E2E_TMP/junk.db" --skip-hash-check --data-dir "$E2E_TMP/bad2.data" 2>&1); then
    fail "a junk file was restored"
else
    pass "a junk file is refused with --skip-hash-check ($out)"
fi
if out=$("$KSHIMCTL" snapshot restore "$E2E_TMP/es.db" --data-dir "$E2E_TMP/kr.data" 2>&1); then
    fail "restore over an existing data dir"
else
    check_eq "restore refuses an existing data dir" "Error: data-dir \"$E2E_TMP/kr.data\" exists" "$out"
fi
finish
