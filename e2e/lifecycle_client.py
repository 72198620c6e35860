"""e2e/lifecycle_client.py: the clients of test_lifecycle.sh.

    lifecycle_client.py notify SOCKPATH OUT
        a systemd stand-in: binds a unix datagram socket at SOCKPATH (what
        $NOTIFY_SOCKET names) and appends every datagram received to OUT, one
        line each, flushed, until killed.
    lifecycle_client.py write PORT PREFIX ACKLOG STOPFILE
        sequential puts PREFIX+NNNNNN -> "N" (python3-etcd3's KV stub), each
        tried once, logged in crash_writer.py's format ("ack KEY REV" /
        "fail KEY CODE", so `crash_writer.py verify` checks them), and each
        failure's gRPC details to stdout ("detail KEY CODE DETAILS"). After a
        failure the client is rebuilt. Stops when STOPFILE exists.
    lifecycle_client.py watch PORT OUT
        one Watch stream on the key "lifecycle/w"; writes "created" once the
        watcher is created, then "end CODE DETAILS" when the server ends the
        stream.
"""
import os
import socket
import sys
import time

import etcd3
import etcd3.etcdrpc as etcdrpc
import grpc


def notify(path, out):
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    with open(out, "a") as f:
        while True:
            msg = sock.recv(4096).decode(errors="replace")
            f.write(msg.replace("\n", " ").strip() + "\n")
            f.flush()


def write(port, prefix, acklog, stopfile):
    client = etcd3.client(host="127.0.0.1", port=port, timeout=2)
    n = 0
    with open(acklog, "w") as log:
        log.write("# shared\n")
        while not os.path.exists(stopfile):
            key = "%s%06d" % (prefix, n)
            try:
                resp = client.kvstub.Put(etcdrpc.PutRequest(key=key.encode(), value=b"%d" % n), 2)
                log.write("ack %s %d\n" % (key, resp.header.revision))
            except grpc.RpcError as exc:
                log.write("fail %s %s\n" % (key, exc.code().name))
                print("detail %s %s %s" % (key, exc.code().name, exc.details()), flush=True)
                client.close()
                time.sleep(0.05)
                client = etcd3.client(host="127.0.0.1", port=port, timeout=2)
            log.flush()
            n += 1
    client.close()


def watch(port, out):
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    stub = etcdrpc.WatchStub(channel)

    def requests():
        yield etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=b"lifecycle/w"))
        while True:
            time.sleep(3600)

    with open(out, "a") as f:
        try:
            for resp in stub.Watch(requests()):
                if resp.created:
                    f.write("created\n")
                    f.flush()
            f.write("end OK\n")
        except grpc.RpcError as exc:
            f.write("end %s %s\n" % (exc.code().name, exc.details()))
    os._exit(0)  # the request generator thread sleeps on


def main():
    mode = sys.argv[1]
    if mode == "notify":
        notify(sys.argv[2], sys.argv[3])
    elif mode == "write":
        write(int(sys.argv[2]), *sys.argv[3:6])
    elif mode == "watch":
        watch(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
