/*
 * svc_maintenance.c: the etcd Maintenance service (/etcdserverpb.Maintenance/...):
 * Status (what `etcdctl endpoint status` and kube-apiserver's health and
 * version probes read), Alarm and Defragment. Hash, HashKV and Snapshot
 * are not served yet and answer Unimplemented; MoveLeader is in
 * svc_cluster.c.
 * Auth as etcd 3.4: Defragment needs the root role; Status and Alarm are
 * open to every caller.
 */
#include <stdlib.h>

#include "auth_check.h"
#include "services.h"
#include "version.h"

static void status_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    (void)msg;
    (void)len;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);

    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    hdr.raft_term = st.term;
    Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    resp.header = &hdr;
    resp.version = (char *)KSHIM_ETCD_VERSION;
    resp.dbsize = (int64_t)mvcc_db_size(s->mvcc);
    resp.dbsizeinuse = resp.dbsize;
    resp.leader = st.leader;
    resp.raftindex = st.commit_index;
    resp.raftterm = st.term;
    resp.raftappliedindex = st.applied_index;
    resp.islearner = st.is_learner;
    char *no_leader = "etcdserver: no leader";
    if (st.leader == 0) {
        resp.n_errors = 1;
        resp.errors = &no_leader;
    }
    server_send_message(call, &resp.base, 1);
}

static void alarm_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__AlarmRequest *req = etcdserverpb__alarm_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    /* No alarm is ever raised yet (the space quota fails writes directly), so
     * GET lists none and ACTIVATE/DEACTIVATE have nothing to change. */
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    resp.header = &hdr;
    server_send_message(call, &resp.base, 1);
    etcdserverpb__alarm_request__free_unpacked(req, NULL);
}

static void defragment_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    (void)msg;
    (void)len;
    const char *err = NULL;
    grpc_status_t st = auth_check_admin_maintenance(s, call, &err);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, err);
        return;
    }
    /* LevelDB compacts its files continuously; there is no free-list to
     * rewrite as in bbolt, so defragmentation has nothing to do. */
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    resp.header = &hdr;
    server_send_message(call, &resp.base, 1);
}

static grpc_method_t maintenance_methods[] = {
    {.path = "/etcdserverpb.Maintenance/Status", .on_message = status_call},
    {.path = "/etcdserverpb.Maintenance/Alarm", .on_message = alarm_call},
    {.path = "/etcdserverpb.Maintenance/Defragment", .on_message = defragment_call},
};

void svc_maintenance_register(server_t *s) {
    for (size_t i = 0; i < sizeof maintenance_methods / sizeof maintenance_methods[0]; i++) {
        maintenance_methods[i].ctx = s;
        grpc_server_register(s->grpc, &maintenance_methods[i]);
    }
}
