/*
 * config_file.h: etcd's YAML configuration file (--config-file), read with
 * libyaml (cmd/config_file.c).
 */
#ifndef KSHIM_CONFIG_FILE_H
#define KSHIM_CONFIG_FILE_H

#include <stddef.h>

/* Called for each setting found, with the etcd flag it stands for
 * ("listen-client-urls", "cert-file", "peer-cert-file", ...) and its value
 * (a sequence joined with commas). Returns 0 if applied, 1 if the flag is
 * unknown (the key is then ignored, as etcd ignores keys it does not know),
 * -1 if the value is refused (err filled). value NULL only asks whether the
 * flag is known (1 if not; anything else: known). */
typedef int (*config_file_set_fn)(void *ctx, const char *flag, const char *value, char *err, size_t errlen);

/* Reads path and calls set for every key with a value. Returns 0, or -1
 * with a message in err (unreadable file, YAML syntax error with its line,
 * a value of the wrong shape, or one that set refused). */
int config_file_load(const char *path, config_file_set_fn set, void *ctx, char *err, size_t errlen);

#endif
