#!/bin/bash
# run.sh BUILD_DIR SECONDS [TARGET...]: runs each libFuzzer target of
# tests/fuzz/ (built with -DKSHIM_FUZZ=ON, see `make fuzz`) for SECONDS,
# starting from the committed seeds plus what earlier runs found (kept in
# BUILD_DIR/fuzz-corpus/<target>), and prints executions and coverage.
# Exits 1 if a target found a crash (the input is left in BUILD_DIR as
# crash-*: copy it into tests/fuzz/corpus/<target>/regress_* with the fix).
# FUZZ_MERGE=1 also merges the new inputs, minimized, into the committed seeds.
set -u
build=$1
secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(grpc_frame wal etcd_wal auth_token kv_request config_file client_conn peer_codec)
status=0
printf '%-14s %10s %8s %8s  %s\n' target execs exec/s cov result
for t in "${targets[@]}"; do
    work="$build/fuzz-corpus/$t"
    mkdir -p "$work"
    cp -n "$here/corpus/fuzz_$t"/* "$work"/ 2>/dev/null
    log="$build/fuzz-$t.log"
    (cd "$build" && "./fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=4096 "fuzz-corpus/$t") >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
    rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | awk '{print $2}')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    result=clean
    if [ $rc -ne 0 ]; then result="CRASH (see $log)"; status=1; fi
    printf '%-14s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$result"
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ $rc -eq 0 ]; then
        (cd "$build" && "./fuzz_$t" -merge=1 "$here/corpus/fuzz_$t" "fuzz-corpus/$t") >/dev/null 2>&1
    fi
done
exit $status
