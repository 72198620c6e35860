#!/usr/bin/env bash
# e2e/test_watch_etcdctl.sh: differential test of Watch through the real
# etcdctl 3.4 binary. The same writes and `etcdctl watch` commands (single
# key, range, --prefix, --rev replay, --prev-kv, -w json, a txn's events in
# one response, a watch from a compacted revision, a future revision, live
# watches started before the writes, interactive -i with several watches on
# one stream, exec-command) run against a fresh real etcd and the target;
# every transcript is normalized (ids, term) and diffed per section. Both
# servers run side by side and each section runs against both at once.
# (etcdctl 3.4 has no --progress-notify flag: progress notifications are
# covered by test_watch_kube.sh through clientv3.)
#
# Ports: 25010 (real etcd, peer 25060), 25011 (target).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25010
TGT_PORT=25011

# w SECONDS ARGS...: a watch that is stopped after SECONDS (exit code shown
# when it ended by itself).
w() {
    local secs=$1
    shift
    printf '### watch %s\n' "$*"
    "$ETCDCTL" --endpoints "127.0.0.1:$PORT" --dial-timeout=2s watch "$@" >"$OUT.w" 2>&1 &
    local pid=$! rc=0
    sleep "$secs"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    else
        wait "$pid" || rc=$?
        echo "rc=$rc"
    fi
    cat "$OUT.w"
}

c() {
    local rc=0
    ctl "$PORT" "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] || echo "command failed: $* rc=$rc"
}

# live SECONDS WRITES_FN ARGS...: start a watch, wait until it is surely
# created, run WRITES_FN, let the events arrive, stop the watch.
live() {
    local secs=$1 fn=$2
    shift 2
    printf '### live watch %s\n' "$*"
    "$ETCDCTL" --endpoints "127.0.0.1:$PORT" --dial-timeout=2s watch "$@" >"$OUT.live" 2>&1 &
    local pid=$!
    sleep 0.8
    "$fn"
    sleep "$secs"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cat "$OUT.live"
}

section_history() {
    c put a 1                       # 2
    c put a 2                       # 3
    c put b 1                       # 4
    c txn <<<$'\nput a 3\nput c 1\n\n' # 5: two events, one response
    c del a                         # 6
    c put d 1                       # 7
    c del b d                       # 8: b and c
    c put 'pre/x' 1                 # 9
    c put 'pre/y' 1                 # 10
    c put 'prefix' 1                # 11
    w 1 a --rev 1
    w 1 a --rev 1 --prev-kv
    w 1 --prefix '' --rev 1 -w json
    w 1 b d --rev 2 --prev-kv
    w 1 --prefix a --rev 4 --prev-kv -w json
    w 1 --prefix pre/ --rev 1
    w 1 --prefix pre --rev 10
    w 1 c --rev 5 -w fields
    w 1 a --rev 100
}

section_compacted() {
    c compact 6
    w 2 a --rev 3
    w 2 --prefix '' --rev 5 -w json
    w 1 --prefix '' --rev 6 --prev-kv
    w 1 --prefix '' --rev 7 --prev-kv -w json
}

live_writes() {
    c put live/1 x
    c put live/1 y
    c txn <<<$'\nput live/2 z\ndel live/1\n\n'
    c put other v
    c del --prefix live/
}

section_live() {
    live 1 live_writes --prefix live/ --prev-kv -w json
    live 1 live_writes live/1
}

interactive_writes() {
    c put ia 1
    c put ib 2
    c put ia 3
}

section_interactive() {
    printf '### watch -i\n'
    # etcdctl -i reads commands from stdin; keep stdin open while writing.
    (printf 'watch ia\nwatch --prefix i --prev-kv\n'; sleep 2.5) |
        "$ETCDCTL" --endpoints "127.0.0.1:$PORT" watch -i >"$OUT.live" 2>&1 &
    local pid=$!
    sleep 1
    interactive_writes
    sleep 1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cat "$OUT.live"
}

log "starting real etcd on $REF_PORT and the target on $TGT_PORT"
start_etcd ref "$REF_PORT" --experimental-watch-progress-notify-interval=1s
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT" --experimental-watch-progress-notify-interval=1s
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target did not start"

for section in history compacted live interactive; do
    pids=()
    for side in ref tgt; do
        (
            trap - EXIT INT TERM # the parent cleans up
            if [ "$side" = ref ]; then PORT=$REF_PORT; else PORT=$TGT_PORT; fi
            OUT="$E2E_TMP/$section.$side"
            "section_$section" >"$OUT.raw" 2>&1
        ) &
        pids+=($!)
    done
    wait "${pids[@]}" # not a bare wait: the servers are jobs too
    for side in ref tgt; do
        normalize <"$E2E_TMP/$section.$side.raw" | normalize_term >"$E2E_TMP/$section.$side"
        # etcdctl -i prints each watch from its own goroutine: the order
        # between watches is not defined, compare the lines as a multiset
        if [ "$section" = interactive ]; then
            sort "$E2E_TMP/$section.$side" >"$E2E_TMP/$section.$side.sorted"
            mv "$E2E_TMP/$section.$side.sorted" "$E2E_TMP/$section.$side"
        fi
    done
    diff_files "$section" "$E2E_TMP/$section.ref" "$E2E_TMP/$section.tgt"
done

# The transcripts must show real events, not two identical empty outputs.
check_seen() {
    if grep -q -- "$2" "$E2E_TMP/$3.tgt"; then pass "$1"; else fail "$1: no [$2] in $3"; fi
}
check_seen "history replay has events" '^PUT$' history
check_seen "txn events in one response" '"mod_revision":5.*"mod_revision":5' history
check_seen "compacted watch canceled" 'required revision has been compacted' compacted
check_seen "live events seen" '"value":"eg=="' live
check_seen "interactive events seen" '^ia$' interactive
finish
