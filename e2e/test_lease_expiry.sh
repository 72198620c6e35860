#!/usr/bin/env bash
# e2e/test_lease_expiry.sh: 10,000 leases (TTL 3 s), one key each, expire at
# about the same time. lease_expiry_client.py checks that every key is
# deleted within a bound (TTL + N / 1000 revokes per second + slack, counted
# from the last grant), that no lease is left, that a prefix watcher sees
# every DELETE exactly once with prev_kv (skipped with a SKIP line when the
# server has no Watch service), and reports the latency of another client's
# Range requests during the expiry. The same probe runs against a real etcd
# first, for reference numbers (not asserted).
#
# Env: LEASE_EXPIRY_N (default 10000), LEASE_EXPIRY_TTL (default 3; 10
#      against a sanitizer kshimd, whose set-up of 10,000 grants and puts
#      takes longer than 3 s on 2 cores: a lease must not expire before its
#      key is attached),
#      LEASE_EXPIRY_REF=0 skips the real etcd run.
# Ports: 25120 (real etcd), 25121 (target); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25120
TGT_PORT=25121
N=${LEASE_EXPIRY_N:-10000}
TTL=3
kshimd_sanitized && TTL=10
TTL=${LEASE_EXPIRY_TTL:-$TTL}
# etcd revokes at most 1000 leases per second; 15 s of slack for set-up
# spread, scan period and a loaded 2-core machine.
BOUND=$((TTL + N / 1000 + 15))

probe() {
    "$PY" "$E2E_DIR/lease_expiry_client.py" "$1" "$N" "$TTL" "$BOUND"
}

if [ "${LEASE_EXPIRY_REF:-1}" = 1 ]; then
    start_etcd ref "$REF_PORT"
    REF_PID=$SERVER_PID
    wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
    log "real etcd: $N leases, TTL ${TTL}s"
    probe "$REF_PORT" >"$E2E_TMP/ref.out" 2>&1 || true
    sed 's/^/REF etcd: /' "$E2E_TMP/ref.out"
    stop_server "$REF_PID"
fi

start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($KSHIM_E2E_TARGET) did not start"
log "target: $N leases, TTL ${TTL}s, bound ${BOUND}s"
rc=0
probe "$TGT_PORT" >"$E2E_TMP/tgt.out" 2>&1 || rc=$?
sed 's/^/TARGET: /' "$E2E_TMP/tgt.out"

get() { sed -n "s/^$1=//p" "$E2E_TMP/tgt.out"; }
check_eq "keys attached before expiry" "$N" "$(get keys_before)"
check_eq "keys left after expiry" "0" "$(get keys_left)"
check_eq "leases left after expiry" "0" "$(get leases_left)"
if grep -q '^SKIP watch' "$E2E_TMP/tgt.out"; then
    echo "SKIP: DELETE events not checked (no Watch service on the target)"
else
    check_eq "DELETE events seen by the watcher" "$N" "$(get watch_deletes)"
    check_eq "DELETE events with a wrong prev_kv" "0" "$(get watch_bad_prev_kv)"
    check_eq "duplicate DELETE events" "0" "$(get watch_dups)"
fi
check_eq "probe verdict" "0" "$rc"
if [ -n "$(get range_p99_ms)" ] && [ "$(get probe_ranges)" -gt 0 ]; then
    pass "Range latency during expiry: p50 $(get range_p50_ms) ms, p99 $(get range_p99_ms) ms, max $(get range_max_ms) ms over $(get probe_ranges) requests"
else
    fail "no Range latency measured"
fi
kill -0 "$TGT_PID" 2>/dev/null && pass "target still running" || fail "target died"

# Crash: leases and attachments survive kill -9 (WAL replay re-applies lease
# entries before the lease service starts); the restart extends the TTL
# (etcd's Promote) instead of expiring or eternalizing it.
LID=$(ctl "$TGT_PORT" lease grant 30 | awk '/granted/ {print $2}')
for k in crash/1 crash/2 crash/3; do ctl "$TGT_PORT" put --lease="$LID" "$k" v >/dev/null; done
kill9_server "$TGT_PID"
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$TGT_PID" "$TGT_PORT" || die "target did not restart after kill -9"
TTL_LINE=$(ctl "$TGT_PORT" lease timetolive --keys "$LID")
if [[ "$TTL_LINE" =~ ^lease\ $LID\ granted\ with\ TTL\(30s\),\ remaining\((2[6-9]|3[01])s\),\ attached\ keys\(\[crash/1\ crash/2\ crash/3\]\)$ ]]; then
    pass "lease and keys after kill -9: $TTL_LINE"
else
    fail "lease and keys after kill -9: got [$TTL_LINE]"
fi
ctl "$TGT_PORT" lease revoke "$LID" >/dev/null
check_eq "keys after revoking the recovered lease" "0" \
    "$(ctl "$TGT_PORT" get crash/ --prefix --keys-only | grep -c . || true)"
finish
