/*
 * grpc_frame.h: gRPC length-prefixed message reassembly (transport-internal).
 *
 * A request stream is a sequence of messages, each 1 byte compressed flag +
 * 4 byte big-endian length + payload, split arbitrarily over HTTP/2 DATA
 * frames. grpc_msg_reader_feed() consumes DATA bytes and reports each complete
 * message; a message wholly inside one chunk is passed without copying.
 * The other framing helpers (prefix, percent-encoding, grpc-timeout) are
 * declared in grpc.h.
 */
#ifndef KSHIM_GRPC_FRAME_H
#define KSHIM_GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Return 0 to continue, non-zero to stop feeding (the reader keeps no state
 * about the rest of the chunk; the call is over). */
typedef int (*grpc_msg_fn)(const uint8_t *msg, size_t len, int compressed, void *arg);

typedef struct grpc_msg_reader {
    size_t max_len; /* larger declared lengths are rejected */
    uint8_t hdr[5];
    size_t hdr_len;     /* prefix bytes collected (0..5) */
    uint8_t *buf;       /* partial message body (owned) */
    size_t need;        /* declared body length once hdr_len == 5 */
    size_t have;        /* body bytes collected */
    uint32_t too_large; /* declared length that exceeded max_len */
} grpc_msg_reader_t;

enum { GRPC_READ_OK = 0, GRPC_READ_STOPPED = 1, GRPC_READ_TOO_LARGE = -1, GRPC_READ_NOMEM = -2 };

void grpc_msg_reader_init(grpc_msg_reader_t *r, size_t max_len);
void grpc_msg_reader_free(grpc_msg_reader_t *r);
/* GRPC_READ_OK, GRPC_READ_STOPPED (fn returned non-zero), GRPC_READ_TOO_LARGE
 * (r->too_large holds the declared length) or GRPC_READ_NOMEM. */
int grpc_msg_reader_feed(grpc_msg_reader_t *r, const uint8_t *data, size_t len, grpc_msg_fn fn, void *arg);
/* 1 if a message has started but not completed (END_STREAM now = truncated). */
int grpc_msg_reader_partial(const grpc_msg_reader_t *r);

#endif
