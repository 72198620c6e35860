/*
 * test_grpc_frame.c: gRPC framing helpers: the 5-byte prefix, grpc-message
 * percent-encoding, grpc-timeout parsing, and message reassembly from
 * arbitrary DATA splits (1-byte fragments included) and oversized messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "grpc_frame.h"

static void test_prefix(void **state) {
    uint8_t p[5];
    grpc_frame_prefix(p, 0x01020304);
    uint8_t want[5] = {0, 1, 2, 3, 4};
    assert_memory_equal(p, want, 5);
    grpc_frame_prefix(p, 0);
    uint8_t zero[5] = {0};
    assert_memory_equal(p, zero, 5);
}

static void check_enc(const char *in, const char *want) {
    char *got = grpc_percent_encode(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_percent_encode(void **state) {
    check_enc("etcdserver: request is too large", "etcdserver: request is too large");
    check_enc("100%", "100%25");
    check_enc("a\nb\tc", "a%0Ab%09c");
    check_enc("caf\xc3\xa9 \xe2\x82\xac", "caf%C3%A9 %E2%82%AC");
    check_enc("~ok!", "~ok!");
    check_enc("\x7f", "%7F");
    check_enc("", "");
}

static void test_timeout_parse(void **state) {
    assert_int_equal(grpc_parse_timeout_ms("100m"), 100);
    assert_int_equal(grpc_parse_timeout_ms("5S"), 5000);
    assert_int_equal(grpc_parse_timeout_ms("2M"), 120000);
    assert_int_equal(grpc_parse_timeout_ms("1H"), 3600000);
    assert_int_equal(grpc_parse_timeout_ms("1500u"), 2); /* rounds up */
    assert_int_equal(grpc_parse_timeout_ms("1n"), 1);
    assert_int_equal(grpc_parse_timeout_ms("0m"), 0);
    assert_int_equal(grpc_parse_timeout_ms("99999999H"), 99999999LL * 3600000);
    assert_int_equal(grpc_parse_timeout_ms("999999999m"), -1); /* 9 digits */
    assert_int_equal(grpc_parse_timeout_ms("m"), -1);
    assert_int_equal(grpc_parse_timeout_ms("10"), -1);
    assert_int_equal(grpc_parse_timeout_ms("10x"), -1);
    assert_int_equal(grpc_parse_timeout_ms("-1S"), -1);
    assert_int_equal(grpc_parse_timeout_ms("1 S"), -1);
    assert_int_equal(grpc_parse_timeout_ms(NULL), -1);
}

typedef struct collected {
    uint8_t data[1 << 16];
    size_t lens[64];
    int compressed[64];
    int n;
    size_t total;
    int stop_after;
} collected_t;

static int collect(const uint8_t *msg, size_t len, int compressed, void *arg) {
    collected_t *c = arg;
    assert_non_null(msg);
    memcpy(c->data + c->total, msg, len);
    c->total += len;
    c->compressed[c->n] = compressed;
    c->lens[c->n++] = len;
    return c->stop_after && c->n >= c->stop_after;
}

/* Three messages (sizes 0, 300, 7) in one stream of bytes. */
static size_t build_stream(uint8_t *out) {
    size_t sizes[3] = {0, 300, 7};
    size_t n = 0;
    for (int m = 0; m < 3; m++) {
        grpc_frame_prefix(out + n, (uint32_t)sizes[m]);
        n += 5;
        for (size_t i = 0; i < sizes[m]; i++) out[n++] = (uint8_t)(m * 31 + i);
    }
    return n;
}

static void check_collected(collected_t *c) {
    assert_int_equal(c->n, 3);
    assert_int_equal(c->lens[0], 0);
    assert_int_equal(c->lens[1], 300);
    assert_int_equal(c->lens[2], 7);
    for (size_t i = 0; i < 300; i++) assert_int_equal(c->data[i], (uint8_t)(31 + i));
    for (size_t i = 0; i < 7; i++) assert_int_equal(c->data[300 + i], (uint8_t)(62 + i));
}

static void test_reassembly_any_split(void **state) {
    uint8_t s[512];
    size_t n = build_stream(s);
    /* Every chunk size from 1 byte to the whole stream. */
    for (size_t chunk = 1; chunk <= n; chunk++) {
        grpc_msg_reader_t r;
        grpc_msg_reader_init(&r, 1000);
        collected_t *c = calloc(1, sizeof(*c));
        for (size_t off = 0; off < n; off += chunk) {
            size_t len = n - off < chunk ? n - off : chunk;
            assert_int_equal(grpc_msg_reader_feed(&r, s + off, len, collect, c), GRPC_READ_OK);
        }
        check_collected(c);
        assert_false(grpc_msg_reader_partial(&r));
        free(c);
        grpc_msg_reader_free(&r);
    }
    /* Random splits. */
    srand(7);
    for (int iter = 0; iter < 200; iter++) {
        grpc_msg_reader_t r;
        grpc_msg_reader_init(&r, 1000);
        collected_t *c = calloc(1, sizeof(*c));
        size_t off = 0;
        while (off < n) {
            size_t len = 1 + (size_t)rand() % 40;
            if (len > n - off) len = n - off;
            assert_int_equal(grpc_msg_reader_feed(&r, s + off, len, collect, c), GRPC_READ_OK);
            off += len;
        }
        check_collected(c);
        free(c);
        grpc_msg_reader_free(&r);
    }
}

/* Found by tests/fuzz/fuzz_grpc_frame: a DATA frame that ends right after a
 * 5-byte prefix, then a frame with the whole (small) body, then a larger
 * message split over two frames. The reader used to allocate the small body
 * buffer at the first frame, keep it after handing the body over in place,
 * and copy the larger message into it (heap overflow). */
static void test_prefix_alone_then_larger_split_message(void **state) {
    uint8_t small_prefix[5], small_body[4] = {1, 2, 3, 4}, big[5 + 100];
    grpc_frame_prefix(small_prefix, sizeof small_body);
    grpc_frame_prefix(big, 100);
    for (size_t i = 0; i < 100; i++) big[5 + i] = (uint8_t)(200 + i);
    grpc_msg_reader_t r;
    grpc_msg_reader_init(&r, 1000);
    collected_t *c = calloc(1, sizeof(*c));
    assert_int_equal(grpc_msg_reader_feed(&r, small_prefix, 5, collect, c), GRPC_READ_OK);
    assert_int_equal(grpc_msg_reader_feed(&r, small_body, 4, collect, c), GRPC_READ_OK);
    assert_int_equal(grpc_msg_reader_feed(&r, big, 55, collect, c), GRPC_READ_OK);
    assert_int_equal(grpc_msg_reader_feed(&r, big + 55, sizeof big - 55, collect, c), GRPC_READ_OK);
    assert_int_equal(c->n, 2);
    assert_int_equal(c->lens[0], 4);
    assert_int_equal(c->lens[1], 100);
    assert_memory_equal(c->data, small_body, 4);
    assert_memory_equal(c->data + 4, big + 5, 100);
    assert_false(grpc_msg_reader_partial(&r));
    free(c);
    grpc_msg_reader_free(&r);
}

static void test_partial_and_compressed_flag(void **state) {
    uint8_t s[512];
    size_t n = build_stream(s);
    grpc_msg_reader_t r;
    grpc_msg_reader_init(&r, 1000);
    collected_t *c = calloc(1, sizeof(*c));
    assert_int_equal(grpc_msg_reader_feed(&r, s, 3, collect, c), GRPC_READ_OK);
    assert_true(grpc_msg_reader_partial(&r)); /* inside a prefix */
    assert_int_equal(grpc_msg_reader_feed(&r, s + 3, 100, collect, c), GRPC_READ_OK);
    assert_true(grpc_msg_reader_partial(&r)); /* inside a body */
    assert_int_equal(c->n, 1);
    grpc_msg_reader_free(&r);

    /* Compressed flag is reported; the caller decides. */
    grpc_msg_reader_init(&r, 1000);
    memset(c, 0, sizeof(*c));
    uint8_t m[8] = {1, 0, 0, 0, 3, 'a', 'b', 'c'};
    assert_int_equal(grpc_msg_reader_feed(&r, m, 8, collect, c), GRPC_READ_OK);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->compressed[0], 1);

    /* Stop request from the callback ends feeding. */
    grpc_msg_reader_init(&r, 1000);
    memset(c, 0, sizeof(*c));
    c->stop_after = 1;
    assert_int_equal(grpc_msg_reader_feed(&r, s, n, collect, c), GRPC_READ_STOPPED);
    assert_int_equal(c->n, 1);
    free(c);
    grpc_msg_reader_free(&r);
}

static void test_oversized(void **state) {
    grpc_msg_reader_t r;
    grpc_msg_reader_init(&r, 100);
    collected_t *c = calloc(1, sizeof(*c));
    uint8_t ok[105];
    grpc_frame_prefix(ok, 100);
    memset(ok + 5, 'x', 100);
    assert_int_equal(grpc_msg_reader_feed(&r, ok, sizeof(ok), collect, c), GRPC_READ_OK);
    assert_int_equal(c->n, 1); /* exactly the limit is fine */
    uint8_t big[5];
    grpc_frame_prefix(big, 101);
    /* Detected from the prefix alone, split over two feeds, before any body. */
    assert_int_equal(grpc_msg_reader_feed(&r, big, 2, collect, c), GRPC_READ_OK);
    assert_int_equal(grpc_msg_reader_feed(&r, big + 2, 3, collect, c), GRPC_READ_TOO_LARGE);
    assert_int_equal(r.too_large, 101);
    grpc_frame_prefix(big, 0xffffffffu);
    grpc_msg_reader_free(&r);
    grpc_msg_reader_init(&r, 100);
    assert_int_equal(grpc_msg_reader_feed(&r, big, 5, collect, c), GRPC_READ_TOO_LARGE);
    assert_int_equal(r.too_large, 0xffffffffu);
    assert_int_equal(c->n, 1);
    free(c);
    grpc_msg_reader_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_percent_encode),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_reassembly_any_split),
        cmocka_unit_test(test_prefix_alone_then_larger_split_message),
        cmocka_unit_test(test_partial_and_compressed_flag),
        cmocka_unit_test(test_oversized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
