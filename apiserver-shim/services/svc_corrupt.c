/*
 * svc_corrupt.c: etcd 3.4's data corruption checks (etcdserver/corrupt.go),
 * by HashKV (storage/mvcc/mvcc_hash.c, etcd's HashByRev byte for byte):
 *   answer      a peer's request for our HashKV at a revision (etcd's
 *               /members/hashkv on the peer port);
 *   initial     --experimental-initial-corrupt-check: before Raft starts
 *               and before any client is served, a member of an earlier
 *               run compares its HashKV with each peer's at its own
 *               revision; a peer with the same compact revision and another
 *               hash stops the start ("<id> found data inconsistency with
 *               peers", CheckInitialHashKV);
 *   periodic    --experimental-corrupt-check-time D (0 = off, etcd's
 *               default): every D the leader takes its HashKV, every
 *               peer's at that revision, then (after its applied index
 *               caught up with its commit index) its own again, and raises
 *               the CORRUPT alarm through Raft, member id 0 as etcd 3.4.23
 *               does (which member is wrong is not known), at most once a
 *               round, on etcd's rules (checkHashKV): its own hash moved at
 *               the same revision, a peer ahead of it in revision or in
 *               compact revision, or a peer with its first compact
 *               revision and another hash. So a diverged leader is caught
 *               as well: every follower's hash differs from its own.
 * The alarm's effect (writes refused with "etcdserver: corrupt cluster",
 * listed by Alarm and Status) is kv_alarm.c's, applied on every member.
 *
 * How a member gets a peer's HashKV: etcd GETs the peer URL's
 * /members/hashkv with a JSON HashKVRequest. kshim's peer port speaks its
 * own protocol (raft/peer/), so this is a request/answer exchange of it
 * (peer_request, kind SERVER_PEER_REQ_HASHKV: a packed HashKVRequest, the
 * answer a status byte and a packed HashKVResponse). Not the peer's client
 * URL through client/: that would need a client certificate and, with auth
 * enabled, a root user (HashKV needs the root role), while the peer port is
 * already the members' mutually authenticated channel, as in etcd.
 *
 * Threads: the answer runs on a transport reader thread, the initial check
 * on server_run's thread, the periodic check on a thread of its own
 * (blocking peer requests, cancelled by svc_corrupt_stop through an
 * eventfd). The verdicts on the hashes are corrupt_rules.c's. Owns struct
 * svc_corrupt (s->corrupt).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "corrupt_rules.h"
#include "log.h"
#include "peer.h"
#include "services.h"

struct svc_corrupt {
    server_t *s;
    int stop_fd; /* eventfd: written once by svc_corrupt_stop */
    pthread_t thread;
    int started;
};

/* ---- the answer (transport reader thread) ---- */

static int answer_hashkv(server_t *s, uint64_t from, const uint8_t *data, size_t len, uint8_t **out,
                         size_t *out_len) {
    (void)from;
    Etcdserverpb__HashKVRequest *req = etcdserverpb__hash_kvrequest__unpack(NULL, len, data);
    if (!req) return -1;
    uint32_t hash = 0;
    int64_t cur = 0, compact = 0;
    int rc = mvcc_hash_kv(s->mvcc, req->revision, &hash, &cur, &compact);
    if (rc != MVCC_OK)
        log_warn("failed to get hashKV (requested-revision %lld): %s", (long long)req->revision,
                 rc == MVCC_ERR_COMPACTED    ? "mvcc: required revision has been compacted"
                 : rc == MVCC_ERR_FUTURE_REV ? "mvcc: required revision is a future revision"
                                             : "storage error");
    etcdserverpb__hash_kvrequest__free_unpacked(req, NULL);
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = s->cluster_id;
    hdr.member_id = s->member_id;
    hdr.revision = cur;
    Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
    resp.header = &hdr;
    resp.hash = hash;
    resp.compact_revision = compact;
    size_t n = etcdserverpb__hash_kvresponse__get_packed_size(&resp);
    *out = malloc(1 + n);
    if (!*out) return -1;
    (*out)[0] = rc == MVCC_OK               ? CORRUPT_HASH_OK
                : rc == MVCC_ERR_COMPACTED  ? CORRUPT_HASH_COMPACTED
                : rc == MVCC_ERR_FUTURE_REV ? CORRUPT_HASH_FUTURE_REV
                                            : CORRUPT_HASH_FAILED;
    etcdserverpb__hash_kvresponse__pack(&resp, *out + 1);
    *out_len = 1 + n;
    return 0;
}

/* ---- asking the peers (getPeerHashKVs) ---- */

static void ask_peer(server_t *s, peer_transport_t *t, uint64_t id, int64_t rev, int cancel_fd,
                     corrupt_peer_t *out) {
    *out = (corrupt_peer_t){.id = id, .status = CORRUPT_HASH_FAILED};
    Etcdserverpb__HashKVRequest req = ETCDSERVERPB__HASH_KVREQUEST__INIT;
    req.revision = rev;
    uint8_t buf[32];
    size_t len = etcdserverpb__hash_kvrequest__pack(&req, buf);
    uint8_t *answer = NULL;
    size_t answer_len = 0;
    char err[256] = "";
    int rc =
        t ? peer_request(t, id, SERVER_PEER_REQ_HASHKV, buf, len, (unsigned)server_request_timeout_ms(s->cfg),
                         cancel_fd, &answer, &answer_len, err, sizeof err)
          : PEER_ERR_UNKNOWN;
    Etcdserverpb__HashKVResponse *resp =
        rc == PEER_OK && answer_len >= 1
            ? etcdserverpb__hash_kvresponse__unpack(NULL, answer_len - 1, answer + 1)
            : NULL;
    if (resp) {
        out->status = answer[0] <= CORRUPT_HASH_FAILED ? answer[0] : CORRUPT_HASH_FAILED;
        out->h.hash = resp->hash;
        out->h.revision = resp->header ? resp->header->revision : 0;
        out->h.compact_revision = resp->compact_revision;
        etcdserverpb__hash_kvresponse__free_unpacked(resp, NULL);
    } else if (rc == PEER_OK) {
        snprintf(err, sizeof err, "an answer that does not decode");
    }
    if (out->status != CORRUPT_HASH_OK)
        log_warn("failed hash kv request (local-member-id %llx, requested-revision %lld, remote-peer-id "
                 "%llx): %s",
                 (unsigned long long)s->member_id, (long long)rev, (unsigned long long)id,
                 out->status == CORRUPT_HASH_COMPACTED
                     ? "etcdserver: mvcc: required revision has been compacted"
                 : out->status == CORRUPT_HASH_FUTURE_REV
                     ? "etcdserver: mvcc: required revision is a future revision"
                 : err[0] ? err
                          : "unknown error");
    free(answer);
}

/* Every member of the table but us that has a peer URL (etcd asks learners
 * too), in table order; returns how many were asked (at most max). */
static size_t peer_hashes(server_t *s, int64_t rev, int cancel_fd, corrupt_peer_t *out, size_t max) {
    server_members_t ms;
    if (server_members_get(s, &ms) != 0) return 0;
    /* The transport outlives this call: svc_corrupt_stop joins the thread
     * before server_run stops it, and the initial check runs before. */
    peer_transport_t *t = server_peer_acquire(s);
    server_peer_release();
    size_t n = 0;
    for (size_t i = 0; i < ms.n && n < max; i++) {
        const Etcdserverpb__Member *m = &ms.pb[i];
        if (m->id == s->member_id || m->n_peerurls == 0) continue;
        ask_peer(s, t, m->id, rev, cancel_fd, &out[n++]);
    }
    server_members_release(&ms);
    return n;
}

/* ---- the initial check (CheckInitialHashKV) ---- */

int svc_corrupt_initial_check(server_t *s) {
    /* etcd: a newly started member (no data of an earlier run) is not checked */
    if (!s->cfg->initial_corrupt_check || !s->initialized) return 0;
    unsigned long long me = (unsigned long long)s->member_id;
    log_info("starting initial corruption check (local-member-id %llx, timeout %llu ms)", me,
             (unsigned long long)server_request_timeout_ms(s->cfg));
    corrupt_hash_t local;
    if (mvcc_hash_kv(s->mvcc, 0, &local.hash, &local.revision, &local.compact_revision) != MVCC_OK) {
        log_error("%llx failed to fetch hash (storage error)", me);
        return -1;
    }
    corrupt_peer_t peers[SERVER_MAX_MEMBERS];
    size_t n = peer_hashes(s, local.revision, -1, peers, SERVER_MAX_MEMBERS);
    int mismatch = corrupt_initial_mismatches(s->member_id, &local, peers, n);
    if (mismatch > 0) {
        log_error("%llx found data inconsistency with peers", me);
        return -1;
    }
    log_info("initial corruption checking passed; no corruption (local-member-id %llx)", me);
    return 0;
}

/* ---- the periodic check (monitorKVHash, checkHashKV) ---- */

static void propose_corrupt(server_t *s) {
    /* member 0: etcd 3.4.23 does not say which member is corrupt */
    if (svc_maintenance_propose_alarm(s, ETCDSERVERPB__ALARM_TYPE__CORRUPT, 0) != 0)
        log_warn("cannot propose the CORRUPT alarm now; the next check raises it again");
}

/* 1 if the thread must stop (stop_fd written), after waiting up to ms. */
static int stop_requested(struct svc_corrupt *c, uint64_t ms) {
    struct pollfd p = {c->stop_fd, POLLIN, 0};
    int n;
    do {
        n = poll(&p, 1, ms > 3600000 ? 3600000 : (int)ms);
    } while (n < 0 && errno == EINTR);
    return n > 0;
}

/* etcd's linearizableReadNotify before the second hash: the leader's
 * applied index reaches the commit index it has now, as leader of the same
 * term. Its commit index covers every entry a follower can have applied
 * when it answered (a follower applies only what the leader told it is
 * committed), which is what the comparison needs; etcd gets it from a
 * ReadIndex round. 0, or -1 (leadership lost, timed out, stopping). */
static int wait_applied_commit(struct svc_corrupt *c, uint64_t term) {
    raft_node_status_t st;
    raft_node_status(c->s->raft, &st);
    uint64_t target = st.commit_index;
    uint64_t waited = 0, limit = server_request_timeout_ms(c->s->cfg);
    for (;;) {
        raft_node_status(c->s->raft, &st);
        if (st.leader != c->s->member_id || st.term != term) return -1;
        if (st.applied_index >= target) return 0;
        if (waited >= limit || stop_requested(c, 2)) return -1;
        waited += 2;
    }
}

static void check_hashkv(struct svc_corrupt *c) {
    server_t *s = c->s;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    uint64_t term = st.term;
    corrupt_hash_t first, second;
    if (mvcc_hash_kv(s->mvcc, 0, &first.hash, &first.revision, &first.compact_revision) != MVCC_OK) {
        log_warn("failed to check hash KV: storage error");
        return;
    }
    corrupt_peer_t peers[SERVER_MAX_MEMBERS];
    size_t n = peer_hashes(s, first.revision, c->stop_fd, peers, SERVER_MAX_MEMBERS);
    if (wait_applied_commit(c, term) != 0) {
        log_warn("failed to check hash KV: etcdserver: leader changed or request timed out");
        return;
    }
    if (mvcc_hash_kv(s->mvcc, 0, &second.hash, &second.revision, &second.compact_revision) != MVCC_OK) {
        log_warn("failed to check hash KV: storage error");
        return;
    }
    int checked = 0;
    int mismatch = corrupt_leader_verdict(&first, &second, peers, n, &checked);
    if (mismatch) propose_corrupt(s); /* once a round, as etcd's `alarmed` */
    log_info("finished peer corruption check (number-of-peers-checked %d)", checked);
}

static void *monitor_main(void *arg) {
    struct svc_corrupt *c = arg;
    server_t *s = c->s;
    log_info("enabled corruption checking (local-member-id %llx, interval %llu ms)",
             (unsigned long long)s->member_id, (unsigned long long)s->cfg->corrupt_check_time_ms);
    while (!stop_requested(c, s->cfg->corrupt_check_time_ms))
        if (server_is_leader(s)) check_hashkv(c);
    return NULL;
}

/* ---- lifecycle ---- */

int svc_corrupt_init(server_t *s) {
    struct svc_corrupt *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->s = s;
    c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->stop_fd < 0) {
        free(c);
        return -1;
    }
    s->corrupt = c;
    server_peer_handle_request(s, SERVER_PEER_REQ_HASHKV, answer_hashkv);
    return 0;
}

int svc_corrupt_start(server_t *s) {
    struct svc_corrupt *c = s->corrupt;
    if (!c || s->cfg->corrupt_check_time_ms == 0) return 0;
    if (pthread_create(&c->thread, NULL, monitor_main, c) != 0) {
        log_error("cannot start the corruption check thread");
        return -1;
    }
    c->started = 1;
    return 0;
}

void svc_corrupt_stop(server_t *s) {
    struct svc_corrupt *c = s->corrupt;
    if (!c) return;
    if (c->started) {
        uint64_t one = 1;
        ssize_t w = write(c->stop_fd, &one, sizeof one);
        (void)w;
        pthread_join(c->thread, NULL);
    }
    close(c->stop_fd);
    free(c);
    s->corrupt = NULL;
}
