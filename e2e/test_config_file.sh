#!/usr/bin/env bash
# e2e/test_config_file.sh: --config-file, etcd's YAML configuration (issue 9
# item 5). One YAML file (name, data-dir, https client URL with a
# client-transport-security section requiring client certificates,
# listen-metrics-urls, heartbeat/election, log-outputs, keys etcd 3.4 does
# not know) starts real etcd, then (data dir wiped) kshimd; each must:
#   - serve put/get over TLS with a client certificate at the file's URL,
#     and refuse a client without a certificate;
#   - create the file's data dir and take the file's member name;
#   - ignore the other command-line flags and ETCD_* variables (a second
#     --listen-client-urls, ETCD_NAME and ETCD_LISTEN_METRICS_URLS are given,
#     and must not act);
#   - answer /health on the file's metrics URL.
# Then bad files: a YAML syntax error, a wrong-typed value and a missing file
# make both exit 1.
#
# Ports: 25320 (client, https), 25321 (peer), 25322 (ignored flag's URL), 25323 (metrics),
# 25324 (ignored env's URL)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CERTS=$E2E_TMP/certs
bash "$KSHIM_SRC/certs/gen.sh" "$CERTS"
CONF=$E2E_TMP/etcd.conf.yml
cat >"$CONF" <<YML
# etcd.conf.yml.sample's layout
name: 'from-yaml'
data-dir: $E2E_TMP/member.data
wal-dir:
heartbeat-interval: 100
election-timeout: 1000
listen-peer-urls: http://127.0.0.1:25321
listen-client-urls: https://127.0.0.1:25320
initial-advertise-peer-urls: http://127.0.0.1:25321
advertise-client-urls: ''  # empty: the default, in etcd too
initial-cluster: from-yaml=http://127.0.0.1:25321
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
listen-metrics-urls: http://127.0.0.1:25323
client-transport-security:
  cert-file: $CERTS/server.crt
  key-file: $CERTS/server.key
  client-cert-auth: true
  trusted-ca-file: $CERTS/ca.crt
  auto-tls: false
peer-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
log-outputs: [stderr]
proxy: 'off'
proxy-failure-wait: 5000
YML

tctl() {
    "$ETCDCTL" --endpoints https://127.0.0.1:25320 --dial-timeout=2s --command-timeout=5s \
        --cacert "$CERTS/ca.crt" --cert "$CERTS/root.crt" --key "$CERTS/root.key" "$@"
}

# serve_from_yaml KIND BIN: start BIN with the file (plus flags and env it
# must ignore) and print what the checks saw.
serve_from_yaml() {
    local kind=$1 bin=$2 i
    rm -rf "$E2E_TMP/member.data"
    ensure_port_free 25320
    ETCD_NAME=from-env ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:25324 \
        "$bin" --config-file "$CONF" --listen-client-urls http://127.0.0.1:25322 \
        >>"$E2E_TMP/$kind.log" 2>&1 &
    local pid=$!
    E2E_PIDS+=("$pid")
    for i in $(seq 100); do
        tctl endpoint health >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    tctl put /yaml v1 >/dev/null 2>&1 && echo "tls put: ok" || echo "tls put: failed"
    echo "tls get: $(tctl get /yaml --print-value-only 2>&1)"
    "$ETCDCTL" --endpoints https://127.0.0.1:25320 --dial-timeout=2s --command-timeout=3s \
        --cacert "$CERTS/ca.crt" get /yaml >/dev/null 2>&1 && echo "no client cert: served" ||
        echo "no client cert: refused"
    echo "member name: $(tctl member list -w simple 2>&1 | cut -d, -f3 | tr -d ' ')"
    [ -d "$E2E_TMP/member.data/member" ] && echo "data dir: created" || echo "data dir: missing"
    port_busy 25322 && echo "ignored flag's URL: served" || echo "ignored flag's URL: not served"
    port_busy 25324 && echo "ignored env's URL: served" || echo "ignored env's URL: not served"
    echo "metrics /health: $(curl -s http://127.0.0.1:25323/health)"
    stop_server "$pid" >&2
}

serve_from_yaml etcd "$ETCD" >"$E2E_TMP/etcd.out"
serve_from_yaml kshimd "$KSHIMD" >"$E2E_TMP/kshimd.out"
diff_files "served from the same YAML file" "$E2E_TMP/etcd.out" "$E2E_TMP/kshimd.out"
cat "$E2E_TMP/kshimd.out"
check_eq "kshimd served over TLS" "tls get: v1" "$(grep '^tls get' "$E2E_TMP/kshimd.out")"

# bad_file KIND BIN FILE: the exit code of a start with FILE (it must not run).
bad_file() {
    local rc=0
    rm -rf "$E2E_TMP/bad.data"
    timeout 20 "$2" --config-file "$3" >>"$E2E_TMP/$1-bad.log" 2>&1 || rc=$?
    echo "$rc"
}
printf 'name: x\n  data-dir: [unclosed\n' >"$E2E_TMP/syntax.yml"
printf 'name: x\ndata-dir: %s\nheartbeat-interval: fast\n' "$E2E_TMP/bad.data" >"$E2E_TMP/type.yml"
for f in syntax.yml type.yml missing.yml; do
    check_eq "bad file $f: exit code as etcd's" "$(bad_file etcd "$ETCD" "$E2E_TMP/$f")" \
        "$(bad_file kshimd "$KSHIMD" "$E2E_TMP/$f")"
done
check_eq "bad file: kshimd exits 1" "1" "$(bad_file kshimd "$KSHIMD" "$E2E_TMP/syntax.yml")"
grep -h "config-file" "$E2E_TMP/kshimd-bad.log" | head -3
finish
