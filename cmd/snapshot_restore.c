/*
 * snapshot_restore.c: `snapshot restore` (kshimctl's, and kshimd's take-over
 * of an etcd data dir, cmd/etcd_datadir.c): an etcd backend database into a
 * kshim store (see snapshot_restore.h).
 *
 * As `etcdctl snapshot restore`: the data dir must not exist (or be
 * empty); the trailer (a file of 512*n + 32 bytes) is checked against the
 * SHA-256 of the database unless --skip-hash-check, and a file without one
 * needs --skip-hash-check; the cluster flags are checked as kshimd checks
 * them (one member, named --name, with the advertised peer URLs). Then the
 * database (storage/bbolt/etcd_db.h) fills <data-dir>/member/kv with every
 * revision kept; the applied index is 1 and there is no WAL, so kshimd
 * started with the same --name / --initial-* flags bootstraps a fresh
 * single-member Raft log on it that starts after index 1 (a snapshot point),
 * keeping the store's revisions (etcd's restore likewise rewrites the
 * membership, sets the consistent index to its bootstrap entries and writes
 * a snapshot there); members added later are sent the store as a snapshot.
 */
#include "snapshot_restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "err_text.h"
#include "etcd_db.h"
#include "mvcc.h"

#define SHA_LEN 32

/* Does the data dir exist with something in it? */
static int dir_in_use(const char *path) {
    DIR *d = opendir(path);
    if (!d) return errno != ENOENT;
    int used = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) used = 1;
    closedir(d);
    return used;
}

static int mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Is url one of the comma list? */
static int in_list(const char *list, const char *url, size_t ulen) {
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n == ulen && !strncmp(p, url, n)) return 1;
        p = c ? c + 1 : p + n;
    }
    return 0;
}

/* --initial-cluster names one member, --name, whose URLs are the advertised
 * peer URLs (kshimd runs single-member clusters only). */
static int check_cluster(const ctl_restore_opts_t *o, char *err, size_t errlen) {
    char mine[2048] = "";
    size_t nl = strlen(o->name);
    for (const char *p = o->initial_cluster; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq) return err_text(err, errlen, "--initial-cluster: cannot parse %s", o->initial_cluster);
        size_t kl = (size_t)(eq - p);
        if (kl != nl || strncmp(p, o->name, nl))
            return err_text(err, errlen,
                            "--initial-cluster names a member other than %s: kshimd restores single-member "
                            "clusters only",
                            o->name);
        size_t ml = strlen(mine);
        snprintf(mine + ml, sizeof mine - ml, "%s%.*s", ml ? "," : "", (int)(n - kl - 1), eq + 1);
        p = c ? c + 1 : p + n;
    }
    if (!mine[0])
        return err_text(err, errlen, "couldn't find local name \"%s\" in the initial cluster configuration",
                        o->name);
    const char *adv = o->initial_advertise_peer_urls;
    for (const char *p = adv; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (!in_list(mine, p, n))
            return err_text(err, errlen,
                            "--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s",
                            o->name, mine, adv);
        p = c ? c + 1 : p + n;
    }
    for (const char *p = mine; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (!in_list(adv, p, n))
            return err_text(err, errlen,
                            "--initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s",
                            o->name, mine, adv);
        p = c ? c + 1 : p + n;
    }
    return 0;
}

static void hex(char *out, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

/* The SHA-256 trailer: *db_size gets the database's bytes. */
static int check_hash(int fd, uint64_t size, int skip, uint64_t *db_size, int *checked, char *err,
                      size_t errlen) {
    int has = size % 512 == SHA_LEN;
    *db_size = has ? size - SHA_LEN : size;
    *checked = 0;
    if (!has && !skip) return err_text(err, errlen, "snapshot missing hash but --skip-hash-check=false");
    if (!has || skip) return 0;
    uint8_t want[SHA_LEN], got[SHA_LEN], buf[65536];
    if (pread(fd, want, SHA_LEN, (off_t)*db_size) != SHA_LEN)
        return err_text(err, errlen, "read: %s", strerror(errno));
    wc_Sha256 sha;
    if (wc_InitSha256(&sha) != 0) return err_text(err, errlen, "sha256 init failed");
    int rc = 0;
    for (uint64_t off = 0; off < *db_size && rc == 0;) {
        size_t n = *db_size - off < sizeof buf ? (size_t)(*db_size - off) : sizeof buf;
        ssize_t r = pread(fd, buf, n, (off_t)off);
        if (r != (ssize_t)n)
            rc = err_text(err, errlen, "read: %s", r < 0 ? strerror(errno) : "short read");
        else
            wc_Sha256Update(&sha, buf, (word32)n);
        off += n;
    }
    wc_Sha256Final(&sha, got);
    wc_Sha256Free(&sha);
    if (rc != 0) return rc;
    if (memcmp(want, got, SHA_LEN)) {
        char a[2 * SHA_LEN + 1], b[2 * SHA_LEN + 1];
        hex(a, want, SHA_LEN);
        hex(b, got, SHA_LEN);
        return err_text(err, errlen, "expected sha256 %s, got %s", a, b);
    }
    *checked = 1;
    return 0;
}

int ctl_snapshot_restore(const ctl_restore_opts_t *o, ctl_restore_result_t *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (check_cluster(o, err, errlen) != 0) return -1;
    if (dir_in_use(o->data_dir)) return err_text(err, errlen, "data-dir \"%s\" exists", o->data_dir);
    int fd = open(o->file, O_RDONLY);
    if (fd < 0) return err_text(err, errlen, "open %s: %s", o->file, strerror(errno));
    struct stat sb;
    uint64_t db_size = 0;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return err_text(err, errlen, "stat %s: %s", o->file, strerror(errno));
    }
    if (check_hash(fd, (uint64_t)sb.st_size, o->skip_hash_check, &db_size, &res->hash_checked, err, errlen)) {
        close(fd);
        return -1;
    }
    char kv[4096];
    snprintf(kv, sizeof kv, "%s/member/kv", o->data_dir);
    if (mkdir_p(kv) != 0) {
        close(fd);
        return err_text(err, errlen, "cannot create %s: %s", kv, strerror(errno));
    }
    mvcc_t *m = NULL;
    char merr[512];
    if (mvcc_open(kv, NULL, &m, merr, sizeof merr) != 0) {
        close(fd);
        return err_text(err, errlen, "%s", merr);
    }
    etcd_db_stats_t st;
    int rc = etcd_db_restore(fd, db_size, m, &st, merr, sizeof merr);
    /* The store holds what a log up to index 1 would: kshimd's log starts
     * there (raft/node.c node_bootstrap_at), so a member added later gets the
     * store as a snapshot, not an empty log replay. */
    if (rc == ETCD_DB_OK && mvcc_set_applied(m, 1) != MVCC_OK) {
        rc = ETCD_DB_E_IO;
        snprintf(merr, sizeof merr, "cannot record the applied index");
    }
    mvcc_close(m);
    close(fd);
    if (rc != ETCD_DB_OK)
        return err_text(err, errlen, "%s: %s (the data dir %s is incomplete: remove it)", o->file, merr,
                        o->data_dir);
    res->revision = st.revision;
    res->compact_rev = st.compact_rev;
    res->versions = st.versions;
    res->live_keys = st.live_keys;
    res->leases = st.leases;
    res->users = st.users;
    res->roles = st.roles;
    res->db_bytes = db_size;
    return 0;
}
