/*
 * log.c: kshimd's logger (see log.h). Formats the whole line into a stack
 * buffer and writes it with one write(2) per output, so lines from the loop
 * thread and the raft thread never interleave.
 *
 * Owns: the output descriptors (stderr/stdout, or files opened by
 * log_setup, kept open for the process lifetime), the format and the level
 * threshold. log_setup runs once at start-up, before any other thread.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LOG_MAX_OUTPUTS = 8 };
enum log_format { FORMAT_ZAP, FORMAT_CAPNSLOG };

static int threshold = LOG_INFO;
static enum log_format format = FORMAT_ZAP;
static int out_fds[LOG_MAX_OUTPUTS] = {STDERR_FILENO};
static size_t n_out_fds = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error", "dpanic", "panic", "fatal"};
static const char capnslog_chars[] = {'D', 'I', 'W', 'E'}; /* capnslog's DEBUG, INFO, WARNING, ERROR */

int log_parse_level(const char *name, int *out) {
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return LOG_ERR_LEVEL;
}

void log_set_level(int level) { threshold = level; }

/* The outputs as etcd 3.4's setupLogging reads them: "name1,name2". */
static size_t split_outputs(const char *list, char names[][4096], size_t max) {
    size_t n = 0;
    const char *p = list && *list ? list : "default";
    while (*p && n < max) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len >= 4096) len = 4095;
        if (len) {
            memcpy(names[n], p, len);
            names[n][len] = '\0';
            int dup = 0; /* etcd's UniqueStringsValue */
            for (size_t i = 0; i < n; i++) dup |= strcmp(names[i], names[n]) == 0;
            if (!dup) n++;
        }
        p = comma ? comma + 1 : p + strlen(p);
    }
    return n;
}

/* Go's %q of a string list: ["a" "b"]. */
static void quote_list(char names[][4096], size_t n, char *out, size_t cap) {
    size_t len = (size_t)snprintf(out, cap, "[");
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s\"%s\"", i ? " " : "", names[i]);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

static int check_capnslog_outputs(char names[][4096], size_t n, char *err, size_t errlen) {
    if (n != 1) {
        char list[1024];
        quote_list(names, n, list, sizeof list);
        snprintf(err, errlen, "--logger=capnslog supports only 1 value in '--log-outputs', got %s", list);
        return LOG_ERR_OUTPUTS;
    }
    if (strcmp(names[0], "default") && strcmp(names[0], "stderr") && strcmp(names[0], "stdout")) {
        snprintf(err, errlen, "unknown log-output \"%s\" (only supports \"default\", \"stderr\", \"stdout\")",
                 names[0]);
        return LOG_ERR_OUTPUTS;
    }
    return 0;
}

/* zap: any number of outputs, "default" alone; files appended. Fills fds. */
static int open_zap_outputs(char names[][4096], size_t n, int *fds, size_t *nfds, char *err, size_t errlen) {
    *nfds = 0;
    for (size_t i = 0; i < n; i++) {
        if (n > 1 && strcmp(names[i], "default") == 0) {
            snprintf(err, errlen, "multi logoutput for \"default\" is not supported yet");
            return LOG_ERR_OUTPUTS;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int fd;
        /* systemd/journal: kshimd has no journald client; under systemd,
         * stderr is the journal. */
        if (!strcmp(names[i], "default") || !strcmp(names[i], "stderr") ||
            !strcmp(names[i], "systemd/journal"))
            fd = STDERR_FILENO;
        else if (!strcmp(names[i], "stdout"))
            fd = STDOUT_FILENO;
        else
            fd = open(names[i], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            snprintf(err, errlen, "couldn't open sink \"%s\": open %s: %s", names[i], names[i],
                     strerror(errno));
            for (size_t j = 0; j < *nfds; j++)
                if (fds[j] > STDERR_FILENO) close(fds[j]);
            return LOG_ERR_OPEN;
        }
        int seen = 0;
        for (size_t j = 0; j < *nfds; j++) seen |= fds[j] == fd;
        if (seen) continue;
        fds[(*nfds)++] = fd;
    }
    return 0;
}

static void warn_deprecated(const log_config_t *cfg, const char *level) {
    if (cfg->debug) {
        fprintf(stderr,
                "[WARNING] Deprecated '--debug' flag is set to true (use '--log-level=debug' instead\n");
        if (strcmp(level, "debug") != 0)
            fprintf(stderr,
                    "[WARNING] Deprecated '--debug' flag is set to true with inconsistent '--log-level=%s' "
                    "flag\n",
                    level);
    }
    if (cfg->logger && !strcmp(cfg->logger, "capnslog"))
        fprintf(stderr,
                "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead\n");
}

int log_setup(const log_config_t *cfg, char *err, size_t errlen) {
    const char *logger = cfg->logger && *cfg->logger ? cfg->logger : "zap";
    const char *level = cfg->level && *cfg->level ? cfg->level : "info";
    int lvl;
    warn_deprecated(cfg, level);
    if (log_parse_level(level, &lvl) != 0) {
        snprintf(err, errlen, "unknown level \"%s\"", level);
        return LOG_ERR_LEVEL;
    }
    if (cfg->debug) lvl = LOG_DEBUG;
    static char names[LOG_MAX_OUTPUTS][4096];
    size_t n = split_outputs(cfg->outputs, names, LOG_MAX_OUTPUTS);
    int fds[LOG_MAX_OUTPUTS];
    size_t nfds = 0;
    enum log_format fmt;
    if (!strcmp(logger, "zap")) {
        fmt = FORMAT_ZAP;
        int rc = open_zap_outputs(names, n, fds, &nfds, err, errlen);
        if (rc != 0) return rc;
    } else if (!strcmp(logger, "capnslog")) {
        fmt = FORMAT_CAPNSLOG;
        int rc = check_capnslog_outputs(names, n, err, errlen);
        if (rc != 0) return rc;
        fds[0] = strcmp(names[0], "stdout") ? STDERR_FILENO : STDOUT_FILENO;
        nfds = 1;
    } else {
        snprintf(err, errlen, "unknown logger option \"%s\"", logger);
        return LOG_ERR_LOGGER;
    }
    format = fmt;
    threshold = lvl;
    memcpy(out_fds, fds, nfds * sizeof fds[0]);
    n_out_fds = nfds;
    return 0;
}

/* Appends msg to buf as a JSON string body (quotes and control bytes escaped). */
static size_t json_escape(char *buf, size_t cap, const char *msg) {
    size_t n = 0;
    for (const char *p = msg; *p && n + 7 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n] = '\0';
    return n;
}

static int format_zap(char *line, size_t cap, enum log_level level, const struct timespec *ts,
                      const char *msg) {
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    int n = snprintf(
        line, cap,
        "{\"level\":\"%s\",\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"caller\":\"kshimd\",\"msg\":\"",
        level_names[level], tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        ts->tv_nsec / 1000);
    n += (int)json_escape(line + n, cap - (size_t)n - 4, msg);
    n += snprintf(line + n, cap - (size_t)n, "\"}\n");
    return n;
}

/* capnslog's PrettyFormatter: local time, level letter, package. */
static int format_capnslog(char *line, size_t cap, enum log_level level, const struct timespec *ts,
                           const char *msg) {
    struct tm tm;
    localtime_r(&ts->tv_sec, &tm);
    int n = snprintf(line, cap, "%04d-%02d-%02d %02d:%02d:%02d.%06ld %c | kshimd: %s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000,
                     capnslog_chars[level], msg);
    if (n > (int)cap - 2) n = (int)cap - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n') line[i] = ' '; /* one line per message */
    line[n++] = '\n';
    line[n] = '\0';
    return n;
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if ((int)level < threshold) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[2400];
    int n = format == FORMAT_CAPNSLOG ? format_capnslog(line, sizeof line, level, &ts, msg)
                                      : format_zap(line, sizeof line, level, &ts, msg);
    for (size_t i = 0; i < n_out_fds; i++) {
        ssize_t w = write(out_fds[i], line, (size_t)n);
        (void)w;
    }
}
