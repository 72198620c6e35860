/*
 * server.c: one kshim member, wired together (server_run): opens the store,
 * starts Raft, the reader threads and the services, registers the services'
 * appliers and hooks with the member (member/, server_add_applier), listens
 * and runs the loop. The top of the layering (see docs/ARCHITECTURE.md):
 * the only file that knows both the member and the services.
 *
 * The moving parts and the path between them:
 *   loop thread  : sockets, TLS, HTTP/2, gRPC, the services' request decoding;
 *   readers      : (readers.c) the reads (Range, read-only Txn, watch
 *                  catch-up, lease key scans) on LevelDB snapshots, answered
 *                  on the loop;
 *   raft thread  : (raft/node.c) WAL append + group-committed fdatasync;
 *   apply thread : server_apply() (member/member.c) applies each batch of committed
 *                  entries to the MVCC store as ONE synced LevelDB write (a
 *                  write group, mvcc.h) and hands the results to the loop
 *                  with one loop_post (KV writes just before that write);
 *   back on loop : deliver_results() finds each waiting call by request id
 *                  and answers it.
 * A client hears "OK" only after its entry is durable in the WAL and applied,
 * so an acknowledged write is never lost, and every later read waits until
 * the store holds it (server_when_written).
 * Also here: the loop's housekeeping timers (request expiry, fail-stop
 * watch, TLS reload, the heap trim).
 */
#include "server.h"
#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autotls.h"
#include "lifecycle.h"
#include "local_client.h"
#include "log.h"
#include "peer.h"
#include "pending.h"
#include "readers.h"
#include "services.h"
#include "snapshot.h"
#include "version.h"

/* A test-only size from the environment (0 = unset: the default). */
static uint64_t test_env_u64(const char *name) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : 0;
}

/* ---- start-up --------------------------------------------------------- */

static int mkdir_p(const char *path, mode_t mode) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST) return -1;
    return 0;
}

static uint64_t random_u64(void) {
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &v, sizeof v);
        (void)r;
        close(fd);
    }
    return v ^ (uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20);
}

static void answer_timed_out(grpc_call_t *call, void *arg) {
    (void)arg;
    grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: request timed out");
    grpc_call_unref(call);
}

/* Writes whose entry was not applied within the request timeout (a stalled
 * disk, a lost leader) are answered as etcd answers them; if the entry is
 * applied later its result finds no waiting call and is dropped. */
static void expire_requests(loop_t *loop, void *arg) {
    server_t *s = arg;
    size_t n = pending_expire(s->pending, loop_now_ms(loop), answer_timed_out, NULL);
    s->proposals_failed += n;
    if (n) log_warn("%zu requests timed out waiting for Raft", n);
    loop_timer_add(loop, 500, expire_requests, s);
}

/* The Raft node stops itself (fail-stop) when the WAL cannot be written, and
 * apply stops when LevelDB cannot be written (a full or failing disk). Nothing
 * unsynced or unapplied was acknowledged, so the member exits, as etcd does,
 * and its supervisor restarts it once there is space. */
static void watch_raft_health(loop_t *loop, void *arg) {
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

/* The heap trim: glibc keeps memory freed by a thread in that thread's
 * arena and returns it to the system only from the top of the heap, so the
 * freed LevelDB memtables, write groups and read buffers of a long run add
 * up in RSS (a 60-minute soak: 298 MB taken from the system, 208 MB in use,
 * most of the rest in arenas with next to nothing in use). Every
 * HEAP_TRIM_MS a reader thread (never the loop: a trim walks every free
 * chunk) gives the free pages back (malloc_trim, madvise). */
#define HEAP_TRIM_MS 10000

static void heap_trim_run(reader_job_t *job) {
    (void)job;
    malloc_trim(0);
}

static void heap_trim_done(reader_job_t *job, int status) {
    (void)status;
    free(job);
}

static void heap_trim(loop_t *loop, void *arg) {
    server_t *s = arg;
    reader_job_t *job = calloc(1, sizeof *job);
    if (job && s->readers) {
        job->run = heap_trim_run;
        job->done = heap_trim_done;
        if (readers_submit(s->readers, job) == READERS_OK) job = NULL; /* a full pool: next time */
    }
    free(job);
    loop_timer_add(loop, HEAP_TRIM_MS, heap_trim, s);
}

/* Start-up: every entry recovered from the WAL is applied before the first
 * client is served. An acknowledged write may sit in the WAL above the
 * store's applied index (applied again at start); a read answered before
 * that replay would miss it. A single voter commits its whole log itself;
 * a cluster member's WAL may end with entries the cluster never committed
 * (a leader killed before it replicated them: the next leader's log
 * replaces them, and may stay shorter), so it waits for what its WAL knew
 * committed (a linearizable read waits for the leader's commit index
 * anyway). Returns 0, or -1 if the member failed. */
static int wait_for_replay(server_t *s, int clustered) {
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    uint64_t target = clustered ? st.commit_index : st.last_index;
    for (;;) {
        raft_node_status(s->raft, &st);
        if (st.failed || atomic_load(&s->apply_failed)) return -1;
        if (st.applied_index >= target) return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static loop_t *signal_loop;
static volatile sig_atomic_t reload_requested;

static void on_signal(int sig) {
    if (sig == SIGHUP) {
        reload_requested = 1;
        return;
    }
    if (signal_loop) loop_stop(signal_loop);
}

/* Newest modification time of the client TLS files (0 if none). */
static int64_t tls_files_mtime(const server_config_t *cfg) {
    const char *files[] = {cfg->cert_file, cfg->key_file, cfg->trusted_ca_file, cfg->client_crl_file};
    int64_t newest = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct stat st;
        if (files[i] && stat(files[i], &st) == 0) {
            int64_t t = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            if (t > newest) newest = t;
        }
    }
    return newest;
}

/* Certificate rotation without dropping connections: on SIGHUP, or when the
 * certificate, key or CA file changes, new TLS connections get a context
 * built from the files; live connections keep theirs. A bad new file keeps
 * the old context (and is retried on the next change). */
static void check_tls_reload(loop_t *loop, void *arg) {
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

static void install_signals(loop_t *loop) {
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

/* ---- peers: the transport's and the node's callbacks ---------------- */

static raft_node_t *raft_of(server_t *s) { return __atomic_load_n(&s->raft, __ATOMIC_ACQUIRE); }

/* Transport threads: a Raft message for our node. */
static void on_peer_raft(void *ctx, const raft_msg_t *m) {
    raft_node_t *node = raft_of(ctx);
    if (node) raft_node_step(node, m);
}

typedef struct app_msg {
    server_t *s;
    uint64_t from;
    uint8_t kind;
    size_t len;
    uint8_t data[];
} app_msg_t;

static void dispatch_app(void *arg) {
    app_msg_t *a = arg;
    server_peer_handler_fn fn = a->kind < SERVER_PEER_KINDS ? a->s->peer_handlers[a->kind] : NULL;
    if (fn) fn(a->s, a->from, a->data, a->len);
    free(a);
}

/* Transport threads: an app message, handled on the loop by its kind's handler. */
static void on_peer_app(void *ctx, uint64_t from, uint8_t kind, const uint8_t *data, size_t len) {
    server_t *s = ctx;
    app_msg_t *a = malloc(sizeof *a + len);
    if (!a) return;
    a->s = s;
    a->from = from;
    a->kind = kind;
    a->len = len;
    memcpy(a->data, data, len);
    if (loop_post(s->loop, dispatch_app, a) != 0) free(a);
}

static int on_members_request(void *ctx, uint8_t **out, size_t *out_len) {
    server_t *s = ctx;
    return server_members_pack(s, out, out_len);
}

/* Raft thread: messages to peers (forwarded proposals: member/forward.c). */
static void node_send(void *ctx, const raft_msg_t *m) {
    peer_transport_t *t = server_peer_acquire(ctx);
    if (t) peer_send_raft(t, m);
    server_peer_release();
}

/* Raft thread: stream a snapshot to a follower (member/snapshot_send.c),
 * under the peer lock like every use of the transport. */
static void node_send_snapshot(void *ctx, const raft_msg_t *m) {
    server_t *s = ctx;
    peer_transport_t *t = server_peer_acquire(s);
    raft_node_t *node = raft_of(s);
    if (t && node)
        server_send_snapshot(s, m);
    else if (node)
        raft_node_report_snapshot(node, m->to, 0);
    server_peer_release();
}

typedef struct read_ready_msg {
    server_t *s;
    uint64_t rctx;
    int ok;
} read_ready_msg_t;

static void deliver_read_ready(void *arg) {
    read_ready_msg_t *r = arg;
    svc_kv_read_ready(r->s, r->rctx, r->ok);
    free(r);
}

static void node_read_ready(void *ctx, uint64_t rctx, int ok) {
    server_t *s = ctx;
    read_ready_msg_t *r = malloc(sizeof *r);
    if (!r) return; /* the read waits for the request timeout */
    *r = (read_ready_msg_t){s, rctx, ok};
    if (loop_post(s->loop, deliver_read_ready, r) != 0) free(r);
}

/* --peer-auto-tls without --peer-cert-file: a self-signed certificate in
 * <data-dir>/fixtures/peer, as etcd. */
static int peer_tls_config(server_t *s, peer_tls_t *tls, char *cert, char *key, size_t cap, char *err,
                           size_t errlen) {
    const server_config_t *cfg = s->cfg;
    memset(tls, 0, sizeof *tls);
    tls->cert_file = cfg->peer_cert_file;
    tls->key_file = cfg->peer_key_file;
    tls->trusted_ca_file = cfg->peer_trusted_ca_file;
    tls->client_cert_auth = cfg->peer_client_cert_auth;
    tls->crl_file = cfg->peer_crl_file;
    tls->allowed_cn = cfg->peer_cert_allowed_cn;
    tls->allowed_hostname = cfg->peer_cert_allowed_host;
    if (!cfg->peer_auto_tls || (cfg->peer_cert_file && cfg->peer_key_file)) return 0;
    char hostbuf[SERVER_MAX_URLS][256];
    const char *hosts[SERVER_MAX_URLS];
    size_t nh = 0;
    for (size_t i = 0; i < cfg->n_listen_peer_urls; i++)
        if (autotls_url_host(cfg->listen_peer_urls[i], hostbuf[nh], sizeof hostbuf[nh]) == 0) {
            hosts[nh] = hostbuf[nh];
            nh++;
        }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fixtures/peer", cfg->data_dir);
    (void)cap;
    if (autotls_ensure(dir, hosts, nh, 365, cert, key, err, errlen) != 0) return -1;
    tls->cert_file = cert;
    tls->key_file = key;
    tls->trusted_ca_file = NULL;
    tls->client_cert_auth = 0;
    return 0;
}

/* Starts the peer transport on --listen-peer-urls when the cluster has
 * other members (or this one joins). 0, or -1 logged. */
static int start_peers(server_t *s) {
    if (s->peer) return 0;
    size_t members = 0;
    server_members_t ms;
    if (server_members_get(s, &ms) == 0) {
        members = ms.n;
        server_members_release(&ms);
    }
    if (members <= 1 && !s->join) return 0;
    static char cert[4096], key[4096];
    char err[512] = "";
    peer_config_t pc = {
        .self_id = s->member_id,
        .cluster_id = s->cluster_id,
        .listen_urls = s->cfg->listen_peer_urls,
        .n_listen_urls = s->cfg->n_listen_peer_urls,
        .on_raft = on_peer_raft,
        .on_app = on_peer_app,
        .on_members_request = on_members_request,
        .on_removed = server_membership_removed_by_peer,
        .on_request = server_peer_answer,
        .on_snapshot_begin = server_snapshot_begin,
        .on_snapshot_chunk = server_snapshot_chunk,
        .on_snapshot_end = server_snapshot_end,
        .ctx = s,
    };
    if (peer_tls_config(s, &pc.tls, cert, key, sizeof cert, err, sizeof err) != 0) {
        log_error("--peer-auto-tls: %s", err);
        return -1;
    }
    server_forward_register(s);
    peer_transport_t *t = peer_start(&pc, err, sizeof err);
    if (!t) {
        log_error("cannot listen for peers: %s", err);
        return -1;
    }
    server_peer_acquire(s);
    s->peer = t;
    server_peer_release();
    server_membership_add_peers(s);
    for (size_t i = 0; i < s->cfg->n_listen_peer_urls; i++)
        log_info("listening for peers on %s", s->cfg->listen_peer_urls[i]);
    return 0;
}

/* The client URLs' TLS (--cert-file etc. or --auto-tls's files), kept
 * for listeners started after start-up. */
static grpc_tls_config_t client_tls;

/* Listens on every --listen-client-urls and says the member is ready. */
static int listen_clients(server_t *s) {
    const server_config_t *cfg = s->cfg;
    char err[512] = "";
    for (size_t i = 0; i < cfg->n_listen_client_urls; i++) {
        const char *url = cfg->listen_client_urls[i];
        int https = strncmp(url, "https://", 8) == 0;
        if (grpc_server_listen(s->grpc, url, https ? &client_tls : NULL, err, sizeof err) != 0) {
            log_error("cannot listen on %s: %s", url, err);
            return -1;
        }
        log_info("serving client traffic on %s", url);
    }
    /* etcd's own words for "serving": tools that start etcd wait for them
     * (etcd's e2e framework waits for a line with "enabled capabilities for
     * version" and one with "published"; membership.c logs the latter). */
    log_info("enabled capabilities for version %s", KSHIM_ETCD_API_VERSION);
    if (lifecycle_sd_notify("READY=1") > 0) log_info("notified systemd: READY=1");
    log_info("kshimd ready: name=%s member-id=%016llx cluster-id=%016llx data-dir=%s revision=%lld",
             cfg->name, (unsigned long long)s->member_id, (unsigned long long)s->cluster_id, cfg->data_dir,
             (long long)mvcc_revision(s->mvcc));
    return 0;
}

/* Milliseconds on the monotonic clock, for the start-up's debug log. */
static uint64_t start_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int server_run(const server_config_t *cfg) {
    server_t s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    char err[512] = "";
    char path[4096];
    int exit_code = 1;
    uint64_t t_start = start_ms();

    snprintf(path, sizeof path, "%s/member/kv", cfg->data_dir);
    if (mkdir_p(path, 0700) != 0) {
        log_error("cannot create data dir %s: %s", path, strerror(errno));
        return 1;
    }
    s.loop = loop_new();
    size_t max_pending =
        cfg->max_pending_proposals ? cfg->max_pending_proposals : RAFT_NODE_DEFAULT_MAX_INFLIGHT;
    s.pending = pending_new(max_pending);
    s.req_id_prefix = random_u64() << 32;
    grpc_server_config_t gcfg = {.max_request_bytes = cfg->max_request_bytes,
                                 .max_concurrent_streams = cfg->max_concurrent_streams,
                                 .max_connections = cfg->max_client_connections};
    s.grpc = s.loop ? grpc_server_new(s.loop, &gcfg) : NULL;
    if (!s.loop || !s.pending || !s.grpc) {
        log_error("out of memory");
        goto out;
    }
    /* Services that hook into the store set their hooks before it opens:
     * watch receives every applied revision's events, lease answers "does
     * this lease exist" for Put. */
    mvcc_options_t mopts = {.max_txn_ops = cfg->max_txn_ops,
                            .quota_backend_bytes = cfg->quota_backend_bytes,
                            .live_filter_delay_ms = 1000};
    if (svc_watch_init(&s, &mopts) != 0 || svc_lease_init(&s, &mopts) != 0 ||
        svc_auth_init(&s, &mopts) != 0 || svc_maintenance_init(&s) != 0 || svc_corrupt_init(&s) != 0) {
        log_error("cannot initialise the services");
        goto out;
    }
    /* The member reaches the services only through what they register:
     * lease and auth requests go to their state machines before the KV
     * store sees an entry; a physical Compact waits for the compactor. */
    server_add_applier(&s, svc_maintenance_apply);
    server_add_applier(&s, svc_auth_check_apply);
    server_add_applier(&s, svc_maintenance_quota_apply);
    server_add_applier(&s, svc_lease_apply);
    server_add_applier(&s, svc_auth_apply);
    s.wait_physical = svc_kv_wait_physical;
    if (mvcc_open(path, &mopts, &s.mvcc, err, sizeof err) != 0) {
        log_error("cannot open the MVCC store in %s: %s", path, err);
        goto out;
    }
    uint64_t t_store = start_ms();

    if (server_membership_init(&s, err, sizeof err) != 0) {
        log_error("%s", err);
        if (atomic_load(&s.removed)) {
            log_info("the data-dir used by this member must be removed.");
            exit_code = 0;
        }
        goto out;
    }
    if (server_add_reload_hook(&s, server_membership_reload) != 0) {
        log_error("cannot register the member table's reload hook");
        goto out;
    }
    uint64_t voters[SERVER_MAX_MEMBERS];
    size_t n_voters = server_voter_ids(&s, voters, SERVER_MAX_MEMBERS);
    size_t n_members = 0;
    {
        server_members_t ms;
        if (server_members_get(&s, &ms) == 0) {
            n_members = ms.n;
            server_members_release(&ms);
        }
    }
    int clustered = n_members > 1 || s.join;
    s.start_peers = start_peers;
    if (start_peers(&s) != 0) goto out;
    /* etcd checks before its Raft node starts and before it serves peers'
     * Raft traffic or clients (embed.StartEtcd); the transport answers
     * the others' HashKV requests meanwhile. */
    if (svc_corrupt_initial_check(&s) != 0) goto out;

    char wal_path[4096];
    if (cfg->wal_dir && *cfg->wal_dir)
        snprintf(wal_path, sizeof wal_path, "%s", cfg->wal_dir);
    else
        snprintf(wal_path, sizeof wal_path, "%s/member/wal", cfg->data_dir);
    raft_node_config_t rcfg = {
        .id = s.member_id,
        .peer_ids = voters,
        .n_peers = n_voters,
        .join = s.join,
        .pre_vote = clustered,
        .check_quorum = clustered,
        .send = node_send,
        .forward = server_node_forward,
        .dropped = server_node_dropped,
        .refused = server_node_refused,
        .read_ready = node_read_ready,
        .send_snapshot = node_send_snapshot,
        .wal_dir = wal_path,
        .applied_index = mvcc_applied_index(s.mvcc),
        .tick_ms = cfg->heartbeat_interval_ms,
        .election_ticks =
            cfg->heartbeat_interval_ms ? cfg->election_timeout_ms / cfg->heartbeat_interval_ms : 10,
        .heartbeat_ticks = 1,
        .apply = server_apply,
        .persist_state = server_persist_state,
        .install_snapshot = server_install_snapshot,
        .ctx = &s,
        /* Test-only (e2e/test_power_loss.sh): small WAL segments and frequent
         * LevelDB syncs with WAL release, so short runs reach rotation and
         * release. Unset in production: the defaults. */
        .wal_segment_bytes = (size_t)test_env_u64("KSHIM_TEST_WAL_SEGMENT_BYTES"),
        .persist_every = test_env_u64("KSHIM_TEST_PERSIST_EVERY"),
        .max_inflight = max_pending,
    };
    raft_node_t *node = NULL;
    if (raft_node_start(&rcfg, &node, err, sizeof err) != 0) {
        log_error("cannot start raft: %s", err);
        goto out;
    }
    uint64_t t_wal = start_ms();
    __atomic_store_n(&s.raft, node, __ATOMIC_RELEASE);
    if (wait_for_replay(&s, clustered) != 0) {
        log_error("the member failed while replaying its WAL (see above)");
        goto out;
    }
    uint64_t t_replay = start_ms();
    log_debug("start-up: store opened in %llu ms, WAL read in %llu ms, replay applied in %llu ms",
              (unsigned long long)(t_store - t_start), (unsigned long long)(t_wal - t_store),
              (unsigned long long)(t_replay - t_wal));
    if (server_snapshot_loop_serves(&s) != 0) goto out;

    s.readers = readers_new(s.loop, &(readers_config_t){.thread_exit = grpc_thread_cleanup});
    if (!s.readers) {
        log_error("cannot start the reader threads");
        goto out;
    }
    grpc_server_set_guard(s.grpc, server_learner_guard, &s);
    svc_kv_register(&s);
    svc_maintenance_register(&s);
    svc_cluster_register(&s);
    svc_lock_register(&s);
    svc_election_register(&s);
    svc_snapshot_register(&s);
    if (svc_watch_start(&s) != 0 || svc_lease_start(&s) != 0 || svc_auth_start(&s) != 0 ||
        svc_gateway_start(&s) != 0 || svc_corrupt_start(&s) != 0) {
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
    client_tls = (grpc_tls_config_t){.cert_file = use_auto ? auto_cert : cfg->cert_file,
                                     .key_file = use_auto ? auto_key : cfg->key_file,
                                     .trusted_ca_file = use_auto ? NULL : cfg->trusted_ca_file,
                                     .client_cert_auth = use_auto ? 0 : cfg->client_cert_auth,
                                     .crl_file = use_auto ? NULL : cfg->client_crl_file};
    for (size_t i = 0; i < cfg->n_listen_client_urls; i++) {
        const char *url = cfg->listen_client_urls[i];
        if (strncmp(url, "https://", 8) == 0 && (!client_tls.cert_file || !client_tls.key_file)) {
            log_error("listen URL %s needs --cert-file and --key-file (or --auto-tls)", url);
            goto out;
        }
    }
    if (svc_metrics_start(&s) != 0) goto out;
    /* A member with peers serves clients once its name and client URLs are
     * published through Raft, as etcd (whose clients wait for ReadyNotify):
     * the member list a client reads then names every started member's
     * client URLs. A lone member serves at once. */
    if (s.peer) {
        s.on_published = listen_clients;
    } else if (listen_clients(&s) != 0) {
        goto out;
    }
    server_publish_start(&s);

    install_signals(s.loop);
    if (lifecycle_start(&s) != 0) goto out;
    loop_timer_add(s.loop, 200, watch_raft_health, &s);
    loop_timer_add(s.loop, 500, expire_requests, &s);
    loop_timer_add(s.loop, HEAP_TRIM_MS, heap_trim, &s);
    if (cfg->cert_file) {
        s.tls_mtime = tls_files_mtime(cfg);
        loop_timer_add(s.loop, 1000, check_tls_reload, &s);
    }
    loop_run(s.loop);
    grpc_thread_cleanup();
    if (s.fatal) {
        exit_code = 1;
    } else {
        if (!atomic_load(&s.removed)) log_info("received a termination signal, shutting down");
        exit_code = 0; /* a removed member too, as etcd */
    }

out:
    /* Finish the reads in flight (they hold calls and read the store), stop
     * Raft (pending proposals are never acked), drop the waiting calls,
     * close the connections, then make the store durable and close it. */
    readers_free(s.readers);
    s.readers = NULL;
    /* The transport's threads step the node: stop them first (under the
     * peer lock, so a raft-thread send waits), then the node. */
    svc_corrupt_stop(&s); /* its thread uses the transport and the node */
    raft_node_t *node_to_stop = s.raft;
    __atomic_store_n(&s.raft, NULL, __ATOMIC_RELEASE);
    peer_transport_t *t = server_peer_acquire(&s);
    if (t) peer_stop(t);
    s.peer = NULL;
    server_peer_release();
    if (node_to_stop) raft_node_stop(node_to_stop);
    server_snapshot_free(&s);
    if (s.pending) pending_free(s.pending);
    svc_metrics_stop(&s);
    svc_snapshot_stop(&s);
    svc_lock_stop(&s);
    svc_election_stop(&s);
    local_client_stop(&s);
    server_written_stop(&s); /* reads waiting for a write: released (Raft stopped above) */
    svc_kv_stop(&s);
    svc_gateway_stop(&s);
    svc_maintenance_stop(&s);
    svc_auth_stop(&s);
    svc_lease_stop(&s);
    svc_watch_stop(&s);
    if (s.grpc) grpc_server_free(s.grpc);
    server_membership_free(&s);
    if (s.mvcc) {
        mvcc_sync(s.mvcc);
        mvcc_close(s.mvcc);
    }
    signal_loop = NULL;
    if (s.loop) lifecycle_stop(&s);
    if (s.loop) loop_free(s.loop);
    return exit_code;
}
