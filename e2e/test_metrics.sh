#!/usr/bin/env bash
# e2e/test_metrics.sh: /metrics with etcd 3.4's series, read by the
# Prometheus client's parser (e2e/metrics_check.py, python3-prometheus-client):
# the families etcd's Grafana dashboard and its e2e metrics test use exist
# with etcd's types and buckets, and the same etcdctl requests move the mvcc
# counters, the keys gauge and grpc_server_handled_total (OK, NotFound,
# OutOfRange, Canceled Watch) by the same exact amounts on real etcd and on
# kshimd; the disk histograms count every sequential write's sync.
#
# Ports: 25600 (real etcd, peer 25650, metrics 25602), 25601 (target, metrics 25603)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

start_etcd etcd-mx 25600 --listen-metrics-urls http://127.0.0.1:25602
ETCD_PID=$SERVER_PID
start_target kshimd-mx 25601 --listen-metrics-urls http://127.0.0.1:25603
TARGET_PID=$SERVER_PID
wait_ready "$ETCD_PID" 25600
wait_ready "$TARGET_PID" 25601

if /usr/bin/python3 "$(dirname "$0")/metrics_check.py" 127.0.0.1:25600 127.0.0.1:25602 \
    127.0.0.1:25601 127.0.0.1:25603 >"$E2E_TMP/check.out" 2>&1; then
    pass "metrics_check.py: $(grep -c '^ok' "$E2E_TMP/check.out") checks"
else
    cat "$E2E_TMP/check.out" >&2
    fail "metrics_check.py: $(grep -c '^not ok' "$E2E_TMP/check.out" || true) failed"
fi

stop_server "$TARGET_PID"
stop_server "$ETCD_PID"
finish
