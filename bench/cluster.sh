#!/usr/bin/env bash
# bench/cluster.sh -- the 3-member section of bench/run.sh: the same rows on a
# 3-member real etcd cluster and a 3-member kshimd cluster, both up at once,
# each row on etcd then on kshimd (alternating with --repeat), the benchmark
# client given all three members' endpoints as etcd's performance docs do.
#
# Owns: the six members it starts (fresh data dirs under /tmp, stopped by PID
# through run.sh's stop_server), their ports (CLUSTER_PORT: etcd's members on
# CLUSTER_PORT+1..3 / peers +51..53, kshimd's on CLUSTER_PORT+101..103 /
# +151..153, see bench/lib/members.sh) and $RUNDIR/leaders.tsv (who led when).
# Before the rows the leadership is moved to m1 (CLUSTER_LEADER=1; empty
# leaves it where the election put it), so the 1-connection rows, which dial
# the first endpoint, talk to the leader on both clusters alike.
# KSHIMD_BEFORE=path adds a third cluster of that kshimd binary (tag
# kshimd3b, ports CLUSTER_PORT+201..203 / +251..253) that runs every row
# too, in turn with the others, for a before/after table of the same run.
#
# Sourced by bench/run.sh (functions only). Run directly it is
# `bench/run.sh --section cluster ARGS...`.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  exec bash "$(dirname "$0")/run.sh" --section cluster "$@"
fi

# shellcheck source=lib/members.sh
. "$SRC/bench/lib/members.sh"

CLUSTER_ROWS="put-c1,put-c100,@mem,range-l-c100,range-s-c100,txn-put-c100"
CLUSTER_LEADER=${CLUSTER_LEADER-1}
declare -A CLUSTER_BASE

cluster_bases() { # the base ports: etcd's, kshimd's, KSHIMD_BEFORE's
  local b=${CLUSTER_PORT:-$((PORT + 20))}
  echo "$b $((b + 100)) $((b + 200))"
}

cluster_check_ports() {
  local b n
  for b in $(cluster_bases); do
    for n in 1 2 3; do
      port_busy $((b + n)) && die "port $((b + n)) is busy (another bench run? set CLUSTER_PORT=)"
      port_busy $((b + 50 + n)) && die "port $((b + 50 + n)) is busy (set CLUSTER_PORT=)"
    done
  done
  true
}

# start_cluster TAG BIN BASE: three members, healthy with an agreed leader
start_cluster() {
  local tag=$1 bin=$2 b=$3 n d
  SRV_PID[$tag]=
  SRV_DATA[$tag]=
  CLUSTER_BASE[$tag]=$b
  SRV_EPS[$tag]=$(members_endpoints "$b")
  for n in 1 2 3; do
    d=$(mktemp -d "/tmp/kshim-bench-$tag-m$n.XXXXXX")
    SRV_DATA[$tag]="${SRV_DATA[$tag]} $d"
    MEMBERS_FLAGS="$MEMBERS_FLAGS $EXTRA_FLAGS" \
      member_start "$bin" "$b" "$n" "$d" "$RUNDIR/$tag-m$n-server.log" "bench-$tag"
    SRV_PID[$tag]="${SRV_PID[$tag]} $!"
  done
  for _ in $(seq 300); do
    alive "${SRV_PID[$tag]}" || die "$tag: a member exited at start (logs $RUNDIR/$tag-m*-server.log)"
    if ctl "$tag" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1 &&
       members_have_leader "$b"; then
      log "$tag up: $bin pids${SRV_PID[$tag]} endpoints ${SRV_EPS[$tag]} leader m$(members_leader "$b")"
      printf '%s\t@rss0\t%s\n' "$tag" "$(proc_kb "${SRV_PID[$tag]}" VmRSS)" >> "$MEMF"
      return 0
    fi
    sleep 0.1
  done
  die "$tag: no healthy cluster with a leader in 30 s (logs $RUNDIR/$tag-m*-server.log)"
}

# lead_from TAG N: moves the leadership to member mN (etcdctl move-leader,
# sent to the current leader) and waits until all three name it
lead_from() {
  local tag=$1 want=$2 b=${CLUSTER_BASE[$1]} cur id
  cur=$(members_leader "$b")
  [ "$cur" = "$want" ] && return 0
  id=$(members_status "$b" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["Endpoint"].endswith(":'"$((b + want))"'"):
        print("%x" % s["Status"]["header"]["member_id"])')
  "$ETCDCTL" --endpoints "127.0.0.1:$((b + cur))" move-leader "$id" >> "$RUNDIR/$tag-move-leader.log" 2>&1 ||
    { log "$tag: move-leader to m$want failed (log $RUNDIR/$tag-move-leader.log)"; return 0; }
  wait_until 10 eval '[ "$(members_leader "$b")" = "$want" ]' ||
    log "$tag: m$want did not become leader in 10 s"
}

note_leader() { # TAG WHEN: appends "tag when leader" to leaders.tsv
  printf '%s\t%s\tm%s\n' "$1" "$2" "$(members_leader "${CLUSTER_BASE[$1]}")" >> "$RUNDIR/leaders.tsv"
}

run_cluster_section() {
  local be bk bb t tags=(etcd3 kshimd3)
  read -r be bk bb <<< "$(cluster_bases)"
  : > "$RUNDIR/leaders.tsv"
  start_cluster etcd3 "$ETCD" "$be"
  start_cluster kshimd3 "$KSHIMD" "$bk"
  if [ -n "${KSHIMD_BEFORE:-}" ]; then
    [ -x "$KSHIMD_BEFORE" ] || die "no kshimd at KSHIMD_BEFORE=$KSHIMD_BEFORE"
    start_cluster kshimd3b "$KSHIMD_BEFORE" "$bb"
    tags=(etcd3 kshimd3b kshimd3)
  fi
  for t in "${tags[@]}"; do note_leader "$t" elected; done
  if [ -n "$CLUSTER_LEADER" ]; then for t in "${tags[@]}"; do lead_from "$t" "$CLUSTER_LEADER"; done; fi
  for t in "${tags[@]}"; do note_leader "$t" "before the rows"; done
  run_rows "$CLUSTER_ROWS" "${tags[@]}"
  for t in "${tags[@]}"; do note_leader "$t" "after the rows"; done
  for t in "${tags[@]}"; do stop_server "$t"; done
}

cluster_report_notes() {
  local t
  echo "- three members each (m1..m3, heartbeat 100 ms, election 1000 ms, all on 127.0.0.1), both" \
       "clusters up at once; the benchmark gets --endpoints m1,m2,m3 and dials its connections" \
       "round-robin over them (10 conns: 4 to m1, 3 to m2, 3 to m3; 1 conn: m1), so followers" \
       "forward their share of the writes to the leader"
  for t in etcd3 kshimd3 ${KSHIMD_BEFORE:+kshimd3b}; do
    echo "- $t leader: $(awk -F'\t' -v t="$t" '$1==t {printf "%s%s %s", (n++ ? ", " : ""), $2, $3}' \
      "$RUNDIR/leaders.tsv")"
  done
}
