/*
 * h2_conn.c: TCP listeners and HTTP/2 server connections (h2_conn.h).
 *
 * Owns: listening sockets, accepted sockets, their tls_conn (for https), one
 * nghttp2 server session per connection, and the per-connection output
 * buffer. nghttp2 is driven with mem_recv/mem_send only, so all socket I/O is
 * here and non-blocking. A connection is freed only from its own I/O handler
 * or from h2_listener_free, never from inside an nghttp2 callback.
 *
 * Limits against misbehaving clients (each closes only the offender):
 * - a connection must finish its TLS handshake and send the whole HTTP/2
 *   client preface (the magic and its first SETTINGS frame) within
 *   HANDSHAKE_MS of being accepted, else it is closed (slowloris);
 * - at most hooks->max_connections (over every listener sharing
 *   hooks->open_count, else per listener): past it, the listener's oldest
 *   connection still in its handshake makes room, else the new one is
 *   refused (h2c: SETTINGS + GOAWAY ENHANCE_YOUR_CALM, then closed);
 * - one readiness event reads at most READ_BUDGET bytes, so a flooding
 *   client cannot hold the loop from the others;
 * - nghttp2's flood limits (conn_setup_session) end a connection that
 *   floods SETTINGS, PING, RST_STREAM or CONTINUATION with GOAWAY.
 * nghttp2 allocates through the listener's nghttp2_mem (mem_malloc and
 * its siblings), which counts what its sessions hold
 * (h2_listener_session_bytes).
 */
#include "h2_conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

enum {
    READ_CHUNK = 16384,
    READ_BUDGET = 16 * READ_CHUNK, /* per readiness event, then the other connections */
    WRITE_CHUNK = 65536,
    CLOSE_LINGER_MS = 2000,
    HANDSHAKE_MS = 10000, /* accept -> TLS done and client preface received */
    /* Connections in their handshake at once per listener (a TLS one holds
     * ~55 KiB of wolfSSL state): past it the oldest makes room. */
    MAX_HANDSHAKING = 1024,
};

/* nghttp2's flood limits, set explicitly (Debian 12's 1.52.0 has them
 * backported; these are its defaults). */
enum {
    MAX_OUTBOUND_ACK = 1000, /* SETTINGS/PING ACKs queued unsent: a flood -> GOAWAY */
    MAX_SETTINGS = 32,       /* entries in one SETTINGS frame */
    RESET_BURST = 1000,      /* streams cancelled by the client (CVE-2023-44487): */
    RESET_RATE_PER_S = 33,   /*   token bucket; past it GOAWAY INTERNAL_ERROR */
    MAX_CONTINUATIONS = 8,   /* CONTINUATION frames per header block (CVE-2024-27316) */
    PREFACE_MAGIC_LEN = 24,  /* RFC 9113 3.4: the magic, then a SETTINGS frame */
    FRAME_HEADER_LEN = 9,
};

/* CONN_LINGER: a drained connection (h2_listener_drain) that said all it had
 * to say: our side is shut down for writing and the client's last bytes are
 * read and dropped until its EOF, so closing never resets a connection whose
 * answers are still on their way to the client. */
typedef enum conn_state { CONN_HANDSHAKE, CONN_SNIFF, CONN_OPEN, CONN_CLOSING, CONN_LINGER } conn_state_t;

/* The HTTP/2 client preface; what a connection must start with to be HTTP/2
 * when HTTP/1.1 is served too. "PRI " is enough to tell: no HTTP/1.1 method
 * of ours starts so. */
static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
enum { SNIFF_BYTES = 4 };

typedef struct out_buf {
    uint8_t *data;
    size_t off, len, cap; /* pending bytes are data[off .. off+len) */
} out_buf_t;

struct h2_conn {
    h2_listener_t *listener;
    h2_conn_t *prev, *next; /* listener's connection list */
    int fd;
    tls_conn_t *tls; /* NULL for h2c */
    conn_state_t state;
    nghttp2_session *session;
    out_buf_t out;
    int busy;                   /* inside mem_recv/mem_send: no reentry */
    int kicked;                 /* output submitted from outside I/O */
    int read_paused;            /* backpressure */
    int tls_wants_write;        /* last TLS op asked for writability */
    loop_timer_t *linger_timer; /* bounds the handshake (to preface_done) and the CLOSING state */
    void *user;
    uint8_t sniff[SNIFF_BYTES]; /* CONN_SNIFF: the first bytes read */
    size_t sniffed;
    /* The client preface seen so far (preface_track); complete once
     * preface_seen reaches 24 + 9 + the first frame's length. */
    size_t preface_seen;
    uint8_t preface_hdr[FRAME_HEADER_LEN];
    int preface_done;
    int unproven;  /* counted in the listener's nunproven (conn_proven) */
    int read_more; /* the read budget ran out with input left */
};

struct h2_listener {
    loop_t *loop;
    int fd;
    int port;
    tls_server_t *tls;
    const h2_conn_hooks_t *hooks;
    h2_conn_t *conns;
    size_t nconns;
    size_t nunproven;          /* of them, not yet through handshake and client preface */
    loop_timer_t *retry_timer; /* accept paused after EMFILE */
    int draining;              /* h2_listener_drain ran: socket closed, GOAWAY sent */
    uint64_t refused;          /* connections refused over max_connections */
    size_t session_bytes;      /* held by its connections' nghttp2 sessions (mem_*) */
    nghttp2_mem mem;           /* the mem_* allocator, mem_user_data = this listener */
};

static void conn_on_io(loop_t *loop, int fd, int events, void *arg);
static void conn_drive(h2_conn_t *c);

/* ---- nghttp2's allocator: malloc, with each block's size in front ----
 * so that a listener knows what its sessions hold (a closed stream kept
 * per call once grew 20 MB in 3 minutes on one connection). */

enum { MEM_HEAD = 16 }; /* keeps malloc's alignment for nghttp2 */

static void *mem_note(h2_listener_t *l, unsigned char *block, size_t size) {
    if (!block) return NULL;
    memcpy(block, &size, sizeof size);
    l->session_bytes += size;
    return block + MEM_HEAD;
}

static size_t mem_forget(h2_listener_t *l, unsigned char *block) {
    size_t size;
    memcpy(&size, block, sizeof size);
    assert(l->session_bytes >= size);
    l->session_bytes -= size;
    return size;
}

static void *mem_malloc(size_t size, void *ud) {
    if (size > SIZE_MAX - MEM_HEAD) return NULL;
    return mem_note(ud, malloc(size + MEM_HEAD), size);
}

static void mem_free(void *ptr, void *ud) {
    if (!ptr) return;
    unsigned char *block = (unsigned char *)ptr - MEM_HEAD;
    mem_forget(ud, block);
    free(block);
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud) {
    if (size && nmemb > (SIZE_MAX - MEM_HEAD) / size) return NULL;
    size_t n = nmemb * size;
    return mem_note(ud, calloc(1, n + MEM_HEAD), n);
}

static void *mem_realloc(void *ptr, size_t size, void *ud) {
    if (!ptr) return mem_malloc(size, ud);
    if (size > SIZE_MAX - MEM_HEAD) return NULL;
    unsigned char *block = (unsigned char *)ptr - MEM_HEAD;
    size_t old = mem_forget(ud, block);
    unsigned char *grown = realloc(block, size + MEM_HEAD);
    if (!grown) {
        mem_note(ud, block, old); /* the old block stays the session's */
        return NULL;
    }
    return mem_note(ud, grown, size);
}

size_t h2_listener_session_bytes(h2_listener_t *l) { return l->session_bytes; }

/* ---- output buffer ---- */

static int out_append(out_buf_t *b, const uint8_t *p, size_t n) {
    if (b->off > 0 && b->off + b->len + n > b->cap) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->off + b->len, p, n);
    b->len += n;
    return 0;
}

static void out_consume(out_buf_t *b, size_t n) {
    assert(n <= b->len);
    b->off += n;
    b->len -= n;
    if (b->len == 0) b->off = 0;
}

/* ---- connection lifetime ---- */

/* The connection is through its handshake and client preface, or going. */
static void conn_proven(h2_conn_t *c) {
    if (!c->unproven) return;
    c->unproven = 0;
    c->listener->nunproven--;
}

/* Frees c; keep_socket: fd and tls were handed over (on_http1). */
static void conn_release(h2_conn_t *c, int keep_socket) {
    h2_listener_t *l = c->listener;
    conn_proven(c);
    if (l->hooks->on_close && c->session) l->hooks->on_close(c, l->hooks->arg);
    if (c->session) nghttp2_session_del(c->session);
    if (c->linger_timer) loop_timer_cancel(l->loop, c->linger_timer);
    loop_del_fd(l->loop, c->fd);
    if (!keep_socket) {
        tls_conn_free(c->tls);
        close(c->fd);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    l->nconns--;
    if (l->hooks->open_count) {
        assert(*l->hooks->open_count > 0);
        (*l->hooks->open_count)--;
    }
    free(c->out.data);
    free(c);
}

static void conn_close(h2_conn_t *c) { conn_release(c, 0); }

static void linger_expired(loop_t *loop, void *arg) {
    h2_conn_t *c = arg;
    c->linger_timer = NULL;
    conn_close(c);
}

/* Stop reading; send what is queued (GOAWAY included), then close. */
static void conn_start_closing(h2_conn_t *c) {
    if (c->state == CONN_CLOSING) return;
    c->state = CONN_CLOSING;
    c->read_more = 0;
    if (c->linger_timer) loop_timer_cancel(c->listener->loop, c->linger_timer); /* the handshake's */
    c->linger_timer = loop_timer_add(c->listener->loop, CLOSE_LINGER_MS, linger_expired, c);
}

static int conn_setup_session(h2_conn_t *c) {
    const h2_conn_hooks_t *h = c->listener->hooks;
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0) return -1;
    nghttp2_option_set_max_send_header_block_length(opt, 1 << 20);
    /* nghttp2's HTTP messaging rules are stricter than grpc-go's server:
     * they reset a stream whose :authority is not a bare host[:port], and
     * grpc-go clients dialled with a scheme in the endpoint (etcdctl
     * --endpoints http://127.0.0.1:2379 endpoint status) send
     * "http://127.0.0.1:2379". etcd answers those; so do we. What a gRPC
     * request needs (:method POST, :path, content-type application/grpc) is
     * checked by grpc.c dispatch_headers; framing, HPACK and flow control
     * are still nghttp2's. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_settings(opt, MAX_SETTINGS);
    nghttp2_option_set_stream_reset_rate_limit(opt, RESET_BURST, RESET_RATE_PER_S);
    nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
    /* By default nghttp2 keeps every closed stream for RFC 7540's priority
     * tree, up to SETTINGS_MAX_CONCURRENT_STREAMS of them, which etcd's
     * default makes unlimited: one connection's unary calls then held ~250
     * bytes each until it closed. gRPC sends no priorities. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    int rv = nghttp2_session_server_new3(&c->session, h->callbacks, c, opt, &c->listener->mem);
    nghttp2_option_del(opt);
    if (rv != 0) {
        c->session = NULL;
        return -1;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->initial_window_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, h->max_header_list_size},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3) != 0) return -1;
    if (h->connection_window_size > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, h->connection_window_size) !=
            0)
        return -1;
    c->state = CONN_OPEN;
    if (h->on_open) h->on_open(c, h->arg);
    return 0;
}

/* ---- socket I/O (plain or TLS) ---- */

/* >0 bytes, 0 EOF, TLS_WANT_READ/WRITE, TLS_ERROR */
static ssize_t conn_read(h2_conn_t *c, uint8_t *buf, size_t len) {
    if (c->tls) return tls_conn_read(c->tls, buf, len);
    ssize_t n = read(c->fd, buf, len);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return TLS_WANT_READ;
    return TLS_ERROR;
}

static ssize_t conn_write(h2_conn_t *c, const uint8_t *buf, size_t len) {
    if (c->tls) return tls_conn_write(c->tls, buf, len);
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return TLS_WANT_WRITE;
    return TLS_ERROR;
}

/* Counts the client preface in n bytes nghttp2 just accepted (it checks
 * them); once the magic and the whole first frame are in, the handshake
 * timer stops: the client has shown it speaks HTTP/2. */
static void preface_track(h2_conn_t *c, const uint8_t *p, size_t n) {
    if (c->preface_done) return;
    size_t head = PREFACE_MAGIC_LEN + FRAME_HEADER_LEN;
    for (size_t i = 0; i < n && c->preface_seen + i < head; i++)
        if (c->preface_seen + i >= PREFACE_MAGIC_LEN)
            c->preface_hdr[c->preface_seen + i - PREFACE_MAGIC_LEN] = p[i];
    c->preface_seen += n;
    if (c->preface_seen < head) return;
    const uint8_t *h = c->preface_hdr;
    if (c->preface_seen < head + ((size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2])) return;
    c->preface_done = 1;
    conn_proven(c);
    if (c->linger_timer && c->state == CONN_OPEN) {
        loop_timer_cancel(c->listener->loop, c->linger_timer);
        c->linger_timer = NULL;
    }
}

/* Read and feed nghttp2 until the socket is drained or the read budget is
 * spent (then read_more asks to be called again from the next loop pass).
 * Returns -1 if the connection must be closed right away. */
static int conn_read_input(h2_conn_t *c) {
    uint8_t buf[READ_CHUNK];
    size_t budget = READ_BUDGET;
    c->read_more = 0;
    while (c->state == CONN_OPEN) {
        if (budget < sizeof(buf)) {
            c->read_more = 1;
            return 0;
        }
        if (c->out.len > H2_OUT_HIGH) {
            c->read_paused = 1;
            return 0;
        }
        ssize_t n = conn_read(c, buf, sizeof(buf));
        if (n == TLS_WANT_READ) return 0;
        if (n == TLS_WANT_WRITE) {
            c->tls_wants_write = 1;
            return 0;
        }
        if (n <= 0) return -1; /* EOF or error */
        budget -= (size_t)n;
        c->busy++;
        ssize_t rv = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
        c->busy--;
        if (rv < 0) {
            /* Fatal for the session (bad preface, flood, ...): say GOAWAY if
             * nghttp2 still can, then close. A flood is told to calm down,
             * as grpc-go answers a PING flood. */
            int flood = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
            nghttp2_session_terminate_session(c->session,
                                              flood ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
            conn_start_closing(c);
            return 0;
        }
        preface_track(c, buf, (size_t)n);
    }
    return 0;
}

/* Pull frames from nghttp2 into the output buffer (bounded) and write as much
 * as the socket takes. Returns -1 on a fatal socket or session error. */
static int conn_write_output(h2_conn_t *c) {
    for (;;) {
        while (h2_conn_out_has_room(c)) {
            const uint8_t *data;
            c->busy++;
            ssize_t n = nghttp2_session_mem_send(c->session, &data);
            c->busy--;
            if (n < 0) return -1;
            if (n == 0) break;
            if (out_append(&c->out, data, (size_t)n) != 0) return -1;
        }
        if (c->out.len == 0) return 0;
        size_t chunk = c->out.len < WRITE_CHUNK ? c->out.len : WRITE_CHUNK;
        ssize_t w = conn_write(c, c->out.data + c->out.off, chunk);
        if (w == TLS_WANT_WRITE || w == TLS_WANT_READ) {
            c->tls_wants_write = 1;
            return 0;
        }
        if (w < 0) return -1;
        out_consume(&c->out, (size_t)w);
        c->tls_wants_write = 0;
    }
}

static void conn_update_interest(h2_conn_t *c) {
    int ev = 0;
    if (c->state != CONN_CLOSING && !c->read_paused) ev |= LOOP_READ;
    /* read_more: the socket is writable, so the next pass comes back */
    if (c->out.len > 0 || c->tls_wants_write || c->kicked || c->read_more) ev |= LOOP_WRITE;
    loop_mod_fd(c->listener->loop, c->fd, ev);
}

/* A drained connection is done: FIN to the client, then read until its EOF
 * (bounded by the linger timer). */
static void conn_start_linger(h2_conn_t *c) {
    c->state = CONN_LINGER;
    shutdown(c->fd, SHUT_WR);
    if (c->linger_timer) loop_timer_cancel(c->listener->loop, c->linger_timer);
    c->linger_timer = loop_timer_add(c->listener->loop, CLOSE_LINGER_MS, linger_expired, c);
    loop_mod_fd(c->listener->loop, c->fd, LOOP_READ);
}

/* CONN_LINGER: drop what the client still sends; close at its EOF. */
static void conn_linger_read(h2_conn_t *c) {
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n = conn_read(c, buf, sizeof buf);
        if (n > 0) continue;
        if (n == TLS_WANT_READ) return;
        conn_close(c); /* EOF, error, or TLS wanting to write on a shut-down socket */
        return;
    }
}

/* One pass of work after I/O readiness or a kick. May free c. */
static void conn_drive(h2_conn_t *c) {
    for (int round = 0; round < 4; round++) {
        c->kicked = 0;
        if (conn_write_output(c) != 0) {
            conn_close(c);
            return;
        }
        if (c->read_paused && c->out.len <= H2_OUT_HIGH / 2 && c->state == CONN_OPEN) {
            /* Resume: TLS may hold decrypted bytes the socket will not signal. */
            c->read_paused = 0;
            if (conn_read_input(c) != 0) {
                conn_close(c);
                return;
            }
            continue;
        }
        if (!c->kicked) break;
    }
    int session_done = !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session);
    if (c->out.len == 0 && session_done && c->listener->draining && c->state == CONN_OPEN) {
        conn_start_linger(c);
        return;
    }
    if (c->out.len == 0 && (session_done || c->state == CONN_CLOSING)) {
        conn_close(c);
        return;
    }
    conn_update_interest(c);
}

/* After TLS (or at accept): HTTP/2 at once, or detect first (on_http1). */
static int conn_begin(h2_conn_t *c) {
    if (!c->listener->hooks->on_http1) return conn_setup_session(c);
    const char *alpn = c->tls ? tls_conn_alpn(c->tls) : NULL;
    if (alpn && strcmp(alpn, "h2") == 0) return conn_setup_session(c);
    if (alpn && strcmp(alpn, "http/1.1") == 0) {
        h2_listener_t *l = c->listener;
        int fd = c->fd;
        tls_conn_t *tls = c->tls;
        conn_release(c, 1);
        l->hooks->on_http1(fd, tls, NULL, 0, l->hooks->arg);
        return 1;
    }
    c->state = CONN_SNIFF;
    return 0;
}

/* CONN_SNIFF: read the first bytes, then become HTTP/2 (feeding them to
 * nghttp2) or hand the connection to on_http1. Returns -1 to close, 1 when
 * c was handed over (freed), 0 otherwise. */
static int conn_sniff(h2_conn_t *c) {
    while (c->sniffed < SNIFF_BYTES) {
        ssize_t n = conn_read(c, c->sniff + c->sniffed, SNIFF_BYTES - c->sniffed);
        if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) return 0;
        if (n <= 0) return -1;
        size_t before = c->sniffed;
        c->sniffed += (size_t)n;
        if (memcmp(c->sniff + before, H2_PREFACE + before, (size_t)n) != 0) break;
    }
    if (c->sniffed == SNIFF_BYTES && memcmp(c->sniff, H2_PREFACE, SNIFF_BYTES) == 0) {
        if (conn_setup_session(c) != 0) return -1;
        c->busy++;
        ssize_t rv = nghttp2_session_mem_recv(c->session, c->sniff, c->sniffed);
        c->busy--;
        if (rv < 0) return -1;
        preface_track(c, c->sniff, c->sniffed);
        return conn_read_input(c);
    }
    h2_listener_t *l = c->listener;
    int fd = c->fd;
    tls_conn_t *tls = c->tls;
    uint8_t pre[SNIFF_BYTES];
    size_t n = c->sniffed;
    memcpy(pre, c->sniff, n);
    conn_release(c, 1);
    l->hooks->on_http1(fd, tls, pre, n, l->hooks->arg);
    return 1;
}

static void conn_do_handshake(h2_conn_t *c) {
    int rv = tls_conn_handshake(c->tls);
    if (rv == TLS_WANT_READ) {
        loop_mod_fd(c->listener->loop, c->fd, LOOP_READ);
        return;
    }
    if (rv == TLS_WANT_WRITE) {
        loop_mod_fd(c->listener->loop, c->fd, LOOP_WRITE);
        return;
    }
    /* the handshake timer runs on until the client preface is in */
    int begun = rv == 1 ? conn_begin(c) : -1;
    if (begun < 0) {
        conn_close(c);
        return;
    }
    if (begun == 1) return; /* handed over */
    if (c->state == CONN_SNIFF) {
        int sr = conn_sniff(c); /* the first bytes may be buffered behind the handshake */
        if (sr < 0) conn_close(c);
        if (sr == 0 && c->state == CONN_SNIFF) loop_mod_fd(c->listener->loop, c->fd, LOOP_READ);
        if (sr != 0 || c->state == CONN_SNIFF) return;
        conn_drive(c);
        return;
    }
    /* Records may already be buffered right behind the handshake. */
    if (conn_read_input(c) != 0) {
        conn_close(c);
        return;
    }
    conn_drive(c);
}

static void conn_on_io(loop_t *loop, int fd, int events, void *arg) {
    h2_conn_t *c = arg;
    if (c->state == CONN_LINGER) {
        conn_linger_read(c);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        conn_do_handshake(c);
        return;
    }
    if (c->state == CONN_SNIFF) {
        int sr = conn_sniff(c);
        if (sr < 0) conn_close(c);
        if (sr != 0 || c->state == CONN_SNIFF) return;
        conn_drive(c);
        return;
    }
    if ((events & LOOP_READ || c->read_more) && c->state == CONN_OPEN && !c->read_paused) {
        if (conn_read_input(c) != 0) {
            conn_close(c);
            return;
        }
    }
    conn_drive(c);
}

void h2_conn_kick(h2_conn_t *conn) {
    if (conn->state == CONN_LINGER) return;
    conn->kicked = 1;
    if (conn->busy) return; /* the I/O handler on the stack sends it */
    /* Outside I/O (timer, posted result): send from the next loop pass. */
    loop_mod_fd(conn->listener->loop, conn->fd,
                (conn->state != CONN_CLOSING && !conn->read_paused ? LOOP_READ : 0) | LOOP_WRITE);
}

nghttp2_session *h2_conn_session(h2_conn_t *conn) { return conn->session; }
int h2_conn_out_has_room(const h2_conn_t *conn) { return conn->out.len < H2_OUT_HIGH; }
int h2_conn_out_write(h2_conn_t *conn, const uint8_t *p, size_t n) { return out_append(&conn->out, p, n); }
void h2_conn_set_user(h2_conn_t *conn, void *user) { conn->user = user; }
void *h2_conn_get_user(h2_conn_t *conn) { return conn->user; }
const char *h2_conn_peer_cn(h2_conn_t *conn) { return conn->tls ? tls_conn_peer_cn(conn->tls) : NULL; }
loop_t *h2_conn_loop(h2_conn_t *conn) { return conn->listener->loop; }
size_t h2_conn_out_pending(h2_conn_t *conn) { return conn->out.len; }

/* ---- listener ---- */

static void accept_retry(loop_t *loop, void *arg) {
    h2_listener_t *l = arg;
    l->retry_timer = NULL;
    loop_mod_fd(loop, l->fd, LOOP_READ);
}

static void conn_start(h2_listener_t *l, int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    h2_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->listener = l;
    c->fd = fd;
    c->next = l->conns;
    if (l->conns) l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    if (l->hooks->open_count) (*l->hooks->open_count)++;
    c->unproven = 1;
    l->nunproven++;
    if (loop_add_fd(l->loop, fd, LOOP_READ, conn_on_io, c) != 0) {
        conn_close(c);
        return;
    }
    c->linger_timer = loop_timer_add(l->loop, HANDSHAKE_MS, linger_expired, c);
    if (!c->linger_timer) {
        conn_close(c);
        return;
    }
    if (l->tls) {
        c->state = CONN_HANDSHAKE;
        c->tls = tls_conn_new(l->tls, fd);
        if (!c->tls) {
            conn_close(c);
            return;
        }
        return; /* the ClientHello arrives as a read event */
    }
    int begun = conn_begin(c);
    if (begun < 0) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_SNIFF) return; /* the first bytes arrive as a read event */
    conn_drive(c);                      /* our SETTINGS go out first */
}

/* At a limit: close the oldest connection still in its handshake (the
 * list is newest first). 1 if one went, 0 if every one is in use. */
static int evict_unproven(h2_listener_t *l) {
    h2_conn_t *oldest = NULL;
    for (h2_conn_t *c = l->conns; c; c = c->next)
        if (c->unproven) oldest = c;
    if (!oldest) return 0;
    conn_close(oldest);
    return 1;
}

/* Connections counted against max_connections: the server's, or this
 * listener's. */
static size_t conns_open(const h2_listener_t *l) {
    return l->hooks->open_count ? *l->hooks->open_count : l->nconns;
}

/* A connection past max_connections: h2c gets our SETTINGS and GOAWAY
 * ENHANCE_YOUR_CALM (a TLS one cannot be told anything before its
 * handshake), what it already sent is read, then it is closed. */
static void conn_refuse(h2_listener_t *l, int fd) {
    if (!l->tls) {
        static const char why[] = "too many client connections";
        uint8_t msg[FRAME_HEADER_LEN * 2 + 8 + sizeof(why) - 1] = {0};
        msg[3] = NGHTTP2_SETTINGS; /* empty SETTINGS: 9 bytes */
        uint8_t *g = msg + FRAME_HEADER_LEN;
        g[2] = 8 + sizeof(why) - 1;
        g[3] = NGHTTP2_GOAWAY;
        g[FRAME_HEADER_LEN + 7] = NGHTTP2_ENHANCE_YOUR_CALM; /* last stream 0, error code */
        memcpy(g + FRAME_HEADER_LEN + 8, why, sizeof(why) - 1);
        ssize_t w = send(fd, msg, sizeof msg, MSG_NOSIGNAL);
        (void)w; /* a fresh socket takes it; if not, closing is the answer */
    }
    uint8_t sink[4096];
    while (read(fd, sink, sizeof sink) > 0) {
    }
    close(fd);
    if (l->refused++ % 1000 == 0)
        log_warn("client connection refused: %zu open, the --max-client-connections limit (%" PRIu64
                 " refused so far)",
                 conns_open(l), l->refused);
}

static void listener_on_io(loop_t *loop, int fd, int events, void *arg) {
    h2_listener_t *l = arg;
    for (int i = 0; i < 64; i++) {
        int cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            size_t max = l->hooks->max_connections;
            int full = (max && conns_open(l) >= max) || l->nunproven >= MAX_HANDSHAKING;
            if (full && !evict_unproven(l)) {
                conn_refuse(l, cfd);
                continue;
            }
            conn_start(l, cfd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors: level-triggered epoll would spin; back off. */
            loop_mod_fd(loop, l->fd, 0);
            if (!l->retry_timer) l->retry_timer = loop_timer_add(loop, 100, accept_retry, l);
        }
        return;
    }
}

h2_listener_t *h2_listen(loop_t *loop, const char *host, int port, tls_server_t *tls,
                         const h2_conn_hooks_t *hooks, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    /* etcd binds "localhost" (Go's net.Listen: its first IPv4 address) and
     * refuses every other host name ("expected IP in URL for binding"). */
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*sin6);
    } else {
        snprintf(err, errlen, "not an IP address: %s", host);
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return NULL;
    }
    sslen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sslen);
    h2_listener_t *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return NULL;
    }
    l->loop = loop;
    l->fd = fd;
    l->port = ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
    l->tls = tls;
    l->hooks = hooks;
    l->mem = (nghttp2_mem){.mem_user_data = l,
                           .malloc = mem_malloc,
                           .free = mem_free,
                           .calloc = mem_calloc,
                           .realloc = mem_realloc};
    int rc = loop_add_fd(loop, fd, LOOP_READ, listener_on_io, l);
    if (rc != 0) {
        snprintf(err, errlen, "loop_add_fd: %s", strerror(-rc));
        close(fd);
        free(l);
        return NULL;
    }
    return l;
}

int h2_listener_port(h2_listener_t *l) { return l->port; }

static void listener_close_socket(h2_listener_t *l) {
    if (l->retry_timer) loop_timer_cancel(l->loop, l->retry_timer);
    l->retry_timer = NULL;
    if (l->fd < 0) return;
    loop_del_fd(l->loop, l->fd);
    close(l->fd);
    l->fd = -1;
}

void h2_listener_drain(h2_listener_t *l, void (*each)(h2_conn_t *conn, void *arg), void *arg) {
    listener_close_socket(l);
    l->draining = 1;
    for (h2_conn_t *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_HANDSHAKE || c->state == CONN_SNIFF) {
            conn_close(c); /* no request of it was read yet */
            continue;
        }
        if (c->state != CONN_OPEN) continue;
        if (each) each(c, arg);
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR, NULL, 0);
        h2_conn_kick(c);
    }
}

size_t h2_listener_conn_count(h2_listener_t *l) { return l->nconns; }

void h2_listener_free(h2_listener_t *l) {
    if (!l) return;
    while (l->conns) conn_close(l->conns);
    listener_close_socket(l);
    free(l);
}
