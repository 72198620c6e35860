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
 *                 kshimd knows truthfully, under etcd 3.4's names and types.
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

#include "http1.h"
#include "kv_alarm.h"
#include "log.h"
#include "mvcc.h"
#include "node.h"
#include "server_internal.h"
#include "services.h"
#include "version.h"

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

static void metric(text_t *t, const char *name, const char *type, const char *help, const char *labels,
                   double value) {
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name, help, name, type, name,
                labels ? labels : "", value);
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

/* ---- /metrics ---- */

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

static void process_metrics(text_t *t) {
    double cpu, start, vsize, rss;
    if (read_proc_stat(&cpu, &start, &vsize, &rss) == 0) {
        metric(t, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
               NULL, cpu);
        metric(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", NULL, rss);
        metric(t, "process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.", NULL, start);
        metric(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", NULL, vsize);
    }
    int fds = count_open_fds();
    if (fds >= 0) metric(t, "process_open_fds", "gauge", "Number of open file descriptors.", NULL, fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metric(t, "process_max_fds", "gauge", "Maximum number of open file descriptors.", NULL,
               (double)rl.rlim_cur);
}

static void server_metrics(server_t *s, text_t *t) {
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    char labels[128];
    snprintf(labels, sizeof labels, "{cluster_version=\"%s\"}", KSHIM_ETCD_API_VERSION);
    metric(t, "etcd_cluster_version", "gauge",
           "Which version is running. 1 for 'cluster_version' label with current cluster version", labels, 1);
    uint64_t db = mvcc_db_size(s->mvcc);
    metric(t, "etcd_debugging_mvcc_current_revision", "gauge", "The current revision of store.", NULL,
           (double)mvcc_revision(s->mvcc));
    metric(t, "etcd_debugging_mvcc_db_total_size_in_bytes", "gauge",
           "Total size of the underlying database physically allocated in bytes.", NULL, (double)db);
    metric(t, "etcd_mvcc_db_total_size_in_bytes", "gauge",
           "Total size of the underlying database physically allocated in bytes.", NULL, (double)db);
    metric(t, "etcd_server_quota_backend_bytes", "gauge", "Current backend storage quota size in bytes.",
           NULL, (double)mvcc_options(s->mvcc)->quota_backend_bytes);
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
    snprintf(labels, sizeof labels, "{server_version=\"%s\"}", KSHIM_ETCD_VERSION);
    metric(t, "etcd_server_version", "gauge",
           "Which version is running. 1 for 'server_version' label with current version.", labels, 1);
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
