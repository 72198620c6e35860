/* kshimctl.c: the kshim admin CLI, etcdctl-compatible where it makes sense.
 *
 * Owns: the command table, the global and per-command flag table, dialing
 * endpoints (TLS, --user authentication) and one handler per command. RPCs
 * go through client/grpc_client.h, output through client/ctl_format.h.
 * To add a command: write a handler, add a row to COMMANDS and its flags
 * to FLAGS with the command's name. user/role/auth commands print what
 * etcdctl prints (simple) or the response as JSON (-w json).
 *
 * Exit codes follow etcdctl: 0 ok, 1 error, 4 unsupported output format,
 * 128 bad arguments. Errors are printed as "Error: <message>" on stderr.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl_flags.h"
#include "ctl_migrate.h"
#include "ctl_snapshot.h"
#include "ctl_format.h"
#include "grpc_client.h"
#include "rpc.pb-c.h"

#define KSHIMCTL_VERSION "0.1.0"
#define API_VERSION "3.5"
#define EXIT_ERROR 1
#define EXIT_BAD_FEATURE 4
#define EXIT_BAD_ARGS 128
#define MAX_ENDPOINTS 16

typedef struct ctl_opts {
    /* global */
    const char *endpoints, *cacert, *cert, *key, *user, *password, *write_out;
    int insecure_skip_verify, dial_timeout_ms, command_timeout_ms, help;
    /* per command */
    int prefix, from_key, keys_only, count_only, prev_kv, physical;
    int64_t limit, rev;
    const char *lease;
    const char *new_user_password; /* user add, user passwd */
    int no_password;               /* user add */
    /* snapshot restore */
    const char *data_dir, *name, *initial_cluster, *initial_cluster_token, *initial_advertise_peer_urls;
    int skip_hash_check;
    /* migrate */
    const char *from, *cutover_file;
    int until_signal, duration_ms;
    int64_t sync_every;
} ctl_opts_t;

typedef struct ctl {
    ctl_opts_t o;
    cf_format_t fmt;
    char **args; /* positional arguments after the command */
    int nargs;
    char *eps[MAX_ENDPOINTS]; /* split --endpoints, owned by epbuf */
    int neps;
    char epbuf[4096];
} ctl_t;

#define OPT(f) offsetof(ctl_opts_t, f)
static const ctl_flag_t FLAGS[] = {
    {"endpoints", 0, CFL_STRING, OPT(endpoints), NULL, "gRPC endpoints (comma list)"},
    {"cacert", 0, CFL_STRING, OPT(cacert), NULL, "verify servers with this CA bundle"},
    {"cert", 0, CFL_STRING, OPT(cert), NULL, "client TLS certificate file"},
    {"key", 0, CFL_STRING, OPT(key), NULL, "client TLS key file"},
    {"insecure-skip-tls-verify", 0, CFL_BOOL, OPT(insecure_skip_verify), NULL,
     "skip server certificate verification"},
    {"user", 0, CFL_STRING, OPT(user), NULL, "username[:password] for authentication"},
    {"password", 0, CFL_STRING, OPT(password), NULL, "password for authentication"},
    {"write-out", 'w', CFL_STRING, OPT(write_out), NULL, "output format: simple, table, json"},
    {"dial-timeout", 0, CFL_DURATION, OPT(dial_timeout_ms), NULL, "dial timeout (2s)"},
    {"command-timeout", 0, CFL_DURATION, OPT(command_timeout_ms), NULL, "timeout per command (5s)"},
    {"help", 'h', CFL_BOOL, OPT(help), NULL, "help"},
    {"prefix", 0, CFL_BOOL, OPT(prefix), "get,del,role grant-permission,role revoke-permission",
     "operate on keys with the prefix"},
    {"from-key", 0, CFL_BOOL, OPT(from_key), "get,del,role grant-permission,role revoke-permission",
     "keys >= the given key"},
    {"new-user-password", 0, CFL_STRING, OPT(new_user_password), "user add,user passwd",
     "the new user's password (else NAME:PASSWORD or a line on stdin)"},
    {"no-password", 0, CFL_BOOL, OPT(no_password), "user add",
     "create a user without password (certificate CN auth only)"},
    {"limit", 0, CFL_INT, OPT(limit), "get", "maximum number of results"},
    {"rev", 0, CFL_INT, OPT(rev), "get", "read at this revision"},
    {"keys-only", 0, CFL_BOOL, OPT(keys_only), "get", "only the keys"},
    {"count-only", 0, CFL_BOOL, OPT(count_only), "get", "only the count"},
    {"prev-kv", 0, CFL_BOOL, OPT(prev_kv), "put,del", "return the previous key-value"},
    {"lease", 0, CFL_STRING, OPT(lease), "put", "lease ID (hex) to attach"},
    {"physical", 0, CFL_BOOL, OPT(physical), "compact", "wait for physical removal"},
    {"data-dir", 0, CFL_STRING, OPT(data_dir), "snapshot restore,migrate",
     "the new data dir (default NAME.etcd)"},
    {"name", 0, CFL_STRING, OPT(name), "snapshot restore,migrate", "the member's name (default \"default\")"},
    {"initial-cluster", 0, CFL_STRING, OPT(initial_cluster), "snapshot restore,migrate",
     "NAME=PEER_URLS of the new cluster (one member)"},
    {"initial-cluster-token", 0, CFL_STRING, OPT(initial_cluster_token), "snapshot restore,migrate",
     "the new cluster's token (default etcd-cluster)"},
    {"initial-advertise-peer-urls", 0, CFL_STRING, OPT(initial_advertise_peer_urls),
     "snapshot restore,migrate", "this member's peer URLs (default http://localhost:2380)"},
    {"skip-hash-check", 0, CFL_BOOL, OPT(skip_hash_check), "snapshot restore",
     "do not check the SHA-256 trailer (needed for a copied db file)"},
    {"from", 0, CFL_STRING, OPT(from), "migrate", "the source etcd's client URL"},
    {"until-signal", 0, CFL_BOOL, OPT(until_signal), "migrate", "cut over on SIGINT/SIGTERM (the default)"},
    {"cutover-file", 0, CFL_STRING, OPT(cutover_file), "migrate", "cut over when this file exists"},
    {"duration", 0, CFL_DURATION, OPT(duration_ms), "migrate", "cut over after following this long"},
    {"sync-every", 0, CFL_INT, OPT(sync_every), "migrate", "sync the store every N revisions (100)"},
};
#define NFLAGS ((int)(sizeof FLAGS / sizeof FLAGS[0]))

/* ---------- errors ---------- */

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("Error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* ---------- dialing and calling ---------- */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Pack req, call path, unpack into *resp (free with
 * protobuf_c_message_free_unpacked). 0 ok, -1 with err set. */
static int call(ctl_t *c, gc_conn_t *conn, const char *path, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp, gc_status_t *st) {
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        st->code = GC_INTERNAL;
        snprintf(st->message, sizeof st->message, "out of memory");
        return -1;
    }
    protobuf_c_message_pack(req, buf);
    uint8_t *out = NULL;
    size_t outlen = 0;
    int r = gc_unary(conn, path, buf, len, &out, &outlen, st, c->o.command_timeout_ms);
    free(buf);
    if (r < 0 || st->code != GC_OK) return -1;
    *resp = protobuf_c_message_unpack(rd, NULL, outlen, out);
    free(out);
    if (!*resp) {
        st->code = GC_INTERNAL;
        snprintf(st->message, sizeof st->message, "cannot decode %s response", rd->name);
        return -1;
    }
    return 0;
}

/* Split "name:password" / --password; 0 or -1 with err. */
static int credentials(const ctl_t *c, char *name, size_t nlen, const char **pass) {
    const char *colon = strchr(c->o.user, ':');
    if (colon && !c->o.password) {
        snprintf(name, nlen, "%.*s", (int)(colon - c->o.user), c->o.user);
        *pass = colon + 1;
        return 0;
    }
    snprintf(name, nlen, "%s", c->o.user);
    *pass = c->o.password;
    return *pass ? 0 : -1;
}

/* Authenticate and attach the token to every later call on conn. */
static int authenticate(ctl_t *c, gc_conn_t *conn, gc_status_t *st) {
    char name[256];
    const char *pass;
    if (credentials(c, name, sizeof name, &pass) < 0) {
        st->code = GC_INVALID_ARGUMENT;
        snprintf(st->message, sizeof st->message,
                 "password is required: use --user name:password or --password");
        return -1;
    }
    Etcdserverpb__AuthenticateRequest req = ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
    req.name = name;
    req.password = (char *)pass;
    ProtobufCMessage *resp;
    if (call(c, conn, "/etcdserverpb.Auth/Authenticate", &req.base,
             &etcdserverpb__authenticate_response__descriptor, &resp, st) < 0)
        return -1;
    const char *token = ((Etcdserverpb__AuthenticateResponse *)resp)->token;
    int r = gc_set_metadata(conn, "token", token ? token : "");
    protobuf_c_message_free_unpacked(resp, NULL);
    return r;
}

/* Dial one endpoint (and log in with --user). NULL with st filled. */
static gc_conn_t *dial(ctl_t *c, const char *ep, gc_status_t *st) {
    gc_options_t go = {.endpoint = ep,
                       .cacert = c->o.cacert,
                       .cert = c->o.cert,
                       .key = c->o.key,
                       .insecure_skip_verify = c->o.insecure_skip_verify,
                       .dial_timeout_ms = c->o.dial_timeout_ms};
    gc_conn_t *conn = gc_connect(&go, st->message, sizeof st->message);
    if (!conn) {
        st->code = GC_UNAVAILABLE;
        return NULL;
    }
    gc_set_metadata(conn, "client-api-version", API_VERSION);
    /* As clientv3: a server with auth disabled is used without a token. */
    if (c->o.user && authenticate(c, conn, st) < 0 &&
        strcmp(st->message, "etcdserver: authentication is not enabled") != 0) {
        gc_close(conn);
        return NULL;
    }
    return conn;
}

/* Dial the first endpoint that answers. */
static gc_conn_t *dial_any(ctl_t *c, gc_status_t *st) {
    for (int i = 0; i < c->neps; i++) {
        gc_conn_t *conn = dial(c, c->eps[i], st);
        if (conn) return conn;
    }
    return NULL;
}

/* One unary call on a fresh connection to any endpoint. */
static int call_any(ctl_t *c, const char *path, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp) {
    gc_status_t st = {0};
    gc_conn_t *conn = dial_any(c, &st);
    if (!conn) return fail(EXIT_ERROR, "%s", st.message);
    int r = call(c, conn, path, req, rd, resp, &st);
    gc_close(conn);
    if (r < 0) return fail(EXIT_ERROR, "%s", st.message);
    return 0;
}

/* ---------- key helpers ---------- */

static ProtobufCBinaryData bytes_of(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* etcd's prefix range end: the key with its last byte < 0xff incremented
 * and the rest cut; "\0" when there is none (= up to the end). */
static size_t prefix_end(const char *key, uint8_t *out) {
    size_t n = strlen(key);
    memcpy(out, key, n);
    while (n > 0) {
        if ((uint8_t)out[n - 1] < 0xff) {
            out[n - 1]++;
            return n;
        }
        n--;
    }
    out[0] = 0;
    return 1;
}

/* Fill key/range_end from args + --prefix/--from-key. 0 or exit code. */
static int key_range(ctl_t *c, ProtobufCBinaryData *key, ProtobufCBinaryData *end, uint8_t *endbuf,
                     const char *cmd) {
    if (c->nargs < 1 || c->nargs > 2)
        return fail(EXIT_BAD_ARGS,
                    "%s command needs one argument as key and an optional "
                    "argument as range_end",
                    cmd);
    if ((c->o.prefix || c->o.from_key) && c->nargs == 2)
        return fail(EXIT_BAD_ARGS, "too many arguments, only accept one argument when "
                                   "`--prefix` or `--from-key` is set");
    if (c->o.prefix && c->o.from_key)
        return fail(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time");
    *key = bytes_of(c->args[0]);
    if (c->nargs == 2) *end = bytes_of(c->args[1]);
    int whole = key->len == 0 && (c->o.prefix || c->o.from_key);
    if (whole) {
        key->data = endbuf;
        key->len = 1;
        endbuf[0] = 0;
    }
    if (c->o.from_key || whole) {
        end->data = (uint8_t *)"";
        end->len = 1;
    } else if (c->o.prefix) {
        end->data = endbuf;
        end->len = prefix_end(c->args[0], endbuf);
    }
    return 0;
}

/* ---------- commands ---------- */

static int cmd_get(ctl_t *c) {
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    uint8_t *endbuf = malloc(strlen(c->nargs ? c->args[0] : "") + 1);
    if (!endbuf) return fail(EXIT_ERROR, "out of memory");
    int r = key_range(c, &req.key, &req.range_end, endbuf, "get");
    if (r == 0) {
        req.limit = c->o.limit;
        req.revision = c->o.rev;
        req.keys_only = c->o.keys_only;
        req.count_only = c->o.count_only;
        ProtobufCMessage *resp;
        r = call_any(c, "/etcdserverpb.KV/Range", &req.base, &etcdserverpb__range_response__descriptor,
                     &resp);
        if (r == 0) {
            cf_print_range(stdout, c->fmt, (Etcdserverpb__RangeResponse *)resp, c->o.keys_only,
                           c->o.count_only);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    free(endbuf);
    return r;
}

static int cmd_put(ctl_t *c) {
    if (c->nargs != 2) return fail(EXIT_BAD_ARGS, "put command needs 2 arguments: key and value");
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = bytes_of(c->args[0]);
    req.value = bytes_of(c->args[1]);
    req.prev_kv = c->o.prev_kv;
    if (c->o.lease) {
        char *end;
        req.lease = (int64_t)strtoull(c->o.lease, &end, 16);
        if (end == c->o.lease || *end)
            return fail(EXIT_BAD_ARGS, "bad lease ID (%s), expecting ID in Hex", c->o.lease);
    }
    ProtobufCMessage *resp;
    int r = call_any(c, "/etcdserverpb.KV/Put", &req.base, &etcdserverpb__put_response__descriptor, &resp);
    if (r) return r;
    cf_print_put(stdout, c->fmt, (Etcdserverpb__PutResponse *)resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int cmd_del(ctl_t *c) {
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    uint8_t *endbuf = malloc(strlen(c->nargs ? c->args[0] : "") + 1);
    if (!endbuf) return fail(EXIT_ERROR, "out of memory");
    int r = key_range(c, &req.key, &req.range_end, endbuf, "del");
    if (r == 0) {
        req.prev_kv = c->o.prev_kv;
        ProtobufCMessage *resp;
        r = call_any(c, "/etcdserverpb.KV/DeleteRange", &req.base,
                     &etcdserverpb__delete_range_response__descriptor, &resp);
        if (r == 0) {
            cf_print_delete(stdout, c->fmt, (Etcdserverpb__DeleteRangeResponse *)resp);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    free(endbuf);
    return r;
}

static int cmd_compact(ctl_t *c) {
    if (c->nargs != 1) return fail(EXIT_BAD_ARGS, "compaction command needs 1 argument");
    char *end;
    long long rev = strtoll(c->args[0], &end, 10);
    if (end == c->args[0] || *end)
        return fail(EXIT_ERROR, "strconv.ParseInt: parsing \"%s\": invalid syntax", c->args[0]);
    Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    req.revision = rev;
    req.physical = c->o.physical;
    ProtobufCMessage *resp;
    int r = call_any(c, "/etcdserverpb.KV/Compact", &req.base, &etcdserverpb__compaction_response__descriptor,
                     &resp);
    if (r) return r;
    cf_print_compact(stdout, c->fmt, (Etcdserverpb__CompactionResponse *)resp, rev);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int cmd_member_list(ctl_t *c) {
    Etcdserverpb__MemberListRequest req = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
    ProtobufCMessage *resp;
    int r = call_any(c, "/etcdserverpb.Cluster/MemberList", &req.base,
                     &etcdserverpb__member_list_response__descriptor, &resp);
    if (r) return r;
    cf_print_members(stdout, c->fmt, (Etcdserverpb__MemberListResponse *)resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* Status of one endpoint; NULL after printing why to stderr. */
static ProtobufCMessage *status_of(ctl_t *c, const char *ep) {
    gc_status_t st = {0};
    ProtobufCMessage *resp = NULL;
    gc_conn_t *conn = dial(c, ep, &st);
    Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
    if (conn) {
        call(c, conn, "/etcdserverpb.Maintenance/Status", &req.base,
             &etcdserverpb__status_response__descriptor, &resp, &st);
        gc_close(conn);
    }
    if (!resp) fprintf(stderr, "Failed to get the status of endpoint %s (%s)\n", ep, st.message);
    return resp;
}

static int cmd_endpoint_status(ctl_t *c) {
    cf_status_entry_t e[MAX_ENDPOINTS] = {{0}};
    int n = 0, failed = 0;
    for (int i = 0; i < c->neps; i++) {
        ProtobufCMessage *resp = status_of(c, c->eps[i]);
        if (!resp) {
            failed = 1;
            continue;
        }
        e[n].endpoint = c->eps[i];
        e[n].resp = (Etcdserverpb__StatusResponse *)resp;
        n++;
    }
    cf_print_status(stdout, c->fmt, e, n);
    for (int i = 0; i < n; i++) protobuf_c_message_free_unpacked((ProtobufCMessage *)e[i].resp, NULL);
    return failed ? EXIT_ERROR : 0;
}

/* Health of one endpoint, as etcdctl: a linearizable Get of "health"
 * succeeds (PermissionDenied counts as healthy: the cluster answered). */
static void health_of(ctl_t *c, const char *ep, cf_health_entry_t *h, char *err, size_t errlen) {
    int64_t t0 = mono_ns();
    gc_status_t st = {0};
    ProtobufCMessage *resp = NULL;
    gc_conn_t *conn = dial(c, ep, &st);
    if (conn) {
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        req.key = bytes_of("health");
        call(c, conn, "/etcdserverpb.KV/Range", &req.base, &etcdserverpb__range_response__descriptor, &resp,
             &st);
        gc_close(conn);
    }
    h->endpoint = ep;
    h->took_ns = mono_ns() - t0;
    h->healthy = resp != NULL || st.code == GC_PERMISSION_DENIED;
    snprintf(err, errlen, "%s", h->healthy ? "" : st.message);
    h->error = err;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
}

static int cmd_endpoint_health(ctl_t *c) {
    cf_health_entry_t h[MAX_ENDPOINTS] = {{0}};
    static char errs[MAX_ENDPOINTS][512];
    int unhealthy = 0;
    for (int i = 0; i < c->neps; i++) {
        health_of(c, c->eps[i], &h[i], errs[i], sizeof errs[i]);
        unhealthy |= !h[i].healthy;
    }
    cf_print_health(stdout, stderr, c->fmt, h, c->neps);
    return unhealthy ? fail(EXIT_ERROR, "unhealthy cluster") : 0;
}

static int cmd_version(ctl_t *c) {
    printf("kshimctl version: %s\nAPI version: %s\n", KSHIMCTL_VERSION, API_VERSION);
    return 0;
}

/* ---------- auth: users, roles, enable/disable ---------- */

/* One auth RPC on any endpoint: path "/etcdserverpb.Auth/<method>". On
 * success prints the json form with -w json and returns 0 with *resp set. */
static int auth_call(ctl_t *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp) {
    char path[96];
    snprintf(path, sizeof path, "/etcdserverpb.Auth/%s", method);
    int r = call_any(c, path, req, rd, resp);
    if (r == 0 && c->fmt == CF_JSON) {
        cf_json_message(stdout, *resp);
        fputc('\n', stdout);
    }
    return r;
}

/* Runs an auth RPC whose simple output is one line (msg). */
static int auth_simple(ctl_t *c, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *rd, const char *msg) {
    ProtobufCMessage *resp;
    int r = auth_call(c, method, req, rd, &resp);
    if (r) return r;
    if (c->fmt != CF_JSON) printf("%s\n", msg);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int need_args(ctl_t *c, int n, const char *what) {
    if (c->nargs != n) return fail(EXIT_BAD_ARGS, "%s", what);
    return 0;
}

/* The new password: --new-user-password, else one line of stdin. */
static int read_password(ctl_t *c, char *buf, size_t len) {
    if (c->o.new_user_password) {
        snprintf(buf, len, "%s", c->o.new_user_password);
        return 0;
    }
    if (!fgets(buf, (int)len, stdin)) return fail(EXIT_BAD_ARGS, "password is required (stdin)");
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int cmd_user_add(ctl_t *c) {
    if (c->nargs != 1) return fail(EXIT_BAD_ARGS, "user add command requires user name as its argument");
    char name[512], pw[512] = "";
    const char *colon = strchr(c->args[0], ':');
    snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - c->args[0]) : (int)strlen(c->args[0]),
             c->args[0]);
    if (colon)
        snprintf(pw, sizeof pw, "%s", colon + 1);
    else if (!c->o.no_password && read_password(c, pw, sizeof pw))
        return EXIT_BAD_ARGS;
    Etcdserverpb__AuthUserAddRequest req = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions opts = AUTHPB__USER_ADD_OPTIONS__INIT;
    opts.no_password = c->o.no_password;
    req.name = name;
    req.password = pw;
    req.options = &opts;
    char msg[600];
    snprintf(msg, sizeof msg, "User %s created", name);
    return auth_simple(c, "UserAdd", &req.base, &etcdserverpb__auth_user_add_response__descriptor, msg);
}

static int cmd_user_get(ctl_t *c) {
    if (need_args(c, 1, "user get command requires user name as its argument")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthUserGetRequest req = ETCDSERVERPB__AUTH_USER_GET_REQUEST__INIT;
    req.name = c->args[0];
    ProtobufCMessage *resp;
    int r = auth_call(c, "UserGet", &req.base, &etcdserverpb__auth_user_get_response__descriptor, &resp);
    if (r) return r;
    if (c->fmt != CF_JSON) {
        const Etcdserverpb__AuthUserGetResponse *u = (const Etcdserverpb__AuthUserGetResponse *)resp;
        printf("User: %s\nRoles:", c->args[0]);
        for (size_t i = 0; i < u->n_roles; i++) printf(" %s", u->roles[i]);
        printf("\n");
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int print_names(ctl_t *c, const char *method, const ProtobufCMessageDescriptor *rd) {
    Etcdserverpb__AuthUserListRequest ureq = ETCDSERVERPB__AUTH_USER_LIST_REQUEST__INIT;
    Etcdserverpb__AuthRoleListRequest rreq = ETCDSERVERPB__AUTH_ROLE_LIST_REQUEST__INIT;
    int users = strcmp(method, "UserList") == 0;
    ProtobufCMessage *resp;
    int r = auth_call(c, method, users ? &ureq.base : &rreq.base, rd, &resp);
    if (r) return r;
    if (c->fmt != CF_JSON) {
        char **names = users ? ((Etcdserverpb__AuthUserListResponse *)resp)->users
                             : ((Etcdserverpb__AuthRoleListResponse *)resp)->roles;
        size_t n = users ? ((Etcdserverpb__AuthUserListResponse *)resp)->n_users
                         : ((Etcdserverpb__AuthRoleListResponse *)resp)->n_roles;
        for (size_t i = 0; i < n; i++) printf("%s\n", names[i]);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int cmd_user_list(ctl_t *c) {
    return print_names(c, "UserList", &etcdserverpb__auth_user_list_response__descriptor);
}

static int cmd_role_list(ctl_t *c) {
    return print_names(c, "RoleList", &etcdserverpb__auth_role_list_response__descriptor);
}

static int cmd_user_delete(ctl_t *c) {
    if (need_args(c, 1, "user delete command requires user name as its argument")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthUserDeleteRequest req = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    req.name = c->args[0];
    char msg[600];
    snprintf(msg, sizeof msg, "User %s deleted", c->args[0]);
    return auth_simple(c, "UserDelete", &req.base, &etcdserverpb__auth_user_delete_response__descriptor, msg);
}

static int cmd_user_passwd(ctl_t *c) {
    if (need_args(c, 1, "user passwd command requires user name as its argument")) return EXIT_BAD_ARGS;
    char pw[512];
    if (read_password(c, pw, sizeof pw)) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthUserChangePasswordRequest req = ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
    req.name = c->args[0];
    req.password = pw;
    return auth_simple(c, "UserChangePassword", &req.base,
                       &etcdserverpb__auth_user_change_password_response__descriptor, "Password updated");
}

static int cmd_user_grant_role(ctl_t *c) {
    if (need_args(c, 2, "user grant command requires user name and role name as its argument"))
        return EXIT_BAD_ARGS;
    Etcdserverpb__AuthUserGrantRoleRequest req = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    req.user = c->args[0];
    req.role = c->args[1];
    char msg[1100];
    snprintf(msg, sizeof msg, "Role %s is granted to user %s", c->args[1], c->args[0]);
    return auth_simple(c, "UserGrantRole", &req.base,
                       &etcdserverpb__auth_user_grant_role_response__descriptor, msg);
}

static int cmd_user_revoke_role(ctl_t *c) {
    if (need_args(c, 2, "user revoke-role requires user name and role name as its argument"))
        return EXIT_BAD_ARGS;
    Etcdserverpb__AuthUserRevokeRoleRequest req = ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
    req.name = c->args[0];
    req.role = c->args[1];
    char msg[1100];
    snprintf(msg, sizeof msg, "Role %s is revoked from user %s", c->args[1], c->args[0]);
    return auth_simple(c, "UserRevokeRole", &req.base,
                       &etcdserverpb__auth_user_revoke_role_response__descriptor, msg);
}

static int cmd_role_add(ctl_t *c) {
    if (need_args(c, 1, "role add command requires role name as its argument")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthRoleAddRequest req = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    req.name = c->args[0];
    char msg[600];
    snprintf(msg, sizeof msg, "Role %s created", c->args[0]);
    return auth_simple(c, "RoleAdd", &req.base, &etcdserverpb__auth_role_add_response__descriptor, msg);
}

static int cmd_role_delete(ctl_t *c) {
    if (need_args(c, 1, "role delete command requires role name as its argument")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthRoleDeleteRequest req = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
    req.role = c->args[0];
    char msg[600];
    snprintf(msg, sizeof msg, "Role %s deleted", c->args[0]);
    return auth_simple(c, "RoleDelete", &req.base, &etcdserverpb__auth_role_delete_response__descriptor, msg);
}

/* etcdctl's printRange for one permission of role get. */
static void print_perm(const Authpb__Permission *p) {
    const char *key = (const char *)p->key.data;
    int kl = (int)p->key.len;
    if (p->range_end.len == 0) {
        printf("\t%.*s\n", kl, key);
        return;
    }
    if (p->range_end.len == 1 && p->range_end.data[0] == 0)
        printf("\t[%.*s, <open ended>", kl, key);
    else
        printf("\t[%.*s, %.*s)", kl, key, (int)p->range_end.len, (const char *)p->range_end.data);
    uint8_t *pe = malloc(p->key.len + 1);
    if (pe) {
        char *k = strndup(key ? key : "", p->key.len);
        size_t n = k ? prefix_end(k, pe) : 0;
        if (k && n == p->range_end.len && memcmp(pe, p->range_end.data, n) == 0)
            printf(" (prefix %.*s)", kl, key);
        free(k);
        free(pe);
    }
    printf("\n");
}

static int cmd_role_get(ctl_t *c) {
    if (need_args(c, 1, "role get command requires role name as its argument")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthRoleGetRequest req = ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
    req.role = c->args[0];
    ProtobufCMessage *resp;
    int r = auth_call(c, "RoleGet", &req.base, &etcdserverpb__auth_role_get_response__descriptor, &resp);
    if (r) return r;
    if (c->fmt != CF_JSON) {
        const Etcdserverpb__AuthRoleGetResponse *g = (const Etcdserverpb__AuthRoleGetResponse *)resp;
        printf("Role %s\nKV Read:\n", c->args[0]);
        for (size_t i = 0; i < g->n_perm; i++)
            if (g->perm[i]->permtype == AUTHPB__PERMISSION__TYPE__READ ||
                g->perm[i]->permtype == AUTHPB__PERMISSION__TYPE__READWRITE)
                print_perm(g->perm[i]);
        printf("KV Write:\n");
        for (size_t i = 0; i < g->n_perm; i++)
            if (g->perm[i]->permtype == AUTHPB__PERMISSION__TYPE__WRITE ||
                g->perm[i]->permtype == AUTHPB__PERMISSION__TYPE__READWRITE)
                print_perm(g->perm[i]);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* KEY [RANGE_END] with --prefix / --from-key into key/end (etcdctl's
 * permRange). endbuf holds strlen(key) + 1 bytes. */
static int perm_range(ctl_t *c, char **args, int nargs, ProtobufCBinaryData *key, ProtobufCBinaryData *end,
                      uint8_t *endbuf) {
    if (c->o.prefix && c->o.from_key)
        return fail(EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive");
    if ((c->o.prefix || c->o.from_key) && nargs == 2)
        return fail(EXIT_BAD_ARGS, "unexpected endkey argument with --prefix or --from-key");
    *key = bytes_of(args[0]);
    end->len = 0;
    if (nargs == 2)
        *end = bytes_of(args[1]);
    else if (c->o.from_key) {
        end->data = (uint8_t *)"";
        end->len = 1;
    } else if (c->o.prefix) {
        if (key->len == 0) {
            key->data = endbuf;
            key->len = 1;
            endbuf[0] = 0;
            end->data = (uint8_t *)"";
            end->len = 1;
        } else {
            end->data = endbuf;
            end->len = prefix_end(args[0], endbuf);
        }
    }
    return 0;
}

static int perm_type(const char *s) {
    if (strcasecmp(s, "read") == 0) return AUTHPB__PERMISSION__TYPE__READ;
    if (strcasecmp(s, "write") == 0) return AUTHPB__PERMISSION__TYPE__WRITE;
    if (strcasecmp(s, "readwrite") == 0) return AUTHPB__PERMISSION__TYPE__READWRITE;
    return -1;
}

static int cmd_role_grant_permission(ctl_t *c) {
    if (c->nargs < 3 || c->nargs > 4)
        return fail(
            EXIT_BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its argument");
    int type = perm_type(c->args[1]);
    if (type < 0) return fail(EXIT_BAD_ARGS, "invalid permission type %s", c->args[1]);
    uint8_t *endbuf = malloc(strlen(c->args[2]) + 1);
    if (!endbuf) return fail(EXIT_ERROR, "out of memory");
    Authpb__Permission perm = AUTHPB__PERMISSION__INIT;
    int r = perm_range(c, c->args + 2, c->nargs - 2, &perm.key, &perm.range_end, endbuf);
    if (r == 0) {
        perm.permtype = (Authpb__Permission__Type)type;
        Etcdserverpb__AuthRoleGrantPermissionRequest req =
            ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
        req.name = c->args[0];
        req.perm = &perm;
        char msg[600];
        snprintf(msg, sizeof msg, "Role %s updated", c->args[0]);
        r = auth_simple(c, "RoleGrantPermission", &req.base,
                        &etcdserverpb__auth_role_grant_permission_response__descriptor, msg);
    }
    free(endbuf);
    return r;
}

static int cmd_role_revoke_permission(ctl_t *c) {
    if (c->nargs < 2 || c->nargs > 3)
        return fail(EXIT_BAD_ARGS,
                    "role revoke-permission command requires role name and key [endkey] as its argument");
    uint8_t *endbuf = malloc(strlen(c->args[1]) + 1);
    if (!endbuf) return fail(EXIT_ERROR, "out of memory");
    Etcdserverpb__AuthRoleRevokePermissionRequest req =
        ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
    int r = perm_range(c, c->args + 1, c->nargs - 1, &req.key, &req.range_end, endbuf);
    if (r == 0) {
        req.role = c->args[0];
        char msg[1200];
        int kl = (int)req.key.len;
        if (req.range_end.len == 0)
            snprintf(msg, sizeof msg, "Permission of key %.*s is revoked from role %s", kl,
                     (const char *)req.key.data, c->args[0]);
        else if (req.range_end.len == 1 && req.range_end.data[0] == 0)
            snprintf(msg, sizeof msg, "Permission of range [%.*s, <open ended> is revoked from role %s", kl,
                     (const char *)req.key.data, c->args[0]);
        else
            snprintf(msg, sizeof msg, "Permission of range [%.*s, %.*s) is revoked from role %s", kl,
                     (const char *)req.key.data, (int)req.range_end.len, (const char *)req.range_end.data,
                     c->args[0]);
        r = auth_simple(c, "RoleRevokePermission", &req.base,
                        &etcdserverpb__auth_role_revoke_permission_response__descriptor, msg);
    }
    free(endbuf);
    return r;
}

/* auth enable: as etcdctl, creates the root role and grants it to root
 * when that is all that is missing. */
static int cmd_auth_enable(ctl_t *c) {
    if (need_args(c, 0, "auth enable command does not accept any arguments")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthEnableRequest req = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    gc_status_t st = {0};
    gc_conn_t *conn = dial_any(c, &st);
    if (!conn) return fail(EXIT_ERROR, "%s", st.message);
    ProtobufCMessage *resp = NULL;
    int r = call(c, conn, "/etcdserverpb.Auth/AuthEnable", &req.base,
                 &etcdserverpb__auth_enable_response__descriptor, &resp, &st);
    if (r < 0 && strcmp(st.message, "etcdserver: root user does not have root role") == 0) {
        Etcdserverpb__AuthRoleAddRequest ra = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
        Etcdserverpb__AuthUserGrantRoleRequest gr = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
        ra.name = gr.user = gr.role = "root";
        ProtobufCMessage *x = NULL;
        gc_status_t st2 = {0};
        if (call(c, conn, "/etcdserverpb.Auth/RoleAdd", &ra.base,
                 &etcdserverpb__auth_role_add_response__descriptor, &x, &st2) == 0)
            protobuf_c_message_free_unpacked(x, NULL);
        x = NULL;
        if (call(c, conn, "/etcdserverpb.Auth/UserGrantRole", &gr.base,
                 &etcdserverpb__auth_user_grant_role_response__descriptor, &x, &st2) == 0)
            protobuf_c_message_free_unpacked(x, NULL);
        st.code = 0;
        r = call(c, conn, "/etcdserverpb.Auth/AuthEnable", &req.base,
                 &etcdserverpb__auth_enable_response__descriptor, &resp, &st);
    }
    gc_close(conn);
    if (r < 0) return fail(EXIT_ERROR, "%s", st.message);
    if (c->fmt == CF_JSON) {
        cf_json_message(stdout, resp);
        fputc('\n', stdout);
    } else
        printf("Authentication Enabled\n");
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int cmd_auth_disable(ctl_t *c) {
    if (need_args(c, 0, "auth disable command does not accept any arguments")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthDisableRequest req = ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
    return auth_simple(c, "AuthDisable", &req.base, &etcdserverpb__auth_disable_response__descriptor,
                       "Authentication Disabled");
}

/* auth status (etcd 3.5's AuthStatus; etcd 3.4 answers Unimplemented). */
static int cmd_auth_status(ctl_t *c) {
    if (need_args(c, 0, "auth status command does not accept any arguments")) return EXIT_BAD_ARGS;
    Etcdserverpb__AuthStatusRequest req = ETCDSERVERPB__AUTH_STATUS_REQUEST__INIT;
    ProtobufCMessage *resp;
    int r = auth_call(c, "AuthStatus", &req.base, &etcdserverpb__auth_status_response__descriptor, &resp);
    if (r) return r;
    const Etcdserverpb__AuthStatusResponse *s = (const Etcdserverpb__AuthStatusResponse *)resp;
    if (c->fmt != CF_JSON)
        printf("Authentication Status: %s\nAuthRevision: %" PRIu64 "\n", s->enabled ? "true" : "false",
               s->authrevision);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

/* snapshot save FILE: the Maintenance.Snapshot stream of the first endpoint
 * (etcdctl needs exactly one endpoint; the first one is used here). */
static int cmd_snapshot_save(ctl_t *c) {
    if (c->nargs != 1) return fail(EXIT_BAD_ARGS, "snapshot save expects one argument");
    gc_status_t st = {0};
    gc_conn_t *conn = dial(c, c->eps[0], &st);
    if (!conn) return fail(EXIT_ERROR, "%s", st.message);
    char err[512];
    uint64_t bytes = 0;
    int r = ctl_snapshot_save(conn, c->args[0], 0, &bytes, err, sizeof err);
    gc_close(conn);
    if (r != 0) return fail(EXIT_ERROR, "%s", err);
    printf("Snapshot saved at %s\n", c->args[0]);
    return 0;
}

/* snapshot status FILE: etcdctl's hash, revision, keys and size. */
static int cmd_snapshot_status(ctl_t *c) {
    if (c->nargs != 1) return fail(EXIT_BAD_ARGS, "snapshot status requires exactly one argument");
    if (c->fmt != CF_SIMPLE && c->fmt != CF_JSON) return fail(EXIT_BAD_FEATURE, "unsupported output format");
    char err[512];
    if (ctl_snapshot_status(c->args[0], c->fmt == CF_JSON, err, sizeof err) != 0)
        return fail(EXIT_ERROR, "%s", err);
    return 0;
}

/* The restore flags with etcdctl's defaults (dd and ic hold the derived
 * ones). */
static ctl_restore_opts_t restore_opts(const ctl_t *c, char *dd, size_t ddlen, char *ic, size_t iclen) {
    ctl_restore_opts_t o = {
        .name = c->o.name ? c->o.name : "default",
        .initial_cluster_token = c->o.initial_cluster_token ? c->o.initial_cluster_token : "etcd-cluster",
        .initial_advertise_peer_urls =
            c->o.initial_advertise_peer_urls ? c->o.initial_advertise_peer_urls : "http://localhost:2380",
        .skip_hash_check = c->o.skip_hash_check};
    snprintf(dd, ddlen, "%s.etcd", o.name);
    o.data_dir = c->o.data_dir ? c->o.data_dir : dd;
    snprintf(ic, iclen, "%s=%s", o.name, o.initial_advertise_peer_urls);
    o.initial_cluster = c->o.initial_cluster ? c->o.initial_cluster : ic;
    return o;
}

/* snapshot restore FILE: a kshim data dir from an etcd snapshot file. */
static int cmd_snapshot_restore(ctl_t *c) {
    if (c->nargs != 1) return fail(EXIT_BAD_ARGS, "snapshot restore requires exactly one argument");
    char dd[4096], ic[4096];
    ctl_restore_opts_t o = restore_opts(c, dd, sizeof dd, ic, sizeof ic);
    o.file = c->args[0];
    ctl_restore_result_t res;
    char err[1024] = "";
    if (ctl_snapshot_restore(&o, &res, err, sizeof err) != 0) return fail(EXIT_ERROR, "%s", err);
    printf("restored snapshot %s into %s: revision %lld, compact revision %lld, %llu versions, %llu keys, "
           "%llu leases, %llu users, %llu roles (%s)\n",
           o.file, o.data_dir, (long long)res.revision, (long long)res.compact_rev,
           (unsigned long long)res.versions, (unsigned long long)res.live_keys,
           (unsigned long long)res.leases, (unsigned long long)res.users, (unsigned long long)res.roles,
           res.hash_checked ? "sha256 checked" : "hash check skipped");
    return 0;
}

static gc_conn_t *dial_from(void *arg, gc_status_t *st) {
    ctl_t *c = arg;
    return dial(c, c->o.from, st);
}

/* migrate --from URL --data-dir D ...: see ctl_migrate.h. */
static int cmd_migrate(ctl_t *c) {
    if (c->nargs != 0) return fail(EXIT_BAD_ARGS, "migrate takes no arguments");
    if (!c->o.from) return fail(EXIT_BAD_ARGS, "migrate needs --from (the source etcd's client URL)");
    char dd[4096], ic[4096];
    ctl_migrate_opts_t o = {.restore = restore_opts(c, dd, sizeof dd, ic, sizeof ic),
                            .dial = dial_from,
                            .dial_arg = c,
                            .cutover_file = c->o.cutover_file,
                            .duration_ms = c->o.duration_ms,
                            .sync_every = (int)c->o.sync_every,
                            .timeout_ms = c->o.command_timeout_ms};
    ctl_migrate_result_t r;
    char err[2048] = "";
    if (ctl_migrate(&o, &r, err, sizeof err) != 0) return fail(EXIT_ERROR, "%s", err);
    printf("migrated %s into %s: final revision %lld (snapshot revision %lld, compact revision %lld), %llu "
           "keys, "
           "%llu revisions and %llu events applied from the watch, %llu leases, %llu users, %llu roles%s, "
           "%llu reconnects\n",
           c->o.from, o.restore.data_dir, (long long)r.final_rev, (long long)r.restore.revision,
           (long long)r.restore.compact_rev, (unsigned long long)r.keys, (unsigned long long)r.revisions,
           (unsigned long long)r.events, (unsigned long long)r.leases, (unsigned long long)r.users,
           (unsigned long long)r.roles, r.auth_copied ? "" : " (users/roles: the snapshot's)",
           (unsigned long long)r.reconnects);
    if (r.users_without_password)
        printf("%llu users created after the snapshot have no password: set one with `user passwd`\n",
               (unsigned long long)r.users_without_password);
    return 0;
}

static int cmd_help(ctl_t *c);

typedef struct ctl_cmd {
    const char *name; /* one or two words */
    int (*fn)(ctl_t *c);
    const char *usage;
} ctl_cmd_t;

static const ctl_cmd_t COMMANDS[] = {
    {"get", cmd_get,
     "get KEY [RANGE_END] [--prefix] [--from-key] [--limit N] [--rev N] "
     "[--keys-only] [--count-only]"},
    {"put", cmd_put, "put KEY VALUE [--prev-kv] [--lease HEXID]"},
    {"del", cmd_del, "del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]"},
    {"compact", cmd_compact, "compact REV [--physical]"},
    {"member list", cmd_member_list, "member list"},
    {"endpoint status", cmd_endpoint_status, "endpoint status"},
    {"endpoint health", cmd_endpoint_health, "endpoint health"},
    {"user add", cmd_user_add, "user add NAME[:PASSWORD] [--new-user-password PW] [--no-password]"},
    {"user get", cmd_user_get, "user get NAME"},
    {"user list", cmd_user_list, "user list"},
    {"user delete", cmd_user_delete, "user delete NAME"},
    {"user passwd", cmd_user_passwd, "user passwd NAME [--new-user-password PW] (else stdin)"},
    {"user grant-role", cmd_user_grant_role, "user grant-role NAME ROLE"},
    {"user revoke-role", cmd_user_revoke_role, "user revoke-role NAME ROLE"},
    {"role add", cmd_role_add, "role add ROLE"},
    {"role get", cmd_role_get, "role get ROLE"},
    {"role list", cmd_role_list, "role list"},
    {"role delete", cmd_role_delete, "role delete ROLE"},
    {"role grant-permission", cmd_role_grant_permission,
     "role grant-permission ROLE read|write|readwrite KEY [END] [--prefix] [--from-key]"},
    {"role revoke-permission", cmd_role_revoke_permission,
     "role revoke-permission ROLE KEY [END] [--prefix] [--from-key]"},
    {"auth enable", cmd_auth_enable, "auth enable"},
    {"auth disable", cmd_auth_disable, "auth disable"},
    {"auth status", cmd_auth_status, "auth status"},
    {"snapshot save", cmd_snapshot_save, "snapshot save FILE"},
    {"snapshot status", cmd_snapshot_status, "snapshot status FILE [-w json]"},
    {"snapshot restore", cmd_snapshot_restore,
     "snapshot restore FILE [--data-dir DIR] [--name NAME] [--initial-cluster NAME=URLS] "
     "[--initial-cluster-token TOKEN] [--initial-advertise-peer-urls URLS] [--skip-hash-check]"},
    {"migrate", cmd_migrate,
     "migrate --from URL --data-dir DIR [--name NAME] [--initial-cluster NAME=URLS] [--initial-cluster-token "
     "T] "
     "[--initial-advertise-peer-urls URLS] [--until-signal | --cutover-file F | --duration D] [--sync-every "
     "N]"},
    {"version", cmd_version, "version"},
    {"help", cmd_help, "help"},
};
#define NCOMMANDS ((int)(sizeof COMMANDS / sizeof COMMANDS[0]))

static int cmd_help(ctl_t *c) {
    printf("kshimctl: admin client for kshim (and etcd v3)\n\nUsage: kshimctl [flags] COMMAND "
           "[args]\n\nCommands:\n");
    for (int i = 0; i < NCOMMANDS; i++) printf("  %s\n", COMMANDS[i].usage);
    printf("\nGlobal flags:\n");
    for (int i = 0; i < NFLAGS; i++)
        if (!FLAGS[i].commands) printf("  --%-26s %s\n", FLAGS[i].name, FLAGS[i].help);
    return 0;
}

/* ---------- main ---------- */

/* Number of words of cmd matched by the positionals, or 0. */
static int match_command(const ctl_cmd_t *cmd, char **pos, int npos) {
    char words[64];
    snprintf(words, sizeof words, "%s", cmd->name);
    int n = 0;
    for (char *save, *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save), n++)
        if (n >= npos || strcmp(pos[n], w) != 0) return 0;
    return n;
}

static int split_endpoints(ctl_t *c) {
    snprintf(c->epbuf, sizeof c->epbuf, "%s", c->o.endpoints);
    for (char *save, *e = strtok_r(c->epbuf, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        if (c->neps == MAX_ENDPOINTS) return -1;
        c->eps[c->neps++] = e;
    }
    return c->neps > 0 ? 0 : -1;
}

/* Check that every flag given applies to cmd. */
static int check_flags(const ctl_parsed_t *p, const char *cmd) {
    for (int i = 0; i < NFLAGS; i++)
        if ((p->seen >> i & 1) && !ctl_flag_allowed(&FLAGS[i], cmd))
            return fail(EXIT_ERROR, "unknown flag: --%s", FLAGS[i].name);
    return 0;
}

int main(int argc, char **argv) {
    static ctl_t c;
    c.o.endpoints = "127.0.0.1:2379";
    c.o.write_out = "simple";
    c.o.dial_timeout_ms = 2000;
    c.o.command_timeout_ms = 5000;
    ctl_parsed_t p;
    char err[256];
    if (ctl_parse(FLAGS, NFLAGS, argc, argv, &c.o, &p, err, sizeof err) < 0)
        return fail(EXIT_ERROR, "%s", err);
    int fmt = cf_parse_format(c.o.write_out);
    if (fmt < 0) return fail(EXIT_BAD_FEATURE, "unsupported output format");
    c.fmt = (cf_format_t)fmt;
    if (split_endpoints(&c) < 0) return fail(EXIT_BAD_ARGS, "bad --endpoints");
    if (p.npos == 0 || c.o.help) return cmd_help(&c);
    for (int i = 0; i < NCOMMANDS; i++) {
        int words = match_command(&COMMANDS[i], p.pos, p.npos);
        if (!words) continue;
        if (check_flags(&p, COMMANDS[i].name)) return EXIT_ERROR;
        c.args = p.pos + words;
        c.nargs = p.npos - words;
        return COMMANDS[i].fn(&c);
    }
    return fail(EXIT_BAD_ARGS, "unknown command \"%s\" (try kshimctl help)", p.pos[0]);
}
