"""e2e/crash_writer.py: writer and checker for test_crash_safety.sh.

Owns both halves of the durability check:
    crash_writer.py write PORT ACKLOG STOPFILE
        sequential puts crash/NNNNNN -> "N" through python3-etcd3 (grpc C
        core). Each put is tried once: an acknowledged one is logged as
        "ack N REV" (REV = the PutResponse header revision), a failed one as
        "fail N <code>"; every line is flushed before the next put. After a
        failure the client is rebuilt (fresh channel, no grpc back-off) and the
        writer goes on with N+1. Stops when STOPFILE exists.
    crash_writer.py verify PORT ACKLOG
        reads everything back and checks: every acked key exists with
        value N, version 1 and mod_revision == REV; acked revisions strictly
        increase; two acked puts with no failed attempt between them have
        consecutive revisions; no key beyond the last attempt exists; and,
        as each put makes exactly one revision, the store revision equals
        1 + the number of crash/ keys. Prints PASS/FAIL lines and a summary.
"""
import os
import sys
import time

import etcd3
import etcd3.etcdrpc as etcdrpc
import grpc

PREFIX = b"crash/"


def key(n):
    return PREFIX + b"%06d" % n


def connect(port):
    return etcd3.client(host="127.0.0.1", port=port, timeout=2)


def write(port, acklog, stopfile):
    client = connect(port)
    n = 0
    acked = failed = 0
    with open(acklog, "w") as log:
        while not os.path.exists(stopfile):
            try:
                resp = client.kvstub.Put(etcdrpc.PutRequest(key=key(n), value=b"%d" % n), 2)
                log.write("ack %d %d\n" % (n, resp.header.revision))
                acked += 1
            except grpc.RpcError as exc:
                log.write("fail %d %s\n" % (n, exc.code().name))
                failed += 1
                client.close()
                time.sleep(0.05)
                client = connect(port)
            log.flush()
            n += 1
    client.close()
    print("writer: %d acked, %d failed" % (acked, failed))


def verify(port, acklog):
    entries = []
    for line in open(acklog):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":
            entries.append(("ack", int(parts[1]), int(parts[2])))
        elif len(parts) == 3 and parts[0] == "fail":
            entries.append(("fail", int(parts[1]), None))
        # a torn last line (writer killed mid-write) cannot happen: it exits cleanly
    client = connect(port)
    resp = client.kvstub.Range(etcdrpc.RangeRequest(
        key=PREFIX, range_end=b"crash0"), 10)
    store = {kv.key: kv for kv in resp.kvs}
    store_rev = resp.header.revision
    client.close()

    failures = []
    acks = [e for e in entries if e[0] == "ack"]
    fails = [e for e in entries if e[0] == "fail"]
    for _, n, rev in acks:
        kv = store.get(key(n))
        if kv is None:
            failures.append("acked put %d (rev %d) is lost" % (n, rev))
        elif kv.mod_revision != rev or kv.value != b"%d" % n or kv.version != 1:
            failures.append("acked put %d: rev %d value %r version %d, acked rev %d"
                            % (n, kv.mod_revision, kv.value, kv.version, rev))
    for prev, cur in zip(acks, acks[1:]):
        if cur[2] <= prev[2]:
            failures.append("acked revisions not increasing: %d@%d then %d@%d"
                            % (prev[1], prev[2], cur[1], cur[2]))
        if cur[1] == prev[1] + 1 and cur[2] != prev[2] + 1:
            failures.append("gap between consecutive acked puts %d@%d and %d@%d"
                            % (prev[1], prev[2], cur[1], cur[2]))
    last = entries[-1][1] if entries else -1
    for k in store:
        if int(k[len(PREFIX):]) > last:
            failures.append("key %r was never written" % k)
    if store_rev != 1 + len(store):
        failures.append("store revision %d != 1 + %d keys" % (store_rev, len(store)))
    unacked_present = sum(1 for _, n, _ in fails if key(n) in store)

    print("acked %d, failed %d (of which %d committed anyway), store revision %d"
          % (len(acks), len(fails), unacked_present, store_rev))
    for f in failures[:20]:
        print("FAIL: " + f)
    if len(failures) > 20:
        print("FAIL: ... %d more" % (len(failures) - 20))
    if not failures:
        print("PASS: all %d acknowledged puts durable with their revisions" % len(acks))
    return 1 if failures else 0


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "write":
        write(port, sys.argv[3], sys.argv[4])
    elif mode == "verify":
        sys.exit(verify(port, sys.argv[3]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
