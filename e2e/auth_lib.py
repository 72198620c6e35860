"""e2e/auth_lib.py: client pieces shared by the auth e2e tests.

Owns: the gRPC channel (plain or mTLS), login, and the one-line outcome of
an RPC that auth_matrix_client.py and auth_hostile_client.py print: the
gRPC code and etcd's message, or OK with the header revision and a short
summary that leaves out what legitimately differs between two servers
(lease and member IDs, hashes, sizes, remaining TTLs). UNAVAILABLE prints
without its message: that text is the client's transport error (a refused
TLS handshake, a closed socket), not the server's answer.
"""
import etcd3.etcdrpc as rpc
import grpc

TIMEOUT = 5


def channel(target, tls, options=()):
    """tls is None or (cacert, cert, key) paths; cert/key may be None."""
    if not tls:
        return grpc.insecure_channel(target, options=list(options))
    cacert, cert, key = (open(p, "rb").read() if p else None for p in tls)
    creds = grpc.ssl_channel_credentials(cacert, key, cert)
    return grpc.secure_channel(target, creds, options=list(options))


def login(auth, user, pw):
    """The token of user/pw (raises grpc.RpcError)."""
    return auth.Authenticate(rpc.AuthenticateRequest(name=user, password=pw), timeout=TIMEOUT).token


def _summary(resp):
    """Type-specific part of an OK line; None for the generic one."""
    summaries = [
        (rpc.StatusResponse, lambda r: "status"),
        (rpc.DefragmentResponse, lambda r: "defragment"),  # 3.4 sends no header
        (rpc.HashResponse, lambda r: "hash"),
        (rpc.HashKVResponse, lambda r: "hashkv"),
        (rpc.SnapshotResponse, lambda r: "snapshot"),
        (rpc.MoveLeaderResponse, lambda r: "moveleader"),
        (rpc.AlarmResponse, lambda r: "alarms=%d" % len(r.alarms)),
        (rpc.LeaseGrantResponse, lambda r: "ttl=%d error=%r" % (r.TTL, r.error)),
        (rpc.LeaseRevokeResponse, lambda r: "revoked"),
        (rpc.LeaseKeepAliveResponse, lambda r: "keepalive ttl=%s" % ("0" if r.TTL <= 0 else ">0")),
        (rpc.LeaseTimeToLiveResponse, lambda r: "ttl=%s granted=%d keys=%s" % (
            "-1" if r.TTL < 0 else ">=0", r.grantedTTL, ",".join(k.decode() for k in r.keys))),
        (rpc.LeaseLeasesResponse, lambda r: "leases=%d" % len(r.leases)),
        (rpc.MemberListResponse, lambda r: "members=%d" % len(r.members)),
        (rpc.MemberAddResponse, lambda r: "members=%d" % len(r.members)),
        (rpc.AuthUserListResponse, lambda r: "users=%s" % ",".join(r.users)),
        (rpc.AuthUserGetResponse, lambda r: "roles=%s" % ",".join(r.roles)),
        (rpc.AuthRoleGetResponse, lambda r: "perms=%d" % len(r.perm)),
        (rpc.WatchResponse, lambda r: "created=%s canceled=%s reason=%r" % (
            r.created, r.canceled, r.cancel_reason)),
    ]
    for typ, fn in summaries:
        if isinstance(resp, typ):
            return fn(resp)
    return None


def outcome(fn):
    try:
        resp = fn()
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            return "UNAVAILABLE"
        return "%s %s" % (e.code().name, e.details())
    summary = _summary(resp)
    if summary is not None:
        return "OK " + summary
    rev = resp.header.revision if resp.HasField("header") else "-"
    extra = ""
    if hasattr(resp, "kvs") and hasattr(resp, "count"):
        extra = " count=%d keys=%s" % (resp.count, ",".join(kv.key.decode() for kv in resp.kvs))
    if hasattr(resp, "succeeded"):
        extra = " succeeded=%s" % resp.succeeded
    if hasattr(resp, "prev_kv") and resp.HasField("prev_kv"):
        extra = " prev=%s" % resp.prev_kv.value.decode()
    if hasattr(resp, "deleted"):
        extra = " deleted=%d" % resp.deleted
    return "OK rev=%s%s" % (rev, extra)
