/*
 * test_config_file.c: cmd/config_file.c, the --config-file YAML reader:
 * etcd's own etcd.conf.yml.sample layout (keys, nulls, transport-security
 * sections, sequences), unknown keys ignored, refused values and YAML
 * syntax errors reported with their line, a missing file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config_file.h"

#define MAX_SEEN 64

typedef struct seen {
    char flag[MAX_SEEN][64];
    char value[MAX_SEEN][256];
    size_t n;
} seen_t;

/* Records every setting; "unknown-*" is unknown, "max-request-bytes: bad"
 * is refused. */
static int record(void *ctx, const char *flag, const char *value, char *err, size_t errlen) {
    seen_t *s = ctx;
    if (!strncmp(flag, "unknown", 7)) return 1;
    if (!value) return 0; /* known */
    if (!strcmp(flag, "max-request-bytes") && !strcmp(value, "bad")) {
        snprintf(err, errlen, "invalid value \"%s\" for %s", value, flag);
        return -1;
    }
    assert_true(s->n < MAX_SEEN);
    snprintf(s->flag[s->n], sizeof s->flag[0], "%s", flag);
    snprintf(s->value[s->n], sizeof s->value[0], "%s", value);
    s->n++;
    return 0;
}

static const char *lookup(const seen_t *s, const char *flag) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->flag[i], flag)) return s->value[i];
    return NULL;
}

static char *write_tmp(const char *text) {
    static char path[4096];
    const char *dir = getenv("KSHIM_TEST_TMP");
    snprintf(path, sizeof path, "%s/kshim-config-XXXXXX", dir && *dir ? dir : "/tmp");
    char *slash = strrchr(path, '/');
    *slash = '\0';
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    assert_int_equal(system(cmd), 0);
    *slash = '/';
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static int load(const char *text, seen_t *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    char *path = write_tmp(text);
    int rc = config_file_load(path, record, s, err, errlen);
    unlink(path);
    return rc;
}

static void test_sample_layout(void **state) {
    (void)state;
    seen_t s;
    char err[256] = "";
    const char *yml = "# etcd.conf.yml.sample, abridged\n"
                      "name: 'node-a'\n"
                      "data-dir: /var/lib/etcd\n"
                      "wal-dir:\n"
                      "heartbeat-interval: 100\n"
                      "election-timeout: 1000\n"
                      "quota-backend-bytes: 0\n"
                      "listen-client-urls: http://127.0.0.1:2379,https://127.0.0.1:2378\n"
                      "advertise-client-urls: http://127.0.0.1:2379\n"
                      "initial-cluster:\n"
                      "initial-cluster-token: 'etcd-cluster'\n"
                      "initial-cluster-state: 'new'\n"
                      "listen-metrics-urls: http://127.0.0.1:2381\n"
                      "client-transport-security:\n"
                      "  cert-file: /tls/server.crt\n"
                      "  key-file: /tls/server.key\n"
                      "  client-cert-auth: true\n"
                      "  trusted-ca-file: /tls/ca.crt\n"
                      "  auto-tls: false\n"
                      "  crl-file: /tls/ignored-by-3.4.crl\n"
                      "peer-transport-security:\n"
                      "  cert-file: /tls/peer.crt\n"
                      "  key-file:\n"
                      "  client-cert-auth: false\n"
                      "  auto-tls: true\n"
                      "log-outputs: [stderr, /var/log/etcd.log]\n"
                      "auto-compaction-retention: \"1\"\n"
                      "proxy: 'off'\n";
    assert_int_equal(load(yml, &s, err, sizeof err), 0);
    assert_string_equal(lookup(&s, "name"), "node-a");
    assert_string_equal(lookup(&s, "data-dir"), "/var/lib/etcd");
    assert_null(lookup(&s, "wal-dir"));         /* null: default kept */
    assert_null(lookup(&s, "initial-cluster")); /* null */
    assert_string_equal(lookup(&s, "heartbeat-interval"), "100");
    assert_string_equal(lookup(&s, "listen-client-urls"), "http://127.0.0.1:2379,https://127.0.0.1:2378");
    assert_string_equal(lookup(&s, "listen-metrics-urls"), "http://127.0.0.1:2381");
    assert_string_equal(lookup(&s, "initial-cluster-state"), "new");
    assert_string_equal(lookup(&s, "cert-file"), "/tls/server.crt");
    assert_string_equal(lookup(&s, "key-file"), "/tls/server.key");
    assert_string_equal(lookup(&s, "client-cert-auth"), "true");
    assert_string_equal(lookup(&s, "trusted-ca-file"), "/tls/ca.crt");
    assert_string_equal(lookup(&s, "auto-tls"), "false");
    assert_null(lookup(&s, "crl-file")); /* etcd 3.4 copies five fields only */
    assert_string_equal(lookup(&s, "peer-cert-file"), "/tls/peer.crt");
    assert_null(lookup(&s, "peer-key-file"));
    assert_string_equal(lookup(&s, "peer-client-cert-auth"), "false");
    assert_string_equal(lookup(&s, "peer-auto-tls"), "true");
    assert_string_equal(lookup(&s, "log-outputs"), "stderr,/var/log/etcd.log");
    assert_string_equal(lookup(&s, "auto-compaction-retention"), "1");
    assert_string_equal(lookup(&s, "proxy"), "off");
}

static void test_unknown_keys_ignored(void **state) {
    (void)state;
    seen_t s;
    char err[256] = "";
    assert_int_equal(
        load("unknown-key: 1\nname: x\nunknown-map:\n  a: b\nunknown-list: [1, 2]\n", &s, err, sizeof err),
        0);
    assert_int_equal(s.n, 1);
    assert_string_equal(lookup(&s, "name"), "x");
}

static void test_empty_file(void **state) {
    (void)state;
    seen_t s;
    char err[256] = "";
    assert_int_equal(load("", &s, err, sizeof err), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(load("# only a comment\n", &s, err, sizeof err), 0);
    assert_int_equal(s.n, 0);
}

static void test_refused_value_has_line(void **state) {
    (void)state;
    seen_t s;
    char err[256] = "";
    assert_int_equal(load("name: x\nmax-request-bytes: bad\n", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "max-request-bytes"));
    assert_non_null(strstr(err, "line 2"));
}

static void test_syntax_error(void **state) {
    (void)state;
    seen_t s;
    char err[256] = "";
    assert_int_equal(load("name: x\n  data-dir: [unclosed\n", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "line"));
    assert_int_equal(load("- a\n- b\n", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "top level"));
    assert_int_equal(load("name: {a: b}\n", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "name"));
}

static void test_missing_file(void **state) {
    (void)state;
    seen_t s;
    char err[256] = "";
    assert_int_equal(config_file_load("/nonexistent/etcd.conf.yml", record, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_layout), cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_empty_file),    cmocka_unit_test(test_refused_value_has_line),
        cmocka_unit_test(test_syntax_error),  cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
