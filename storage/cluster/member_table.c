/*
 * member_table.c: the cluster's member table on the MVCC LevelDB (see
 * member_table.h): the one owner of the 'N' records, their in-memory copy
 * and etcd's validation of membership changes.
 */
#include "member_table.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "bytes.h"
#include "kv_arena.h"

#define MEMBER_SPACE 'N'

struct member_table {
    mvcc_t *m;
    pthread_mutex_t mu;
    int exists;
    uint64_t cluster_id, self_id, flags;
    Kshim__Member **rows; /* unpacked, owned, in id order */
    size_t n, cap;
};

static void member_key(uint8_t out[9], uint64_t id) {
    out[0] = MEMBER_SPACE;
    put_be64(out + 1, id);
}

static void clear_rows(member_table_t *t) {
    for (size_t i = 0; i < t->n; i++) kshim__member__free_unpacked(t->rows[i], NULL);
    t->n = 0;
}

static ssize_t find_row(member_table_t *t, uint64_t id) {
    for (size_t i = 0; i < t->n; i++)
        if (t->rows[i]->id == id) return (ssize_t)i;
    return -1;
}

/* Takes row (unpacked) into the table, replacing the one with its id. */
static int put_row(member_table_t *t, Kshim__Member *row) {
    ssize_t at = find_row(t, row->id);
    if (at >= 0) {
        kshim__member__free_unpacked(t->rows[at], NULL);
        t->rows[at] = row;
        return MEMBER_TABLE_OK;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        Kshim__Member **r = realloc(t->rows, cap * sizeof *r);
        if (!r) return MEMBER_TABLE_E_NOMEM;
        t->rows = r;
        t->cap = cap;
    }
    size_t i = t->n++;
    while (i > 0 && t->rows[i - 1]->id > row->id) {
        t->rows[i] = t->rows[i - 1];
        i--;
    }
    t->rows[i] = row;
    return MEMBER_TABLE_OK;
}

typedef struct load_ctx {
    member_table_t *t;
    int rc;
} load_ctx_t;

static int load_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    load_ctx_t *lc = arg;
    if (key_len == 1) {
        if (val_len != 24) {
            lc->rc = MEMBER_TABLE_E_CORRUPT;
            return 1;
        }
        lc->t->exists = 1;
        lc->t->cluster_id = get_be64(val);
        lc->t->self_id = get_be64(val + 8);
        lc->t->flags = get_be64(val + 16);
        return 0;
    }
    Kshim__Member *row = key_len == 9 ? kshim__member__unpack(NULL, val_len, val) : NULL;
    if (!row || row->id != get_be64(key + 1)) {
        if (row) kshim__member__free_unpacked(row, NULL);
        lc->rc = MEMBER_TABLE_E_CORRUPT;
        return 1;
    }
    lc->rc = put_row(lc->t, row);
    if (lc->rc != MEMBER_TABLE_OK) kshim__member__free_unpacked(row, NULL);
    return lc->rc != MEMBER_TABLE_OK;
}

int member_table_reload(member_table_t *t) {
    pthread_mutex_lock(&t->mu);
    clear_rows(t);
    t->exists = 0;
    load_ctx_t lc = {t, MEMBER_TABLE_OK};
    uint8_t prefix = MEMBER_SPACE;
    int rc = mvcc_raw_scan(t->m, &prefix, 1, load_one, &lc);
    pthread_mutex_unlock(&t->mu);
    if (rc != MVCC_OK) return MEMBER_TABLE_E_IO;
    return lc.rc;
}

int member_table_open(mvcc_t *m, member_table_t **out) {
    *out = NULL;
    member_table_t *t = calloc(1, sizeof *t);
    if (!t) return MEMBER_TABLE_E_NOMEM;
    t->m = m;
    pthread_mutex_init(&t->mu, NULL);
    int rc = member_table_reload(t);
    if (rc != MEMBER_TABLE_OK) {
        member_table_free(t);
        return rc;
    }
    *out = t;
    return MEMBER_TABLE_OK;
}

void member_table_free(member_table_t *t) {
    if (!t) return;
    clear_rows(t);
    free(t->rows);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int member_table_exists(member_table_t *t) {
    pthread_mutex_lock(&t->mu);
    int e = t->exists;
    pthread_mutex_unlock(&t->mu);
    return e;
}

uint64_t member_table_cluster_id(member_table_t *t) {
    pthread_mutex_lock(&t->mu);
    uint64_t v = t->cluster_id;
    pthread_mutex_unlock(&t->mu);
    return v;
}

int member_table_joined(member_table_t *t) {
    pthread_mutex_lock(&t->mu);
    int j = (int)(t->flags & 1);
    pthread_mutex_unlock(&t->mu);
    return j;
}

uint64_t member_table_self_id(member_table_t *t) {
    pthread_mutex_lock(&t->mu);
    uint64_t v = t->self_id;
    pthread_mutex_unlock(&t->mu);
    return v;
}

/* ---- writing ---- */

static uint8_t *pack_member(const Kshim__Member *m, size_t *len) {
    *len = kshim__member__get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf) kshim__member__pack(m, buf);
    return buf;
}

/* Writes rows (and the meta record when meta is set) as entry index: in
 * the apply write group when one is open, else one synced write. Then the
 * rows replace the in-memory ones. */
static int write_rows(member_table_t *t, uint64_t index, const Kshim__Member *const *rows, size_t n,
                      const uint64_t *meta) {
    Kshim__Member **fresh = calloc(n ? n : 1, sizeof *fresh);
    if (!fresh) return MEMBER_TABLE_E_NOMEM;
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *txn = NULL;
    int rc = mvcc_txn_begin_write(t->m, &a, &txn) == MVCC_OK ? MEMBER_TABLE_OK : MEMBER_TABLE_E_IO;
    for (size_t i = 0; i < n && rc == MEMBER_TABLE_OK; i++) {
        size_t len;
        uint8_t *buf = pack_member(rows[i], &len);
        uint8_t key[9];
        member_key(key, rows[i]->id);
        fresh[i] = buf ? kshim__member__unpack(NULL, len, buf) : NULL;
        if (!fresh[i])
            rc = MEMBER_TABLE_E_NOMEM;
        else if (mvcc_txn_raw_put(txn, key, sizeof key, buf, len) != MVCC_OK)
            rc = MEMBER_TABLE_E_IO;
        free(buf);
    }
    if (rc == MEMBER_TABLE_OK && meta) {
        uint8_t key = MEMBER_SPACE, val[24];
        put_be64(val, meta[0]);
        put_be64(val + 8, meta[1]);
        put_be64(val + 16, meta[2]);
        if (mvcc_txn_raw_put(txn, &key, 1, val, sizeof val) != MVCC_OK) rc = MEMBER_TABLE_E_IO;
    }
    if (rc == MEMBER_TABLE_OK && mvcc_txn_commit(txn, index) != MVCC_OK) rc = MEMBER_TABLE_E_IO;
    if (txn) mvcc_txn_end(txn);
    kv_arena_free(&a);
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < n; i++) {
        if (rc == MEMBER_TABLE_OK && put_row(t, fresh[i]) == MEMBER_TABLE_OK) continue;
        if (fresh[i]) kshim__member__free_unpacked(fresh[i], NULL);
    }
    if (rc == MEMBER_TABLE_OK && meta) {
        t->exists = 1;
        t->cluster_id = meta[0];
        t->self_id = meta[1];
        t->flags = meta[2];
    }
    pthread_mutex_unlock(&t->mu);
    free(fresh);
    return rc;
}

int member_table_bootstrap(member_table_t *t, uint64_t cluster_id, uint64_t self_id, int joined,
                           const Kshim__Member *const *members, size_t n) {
    uint64_t meta[3] = {cluster_id, self_id, joined ? 1u : 0u};
    return write_rows(t, mvcc_applied_index(t->m), members, n, meta);
}

int member_table_set_self(member_table_t *t, uint64_t self_id) {
    if (member_table_self_id(t) == self_id) return MEMBER_TABLE_OK;
    pthread_mutex_lock(&t->mu);
    uint64_t meta[3] = {t->cluster_id, self_id, t->flags};
    pthread_mutex_unlock(&t->mu);
    return write_rows(t, mvcc_applied_index(t->m), NULL, 0, meta);
}

/* A no-op entry (refused change): only the applied index moves. */
static int skip_entry(member_table_t *t, uint64_t index, int err) {
    return mvcc_set_applied(t->m, index) == MVCC_OK ? err : MEMBER_TABLE_E_IO;
}

/* ---- reading ---- */

static Kshim__Member *copy_member(const Kshim__Member *m) {
    size_t len;
    uint8_t *buf = pack_member(m, &len);
    Kshim__Member *c = buf ? kshim__member__unpack(NULL, len, buf) : NULL;
    free(buf);
    return c;
}

int member_table_pack(member_table_t *t, uint8_t **out, size_t *out_len) {
    pthread_mutex_lock(&t->mu);
    Kshim__MemberList list = KSHIM__MEMBER_LIST__INIT;
    list.cluster_id = t->cluster_id;
    list.members = t->rows;
    list.n_members = t->n;
    *out_len = kshim__member_list__get_packed_size(&list);
    *out = malloc(*out_len ? *out_len : 1);
    if (*out) kshim__member_list__pack(&list, *out);
    pthread_mutex_unlock(&t->mu);
    return *out ? MEMBER_TABLE_OK : MEMBER_TABLE_E_NOMEM;
}

Kshim__MemberList *member_table_list(member_table_t *t) {
    uint8_t *buf;
    size_t len;
    if (member_table_pack(t, &buf, &len) != MEMBER_TABLE_OK) return NULL;
    Kshim__MemberList *l = kshim__member_list__unpack(NULL, len, buf);
    free(buf);
    return l;
}

Kshim__Member *member_table_get(member_table_t *t, uint64_t id) {
    pthread_mutex_lock(&t->mu);
    ssize_t at = find_row(t, id);
    Kshim__Member *c = at >= 0 ? copy_member(t->rows[at]) : NULL;
    pthread_mutex_unlock(&t->mu);
    return c;
}

void member_table_counts(member_table_t *t, size_t *members, size_t *voters, size_t *learners,
                         size_t *started_voters) {
    size_t n = 0, v = 0, l = 0, sv = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        const Kshim__Member *r = t->rows[i];
        if (r->removed) continue;
        n++;
        if (r->is_learner) {
            l++;
        } else {
            v++;
            if (r->name && *r->name) sv++;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (members) *members = n;
    if (voters) *voters = v;
    if (learners) *learners = l;
    if (started_voters) *started_voters = sv;
}

/* ---- validation (etcd's ValidateConfigurationChange), under t->mu ---- */

static const Kshim__Member *live_row(member_table_t *t, uint64_t id, int *err) {
    ssize_t at = find_row(t, id);
    if (at < 0) {
        *err = MEMBER_TABLE_E_NOT_FOUND;
        return NULL;
    }
    if (t->rows[at]->removed) {
        *err = MEMBER_TABLE_E_REMOVED;
        return NULL;
    }
    *err = MEMBER_TABLE_OK;
    return t->rows[at];
}

/* Whether a live member other than skip_id has one of urls. */
static int url_taken(member_table_t *t, uint64_t skip_id, char *const *urls, size_t n) {
    for (size_t i = 0; i < t->n; i++) {
        const Kshim__Member *r = t->rows[i];
        if (r->removed || r->id == skip_id) continue;
        for (size_t j = 0; j < r->n_peer_urls; j++)
            for (size_t k = 0; k < n; k++)
                if (strcmp(r->peer_urls[j], urls[k]) == 0) return 1;
    }
    return 0;
}

static int check_add_locked(member_table_t *t, const Kshim__Member *m) {
    ssize_t at = find_row(t, m->id);
    if (at >= 0) return t->rows[at]->removed ? MEMBER_TABLE_E_REMOVED : MEMBER_TABLE_E_EXISTS;
    if (url_taken(t, 0, m->peer_urls, m->n_peer_urls)) return MEMBER_TABLE_E_PEER_URL;
    if (m->is_learner) {
        size_t learners = 0;
        for (size_t i = 0; i < t->n; i++) learners += !t->rows[i]->removed && t->rows[i]->is_learner;
        if (learners + 1 > MEMBER_TABLE_MAX_LEARNERS) return MEMBER_TABLE_E_TOO_MANY_LEARNERS;
    }
    return MEMBER_TABLE_OK;
}

static int check_promote_locked(member_table_t *t, uint64_t id) {
    int err;
    const Kshim__Member *r = live_row(t, id, &err);
    if (!r) return err;
    return r->is_learner ? MEMBER_TABLE_OK : MEMBER_TABLE_E_NOT_LEARNER;
}

static int check_update_locked(member_table_t *t, uint64_t id, char *const *urls, size_t n) {
    int err;
    if (!live_row(t, id, &err)) return err;
    return url_taken(t, id, urls, n) ? MEMBER_TABLE_E_PEER_URL : MEMBER_TABLE_OK;
}

int member_table_check_add(member_table_t *t, const Kshim__Member *m) {
    pthread_mutex_lock(&t->mu);
    int rc = check_add_locked(t, m);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int member_table_check_remove(member_table_t *t, uint64_t id) {
    pthread_mutex_lock(&t->mu);
    int err;
    live_row(t, id, &err);
    pthread_mutex_unlock(&t->mu);
    return err;
}

int member_table_check_promote(member_table_t *t, uint64_t id) {
    pthread_mutex_lock(&t->mu);
    int rc = check_promote_locked(t, id);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int member_table_check_update(member_table_t *t, uint64_t id, char *const *peer_urls, size_t n) {
    pthread_mutex_lock(&t->mu);
    int rc = check_update_locked(t, id, peer_urls, n);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---- apply ---- */

/* A copy of member id's row to change (NULL: not live; *err says why). */
static Kshim__Member *row_to_change(member_table_t *t, uint64_t id, int *err) {
    pthread_mutex_lock(&t->mu);
    const Kshim__Member *r = live_row(t, id, err);
    Kshim__Member *c = r ? copy_member(r) : NULL;
    if (r && !c) *err = MEMBER_TABLE_E_NOMEM;
    pthread_mutex_unlock(&t->mu);
    return c;
}

static int write_one(member_table_t *t, uint64_t index, Kshim__Member *row) {
    const Kshim__Member *rows[1] = {row};
    int rc = write_rows(t, index, rows, 1, NULL);
    kshim__member__free_unpacked(row, NULL);
    return rc;
}

int member_table_apply_add(member_table_t *t, uint64_t index, const Kshim__Member *m) {
    if (index <= mvcc_apply_index(t->m)) return MEMBER_TABLE_OK;
    int rc = member_table_check_add(t, m);
    if (rc != MEMBER_TABLE_OK) return skip_entry(t, index, rc);
    Kshim__Member row = *m;
    row.removed = 0;
    const Kshim__Member *rows[1] = {&row};
    return write_rows(t, index, rows, 1, NULL);
}

int member_table_apply_promote(member_table_t *t, uint64_t index, uint64_t id) {
    if (index <= mvcc_apply_index(t->m)) return MEMBER_TABLE_OK;
    int rc = member_table_check_promote(t, id);
    if (rc != MEMBER_TABLE_OK) return skip_entry(t, index, rc);
    Kshim__Member *row = row_to_change(t, id, &rc);
    if (!row) return rc == MEMBER_TABLE_E_NOMEM ? rc : skip_entry(t, index, rc);
    row->is_learner = 0;
    return write_one(t, index, row);
}

int member_table_apply_remove(member_table_t *t, uint64_t index, uint64_t id) {
    if (index <= mvcc_apply_index(t->m)) return MEMBER_TABLE_OK;
    int rc;
    Kshim__Member *row = row_to_change(t, id, &rc);
    if (!row) return rc == MEMBER_TABLE_E_NOMEM ? rc : skip_entry(t, index, rc);
    /* The id is kept as removed (etcd never lets it come back). */
    Kshim__Member tomb = KSHIM__MEMBER__INIT;
    tomb.id = id;
    tomb.removed = 1;
    kshim__member__free_unpacked(row, NULL);
    const Kshim__Member *rows[1] = {&tomb};
    return write_rows(t, index, rows, 1, NULL);
}

int member_table_apply_update(member_table_t *t, uint64_t index, uint64_t id, char *const *peer_urls,
                              size_t n) {
    if (index <= mvcc_apply_index(t->m)) return MEMBER_TABLE_OK;
    int rc = member_table_check_update(t, id, peer_urls, n);
    if (rc != MEMBER_TABLE_OK) return skip_entry(t, index, rc);
    Kshim__Member *row = row_to_change(t, id, &rc);
    if (!row) return rc == MEMBER_TABLE_E_NOMEM ? rc : skip_entry(t, index, rc);
    /* Pack from a shallow copy pointing at the new URLs, then free the row. */
    Kshim__Member upd = *row;
    upd.peer_urls = (char **)peer_urls;
    upd.n_peer_urls = n;
    /* etcd 3.4's UpdateRaftAttributes replaces the whole RaftAttributes with
     * {PeerURLs} from MemberUpdate, so the table forgets a learner's flag
     * (the Raft configuration keeps it); kept for the same answers. */
    upd.is_learner = 0;
    const Kshim__Member *rows[1] = {&upd};
    rc = write_rows(t, index, rows, 1, NULL);
    kshim__member__free_unpacked(row, NULL);
    return rc;
}

int member_table_apply_attr(member_table_t *t, uint64_t index, uint64_t id, const char *name,
                            char *const *client_urls, size_t n) {
    if (index <= mvcc_apply_index(t->m)) return MEMBER_TABLE_OK;
    int rc;
    Kshim__Member *row = row_to_change(t, id, &rc);
    if (!row) return rc == MEMBER_TABLE_E_NOMEM ? rc : skip_entry(t, index, rc);
    Kshim__Member upd = *row;
    upd.name = (char *)(name ? name : "");
    upd.client_urls = (char **)client_urls;
    upd.n_client_urls = n;
    const Kshim__Member *rows[1] = {&upd};
    rc = write_rows(t, index, rows, 1, NULL);
    kshim__member__free_unpacked(row, NULL);
    return rc;
}
