#!/usr/bin/env bash
# e2e/test_wal_damage.sh: kshimd refuses to start on a damaged WAL and says
# where. Puts 100 keys, stops kshimd, flips one byte in the middle of the
# records of the (only, so last) WAL segment: that is damage, not a torn
# write, so kshimd must exit with status 1 and log an error naming the
# segment file and byte offset ("crc mismatch ... at offset N"), without
# cutting anything. With the byte restored it starts and every key is there.
# (A torn tail, which is cut, is covered by tests/test_wal.c.)
#
# Port: 25310.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=25310
[ "$KSHIM_E2E_TARGET" = kshimd ] || { echo "kshimd only (WAL format)"; echo "1 passed, 0 failed"; exit 0; }

start_kshimd wal "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not start"
for i in $(seq 1 100); do ctl "$PORT" put "k$i" "v$i" >/dev/null; done
stop_server "$PID"

SEG=$(ls "$E2E_TMP"/wal.data/member/wal/*.wal | tail -1)
# offset of the middle of the written records (the file is preallocated)
OFF=$("$PY" -c '
import sys
b = open(sys.argv[1], "rb").read()
print(len(b.rstrip(b"\0")) // 2)' "$SEG")
flip() {
    "$PY" -c '
import sys
f = open(sys.argv[1], "r+b"); off = int(sys.argv[2])
f.seek(off); b = f.read(1)[0] ^ 0x40; f.seek(off); f.write(bytes([b])); f.close()' "$SEG" "$OFF"
}
flip
: >"$E2E_TMP/wal.log"
rc=0
timeout 20 "$KSHIMD" --name wal --data-dir "$E2E_TMP/wal.data" \
    --listen-client-urls "http://127.0.0.1:$PORT" \
    --advertise-client-urls "http://127.0.0.1:$PORT" >>"$E2E_TMP/wal.log" 2>&1 || rc=$?
check_eq "kshimd exits 1 on a damaged WAL" 1 "$rc"
if grep -q "crc mismatch in $SEG at offset [0-9]" "$E2E_TMP/wal.log"; then
    pass "the error names the segment and the offset"
else
    fail "no 'crc mismatch in $SEG at offset N' in the log:"
    cat "$E2E_TMP/wal.log" >&2
fi
grep -a "wal:" "$E2E_TMP/wal.log" | head -2 || true

flip
start_kshimd wal "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not start with the byte restored"
check_eq "every key survived (nothing was cut)" 100 "$(ctl "$PORT" get k --prefix --keys-only | grep -c .)"
check_eq "last key" "v100" "$(ctl "$PORT" get k100 --print-value-only)"
stop_server "$PID"
finish
