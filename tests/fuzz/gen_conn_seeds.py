#!/usr/bin/python3
"""gen_conn_seeds.py: writes the seed corpora of tests/fuzz/ (run from anywhere;
they are committed, so this only runs when a seed changes).

corpus/fuzz_client_conn/: whole client connections (HTTP/2 preface, SETTINGS,
HEADERS and DATA of real gRPC calls: KV, Watch, Lease, Auth, Maintenance,
Cluster), made with python3-h2 as a client. corpus/fuzz_kv_request/: one
selector byte + a request protobuf. corpus/fuzz_grpc_frame/: gRPC framing.
corpus/fuzz_auth_token/, corpus/fuzz_config_file/: strings and a YAML file.
The protobuf encoding is done by hand here (field numbers from proto/)."""
import os
import struct
import h2.config
import h2.connection

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_int(num, n):
    return varint(num << 3) + varint(n & 0xFFFFFFFFFFFFFFFF)


def put(key, value, lease=0, prev_kv=False):
    m = field_bytes(1, key) + field_bytes(2, value)
    if lease:
        m += field_int(3, lease)
    if prev_kv:
        m += field_int(4, 1)
    return m


def range_req(key, end=b"", limit=0, revision=0, count_only=False):
    m = field_bytes(1, key)
    if end:
        m += field_bytes(2, end)
    if limit:
        m += field_int(3, limit)
    if revision:
        m += field_int(4, revision)
    if count_only:
        m += field_int(9, 1)
    return m


def delete_range(key, end=b""):
    return field_bytes(1, key) + (field_bytes(2, end) if end else b"")


def txn():
    # compare: result EQUAL(0) target VALUE(3) key "a" value "1"
    cmp = field_int(1, 0) + field_int(2, 3) + field_bytes(3, b"a") + field_bytes(7, b"1")
    success = field_bytes(2, put(b"a", b"2"))  # RequestOp.request_put = 2
    failure = field_bytes(1, range_req(b"a"))  # RequestOp.request_range = 1
    return field_bytes(1, cmp) + field_bytes(2, success) + field_bytes(3, failure)


def compaction(rev):
    return field_int(1, rev)


def watch_create(key, end=b"", start=0):
    c = field_bytes(1, key) + (field_bytes(2, end) if end else b"")
    if start:
        c += field_int(3, start)
    return field_bytes(1, c)  # WatchRequest.create_request = 1


def grpc_msg(pb):
    return b"\x00" + struct.pack(">I", len(pb)) + pb


def conversation(calls):
    """calls: list of (path, [messages], end_stream)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    for path, msgs, end in calls:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                (":authority", "127.0.0.1"), ("content-type", "application/grpc"),
                                ("te", "trailers"), ("grpc-timeout", "5S")])
        for i, m in enumerate(msgs):
            conn.send_data(sid, grpc_msg(m), end_stream=end and i == len(msgs) - 1)
        if not msgs and end:
            conn.end_stream(sid)
    conn.ping(b"12345678")
    return conn.data_to_send()


def write(dirname, name, data):
    d = os.path.join(HERE, "corpus", dirname)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    kv = "/etcdserverpb.KV/"
    convs = {
        "put_get": [(kv + "Put", [put(b"foo", b"bar")], True), (kv + "Range", [range_req(b"foo")], True)],
        "range_prefix": [(kv + "Range", [range_req(b"/registry/", b"/registry0", limit=500)], True)],
        "txn": [(kv + "Txn", [txn()], True)],
        "delete": [(kv + "DeleteRange", [delete_range(b"a", b"z")], True)],
        "compact": [(kv + "Put", [put(b"k", b"v")], True), (kv + "Compact", [compaction(1)], True)],
        "watch": [("/etcdserverpb.Watch/Watch", [watch_create(b"foo", b"fop", 1)], False),
                  (kv + "Put", [put(b"foo", b"x")], True)],
        "lease": [("/etcdserverpb.Lease/LeaseGrant", [field_int(1, 60) + field_int(2, 7)], True),
                  ("/etcdserverpb.Lease/LeaseKeepAlive", [field_int(1, 7)], False),
                  ("/etcdserverpb.Lease/LeaseTimeToLive", [field_int(1, 7) + field_int(2, 1)], True),
                  ("/etcdserverpb.Lease/LeaseRevoke", [field_int(1, 7)], True)],
        "auth": [("/etcdserverpb.Auth/Authenticate", [field_bytes(1, b"root") + field_bytes(2, b"pw")], True),
                 ("/etcdserverpb.Auth/UserAdd", [field_bytes(1, b"u") + field_bytes(2, b"p")], True),
                 ("/etcdserverpb.Auth/RoleAdd", [field_bytes(1, b"r")], True),
                 ("/etcdserverpb.Auth/UserList", [b""], True)],
        "maintenance": [("/etcdserverpb.Maintenance/Status", [b""], True),
                        ("/etcdserverpb.Maintenance/Alarm", [b""], True),
                        ("/etcdserverpb.Cluster/MemberList", [b""], True)],
        "unknown_method": [("/etcdserverpb.KV/Nope", [b"\x08\x01"], True)],
        "bad_protobuf": [(kv + "Put", [b"\x0a\xff\xff\xff\xff\x0f"], True)],
    }
    for name, calls in convs.items():
        write("fuzz_client_conn", name, conversation(calls))
    requests = {"range": (0, range_req(b"a", b"z", limit=3)), "range_rev": (0, range_req(b"a", revision=2)),
                "put": (1, put(b"a", b"1", prev_kv=True)), "delete": (2, delete_range(b"a", b"\x00")),
                "txn": (3, txn()), "compact": (4, compaction(2))}
    for name, (sel, pb) in requests.items():
        write("fuzz_kv_request", name, bytes([sel]) + pb)
    write("fuzz_grpc_frame", "two", b"\x05" + grpc_msg(put(b"a", b"b")) + grpc_msg(b""))
    write("fuzz_grpc_frame", "split", b"\x01" + grpc_msg(b"x" * 300))
    write("fuzz_auth_token", "jwt", b"\x00eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6InJvb3QifQ.c2ln")
    write("fuzz_auth_token", "simple", b"\x01abcdefghijklmnop.9")
    write("fuzz_auth_token", "splice", b"\x02xyz")
    write("fuzz_auth_token", "opts", b"\x03jwt,pub-key=a.pem,priv-key=b.pem,sign-method=RS256,ttl=5m")
    write("fuzz_auth_token", "duration", b"\x041h30m0.5s")
    write("fuzz_config_file", "sample", b"name: 'default'\ndata-dir: /tmp/x\nlisten-client-urls: http://localhost:2379\n"
          b"client-transport-security:\n  cert-file: a.crt\n  client-cert-auth: true\nauto-compaction-retention: 1\n")


if __name__ == "__main__":
    main()
