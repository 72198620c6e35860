#!/usr/bin/env bash
# e2e/test_auth_etcdctl.sh: differential test of the Auth surface through the
# real etcdctl 3.4: `user`, `role` and `auth` commands (every subcommand,
# the error cases, table/json output) and `--user` usage (good and wrong
# passwords, read/write/prefix roles, self user get / own role get, root
# protection while enabled, password change, auth disable), run against a
# fresh real etcd and the target; outputs are normalized (ids, terms,
# client retry logs) and compared with diff -u per section. Then the same
# user/role/auth commands through kshimctl against both servers.
#
# Ports: 25200 (real etcd), 25201 (target); peers +50.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REF_PORT=25200
TGT_PORT=25201
KSHIMCTL=${KSHIMCTL:-}

c() {
    printf '### %s\n' "$*"
    local rc=0
    ctl "$PORT" "$@" 2>&1 || rc=$?
    echo "rc=$rc"
}

section_manage() {
    c auth enable
    c user add root:rootpw
    c user add root:again
    c user add alice:alicepw
    c user add carol --no-password
    c user add :nameless
    c user list
    c user list -w json
    c role add reader
    c role add reader
    c role add writer
    c role add app
    c role add ''
    c role grant-permission reader read /data/ /data0
    c role grant-permission writer write /w/k
    c role grant-permission app readwrite /app/ --prefix
    c role grant-permission app read /app/ --prefix
    c role grant-permission app readwrite /app/ --prefix
    c role grant-permission app write /from --from-key
    c role grant-permission ghost read a
    c role get app
    c role get app -w json
    c role get ghost
    c role list
    c role revoke-permission app /nope
    c role revoke-permission app /from --from-key
    c role revoke-permission ghost /x
    c role get app
    c user grant-role alice reader
    c user grant-role alice reader
    c user grant-role alice ghost
    c user grant-role ghost reader
    c user grant-role carol app
    c user get alice
    c user get alice -w json
    c user get ghost
    c user revoke-role alice writer
    c user revoke-role alice reader
    c user revoke-role ghost reader
    c user grant-role alice reader
    c user delete ghost
    c role delete ghost
    c role add temp
    c user grant-role carol temp
    c role delete temp
    c user get carol
}

section_enable() {
    c auth enable
    c user grant-role root root
    c auth enable
    c auth enable
    c user list
    c --user root:rootpw user list
    c --user root:wrong user list
    c --user nobody:pw user list
    c --user carol:x get /app/a
    c --user root:rootpw put /data/1 one
    c --user root:rootpw put /app/a A
    c --user root:rootpw put /w/k K
    c --user alice:alicepw get /data/1
    c --user alice:alicepw get /data/ --prefix
    c --user alice:alicepw get /data --prefix
    c --user alice:alicepw put /data/1 x
    c --user alice:alicepw get /app/a
    c --user alice:alicepw user get alice
    c --user alice:alicepw user get root
    c --user alice:alicepw role get reader
    c --user alice:alicepw role get app
    c --user alice:alicepw user list
    c --user alice:alicepw role list
    c --user alice:alicepw user add eve:pw
    c --user alice:alicepw auth disable
    c --user root:rootpw user delete root
    c --user root:rootpw user revoke-role root root
    c --user root:rootpw role delete root
    c --user root:rootpw user passwd alice --interactive=false <<<'newpw'
    c --user alice:alicepw get /data/1
    c --user alice:newpw get /data/1
    c --user root:rootpw user add dave:davepw
    c --user root:rootpw user grant-role dave writer
    c --user dave:davepw put /w/k v2
    c --user dave:davepw get /w/k
    c --user dave:davepw del /w/k
    c --user dave:davepw put /w/other v
    c --user root:rootpw get /w/k
    c --user root:rootpw user delete dave
    c --user dave:davepw get /w/k
    c --user root:rootpw auth disable
    c auth disable
    c get /data/1
    c user list
}

normalize_ctl() {
    sed -E -e 's/"ts":"[^"]*",//' -e 's/"target":"[^"]*",//' \
        -e "s/127\.0\.0\.1:($REF_PORT|$TGT_PORT)/ENDPOINT/g" |
        normalize | normalize_term
}

SECTIONS="manage enable"
run_all() {
    local s
    for s in $SECTIONS; do
        "section_$s" >"$OUT/$s.raw"
        normalize_ctl <"$OUT/$s.raw" >"$OUT/$s.txt"
    done
}

# kshimctl against either server: same commands, outputs compared.
k() {
    printf '### kshimctl %s\n' "$*"
    local rc=0
    "$KSHIMCTL" --endpoints "127.0.0.1:$PORT" "$@" 2>&1 || rc=$?
    echo "rc=$rc"
}

section_kshimctl() {
    k user add kuser --new-user-password kpw
    k user add kuser --new-user-password kpw
    k role add krole
    k role grant-permission krole readwrite /k/ --prefix
    k role grant-permission krole read /z
    k role get krole
    k role get krole -w json
    k user grant-role kuser krole
    k user get kuser
    k user get kuser -w json
    k user list
    k role list
    k user revoke-role kuser krole
    k role revoke-permission krole /z
    k role get krole
    k user passwd kuser --new-user-password kpw2
    k --user root:rootpw auth enable
    k auth enable
    k --user kuser:kpw2 user list
    k --user root:rootpw user list
    k --user root:rootpw auth disable
    k user delete kuser
    k role delete krole
    k user delete kuser
    k role revoke-permission krole /k/ --prefix
    k role grant-permission krole bogus /k/
    k role grant-permission krole read /a /b --prefix
}

# auth status is etcd 3.5's RPC (etcd 3.4 answers Unimplemented): target only.
section_status() {
    k auth status
    k --user root:rootpw auth enable
    k --user root:rootpw auth status
    k --user root:rootpw user add st --new-user-password x
    k --user root:rootpw auth status -w json
    k --user root:rootpw auth disable
    k auth status
}

start_etcd ref "$REF_PORT"
REF_PID=$SERVER_PID
start_target tgt "$TGT_PORT" --bcrypt-cost 10
TGT_PID=$SERVER_PID
wait_ready "$REF_PID" "$REF_PORT" || die "real etcd did not start"
wait_ready "$TGT_PID" "$TGT_PORT" || die "target ($KSHIM_E2E_TARGET) did not start"

mkdir -p "$E2E_TMP/ref" "$E2E_TMP/tgt"
PORT=$REF_PORT OUT=$E2E_TMP/ref run_all
PORT=$TGT_PORT OUT=$E2E_TMP/tgt run_all
for s in $SECTIONS; do
    diff_files "etcdctl $s" "$E2E_TMP/ref/$s.txt" "$E2E_TMP/tgt/$s.txt"
done
if grep -q 'etcdserver: permission denied' "$E2E_TMP/ref/enable.txt" &&
    grep -q 'Authentication Enabled' "$E2E_TMP/ref/enable.txt"; then
    pass "reference transcript is meaningful"
else
    fail "reference transcript lacks expected content"
fi

if [ -n "$KSHIMCTL" ] && [ -x "$KSHIMCTL" ]; then
    PORT=$REF_PORT section_kshimctl 2>&1 | normalize_ctl >"$E2E_TMP/ref/kshimctl.txt"
    PORT=$TGT_PORT section_kshimctl 2>&1 | normalize_ctl >"$E2E_TMP/tgt/kshimctl.txt"
    diff_files "kshimctl user/role/auth" "$E2E_TMP/ref/kshimctl.txt" "$E2E_TMP/tgt/kshimctl.txt"
    PORT=$TGT_PORT section_status 2>&1 | normalize_ctl >"$E2E_TMP/tgt/status.txt"
    # revision: +1 per change; enable does not bump (etcd 3.4), user add and
    # disable do.
    r1=$(sed -n 3p "$E2E_TMP/tgt/status.txt" | sed 's/AuthRevision: //')
    exp="### kshimctl auth status
Authentication Status: false
AuthRevision: $r1
rc=0
### kshimctl --user root:rootpw auth enable
Authentication Enabled
rc=0
### kshimctl --user root:rootpw auth status
Authentication Status: true
AuthRevision: $r1
rc=0
### kshimctl --user root:rootpw user add st --new-user-password x
User st created
rc=0
### kshimctl --user root:rootpw auth status -w json
{\"header\":{\"cluster_id\":ID,\"member_id\":ID,\"revision\":REV,\"raft_term\":TERM},\"enabled\":true,\"authRevision\":$((r1 + 1))}
rc=0
### kshimctl --user root:rootpw auth disable
Authentication Disabled
rc=0
### kshimctl auth status
Authentication Status: false
AuthRevision: $((r1 + 2))
rc=0"
    got=$(sed -E 's/"revision":[0-9]+/"revision":REV/' "$E2E_TMP/tgt/status.txt")
    check_eq "kshimctl auth status (revision bumps)" "$exp" "$got"
    if grep -q '^rc=0' "$E2E_TMP/ref/kshimctl.txt" && grep -q 'krole' "$E2E_TMP/ref/kshimctl.txt"; then
        pass "kshimctl manages real etcd"
    else
        fail "kshimctl transcript against real etcd lacks successes"
    fi
else
    fail "KSHIMCTL not set to an executable kshimctl"
fi
kill -0 "$TGT_PID" 2>/dev/null && pass "target still running" || fail "target died"

# Users, roles, the enabled flag and the auth revision survive a restart.
persisted() {
    PORT=$TGT_PORT
    c --user root:rootpw user list
    c --user root:rootpw role get app
    c --user root:rootpw user get alice
    c --user alice:newpw get /data/1
    c --user alice:alicepw get /data/1
    c get /data/1
    if [ -n "$KSHIMCTL" ]; then k --user root:rootpw auth status; fi
}
ctl "$TGT_PORT" --user root:rootpw auth enable >/dev/null 2>&1 || ctl "$TGT_PORT" auth enable >/dev/null 2>&1 ||
    fail "cannot re-enable auth on the target"
persisted 2>&1 | normalize_ctl >"$E2E_TMP/tgt/before-restart.txt"
stop_server "$TGT_PID"
start_target tgt "$TGT_PORT" --bcrypt-cost 10
TGT_PID=$SERVER_PID
# (endpoint health without credentials fails while auth is on, as in etcd)
for i in $(seq 100); do
    ctl "$TGT_PORT" --user root:rootpw endpoint health >/dev/null 2>&1 && break
    kill -0 "$TGT_PID" 2>/dev/null || die "target died on restart"
    sleep 0.1
done
persisted 2>&1 | normalize_ctl >"$E2E_TMP/tgt/after-restart.txt"
diff_files "auth state across restart" "$E2E_TMP/tgt/before-restart.txt" "$E2E_TMP/tgt/after-restart.txt"
grep -q '^Authentication Status: true' "$E2E_TMP/tgt/after-restart.txt" &&
    grep -q 'user name is empty' "$E2E_TMP/tgt/after-restart.txt" &&
    pass "auth still enabled after restart" || fail "auth not enabled after restart"
finish
