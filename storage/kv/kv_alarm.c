/*
 * kv_alarm.c: the alarm store and the quota (see kv_alarm.h), following etcd
 * 3.4's etcdserver/api/v3alarm/alarms.go (Activate, Deactivate, Get),
 * etcdserver/apply.go (Alarm, applierV3Capped), etcdserver/corrupt.go
 * (applierV3Corrupt) and etcdserver/quota.go (backendQuota.Available).
 * Owns the 'a' side table and the in-memory alarm set.
 */
#include "kv_alarm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "grpc_status.h"

#define ALARM_SPACE 'a'
#define ALARM_KEY_LEN 10 /* 'a' | type | member id */

struct kv_alarms {
    pthread_mutex_t mu;
    kv_alarm_t set[KV_ALARMS_MAX]; /* sorted by (type, member id) */
    size_t n;
};

static int alarm_cmp(const kv_alarm_t *x, int type, uint64_t member) {
    if (x->type != type) return x->type < type ? -1 : 1;
    if (x->member_id != member) return x->member_id < member ? -1 : 1;
    return 0;
}

/* Index of (type, member) or where it would go; *found set. Under mu. */
static size_t set_find(const kv_alarms_t *a, int type, uint64_t member, int *found) {
    size_t i = 0;
    while (i < a->n && alarm_cmp(&a->set[i], type, member) < 0) i++;
    *found = i < a->n && alarm_cmp(&a->set[i], type, member) == 0;
    return i;
}

/* 1 added, 0 already there, -1 the set is full. Under mu. */
static int set_add(kv_alarms_t *a, int type, uint64_t member) {
    int found;
    size_t i = set_find(a, type, member, &found);
    if (found) return 0;
    if (a->n == KV_ALARMS_MAX) return -1;
    memmove(&a->set[i + 1], &a->set[i], (a->n - i) * sizeof a->set[0]);
    a->set[i] = (kv_alarm_t){.member_id = member, .type = type};
    a->n++;
    return 1;
}

/* 1 removed, 0 not there. Under mu. */
static int set_remove(kv_alarms_t *a, int type, uint64_t member) {
    int found;
    size_t i = set_find(a, type, member, &found);
    if (!found) return 0;
    memmove(&a->set[i], &a->set[i + 1], (a->n - i - 1) * sizeof a->set[0]);
    a->n--;
    return 1;
}

static void alarm_key(uint8_t out[ALARM_KEY_LEN], int type, uint64_t member) {
    out[0] = ALARM_SPACE;
    out[1] = (uint8_t)type;
    put_be64(out + 2, member);
}

typedef struct load_ctx {
    kv_alarms_t *a;
    int corrupt;
} load_ctx_t;

/* One 'a' record: 'a' | type | member id -> empty, as kv_alarms_apply
 * writes them. Another shape, the type NONE (never stored) or more records
 * than the set holds (apply keeps a full set as it is) is corruption: an
 * error, never an alarm dropped in silence. */
static int load_record(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    load_ctx_t *c = arg;
    (void)v;
    if (kl != ALARM_KEY_LEN || vl != 0 || k[1] == ETCDSERVERPB__ALARM_TYPE__NONE ||
        set_add(c->a, k[1], get_be64(k + 2)) < 0) {
        fprintf(stderr, "kv: an alarm record of %zu/%zu bytes: the store is corrupt\n", kl, vl);
        c->corrupt = 1;
        return 1;
    }
    return 0;
}

/* Under mu, or before the set is shared. */
static int load_all(kv_alarms_t *a, mvcc_t *m) {
    a->n = 0;
    const uint8_t prefix = ALARM_SPACE;
    load_ctx_t c = {a, 0};
    if (mvcc_raw_scan(m, &prefix, 1, load_record, &c) == MVCC_OK && !c.corrupt) return 0;
    a->n = 0;
    return -1;
}

int kv_alarms_open(mvcc_t *m, kv_alarms_t **out) {
    kv_alarms_t *a = calloc(1, sizeof *a);
    if (!a) return -1;
    pthread_mutex_init(&a->mu, NULL);
    if (load_all(a, m) != 0) {
        kv_alarms_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

int kv_alarms_reload(kv_alarms_t *a, mvcc_t *m) {
    pthread_mutex_lock(&a->mu);
    int rc = load_all(a, m);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void kv_alarms_free(kv_alarms_t *a) {
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    free(a);
}

size_t kv_alarms_get(kv_alarms_t *a, int type, kv_alarm_t *out, size_t max) {
    size_t n = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++) {
        if (type != ETCDSERVERPB__ALARM_TYPE__NONE && a->set[i].type != type) continue;
        if (n < max) out[n] = a->set[i];
        n++;
    }
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* ---- apply ---- */

static int set_result_error(kv_result_t *res, int code, const char *msg) {
    res->code = code;
    strncpy(res->message, msg, sizeof res->message - 1);
    res->message[sizeof res->message - 1] = 0;
    return 0;
}

static void pack_alarms(kv_result_t *res, const kv_alarm_t *v, size_t n, const kv_header_info_t *hdr,
                        int64_t rev) {
    Etcdserverpb__AlarmMember members[KV_ALARMS_MAX];
    Etcdserverpb__AlarmMember *ptrs[KV_ALARMS_MAX];
    for (size_t i = 0; i < n; i++) {
        etcdserverpb__alarm_member__init(&members[i]);
        members[i].memberid = v[i].member_id;
        members[i].alarm = v[i].type;
        ptrs[i] = &members[i];
    }
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h.cluster_id = hdr ? hdr->cluster_id : 0;
    h.member_id = hdr ? hdr->member_id : 0;
    h.raft_term = hdr ? hdr->raft_term : 0;
    h.revision = rev;
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    resp.header = &h;
    resp.n_alarms = n;
    resp.alarms = ptrs;
    size_t len = etcdserverpb__alarm_response__get_packed_size(&resp);
    res->resp = malloc(len ? len : 1);
    if (!res->resp) abort();
    etcdserverpb__alarm_response__pack(&resp, res->resp);
    res->resp_len = len;
    res->revision = rev;
}

/* Writes the record change and the applied index in one write txn. */
static int write_change(mvcc_t *m, uint64_t index, int type, uint64_t member, int add) {
    kv_arena_t arena;
    kv_arena_init(&arena);
    mvcc_txn_t *t = NULL;
    int rc = mvcc_txn_begin_write(m, &arena, &t);
    if (rc == MVCC_OK) {
        uint8_t key[ALARM_KEY_LEN];
        alarm_key(key, type, member);
        rc = add ? mvcc_txn_raw_put(t, key, sizeof key, (const uint8_t *)"", 0)
                 : mvcc_txn_raw_delete(t, key, sizeof key);
        if (rc == MVCC_OK) rc = mvcc_txn_commit(t, index);
        mvcc_txn_end(t);
    }
    kv_arena_free(&arena);
    return rc == MVCC_OK ? 0 : -1;
}

int kv_alarms_apply(kv_alarms_t *a, mvcc_t *m, uint64_t index, const Etcdserverpb__AlarmRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res) {
    if (index <= mvcc_apply_index(m)) return 0;
    memset(res, 0, sizeof *res);
    kv_alarm_t one = {.member_id = req->memberid, .type = req->alarm};
    kv_alarm_t list[KV_ALARMS_MAX];
    size_t n = 0;
    int change = 0; /* 1 add, -1 remove */
    pthread_mutex_lock(&a->mu);
    switch (req->action) {
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET: break;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
        /* etcd keeps NONE out of the store (Activate of an unknown type is
         * stored but "unimplemented"); a full set keeps what it has */
        if (req->alarm == ETCDSERVERPB__ALARM_TYPE__NONE) break;
        if (set_add(a, req->alarm, req->memberid) == 1) change = 1;
        list[n++] = one;
        break;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
        if (set_remove(a, req->alarm, req->memberid) == 1) {
            change = -1;
            list[n++] = one;
        }
        break;
    default: break;
    }
    if (req->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET)
        for (size_t i = 0; i < a->n; i++)
            if (req->alarm == ETCDSERVERPB__ALARM_TYPE__NONE || a->set[i].type == (int)req->alarm)
                list[n++] = a->set[i];
    pthread_mutex_unlock(&a->mu);
    int rc = change ? write_change(m, index, req->alarm, req->memberid, change > 0)
                    : (mvcc_set_applied(m, index) == MVCC_OK ? 0 : -1);
    if (rc != 0) {
        /* the member stops; undo the in-memory change all the same */
        pthread_mutex_lock(&a->mu);
        if (change > 0) set_remove(a, req->alarm, req->memberid);
        if (change < 0) set_add(a, req->alarm, req->memberid);
        pthread_mutex_unlock(&a->mu);
        return -1;
    }
    pack_alarms(res, list, n, hdr, mvcc_apply_revision(m));
    return 0;
}

static int txn_has_put(const Etcdserverpb__TxnRequest *r) {
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.txn = (Etcdserverpb__TxnRequest *)r;
    return kv_request_cost(&ir) > 0;
}

static int active(kv_alarms_t *a, int type) { return kv_alarms_get(a, type, NULL, 0) > 0; }

int kv_alarms_refuse(kv_alarms_t *a, mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req,
                     kv_result_t *res) {
    if (index <= mvcc_apply_index(m)) return 0;
    const char *err = NULL;
    int code = 0;
    if (active(a, ETCDSERVERPB__ALARM_TYPE__CORRUPT) &&
        (req->put || req->delete_range || (req->txn && !kv_txn_is_readonly(req->txn)) || req->compaction ||
         req->lease_grant || req->lease_revoke)) {
        err = KV_ERR_CORRUPT;
        code = GRPC_DATA_LOSS;
    } else if (active(a, ETCDSERVERPB__ALARM_TYPE__NOSPACE) &&
               (req->put || (req->txn && txn_has_put(req->txn)) || req->lease_grant)) {
        err = KV_ERR_NO_SPACE;
        code = GRPC_RESOURCE_EXHAUSTED;
    }
    if (!err) return 0;
    if (mvcc_set_applied(m, index) != MVCC_OK) return -1;
    memset(res, 0, sizeof *res);
    set_result_error(res, code, err);
    res->revision = mvcc_apply_revision(m);
    return 1;
}

int kv_quota_available(mvcc_t *m, const Kshim__InternalRequest *req) {
    uint64_t cost = kv_request_cost(req);
    if (cost == 0) return 1;
    return mvcc_db_size(m) + cost < mvcc_options(m)->quota_backend_bytes;
}
