/*
 * fuzz_client_conn.c: one client connection's bytes, plain TCP (no TLS),
 * into a whole kshim member running in this process: HTTP/2 (nghttp2),
 * gRPC framing, protobuf decoding, auth checks and the etcd services, with
 * the real Raft node and LevelDB store behind them (server_run on a thread,
 * data in a scratch directory, listening on an ephemeral 127.0.0.1 port).
 *
 * Each input is written on a fresh connection; the answers are read until
 * the member goes quiet for 20 ms (writes answer after apply, reads from a
 * reader thread), then the write side is shut and the rest is read.
 * The member must survive every input: after each one a fresh connection
 * must still be accepted (a crash or a wedged loop fails the run).
 * Seeds (corpus/fuzz_client_conn/) are real gRPC conversations made by
 * gen_conn_seeds.py.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "server.h"

static server_config_t cfg;
static int port;
static char url[64], data_dir[4200];

static void *server_thread(void *arg) {
    (void)arg;
    int rc = server_run(&cfg);
    fprintf(stderr, "fuzz_client_conn: the member stopped (exit code %d)\n", rc);
    abort(); /* the member never stops on its own while fuzzed */
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

static int connect_member(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    server_config_defaults(&cfg);
    snprintf(data_dir, sizeof data_dir, "%s/member", fuzz_tmpdir());
    port = free_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    cfg.name = "fuzz";
    cfg.data_dir = data_dir;
    cfg.listen_client_urls[0] = url;
    cfg.n_listen_client_urls = 1;
    cfg.advertise_client_urls[0] = url;
    cfg.n_advertise_client_urls = 1;
    cfg.n_listen_metrics_urls = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, server_thread, NULL) != 0) abort();
    pthread_detach(t);
    for (int i = 0; i < 600; i++) { /* up to a minute for the member to serve */
        int fd = connect_member();
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "fuzz_client_conn: the member never listened on %s\n", url);
    abort();
}

/* Reads until EOF, an error, or quiet_ms without data; returns the bytes read. */
static size_t drain(int fd, int quiet_ms) {
    char buf[65536];
    size_t total = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, quiet_ms) > 0) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        total += (size_t)n;
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = connect_member();
    assert(fd >= 0);
    size_t off = 0, answered = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) break; /* the member closed on us: allowed */
        off += (size_t)w;
        answered += drain(fd, 0);
    }
    answered += drain(fd, 20); /* writes answer after apply, reads from a reader thread */
    shutdown(fd, SHUT_WR);
    answered += drain(fd, 20);
    close(fd);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "fuzz_client_conn: %zu bytes in, %zu out\n", size, answered);
    /* Still alive and accepting? */
    int probe = connect_member();
    assert(probe >= 0);
    close(probe);
    return 0;
}
