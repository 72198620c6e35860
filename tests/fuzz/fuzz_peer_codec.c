/*
 * fuzz_peer_codec.c: what a peer (or anyone reaching the peer port) can
 * make a member decode (raft/peer/peer_codec.c): a frame header, a Raft
 * message, HELLO, app messages, snapshot ends and member lists. The first
 * byte picks the decoder. A Raft message that decodes must encode back to
 * the same bytes (one encoding per message: nothing is read that is not
 * checked). Seeds: FUZZ_WRITE_SEEDS=DIR replay_peer_codec writes them.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "peer.h"
#include "peer_internal.h"

/* FUZZ_WRITE_SEEDS=DIR: writes the seed corpus (real encodings) and exits. */
static void write_seed(const char *dir, const char *name, uint8_t selector, const uint8_t *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = malloc(n + 1);
    if (!buf) abort();
    buf[0] = selector;
    memcpy(buf + 1, p, n);
    if (fuzz_write_file(path, buf, n + 1) != 0) abort();
    free(buf);
}

static void write_raft_seed(const char *dir, const char *name, const raft_msg_t *m) {
    uint8_t *enc = NULL;
    size_t len = 0;
    if (peer_encode_raft(m, &enc, &len) != PEER_OK) abort();
    write_seed(dir, name, 0, enc, len);
    free(enc);
}

static void write_seeds(const char *dir) {
    raft_entry_t ents[2] = {
        {.term = 2, .index = 8, .type = RAFT_ENTRY_NORMAL, .data = (const uint8_t *)"put", .len = 3},
        {.term = 2,
         .index = 9,
         .type = RAFT_ENTRY_CONF_CHANGE,
         .data = (const uint8_t *)"\x01\0\0\0\0\0\0\0\x02",
         .len = 9}};
    raft_msg_t app = {.type = RAFT_MSG_APP,
                      .from = 1,
                      .to = 2,
                      .term = 2,
                      .log_term = 2,
                      .index = 7,
                      .commit = 7,
                      .entries = ents,
                      .n_entries = 2};
    write_raft_seed(dir, "raft_app", &app);
    raft_msg_t vote = {.type = RAFT_MSG_PRE_VOTE, .from = 3, .to = 1, .term = 5, .log_term = 4, .index = 99};
    write_raft_seed(dir, "raft_prevote", &vote);
    raft_msg_t resp = {.type = RAFT_MSG_APP_RESP,
                       .from = 2,
                       .to = 1,
                       .term = 2,
                       .index = 9,
                       .reject = 1,
                       .reject_hint = 4,
                       .ctx = 77};
    write_raft_seed(dir, "raft_app_resp", &resp);
    uint64_t voters[3] = {1, 2, 3}, learners[1] = {4};
    raft_snapshot_meta_t meta = {
        .index = 100, .term = 3, .voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1};
    raft_msg_t snap = {.type = RAFT_MSG_SNAP, .from = 1, .to = 4, .term = 3, .snapshot = &meta};
    write_raft_seed(dir, "raft_snap", &snap);
    peer_hello_t h;
    memset(&h, 0, sizeof h);
    uint8_t hello[PEER_HELLO_LEN];
    peer_hello_encode(&h, hello);
    write_seed(dir, "hello", 2, hello, sizeof hello);
    uint8_t end[12];
    peer_snap_end_encode(1 << 20, 0xdeadbeef, end);
    write_seed(dir, "snap_end", 4, end, sizeof end);
    size_t mlen = 0;
    uint8_t *members = peer_members_encode(0, 0xcdf818194e3a8c32ULL, (const uint8_t *)"list", 4, &mlen);
    write_seed(dir, "members", 5, members, mlen);
    free(members);
    uint8_t hdr[PEER_FRAME_HEADER];
    peer_frame_header(hdr, 1, (const uint8_t *)"x", 1);
    uint8_t frame[PEER_FRAME_HEADER + 1];
    memcpy(frame, hdr, sizeof hdr);
    frame[PEER_FRAME_HEADER] = 'x';
    write_seed(dir, "frame", 1, frame, sizeof frame);
    write_seed(dir, "app", 3, (const uint8_t *)"\x01proposal", 9);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

static void raft_round_trip(const uint8_t *p, size_t n) {
    /* An exact-size copy, so ASan sees any over-read. */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return;
    memcpy(buf, p, n);
    raft_msg_t m;
    void *scratch = NULL;
    if (peer_decode_raft(buf, n, &m, &scratch) == PEER_OK) {
        uint8_t *again = NULL;
        size_t len = 0;
        assert(peer_encode_raft(&m, &again, &len) == PEER_OK);
        assert(len == n && memcmp(again, buf, n) == 0);
        free(again);
    }
    free(scratch);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: raft_round_trip(p, n); break;
    case 1: {
        if (n < PEER_FRAME_HEADER) break;
        uint8_t kind;
        size_t len;
        if (peer_frame_parse_header(p, &kind, &len) == 0 && len <= n - PEER_FRAME_HEADER)
            (void)peer_frame_check(p, p + PEER_FRAME_HEADER, len);
        break;
    }
    case 2: {
        peer_hello_t h;
        (void)peer_hello_decode(p, n, &h);
        break;
    }
    case 3: {
        uint8_t kind;
        const uint8_t *d;
        size_t len;
        if (peer_app_decode(p, n, &kind, &d, &len) == 0) assert(d >= p && len <= n && d + len <= p + n);
        break;
    }
    case 4: {
        uint64_t total;
        uint32_t crc;
        (void)peer_snap_end_decode(p, n, &total, &crc);
        break;
    }
    default: {
        uint8_t status;
        uint64_t cluster_id;
        const uint8_t *d;
        size_t len;
        if (peer_members_decode(p, n, &status, &cluster_id, &d, &len) == 0)
            assert(d >= p && d + len <= p + n);
        break;
    }
    }
    return 0;
}
