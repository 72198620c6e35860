/*
 * svc_lease.c: the etcd Lease service (/etcdserverpb.Lease/...).
 *
 * LeaseGrant and LeaseRevoke go through Raft like every write: the proposer
 * picks a random positive id for ID=0 before proposing (etcd's
 * v3_server.go LeaseGrant), so applying (storage/lease/lease.c) is deterministic.
 * LeaseKeepAlive (bidi stream), LeaseTimeToLive and LeaseLeases are served
 * on the loop thread from the in-memory lessor without Raft, as etcd's
 * leader does.
 *
 * Expiry is decided by the leader (single voter: this member, once started)
 * and carried out through the log: a loop timer every EXPIRY_TICK_MS takes
 * the leases past their deadline and proposes one LeaseRevoke entry each
 * (etcd's shape), at most LEASE_REVOKE_RATE per second, never deleting
 * anything itself. Revokes that never get applied are offered again after
 * LEASE_RETRY_MS. The revocation's deletes reach watchers through the
 * store's normal on_events hook.
 *
 * Restart: the lease records (id, granted TTL) are persistent; deadlines
 * are not. On start, as etcd's lessor.Promote(electionTimeout) on becoming
 * leader, every lease gets now + election timeout + its TTL (and a pile-up
 * of >= 1000 leases is spread to at most 750 expiries per second). So a
 * restart extends leases; it neither makes them eternal nor expires them all
 * at once.
 *
 * Key scans (TimeToLive with keys; Revoke's permission check with auth on,
 * which needs every attached key) read the store on a reader thread
 * (readers.h) and answer on the loop; the loop keeps the call.
 *
 * In a cluster (s->peer set), as etcd: only the leader's lessor is primary
 * (expires leases and proposes their revokes). The expiry timer polls
 * server_is_leader: on becoming leader every lease is extended to now +
 * election timeout + TTL (lessor_promote, etcd's Promote), on losing it the
 * lessor demotes (nothing expires here). A follower forwards LeaseKeepAlive
 * and LeaseTimeToLive to the leader (lease_forward.h) and answers its
 * client when the leader does, or with "etcdserver: request timed out"
 * after the request timeout. A Raft snapshot reloads the lessor from the
 * new store (a reload hook).
 *
 * Threads: the lessor has its own mutex (applies on the Raft thread,
 * keepalives on the loop). It is opened lazily on first use because Raft
 * replays the WAL (calling svc_lease_apply and the lease_exists hook)
 * before svc_lease_start runs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth_check.h"
#include "kv_alarm.h"
#include "lease.h"
#include "lease_forward.h"
#include "log.h"
#include "readers.h"
#include "services.h"

#define EXPIRY_TICK_MS 100
#define REVOKES_PER_TICK (LEASE_REVOKE_RATE * EXPIRY_TICK_MS / 1000)
/* Forwarded keepalives / TimeToLives waiting for the leader's answer. */
#define MAX_FORWARDED 4096

/* A follower's request to the leader, waiting for its answer. */
typedef struct forwarded {
    struct forwarded *next;
    uint64_t req_id;
    uint8_t kind;      /* SERVER_PEER_LEASE_RENEW or _TTL */
    grpc_call_t *call; /* referenced */
    int64_t lease_id;
    int want_keys; /* TimeToLive with keys: scan them here after the answer */
    uint64_t deadline_ms;
} forwarded_t;

typedef struct svc_lease {
    server_t *s;
    pthread_mutex_t open_mu; /* guards the lazy open of lessor */
    lessor_t *lessor;
    int64_t min_ttl; /* etcd's minLeaseTTL, seconds */
    loop_timer_t *expiry_timer;
    uint64_t revokes_proposed;
    forwarded_t *forwarded; /* follower: requests the leader has not answered */
    size_t n_forwarded;
    uint64_t next_req_id;
} svc_lease_t;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Any thread. NULL if the lease table cannot be loaded (logged). */
static lessor_t *get_lessor(svc_lease_t *sl) {
    pthread_mutex_lock(&sl->open_mu);
    if (!sl->lessor && sl->s->mvcc) {
        if (lessor_open(sl->s->mvcc, sl->min_ttl, &sl->lessor) != LEASE_OK) {
            log_error("cannot load the lease table");
            sl->lessor = NULL;
        }
    }
    lessor_t *l = sl->lessor;
    pthread_mutex_unlock(&sl->open_mu);
    return l;
}

static int lease_exists_hook(void *ctx, int64_t id) {
    lessor_t *l = get_lessor(ctx);
    return l && lessor_exists(l, id);
}

/* etcd: minTTL = ceil(((3 * electionTicks) / 2) * heartbeat) in seconds. */
static int64_t min_lease_ttl(const server_config_t *cfg) {
    uint64_t hb = cfg->heartbeat_interval_ms ? cfg->heartbeat_interval_ms : 100;
    uint64_t ticks = cfg->election_timeout_ms / hb;
    uint64_t ms = (3 * ticks) / 2 * hb;
    int64_t secs = (int64_t)((ms + 999) / 1000);
    return secs > 0 ? secs : 1;
}

/* ---- helpers ---- */

static int refused(grpc_call_t *call, grpc_status_t st, const char *msg) {
    if (st == GRPC_OK) return 0;
    grpc_call_finish(call, st, msg);
    return 1;
}

/* A random positive id no lease has (etcd: reqIDGen.Next() & (1<<63 - 1)). */
static int64_t new_lease_id(lessor_t *l) {
    for (;;) {
        uint64_t v = 0;
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = now_ms() * 0x9E3779B97F4A7C15ull;
        int64_t id = (int64_t)(v & INT64_MAX);
        if (id != 0 && !lessor_exists(l, id)) return id;
    }
}

/* ---- forwarding to the leader (a follower in a cluster) ---- */

/* 1 when this member must ask the leader (a follower with peers). */
static int is_follower(server_t *s) { return s->peer && !server_is_leader(s); }

/* Sends kind for lease_id to the leader and parks call until its answer.
 * Finishes call with etcd's error when that cannot be done. */
static void forward_to_leader(svc_lease_t *sl, grpc_call_t *call, uint8_t kind, int64_t lease_id,
                              int want_keys) {
    server_t *s = sl->s;
    uint64_t leader = server_leader(s);
    if (leader == 0) {
        grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: no leader");
        return;
    }
    if (sl->n_forwarded >= MAX_FORWARDED) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        return;
    }
    forwarded_t *f = calloc(1, sizeof *f);
    if (!f) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    *f = (forwarded_t){.req_id = ++sl->next_req_id,
                       .kind = kind,
                       .call = call,
                       .lease_id = lease_id,
                       .want_keys = want_keys,
                       .deadline_ms = now_ms() + server_request_timeout_ms(s->cfg)};
    lease_fwd_msg_t m = {.req_id = f->req_id, .lease_id = lease_id};
    uint8_t buf[LEASE_FWD_MAX_LEN];
    size_t len = lease_fwd_encode(kind, &m, buf);
    /* A send that fails (queue full, no connection) is answered by the timeout. */
    (void)server_peer_send(s, leader, kind, buf, len);
    grpc_call_ref(call);
    f->next = sl->forwarded;
    sl->forwarded = f;
    sl->n_forwarded++;
}

/* Takes the forwarded request req_id of kind out of the list (NULL if gone). */
static forwarded_t *take_forwarded(svc_lease_t *sl, uint64_t req_id, uint8_t kind) {
    for (forwarded_t **p = &sl->forwarded; *p; p = &(*p)->next)
        if ((*p)->req_id == req_id && (*p)->kind == kind) {
            forwarded_t *f = *p;
            *p = f->next;
            sl->n_forwarded--;
            return f;
        }
    return NULL;
}

static void forwarded_free(forwarded_t *f) {
    grpc_call_unref(f->call);
    free(f);
}

/* Expiry tick: answers the requests the leader left unanswered too long. */
static void expire_forwarded(svc_lease_t *sl, uint64_t now) {
    for (forwarded_t **p = &sl->forwarded; *p;) {
        forwarded_t *f = *p;
        if (f->deadline_ms > now) {
            p = &f->next;
            continue;
        }
        *p = f->next;
        sl->n_forwarded--;
        if (!grpc_call_is_closed(f->call))
            grpc_call_finish(f->call, GRPC_UNAVAILABLE, "etcdserver: request timed out");
        forwarded_free(f);
    }
}

/* Leader side: answers one forwarded request. */
static void reply_to_follower(server_t *s, uint64_t to, uint8_t kind, const lease_fwd_msg_t *m) {
    uint8_t buf[LEASE_FWD_MAX_LEN];
    size_t len = lease_fwd_encode(kind, m, buf);
    (void)server_peer_send(s, to, kind, buf, len); /* lost: the follower times out */
}

/* ---- unary methods ---- */

static void lease_grant_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    svc_lease_t *sl = ctx;
    server_t *s = sl->s;
    Etcdserverpb__LeaseGrantRequest *req = etcdserverpb__lease_grant_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    lessor_t *l = get_lessor(sl);
    const char *why = NULL;
    if (!l) {
        grpc_call_finish(call, GRPC_INTERNAL, "kshim: lease table unavailable");
    } else if (server_require_leader(s, call) == 0) {
        grpc_status_t st = auth_check_token(s, call, &why);
        if (!refused(call, st, why)) {
            if (req->id == 0) req->id = new_lease_id(l);
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.lease_grant = req;
            if (kv_quota_available(s->mvcc, &ir)) {
                server_propose(s, call, &ir);
            } else { /* etcd's quotaLeaseServer */
                svc_maintenance_raise_nospace(s);
                grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, KV_ERR_NO_SPACE);
            }
        }
    }
    etcdserverpb__lease_grant_request__free_unpacked(req, NULL);
}

typedef struct key_list {
    ProtobufCBinaryData *v;
    size_t n, cap;
} key_list_t;

static int collect_key(void *arg, const uint8_t *key, size_t len) {
    key_list_t *kl = arg;
    if (kl->n == kl->cap) {
        size_t cap = kl->cap ? kl->cap * 2 : 16;
        ProtobufCBinaryData *v = realloc(kl->v, cap * sizeof *v);
        if (!v) return 1;
        kl->v = v;
        kl->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return 1;
    if (len) memcpy(copy, key, len);
    kl->v[kl->n].data = copy;
    kl->v[kl->n].len = len;
    kl->n++;
    return 0;
}

static void key_list_free(key_list_t *kl) {
    for (size_t i = 0; i < kl->n; i++) free(kl->v[i].data);
    free(kl->v);
}

/* ---- key scans on a reader thread ---- */

/* One scan in flight: the keys of lease id, then a loop-side finish. */
typedef struct scan_job {
    reader_job_t job; /* first: the job is the scan */
    server_t *s;
    grpc_call_t *call; /* referenced */
    int64_t id;
    int rc;                        /* MVCC_OK or the scan's error */
    server_written_wait_t written; /* waiting for the store (server_when_written) */
    key_list_t keys;
    void (*finish)(struct scan_job *j); /* loop thread, call open, scan done */
    /* Revoke */
    Etcdserverpb__LeaseRevokeRequest *revoke;
    auth_identity_t who;
    /* TimeToLive */
    int64_t granted, remaining;
} scan_job_t;

static void scan_run(reader_job_t *job) {
    scan_job_t *j = (scan_job_t *)job;
    j->rc = lease_scan_keys(j->s->mvcc, j->id, collect_key, &j->keys);
}

static void scan_free(scan_job_t *j) {
    key_list_free(&j->keys);
    if (j->revoke) etcdserverpb__lease_revoke_request__free_unpacked(j->revoke, NULL);
    free(j);
}

static void scan_done(reader_job_t *job, int status) {
    scan_job_t *j = (scan_job_t *)job;
    if (!grpc_call_is_closed(j->call)) {
        if (status != READER_DONE)
            grpc_call_finish(j->call, GRPC_UNAVAILABLE, "etcdserver: server stopped");
        else if (j->rc != MVCC_OK)
            grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: storage error");
        else
            j->finish(j);
    }
    grpc_call_unref(j->call);
    scan_free(j);
}

/* Runs j's scan on a reader (or here without a pool). Owns j. */
static void scan_start(scan_job_t *j);

/* The store holds every write answered before the scan was asked for (ok),
 * or the member is stopping. */
static void scan_after_written(server_t *s, void *arg, int ok) {
    (void)s;
    scan_job_t *j = arg;
    if (ok && !grpc_call_is_closed(j->call)) {
        scan_start(j);
        return;
    }
    grpc_call_unref(j->call);
    scan_free(j);
}

/* Scans the lease's keys on a reader, once the store holds every write
 * answered so far (a Put or DeleteRange attaching or detaching a key is
 * answered before its write group is in LevelDB: server_when_written). */
static void scan_submit(scan_job_t *j) {
    j->job.run = scan_run;
    j->job.done = scan_done;
    grpc_call_ref(j->call); /* scan_start's, or released by scan_after_written */
    server_when_written(j->s, &j->written, scan_after_written, j);
}

/* The call's reference is held (scan_submit). */
static void scan_start(scan_job_t *j) {
    if (!j->s->readers) {
        scan_run(&j->job);
        scan_done(&j->job, READER_DONE);
        return;
    }
    int rc = readers_submit(j->s->readers, &j->job);
    if (rc == READERS_OK) return;
    grpc_call_finish(j->call, rc == READERS_FULL ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNAVAILABLE,
                     rc == READERS_FULL ? "etcdserver: too many requests" : "etcdserver: server stopped");
    grpc_call_unref(j->call);
    scan_free(j);
}

/* etcd's authApplierV3.LeaseRevoke (checkLeasePuts): with auth on, the
 * caller needs write permission on every key attached to the lease. */
static void revoke_finish(scan_job_t *j) {
    for (size_t i = 0; i < j->keys.n; i++) {
        const char *why = NULL;
        grpc_status_t st = auth_check_range_as(j->s, &j->who, j->keys.v[i].data, j->keys.v[i].len, NULL, 0,
                                               AUTH_PERM_WRITE, &why);
        if (refused(j->call, st, why)) return;
    }
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.lease_revoke = j->revoke;
    server_propose_as(j->s, j->call, &ir, j->who.user, j->who.revision); /* checked again at apply */
}

static void lease_revoke_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    svc_lease_t *sl = ctx;
    server_t *s = sl->s;
    Etcdserverpb__LeaseRevokeRequest *req = etcdserverpb__lease_revoke_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    const char *why = NULL;
    auth_identity_t who;
    if (server_require_leader(s, call) == 0) {
        grpc_status_t st = auth_identity(s, call, &who, &why);
        if (refused(call, st, why)) {
            /* refused */
        } else if (auth_is_enabled(s)) {
            scan_job_t *j = calloc(1, sizeof *j);
            if (!j) {
                grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
            } else {
                *j = (scan_job_t){
                    .s = s, .call = call, .id = req->id, .finish = revoke_finish, .revoke = req, .who = who};
                scan_submit(j);
                return;
            }
        } else {
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.lease_revoke = req;
            server_propose_as(s, call, &ir, who.user, who.revision);
        }
    }
    etcdserverpb__lease_revoke_request__free_unpacked(req, NULL);
}

static void ttl_send(server_t *s, grpc_call_t *call, int64_t id, int64_t granted, int64_t remaining,
                     const key_list_t *keys) {
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    resp.header = &h;
    resp.id = id;
    resp.ttl = remaining;
    resp.grantedttl = granted;
    if (keys) {
        resp.n_keys = keys->n;
        resp.keys = keys->v;
    }
    server_fill_header(s, &h);
    server_send_message(call, &resp.base, 1);
}

static void ttl_finish(scan_job_t *j) { ttl_send(j->s, j->call, j->id, j->granted, j->remaining, &j->keys); }

/* Answers a TimeToLive with what the (leader's) lessor said; the keys, if
 * asked for, are scanned on a reader first. */
static void ttl_answer(server_t *s, grpc_call_t *call, int64_t id, int found, int64_t granted,
                       int64_t remaining, int want_keys) {
    if (!found) {
        ttl_send(s, call, id, 0, -1, NULL); /* etcd's LeaseServer answers not found so */
        return;
    }
    if (!want_keys) {
        ttl_send(s, call, id, granted, remaining, NULL);
        return;
    }
    scan_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    *j = (scan_job_t){
        .s = s, .call = call, .id = id, .finish = ttl_finish, .granted = granted, .remaining = remaining};
    scan_submit(j);
}

static void lease_ttl_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    svc_lease_t *sl = ctx;
    server_t *s = sl->s;
    Etcdserverpb__LeaseTimeToLiveRequest *req =
        etcdserverpb__lease_time_to_live_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    lessor_t *l = get_lessor(sl);
    if (!l) {
        grpc_call_finish(call, GRPC_INTERNAL, "kshim: lease table unavailable");
    } else if (server_require_leader(s, call) != 0) {
        /* refused */
    } else if (is_follower(s)) {
        forward_to_leader(sl, call, SERVER_PEER_LEASE_TTL, req->id, req->keys);
    } else {
        int64_t granted = 0, remaining = 0;
        int found = lessor_lookup(l, req->id, now_ms(), &granted, &remaining) == LEASE_OK;
        ttl_answer(s, call, req->id, found, granted, remaining, req->keys);
    }
    etcdserverpb__lease_time_to_live_request__free_unpacked(req, NULL);
}

static void lease_leases_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    svc_lease_t *sl = ctx;
    server_t *s = sl->s;
    Etcdserverpb__LeaseLeasesRequest *req = etcdserverpb__lease_leases_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    etcdserverpb__lease_leases_request__free_unpacked(req, NULL);
    lessor_t *l = get_lessor(sl);
    int64_t *ids = NULL;
    size_t n = 0;
    if (!l || lessor_list(l, &ids, &n) != LEASE_OK) {
        grpc_call_finish(call, GRPC_INTERNAL, "kshim: lease table unavailable");
        return;
    }
    if (server_require_leader(s, call) == 0) {
        Etcdserverpb__LeaseStatus *st = malloc((n ? n : 1) * sizeof *st);
        Etcdserverpb__LeaseStatus **stp = malloc((n ? n : 1) * sizeof *stp);
        if (!st || !stp) {
            grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        } else {
            for (size_t i = 0; i < n; i++) {
                etcdserverpb__lease_status__init(&st[i]);
                st[i].id = ids[i];
                stp[i] = &st[i];
            }
            Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
            Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
            server_fill_header(s, &h);
            resp.header = &h;
            resp.n_leases = n;
            resp.leases = stp;
            server_send_message(call, &resp.base, 1);
        }
        free(st);
        free(stp);
    }
    free(ids);
}

/* ---- keepalive stream ---- */

/* A client that sends keepalives without reading the answers is cut off
 * once this much is queued for it. */
#define KEEPALIVE_MAX_QUEUED (4u << 20)

static void keepalive_send(grpc_call_t *call, Etcdserverpb__ResponseHeader *h, int64_t id, int64_t ttl) {
    Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    resp.header = h;
    resp.id = id;
    resp.ttl = ttl;
    server_send_message(call, &resp.base, 0);
}

static void keepalive_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    svc_lease_t *sl = ctx;
    server_t *s = sl->s;
    Etcdserverpb__LeaseKeepAliveRequest *req = etcdserverpb__lease_keep_alive_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    lessor_t *l = get_lessor(sl);
    if (!l) {
        grpc_call_finish(call, GRPC_INTERNAL, "kshim: lease table unavailable");
    } else if (grpc_call_send_queued(call) > KEEPALIVE_MAX_QUEUED) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "kshim: keepalive responses not read");
    } else if (server_require_leader(s, call) != 0) {
        /* refused */
    } else if (is_follower(s)) {
        forward_to_leader(sl, call, SERVER_PEER_LEASE_RENEW, req->id, 0);
    } else {
        /* header first, as etcd: its revision is not after the renewal */
        Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        server_fill_header(s, &h);
        int64_t ttl = 0;
        if (lessor_renew(l, req->id, now_ms(), &ttl) != LEASE_OK)
            ttl = 0; /* etcd: ErrLeaseNotFound becomes TTL 0 on the stream */
        keepalive_send(call, &h, req->id, ttl);
    }
    etcdserverpb__lease_keep_alive_request__free_unpacked(req, NULL);
}

static void keepalive_half_close(grpc_call_t *call, void *ctx) {
    (void)ctx;
    grpc_call_finish(call, GRPC_OK, NULL); /* etcd returns nil on io.EOF */
}

/* ---- expiry ---- */

/* Expiry tick: leases expire only on the leader. Becoming leader extends
 * every lease (etcd's Promote(electionTimeout)); losing it demotes. */
static void follow_leadership(svc_lease_t *sl, lessor_t *l) {
    int leader = !sl->s->peer || server_is_leader(sl->s);
    if (leader && !lessor_is_primary(l)) {
        lessor_promote(l, now_ms(), sl->s->cfg->election_timeout_ms);
        log_info("lease: leading: %zu leases extended by the election timeout", lessor_count(l));
    } else if (!leader && lessor_is_primary(l)) {
        lessor_demote(l);
        log_info("lease: no longer leading: leases do not expire here");
    }
}


static void propose_revoke(svc_lease_t *sl, int64_t id) {
    Etcdserverpb__LeaseRevokeRequest rr = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT; /* proposer 0: nobody answers */
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    rr.id = id;
    ir.header = &hdr;
    ir.lease_revoke = &rr;
    uint8_t buf[64];
    size_t len = kshim__internal_request__get_packed_size(&ir);
    if (len > sizeof buf) return;
    kshim__internal_request__pack(&ir, buf);
    if (raft_node_propose(sl->s->raft, buf, len) == RAFT_NODE_OK) sl->revokes_proposed++;
    /* on failure the lease is offered again after LEASE_RETRY_MS */
}

static void expiry_tick(loop_t *loop, void *arg) {
    svc_lease_t *sl = arg;
    sl->expiry_timer = NULL;
    lessor_t *l = get_lessor(sl);
    expire_forwarded(sl, now_ms());
    if (l) {
        follow_leadership(sl, l);
        int64_t ids[REVOKES_PER_TICK];
        size_t n = lessor_take_expired(l, now_ms(), ids, REVOKES_PER_TICK);
        for (size_t i = 0; i < n; i++) propose_revoke(sl, ids[i]);
    }
    sl->expiry_timer = loop_timer_add(loop, EXPIRY_TICK_MS, expiry_tick, sl);
}

/* ---- the peer messages (lease_forward.h) ---- */

/* Leader: a follower's keepalive. */
static void on_renew(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    lease_fwd_msg_t m;
    lessor_t *l = get_lessor(s->lease);
    if (lease_fwd_decode(SERVER_PEER_LEASE_RENEW, data, len, &m) != 0 || !l) return;
    lease_fwd_msg_t r = {.req_id = m.req_id, .status = LEASE_FWD_NOT_LEADER};
    if (server_is_leader(s))
        r.status =
            lessor_renew(l, m.lease_id, now_ms(), &r.ttl) == LEASE_OK ? LEASE_FWD_OK : LEASE_FWD_NOT_FOUND;
    reply_to_follower(s, from, SERVER_PEER_LEASE_RENEW_RESP, &r);
}

/* Leader: a follower's TimeToLive. */
static void on_ttl(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    lease_fwd_msg_t m;
    lessor_t *l = get_lessor(s->lease);
    if (lease_fwd_decode(SERVER_PEER_LEASE_TTL, data, len, &m) != 0 || !l) return;
    lease_fwd_msg_t r = {.req_id = m.req_id, .status = LEASE_FWD_NOT_LEADER};
    if (server_is_leader(s))
        r.status = lessor_lookup(l, m.lease_id, now_ms(), &r.ttl, &r.remaining) == LEASE_OK
                       ? LEASE_FWD_OK
                       : LEASE_FWD_NOT_FOUND;
    reply_to_follower(s, from, SERVER_PEER_LEASE_TTL_RESP, &r);
}

/* etcd's answer when the member asked stopped leading meanwhile. */
static void finish_not_leader(grpc_call_t *call) {
    grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: not leader");
}

/* Follower: the leader's answer to a keepalive. */
static void on_renew_resp(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    (void)from;
    lease_fwd_msg_t m;
    if (lease_fwd_decode(SERVER_PEER_LEASE_RENEW_RESP, data, len, &m) != 0) return;
    forwarded_t *f = take_forwarded(s->lease, m.req_id, SERVER_PEER_LEASE_RENEW);
    if (!f) return; /* timed out already */
    if (!grpc_call_is_closed(f->call)) {
        if (m.status == LEASE_FWD_NOT_LEADER) {
            finish_not_leader(f->call);
        } else {
            Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
            server_fill_header(s, &h);
            keepalive_send(f->call, &h, f->lease_id, m.status == LEASE_FWD_OK ? m.ttl : 0);
        }
    }
    forwarded_free(f);
}

/* Follower: the leader's answer to a TimeToLive. */
static void on_ttl_resp(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    (void)from;
    lease_fwd_msg_t m;
    if (lease_fwd_decode(SERVER_PEER_LEASE_TTL_RESP, data, len, &m) != 0) return;
    forwarded_t *f = take_forwarded(s->lease, m.req_id, SERVER_PEER_LEASE_TTL);
    if (!f) return;
    if (!grpc_call_is_closed(f->call)) {
        if (m.status == LEASE_FWD_NOT_LEADER)
            finish_not_leader(f->call);
        else
            ttl_answer(s, f->call, f->lease_id, m.status == LEASE_FWD_OK, m.ttl, m.remaining, f->want_keys);
    }
    forwarded_free(f);
}

/* Reload hook: a Raft snapshot replaced the store. */
static int lease_reload(server_t *s) {
    svc_lease_t *sl = s->lease;
    lessor_t *l = sl ? get_lessor(sl) : NULL;
    if (!l || lessor_reload(l, now_ms(), s->cfg->election_timeout_ms) != LEASE_OK) {
        log_error("snapshot: cannot reload the lease table");
        return -1;
    }
    return 0;
}

/* ---- lifecycle ---- */

static grpc_method_t lease_methods[] = {
    {.path = "/etcdserverpb.Lease/LeaseGrant", .on_message = lease_grant_call},
    {.path = "/etcdserverpb.Lease/LeaseRevoke", .on_message = lease_revoke_call},
    {.path = "/etcdserverpb.Lease/LeaseKeepAlive",
     .client_streaming = 1,
     .server_streaming = 1,
     .on_message = keepalive_message,
     .on_half_close = keepalive_half_close},
    {.path = "/etcdserverpb.Lease/LeaseTimeToLive", .on_message = lease_ttl_call},
    {.path = "/etcdserverpb.Lease/LeaseLeases", .on_message = lease_leases_call},
};

int svc_lease_init(server_t *s, mvcc_options_t *mopts) {
    svc_lease_t *sl = calloc(1, sizeof *sl);
    if (!sl) return -1;
    sl->s = s;
    pthread_mutex_init(&sl->open_mu, NULL);
    sl->min_ttl = min_lease_ttl(s->cfg);
    s->lease = sl;
    server_peer_handle(s, SERVER_PEER_LEASE_RENEW, on_renew);
    server_peer_handle(s, SERVER_PEER_LEASE_RENEW_RESP, on_renew_resp);
    server_peer_handle(s, SERVER_PEER_LEASE_TTL, on_ttl);
    server_peer_handle(s, SERVER_PEER_LEASE_TTL_RESP, on_ttl_resp);
    server_add_reload_hook(s, lease_reload);
    mopts->lease_exists = lease_exists_hook;
    mopts->lease_ctx = sl;
    return 0;
}

int svc_lease_start(server_t *s) {
    svc_lease_t *sl = s->lease;
    if (!sl) return -1;
    lessor_t *l = get_lessor(sl);
    if (!l) return -1;
    /* single voter: leader from now on (etcd: Promote(electionTimeout)); in
     * a cluster the expiry tick promotes once this member leads */
    if (!s->peer) lessor_promote(l, now_ms(), s->cfg->election_timeout_ms);
    for (size_t i = 0; i < sizeof lease_methods / sizeof lease_methods[0]; i++) {
        lease_methods[i].ctx = sl;
        grpc_server_register(s->grpc, &lease_methods[i]);
    }
    sl->expiry_timer = loop_timer_add(s->loop, EXPIRY_TICK_MS, expiry_tick, sl);
    log_info("lease: %zu leases loaded, min TTL %llds", lessor_count(l), (long long)sl->min_ttl);
    return 0;
}

void svc_lease_stop(server_t *s) {
    svc_lease_t *sl = s->lease;
    if (!sl) return;
    if (sl->expiry_timer && s->loop) loop_timer_cancel(s->loop, sl->expiry_timer);
    while (sl->forwarded) {
        forwarded_t *f = sl->forwarded;
        sl->forwarded = f->next;
        forwarded_free(f);
    }
    lessor_free(sl->lessor);
    pthread_mutex_destroy(&sl->open_mu);
    free(sl);
    s->lease = NULL;
}

int svc_lease_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res) {
    svc_lease_t *sl = s->lease;
    if (!sl || !lessor_is_request(req)) return 0;
    lessor_t *l = get_lessor(sl);
    if (!l) return -1;
    return lessor_apply(l, index, req, hdr, res, now_ms());
}
