#!/usr/bin/env python3
"""e2e/soak_load.py: the mixed client load of `make soak` (e2e/soak.sh).

Usage: soak_load.py STATS_FILE HOST:PORT [HOST:PORT ...]

Runs until killed: per endpoint, two writer threads (put of a 1 KiB value on
one of 2,000 keys, delete, a compare-and-swap txn on the key's version, now
and then a lease granted, put under and revoked), one reader thread
(linearizable and serializable gets, a 100-key prefix range), and one watch on
the whole prefix, re-created when its stream breaks. A failed call (the member
is down, partitioned, or has no leader) counts as an error and the thread
moves on; nothing is retried in place. Every 10 s one JSON line of counters
since the start goes to STATS_FILE: {"t","ok","err","watch_events"}.
python3-etcd3 (grpc C core) from Debian.
"""
import json
import random
import sys
import threading
import time

import etcd3

KEYS = 2000
VALUE = b"v" * 1024
PREFIX = "soak/"

lock = threading.Lock()
counts = {"ok": 0, "err": 0, "watch_events": 0}


def count(what, n=1):
    with lock:
        counts[what] += n


def client(endpoint):
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=3)


def key():
    return PREFIX + "%05d" % random.randrange(KEYS)


def writer(endpoint):
    c = client(endpoint)
    while True:
        try:
            r = random.random()
            k = key()
            if r < 0.70:
                c.put(k, VALUE)
            elif r < 0.85:
                c.delete(k)
            elif r < 0.97:
                _, meta = c.get(k)
                version = meta.version if meta else 0
                c.transaction(compare=[c.transactions.version(k) == version],
                              success=[c.transactions.put(k, VALUE)], failure=[c.transactions.get(k)])
            else:
                lease = c.lease(5)
                c.put(k, VALUE, lease=lease)
                lease.revoke()
            count("ok")
        except Exception:
            count("err")
            time.sleep(0.05)


def reader(endpoint):
    c = client(endpoint)
    while True:
        try:
            r = random.random()
            if r < 0.5:
                c.get(key())
            elif r < 0.9:
                c.get(key(), serializable=True)
            else:
                start = key()
                list(c.get_range(start, start + "\xff", limit=100))
            count("ok")
        except Exception:
            count("err")
            time.sleep(0.05)


def watcher(endpoint):
    while True:
        try:
            c = client(endpoint)
            events, cancel = c.watch_prefix(PREFIX)
            try:
                for _ in events:
                    count("watch_events")
            finally:
                cancel()
        except Exception:
            pass
        time.sleep(0.5)


def main():
    stats_path, endpoints = sys.argv[1], sys.argv[2:]
    for ep in endpoints:
        for fn in (writer, writer, reader, watcher):
            threading.Thread(target=fn, args=(ep,), daemon=True).start()
    t0 = time.time()
    with open(stats_path, "a") as out:
        while True:
            time.sleep(10)
            with lock:
                line = dict(counts, t=round(time.time() - t0))
            out.write(json.dumps(line) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
