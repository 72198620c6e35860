/*
 * test_grpc_http.c: plain HTTP on a gRPC listener (grpc_server_set_http_handler)
 * and local calls (grpc_call_local_new), over real sockets with the loop on
 * its own thread: an HTTP/1.1 connection is detected by its first bytes and
 * answered by the handler (method, path, query, headers and body seen;
 * keep-alive); an answer given later from a timer, as a chunked stream, ends
 * with the terminating chunk; a pipelined request waits for the pending
 * answer; a client that goes away while its answer is pending closes the
 * exchange (on_close); a local call runs the registered method, whose
 * messages and status reach the sink; an unknown path has no local call.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "grpc.h"
#include "http_exchange.h"
#include "loop.h"

static loop_t *g_loop;
static grpc_server_t *g_srv;
static pthread_t g_thread;
static int g_port;
static volatile int g_closed_seen; /* on_close runs (loop thread) */

/* A stream answered later: three lines from a timer, then the end. */
typedef struct later {
    http_exchange_t *x;
    int lines;
} later_t;

static void later_tick(loop_t *loop, void *arg) {
    later_t *l = arg;
    if (!http_exchange_is_closed(l->x) && l->lines < 3) {
        char line[32];
        int n = snprintf(line, sizeof line, "line %d\n", l->lines++);
        http_exchange_write(l->x, line, (size_t)n);
        loop_timer_add(loop, 5, later_tick, l);
        return;
    }
    http_exchange_end(l->x);
    http_exchange_unref(l->x);
    free(l);
}

static void on_close(http_exchange_t *x, void *arg) {
    (void)x;
    (void)arg;
    g_closed_seen++;
}

static void hold_tick(loop_t *loop, void *arg) {
    http_exchange_t *x = arg;
    if (!http_exchange_is_closed(x)) {
        loop_timer_add(loop, 5, hold_tick, x);
        return;
    }
    http_exchange_unref(x);
}

static void handler(void *ctx, http_exchange_t *x) {
    (void)ctx;
    if (strcmp(x->path, "/later") == 0) {
        later_t *l = calloc(1, sizeof *l);
        l->x = x;
        http_exchange_ref(x);
        http_exchange_start(x, 200, "text/plain", NULL);
        loop_timer_add(g_loop, 5, later_tick, l);
        return;
    }
    if (strcmp(x->path, "/hold") == 0) { /* never answered: the client leaves */
        http_exchange_ref(x);
        x->on_close = on_close;
        loop_timer_add(g_loop, 5, hold_tick, x);
        return;
    }
    const char *h = http_exchange_header(x, "x-test");
    char body[512];
    int n = snprintf(body, sizeof body, "%s %s q=%s h=%s body=%.*s", x->method, x->path, x->query,
                     h ? h : "-", (int)x->body_len, x->body ? x->body : "");
    http_exchange_reply(x, 200, "text/plain", "X-Extra: 1\r\n", body, (size_t)n);
}

/* A gRPC method for local calls: answers "echo:" + request, then OK. */
static void echo_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    (void)ctx;
    char out[256];
    int n = snprintf(out, sizeof out, "echo:%.*s token=%s", (int)len, (const char *)msg,
                     grpc_call_metadata(call, "token") ? grpc_call_metadata(call, "token") : "-");
    grpc_call_send(call, (const uint8_t *)out, (size_t)n);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static const grpc_method_t echo_method = {.path = "/test.Echo/Unary", .on_message = echo_message};

static void *loop_thread(void *arg) {
    (void)arg;
    loop_run(g_loop);
    return NULL;
}

static int setup(void **state) {
    (void)state;
    char err[256];
    g_loop = loop_new();
    g_srv = grpc_server_new(g_loop, NULL);
    if (!g_loop || !g_srv || grpc_server_register(g_srv, &echo_method) != 0 ||
        grpc_server_set_http_handler(g_srv, handler, NULL) != 0 ||
        grpc_server_listen(g_srv, "http://127.0.0.1:0", NULL, err, sizeof err) != 0)
        return -1;
    g_port = grpc_server_port(g_srv, 0);
    return pthread_create(&g_thread, NULL, loop_thread, NULL);
}

static int teardown(void **state) {
    (void)state;
    loop_stop(g_loop);
    pthread_join(g_thread, NULL);
    grpc_server_free(g_srv);
    loop_free(g_loop);
    return 0;
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_str(int fd, const char *s) {
    assert_int_equal(send(fd, s, strlen(s), 0), (ssize_t)strlen(s));
}

static char *read_until(int fd, const char *want) {
    static char buf[65536];
    size_t n = 0;
    buf[0] = '\0';
    while (!strstr(buf, want) && n < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = '\0';
    }
    return buf;
}

static void test_http1_detected_and_answered(void **state) {
    (void)state;
    int fd = dial();
    send_str(fd,
             "POST /v3/kv/put?a=b HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\nContent-Length: 7\r\n\r\n{\"k\":1}");
    char *out = read_until(fd, "body={\"k\":1}");
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "X-Extra: 1\r\n"));
    assert_non_null(strstr(out, "POST /v3/kv/put q=a=b h=yes body={\"k\":1}"));
    /* keep-alive: a second request on the same connection */
    send_str(fd, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(strstr(read_until(fd, "GET /two"), "GET /two q= h=- body="));
    close(fd);
}

static void test_later_stream_then_pipelined(void **state) {
    (void)state;
    int fd = dial();
    /* The second request is pipelined behind a pending streamed answer. */
    send_str(fd, "GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    char *out = read_until(fd, "GET /after");
    assert_non_null(strstr(out, "Transfer-Encoding: chunked\r\n"));
    char *l0 = strstr(out, "7\r\nline 0\n\r\n"), *l2 = strstr(out, "7\r\nline 2\n\r\n");
    char *end = strstr(out, "\r\n0\r\n\r\n"), *after = strstr(out, "GET /after");
    assert_true(l0 && l2 && end && after && l0 < l2 && l2 < end && end < after);
    close(fd);
}

static void test_client_gone_closes_exchange(void **state) {
    (void)state;
    int before = g_closed_seen;
    int fd = dial();
    send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(50 * 1000);
    close(fd);
    for (int i = 0; i < 200 && g_closed_seen == before; i++) usleep(10 * 1000);
    assert_int_equal(g_closed_seen, before + 1);
}

typedef struct sink_seen {
    char msg[256];
    int messages;
    int finished;
    grpc_status_t status;
    grpc_call_t *call;
} sink_seen_t;

static void sink_message(void *arg, const uint8_t *msg, size_t len) {
    sink_seen_t *s = arg;
    snprintf(s->msg, sizeof s->msg, "%.*s", (int)len, (const char *)msg);
    s->messages++;
}

static void sink_finish(void *arg, grpc_status_t status, const char *message) {
    (void)message;
    sink_seen_t *s = arg;
    s->finished++;
    s->status = status;
    grpc_call_local_close(s->call);
}

static const grpc_call_sink_t sink = {sink_message, sink_finish, NULL};

typedef struct local_job {
    sink_seen_t seen;
    int null_for_unknown;
    volatile int done;
} local_job_t;

static void run_local(void *arg) {
    local_job_t *j = arg;
    const char *md[] = {"token", "tok1", NULL};
    j->seen.call = grpc_call_local_new(g_srv, "/test.Echo/Unary", md, NULL, &sink, &j->seen);
    if (j->seen.call) {
        grpc_call_t *call = j->seen.call;
        grpc_call_ref(call); /* the sink closes it (drops the caller's reference) */
        grpc_call_local_message(call, (const uint8_t *)"hi", 2);
        /* A message after the status is ignored (the call is closed). */
        grpc_call_local_message(call, (const uint8_t *)"again", 5);
        grpc_call_unref(call);
    }
    j->null_for_unknown = grpc_call_local_new(g_srv, "/test.Echo/Nope", NULL, NULL, &sink, &j->seen) == NULL;
    j->done = 1;
}

static void test_local_call_runs_method(void **state) {
    (void)state;
    local_job_t j = {0};
    assert_int_equal(loop_post(g_loop, run_local, &j), 0);
    for (int i = 0; i < 500 && !j.done; i++) usleep(10 * 1000);
    assert_true(j.done);
    assert_int_equal(j.seen.messages, 1);
    assert_string_equal(j.seen.msg, "echo:hi token=tok1");
    assert_int_equal(j.seen.finished, 1);
    assert_int_equal(j.seen.status, GRPC_OK);
    assert_true(j.null_for_unknown);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http1_detected_and_answered),
        cmocka_unit_test(test_later_stream_then_pipelined),
        cmocka_unit_test(test_client_gone_closes_exchange),
        cmocka_unit_test(test_local_call_runs_method),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
