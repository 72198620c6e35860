/*
 * log.c: kshimd's logger (see log.h). Formats the whole line into a stack
 * buffer and writes it with one write(2), so lines from the loop thread and
 * the raft thread never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *name, enum log_level *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "panic") == 0 || strcmp(name, "fatal") == 0 || strcmp(name, "dpanic") == 0) {
        *out = LOG_ERROR;
        return 0;
    }
    return -1;
}

void log_set_level(enum log_level level) { current_level = level; }

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

void log_msg(enum log_level level, const char *fmt, ...) {
    if (level < current_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2400];
    int n = snprintf(
        line, sizeof line,
        "{\"level\":\"%s\",\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"caller\":\"kshimd\",\"msg\":\"",
        level_names[level], tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        ts.tv_nsec / 1000);
    n += (int)json_escape(line + n, sizeof line - (size_t)n - 4, msg);
    n += snprintf(line + n, sizeof line - (size_t)n, "\"}\n");
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
