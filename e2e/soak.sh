#!/usr/bin/env bash
# e2e/soak.sh: `make soak` (not in CI): a 3-member kshimd cluster under mixed
# load for SOAK_MINUTES (default 60) with faults, checking that memory and
# file descriptors stay flat.
#
# Members each in a network namespace of their own (e2e/netns_lib.sh), with
# revision auto-compaction (10,000 revisions, as an operator runs it).
# e2e/soak_load.py drives all three client URLs (writers, readers, watches).
# Every FAULT_EVERY seconds (default 60) one fault, in turn:
#   kill -9 of a member other than m1 and its restart 5 s later;
#   a partition of the leader for 10 s;
#   SIGSTOP of a member other than m1 for 5 s;
#   a leader transfer (move-leader) to another member.
# m1 is never killed or stopped, so its memory and fd count tell whether the
# process leaks; every minute a table row gives each member's anonymous
# resident memory (RssAnon, MB: VmRSS also counts the LevelDB files it maps)
# and open fds, the leader, and the operations answered and failed in the
# minute. At the end: m1's RssAnon over the last minutes (the median of up to
# 10) at most 1.25x (+16 MB) of the same median just after the warm-up (a
# third of the run, at least 1 minute: LevelDB's two 64 MiB memtables and
# 32 MiB cache fill first), as a sawtooth of ~70 MB (memtables filling and
# flushed) makes any single minute's figure noise; its fds at the end at most
# +16 of after the warm-up; every member running, and answered operations in
# every minute; exit 1 otherwise.
# Needs root (network namespaces). KSHIM_E2E_TARGET=etcd runs real etcd.
set -euo pipefail
source "$(dirname "$0")/netns_lib.sh"
net_reexec_in_hub "ks" "$@"
source "$(dirname "$0")/lib.sh"
trap 'e2e_cleanup; net_down' EXIT

KIND=$KSHIM_E2E_TARGET
MINUTES=${SOAK_MINUTES:-60}
[ "$MINUTES" -ge 3 ] || { echo "SOAK_MINUTES must be at least 3" >&2; exit 2; }
FAULT_EVERY=${FAULT_EVERY:-60}
ALL="1 2 3"
FLAGS=(--auto-compaction-mode revision --auto-compaction-retention 10000)
STATS=$E2E_TMP/load.jsonl

# anon_mb PID: the process's anonymous resident memory (RssAnon). VmRSS also
# counts the LevelDB table files it maps, which grow with the data, not
# with a leak.
anon_mb() { awk '/^RssAnon/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "-"; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# counters CURRENT: "ok err" of the load's last stats line
counters() { tail -1 "$STATS" 2>/dev/null | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read() or "{}"); print(d.get("ok",0), d.get("err",0))' 2>/dev/null || echo "0 0"; }
a_follower() { # a member other than m1 and other than the leader
    local l i
    l=$(leader_of "$ALL")
    for i in 3 2; do [ "$i" != "$l" ] && { echo "$i"; return; }; done
    echo 3
}

FAULTS=0
fault() {
    local kind=$((FAULTS % 4)) i l
    FAULTS=$((FAULTS + 1))
    case $kind in
    0)
        i=$(a_follower)
        log "fault $FAULTS: kill -9 m$i, restart in 5 s"
        kill9_server "${MPID[$i]}"
        sleep 5
        member_start "$KIND" "$i" new "${FLAGS[@]}"
        ;;
    1)
        l=$(leader_of "$ALL")
        [ -n "$l" ] || l=1
        log "fault $FAULTS: partition the leader m$l for 10 s"
        partition "$l"
        sleep 10
        heal "$l"
        ;;
    2)
        i=$(a_follower)
        log "fault $FAULTS: SIGSTOP m$i for 5 s"
        kill -STOP "${MPID[$i]}" 2>/dev/null || true
        sleep 5
        kill -CONT "${MPID[$i]}" 2>/dev/null || true
        ;;
    3)
        l=$(leader_of "$ALL")
        i=$((l % 3 + 1))
        log "fault $FAULTS: move the leader m$l to m$i"
        local id
        id=$(hctl "$i" endpoint status -w json 2>/dev/null |
            "$PY" -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])' 2>/dev/null) || true
        [ -n "$l" ] && [ -n "$id" ] && hctl "$l" move-leader "$id" >/dev/null 2>&1 || true
        ;;
    esac
}

net_up 3
for i in $ALL; do member_start "$KIND" "$i" new "${FLAGS[@]}"; done
for i in $ALL; do member_ready "$i" 30 || die "member $i did not start"; done
wait_leader "$ALL" 20 >/dev/null || die "no leader"

"$PY" "$E2E_DIR/soak_load.py" "$STATS" 10.77.2.1:2379 10.77.2.2:2379 10.77.2.3:2379 &
LOAD=$!
E2E_PIDS+=("$LOAD")

WARM=$((MINUTES / 3))
[ "$WARM" -ge 1 ] || WARM=1
printf '%6s %7s %14s %14s %14s %10s %8s\n' minute leader "m1 anon/fds" "m2 anon/fds" "m3 anon/fds" ok/min err/min
start=$SECONDS next_fault=$((SECONDS + FAULT_EVERY)) prev_ok=0 prev_err=0 stalled=0
M1_RSS=() # m1's RssAnon each minute (index = minute)
for minute in $(seq "$MINUTES"); do
    while [ $SECONDS -lt $((start + minute * 60)) ]; do
        if [ $SECONDS -ge $next_fault ]; then
            fault
            next_fault=$((SECONDS + FAULT_EVERY))
        fi
        sleep 1
    done
    read -r ok err < <(counters)
    cols=()
    for i in $ALL; do
        rss=$(anon_mb "${MPID[$i]}")
        if [ "$i" = 1 ]; then M1_RSS[$minute]=$rss; fi
        cols+=("$rss/$(fds "${MPID[$i]}")")
    done
    printf '%6d %7s %14s %14s %14s %10d %8d\n' "$minute" "m$(leader_of "$ALL")" "${cols[@]}" \
        $((ok - prev_ok)) $((err - prev_err))
    [ $((ok - prev_ok)) -gt 0 ] || stalled=$((stalled + 1))
    prev_ok=$ok prev_err=$err
    if [ "$minute" = "$WARM" ]; then warm_fds=$(fds "${MPID[1]}"); fi
done
kill "$LOAD" 2>/dev/null || true

# median MB FROM TO: the median of m1's RssAnon over those minutes
median() {
    local i
    for i in $(seq "$1" "$2"); do echo "${M1_RSS[$i]}"; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
WIN=$(((MINUTES - WARM) / 2))
[ "$WIN" -le 10 ] || WIN=10
[ "$WIN" -ge 1 ] || WIN=1
early=$(median $((WARM + 1)) $((WARM + WIN)))
late=$(median $((MINUTES - WIN + 1)) "$MINUTES")
end_fds=$(fds "${MPID[1]}")
echo "m1 anon MB, median of minutes $((WARM + 1))-$((WARM + WIN)): $early; of minutes $((MINUTES - WIN + 1))-$MINUTES: $late (highest minute: $(printf '%s\n' "${M1_RSS[@]}" | sort -n | tail -1)); fds after the warm-up ${warm_fds}, at the end ${end_fds}"
[ "$late" -le $((early * 5 / 4 + 16)) ] && pass "m1's anonymous memory stayed flat" ||
    fail "m1's anonymous memory grew: $early -> $late MB (medians)"
[ "$end_fds" -le $((warm_fds + 16)) ] && pass "m1's fds stayed flat" || fail "m1's fds grew: $warm_fds -> $end_fds"
check_eq "minutes without an answered operation" 0 "$stalled"
for i in $ALL; do
    kill -0 "${MPID[$i]}" 2>/dev/null && pass "m$i running at the end" || fail "m$i is not running at the end"
done
echo "SUMMARY: $MINUTES minutes, $FAULTS faults, $(counters | awk '{print $1}') operations answered"
for i in $ALL; do stop_server "${MPID[$i]}"; done
finish
