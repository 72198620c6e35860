#!/usr/bin/env bash
# e2e/test_hashkv.sh: Hash and HashKV (`etcdctl endpoint hashkv`, the Hash
# RPC through python3-etcd3's raw stub).
#   - two kshimd members get the same puts, each with other unrelated
#     requests in between (lease grant + revoke, reads, status, alarm list):
#     equal HashKV at every revision compared, and an equal whole-store Hash;
#   - real etcd 3.4 given the same puts reports the same HashKV values
#     (the definition is etcd's, byte for byte), before and after a
#     compaction, and the same error for a compacted and a future revision;
#   - one different value: different HashKV from that revision on, the same
#     before it; a different Hash;
#   - with auth on, only root gets a hash (etcd's errors otherwise).
#
# Ports: 25410 (real etcd, peer 25460), 25411 and 25412 (two kshimd)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

start_etcd etcd-h 25410
ETCD_PID=$SERVER_PID
start_target kshimd-a 25411
A_PID=$SERVER_PID
start_target kshimd-b 25412
B_PID=$SERVER_PID
wait_ready "$ETCD_PID" 25410
wait_ready "$A_PID" 25411
wait_ready "$B_PID" 25412

unrelated() { # PORT N: one of four requests that change no key
    local port=$1 n=$2
    case $((n % 4)) in
    0)
        local id
        id=$(ctl "$port" lease grant 600 | awk '{print $2}')
        ctl "$port" lease revoke "$id" >/dev/null
        ;;
    1) ctl "$port" get k --prefix >/dev/null ;;
    2) ctl "$port" endpoint status >/dev/null ;;
    3) ctl "$port" alarm list >/dev/null ;;
    esac
}

# load PORT EVERY: 40 puts over 13 keys and a delete, with an unrelated
# request after every EVERY-th put (0: none).
load() {
    local port=$1 every=$2 i
    for i in $(seq 1 40); do
        ctl "$port" put "k$((i % 13))" "v$i" >/dev/null
        if [ "$every" -gt 0 ] && [ $((i % every)) -eq 0 ]; then unrelated "$port" "$i"; fi
        if [ "$i" -eq 30 ]; then ctl "$port" del k5 >/dev/null; fi
    done
}
load 25410 0
load 25411 3
load 25412 5

hashkv() { # PORT REV: the hash, or the error text
    ctl "$1" endpoint hashkv --rev "$2" 2>&1 | grep -v '^{"level"' |
        sed -E 's/^127\.0\.0\.1:[0-9]+, //; s/^Failed to get the hash of endpoint 127\.0\.0\.1:[0-9]+ /Failed /'
}
hash_all() {
    $PY - "$1" <<'EOF'
import sys, etcd3, etcd3.etcdrpc as rpc
c = etcd3.client(host="127.0.0.1", port=int(sys.argv[1]))
r = c.maintenancestub.Hash(rpc.HashRequest(), 10)
print(r.hash, r.header.revision)
EOF
}

for rev in 2 10 25 31 42 0; do
    a=$(hashkv 25411 $rev)
    check_eq "HashKV at rev $rev: two kshimd, other unrelated requests" "$a" "$(hashkv 25412 $rev)"
    check_eq "HashKV at rev $rev: real etcd's value" "$(hashkv 25410 $rev)" "$a"
done
check_eq "HashKV is a number" 1 "$([[ "$(hashkv 25411 0)" =~ ^[0-9]+$ ]] && echo 1)"
check_eq "Hash: two kshimd" "$(hash_all 25411)" "$(hash_all 25412)"
check_eq "HashKV of a future revision: etcd's error" "$(hashkv 25410 99)" "$(hashkv 25411 99)"

# Compaction: the hash keeps only what survives it, as etcd's.
for p in 25410 25411 25412; do ctl $p compact 20 --physical >/dev/null; done
for rev in 20 3; do
    check_eq "HashKV of compacted revision $rev: etcd's error" "$(hashkv 25410 $rev)" "$(hashkv 25411 $rev)"
done
for rev in 21 31 0; do
    a=$(hashkv 25411 $rev)
    check_eq "after compaction, HashKV at rev $rev: two kshimd" "$a" "$(hashkv 25412 $rev)"
    check_eq "after compaction, HashKV at rev $rev: real etcd's value" "$(hashkv 25410 $rev)" "$a"
done

# Different data, different hash (from that revision on).
ctl 25411 put k1 one >/dev/null
ctl 25412 put k1 two >/dev/null
a=$(hashkv 25411 0)
b=$(hashkv 25412 0)
check_eq "one different value: different HashKV" 1 "$([ "$a" != "$b" ] && echo 1)"
check_eq "the same HashKV before it" "$(hashkv 25411 42)" "$(hashkv 25412 42)"
check_eq "one different value: different Hash" 1 "$([ "$(hash_all 25411)" != "$(hash_all 25412)" ] && echo 1)"

# Auth: Hash and HashKV need the root role, as in etcd.
for p in 25410 25411; do
    ctl $p user add root:rootpw >/dev/null
    ctl $p user grant-role root root >/dev/null
    ctl $p user add alice:alicepw >/dev/null
    ctl $p auth enable >/dev/null
    {
        hashkv $p 0 | sed -E 's/^[0-9]+$/HASH/' || true
        ctl $p --user alice:alicepw endpoint hashkv 2>&1 | grep -v '^{"level"' | sed -E 's/127\.0\.0\.1:[0-9]+/EP/g' || true
        ctl $p --user root:rootpw endpoint hashkv 2>&1 | sed -E 's/^127\.0\.0\.1:[0-9]+, [0-9]+$/EP, HASH/' || true
    } >"$E2E_TMP/auth.$p"
done
diff_files "auth: HashKV without a user, as a non-root user, as root" "$E2E_TMP/auth.25410" "$E2E_TMP/auth.25411"
check_eq "auth: root gets a hash" "EP, HASH" "$(tail -1 "$E2E_TMP/auth.25411")"

stop_server "$A_PID"
stop_server "$B_PID"
stop_server "$ETCD_PID"
finish
