/*
 * lease_forward.c: encoding of the Lease service's member-to-member
 * messages (see lease_forward.h).
 */
#include "lease_forward.h"

#include <string.h>

#include "bytes.h"
#include "server_internal.h"

static size_t payload_len(uint8_t kind) {
    switch (kind) {
    case SERVER_PEER_LEASE_RENEW:
    case SERVER_PEER_LEASE_TTL: return 16;
    case SERVER_PEER_LEASE_RENEW_RESP: return 20;
    case SERVER_PEER_LEASE_TTL_RESP: return 28;
    default: return 0;
    }
}

static int is_request(uint8_t kind) {
    return kind == SERVER_PEER_LEASE_RENEW || kind == SERVER_PEER_LEASE_TTL;
}

size_t lease_fwd_encode(uint8_t kind, const lease_fwd_msg_t *m, uint8_t *out) {
    size_t len = payload_len(kind);
    if (len == 0) return 0;
    put_be64(out, m->req_id);
    if (is_request(kind)) {
        put_be64(out + 8, (uint64_t)m->lease_id);
        return len;
    }
    put_be32(out + 8, (uint32_t)m->status);
    put_be64(out + 12, (uint64_t)m->ttl);
    if (kind == SERVER_PEER_LEASE_TTL_RESP) put_be64(out + 20, (uint64_t)m->remaining);
    return len;
}

int lease_fwd_decode(uint8_t kind, const uint8_t *data, size_t len, lease_fwd_msg_t *out) {
    size_t want = payload_len(kind);
    if (want == 0 || len != want) return -1;
    memset(out, 0, sizeof *out);
    out->req_id = get_be64(data);
    if (is_request(kind)) {
        out->lease_id = (int64_t)get_be64(data + 8);
        return 0;
    }
    out->status = (int32_t)get_be32(data + 8);
    if (out->status < LEASE_FWD_OK || out->status > LEASE_FWD_NOT_LEADER) return -1;
    out->ttl = (int64_t)get_be64(data + 12);
    if (kind == SERVER_PEER_LEASE_TTL_RESP) out->remaining = (int64_t)get_be64(data + 20);
    return 0;
}
