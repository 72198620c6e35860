/*
 * test_peer_codec.c: the peer wire format (raft/peer/peer_codec.c): round
 * trips of every Raft message type (entries, snapshot metadata with voters
 * and learners), frames, HELLO and the small payloads; refusal of what
 * cannot be encoded; and a hostile decoder input campaign (every
 * truncation, random bit flips, random bytes, huge counts) that must never
 * crash or over-read (each input sits in an allocation of its exact size,
 * so ASan sees any byte read past it) and, when it decodes, re-encodes to
 * the same bytes (the encoding is canonical).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "crc32c.h"
#include "peer.h"
#include "peer_internal.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const uint64_t voters[] = {1, 2, 0xffffffffffffffffull};
static const uint64_t learners[] = {7};

static raft_msg_t sample(raft_msg_type_t type, raft_entry_t *es, size_t n, const raft_snapshot_meta_t *snap) {
    raft_msg_t m = {.type = type,
                    .from = 0x0102030405060708ull,
                    .to = 2,
                    .term = 77,
                    .log_term = 76,
                    .index = 1000,
                    .commit = 999,
                    .entries = es,
                    .n_entries = n,
                    .reject = 1,
                    .reject_hint = 0xfeedull,
                    .ctx = 0xabcdef0123456789ull,
                    .snapshot = snap};
    return m;
}

static void assert_msg_equal(const raft_msg_t *a, const raft_msg_t *b) {
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->reject_hint, b->reject_hint);
    assert_int_equal(a->ctx, b->ctx);
    assert_int_equal(a->n_entries, b->n_entries);
    for (size_t i = 0; i < a->n_entries; i++) {
        assert_int_equal(a->entries[i].term, b->entries[i].term);
        assert_int_equal(a->entries[i].index, b->entries[i].index);
        assert_int_equal(a->entries[i].type, b->entries[i].type);
        assert_int_equal(a->entries[i].len, b->entries[i].len);
        if (a->entries[i].len) assert_memory_equal(a->entries[i].data, b->entries[i].data, a->entries[i].len);
    }
    assert_int_equal(a->snapshot != NULL, b->snapshot != NULL);
    if (!a->snapshot) return;
    const raft_snapshot_meta_t *s = a->snapshot, *t = b->snapshot;
    assert_int_equal(s->index, t->index);
    assert_int_equal(s->term, t->term);
    assert_int_equal(s->n_voters, t->n_voters);
    assert_int_equal(s->n_learners, t->n_learners);
    for (size_t i = 0; i < s->n_voters; i++) assert_int_equal(s->voters[i], t->voters[i]);
    for (size_t i = 0; i < s->n_learners; i++) assert_int_equal(s->learners[i], t->learners[i]);
}

/* Decodes from an exact-size copy (ASan guards both ends). */
static int decode_exact(const uint8_t *buf, size_t len, raft_msg_t *m, void **scratch, uint8_t **copy) {
    *copy = malloc(len ? len : 1);
    if (len) memcpy(*copy, buf, len);
    return peer_decode_raft(*copy, len, m, scratch);
}

static void roundtrip(const raft_msg_t *m) {
    uint8_t *buf, *copy;
    size_t len;
    assert_int_equal(peer_encode_raft(m, &buf, &len), PEER_OK);
    raft_msg_t d;
    void *scratch = NULL;
    assert_int_equal(decode_exact(buf, len, &d, &scratch, &copy), PEER_OK);
    assert_msg_equal(m, &d);
    free(scratch);
    free(copy);
    free(buf);
}

static void test_roundtrip_every_type(void **state) {
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof big);
    raft_entry_t es[3] = {
        {.term = 5, .index = 1001, .type = RAFT_ENTRY_NORMAL, .data = (const uint8_t *)"abc", .len = 3},
        {.term = 5, .index = 1002, .type = RAFT_ENTRY_CONF_CHANGE, .data = NULL, .len = 0},
        {.term = 6, .index = 1003, .type = 9, .data = (const uint8_t *)big, .len = sizeof big}};
    raft_snapshot_meta_t snap = {
        .index = 900, .term = 4, .voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1};
    for (int type = RAFT_MSG_VOTE; type <= RAFT_MSG_SNAP; type++) {
        raft_msg_t m = sample((raft_msg_type_t)type, NULL, 0, type == RAFT_MSG_SNAP ? &snap : NULL);
        roundtrip(&m);
        m.reject = 0;
        roundtrip(&m);
        if (type == RAFT_MSG_SNAP) continue;
        m.entries = es;
        m.n_entries = 3;
        roundtrip(&m);
    }
    /* A snapshot with no learners, and one with no members at all. */
    raft_snapshot_meta_t s2 = {.index = 1, .term = 1, .voters = voters, .n_voters = 1};
    raft_msg_t m = sample(RAFT_MSG_SNAP, NULL, 0, &s2);
    roundtrip(&m);
    raft_snapshot_meta_t s3 = {0};
    m.snapshot = &s3;
    roundtrip(&m);
}

static void test_encode_refuses(void **state) {
    (void)state;
    uint8_t *buf = NULL;
    size_t len;
    raft_snapshot_meta_t snap = {.index = 1, .term = 1, .voters = voters, .n_voters = 3};
    raft_msg_t m = sample(RAFT_MSG_SNAP, NULL, 0, NULL);
    assert_int_equal(peer_encode_raft(&m, &buf, &len), PEER_ERR_INVALID); /* SNAP without metadata */
    m = sample(RAFT_MSG_APP, NULL, 0, &snap);
    assert_int_equal(peer_encode_raft(&m, &buf, &len), PEER_ERR_INVALID); /* metadata on an App */
    uint64_t many[RAFT_MAX_MEMBERS + 1] = {0};
    raft_snapshot_meta_t too_many = {.index = 1, .term = 1, .voters = many, .n_voters = RAFT_MAX_MEMBERS + 1};
    m = sample(RAFT_MSG_SNAP, NULL, 0, &too_many);
    assert_int_equal(peer_encode_raft(&m, &buf, &len), PEER_ERR_INVALID);
    raft_entry_t huge = {.term = 1, .index = 1, .data = (const uint8_t *)"", .len = PEER_MAX_FRAME};
    m = sample(RAFT_MSG_APP, &huge, 1, NULL);
    assert_int_equal(peer_encode_raft(&m, &buf, &len), PEER_ERR_INVALID); /* over PEER_MAX_FRAME */
    assert_null(buf);
}

static void test_frames_and_payloads(void **state) {
    (void)state;
    size_t len, plen;
    uint8_t kind;
    uint8_t *f = peer_frame_build(PEER_F_APP, (const uint8_t *)"\x05hello", 6, &len);
    assert_non_null(f);
    assert_int_equal(len, PEER_FRAME_HEADER + 6);
    assert_int_equal(get_be32(f), 7);
    uint8_t crcin[7] = {PEER_F_APP, 5, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(get_be32(f + 4), crc32c(0, crcin, 7));
    assert_int_equal(peer_frame_parse_header(f, &kind, &plen), PEER_OK);
    assert_int_equal(kind, PEER_F_APP);
    assert_int_equal(plen, 6);
    assert_int_equal(peer_frame_check(f, f + PEER_FRAME_HEADER, 6), PEER_OK);
    f[PEER_FRAME_HEADER + 2] ^= 1;
    assert_int_equal(peer_frame_check(f, f + PEER_FRAME_HEADER, 6), PEER_ERR_INVALID);
    f[PEER_FRAME_HEADER + 2] ^= 1;
    f[8] = PEER_F_RAFT; /* the kind is covered by the checksum */
    assert_int_equal(peer_frame_check(f, f + PEER_FRAME_HEADER, 6), PEER_ERR_INVALID);
    uint8_t app_kind;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(peer_app_decode(f + PEER_FRAME_HEADER, 6, &app_kind, &data, &dlen), PEER_OK);
    assert_int_equal(app_kind, 5);
    assert_int_equal(dlen, 5);
    assert_memory_equal(data, "hello", 5);
    assert_int_equal(peer_app_decode(f, 0, &app_kind, &data, &dlen), PEER_ERR_INVALID);
    free(f);

    uint8_t hdr[PEER_FRAME_HEADER] = {0};
    assert_int_equal(peer_frame_parse_header(hdr, &kind, &plen), PEER_ERR_INVALID); /* len 0 */
    put_be32(hdr, PEER_MAX_FRAME + 1);
    assert_int_equal(peer_frame_parse_header(hdr, &kind, &plen), PEER_ERR_INVALID);
    put_be32(hdr, PEER_MAX_FRAME);
    assert_int_equal(peer_frame_parse_header(hdr, &kind, &plen), PEER_OK);
    assert_int_equal(plen, PEER_MAX_FRAME - 1);

    peer_hello_t h = {PEER_VERSION, PEER_P_SNAPSHOT, PEER_H_MISMATCH, 0x1122334455667788ull, 3, 0xffull},
                 g = {0};
    uint8_t hb[PEER_HELLO_LEN];
    peer_hello_encode(&h, hb);
    assert_int_equal(peer_hello_decode(hb, sizeof hb, &g), PEER_OK);
    assert_int_equal(g.version, PEER_VERSION);
    assert_int_equal(g.purpose, PEER_P_SNAPSHOT);
    assert_int_equal(g.status, PEER_H_MISMATCH);
    assert_int_equal(g.cluster_id, h.cluster_id);
    assert_int_equal(g.from, 3);
    assert_int_equal(g.to, 0xff);
    assert_int_equal(peer_hello_decode(hb, sizeof hb - 1, &g), PEER_ERR_INVALID);

    uint8_t e[12];
    uint64_t total;
    uint32_t crc;
    peer_snap_end_encode(1ull << 40, 0xdeadbeef, e);
    assert_int_equal(peer_snap_end_decode(e, 12, &total, &crc), PEER_OK);
    assert_int_equal(total, 1ull << 40);
    assert_int_equal(crc, 0xdeadbeef);
    assert_int_equal(peer_snap_end_decode(e, 11, &total, &crc), PEER_ERR_INVALID);

    uint8_t *mp = peer_members_encode(0, 42, (const uint8_t *)"list", 4, &len), status;
    uint64_t cid;
    assert_int_equal(peer_members_decode(mp, len, &status, &cid, &data, &dlen), PEER_OK);
    assert_int_equal(status, 0);
    assert_int_equal(cid, 42);
    assert_int_equal(dlen, 4);
    assert_memory_equal(data, "list", 4);
    assert_int_equal(peer_members_decode(mp, 8, &status, &cid, &data, &dlen), PEER_ERR_INVALID);
    free(mp);

    /* The frame of a Raft message: headroom, header, then the same bytes as peer_encode_raft. */
    raft_msg_t m = sample(RAFT_MSG_HEARTBEAT, NULL, 0, NULL);
    uint8_t *enc, *fr;
    size_t elen, flen;
    assert_int_equal(peer_encode_raft(&m, &enc, &elen), PEER_OK);
    assert_int_equal(peer_encode_raft_frame(&m, PEER_F_RAFT, 16, &fr, &flen), PEER_OK);
    assert_int_equal(flen, PEER_FRAME_HEADER + elen);
    assert_memory_equal(fr + 16 + PEER_FRAME_HEADER, enc, elen);
    assert_int_equal(peer_frame_check(fr + 16, fr + 16 + PEER_FRAME_HEADER, elen), PEER_OK);
    free(enc);
    free(fr);
}

/* Decodes a hostile input: no crash, no over-read, and a success re-encodes to the input. */
static int hostile(const uint8_t *in, size_t len) {
    raft_msg_t m;
    void *scratch = NULL;
    uint8_t *copy;
    int rc = decode_exact(in, len, &m, &scratch, &copy);
    if (rc == PEER_OK) {
        uint8_t *again;
        size_t alen;
        assert_int_equal(peer_encode_raft(&m, &again, &alen), PEER_OK);
        assert_int_equal(alen, len);
        assert_memory_equal(again, in, len);
        free(again);
    } else {
        assert_int_equal(rc, PEER_ERR_INVALID);
        assert_null(scratch);
    }
    free(scratch);
    free(copy);
    return rc == PEER_OK;
}

static void test_decoder_truncations_and_flips(void **state) {
    (void)state;
    raft_entry_t es[4];
    char data[4][40];
    for (int i = 0; i < 4; i++) {
        snprintf(data[i], sizeof data[i], "entry-%d-payload", i);
        es[i] = (raft_entry_t){
            .term = 3, .index = 10 + i, .type = 0, .data = (const uint8_t *)data[i], .len = strlen(data[i])};
    }
    raft_snapshot_meta_t snap = {
        .index = 9, .term = 3, .voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1};
    raft_msg_t msgs[2] = {sample(RAFT_MSG_APP, es, 4, NULL), sample(RAFT_MSG_SNAP, NULL, 0, &snap)};
    long decoded = 0;
    for (int k = 0; k < 2; k++) {
        uint8_t *buf;
        size_t len;
        assert_int_equal(peer_encode_raft(&msgs[k], &buf, &len), PEER_OK);
        for (size_t cut = 0; cut < len; cut++) assert_false(hostile(buf, cut)); /* every truncation refused */
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, buf, len);
        longer[len] = 0;
        assert_false(hostile(longer, len + 1)); /* trailing bytes refused */
        free(longer);
        uint8_t *mut = malloc(len);
        for (int round = 0; round < 100000; round++) {
            memcpy(mut, buf, len);
            int flips = 1 + (int)(rnd() % 4);
            for (int f = 0; f < flips; f++) mut[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            decoded += hostile(mut, len);
            size_t cut = (size_t)(rnd() % (len + 1));
            decoded += hostile(mut, cut);
        }
        free(mut);
        free(buf);
    }
    assert_true(decoded > 0); /* flips in plain fields still decode (and re-encode identically) */
}

static void test_decoder_random_and_huge_counts(void **state) {
    (void)state;
    uint8_t buf[512];
    for (int round = 0; round < 200000; round++) {
        size_t len = (size_t)(rnd() % sizeof buf);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rnd();
        if (len > 0 && round % 2) buf[0] = (uint8_t)(1 + rnd() % RAFT_MSG_SNAP); /* a valid type */
        if (len > 74 && round % 4 == 1) memset(buf + 50, 0, 24);                 /* plausible flags */
        hostile(buf, len);
    }
    /* Counts far beyond the bytes: refused before any allocation sized by them. */
    raft_msg_t m = sample(RAFT_MSG_HEARTBEAT, NULL, 0, NULL);
    m.reject = 0;
    uint8_t *enc;
    size_t len;
    assert_int_equal(peer_encode_raft(&m, &enc, &len), PEER_OK);
    size_t count_at = len - 5; /* u32 n_entries, then u8 has_snapshot */
    uint32_t counts[] = {0xffffffffu, 0x80000000u, 1u << 20, 1};
    for (size_t i = 0; i < 4; i++) {
        put_be32(enc + count_at, counts[i]);
        assert_false(hostile(enc, len));
    }
    free(enc);
    raft_snapshot_meta_t snap = {.index = 1, .term = 1};
    m = sample(RAFT_MSG_SNAP, NULL, 0, &snap);
    assert_int_equal(peer_encode_raft(&m, &enc, &len), PEER_OK);
    size_t voters_at = len - 8; /* u32 n_voters, u32 n_learners */
    for (size_t i = 0; i < 4; i++) {
        put_be32(enc + voters_at, counts[i]);
        assert_false(hostile(enc, len));
        put_be32(enc + voters_at, 0);
        put_be32(enc + voters_at + 4, counts[i]);
        assert_false(hostile(enc, len));
        put_be32(enc + voters_at + 4, 0);
    }
    /* A member count within the bytes but over RAFT_MAX_MEMBERS. */
    size_t n = RAFT_MAX_MEMBERS + 1, blen = len + 8 * n;
    uint8_t *big = calloc(1, blen);
    memcpy(big, enc, len);
    put_be32(big + voters_at, (uint32_t)n);
    memmove(big + voters_at + 4 + 8 * n, big + voters_at + 4, 4);
    memset(big + voters_at + 4, 0, 8 * n);
    assert_false(hostile(big, blen));
    free(big);
    free(enc);
    /* Entry length beyond the buffer. */
    raft_entry_t e = {.term = 1, .index = 2, .data = (const uint8_t *)"zz", .len = 2};
    m = sample(RAFT_MSG_APP, &e, 1, NULL);
    assert_int_equal(peer_encode_raft(&m, &enc, &len), PEER_OK);
    size_t elen_at = 1 + 8 * 6 + 1 + 8 + 8 + 4 + 17;
    put_be32(enc + elen_at, 0xfffffff0u);
    assert_false(hostile(enc, len));
    free(enc);
}

static void test_decoder_bad_arguments(void **state) {
    (void)state;
    raft_msg_t m;
    void *scratch = (void *)1;
    assert_int_equal(peer_decode_raft(NULL, 0, &m, &scratch), PEER_ERR_INVALID);
    uint8_t *out;
    size_t len;
    assert_int_equal(peer_encode_raft(NULL, &out, &len), PEER_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_frames_and_payloads),
        cmocka_unit_test(test_decoder_truncations_and_flips),
        cmocka_unit_test(test_decoder_random_and_huge_counts),
        cmocka_unit_test(test_decoder_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
