/*
 * svc_gateway.c: plain HTTP on the client port, as etcd 3.4 serves it next to
 * gRPC (HTTP/1.1, or HTTP/2 requests that are not application/grpc):
 *   /health, /metrics  svc_metrics_serve (the metrics port's own handlers)
 *   /version           {"etcdserver":..,"etcdcluster":..} (version.h, the
 *                      version kshim reports in StatusResponse too)
 *   /v3/..., /v3beta/  etcd's grpc-gateway: a POST's JSON body becomes the
 *                      request message of the gRPC method the path maps to
 *                      (etcd's rpc.proto google.api.http bindings), the
 *                      method runs as a local call of the gRPC server (the
 *                      same registered handler, auth and all), and its
 *                      answer goes back as JSON: one body for a unary
 *                      method; for a server stream, 200 and one
 *                      {"result":{...}} line per message. Errors are
 *                      grpc-gateway v1's: {"error","message","code"} with
 *                      the HTTP status of the gRPC code (a stream that
 *                      already answered ends with {"error":{...}}).
 *   OPTIONS (any path) 200 and the CORS headers, as etcd's CORS handler
 *   /v3                301 to /v3/ (Go's ServeMux)
 *   anything else      Go's 404 "404 page not found".
 * The JSON mapping is proto/pbjson.c's, driven by the service descriptors
 * (rpc.pb-c.c, v3lock.pb-c.c, v3election.pb-c.c): no code per message.
 * The Authorization header is the auth token, as etcd's gateway passes it
 * on.
 * Streams: etcd's gateway reaches the server through one gRPC client
 * connection of its own, so --max-concurrent-streams bounds the gateway
 * requests in flight together (etcd's TestV3Curl_MaxStreams_ReachLimit: with
 * every stream taken by a watch, a range waits until the client gives up).
 * Here the same bound holds: a request past it waits in a FIFO and starts
 * when one in flight ends, or is dropped when its client goes away.
 * Owns one gw_request_t per gateway request: its exchange reference, its
 * local call and, for a unary method, the response JSON until the status;
 * and struct svc_gateway (s->gateway): the count in flight and the queue.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_check.h"
#include "grpc.h"
#include "http1.h"
#include "http_exchange.h"
#include "log.h"
#include "pbjson.h"
#include "rpc.pb-c.h"
#include "services.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"
#include "version.h"

/* Go's net/http answers for what has no handler, and what every answer of
 * etcd's client port carries (etcd 3.4 wraps its mux in a CORS handler). */
#define CORS                                                                \
    "Access-Control-Allow-Headers: accept, content-type, authorization\r\n" \
    "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\nAccess-Control-Allow-Origin: *\r\n"
/* grpc-gateway forwards the gRPC response headers as Grpc-Metadata-*. */
#define GRPC_MD "Grpc-Metadata-Content-Type: application/grpc\r\n"
#define TEXT "text/plain; charset=utf-8"
#define JSON "application/json"

typedef struct route {
    const char *path; /* after "/v3" */
    const ProtobufCServiceDescriptor *service;
    const char *method;
    int streaming;     /* server streaming: chunked {"result":...} lines */
    int client_stream; /* every JSON value of the body is one request */
} route_t;

/* etcd 3.4's etcdserverpb/rpc.proto google.api.http post bindings; where
 * one path names two methods (Hash, HashKV), the first registered wins, as
 * in grpc-gateway's mux. */
static const route_t ROUTES[] = {
    {"/kv/range", &etcdserverpb__kv__descriptor, "Range", 0, 0},
    {"/kv/put", &etcdserverpb__kv__descriptor, "Put", 0, 0},
    {"/kv/deleterange", &etcdserverpb__kv__descriptor, "DeleteRange", 0, 0},
    {"/kv/txn", &etcdserverpb__kv__descriptor, "Txn", 0, 0},
    {"/kv/compaction", &etcdserverpb__kv__descriptor, "Compact", 0, 0},
    {"/watch", &etcdserverpb__watch__descriptor, "Watch", 1, 1},
    {"/lease/grant", &etcdserverpb__lease__descriptor, "LeaseGrant", 0, 0},
    {"/lease/revoke", &etcdserverpb__lease__descriptor, "LeaseRevoke", 0, 0},
    {"/kv/lease/revoke", &etcdserverpb__lease__descriptor, "LeaseRevoke", 0, 0},
    {"/lease/keepalive", &etcdserverpb__lease__descriptor, "LeaseKeepAlive", 1, 1},
    {"/lease/timetolive", &etcdserverpb__lease__descriptor, "LeaseTimeToLive", 0, 0},
    {"/kv/lease/timetolive", &etcdserverpb__lease__descriptor, "LeaseTimeToLive", 0, 0},
    {"/lease/leases", &etcdserverpb__lease__descriptor, "LeaseLeases", 0, 0},
    {"/kv/lease/leases", &etcdserverpb__lease__descriptor, "LeaseLeases", 0, 0},
    {"/cluster/member/add", &etcdserverpb__cluster__descriptor, "MemberAdd", 0, 0},
    {"/cluster/member/remove", &etcdserverpb__cluster__descriptor, "MemberRemove", 0, 0},
    {"/cluster/member/update", &etcdserverpb__cluster__descriptor, "MemberUpdate", 0, 0},
    {"/cluster/member/list", &etcdserverpb__cluster__descriptor, "MemberList", 0, 0},
    {"/cluster/member/promote", &etcdserverpb__cluster__descriptor, "MemberPromote", 0, 0},
    {"/maintenance/alarm", &etcdserverpb__maintenance__descriptor, "Alarm", 0, 0},
    {"/maintenance/status", &etcdserverpb__maintenance__descriptor, "Status", 0, 0},
    {"/maintenance/defragment", &etcdserverpb__maintenance__descriptor, "Defragment", 0, 0},
    {"/maintenance/hash", &etcdserverpb__maintenance__descriptor, "Hash", 0, 0},
    {"/maintenance/snapshot", &etcdserverpb__maintenance__descriptor, "Snapshot", 1, 0},
    {"/maintenance/transfer-leadership", &etcdserverpb__maintenance__descriptor, "MoveLeader", 0, 0},
    {"/auth/enable", &etcdserverpb__auth__descriptor, "AuthEnable", 0, 0},
    {"/auth/disable", &etcdserverpb__auth__descriptor, "AuthDisable", 0, 0},
    {"/auth/authenticate", &etcdserverpb__auth__descriptor, "Authenticate", 0, 0},
    {"/auth/user/add", &etcdserverpb__auth__descriptor, "UserAdd", 0, 0},
    {"/auth/user/get", &etcdserverpb__auth__descriptor, "UserGet", 0, 0},
    {"/auth/user/list", &etcdserverpb__auth__descriptor, "UserList", 0, 0},
    {"/auth/user/delete", &etcdserverpb__auth__descriptor, "UserDelete", 0, 0},
    {"/auth/user/changepw", &etcdserverpb__auth__descriptor, "UserChangePassword", 0, 0},
    {"/auth/user/grant", &etcdserverpb__auth__descriptor, "UserGrantRole", 0, 0},
    {"/auth/user/revoke", &etcdserverpb__auth__descriptor, "UserRevokeRole", 0, 0},
    {"/auth/role/add", &etcdserverpb__auth__descriptor, "RoleAdd", 0, 0},
    {"/auth/role/get", &etcdserverpb__auth__descriptor, "RoleGet", 0, 0},
    {"/auth/role/list", &etcdserverpb__auth__descriptor, "RoleList", 0, 0},
    {"/auth/role/delete", &etcdserverpb__auth__descriptor, "RoleDelete", 0, 0},
    {"/auth/role/grant", &etcdserverpb__auth__descriptor, "RoleGrantPermission", 0, 0},
    {"/auth/role/revoke", &etcdserverpb__auth__descriptor, "RoleRevokePermission", 0, 0},
    /* v3lock.proto and v3election.proto (etcd 3.4 registers both gateways) */
    {"/lock/lock", &v3lockpb__lock__descriptor, "Lock", 0, 0},
    {"/lock/unlock", &v3lockpb__lock__descriptor, "Unlock", 0, 0},
    {"/election/campaign", &v3electionpb__election__descriptor, "Campaign", 0, 0},
    {"/election/proclaim", &v3electionpb__election__descriptor, "Proclaim", 0, 0},
    {"/election/leader", &v3electionpb__election__descriptor, "Leader", 0, 0},
    {"/election/observe", &v3electionpb__election__descriptor, "Observe", 1, 0},
    {"/election/resign", &v3electionpb__election__descriptor, "Resign", 0, 0},
};

typedef struct gw_request {
    int refs;
    server_t *s;
    http_exchange_t *x;
    grpc_call_t *call;
    const route_t *route;
    const ProtobufCMethodDescriptor *method;
    char *unary_json; /* a unary method's answer, sent with the status */
    size_t unary_len;
    int done;                /* the HTTP answer ended or the client went away */
    int in_flight;           /* counted in svc_gateway.in_flight */
    struct gw_request *next; /* the wait queue */
} gw_request_t;

struct svc_gateway {
    uint32_t max_streams; /* --max-concurrent-streams */
    uint32_t in_flight;
    gw_request_t *wait_head, *wait_tail; /* FIFO of requests past the bound */
    loop_timer_t *kick;                  /* starts waiting requests, outside callbacks */
};

static void start_request(gw_request_t *r);

/* grpc-gateway v1 runtime.HTTPStatusFromCode. */
static int http_status_of(grpc_status_t code) {
    static const int map[] = {200, 408, 500, 400, 504, 404, 409, 403, 429,
                              412, 409, 400, 501, 500, 503, 500, 401};
    return (int)code >= 0 && (int)code <= 16 ? map[code] : 500;
}

/* A JSON string literal of s (json-c does the escaping in pbjson; here the
 * texts are etcd's and gRPC's messages: escape what JSON needs). */
static void json_quote(char *out, size_t outlen, const char *s) {
    size_t n = 0;
    if (outlen < 3) return;
    out[n++] = '"';
    for (; s && *s && n + 7 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, outlen - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n++] = '"';
    out[n] = 0;
}

static void reply_error(http_exchange_t *x, grpc_status_t code, const char *message) {
    char q[1200], body[2600];
    json_quote(q, sizeof q, message ? message : "");
    int n = snprintf(body, sizeof body, "{\"error\":%s,\"message\":%s,\"code\":%d}", q, q, (int)code);
    http_exchange_reply(x, http_status_of(code), JSON, CORS, body, (size_t)n);
}

/* grpc-gateway v1's error chunk on a stream (handleForwardResponseStreamError). */
static void stream_error(http_exchange_t *x, grpc_status_t code, const char *message) {
    char q[1200], body[2600];
    int status = http_status_of(code);
    json_quote(q, sizeof q, message ? message : "");
    int n =
        snprintf(body, sizeof body,
                 "{\"error\":{\"grpc_code\":%d,\"http_code\":%d,\"message\":%s,\"http_status\":\"%s\"}}\n",
                 (int)code, status, q, http_status_text(status));
    if (!x->started) http_exchange_start(x, status, JSON, CORS);
    http_exchange_write(x, body, (size_t)n);
    http_exchange_end(x);
}

static void reply_text(http_exchange_t *x, int status, const char *text) {
    http_exchange_reply(x, status, TEXT, CORS "X-Content-Type-Options: nosniff\r\n", text, strlen(text));
}

static void gw_unref(gw_request_t *r) {
    if (--r->refs > 0) return;
    http_exchange_unref(r->x);
    free(r->unary_json);
    free(r);
}

static void kick_waiting(loop_t *loop, void *arg) {
    (void)loop;
    struct svc_gateway *g = arg;
    g->kick = NULL;
    while (g->wait_head && g->in_flight < g->max_streams) {
        gw_request_t *r = g->wait_head;
        g->wait_head = r->next;
        if (!g->wait_head) g->wait_tail = NULL;
        r->next = NULL;
        start_request(r);
        gw_unref(r); /* the queue's reference */
    }
}

/* A stream is free: start the next waiting request from a timer, not from
 * inside the call or exchange callback that ended this one. */
static void release_stream(server_t *s) {
    struct svc_gateway *g = s->gateway;
    g->in_flight--;
    if (g->wait_head && !g->kick) g->kick = loop_timer_add(s->loop, 0, kick_waiting, g);
}

/* Takes r off the wait queue (its client went away before it started);
 * 1 if it was there (the caller drops the queue's reference). */
static int unqueue(struct svc_gateway *g, gw_request_t *r) {
    for (gw_request_t **p = &g->wait_head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        if (*p != r) continue;
        *p = r->next;
        if (g->wait_tail == r) g->wait_tail = prev;
        r->next = NULL;
        return 1;
    }
    return 0;
}

/* The HTTP side is over (answer ended or client gone): drop the call. */
static void gw_finish(gw_request_t *r) {
    if (r->done) return;
    r->done = 1;
    r->x->on_close = NULL;
    grpc_call_t *call = r->call;
    r->call = NULL;
    if (call) grpc_call_local_close(call); /* cancels it if still running */
    if (r->in_flight) {
        r->in_flight = 0;
        release_stream(r->s);
    } else if (unqueue(r->s->gateway, r)) {
        assert(r->refs >= 2);
        r->refs--; /* the queue's reference */
    }
    gw_unref(r); /* the in-flight reference */
}

static void on_response(void *arg, const uint8_t *msg, size_t len) {
    gw_request_t *r = arg;
    ProtobufCMessage *m = protobuf_c_message_unpack(r->method->output, NULL, len, msg);
    size_t jlen = 0;
    char *json = m ? pbjson_format(m, &jlen) : NULL;
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    if (!json) {
        log_error("gateway: cannot convert a %s response to JSON", r->method->name);
        return;
    }
    if (!r->route->streaming) {
        if (!r->unary_json) {
            r->unary_json = json;
            r->unary_len = jlen;
        } else {
            free(json);
        }
        return;
    }
    /* One write per message: one HTTP/1.1 chunk (or DATA frame) per line,
     * as clients that parse each chunk (python3-etcd3gw) need. */
    char *line = malloc(jlen + 13);
    if (line) {
        memcpy(line, "{\"result\":", 10);
        memcpy(line + 10, json, jlen);
        memcpy(line + 10 + jlen, "}\n", 2);
        if (!r->x->started) http_exchange_start(r->x, 200, JSON, CORS GRPC_MD);
        http_exchange_write(r->x, line, jlen + 12);
        free(line);
    }
    free(json);
}

static void on_status(void *arg, grpc_status_t status, const char *message) {
    gw_request_t *r = arg;
    if (r->done) return;
    if (r->route->streaming) {
        if (status == GRPC_OK) {
            if (!r->x->started) http_exchange_start(r->x, 200, JSON, CORS GRPC_MD);
            http_exchange_end(r->x);
        } else {
            stream_error(r->x, status, message);
        }
    } else if (status == GRPC_OK && r->unary_json) {
        http_exchange_reply(r->x, 200, JSON, CORS GRPC_MD, r->unary_json, r->unary_len);
    } else {
        reply_error(r->x, status == GRPC_OK ? GRPC_INTERNAL : status, message);
    }
    gw_finish(r);
}

/* The HTTP backlog, so Watch and LeaseKeepAlive bound it as for gRPC. */
static size_t on_queued(void *arg) {
    gw_request_t *r = arg;
    return r->done ? 0 : http_exchange_queued(r->x);
}

static const grpc_call_sink_t gw_sink = {on_response, on_status, on_queued};

static void on_client_gone(http_exchange_t *x, void *arg) { gw_finish(arg); }

static const ProtobufCMethodDescriptor *method_of(const route_t *rt) {
    for (unsigned i = 0; i < rt->service->n_methods; i++)
        if (strcmp(rt->service->methods[i].name, rt->method) == 0) return &rt->service->methods[i];
    return NULL;
}

/* Converts one JSON request and hands it to the call. 0, or -1 (err set). */
static int send_request(gw_request_t *r, const char *json, size_t len, size_t *used, char *err,
                        size_t errlen) {
    ProtobufCMessage *m = NULL;
    if (pbjson_parse(r->method->input, json, len, &m, used, err, errlen) != 0) return -1;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        protobuf_c_message_free_unpacked(m, NULL);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    protobuf_c_message_pack(m, buf);
    protobuf_c_message_free_unpacked(m, NULL);
    grpc_call_local_message(r->call, buf, n);
    free(buf);
    return 0;
}

static size_t skip_space(const char *p, size_t off, size_t len) {
    while (off < len && (p[off] == ' ' || p[off] == '\n' || p[off] == '\r' || p[off] == '\t')) off++;
    return off;
}

/* As grpc-gateway: a unary method decodes the first JSON value of the body
 * (an empty body is the empty request, the rest is ignored); a client
 * stream sends every value in turn (an empty body sends none) and stops at
 * the first that does not decode, which fails the request only if it is
 * the first. Then the request side is closed. */
static void run_call(gw_request_t *r) {
    const char *body = r->x->body ? r->x->body : "";
    size_t len = r->x->body_len, off = 0;
    char err[512];
    if (!r->route->client_stream) {
        size_t used;
        if (send_request(r, body, len, &used, err, sizeof err) != 0)
            reply_error(r->x, GRPC_INVALID_ARGUMENT, err);
    } else {
        int first = 1;
        for (off = skip_space(body, 0, len); off < len && !r->done;
             off = skip_space(body, off, len), first = 0) {
            size_t used = 0;
            if (send_request(r, body + off, len - off, &used, err, sizeof err) != 0) {
                if (first) reply_error(r->x, GRPC_INVALID_ARGUMENT, err);
                break;
            }
            off += used;
        }
    }
    if (!r->done && r->call) grpc_call_local_half_close(r->call);
}

static void serve_gateway(server_t *s, http_exchange_t *x, const char *subpath) {
    const route_t *rt = NULL;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0] && !rt; i++)
        if (strcmp(ROUTES[i].path, subpath) == 0) rt = &ROUTES[i];
    const ProtobufCMethodDescriptor *md = rt ? method_of(rt) : NULL;
    if (!md) {
        reply_text(x, 404, "Not Found\n");
        return;
    }
    if (strcmp(x->method, "POST") != 0) {
        reply_text(x, 405, "Method Not Allowed\n");
        return;
    }
    gw_request_t *r = calloc(1, sizeof *r);
    if (!r) {
        reply_error(x, GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->refs = 2; /* in flight (until gw_finish), and this function's */
    r->s = s;
    r->x = x;
    r->route = rt;
    r->method = md;
    http_exchange_ref(x);
    x->on_close = on_client_gone;
    x->on_close_arg = r;
    struct svc_gateway *g = s->gateway;
    if (g->in_flight < g->max_streams && !g->wait_head) {
        start_request(r);
    } else { /* every stream is taken: wait, as a grpc-go client does */
        r->refs++;
        if (g->wait_tail)
            g->wait_tail->next = r;
        else
            g->wait_head = r;
        g->wait_tail = r;
    }
    gw_unref(r);
}

/* Starts r's local call and sends its request (the loop thread). */
static void start_request(gw_request_t *r) {
    server_t *s = r->s;
    http_exchange_t *x = r->x;
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", r->route->service->name, r->method->name);
    const char *token = http_exchange_header(x, "authorization");
    const char *meta[] = {"token", token, NULL};
    r->in_flight = 1;
    s->gateway->in_flight++;
    /* No client certificate identity: etcd's gateway is a gRPC client of its
     * own server, whose auth ignores the CN of a request carrying
     * grpcgateway-accept (or sees the gateway's own certificate). */
    r->call = grpc_call_local_new(s->grpc, path, token ? meta : NULL, NULL, &gw_sink, r);
    if (!r->call) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown method %s for service %s", r->method->name,
                 r->route->service->name);
        reply_error(x, GRPC_UNIMPLEMENTED, msg);
        gw_finish(r);
        return;
    }
    r->refs++; /* this function's, across run_call */
    run_call(r);
    if (!r->done && x->ended) gw_finish(r); /* an error answer was sent */
    gw_unref(r);
}

static void serve_version(http_exchange_t *x) {
    if (strcmp(x->method, "GET") != 0) {
        http_exchange_reply(x, 405, TEXT, CORS "Allow: GET\r\nX-Content-Type-Options: nosniff\r\n",
                            "Method Not Allowed\n", 19);
        return;
    }
    const char body[] =
        "{\"etcdserver\":\"" KSHIM_ETCD_VERSION "\",\"etcdcluster\":\"" KSHIM_ETCD_API_VERSION ".0\"}";
    http_exchange_reply(x, 200, JSON, CORS, body, sizeof body - 1);
}

/* The metrics port's handlers, answered through the exchange. */
static int serve_metrics_paths(server_t *s, http_exchange_t *x) {
    http1_request_t req = {.method = x->method, .path = x->path, .query = x->query};
    http1_reply_t rep = {0};
    if (!svc_metrics_serve(s, &req, &rep)) return 0;
    char extra[512];
    snprintf(extra, sizeof extra, CORS "%s%s", rep.nosniff ? "X-Content-Type-Options: nosniff\r\n" : "",
             rep.extra_header ? rep.extra_header : "");
    http_exchange_reply(x, rep.status, rep.content_type, extra, rep.body, rep.body_len);
    free(rep.body);
    return 1;
}

/* etcd 3.4's access controller (embed/serve.go), before CORS and OPTIONS:
 * with --client-cert-auth and auth on, a /v3/ (or /v3beta/) request whose
 * verified client certificate has a CN is refused, as the gateway cannot
 * pass that identity on. Plain http.Error: no CORS headers. */
static int refused_for_cn(server_t *s, http_exchange_t *x) {
    static const char msg[] =
        "CommonName of client sending a request against gateway will be ignored and not used as expected\n";
    if (!s->cfg->client_cert_auth || !x->peer_cn || !*x->peer_cn || !auth_is_enabled(s)) return 0;
    if (strncmp(x->path, "/v3/", 4) != 0 && strncmp(x->path, "/v3beta/", 8) != 0) return 0;
    http_exchange_reply(x, 400, TEXT, "X-Content-Type-Options: nosniff\r\n", msg, strlen(msg));
    return 1;
}

static void serve(void *ctx, http_exchange_t *x) {
    server_t *s = ctx;
    const char *p = x->path;
    if (refused_for_cn(s, x)) {
        /* answered */
    } else if (strcmp(x->method, "OPTIONS") == 0) { /* etcd 3.4's CORS handler answers every preflight */
        http_exchange_reply(x, 200, NULL, CORS, NULL, 0);
    } else if (strcmp(p, "/v3") == 0 || strcmp(p, "/v3beta") == 0) { /* Go's ServeMux: the subtree's slash */
        const char *body = x->method[0] == 'G' ? "<a href=\"/v3/\">Moved Permanently</a>.\n\n" : "";
        http_exchange_reply(x, 301, body[0] ? "text/html; charset=utf-8" : NULL, CORS "Location: /v3/\r\n",
                            body, strlen(body));
    } else if (strncmp(p, "/v3/", 4) == 0) {
        serve_gateway(s, x, p + 3);
    } else if (strncmp(p, "/v3beta/", 8) == 0) {
        serve_gateway(s, x, p + 7); /* etcd 3.4 rewrites /v3beta/ to /v3/ */
    } else if (strcmp(p, "/version") == 0) {
        serve_version(x);
    } else if (!serve_metrics_paths(s, x)) {
        reply_text(x, 404, "404 page not found\n");
    }
}

int svc_gateway_start(server_t *s) {
    s->gateway = calloc(1, sizeof *s->gateway);
    if (!s->gateway) return -1;
    s->gateway->max_streams = s->cfg->max_concurrent_streams ? s->cfg->max_concurrent_streams : UINT32_MAX;
    if (grpc_server_set_http_handler(s->grpc, serve, s) != 0) {
        log_error("cannot serve HTTP on the client port");
        return -1;
    }
    return 0;
}

void svc_gateway_stop(server_t *s) {
    struct svc_gateway *g = s->gateway;
    if (!g) return;
    while (g->wait_head) {
        gw_request_t *r = g->wait_head;
        g->wait_head = r->next;
        r->x->on_close = NULL;
        r->done = 1;
        assert(r->refs == 2); /* the queue's and the in-flight one */
        r->refs = 1;
        gw_unref(r);
    }
    if (g->kick) loop_timer_cancel(s->loop, g->kick);
    free(g);
    s->gateway = NULL;
}
