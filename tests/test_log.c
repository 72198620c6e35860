/*
 * test_log.c: the logger's set-up as etcd 3.4's setupLogging checks it
 * (refused loggers, outputs and levels with etcd's texts), zap lines
 * appended to file outputs, levels and the deprecated --debug, and the
 * capnslog text format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char g_dir[1024];

static int setup(void **state) {
    (void)state;
    const char *root = getenv("KSHIM_TEST_TMP");
    if (!root || !root[0]) root = "/tmp";
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", root);
    if (system(cmd) != 0) return -1;
    snprintf(g_dir, sizeof g_dir, "%s/log-XXXXXX", root);
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    log_config_t lc = {.outputs = "stderr"};
    char err[256];
    log_setup(&lc, err, sizeof err); /* close nothing, but stop writing to the files */
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path) {
    static char buf[8192];
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void expect_refused(const log_config_t *lc, int code, const char *text) {
    char err[512] = "";
    assert_int_equal(log_setup(lc, err, sizeof err), code);
    assert_string_equal(err, text);
}

static void test_refused_like_etcd(void **state) {
    (void)state;
    expect_refused(&(log_config_t){.logger = "bogus"}, LOG_ERR_LOGGER, "unknown logger option \"bogus\"");
    expect_refused(&(log_config_t){.level = "bogus"}, LOG_ERR_LEVEL, "unknown level \"bogus\"");
    expect_refused(&(log_config_t){.logger = "zap", .outputs = "default,stderr"}, LOG_ERR_OUTPUTS,
                   "multi logoutput for \"default\" is not supported yet");
    expect_refused(&(log_config_t){.logger = "capnslog", .outputs = "stderr,stdout"}, LOG_ERR_OUTPUTS,
                   "--logger=capnslog supports only 1 value in '--log-outputs', got [\"stderr\" \"stdout\"]");
    expect_refused(&(log_config_t){.logger = "capnslog", .outputs = "/x.log"}, LOG_ERR_OUTPUTS,
                   "unknown log-output \"/x.log\" (only supports \"default\", \"stderr\", \"stdout\")");
    char err[512];
    assert_int_equal(log_setup(&(log_config_t){.outputs = "/nonexistent-dir/x.log"}, err, sizeof err),
                     LOG_ERR_OPEN);
    assert_non_null(strstr(err, "couldn't open sink \"/nonexistent-dir/x.log\""));
}

static void test_zap_files_appended_and_levels(void **state) {
    (void)state;
    char a[1100], b[1100], list[3400], err[256];
    snprintf(a, sizeof a, "%s/a.log", g_dir);
    snprintf(b, sizeof b, "%s/b.log", g_dir);
    int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "old\n", 4), 4);
    close(fd);
    snprintf(list, sizeof list, "%s,%s,%s", a, b, a); /* a duplicate is one output */
    assert_int_equal(
        log_setup(&(log_config_t){.logger = "zap", .outputs = list, .level = "warn"}, err, sizeof err), 0);
    log_info("not at warn");
    log_warn("quote \" and\nnewline");
    char *got = slurp(a);
    assert_non_null(got);
    assert_true(strncmp(got, "old\n{\"level\":\"warn\",\"ts\":\"", 26) == 0);
    assert_non_null(strstr(got, "\"caller\":\"kshimd\",\"msg\":\"quote \\\" and\\u000anewline\"}\n"));
    assert_null(strstr(got, "not at warn"));
    assert_non_null(strstr(slurp(b), "quote"));

    assert_int_equal(log_setup(&(log_config_t){.outputs = b, .level = "info", .debug = 1}, err, sizeof err),
                     0);
    log_debug("debug via --debug");
    assert_non_null(strstr(slurp(b), "{\"level\":\"debug\""));
    assert_int_equal(log_setup(&(log_config_t){.outputs = b, .level = "panic"}, err, sizeof err), 0);
    log_error("silenced at panic");
    assert_null(strstr(slurp(b), "silenced"));
}

static void test_capnslog_text(void **state) {
    (void)state;
    char path[1100], err[256];
    snprintf(path, sizeof path, "%s/capnslog.out", g_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    assert_int_equal(log_setup(&(log_config_t){.logger = "capnslog", .outputs = "stdout"}, err, sizeof err),
                     0);
    log_warn("two\nlines");
    log_info("info");
    dup2(saved, STDOUT_FILENO);
    close(saved);
    char *got = slurp(path);
    /* 2026-12-02 07:08:23.407052 W | kshimd: two lines */
    assert_true(strlen(got) > 27);
    assert_int_equal(got[4], '-');
    assert_int_equal(got[10], ' ');
    assert_int_equal(got[19], '.');
    assert_true(strncmp(got + 26, " W | kshimd: two lines\n", 23) == 0);
    assert_non_null(strstr(got, " I | kshimd: info\n"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_like_etcd),
        cmocka_unit_test(test_zap_files_appended_and_levels),
        cmocka_unit_test(test_capnslog_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
