#!/usr/bin/env python3
"""e2e/lease_expiry_client.py PORT N TTL BOUND_S: mass lease expiry probe.

Grants N leases of TTL seconds (pipelined gRPC futures), attaches one key
/exp/<i> to each, then, while the server expires them:
  - a watcher (Watch stream on /exp/, started before the grants) counts
    DELETE events and checks each carries prev_kv with the right lease;
    if the server answers Watch with Unimplemented, that part is skipped
    and a "SKIP watch" line says so;
  - another client times a Range of an unrelated key back to back
    (p50/p99/max latency while the revokes run);
  - the main thread polls a count-only Range of /exp/ until it reaches 0.
Prints "key=value" result lines; exit 0 when every key was deleted within
BOUND_S seconds of the last grant (and, with Watch, every DELETE seen
exactly once), else 1.
"""
import sys
import threading
import time

import grpc
from etcd3 import etcdrpc

PORT, N, TTL, BOUND = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
PREFIX = b"/exp/"
PREFIX_END = b"/exp0"
TARGET = "127.0.0.1:%d" % PORT
ok = True


def say(k, v):
    print("%s=%s" % (k, v), flush=True)


# ---- watcher ----
watch_state = {"deletes": 0, "bad": 0, "seen": set(), "dups": 0, "error": None, "ready": False}
watch_stop = threading.Event()
watch_ready = threading.Event()


def watch_requests():
    cr = etcdrpc.WatchCreateRequest(key=PREFIX, range_end=PREFIX_END, prev_kv=True)
    yield etcdrpc.WatchRequest(create_request=cr)
    watch_stop.wait()


def watcher(lease_of):
    ch = grpc.insecure_channel(TARGET)
    stub = etcdrpc.WatchStub(ch)
    try:
        for resp in stub.Watch(watch_requests()):
            if resp.created:
                watch_state["ready"] = True
                watch_ready.set()
            for ev in resp.events:
                if ev.type != 1:  # DELETE
                    continue
                k = ev.kv.key
                if k in watch_state["seen"]:
                    watch_state["dups"] += 1
                watch_state["seen"].add(k)
                watch_state["deletes"] += 1
                if not ev.HasField("prev_kv") or ev.prev_kv.lease != lease_of.get(k, -1):
                    watch_state["bad"] += 1
            if watch_stop.is_set():
                break
    except grpc.RpcError as e:
        if not watch_stop.is_set():
            watch_state["error"] = e.code()
    finally:
        watch_ready.set()
        ch.close()


# ---- latency probe ----
lat = []
probe_stop = threading.Event()


def prober():
    ch = grpc.insecure_channel(TARGET)
    kv = etcdrpc.KVStub(ch)
    req = etcdrpc.RangeRequest(key=b"/probe")
    while not probe_stop.is_set():
        t0 = time.monotonic()
        kv.Range(req, timeout=10)
        lat.append(time.monotonic() - t0)
    ch.close()


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]


def count_exp(kv):
    r = kv.Range(etcdrpc.RangeRequest(key=PREFIX, range_end=PREFIX_END, count_only=True), timeout=10)
    return r.count


def main():
    global ok
    ch = grpc.insecure_channel(TARGET)
    kv = etcdrpc.KVStub(ch)
    ls = etcdrpc.LeaseStub(ch)
    kv.Put(etcdrpc.PutRequest(key=b"/probe", value=b"x"), timeout=10)

    lease_of = {}
    wt = threading.Thread(target=watcher, args=(lease_of,), daemon=True)
    wt.start()
    watch_ready.wait(10)
    if watch_state["error"] == grpc.StatusCode.UNIMPLEMENTED or not watch_state["ready"]:
        print("SKIP watch: server answers Watch with %s; deletions checked by count only"
              % (watch_state["error"],), flush=True)
        watch_on = False
    else:
        watch_on = True

    t0 = time.monotonic()
    ids = []
    batch = 500
    for start in range(0, N, batch):
        futs = [ls.LeaseGrant.future(etcdrpc.LeaseGrantRequest(TTL=TTL), timeout=30)
                for _ in range(start, min(N, start + batch))]
        ids.extend(f.result().ID for f in futs)
    for start in range(0, N, batch):
        futs = []
        for i in range(start, min(N, start + batch)):
            key = PREFIX + b"%05d" % i
            lease_of[key] = ids[i]
            futs.append(kv.Put.future(etcdrpc.PutRequest(key=key, value=b"v", lease=ids[i]), timeout=30))
        for f in futs:
            f.result()
    t_granted = time.monotonic()
    say("setup_s", "%.2f" % (t_granted - t0))
    n0 = count_exp(kv)
    say("keys_before", n0)
    if n0 != N:
        ok = False

    pt = threading.Thread(target=prober, daemon=True)
    pt.start()
    t_first_gone = None
    remaining = n0
    deadline = t_granted + BOUND
    while time.monotonic() < deadline:
        remaining = count_exp(kv)
        now = time.monotonic()
        if remaining < N and t_first_gone is None:
            t_first_gone = now
        if remaining == 0:
            break
        time.sleep(0.2)
    t_done = time.monotonic()
    probe_stop.set()
    pt.join(15)
    say("keys_left", remaining)
    say("first_delete_after_last_grant_s", "%.2f" % ((t_first_gone or t_done) - t_granted))
    say("all_deleted_after_last_grant_s", "%.2f" % (t_done - t_granted))
    say("expiry_span_s", "%.2f" % (t_done - (t_first_gone or t_done)))
    say("probe_ranges", len(lat))
    say("range_p50_ms", "%.2f" % (pct(lat, 0.50) * 1000))
    say("range_p99_ms", "%.2f" % (pct(lat, 0.99) * 1000))
    say("range_max_ms", "%.2f" % (max(lat) * 1000 if lat else float("nan")))
    if remaining != 0:
        ok = False
    leases_left = len(ls.LeaseLeases(etcdrpc.LeaseLeasesRequest(), timeout=10).leases)
    say("leases_left", leases_left)
    if leases_left != 0:
        ok = False
    if watch_on:
        end = time.monotonic() + 5
        while watch_state["deletes"] < N and time.monotonic() < end:
            time.sleep(0.1)
        say("watch_deletes", watch_state["deletes"])
        say("watch_distinct", len(watch_state["seen"]))
        say("watch_dups", watch_state["dups"])
        say("watch_bad_prev_kv", watch_state["bad"])
        if (watch_state["deletes"] != N or len(watch_state["seen"]) != N
                or watch_state["bad"] or watch_state["dups"]):
            ok = False
    watch_stop.set()
    ch.close()
    say("result", "ok" if ok else "FAILED")
    return 0 if ok else 1


sys.exit(main())
