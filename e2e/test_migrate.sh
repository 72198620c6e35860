#!/usr/bin/env bash
# e2e/test_migrate.sh: `kshimctl migrate` from a live real etcd.
#
# Real etcd is loaded (e2e/migrate_client.py load: 10,000 keys, several
# versions for some, deletes, leases with keys, a compaction; users and
# roles with auth disabled). kshimctl migrate starts while a writer keeps
# putting, deleting, granting and revoking leases; a user and a role are
# added after the snapshot. Then the writer stops, the cut-over file is
# created, migrate exits 0, and kshimd starts on the data dir. Compared on
# both (etcdctl get --prefix -w json): every key, value, create/mod
# revision, version and lease, the header revision, the same at old
# revisions (the snapshot's, one in the follow, one past the compaction);
# the leases (granted TTL, attached keys; LeaseLeases + TimeToLive), users
# and roles. Then a put on both gets the same revision. Mid-follow the
# source restarts (migrate reconnects, resumes after its last revision).
# Also: a second migrate into a used data dir is refused, and a source that
# compacts past what migrate has read makes it fail with a clear message.
#
# Over TLS with client certificates from an auth-enabled source: --user
# root is needed, and keys, roles and users come over (kshimd compared).
#
# Ports: 24600 (etcd source), 24601 (kshimd on the migrated dir), 24602
# (etcd with TLS and auth), 24603 (kshimd from it); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KSHIMCTL=${KSHIMCTL:-$(dirname "$KSHIMD")/kshimctl}
MC="$PY $E2E_DIR/migrate_client.py"
SRC=24600
DST=24601
PEER=http://127.0.0.1:$((DST + 50))

rev_of() { ctl "$1" get x -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])'; }

start_etcd es $SRC
ES_PID=$SERVER_PID
wait_ready "$ES_PID" $SRC
COMPACT=$($MC load 127.0.0.1:$SRC)
ctl $SRC user add alice:pw >/dev/null
ctl $SRC user add bob:pw2 >/dev/null
ctl $SRC role add reader >/dev/null
ctl $SRC role grant-permission reader read a z >/dev/null
ctl $SRC user grant-role alice reader >/dev/null
LOADED_REV=$(rev_of $SRC)
log "source loaded: revision $LOADED_REV, compacted at $COMPACT"

# migrate, with the writer running
STOP=$E2E_TMP/stop-writer
CUT=$E2E_TMP/cutover
$MC write 127.0.0.1:$SRC "$STOP" >"$E2E_TMP/writer.out" 2>"$E2E_TMP/writer.log" &
WRITER=$!
E2E_PIDS+=("$WRITER")
sleep 1
"$KSHIMCTL" migrate --from http://127.0.0.1:$SRC --data-dir "$E2E_TMP/ks.data" --name ks \
    --initial-cluster ks=$PEER --initial-advertise-peer-urls $PEER --initial-cluster-token tok \
    --cutover-file "$CUT" --sync-every 50 >"$E2E_TMP/migrate.out" 2>"$E2E_TMP/migrate.log" &
MIG=$!
E2E_PIDS+=("$MIG")
# the snapshot is restored once the log says so; then changes after it
for _ in $(seq 300); do grep -q "restored revision" "$E2E_TMP/migrate.log" && break; sleep 0.1; done
SNAP_REV=$(sed -nE 's/.*restored revision ([0-9]+).*/\1/p' "$E2E_TMP/migrate.log")
log "snapshot revision $SNAP_REV"
ctl $SRC user add carol:pw3 >/dev/null
ctl $SRC role add writer >/dev/null
ctl $SRC role grant-permission writer readwrite --prefix w/ >/dev/null
ctl $SRC user grant-role carol writer >/dev/null
ctl $SRC user grant-role bob writer >/dev/null
ctl $SRC user delete alice >/dev/null
sleep 3
MID_REV=$(rev_of $SRC)
sleep 1
touch "$STOP"
wait "$WRITER"
forget_pid "$WRITER"
WRITES=$(cat "$E2E_TMP/writer.out")
# the source restarts: migrate reconnects and resumes after its last revision
stop_server "$ES_PID"
sleep 1.5
start_etcd es $SRC
ES_PID=$SERVER_PID
wait_ready "$ES_PID" $SRC
rm -f "$STOP"
$MC write 127.0.0.1:$SRC "$STOP" >"$E2E_TMP/writer.out" 2>"$E2E_TMP/writer2.log" &
WRITER=$!
E2E_PIDS+=("$WRITER")
sleep 3
touch "$STOP"
wait "$WRITER"
forget_pid "$WRITER"
WRITES=$((WRITES + $(cat "$E2E_TMP/writer.out")))
ctl $SRC put last-before-cutover yes >/dev/null
touch "$CUT"
if wait "$MIG"; then
    pass "migrate exits 0 at the cut-over"
else
    fail "migrate failed: $(tail -5 "$E2E_TMP/migrate.log")"
fi
forget_pid "$MIG"
cat "$E2E_TMP/migrate.out"
SRC_REV=$(rev_of $SRC)
FINAL=$(sed -nE 's/.*final revision ([0-9]+).*/\1/p' "$E2E_TMP/migrate.out")
check_eq "the final revision is the source's" "$SRC_REV" "$FINAL"
log "writer: $WRITES ops during the migration; revisions $SNAP_REV..$SRC_REV"
[ "$SNAP_REV" -lt "$MID_REV" ] && [ "$MID_REV" -lt "$SRC_REV" ] && pass "writes happened during the follow" ||
    fail "no writes during the follow ($SNAP_REV, $MID_REV, $SRC_REV)"
RECONNECTS=$(sed -nE 's/.*, ([0-9]+) reconnects.*/\1/p' "$E2E_TMP/migrate.out")
[ "${RECONNECTS:-0}" -ge 1 ] && pass "migrate reconnected after the source restarted ($RECONNECTS reconnects)" ||
    fail "no reconnect counted: $(cat "$E2E_TMP/migrate.out")"

start_kshimd ks $DST --initial-cluster ks=$PEER --initial-advertise-peer-urls $PEER --initial-cluster-token tok
KS_PID=$SERVER_PID
wait_ready "$KS_PID" $DST

# snap PORT NAME: keys at the current and at old revisions, leases, auth
snap() {
    local port=$1 out=$E2E_TMP/$2.txt r
    : >"$out"
    for r in 0 $((COMPACT + 1)) "$SNAP_REV" "$MID_REV" $((SRC_REV - 1)); do
        echo "--- at $r" >>"$out"
        ctl "$port" get "" --prefix --rev="$r" -w json >"$E2E_TMP/$2.json"
        $MC norm "$E2E_TMP/$2.json" >>"$out"
    done
    echo "--- leases" >>"$out"
    $MC leases 127.0.0.1:"$port" >>"$out"
    echo "--- auth" >>"$out"
    ctl "$port" user list >>"$out"
    ctl "$port" role list >>"$out"
    for u in $(ctl "$port" user list); do ctl "$port" user get "$u" >>"$out"; done
    for r in $(ctl "$port" role list); do ctl "$port" role get "$r" >>"$out"; done
}
snap $SRC es
snap $DST ks
diff_files "kshimd on the migrated dir serves etcd's keys, revisions, versions, leases (now and at 4 old revisions), users, roles" \
    "$E2E_TMP/es.txt" "$E2E_TMP/ks.txt"
KEYS=$(ctl $DST get "" --prefix --limit 1 -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["count"])')
LEASES=$(grep -c '^lease ' "$E2E_TMP/ks.txt" || true)
log "counts: $KEYS keys, $LEASES leases, revision $SRC_REV, $(sed -nE 's/.* ([0-9]+ revisions and [0-9]+ events).*/\1/p' "$E2E_TMP/migrate.out") from the watch"
[ "$KEYS" -gt 9000 ] && pass "$KEYS keys migrated" || fail "only $KEYS keys"
check_eq "a put gets the same revision on both" "$(ctl $SRC put after x -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')" \
    "$(ctl $DST put after x -w json | $PY -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')"
# passwords: bob's hash came with the snapshot; carol was added after it
# (gRPC gives no hashes out), so she has none until `user passwd`
ctl $DST user add root:rootpw >/dev/null
ctl $DST user grant-role root root >/dev/null
ctl $DST auth enable >/dev/null
if ctl $DST --user bob:pw2 get w/ --prefix --limit 1 >/dev/null 2>&1; then
    pass "a user from the snapshot logs in with the source's password"
else
    fail "bob cannot log in on the migrated kshimd"
fi
if ctl $DST --user carol:pw3 get w/ --prefix --limit 1 >/dev/null 2>&1; then
    fail "carol (added after the snapshot) logged in with a password kshimd cannot know"
else
    pass "a user added after the snapshot has no password (as documented)"
fi
stop_server "$KS_PID"

# a used data dir is refused (before anything is written)
if out=$("$KSHIMCTL" migrate --from 127.0.0.1:$SRC --data-dir "$E2E_TMP/ks.data" --name ks \
    --initial-cluster ks=$PEER --initial-advertise-peer-urls $PEER --duration 1s 2>&1); then
    fail "migrate into a used data dir succeeded"
else
    case "$out" in *exists*) pass "migrate into a used data dir is refused: $out" ;; *) fail "used dir: $out" ;; esac
fi

# the source compacts what migrate has not read yet: migrate, stopped while
# the source restarts and compacts, resumes its watch at a compacted revision
# and fails with a clear message
"$KSHIMCTL" migrate --from 127.0.0.1:$SRC --data-dir "$E2E_TMP/ks2.data" --name ks \
    --initial-cluster ks=$PEER --initial-advertise-peer-urls $PEER --duration 60s \
    >"$E2E_TMP/migrate2.out" 2>"$E2E_TMP/migrate2.log" &
MIG=$!
E2E_PIDS+=("$MIG")
for _ in $(seq 300); do grep -q "restored revision" "$E2E_TMP/migrate2.log" && break; sleep 0.1; done
sleep 0.5
kill -STOP "$MIG"
stop_server "$ES_PID"
start_etcd es $SRC
ES_PID=$SERVER_PID
wait_ready "$ES_PID" $SRC
for i in 1 2 3; do ctl $SRC put compacted-away $i >/dev/null; done
ctl $SRC compact "$(rev_of $SRC)" >/dev/null
kill -CONT "$MIG"
if wait "$MIG"; then
    fail "migrate went on past a compaction of the revisions it needed"
else
    msg=$(grep Error "$E2E_TMP/migrate2.log" || true)
    case "$msg" in
    *"compacted revision"*"start again"*) pass "a source compaction past the migration fails it clearly: $msg" ;;
    *) fail "compaction: unexpected: $(tail -3 "$E2E_TMP/migrate2.log")" ;;
    esac
fi
forget_pid "$MIG"
stop_server "$ES_PID"

# ---- TLS with client certificates and auth enabled on the source ----
TS=24602
TD=24603
PKI=$E2E_TMP/pki
bash "$KSHIM_SRC/certs/gen.sh" "$PKI" >/dev/null 2>&1 || bash "$E2E_DIR/../certs/gen.sh" "$PKI" >/dev/null
ensure_port_free $TS
"$ETCD" --name et --data-dir "$E2E_TMP/et.data" \
    --listen-client-urls https://127.0.0.1:$TS --advertise-client-urls https://127.0.0.1:$TS \
    --listen-peer-urls http://127.0.0.1:$((TS + 50)) --initial-advertise-peer-urls http://127.0.0.1:$((TS + 50)) \
    --initial-cluster et=http://127.0.0.1:$((TS + 50)) --cert-file "$PKI/server.crt" --key-file "$PKI/server.key" \
    --trusted-ca-file "$PKI/ca.crt" --client-cert-auth >>"$E2E_TMP/et.log" 2>&1 &
ET_PID=$!
E2E_PIDS+=("$ET_PID")
TLS=(--cacert "$PKI/ca.crt" --cert "$PKI/root.crt" --key "$PKI/root.key")
tctl() { "$ETCDCTL" --endpoints https://127.0.0.1:$TS --dial-timeout=2s --command-timeout=5s "${TLS[@]}" "$@"; }
for _ in $(seq 100); do tctl endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
for i in $(seq 20); do tctl put "tls/$i" "v$i" >/dev/null; done
tctl user add root:rootpw >/dev/null
tctl user grant-role root root >/dev/null
tctl user add dave:pw4 >/dev/null
tctl role add ops >/dev/null
tctl role grant-permission ops read --prefix tls/ >/dev/null
tctl user grant-role dave ops >/dev/null
tctl auth enable >/dev/null
TPEER=http://127.0.0.1:$((TD + 50))
if out=$("$KSHIMCTL" migrate --from https://127.0.0.1:$TS --cacert "$PKI/ca.crt" --data-dir "$E2E_TMP/kt0.data" \
    --name kt --initial-cluster kt=$TPEER --initial-advertise-peer-urls $TPEER --duration 1s 2>&1); then
    fail "migrate without a client certificate or user from an auth-enabled TLS source succeeded"
else
    pass "migrate needs the source's credentials: $(echo "$out" | grep Error)"
fi
"$KSHIMCTL" migrate --from https://127.0.0.1:$TS "${TLS[@]}" --user root:rootpw --data-dir "$E2E_TMP/kt.data" \
    --name kt --initial-cluster kt=$TPEER --initial-advertise-peer-urls $TPEER --until-signal \
    >"$E2E_TMP/migrate3.out" 2>"$E2E_TMP/migrate3.log" &
MIG=$!
E2E_PIDS+=("$MIG")
for _ in $(seq 300); do grep -q "restored revision" "$E2E_TMP/migrate3.log" && break; sleep 0.1; done
tctl --user root:rootpw put tls/after-snapshot yes >/dev/null
tctl --user root:rootpw role grant-permission ops readwrite --prefix tls/after >/dev/null
for _ in $(seq 100); do grep -q "events applied" "$E2E_TMP/migrate3.log" && break; sleep 0.1; done
kill -TERM "$MIG"
if wait "$MIG"; then
    pass "migrate over TLS with --user root, cut over by SIGTERM: $(head -1 "$E2E_TMP/migrate3.out")"
else
    fail "migrate over TLS: $(tail -3 "$E2E_TMP/migrate3.log")"
fi
forget_pid "$MIG"
grep -q "users/roles: the snapshot's" "$E2E_TMP/migrate3.out" && fail "users/roles not read over TLS+auth" ||
    pass "users and roles read from the auth-enabled source"
start_kshimd kt $TD --initial-cluster kt=$TPEER --initial-advertise-peer-urls $TPEER
KT_PID=$SERVER_PID
# auth is on (the snapshot's flag): ready when root can read
for _ in $(seq 100); do ctl $TD --user root:rootpw get x >/dev/null 2>&1 && break; sleep 0.2; done
tsnap() { # PORT-ARGS... : keys and auth as root
    "$ETCDCTL" --dial-timeout=2s --command-timeout=5s "$@" --user root:rootpw get "" --prefix -w json >"$E2E_TMP/t.json"
    $MC norm "$E2E_TMP/t.json"
    "$ETCDCTL" --dial-timeout=2s --command-timeout=5s "$@" --user root:rootpw role get ops
    "$ETCDCTL" --dial-timeout=2s --command-timeout=5s "$@" --user root:rootpw user list
}
tsnap --endpoints https://127.0.0.1:$TS "${TLS[@]}" >"$E2E_TMP/et.txt"
tsnap --endpoints 127.0.0.1:$TD >"$E2E_TMP/kt.txt"
diff_files "kshimd migrated over TLS (auth enabled) serves the source's keys, revisions, roles and users" \
    "$E2E_TMP/et.txt" "$E2E_TMP/kt.txt"
stop_server "$KT_PID"
stop_server "$ET_PID"
finish
