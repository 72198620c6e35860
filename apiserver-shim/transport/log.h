/*
 * log.h: kshimd's logger. One line per message, in one of etcd 3.4's two
 * formats (--logger): "zap", etcd's structured JSON lines
 * ({"level":..,"ts":..,"caller":..,"msg":..}, the default), or "capnslog",
 * etcd's older text lines ("2006-01-02 15:04:05.000000 I | kshimd: msg").
 * Lines go to stderr until log_setup names the outputs (--log-outputs).
 * Thread-safe (one write(2) per line and output).
 */
#ifndef KSHIM_LOG_H
#define KSHIM_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

enum log_err {
    LOG_ERR_LOGGER = -1,  /* unknown --logger */
    LOG_ERR_OUTPUTS = -2, /* bad --log-outputs for the logger */
    LOG_ERR_LEVEL = -3,   /* unknown --log-level (etcd 3.4 panics: exit 2) */
    LOG_ERR_OPEN = -4,    /* an output file cannot be opened */
};

typedef struct log_config {
    const char *logger;  /* "zap" (NULL = zap) or "capnslog" */
    const char *outputs; /* comma list: default, stderr, stdout, systemd/journal, file paths */
    const char *level;   /* debug, info, warn, error, dpanic, panic, fatal (NULL = info) */
    int debug;           /* deprecated --debug: level debug */
} log_config_t;

/* Applies cfg as etcd 3.4's setupLogging does (and refuses what it refuses,
 * with its message in err). File outputs are opened for appending; the
 * previous outputs are replaced only on success. Prints etcd's deprecation
 * warnings on stderr. Returns 0 or a negative log_err. */
int log_setup(const log_config_t *cfg, char *err, size_t errlen);
/* Parses etcd's --log-level values into a threshold: debug, info, warn,
 * error, and dpanic, panic, fatal, which only log more severe lines than
 * kshimd writes (so they silence it, as in etcd, which logs almost nothing
 * at those levels). Returns 0 or LOG_ERR_LEVEL. */
int log_parse_level(const char *name, int *threshold);
void log_set_level(int threshold);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
