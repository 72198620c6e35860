/*
 * etcd_datadir.c: taking over an etcd 3.4 data dir at kshimd's start (see
 * etcd_datadir.h): the safety check on etcd's WAL, the restore into a
 * temporary member dir, and the crash-safe swap.
 */
#include "etcd_datadir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err_text.h"
#include "etcd_db.h"

#define HOW_TO                                                                                            \
    "take a snapshot of the etcd member while it runs (`etcdctl snapshot save FILE`) and restore it "     \
    "(`etcdctl snapshot restore FILE --data-dir NEW` or `kshimctl snapshot restore`), or migrate online " \
    "with `kshimctl migrate`"

static int exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int fsync_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    return flag == FTW_SL ? 0 : fsync_path(path);
}

/* Every file and directory under path, children first. */
static int fsync_tree(const char *path) { return nftw(path, fsync_one, 16, FTW_DEPTH | FTW_PHYS); }

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path) {
    if (!exists(path)) return 0;
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Does dir hold nothing but the entry `only` (which may be missing)? */
static int holds_only(const char *dir, const char *only) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT;
    int ok = 1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, only)) ok = 0;
    closedir(d);
    return ok;
}

typedef struct paths {
    char member[4096], kv[4096], db[4096], wal[4096];
    char tmp[4096], tmp_member[4096], orig[4096];
} paths_t;

static int make_paths(const char *data_dir, paths_t *p) {
    int bad = 0;
    bad |= snprintf(p->member, sizeof p->member, "%s/member", data_dir) >= (int)sizeof p->member;
    bad |= snprintf(p->kv, sizeof p->kv, "%s/kv", p->member) >= (int)sizeof p->kv;
    bad |= snprintf(p->db, sizeof p->db, "%s/snap/db", p->member) >= (int)sizeof p->db;
    bad |= snprintf(p->wal, sizeof p->wal, "%s/wal", p->member) >= (int)sizeof p->wal;
    bad |= snprintf(p->tmp, sizeof p->tmp, "%s/member.kshim-tmp", data_dir) >= (int)sizeof p->tmp;
    bad |= snprintf(p->tmp_member, sizeof p->tmp_member, "%s/member", p->tmp) >= (int)sizeof p->tmp_member;
    bad |= snprintf(p->orig, sizeof p->orig, "%s/etcd-member.orig", p->member) >= (int)sizeof p->orig;
    return bad ? -1 : 0;
}

/* After the swap: etcd's member dir is tmp/member; move it into the kshim
 * member dir. */
static int finish(const char *data_dir, const paths_t *p, char *err, size_t errlen) {
    if (exists(p->orig))
        return err_text(err, errlen, "%s and %s both exist: move one away", p->tmp_member, p->orig);
    if (rename(p->tmp_member, p->orig) != 0)
        return err_text(err, errlen, "rename %s to %s: %s", p->tmp_member, p->orig, strerror(errno));
    if (fsync_path(p->member) != 0 || fsync_path(p->tmp) != 0)
        return err_text(err, errlen, "fsync: %s", strerror(errno));
    if (rmdir(p->tmp) != 0) return err_text(err, errlen, "rmdir %s: %s", p->tmp, strerror(errno));
    if (fsync_path(data_dir) != 0) return err_text(err, errlen, "fsync %s: %s", data_dir, strerror(errno));
    return 0;
}

/* etcd's WAL against the database's consistent index: 0 if the database
 * alone holds every write, else -1 with why. */
static int check_wal(const paths_t *p, uint64_t ci, etcd_wal_summary_t *s, char *err, size_t errlen) {
    char why[4096];
    if (etcd_wal_scan_dir(p->wal, ci, s, why, sizeof why) != ETCD_WAL_OK)
        return err_text(err, errlen,
                        "cannot read etcd's WAL (%s), so cannot tell whether it holds writes the "
                        "database lacks; the data dir is left untouched: " HOW_TO,
                        why);
    if (s->writes_after)
        return err_text(
            err, errlen,
            "etcd's WAL in %s holds %llu write(s) past the consistent index %llu of %s (the first at "
            "index %llu): taking over the database alone would lose them, so kshimd does not start "
            "and the data dir is left untouched; " HOW_TO,
            p->wal, (unsigned long long)s->writes_after, (unsigned long long)ci, p->db,
            (unsigned long long)s->first_write_after);
    uint64_t hi = s->last_index > s->snapshot_index ? s->last_index : s->snapshot_index;
    uint64_t from = s->entries ? s->first_index : s->snapshot_index + 1;
    if (hi > ci && from > ci + 1)
        return err_text(
            err, errlen,
            "etcd's WAL in %s does not hold entries %llu..%llu (after the consistent index %llu of "
            "%s), so kshimd cannot tell whether the database lacks writes; the data dir is left "
            "untouched: " HOW_TO,
            p->wal, (unsigned long long)ci + 1, (unsigned long long)from - 1, (unsigned long long)ci, p->db);
    return 0;
}

static int read_consistent_index(const char *db, uint64_t *ci, char *err, size_t errlen) {
    int fd = open(db, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_text(err, errlen, "open %s: %s", db, strerror(errno));
    struct stat sb;
    char why[512] = "";
    int rc = fstat(fd, &sb) == 0 ? etcd_db_consistent_index(fd, (uint64_t)sb.st_size, ci, why, sizeof why)
                                 : ETCD_DB_E_IO;
    close(fd);
    if (rc != ETCD_DB_OK) return err_text(err, errlen, "%s: %s", db, why[0] ? why : strerror(errno));
    return 0;
}

/* The kshim member dir in tmp/member, synced. */
static int build(const etcd_datadir_opts_t *o, const paths_t *p, ctl_restore_result_t *r, char *err,
                 size_t errlen) {
    ctl_restore_opts_t ro = {
        .file = p->db,
        .data_dir = p->tmp,
        .name = o->name,
        .initial_cluster = o->initial_cluster,
        .initial_cluster_token = o->initial_cluster_token,
        .initial_advertise_peer_urls = o->initial_advertise_peer_urls,
        .skip_hash_check = 1, /* a backend database has no trailer */
    };
    char why[4096];
    if (ctl_snapshot_restore(&ro, r, why, sizeof why) != 0) {
        remove_tree(p->tmp);
        return err_text(err, errlen, "cannot take over the etcd data dir %s: %s", o->data_dir, why);
    }
    if (fsync_tree(p->tmp) != 0) {
        remove_tree(p->tmp);
        return err_text(err, errlen, "fsync %s: %s", p->tmp, strerror(errno));
    }
    return 0;
}

static int swap(const etcd_datadir_opts_t *o, const paths_t *p, char *err, size_t errlen) {
    if (fsync_path(o->data_dir) != 0)
        return err_text(err, errlen, "fsync %s: %s", o->data_dir, strerror(errno));
    if (renameat2(AT_FDCWD, p->tmp_member, AT_FDCWD, p->member, RENAME_EXCHANGE) != 0) {
        int e = errno;
        remove_tree(p->tmp);
        return err_text(err, errlen,
                        "cannot swap %s and %s (renameat2 RENAME_EXCHANGE: %s); the data dir is left "
                        "untouched: use `kshimctl snapshot restore %s --skip-hash-check` into a new data dir",
                        p->tmp_member, p->member, strerror(e), p->db);
    }
    if (fsync_path(o->data_dir) != 0 || fsync_path(p->tmp) != 0)
        return err_text(err, errlen, "fsync: %s", strerror(errno));
    return 0;
}

int etcd_datadir_take_over(const etcd_datadir_opts_t *o, etcd_datadir_result_t *res, char *err,
                           size_t errlen) {
    memset(res, 0, sizeof *res);
    paths_t p;
    if (make_paths(o->data_dir, &p) != 0) return err_text(err, errlen, "data dir path too long");
    snprintf(res->orig, sizeof res->orig, "%s", p.orig);
    if (exists(p.kv) && exists(p.tmp_member)) {
        /* swapped, not finished: tmp/member is etcd's dir */
        char inner[4096 + 8];
        snprintf(inner, sizeof inner, "%s/kv", p.tmp_member);
        if (exists(inner))
            return err_text(err, errlen, "both %s and %s exist: remove the one that is not in use", p.kv,
                            inner);
        if (finish(o->data_dir, &p, err, errlen) != 0) return -1;
        res->action = ETCD_DATADIR_FINISHED;
        return 0;
    }
    if (exists(p.kv) || !exists(p.db)) return 0;
    if (o->wal_dir && *o->wal_dir)
        return err_text(err, errlen,
                        "%s is an etcd data dir; kshimd takes one over only without --wal-dir: " HOW_TO,
                        o->data_dir);
    if (exists(p.tmp)) {
        /* a build interrupted before the swap: ours, and only a kv store */
        if (!holds_only(p.tmp, "member") || !holds_only(p.tmp_member, "kv"))
            return err_text(err, errlen, "%s holds files kshimd did not put there: move it away", p.tmp);
        if (remove_tree(p.tmp) != 0)
            return err_text(err, errlen, "cannot remove %s: %s", p.tmp, strerror(errno));
    }
    if (read_consistent_index(p.db, &res->consistent_index, err, errlen) != 0) return -1;
    if (check_wal(&p, res->consistent_index, &res->wal, err, errlen) != 0) return -1;
    if (build(o, &p, &res->restore, err, errlen) != 0) return -1;
    if (swap(o, &p, err, errlen) != 0) return -1;
    if (finish(o->data_dir, &p, err, errlen) != 0) return -1;
    res->action = ETCD_DATADIR_CONVERTED;
    return 0;
}
