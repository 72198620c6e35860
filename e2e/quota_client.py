"""e2e/quota_client.py: the client half of e2e/test_quota_alarm.sh (python3-etcd3's
raw gRPC stubs, so errors come back as the gRPC code and text the server sent).

    quota_client.py fill HOST:PORT PREFIX VALUE_BYTES MAX_PUTS
        puts PREFIX<i> = value(i) until the first error; prints one JSON line
        {"acked": n, "code": "RESOURCE_EXHAUSTED", "details": "..."}
    quota_client.py verify HOST:PORT PREFIX N VALUE_BYTES
        reads PREFIX0..PREFIX<N-1>; prints "ok" or the first key that is
        missing or has another value
    quota_client.py refused HOST:PORT
        a Txn with a put and a LeaseGrant; one line each: "<op> <code> <details>"
    quota_client.py activate HOST:PORT TYPE
        Alarm ACTIVATE of TYPE (NOSPACE, CORRUPT) for the member answering;
        prints the alarms of the response (member ids as ID)
    quota_client.py putlat HOST:PORT PREFIX SECONDS
        puts for SECONDS (bounded: at most 100000 puts); prints
        "<puts> <p50 ms> <max ms>" of their latencies
"""
import json
import sys
import time

import etcd3
import etcd3.etcdrpc as etcdrpc
import grpc


def value(i, size):
    seed = ("%08d" % i).encode()
    return (seed * (size // len(seed) + 1))[:size]


def connect(target):
    host, port = target.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=10)


def fill(c, prefix, size, max_puts):
    acked = 0
    for i in range(max_puts):
        try:
            c.kvstub.Put(etcdrpc.PutRequest(key=(prefix + str(i)).encode(), value=value(i, size)), 10)
        except grpc.RpcError as e:
            print(json.dumps({"acked": acked, "code": e.code().name, "details": e.details()}))
            return
        acked += 1
    print(json.dumps({"acked": acked, "code": "", "details": "quota never reached"}))


def verify(c, prefix, n, size):
    for i in range(n):
        v, _ = c.get(prefix + str(i))
        if v != value(i, size):
            print("missing or wrong: %s%d" % (prefix, i))
            return
    print("ok")


def refused(c):
    put = etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=b"txn-key", value=b"v"))
    for name, call in (
        ("txn-put", lambda: c.kvstub.Txn(etcdrpc.TxnRequest(success=[put]), 10)),
        ("lease-grant", lambda: c.leasestub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=60), 10)),
    ):
        try:
            call()
            print(name, "OK")
        except grpc.RpcError as e:
            print(name, e.code().name, e.details())


def activate(c, kind):
    member = c.maintenancestub.Status(etcdrpc.StatusRequest(), 10).header.member_id
    req = etcdrpc.AlarmRequest(action=etcdrpc.AlarmRequest.ACTIVATE, memberID=member,
                               alarm=etcdrpc.AlarmType.Value(kind))
    resp = c.maintenancestub.Alarm(req, 10)
    print(" ".join("ID:" + etcdrpc.AlarmType.Name(a.alarm) for a in resp.alarms if a.memberID == member))


def putlat(c, prefix, seconds):
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(lat) < 100000:
        t0 = time.monotonic()
        c.kvstub.Put(etcdrpc.PutRequest(key=(prefix + str(len(lat))).encode(), value=b"x"), 10)
        lat.append((time.monotonic() - t0) * 1000)
    lat.sort()
    print("%d %.2f %.2f" % (len(lat), lat[len(lat) // 2], lat[-1]))


def main():
    cmd, target = sys.argv[1], sys.argv[2]
    c = connect(target)
    if cmd == "fill":
        fill(c, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "verify":
        verify(c, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "refused":
        refused(c)
    elif cmd == "activate":
        activate(c, sys.argv[3])
    elif cmd == "putlat":
        putlat(c, sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
