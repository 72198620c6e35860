#!/bin/bash
# run.sh BUILD_DIR SECONDS [TARGET...]: runs each libFuzzer target of
# tests/fuzz/ (built with -DKSHIM_FUZZ=ON, see `make fuzz`) for SECONDS,
# starting from the committed seeds plus what earlier runs found (kept in
# BUILD_DIR/fuzz-corpus/<target>), and prints executions and coverage
# (cov: edges, ft: features, corpus: inputs kept, from libFuzzer's last line).
# Exits 1 if a target found a crash (the input is left in BUILD_DIR as
# crash-*: copy it into tests/fuzz/corpus/<target>/regress_* with the fix).
# FUZZ_MERGE=1 also merges the new inputs, minimized, into the committed seeds.
# FUZZ_JOBS=N runs N targets at once (default 1), each with its own log
# BUILD_DIR/fuzz-<target>.log. Scratch stores go under $KSHIM_TEST_TMP
# (default /dev/shm when it exists: the storage targets sync every write).
set -u
build=$1
secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(grpc_frame wal etcd_wal auth_token kv_request config_file client_conn
    peer_codec bbolt_reader gateway_json snapshot_recv store_values)
jobs=${FUZZ_JOBS:-1}
if [ -z "${KSHIM_TEST_TMP:-}" ] && [ -d /dev/shm ]; then export KSHIM_TEST_TMP=/dev/shm; fi

# One target: its log and a one-line result in BUILD_DIR/fuzz-<target>.result.
run_one() {
    local t=$1 work="$build/fuzz-corpus/$1" log="$build/fuzz-$1.log"
    mkdir -p "$work"
    cp -n "$here/corpus/fuzz_$t"/* "$work"/ 2>/dev/null
    local t0=$SECONDS
    (cd "$build" && "./fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=4096 "fuzz-corpus/$t") >"$log" 2>&1
    local rc=$? took=$((SECONDS - t0))
    local execs rate last cov ft corp result=clean
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
    rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | awk '{print $2}')
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1)
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | awk '{print $2}')
    ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | awk '{print $2}')
    corp=$(echo "$last" | grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' | awk '{print $2}')
    if [ $rc -ne 0 ]; then result="CRASH (see $log)"; fi
    printf '%-14s %6s %10s %8s %6s %7s %12s  %s\n' "$t" "$took" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
        "${ft:-?}" "${corp:-?}" "$result" >"$build/fuzz-$t.result"
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ $rc -eq 0 ]; then
        (cd "$build" && "./fuzz_$t" -merge=1 "$here/corpus/fuzz_$t" "fuzz-corpus/$t") >/dev/null 2>&1
    fi
    return $rc
}

status=0
running=0
for t in "${targets[@]}"; do
    rm -f "$build/fuzz-$t.result"
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
printf '%-14s %6s %10s %8s %6s %7s %12s  %s\n' target secs execs exec/s cov ft corpus result
for t in "${targets[@]}"; do cat "$build/fuzz-$t.result" 2>/dev/null || echo "$t: no result"; done
exit $status
