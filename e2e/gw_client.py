#!/usr/bin/env python3
"""gw_client.py PORT: python3-etcd3gw (Debian's client of etcd's JSON
gateway) against 127.0.0.1:PORT: put, get, prefix, lease, watch, delete and
revoke; prints a transcript for e2e/test_http_gateway.sh to diff between
real etcd and kshimd. etcd 3.4 serves /v3/ (the client defaults to
/v3alpha/, which 3.4 dropped)."""
import sys
import threading
import time

from etcd3gw.client import Etcd3Client

c = Etcd3Client(host="127.0.0.1", port=int(sys.argv[1]), api_path="/v3/")
print("put", c.put("/gw/k1", "v1"))
print("get", c.get("/gw/k1"))
lease = c.lease(ttl=30)
print("lease ttl > 0", lease.ttl() > 0)
print("put with lease", c.put("/gw/k2", "v2", lease=lease))
print("lease keys", lease.keys())
print("lease refresh", lease.refresh())
print("prefix", [(v, m["key"]) for v, m in c.get_prefix("/gw/")])
events, cancel = c.watch("/gw/w")


def writer():
    time.sleep(0.5)
    c.put("/gw/w", "x1")


threading.Thread(target=writer).start()
for ev in events:
    print("watch event", ev["kv"]["key"], ev["kv"]["value"])
    break
cancel()
print("delete", c.delete("/gw/k1"))
print("get after delete", c.get("/gw/k1"))
print("revoke", lease.revoke())
print("get k2 after revoke", c.get("/gw/k2"))
