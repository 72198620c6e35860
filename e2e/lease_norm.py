#!/usr/bin/env python3
"""e2e/lease_norm.py: stdin->stdout filter for etcdctl lease transcripts.

Two independent clusters pick different random lease ids and a TTL read a
moment later may be a second lower. This filter makes such transcripts
comparable without hiding real differences:
  - every lease id (16-digit hex in text output, decimal "id"/"ID"/"lease"
    in JSON) becomes L1, L2, ... in order of first appearance, so the same
    lease keeps the same name everywhere in one transcript;
  - attached keys are sorted (etcd lists them from a Go map: random order);
  - a remaining TTL within [granted-3, granted+1] of its granted TTL is
    printed as "~granted" (anything else is left alone and shows up in the
    diff).
"""
import re
import sys

names = {}


def name(v):
    if v not in names:
        names[v] = "L%d" % (len(names) + 1)
    return names[v]


def close(rem, granted):
    return granted - 3 <= rem <= granted + 1


HEX = re.compile(r"\b(lease )([0-9a-f]{16})\b")
HEX_LINE = re.compile(r"^([0-9a-f]{16})$")
JSON_ID = re.compile(r'"(id|ID|lease)":(-?[0-9]+)')
TEXT_TTL = re.compile(r"TTL\(([0-9]+)s\), remaining\((-?[0-9]+)s\)")
JSON_TTL = re.compile(r'"ttl":(-?[0-9]+),"granted-ttl":([0-9]+)')


def text_ttl(m):
    g, r = int(m.group(1)), int(m.group(2))
    return "TTL(%ds), remaining(%ss)" % (g, "~%d" % g if close(r, g) else str(r))


def json_ttl(m):
    r, g = int(m.group(1)), int(m.group(2))
    if g > 0 and close(r, g):
        return '"ttl":~%d,"granted-ttl":%d' % (g, g)
    return m.group(0)


def json_id(m):
    v = int(m.group(2))
    if m.group(1) == "lease" and v == 0:
        return m.group(0)
    return '"%s":%s' % (m.group(1), name(v))


TEXT_KEYS = re.compile(r"attached keys\(\[([^\]]*)\]\)")
JSON_KEYS = re.compile(r'"keys":\[([^\]]*)\]')


def text_keys(m):
    return "attached keys([%s])" % " ".join(sorted(m.group(1).split()))


def json_keys(m):
    return '"keys":[%s]' % ",".join(sorted(m.group(1).split(",")))


for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.startswith("### "):
        line = HEX.sub(lambda m: m.group(1) + name(int(m.group(2), 16)), line)
        line = HEX_LINE.sub(lambda m: name(int(m.group(1), 16)), line)
        line = JSON_ID.sub(json_id, line)
        line = TEXT_TTL.sub(text_ttl, line)
        line = JSON_TTL.sub(json_ttl, line)
        line = TEXT_KEYS.sub(text_keys, line)
        line = JSON_KEYS.sub(json_keys, line)
    else:
        # commands quote ids we captured: name them too
        line = re.sub(r"\b([0-9a-f]{16})\b", lambda m: name(int(m.group(1), 16)), line)
    print(line)
