"""e2e/auth_matrix_client.py: the permission matrix of test_auth_matrix.sh.

Owns the client half: for each identity (no credentials, wrong password,
garbage token, expired token, read-only / write-only / prefix roles, root)
it runs a fixed list of RPCs (Range, Put, DeleteRange, Txn, Compact,
Status, Defragment) with the identity's token in the gRPC "token" metadata
and prints one line per RPC: the gRPC code and etcd's message, or OK with
the header revision and a short summary. Run against real etcd and against
the target; the transcripts must be identical. (Channel, login and the
outcome line are auth_lib.py's, shared with auth_hostile_client.py.)

    /usr/bin/python3 auth_matrix_client.py HOST:PORT > transcript
    ... HOST:PORT --tls CACERT CERT KEY --only IDENT,...   (mTLS runs)

Users (set up by the shell): ro/ropw (read [/m/, /m0)), wo/wopw (write
[/m/, /m0)), pfx/pfxpw (readwrite [/m/p/, /m/p0)), root/rootpw. The
server runs with --auth-token-ttl 2 so the "expired" token, fetched first
and left unused for 3.5 s, is gone.
"""
import sys
import time

import etcd3.etcdrpc as rpc
import grpc

import auth_lib
from auth_lib import channel, outcome


def put(k, v, prev=False):
    return rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v, prev_kv=prev))


def rng(k, end=b""):
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=k, range_end=end))


def compare_version(k):
    return rpc.Compare(key=k, result=rpc.Compare.GREATER, target=rpc.Compare.VERSION, version=0)


def rpcs(kv, mt):
    """(name, callable(metadata)) in a fixed order."""
    return [
        ("Range /m/p/a", lambda md: kv.Range(rpc.RangeRequest(key=b"/m/p/a"), metadata=md)),
        ("Range /m/ prefix", lambda md: kv.Range(rpc.RangeRequest(key=b"/m/", range_end=b"/m0"), metadata=md)),
        ("Range /x", lambda md: kv.Range(rpc.RangeRequest(key=b"/x"), metadata=md)),
        ("Range all", lambda md: kv.Range(rpc.RangeRequest(key=b"\0", range_end=b"\0"), metadata=md)),
        ("Put /m/p/a", lambda md: kv.Put(rpc.PutRequest(key=b"/m/p/a", value=b"v"), metadata=md)),
        ("Put /m/p/a prev_kv", lambda md: kv.Put(rpc.PutRequest(key=b"/m/p/a", value=b"w", prev_kv=True), metadata=md)),
        ("Put /m/q", lambda md: kv.Put(rpc.PutRequest(key=b"/m/q", value=b"v"), metadata=md)),
        ("Put /x", lambda md: kv.Put(rpc.PutRequest(key=b"/x", value=b"v"), metadata=md)),
        ("DeleteRange /m/p/zz", lambda md: kv.DeleteRange(rpc.DeleteRangeRequest(key=b"/m/p/zz"), metadata=md)),
        ("DeleteRange /m/p/zz prev_kv", lambda md: kv.DeleteRange(rpc.DeleteRangeRequest(key=b"/m/p/zz", prev_kv=True), metadata=md)),
        ("DeleteRange /x", lambda md: kv.DeleteRange(rpc.DeleteRangeRequest(key=b"/x/none"), metadata=md)),
        ("Txn mixed", lambda md: kv.Txn(rpc.TxnRequest(
            compare=[compare_version(b"/m/p/a")],
            success=[put(b"/m/p/a", b"t"), put(b"/x", b"t")]), metadata=md)),
        ("Txn prefix-only", lambda md: kv.Txn(rpc.TxnRequest(
            compare=[compare_version(b"/m/p/a")],
            success=[put(b"/m/p/b", b"t")], failure=[rng(b"/m/p/b")]), metadata=md)),
        ("Txn compare outside", lambda md: kv.Txn(rpc.TxnRequest(
            compare=[compare_version(b"/x")], success=[put(b"/m/p/b", b"u")]), metadata=md)),
        ("Txn read-only", lambda md: kv.Txn(rpc.TxnRequest(
            success=[rng(b"/m/p/a"), rng(b"/m/", b"/m0")]), metadata=md)),
        ("Compact future", lambda md: kv.Compact(rpc.CompactionRequest(revision=100000), metadata=md)),
        ("Status", lambda md: mt.Status(rpc.StatusRequest(), metadata=md)),
        ("Defragment", lambda md: mt.Defragment(rpc.DefragmentRequest(), metadata=md)),
    ]


IDENTS = {
    "none": None,
    "wrongpw": ("ro", "bad"),
    "garbage": "garbage",
    "expired": "expired",
    "ro": ("ro", "ropw"),
    "wo": ("wo", "wopw"),
    "pfx": ("pfx", "pfxpw"),
    "root": ("root", "rootpw"),
}


def jwt_probe(target):
    """--jwt: a JWT from Authenticate, its claim names, then the token as
    is, with a forged username claim (signature mismatch), malformed, and
    without signature."""
    import base64
    import json
    ch = grpc.insecure_channel(target)
    auth, kv = rpc.AuthStub(ch), rpc.KVStub(ch)
    tok = auth.Authenticate(rpc.AuthenticateRequest(name="root", password="rootpw"), timeout=5).token
    h, p, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    print("jwt segments=3 claims=%s username=%s" % (",".join(sorted(claims)), claims["username"]))
    claims["username"] = "evil"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for name, t in (("good", tok), ("forged", h + "." + forged + "." + sig),
                    ("malformed", "a.b"), ("nosig", h + "." + p + ".")):
        print("jwt %s Range: %s" % (name, outcome(
            lambda: kv.Range(rpc.RangeRequest(key=b"/x"), metadata=[("token", t)]))))


def invalidation_probe(target):
    """--invalidate: a user's simple token dies when root changes the user's
    password or deletes the user; the auth revision moves on either way."""
    ch = grpc.insecure_channel(target)
    auth, kv = rpc.AuthStub(ch), rpc.KVStub(ch)

    def login(u, p):
        return [("token", auth.Authenticate(rpc.AuthenticateRequest(name=u, password=p), timeout=5).token)]

    def rng(name, md):
        print("inv %s: %s" % (name, outcome(lambda: kv.Range(rpc.RangeRequest(key=b"/m/p/a"), metadata=md))))

    root = login("root", "rootpw")
    print("inv add: %s" % outcome(lambda: auth.UserAdd(rpc.AuthUserAddRequest(name="tmp", password="tpw"), metadata=root)))
    print("inv grant: %s" % outcome(lambda: auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="tmp", role="pfx"), metadata=root)))
    tmp = login("tmp", "tpw")
    rng("before", tmp)
    print("inv passwd: %s" % outcome(lambda: auth.UserChangePassword(
        rpc.AuthUserChangePasswordRequest(name="tmp", password="tpw2"), metadata=root)))
    rng("after passwd", tmp)
    tmp = login("tmp", "tpw2")
    rng("new token", tmp)
    print("inv delete: %s" % outcome(lambda: auth.UserDelete(rpc.AuthUserDeleteRequest(name="tmp"), metadata=root)))
    rng("after delete", tmp)
    try:
        login("tmp", "tpw2")
        print("inv login deleted: OK")
    except grpc.RpcError as e:
        print("inv login deleted: %s %s" % (e.code().name, e.details()))
    long_name = "u" * 300
    print("inv add long name: %s" % outcome(lambda: auth.UserAdd(
        rpc.AuthUserAddRequest(name=long_name, password="x"), metadata=root)))
    print("inv grant long name: %s" % outcome(lambda: auth.UserGrantRole(
        rpc.AuthUserGrantRoleRequest(user=long_name, role="pfx"), metadata=root)))
    rng("long name", login(long_name, "x"))
    print("inv grant missing role: %s" % outcome(lambda: auth.UserGrantRole(
        rpc.AuthUserGrantRoleRequest(user=long_name, role="nope"), metadata=root)))
    print("inv role add empty: %s" % outcome(lambda: auth.RoleAdd(rpc.AuthRoleAddRequest(name=""), metadata=root)))


def main():
    target = sys.argv[1]
    if sys.argv[2:] == ["--jwt"]:
        jwt_probe(target)
        return
    if sys.argv[2:] == ["--invalidate"]:
        invalidation_probe(target)
        return
    tls = None
    only = None
    args = sys.argv[2:]
    while args:
        if args[0] == "--tls":
            tls = args[1:4]
            args = args[4:]
        elif args[0] == "--only":
            only = args[1].split(",")
            args = args[2:]
        else:
            raise SystemExit("bad argument " + args[0])
    ch = channel(target, tls)
    kv, mt, auth = rpc.KVStub(ch), rpc.MaintenanceStub(ch), rpc.AuthStub(ch)
    names = only or list(IDENTS)

    def login(user, pw):
        return auth_lib.login(auth, user, pw)

    expired = None
    if "expired" in names:
        expired = login("ro", "ropw")
        time.sleep(3.5)
    for name in names:
        ident = IDENTS.get(name, name)
        md = []
        if ident == "garbage":
            md = [("token", "garbage.1")]
        elif ident == "expired":
            md = [("token", expired)]
        elif isinstance(ident, tuple):
            try:
                md = [("token", login(*ident))]
            except grpc.RpcError as e:
                print("%s Authenticate: %s %s" % (name, e.code().name, e.details()))
                continue
        for rpc_name, fn in rpcs(kv, mt):
            print("%s %s: %s" % (name, rpc_name, outcome(lambda: fn(md))))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
