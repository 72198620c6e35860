/*
 * grpc_frame.c: gRPC wire-format helpers with no I/O (grpc_frame.h, grpc.h):
 * the 5-byte message prefix, message reassembly across DATA frames,
 * grpc-message percent-encoding and grpc-timeout parsing.
 */
#include "grpc.h"
#include "grpc_frame.h"
#include "bytes.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void grpc_frame_prefix(uint8_t out[5], uint32_t len) {
    out[0] = 0;
    put_be32(out + 1, len);
}

/* gRPC spec: bytes outside 0x20..0x7E and '%' itself become %XX. */
char *grpc_percent_encode(const char *msg) {
    static const char hex[] = "0123456789ABCDEF";
    if (!msg) msg = "";
    size_t n = strlen(msg);
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = 0;
    return out;
}

/* "TimeoutValue TimeoutUnit": 1 to 8 ASCII digits, unit in H M S m u n.
 * Sub-millisecond units round up, so a deadline is never earlier than asked. */
int64_t grpc_parse_timeout_ms(const char *value) {
    if (!value) return -1;
    size_t n = strlen(value);
    if (n < 2 || n > 9) return -1;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (value[i] < '0' || value[i] > '9') return -1;
        v = v * 10 + (value[i] - '0');
    }
    switch (value[n - 1]) {
    case 'H': return v * 3600000;
    case 'M': return v * 60000;
    case 'S': return v * 1000;
    case 'm': return v;
    case 'u': return (v + 999) / 1000;
    case 'n': return (v + 999999) / 1000000;
    default: return -1;
    }
}

void grpc_msg_reader_init(grpc_msg_reader_t *r, size_t max_len) {
    memset(r, 0, sizeof(*r));
    r->max_len = max_len;
}

void grpc_msg_reader_free(grpc_msg_reader_t *r) {
    free(r->buf);
    r->buf = NULL;
    r->hdr_len = r->need = r->have = 0;
}

int grpc_msg_reader_partial(const grpc_msg_reader_t *r) { return r->hdr_len > 0; }

static int emit(grpc_msg_reader_t *r, const uint8_t *msg, size_t len, grpc_msg_fn fn, void *arg) {
    int compressed = r->hdr[0] & 1;
    r->hdr_len = 0;
    r->need = r->have = 0;
    static const uint8_t empty[1];
    return fn(len ? msg : empty, len, compressed, arg) ? GRPC_READ_STOPPED : GRPC_READ_OK;
}

int grpc_msg_reader_feed(grpc_msg_reader_t *r, const uint8_t *data, size_t len, grpc_msg_fn fn, void *arg) {
    while (len > 0 || (r->hdr_len == 5 && r->have == r->need)) {
        if (r->hdr_len < 5) {
            size_t take = 5 - r->hdr_len;
            if (take > len) take = len;
            memcpy(r->hdr + r->hdr_len, data, take);
            r->hdr_len += take;
            data += take;
            len -= take;
            if (r->hdr_len < 5) return GRPC_READ_OK;
            uint32_t declared = get_be32(r->hdr + 1);
            if (declared > r->max_len) {
                r->too_large = declared;
                return GRPC_READ_TOO_LARGE;
            }
            r->need = declared;
            r->have = 0;
        }
        if (r->have == 0 && len >= r->need) {
            /* Whole body in this chunk: hand it over in place. */
            const uint8_t *msg = data;
            size_t mlen = r->need;
            data += mlen;
            len -= mlen;
            if (emit(r, msg, mlen, fn, arg) != GRPC_READ_OK) return GRPC_READ_STOPPED;
            continue;
        }
        /* The body starts in a later chunk: allocate only once a body byte
         * is here, so the buffer always belongs to the message being read
         * (a buffer made now could outlive a body handed over in place and
         * be too small for the next message). */
        if (len == 0) return GRPC_READ_OK;
        assert(r->buf == NULL || r->have > 0);
        if (!r->buf) {
            r->buf = malloc(r->need);
            if (!r->buf) return GRPC_READ_NOMEM;
        }
        size_t take = r->need - r->have;
        if (take > len) take = len;
        memcpy(r->buf + r->have, data, take);
        r->have += take;
        data += take;
        len -= take;
        if (r->have < r->need) return GRPC_READ_OK;
        uint8_t *body = r->buf;
        r->buf = NULL;
        int rc = emit(r, body, r->need, fn, arg);
        free(body);
        if (rc != GRPC_READ_OK) return GRPC_READ_STOPPED;
    }
    return GRPC_READ_OK;
}
