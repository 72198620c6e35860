#!/usr/bin/env bash
# e2e/test_watch_kube.sh: kube-apiserver's watch pattern (e2e/watch_kube.go,
# clientv3 from Debian's golang-etcd-server-dev) against a real etcd and the
# target at once, both with a 1 s progress-notify interval. The program
# asserts the invariants kube relies on (exit 1 otherwise) and prints a
# transcript without ids or timings; the two transcripts must be identical.
#
# The Go program is built offline in GOPATH mode and cached under
# $KSHIM_BUILD/e2e-go by the hash of its source.
#
# Ports: 25020 (real etcd, peer 25070), 25021 (target).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25020
TGT_PORT=25021

log "building watch_kube.go"
BIN=$(build_go "$E2E_DIR/watch_kube.go" watch_kube) || die "cannot build watch_kube.go"

start_etcd ref "$REF_PORT" --experimental-watch-progress-notify-interval=1s
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT" --experimental-watch-progress-notify-interval=1s
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target did not start"

REF_RC=0
TGT_RC=0
"$BIN" "127.0.0.1:$REF_PORT" >"$E2E_TMP/ref.out" 2>&1 &
ref_run=$!
"$BIN" "127.0.0.1:$TGT_PORT" >"$E2E_TMP/tgt.out" 2>&1 &
tgt_run=$!
wait "$ref_run" || REF_RC=$?
wait "$tgt_run" || TGT_RC=$?

if [ "$REF_RC" = 0 ]; then
    pass "kube watch pattern holds on real etcd"
else
    fail "kube watch pattern on real etcd (rc=$REF_RC): the test itself is wrong"
    cat "$E2E_TMP/ref.out"
fi
if [ "$TGT_RC" = 0 ]; then
    pass "kube watch pattern holds on the target"
else
    fail "kube watch pattern on the target (rc=$TGT_RC)"
    grep -E 'FAIL|FATAL' "$E2E_TMP/tgt.out" || true
fi
diff_files "transcript" "$E2E_TMP/ref.out" "$E2E_TMP/tgt.out"
finish
