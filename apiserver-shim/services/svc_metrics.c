/*
 * svc_metrics.c: what etcd 3.4 serves on --listen-metrics-urls, over the
 * HTTP/1.1 server of transport/http1.h:
 *   GET /health   {"health":"true"} (200) or {"health":"false"} (503, Go's
 *                 http.Error body and headers), as etcd 3.4's etcdhttp
 *                 checkHealth: false with an alarm not named in ?exclude=,
 *                 or without a leader, or when the member cannot serve
 *                 (WAL or apply failure); alarms are the replicated
 *                 ones (svc_maintenance_alarms). 3.4 has no ?serializable (it is
 *                 ignored) and no "reason" field. Non-GET: 405.
 *   GET /metrics  Prometheus text format 0.0.4: only series whose value
 *                 kshimd knows truthfully, under etcd 3.4's names, types,
 *                 labels and HELP, families and series in the Go client's
 *                 sort order. The numbers come from the layers' own stats
 *                 (raft_node_status / _disk_stats, mvcc_stats,
 *                 grpc_server_method_stats, svc_watch_stats, peer_get_stats),
 *                 read at scrape time on the loop; versions are the ones
 *                 Status reports (version.h).
 *   anything else 404 "404 page not found" (etcd 3.4 serves /version on the
 *                 client port only).
 * svc_metrics_serve is the same /health and /metrics for the client port
 * (svc_gateway.c).
 * Owns the http1 server and the two health counters.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "grpc.h"
#include "http1.h"
#include "kv_alarm.h"
#include "log.h"
#include "mvcc.h"
#include "node.h"
#include "peer.h"
#include "server_internal.h"
#include "services.h"
#include "version.h"
#include "watch_hub.h"

typedef struct svc_metrics {
    http1_server_t *http;
    uint64_t health_success, health_failures;
} svc_metrics_t;

/* A growing text buffer; on allocation failure it keeps failed set. */
typedef struct text {
    char *p;
    size_t len, cap;
    int failed;
} text_t;

static void text_printf(text_t *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0 || t->failed) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap - t->len <= (size_t)n) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}


/* ---- /metrics ---- */

/* A sample value as Go's strconv 'g' -1 would print a small one: integers
 * plainly, other values with the fewest digits that read back the same. */
static void format_value(char *out, size_t len, double v) {
    snprintf(out, len, "%.15g", v);
    if (strtod(out, NULL) != v) snprintf(out, len, "%.17g", v);
}

static void family(text_t *t, const char *name, const char *type, const char *help) {
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(text_t *t, const char *name, const char *labels, double value) {
    char v[32];
    format_value(v, sizeof v, value);
    text_printf(t, "%s%s %s\n", name, labels ? labels : "", v);
}

static void metric(text_t *t, const char *name, const char *type, const char *help, const char *labels,
                   double value) {
    family(t, name, type, help);
    sample(t, name, labels, value);
}

/* A histogram with etcd's disk buckets (latency_hist.h), in seconds. */
static void histogram(text_t *t, const char *name, const char *help, const lat_hist_snapshot_t *h) {
    family(t, name, "histogram", help);
    for (int i = 0; i < LAT_HIST_BUCKETS; i++) {
        char le[32];
        format_value(le, sizeof le, lat_hist_bound_s(i));
        text_printf(t, "%s_bucket{le=\"%s\"} %llu\n", name, le, (unsigned long long)h->bucket[i]);
    }
    text_printf(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    sample(t, name, "_sum", (double)h->sum_ns / 1e9); /* name + "_sum" */
    text_printf(t, "%s_count %llu\n", name, (unsigned long long)h->count);
}

/* ---- gRPC (go-grpc-prometheus's names; every registered method shows,
 * zeros included, as etcd registers them all at start) ---- */

static const char *const code_names[GRPC_STATUS_COUNT] = {
    "OK",       "Canceled",        "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",   "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",      "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated",
};

typedef struct rpc_row {
    char labels[192]; /* grpc_method="..",grpc_service="..",grpc_type=".." (Go's label order) */
    grpc_method_stats_t st;
} rpc_row_t;

static int code_cmp(const void *a, const void *b) {
    return strcmp(code_names[*(const int *)a], code_names[*(const int *)b]);
}

static int row_cmp(const void *a, const void *b) {
    return strcmp(((const rpc_row_t *)a)->labels, ((const rpc_row_t *)b)->labels);
}

static const char *rpc_type(const grpc_method_t *m) {
    if (m->client_streaming) return m->server_streaming ? "bidi_stream" : "client_stream";
    return m->server_streaming ? "server_stream" : "unary";
}

/* The methods' rows sorted as the Go client sorts series (by method, then
 * service); malloc'd, NULL with *n = 0 when there are none or no memory. */
static rpc_row_t *rpc_rows(server_t *s, size_t *n) {
    size_t count = s->grpc ? grpc_server_method_count(s->grpc) : 0;
    rpc_row_t *rows = count ? calloc(count, sizeof *rows) : NULL;
    *n = 0;
    if (!rows) return NULL;
    for (size_t i = 0; i < count; i++) {
        const grpc_method_t *m = grpc_server_method_stats(s->grpc, i, &rows[*n].st);
        const char *slash = m ? strrchr(m->path, '/') : NULL;
        if (!slash || slash == m->path) continue;
        snprintf(rows[*n].labels, sizeof rows[*n].labels,
                 "grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"", slash + 1,
                 (int)(slash - m->path - 1), m->path + 1, rpc_type(m));
        (*n)++;
    }
    qsort(rows, *n, sizeof *rows, row_cmp);
    return rows;
}

enum { RPC_STARTED, RPC_RECEIVED, RPC_SENT };

static void rpc_counter(text_t *t, const rpc_row_t *rows, size_t n, const char *name, const char *help,
                        int which) {
    family(t, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = which == RPC_STARTED    ? rows[i].st.started
                     : which == RPC_RECEIVED ? rows[i].st.msg_received
                                             : rows[i].st.msg_sent;
        text_printf(t, "%s{%s} %llu\n", name, rows[i].labels, (unsigned long long)v);
    }
}

static void rpc_handled(text_t *t, const rpc_row_t *rows, size_t n) {
    const char *name = "grpc_server_handled_total";
    family(t, name, "counter",
           "Total number of RPCs completed on the server, regardless of success or failure.");
    int codes[GRPC_STATUS_COUNT];
    for (int c = 0; c < GRPC_STATUS_COUNT; c++) codes[c] = c;
    qsort(codes, GRPC_STATUS_COUNT, sizeof codes[0], code_cmp);
    for (int c = 0; c < GRPC_STATUS_COUNT; c++)
        for (size_t i = 0; i < n; i++)
            text_printf(t, "%s{grpc_code=\"%s\",%s} %llu\n", name, code_names[codes[c]], rows[i].labels,
                        (unsigned long long)rows[i].st.handled[codes[c]]);
}

static void grpc_metrics(server_t *s, text_t *t) {
    size_t n;
    rpc_row_t *rows = rpc_rows(s, &n);
    rpc_handled(t, rows, n);
    rpc_counter(t, rows, n, "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.", RPC_RECEIVED);
    rpc_counter(t, rows, n, "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.", RPC_SENT);
    rpc_counter(t, rows, n, "grpc_server_started_total", "Total number of RPCs started on the server.",
                RPC_STARTED);
    free(rows);
}

/* ---- peers (etcd's rafthttp names; member ids in hex as etcd prints them) ---- */

typedef struct peer_row {
    char id[24];
    peer_stats_t st;
} peer_row_t;

static int peer_cmp(const void *a, const void *b) {
    return strcmp(((const peer_row_t *)a)->id, ((const peer_row_t *)b)->id);
}

static void peer_family(text_t *t, const peer_row_t *rows, size_t n, const char *name, const char *help,
                        const char *label, int which) {
    family(t, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = which == 0   ? rows[i].st.received_bytes
                     : which == 1 ? rows[i].st.sent_bytes
                                  : rows[i].st.dropped;
        text_printf(t, "%s{%s=\"%s\"} %llu\n", name, label, rows[i].id, (unsigned long long)v);
    }
}

/* Nothing without peers, as etcd shows these only once a peer is known. */
static void peer_metrics(server_t *s, text_t *t) {
    if (!s->peer) return;
    uint64_t ids[RAFT_MAX_MEMBERS];
    size_t n = peer_list_ids(s->peer, ids, RAFT_MAX_MEMBERS);
    if (n > RAFT_MAX_MEMBERS) n = RAFT_MAX_MEMBERS;
    peer_row_t rows[RAFT_MAX_MEMBERS];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (peer_get_stats(s->peer, ids[i], &rows[k].st) != PEER_OK) continue;
        snprintf(rows[k].id, sizeof rows[k].id, "%llx", (unsigned long long)ids[i]);
        k++;
    }
    if (k == 0) return;
    qsort(rows, k, sizeof rows[0], peer_cmp);
    peer_family(t, rows, k, "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.", "From", 0);
    peer_family(t, rows, k, "etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.",
                "To", 1);
    peer_family(t, rows, k, "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.", "To", 2);
}

/* ---- the member, the store, the disk ---- */

static void store_metrics(server_t *s, text_t *t, const watch_hub_stats_t *ws, int have_ws) {
    mvcc_stats_t ms;
    mvcc_stats(s->mvcc, &ms);
    uint64_t db = mvcc_db_size(s->mvcc);
    metric(t, "etcd_debugging_mvcc_compact_revision", "gauge",
           "The revision of the last compaction in store.", NULL, (double)mvcc_compact_revision(s->mvcc));
    metric(t, "etcd_debugging_mvcc_current_revision", "gauge", "The current revision of store.", NULL,
           (double)mvcc_revision(s->mvcc));
    metric(t, "etcd_debugging_mvcc_db_total_size_in_bytes", "gauge",
           "Total size of the underlying database physically allocated in bytes.", NULL, (double)db);
    metric(t, "etcd_debugging_mvcc_delete_total", "counter", "Total number of deletes seen by this member.",
           NULL, (double)ms.deletes);
    metric(t, "etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.", NULL, (double)ms.keys);
    metric(t, "etcd_debugging_mvcc_put_total", "counter", "Total number of puts seen by this member.", NULL,
           (double)ms.puts);
    metric(t, "etcd_debugging_mvcc_range_total", "counter", "Total number of ranges seen by this member.",
           NULL, (double)ms.ranges);
    if (have_ws)
        metric(t, "etcd_debugging_mvcc_slow_watcher_total", "gauge",
               "Total number of unsynced slow watchers.", NULL, (double)ws->unsynced);
    metric(t, "etcd_debugging_mvcc_total_put_size_in_bytes", "gauge",
           "The total size of put kv pairs seen by this member.", NULL, (double)ms.put_bytes);
    metric(t, "etcd_debugging_mvcc_txn_total", "counter", "Total number of txns seen by this member.", NULL,
           (double)ms.txns);
    if (have_ws) {
        metric(t, "etcd_debugging_mvcc_watch_stream_total", "gauge", "Total number of watch streams.", NULL,
               (double)ws->streams);
        metric(t, "etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.", NULL,
               (double)ws->watchers);
    }
    histogram(t, "etcd_disk_backend_commit_duration_seconds",
              "The latency distributions of commit called by backend.", &ms.commit);
    wal_disk_stats_t wal;
    raft_node_disk_stats(s->raft, &wal);
    histogram(t, "etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.",
              &wal.fsync);
    metric(t, "etcd_disk_wal_write_bytes_total", "gauge", "Total number of bytes written in WAL.", NULL,
           (double)wal.write_bytes);
    metric(t, "etcd_mvcc_db_total_size_in_bytes", "gauge",
           "Total size of the underlying database physically allocated in bytes.", NULL, (double)db);
    /* LevelDB has no free pages to tell apart: its files are what it uses */
    metric(t, "etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
           "Total size of the underlying database logically in use in bytes.", NULL, (double)db);
    metric(t, "etcd_mvcc_delete_total", "counter", "Total number of deletes seen by this member.", NULL,
           (double)ms.deletes);
    metric(t, "etcd_mvcc_put_total", "counter", "Total number of puts seen by this member.", NULL,
           (double)ms.puts);
    metric(t, "etcd_mvcc_range_total", "counter", "Total number of ranges seen by this member.", NULL,
           (double)ms.ranges);
    metric(t, "etcd_mvcc_txn_total", "counter", "Total number of txns seen by this member.", NULL,
           (double)ms.txns);
}

static void client_bytes(server_t *s, text_t *t) {
    uint64_t in = 0, out = 0;
    size_t n = s->grpc ? grpc_server_method_count(s->grpc) : 0;
    for (size_t i = 0; i < n; i++) {
        grpc_method_stats_t st;
        if (!grpc_server_method_stats(s->grpc, i, &st)) continue;
        in += st.bytes_received;
        out += st.bytes_sent;
    }
    metric(t, "etcd_network_client_grpc_received_bytes_total", "counter",
           "The total number of bytes received from grpc clients.", NULL, (double)in);
    metric(t, "etcd_network_client_grpc_sent_bytes_total", "counter",
           "The total number of bytes sent to grpc clients.", NULL, (double)out);
}

static void member_metrics(server_t *s, text_t *t) {
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    char labels[128];
    metric(t, "etcd_server_has_leader", "gauge", "Whether or not a leader exists. 1 is existence, 0 is not.",
           NULL, st.leader != 0);
    metric(t, "etcd_server_health_failures", "counter", "The total number of failed health checks", NULL,
           (double)s->metrics->health_failures);
    metric(t, "etcd_server_health_success", "counter", "The total number of successful health checks", NULL,
           (double)s->metrics->health_success);
    snprintf(labels, sizeof labels, "{server_id=\"%llx\"}", (unsigned long long)s->member_id);
    metric(t, "etcd_server_id", "gauge",
           "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", labels, 1);
    metric(t, "etcd_server_is_leader", "gauge",
           "Whether or not this member is a leader. 1 if is, 0 otherwise.", NULL,
           st.leader != 0 && st.leader == s->member_id);
    metric(t, "etcd_server_is_learner", "gauge",
           "Whether or not this member is a learner. 1 if is, 0 otherwise.", NULL, st.is_learner != 0);
    metric(t, "etcd_server_leader_changes_seen_total", "counter", "The number of leader changes seen.", NULL,
           (double)st.leader_changes);
    metric(t, "etcd_server_proposals_applied_total", "gauge",
           "The total number of consensus proposals applied.", NULL, (double)st.applied_index);
    metric(t, "etcd_server_proposals_committed_total", "gauge",
           "The total number of consensus proposals committed.", NULL, (double)st.commit_index);
    metric(t, "etcd_server_proposals_failed_total", "counter", "The total number of failed proposals seen.",
           NULL, (double)s->proposals_failed);
    metric(t, "etcd_server_proposals_pending", "gauge", "The current number of pending proposals to commit.",
           NULL, (double)st.inflight);
    metric(t, "etcd_server_quota_backend_bytes", "gauge", "Current backend storage quota size in bytes.",
           NULL, (double)mvcc_options(s->mvcc)->quota_backend_bytes);
    snprintf(labels, sizeof labels, "{server_version=\"%s\"}", KSHIM_ETCD_VERSION);
    metric(t, "etcd_server_version", "gauge",
           "Which version is running. 1 for 'server_version' label with current version.", labels, 1);
}

/* Every family in name order, as the Go client writes them. */
static void server_metrics(server_t *s, text_t *t) {
    char labels[128];
    snprintf(labels, sizeof labels, "{cluster_version=\"%s\"}", KSHIM_ETCD_API_VERSION);
    metric(t, "etcd_cluster_version", "gauge",
           "Which version is running. 1 for 'cluster_version' label with current cluster version", labels, 1);
    watch_hub_stats_t ws;
    int have_ws = svc_watch_stats(s, &ws) == 0;
    store_metrics(s, t, &ws, have_ws);
    client_bytes(s, t);
    peer_metrics(s, t);
    member_metrics(s, t);
    grpc_metrics(s, t);
}

/* ---- /health ---- */

/* Is alarm `name` listed in the query's exclude= values (etcd 3.4's
 * getExcludedAlarms: every exclude=<NAME>, exact names)? */
static int alarm_excluded(const char *query, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 8 + nl && strncmp(p, "exclude=", 8) == 0 && strncmp(p + 8, name, nl) == 0) return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* 1 if the member is healthy as etcd 3.4's checkHealth sees it: no active
 * alarm other than those in ?exclude=, a leader, and a member that can
 * apply. query may be NULL (no exclusions). */
static int member_healthy(server_t *s, const char *query) {
    kv_alarm_t alarms[KV_ALARMS_MAX];
    size_t n = svc_maintenance_alarms(s, alarms, KV_ALARMS_MAX);
    for (size_t i = 0; i < n && i < KV_ALARMS_MAX; i++) {
        const char *name = alarms[i].type == ETCDSERVERPB__ALARM_TYPE__NOSPACE   ? "NOSPACE"
                           : alarms[i].type == ETCDSERVERPB__ALARM_TYPE__CORRUPT ? "CORRUPT"
                                                                                 : "NONE";
        if (!alarm_excluded(query, name)) return 0;
    }
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    if (st.leader == 0 || st.failed) return 0;
    if (s->fatal || atomic_load(&s->apply_failed)) return 0;
    return 1;
}

static void serve_health(server_t *s, const http1_request_t *req, http1_reply_t *r) {
    if (strcmp(req->method, "GET") != 0) {
        r->status = 405;
        r->content_type = "text/plain; charset=utf-8";
        r->extra_header = "Allow: GET\r\n";
        r->nosniff = 1;
        r->body = strdup("Method Not Allowed\n");
        r->body_len = r->body ? strlen(r->body) : 0;
        return;
    }
    int ok = member_healthy(s, req->query);
    if (ok)
        s->metrics->health_success++;
    else
        s->metrics->health_failures++;
    r->status = ok ? 200 : 503;
    r->content_type = "text/plain; charset=utf-8";
    r->nosniff = !ok; /* http.Error */
    r->body = strdup(ok ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}\n");
    r->body_len = r->body ? strlen(r->body) : 0;
}


static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* /proc/self/stat: utime, stime (ticks), starttime (ticks since boot),
 * vsize (bytes), rss (pages). */
static int read_proc_stat(double *cpu_s, double *start_s, double *vsize, double *rss) {
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long utime, stime, start, vs;
    long long rs;
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
               &utime, &stime, &start, &vs, &rs) != 5)
        return -1;
    double tick = (double)sysconf(_SC_CLK_TCK);
    *cpu_s = (double)(utime + stime) / tick;
    *vsize = (double)vs;
    *rss = (double)rs * (double)sysconf(_SC_PAGESIZE);
    double btime = 0;
    f = fopen("/proc/stat", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %lf", &btime) == 1) break;
        fclose(f);
    }
    *start_s = btime + (double)start / tick;
    return 0;
}

/* etcd's os_fd_* and the Go client's process_*, in name order. */
static void process_metrics(text_t *t) {
    int fds = count_open_fds();
    struct rlimit nofile, as;
    int have_nofile = getrlimit(RLIMIT_NOFILE, &nofile) == 0;
    if (have_nofile)
        metric(t, "os_fd_limit", "gauge", "The file descriptor limit.", NULL, (double)nofile.rlim_cur);
    if (fds >= 0) metric(t, "os_fd_used", "gauge", "The number of used file descriptors.", NULL, fds);
    double cpu, start, vsize, rss;
    int have_stat = read_proc_stat(&cpu, &start, &vsize, &rss) == 0;
    if (have_stat)
        metric(t, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
               NULL, cpu);
    if (have_nofile)
        metric(t, "process_max_fds", "gauge", "Maximum number of open file descriptors.", NULL,
               (double)nofile.rlim_cur);
    if (fds >= 0) metric(t, "process_open_fds", "gauge", "Number of open file descriptors.", NULL, fds);
    if (!have_stat) return;
    metric(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", NULL, rss);
    metric(t, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
           NULL, start);
    metric(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", NULL, vsize);
    if (getrlimit(RLIMIT_AS, &as) == 0)
        metric(t, "process_virtual_memory_max_bytes", "gauge",
               "Maximum amount of virtual memory available in bytes.", NULL, (double)as.rlim_cur);
}

static void serve_metrics(server_t *s, http1_reply_t *r) {
    text_t t = {0};
    server_metrics(s, &t);
    process_metrics(&t);
    if (t.failed) {
        free(t.p);
        r->status = 503;
        return;
    }
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    r->body = t.p;
    r->body_len = t.len;
}

int svc_metrics_serve(server_t *s, const http1_request_t *req, http1_reply_t *r) {
    if (strcmp(req->path, "/health") == 0) {
        serve_health(s, req, r);
        return 1;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        serve_metrics(s, r);
        return 1;
    }
    return 0;
}

static void serve(void *ctx, const http1_request_t *req, http1_reply_t *r) {
    server_t *s = ctx;
    if (svc_metrics_serve(s, req, r)) return;
    r->status = 404;
    r->content_type = "text/plain; charset=utf-8";
    r->nosniff = 1;
    r->body = strdup("404 page not found\n");
    r->body_len = r->body ? strlen(r->body) : 0;
}

int svc_metrics_start(server_t *s) {
    s->metrics = calloc(1, sizeof *s->metrics); /* the counters serve the client port too */
    if (!s->metrics) {
        log_error("out of memory");
        return -1;
    }
    if (s->cfg->n_listen_metrics_urls == 0) return 0;
    if (!(s->metrics->http = http1_server_new(s->loop, serve, s))) {
        log_error("out of memory");
        return -1;
    }
    for (size_t i = 0; i < s->cfg->n_listen_metrics_urls; i++) {
        char err[256];
        const char *url = s->cfg->listen_metrics_urls[i];
        if (http1_server_listen(s->metrics->http, url, err, sizeof err) != 0) {
            log_error("cannot listen on metrics URL %s: %s", url, err);
            return -1;
        }
        log_info("serving /health and /metrics on %s", url);
    }
    return 0;
}

void svc_metrics_stop(server_t *s) {
    if (!s->metrics) return;
    http1_server_free(s->metrics->http);
    free(s->metrics);
    s->metrics = NULL;
}
