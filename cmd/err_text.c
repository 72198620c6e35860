/*
 * err_text.c: formatting a command's error message into the caller's
 * buffer (see err_text.h).
 */
#include "err_text.h"

#include <stdarg.h>
#include <stdio.h>

int err_text(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
