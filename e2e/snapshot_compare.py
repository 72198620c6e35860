"""e2e/snapshot_compare.py: helpers of e2e/test_snapshot_etcd.sh.

  load HOST:PORT   bulk keys through python3-etcd3: 400 keys, some with 3
                   versions, values up to 6 KB, one 300 KB value (bbolt
                   overflow pages), a prefix delete.
  kvs FILE...      prints, per `etcdctl get --prefix -w json` output file,
                   the header revision and every kv (key, value, create/mod
                   revision, version, lease) as one canonical line each, so two
                   servers' answers compare with diff.
"""
import base64
import json
import sys


def load(endpoint):
    import etcd3

    host, port = endpoint.rsplit(":", 1)
    c = etcd3.client(host=host, port=int(port))
    for i in range(400):
        c.put("bulk/%05d" % i, ("v%d-" % i) * (i % 1000 // 4 + 1))
    for i in range(0, 400, 7):
        c.put("bulk/%05d" % i, "second-%d" % i)
        c.put("bulk/%05d" % i, "third-%d" % i)
    c.put("big", "B" * 300000)
    c.delete_prefix("bulk/0009")
    c.put("big", "b" * 250000)


def kvs(path):
    doc = json.load(open(path))
    out = ["revision %d" % doc["header"]["revision"]]
    for kv in doc.get("kvs", []):
        key = base64.b64decode(kv["key"])
        val = base64.b64decode(kv.get("value", ""))
        out.append(
            "%r len=%d sum=%d c=%d m=%d v=%d lease=%d"
            % (key, len(val), sum(val) % 1000003, kv.get("create_revision", 0), kv.get("mod_revision", 0),
               kv.get("version", 0), kv.get("lease", 0))
        )
    return out


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(sys.argv[2])
    elif sys.argv[1] == "kvs":
        for p in sys.argv[2:]:
            print("\n".join(kvs(p)))
    else:
        sys.exit("usage: snapshot_compare.py load HOST:PORT | kvs FILE...")
