#!/usr/bin/python3
"""wal_entry.py: corrupt the data of one entry in a kshim WAL, keeping its CRC valid.

  wal_entry.py corrupt WALDIR MARKER   finds the ENTRY record whose data contains
        MARKER, overwrites the first byte of its data with 0x07 (a protobuf tag
        with field number 0: no message decodes) and rewrites the record's
        CRC-32C, so the WAL replays the entry intact and only the state
        machine can tell it is bad. Prints the entry's index.

Record layout (raft/wal.c): [u32 len][u32 crc32c(len, kind, payload)][u8 kind]
[payload], little endian; ENTRY (kind 1) payload = term u64, index u64, type u8,
data.
"""
import glob
import os
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(crc, data):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def corrupt(waldir, marker):
    for path in sorted(glob.glob(os.path.join(waldir, "*.wal"))):
        with open(path, "r+b") as f:
            buf = bytearray(f.read())
            off = 0
            while off + 9 <= len(buf):
                (length,) = struct.unpack_from("<I", buf, off)
                if length == 0 or off + 9 + length > len(buf):
                    break
                kind = buf[off + 8]
                payload = off + 9
                if kind == 1 and length > 17 and marker in buf[payload + 17:payload + length]:
                    (index,) = struct.unpack_from("<Q", buf, payload + 8)
                    buf[payload + 17] = 0x07
                    crc = crc32c(crc32c(0, buf[off:off + 4]), buf[off + 8:off + 9 + length])
                    struct.pack_into("<I", buf, off + 4, crc)
                    f.seek(off)
                    f.write(buf[off:off + 9 + length])
                    f.flush()
                    os.fsync(f.fileno())
                    print(index)
                    return 0
                off += 9 + length
    print("no entry with the marker", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(corrupt(sys.argv[2], sys.argv[3].encode()))
