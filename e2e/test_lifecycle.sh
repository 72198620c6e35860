#!/usr/bin/env bash
# e2e/test_lifecycle.sh: kshimd's life cycle as etcd's (lifecycle.c).
#   - sd_notify: with $NOTIFY_SOCKET set (a python3 datagram listener stands
#     in for systemd), READY=1 arrives, and when it has arrived the client
#     port already serves (one read, no retry); STOPPING=1 at shutdown.
#   - graceful SIGTERM under load: three writers put in a loop and a Watch
#     stream is open; SIGTERM; kshimd exits 0 by itself, the watch stream
#     ends with Unavailable "etcdserver: server stopped", the log says the
#     connections drained, no put failed with a reset/closed connection
#     (only "cannot connect" once the port is closed), and after a restart
#     every acknowledged put is there (crash_writer.py verify).
#   - a second signal while draining exits at once.
#   - logging flags (--logger, --log-outputs, --log-level, --debug) as etcd
#     3.4 takes them.
#
# Port: 26610.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=26610
STOP=$E2E_TMP/stop
NOTIFY=$E2E_TMP/notify.out
CLIENTS=()

bg_client() {
    "$PY" "$E2E_DIR/lifecycle_client.py" "$@" >>"$E2E_TMP/clients.out" 2>&1 &
    CLIENTS+=($!)
    E2E_PIDS+=($!)
}

wait_file_line() { # FILE REGEX TIMEOUT_S
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# term_and_wait PID: SIGTERM, wait up to 10 s (then SIGKILL); the exit
# status in TERM_RC.
term_and_wait() {
    local rc=0
    kill -TERM "$1"
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then
        echo "kshimd still runs 10 s after SIGTERM" >&2
        kill -9 "$1"
    fi
    wait "$1" || rc=$?
    forget_pid "$1"
    TERM_RC=$rc
}

# ---- sd_notify and graceful shutdown under load ----------------------------
bg_client notify "$E2E_TMP/notify.sock" "$NOTIFY"
for _ in $(seq 50); do [ -S "$E2E_TMP/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$E2E_TMP/notify.sock start_kshimd life "$PORT"
PID=$SERVER_PID
if wait_file_line "$NOTIFY" '^READY=1$' 20; then
    pass "sd_notify: READY=1 received"
    if ctl "$PORT" get lifecycle/ready >/dev/null 2>&1; then
        pass "the client port serves once READY=1 was sent"
    else
        fail "READY=1 was sent before the client port served"
    fi
else
    fail "sd_notify: no READY=1 (got: $(cat "$NOTIFY" 2>/dev/null))"
fi
wait_ready "$PID" "$PORT" || die "kshimd did not start"

bg_client watch "$PORT" "$E2E_TMP/watch.out"
wait_file_line "$E2E_TMP/watch.out" '^created$' 10 || fail "the watch was not created"
for w in 0 1 2; do bg_client write "$PORT" "crash/w$w/" "$E2E_TMP/acks.$w" "$STOP"; done
# SIGTERM once every writer is under way (acks from each, 200 in all).
for _ in $(seq 200); do
    n=$(cat "$E2E_TMP"/acks.* 2>/dev/null | grep -c '^ack' || true)
    busy=$( (grep -l '^ack' "$E2E_TMP"/acks.* 2>/dev/null || true) | wc -l)
    [ "$n" -ge 200 ] && [ "$busy" -eq 3 ] && break
    sleep 0.1
done

term_and_wait "$PID"
check_eq "exit status after SIGTERM under load" 0 "$TERM_RC"
wait_file_line "$E2E_TMP/watch.out" '^end ' 5 || true
check_eq "the watch stream ends with etcd's status" "end UNAVAILABLE etcdserver: server stopped" \
    "$(grep '^end ' "$E2E_TMP/watch.out" || echo none)"
grep -q '"received signal terminated; shutting down' "$E2E_TMP/life.log" &&
    pass "kshimd logs the signal" || fail "no shutdown line in the log"
grep -q '"all client connections drained in ' "$E2E_TMP/life.log" &&
    pass "every client connection drained before exit" ||
    fail "connections were not drained: $(grep -a 'still busy' "$E2E_TMP/life.log" || true)"
grep -q '^STOPPING=1$' "$NOTIFY" && pass "sd_notify: STOPPING=1 received" || fail "no STOPPING=1"

sleep 0.5 # the writers now fail to connect
touch "$STOP"
for c in "${CLIENTS[@]:2}"; do wait "$c" 2>/dev/null || true; forget_pid "$c"; done
nack=$(cat "$E2E_TMP"/acks.* | grep -c '^ack' || true)
[ "$nack" -ge 200 ] && pass "writers made progress ($nack acknowledged puts)" ||
    fail "writers made too little progress ($nack acknowledged puts)"
bad=$(grep '^detail ' "$E2E_TMP/clients.out" | grep -viE 'failed to connect|connection refused' || true)
if [ -z "$bad" ]; then
    pass "no put was cut by the shutdown ($(grep -c '^detail ' "$E2E_TMP/clients.out" || true) refused connections after it)"
else
    fail "puts failed other than with a refused connection: $(echo "$bad" | head -5)"
fi

start_kshimd life "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd did not restart"
if "$PY" "$E2E_DIR/crash_writer.py" verify "$PORT" "$E2E_TMP"/acks.* >"$E2E_TMP/verify.out" 2>&1; then
    pass "after restart every acknowledged put is there: $(head -1 "$E2E_TMP/verify.out")"
else
    fail "verify found problems"
fi
cat "$E2E_TMP/verify.out"

# ---- a second signal exits at once --------------------------------------
# A watch stream ends at the first signal; a client that ignores GOAWAY and
# keeps its connection idle makes the drain wait its full bound, during
# which SIGINT exits at once with 128+2.
exec 7<>"/dev/tcp/127.0.0.1/$PORT"
printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0' >&7
sleep 0.3
kill -TERM "$PID"
sleep 0.3
kill -INT "$PID"
rc=0
wait "$PID" || rc=$?
forget_pid "$PID"
exec 7>&-
check_eq "a second signal exits at once (128+SIGINT)" 130 "$rc"
grep -q 'second termination signal' "$E2E_TMP/life.log" && pass "the second signal is logged" ||
    fail "no line about the second signal"

# ---- TLS: the same drain over https (--auto-tls) -----------------------------
"$KSHIMD" --name tls --data-dir "$E2E_TMP/tls.data" --auto-tls \
    --listen-client-urls "https://127.0.0.1:$PORT" --advertise-client-urls "https://127.0.0.1:$PORT" \
    >>"$E2E_TMP/tls.log" 2>&1 &
PID=$!
E2E_PIDS+=("$PID")
TLSCTL=(timeout 10 "$ETCDCTL" --endpoints "https://127.0.0.1:$PORT" --dial-timeout=2s --command-timeout=5s
    --cacert "$E2E_TMP/tls.data/fixtures/client/cert.pem")
for _ in $(seq 100); do "${TLSCTL[@]}" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
"${TLSCTL[@]:2}" watch tls/ --prefix >"$E2E_TMP/tlswatch.out" 2>&1 &
TW=$!
E2E_PIDS+=("$TW")
sleep 0.5
"${TLSCTL[@]}" put tls/a 1 >/dev/null || fail "TLS put failed"
wait_file_line "$E2E_TMP/tlswatch.out" '^tls/a$' 5 || fail "the TLS watch saw no event"
term_and_wait "$PID"
check_eq "TLS: exit status after SIGTERM with a watch open" 0 "$TERM_RC"
grep -q '"all client connections drained in ' "$E2E_TMP/tls.log" && pass "TLS: connections drained" ||
    fail "TLS: not drained: $(grep -a 'still busy' "$E2E_TMP/tls.log" || true)"
kill "$TW" 2>/dev/null || true
wait "$TW" 2>/dev/null || true
forget_pid "$TW"

# ---- logging flags ---------------------------------------------------------
# Refused like etcd 3.4: same exit status, same text (after etcd's
# "etcdmain: " prefix, with kshimd for etcd in "See 'etcd --help'").
refusal() { # BINARY ARGS...: "rc|last line"
    local out rc=0
    out=$("$@" 2>&1 </dev/null) || rc=$?
    out=$(echo "$out" | grep -m1 -E '^panic: |error verifying flags' | sed -E "s/^.* E \| etcdmain: //; s/See '(etcd|kshimd) --help'/See 'X --help'/")
    echo "$rc|$out"
}
for args in "--logger=bogus" "--logger=zap --log-level=bogus" "--logger=zap --log-outputs=default,stderr" \
    "--logger=capnslog --log-outputs=stderr,stdout" "--logger=capnslog --log-outputs=$E2E_TMP/x.log"; do
    # shellcheck disable=SC2086
    check_eq "refused as etcd refuses it: $args" "$(refusal "$ETCD" --data-dir "$E2E_TMP/etcd.data" $args)" \
        "$(refusal "$KSHIMD" --data-dir "$E2E_TMP/refused.data" $args)"
done

# capnslog text lines on stdout (start_kshimd appends stdout and stderr to
# the log; stderr here only has the deprecation warning).
start_kshimd text "$PORT" --logger capnslog --log-outputs stdout
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd --logger capnslog did not start"
stop_server "$PID"
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} I \| kshimd: kshimd ready: name=text' \
    "$E2E_TMP/text.log" && pass "--logger capnslog writes etcd's text lines" ||
    fail "no capnslog line: $(head -3 "$E2E_TMP/text.log")"
grep -q '^{"level"' "$E2E_TMP/text.log" && fail "JSON lines with --logger capnslog" || pass "no JSON lines with capnslog"

# zap to two files (appended), from the environment; warn hides info lines.
echo "earlier line" >"$E2E_TMP/a.log"
ETCD_LOGGER=zap ETCD_LOG_OUTPUTS="$E2E_TMP/a.log,$E2E_TMP/b.log" start_kshimd files "$PORT"
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd --log-outputs files did not start"
stop_server "$PID"
check_eq "--log-outputs file: appended" "earlier line" "$(head -1 "$E2E_TMP/a.log")"
for f in a b; do
    grep -q '^{"level":"info","ts":"[^"]*","caller":"kshimd","msg":"kshimd ready: name=files' "$E2E_TMP/$f.log" &&
        pass "--log-outputs: zap lines in $f.log" || fail "no ready line in $f.log"
done
check_eq "nothing on stderr with file outputs only" "" "$(cat "$E2E_TMP/files.log")"
start_kshimd quiet "$PORT" --log-level warn
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd --log-level warn did not start"
stop_server "$PID"
check_eq "--log-level warn: no info lines" 0 "$(grep -c '"level":"info"' "$E2E_TMP/quiet.log" || true)"
start_kshimd verbose "$PORT" --debug --snapshot-count 100
PID=$SERVER_PID
wait_ready "$PID" "$PORT" || die "kshimd --debug did not start"
stop_server "$PID"
grep -q "Deprecated '--debug' flag is set to true" "$E2E_TMP/verbose.log" &&
    grep -q '"level":"debug",.*"msg":"flag --snapshot-count=100 accepted' "$E2E_TMP/verbose.log" && pass "--debug: debug lines and etcd's warning" ||
    fail "--debug: $(head -3 "$E2E_TMP/verbose.log")"

# The same keys in --config-file (etcd.conf.yml: a sequence for log-outputs).
cat >"$E2E_TMP/conf.yml" <<YML
name: conf
data-dir: $E2E_TMP/conf.data
listen-client-urls: http://127.0.0.1:$PORT
advertise-client-urls: http://127.0.0.1:$PORT
logger: capnslog
log-outputs: [stdout]
log-level: info
YML
"$KSHIMD" --config-file "$E2E_TMP/conf.yml" >"$E2E_TMP/conf.out" 2>"$E2E_TMP/conf.err" &
PID=$!
E2E_PIDS+=("$PID")
wait_ready "$PID" "$PORT" || die "kshimd --config-file did not start"
stop_server "$PID"
grep -qE ' I \| kshimd: kshimd ready: name=conf' "$E2E_TMP/conf.out" &&
    pass "config file keys logger, log-outputs, log-level" || fail "config file logging: $(head -2 "$E2E_TMP/conf.out")"

kill "${CLIENTS[0]}" 2>/dev/null || true
wait "${CLIENTS[0]}" 2>/dev/null || true
forget_pid "${CLIENTS[0]}"
finish
