"""e2e/max_streams_client.py: --max-concurrent-streams seen by a raw HTTP/2
client (python3-h2 builds the frames, a plain socket carries them).

    /usr/bin/python3 max_streams_client.py PORT > transcript.txt

Prints what the server advertises as SETTINGS_MAX_CONCURRENT_STREAMS ("none"
when the setting is absent: unlimited), then, when a limit N is advertised,
opens N + 1 Watch streams at once (sent with the connection preface, before
the server's SETTINGS arrive, so a client that honours the limit cannot
avoid it): the first N are served (a WatchCreateRequest each gets its
"created" response) and the last is refused. Then one stream is cancelled,
a PING round trip makes sure the server has seen it, and a new Watch stream
is served again. Each outcome is one line; the transcript of kshimd must be
the same as real etcd's (grpc-go).
"""
import socket
import struct
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

import etcd3.etcdrpc as rpc

TIMEOUT = 5.0
WATCH = "/etcdserverpb.Watch/Watch"


def grpc_frame(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def headers(port):
    return [(":method", "POST"), (":scheme", "http"), (":path", WATCH),
            (":authority", "127.0.0.1:%d" % port), ("content-type", "application/grpc"),
            ("te", "trailers")]


def create_request(key):
    req = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=key))
    return grpc_frame(req.SerializeToString())


class Client:
    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.advertised = None  # MAX_CONCURRENT_STREAMS from the server's SETTINGS
        self.settings_seen = False
        self.data = {}
        self.reset = {}
        self.ping_acked = False
        self.closed = None

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, done):
        """Read and handle events until done() or the connection ends."""
        while not done():
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise SystemExit("timeout waiting for the server")
            if not chunk:
                self.closed = self.closed or "EOF"
                return
            for ev in self.conn.receive_data(chunk):
                self.handle(ev)
            self.flush()
            if self.closed:
                return

    def handle(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            if not self.settings_seen:
                self.settings_seen = True
                c = ev.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                self.advertised = c.new_value if c else None
        elif isinstance(ev, h2.events.DataReceived):
            self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.reset[ev.stream_id] = h2.errors.ErrorCodes(ev.error_code).name
        elif isinstance(ev, h2.events.PingAckReceived):
            self.ping_acked = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = "GOAWAY %s" % h2.errors.ErrorCodes(ev.error_code).name

    def created(self, sid):
        """True once stream sid has a whole WatchResponse with created=true."""
        buf = self.data.get(sid, b"")
        if len(buf) < 5:
            return False
        n = struct.unpack(">I", buf[1:5])[0]
        if len(buf) < 5 + n:
            return False
        resp = rpc.WatchResponse()
        resp.ParseFromString(buf[5:5 + n])
        return resp.created

    def outcome(self, sid):
        if sid in self.reset:
            return "reset %s" % self.reset[sid]
        if self.created(sid):
            return "created"
        return "no answer (%s)" % (self.closed or "open")


def main():
    port = int(sys.argv[1])
    c = Client(port)
    c.conn.initiate_connection()
    # h2 assumes 100 streams until the server's SETTINGS arrive: open enough
    # at once for any small limit; sent in one write with the preface.
    c.flush()
    c.pump(lambda: c.settings_seen)
    print("advertised max_concurrent_streams: %s" % (c.advertised if c.advertised is not None else "none"))
    if c.advertised is None or c.advertised > 10:
        return
    limit = c.advertised
    c.sock.close()

    c = Client(port)
    c.conn.initiate_connection()
    sids = []
    for i in range(limit + 1):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, headers(port))
        c.conn.send_data(sid, create_request(b"/ms/%d" % i))
        sids.append(sid)
    c.flush()
    c.pump(lambda: all(s in c.reset or c.created(s) for s in sids))
    for i, sid in enumerate(sids):
        print("stream %d of %d opened at once: %s" % (i + 1, limit + 1, c.outcome(sid)))
    if c.closed:
        print("connection: %s" % c.closed)
        return
    # free one slot, make sure the server saw it, then a new stream is served
    c.conn.reset_stream(sids[0], h2.errors.ErrorCodes.CANCEL)
    c.conn.ping(b"barrier!")
    c.flush()
    c.pump(lambda: c.ping_acked)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, headers(port))
    c.conn.send_data(sid, create_request(b"/ms/after"))
    c.flush()
    c.pump(lambda: sid in c.reset or c.created(sid))
    print("stream opened after one was cancelled: %s" % c.outcome(sid))
    print("connection: %s" % (c.closed or "open"))
    c.sock.close()


if __name__ == "__main__":
    main()
