/*
 * powerloss_client.c: writers and checker for e2e/test_power_loss.sh, on the
 * blocking gRPC client (client/grpc_client.h).
 *
 *   powerloss_client write PORT LOG INC NWRITERS SEED PID MAXSEC
 *       NWRITERS threads, one connection each. Writer w owns the keys
 *       pl/w<w>/k0..k5 and appends to LOG.w<w>. It waits until kshimd (PID)
 *       answers, reads its keys' current values, then loops: a put (60%), a
 *       delete of a key it knows exists (15%) or a txn (25%: if value(kA) ==
 *       the value it knows, sometimes deliberately wrong, then put kA, put kB,
 *       delete kC else put kD). Every value is unique: "<INC>.<w>.<seq>.<j>#"
 *       plus padding (0-1500 bytes, so records cross pages and blocks).
 *       Each attempt is logged before it is sent ("A id ..."), its outcome
 *       after ("K id rev succeeded deleted" or "F id code"), flushed per
 *       line. Stops when PID is gone (the cut); exit 3 if MAXSEC pass first.
 *   powerloss_client verify PORT LOG NWRITERS PID
 *       waits until kshimd answers (exit 2 if PID dies first: the store did
 *       not open), then reads the whole history with a Watch from revision
 *       1 and the current state with a Range, and checks:
 *       - the revisions are exactly 2..head, each held by one attempt of
 *         one writer (nothing invented, nothing applied twice);
 *       - per writer, attempts appear in the order they were made; every
 *         acknowledged attempt appears, at its acknowledged revision, with
 *         the acknowledged txn branch; unacknowledged ones may be missing;
 *       - every event's version and create_revision follow from the history;
 *       - Range(key, revision=acked rev) returns each acked put's value with
 *         mod_revision == rev, and nothing for an acked delete;
 *       - the Range at head equals the replayed history.
 *       Prints one summary line ("verified ...") and the failures; exit 1 on
 *       any failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "grpc_client.h"
#include "rpc.pb-c.h"

#define NKEYS 6
#define MAXW 8
#define MAXPAD 1500

/* ---- common ---- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* True while PID runs (a zombie counts as dead). The process start time
 * is remembered on the first call, so a reused pid reads as dead. */
static int pid_alive(int pid)
{
    static _Atomic unsigned long long start_seen;
    if (kill(pid, 0) != 0) return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X') return 0;
    unsigned long long start = 0;   /* field 22: starttime */
    int field = 3;
    for (const char *q = p + 2; *q && field < 22; q++)
        if (*q == ' ') field++, start = strtoull(q + 1, NULL, 10);
    unsigned long long expect = 0;
    if (atomic_compare_exchange_strong(&start_seen, &expect, start)) return 1;
    return expect == start;
}

static void key_name(char *out, size_t n, int w, int k)
{
    snprintf(out, n, "pl/w%d/k%d", w, k);
}

/* "<id>.<j>#" + pad: malloc'd */
static char *make_value(const char *id, int j, int pad)
{
    size_t n = strlen(id) + 16 + (size_t)pad;
    char *v = malloc(n);
    if (!v) abort();
    int h = snprintf(v, n, "%s.%d#", id, j);
    memset(v + h, 'a' + j, (size_t)pad);
    v[h + pad] = '\0';
    return v;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* One unary call: 0 with *resp, or -1 with st set (transport: st->code
 * GC_UNAVAILABLE/DEADLINE and the connection is dead). */
static int call(gc_conn_t *c, const char *path, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp, gc_status_t *st)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) abort();
    protobuf_c_message_pack(req, buf);
    uint8_t *out = NULL;
    size_t outlen = 0;
    int r = gc_unary(c, path, buf, len, &out, &outlen, st, 5000);
    free(buf);
    if (r < 0 || st->code != GC_OK) {
        free(out);
        if (st->code == GC_OK) st->code = GC_UNAVAILABLE;
        return -1;
    }
    *resp = protobuf_c_message_unpack(rd, NULL, outlen, out);
    free(out);
    if (!*resp) {
        st->code = GC_INTERNAL;
        snprintf(st->message, sizeof st->message, "cannot decode %s", rd->name);
        return -1;
    }
    return 0;
}

static gc_conn_t *dial(int port)
{
    char ep[64], err[256];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    gc_options_t o = {.endpoint = ep, .dial_timeout_ms = 1000};
    return gc_connect(&o, err, sizeof err);
}

/* Range [key, end) at rev (0 = head). */
static Etcdserverpb__RangeResponse *range(gc_conn_t *c, const char *key, const char *end, int64_t rev,
                                          gc_status_t *st)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = bin(key);
    if (end) req.range_end = bin(end);
    req.revision = rev;
    ProtobufCMessage *resp = NULL;
    if (call(c, "/etcdserverpb.KV/Range", &req.base, &etcdserverpb__range_response__descriptor, &resp, st) < 0)
        return NULL;
    return (Etcdserverpb__RangeResponse *)resp;
}

/* Connects and waits until a Range succeeds; NULL if PID dies or after
 * timeout_s. *first_rev (if not NULL) gets that Range's header revision. */
static gc_conn_t *connect_ready(int port, int pid, double timeout_s, int64_t *first_rev)
{
    double deadline = now_s() + timeout_s;
    while (now_s() < deadline && pid_alive(pid)) {
        gc_conn_t *c = dial(port);
        if (c) {
            gc_status_t st;
            Etcdserverpb__RangeResponse *r = range(c, "pl/", NULL, 0, &st);
            if (r) {
                if (first_rev) *first_rev = r->header ? r->header->revision : 0;
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return c;
            }
            gc_close(c);
        }
        usleep(20000);
    }
    return NULL;
}

/* ---- writer ---- */

typedef struct writer {
    int w, port, pid, inc;
    double deadline;
    uint64_t rng;
    FILE *log;
    char *val[NKEYS];     /* value as the writer knows it, NULL = absent */
    long acked, failed;
    int timed_out;
} writer_t;

static void set_val(writer_t *wr, int k, char *v)
{
    free(wr->val[k]);
    wr->val[k] = v;
}

/* Learns the current values of the writer's keys. 0 or -1. */
static int learn(writer_t *wr, gc_conn_t *c)
{
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, "pl/w%d/", wr->w);
    snprintf(hi, sizeof hi, "pl/w%d0", wr->w);
    gc_status_t st;
    Etcdserverpb__RangeResponse *r = range(c, lo, hi, 0, &st);
    if (!r) return -1;
    for (int k = 0; k < NKEYS; k++) set_val(wr, k, NULL);
    for (size_t i = 0; i < r->n_kvs; i++) {
        int w, k;
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*s", (int)r->kvs[i]->key.len, (char *)r->kvs[i]->key.data);
        if (sscanf(tmp, "pl/w%d/k%d", &w, &k) != 2 || w != wr->w || k < 0 || k >= NKEYS) continue;
        char *v = malloc(r->kvs[i]->value.len + 1);
        if (!v) abort();
        memcpy(v, r->kvs[i]->value.data, r->kvs[i]->value.len);
        v[r->kvs[i]->value.len] = '\0';
        set_val(wr, k, v);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int pick_existing(writer_t *wr, int not1, int not2)
{
    int cand[NKEYS], n = 0;
    for (int k = 0; k < NKEYS; k++)
        if (wr->val[k] && k != not1 && k != not2) cand[n++] = k;
    return n ? cand[splitmix(&wr->rng) % (uint64_t)n] : -1;
}

static int pad(writer_t *wr)
{
    return splitmix(&wr->rng) % 2 ? (int)(splitmix(&wr->rng) % 64) : (int)(splitmix(&wr->rng) % MAXPAD);
}

static Etcdserverpb__RequestOp *op_put(Etcdserverpb__RequestOp *op, Etcdserverpb__PutRequest *p,
                                       const char *key, const char *val)
{
    *p = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
    p->key = bin(key);
    p->value = bin(val);
    *op = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = p;
    return op;
}

/* One attempt. 0 acked, -1 failed (logged either way). */
static int attempt(writer_t *wr, gc_conn_t *c, long seq)
{
    char id[48];
    snprintf(id, sizeof id, "%d.%d.%ld", wr->inc, wr->w, seq);
    uint64_t r = splitmix(&wr->rng) % 100;
    int kind = r < 60 ? 0 : r < 75 ? 1 : 2;
    int k = (int)(splitmix(&wr->rng) % NKEYS);
    if (kind == 1 && (k = pick_existing(wr, -1, -1)) < 0) {
        kind = 0;
        k = (int)(splitmix(&wr->rng) % NKEYS);
    }
    gc_status_t st = {0};
    ProtobufCMessage *resp = NULL;
    int64_t rev = 0, deleted = 0;
    int succ = 1, rc;
    char key[32], keyb[32], keyc[32], keyd[32];
    char *v0 = NULL, *v1 = NULL, *v2 = NULL;
    int ka = k, kb = 0, kc = -1, kd = 0, wrong = 0;
    if (kind == 0) {
        int L = pad(wr);
        v0 = make_value(id, 0, L);
        fprintf(wr->log, "A %s put %d %d\n", id, k, L);
        fflush(wr->log);
        key_name(key, sizeof key, wr->w, k);
        Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
        req.key = bin(key);
        req.value = bin(v0);
        rc = call(c, "/etcdserverpb.KV/Put", &req.base, &etcdserverpb__put_response__descriptor, &resp, &st);
        if (rc == 0) rev = ((Etcdserverpb__PutResponse *)resp)->header->revision;
    } else if (kind == 1) {
        fprintf(wr->log, "A %s del %d\n", id, k);
        fflush(wr->log);
        key_name(key, sizeof key, wr->w, k);
        Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
        req.key = bin(key);
        rc = call(c, "/etcdserverpb.KV/DeleteRange", &req.base, &etcdserverpb__delete_range_response__descriptor,
                  &resp, &st);
        if (rc == 0) {
            rev = ((Etcdserverpb__DeleteRangeResponse *)resp)->header->revision;
            deleted = ((Etcdserverpb__DeleteRangeResponse *)resp)->deleted;
        }
    } else {
        kb = (ka + 1 + (int)(splitmix(&wr->rng) % (NKEYS - 1))) % NKEYS;
        kc = pick_existing(wr, ka, kb);
        kd = (int)(splitmix(&wr->rng) % NKEYS);
        wrong = splitmix(&wr->rng) % 5 == 0;
        int la = pad(wr), lb = pad(wr), ld = pad(wr);
        v0 = make_value(id, 0, la);
        v1 = make_value(id, 1, lb);
        v2 = make_value(id, 2, ld);
        fprintf(wr->log, "A %s txn %d %d %d %d %d %d %d\n", id, ka, la, kb, lb, kc, kd, ld);
        fflush(wr->log);
        key_name(key, sizeof key, wr->w, ka);
        key_name(keyb, sizeof keyb, wr->w, kb);
        key_name(keyc, sizeof keyc, wr->w, kc < 0 ? 0 : kc);
        key_name(keyd, sizeof keyd, wr->w, kd);
        Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
        cmp.key = bin(key);
        if (wr->val[ka] && !wrong) {
            cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
            cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
            cmp.value = bin(wr->val[ka]);
        } else {
            cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
            cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
            cmp.version = wrong ? 1000000 : 0;
        }
        Etcdserverpb__Compare *cmps[1] = {&cmp};
        Etcdserverpb__PutRequest pa, pb, pd;
        Etcdserverpb__DeleteRangeRequest dc = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
        dc.key = bin(keyc);
        Etcdserverpb__RequestOp oa, ob, oc = ETCDSERVERPB__REQUEST_OP__INIT, od;
        oc.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        oc.request_delete_range = &dc;
        Etcdserverpb__RequestOp *succ_ops[3] = {op_put(&oa, &pa, key, v0), op_put(&ob, &pb, keyb, v1), &oc};
        Etcdserverpb__RequestOp *fail_ops[1] = {op_put(&od, &pd, keyd, v2)};
        Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
        req.n_compare = 1;
        req.compare = cmps;
        req.n_success = kc < 0 ? 2 : 3;
        req.success = succ_ops;
        req.n_failure = 1;
        req.failure = fail_ops;
        rc = call(c, "/etcdserverpb.KV/Txn", &req.base, &etcdserverpb__txn_response__descriptor, &resp, &st);
        if (rc == 0) {
            rev = ((Etcdserverpb__TxnResponse *)resp)->header->revision;
            succ = ((Etcdserverpb__TxnResponse *)resp)->succeeded;
        }
    }
    if (rc == 0) {
        fprintf(wr->log, "K %s %" PRId64 " %d %" PRId64 "\n", id, rev, succ, deleted);
        if (kind == 0) {
            set_val(wr, k, v0);
            v0 = NULL;
        } else if (kind == 1) {
            set_val(wr, k, NULL);
        } else if (succ) {
            set_val(wr, ka, v0);
            set_val(wr, kb, v1);
            if (kc >= 0) set_val(wr, kc, NULL);
            v0 = v1 = NULL;
        } else {
            set_val(wr, kd, v2);
            v2 = NULL;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        fprintf(wr->log, "F %s %d\n", id, st.code);
    }
    fflush(wr->log);
    free(v0);
    free(v1);
    free(v2);
    return rc;
}

static void *writer_main(void *p)
{
    writer_t *wr = p;
    long seq = 0;
    while (now_s() < wr->deadline && pid_alive(wr->pid)) {
        gc_conn_t *c = connect_ready(wr->port, wr->pid, wr->deadline - now_s(), NULL);
        if (!c) break;
        if (learn(wr, c) == 0)
            while (now_s() < wr->deadline && attempt(wr, c, seq++) == 0) wr->acked++;
        wr->failed++;
        gc_close(c);
    }
    wr->timed_out = now_s() >= wr->deadline;   /* not pid_alive: the pid may be reused */
    for (int k = 0; k < NKEYS; k++) set_val(wr, k, NULL);
    return NULL;
}

static int cmd_write(int port, const char *logp, int inc, int nw, uint64_t seed, int pid, double maxsec)
{
    writer_t wr[MAXW];
    pthread_t th[MAXW];
    if (nw < 1 || nw > MAXW) return 2;
    for (int w = 0; w < nw; w++) {
        char path[512];
        snprintf(path, sizeof path, "%s.w%d", logp, w);
        memset(&wr[w], 0, sizeof wr[w]);
        wr[w] = (writer_t){.w = w, .port = port, .pid = pid, .inc = inc, .deadline = now_s() + maxsec,
                           .rng = seed * 1000003 + (uint64_t)w, .log = fopen(path, "a")};
        if (!wr[w].log) return 2;
        pthread_create(&th[w], NULL, writer_main, &wr[w]);
    }
    long acked = 0;
    int timed_out = 0;
    for (int w = 0; w < nw; w++) {
        pthread_join(th[w], NULL);
        fclose(wr[w].log);
        acked += wr[w].acked;
        timed_out |= wr[w].timed_out;
    }
    printf("writers: %ld acknowledged\n", acked);
    return timed_out ? 3 : 0;
}

/* ---- verify: the logs ---- */

enum { K_PUT, K_DEL, K_TXN };

typedef struct att {
    char id[48];
    int kind, k, la, kb, lb, kc, kd, ld;   /* put: k, la; del: k; txn: all */
    int acked, succ;
    int64_t rev, deleted;
    int matched;
} att_t;

typedef struct wlog {
    att_t *a;
    size_t n, cap;
} wlog_t;

static att_t *find_att(wlog_t *l, const char *id)
{
    for (size_t i = l->n; i-- > 0;)
        if (strcmp(l->a[i].id, id) == 0) return &l->a[i];
    return NULL;
}

static int read_log(const char *path, wlog_t *l)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;   /* a writer that never ran */
    char line[512], id[48], kind[8];
    while (fgets(line, sizeof line, f)) {
        att_t a = {.kc = -1};
        if (sscanf(line, "A %47s %7s", id, kind) == 2) {
            snprintf(a.id, sizeof a.id, "%s", id);
            int n = 0;
            if (strcmp(kind, "put") == 0) {
                a.kind = K_PUT;
                n = sscanf(line, "A %*s put %d %d", &a.k, &a.la) == 2;
            } else if (strcmp(kind, "del") == 0) {
                a.kind = K_DEL;
                n = sscanf(line, "A %*s del %d", &a.k) == 1;
            } else if (strcmp(kind, "txn") == 0) {
                a.kind = K_TXN;
                n = sscanf(line, "A %*s txn %d %d %d %d %d %d %d", &a.k, &a.la, &a.kb, &a.lb, &a.kc, &a.kd,
                           &a.ld) == 7;
            }
            if (!n) continue;   /* a torn last line */
            if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 256;
                l->a = realloc(l->a, l->cap * sizeof *l->a);
                if (!l->a) abort();
            }
            l->a[l->n++] = a;
        } else if (line[0] == 'K') {
            int64_t rev, del;
            int succ;
            if (sscanf(line, "K %47s %" SCNd64 " %d %" SCNd64, id, &rev, &succ, &del) != 4) continue;
            att_t *p = find_att(l, id);
            if (p) {
                p->acked = 1;
                p->rev = rev;
                p->succ = succ;
                p->deleted = del;
            }
        }
    }
    fclose(f);
    return 0;
}

/* ---- verify: history ---- */

typedef struct ev {
    int del, w, k;
    char *val;             /* PUT value (owned) */
    int64_t rev, create, version;
} ev_t;

typedef struct kstate {
    char *val;             /* NULL = absent */
    int64_t mod, create, version;
} kstate_t;

typedef struct check {
    long failures;
    kstate_t st[MAXW][NKEYS];
    long revisions, acked, unacked_applied, unacked_lost, ranges;
} check_t;

static void failf(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(check_t *c, const char *fmt, ...)
{
    if (c->failures++ >= 30) return;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static int parse_key(const ProtobufCBinaryData *key, int *w, int *k)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(key->len < 60 ? key->len : 60), (char *)key->data);
    char extra;
    return sscanf(tmp, "pl/w%d/k%d%c", w, k, &extra) == 2 && *w >= 0 && *w < MAXW && *k >= 0 && *k < NKEYS
               ? 0 : -1;
}

/* Reads every event of [pl-, pl0) (the writers' keys and the barrier key)
 * from revision 1 up to head. */
static int history(gc_conn_t *c, int64_t head, ev_t **out, size_t *nout)
{
    gc_status_t st;
    gc_stream_t *s = gc_stream_open(c, "/etcdserverpb.Watch/Watch", 0, &st);
    if (!s) return -1;
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = bin("pl-");
    cr.range_end = bin("pl0");
    cr.start_revision = 1;
    Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
    wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    wr.create_request = &cr;
    size_t len = protobuf_c_message_get_packed_size(&wr.base);
    uint8_t *buf = malloc(len);
    if (!buf) abort();
    protobuf_c_message_pack(&wr.base, buf);
    int rc = gc_stream_send(s, buf, len, 0);
    free(buf);
    size_t n = 0, cap = 1024;
    ev_t *evs = malloc(cap * sizeof *evs);
    if (!evs) abort();
    int64_t last = 1;
    while (rc == 0 && last < head) {
        uint8_t *msg;
        size_t mlen;
        if (gc_stream_recv(s, &msg, &mlen, &st, 10000) != 1) {
            rc = -1;
            break;
        }
        Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, mlen, msg);
        free(msg);
        if (!r || r->canceled) {
            rc = -1;
            if (r) etcdserverpb__watch_response__free_unpacked(r, NULL);
            break;
        }
        for (size_t i = 0; i < r->n_events; i++) {
            Mvccpb__Event *e = r->events[i];
            if (n == cap) {
                cap *= 2;
                evs = realloc(evs, cap * sizeof *evs);
                if (!evs) abort();
            }
            ev_t *x = &evs[n++];
            memset(x, 0, sizeof *x);
            x->del = e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
            x->rev = e->kv->mod_revision;
            x->create = e->kv->create_revision;
            x->version = e->kv->version;
            if (parse_key(&e->kv->key, &x->w, &x->k) != 0)
                x->w = e->kv->key.len == 10 && memcmp(e->kv->key.data, "pl-barrier", 10) == 0 ? -2 : -1;
            if (!x->del) {
                x->val = malloc(e->kv->value.len + 1);
                if (!x->val) abort();
                memcpy(x->val, e->kv->value.data, e->kv->value.len);
                x->val[e->kv->value.len] = '\0';
            }
            if (x->rev > last) last = x->rev;
        }
        etcdserverpb__watch_response__free_unpacked(r, NULL);
    }
    gc_stream_close(s);
    *out = evs;
    *nout = n;
    return rc;
}

/* The events an attempt makes on state st, for one txn branch. */
typedef struct want {
    int n;
    int del[3], k[3];
    char *val[3];
} want_t;

static void want_free(want_t *w)
{
    for (int i = 0; i < w->n; i++) free(w->val[i]);
    w->n = 0;
}

static void want_add(want_t *w, int del, int k, char *val)
{
    w->del[w->n] = del;
    w->k[w->n] = k;
    w->val[w->n] = val;
    w->n++;
}

static void effects(const att_t *a, kstate_t *st, int branch, want_t *w)
{
    w->n = 0;
    if (a->kind == K_PUT) {
        want_add(w, 0, a->k, make_value(a->id, 0, a->la));
    } else if (a->kind == K_DEL) {
        if (st[a->k].val) want_add(w, 1, a->k, NULL);
    } else if (branch) {
        want_add(w, 0, a->k, make_value(a->id, 0, a->la));
        want_add(w, 0, a->kb, make_value(a->id, 1, a->lb));
        if (a->kc >= 0 && st[a->kc].val) want_add(w, 1, a->kc, NULL);
    } else {
        want_add(w, 0, a->kd, make_value(a->id, 2, a->ld));
    }
}

/* Do the events evs[0..n) (one revision, one writer) equal want? */
static int same_events(const ev_t *evs, size_t n, const want_t *w)
{
    if ((int)n != w->n) return 0;
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < w->n && !found; j++)
            found = evs[i].k == w->k[j] && evs[i].del == w->del[j] &&
                    (evs[i].del || strcmp(evs[i].val, w->val[j]) == 0);
        if (!found) return 0;
    }
    return 1;
}

/* Does attempt a (either txn branch unless acknowledged) make exactly the
 * events evs[0..n) on writer w's current state? */
static int makes(check_t *c, const att_t *a, int w, const ev_t *evs, size_t n)
{
    int ok = 0;
    for (int branch = 0; branch < 2 && !ok; branch++) {
        if (a->acked && a->kind == K_TXN && branch != a->succ) continue;
        want_t want;
        effects(a, c->st[w], branch, &want);
        ok = same_events(evs, n, &want);
        want_free(&want);
    }
    return ok;
}

/* An acknowledged delete that deleted nothing made no revision. */
static int made_none(const att_t *a)
{
    return a->acked && a->kind == K_DEL && a->deleted == 0;
}

/* Moves writer w's cursor to i, accounting for the attempts passed: an
 * acknowledged one passed is missing, an unacknowledged one was lost. */
static void pass_to(check_t *c, wlog_t *l, size_t *pos, size_t i, int64_t r, const att_t *by, int w)
{
    for (size_t j = *pos; j < i; j++) {
        att_t *a = &l->a[j];
        if (made_none(a))
            a->matched = 1;
        else if (a->acked)
            failf(c, "writer %d: acknowledged %s (revision %" PRId64 ") is missing; revision %" PRId64
                  " holds the later %s", w, a->id, a->rev, r, by->id);
        else
            c->unacked_lost++;
    }
    *pos = i + 1;
}

/* Finds the attempt of writer w that made revision r (events evs[0..n)).
 * An acknowledged attempt claims its own revision; otherwise it is the
 * first unacknowledged attempt, in order, that makes exactly these events
 * (one that is identical to a later acknowledged one, e.g. a lost delete
 * of the same key, never steals that one's revision). NULL if none. */
static att_t *match(check_t *c, wlog_t *l, size_t *pos, const ev_t *evs, size_t n, int64_t r, int w)
{
    for (size_t i = *pos; i < l->n; i++) {
        att_t *a = &l->a[i];
        if (!a->acked || made_none(a) || a->rev < r) continue;
        if (a->rev > r) break;
        if (!makes(c, a, w, evs, n))
            failf(c, "revision %" PRId64 " does not hold what acknowledged %s made", r, a->id);
        pass_to(c, l, pos, i, r, a, w);
        return a;
    }
    for (size_t i = *pos; i < l->n; i++) {
        att_t *a = &l->a[i];
        if (a->acked && !made_none(a) && a->rev > r) break;   /* later than r: r is not its */
        if (a->acked) continue;
        if (makes(c, a, w, evs, n)) {
            pass_to(c, l, pos, i, r, a, w);
            return a;
        }
    }
    return NULL;
}

/* Applies one revision's events to the state, checking versions. */
static void apply_events(check_t *c, const ev_t *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const ev_t *e = &evs[i];
        kstate_t *s = &c->st[e->w][e->k];
        if (e->del) {
            free(s->val);
            *s = (kstate_t){0};
            continue;
        }
        int64_t create = s->val ? s->create : e->rev, version = s->val ? s->version + 1 : 1;
        if (e->create != create || e->version != version)
            failf(c, "revision %" PRId64 " pl/w%d/k%d: create_revision %" PRId64 " version %" PRId64
                  ", history says %" PRId64 " and %" PRId64, e->rev, e->w, e->k, e->create, e->version,
                  create, version);
        free(s->val);
        s->val = strdup(e->val);
        s->mod = e->rev;
        s->create = e->create;
        s->version = e->version;
    }
}

static void check_history(check_t *c, wlog_t *logs, int nw, ev_t *evs, size_t n, int64_t head)
{
    size_t pos[MAXW] = {0};
    int64_t expect = 2;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && evs[j].rev == evs[i].rev) j++;
        int64_t r = evs[i].rev;
        if (r != expect) failf(c, "revisions jump from %" PRId64 " to %" PRId64, expect - 1, r);
        expect = r + 1;
        c->revisions++;
        int w = evs[i].w, one = w >= 0 && w < nw;
        for (size_t k = i; k < j; k++) one &= evs[k].w == w;
        if (w == -2 && j - i == 1) {   /* a barrier put of an earlier verify */
            i = j;
            continue;
        }
        att_t *a = one ? match(c, &logs[w], &pos[w], evs + i, j - i, r, w) : NULL;
        if (!a) {
            failf(c, "revision %" PRId64 " (%zu events, writer %d) matches no attempt in order", r, j - i, w);
        } else {
            a->matched = 1;
            if (a->acked && a->rev != r)
                failf(c, "%s acknowledged at revision %" PRId64 " but made revision %" PRId64, a->id, a->rev, r);
            if (!a->acked) c->unacked_applied++;
        }
        if (one) apply_events(c, evs + i, j - i);
        i = j;
    }
    if (expect - 1 != head && !(n == 0 && head == 1))
        failf(c, "history ends at revision %" PRId64 ", head is %" PRId64, expect - 1, head);
    for (int w = 0; w < nw; w++)
        for (size_t i = pos[w]; i < logs[w].n; i++) {
            att_t *a = &logs[w].a[i];
            if (!a->acked) {
                c->unacked_lost++;
            } else if (a->kind == K_DEL && a->deleted == 0) {
                a->matched = 1;   /* deleted nothing: made no revision */
            } else {
                failf(c, "writer %d: acknowledged %s (revision %" PRId64 ") is missing (after the last "
                      "revision of this writer)", w, a->id, a->rev);
            }
        }
}

/* Range at each acknowledged revision; and the head against the replay. */
static void check_ranges(check_t *c, gc_conn_t *conn, wlog_t *logs, int nw, Etcdserverpb__RangeResponse *head)
{
    for (int w = 0; w < nw; w++)
        for (size_t i = 0; i < logs[w].n; i++) {
            att_t *a = &logs[w].a[i];
            if (!a->acked) continue;
            c->acked++;
            want_t want;
            kstate_t none[NKEYS] = {{0}};
            for (int k = 0; k < NKEYS; k++) none[k].val = (char *)"";   /* deletes: expect absence */
            effects(a, none, a->succ, &want);
            for (int e = 0; e < want.n; e++) {
                char key[32];
                key_name(key, sizeof key, w, want.k[e]);
                gc_status_t st;
                Etcdserverpb__RangeResponse *r = range(conn, key, NULL, a->rev, &st);
                c->ranges++;
                if (!r) {
                    failf(c, "Range %s at revision %" PRId64 " (acked %s): %s %s", key, a->rev, a->id,
                          gc_code_name(st.code), st.message);
                    continue;
                }
                if (want.del[e] && r->n_kvs != 0)
                    failf(c, "%s deleted by acked %s at %" PRId64 " still exists there", key, a->id, a->rev);
                if (!want.del[e] &&
                    (r->n_kvs != 1 || r->kvs[0]->mod_revision != a->rev ||
                     r->kvs[0]->value.len != strlen(want.val[e]) ||
                     memcmp(r->kvs[0]->value.data, want.val[e], r->kvs[0]->value.len) != 0))
                    failf(c, "%s at revision %" PRId64 ": acked %s's value with that mod_revision is not there",
                          key, a->rev, a->id);
                protobuf_c_message_free_unpacked(&r->base, NULL);
            }
            want_free(&want);
        }
    int live = 0;
    for (int w = 0; w < MAXW; w++)
        for (int k = 0; k < NKEYS; k++) live += c->st[w][k].val != NULL;
    if ((int)head->n_kvs != live) failf(c, "head has %zu keys, the history %d", head->n_kvs, live);
    for (size_t i = 0; i < head->n_kvs; i++) {
        int w, k;
        Mvccpb__KeyValue *kv = head->kvs[i];
        if (parse_key(&kv->key, &w, &k) != 0) {
            failf(c, "head has a key no writer owns");
            continue;
        }
        kstate_t *s = &c->st[w][k];
        if (!s->val || s->mod != kv->mod_revision || s->version != kv->version || strlen(s->val) != kv->value.len ||
            memcmp(s->val, kv->value.data, kv->value.len) != 0)
            failf(c, "head pl/w%d/k%d (mod_revision %" PRId64 ") differs from the replayed history", w, k,
                  kv->mod_revision);
    }
}

static int cmd_verify(int port, const char *logp, int nw, int pid)
{
    if (nw < 1 || nw > MAXW) return 2;
    wlog_t logs[MAXW] = {{0}};
    for (int w = 0; w < nw; w++) {
        char path[512];
        snprintf(path, sizeof path, "%s.w%d", logp, w);
        read_log(path, &logs[w]);
    }
    int64_t first_rev = 0, max_acked = 0;
    gc_conn_t *conn = connect_ready(port, pid, 30, &first_rev);
    if (!conn) {
        printf("FAIL: kshimd did not start on the data dir (the store does not open)\n");
        return 2;
    }
    for (int w = 0; w < nw; w++)
        for (size_t i = 0; i < logs[w].n; i++)
            if (logs[w].a[i].acked && logs[w].a[i].rev > max_acked) max_acked = logs[w].a[i].rev;
    /* The first read after the restart may come before the WAL tail is
     * applied again: kshimd serves reads from the store at once. */
    if (first_rev < max_acked)
        printf("STALE: the first read after the restart answered at revision %" PRId64
               ", below the highest acknowledged revision %" PRId64 "\n", first_rev, max_acked);
    static check_t c;
    memset(&c, 0, sizeof c);
    gc_status_t st;
    /* A barrier: once this put is acknowledged, every recovered entry before
     * it is applied. Its key is outside the writers' [pl/, pl0); the
     * history is read up to its revision. */
    Etcdserverpb__PutRequest bar = ETCDSERVERPB__PUT_REQUEST__INIT;
    bar.key = bin("pl-barrier");
    bar.value = bin("x");
    ProtobufCMessage *bresp = NULL;
    int64_t last = 0;
    if (call(conn, "/etcdserverpb.KV/Put", &bar.base, &etcdserverpb__put_response__descriptor, &bresp, &st) == 0) {
        last = ((Etcdserverpb__PutResponse *)bresp)->header->revision;
        protobuf_c_message_free_unpacked(bresp, NULL);
    } else {
        failf(&c, "barrier Put after the restart: %s %s", gc_code_name(st.code), st.message);
    }
    Etcdserverpb__RangeResponse *head = last ? range(conn, "pl/", "pl0", 0, &st) : NULL;
    ev_t *evs = NULL;
    size_t n = 0;
    if (!last) {
        /* reported above */
    } else if (!head) {
        failf(&c, "Range at head: %s %s", gc_code_name(st.code), st.message);
    } else if (history(conn, last, &evs, &n) != 0) {
        failf(&c, "Watch from revision 1 did not deliver the history up to %" PRId64, last);
    } else {
        check_history(&c, logs, nw, evs, n, last);
        check_ranges(&c, conn, logs, nw, head);
    }
    printf("verified: head %" PRId64 " (first read at %" PRId64 "), %ld revisions, %ld acknowledged ops (%ld ranges), unacknowledged "
           "applied %ld lost %ld, %ld failures\n", last, first_rev, c.revisions, c.acked,
           c.ranges, c.unacked_applied, c.unacked_lost, c.failures);
    if (head) protobuf_c_message_free_unpacked(&head->base, NULL);
    for (size_t i = 0; i < n; i++) free(evs[i].val);
    free(evs);
    for (int w = 0; w < MAXW; w++)
        for (int k = 0; k < NKEYS; k++) free(c.st[w][k].val);
    for (int w = 0; w < nw; w++) free(logs[w].a);
    gc_close(conn);
    return c.failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 9 && strcmp(argv[1], "write") == 0)
        return cmd_write(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]), strtoull(argv[6], NULL, 10),
                         atoi(argv[7]), atof(argv[8]));
    if (argc == 6 && strcmp(argv[1], "verify") == 0)
        return cmd_verify(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: powerloss_client write PORT LOG INC NWRITERS SEED PID MAXSEC\n"
                    "       powerloss_client verify PORT LOG NWRITERS PID\n");
    return 2;
}
