#!/usr/bin/env bash
# e2e/test_quota_alarm.sh: the space quota and the NOSPACE alarm, Defragment,
# differentially against real etcd 3.4 started with the same flags and load.
# Both get --quota-backend-bytes 16 MiB and 64 KiB puts until the first
# refusal (python3-etcd3's raw stubs: the exact gRPC code and text), then:
#   - the refusal is ResourceExhausted "etcdserver: mvcc: database space
#     exceeded" on both, for Put (etcdctl's and the raw one), Txn with a put
#     and LeaseGrant;
#   - `alarm list` shows this member's NOSPACE; endpoint status lists it in
#     its errors; /health is false unless ?exclude=NOSPACE;
#   - every acknowledged put is readable with its value; get and delete are
#     served; compact + defrag succeed while the alarm is active; the db size
#     metric drops after delete + compact + defrag;
#   - `alarm disarm` answers as etcd's; writes work again;
#   - a second defragment runs while a client puts: its put latency during
#     the defrag is logged (no timed assertion).
#
# Ports: 25400 (real etcd, peer 25450, metrics 25402), 25401 (target, metrics 25403)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

QUOTA=16777216
CLIENT="$PY $E2E_DIR/quota_client.py"
start_etcd etcd-q 25400 --quota-backend-bytes $QUOTA --listen-metrics-urls http://127.0.0.1:25402
ETCD_PID=$SERVER_PID
start_target kshimd-q 25401 --quota-backend-bytes $QUOTA --listen-metrics-urls http://127.0.0.1:25403
TARGET_PID=$SERVER_PID
wait_ready "$ETCD_PID" 25400
wait_ready "$TARGET_PID" 25401

field() { $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
db_size() {
    sleep 1.1 # kshimd caches the size for a second
    curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "etcd_mvcc_db_total_size_in_bytes" { print $2 }'
}
health() { curl -s -o "$E2E_TMP/body" -w '%{http_code}' "http://127.0.0.1:$1$2" && echo " $(cat "$E2E_TMP/body")"; }
ids() { sed -E 's/memberID:[0-9]+/memberID:ID/g; s/"memberID":[0-9]+/"memberID":ID/g'; }

# ---- fill until the quota refuses ----
for p in 25400 25401; do
    $CLIENT fill "127.0.0.1:$p" fill/ 65536 2000 >"$E2E_TMP/fill.$p"
    log "port $p: $(cat "$E2E_TMP/fill.$p")"
done
check_eq "first refusal: code" "$(field code <"$E2E_TMP/fill.25400")" "$(field code <"$E2E_TMP/fill.25401")"
check_eq "first refusal: text" "$(field details <"$E2E_TMP/fill.25400")" "$(field details <"$E2E_TMP/fill.25401")"
check_eq "the refusal is etcd's NOSPACE" "RESOURCE_EXHAUSTED etcdserver: mvcc: database space exceeded" \
    "$(field code <"$E2E_TMP/fill.25401") $(field details <"$E2E_TMP/fill.25401")"
ACKED=$(field acked <"$E2E_TMP/fill.25401")
check_eq "kshimd acknowledged puts before the quota" 1 "$([ "$ACKED" -gt 50 ] && echo 1)"

for p in 25400 25401; do
    ctl $p put x y 2>&1 | grep -v '^{"level"' >"$E2E_TMP/put.$p" || true
    ctl $p alarm list 2>&1 | ids >"$E2E_TMP/alarms.$p"
    $CLIENT refused "127.0.0.1:$p" >"$E2E_TMP/refused.$p"
    ctl $p endpoint status -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"].get("errors"))' |
        ids >"$E2E_TMP/errors.$p"
    for q in "/health" "/health?exclude=NOSPACE" "/health?exclude=CORRUPT"; do
        echo "$q $(health $((p + 2)) "$q")"
    done >"$E2E_TMP/health.$p"
done
diff_files "etcdctl put while NOSPACE" "$E2E_TMP/put.25400" "$E2E_TMP/put.25401"
diff_files "alarm list" "$E2E_TMP/alarms.25400" "$E2E_TMP/alarms.25401"
check_eq "alarm list is this member's NOSPACE" "memberID:ID alarm:NOSPACE " "$(cat "$E2E_TMP/alarms.25401")"
diff_files "Txn with a put and LeaseGrant refused" "$E2E_TMP/refused.25400" "$E2E_TMP/refused.25401"
diff_files "endpoint status errors" "$E2E_TMP/errors.25400" "$E2E_TMP/errors.25401"
diff_files "/health with the alarm" "$E2E_TMP/health.25400" "$E2E_TMP/health.25401"

# ---- nothing acknowledged is lost; reads and deletes are served ----
check_eq "every acknowledged put is readable" ok "$($CLIENT verify 127.0.0.1:25401 fill/ "$ACKED" 65536)"
check_eq "etcd: every acknowledged put is readable" ok \
    "$($CLIENT verify 127.0.0.1:25400 fill/ "$(field acked <"$E2E_TMP/fill.25400")" 65536)"
check_eq "get while NOSPACE" 65536 "$(ctl 25401 get fill/0 --print-value-only | tr -d '\n' | wc -c)"
BEFORE=$(db_size 25403)
deleted=$(ctl 25401 del --prefix fill/)
check_eq "delete while NOSPACE removes every acknowledged key" 1 "$([ "$deleted" -ge "$ACKED" ] && echo 1)"
ctl 25400 del --prefix fill/ >/dev/null
for p in 25400 25401; do
    rev=$(ctl $p get x -w json | field header | $PY -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())["revision"])')
    ctl $p compact "$rev" --physical >"$E2E_TMP/compact.$p" 2>&1 || true
    sed -i -E 's/revision [0-9]+/revision REV/' "$E2E_TMP/compact.$p"
    ctl $p defrag 2>&1 | sed -E 's/127.0.0.1:[0-9]+/ENDPOINT/' >"$E2E_TMP/defrag.$p" || true
done
diff_files "compact while NOSPACE" "$E2E_TMP/compact.25400" "$E2E_TMP/compact.25401"
diff_files "defrag while NOSPACE" "$E2E_TMP/defrag.25400" "$E2E_TMP/defrag.25401"
AFTER=$(db_size 25403)
log "kshimd db size: $BEFORE bytes before delete+compact+defrag, $AFTER after"
check_eq "db size metric drops after delete + compact + defrag" 1 \
    "$([ "${AFTER%.*}" -lt "$((${BEFORE%.*} / 4))" ] && echo 1)"
for p in 25400 25401; do
    ctl $p put x y 2>&1 | grep -v '^{"level"' >"$E2E_TMP/put2.$p" || true
done
diff_files "still refused until disarmed" "$E2E_TMP/put2.25400" "$E2E_TMP/put2.25401"

# ---- disarm ----
for p in 25400 25401; do
    ctl $p alarm disarm 2>&1 | ids >"$E2E_TMP/disarm.$p"
    ctl $p alarm list >"$E2E_TMP/alarms2.$p" 2>&1
    ctl $p put x y >"$E2E_TMP/put3.$p" 2>&1 || true
    echo "$(health $((p + 2)) /health)" >"$E2E_TMP/health2.$p"
done
diff_files "alarm disarm" "$E2E_TMP/disarm.25400" "$E2E_TMP/disarm.25401"
check_eq "no alarm after disarm" "" "$(cat "$E2E_TMP/alarms2.25401")"
check_eq "writes work again" OK "$(cat "$E2E_TMP/put3.25401")"
diff_files "/health after disarm" "$E2E_TMP/health2.25400" "$E2E_TMP/health2.25401"

# ---- a defragment does not stall writes ----
$CLIENT fill 127.0.0.1:25401 big/ 65536 150 >/dev/null
ctl 25401 del --prefix big/ >/dev/null
rev=$(ctl 25401 put y z -w json | field header | $PY -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())["revision"])')
ctl 25401 compact "$rev" --physical >/dev/null
$CLIENT putlat 127.0.0.1:25401 lat/ 1 >"$E2E_TMP/lat.before"
$CLIENT putlat 127.0.0.1:25401 lat/ 3 >"$E2E_TMP/lat.during" &
LAT_PID=$!
sleep 0.3
t0=$(date +%s%N)
ctl 25401 defrag >/dev/null
t1=$(date +%s%N)
wait $LAT_PID
log "defragment took $(((t1 - t0) / 1000000)) ms; concurrent puts (count p50_ms max_ms): before $(cat "$E2E_TMP/lat.before"), during $(cat "$E2E_TMP/lat.during")"
check_eq "puts answered during the defragment" 1 "$([ "$(cut -d' ' -f1 <"$E2E_TMP/lat.during")" -gt 0 ] && echo 1)"
stored=$(ctl 25401 get lat/ --prefix --keys-only | grep -c '^lat/' || true)
check_eq "every put acknowledged during the defragment is stored" 1 \
    "$([ "$stored" -ge "$(cut -d' ' -f1 <"$E2E_TMP/lat.during")" ] && echo 1)"

# ---- CORRUPT: nothing raises it here, but it can be activated, listed and disarmed ----
for p in 25400 25401; do
    {
        $CLIENT activate "127.0.0.1:$p" CORRUPT
        ctl $p alarm list 2>&1 | ids
        ctl $p put x y 2>&1 | grep -v '^{"level"' || true
        ctl $p del x 2>&1 | grep -v '^{"level"' || true
        ctl $p get x --print-value-only 2>&1 | grep -v '^{"level"' || true
        echo "$(health $((p + 2)) /health) / $(health $((p + 2)) "/health?exclude=CORRUPT")"
        ctl $p alarm disarm 2>&1 | ids
        ctl $p put x y2 2>&1 | grep -v '^{"level"' || true
    } >"$E2E_TMP/corrupt.$p"
done
diff_files "CORRUPT: activate, refusals, health, disarm" "$E2E_TMP/corrupt.25400" "$E2E_TMP/corrupt.25401"
check_eq "CORRUPT refuses a put with etcd's text" 1 \
    "$(grep -c '^Error: etcdserver: corrupt cluster$' "$E2E_TMP/corrupt.25401" | awk '{print ($1 >= 2)}')"

stop_server "$TARGET_PID"
stop_server "$ETCD_PID"
finish
