/*
 * test_pbjson.c: the JSON <-> protobuf-c converter (proto/pbjson.c) on etcd's
 * messages: nested messages, bytes as base64, 64-bit integers as strings,
 * repeated fields, enums, oneofs, unknown fields, and malformed input (an
 * error, never a crash or a leak under ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pbjson.h"
#include "rpc.pb-c.h"

static ProtobufCMessage *parse_ok(const ProtobufCMessageDescriptor *d, const char *json) {
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    int rc = pbjson_parse(d, json, strlen(json), &m, NULL, err, sizeof err);
    if (rc != 0) fail_msg("parse %s: %d %s", json, rc, err);
    assert_non_null(m);
    return m;
}

static int parse_err(const ProtobufCMessageDescriptor *d, const char *json, char *err, size_t errlen) {
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    int rc = pbjson_parse(d, json, strlen(json), &m, NULL, err, errlen);
    assert_null(m);
    return rc;
}

/* JSON -> message -> wire -> message -> JSON equals the expected text. */
static void assert_round_trip(const ProtobufCMessageDescriptor *d, const char *in, const char *want) {
    ProtobufCMessage *m = parse_ok(d, in);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(m, buf);
    protobuf_c_message_free_unpacked(m, NULL);
    ProtobufCMessage *back = protobuf_c_message_unpack(d, NULL, n, buf);
    free(buf);
    assert_non_null(back);
    char *out = pbjson_format(back, NULL);
    protobuf_c_message_free_unpacked(back, NULL);
    assert_string_equal(out, want);
    free(out);
}

static void test_range_request_fields(void **state) {
    (void)state;
    Etcdserverpb__RangeRequest *r = (Etcdserverpb__RangeRequest *)parse_ok(
        &etcdserverpb__range_request__descriptor,
        "{\"key\":\"Zm9v\",\"rangeEnd\":\"Zm9w\",\"limit\":\"10\",\"revision\":7,"
        "\"sort_order\":\"DESCEND\",\"sort_target\":2,\"keys_only\":true,\"bogus\":{\"x\":[1,2]}}");
    assert_int_equal(r->key.len, 3);
    assert_memory_equal(r->key.data, "foo", 3);
    assert_memory_equal(r->range_end.data, "fop", 3);
    assert_int_equal(r->limit, 10);
    assert_int_equal(r->revision, 7);
    assert_int_equal(r->sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
    assert_int_equal(r->sort_target, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE);
    assert_true(r->keys_only);
    assert_false(r->count_only);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_round_trip_nested_repeated(void **state) {
    (void)state;
    /* Defaults are left out, int64 become strings, enums names, bytes base64. */
    assert_round_trip(
        &etcdserverpb__range_response__descriptor,
        "{\"header\":{\"cluster_id\":\"18446744073709551615\",\"revision\":\"-0\",\"raft_term\":2},"
        "\"kvs\":[{\"key\":\"YQ==\",\"value\":\"\",\"version\":\"1\"},{\"key\":\"Yg==\","
        "\"lease\":\"9223372036854775807\"}],\"count\":\"2\",\"more\":false}",
        "{\"header\":{\"cluster_id\":\"18446744073709551615\",\"raft_term\":\"2\"},"
        "\"kvs\":[{\"key\":\"YQ==\",\"version\":\"1\"},{\"key\":\"Yg==\","
        "\"lease\":\"9223372036854775807\"}],\"count\":\"2\"}");
    /* An empty nested message is still written. */
    assert_round_trip(&etcdserverpb__put_response__descriptor, "{\"header\":{}}", "{\"header\":{}}");
}

static void test_oneof_and_txn(void **state) {
    (void)state;
    assert_round_trip(
        &etcdserverpb__txn_request__descriptor,
        "{\"compare\":[{\"result\":\"EQUAL\",\"target\":\"VALUE\",\"key\":\"Zm9v\",\"value\":\"YmFy\"},"
        "{\"target\":\"VERSION\",\"key\":\"Zm9v\",\"version\":0}],"
        "\"success\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"Yg==\"}}],"
        "\"failure\":[{\"requestRange\":{\"key\":\"Zm9v\"}}]}",
        "{\"compare\":[{\"target\":\"VALUE\",\"key\":\"Zm9v\",\"value\":\"YmFy\"},{\"key\":\"Zm9v\","
        "\"version\":\"0\"}],\"success\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"Yg==\"}}],"
        "\"failure\":[{\"request_range\":{\"key\":\"Zm9v\"}}]}");
    char err[256];
    assert_int_equal(
        parse_err(&etcdserverpb__compare__descriptor, "{\"version\":1,\"mod_revision\":2}", err, sizeof err),
        PBJSON_E_TYPE);
    /* Two members of a oneof, the second a message: nothing leaks. */
    assert_int_equal(parse_err(&etcdserverpb__request_op__descriptor,
                               "{\"request_put\":{\"key\":\"YQ==\"},\"request_range\":{\"key\":\"YQ==\"}}",
                               err, sizeof err),
                     PBJSON_E_TYPE);
}

static void test_repeated_scalars_and_strings(void **state) {
    (void)state;
    assert_round_trip(&etcdserverpb__auth_user_get_response__descriptor, "{\"roles\":[\"root\",\"\",\"r2\"]}",
                      "{\"roles\":[\"root\",\"\",\"r2\"]}");
    assert_round_trip(&etcdserverpb__lease_time_to_live_response__descriptor,
                      "{\"ID\":\"5\",\"TTL\":\"-1\",\"keys\":[\"YQ==\",\"\"]}",
                      "{\"ID\":\"5\",\"TTL\":\"-1\",\"keys\":[\"YQ==\",\"\"]}");
}

static void test_go_string_escapes(void **state) {
    (void)state;
    /* encoding/json's HTML-safe escapes, and JSON's own. */
    assert_round_trip(&etcdserverpb__auth_user_get_response__descriptor,
                      "{\"roles\":[\"a<b>&c\",\"q\\\"/\\\\\",\"\\u2028x\\n\",\"\u00e9\"]}",
                      "{\"roles\":[\"a\\u003cb\\u003e\\u0026c\",\"q\\\"/\\\\\",\"\\u2028x\\n\",\"\u00e9\"]}");
}

static void test_stream_of_values(void **state) {
    (void)state;
    const char *body = "{\"create_request\":{\"key\":\"YQ==\"}}\n {\"cancel_request\":{\"watch_id\":\"3\"}}";
    size_t used = 0, len = strlen(body);
    ProtobufCMessage *m = NULL;
    char err[128];
    assert_int_equal(
        pbjson_parse(&etcdserverpb__watch_request__descriptor, body, len, &m, &used, err, sizeof err), 0);
    Etcdserverpb__WatchRequest *w = (Etcdserverpb__WatchRequest *)m;
    assert_int_equal(w->request_union_case, ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST);
    protobuf_c_message_free_unpacked(m, NULL);
    assert_true(used > 0 && used < len);
    assert_int_equal(pbjson_parse(&etcdserverpb__watch_request__descriptor, body + used, len - used, &m,
                                  &used, err, sizeof err),
                     0);
    w = (Etcdserverpb__WatchRequest *)m;
    assert_int_equal(w->request_union_case, ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST);
    assert_int_equal(w->cancel_request->watch_id, 3);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_empty_body_is_empty_message(void **state) {
    (void)state;
    assert_round_trip(&etcdserverpb__range_request__descriptor, "  \n", "{}");
    assert_round_trip(&etcdserverpb__range_request__descriptor, "{\"key\":null}", "{}");
    assert_round_trip(&etcdserverpb__range_request__descriptor, "null", "{}");
    assert_round_trip(&etcdserverpb__range_request__descriptor, "{\"limit\":3} trailing",
                      "{\"limit\":\"3\"}");
}

static void test_malformed(void **state) {
    (void)state;
    char err[256];
    const ProtobufCMessageDescriptor *d = &etcdserverpb__range_request__descriptor;
    assert_int_equal(parse_err(d, "{\"key\":\"Zm9v\"", err, sizeof err), PBJSON_E_SYNTAX);
    assert_string_equal(err, "unexpected EOF");
    assert_int_equal(parse_err(d, "{key}", err, sizeof err), PBJSON_E_SYNTAX);
    assert_int_equal(parse_err(d, "[1,2]", err, sizeof err), PBJSON_E_TYPE);
    assert_int_equal(parse_err(d, "{\"key\":5}", err, sizeof err), PBJSON_E_TYPE);
    assert_int_equal(parse_err(d, "{\"key\":\"***\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_string_equal(err, "illegal base64 data at input byte 0");
    /* Go's encoding/json: padded standard base64 only, as etcd's gateway. */
    assert_int_equal(parse_err(d, "{\"key\":\"YQ\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_string_equal(err, "illegal base64 data at input byte 0");
    assert_int_equal(parse_err(d, "{\"key\":\"YWJj-A==\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_string_equal(err, "illegal base64 data at input byte 4");
    assert_int_equal(parse_err(d, "{\"key\":5}", err, sizeof err), PBJSON_E_TYPE);
    assert_string_equal(err, "json: cannot unmarshal number into Go value of type []uint8");
    assert_int_equal(parse_err(d, "{\"limit\":\"x\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_string_equal(err, "invalid character 'x' looking for beginning of value");
    assert_int_equal(parse_err(d, "{\"sort_order\":\"UP\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_string_equal(err, "unknown value \"UP\" for enum etcdserverpb.RangeRequest_SortOrder");
    assert_int_equal(parse_err(d, "{key}", err, sizeof err), PBJSON_E_SYNTAX);
    assert_string_equal(err, "invalid character 'k' looking for beginning of object key string");
    assert_int_equal(parse_err(d, "{\"limit\":\"12x\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_int_equal(parse_err(d, "{\"limit\":1.5}", err, sizeof err), PBJSON_E_TYPE);
    assert_int_equal(parse_err(d, "{\"keys_only\":\"yes\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_int_equal(parse_err(d, "{\"sort_order\":\"SIDEWAYS\"}", err, sizeof err), PBJSON_E_TYPE);
    assert_int_equal(parse_err(&etcdserverpb__txn_request__descriptor,
                               "{\"success\":[{\"request_put\":{\"key\":\"YQ==\"}},{\"request_put\":7}]}",
                               err, sizeof err),
                     PBJSON_E_TYPE);
    assert_int_equal(parse_err(&etcdserverpb__auth_user_get_response__descriptor, "{\"roles\":[\"a\",3]}",
                               err, sizeof err),
                     PBJSON_E_TYPE);
    assert_int_equal(parse_err(&etcdserverpb__lease_grant_request__descriptor,
                               "{\"TTL\":\"99999999999999999999\"}", err, sizeof err),
                     PBJSON_E_TYPE);
    /* Deep nesting is refused, not recursed into without bound. */
    char deep[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) deep[n++] = '[';
    deep[n] = 0;
    assert_true(parse_err(d, deep, err, sizeof err) < 0);
}

/* Mutated etcd requests (bytes flipped, cut, spliced), parsed into every
 * request type: an answer or an error each time, never a crash or a leak
 * (ASan); what parses formats and parses again. Deterministic (fixed seed). */
static void test_mutations_never_crash(void **state) {
    (void)state;
    static const char *const seeds[] = {
        "{\"compare\":[{\"key\":\"YQ==\",\"target\":\"VALUE\",\"value\":\"MQ==\"}],\"success\":[{\"request_"
        "put\":"
        "{\"key\":\"YQ==\",\"lease\":\"5\"}}],\"failure\":[{\"request_txn\":{\"success\":[{}]}}]}",
        "{\"create_request\":{\"key\":\"YQ==\",\"range_end\":\"AA==\",\"filters\":[\"NOPUT\",1],\"prev_kv\":"
        "true}}",
        "{\"key\":\"YQ==\",\"limit\":-1,\"sort_order\":\"DESCEND\",\"revision\":\"18446744073709551615\"}",
        "{\"name\":\"r\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"YQ==\"},\"options\":{\"no_password\":"
        "true}}",
    };
    const ProtobufCMessageDescriptor *types[] = {
        &etcdserverpb__txn_request__descriptor,
        &etcdserverpb__watch_request__descriptor,
        &etcdserverpb__range_request__descriptor,
        &etcdserverpb__auth_role_grant_permission_request__descriptor,
        &etcdserverpb__auth_user_add_request__descriptor,
        &etcdserverpb__lease_grant_request__descriptor,
    };
    static const char junk[] = "{}[]\",:0123456789-.eE+ntrufalse\\=/AQY";
    unsigned seed = 12345;
    char buf[512];
    for (int iter = 0; iter < 20000; iter++) {
        const char *src = seeds[iter % 4];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int edits = 1 + (int)((seed = seed * 1103515245 + 12345) >> 16) % 4;
        for (int e = 0; e < edits && n > 0; e++) {
            seed = seed * 1103515245 + 12345;
            size_t at = (seed >> 8) % n;
            switch ((seed >> 4) % 3) {
            case 0: buf[at] = junk[(seed >> 12) % (sizeof junk - 1)]; break; /* flip */
            case 1: n = at; break;                                           /* cut */
            default:                                                         /* splice a byte in */
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = junk[(seed >> 12) % (sizeof junk - 1)];
                    n++;
                }
            }
        }
        const ProtobufCMessageDescriptor *d = types[iter % 6];
        ProtobufCMessage *m = NULL;
        char err[256];
        if (pbjson_parse(d, buf, n, &m, NULL, err, sizeof err) != 0) {
            assert_null(m);
            continue;
        }
        size_t len = 0;
        char *json = pbjson_format(m, &len);
        assert_non_null(json);
        ProtobufCMessage *again = NULL;
        assert_int_equal(pbjson_parse(d, json, len, &again, NULL, err, sizeof err), 0);
        char *json2 = pbjson_format(again, NULL);
        assert_string_equal(json, json2);
        free(json);
        free(json2);
        protobuf_c_message_free_unpacked(again, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_request_fields),
        cmocka_unit_test(test_round_trip_nested_repeated),
        cmocka_unit_test(test_oneof_and_txn),
        cmocka_unit_test(test_repeated_scalars_and_strings),
        cmocka_unit_test(test_stream_of_values),
        cmocka_unit_test(test_go_string_escapes),
        cmocka_unit_test(test_empty_body_is_empty_message),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
