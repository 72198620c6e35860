/* ctl_flags.c: kshimctl flag parsing (see ctl_flags.h).
 *
 * Owns: nothing beyond the call; values are written into the caller's
 * struct at the offsets the flag table gives.
 */
#include "ctl_flags.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t ctl_parse_duration_ms(const char *s) {
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1},
                 {"s", 1000},  {"m", 60000}, {"h", 3600000}};
    if (!s || !*s) return -1;
    if (strcmp(s, "0") == 0) return 0;
    double total = 0;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno || v < 0 || *s == '+' || *s == '-') return -1;
        s = end;
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(s, units[i].unit, l) == 0 && l > best) {
                best = l;
                mult = units[i].ms;
            }
        }
        if (!best) return -1;
        s += best;
        total += v * mult;
    }
    if (total > 1e15) return -1;
    return (int64_t)(total + 0.5);
}

int ctl_flag_allowed(const ctl_flag_t *f, const char *cmd) {
    if (!f->commands) return 1;
    /* commands is a comma-separated list of command names, so that
     * multi-word commands fit ("get,endpoint status"). */
    size_t cl = strlen(cmd);
    const char *p = f->commands;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == cl && strncmp(p, cmd, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int find_long(const ctl_flag_t *flags, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) return i;
    return -1;
}

static int find_short(const ctl_flag_t *flags, int n, char c) {
    for (int i = 0; i < n; i++)
        if (flags[i].shortname && flags[i].shortname == c) return i;
    return -1;
}

static int store_value(const ctl_flag_t *f, void *opts, const char *v, char *err, size_t errlen) {
    char *dst = (char *)opts + f->offset;
    char *end;
    switch (f->type) {
    case CFL_BOOL:
        if (!v || strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
            *(int *)dst = 1;
            return 0;
        }
        if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
            *(int *)dst = 0;
            return 0;
        }
        break;
    case CFL_STRING: *(const char **)dst = v; return 0;
    case CFL_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end != v && !*end && !errno) {
            *(int64_t *)dst = x;
            return 0;
        }
        break;
    }
    case CFL_DURATION: {
        int64_t ms = ctl_parse_duration_ms(v);
        if (ms >= 0 && ms <= 0x7fffffff) {
            *(int *)dst = (int)ms;
            return 0;
        }
        break;
    }
    }
    snprintf(err, errlen, "invalid argument \"%s\" for \"--%s\" flag", v ? v : "", f->name);
    return -1;
}

/* One flag argument at argv[*i]; may consume the next argument as value. */
static int parse_flag(const ctl_flag_t *flags, int nflags, int argc, char **argv, int *i, void *opts,
                      ctl_parsed_t *out, char *err, size_t errlen) {
    const char *a = argv[*i];
    const char *val = NULL;
    int idx;
    if (a[1] == '-') {
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        idx = find_long(flags, nflags, name, len);
        if (eq) val = eq + 1;
    } else {
        idx = a[2] == 0 ? find_short(flags, nflags, a[1]) : -1;
    }
    if (idx < 0) {
        snprintf(err, errlen, "unknown flag: %s", a);
        return -1;
    }
    const ctl_flag_t *f = &flags[idx];
    if (!val && f->type != CFL_BOOL) {
        if (*i + 1 >= argc) {
            snprintf(err, errlen, "flag needs an argument: %s", a);
            return -1;
        }
        val = argv[++*i];
    }
    assert(idx < 64);
    out->seen |= 1ull << idx;
    return store_value(f, opts, val, err, errlen);
}

int ctl_parse(const ctl_flag_t *flags, int nflags, int argc, char **argv, void *opts, ctl_parsed_t *out,
              char *err, size_t errlen) {
    assert(nflags <= CTL_MAX_FLAGS);
    memset(out, 0, sizeof *out);
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int is_flag = !only_pos && a[0] == '-' && a[1] != 0 && !(a[1] >= '0' && a[1] <= '9');
        if (is_flag && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (is_flag) {
            if (parse_flag(flags, nflags, argc, argv, &i, opts, out, err, errlen) < 0) return -1;
            continue;
        }
        if (out->npos == (int)(sizeof out->pos / sizeof out->pos[0])) {
            snprintf(err, errlen, "too many arguments");
            return -1;
        }
        out->pos[out->npos++] = argv[i];
    }
    return 0;
}
