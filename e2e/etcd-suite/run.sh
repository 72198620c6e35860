#!/usr/bin/env bash
# e2e/etcd-suite/run.sh: etcd 3.4's own end-to-end suite (all 243 tests)
# against build/kshimd, through the workplace's anchors (etcd-e2e.sh builds the
# suite offline from Debian's golang-etcd-server-dev; kshimd-as-etcd execs
# kshimd with etcd's arguments). Prints the suite's PASS/FAIL counts, then
# checks them against expected-failures.txt: exit 1 if a test fails that is not
# listed there, or a listed test passes. `make e2e-etcd` runs it; it takes
# about 25 minutes on 2 cores, so it is not part of make test.
#
# Env: KSHIMD (default build/kshimd), ANCHORS (default ../shared/anchors),
#      WORK (default /tmp/kshim-etcd-suite), RUN (a regex: only those tests),
#      TEST_TIMEOUT (default 180s). Runs in a network namespace of its own
#      when root (the suite listens on localhost:20000+).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
KSHIMD=$(readlink -f "${KSHIMD:-$SRC/build/kshimd}")
ANCHORS=$(readlink -f "${ANCHORS:-$SRC/../shared/anchors}")
WORK=${WORK:-/tmp/kshim-etcd-suite}
EXPECTED=$HERE/expected-failures.txt
[ -x "$KSHIMD" ] || { echo "etcd-suite: no kshimd at $KSHIMD (make build)" >&2; exit 2; }
[ -x "$ANCHORS/etcd-e2e.sh" ] || { echo "etcd-suite: no etcd-e2e.sh in $ANCHORS (set ANCHORS)" >&2; exit 2; }

mkdir -p "$WORK/bindir"
ln -sfn "$ANCHORS/kshimd-as-etcd" "$WORK/bindir/etcd"
# The suite's binaries are built once into $WORK/bin (skipped when present).
WORK=$WORK bash "$ANCHORS/build-etcd-benchmark.sh" >"$WORK/build.log" 2>&1 ||
    { echo "etcd-suite: building etcd's e2e suite failed (see $WORK/build.log)" >&2; exit 2; }

ns=()
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
    NS=kshim-etcd-suite-$$
    ip netns add "$NS" && ip -n "$NS" link set lo up && ns=(ip netns exec "$NS")
    trap '[ -n "${NS:-}" ] && ip netns del "$NS" 2>/dev/null' EXIT
fi
out=$WORK/suite.out
KSHIMD=$KSHIMD WORK=$WORK TEST_TIMEOUT=${TEST_TIMEOUT:-180s} ${ns[@]+"${ns[@]}"} \
    bash "$ANCHORS/etcd-e2e.sh" "$WORK/bindir" -run "${RUN:-.}" | tee "$out"

# A line is a regex of tests expected to fail; "~regex": either outcome is
# expected (a test whose result depends on timing, with the reason beside it).
expected() { grep -v '^#' "$EXPECTED" | grep -v '^$'; }
listed() { # TEST [must]: listed at all, or (must) listed as a certain failure
    local t=$1 must=${2:-} re
    while read -r re; do
        if [[ $re == "~"* ]]; then
            [ -z "$must" ] && [[ $t =~ ^(${re#\~})$ ]] && return 0
        else
            [[ $t =~ ^($re)$ ]] && return 0
        fi
    done < <(expected)
    return 1
}
bad=0
while read -r res name _; do
    case $res in
    FAIL) listed "$name" || { echo "etcd-suite: UNEXPECTED FAIL $name (log: $WORK/e2e-logs/$name.log)"; bad=1; } ;;
    PASS) listed "$name" must && { echo "etcd-suite: $name passes: take it off $EXPECTED"; bad=1; } ;;
    esac
done < <(grep -E '^(PASS|FAIL) ' "$out")
[ $bad = 0 ] && echo "etcd-suite: every failure is an expected one (e2e/etcd-suite/expected-failures.txt)"
exit $bad
