#!/usr/bin/python3
"""disk_writer.py: fill the disk through kshimd, then check nothing acked is lost.

  disk_writer.py fill PORT ACKLOG SECONDS   puts 64 KiB values (key full/%06d)
        until a put fails for good or SECONDS pass; logs "ack N REV" per
        acknowledged put (flushed) and "fail N CODE" per failed one.
  disk_writer.py verify PORT ACKLOG         every acked put is present with the
        acknowledged mod_revision and its value; prints a summary; exit 1 if not.
"""
import sys
import time

import etcd3
import etcd3.etcdrpc as etcdrpc
import grpc

VALUE_SIZE = 64 * 1024


def key(n):
    return b"full/%06d" % n


def value(n):
    return (b"%06d" % n) * (VALUE_SIZE // 6)


def fill(port, acklog, seconds):
    client = etcd3.client(host="127.0.0.1", port=port, timeout=5)
    deadline = time.time() + seconds
    n = 0
    fails = 0
    with open(acklog, "w") as log:
        while time.time() < deadline and fails < 5:
            try:
                resp = client.kvstub.Put(etcdrpc.PutRequest(key=key(n), value=value(n)), 5)
                log.write("ack %d %d\n" % (n, resp.header.revision))
            except grpc.RpcError as exc:
                log.write("fail %d %s\n" % (n, exc.code().name))
                fails += 1
                time.sleep(0.2)
            log.flush()
            n += 1
    print("fill: %d attempted, %d failed" % (n, fails))


def verify(port, acklog):
    client = etcd3.client(host="127.0.0.1", port=port, timeout=10)
    acks = [tuple(map(int, l.split()[1:])) for l in open(acklog) if l.startswith("ack ")]
    bad = []
    for n, rev in acks:
        resp = client.kvstub.Range(etcdrpc.RangeRequest(key=key(n)), 10)
        if not resp.kvs:
            bad.append("acked put %d (rev %d) is lost" % (n, rev))
        elif resp.kvs[0].mod_revision != rev or resp.kvs[0].value != value(n):
            bad.append("acked put %d: rev %d, acked %d" % (n, resp.kvs[0].mod_revision, rev))
    print("verify: %d acked puts, %d problems" % (len(acks), len(bad)))
    for b in bad[:10]:
        print("  " + b)
    return 0 if acks and not bad else 1


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(verify(int(sys.argv[2]), sys.argv[3]))
