# e2e/history_lib.sh: recording and checking client histories for fault
# tests (sourced after lib.sh, never run). Owns running e2e/histclient.go in
# the background, checking its history with build/lincheck and its watch
# streams with e2e/watchcheck.py, and the self-tests proving both checkers
# reject corrupted copies. A cluster test passes all members' endpoints.
#
#   start_histclient ENDPOINTS [WORKERS] [KEYS]  sets HIST, HC_PID
#   stop_histclient                              stops it, checks its exit
#   check_history [MIN_UNKNOWN]                  lincheck must print OK
#   check_watch [watchcheck flags]               every member's stream
#   check_checkers_fail                          corrupted copies rejected
#
# Environment: LINCHECK (build/lincheck; set by ctest).

LINCHECK=${LINCHECK:-${KSHIM_BUILD:-build}/lincheck}
HIST=$E2E_TMP/history
HC_STOP=$E2E_TMP/histclient.stop

start_histclient() {
    local eps=$1 workers=${2:-8} keys=${3:-8} bin
    [ -x "$LINCHECK" ] || die "LINCHECK is not set to the lincheck binary (got '$LINCHECK')"
    log "building histclient.go"
    bin=$(build_go "$E2E_DIR/histclient.go" histclient) || die "cannot build histclient.go"
    HC_KEYS=$keys
    rm -f "$HC_STOP"
    # runs until $HC_STOP exists (600 s at most), 1 s per-op timeout
    "$bin" "$eps" "$workers" "$keys" 600 1000 "$HIST" "$E2E_TMP/watch" "$HC_STOP" \
        >"$E2E_TMP/hist.out" 2>"$E2E_TMP/hist.err" &
    HC_PID=$!
    E2E_PIDS+=("$HC_PID")
}

stop_histclient() {
    local rc=0
    touch "$HC_STOP"
    wait "$HC_PID" || rc=$?
    forget_pid "$HC_PID"
    cat "$E2E_TMP/hist.out"
    check_eq "histclient exit status" 0 "$rc"
    grep -v -e "retrying of unary invoker failed" "$E2E_TMP/hist.err" | head -5 >&2 || true
}

# check_history [MIN_UNKNOWN]: at least 1000 ops (and MIN_UNKNOWN, default 1,
# with unknown outcome: the faults were felt), and lincheck says OK.
check_history() {
    local min_unknown=${1:-1} nops nunknown lrc=0
    nops=$(grep -vc '^#' "$HIST" || true)
    nunknown=$(grep -c ' unknown ?$' "$HIST" || true)
    [ "$nops" -ge 1000 ] && pass "history recorded ($nops operations, $nunknown with unknown outcome)" ||
        fail "history too short ($nops operations)"
    [ "$nunknown" -ge "$min_unknown" ] && pass "the faults were observed ($nunknown operations with unknown outcome)" ||
        fail "fewer than $min_unknown operations had an unknown outcome: were the faults effective?"
    "$LINCHECK" "$HIST" >"$E2E_TMP/lincheck.out" 2>"$E2E_TMP/lincheck.err" || lrc=$?
    head -40 "$E2E_TMP/lincheck.out"
    cat "$E2E_TMP/lincheck.err"
    check_eq "lincheck verdict on the recorded history (0 = linearizable)" 0 "$lrc"
    if grep -q "^OK: $nops operations checked on $HC_KEYS keys$" "$E2E_TMP/lincheck.out"; then
        pass "lincheck: $(cat "$E2E_TMP/lincheck.out")"
    else
        fail "lincheck did not print 'OK: $nops operations checked on $HC_KEYS keys'"
    fi
}

check_watch() {
    if "$PY" "$E2E_DIR/watchcheck.py" "$@" --history "$HIST" "$E2E_TMP"/watch.* >"$E2E_TMP/watch.out" 2>&1; then
        pass "$(tail -1 "$E2E_TMP/watch.out")"
    else
        fail "watch check:"
        cat "$E2E_TMP/watch.out"
    fi
}

# check_checkers_fail: the checks can fail. Corrupted copies of the history
# (histcorrupt.py: a stale read, a read of a never-written value) must be
# lincheck violations; copies of the first watch stream with a gap, a
# duplicate, a second "member" differing at one revision, and two PUT events
# far apart with swapped values (revision order against the real-time order
# of the acknowledgements) must be rejected by watchcheck.py.
check_checkers_fail() {
    local mode crc w0 bad
    for mode in stale unwritten; do
        if ! "$PY" "$E2E_DIR/histcorrupt.py" "$HIST" "$mode" "$E2E_TMP/history.$mode" 2>"$E2E_TMP/corrupt.$mode"; then
            fail "could not corrupt the history ($mode): $(cat "$E2E_TMP/corrupt.$mode")"
            continue
        fi
        cat "$E2E_TMP/corrupt.$mode"
        crc=0
        "$LINCHECK" "$E2E_TMP/history.$mode" >"$E2E_TMP/lincheck.$mode" 2>&1 || crc=$?
        head -12 "$E2E_TMP/lincheck.$mode"
        check_eq "lincheck rejects the history with one read corrupted ($mode; exit 1)" 1 "$crc"
        grep -q "^VIOLATION on key lc/k" "$E2E_TMP/lincheck.$mode" && pass "violation reported with its window ($mode)" ||
            fail "no VIOLATION line ($mode)"
    done

    # The watch checker can fail too: a copy without one event (a gap), one
    # with an event twice, a second "member" whose stream differs at one
    # revision, and one where two PUT events far apart swapped values (the
    # revision order then contradicts the acknowledgements' real-time order).
    w0=$(ls "$E2E_TMP"/watch.* | head -1)
    mkdir -p "$E2E_TMP/bad"
    awk 'NR == 100 { next } { print }' "$w0" >"$E2E_TMP/bad/gap"
    awk 'NR == 100 { print } { print }' "$w0" >"$E2E_TMP/bad/dup"
    awk 'NR == 100 { $4 = "other" } { print }' "$w0" >"$E2E_TMP/bad/differs"
    local half
    half=$(($(grep -c ' PUT ' "$w0" || true) / 2))
    [ "$half" -gt 200 ] || fail "too few PUT events ($((half * 2))) for the watch self-test"
    awk -v half="$half" '$3 == "PUT" { n++; if (n == 100) a = NR; if (n == half) b = NR } { l[NR] = $0 }
         END { split(l[a], x, " "); split(l[b], y, " "); t = x[4]; x[4] = y[4]; y[4] = t
               l[a] = x[1] " " x[2] " " x[3] " " x[4]; l[b] = y[1] " " y[2] " " y[3] " " y[4]
               for (i = 1; i <= NR; i++) print l[i] }' "$w0" >"$E2E_TMP/bad/swapped"
    for bad in gap dup; do
        if "$PY" "$E2E_DIR/watchcheck.py" --contiguous "$E2E_TMP/bad/$bad" >"$E2E_TMP/bad/$bad.out" 2>&1; then
            fail "watchcheck accepted a stream with a $bad"
        else
            pass "watchcheck rejects a stream with a $bad: $(head -1 "$E2E_TMP/bad/$bad.out")"
        fi
    done
    if "$PY" "$E2E_DIR/watchcheck.py" "$w0" "$E2E_TMP/bad/differs" >"$E2E_TMP/bad/differs.out" 2>&1; then
        fail "watchcheck accepted two members with different events"
    else
        pass "watchcheck rejects members that differ: $(head -1 "$E2E_TMP/bad/differs.out")"
    fi
    if "$PY" "$E2E_DIR/watchcheck.py" --history "$HIST" "$E2E_TMP/bad/swapped" >"$E2E_TMP/bad/swapped.out" 2>&1; then
        fail "watchcheck accepted revisions against real time"
    else
        pass "watchcheck rejects revisions against real time: $(head -1 "$E2E_TMP/bad/swapped.out")"
    fi
}
