#!/usr/bin/env python3
"""gw_norm.py: normalizes grpc-gateway JSON answers (e2e/test_http_gateway.sh)
so real etcd's and kshimd's can be diffed. Reads "STATUS" on the first line
and the body after it (one JSON value, or one per line for a stream); prints
the status and each value with sorted keys, with what legitimately differs
between two independent single-node clusters replaced:
  header.cluster_id / member_id, leader and member ids -> "ID"
  tokens (random per server)                          -> "TOKEN"
  a lease's remaining TTL (time passes)               -> "TTL"
  db sizes, raft indexes, the server version          -> placeholders
Bodies that are not JSON (Go's text errors) are printed as they are.
"""
import json
import sys

ID_KEYS = {"cluster_id", "member_id", "leader"}
PLACEHOLDER = {"dbSize": "SIZE", "dbSizeInUse": "SIZE", "raftIndex": "IDX", "raftAppliedIndex": "IDX",
               "token": "TOKEN"}


def norm(v, path=()):
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k in ID_KEYS:
                out[k] = "ID"
            elif k in PLACEHOLDER and isinstance(x, str):
                out[k] = PLACEHOLDER[k]
            elif k == "version" and "dbSize" in v:
                out[k] = "VER"  # StatusResponse: kshimd reports the API level it implements
            elif k == "TTL" and "grantedTTL" in v:
                out[k] = "TTL"
            elif k == "ID" and path and path[-1] == "members":
                out[k] = "ID"
            else:
                out[k] = norm(x, path + (k,))
        return out
    if isinstance(v, list):
        return [norm(x, path) for x in v]
    return v


def main():
    data = sys.stdin.read()
    status, _, body = data.partition("\n")
    print(status)
    dec = json.JSONDecoder()
    i = 0
    body = body.strip()
    while i < len(body):
        try:
            v, end = dec.raw_decode(body, i)
        except ValueError:
            print(body[i:])
            return
        print(json.dumps(norm(v), sort_keys=True))
        i = end
        while i < len(body) and body[i] in " \r\n\t":
            i += 1


if __name__ == "__main__":
    main()
