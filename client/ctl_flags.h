/* ctl_flags.h: command-line flag parsing for kshimctl (etcdctl/cobra style).
 *
 * Owns: turning argv into positional arguments plus values stored into a
 * caller-owned options struct through a flag table. Flags may appear
 * anywhere ("get k --prefix" and "--prefix get k"), as "--name value",
 * "--name=value", "-w value"; bool flags take no value but accept
 * "--name=true|false"; "--" ends the flags. String values point into argv.
 */
#ifndef KSHIM_CTL_FLAGS_H
#define KSHIM_CTL_FLAGS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CFL_BOOL,    /* int */
    CFL_STRING,  /* const char * */
    CFL_INT,     /* int64_t */
    CFL_DURATION /* int, milliseconds, from a Go duration ("2s", "500ms") */
} cfl_type_t;

typedef struct ctl_flag {
    const char *name; /* long name without dashes */
    char shortname;   /* single-letter alias or 0 */
    cfl_type_t type;
    size_t offset;        /* offsetof(options struct, field) */
    const char *commands; /* NULL = global; else the command
                              names that accept it, comma-separated:
                              "get,del,endpoint status" */
    const char *help;
} ctl_flag_t;

#define CTL_MAX_FLAGS 64

typedef struct ctl_parsed {
    char *pos[32]; /* positional arguments (borrowed from argv) */
    int npos;
    uint64_t seen; /* bit i set: flags[i] was given */
} ctl_parsed_t;

/* Parse argv[1..argc-1]. 0 on success, -1 with err ("unknown flag: --x"). */
int ctl_parse(const ctl_flag_t *flags, int nflags, int argc, char **argv, void *opts, ctl_parsed_t *out,
              char *err, size_t errlen);

/* Does flag f apply to command cmd ("get", "endpoint status")? */
int ctl_flag_allowed(const ctl_flag_t *f, const char *cmd);

/* Go duration to milliseconds: "2s", "1m30s", "1.5s", "250ms", "0". -1 if bad. */
int64_t ctl_parse_duration_ms(const char *s);

#endif
