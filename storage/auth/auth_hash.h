/*
 * auth_hash.h: user password hashing, bcrypt as etcd does it.
 *
 * etcd stores bcrypt hashes (golang.org/x/crypto/bcrypt, "$2a$NN$..." with
 * cost --bcrypt-cost, 4..31, default 10). kshim hashes with libxcrypt's
 * crypt_rn ("$2b$" prefix, salt from the kernel RNG) and verifies any
 * "$2a$", "$2b$" or "$2y$" hash, so hashes written by etcd verify here and
 * ours verify in etcd. Passwords are NUL-terminated strings: bcrypt, in Go
 * too, only uses the first 72 bytes; a NUL byte among those cannot be
 * passed to crypt and is rejected with -EINVAL (Go would hash it).
 *
 * Costly by design (cost 10 is ~60 ms): call off the event loop thread.
 * Thread-safe: no global state (crypt_rn with a stack crypt_data).
 */
#ifndef KSHIM_AUTH_HASH_H
#define KSHIM_AUTH_HASH_H

#include <stddef.h>

#define AUTH_BCRYPT_MIN_COST 4
#define AUTH_BCRYPT_MAX_COST 31
#define AUTH_BCRYPT_DEFAULT_COST 10
#define AUTH_BCRYPT_HASH_LEN 60 /* "$2b$10$" + 22 salt + 31 hash chars */
#define AUTH_HASH_BUF 64        /* buffer size for a hash + NUL */

/* etcd's NewAuthStore: a cost outside [4, 31] becomes the default 10. */
int auth_hash_cost_or_default(int cost);

/* Hashes the password bytes (password, len) with a fresh random salt into
 * out (>= AUTH_HASH_BUF bytes; NUL-terminated, AUTH_BCRYPT_HASH_LEN chars).
 * Only the first 72 bytes count (bcrypt). Returns 0, -EINVAL (cost outside
 * [4, 31], outlen too small, a NUL byte within the first 72 bytes), -EIO (no
 * random bytes or crypt failure). */
int auth_hash_password(const char *password, size_t len, int cost, char *out, size_t outlen);

/* Checks password against a stored bcrypt hash (hash_len bytes, need not be
 * NUL-terminated). Returns 0 on match, -EACCES on mismatch, -EINVAL when the
 * stored value is not a well-formed bcrypt hash or the password holds a NUL.
 * The comparison of the recomputed hash is constant time. */
int auth_hash_verify(const char *password, size_t password_len, const char *hash, size_t hash_len);

/* Parses the cost of a well-formed bcrypt hash; -EINVAL otherwise. */
int auth_hash_cost(const char *hash, size_t hash_len);

/* Constant-time equality of two equal-length buffers (1 equal, 0 not). */
int auth_ct_equal(const void *a, const void *b, size_t len);

#endif
