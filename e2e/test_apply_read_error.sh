#!/usr/bin/env bash
# e2e/test_apply_read_error.sh: a storage error during apply stops the member
# (fail-stop) and loses nothing that was acknowledged.
#
# 1. kshimd runs with KSHIM_FAILPOINTS=mvcc_read_error=N (storage/mvcc/failpoint.h:
#    the Nth LevelDB read fails with an I/O error) while a client puts. The
#    read fails inside the apply of some put: kshimd must exit with status 1
#    and say why, instead of applying that put with a wrong version (or
#    skipping it). Restarted without the failpoint on the same data dir, every
#    acknowledged put is there with its acknowledged revision, the store's
#    revisions are exactly 2..rev (one per put: nothing lost, nothing applied
#    twice) and new writes work.
# 2. A committed entry that does not decode (its bytes corrupted in the WAL,
#    CRC rewritten so the WAL replays it) stops the member when it comes up
#    for apply, naming the entry's index, instead of applying it as empty.
#
# Port: 23940.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=23940
DATA=$E2E_TMP/rerr.data

# ---- 1. read error during apply ----
KSHIM_FAILPOINTS=mvcc_read_error=150 start_kshimd rerr "$PORT" --data-dir "$DATA"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not start"
"$PY" "$E2E_DIR/disk_writer.py" fill "$PORT" "$E2E_TMP/acks" 60 >"$E2E_TMP/fill.out" 2>&1 || true
cat "$E2E_TMP/fill.out"
acked=$(grep -c '^ack' "$E2E_TMP/acks" || true)
failed=$(grep -c '^fail' "$E2E_TMP/acks" || true)
check_eq "puts were acknowledged before the failpoint" "yes" "$([ "$acked" -gt 20 ] && echo yes || echo "no ($acked)")"
check_eq "puts failed once the read failed" "yes" "$([ "$failed" -gt 0 ] && echo yes || echo no)"

for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then
    fail "kshimd still running after a read error during apply"
    stop_server "$PID"
else
    set +e; wait "$PID"; rc=$?; set -e
    forget_pid "$PID"
    check_eq "kshimd exited with status 1" "1" "$rc"
fi
if grep -q 'cannot apply raft entry [0-9]* to the store (storage error' "$E2E_TMP/rerr.log" &&
    grep -q 'the store failed (see above); exiting' "$E2E_TMP/rerr.log"; then
    pass "kshimd logged the entry it could not apply and that it exits"
else
    fail "no clear fatal log line: $(tail -5 "$E2E_TMP/rerr.log")"
fi

start_kshimd rerr "$PORT" --data-dir "$DATA"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" 30 || die "kshimd did not restart without the failpoint"
if "$PY" "$E2E_DIR/disk_writer.py" verify "$PORT" "$E2E_TMP/acks" >"$E2E_TMP/verify.out" 2>&1; then
    pass "every acknowledged put is there with its revision ($(head -1 "$E2E_TMP/verify.out"))"
else
    fail "verify: $(cat "$E2E_TMP/verify.out")"
fi
# Every put made a new key (version 1): the keys' mod revisions must be
# exactly 2..store revision.
ctl "$PORT" get full/ --prefix -w json >"$E2E_TMP/all.json"
if "$PY" - "$E2E_TMP/all.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
rev = d["header"]["revision"]
kvs = d.get("kvs", [])
mods = sorted(int(kv["mod_revision"]) for kv in kvs)
vers = set(int(kv["version"]) for kv in kvs)
ok = mods == list(range(2, rev + 1)) and vers <= {1}
print("%d keys, store revision %d" % (len(kvs), rev))
sys.exit(0 if ok else 1)
PYEOF
then
    pass "revisions 2..rev, one per put, each key version 1"
else
    fail "the store's revisions do not match the puts"
fi
if ctl "$PORT" put after-error ok >/dev/null && [ "$(ctl "$PORT" get after-error --print-value-only)" = ok ]; then
    pass "writes work after the restart"
else
    fail "writes fail after the restart"
fi
stop_server "$PID"

# ---- 2. an entry that does not decode ----
BAD=$E2E_TMP/bad.data
start_kshimd bad "$PORT" --data-dir "$BAD"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not start"
ctl "$PORT" put before-bad 1 >/dev/null
ctl "$PORT" put bad-entry BADENTRY-MARKER-7f3a >/dev/null
ctl "$PORT" put after-bad 1 >/dev/null
stop_server "$PID"
# Replay the whole log into an empty store: the corrupted entry comes up
# for apply again.
idx=$("$PY" "$E2E_DIR/wal_entry.py" corrupt "$BAD/member/wal" BADENTRY-MARKER-7f3a) ||
    die "could not corrupt the entry"
rm -rf "$BAD/member/kv"
start_kshimd bad "$PORT" --data-dir "$BAD"
PID=$SERVER_PID
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then
    fail "kshimd still running with an entry that does not decode"
    stop_server "$PID"
else
    set +e; wait "$PID"; rc=$?; set -e
    forget_pid "$PID"
    check_eq "kshimd exited with status 1 on an undecodable entry" "1" "$rc"
fi
if grep -q "raft entry $idx ([0-9]* bytes) does not decode" "$E2E_TMP/bad.log"; then
    pass "kshimd named the undecodable entry ($idx)"
else
    fail "no log line naming entry $idx: $(tail -5 "$E2E_TMP/bad.log")"
fi
finish
