/*
 * server.c: one kshim member, wired together.
 *
 * Owns the three moving parts and the path between them:
 *   loop thread  : sockets, TLS, HTTP/2, gRPC, the services' request decoding;
 *   readers      : (readers.c) the reads (Range, read-only Txn, watch
 *                  catch-up, lease key scans) on LevelDB snapshots, answered
 *                  on the loop;
 *   raft thread  : (raft/node.c) WAL append + group-committed fdatasync;
 *   apply thread : server_apply() below applies each batch of committed
 *                  entries to the MVCC store as ONE synced LevelDB write (a
 *                  write group, kv.h), and only after that write returned
 *                  hands the results to the loop with one loop_post;
 *   back on loop : deliver_results() finds each waiting call by request id
 *                  and answers it.
 * A client hears "OK" only after its entry is durable in the WAL and applied,
 * so an acknowledged write is never lost and every later read sees it.
 */
#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>

#include "autotls.h"
#include "log.h"
#include "pending.h"
#include "readers.h"

void server_config_defaults(server_config_t *cfg)
{
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
    cfg->watch_progress_notify_interval_ms = 10 * 60 * 1000;
    cfg->auth_token = "simple";
    cfg->auth_token_ttl_s = 300;
    cfg->bcrypt_cost = 10;
}

/* ---- ids ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint64_t sha1_prefix64(const uint8_t *data, size_t len)
{
    uint8_t hash[WC_SHA_DIGEST_SIZE];
    wc_ShaHash(data, (word32)len, hash);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | hash[i];
    return v;
}

uint64_t server_member_id(const char *const *peer_urls, size_t n, const char *token)
{
    const char *sorted[SERVER_MAX_URLS];
    size_t total = strlen(token);
    if (n > SERVER_MAX_URLS)
        n = SERVER_MAX_URLS;
    for (size_t i = 0; i < n; i++) {
        sorted[i] = peer_urls[i];
        total += strlen(peer_urls[i]);
    }
    qsort(sorted, n, sizeof sorted[0], cmp_str);
    uint8_t *buf = malloc(total + 1);
    if (!buf)
        return 1;
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

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t server_cluster_id(const uint64_t *member_ids, size_t n)
{
    uint64_t ids[64];
    uint8_t buf[64 * 8];
    if (n > 64)
        n = 64;
    memcpy(ids, member_ids, n * sizeof ids[0]);
    qsort(ids, n, sizeof ids[0], cmp_u64);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++)
            buf[i * 8 + (size_t)b] = (uint8_t)(ids[i] >> (56 - 8 * b));
    return sha1_prefix64(buf, n * 8);
}

/* ---- answering calls ------------------------------------------------- */

void server_header_info(server_t *s, kv_header_info_t *out)
{
    out->cluster_id = s->cluster_id;
    out->member_id = s->member_id;
    out->raft_term = atomic_load(&s->term);
}

void server_finish_result(grpc_call_t *call, kv_result_t *res)
{
    if (!grpc_call_is_closed(call)) {
        if (res->code == 0) {
            /* The send fails when the response cannot be queued (no memory,
             * a message above 4 GiB, HTTP/2 refusing the headers): the
             * client must not hear OK without the message. */
            if (grpc_call_send(call, res->resp, res->resp_len) == 0)
                grpc_call_finish(call, GRPC_OK, NULL);
            else
                grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED,
                                 "kshim: cannot queue the response message");
        } else {
            grpc_call_finish(call, (grpc_status_t)res->code, res->message);
        }
    }
    kv_result_clear(res);
}

void server_fill_header(server_t *s, Etcdserverpb__ResponseHeader *h)
{
    kv_header_info_t info;
    server_header_info(s, &info);
    h->cluster_id = info.cluster_id;
    h->member_id = info.member_id;
    h->raft_term = info.raft_term;
    h->revision = mvcc_revision(s->mvcc);
}

int server_send_message(grpc_call_t *call, const ProtobufCMessage *msg, int finish)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return -1;
    }
    protobuf_c_message_pack(msg, buf);
    int rc = grpc_call_send(call, buf, len);
    free(buf);
    if (finish)
        grpc_call_finish(call, GRPC_OK, NULL);
    return rc;
}

void server_reply_bad_request(grpc_call_t *call)
{
    /* What grpc-go answers when the request does not unmarshal. */
    grpc_call_finish(call, GRPC_INTERNAL, "grpc: error unmarshalling request: unexpected EOF");
}

int server_require_leader(server_t *s, grpc_call_t *call)
{
    const char *hasleader = grpc_call_metadata(call, "hasleader");
    if (!hasleader || strcmp(hasleader, "true") != 0)
        return 0;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    if (st.leader != 0)
        return 0;
    grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: no leader");
    return -1;
}

/* ---- the write path --------------------------------------------------- */

typedef struct applied_result {
    uint64_t id;
    kv_result_t res;
} applied_result_t;

typedef struct applied_batch {
    server_t *server;
    size_t n;
    applied_result_t results[];
} applied_batch_t;

void server_propose(server_t *s, grpc_call_t *call, Kshim__InternalRequest *req)
{
    Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT;
    hdr.id = s->req_id_prefix | ++s->req_id_counter;
    hdr.proposer = s->member_id;
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
        grpc_call_t *c = pending_take(s->pending, hdr.id);
        if (c && rc == RAFT_NODE_ERR_BUSY)
            grpc_call_finish(c, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        else if (c)
            grpc_call_finish(c, GRPC_UNAVAILABLE,
                             rc == RAFT_NODE_ERR_NOT_LEADER ? "etcdserver: no leader"
                                                            : "etcdserver: server stopped");
        if (c)
            grpc_call_unref(c);
    }
}

/* Loop thread: answer every call whose entry was applied. */
static void deliver_results(void *arg)
{
    applied_batch_t *b = arg;
    server_t *s = b->server;
    for (size_t i = 0; i < b->n; i++) {
        grpc_call_t *call = pending_take(s->pending, b->results[i].id);
        if (call && b->results[i].res.physical_rev > 0 &&
            svc_kv_wait_physical(s, call, &b->results[i].res) == 0)
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

/* One committed entry: lease and auth requests go to their state machines,
 * everything else (and empty entries) to the KV store. Each is one LevelDB
 * write that also records the applied index. */
static int apply_one(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                     const kv_header_info_t *hdr, kv_result_t *res)
{
    if (req) {
        int rc = svc_lease_apply(s, index, req, hdr, res);
        if (rc != 0)
            return rc > 0 ? 0 : rc;
        rc = svc_auth_apply(s, index, req, hdr, res);
        if (rc != 0)
            return rc > 0 ? 0 : rc;
    }
    return kv_apply(s->mvcc, index, req, hdr, res);
}

static void free_results(applied_batch_t *batch)
{
    for (size_t i = 0; i < batch->n; i++)
        kv_result_clear(&batch->results[i].res);
    free(batch);
}

/* Applies one committed entry; 0, or -1 when it cannot be applied (the
 * member must stop). Our own proposals' results go into batch. */
static int apply_entry(server_t *s, const raft_entry_t *e, const kv_header_info_t *hdr,
                       applied_batch_t *batch)
{
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
    kv_result_t res;
    memset(&res, 0, sizeof res);
    int rc = apply_one(s, e->index, req, hdr, &res);
    int ours = rc == 0 && req && req->header && req->header->proposer == s->member_id;
    if (ours && batch) {
        batch->results[batch->n].id = req->header->id;
        batch->results[batch->n].res = res;
        batch->n++;
    } else {
        kv_result_clear(&res);
    }
    if (rc < 0)
        log_error("cannot apply raft entry %llu to the store (storage error, see above); stopping",
                  (unsigned long long)e->index);
    if (req)
        kshim__internal_request__free_unpacked(req, NULL);
    return rc < 0 ? -1 : 0;
}

/* Apply thread: apply one batch of committed entries in order, as one write
 * group: ONE LevelDB write with sync=true (more only where a read needs the
 * group written first, see kv.h), then the results of our own proposals go
 * back to the loop in one post. Nothing is acknowledged and no watch event
 * is published before that write returned. Any storage error, or an entry
 * that does not decode, stops applying (fail-stop): the group is dropped
 * unwritten, the member exits and replays from the stored applied index. */
static void server_apply(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term)
{
    server_t *s = ctx;
    if (atomic_load(&s->apply_failed))
        return;
    atomic_store(&s->term, term);
    kv_header_info_t hdr = {s->cluster_id, s->member_id, term};
    applied_batch_t *batch = malloc(sizeof *batch + n * sizeof batch->results[0]);
    if (batch) {
        batch->server = s;
        batch->n = 0;
    }
    mvcc_group_begin(s->mvcc);
    int failed = 0;
    for (size_t i = 0; i < n && !failed; i++)
        failed = apply_entry(s, &ents[i], &hdr, batch) != 0;
    if (failed) {
        mvcc_group_abort(s->mvcc);
    } else if (mvcc_group_end(s->mvcc) != 0) {
        log_error("cannot write applied raft entries %llu..%llu to the store; stopping",
                  (unsigned long long)ents[0].index, (unsigned long long)ents[n - 1].index);
        failed = 1;
    }
    if (failed) {
        atomic_store(&s->apply_failed, 1);
        if (batch)
            free_results(batch);
        return;
    }
    if (!batch)
        return; /* out of memory: the waiting calls time out, the data is applied */
    if (batch->n == 0 || loop_post(s->loop, deliver_results, batch) != 0)
        free_results(batch);
}

/* A test-only size from the environment (0 = unset: the default). */
static uint64_t test_env_u64(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : 0;
}

/* Every applied batch is synced before it is acknowledged, so everything
 * LevelDB reports applied is durable: the WAL may go up to there. */
static uint64_t server_persist_state(void *ctx)
{
    server_t *s = ctx;
    return mvcc_applied_index(s->mvcc);
}

/* ---- start-up --------------------------------------------------------- */

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &v, sizeof v);
        (void)r;
        close(fd);
    }
    return v ^ (uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20);
}

/* etcd's request timeout: 5 s plus two election timeouts. */
uint64_t server_request_timeout_ms(const server_config_t *cfg)
{
    return 5000 + 2 * (uint64_t)cfg->election_timeout_ms;
}

static void answer_timed_out(grpc_call_t *call, void *arg)
{
    (void)arg;
    grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: request timed out");
    grpc_call_unref(call);
}

/* Writes whose entry was not applied within the request timeout (a stalled
 * disk, a lost leader) are answered as etcd answers them; if the entry is
 * applied later its result finds no waiting call and is dropped. */
static void expire_requests(loop_t *loop, void *arg)
{
    server_t *s = arg;
    size_t n = pending_expire(s->pending, loop_now_ms(loop), answer_timed_out, NULL);
    if (n)
        log_warn("%zu requests timed out waiting for Raft", n);
    loop_timer_add(loop, 500, expire_requests, s);
}

/* The Raft node stops itself (fail-stop) when the WAL cannot be written, and
 * apply stops when LevelDB cannot be written (a full or failing disk). Nothing
 * unsynced or unapplied was acknowledged, so the member exits, as etcd does,
 * and its supervisor restarts it once there is space. */
static void watch_raft_health(loop_t *loop, void *arg)
{
    server_t *s = arg;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    if (st.failed || atomic_load(&s->apply_failed) || mvcc_failed(s->mvcc)) {
        log_error("%s; exiting", st.failed ? "raft node failed (WAL write error, see above)"
                                           : "the store failed (see above)");
        s->fatal = 1;
        loop_stop(loop);
        return;
    }
    loop_timer_add(loop, 200, watch_raft_health, s);
}

/* Start-up: every entry recovered from the WAL is applied before the first
 * client is served. An acknowledged write may sit in the WAL above the
 * store's applied index (applied again at start); a read answered before
 * that replay would miss it. Returns 0, or -1 if the member failed. */
static int wait_for_replay(server_t *s)
{
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    uint64_t target = st.last_index;
    for (;;) {
        raft_node_status(s->raft, &st);
        if (st.failed || atomic_load(&s->apply_failed))
            return -1;
        if (st.applied_index >= target)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static loop_t *signal_loop;
static volatile sig_atomic_t reload_requested;

static void on_signal(int sig)
{
    if (sig == SIGHUP) {
        reload_requested = 1;
        return;
    }
    if (signal_loop)
        loop_stop(signal_loop);
}

/* Newest modification time of the client TLS files (0 if none). */
static int64_t tls_files_mtime(const server_config_t *cfg)
{
    const char *files[] = {cfg->cert_file, cfg->key_file, cfg->trusted_ca_file};
    int64_t newest = 0;
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        if (files[i] && stat(files[i], &st) == 0) {
            int64_t t = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            if (t > newest)
                newest = t;
        }
    }
    return newest;
}

/* Certificate rotation without dropping connections: on SIGHUP, or when the
 * certificate, key or CA file changes, new TLS connections get a context
 * built from the files; live connections keep theirs. A bad new file keeps
 * the old context (and is retried on the next change). */
static void check_tls_reload(loop_t *loop, void *arg)
{
    server_t *s = arg;
    int64_t mtime = tls_files_mtime(s->cfg);
    if (reload_requested || (mtime != 0 && mtime != s->tls_mtime)) {
        reload_requested = 0;
        s->tls_mtime = mtime;
        char err[256] = "";
        if (grpc_server_reload_tls(s->grpc, err, sizeof err) == 0)
            log_info("reloaded the client TLS certificate files");
        else
            log_error("cannot reload the client TLS files, keeping the old ones: %s", err);
    }
    loop_timer_add(loop, 1000, check_tls_reload, s);
}

static void install_signals(loop_t *loop)
{
    signal_loop = loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* This member's peer URLs and the member list from --initial-cluster.
 * Only single-member clusters run today (see README). */
static int resolve_membership(server_t *s, const server_config_t *cfg, char *err, size_t errlen)
{
    s->n_peer_urls = cfg->n_initial_advertise_peer_urls;
    for (size_t i = 0; i < s->n_peer_urls; i++)
        s->peer_urls[i] = cfg->initial_advertise_peer_urls[i];
    s->member_id = server_member_id(s->peer_urls, s->n_peer_urls, cfg->initial_cluster_token);

    const char *ic = cfg->initial_cluster;
    if (ic && *ic) {
        /* Count distinct member names: "a=u1,a=u2,b=u3" has two members. */
        size_t members = 0;
        char names[SERVER_MAX_URLS][128];
        const char *p = ic;
        while (*p) {
            const char *eq = strchr(p, '=');
            const char *comma = strchr(p, ',');
            if (!eq || (comma && comma < eq)) {
                snprintf(err, errlen, "--initial-cluster: cannot parse %s", ic);
                return -1;
            }
            size_t nl = (size_t)(eq - p);
            if (nl >= sizeof names[0])
                nl = sizeof names[0] - 1;
            int seen = 0;
            for (size_t i = 0; i < members; i++)
                if (strlen(names[i]) == nl && strncmp(names[i], p, nl) == 0)
                    seen = 1;
            if (!seen && members < SERVER_MAX_URLS) {
                memcpy(names[members], p, nl);
                names[members][nl] = '\0';
                members++;
            }
            p = comma ? comma + 1 : p + strlen(p);
        }
        if (members > 1) {
            snprintf(err, errlen,
                     "--initial-cluster names %zu members: multi-member clusters are not "
                     "supported yet by this kshimd (single-voter Raft only)",
                     members);
            return -1;
        }
        if (members == 1 && strcmp(names[0], cfg->name) != 0) {
            snprintf(err, errlen, "couldn't find local name \"%s\" in the initial cluster configuration",
                     cfg->name);
            return -1;
        }
    }
    s->cluster_id = server_cluster_id(&s->member_id, 1);
    return 0;
}

int server_run(const server_config_t *cfg)
{
    server_t s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    char err[512] = "";
    char path[4096];
    int exit_code = 1;

    if (resolve_membership(&s, cfg, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/member/kv", cfg->data_dir);
    if (mkdir_p(path, 0700) != 0) {
        log_error("cannot create data dir %s: %s", path, strerror(errno));
        return 1;
    }
    s.loop = loop_new();
    size_t max_pending = cfg->max_pending_proposals ? cfg->max_pending_proposals
                                                    : RAFT_NODE_DEFAULT_MAX_INFLIGHT;
    s.pending = pending_new(max_pending);
    s.req_id_prefix = random_u64() << 32;
    grpc_server_config_t gcfg = {.max_request_bytes = cfg->max_request_bytes,
                                 .max_concurrent_streams = 1000};
    s.grpc = s.loop ? grpc_server_new(s.loop, &gcfg) : NULL;
    if (!s.loop || !s.pending || !s.grpc) {
        log_error("out of memory");
        goto out;
    }
    /* Services that hook into the store set their hooks before it opens:
     * watch receives every applied revision's events, lease answers "does
     * this lease exist" for Put. */
    mvcc_options_t mopts = {.max_txn_ops = cfg->max_txn_ops,
                            .quota_backend_bytes = cfg->quota_backend_bytes};
    if (svc_watch_init(&s, &mopts) != 0 || svc_lease_init(&s, &mopts) != 0 ||
        svc_auth_init(&s, &mopts) != 0) {
        log_error("cannot initialise the services");
        goto out;
    }
    if (mvcc_open(path, &mopts, &s.mvcc, err, sizeof err) != 0) {
        log_error("cannot open the MVCC store in %s: %s", path, err);
        goto out;
    }

    char wal_path[4096];
    if (cfg->wal_dir && *cfg->wal_dir)
        snprintf(wal_path, sizeof wal_path, "%s", cfg->wal_dir);
    else
        snprintf(wal_path, sizeof wal_path, "%s/member/wal", cfg->data_dir);
    raft_node_config_t rcfg = {
        .id = s.member_id,
        .peer_ids = &s.member_id,
        .n_peers = 1,
        .wal_dir = wal_path,
        .applied_index = mvcc_applied_index(s.mvcc),
        .tick_ms = cfg->heartbeat_interval_ms,
        .election_ticks = cfg->heartbeat_interval_ms
                              ? cfg->election_timeout_ms / cfg->heartbeat_interval_ms
                              : 10,
        .heartbeat_ticks = 1,
        .apply = server_apply,
        .persist_state = server_persist_state,
        .ctx = &s,
        /* Test-only (e2e/test_power_loss.sh): small WAL segments and frequent
         * LevelDB syncs with WAL release, so short runs reach rotation and
         * release. Unset in production: the defaults. */
        .wal_segment_bytes = (size_t)test_env_u64("KSHIM_TEST_WAL_SEGMENT_BYTES"),
        .persist_every = test_env_u64("KSHIM_TEST_PERSIST_EVERY"),
        .max_inflight = max_pending,
    };
    if (raft_node_start(&rcfg, &s.raft, err, sizeof err) != 0) {
        log_error("cannot start raft: %s", err);
        goto out;
    }
    if (wait_for_replay(&s) != 0) {
        log_error("the member failed while replaying its WAL (see above)");
        goto out;
    }

    s.readers = readers_new(s.loop, &(readers_config_t){.thread_exit = grpc_thread_cleanup});
    if (!s.readers) {
        log_error("cannot start the reader threads");
        goto out;
    }
    svc_kv_register(&s);
    svc_maintenance_register(&s);
    svc_cluster_register(&s);
    if (svc_watch_start(&s) != 0 || svc_lease_start(&s) != 0 || svc_auth_start(&s) != 0) {
        log_error("cannot start the services");
        goto out;
    }

    /* --auto-tls without --cert-file/--key-file: a self-signed certificate for
     * the listen hosts in <data-dir>/fixtures/client, as etcd does (no client
     * certificate checks then). */
    static char auto_cert[4096], auto_key[4096];
    if (cfg->auto_tls && (!cfg->cert_file || !cfg->key_file)) {
        char hostbuf[SERVER_MAX_URLS][256];
        const char *hosts[SERVER_MAX_URLS];
        size_t nh = 0;
        for (size_t i = 0; i < cfg->n_listen_client_urls; i++)
            if (autotls_url_host(cfg->listen_client_urls[i], hostbuf[nh], sizeof hostbuf[nh]) == 0) {
                hosts[nh] = hostbuf[nh];
                nh++;
            }
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/fixtures/client", cfg->data_dir);
        if (autotls_ensure(dir, hosts, nh, 365, auto_cert, auto_key, err, sizeof err) != 0) {
            log_error("--auto-tls: %s", err);
            goto out;
        }
        log_info("--auto-tls: serving the self-signed certificate %s", auto_cert);
    }
    int use_auto = cfg->auto_tls && (!cfg->cert_file || !cfg->key_file);
    grpc_tls_config_t tls = {.cert_file = use_auto ? auto_cert : cfg->cert_file,
                             .key_file = use_auto ? auto_key : cfg->key_file,
                             .trusted_ca_file = use_auto ? NULL : cfg->trusted_ca_file,
                             .client_cert_auth = use_auto ? 0 : cfg->client_cert_auth};
    for (size_t i = 0; i < cfg->n_listen_client_urls; i++) {
        const char *url = cfg->listen_client_urls[i];
        int https = strncmp(url, "https://", 8) == 0;
        if (https && (!tls.cert_file || !tls.key_file)) {
            log_error("listen URL %s needs --cert-file and --key-file (or --auto-tls)", url);
            goto out;
        }
        if (grpc_server_listen(s.grpc, url, https ? &tls : NULL, err, sizeof err) != 0) {
            log_error("cannot listen on %s: %s", url, err);
            goto out;
        }
        log_info("serving client traffic on %s", url);
    }
    log_info("kshimd ready: name=%s member-id=%016llx cluster-id=%016llx data-dir=%s revision=%lld",
             cfg->name, (unsigned long long)s.member_id, (unsigned long long)s.cluster_id,
             cfg->data_dir, (long long)mvcc_revision(s.mvcc));

    install_signals(s.loop);
    loop_timer_add(s.loop, 200, watch_raft_health, &s);
    loop_timer_add(s.loop, 500, expire_requests, &s);
    if (cfg->cert_file) {
        s.tls_mtime = tls_files_mtime(cfg);
        loop_timer_add(s.loop, 1000, check_tls_reload, &s);
    }
    loop_run(s.loop);
    grpc_thread_cleanup();
    if (s.fatal) {
        exit_code = 1;
    } else {
        log_info("received a termination signal, shutting down");
        exit_code = 0;
    }

out:
    /* Finish the reads in flight (they hold calls and read the store), stop
     * Raft (pending proposals are never acked), drop the waiting calls,
     * close the connections, then make the store durable and close it. */
    readers_free(s.readers);
    s.readers = NULL;
    if (s.raft)
        raft_node_stop(s.raft);
    if (s.pending)
        pending_free(s.pending);
    svc_kv_stop(&s);
    svc_auth_stop(&s);
    svc_lease_stop(&s);
    svc_watch_stop(&s);
    if (s.grpc)
        grpc_server_free(s.grpc);
    if (s.mvcc) {
        mvcc_sync(s.mvcc);
        mvcc_close(s.mvcc);
    }
    signal_loop = NULL;
    if (s.loop)
        loop_free(s.loop);
    return exit_code;
}
