/*
 * fuzz_kv_request.c: etcd KV requests from the wire into the store
 * (storage/kv/kv.c on storage/mvcc): protobuf decoding of a Range, Put,
 * DeleteRange, Txn or Compaction (first byte picks which), the API-layer
 * validation, then, for what validates, the read (kv_range,
 * kv_txn_readonly) or the apply (kv_apply, in a write group, as the member
 * applies an entry) on a real LevelDB store in a scratch directory. A
 * request either gets an etcd error code or a response; a storage error
 * (-1) on a healthy disk is a bug.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "kshim.pb-c.h"
#include "kv.h"
#include "mvcc.h"

static mvcc_t *store;
static uint64_t next_index = 1;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char dir[4200], err[256];
    snprintf(dir, sizeof dir, "%s/kv", fuzz_tmpdir());
    mvcc_options_t opts = {.max_txn_ops = 128};
    if (mvcc_open(dir, &opts, &store, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_kv_request: %s\n", err);
        abort();
    }
    return 0;
}

static void apply(Kshim__InternalRequest *ir) {
    kv_header_info_t hdr = {0};
    kv_result_t res = {0};
    mvcc_group_begin(store);
    int rc = kv_apply(store, next_index++, ir, &hdr, &res);
    assert(rc == 0);
    assert(mvcc_group_end(store) == 0);
    kv_result_clear(&res);
}

static void read_range(const Etcdserverpb__RangeRequest *r) {
    kv_header_info_t hdr = {0};
    kv_result_t res = {0};
    assert(kv_range(store, r, &hdr, &res) == 0 || res.code != 0);
    kv_result_clear(&res);
}

static void do_txn(Etcdserverpb__TxnRequest *t) {
    if (kv_txn_is_readonly(t)) {
        kv_header_info_t hdr = {0};
        kv_result_t res = {0};
        assert(kv_txn_readonly(store, t, &hdr, &res) == 0 || res.code != 0);
        kv_result_clear(&res);
        return;
    }
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.txn = t;
    apply(&ir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *pb = data + 1;
    size_t n = size - 1;
    kv_result_t res = {0};
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    switch (data[0] % 5) {
    case 0: {
        Etcdserverpb__RangeRequest *r = etcdserverpb__range_request__unpack(NULL, n, pb);
        if (r && kv_validate_range(store, r, &res) == 0) read_range(r);
        if (r) etcdserverpb__range_request__free_unpacked(r, NULL);
        break;
    }
    case 1: {
        Etcdserverpb__PutRequest *p = etcdserverpb__put_request__unpack(NULL, n, pb);
        if (p && kv_validate_put(store, p, &res) == 0) {
            ir.put = p;
            apply(&ir);
        }
        if (p) etcdserverpb__put_request__free_unpacked(p, NULL);
        break;
    }
    case 2: {
        Etcdserverpb__DeleteRangeRequest *d = etcdserverpb__delete_range_request__unpack(NULL, n, pb);
        if (d && kv_validate_delete(store, d, &res) == 0) {
            ir.delete_range = d;
            apply(&ir);
        }
        if (d) etcdserverpb__delete_range_request__free_unpacked(d, NULL);
        break;
    }
    case 3: {
        Etcdserverpb__TxnRequest *t = etcdserverpb__txn_request__unpack(NULL, n, pb);
        if (t && kv_validate_txn(store, t, &res) == 0) do_txn(t);
        if (t) etcdserverpb__txn_request__free_unpacked(t, NULL);
        break;
    }
    default: {
        Etcdserverpb__CompactionRequest *c = etcdserverpb__compaction_request__unpack(NULL, n, pb);
        if (c) {
            c->physical = 0; /* physical waits for the compactor thread */
            ir.compaction = c;
            apply(&ir);
            etcdserverpb__compaction_request__free_unpacked(c, NULL);
        }
        break;
    }
    }
    kv_result_clear(&res);
    return 0;
}
