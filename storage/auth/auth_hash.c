/*
 * auth_hash.c: bcrypt password hashing and verification (see auth_hash.h).
 *
 * Owns: salt generation (getrandom -> crypt_gensalt_rn "$2b$"), hashing
 * through crypt_rn, bcrypt format validation (so that a corrupt stored value
 * never falls through to another crypt method such as DES), and the
 * constant-time comparison.
 */
#include "auth_hash.h"

#include <crypt.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#define BCRYPT_SALT_BYTES 16
#define BCRYPT_KEY_MAX 72 /* bcrypt ignores every byte after the 72nd */

int auth_hash_cost_or_default(int cost) {
    if (cost < AUTH_BCRYPT_MIN_COST || cost > AUTH_BCRYPT_MAX_COST) return AUTH_BCRYPT_DEFAULT_COST;
    return cost;
}

int auth_ct_equal(const void *a, const void *b, size_t len) {
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < len; i++) diff |= (uint8_t)(x[i] ^ y[i]);
    return diff == 0;
}

static int is_bcrypt_b64(char c) {
    return c == '.' || c == '/' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int auth_hash_cost(const char *hash, size_t hash_len) {
    if (hash_len != AUTH_BCRYPT_HASH_LEN) return -EINVAL;
    if (hash[0] != '$' || hash[1] != '2' || hash[3] != '$' || hash[6] != '$') return -EINVAL;
    if (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y') return -EINVAL;
    if (hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9') return -EINVAL;
    for (size_t i = 7; i < hash_len; i++)
        if (!is_bcrypt_b64(hash[i])) return -EINVAL;
    int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
    if (cost < AUTH_BCRYPT_MIN_COST || cost > AUTH_BCRYPT_MAX_COST) return -EINVAL;
    return cost;
}

static int fill_random(uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -EIO;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Copies the bytes bcrypt uses (the first 72) into a C string. */
static int bcrypt_key(const char *password, size_t len, char key[BCRYPT_KEY_MAX + 1]) {
    if (len > BCRYPT_KEY_MAX) len = BCRYPT_KEY_MAX;
    if (len && memchr(password, 0, len) != NULL) return -EINVAL;
    if (len) memcpy(key, password, len);
    key[len] = 0;
    return 0;
}

int auth_hash_password(const char *password, size_t len, int cost, char *out, size_t outlen) {
    if (cost < AUTH_BCRYPT_MIN_COST || cost > AUTH_BCRYPT_MAX_COST) return -EINVAL;
    if (outlen < AUTH_HASH_BUF) return -EINVAL;
    char key[BCRYPT_KEY_MAX + 1];
    if (bcrypt_key(password, len, key) != 0) return -EINVAL;
    uint8_t rnd[BCRYPT_SALT_BYTES];
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    int rc = -EIO;
    if (fill_random(rnd, sizeof rnd) == 0 && crypt_gensalt_rn("$2b$", (unsigned long)cost, (const char *)rnd,
                                                              sizeof rnd, setting, sizeof setting) != NULL) {
        struct crypt_data data;
        memset(&data, 0, sizeof data);
        const char *h = crypt_rn(key, setting, &data, sizeof data);
        if (h && strlen(h) == AUTH_BCRYPT_HASH_LEN && auth_hash_cost(h, AUTH_BCRYPT_HASH_LEN) == cost &&
            h[2] == 'b') {
            memcpy(out, h, AUTH_BCRYPT_HASH_LEN + 1);
            rc = 0;
        }
        explicit_bzero(&data, sizeof data);
    }
    explicit_bzero(key, sizeof key);
    return rc;
}

int auth_hash_verify(const char *password, size_t password_len, const char *hash, size_t hash_len) {
    if (auth_hash_cost(hash, hash_len) < 0) return -EINVAL;
    char setting[AUTH_HASH_BUF];
    memcpy(setting, hash, hash_len);
    setting[hash_len] = 0;
    char key[BCRYPT_KEY_MAX + 1];
    if (bcrypt_key(password, password_len, key) != 0) return -EINVAL;
    struct crypt_data data;
    memset(&data, 0, sizeof data);
    const char *h = crypt_rn(key, setting, &data, sizeof data);
    int rc = -EACCES;
    if (h == NULL)
        rc = -EINVAL;
    else if (strlen(h) == hash_len && auth_ct_equal(h, hash, hash_len))
        rc = 0;
    explicit_bzero(&data, sizeof data);
    explicit_bzero(key, sizeof key);
    return rc;
}
