/*
 * ctl_migrate.c: `kshimctl migrate` (see ctl_migrate.h): online migration
 * from a live etcd into a new kshim data dir, every revision kept.
 *
 * 1. Snapshot: Maintenance.Snapshot into <data-dir>.snapshot (ctl_snapshot_save),
 *    restored into the data dir by ctl_snapshot_restore (the SHA-256 trailer
 *    checked, the cluster flags checked, every revision, lease, user, role
 *    and the compact revision kept); its revision R is the key bucket's last.
 * 2. Follow: one Watch of the whole keyspace from R+1 with prev_kv; every
 *    revision's events (etcd sends a revision's events in one response)
 *    applied at that revision in one LevelDB write (mvcc_import_revision),
 *    synced every sync_every revisions. A watch canceled for compaction is
 *    fatal (the source compacted what we have not read yet: start again); a
 *    lost connection or a watch that ends is reconnected and resumed from
 *    the last applied revision + 1. Progress requests (every 2 s) give the
 *    source's revision for the "behind" figure.
 * 3. Cut-over (SIGINT/SIGTERM, the cut-over file, or --duration): a Range
 *    reads the source's current revision C; the watch is followed until C is
 *    applied (every etcd revision has events, so "applied >= C" is exact);
 *    events after C are not applied (counted, warned about: the writers
 *    should be stopped first). Then the source's leases (LeaseLeases +
 *    LeaseTimeToLive: granted and remaining TTL) replace the lease table (the
 *    keys' attachments are the events'), and users (UserList/UserGet: roles;
 *    a user known from the snapshot keeps its password hash, a newer one has
 *    none: gRPC never gives hashes out) and roles (RoleList/RoleGet) replace
 *    the auth tables unless the source refuses the reads (auth enabled
 *    without --user root: the snapshot's are kept, with a warning). The
 *    auth-enabled flag and auth revision are the snapshot's. The store
 *    revision becomes C, the store is closed and the file system synced.
 * A second signal while the cut-over cannot reach the source gives up.
 */
#include "ctl_migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err_text.h"
#include "etcd_import.h"
#include "kv_arena.h"
#include "mvcc.h"
#include "rpc.pb-c.h"

#define TICK_MS 200
#define PROGRESS_REQ_MS 2000
#define RETRY_MS 1000

static volatile sig_atomic_t signals;

static void on_signal(int sig) {
    (void)sig;
    signals++;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct mig {
    const ctl_migrate_opts_t *o;
    ctl_migrate_result_t *res;
    mvcc_t *m;
    gc_conn_t *wconn, *rconn; /* the watch's connection, the unary calls' */
    gc_stream_t *ws;
    int64_t applied;    /* the store's revision */
    int64_t source_rev; /* the newest header revision seen */
    int64_t cut_rev;    /* the source's revision at the cut-over (0: not yet) */
    uint64_t skipped;   /* events after cut_rev, not applied */
    int since_sync;
    int tty, line_open; /* a progress line without its newline is on the terminal */
    int64_t start_ms, last_print_ms, last_progress_req_ms;
    uint64_t events_at_print;
    char *err;
    size_t errlen;
} mig_t;

/* ---- connections ---- */

static void drop_source(mig_t *g) {
    if (g->ws) gc_stream_close(g->ws);
    if (g->wconn) gc_close(g->wconn);
    if (g->rconn) gc_close(g->rconn);
    g->ws = NULL;
    g->wconn = g->rconn = NULL;
}

static int send_watch(gc_stream_t *s, Etcdserverpb__WatchRequest *req) {
    size_t len = etcdserverpb__watch_request__get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return -1;
    etcdserverpb__watch_request__pack(req, buf);
    int r = gc_stream_send(s, buf, len, 0);
    free(buf);
    return r;
}

/* Both connections and the watch from applied + 1. 0 or -1 with st. */
static int connect_source(mig_t *g, gc_status_t *st) {
    drop_source(g);
    g->wconn = g->o->dial(g->o->dial_arg, st);
    if (g->wconn) g->rconn = g->o->dial(g->o->dial_arg, st);
    if (g->rconn) g->ws = gc_stream_open(g->wconn, "/etcdserverpb.Watch/Watch", 0, st);
    if (!g->ws) {
        drop_source(g);
        return -1;
    }
    static uint8_t all[1] = {0};
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = (ProtobufCBinaryData){1, all};
    cr.range_end = (ProtobufCBinaryData){1, all};
    cr.start_revision = g->applied + 1;
    cr.prev_kv = 1;
    cr.progress_notify = 1;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    if (send_watch(g->ws, &req) != 0) {
        snprintf(st->message, sizeof st->message, "cannot send the watch request");
        drop_source(g);
        return -1;
    }
    return 0;
}

static void request_progress(mig_t *g) {
    Etcdserverpb__WatchProgressRequest pr = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    req.progress_request = &pr;
    send_watch(g->ws, &req);
    g->last_progress_req_ms = now_ms();
}

/* One unary call on the unary connection. 0, or -1 with st. */
static int rpc(mig_t *g, const char *path, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
               ProtobufCMessage **resp, gc_status_t *st) {
    *resp = NULL;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) abort();
    protobuf_c_message_pack(req, buf);
    uint8_t *out = NULL;
    size_t outlen = 0;
    int to = g->o->timeout_ms > 0 ? g->o->timeout_ms : 5000;
    int r = gc_unary(g->rconn, path, buf, len, &out, &outlen, st, to);
    free(buf);
    if (r < 0 || st->code != GC_OK) return -1;
    *resp = protobuf_c_message_unpack(rd, NULL, outlen, out);
    free(out);
    if (!*resp) {
        st->code = GC_INTERNAL;
        snprintf(st->message, sizeof st->message, "cannot decode a %s", rd->name);
        return -1;
    }
    return 0;
}

/* ---- progress ---- */

static void print_progress(mig_t *g, int force) {
    int64_t now = now_ms();
    int64_t every = g->tty ? 1000 : 5000;
    if (!force && now - g->last_print_ms < every) return;
    double secs = (double)(now - g->last_print_ms) / 1000.0;
    double rate = secs > 0 ? (double)(g->res->events - g->events_at_print) / secs : 0;
    int64_t behind = g->source_rev > g->applied ? g->source_rev - g->applied : 0;
    fprintf(stderr,
            "%smigrate: revision %lld, source %lld (%lld behind), %llu events applied, %.0f events/s%s",
            g->tty ? "\r" : "", (long long)g->applied, (long long)g->source_rev, (long long)behind,
            (unsigned long long)g->res->events, rate, g->tty ? "   " : "\n");
    g->line_open = g->tty;
    g->last_print_ms = now;
    g->events_at_print = g->res->events;
}

static void note(mig_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(mig_t *g, const char *fmt, ...) {
    if (g->line_open) fputc('\n', stderr);
    g->line_open = 0;
    va_list ap;
    va_start(ap, fmt);
    fputs("migrate: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- events ---- */

/* The events evs[0..n) of revision rev. 0 or -1 (fatal). */
static int apply_revision(mig_t *g, int64_t rev, Mvccpb__Event **evs, size_t n) {
    if (g->cut_rev && rev > g->cut_rev) {
        g->skipped += n;
        return 0;
    }
    int every = g->o->sync_every > 0 ? g->o->sync_every : 100;
    int sync = g->since_sync + 1 >= every;
    int rc = mvcc_import_revision(g->m, rev, (const Mvccpb__Event *const *)evs, n, sync);
    if (rc == 1) return 0; /* already applied (a resumed watch) */
    if (rc == MVCC_ERR_BAD_EVENT)
        return err_text(g->err, g->errlen, "the source sent an event that does not fit revision %lld",
                        (long long)rev);
    if (rc != MVCC_OK)
        return err_text(g->err, g->errlen, "writing revision %lld to the store failed", (long long)rev);
    g->since_sync = sync ? 0 : g->since_sync + 1;
    g->applied = rev;
    g->res->revisions++;
    g->res->events += n;
    return 0;
}

static int apply_events(mig_t *g, Etcdserverpb__WatchResponse *w) {
    for (size_t i = 0; i < w->n_events;) {
        if (!w->events[i]->kv) return err_text(g->err, g->errlen, "the source sent an event without a key");
        int64_t rev = w->events[i]->kv->mod_revision;
        size_t j = i + 1;
        while (j < w->n_events && w->events[j]->kv && w->events[j]->kv->mod_revision == rev) j++;
        if (apply_revision(g, rev, w->events + i, j - i) != 0) return -1;
        i = j;
    }
    return 0;
}

/* One WatchResponse: 0, or -1 (fatal, err set). */
static int on_response(mig_t *g, const uint8_t *msg, size_t len) {
    Etcdserverpb__WatchResponse *w = etcdserverpb__watch_response__unpack(NULL, len, msg);
    if (!w) return err_text(g->err, g->errlen, "cannot decode a WatchResponse from the source");
    int rc = 0;
    if (w->header && w->header->revision > g->source_rev) g->source_rev = w->header->revision;
    if (w->canceled && w->compact_revision)
        rc = err_text(
            g->err, g->errlen,
            "the source compacted revision %lld while the migration needed revision %lld: remove the "
            "data dir and start again (or compact the source less often)",
            (long long)w->compact_revision, (long long)g->applied + 1);
    else if (w->canceled)
        rc = err_text(g->err, g->errlen, "the source canceled the watch: %s",
                      w->cancel_reason && *w->cancel_reason ? w->cancel_reason : "no reason given");
    else if (w->fragment)
        rc = err_text(g->err, g->errlen, "the source sent a watch fragment (not requested)");
    else
        rc = apply_events(g, w);
    etcdserverpb__watch_response__free_unpacked(w, NULL);
    return rc;
}

/* ---- cut-over ---- */

static int cutover_due(mig_t *g) {
    if (signals) return 1;
    if (g->o->cutover_file && access(g->o->cutover_file, F_OK) == 0) return 1;
    return g->o->duration_ms > 0 && now_ms() - g->start_ms >= g->o->duration_ms;
}

/* The source's current revision (a one-key Range). 0 or -1 with st. */
static int source_revision(mig_t *g, int64_t *rev, gc_status_t *st) {
    static uint8_t zero[1] = {0};
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){1, zero};
    req.count_only = 1;
    ProtobufCMessage *resp;
    if (rpc(g, "/etcdserverpb.KV/Range", &req.base, &etcdserverpb__range_response__descriptor, &resp, st) !=
        0)
        return -1;
    Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)resp;
    *rev = r->header ? r->header->revision : 0;
    protobuf_c_message_free_unpacked(resp, NULL);
    return *rev > 0 ? 0 : -1;
}

static int copy_leases(mig_t *g, gc_status_t *st) {
    Etcdserverpb__LeaseLeasesRequest req = ETCDSERVERPB__LEASE_LEASES_REQUEST__INIT;
    ProtobufCMessage *resp;
    if (rpc(g, "/etcdserverpb.Lease/LeaseLeases", &req.base, &etcdserverpb__lease_leases_response__descriptor,
            &resp, st) != 0)
        return -1;
    Etcdserverpb__LeaseLeasesResponse *ll = (Etcdserverpb__LeaseLeasesResponse *)resp;
    etcd_import_lease_t *ls = calloc(ll->n_leases ? ll->n_leases : 1, sizeof *ls);
    if (!ls) abort();
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < ll->n_leases && rc == 0; i++) {
        Etcdserverpb__LeaseTimeToLiveRequest tr = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
        tr.id = ll->leases[i]->id;
        ProtobufCMessage *tresp;
        rc = rpc(g, "/etcdserverpb.Lease/LeaseTimeToLive", &tr.base,
                 &etcdserverpb__lease_time_to_live_response__descriptor, &tresp, st);
        if (rc != 0) break;
        Etcdserverpb__LeaseTimeToLiveResponse *t = (Etcdserverpb__LeaseTimeToLiveResponse *)tresp;
        if (t->ttl >= 0) ls[n++] = (etcd_import_lease_t){t->id, t->grantedttl, t->ttl}; /* -1: expired now */
        protobuf_c_message_free_unpacked(tresp, NULL);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    if (rc == 0 && etcd_import_leases(g->m, ls, n) != MVCC_OK) {
        free(ls);
        st->code = GC_INTERNAL;
        snprintf(st->message, sizeof st->message, "writing the lease table failed");
        return -2;
    }
    free(ls);
    if (rc == 0) g->res->leases = n;
    return rc;
}

/* A list call (UserList / RoleList): names, owned by *resp. */
static int list_names(mig_t *g, const char *what, ProtobufCMessage **resp, char ***names, size_t *n,
                      gc_status_t *st) {
    int users = !strcmp(what, "UserList");
    Etcdserverpb__AuthUserListRequest ur = ETCDSERVERPB__AUTH_USER_LIST_REQUEST__INIT;
    Etcdserverpb__AuthRoleListRequest rr = ETCDSERVERPB__AUTH_ROLE_LIST_REQUEST__INIT;
    char path[64];
    snprintf(path, sizeof path, "/etcdserverpb.Auth/%s", what);
    if (rpc(g, path, users ? &ur.base : &rr.base,
            users ? &etcdserverpb__auth_user_list_response__descriptor
                  : &etcdserverpb__auth_role_list_response__descriptor,
            resp, st) != 0)
        return -1;
    *names = users ? ((Etcdserverpb__AuthUserListResponse *)*resp)->users
                   : ((Etcdserverpb__AuthRoleListResponse *)*resp)->roles;
    *n = users ? ((Etcdserverpb__AuthUserListResponse *)*resp)->n_users
               : ((Etcdserverpb__AuthRoleListResponse *)*resp)->n_roles;
    return 0;
}

static int copy_users(mig_t *g, gc_status_t *st) {
    ProtobufCMessage *lresp;
    char **names;
    size_t n;
    if (list_names(g, "UserList", &lresp, &names, &n, st) != 0) return -1;
    etcd_import_user_t *us = calloc(n ? n : 1, sizeof *us);
    ProtobufCMessage **got = calloc(n ? n : 1, sizeof *got);
    if (!us || !got) abort();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Etcdserverpb__AuthUserGetRequest req = ETCDSERVERPB__AUTH_USER_GET_REQUEST__INIT;
        req.name = names[i];
        rc = rpc(g, "/etcdserverpb.Auth/UserGet", &req.base,
                 &etcdserverpb__auth_user_get_response__descriptor, &got[i], st);
        if (rc != 0) break;
        Etcdserverpb__AuthUserGetResponse *u = (Etcdserverpb__AuthUserGetResponse *)got[i];
        us[i] = (etcd_import_user_t){names[i], u->roles, u->n_roles};
    }
    size_t nopw = 0;
    if (rc == 0 && etcd_import_users(g->m, us, n, &nopw) != MVCC_OK) rc = -2;
    if (rc == 0) {
        g->res->users = n;
        g->res->users_without_password = nopw;
    }
    for (size_t i = 0; i < n; i++)
        if (got[i]) protobuf_c_message_free_unpacked(got[i], NULL);
    free(got);
    free(us);
    protobuf_c_message_free_unpacked(lresp, NULL);
    return rc;
}

static int copy_roles(mig_t *g, gc_status_t *st) {
    ProtobufCMessage *lresp;
    char **names;
    size_t n;
    if (list_names(g, "RoleList", &lresp, &names, &n, st) != 0) return -1;
    Authpb__Role *rs = calloc(n ? n : 1, sizeof *rs);
    const Authpb__Role **rp = calloc(n ? n : 1, sizeof *rp);
    ProtobufCMessage **got = calloc(n ? n : 1, sizeof *got);
    if (!rs || !rp || !got) abort();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Etcdserverpb__AuthRoleGetRequest req = ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
        req.role = names[i];
        rc = rpc(g, "/etcdserverpb.Auth/RoleGet", &req.base,
                 &etcdserverpb__auth_role_get_response__descriptor, &got[i], st);
        if (rc != 0) break;
        Etcdserverpb__AuthRoleGetResponse *r = (Etcdserverpb__AuthRoleGetResponse *)got[i];
        authpb__role__init(&rs[i]);
        rs[i].name = (ProtobufCBinaryData){strlen(names[i]), (uint8_t *)names[i]};
        rs[i].keypermission = r->perm;
        rs[i].n_keypermission = r->n_perm;
        rp[i] = &rs[i];
    }
    if (rc == 0 && etcd_import_roles(g->m, rp, n) != MVCC_OK) rc = -2;
    if (rc == 0) g->res->roles = n;
    for (size_t i = 0; i < n; i++)
        if (got[i]) protobuf_c_message_free_unpacked(got[i], NULL);
    free(got);
    free(rp);
    free(rs);
    protobuf_c_message_free_unpacked(lresp, NULL);
    return rc;
}

/* Leases, users, roles from the source; then the revision. 0 or -1. */
static int finish(mig_t *g) {
    gc_status_t st = {0};
    int rc = copy_leases(g, &st);
    if (rc == -2) return err_text(g->err, g->errlen, "%s", st.message);
    if (rc != 0) return err_text(g->err, g->errlen, "reading the source's leases: %s", st.message);
    rc = copy_roles(g, &st);
    if (rc == 0) rc = copy_users(g, &st);
    if (rc == -2) return err_text(g->err, g->errlen, "writing the users/roles to the store failed");
    g->res->auth_copied = rc == 0;
    if (rc != 0)
        note(g,
             "warning: the source refused the user/role reads (%s): the snapshot's users and roles are kept "
             "(with auth enabled, pass --user root:PASSWORD)",
             st.message);
    if (mvcc_import_finish(g->m, g->cut_rev) != MVCC_OK)
        return err_text(g->err, g->errlen, "syncing the store failed");
    g->applied = mvcc_revision(g->m);
    return 0;
}

/* ---- the follow loop ---- */

/* One step: wait for a response (TICK_MS), handle the cut-over. 1 = the
 * cut-over revision is applied, 0 = go on, -1 = fatal. */
static int step(mig_t *g) {
    gc_status_t st = {0};
    if (!g->ws) {
        if (connect_source(g, &st) != 0) {
            if (signals >= 2) return err_text(g->err, g->errlen, "the source is unreachable: %s", st.message);
            note(g, "the source is unreachable (%s): retrying", st.message);
            usleep(RETRY_MS * 1000);
            return 0;
        }
        g->res->reconnects++;
        request_progress(g);
    }
    uint8_t *msg = NULL;
    size_t len = 0;
    int r = gc_stream_recv(g->ws, &msg, &len, &st, TICK_MS);
    if (r == 1) {
        int rc = on_response(g, msg, len);
        free(msg);
        if (rc != 0) return -1;
    } else if (r == 0 || st.code != GC_DEADLINE_EXCEEDED) {
        note(g, "the watch stopped (%s): reconnecting from revision %lld", r == 0 ? st.message : st.message,
             (long long)g->applied + 1);
        drop_source(g);
        return 0;
    }
    if (!g->cut_rev && cutover_due(g)) {
        if (source_revision(g, &g->cut_rev, &st) != 0) {
            g->cut_rev = 0;
            note(g, "cut-over: cannot read the source's revision (%s): reconnecting", st.message);
            drop_source(g);
            if (signals >= 2) return err_text(g->err, g->errlen, "the source is unreachable: %s", st.message);
            return 0;
        }
        if (g->cut_rev > g->source_rev) g->source_rev = g->cut_rev;
        note(g, "cut-over at the source's revision %lld (applied %lld)", (long long)g->cut_rev,
             (long long)g->applied);
    }
    if (g->cut_rev && g->applied >= g->cut_rev) return 1;
    if (now_ms() - g->last_progress_req_ms >= PROGRESS_REQ_MS) request_progress(g);
    print_progress(g, 0);
    return 0;
}

static uint64_t live_keys(mvcc_t *m) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t;
    int64_t count = 0;
    if (mvcc_txn_begin_read(m, &a, &t) == MVCC_OK) {
        static const uint8_t zero[1] = {0};
        mvcc_range_t r = mvcc_range_make(zero, 1, zero, 1);
        mvcc_kv_list_t l = {0};
        mvcc_txn_range(t, &r, 0, 0, 1, &l, &count);
        mvcc_txn_end(t);
    }
    kv_arena_free(&a);
    return (uint64_t)count;
}

static int follow(mig_t *g) {
    gc_status_t st = {0};
    if (connect_source(g, &st) != 0) return err_text(g->err, g->errlen, "%s", st.message);
    request_progress(g);
    g->start_ms = g->last_print_ms = now_ms();
    for (;;) {
        int r = step(g);
        if (r < 0) return -1;
        if (r == 1) break;
    }
    if (g->skipped)
        note(g,
             "warning: %llu events after the cut-over revision %lld were NOT carried (stop the writers "
             "before the cut-over)",
             (unsigned long long)g->skipped, (long long)g->cut_rev);
    return finish(g);
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The snapshot, restored into the data dir. */
static int snapshot(mig_t *g, const char *file) {
    gc_status_t st = {0};
    gc_conn_t *conn = g->o->dial(g->o->dial_arg, &st);
    if (!conn) return err_text(g->err, g->errlen, "%s", st.message);
    uint64_t bytes = 0;
    int rc = ctl_snapshot_save(conn, file, 0, &bytes, g->err, g->errlen);
    gc_close(conn);
    if (rc != 0) return -1;
    note(g, "snapshot: %llu bytes received", (unsigned long long)bytes);
    ctl_restore_opts_t ro = g->o->restore;
    ro.file = file;
    ro.skip_hash_check = 0;
    rc = ctl_snapshot_restore(&ro, &g->res->restore, g->err, g->errlen);
    unlink(file);
    if (rc != 0) return -1;
    note(g, "restored revision %lld (compact revision %lld, %llu keys, %llu leases, %llu users, %llu roles)",
         (long long)g->res->restore.revision, (long long)g->res->restore.compact_rev,
         (unsigned long long)g->res->restore.live_keys, (unsigned long long)g->res->restore.leases,
         (unsigned long long)g->res->restore.users, (unsigned long long)g->res->restore.roles);
    return 0;
}

/* Every write of the store on the disk (the follow's writes between
 * syncs included). */
static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = syncfs(fd);
    close(fd);
    return rc;
}

int ctl_migrate(const ctl_migrate_opts_t *o, ctl_migrate_result_t *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    mig_t g = {.o = o, .res = res, .err = err, .errlen = errlen, .tty = isatty(2)};
    install_signals();
    char file[4096], kv[4096];
    if (snprintf(file, sizeof file, "%s.snapshot", o->restore.data_dir) >= (int)sizeof file)
        return err_text(err, errlen, "--data-dir too long");
    snprintf(kv, sizeof kv, "%s/member/kv", o->restore.data_dir);
    if (access(o->restore.data_dir, F_OK) == 0 && rmdir(o->restore.data_dir) != 0)
        return err_text(err, errlen, "data-dir \"%s\" exists", o->restore.data_dir);
    if (snapshot(&g, file) != 0) return -1;
    char merr[512];
    if (mvcc_open(kv, NULL, &g.m, merr, sizeof merr) != 0) return err_text(err, errlen, "%s", merr);
    g.applied = mvcc_revision(g.m);
    g.source_rev = g.applied;
    int rc = follow(&g);
    drop_source(&g);
    print_progress(&g, 1);
    if (g.line_open) fputc('\n', stderr);
    res->final_rev = mvcc_revision(g.m);
    res->keys = live_keys(g.m);
    mvcc_close(g.m);
    if (rc == 0 && sync_dir(kv) != 0) rc = err_text(err, errlen, "sync %s: %s", kv, strerror(errno));
    if (rc != 0) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (the data dir %s is incomplete: remove it)", o->restore.data_dir);
    }
    return rc;
}
