/*
 * kshimd.c: the kshim daemon's entry point.
 *
 * Parses etcd's command line and ETCD_* environment variables with etcd's
 * meaning (so a kubeadm static pod manifest or etcd's test harness can start
 * kshimd in etcd's place), then hands the configuration to server_run().
 * Flags kshimd knows but does not act on yet are accepted and logged, never
 * rejected: refusing them would break drop-in use. Unknown flags are errors,
 * as in etcd.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_file.h"
#include "etcd_datadir.h"
#include "log.h"
#include "server.h"
#include "version.h"

typedef enum flag_kind {
    FLAG_STRING,      /* const char ** */
    FLAG_URLS,        /* comma-separated list into a URL array */
    FLAG_BOOL,        /* int * */
    FLAG_SIZE,        /* size_t * */
    FLAG_U64,         /* uint64_t * */
    FLAG_UINT,        /* unsigned * */
    FLAG_DURATION_MS, /* Go duration ("10m", "500ms", "1h30m") into uint64_t ms */
    FLAG_IGNORED,     /* accepted with a value, not acted on yet */
    FLAG_IGNORED_BOOL,
} flag_kind_t;

typedef struct flag_def {
    const char *name;
    flag_kind_t kind;
    void *target;
    size_t *count; /* FLAG_URLS: number of entries */
} flag_def_t;

static server_config_t cfg;
static const char *log_level = "info";
static const char *logger = "zap";
static const char *log_outputs = NULL;
static const char *log_output = NULL; /* etcd 3.4's deprecated --log-output */
static int log_debug_flag = 0;
/* Flags accepted and not acted on, logged at debug level once the logger is
 * set up (they are parsed before it is). */
static struct { const char *name, *value; } ignored_flags[64];
static size_t n_ignored_flags;
static const char *config_file = NULL;
/* With --config-file, the flags and env settings it overrides: kept (not
 * freed), they own the copies of their URLs. */
static server_config_t ignored_cfg;

static flag_def_t flags[] = {
    {"name", FLAG_STRING, &cfg.name, NULL},
    {"config-file", FLAG_STRING, &config_file, NULL},
    {"data-dir", FLAG_STRING, &cfg.data_dir, NULL},
    {"wal-dir", FLAG_STRING, &cfg.wal_dir, NULL},
    {"listen-client-urls", FLAG_URLS, cfg.listen_client_urls, &cfg.n_listen_client_urls},
    {"advertise-client-urls", FLAG_URLS, cfg.advertise_client_urls, &cfg.n_advertise_client_urls},
    {"listen-peer-urls", FLAG_URLS, cfg.listen_peer_urls, &cfg.n_listen_peer_urls},
    {"initial-advertise-peer-urls", FLAG_URLS, cfg.initial_advertise_peer_urls,
     &cfg.n_initial_advertise_peer_urls},
    {"listen-metrics-urls", FLAG_URLS, cfg.listen_metrics_urls, &cfg.n_listen_metrics_urls},
    {"initial-cluster", FLAG_STRING, &cfg.initial_cluster, NULL},
    {"initial-cluster-state", FLAG_STRING, &cfg.initial_cluster_state, NULL},
    {"initial-cluster-token", FLAG_STRING, &cfg.initial_cluster_token, NULL},
    {"cert-file", FLAG_STRING, &cfg.cert_file, NULL},
    {"key-file", FLAG_STRING, &cfg.key_file, NULL},
    {"trusted-ca-file", FLAG_STRING, &cfg.trusted_ca_file, NULL},
    {"client-cert-auth", FLAG_BOOL, &cfg.client_cert_auth, NULL},
    {"client-crl-file", FLAG_STRING, &cfg.client_crl_file, NULL},
    {"auto-tls", FLAG_BOOL, &cfg.auto_tls, NULL},
    {"peer-cert-file", FLAG_STRING, &cfg.peer_cert_file, NULL},
    {"peer-key-file", FLAG_STRING, &cfg.peer_key_file, NULL},
    {"peer-trusted-ca-file", FLAG_STRING, &cfg.peer_trusted_ca_file, NULL},
    {"peer-client-cert-auth", FLAG_BOOL, &cfg.peer_client_cert_auth, NULL},
    {"peer-crl-file", FLAG_STRING, &cfg.peer_crl_file, NULL},
    {"peer-cert-allowed-cn", FLAG_STRING, &cfg.peer_cert_allowed_cn, NULL},
    {"peer-cert-allowed-hostname", FLAG_STRING, &cfg.peer_cert_allowed_host, NULL},
    {"peer-auto-tls", FLAG_BOOL, &cfg.peer_auto_tls, NULL},
    {"strict-reconfig-check", FLAG_BOOL, &cfg.strict_reconfig_check, NULL},
    {"max-request-bytes", FLAG_SIZE, &cfg.max_request_bytes, NULL},
    {"quota-backend-bytes", FLAG_U64, &cfg.quota_backend_bytes, NULL},
    {"max-txn-ops", FLAG_SIZE, &cfg.max_txn_ops, NULL},
    {"max-concurrent-streams", FLAG_UINT, &cfg.max_concurrent_streams, NULL},
    {"heartbeat-interval", FLAG_UINT, &cfg.heartbeat_interval_ms, NULL},
    {"election-timeout", FLAG_UINT, &cfg.election_timeout_ms, NULL},
    {"log-level", FLAG_STRING, &log_level, NULL},
    {"logger", FLAG_STRING, &logger, NULL},
    {"log-outputs", FLAG_STRING, &log_outputs, NULL},
    {"log-output", FLAG_STRING, &log_output, NULL},
    {"debug", FLAG_BOOL, &log_debug_flag, NULL},
    {"experimental-watch-progress-notify-interval", FLAG_DURATION_MS, &cfg.watch_progress_notify_interval_ms,
     NULL},
    {"auth-token", FLAG_STRING, &cfg.auth_token, NULL},
    {"auth-token-ttl", FLAG_UINT, &cfg.auth_token_ttl_s, NULL},
    {"bcrypt-cost", FLAG_UINT, &cfg.bcrypt_cost, NULL},
    {"auto-compaction-mode", FLAG_STRING, &cfg.auto_compaction_mode, NULL},
    {"auto-compaction-retention", FLAG_STRING, &cfg.auto_compaction_retention, NULL},
    {"experimental-initial-corrupt-check", FLAG_BOOL, &cfg.initial_corrupt_check, NULL},
    {"experimental-corrupt-check-time", FLAG_DURATION_MS, &cfg.corrupt_check_time_ms, NULL},
    /* kshim extensions (not etcd flags). */
    {"max-pending-proposals", FLAG_SIZE, &cfg.max_pending_proposals, NULL},
    {"max-client-connections", FLAG_SIZE, &cfg.max_client_connections, NULL},
    {"max-watchers-per-stream", FLAG_SIZE, &cfg.max_watchers_per_stream, NULL},
    /* Accepted for drop-in compatibility; not acted on yet. */
    {"snapshot-count", FLAG_IGNORED, NULL, NULL},
    {"max-snapshots", FLAG_IGNORED, NULL, NULL},
    {"max-wals", FLAG_IGNORED, NULL, NULL},
    {"listen-client-http-urls", FLAG_IGNORED, NULL, NULL},
    {"backend-bbolt-freelist-type", FLAG_IGNORED, NULL, NULL},
    {"backend-batch-interval", FLAG_IGNORED, NULL, NULL},
    {"backend-batch-limit", FLAG_IGNORED, NULL, NULL},
    {"grpc-keepalive-min-time", FLAG_IGNORED, NULL, NULL},
    {"grpc-keepalive-interval", FLAG_IGNORED, NULL, NULL},
    {"grpc-keepalive-timeout", FLAG_IGNORED, NULL, NULL},
    {"socket-reuse-port", FLAG_IGNORED_BOOL, NULL, NULL},
    {"socket-reuse-address", FLAG_IGNORED_BOOL, NULL, NULL},
    {"discovery", FLAG_IGNORED, NULL, NULL},
    {"discovery-fallback", FLAG_IGNORED, NULL, NULL},
    {"discovery-proxy", FLAG_IGNORED, NULL, NULL},
    {"discovery-srv", FLAG_IGNORED, NULL, NULL},
    {"discovery-srv-name", FLAG_IGNORED, NULL, NULL},
    {"pre-vote", FLAG_IGNORED_BOOL, NULL, NULL},
    {"enable-v2", FLAG_IGNORED_BOOL, NULL, NULL},
    {"v2-deprecation", FLAG_IGNORED, NULL, NULL},
    {"enable-pprof", FLAG_IGNORED_BOOL, NULL, NULL},
    {"enable-grpc-gateway", FLAG_IGNORED_BOOL, NULL, NULL},
    {"self-signed-cert-validity", FLAG_IGNORED, NULL, NULL},
    {"client-cert-allowed-hostname", FLAG_IGNORED, NULL, NULL},
    {"cipher-suites", FLAG_IGNORED, NULL, NULL},
    {"tls-min-version", FLAG_IGNORED, NULL, NULL},
    {"tls-max-version", FLAG_IGNORED, NULL, NULL},
    {"cors", FLAG_IGNORED, NULL, NULL},
    {"host-whitelist", FLAG_IGNORED, NULL, NULL},
    {"metrics", FLAG_IGNORED, NULL, NULL},
    {"log-format", FLAG_IGNORED, NULL, NULL},
    {"enable-log-rotation", FLAG_IGNORED_BOOL, NULL, NULL},
    {"log-rotation-config-json", FLAG_IGNORED, NULL, NULL},
    {"log-package-levels", FLAG_IGNORED, NULL, NULL},
    {"force-new-cluster", FLAG_IGNORED_BOOL, NULL, NULL},
    {"unsafe-no-fsync", FLAG_IGNORED_BOOL, NULL, NULL},
    {"initial-election-tick-advance", FLAG_IGNORED_BOOL, NULL, NULL},
    {"proxy", FLAG_IGNORED, NULL, NULL},
};

static const flag_def_t *find_flag(const char *name) {
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strcmp(flags[i].name, name) == 0) return &flags[i];
    return NULL;
}

static int is_bool_kind(flag_kind_t k) { return k == FLAG_BOOL || k == FLAG_IGNORED_BOOL; }

static int parse_bool(const char *v, int *out) {
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "t")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "f")) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int parse_u64(const char *v, uint64_t *out) {
    char *end;
    if (!*v || *v == '-') return -1;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end) return -1;
    *out = n;
    return 0;
}

/* Go's time.ParseDuration for the units etcd flags use: h, m, s, ms, us,
 * ns, with decimal fractions ("1.5s") and sums ("1h30m"). */
static int parse_duration_ms(const char *v, uint64_t *out) {
    double total = 0;
    const char *p = v;
    if (!*p) return -1;
    if (!strcmp(p, "0")) {
        *out = 0;
        return 0;
    }
    while (*p) {
        char *end;
        double n = strtod(p, &end);
        if (end == p || n < 0) return -1;
        p = end;
        double unit;
        if (!strncmp(p, "ms", 2)) {
            unit = 1;
            p += 2;
        } else if (!strncmp(p, "us", 2) || !strncmp(p, "\xc2\xb5s", 3)) {
            unit = 0.001;
            p += p[0] == 'u' ? 2 : 3;
        } else if (!strncmp(p, "ns", 2)) {
            unit = 0.000001;
            p += 2;
        } else if (*p == 'h') {
            unit = 3600000;
            p++;
        } else if (*p == 'm') {
            unit = 60000;
            p++;
        } else if (*p == 's') {
            unit = 1000;
            p++;
        } else
            return -1;
        total += n * unit;
    }
    *out = (uint64_t)(total + 0.5);
    return 0;
}

/* Splits a comma list in place (v is owned by the caller for the process
 * lifetime). */
static int split_urls(char *v, const char **arr, size_t *count) {
    size_t n = 0;
    for (char *tok = strtok(v, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        if (n == SERVER_MAX_URLS) return -1;
        arr[n++] = tok;
    }
    if (n == 0) return -1;
    *count = n;
    return 0;
}

/* The split copy of each URL flag's value (the flag's array points into
 * it), owned here: a later value of the same flag (a flag after its
 * ETCD_* variable) replaces and frees it. Indexed like flags[]. */
static char *url_copies[sizeof flags / sizeof flags[0]];

static int set_urls(const flag_def_t *f, const char *value, const char *origin) {
    char *copy = strdup(value);
    if (!copy || split_urls(copy, (const char **)f->target, f->count) != 0) {
        fprintf(stderr, "invalid value \"%s\" for %s --%s: expected URLs\n", value, origin, f->name);
        free(copy);
        return -1;
    }
    if (f >= flags && f < flags + sizeof flags / sizeof flags[0]) {
        size_t i = (size_t)(f - flags);
        free(url_copies[i]);
        url_copies[i] = copy;
    }
    return 0;
}

static int set_flag(const flag_def_t *f, const char *value, const char *origin) {
    uint64_t u;
    int b;
    switch (f->kind) {
    case FLAG_STRING: *(const char **)f->target = value; return 0;
    case FLAG_URLS: return set_urls(f, value, origin);
    case FLAG_BOOL:
        if (parse_bool(value, &b) != 0) break;
        *(int *)f->target = b;
        return 0;
    case FLAG_SIZE:
        if (parse_u64(value, &u) != 0) break;
        *(size_t *)f->target = (size_t)u;
        return 0;
    case FLAG_U64:
        if (parse_u64(value, &u) != 0) break;
        *(uint64_t *)f->target = u;
        return 0;
    case FLAG_UINT:
        if (parse_u64(value, &u) != 0 || u > 0xffffffffu) break;
        *(unsigned *)f->target = (unsigned)u;
        return 0;
    case FLAG_DURATION_MS:
        if (parse_duration_ms(value, &u) != 0) break;
        *(uint64_t *)f->target = u;
        return 0;
    case FLAG_IGNORED_BOOL:
        if (parse_bool(value, &b) != 0) break;
        /* fall through */
    case FLAG_IGNORED:
        if (n_ignored_flags < sizeof ignored_flags / sizeof ignored_flags[0]) {
            /* Copies: the name and value may be the caller's buffers. Kept
             * for the process lifetime. */
            ignored_flags[n_ignored_flags].name = strdup(f->name);
            ignored_flags[n_ignored_flags++].value = strdup(value);
        }
        return 0;
    }
    fprintf(stderr, "invalid value \"%s\" for %s --%s\n", value, origin, f->name);
    return -1;
}

/* ETCD_NAME, ETCD_DATA_DIR, ...: etcd reads every flag from the environment
 * as ETCD_<FLAG WITH DASHES AS UNDERSCORES>; command-line flags win. */
static int apply_env(void) {
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char env[128] = "ETCD_";
        size_t n = 5;
        for (const char *p = flags[i].name; *p && n < sizeof env - 1; p++)
            env[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        env[n] = '\0';
        const char *v = getenv(env);
        if (v && set_flag(&flags[i], v, env) != 0) return -1;
    }
    return 0;
}

/* One setting of --config-file (config_file.h): the same flag, the same
 * parser. Returns 1 for keys kshimd does not know (ignored, as etcd does). */
static int config_set(void *ctx, const char *name, const char *value, char *err, size_t errlen) {
    (void)ctx;
    const flag_def_t *f = find_flag(name);
    flag_def_t experimental = {name, FLAG_IGNORED, NULL, NULL};
    if (!f && !strncmp(name, "experimental-", 13)) f = &experimental;
    if (!f || !strcmp(name, "config-file")) return 1;
    if (!value) return 0;                          /* known */
    if (!*value && f->kind == FLAG_URLS) return 0; /* etcd: an empty URL list keeps the default */
    char *copy = strdup(value);                    /* cfg keeps pointers for the process lifetime */
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = set_flag(f, copy, "config file key");
    if (rc != 0 || f->kind != FLAG_STRING) free(copy); /* only strings keep the pointer */
    if (rc != 0) {
        snprintf(err, errlen, "invalid value \"%s\" for %s", value, name);
        return -1;
    }
    return 0;
}

/* --config-file (or ETCD_CONFIG_FILE): as etcd, the file alone configures
 * the member; other flags and environment variables are ignored. */
static int load_config_file(void) {
    char err[512];
    ignored_cfg = cfg;
    server_config_defaults(&cfg);
    log_level = "info";
    logger = "zap";
    log_outputs = log_output = NULL;
    log_debug_flag = 0;
    if (config_file_load(config_file, config_set, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "kshimd: cannot load --config-file: %s\n", err);
        return -1;
    }
    return 0;
}

static void usage(FILE *out) {
    fprintf(out,
            "Usage:\n\n  kshimd [flags]\n\n"
            "  kshim is a drop-in replacement for etcd v3 (API %s). It takes etcd's flags\n"
            "  and ETCD_* environment variables with etcd's meaning.\n\n"
            "Member:\n"
            "  --config-file ''                 etcd's YAML file; other flags and env are then ignored.\n"
            "  --name 'default'                 human-readable name for this member.\n"
            "  --data-dir '${name}.etcd'        path to the data directory.\n"
            "  --wal-dir ''                     path to the dedicated wal directory.\n"
            "  --listen-client-urls 'http://localhost:2379'\n"
            "                                   URLs to serve clients on (http = h2c, https = TLS).\n"
            "  --advertise-client-urls 'http://localhost:2379'\n"
            "  --listen-peer-urls 'http://localhost:2380'\n"
            "  --initial-advertise-peer-urls 'http://localhost:2380'\n"
            "  --initial-cluster 'default=http://localhost:2380'\n"
            "  --initial-cluster-state 'new'    'new' or 'existing'.\n"
            "  --initial-cluster-token 'etcd-cluster'\n"
            "  --heartbeat-interval 100         time (ms) of a heartbeat interval.\n"
            "  --election-timeout 1000          time (ms) for an election to timeout.\n"
            "  --max-request-bytes 1572864      maximum client request size in bytes.\n"
            "  --max-txn-ops 128                maximum operations in a transaction.\n"
            "  --max-concurrent-streams 4294967295\n"
            "                                   maximum concurrent streams per client connection.\n"
            "  --quota-backend-bytes 0          backend size limit (0 = 2 GiB).\n"
            "  --auto-compaction-mode 'periodic' periodic (retention is a duration, or hours)\n"
            "                                   or revision (retention is a revision count).\n"
            "  --auto-compaction-retention '0'  auto-compaction retention; 0 = off.\n"
            "  --experimental-initial-corrupt-check false\n"
            "                                   on a restart, compare HashKV with every peer before\n"
            "                                   serving; refuse to start on a mismatch.\n"
            "  --experimental-corrupt-check-time 0s\n"
            "                                   how often the leader compares every member's HashKV\n"
            "                                   (0 = off); a mismatch raises the CORRUPT alarm.\n"
            "  --max-pending-proposals 5000     kshim extension: writes proposed and not yet\n"
            "                                   applied before 'etcdserver: too many requests'.\n"
            "  --max-client-connections 10000   kshim extension: client connections open at once\n"
            "                                   over all listen URLs; past it new ones are refused.\n"
            "  --max-watchers-per-stream 100000 kshim extension: watchers one Watch stream may\n"
            "                                   hold; past it a create is canceled.\n"
            "Security:\n"
            "  --cert-file, --key-file          client server TLS cert and key.\n"
            "  --trusted-ca-file                client server TLS trusted CA.\n"
            "  --client-crl-file                revoked client certs (with --client-cert-auth).\n"
            "  --client-cert-auth               require and verify client certificates.\n"
            "  --auto-tls                       self-signed client TLS certificate when none is given.\n"
            "  --peer-cert-file, --peer-key-file, --peer-trusted-ca-file, --peer-client-cert-auth\n"
            "Logging:\n"
            "  --logger 'zap'                   'zap' (JSON lines, as etcd's zap logger) or 'capnslog'\n"
            "                                   (etcd 3.4's text lines; deprecated, as in etcd).\n"
            "  --log-outputs 'default'          comma list: 'default' (stderr), 'stderr', 'stdout', or\n"
            "                                   file paths (appended; zap only).\n"
            "  --log-level 'info'               debug, info, warn, error, panic or fatal.\n"
            "  --debug                          deprecated: same as --log-level=debug.\n"
            "Other:\n"
            "  --version                        print the version and exit.\n"
            "  -h, --help                       show this help.\n\n"
            "Every other etcd 3.5 flag (--snapshot-count, --max-wals, --enable-v2, ...)\n"
            "and any --experimental-* flag is accepted; see README.md for which act.\n",
            KSHIM_ETCD_API_VERSION);
}

static void print_version(void) {
    printf("etcd Version: %s\nGit SHA: kshim-%s\nGo Version: none (kshim is C)\nGo OS/Arch: linux/amd64\n",
           KSHIM_ETCD_VERSION, KSHIM_VERSION);
}

/* --logger, --log-outputs, --log-level, --debug as etcd 3.4 checks them.
 * Returns 0, or the exit status: 1 for a refused flag, 2 for an unknown
 * level (etcd 3.4 panics on it, so exits 2, with this text). */
static int setup_logging(void) {
    char err[512];
    const char *outputs = log_outputs;
    if (log_output && log_outputs && strcmp(log_output, log_outputs) != 0) {
        fprintf(stderr, "error verifying flags, both '--log-output' and '--log-outputs' are set; only set "
                        "'--log-outputs'. See 'kshimd --help'.\n");
        return 1;
    }
    if (log_output && !log_outputs) {
        fprintf(stderr, "'--log-output' flag has been deprecated! Please use '--log-outputs'!\n");
        outputs = log_output;
    }
    log_config_t lc = {.logger = logger, .outputs = outputs, .level = log_level, .debug = log_debug_flag};
    int rc = log_setup(&lc, err, sizeof err);
    if (rc == LOG_ERR_LEVEL) {
        fprintf(stderr, "panic: %s\n", err);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "error verifying flags, %s. See 'kshimd --help'.\n", err);
        return 1;
    }
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (help/version), -1 on error. */
static int parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || !arg[1]) {
            fprintf(stderr, "'%s' is not a valid flag\n", arg);
            return -1;
        }
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        char namebuf[128];
        const char *value = NULL;
        const char *eq = strchr(name, '=');
        if (eq) {
            size_t n = (size_t)(eq - name);
            if (n >= sizeof namebuf) n = sizeof namebuf - 1;
            memcpy(namebuf, name, n);
            namebuf[n] = '\0';
            name = namebuf;
            value = eq + 1;
        }
        if (!strcmp(name, "h") || !strcmp(name, "help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(name, "version")) {
            print_version();
            return 1;
        }
        const flag_def_t *f = find_flag(name);
        /* etcd 3.6 dropped the experimental- prefix of some flags. */
        if (!f && !strcmp(name, "watch-progress-notify-interval"))
            f = find_flag("experimental-watch-progress-notify-interval");
        flag_def_t experimental = {name, FLAG_IGNORED, NULL, NULL};
        if (!f && !strncmp(name, "experimental-", 13)) f = &experimental;
        if (!f) {
            fprintf(stderr, "flag provided but not defined: -%s\n", name);
            usage(stderr);
            return -1;
        }
        if (!value) {
            /* Go's flag package: booleans take no separate value. */
            if (is_bool_kind(f->kind)) {
                value = "true";
            } else if (f == &experimental && (i + 1 >= argc || argv[i + 1][0] == '-')) {
                value = "true";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "flag needs an argument: -%s\n", name);
                return -1;
            }
        }
        if (set_flag(f, value, "flag") != 0) return -1;
    }
    return 0;
}

/* An etcd data dir becomes a kshim one before anything opens it
 * (etcd_datadir.h). 0 to go on, -1 to stop. */
static int take_over_etcd_dir(void) {
    char peers[4096] = "";
    size_t n = 0;
    for (size_t i = 0; i < cfg.n_initial_advertise_peer_urls && n < sizeof peers; i++)
        n += (size_t)snprintf(peers + n, sizeof peers - n, "%s%s", i ? "," : "",
                              cfg.initial_advertise_peer_urls[i]);
    etcd_datadir_opts_t o = {
        .data_dir = cfg.data_dir,
        .wal_dir = cfg.wal_dir,
        .name = cfg.name,
        .initial_cluster = cfg.initial_cluster,
        .initial_cluster_token = cfg.initial_cluster_token ? cfg.initial_cluster_token : "etcd-cluster",
        .initial_advertise_peer_urls = peers,
    };
    static etcd_datadir_result_t r;
    char err[8192];
    if (etcd_datadir_take_over(&o, &r, err, sizeof err) != 0) {
        log_error("%s", err);
        return -1;
    }
    if (r.action == ETCD_DATADIR_FINISHED)
        log_info("finished taking over the etcd data dir %s: etcd's member dir is kept in %s", cfg.data_dir,
                 r.orig);
    if (r.action == ETCD_DATADIR_CONVERTED)
        log_info(
            "took over the etcd data dir %s: consistent index %llu, revision %lld, compact revision %lld, "
            "%llu keys, %llu versions, %llu leases, %llu users, %llu roles; etcd's WAL held %llu entries "
            "(none a write past the consistent index); etcd's member dir is kept in %s",
            cfg.data_dir, (unsigned long long)r.consistent_index, (long long)r.restore.revision,
            (long long)r.restore.compact_rev, (unsigned long long)r.restore.live_keys,
            (unsigned long long)r.restore.versions, (unsigned long long)r.restore.leases,
            (unsigned long long)r.restore.users, (unsigned long long)r.restore.roles,
            (unsigned long long)r.wal.entries, r.orig);
    return 0;
}

int main(int argc, char **argv) {
    /* A big Range (a 20 MB LIST) allocates and frees buffers of that size per
     * request. glibc would serve each with a fresh mmap(), so every page of
     * every copy page-faults (measured: ~45% of such a request's CPU); keep
     * them in the heap and keep up to 128 MB of freed memory for reuse. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    server_config_defaults(&cfg);
    if (apply_env() != 0) return 2;
    int rc = parse_args(argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    if (config_file && *config_file && load_config_file() != 0) return 1;

    int rc_log = setup_logging();
    if (rc_log != 0) return rc_log;
    for (size_t i = 0; i < n_ignored_flags; i++)
        if (ignored_flags[i].name && ignored_flags[i].value)
            log_debug("flag --%s=%s accepted but not acted on by kshimd", ignored_flags[i].name,
                      ignored_flags[i].value);

    static char data_dir[4096], initial_cluster[4096];
    if (!cfg.data_dir || !*cfg.data_dir) {
        snprintf(data_dir, sizeof data_dir, "%s.etcd", cfg.name);
        cfg.data_dir = data_dir;
    }
    if (!cfg.initial_cluster || !*cfg.initial_cluster) {
        size_t n = 0;
        for (size_t i = 0; i < cfg.n_initial_advertise_peer_urls; i++)
            n += (size_t)snprintf(initial_cluster + n, sizeof initial_cluster - n, "%s%s=%s", i ? "," : "",
                                  cfg.name, cfg.initial_advertise_peer_urls[i]);
        cfg.initial_cluster = initial_cluster;
    }
    if (cfg.max_request_bytes == 0) cfg.max_request_bytes = 1572864;
    if (take_over_etcd_dir() != 0) return 1;
    return server_run(&cfg);
}
