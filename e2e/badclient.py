"""e2e/badclient.py: malformed and oversized requests for test_bad_input.sh.

Owns the raw-socket half of the bad-input test:
    /usr/bin/python3 badclient.py PORT MODE > transcript.jsonl
    /usr/bin/python3 badclient.py compare REF.jsonl TARGET.jsonl
MODE "wire" sends broken HTTP/2 and gRPC by hand (python3-h2 builds the
frames, raw sockets carry them); MODE "size-small" / "size-default" sends Put
requests of chosen sizes through the grpc C core (python3-etcd3's KV stub) to
a server started with --max-request-bytes 4096 / the default. Each case
prints one JSON line {"case", "result", "healthy_after"}; "result" is the
gRPC code + message the server answered (or how it dropped the connection)
and "healthy_after" whether a fresh connection can still Range afterwards.
"compare" checks a target transcript against real etcd's by RULES below.
"""
import json
import socket
import struct
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TIMEOUT = 5.0


def grpc_frame(payload, declared=None):
    n = len(payload) if declared is None else declared
    return b"\x00" + struct.pack(">I", n) + payload


def range_request(key):
    """etcdserverpb.RangeRequest{key} encoded by hand (field 1, bytes)."""
    return b"\x0a" + bytes([len(key)]) + key


def h2_call(port, path, body, content_type="application/grpc"):
    """One unary gRPC call over a fresh connection; returns the outcome."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [
        (":method", "POST"), (":scheme", "http"), (":path", path),
        (":authority", "127.0.0.1:%d" % port), ("content-type", content_type),
        ("te", "trailers"), ("grpc-timeout", "4S")])
    conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    headers, trailers, data = {}, {}, b""
    outcome = None
    deadline = time.monotonic() + TIMEOUT
    try:
        while outcome is None and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                outcome = "connection closed"
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    headers.update(dict(ev.headers))
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers.update(dict(ev.headers))
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    outcome = "ended"
                elif isinstance(ev, h2.events.StreamReset):
                    outcome = "RST_STREAM %s" % ev.error_code.name
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    outcome = "GOAWAY %s" % ev.error_code.name
            sock.sendall(conn.data_to_send())
    except socket.timeout:
        outcome = "timeout"
    finally:
        sock.close()
    status = trailers.get("grpc-status", headers.get("grpc-status"))
    message = trailers.get("grpc-message", headers.get("grpc-message"))
    return {"outcome": outcome or "timeout", "http_status": headers.get(":status"),
            "content_type": headers.get("content-type"),
            "grpc_status": None if status is None else int(status),
            "grpc_message": None if message is None else urllib.parse.unquote(message),
            "data_len": len(data)}


def healthy(port):
    """A good Range on a fresh connection answers grpc-status 0 with data."""
    try:
        r = h2_call(port, "/etcdserverpb.KV/Range", grpc_frame(range_request(b"health")))
    except OSError:
        return False
    return r["grpc_status"] == 0 and r["data_len"] > 5


def raw_exchange(port, payload, linger=3.0):
    """Send raw bytes, read until close or timeout; classify the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(payload)
    got = b""
    closed = False
    deadline = time.monotonic() + linger
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += chunk
    sock.close()
    return {"closed": closed, "answer": classify(got)}


def classify(got):
    """Describe what a server wrote back: nothing, HTTP/1 status, or frames."""
    if not got:
        return "nothing"
    if got.startswith(b"HTTP/1."):
        return got.split(b"\r\n", 1)[0].decode("latin-1")
    frames = []
    pos = 0
    while pos + 9 <= len(got):
        length = int.from_bytes(got[pos:pos + 3], "big")
        ftype = got[pos + 3]
        if ftype == 7 and pos + 17 <= len(got):
            code = int.from_bytes(got[pos + 13:pos + 17], "big")
            frames.append("GOAWAY(%d)" % code)
        else:
            frames.append({4: "SETTINGS", 8: "WINDOW_UPDATE", 6: "PING"}.get(ftype, "type%d" % ftype))
        pos += 9 + length
    return " ".join(frames)


def emit(case, result, port):
    print(json.dumps({"case": case, "result": result, "healthy_after": healthy(port)},
                     sort_keys=True), flush=True)


def wire_cases(port):
    emit("garbage preface", raw_exchange(port, b"GARBAGE\x00\xff\x13 not a preface at all\r\n\r\n" * 4), port)
    emit("http1 request", raw_exchange(port, b"GET /etcdserverpb.KV/Range HTTP/1.1\r\nHost: x\r\n\r\n"), port)
    bad_settings = b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5  # length not multiple of 6
    emit("valid preface, malformed SETTINGS", raw_exchange(port, PREFACE + bad_settings), port)
    data_on_stream0 = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
    emit("valid preface, DATA on stream 0",
         raw_exchange(port, PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + data_on_stream0), port)
    emit("truncated grpc frame", h2_call(port, "/etcdserverpb.KV/Range",
                                         grpc_frame(b"0123456789", declared=100)), port)
    emit("truncated grpc prefix", h2_call(port, "/etcdserverpb.KV/Range", b"\x00\x00\x00"), port)
    emit("undecodable protobuf", h2_call(port, "/etcdserverpb.KV/Range",
                                         grpc_frame(b"\xff\xff\xff\xff\xff\xff")), port)
    emit("wrong wire type", h2_call(port, "/etcdserverpb.KV/Range",
                                    grpc_frame(b"\x0d\x00\x00\x00\x00")), port)
    emit("compressed flag without grpc-encoding", h2_call(
        port, "/etcdserverpb.KV/Range", b"\x01" + grpc_frame(range_request(b"k"))[1:]), port)
    emit("unknown method", h2_call(port, "/etcdserverpb.KV/Nope", grpc_frame(b"")), port)
    emit("unknown service", h2_call(port, "/nosuch.Service/Method", grpc_frame(b"")), port)
    emit("empty request body", h2_call(port, "/etcdserverpb.KV/Range", b""), port)
    emit("empty Range message", h2_call(port, "/etcdserverpb.KV/Range", grpc_frame(b"")), port)
    emit("good range", h2_call(port, "/etcdserverpb.KV/Range", grpc_frame(range_request(b"k"))), port)


def size_cases(port, sizes):
    import etcd3
    import etcd3.etcdrpc as etcdrpc
    import grpc
    client = etcd3.client(host="127.0.0.1", port=port, timeout=20)
    for size in sizes:
        try:
            resp = client.kvstub.Put(etcdrpc.PutRequest(key=b"big", value=b"v" * size), 20)
            result = {"code": "OK", "revision": resp.header.revision}
        except grpc.RpcError as exc:
            result = {"code": exc.code().name, "message": exc.details()}
        emit("put value of %d bytes" % size, result, port)
    client.close()


# How each case is compared. "closed": a connection-level error, the
# connection must be closed (any answer before that: nothing, SETTINGS,
# GOAWAY); "http1": any answer or close is fine; "code": same grpc-status
# as real etcd; "code+message": same status and grpc-message; "size":
# same code, same message for InvalidArgument, same message prefix for
# ResourceExhausted (its numbers are grpc-go's sizes). Every case also needs
# healthy_after. The expected real-etcd status is asserted too, so a change
# of the truth is noticed.
RULES = {
    "garbage preface": ("closed", None),
    "http1 request": ("http1", None),
    "valid preface, malformed SETTINGS": ("closed", None),
    "valid preface, DATA on stream 0": ("closed", None),
    "truncated grpc frame": ("code", 2),
    "truncated grpc prefix": ("code", 2),
    "undecodable protobuf": ("code", 13),
    "wrong wire type": ("code", 13),
    "compressed flag without grpc-encoding": ("code", 13),
    "unknown method": ("code", 12),
    "unknown service": ("code", 12),
    "empty request body": ("code", 2),
    "empty Range message": ("code+message", 3),
    "good range": ("code", 0),
}


def compare(ref_path, tgt_path):
    """Print PASS/FAIL lines comparing two transcripts by RULES."""
    ref = [json.loads(line) for line in open(ref_path)]
    tgt = {}
    for line in open(tgt_path):
        rec = json.loads(line)
        tgt[rec["case"]] = rec
    for r in ref:
        case = r["case"]
        t = tgt.get(case)
        if t is None:
            print("FAIL: %s: no answer from target" % case)
            continue
        rule, want = RULES.get(case, ("size", None))
        rr, tr = r["result"], t["result"]
        problems = []
        if not r["healthy_after"]:
            problems.append("real etcd not healthy after (test bug?)")
        if not t["healthy_after"]:
            problems.append("target not serving a fresh connection afterwards")
        if rule == "closed":
            if not rr["closed"]:
                problems.append("real etcd kept the connection open (test bug?)")
            if not tr["closed"]:
                problems.append("target kept the connection open")
        elif rule in ("code", "code+message"):
            if rr["grpc_status"] != want:
                problems.append("real etcd answered %s, expected %s" % (rr["grpc_status"], want))
            for f in ("http_status", "content_type", "grpc_status", "outcome"):
                if rr[f] != tr[f]:
                    problems.append("%s: etcd %r, target %r" % (f, rr[f], tr[f]))
            if rule == "code+message" and rr["grpc_message"] != tr["grpc_message"]:
                problems.append("grpc_message: etcd %r, target %r"
                                % (rr["grpc_message"], tr["grpc_message"]))
        elif rule == "size":
            if rr["code"] != tr["code"]:
                problems.append("code: etcd %s, target %s" % (rr["code"], tr["code"]))
            elif rr["code"] == "INVALID_ARGUMENT" and rr["message"] != tr["message"]:
                problems.append("message: etcd %r, target %r" % (rr["message"], tr["message"]))
            elif rr["code"] == "RESOURCE_EXHAUSTED" and not tr["message"].startswith(
                    "grpc: received message larger than max"):
                problems.append("message: etcd %r, target %r" % (rr["message"], tr["message"]))
        if problems:
            print("FAIL: %s: %s" % (case, "; ".join(problems)))
        else:
            print("PASS: %s" % case)


def main():
    if sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
        return
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "wire":
        wire_cases(port)
    elif mode == "size-small":
        size_cases(port, [1000, 4000, 8 * 1024, 520 * 1024, 600 * 1024])
    elif mode == "size-default":
        size_cases(port, [600 * 1024, 1536 * 1024, 1600 * 1024, 2047 * 1024, 2100 * 1024])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
