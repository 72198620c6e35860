"""e2e/kv_client.py: fixed KV scenario through python3-etcd3 (grpc C core).

Owns the client half of test_etcdctl_kv's python twin, test_python_kv.sh:
    /usr/bin/python3 kv_client.py HOST:PORT > transcript.jsonl
runs one deterministic scenario of put / get / get_prefix / get_range / delete
/ delete_prefix / transaction (compares on value, version, create and mod,
success and failure branches, ranges, nested txn) / replace / status /
compact, both through python3-etcd3's high-level methods and through its raw
KV stub for request fields the high-level API does not expose (count_only,
limit, revision filters). Every step prints one canonical JSON line: the full
response as protobuf-JSON with the ids that legitimately differ between two
clusters removed (header.cluster_id, header.member_id, status leader and
raft indexes, db sizes), or the error as gRPC code + details.
"""
import json
import re
import sys

import etcd3
import etcd3.etcdrpc as etcdrpc
import grpc
from google.protobuf import json_format

DROP_KEYS = {"cluster_id", "member_id"}


def scrub(obj):
    """Remove cluster/member ids from a protobuf-JSON dict, recursively."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if k not in DROP_KEYS}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def pb(msg):
    return scrub(json_format.MessageToDict(
        msg, preserving_proto_field_name=True,
        including_default_value_fields=False))


def meta(m):
    """etcd3.client.KVMetadata -> dict (header ids dropped)."""
    return {"key": m.key.decode("latin-1"), "create_revision": m.create_revision,
            "mod_revision": m.mod_revision, "version": m.version,
            "lease_id": m.lease_id, "header": pb(m.response_header)}


def value_meta_pairs(pairs):
    return [[v.decode("latin-1") if v is not None else None,
             meta(m) if m is not None else None] for v, m in pairs]


def error(exc):
    """An exception -> {code, details}; etcd3 wraps grpc errors."""
    rpc = exc if isinstance(exc, grpc.RpcError) else exc.__context__
    out = {"exception": type(exc).__name__}
    if isinstance(rpc, grpc.RpcError):
        out["code"] = rpc.code().name
        out["details"] = rpc.details()
    else:
        out["message"] = str(exc)
    return out


class Recorder:
    def __init__(self):
        self.step = 0

    def run(self, name, fn):
        self.step += 1
        try:
            result = {"ok": fn()}
        except (grpc.RpcError, etcd3.exceptions.Etcd3Exception) as exc:
            result = {"error": error(exc)}
        line = {"step": self.step, "op": name}
        line.update(result)
        print(json.dumps(line, sort_keys=True, ensure_ascii=True), flush=True)
        return result


def txn_result(res):
    succeeded, responses = res
    out = []
    for r in responses:
        if isinstance(r, list):
            out.append({"range": value_meta_pairs(r)})
        else:
            out.append(pb(r))
    return {"succeeded": succeeded, "responses": out}


def scenario(c, rec):
    T = c.transactions
    kv = c.kvstub
    r = rec.run

    def raw_range(**kw):
        return pb(kv.Range(etcdrpc.RangeRequest(**kw), 5))

    # put / get
    r("put a", lambda: pb(c.put("a", "1")))
    r("put a prev_kv", lambda: pb(c.put("a", "2", prev_kv=True)))
    r("put bytes", lambda: pb(c.put(b"bin\x00\x01\xff", b"\x00\xfe\xff")))
    r("put unicode", lambda: pb(c.put("ключ/日本", "значение", prev_kv=True)))
    r("put empty value", lambda: pb(c.put("empty", "")))
    r("put bad lease", lambda: pb(c.put("a", "x", lease=0x1234)))
    r("put empty key", lambda: pb(c.put("", "x")))
    r("get a", lambda: value_meta_pairs([c.get("a")]))
    r("get missing", lambda: value_meta_pairs([c.get("missing")]))
    r("get bytes", lambda: value_meta_pairs([c.get(b"bin\x00\x01\xff")]))
    r("get_response serializable", lambda: pb(c.get_response("a", serializable=True)))
    for i in range(10):
        c.put("p/%02d" % i, "v%d" % (9 - i))
    c.put("p/03", "again")
    c.put("p/03", "and again")
    c.put("q", "outside")
    r("get_prefix", lambda: value_meta_pairs(c.get_prefix("p/")))
    r("get_prefix descend by value", lambda: value_meta_pairs(
        c.get_prefix("p/", sort_order="descend", sort_target="value")))
    for target in ("key", "version", "create", "mod", "value"):
        for order in ("ascend", "descend"):
            r("get_prefix_response %s %s" % (target, order), lambda: pb(
                c.get_prefix_response("p/", sort_order=order, sort_target=target)))
    r("get_prefix keys_only", lambda: pb(c.get_prefix_response("p/", keys_only=True)))
    r("get_range", lambda: value_meta_pairs(c.get_range("p/02", "p/05")))
    r("get_range_response descend", lambda: pb(
        c.get_range_response("p/02", "p/05", sort_order="descend")))
    r("get_range empty", lambda: value_meta_pairs(c.get_range("p/05", "p/02")))
    r("get_all", lambda: value_meta_pairs(c.get_all()))
    r("raw range limit", lambda: raw_range(key=b"p/", range_end=b"p0", limit=3))
    r("raw range count_only", lambda: raw_range(key=b"p/", range_end=b"p0", count_only=True))
    r("raw range from-key", lambda: raw_range(key=b"p/08", range_end=b"\x00"))
    r("raw range all", lambda: raw_range(key=b"\x00", range_end=b"\x00", keys_only=True))
    r("raw range rev", lambda: raw_range(key=b"p/03", revision=12))
    r("raw range prefix at rev", lambda: raw_range(key=b"p/", range_end=b"p0", revision=10))
    r("raw range future rev", lambda: raw_range(key=b"p/03", revision=1000))
    r("raw range mod filters", lambda: raw_range(
        key=b"p/", range_end=b"p0", min_mod_revision=8, max_mod_revision=14))
    r("raw range create filters", lambda: raw_range(
        key=b"p/", range_end=b"p0", min_create_revision=9, max_create_revision=11))
    r("raw range limit sorted desc", lambda: raw_range(
        key=b"p/", range_end=b"p0", limit=2, sort_order=2, sort_target=4))

    # replace (a compare-and-swap txn inside python-etcd3)
    r("replace ok", lambda: c.replace("a", "2", "3"))
    r("replace stale", lambda: c.replace("a", "2", "4"))
    r("replace missing", lambda: c.replace("missing", "", "x"))
    r("put_if_not_exists new", lambda: c.put_if_not_exists("fresh", "1"))
    r("put_if_not_exists again", lambda: c.put_if_not_exists("fresh", "2"))

    # transactions
    r("txn value/version success", lambda: txn_result(c.transaction(
        compare=[T.value("a") == "3", T.version("a") == 3],
        success=[T.put("a", "4"), T.get("a"), T.get("p/00", "p/03")],
        failure=[T.put("a", "failed")])))
    r("txn failure branch", lambda: txn_result(c.transaction(
        compare=[T.value("a") == "3"],
        success=[T.put("a", "5")],
        failure=[T.get("a"), T.delete("p/09", prev_kv=True), T.get("p/", "p0")])))
    r("txn mod/create compares", lambda: txn_result(c.transaction(
        compare=[T.mod("a") > 1, T.create("a") < 100, T.create("missing") == 0,
                 T.version("missing") == 0, T.mod("p/00") != 0],
        success=[T.delete("p/00", "p/02", prev_kv=True), T.put("n", "v", prev_kv=True)],
        failure=[])))
    r("txn less/greater on value", lambda: txn_result(c.transaction(
        compare=[T.value("q") > "a", T.value("q") < "z", T.value("q") != "x"],
        success=[T.get("q")], failure=[])))
    r("txn empty", lambda: txn_result(c.transaction(compare=[], success=[], failure=[])))
    r("txn nested", lambda: txn_result(c.transaction(
        compare=[],
        success=[T.txn(compare=[T.value("n") == "v"],
                       success=[T.put("nested", "yes"), T.get("n")],
                       failure=[T.put("nested", "no")])],
        failure=[])))
    r("txn duplicate put", lambda: txn_result(c.transaction(
        compare=[], success=[T.put("d", "1"), T.put("d", "2")], failure=[])))
    r("txn put+delete overlapping", lambda: txn_result(c.transaction(
        compare=[], success=[T.put("d/x", "1"), T.delete("d/", "d0")], failure=[])))
    r("txn 128 ops", lambda: txn_result(c.transaction(
        compare=[], success=[T.put("m/%03d" % i, "v") for i in range(128)], failure=[])))
    r("txn 129 ops", lambda: txn_result(c.transaction(
        compare=[], success=[T.put("m/%03d" % i, "w") for i in range(129)], failure=[])))
    r("txn compare on range", lambda: txn_result(c.transaction(
        compare=[T.version("m/", "m0") > 0], success=[T.get("m/127")], failure=[])))

    # delete / delete_prefix
    r("delete existing", lambda: c.delete("n"))
    r("delete missing", lambda: c.delete("n"))
    r("delete prev_kv response", lambda: pb(c.delete("q", prev_kv=True, return_response=True)))
    r("delete_prefix", lambda: pb(c.delete_prefix("m/")))
    r("delete_prefix none", lambda: pb(c.delete_prefix("m/")))
    r("get_all after deletes", lambda: value_meta_pairs(c.get_all(keys_only=True)))

    # compaction
    rev = c.get_response("a").header.revision
    r("compact future", lambda: c.compact(rev + 100))
    r("compact", lambda: c.compact(rev - 5))
    r("compact again same", lambda: c.compact(rev - 5))
    r("compact lower", lambda: c.compact(rev - 10))
    r("range compacted rev", lambda: raw_range(key=b"a", revision=rev - 6))
    r("range at compact rev", lambda: raw_range(key=b"p/", range_end=b"p0", revision=rev - 5))
    r("txn range compacted rev", lambda: pb(kv.Txn(etcdrpc.TxnRequest(success=[
        etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=b"a", revision=rev - 6))]), 5)))
    r("txn range at compact rev", lambda: pb(kv.Txn(etcdrpc.TxnRequest(success=[
        etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=b"a", revision=rev - 5))]), 5)))
    r("compact physical", lambda: c.compact(rev, physical=True))
    r("range after physical", lambda: raw_range(key=b"\x00", range_end=b"\x00"))

    # status
    def status():
        s = c.status()
        return {"version_is_semver": re.fullmatch(r"3\.\d+\.\d+", s.version) is not None,
                "raft_term": s.raft_term,
                "db_size_positive": s.db_size > 0,
                "leader_is_this_member": s.leader is not None
                and s.leader.id == pb_member_id(c)}
    r("status", status)


def pb_member_id(c):
    return c.maintenancestub.Status(etcdrpc.StatusRequest(), 5).header.member_id


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    c = etcd3.client(host=host, port=int(port), timeout=10)
    scenario(c, Recorder())
    c.close()


if __name__ == "__main__":
    main()
