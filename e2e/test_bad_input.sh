#!/usr/bin/env bash
# e2e/test_bad_input.sh: malformed and oversized input, differential against
# real etcd. badclient.py sends, over raw sockets (python3-h2 frames) and the
# grpc C core: a garbage connection preface, an HTTP/1 request, broken
# HTTP/2 frames, a truncated gRPC length prefix, undecodable protobuf, an
# unknown method/service, compressed flag without encoding, an empty body;
# and Puts around --max-request-bytes (4096 and the 1.5 MiB default, both
# below and above the +512 KiB gRPC receive limit). After every case a fresh
# connection must still Range. Codes (and messages where clients depend on
# them) must equal real etcd's; see RULES in badclient.py.
#
# Ports: 23904/23905 (real etcd default/4096), 23906/23907 (target
# default/4096); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$PY" -c 'import h2' 2>/dev/null || die "python3-h2 is missing (apt-get install python3-h2)"

REF_PORT=23904
REF_SMALL_PORT=23905
TGT_PORT=23906
TGT_SMALL_PORT=23907

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_etcd refsmall "$REF_SMALL_PORT" --max-request-bytes 4096
REF_SMALL_PID=$SERVER_PID
start_target tgt "$TGT_PORT"
TGT_PID=$SERVER_PID
start_target tgtsmall "$TGT_SMALL_PORT" --max-request-bytes 4096
TGT_SMALL_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$REF_SMALL_PID" "$REF_SMALL_PORT" || die "real etcd (4096) did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($KSHIM_E2E_TARGET) did not start"
wait_ready "$TGT_SMALL_PID" "$TGT_SMALL_PORT" || die "target (4096) did not start"

# transcript PORT MODE OUT: run one badclient mode, failing loudly if it dies.
transcript() {
    local rc=0
    timeout 120 "$PY" "$E2E_DIR/badclient.py" "$1" "$2" >"$3" 2>"$3.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "badclient.py $2 against port $1 exited $rc"
        tail -n 20 "$3.err"
    fi
}

T=$E2E_TMP
transcript "$REF_PORT" wire "$T/ref.wire"
transcript "$TGT_PORT" wire "$T/tgt.wire"
transcript "$REF_SMALL_PORT" size-small "$T/ref.small"
transcript "$TGT_SMALL_PORT" size-small "$T/tgt.small"
transcript "$REF_PORT" size-default "$T/ref.default"
transcript "$TGT_PORT" size-default "$T/tgt.default"

for kind in wire small default; do
    echo "--- $kind: real etcd answered:"
    cat "$T/ref.$kind"
    echo "--- $kind: target answered:"
    cat "$T/tgt.$kind"
    while IFS= read -r line; do
        case "$line" in
        PASS:*) pass "$kind: ${line#PASS: }" ;;
        FAIL:*) fail "$kind: ${line#FAIL: }" ;;
        *) fail "$kind: unexpected compare output: $line" ;;
        esac
    done < <("$PY" "$E2E_DIR/badclient.py" compare "$T/ref.$kind" "$T/tgt.$kind")
done
check_eq "wire cases run against real etcd" 14 "$(wc -l <"$T/ref.wire")"
check_eq "size cases run against real etcd" 10 "$(cat "$T/ref.small" "$T/ref.default" | wc -l)"

for pid in "$TGT_PID" "$TGT_SMALL_PID"; do
    kill -0 "$pid" 2>/dev/null && pass "target pid $pid still running" || fail "target pid $pid died"
done
check_eq "target answers etcdctl afterwards" "OK" "$(ctl "$TGT_PORT" put after ok 2>&1)"
finish
