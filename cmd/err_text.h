/*
 * err_text.h: the error text of kshimd's and kshimctl's data-dir commands
 * (the restore, the etcd data-dir take-over, snapshot save, migrate), which
 * return -1 and leave a message in the caller's buffer.
 */
#ifndef KSHIM_ERR_TEXT_H
#define KSHIM_ERR_TEXT_H

#include <stddef.h>

/* Formats the message into err (errlen bytes, always terminated); returns -1. */
int err_text(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
