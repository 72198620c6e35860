/*
 * svc_maintenance.c: the etcd Maintenance service (/etcdserverpb.Maintenance/...)
 * and the member's maintenance duties, as etcd 3.4 does them:
 *   Status      what `etcdctl endpoint status` and kube-apiserver's health
 *               and version probes read (alarms are listed in errors);
 *   Hash,       the store's hashes (storage/mvcc/mvcc_hash.c, byte-compatible
 *   HashKV      with etcd's), computed on a reader thread;
 *   Alarm       GET / ACTIVATE / DEACTIVATE through Raft, applied on every
 *               member by the applier below (storage/kv/kv_alarm.c); the
 *               same applier refuses writes while an alarm caps the store,
 *               and raises NOSPACE when an applied write exceeded the quota
 *               (etcd's quotaApplierV3), as the services do when their own
 *               quota check refuses one (svc_maintenance_raise_nospace);
 *               CORRUPT is raised by the corruption check (svc_corrupt.c);
 *   Defragment  LevelDB's manual compaction of the whole key space on a
 *               thread of its own (one run at a time; calls that arrive
 *               during a run wait for the next one), answered when done;
 *   auto-compaction  --auto-compaction-mode/-retention: a loop timer on the
 *               leader proposes Compact through Raft like a client's.
 * Snapshot is not served yet (Unimplemented); MoveLeader is in svc_cluster.c.
 * Auth as etcd 3.4: Defragment, Hash and HashKV need the root role; Status
 * and Alarm are open to every caller.
 * Owns struct svc_maintenance (s->maint): the alarm set, the defrag thread
 * and its waiting calls, the auto-compaction state.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_check.h"
#include "kv_alarm.h"
#include "log.h"
#include "readers.h"
#include "services.h"
#include "version.h"

#define ERR_COMPACTED "etcdserver: mvcc: required revision has been compacted"
#define ERR_FUTURE_REV "etcdserver: mvcc: required revision is a future revision"
#define NOSPACE_RETRY_MS 1000                /* a lost NOSPACE proposal is made again after this */
#define REVISION_INTERVAL_MS (5 * 60 * 1000) /* etcd's revInterval */

typedef struct call_list {
    grpc_call_t **v; /* one reference each */
    size_t n, cap;
} call_list_t;

enum { AUTO_OFF = 0, AUTO_PERIODIC = 1, AUTO_REVISION = 2 };

struct svc_maintenance {
    server_t *s;
    pthread_mutex_t open_mu; /* opening the alarm set (apply or loop thread first) */
    kv_alarms_t *alarms;
    uint64_t nospace_asked_ms; /* loop: when NOSPACE activation was last proposed */
    /* defrag: one run at a time */
    pthread_t defrag_thread;
    int defrag_running;    /* loop: a thread was started and not joined */
    call_list_t now, next; /* calls answered by this run / by the next one */
    uint64_t defrag_ms;    /* duration of the last run (thread writes, loop reads after join) */
    int defrag_rc;         /* its mvcc_defrag result (same) */
    /* auto-compaction */
    int auto_mode;
    int64_t retention;       /* revision mode: revisions kept */
    uint64_t period_ms;      /* periodic mode: the retention */
    uint64_t interval_ms;    /* timer period */
    int64_t *revs;           /* periodic: the revision at each tick, oldest first */
    size_t n_revs, max_revs; /* etcd: period / retry interval + 1 */
    uint64_t last_success_ms, base_interval_ms;
    loop_timer_t *auto_timer;
};

static kv_alarms_t *get_alarms(struct svc_maintenance *sm) {
    pthread_mutex_lock(&sm->open_mu);
    if (!sm->alarms && kv_alarms_open(sm->s->mvcc, &sm->alarms) != 0) {
        log_error("cannot load the alarms from the store");
        sm->alarms = NULL;
    }
    kv_alarms_t *a = sm->alarms;
    pthread_mutex_unlock(&sm->open_mu);
    return a;
}

static const char *alarm_name(int type) {
    switch (type) {
    case ETCDSERVERPB__ALARM_TYPE__NOSPACE: return "NOSPACE";
    case ETCDSERVERPB__ALARM_TYPE__CORRUPT: return "CORRUPT";
    default: return "NONE";
    }
}

size_t svc_maintenance_alarms(server_t *s, kv_alarm_t *out, size_t max) {
    kv_alarms_t *a = s->maint ? get_alarms(s->maint) : NULL;
    return a ? kv_alarms_get(a, ETCDSERVERPB__ALARM_TYPE__NONE, out, max) : 0;
}

/* etcd's Status errors: "memberID:<id> alarm:<TYPE> " per alarm (AlarmMember.String(),
 * the proto text format: a zero field is left out, so member 0's CORRUPT is
 * "alarm:CORRUPT "). */
static size_t alarm_errors(server_t *s, char texts[][64], char **ptrs, size_t max) {
    kv_alarm_t v[KV_ALARMS_MAX];
    size_t n = svc_maintenance_alarms(s, v, KV_ALARMS_MAX);
    if (n > max) n = max;
    for (size_t i = 0; i < n; i++) {
        int n_id =
            v[i].member_id ? snprintf(texts[i], 64, "memberID:%llu ", (unsigned long long)v[i].member_id) : 0;
        snprintf(texts[i] + n_id, (size_t)(64 - n_id), "%s%s%s", v[i].type ? "alarm:" : "",
                 v[i].type ? alarm_name(v[i].type) : "", v[i].type ? " " : "");
        ptrs[i] = texts[i];
    }
    return n;
}

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
    char texts[KV_ALARMS_MAX + 1][64];
    char *errors[KV_ALARMS_MAX + 1];
    size_t n_errors = 0;
    if (st.leader == 0) errors[n_errors++] = "etcdserver: no leader";
    n_errors += alarm_errors(s, texts, errors + n_errors, KV_ALARMS_MAX);
    resp.n_errors = n_errors;
    resp.errors = errors;
    server_send_message(call, &resp.base, 1);
}

/* ---- Hash, HashKV (reader thread) ---- */

typedef struct hash_job {
    reader_job_t job; /* first */
    server_t *s;
    grpc_call_t *call; /* one reference */
    int kv;            /* HashKV (else Hash) */
    int64_t rev;
    uint32_t hash;
    int64_t cur_rev, compact_rev;
    int rc;
    kv_header_info_t hdr;
    server_written_wait_t written; /* waiting for the store (server_when_written) */
} hash_job_t;

static void hash_run(reader_job_t *job) {
    hash_job_t *j = (hash_job_t *)job;
    if (j->kv)
        j->rc = mvcc_hash_kv(j->s->mvcc, j->rev, &j->hash, &j->cur_rev, &j->compact_rev);
    else
        j->rc = mvcc_hash_all(j->s->mvcc, &j->hash, &j->cur_rev);
}

static void hash_answer(hash_job_t *j) {
    if (grpc_call_is_closed(j->call)) return;
    if (j->rc == MVCC_ERR_COMPACTED) {
        grpc_call_finish(j->call, GRPC_OUT_OF_RANGE, ERR_COMPACTED);
        return;
    }
    if (j->rc == MVCC_ERR_FUTURE_REV) {
        grpc_call_finish(j->call, GRPC_OUT_OF_RANGE, ERR_FUTURE_REV);
        return;
    }
    if (j->rc != MVCC_OK) {
        grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: storage error");
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = j->hdr.cluster_id;
    hdr.member_id = j->hdr.member_id;
    hdr.raft_term = j->hdr.raft_term;
    hdr.revision = j->cur_rev;
    if (j->kv) {
        Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
        resp.header = &hdr;
        resp.hash = j->hash;
        resp.compact_revision = j->compact_rev;
        server_send_message(j->call, &resp.base, 1);
    } else {
        Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
        resp.header = &hdr;
        resp.hash = j->hash;
        server_send_message(j->call, &resp.base, 1);
    }
}

static void hash_done(reader_job_t *job, int status) {
    hash_job_t *j = (hash_job_t *)job;
    if (status == READER_DONE)
        hash_answer(j);
    else if (!grpc_call_is_closed(j->call))
        grpc_call_finish(j->call, GRPC_UNAVAILABLE, "etcdserver: server stopped");
    grpc_call_unref(j->call);
    free(j);
}

static void hash_after_written(server_t *s, void *arg, int ok);
static void start_hash(hash_job_t *j);

static void submit_hash(server_t *s, grpc_call_t *call, int kv, int64_t rev) {
    const char *err = NULL;
    grpc_status_t st = auth_check_admin_maintenance(s, call, &err);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, err);
        return;
    }
    hash_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    j->job.run = hash_run;
    j->job.done = hash_done;
    j->s = s;
    j->call = call;
    j->kv = kv;
    j->rev = rev;
    server_header_info(s, &j->hdr);
    grpc_call_ref(call); /* start_hash's, or released by hash_after_written */
    server_when_written(s, &j->written, hash_after_written, j);
}

/* The store holds every write answered before the hash was asked for (a
 * KV write is answered before its write group is in LevelDB), or the
 * member is stopping. */
static void hash_after_written(server_t *s, void *arg, int ok) {
    (void)s;
    hash_job_t *j = arg;
    if (ok && !grpc_call_is_closed(j->call)) {
        start_hash(j);
        return;
    }
    grpc_call_unref(j->call);
    free(j);
}

/* The call's reference is held (submit_hash). */
static void start_hash(hash_job_t *j) {
    server_t *s = j->s;
    grpc_call_t *call = j->call;
    if (!s->readers) { /* unit tests of the services: read here */
        hash_run(&j->job);
        hash_done(&j->job, READER_DONE);
        return;
    }
    int rc = readers_submit(s->readers, &j->job);
    if (rc == READERS_OK) return;
    grpc_call_finish(call, rc == READERS_FULL ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNAVAILABLE,
                     rc == READERS_FULL ? "etcdserver: too many requests" : "etcdserver: server stopped");
    grpc_call_unref(call);
    free(j);
}

static void hash_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    Etcdserverpb__HashRequest *req = etcdserverpb__hash_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    etcdserverpb__hash_request__free_unpacked(req, NULL);
    submit_hash(ctx, call, 0, 0);
}

static void hashkv_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    Etcdserverpb__HashKVRequest *req = etcdserverpb__hash_kvrequest__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    int64_t rev = req->revision;
    etcdserverpb__hash_kvrequest__free_unpacked(req, NULL);
    submit_hash(ctx, call, 1, rev);
}

/* ---- alarms ---- */

static void alarm_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__AlarmRequest *req = etcdserverpb__alarm_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    /* etcd: every action, GET included, is a Raft request, which checks
     * the token (if one is sent) but no permission */
    const char *why = NULL;
    grpc_status_t st = auth_check_token_maintenance(s, call, &why);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, why);
    } else if (server_require_leader(s, call) == 0) {
        Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
        ir.alarm = req;
        server_propose(s, call, &ir);
    }
    etcdserverpb__alarm_request__free_unpacked(req, NULL);
}

int svc_maintenance_propose_alarm(server_t *s, int type, uint64_t member_id) {
    Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
    ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
    ar.memberid = member_id;
    ar.alarm = (Etcdserverpb__AlarmType)type;
    Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT; /* proposer 0: nobody answers */
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.header = &hdr;
    ir.alarm = &ar;
    uint8_t buf[64];
    size_t len = kshim__internal_request__get_packed_size(&ir);
    if (len > sizeof buf) return -1;
    kshim__internal_request__pack(&ir, buf);
    return raft_node_propose(s->raft, buf, len) == RAFT_NODE_OK ? 0 : -1;
}

/* Proposes a NOSPACE activation for this member, nobody waiting for it. */
static void propose_nospace(server_t *s) {
    if (svc_maintenance_propose_alarm(s, ETCDSERVERPB__ALARM_TYPE__NOSPACE, s->member_id) != 0)
        log_warn("cannot propose the NOSPACE alarm now; retried on the next refused write");
}

static int own_alarm_active(server_t *s, int type) {
    kv_alarm_t v[KV_ALARMS_MAX];
    size_t n = svc_maintenance_alarms(s, v, KV_ALARMS_MAX);
    for (size_t i = 0; i < n && i < KV_ALARMS_MAX; i++)
        if (v[i].type == type && v[i].member_id == s->member_id) return 1;
    return 0;
}

void svc_maintenance_raise_nospace(server_t *s) {
    struct svc_maintenance *sm = s->maint;
    if (!sm || own_alarm_active(s, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) return;
    uint64_t now = loop_now_ms(s->loop);
    if (sm->nospace_asked_ms != 0 && now - sm->nospace_asked_ms < NOSPACE_RETRY_MS) return;
    sm->nospace_asked_ms = now;
    log_warn("a write exceeded the backend quota (--quota-backend-bytes %llu); raising the NOSPACE alarm",
             (unsigned long long)mvcc_options(s->mvcc)->quota_backend_bytes);
    propose_nospace(s);
}

static void raise_nospace_post(void *arg) { svc_maintenance_raise_nospace(arg); }

/* An applied write that was over the quota (etcd's quotaApplierV3): it is
 * applied on every member alike; only its answer says ErrNoSpace, and this
 * member raises the alarm. */
static void answer_no_space(server_t *s, kv_result_t *res) {
    if (res->code != 0) return;
    int64_t rev = res->revision;
    kv_result_clear(res);
    res->code = GRPC_RESOURCE_EXHAUSTED;
    snprintf(res->message, sizeof res->message, "%s", KV_ERR_NO_SPACE);
    res->revision = rev;
    loop_post(s->loop, raise_nospace_post, s);
}

/* etcd's apply logs: "alarm raised" when a type's first alarm is activated,
 * "alarm disarmed" when its last one is deactivated. */
static int apply_alarm(server_t *s, kv_alarms_t *a, uint64_t index, const Etcdserverpb__AlarmRequest *ar,
                       const kv_header_info_t *hdr, kv_result_t *res) {
    size_t before = kv_alarms_get(a, (int)ar->alarm, NULL, 0);
    if (kv_alarms_apply(a, s->mvcc, index, ar, hdr, res) != 0) return -1;
    size_t after = kv_alarms_get(a, (int)ar->alarm, NULL, 0);
    if (ar->alarm != ETCDSERVERPB__ALARM_TYPE__NONE && (before == 0) != (after == 0))
        log_warn("alarm %s (alarm %s, from %llx)", after ? "raised" : "disarmed", alarm_name((int)ar->alarm),
                 (unsigned long long)ar->memberid);
    return 1;
}

int svc_maintenance_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                          const kv_header_info_t *hdr, kv_result_t *res) {
    kv_alarms_t *a = s->maint ? get_alarms(s->maint) : NULL;
    if (!a) return -1;
    if (req->alarm) return apply_alarm(s, a, index, req->alarm, hdr, res);
    return kv_alarms_refuse(a, s->mvcc, index, req, res);
}

int svc_maintenance_quota_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                                const kv_header_info_t *hdr, kv_result_t *res) {
    if (index <= mvcc_apply_index(s->mvcc) || kv_quota_available(s->mvcc, req)) return 0;
    int rc;
    if (req->put || req->txn) {
        rc = kv_apply(s->mvcc, index, req, hdr, res);
        if (rc < 0) return -1;
        answer_no_space(s, res);
        return 1;
    }
    if (req->lease_grant) {
        rc = svc_lease_apply(s, index, req, hdr, res);
        if (rc == 1) answer_no_space(s, res);
        return rc;
    }
    return 0;
}

/* ---- Defragment ---- */

static int list_push(call_list_t *l, grpc_call_t *call) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        grpc_call_t **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    grpc_call_ref(call);
    l->v[l->n++] = call;
    return 0;
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void defrag_done(void *arg);

static void *defrag_main(void *arg) {
    struct svc_maintenance *sm = arg;
    uint64_t t0 = mono_ms();
    sm->defrag_rc = mvcc_defrag(sm->s->mvcc);
    sm->defrag_ms = mono_ms() - t0;
    loop_post(sm->s->loop, defrag_done, sm); /* refused: the loop is stopping, stop joins */
    return NULL;
}

static int defrag_start(struct svc_maintenance *sm) {
    log_info("starting defragment (LevelDB compaction of the whole key space)");
    if (pthread_create(&sm->defrag_thread, NULL, defrag_main, sm) != 0) return -1;
    sm->defrag_running = 1;
    return 0;
}

static void answer_list(server_t *s, call_list_t *l, int ok) {
    for (size_t i = 0; i < l->n; i++) {
        grpc_call_t *call = l->v[i];
        if (!grpc_call_is_closed(call)) {
            if (ok) {
                Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
                server_fill_header(s, &hdr);
                Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
                resp.header = &hdr;
                server_send_message(call, &resp.base, 1);
            } else {
                grpc_call_finish(call, GRPC_UNAVAILABLE, "kshim: defragment failed or the server stopped");
            }
        }
        grpc_call_unref(call);
    }
    l->n = 0;
}

static void defrag_done(void *arg) {
    struct svc_maintenance *sm = arg;
    pthread_join(sm->defrag_thread, NULL);
    sm->defrag_running = 0;
    log_info("finished defragment in %llu ms; db size now %llu bytes", (unsigned long long)sm->defrag_ms,
             (unsigned long long)mvcc_db_size(sm->s->mvcc));
    answer_list(sm->s, &sm->now, sm->defrag_rc == MVCC_OK);
    call_list_t t = sm->now;
    sm->now = sm->next;
    sm->next = t;
    if (sm->now.n > 0 && defrag_start(sm) != 0) answer_list(sm->s, &sm->now, 0);
}

static void defragment_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    struct svc_maintenance *sm = s->maint;
    Etcdserverpb__DefragmentRequest *req = etcdserverpb__defragment_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    etcdserverpb__defragment_request__free_unpacked(req, NULL);
    const char *err = NULL;
    grpc_status_t st = auth_check_admin_maintenance(s, call, &err);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, err);
        return;
    }
    call_list_t *l = sm->defrag_running ? &sm->next : &sm->now;
    if (list_push(l, call) != 0) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    if (!sm->defrag_running && defrag_start(sm) != 0) answer_list(s, &sm->now, 0);
}

/* ---- auto-compaction (etcd 3.4 etcdserver/api/v3compactor) ---- */

/* Go's time.ParseDuration for what etcd users write: a sequence of
 * <number><unit> with units h, m, s, ms (fractions allowed). -1: invalid. */
static int64_t parse_duration_ms(const char *s) {
    double total = 0;
    if (!*s) return -1;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno) return -1;
        s = end;
        if (strncmp(s, "ms", 2) == 0) {
            total += v;
            s += 2;
        } else if (*s == 'h') {
            total += v * 3600e3;
            s++;
        } else if (*s == 'm') {
            total += v * 60e3;
            s++;
        } else if (*s == 's') {
            total += v * 1e3;
            s++;
        } else {
            return -1;
        }
    }
    return (int64_t)total;
}

/* etcd's parseCompactionRetention; 0 with *on = 0 when off. */
static int parse_auto_compaction(struct svc_maintenance *sm, const char *mode, const char *retention) {
    if (!mode || !*mode) mode = "periodic";
    if (!retention || !*retention) retention = "0";
    int periodic = strcmp(mode, "periodic") == 0;
    if (!periodic && strcmp(mode, "revision") != 0) {
        log_error("unknown auto-compaction-mode \"%s\"", mode);
        return -1;
    }
    char *end;
    errno = 0;
    long long n = strtoll(retention, &end, 10);
    int64_t ms;
    if (*end == 0 && !errno && n >= 0) {
        ms = periodic ? n * 3600000LL : n;
    } else {
        ms = parse_duration_ms(retention);
        if (ms < 0) {
            log_error("error parsing CompactionRetention: time: invalid duration \"%s\"", retention);
            return -1;
        }
        if (!periodic) ms *= 1000000; /* etcd takes the duration's nanoseconds as revisions */
    }
    if (ms == 0) return 0;
    uint64_t test_interval = 0;
    const char *env = getenv("KSHIM_TEST_AUTO_COMPACT_INTERVAL_MS"); /* e2e only */
    if (env) test_interval = strtoull(env, NULL, 10);
    if (periodic) {
        sm->auto_mode = AUTO_PERIODIC;
        sm->period_ms = (uint64_t)ms;
        uint64_t itv = sm->period_ms > 3600000 ? 3600000 : sm->period_ms;
        sm->interval_ms = itv / 10 ? itv / 10 : 1; /* etcd's retry interval */
        sm->max_revs = (size_t)(sm->period_ms / sm->interval_ms) + 1;
        sm->base_interval_ms = sm->period_ms;
    } else {
        sm->auto_mode = AUTO_REVISION;
        sm->retention = ms;
        sm->interval_ms = test_interval ? test_interval : REVISION_INTERVAL_MS;
    }
    log_info("auto-compaction: mode %s, retention %s (checked every %llu ms)", mode, retention,
             (unsigned long long)sm->interval_ms);
    return 0;
}

/* Proposes Compact{rev} with nobody waiting, as a client's would be. */
static void propose_compact(server_t *s, int64_t rev) {
    Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    cr.revision = rev;
    Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT;
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.header = &hdr;
    ir.compaction = &cr;
    uint8_t buf[64];
    size_t len = kshim__internal_request__get_packed_size(&ir);
    if (len > sizeof buf) return;
    kshim__internal_request__pack(&ir, buf);
    if (raft_node_propose(s->raft, buf, len) == RAFT_NODE_OK)
        log_info("auto-compaction: proposed compaction at revision %lld", (long long)rev);
    else
        log_warn("auto-compaction: cannot propose compaction at revision %lld now", (long long)rev);
}

/* A compaction at rev counts as done once the store's compact revision
 * reached it (etcd: success or ErrCompacted). */
static int compact_to(server_t *s, int64_t rev) {
    if (rev <= mvcc_compact_revision(s->mvcc)) return 1;
    propose_compact(s, rev);
    return 0;
}

static void revision_tick(struct svc_maintenance *sm) {
    int64_t rev = mvcc_revision(sm->s->mvcc) - sm->retention;
    if (rev <= 0) return;
    compact_to(sm->s, rev);
}

/* etcd's Periodic.Run, one loop iteration per tick: the revisions sampled
 * so far (the newest one interval ago) decide, then this tick's revision is
 * sampled. Sampling goes on while the compactor is paused (not the leader),
 * as in etcd, whose paused loop still appends a revision each round. */
static void sample_rev(struct svc_maintenance *sm) {
    if (sm->n_revs == sm->max_revs) {
        memmove(sm->revs, sm->revs + 1, (sm->n_revs - 1) * sizeof sm->revs[0]);
        sm->n_revs--;
    }
    sm->revs[sm->n_revs++] = mvcc_revision(sm->s->mvcc);
}

static void periodic_check(struct svc_maintenance *sm, uint64_t now) {
    if (sm->n_revs == 0 || now - sm->last_success_ms < sm->base_interval_ms) return;
    sm->base_interval_ms = sm->period_ms > 3600000 ? 3600000 : sm->period_ms;
    /* revs[0]: the revision one retention ago (the oldest sample kept) */
    compact_to(sm->s, sm->revs[0]); /* proposed or already done: a success, as etcd counts it */
    sm->last_success_ms = now;
}

static void auto_tick(loop_t *loop, void *arg) {
    struct svc_maintenance *sm = arg;
    sm->auto_timer = loop_timer_add(loop, sm->interval_ms, auto_tick, sm);
    int leader = server_is_leader(sm->s); /* etcd pauses the compactor on followers */
    if (sm->auto_mode == AUTO_REVISION) {
        if (leader) revision_tick(sm);
        return;
    }
    if (leader) periodic_check(sm, loop_now_ms(loop));
    sample_rev(sm);
}

/* ---- lifecycle ---- */

static grpc_method_t maintenance_methods[] = {
    {.path = "/etcdserverpb.Maintenance/Status", .on_message = status_call},
    {.path = "/etcdserverpb.Maintenance/Alarm", .on_message = alarm_call},
    {.path = "/etcdserverpb.Maintenance/Defragment", .on_message = defragment_call},
    {.path = "/etcdserverpb.Maintenance/Hash", .on_message = hash_call},
    {.path = "/etcdserverpb.Maintenance/HashKV", .on_message = hashkv_call},
};

/* After a snapshot from the leader replaced the store: the alarms are the
 * snapshot's (server_reload_fn). */
static int maintenance_reload(server_t *s) {
    kv_alarms_t *a = s->maint ? get_alarms(s->maint) : NULL;
    if (!a || kv_alarms_reload(a, s->mvcc) != 0) {
        log_error("cannot reload the alarms from the installed snapshot");
        return -1;
    }
    return 0;
}

int svc_maintenance_init(server_t *s) {
    struct svc_maintenance *sm = calloc(1, sizeof *sm);
    if (!sm) return -1;
    sm->s = s;
    pthread_mutex_init(&sm->open_mu, NULL);
    if (parse_auto_compaction(sm, s->cfg->auto_compaction_mode, s->cfg->auto_compaction_retention) != 0) {
        pthread_mutex_destroy(&sm->open_mu);
        free(sm);
        return -1;
    }
    if (sm->auto_mode == AUTO_PERIODIC) {
        sm->revs = calloc(sm->max_revs, sizeof sm->revs[0]);
        if (!sm->revs) {
            pthread_mutex_destroy(&sm->open_mu);
            free(sm);
            return -1;
        }
    }
    s->maint = sm;
    if (server_add_reload_hook(s, maintenance_reload) != 0) log_warn("no room for the alarms' reload hook");
    return 0;
}

void svc_maintenance_register(server_t *s) {
    for (size_t i = 0; i < sizeof maintenance_methods / sizeof maintenance_methods[0]; i++) {
        maintenance_methods[i].ctx = s;
        grpc_server_register(s->grpc, &maintenance_methods[i]);
    }
    struct svc_maintenance *sm = s->maint;
    if (!sm) return;
    if (sm->auto_mode != AUTO_OFF) {
        sm->last_success_ms = loop_now_ms(s->loop);
        if (sm->auto_mode == AUTO_PERIODIC) sample_rev(sm); /* etcd's first append, at start */
        sm->auto_timer = loop_timer_add(s->loop, sm->interval_ms, auto_tick, sm);
    }
}

void svc_maintenance_stop(server_t *s) {
    struct svc_maintenance *sm = s->maint;
    if (!sm) return;
    if (sm->auto_timer) loop_timer_cancel(s->loop, sm->auto_timer);
    if (sm->defrag_running) pthread_join(sm->defrag_thread, NULL);
    answer_list(s, &sm->now, 0);
    answer_list(s, &sm->next, 0);
    free(sm->now.v);
    free(sm->next.v);
    free(sm->revs);
    kv_alarms_free(sm->alarms);
    pthread_mutex_destroy(&sm->open_mu);
    free(sm);
    s->maint = NULL;
}
