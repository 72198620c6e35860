#!/usr/bin/env bash
# e2e/test_compact_hotkey.sh: compaction of a hot key (issue 7), real etcd
# and the target side by side. e2e/compact_hotkey.go (mode check) writes
# 5,000 versions of one key plus 2,000 other keys, compacts at the head with
# physical=true while it issues 20 puts, then prints a transcript without ids
# or timings: the compaction succeeded, a watch from the compact revision no
# longer sees the tombstone there (physical: answered after the physical
# work), a read at compact-1 and a second compact are refused with etcd's
# errors, the hot key's version fields, a digest of the other keys and of
# the puts made during the compaction. Both
# transcripts must be identical, as must etcdctl's answers to the same reads
# afterwards. No timing assertions (numbers: bench/compact_hotkey.sh).
#
# Ports: 25030 (real etcd, peer 25080), 25031 (target).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25030
TGT_PORT=25031
VERSIONS=5000
OTHERS=2000

log "building compact_hotkey.go"
BIN=$(build_go "$E2E_DIR/compact_hotkey.go" compact_hotkey) || die "cannot build compact_hotkey.go"

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target did not start"

# One at a time: the two servers share the machine's two cores.
REF_RC=0
TGT_RC=0
log "hot key on real etcd"
"$BIN" "127.0.0.1:$REF_PORT" check "$VERSIONS" "$OTHERS" >"$E2E_TMP/ref.out" 2>"$E2E_TMP/ref.err" || REF_RC=$?
log "hot key on the target"
"$BIN" "127.0.0.1:$TGT_PORT" check "$VERSIONS" "$OTHERS" >"$E2E_TMP/tgt.out" 2>"$E2E_TMP/tgt.err" || TGT_RC=$?
if [ "$REF_RC" = 0 ]; then
    pass "hot key compaction on real etcd"
else
    fail "hot key compaction on real etcd (rc=$REF_RC): the test itself is wrong"
    cat "$E2E_TMP/ref.out"
fi
if [ "$TGT_RC" = 0 ]; then
    pass "hot key compaction on the target: compact --physical and the puts during it succeed"
else
    fail "hot key compaction on the target (rc=$TGT_RC)"
    grep -E 'FATAL' "$E2E_TMP/tgt.out" || true
fi
diff_files "transcript" "$E2E_TMP/ref.out" "$E2E_TMP/tgt.out"

REV=$(sed -n 's/^head revision \([0-9]*\) .*/\1/p' "$E2E_TMP/tgt.out")
if [ -n "$REV" ]; then
    check_eq "compact revision" "$((VERSIONS + OTHERS + 3))" "$REV"
    # etcdctl on both: the same answers after the compaction
    for port in "$REF_PORT" "$TGT_PORT"; do
        out=$E2E_TMP/ctl.$port
        {
            ctl "$port" get hot --rev="$((REV - 1))" 2>&1 || true
            ctl "$port" get hot --rev="$REV" 2>&1 || true
            ctl "$port" get hot -w fields 2>&1 | grep -E '^"(Key|Value|Version|CreateRevision|ModRevision|Count)"' || true
            ctl "$port" compact "$REV" --physical 2>&1 || true
            ctl "$port" compact "$((REV + 5))" --physical 2>&1 || true
            ctl "$port" get other/ --prefix --count-only -w fields 2>&1 | grep -E '^"Count"' || true
            ctl "$port" get hot --rev="$((REV + 4))" 2>&1 || true
        } | grep -v '"level":"warn"' >"$out"
    done
    diff_files "etcdctl after compaction" "$E2E_TMP/ctl.$REF_PORT" "$E2E_TMP/ctl.$TGT_PORT"
    if grep -q "required revision has been compacted" "$E2E_TMP/ctl.$TGT_PORT"; then
        pass "a read below the compact revision is refused with etcd's error"
    else
        fail "a read below the compact revision is not refused"
        cat "$E2E_TMP/ctl.$TGT_PORT"
    fi
else
    fail "no head revision in the target's transcript"
fi

stop_server "$TGT_PID"
stop_server "$REF_PID"
finish
