/*
 * member.c: the member's plumbing between the gRPC calls, Raft and the
 * store (split out of server.c; server.c wires it up in server_run).
 *
 *   loop thread  : server_propose() encodes a request, files the call in the
 *                  pending table (pending.c) by request id and hands the
 *                  entry to the Raft node;
 *   apply thread : server_apply() applies each batch of committed entries to
 *                  the MVCC store as ONE synced LevelDB write (a write group,
 *                  mvcc.h), offering each entry first to the appliers the
 *                  services registered (server_add_applier: lease, auth),
 *                  then to kv_apply, and hands the results to the loop with
 *                  one loop_post: a batch of KV writes (Put, DeleteRange,
 *                  Txn) before that LevelDB write, since its entries are
 *                  durable in the Raft WAL already (a crash replays them),
 *                  any other batch after it;
 *   back on loop : deliver_results() finds each waiting call by request id
 *                  and answers it (a physical Compact through the
 *                  wait_physical hook svc_kv sets). Reads that must see
 *                  every answered write wait in server_when_written's list
 *                  until the apply thread says the group is written.
 * Also: the configuration defaults, etcd's member and cluster ids, and the
 * helpers the services answer calls with (server_internal.h).
 * The member never calls a service directly: services register with it.
 */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>

#include "bytes.h"
#include "log.h"
#include "pending.h"

void server_config_defaults(server_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->name = "default";
    cfg->data_dir = NULL; /* "<name>.etcd" */
    cfg->wal_dir = "";
    cfg->listen_client_urls[0] = "http://localhost:2379";
    cfg->n_listen_client_urls = 1;
    cfg->advertise_client_urls[0] = "http://localhost:2379";
    cfg->n_advertise_client_urls = 1;
    cfg->listen_peer_urls[0] = "http://localhost:2380";
    cfg->n_listen_peer_urls = 1;
    cfg->initial_advertise_peer_urls[0] = "http://localhost:2380";
    cfg->n_initial_advertise_peer_urls = 1;
    cfg->initial_cluster = NULL; /* "<name>=<initial-advertise-peer-urls>" */
    cfg->initial_cluster_state = "new";
    cfg->initial_cluster_token = "etcd-cluster";
    cfg->max_request_bytes = 1572864;
    cfg->max_txn_ops = 128;
    cfg->heartbeat_interval_ms = 100;
    cfg->election_timeout_ms = 1000;
    cfg->strict_reconfig_check = 1;
    cfg->watch_progress_notify_interval_ms = 10 * 60 * 1000;
    cfg->auth_token = "simple";
    cfg->auth_token_ttl_s = 300;
    cfg->bcrypt_cost = 10;
    cfg->auto_compaction_mode = "periodic";
    cfg->auto_compaction_retention = "0";
}

/* ---- ids ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint64_t sha1_prefix64(const uint8_t *data, size_t len) {
    uint8_t hash[WC_SHA_DIGEST_SIZE];
    wc_ShaHash(data, (word32)len, hash);
    return get_be64(hash);
}

uint64_t server_member_id(const char *const *peer_urls, size_t n, const char *token) {
    const char *sorted[SERVER_MAX_URLS];
    size_t total = strlen(token);
    if (n > SERVER_MAX_URLS) n = SERVER_MAX_URLS;
    for (size_t i = 0; i < n; i++) {
        sorted[i] = peer_urls[i];
        total += strlen(peer_urls[i]);
    }
    qsort(sorted, n, sizeof sorted[0], cmp_str);
    uint8_t *buf = malloc(total + 1);
    if (!buf) return 1;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + off, sorted[i], strlen(sorted[i]));
        off += strlen(sorted[i]);
    }
    memcpy(buf + off, token, strlen(token));
    off += strlen(token);
    uint64_t id = sha1_prefix64(buf, off);
    free(buf);
    return id ? id : 1;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t server_cluster_id(const uint64_t *member_ids, size_t n) {
    uint64_t ids[64];
    uint8_t buf[64 * 8];
    if (n > 64) n = 64;
    memcpy(ids, member_ids, n * sizeof ids[0]);
    qsort(ids, n, sizeof ids[0], cmp_u64);
    for (size_t i = 0; i < n; i++) put_be64(buf + i * 8, ids[i]);
    return sha1_prefix64(buf, n * 8);
}

/* ---- answering calls ------------------------------------------------- */

void server_header_info(server_t *s, kv_header_info_t *out) {
    out->cluster_id = s->cluster_id;
    out->member_id = s->member_id;
    out->raft_term = atomic_load(&s->term);
}

void server_finish_result(grpc_call_t *call, kv_result_t *res) {
    if (!grpc_call_is_closed(call)) {
        if (res->code == 0) {
            /* The send fails when the response cannot be queued (no memory,
             * a message above 4 GiB, HTTP/2 refusing the headers): the
             * client must not hear OK without the message. */
            if (grpc_call_send(call, res->resp, res->resp_len) == 0)
                grpc_call_finish(call, GRPC_OK, NULL);
            else
                grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "kshim: cannot queue the response message");
        } else {
            grpc_call_finish(call, (grpc_status_t)res->code, res->message);
        }
    }
    kv_result_clear(res);
}

void server_fill_header(server_t *s, Etcdserverpb__ResponseHeader *h) {
    kv_header_info_t info;
    server_header_info(s, &info);
    h->cluster_id = info.cluster_id;
    h->member_id = info.member_id;
    h->raft_term = info.raft_term;
    h->revision = server_revision(s);
}

int64_t server_revision(server_t *s) {
    int64_t store = mvcc_revision(s->mvcc), answered = atomic_load(&s->answered_rev);
    return answered > store ? answered : store;
}

int server_send_message(grpc_call_t *call, const ProtobufCMessage *msg, int finish) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return -1;
    }
    protobuf_c_message_pack(msg, buf);
    int rc = grpc_call_send(call, buf, len);
    free(buf);
    if (finish) grpc_call_finish(call, GRPC_OK, NULL);
    return rc;
}

void server_reply_bad_request(grpc_call_t *call) {
    /* What grpc-go answers when the request does not unmarshal. */
    grpc_call_finish(call, GRPC_INTERNAL, "grpc: error unmarshalling request: unexpected EOF");
}

int server_require_leader(server_t *s, grpc_call_t *call) {
    const char *hasleader = grpc_call_metadata(call, "hasleader");
    if (!hasleader || strcmp(hasleader, "true") != 0) return 0;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    if (st.leader != 0) return 0;
    grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: no leader");
    return -1;
}

/* ---- the write path --------------------------------------------------- */

int server_add_applier(server_t *s, server_applier_fn fn) {
    if (s->n_appliers >= SERVER_MAX_APPLIERS) return -1;
    s->appliers[s->n_appliers++] = fn;
    return 0;
}

typedef struct applied_result {
    uint64_t id;
    kv_result_t res;
} applied_result_t;

typedef struct applied_batch {
    server_t *server;
    uint64_t last_index; /* its last entry */
    int64_t last_rev;    /* the store's revision after it */
    int before_write;    /* answered before its write group is in LevelDB */
    size_t n;
    applied_result_t results[];
} applied_batch_t;

void server_propose(server_t *s, grpc_call_t *call, Kshim__InternalRequest *req) {
    server_propose_as(s, call, req, "", 0);
}

void server_propose_as(server_t *s, grpc_call_t *call, Kshim__InternalRequest *req, const char *user,
                       uint64_t auth_revision) {
    Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT;
    hdr.id = s->req_id_prefix | ++s->req_id_counter;
    hdr.proposer = s->member_id;
    hdr.username = (char *)(user ? user : ""); /* only read by the packer */
    hdr.auth_revision = auth_revision;
    hdr.auth_checked = 1;
    req->header = &hdr;

    size_t len = kshim__internal_request__get_packed_size(req);
    if (len > s->cfg->max_request_bytes) {
        req->header = NULL;
        grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "etcdserver: request is too large");
        return;
    }
    uint8_t *data = malloc(len ? len : 1);
    if (!data) {
        req->header = NULL;
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    kshim__internal_request__pack(req, data);
    req->header = NULL;

    uint64_t deadline = loop_now_ms(s->loop) + server_request_timeout_ms(s->cfg);
    int prc = pending_add(s->pending, hdr.id, call, deadline);
    if (prc != 0) {
        free(data);
        /* etcd's ErrTooManyRequests: too much proposed and not yet applied */
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED,
                         prc == PENDING_FULL ? "etcdserver: too many requests" : "etcdserver: out of memory");
        return;
    }
    int rc = raft_node_propose(s->raft, data, len);
    free(data);
    if (rc != RAFT_NODE_OK) {
        if (rc != RAFT_NODE_ERR_BUSY) s->proposals_failed++; /* busy: etcd's too-many-requests, not counted */
        grpc_call_t *c = pending_take(s->pending, hdr.id);
        if (c && rc == RAFT_NODE_ERR_BUSY)
            grpc_call_finish(c, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        else if (c)
            grpc_call_finish(c, GRPC_UNAVAILABLE,
                             rc == RAFT_NODE_ERR_NOT_LEADER ? "etcdserver: no leader"
                                                            : "etcdserver: server stopped");
        if (c) grpc_call_unref(c);
    }
}

int server_when_written(server_t *s, server_written_wait_t *w, server_written_fn fn, void *arg) {
    if (atomic_load(&s->written_index) >= s->answered_index) {
        fn(s, arg, 1);
        return 0;
    }
    *w = (server_written_wait_t){NULL, s->answered_index, fn, arg};
    if (s->written_tail)
        s->written_tail->next = w;
    else
        s->written_head = w;
    s->written_tail = w;
    return 1;
}

/* Loop thread: runs the waiters (in order) whose index the store reached. */
static void run_written(server_t *s, int ok) {
    uint64_t written = atomic_load(&s->written_index);
    while (s->written_head && (!ok || s->written_head->index <= written)) {
        server_written_wait_t *w = s->written_head;
        s->written_head = w->next;
        if (!s->written_head) s->written_tail = NULL;
        w->fn(s, w->arg, ok); /* may free w */
    }
}

static void written_notify(void *arg) { run_written(arg, 1); }

void server_written_stop(server_t *s) { run_written(s, 0); }

/* Loop thread: answer every call whose entry was applied. */
static void deliver_results(void *arg) {
    applied_batch_t *b = arg;
    server_t *s = b->server;
    if (b->before_write && b->last_index > s->answered_index) s->answered_index = b->last_index;
    if (b->before_write && b->last_rev > atomic_load(&s->answered_rev))
        atomic_store(&s->answered_rev, b->last_rev);
    for (size_t i = 0; i < b->n; i++) {
        grpc_call_t *call = pending_take(s->pending, b->results[i].id);
        if (call && b->results[i].res.physical_rev > 0 && s->wait_physical &&
            s->wait_physical(s, call, &b->results[i].res) == 0)
            continue; /* a physical Compact: answered once the compactor is through */
        if (call) {
            server_finish_result(call, &b->results[i].res);
            grpc_call_unref(call);
        } else {
            kv_result_clear(&b->results[i].res);
        }
    }
    free(b);
}

/* One committed entry: the registered appliers (lease and auth requests to
 * their state machines) first, everything else (and empty entries) to the
 * KV store. Each is one LevelDB
 * write that also records the applied index. */
static int apply_one(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                     const kv_header_info_t *hdr, kv_result_t *res) {
    for (size_t i = 0; req && i < s->n_appliers; i++) {
        int rc = s->appliers[i](s, index, req, hdr, res);
        if (rc != 0) return rc > 0 ? 0 : rc;
    }
    return kv_apply(s->mvcc, index, req, hdr, res);
}

static void free_results(applied_batch_t *batch) {
    for (size_t i = 0; i < batch->n; i++) kv_result_clear(&batch->results[i].res);
    free(batch);
}

/* An entry whose answer may go out before its write group is in LevelDB:
 * none, or a KV write. Its effects are seen only through the store, and
 * every read of the store waits for them (server_when_written). Lease,
 * auth, membership, compaction and alarm entries change state that other
 * calls read without that wait: they are answered after the write. */
static int answer_before_write(const raft_entry_t *e, const Kshim__InternalRequest *req) {
    if (e->type != RAFT_ENTRY_NORMAL) return 0;
    return !req || req->put || req->delete_range || req->txn;
}

/* Applies one committed entry; 0, or -1 when it cannot be applied (the
 * member must stop). Our own proposals' results go into batch; *early
 * drops to 0 for an entry that must be answered after the write. */
static int apply_entry(server_t *s, const raft_entry_t *e, const kv_header_info_t *hdr,
                       applied_batch_t *batch, int *early) {
    Kshim__InternalRequest *req = NULL;
    if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
        req = kshim__internal_request__unpack(NULL, e->len, e->data);
        if (!req) {
            /* A committed entry is a proposal this cluster encoded: one that
             * does not decode is corruption or a bug. Applying it as empty
             * would drop a write on this member only. */
            log_error("raft entry %llu (%zu bytes) does not decode as a kshim request: "
                      "corrupt log or a bug; stopping before applying it",
                      (unsigned long long)e->index, e->len);
            return -1;
        }
    }
    if (!answer_before_write(e, req)) *early = 0;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    uint64_t req_id = 0;
    int ours = 0;
    int rc = server_membership_apply(s, e, req, hdr, &res, &req_id, &ours);
    if (rc == 0) {
        rc = apply_one(s, e->index, req, hdr, &res);
        ours = rc == 0 && req && req->header && req->header->proposer == s->member_id;
        if (ours) req_id = req->header->id;
    } else {
        rc = rc > 0 ? 0 : -1;
        ours = ours && rc == 0;
    }
    if (ours && batch) {
        batch->results[batch->n].id = req_id;
        batch->results[batch->n].res = res;
        batch->n++;
    } else {
        kv_result_clear(&res);
    }
    if (rc < 0)
        log_error("cannot apply raft entry %llu to the store (storage error, see above); stopping",
                  (unsigned long long)e->index);
    if (req) kshim__internal_request__free_unpacked(req, NULL);
    return rc < 0 ? -1 : 0;
}

/* Apply thread: apply one batch of committed entries in order, as one write
 * group: ONE LevelDB write with sync=true (more only where a read needs the
 * group written first, see mvcc.h), and the results of our own proposals go
 * back to the loop in one post: before that write for a batch of KV writes
 * (answer_before_write), after it otherwise. Every applied entry is durable
 * in this member's Raft WAL (raft/node.c applies nothing unsynced), so an
 * answer given before the write survives a crash: the restart replays the
 * WAL from the stored applied index. No watch event is published before the
 * write returned, and reads of the store wait for it (server_when_written).
 * Any storage error, or an entry that does not decode, stops applying
 * (fail-stop): the group is dropped unwritten, the member exits and replays
 * from the stored applied index. */
void server_apply(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term) {
    server_t *s = ctx;
    if (atomic_load(&s->apply_failed)) return;
    atomic_store(&s->term, term);
    kv_header_info_t hdr = {s->cluster_id, s->member_id, term};
    applied_batch_t *batch = malloc(sizeof *batch + n * sizeof batch->results[0]);
    if (batch) {
        batch->server = s;
        batch->n = 0;
    }
    mvcc_group_begin(s->mvcc);
    int failed = 0, early = 1;
    for (size_t i = 0; i < n && !failed; i++) failed = apply_entry(s, &ents[i], &hdr, batch, &early) != 0;
    if (failed) {
        mvcc_group_abort(s->mvcc);
        atomic_store(&s->apply_failed, 1);
        if (batch) free_results(batch);
        return;
    }
    if (batch) {
        batch->last_index = ents[n - 1].index;
        batch->last_rev = mvcc_apply_revision(s->mvcc);
        batch->before_write = early && batch->n > 0;
    }
    int posted_early = batch && batch->before_write;
    if (posted_early) {
        if (loop_post(s->loop, deliver_results, batch) != 0) free_results(batch);
        batch = NULL;
    }
    if (mvcc_group_end(s->mvcc) != 0) {
        log_error("cannot write applied raft entries %llu..%llu to the store; stopping",
                  (unsigned long long)ents[0].index, (unsigned long long)ents[n - 1].index);
        atomic_store(&s->apply_failed, 1);
        if (batch) free_results(batch);
        return;
    }
    atomic_store(&s->written_index, ents[n - 1].index);
    if (posted_early) loop_post(s->loop, written_notify, s); /* fails only when stopping */
    if (!batch) return; /* answered, or out of memory: the waiting calls time out, the data is applied */
    if (batch->n == 0 || loop_post(s->loop, deliver_results, batch) != 0) free_results(batch);
}

/* mvcc publishes a group's applied index only after its synced write, so
 * everything LevelDB reports applied is durable: the WAL may be released
 * up to there (an answer given before the write keeps its entry in the WAL). */
uint64_t server_persist_state(void *ctx) {
    server_t *s = ctx;
    return mvcc_applied_index(s->mvcc);
}

/* etcd's request timeout: 5 s plus two election timeouts. */
uint64_t server_request_timeout_ms(const server_config_t *cfg) {
    return 5000 + 2 * (uint64_t)cfg->election_timeout_ms;
}
