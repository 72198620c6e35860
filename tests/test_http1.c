/*
 * test_http1.c: apiserver-shim/transport/http1.c, the HTTP/1.1 server of
 * the metrics URLs, over real sockets with the loop on its own thread: the
 * handler sees method, path and query; keep-alive and pipelined requests
 * are answered in order; HEAD gets no body; HTTP/1.0 and Connection: close
 * close after the answer (and nothing pipelined after it is answered); garbage gets Go's 400 and a close; an oversized
 * URL gets 414; a partial request does not block another connection.
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

#include "http1.h"
#include "loop.h"

static loop_t *g_loop;
static http1_server_t *g_srv;
static pthread_t g_thread;
static int g_port;

/* Answers "METHOD PATH QUERY" with 200, 404 for /missing. */
static void echo(void *ctx, const http1_request_t *req, http1_reply_t *r) {
    (void)ctx;
    char buf[256];
    snprintf(buf, sizeof buf, "%s %s %s", req->method, req->path, req->query);
    r->status = strcmp(req->path, "/missing") == 0 ? 404 : 200;
    r->content_type = "text/plain";
    r->body = strdup(buf);
    r->body_len = strlen(buf);
}

static void *loop_thread(void *arg) {
    (void)arg;
    loop_run(g_loop);
    return NULL;
}

static int setup(void **state) {
    (void)state;
    char err[256];
    g_loop = loop_new();
    g_srv = http1_server_new(g_loop, echo, NULL);
    if (!g_loop || !g_srv || http1_server_listen(g_srv, "http://127.0.0.1:0", err, sizeof err) != 0)
        return -1;
    g_port = http1_server_port(g_srv, 0);
    return pthread_create(&g_thread, NULL, loop_thread, NULL);
}

static int teardown(void **state) {
    (void)state;
    loop_stop(g_loop);
    pthread_join(g_thread, NULL);
    http1_server_free(g_srv);
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

/* Reads until the peer closes (or the 5 s timeout); returns the bytes. */
static char *read_until_close(int fd) {
    static char buf[65536];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0) n += (size_t)r;
    buf[n] = '\0';
    return buf;
}

/* Reads until want appears (keep-alive connection stays open). */
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

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static void test_method_path_query(void **state) {
    (void)state;
    int fd = dial();
    send_str(
        fd, "GET /health?exclude=NOSPACE&serializable=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char *out = read_until_close(fd);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Length: 45\r\n"));
    assert_non_null(strstr(out, "\r\n\r\nGET /health exclude=NOSPACE&serializable=true"));
    close(fd);
}

static void test_keepalive_pipelined_in_order(void **state) {
    (void)state;
    int fd = dial();
    send_str(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
    char *out = read_until(fd, "POST /c ");
    char *a = strstr(out, "GET /a "), *b = strstr(out, "GET /missing "), *c = strstr(out, "POST /c ");
    assert_true(a && b && c && a < b && b < c);
    assert_non_null(strstr(out, "HTTP/1.1 404 Not Found"));
    /* still open: one more request on the same connection */
    send_str(fd, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(strstr(read_until(fd, "GET /d "), "GET /d "));
    close(fd);
}

static void test_head_has_no_body(void **state) {
    (void)state;
    int fd = dial();
    send_str(
        fd, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char *out = read_until_close(fd);
    assert_null(strstr(out, "HEAD /h "));
    assert_int_equal(count(out, "HTTP/1.1 200 OK"), 2);
    char *second = strstr(out, "\r\n\r\n");
    assert_non_null(second);
    assert_memory_equal(second + 4, "HTTP/1.1 200 OK", 15);
    close(fd);
}

static void test_nothing_after_close(void **state) {
    (void)state;
    int fd = dial();
    send_str(fd, "GET /first HTTP/1.1\r\nConnection: close\r\n\r\nGET /second HTTP/1.1\r\n\r\n");
    char *out = read_until_close(fd);
    assert_non_null(strstr(out, "GET /first "));
    assert_null(strstr(out, "GET /second "));
    close(fd);
}

/* 3000 pipelined requests (~1 MB of answers) sent by a thread while this
 * one waits before reading: the server stops reading while its answers
 * wait (the sender blocks), then answers all, in order. */
typedef struct sender {
    int fd;
    const char *buf;
    size_t len;
} sender_t;

static void *send_all(void *arg) {
    sender_t *sd = arg;
    size_t off = 0;
    while (off < sd->len) {
        ssize_t r = send(sd->fd, sd->buf + off, sd->len - off, 0);
        if (r <= 0) break;
        off += (size_t)r;
    }
    return NULL;
}

static void test_pipelined_without_reading(void **state) {
    (void)state;
    int fd = dial();
    static char reqs[3000 * 300];
    char pad[257];
    memset(pad, 'x', 256);
    pad[256] = '\0';
    size_t n = 0;
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(reqs + n, sizeof reqs - n, "GET /p%d/%s HTTP/1.1\r\nHost: x\r\n\r\n", i, pad);
    n += (size_t)snprintf(reqs + n, sizeof reqs - n, "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n");
    sender_t sd = {.fd = fd, .buf = reqs, .len = n};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &sd), 0);
    usleep(200 * 1000); /* let the answers pile up unread */
    static char out[4 << 20];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof out - 1 && (r = recv(fd, out + got, sizeof out - 1 - got, 0)) > 0) got += (size_t)r;
    out[got] = '\0';
    pthread_join(t, NULL);
    assert_true(got > (256u << 10) * 2);
    assert_int_equal(count(out, "HTTP/1.1 200 OK"), 3001);
    char *p2999 = strstr(out, "GET /p2999/"), *plast = strstr(out, "GET /last ");
    assert_true(p2999 && plast && p2999 < plast);
    close(fd);
}

static void test_http10_closes(void **state) {
    (void)state;
    int fd = dial();
    send_str(fd, "GET /old HTTP/1.0\r\n\r\n");
    char *out = read_until_close(fd); /* returns only because the server closed */
    assert_non_null(strstr(out, "Connection: close"));
    assert_non_null(strstr(out, "GET /old "));
    close(fd);
}

static void test_garbage_gets_400_and_close(void **state) {
    (void)state;
    int fd = dial();
    send_str(fd, "GARBAGE\r\n\r\n");
    char *out = read_until_close(fd);
    assert_string_equal(out, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             "Connection: close\r\n\r\n400 Bad Request");
    close(fd);
}

static void test_oversized_url_414(void **state) {
    (void)state;
    int fd = dial();
    char req[12000];
    memcpy(req, "GET /", 5);
    memset(req + 5, 'a', 10000);
    strcpy(req + 10005, " HTTP/1.1\r\nHost: x\r\n\r\n");
    send_str(fd, req);
    assert_non_null(strstr(read_until_close(fd), "HTTP/1.1 414 "));
    close(fd);
}

static void test_partial_does_not_block(void **state) {
    (void)state;
    int slow = dial();
    send_str(slow, "GET /sl");
    int fast = dial();
    send_str(fast, "GET /fast HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(read_until_close(fast), "GET /fast "));
    close(fast);
    send_str(slow, "ow HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(read_until_close(slow), "GET /slow "));
    close(slow);
}

static void test_bad_listen_urls(void **state) {
    (void)state;
    char err[256];
    assert_int_equal(http1_server_listen(g_srv, "https://127.0.0.1:0", err, sizeof err), -1);
    assert_int_equal(http1_server_listen(g_srv, "http://example.com:2381", err, sizeof err), -1);
    assert_int_equal(http1_server_listen(g_srv, "http://127.0.0.1", err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_path_query),
        cmocka_unit_test(test_keepalive_pipelined_in_order),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_http10_closes),
        cmocka_unit_test(test_nothing_after_close),
        cmocka_unit_test(test_pipelined_without_reading),
        cmocka_unit_test(test_garbage_gets_400_and_close),
        cmocka_unit_test(test_oversized_url_414),
        cmocka_unit_test(test_partial_does_not_block),
        cmocka_unit_test(test_bad_listen_urls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
