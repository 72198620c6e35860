/*
 * lifecycle.c: kshimd's graceful shutdown and systemd notification
 * (lifecycle.h), as etcd does them: on SIGTERM/SIGINT stop accepting,
 * let requests in flight finish (bounded), tell HTTP/2 clients GOAWAY so
 * they go elsewhere, end watch and keep-alive streams with "etcdserver:
 * server stopped", then the store is synced and closed (server_run).
 *
 * Owns: the self-pipe the signal handler writes to (read on the loop, so
 * the drain runs on the loop thread like everything else), the drain timer.
 */
#include "lifecycle.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "grpc.h"
#include "log.h"

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t term_signals; /* SIGINT/SIGTERM seen */
static uint64_t drain_start_ms, drain_deadline_ms;
static loop_timer_t *drain_timer;

static void on_term_signal(int sig) {
    if (term_signals++ > 0) {
        static const char msg[] = "kshimd: second termination signal, exiting now\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    unsigned char b = (unsigned char)sig;
    if (sig_pipe[1] >= 0) {
        ssize_t w = write(sig_pipe[1], &b, 1);
        (void)w;
    }
}

static void check_drained(loop_t *loop, void *arg) {
    server_t *s = arg;
    drain_timer = NULL;
    size_t left = grpc_server_conn_count(s->grpc);
    if (left > 0 && loop_now_ms(loop) < drain_deadline_ms) {
        drain_timer = loop_timer_add(loop, 10, check_drained, s);
        return;
    }
    if (left > 0)
        log_warn("%zu client connections still busy after %d ms; closing them", left, LIFECYCLE_DRAIN_MS);
    else
        log_info("all client connections drained in %llu ms",
                 (unsigned long long)(loop_now_ms(loop) - drain_start_ms));
    loop_stop(loop);
}

static void on_signal_pipe(loop_t *loop, int fd, int events, void *arg) {
    (void)events;
    server_t *s = arg;
    unsigned char sig = 0;
    if (read(fd, &sig, 1) != 1) return;
    loop_del_fd(loop, fd); /* one drain; a second signal exits in the handler */
    log_info("received signal %s; shutting down (draining %zu client connections, up to %d ms)",
             sig == SIGINT ? "interrupt" : "terminated", grpc_server_conn_count(s->grpc), LIFECYCLE_DRAIN_MS);
    lifecycle_sd_notify("STOPPING=1");
    grpc_server_drain(s->grpc);
    drain_start_ms = loop_now_ms(loop);
    drain_deadline_ms = drain_start_ms + LIFECYCLE_DRAIN_MS;
    drain_timer = loop_timer_add(loop, 0, check_drained, s);
}

int lifecycle_start(server_t *s) {
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0 ||
        loop_add_fd(s->loop, sig_pipe[0], LOOP_READ, on_signal_pipe, s) != 0) {
        log_error("cannot set up signal handling: %s", strerror(errno));
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

void lifecycle_stop(server_t *s) {
    if (drain_timer) loop_timer_cancel(s->loop, drain_timer);
    drain_timer = NULL;
    if (sig_pipe[0] < 0) return;
    loop_del_fd(s->loop, sig_pipe[0]);
    int w = sig_pipe[1];
    sig_pipe[1] = -1; /* the handler still exits on a second signal */
    close(w);
    close(sig_pipe[0]);
    sig_pipe[0] = -1;
}

int lifecycle_sd_notify(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sun.sun_path) return -1;
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@') sun.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, alen);
    close(fd);
    return n == (ssize_t)strlen(state) ? 1 : -1;
}
