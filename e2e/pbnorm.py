"""e2e/pbnorm.py: filter for test_etcdctl_kv.sh transcripts.

Owns one job: `etcdctl get -w protobuf` prints a raw RangeResponse, binary and
full of the cluster and member ids that legitimately differ between two
clusters. This filter copies stdin to stdout, and replaces the body of every
'### ... -w protobuf' record (up to its trailing 'rc=N') with a readable dump
of the RangeResponse in which header.cluster_id and header.member_id are
omitted. A body that is not a valid RangeResponse is dumped as hex.
"""
import re
import sys

RECORD = re.compile(rb"(### [^\n]*-w protobuf[^\n]*\n)(.*?)(rc=\d+\n)", re.S)


def varint(buf, pos):
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yield (field_number, wire_type, value) for one protobuf message."""
    pos = 0
    while pos < len(buf):
        tag, pos = varint(buf, pos)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            val, pos = varint(buf, pos)
        elif wt == 2:
            n, pos = varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated bytes")
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError("unexpected wire type %d" % wt)
        yield num, wt, val


HEADER = {3: "revision", 4: "raft_term"}  # 1 cluster_id, 2 member_id: dropped
KV = {1: "key", 2: "create_revision", 3: "mod_revision", 4: "version",
      5: "value", 6: "lease"}


def dump_range_response(buf):
    out = []
    for num, _, val in fields(buf):
        if num == 1:
            for hn, _, hv in fields(val):
                if hn in HEADER:
                    out.append("header.%s=%d" % (HEADER[hn], hv))
        elif num == 2:
            kv = ["%s=%r" % (KV.get(n, n), v) for n, _, v in fields(val)]
            out.append("kv{" + " ".join(kv) + "}")
        elif num == 3:
            out.append("more=%d" % val)
        elif num == 4:
            out.append("count=%d" % val)
        else:
            out.append("field%d=%r" % (num, val))
    return "\n".join(out) + "\n"


def replace(match):
    body = match.group(2)
    try:
        text = dump_range_response(body).encode()
    except ValueError:
        text = b"undecodable protobuf: " + body.hex().encode() + b"\n"
    return match.group(1) + text + match.group(3)


def main():
    data = sys.stdin.buffer.read()
    sys.stdout.buffer.write(RECORD.sub(replace, data))


if __name__ == "__main__":
    main()
