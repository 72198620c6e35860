/*
 * lease_forward.h: the member-to-member messages of the Lease service in a
 * cluster (services/lease_forward.c): a follower forwards LeaseKeepAlive
 * and LeaseTimeToLive to the leader, whose lessor alone knows deadlines
 * (etcd's LeaseRenew / LeaseTimeToLive over the peer port). App-message
 * kinds SERVER_PEER_LEASE_RENEW(_RESP) and SERVER_PEER_LEASE_TTL(_RESP)
 * (server_internal.h). Payloads, big-endian:
 *
 *   LEASE_RENEW, LEASE_TTL        req_id(8) | lease_id(8)
 *   LEASE_RENEW_RESP              req_id(8) | status(4) | ttl(8)
 *   LEASE_TTL_RESP                req_id(8) | status(4) | granted_ttl(8) | remaining_s(8)
 *
 * req_id is the follower's (echoed back); status is LEASE_FWD_*.
 */
#ifndef KSHIM_LEASE_FORWARD_H
#define KSHIM_LEASE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

enum {
    LEASE_FWD_OK = 0,
    LEASE_FWD_NOT_FOUND = 1,  /* etcdserver: requested lease not found */
    LEASE_FWD_NOT_LEADER = 2, /* the receiver does not lead (any more) */
};

#define LEASE_FWD_MAX_LEN 32

typedef struct lease_fwd_msg {
    uint64_t req_id;
    int64_t lease_id; /* requests */
    int32_t status;   /* responses: LEASE_FWD_* */
    int64_t ttl;      /* RENEW_RESP: the TTL; TTL_RESP: the granted TTL */
    int64_t remaining;
} lease_fwd_msg_t;

/* Encodes m as the payload of app kind `kind` into out (LEASE_FWD_MAX_LEN
 * bytes); returns the length, 0 for an unknown kind. */
size_t lease_fwd_encode(uint8_t kind, const lease_fwd_msg_t *m, uint8_t *out);
/* Decodes a payload of kind; 0, or -1 if its length or status is wrong. */
int lease_fwd_decode(uint8_t kind, const uint8_t *data, size_t len, lease_fwd_msg_t *out);

#endif
