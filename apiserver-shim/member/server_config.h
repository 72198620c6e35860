/*
 * server_config.h: a member's configuration (etcd's flags, parsed by
 * cmd/kshimd.c), its defaults, the request timeout derived from it, and
 * etcd's member and cluster ids (member/member.c).
 */
#ifndef KSHIM_SERVER_CONFIG_H
#define KSHIM_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SERVER_MAX_URLS 16
#define SERVER_MAX_MEMBERS 32

typedef struct server_config {
    const char *name;     /* --name */
    const char *data_dir; /* --data-dir */
    const char *wal_dir;  /* --wal-dir ("" = <data-dir>/member/wal) */
    const char *listen_client_urls[SERVER_MAX_URLS];
    size_t n_listen_client_urls;
    const char *advertise_client_urls[SERVER_MAX_URLS];
    size_t n_advertise_client_urls;
    const char *listen_peer_urls[SERVER_MAX_URLS];
    size_t n_listen_peer_urls;
    const char *initial_advertise_peer_urls[SERVER_MAX_URLS];
    size_t n_initial_advertise_peer_urls;
    const char *listen_metrics_urls[SERVER_MAX_URLS]; /* --listen-metrics-urls: /health, /metrics */
    size_t n_listen_metrics_urls;
    const char *initial_cluster;       /* "name=url,name=url" */
    const char *initial_cluster_state; /* "new" or "existing" */
    const char *initial_cluster_token;

    /* Client TLS. */
    const char *cert_file, *key_file, *trusted_ca_file;
    int client_cert_auth;
    const char *client_crl_file; /* --client-crl-file (checked with client_cert_auth) */
    int auto_tls;                /* --auto-tls: self-signed cert if none given */
    /* Peer TLS: parsed and kept for the cluster transport. */
    const char *peer_cert_file, *peer_key_file, *peer_trusted_ca_file;
    int peer_client_cert_auth;
    const char *peer_crl_file;          /* --peer-crl-file */
    const char *peer_cert_allowed_cn;   /* --peer-cert-allowed-cn */
    const char *peer_cert_allowed_host; /* --peer-cert-allowed-hostname */
    int peer_auto_tls;                  /* --peer-auto-tls */
    int strict_reconfig_check;          /* --strict-reconfig-check (default true) */

    size_t max_request_bytes;     /* default 1.5 MiB */
    uint64_t quota_backend_bytes; /* 0 = 2 GiB */
    size_t max_txn_ops;           /* default 128 */
    /* --max-concurrent-streams: HTTP/2 streams a client connection may have
     * open (SETTINGS_MAX_CONCURRENT_STREAMS); 0 or 4294967295 = unlimited,
     * etcd's default. */
    uint32_t max_concurrent_streams;
    /* kshim extension --max-pending-proposals: writes proposed and not yet
     * applied before new ones get ResourceExhausted "etcdserver: too many
     * requests"; 0 = etcd's 5000 (maxGapBetweenApplyAndCommitIndex). */
    size_t max_pending_proposals;
    /* kshim extension --max-client-connections: client connections open at
     * once over all client listen URLs; past it a new one is refused (h2_conn.h);
     * 0 = the default, 10000. */
    size_t max_client_connections;
    /* kshim extension --max-watchers-per-stream: watchers one Watch stream
     * may hold; a create past it is answered created + canceled with a
     * cancel_reason; 0 = the default, 100000. */
    size_t max_watchers_per_stream;
    unsigned heartbeat_interval_ms; /* default 100 */
    unsigned election_timeout_ms;   /* default 1000 */

    /* Watch: --experimental-watch-progress-notify-interval (default 10 min). */
    uint64_t watch_progress_notify_interval_ms;
    /* Auth: --auth-token ("simple" or "jwt,..."), --auth-token-ttl (s),
     * --bcrypt-cost. */
    const char *auth_token;
    unsigned auth_token_ttl_s;
    unsigned bcrypt_cost;
    /* --auto-compaction-mode (periodic | revision, default periodic) and
     * --auto-compaction-retention (etcd's text: "1h", "30m" or hours for
     * periodic, a revision count for revision; "0" or unset: off), parsed
     * by svc_maintenance.c. */
    const char *auto_compaction_mode;
    const char *auto_compaction_retention;
    /* --experimental-initial-corrupt-check and
     * --experimental-corrupt-check-time (ms, 0 = off), svc_corrupt.c. */
    int initial_corrupt_check;
    uint64_t corrupt_check_time_ms;
} server_config_t;

/* Fills etcd's defaults. */
void server_config_defaults(server_config_t *cfg);

/* How long a write may wait for its Raft entry to apply before it is
 * answered Unavailable "etcdserver: request timed out" (etcd's rule). */
uint64_t server_request_timeout_ms(const server_config_t *cfg);

/* etcd's member and cluster ids: SHA-1 of the sorted peer URLs and cluster
 * token (member), of the sorted member ids (cluster). Exposed for tests. */
uint64_t server_member_id(const char *const *peer_urls, size_t n, const char *token);
uint64_t server_cluster_id(const uint64_t *member_ids, size_t n);

/* --initial-cluster parsed: members in order of first appearance, a name
 * repeated collects several URLs; id = server_member_id(urls, token). */
typedef struct server_initial_member {
    const char *name;
    const char *urls[SERVER_MAX_URLS];
    size_t n_urls;
    uint64_t id;
} server_initial_member_t;
typedef struct server_initial_cluster {
    char *buf; /* owns the strings */
    server_initial_member_t m[SERVER_MAX_MEMBERS];
    size_t n;
} server_initial_cluster_t;

/* Parses "name=url,name=url" as etcd's types.NewURLsMap (URLs checked as
 * types.NewURLs: http/https/unix/unixs, host:port, no path). 0, or -1 with
 * etcd's text in err. Free with server_initial_cluster_free. */
int server_initial_cluster_parse(const char *text, const char *token, server_initial_cluster_t *out,
                                 char *err, size_t errlen);
void server_initial_cluster_free(server_initial_cluster_t *ic);
/* etcd's start checks for this member (VerifyBootstrap for a new cluster,
 * VerifyJoinExisting with joining set): local name present, advertised
 * peer URLs equal to ours in the list, no URL twice. 0, or -1 with etcd's
 * text. */
int server_initial_cluster_check(const server_initial_cluster_t *ic, const server_config_t *cfg, int joining,
                                 char *err, size_t errlen);
/* The member with name, or NULL. */
const server_initial_member_t *server_initial_cluster_find(const server_initial_cluster_t *ic,
                                                           const char *name);

#endif
