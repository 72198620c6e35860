"""e2e/crash_writer.py: writers and checker for test_crash_safety.sh.

Owns both halves of the durability check:
    crash_writer.py write PORT PREFIX MODE ACKLOG STOPFILE
        sequential puts PREFIX+NNNNNN -> "N" through python3-etcd3's KV stub
        (grpc C core). MODE is "alone" (no other writer runs meanwhile) or
        "shared". Each put is tried once: an acknowledged one is logged as
        "ack KEY REV" (REV = the PutResponse header revision), a failed one
        as "fail KEY CODE"; each line is flushed before the next put. After a
        failure the client is rebuilt (fresh channel, no grpc back-off) and
        the writer goes on with N+1. Stops when STOPFILE exists.
    crash_writer.py verify PORT ACKLOG...
        reads every crash/ key back and checks:
        - every acked key exists with its value, version 1, and
          mod_revision == the acked REV;
        - per log, acked revisions strictly increase; in an "alone" log two
          acked puts with no failed attempt between them have consecutive
          revisions;
        - no key exists that no writer attempted;
        - each put makes exactly one revision, so the keys' mod_revisions
          are exactly 2..store revision, each once (nothing lost, nothing
          applied twice on replay).
        Prints PASS/FAIL lines and a summary; exit status 1 on any FAIL.
"""
import os
import sys
import time

import etcd3
import etcd3.etcdrpc as etcdrpc
import grpc

ROOT = b"crash/"


def connect(port):
    return etcd3.client(host="127.0.0.1", port=port, timeout=2)


def write(port, prefix, mode, acklog, stopfile):
    client = connect(port)
    n = acked = failed = 0
    with open(acklog, "w") as log:
        log.write("# %s\n" % mode)
        while not os.path.exists(stopfile):
            key = "%s%06d" % (prefix, n)
            try:
                resp = client.kvstub.Put(etcdrpc.PutRequest(
                    key=key.encode(), value=b"%d" % n), 2)
                log.write("ack %s %d\n" % (key, resp.header.revision))
                acked += 1
            except grpc.RpcError as exc:
                log.write("fail %s %s\n" % (key, exc.code().name))
                failed += 1
                client.close()
                time.sleep(0.05)
                client = connect(port)
            log.flush()
            n += 1
    client.close()
    print("writer %s: %d acked, %d failed" % (prefix, acked, failed))


def read_log(path):
    """-> (mode, [(kind, key bytes, rev or None, seq)])"""
    mode, entries = None, []
    for line in open(path):
        parts = line.split()
        if line.startswith("#"):
            mode = parts[1]
        elif len(parts) == 3 and parts[0] in ("ack", "fail"):
            rev = int(parts[2]) if parts[0] == "ack" else None
            seq = int(parts[1][-6:])
            entries.append((parts[0], parts[1].encode(), rev, seq))
    return mode, entries


def check_log(mode, entries, store, failures):
    acks = [e for e in entries if e[0] == "ack"]
    for _, key, rev, seq in acks:
        kv = store.get(key)
        if kv is None:
            failures.append("acked put %s (rev %d) is lost" % (key, rev))
        elif kv.mod_revision != rev or kv.value != b"%d" % seq or kv.version != 1:
            failures.append("acked put %s: rev %d value %r version %d, acked rev %d"
                            % (key, kv.mod_revision, kv.value, kv.version, rev))
    for prev, cur in zip(acks, acks[1:]):
        if cur[2] <= prev[2]:
            failures.append("acked revisions not increasing: %s@%d then %s@%d"
                            % (prev[1], prev[2], cur[1], cur[2]))
        if mode == "alone" and cur[3] == prev[3] + 1 and cur[2] != prev[2] + 1:
            failures.append("gap between consecutive acked puts %s@%d and %s@%d"
                            % (prev[1], prev[2], cur[1], cur[2]))
    return len(acks), sum(1 for e in entries if e[0] == "fail" and e[1] in store)


def verify(port, logs):
    client = connect(port)
    resp = client.kvstub.Range(etcdrpc.RangeRequest(key=ROOT, range_end=b"crash0"), 10)
    store = {kv.key: kv for kv in resp.kvs}
    store_rev = resp.header.revision
    client.close()

    failures = []
    attempted = set()
    total_acked = total_unacked_present = 0
    for path in logs:
        mode, entries = read_log(path)
        if mode not in ("alone", "shared"):
            failures.append("%s: no mode header" % path)
        attempted.update(e[1] for e in entries)
        acked, unacked_present = check_log(mode, entries, store, failures)
        total_acked += acked
        total_unacked_present += unacked_present
    for key in store:
        if key not in attempted:
            failures.append("key %r was never written" % key)
    revs = sorted(kv.mod_revision for kv in store.values())
    if revs != list(range(2, store_rev + 1)):
        dup = len(revs) - len(set(revs))
        failures.append("key revisions are not exactly 2..%d (%d keys, %d duplicate revisions)"
                        % (store_rev, len(revs), dup))

    print("acked %d, unacked but committed %d, keys %d, store revision %d"
          % (total_acked, total_unacked_present, len(store), store_rev))
    for f in failures[:20]:
        print("FAIL: " + f)
    if len(failures) > 20:
        print("FAIL: ... %d more" % (len(failures) - 20))
    if not failures:
        print("PASS: all %d acknowledged puts durable with their revisions" % total_acked)
    return 1 if failures else 0


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "write":
        write(port, *sys.argv[3:7])
    elif mode == "verify":
        sys.exit(verify(port, sys.argv[3:]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
