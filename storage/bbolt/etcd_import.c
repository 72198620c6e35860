/*
 * etcd_import.c: the cut-over tables of `kshimctl migrate` (see
 * etcd_import.h): lease records through lease_keys.h's encoding, users and
 * roles as the auth records 'U' + name / 'R' + name holding the packed
 * authpb message (auth/auth_store.h's layout, as etcd_db.c copies it), each
 * table replaced in one synced write (mvcc_import_replace_raw).
 */
#include "etcd_import.h"

#include <stdlib.h>
#include <string.h>

#include "lease_keys.h"

typedef struct recs {
    mvcc_raw_rec_t *r;
    size_t n;
} recs_t;

static void recs_free(recs_t *rs) {
    for (size_t i = 0; i < rs->n; i++) {
        free((void *)rs->r[i].key);
        free((void *)rs->r[i].val);
    }
    free(rs->r);
}

static int recs_init(recs_t *rs, size_t n) {
    rs->n = 0;
    rs->r = calloc(n ? n : 1, sizeof *rs->r);
    return rs->r ? MVCC_OK : MVCC_ERR_IO;
}

static int recs_add(recs_t *rs, const uint8_t *k, size_t kl, const ProtobufCMessage *msg, const uint8_t *raw,
                    size_t rl) {
    uint8_t *kc = malloc(kl);
    size_t vl = msg ? protobuf_c_message_get_packed_size(msg) : rl;
    uint8_t *vc = malloc(vl ? vl : 1);
    if (!kc || !vc) {
        free(kc);
        free(vc);
        return MVCC_ERR_IO;
    }
    memcpy(kc, k, kl);
    if (msg)
        protobuf_c_message_pack(msg, vc);
    else if (rl)
        memcpy(vc, raw, rl);
    rs->r[rs->n++] = (mvcc_raw_rec_t){kc, kl, vc, vl};
    return MVCC_OK;
}

int etcd_import_leases(mvcc_t *m, const etcd_import_lease_t *ls, size_t n) {
    recs_t rs;
    if (recs_init(&rs, n) != MVCC_OK) return MVCC_ERR_IO;
    int rc = MVCC_OK;
    for (size_t i = 0; i < n && rc == MVCC_OK; i++) {
        uint8_t k[9], v[16];
        lease_record_key(k, ls[i].id);
        lease_record_encode(v, ls[i].granted_ttl, ls[i].remaining_ttl);
        rc = recs_add(&rs, k, sizeof k, NULL, v, sizeof v);
    }
    if (rc == MVCC_OK) rc = mvcc_import_replace_raw(m, (const uint8_t *)"L", 1, rs.r, rs.n);
    recs_free(&rs);
    return rc;
}

/* 'space' + name in a malloc'd buffer. */
static uint8_t *auth_key(char space, const char *name, size_t *len) {
    size_t nl = strlen(name);
    uint8_t *k = malloc(1 + nl);
    if (!k) abort();
    k[0] = (uint8_t)space;
    memcpy(k + 1, name, nl);
    *len = 1 + nl;
    return k;
}

/* The user record: the stored one's password and options, the new roles. */
static int user_record(mvcc_t *m, recs_t *rs, const etcd_import_user_t *u, size_t *no_password) {
    size_t kl;
    uint8_t *k = auth_key('U', u->name, &kl);
    uint8_t *old = NULL;
    size_t ol = 0;
    int rc = mvcc_raw_get(m, k, kl, &old, &ol);
    Authpb__User *prev = rc == MVCC_OK ? authpb__user__unpack(NULL, ol, old) : NULL;
    free(old);
    if (rc == MVCC_ERR_NOT_FOUND) rc = MVCC_OK;
    Authpb__User nu = AUTHPB__USER__INIT;
    nu.name.data = (uint8_t *)u->name;
    nu.name.len = strlen(u->name);
    nu.roles = u->roles;
    nu.n_roles = u->n_roles;
    if (prev) {
        nu.password = prev->password;
        nu.options = prev->options;
    } else {
        ++*no_password;
    }
    if (rc == MVCC_OK) rc = recs_add(rs, k, kl, &nu.base, NULL, 0);
    if (prev) authpb__user__free_unpacked(prev, NULL);
    free(k);
    return rc;
}

int etcd_import_users(mvcc_t *m, const etcd_import_user_t *us, size_t n, size_t *no_password) {
    *no_password = 0;
    recs_t rs;
    if (recs_init(&rs, n) != MVCC_OK) return MVCC_ERR_IO;
    int rc = MVCC_OK;
    for (size_t i = 0; i < n && rc == MVCC_OK; i++) rc = user_record(m, &rs, &us[i], no_password);
    if (rc == MVCC_OK) rc = mvcc_import_replace_raw(m, (const uint8_t *)"U", 1, rs.r, rs.n);
    recs_free(&rs);
    return rc;
}

int etcd_import_roles(mvcc_t *m, const Authpb__Role *const *roles, size_t n) {
    recs_t rs;
    if (recs_init(&rs, n) != MVCC_OK) return MVCC_ERR_IO;
    int rc = MVCC_OK;
    for (size_t i = 0; i < n && rc == MVCC_OK; i++) {
        size_t kl = 1 + roles[i]->name.len;
        uint8_t *k = malloc(kl);
        if (!k) abort();
        k[0] = 'R';
        memcpy(k + 1, roles[i]->name.data, roles[i]->name.len);
        rc = recs_add(&rs, k, kl, &roles[i]->base, NULL, 0);
        free(k);
    }
    if (rc == MVCC_OK) rc = mvcc_import_replace_raw(m, (const uint8_t *)"R", 1, rs.r, rs.n);
    recs_free(&rs);
    return rc;
}
