/*
 * log.h: kshimd's logger. One line per message on stderr, in the shape of
 * etcd's structured logs ({"level":..,"ts":..,"msg":..}) so log scrapers that
 * parse etcd keep working. Thread-safe (one write(2) per line).
 */
#ifndef KSHIM_LOG_H
#define KSHIM_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses etcd's --log-level values (debug, info, warn, error, panic, fatal). */
int log_parse_level(const char *name, enum log_level *out);
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
