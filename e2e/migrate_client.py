"""e2e/migrate_client.py: the etcd side of e2e/test_migrate.sh (python3-etcd3).

  load HOST:PORT            10,000 keys: 9,000 in 90 txns of 100 puts, 1,000
                            single puts (every 10th on one of 3 leases), 500
                            overwrites (several versions), 200 deletes, then a
                            compaction 300 revisions back; prints the
                            compaction revision.
  write HOST:PORT STOPFILE  until STOPFILE exists: puts of new and existing
                            keys, deletes, multi-key txns, leased puts, a
                            lease granted every 40 ops and the oldest revoked
                            every 100 (its keys deleted by etcd); prints the
                            number of ops.
  norm FILE...              `etcdctl get -w json` files as canonical lines.
  leases HOST:PORT          every lease: id, granted TTL, attached keys
                            (sorted); the remaining TTL left out.
"""
import base64
import json
import os
import random
import sys


def client(ep):
    import etcd3

    host, port = ep.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=10)


def load(ep):
    c = client(ep)
    for t in range(90):
        ops = [c.transactions.put("k/%05d" % (t * 100 + i), "v%d" % (t * 100 + i)) for i in range(100)]
        c.transaction(compare=[], success=ops, failure=[])
    leases = [c.lease(600) for _ in range(3)]
    for i in range(1000):
        lease = leases[i % 3] if i % 10 == 0 else None
        c.put("s/%04d" % i, "s%d" % i, lease=lease)
    for i in range(500):
        c.put("k/%05d" % (i * 17 % 9000), "again-%d" % i)
    for i in range(200):
        c.delete("k/%05d" % (i * 45))
    _, meta = c.get("k/00001")
    rev = meta.response_header.revision
    c.compact(rev - 300)
    print(rev - 300)


def write(ep, stop):
    c = client(ep)
    rnd = random.Random(7)
    leases = []
    ops = 0
    while not os.path.exists(stop):
        op = rnd.randrange(10)
        key = "w/%04d" % rnd.randrange(2000)
        if ops % 40 == 0:
            leases.append(c.lease(300 + ops % 200))
        if ops % 100 == 99 and len(leases) > 1:
            leases.pop(0).revoke()
        elif op < 4:
            c.put(key, "w%d" % ops)
        elif op < 6:
            c.delete(key)
        elif op < 7:
            c.put("k/%05d" % rnd.randrange(9000), "live-%d" % ops)
        elif op < 8 and leases:
            c.put(key, "leased-%d" % ops, lease=rnd.choice(leases))
        else:
            puts = [c.transactions.put("t/%03d" % k, "t%d" % ops) for k in rnd.sample(range(500), 5)]
            c.transaction(compare=[], success=puts + [c.transactions.delete(key)], failure=[])
        ops += 1
    print(ops)


def norm(path):
    doc = json.load(open(path))
    out = ["revision %d count %d" % (doc["header"]["revision"], doc.get("count", 0))]
    for kv in doc.get("kvs", []):
        out.append(
            "%r %r c=%d m=%d v=%d lease=%d"
            % (base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")), kv.get("create_revision", 0),
               kv.get("mod_revision", 0), kv.get("version", 0), kv.get("lease", 0))
        )
    return out


def leases(ep):
    c = client(ep)
    out = []
    import etcd3.etcdrpc as rpc

    resp = c.leasestub.LeaseLeases(rpc.LeaseLeasesRequest(), c.timeout, metadata=c.metadata)
    for st in sorted(resp.leases, key=lambda s: s.ID):
        t = c.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=st.ID, keys=True), c.timeout,
                                        metadata=c.metadata)
        out.append("lease %x granted=%d alive=%s keys=%s" % (st.ID, t.grantedTTL, t.TTL > 0, sorted(t.keys)))
    return out


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "load":
        load(sys.argv[2])
    elif cmd == "write":
        write(sys.argv[2], sys.argv[3])
    elif cmd == "norm":
        for p in sys.argv[2:]:
            print("\n".join(norm(p)))
    elif cmd == "leases":
        print("\n".join(leases(sys.argv[2])))
    else:
        sys.exit(__doc__)
