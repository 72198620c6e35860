#!/usr/bin/env bash
# e2e/test_election_lock.sh: etcd's Lock and Election services (v3lockpb,
# v3electionpb), differential against real etcd 3.4:
#   - e2e/election_lock.go (the generated Go clients of Debian's
#     golang-etcd-server-dev) runs one scenario against each server: two and
#     three lockers on one name (a waiter is released by the holder's Unlock
#     and by the revoke of its lease), a lock that times out while waiting
#     (its key is deleted), lock on a missing lease and with lease 0, 50
#     waiters on one name, a holder whose lease expires;
#     campaign / a waiting candidate / leader / proclaim / resign / observe,
#     every error (not leader, no leader, missing leader field, missing
#     lease, key not provided), and with auth on the KV permissions of the
#     keys touched (permission denied, user name is empty). The transcripts
#     (no ids, no timings) must be identical, and so must the
#     grpc_server_{started,handled}_total counters of those methods (a call
#     whose client left counts Unknown, as etcd's handlers return ctx.Err();
#     the in-process KV requests are not counted);
#   - the same services through the JSON gateway with curl (/v3/lock/*,
#     /v3/election/*, /v3beta/, /v3alpha/ 404 as 3.4), answers normalized by
#     gw_norm.py and compared status and body, the observe stream included,
#     and a waiter whose HTTP client leaves (its key is deleted).
#
# Ports: 25700 (real etcd, peer 25750), 25701 (target).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25700
TGT_PORT=25701
NORM="$E2E_DIR/gw_norm.py"

log "building election_lock.go"
BIN=$(build_go "$E2E_DIR/election_lock.go" election_lock) || die "cannot build election_lock.go"

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target did not start"

# ---- gRPC: the Go scenario, both servers at once
REF_RC=0
TGT_RC=0
"$BIN" "127.0.0.1:$REF_PORT" >"$E2E_TMP/ref.out" 2>"$E2E_TMP/ref.err" &
ref_run=$!
"$BIN" "127.0.0.1:$TGT_PORT" >"$E2E_TMP/tgt.out" 2>"$E2E_TMP/tgt.err" &
tgt_run=$!
wait "$ref_run" || REF_RC=$?
wait "$tgt_run" || TGT_RC=$?
if [ "$REF_RC" = 0 ]; then
    pass "lock/election scenario runs on real etcd"
else
    fail "lock/election scenario on real etcd (rc=$REF_RC): the test itself is wrong"
    cat "$E2E_TMP/ref.out"
fi
check_eq "lock/election scenario runs on the target" 0 "$TGT_RC"
diff_files "lock/election transcript" "$E2E_TMP/ref.out" "$E2E_TMP/tgt.out"
check_eq "the transcript is complete" "== done" "$(tail -n 1 "$E2E_TMP/tgt.out")"

# grpc_server_{started,handled}_total of the Lock and Election methods, and
# of the KV, Lease and Watch methods they run on: etcd's in-process client
# bypasses the gRPC interceptors, so only the client's own calls count
# (Range is left out: the readiness poll makes a varying number).
grpc_counts() {
    curl -s "http://127.0.0.1:$1/metrics" | grep -E '^grpc_server_(started|handled)_total' |
        grep -E 'grpc_service="v3(lock|election)pb|grpc_method="(Txn|Put|DeleteRange|LeaseGrant|LeaseRevoke|Watch)"' |
        grep -v ' 0$' | sort
}
grpc_counts "$REF_PORT" >"$E2E_TMP/ref.metrics"
grpc_counts "$TGT_PORT" >"$E2E_TMP/tgt.metrics"
diff_files "gRPC method counters after the scenario" "$E2E_TMP/ref.metrics" "$E2E_TMP/tgt.metrics"

# ---- the JSON gateway (fresh names; a chosen lease id, so both answer the same)
req() {
    local base=$1 path=$2
    shift 2
    curl -s -m 5 -o "$E2E_TMP/body" -w '%{http_code}\n' "$@" "$base$path" >"$E2E_TMP/code" || true
    cat "$E2E_TMP/code" "$E2E_TMP/body" | "$PY" "$NORM"
}
post() {
    local name=$1 path=$2 body=$3
    req "http://127.0.0.1:$REF_PORT" "$path" -X POST -d "$body" >"$E2E_TMP/etcd.gw"
    req "http://127.0.0.1:$TGT_PORT" "$path" -X POST -d "$body" >"$E2E_TMP/target.gw"
    diff_files "gateway: $name" "$E2E_TMP/etcd.gw" "$E2E_TMP/target.gw"
}
b64() { printf %s "$1" | base64 -w0; }
LK=$(b64 gw)              # lock name "gw"
KEY=$(b64 gw/309)         # its key for lease 777 (0x309)
EL=$(b64 ge)              # election name "ge"
EKEY=$(b64 ge/309)

post "lease grant 777" /v3/lease/grant '{"TTL":60,"ID":777}'
post "lock" /v3/lock/lock "{\"name\":\"$LK\",\"lease\":\"777\"}"
post "lock again with the same lease" /v3beta/lock/lock "{\"name\":\"$LK\",\"lease\":777}"
post "lock on a missing lease" /v3/lock/lock "{\"name\":\"$LK\",\"lease\":999}"
post "lock with a bad body" /v3/lock/lock '{"name":5}'
post "unlock" /v3/lock/unlock "{\"key\":\"$KEY\"}"
post "unlock without a key" /v3/lock/unlock '{}'
post "leader: none" /v3/election/leader "{\"name\":\"$EL\"}"
post "campaign" /v3/election/campaign "{\"name\":\"$EL\",\"lease\":777,\"value\":\"$(b64 v1)\"}"
post "leader" /v3/election/leader "{\"name\":\"$EL\"}"
CREV=$(curl -s -X POST -d "{\"name\":\"$EL\"}" "http://127.0.0.1:$TGT_PORT/v3/election/leader" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["kv"]["create_revision"])')
post "proclaim" /v3/election/proclaim \
    "{\"leader\":{\"name\":\"$EL\",\"key\":\"$EKEY\",\"rev\":\"$CREV\",\"lease\":777},\"value\":\"$(b64 v2)\"}"
post "proclaim: not leader" /v3/election/proclaim \
    "{\"leader\":{\"name\":\"$EL\",\"key\":\"$EKEY\",\"rev\":1,\"lease\":777},\"value\":\"$(b64 x)\"}"
post "proclaim without a leader" /v3/election/proclaim '{}'
post "resign without a leader" /v3/election/resign '{}'
post "/v3alpha/election/leader (404 in 3.4)" /v3alpha/election/leader "{\"name\":\"$EL\"}"

# observe: the current leader, then a proclaim made while the stream is open
for port in $REF_PORT $TGT_PORT; do
    curl -s -N -m 3 -X POST -d "{\"name\":\"$EL\"}" "http://127.0.0.1:$port/v3/election/observe" \
        >"$E2E_TMP/observe.$port" &
    cpid=$!
    sleep 1
    curl -s -X POST -d "{\"leader\":{\"name\":\"$EL\",\"key\":\"$EKEY\",\"rev\":$CREV,\"lease\":777},\"value\":\"$(b64 v3)\"}" \
        "http://127.0.0.1:$port/v3/election/proclaim" >/dev/null
    wait "$cpid" || true
    (echo 200; cat "$E2E_TMP/observe.$port") | "$PY" "$NORM" >"$E2E_TMP/observe.$port.norm"
done
diff_files "gateway: observe stream" "$E2E_TMP/observe.$REF_PORT.norm" "$E2E_TMP/observe.$TGT_PORT.norm"
check_eq "gateway: observe shows 2 leader values" 2 "$(grep -c '"result"' "$E2E_TMP/observe.$TGT_PORT.norm")"
post "resign" /v3/election/resign \
    "{\"leader\":{\"name\":\"$EL\",\"key\":\"$EKEY\",\"rev\":$CREV,\"lease\":777}}"
post "leader after resign" /v3/election/leader "{\"name\":\"$EL\"}"
post "lease revoke 777" /v3/lease/revoke '{"ID":777}'

# a waiter whose HTTP client goes away: its key is deleted (etcd: Mutex.Lock's
# Unlock when the wait fails)
post "lease grant 778" /v3/lease/grant '{"TTL":60,"ID":778}'
post "lock (778 holds)" /v3/lock/lock "{\"name\":\"$LK\",\"lease\":778}"
for port in $REF_PORT $TGT_PORT; do
    curl -s -m 1 -X POST -d "{\"name\":\"$LK\",\"lease\":777}" "http://127.0.0.1:$port/v3/lock/lock" >/dev/null || true
done
sleep 0.5
post "keys under gw/ after the waiter left" /v3/kv/range "{\"key\":\"$(b64 gw/)\",\"range_end\":\"$(b64 gw0)\",\"keys_only\":true}"
post "lease revoke 778" /v3/lease/revoke '{"ID":778}'

kill -0 "$TGT_PID" 2>/dev/null && pass "target still running" || fail "target died"
finish
