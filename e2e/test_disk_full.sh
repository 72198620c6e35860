#!/usr/bin/env bash
# e2e/test_disk_full.sh: a full disk loses no acknowledged write.
# kshimd runs with its data dir on a small tmpfs (needs root to mount; the
# test says SKIP otherwise). A writer puts 64 KiB values until the disk is
# full. Expected: kshimd refuses to go on (the WAL or LevelDB write fails,
# the member stops applying and exits with an error, as etcd does) instead
# of acknowledging what it could not store; after the tmpfs is grown and
# kshimd restarted on the same data dir, every acknowledged put is there with
# its acknowledged revision, and new writes work.
#
# Port: 23912.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=23912
MNT=$E2E_TMP/tmpfs
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=100m tmpfs "$MNT" 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (not root?)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
E2E_MOUNTS+=("$MNT")
DATA=$MNT/d

start_kshimd full "$PORT" --data-dir "$DATA"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not start"
"$PY" "$E2E_DIR/disk_writer.py" fill "$PORT" "$E2E_TMP/acks" 60 >"$E2E_TMP/fill.out" 2>&1 || true
cat "$E2E_TMP/fill.out"
acked=$(grep -c '^ack' "$E2E_TMP/acks" || true)
failed=$(grep -c '^fail' "$E2E_TMP/acks" || true)
check_eq "the disk filled up: some puts failed" "yes" "$([ "$failed" -gt 0 ] && echo yes || echo "no ($acked acked)")"
check_eq "puts were acknowledged before the disk filled" "yes" "$([ "$acked" -gt 100 ] && echo yes || echo "no ($acked)")"

# kshimd must stop by itself (fail-stop), with an error exit and a log line.
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then
    fail "kshimd still running after the disk filled"
    stop_server "$PID"
else
    set +e; wait "$PID"; rc=$?; set -e
    forget_pid "$PID"
    check_eq "kshimd exited with an error" "yes" "$([ "$rc" -ne 0 ] && echo yes || echo "no (rc $rc)")"
fi
if grep -q 'exiting' "$E2E_TMP/full.log"; then pass "kshimd logged why it stopped"; else fail "no fatal log line"; fi

# More space, restart on the same data dir: everything acknowledged is there.
mount -o remount,size=400m "$MNT"
start_kshimd full "$PORT" --data-dir "$DATA"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" 30 || die "kshimd did not restart after the disk was grown"
if "$PY" "$E2E_DIR/disk_writer.py" verify "$PORT" "$E2E_TMP/acks" >"$E2E_TMP/verify.out" 2>&1; then
    pass "every acknowledged put survived the full disk ($(head -1 "$E2E_TMP/verify.out"))"
else
    fail "verify: $(cat "$E2E_TMP/verify.out")"
fi
if ctl "$PORT" put after-full ok >/dev/null && [ "$(ctl "$PORT" get after-full --print-value-only)" = ok ]; then
    pass "writes work again after restart"
else
    fail "writes fail after restart"
fi
stop_server "$PID"
finish
