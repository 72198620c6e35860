#!/usr/bin/env bash
# e2e/test_etcd_datadir.sh: kshimd started on an etcd 3.4 data dir takes it
# over (cmd/etcd_datadir.c).
#
# Restored dir: real etcd is loaded (several versions per key, a delete, a
# lease, a compaction), `etcdctl snapshot save`, etcd stopped cleanly,
# `etcdctl snapshot restore` into a new dir (etcd's layout: member/snap/db,
# member/snap/*.snap, member/wal/*.wal); kshimd started on that dir serves
# the same keys, values, create/mod revisions and versions (get --prefix -w
# json, also at an older revision), the compaction and the lease; the next
# put gets etcd's revision + 1; etcd's member dir is kept byte for byte in
# member/etcd-member.orig; a restart of kshimd on the converted dir serves
# the same, and a member added then catches up with the restored keys.
# Live dir: etcd with a 1 h backend batch interval (its database lags its
# WAL, as it does for up to 100 ms with the defaults) is written to and its
# data dir copied while it runs; kshimd on the copy refuses to start (exit
# status 1) with the message naming the writes past the consistent index and
# the ways out (etcdctl snapshot save + restore, kshimctl migrate), and the
# dir is left byte for byte as it was. The same etcd's own dir after its
# clean stop (the database then holds every write) is taken over.
#
# Ports: 24800 (etcd source), 24801 (kshimd on the restored dir), 24802
# (etcd live), 24803 (kshimd on the live copy), 24804 (the member added);
# peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CMP="$PY $E2E_DIR/snapshot_compare.py"

# fingerprint DIR: every path with type, size and checksum.
fingerprint() {
    (cd "$1" && find . -printf '%y %s %p\n' | sort && find . -type f -print0 | sort -z | xargs -0 md5sum)
}

revision_of() {
    $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["header"]["revision"])' "$1"
}

# listing PORT NAME: get --prefix at the current revision and at revision 6.
listing() {
    ctl "$1" get "" --prefix -w json >"$E2E_TMP/$2.json"
    $CMP kvs "$E2E_TMP/$2.json" >"$E2E_TMP/$2.txt"
    echo "--- at 6" >>"$E2E_TMP/$2.txt"
    ctl "$1" get "" --prefix --rev=6 -w json >"$E2E_TMP/$2.rev.json"
    $CMP kvs "$E2E_TMP/$2.rev.json" | tail -n +2 >>"$E2E_TMP/$2.txt"
    echo "--- below the compaction" >>"$E2E_TMP/$2.txt"
    ctl "$1" get a --rev=3 2>&1 | grep -v '"level":"warn"' >>"$E2E_TMP/$2.txt" || true
    echo "--- leases" >>"$E2E_TMP/$2.txt"
    local id
    for id in $(ctl "$1" lease list | tail -n +2); do
        ctl "$1" lease timetolive "$id" --keys | sed -E 's/remaining\([0-9-]+s\)/remaining(N)/' >>"$E2E_TMP/$2.txt"
    done
}

# ---- a dir made by etcdctl snapshot restore ----
start_etcd es 24800
ES_PID=$SERVER_PID
wait_ready "$ES_PID" 24800
ctl 24800 put a 1 >/dev/null
ctl 24800 put a 2 >/dev/null
ctl 24800 put b x >/dev/null
ctl 24800 del b >/dev/null
ctl 24800 put c y >/dev/null
lease=$(ctl 24800 lease grant 600 | awk '{print $2}')
ctl 24800 put leased v --lease="$lease" >/dev/null
ctl 24800 put a 3 >/dev/null
ctl 24800 compact 4 >/dev/null
ctl 24800 snapshot save "$E2E_TMP/es.db" >/dev/null 2>&1
listing 24800 es
ES_REV=$(revision_of "$E2E_TMP/es.json")
stop_server "$ES_PID"

"$ETCDCTL" snapshot restore "$E2E_TMP/es.db" --data-dir "$E2E_TMP/kd.data" --name kd \
    --initial-cluster kd=http://127.0.0.1:24851 --initial-advertise-peer-urls http://127.0.0.1:24851 \
    --initial-cluster-token tok >"$E2E_TMP/restore.log" 2>&1 || die "etcdctl snapshot restore: $(tail -3 "$E2E_TMP/restore.log")"
fingerprint "$E2E_TMP/kd.data/member" >"$E2E_TMP/etcd-member.before"
KD_FLAGS=(--initial-cluster kd=http://127.0.0.1:24851 --initial-advertise-peer-urls http://127.0.0.1:24851
    --listen-peer-urls http://127.0.0.1:24851 --initial-cluster-token tok)
start_kshimd kd 24801 "${KD_FLAGS[@]}"
KD_PID=$SERVER_PID
wait_ready "$KD_PID" 24801
if grep -q "took over the etcd data dir" "$E2E_TMP/kd.log"; then
    pass "kshimd took over the restored etcd data dir: $(grep -o 'consistent index [^;]*' "$E2E_TMP/kd.log" | head -1)"
else
    fail "kshimd did not log the take-over"
fi
listing 24801 kd
diff_files "kshimd on etcd's restored dir serves etcd's keys, revisions, compaction, leases" \
    "$E2E_TMP/es.txt" "$E2E_TMP/kd.txt"
fingerprint "$E2E_TMP/kd.data/member/etcd-member.orig" >"$E2E_TMP/etcd-member.after"
diff_files "etcd's member dir is kept byte for byte in member/etcd-member.orig" \
    "$E2E_TMP/etcd-member.before" "$E2E_TMP/etcd-member.after"
if [ ! -e "$E2E_TMP/kd.data/member/snap" ] && [ ! -e "$E2E_TMP/kd.data/member.kshim-tmp" ]; then
    pass "etcd's snap dir moved aside, no temp dir left"
else
    fail "left over: $(ls "$E2E_TMP/kd.data" "$E2E_TMP/kd.data/member")"
fi
ctl 24801 put after x -w json >"$E2E_TMP/kd-put.json"
check_eq "a put on the taken-over dir gets etcd's revision + 1" "$((ES_REV + 1))" "$(revision_of "$E2E_TMP/kd-put.json")"
stop_server "$KD_PID"
start_kshimd kd 24801 "${KD_FLAGS[@]}"
KD_PID=$SERVER_PID
wait_ready "$KD_PID" 24801
ctl 24801 get after -w json >"$E2E_TMP/kd-get.json"
check_eq "after a restart the converted dir serves the put, revision $((ES_REV + 1))" "$((ES_REV + 1))" \
    "$(revision_of "$E2E_TMP/kd-get.json")"
check_eq "the restart did not convert again" 1 "$(grep -c 'took over the etcd data dir' "$E2E_TMP/kd.log")"
# a member added now is sent the store as a snapshot (the log starts after it)
ctl 24801 member add kj --peer-urls=http://127.0.0.1:24854 >/dev/null
start_kshimd kj 24804 --listen-peer-urls http://127.0.0.1:24854 --initial-advertise-peer-urls http://127.0.0.1:24854 \
    --initial-cluster kd=http://127.0.0.1:24851,kj=http://127.0.0.1:24854 --initial-cluster-state existing
KJ_PID=$SERVER_PID
wait_ready "$KJ_PID" 24804
ok=0
for _ in $(seq 50); do
    if [ "$(ctl 24804 get a --print-value-only 2>/dev/null)" = 3 ]; then ok=1; break; fi
    sleep 0.2
done
check_eq "a member joining the taken-over one serves its restored keys (snapshot catch-up)" 1 "$ok"
stop_server "$KJ_PID"
stop_server "$KD_PID"

# ---- a live etcd's dir: writes in the WAL past the database ----
start_etcd el 24802 --backend-batch-interval 1h
EL_PID=$SERVER_PID
wait_ready "$EL_PID" 24802
for i in 1 2 3; do ctl 24802 put "live$i" "v$i" >/dev/null; done
cp -a "$E2E_TMP/el.data" "$E2E_TMP/kl.data"
stop_server "$EL_PID"
fingerprint "$E2E_TMP/kl.data" >"$E2E_TMP/live.before"
set +e
timeout 30 "$KSHIMD" --name el --data-dir "$E2E_TMP/kl.data" \
    --listen-client-urls http://127.0.0.1:24803 --advertise-client-urls http://127.0.0.1:24803 \
    --initial-cluster el=http://127.0.0.1:24852 --initial-advertise-peer-urls http://127.0.0.1:24852 \
    >"$E2E_TMP/kl.log" 2>&1
rc=$?
set -e
check_eq "kshimd on a live etcd's dir exits with status 1" 1 "$rc"
msg=$(grep -o "etcd's WAL in [^\"]*" "$E2E_TMP/kl.log" | head -1 || true)
echo "message: $msg"
case "$msg" in
*"write(s) past the consistent index"*"etcdctl snapshot save"*"kshimctl migrate"*)
    pass "the refusal names the writes past the consistent index and the ways out" ;;
*) fail "unexpected refusal: $(tail -3 "$E2E_TMP/kl.log")" ;;
esac
fingerprint "$E2E_TMP/kl.data" >"$E2E_TMP/live.after"
diff_files "the refused dir is left byte for byte as it was" "$E2E_TMP/live.before" "$E2E_TMP/live.after"

# ---- the same etcd's own dir after its clean stop: the database holds every write ----
start_kshimd el 24803 --initial-cluster el=http://127.0.0.1:24852 --initial-advertise-peer-urls http://127.0.0.1:24852
EL_PID=$SERVER_PID
wait_ready "$EL_PID" 24803
ctl 24803 get live3 -w json >"$E2E_TMP/el-get.json"
check_eq "a cleanly stopped etcd's dir is taken over: live3 at its etcd revision" "4 v3" \
    "$($PY -c 'import json,sys,base64; k=json.load(open(sys.argv[1]))["kvs"][0]; print(k["mod_revision"], base64.b64decode(k["value"]).decode())' "$E2E_TMP/el-get.json")"
stop_server "$EL_PID"

finish
