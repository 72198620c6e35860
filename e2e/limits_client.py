"""e2e/limits_client.py: abusive clients for test_resource_limits.sh.

Owns the raw-socket half of the resource-limit test:
    /usr/bin/python3 limits_client.py PORT ATTACK [ARGS...] > result.json
Each ATTACK runs one misbehaving client against 127.0.0.1:PORT while a
well-behaved client (a thread: one unary Range on a fresh connection after
another, each with a 5 s timeout) keeps asking; it prints one JSON line:
{"attack", "outcome" (how the server ended the attacker), "probe_ok",
"probe_fail" (the good client's answers during the attack), ...}.
Frames are built by hand (hpack for header blocks) and written to raw
sockets, so the attacker does what no conforming client would.

ATTACKs: settings-flood, ping-flood, rapid-reset, continuation, empty-data
(HTTP/2 floods); partial-messages N (N streams each holding ~960 KB of an
unfinished 1 MiB message); slowloris N [PLAIN_PORT] (N connections that send nothing
or their first bytes one a second: the HTTP/2 preface, or with PLAIN_PORT a
TLS ClientHello to the TLS port PORT, the good client then asking on
PLAIN_PORT); slowloris-http1 N (the same with an HTTP/1.1 request head, for
the gateway); conn-cap N (N established connections at once: how many are
served; the good client holds one of its own); slow-watch N BYTES (a Watch
whose client does not read while N values of BYTES are put, then reads);
puts N BYTES (those writes alone); many-watchers N (N watchers created on
one Watch stream, then an event for the first); big-put BYTES and big-txn OPS (one
request past --max-request-bytes / --max-txn-ops).
"""
import json
import socket
import ssl
import struct
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
             6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
             11: "ENHANCE_YOUR_CALM"}
PROBE_TIMEOUT = 5.0


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def grpc_msg(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def pb_bytes(field, value):
    """A length-delimited protobuf field (lengths < 2^21)."""
    n, varint = len(value), b""
    while True:
        b = n & 0x7F
        n >>= 7
        varint += bytes([b | (0x80 if n else 0)])
        if not n:
            return bytes([field << 3 | 2]) + varint + value


def request_headers(port, path):
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "127.0.0.1:%d" % port), ("content-type", "application/grpc"),
            ("te", "trailers")]


# ---- the well-behaved client ----

def unary(port, path, body, timeout=PROBE_TIMEOUT):
    """One unary call on a fresh connection: (grpc-status or None, message, how it ended)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(port, path) + [("grpc-timeout", "%dS" % (timeout - 1))])
    pending = grpc_msg(body)
    md, ended = {}, None
    deadline = time.monotonic() + timeout
    try:
        while ended is None and time.monotonic() < deadline:
            n = min(len(pending), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if pending and n > 0:  # what flow control lets out now
                conn.send_data(sid, pending[:n], end_stream=n == len(pending))
                pending = pending[n:]
                sock.sendall(conn.data_to_send())
                continue
            sock.sendall(conn.data_to_send())
            chunk = sock.recv(65536)
            if not chunk:
                ended = "closed"
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    md.update(dict(ev.headers))
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = "ended"
                elif isinstance(ev, h2.events.StreamReset):
                    ended = "RST_STREAM"
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    ended = "GOAWAY"
            sock.sendall(conn.data_to_send())
    except (socket.timeout, OSError):
        ended = ended or "timeout"
    finally:
        sock.close()
    st = md.get("grpc-status")
    return (None if st is None else int(st)), md.get("grpc-message"), ended or "timeout"


def put(port, key, value):
    return unary(port, "/etcdserverpb.KV/Put", pb_bytes(1, key) + pb_bytes(2, value), timeout=20)


class Probe(threading.Thread):
    """Ranges one after another until stopped: each on a fresh connection,
    or (persistent) all on one connection opened first."""

    def __init__(self, port, persistent=False):
        super().__init__(daemon=True)
        self.port, self.ok, self.fail, self.errors = port, 0, 0, []
        self.stopping = threading.Event()
        self.held = established(port) if persistent else None

    def run(self):
        while not self.stopping.is_set():
            if self.held:
                got = range_on(self.held[0], self.held[1], self.port)
                st, msg, ended = (0 if got == "status 0" else None), None, got
            else:
                try:
                    st, msg, ended = unary(self.port, "/etcdserverpb.KV/Range", pb_bytes(1, b"probe"))
                except OSError as exc:
                    st, msg, ended = None, None, str(exc)
            if st == 0:
                self.ok += 1
            else:
                self.fail += 1
                self.errors.append("%s %s %s" % (st, msg, ended))
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.join(PROBE_TIMEOUT + 2)
        return {"probe_ok": self.ok, "probe_fail": self.fail, "probe_errors": self.errors[:3]}


# ---- reading what the server says to an attacker ----

class Listener(threading.Thread):
    """Reads an attacker's socket to its end; records GOAWAY codes."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.buf, self.goaway, self.closed, self.nbytes = sock, b"", None, False, 0
        self.frames = {}

    def run(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.nbytes += len(chunk)
                self.parse(chunk)
        except OSError:
            pass
        self.closed = True

    def parse(self, chunk):
        self.buf += chunk
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype = self.buf[3]
            self.frames[ftype] = self.frames.get(ftype, 0) + 1
            if ftype == GOAWAY and self.goaway is None:
                self.goaway = H2_ERRORS.get(int.from_bytes(self.buf[13:17], "big"), "?")
            self.buf = self.buf[9 + length:]

    def outcome(self, wait):
        self.join(wait)
        if self.goaway:
            return "GOAWAY %s, %s" % (self.goaway, "closed" if self.closed else "open")
        return "closed" if self.closed else "open"


def send_all(sock, data):
    """Send; a server that closed on us ends the attack (not an error)."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def open_attacker(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    lst = Listener(sock)
    lst.start()
    return sock, lst


def flood(port, unit, count, batch=2000, pace=0.0):
    """Send count copies of unit (bytes or a function of i) in batches."""
    sock, lst = open_attacker(port)
    sent = 0
    while sent < count and not lst.closed:
        n = min(batch, count - sent)
        data = b"".join(unit(sent + i) if callable(unit) else unit for i in range(n))
        if not send_all(sock, data):
            break
        sent += n
        if pace:
            time.sleep(pace)
    outcome = lst.outcome(3.0)
    sock.close()
    return {"outcome": outcome, "sent": sent}


def attack_settings_flood(port):
    return flood(port, frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 1000)), 100000)


def attack_ping_flood(port):
    return flood(port, frame(PING, 0, 0, b"12345678"), 200000)


def attack_rapid_reset(port):
    enc = hpack.Encoder()
    hdrs = request_headers(port, "/etcdserverpb.KV/Range")
    body = frame(DATA, END_STREAM, 0, grpc_msg(pb_bytes(1, b"probe")))

    def one(i):
        sid = 2 * i + 1
        block = enc.encode(hdrs)
        data = body[:5] + struct.pack(">I", sid) + body[9:]
        return (frame(HEADERS, END_HEADERS, sid, block) + data +
                frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))
    return flood(port, one, 30000, batch=1000)


def attack_continuation(port):
    """HEADERS without END_HEADERS, then CONTINUATION after CONTINUATION,
    each a block of fresh literal header fields, never ending the block."""
    enc = hpack.Encoder()
    first = enc.encode(request_headers(port, "/etcdserverpb.KV/Range"))
    sock, lst = open_attacker(port)
    sent = 0
    ok = send_all(sock, frame(HEADERS, 0, 1, first))
    # 8 literal fields (not indexed: each one adds to the header list), ~16 KiB
    fields = [("x-flood-%d" % j, "v" * 2000) for j in range(8)]
    block = b"".join(b"\x00" + hpack.Encoder().encode([f])[1:] for f in fields)
    while ok and sent < 2048 and not lst.closed:  # up to 32 MiB of header block
        ok = send_all(sock, frame(CONTINUATION, 0, 1, block))
        sent += 1
    outcome = lst.outcome(3.0)
    sock.close()
    return {"outcome": outcome, "sent": sent}


def attack_empty_data(port):
    """A Watch stream (stays open) flooded with empty DATA frames."""
    enc = hpack.Encoder()
    head = frame(HEADERS, END_HEADERS, 1, enc.encode(request_headers(port, "/etcdserverpb.Watch/Watch")))
    sock, lst = open_attacker(port)
    send_all(sock, head)
    return flood_on(sock, lst, frame(DATA, 0, 1), 500000)


def attack_partial_messages(port, streams):
    """Streams that each send most of a 1 MiB Put and never finish it: the
    server holds every partial message, streams x ~960 KB."""
    enc = hpack.Encoder()
    sock, lst = open_attacker(port)
    time.sleep(0.2)
    send_all(sock, frame(SETTINGS, ACK, 0))  # our windows are the server's from here
    value_prefix = b"\x0a\x01k\x12\x80\x80\x40"  # PutRequest{key "k", value (1 MiB - 9)}
    chunk = b"v" * 16000
    sent = 0
    while sent < streams and not lst.closed:
        sid = 2 * sent + 1
        data = frame(HEADERS, END_HEADERS, sid, enc.encode(request_headers(port, "/etcdserverpb.KV/Put")))
        data += frame(DATA, 0, sid, b"\x00" + struct.pack(">I", 1 << 20) + value_prefix + chunk)
        data += frame(DATA, 0, sid, chunk) * 59
        if not send_all(sock, data):
            break
        sent += 1
    outcome = lst.outcome(3.0)
    sock.close()
    return {"outcome": outcome, "sent": sent}


def flood_on(sock, lst, unit, count, batch=5000):
    sent = 0
    while sent < count and not lst.closed:
        if not send_all(sock, unit * batch):
            break
        sent += batch
    outcome = lst.outcome(3.0)
    sock.close()
    return {"outcome": outcome, "sent": sent}


# ---- connection-level attacks ----

def client_hello():
    """The first bytes of a real TLS handshake (what a slow client trickles)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


SLOW_HTTP1 = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 64


def attack_slowloris(port, n, tls=False, seconds=14, payload=None):
    """n connections, each sending its first bytes one a second (half of them
    send nothing at all). Reports how many the server closed and when."""
    payload = payload or (client_hello() if tls else PREFACE)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    start = time.monotonic()
    closed_at = [None] * n
    tick = 0
    while time.monotonic() - start < seconds and None in closed_at:
        for i, s in enumerate(socks):
            if closed_at[i] is not None:
                continue
            try:
                got = s.recv(65536)
                if not got:
                    closed_at[i] = time.monotonic() - start
                    continue
            except BlockingIOError:
                pass
            except OSError:
                closed_at[i] = time.monotonic() - start
                continue
            if i % 2 == 0 and tick < len(payload):
                try:
                    s.send(payload[tick:tick + 1])
                except OSError:
                    closed_at[i] = time.monotonic() - start
        tick += 1
        time.sleep(1.0)
    for s in socks:
        s.close()
    done = [t for t in closed_at if t is not None]
    return {"outcome": "%d of %d closed" % (len(done), n),
            "closed": len(done), "last_close_s": round(max(done), 1) if done else None}


def established(port):
    """A connection that completed the HTTP/2 preface exchange, or None."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


def range_on(s, conn, port):
    """A Range on an established connection: grpc-status or what happened."""
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(port, "/etcdserverpb.KV/Range"))
    conn.send_data(sid, grpc_msg(pb_bytes(1, b"probe")), end_stream=True)
    md = {}
    try:
        s.sendall(conn.data_to_send())
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return "closed"
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.TrailersReceived) or isinstance(ev, h2.events.ResponseReceived):
                    md.update(dict((k.decode(), v.decode()) for k, v in ev.headers))
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    return "status %s" % md.get("grpc-status")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    return "GOAWAY %s" % ev.error_code.name
            s.sendall(conn.data_to_send())
    except OSError as exc:
        return "closed" if not isinstance(exc, socket.timeout) else "timeout"
    return "timeout"


def attack_conn_cap(port, n, port2=None):
    """Open n connections at once and keep them (every other one to port2,
    a second listener of the same server, if given); each then asks one
    Range."""
    held = []
    for i in range(n):
        p = port2 if port2 and i % 2 else port
        try:
            held.append(established(p) + (p,))
        except OSError:
            held.append(None)
        time.sleep(0.005)
    time.sleep(0.5)
    answers = []
    for item in held:
        answers.append("connect failed" if item is None else range_on(item[0], item[1], item[2]))
    # a connection freed makes room for a new one
    for item in held:
        if item:
            item[0].close()
    time.sleep(0.5)
    s, conn = established(port)
    after = range_on(s, conn, port)
    s.close()
    served = answers.count("status 0")
    goaway = answers.count("GOAWAY ENHANCE_YOUR_CALM")
    closed = answers.count("closed")
    return {"outcome": "%d served, %d refused with GOAWAY ENHANCE_YOUR_CALM, %d closed, %d other"
            % (served, goaway, closed, len(answers) - served - goaway - closed),
            "served": served, "refused": goaway + closed, "after_close": after}


def open_watch(port, timeout):
    """A plain connection with one Watch stream opened: (socket, h2 connection,
    stream id), nothing sent yet: the caller sends its requests."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(port, "/etcdserverpb.Watch/Watch"))
    return s, conn, sid


def grpc_messages(conn, chunk, buf):
    """Feeds chunk to conn, acknowledging its DATA (the caller sends
    conn.data_to_send()); returns the gRPC messages complete in buf and the
    new data, and what is left of a partial one."""
    for ev in conn.receive_data(chunk):
        if isinstance(ev, h2.events.DataReceived):
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            buf += ev.data
    msgs = []
    while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[1:5], "big"):
        end = 5 + int.from_bytes(buf[1:5], "big")
        msgs.append(buf[5:end])
        buf = buf[end:]
    return msgs, buf


def attack_slow_watch(port, writes, value_size):
    """A Watch of the whole key space whose client never reads its socket
    while writes x value_size bytes are put; then it reads everything and
    must get every revision once, in order."""
    s, conn, sid = open_watch(port, 30)
    # WatchRequest{create_request{key "\0", range_end "\0"}}: every key
    create = pb_bytes(1, pb_bytes(1, b"\x00") + pb_bytes(2, b"\x00"))
    conn.send_data(sid, grpc_msg(create))
    s.sendall(conn.data_to_send())
    time.sleep(0.5)
    first_rev = None
    value = b"w" * value_size
    for i in range(writes):
        st, msg, _ = put(port, b"slow/%06d" % i, value)
        if st != 0:
            return {"outcome": "put %d failed: %s %s" % (i, st, msg)}
    # now read: every event must come, in revision order
    buf, revs, events = b"", [], 0
    deadline = time.monotonic() + 30
    s.settimeout(2)
    while events < writes and time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            break
        msgs, buf = grpc_messages(conn, chunk, buf)
        for msg in msgs:
            keys = watch_event_keys(msg)
            events += len(keys)
            revs.extend(keys)
        s.sendall(conn.data_to_send())
    s.close()
    in_order = revs == [b"slow/%06d" % i for i in range(writes)]
    _ = first_rev
    return {"outcome": "%d of %d events%s" % (events, writes, ", in order" if in_order else ", NOT in order")}


def attack_many_watchers(port, n):
    """n watchers created on one Watch stream (key mw/i each); then a put of
    mw/0 must still reach the stream's first watcher."""
    s, conn, sid = open_watch(port, 10)
    s.sendall(conn.data_to_send())
    pending = b"".join(grpc_msg(pb_bytes(1, pb_bytes(1, b"mw/%d" % i))) for i in range(n))
    created, refused, reasons, got_event, buf = 0, 0, set(), False, b""
    deadline = time.monotonic() + 30
    put_done = False
    s.settimeout(0.05)
    while time.monotonic() < deadline and not got_event:
        while pending:  # as much as flow control lets out
            k = min(len(pending), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if k <= 0:
                break
            conn.send_data(sid, pending[:k])
            pending = pending[k:]
        s.sendall(conn.data_to_send())
        if created + refused == n and not put_done:
            put(port, b"mw/0", b"x")
            put_done = True
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        msgs, buf = grpc_messages(conn, chunk, buf)
        for msg in msgs:
            f = {}
            for field, _, val in pb_fields(msg):
                f.setdefault(field, val)
            if watch_event_keys(msg) == [b"mw/0"]:
                got_event = True
            elif f.get(3) and f.get(4):  # created + canceled: refused
                refused += 1
                reasons.add(f.get(6, b"").decode())
            elif f.get(3):
                created += 1
        s.sendall(conn.data_to_send())
    s.close()
    return {"outcome": "%d created, %d refused" % (created, refused), "reasons": sorted(reasons),
            "event_after": got_event}


def pb_fields(buf):
    """(field, wire type, value) of a protobuf message (varint / bytes only)."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = varint(buf, pos)
        elif wt == 2:
            n, pos = varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError("wire type %d" % wt)
        yield field, wt, val


def varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def watch_event_keys(msg):
    """The keys of a WatchResponse's events (field 11), in order."""
    keys = []
    for field, _, val in pb_fields(msg):
        if field == 11:  # Event
            for f2, _, v2 in pb_fields(val):
                if f2 == 2:  # kv
                    for f3, _, v3 in pb_fields(v2):
                        if f3 == 1:
                            keys.append(v3)
    return keys


def attack_puts(port, writes, value_size):
    """Not an attack: the slow-watch writes alone (its memory baseline)."""
    for i in range(writes):
        st, msg, _ = put(port, b"base/%06d" % i, b"b" * value_size)
        if st != 0:
            return {"outcome": "put %d failed: %s %s" % (i, st, msg)}
    return {"outcome": "%d puts" % writes}


def attack_big_put(port, size):
    st, msg, _ = put(port, b"big", b"b" * size)
    return {"outcome": "status %s: %s" % (st, msg)}


def attack_big_txn(port, ops):
    # TxnRequest{success: ops x RequestOp{request_put{key, value}}}
    op = b"".join(pb_bytes(2, pb_bytes(2, pb_bytes(1, b"t%d" % i) + pb_bytes(2, b"v"))) for i in range(ops))
    st, msg, _ = unary(port, "/etcdserverpb.KV/Txn", op)
    return {"outcome": "status %s: %s" % (st, msg)}


def main():
    port, attack, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    probe_port = port
    if attack == "slowloris" and len(args) > 1:
        probe_port = int(args[1])
    probe = Probe(probe_port, persistent=attack == "conn-cap")
    probe.start()
    time.sleep(0.2)
    if attack == "slowloris":
        res = attack_slowloris(port, int(args[0]), tls=len(args) > 1)
    elif attack == "slowloris-http1":
        res = attack_slowloris(port, int(args[0]), payload=SLOW_HTTP1)
    elif attack == "conn-cap":
        res = attack_conn_cap(port, int(args[0]), int(args[1]) if len(args) > 1 else None)
    elif attack == "slow-watch":
        res = attack_slow_watch(port, int(args[0]), int(args[1]))
    elif attack == "partial-messages":
        res = attack_partial_messages(port, int(args[0]))
    elif attack == "many-watchers":
        res = attack_many_watchers(port, int(args[0]))
    elif attack == "puts":
        res = attack_puts(port, int(args[0]), int(args[1]))
    elif attack == "big-put":
        res = attack_big_put(port, int(args[0]))
    elif attack == "big-txn":
        res = attack_big_txn(port, int(args[0]))
    else:
        res = globals()["attack_" + attack.replace("-", "_")](port)
    res.update(probe.stop())
    res["attack"] = " ".join([attack] + args)
    print(json.dumps(res, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
