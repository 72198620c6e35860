/*
 * h2_conn.h: listeners and HTTP/2 server connections on the event loop.
 *
 * A listener accepts TCP connections (optionally wrapped in TLS, see tls.h)
 * and gives each one a server-side nghttp2 session. The upper layer (grpc.c)
 * supplies the nghttp2 callbacks; their user_data is the h2_conn_t, and
 * h2_conn_get_user() returns the upper layer's per-connection pointer.
 *
 * Every connection must finish its TLS handshake and send the whole HTTP/2
 * client preface within 10 s of its accept (else it is closed).
 * Connection states: TLS handshake (https only) -> [detecting the protocol,
 * with on_http1 only] -> open (HTTP/2) -> closing
 * (GOAWAY queued, draining output) -> closed (on_close hook, freed); after
 * h2_listener_drain: open -> lingering (FIN sent, reading to EOF) -> closed.
 * Output produced by nghttp2 goes to a per-connection buffer; write interest
 * is on only while it is non-empty. While the buffer is above H2_OUT_HIGH the
 * connection is not read (backpressure) and nghttp2 is not asked for more.
 */
#ifndef KSHIM_H2_CONN_H
#define KSHIM_H2_CONN_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "tls.h"

enum { H2_OUT_HIGH = 1 << 20 }; /* bytes of pending output before we stop reading */

typedef struct h2_conn h2_conn_t;
typedef struct h2_listener h2_listener_t;

typedef struct h2_conn_hooks {
    const nghttp2_session_callbacks *callbacks; /* user_data = h2_conn_t * */
    /* Called when a connection is accepted (after TLS) and when it goes away
     * (before the nghttp2 session is deleted: cancel its streams there). */
    void (*on_open)(h2_conn_t *conn, void *arg);
    void (*on_close)(h2_conn_t *conn, void *arg);
    void *arg;
    uint32_t max_concurrent_streams; /* UINT32_MAX: unlimited */
    uint32_t initial_window_size;    /* per stream */
    int32_t connection_window_size;  /* whole connection */
    uint32_t max_header_list_size;
    /* Connections open at once (any state); 0: no limit. Counted in
     * *open_count if set, which every listener given these hooks keeps
     * together (so the cap is the server's, over all its listeners), else
     * per listener. Past it the oldest connection of the accepting listener
     * still in its handshake (TLS or client preface not yet complete) is
     * closed to make room, else the new one is refused: h2c gets SETTINGS +
     * GOAWAY ENHANCE_YOUR_CALM "too many client connections", TLS is closed. */
    size_t max_connections;
    size_t *open_count; /* optional; owned by the hooks' owner, loop thread only */
    /* Optional: HTTP/1.1 on this listener too. Then each connection is told
     * apart once (TLS ALPN "h2" / "http/1.1"; else whether its first bytes
     * are the HTTP/2 client preface) and an HTTP/1.1 one is handed over:
     * fd, its TLS session (or NULL) and the bytes already read (pre, n) are
     * the hook's from then on. Without it every connection is HTTP/2. */
    void (*on_http1)(int fd, tls_conn_t *tls, const uint8_t *pre, size_t n, void *arg);
} h2_conn_hooks_t;

/* Listen on host:port (port 0 picks one); tls may be NULL (h2c prior knowledge).
 * The listener does not own tls or hooks; both must outlive it. */
h2_listener_t *h2_listen(loop_t *loop, const char *host, int port, tls_server_t *tls,
                         const h2_conn_hooks_t *hooks, char *err, size_t errlen);
int h2_listener_port(h2_listener_t *l);
/* Graceful shutdown: close the listening socket (no new connections), close
 * connections that have not started HTTP/2, and on each HTTP/2 one call
 * each(conn, arg) (may be NULL), then queue GOAWAY (NO_ERROR, last stream
 * processed): its streams finish, new ones are refused, and once it has none
 * it is shut down for writing and closed at the client's EOF (or after 2 s). */
void h2_listener_drain(h2_listener_t *l, void (*each)(h2_conn_t *conn, void *arg), void *arg);
/* Connections still open (any state, HTTP/1.1 hand-overs excluded). */
size_t h2_listener_conn_count(h2_listener_t *l);
/* Bytes its connections' nghttp2 sessions hold (streams, HPACK tables,
 * queued frames): what HTTP/2 state costs, per listener. */
size_t h2_listener_session_bytes(h2_listener_t *l);
/* Close the listening socket and every connection it accepted. */
void h2_listener_free(h2_listener_t *l);

nghttp2_session *h2_conn_session(h2_conn_t *conn);
/* For the upper layer's nghttp2_send_data_callback (NGHTTP2_DATA_FLAG_NO_COPY:
 * a DATA frame's payload goes from the caller's buffers into the output
 * buffer in one copy, not through nghttp2's frame buffer). has_room: whether
 * the output buffer takes another frame now, the bound nghttp2_session_mem_send
 * is driven by; if not, answer NGHTTP2_ERR_WOULDBLOCK and nghttp2 asks again
 * once the buffer has drained. out_write appends n bytes: 0, or -1 when out
 * of memory. Loop thread, inside nghttp2_session_mem_send only. */
int h2_conn_out_has_room(const h2_conn_t *conn);
int h2_conn_out_write(h2_conn_t *conn, const uint8_t *p, size_t n);
void h2_conn_set_user(h2_conn_t *conn, void *user);
void *h2_conn_get_user(h2_conn_t *conn);
const char *h2_conn_peer_cn(h2_conn_t *conn);
loop_t *h2_conn_loop(h2_conn_t *conn);
/* Something was submitted to the session outside an I/O callback: make sure
 * it gets sent. Never does I/O or frees the connection itself. */
void h2_conn_kick(h2_conn_t *conn);
size_t h2_conn_out_pending(h2_conn_t *conn);

#endif
