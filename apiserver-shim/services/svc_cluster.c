/*
 * svc_cluster.c: the etcd Cluster service (/etcdserverpb.Cluster/...).
 * MemberList describes this member (name, id, peer and client URLs) so that
 * `etcdctl member list` and clients' endpoint discovery work. Membership
 * changes need the multi-member Raft transport and answer Unimplemented.
 */
#include <stdlib.h>

#include "services.h"

static void member_list_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    (void)msg;
    (void)len;
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);

    Etcdserverpb__Member me = ETCDSERVERPB__MEMBER__INIT;
    me.id = s->member_id;
    me.name = (char *)s->cfg->name;
    me.n_peerurls = s->n_peer_urls;
    me.peerurls = (char **)s->peer_urls;
    me.n_clienturls = s->cfg->n_advertise_client_urls;
    me.clienturls = (char **)s->cfg->advertise_client_urls;
    Etcdserverpb__Member *members[1] = {&me};

    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    resp.header = &hdr;
    resp.n_members = 1;
    resp.members = members;

    server_send_message(call, &resp.base, 1);
}

static grpc_method_t cluster_methods[] = {
    {.path = "/etcdserverpb.Cluster/MemberList", .on_message = member_list_call},
};

void svc_cluster_register(server_t *s) {
    for (size_t i = 0; i < sizeof cluster_methods / sizeof cluster_methods[0]; i++) {
        cluster_methods[i].ctx = s;
        grpc_server_register(s->grpc, &cluster_methods[i]);
    }
}
