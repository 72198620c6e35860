/*
 * fuzz_gateway_json.c: the JSON gateway's request decoding (proto/pbjson.c
 * on json-c), for every request message a /v3/ route takes. The first byte
 * picks the message; the rest is the body. A body that decodes must pack,
 * format back to JSON and decode again to the same bytes (the mapping is
 * lossless for what it accepts); one that does not must say why.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "pbjson.h"
#include "rpc.pb-c.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"

static const ProtobufCMessageDescriptor *const MESSAGES[] = {
    &etcdserverpb__range_request__descriptor,
    &etcdserverpb__put_request__descriptor,
    &etcdserverpb__delete_range_request__descriptor,
    &etcdserverpb__txn_request__descriptor,
    &etcdserverpb__compaction_request__descriptor,
    &etcdserverpb__watch_request__descriptor,
    &etcdserverpb__lease_grant_request__descriptor,
    &etcdserverpb__lease_keep_alive_request__descriptor,
    &etcdserverpb__auth_user_add_request__descriptor,
    &etcdserverpb__auth_role_grant_permission_request__descriptor,
    &etcdserverpb__member_add_request__descriptor,
    &etcdserverpb__alarm_request__descriptor,
    &v3lockpb__lock_request__descriptor,
    &v3electionpb__campaign_request__descriptor,
    &v3electionpb__proclaim_request__descriptor,
};
#define N_MESSAGES (sizeof MESSAGES / sizeof MESSAGES[0])

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert(buf);
    protobuf_c_message_pack(m, buf);
    return buf;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = MESSAGES[data[0] % N_MESSAGES];
    const char *body = (const char *)data + 1;
    size_t len = size - 1, used = 0;
    char err[512] = "";
    ProtobufCMessage *m = NULL;
    if (pbjson_parse(d, body, len, &m, &used, err, sizeof err) != 0) {
        assert(err[0] != '\0');
        return 0;
    }
    assert(m && used <= len);
    size_t n1, n2, jlen;
    uint8_t *b1 = pack(m, &n1);
    char *json = pbjson_format(m, &jlen);
    protobuf_c_message_free_unpacked(m, NULL);
    assert(json);
    ProtobufCMessage *again = NULL;
    int rc = pbjson_parse(d, json, jlen, &again, &used, err, sizeof err);
    assert(rc == 0);
    uint8_t *b2 = pack(again, &n2);
    assert(n1 == n2 && memcmp(b1, b2, n1) == 0);
    protobuf_c_message_free_unpacked(again, NULL);
    free(json);
    free(b1);
    free(b2);
    return 0;
}
