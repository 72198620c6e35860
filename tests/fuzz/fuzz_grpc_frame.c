/*
 * fuzz_grpc_frame.c: gRPC message reassembly (transport/grpc_frame.c) over
 * arbitrary DATA bytes split at arbitrary points. The first input byte picks
 * the split sizes; every message reported must lie inside what was fed and
 * respect the length bound.
 */
#include <assert.h>
#include <string.h>

#include "fuzz.h"
#include "grpc_frame.h"

#define MAX_MSG 4096

typedef struct seen {
    size_t messages, bytes;
} seen_t;

static int on_msg(const uint8_t *msg, size_t len, int compressed, void *arg) {
    seen_t *s = arg;
    assert(len <= MAX_MSG);
    assert(compressed == 0 || compressed == 1);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++) sink ^= msg[i]; /* ASan: every byte readable */
    (void)sink;
    s->messages++;
    s->bytes += len;
    return s->messages > 64; /* sometimes stop early, as a closed call does */
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned split = data[0];
    data++;
    size--;
    grpc_msg_reader_t r;
    grpc_msg_reader_init(&r, MAX_MSG);
    seen_t seen = {0};
    size_t off = 0;
    int rc = GRPC_READ_OK;
    while (off < size && rc == GRPC_READ_OK) {
        size_t chunk = 1 + (split + off) % 97;
        if (chunk > size - off) chunk = size - off;
        rc = grpc_msg_reader_feed(&r, data + off, chunk, on_msg, &seen);
        off += chunk;
    }
    assert(rc == GRPC_READ_OK || rc == GRPC_READ_STOPPED || rc == GRPC_READ_TOO_LARGE);
    if (rc == GRPC_READ_TOO_LARGE) assert(r.too_large > MAX_MSG);
    assert(seen.bytes <= size);
    (void)grpc_msg_reader_partial(&r);
    grpc_msg_reader_free(&r);
    return 0;
}
