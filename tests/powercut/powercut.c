/*
 * powercut.c: an LD_PRELOAD library that simulates a power loss for the
 * files under one directory (env POWERCUT_DIR). Used by
 * e2e/test_power_loss.sh against a release kshimd and proven by
 * tests/powercut/powercut_selftest.c. Never build it with sanitizers. It can
 * be preloaded into an ASan binary with ASAN_OPTIONS=verify_asan_link_order=0
 * (ASan wants to come first; the layer only forwards calls through
 * dlsym(RTLD_NEXT), which then reaches ASan's interceptors).
 *
 * Owns: the interposed libc calls, the per-file durability state and the cut.
 *
 * THE MODEL
 * A file under POWERCUT_DIR opened for writing is "tracked" (keyed by device
 * and inode, so renames and several fds share one state; the state outlives
 * close() while the file has unsynced data, since close does not sync).
 * For each tracked file the layer keeps what a disk would hold after a power
 * loss right now:
 *   - the synced size, and
 *   - an undo log: for every 4 KiB page written since the file's last
 *     successful fsync/fdatasync, the page's bytes as they were at that sync
 *     (captured before the first write that touches the page).
 * fsync() or fdatasync() of the file (any fd on the inode) makes the current
 * content and size durable: the undo log is cleared. sync_file_range() does
 * not (it promises nothing about durability). Reads are not intercepted:
 * before the cut everybody sees the page cache, as on a real system; LevelDB's
 * mmap reads are fine.
 *
 * Metadata is durable at once: creating a file, O_TRUNC at open, rename,
 * unlink, ftruncate and fallocate/posix_fallocate (their new size becomes the
 * synced size). ext4 journals metadata and commits it in order, so this is
 * close to ext4 with data=ordered, but it leaves untested: a create, rename or
 * unlink that is lost because its directory was never fsynced, and metadata
 * reordered against data (a rename that reaches the disk before the renamed
 * file's data). Writes through stdio (fwrite: LevelDB's informational LOG file)
 * and through writable mmaps are not seen page by page (such a file's unsynced
 * growth can still be cut off by the length choice below); kshimd and LevelDB
 * 1.23 write their data with write/pwrite only (checked with strace: open,
 * openat, write, pwrite64, posix_fallocate, ftruncate, fsync, fdatasync,
 * rename, unlink, close; LevelDB reads tables through mmap and pread).
 *
 * THE CUT
 * Interposed data operations on tracked files are counted: write, pwrite,
 * pwrite64, writev, pwritev, ftruncate, fallocate, posix_fallocate, fsync,
 * fdatasync, sync_file_range. After operation number POWERCUT_AT (1-based;
 * or, without POWERCUT_AT, a number in [1, POWERCUT_RANGE] (default 2000)
 * drawn from POWERCUT_SEED) has completed, the calling thread takes the global
 * I/O lock exclusively (every interposed call on a tracked file holds it
 * shared, so once it is taken no thread is inside one, and every later one
 * blocks forever) and loses power, for each tracked file with unsynced
 * changes:
 *   - the file's length L is chosen (seeded) between the synced size S and
 *     the current size C, at page granularity: S, C, or a page boundary
 *     between them, each with about the same chance;
 *   - every dirty page below L independently either stays as written (it was
 *     written back before the cut) or is reverted to its undo bytes (zeros
 *     for the part beyond the synced size: appended data that never reached
 *     the disk reads as a hole);
 *   - the file is truncated to L.
 * So unsynced data may be lost in any order and any pattern of pages; synced
 * data never. Then the process _exit()s with status 77 (every thread dies at
 * once) after one line on stderr: "powercut: cut after op N (seed S): ...".
 * The cut path calls no malloc and no stdio, only the raw calls it needs.
 *
 * Environment:
 *   POWERCUT_DIR      directory whose files are tracked (required; without it
 *                     the library only passes calls through)
 *   POWERCUT_AT       cut after this many counted operations (0 or unset:
 *                     draw one from the seed)
 *   POWERCUT_SEED     seed for the cut point and the page choices (default 1)
 *   POWERCUT_RANGE    upper bound for a drawn cut point (default 2000)
 *   POWERCUT_EXIT     exit status of the cut (default 77)
 *   POWERCUT_LEVELDB_WRITE_BUFFER  if set, overrides the size the program
 *                     passes to leveldb_options_set_write_buffer_size (LevelDB
 *                     clamps it to >= 64 KiB), so short runs reach memtable
 *                     flushes, log switches and MANIFEST updates
 *   POWERCUT_VERBOSE=1  one stderr line per tracked file at the cut
 *   POWERCUT_MODE     "pages" (default): the model above; "prefix": only the
 *                     length is cut, every dirty page below it stays (unsynced
 *                     data lost from the end only, in order); "keep": nothing
 *                     is lost (a plain crash at that operation, like kill -9).
 *                     The last two are controls for the tests built on this.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define PG 4096u
#define PC_MAX_FD 65536

enum { PAGE_CLEAN = 0, PAGE_DIRTY_ZERO = 1, PAGE_DIRTY_BUF = 2 };

typedef struct pc_file {
    dev_t dev;
    ino_t ino;
    int rfd;   /* private O_RDWR fd: reads old bytes, reverts at the cut */
    int nopen; /* application fds mapped to this file */
    off_t synced_size;
    size_t cap;     /* entries in state/undo */
    uint8_t *state; /* PAGE_* per page */
    uint8_t **undo; /* page bytes at the last sync (PAGE_DIRTY_BUF) */
    size_t ndirty;
    pthread_mutex_t mu;
    char path[256]; /* as first opened, for the cut report */
    struct pc_file *next;
} pc_file_t;

typedef struct pc_fd {
    pc_file_t *f;
    int append;
} pc_fd_t;

/* ---- real functions ---- */

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);
static int (*real_close)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static void (*real_leveldb_wbs)(void *, size_t);

/* ---- global state ---- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_rwlock_t g_io;                             /* shared: a tracked op; exclusive: the cut */
static pthread_mutex_t g_tab = PTHREAD_MUTEX_INITIALIZER; /* g_files, g_fds */
static pc_file_t *g_files;
static pc_fd_t g_fds[PC_MAX_FD];
static _Atomic(pc_file_t *) g_fdhint[PC_MAX_FD]; /* lock-free "maybe tracked" */
static char g_dir[PATH_MAX];
static size_t g_dirlen;
static int g_on;
static atomic_ulong g_ops;
static unsigned long g_cut_at;
static uint64_t g_seed = 1;
static int g_exit = 77;
static int g_verbose;
enum { MODE_PAGES, MODE_PREFIX, MODE_KEEP };
static int g_mode = MODE_PAGES;
static atomic_int g_cutting;

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned long env_ul(const char *name, unsigned long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 0) : dflt;
}

static void init(void) {
    RESOLVE(open);
    RESOLVE(openat);
    RESOLVE(write);
    RESOLVE(pwrite);
    RESOLVE(writev);
    RESOLVE(pwritev);
    RESOLVE(ftruncate);
    RESOLVE(fallocate);
    RESOLVE(posix_fallocate);
    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(sync_file_range);
    RESOLVE(close);
    RESOLVE(rename);
    RESOLVE(renameat);
    RESOLVE(renameat2);
    RESOLVE(unlink);
    RESOLVE(unlinkat);
    real_leveldb_wbs = (void (*)(void *, size_t))dlsym(RTLD_NEXT, "leveldb_options_set_write_buffer_size");

    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&g_io, &a);
    pthread_rwlockattr_destroy(&a);

    const char *dir = getenv("POWERCUT_DIR");
    if (!dir || !*dir) return;
    char rp[PATH_MAX];
    if (!realpath(dir, rp)) snprintf(rp, sizeof rp, "%s", dir);
    snprintf(g_dir, sizeof g_dir, "%s", rp);
    g_dirlen = strlen(g_dir);
    while (g_dirlen > 1 && g_dir[g_dirlen - 1] == '/') g_dir[--g_dirlen] = '\0';
    g_seed = env_ul("POWERCUT_SEED", 1);
    g_exit = (int)env_ul("POWERCUT_EXIT", 77);
    g_verbose = (int)env_ul("POWERCUT_VERBOSE", 0);
    const char *mode = getenv("POWERCUT_MODE");
    if (mode && strcmp(mode, "prefix") == 0) g_mode = MODE_PREFIX;
    if (mode && strcmp(mode, "keep") == 0) g_mode = MODE_KEEP;
    g_cut_at = env_ul("POWERCUT_AT", 0);
    if (g_cut_at == 0) {
        uint64_t s = g_seed ^ 0x5eedc0ffeeULL;
        unsigned long range = env_ul("POWERCUT_RANGE", 2000);
        g_cut_at = 1 + (unsigned long)(splitmix(&s) % (range ? range : 1));
    }
    g_on = 1;
}

static void ensure_init(void) { pthread_once(&g_once, init); }

__attribute__((constructor)) static void pc_ctor(void) { ensure_init(); }

/* ---- raw output for the cut path (no stdio, no malloc) ---- */

static size_t fmt_u64(char *out, uint64_t v) {
    char tmp[24];
    size_t n = 0, i = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) out[i++] = tmp[--n];
    return i;
}

/* Appends "s" or a number to a line buffer. */
typedef struct line {
    char b[512];
    size_t n;
} line_t;
static void ln_s(line_t *l, const char *s) {
    while (*s && l->n < sizeof l->b - 1) l->b[l->n++] = *s++;
}
static void ln_u(line_t *l, uint64_t v) {
    if (l->n + 24 < sizeof l->b) l->n += fmt_u64(l->b + l->n, v);
}
static void ln_out(line_t *l) {
    ln_s(l, "\n");
    ssize_t r = real_write(2, l->b, l->n);
    (void)r;
    l->n = 0;
}

/* ---- paths ---- */

/* Absolute form of (dirfd, path) in out; 0, or -1 if unknown. */
static int abs_path(int dirfd, const char *path, char *out, size_t n) {
    if (path[0] == '/') {
        snprintf(out, n, "%s", path);
        return 0;
    }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) return -1;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t k = readlink(link, base, sizeof base - 1);
        if (k < 0) return -1;
        base[k] = '\0';
    }
    return snprintf(out, n, "%s/%s", base, path) < (int)n ? 0 : -1;
}

static int under_dir(int dirfd, const char *path) {
    char p[PATH_MAX];
    if (!g_on || !path || abs_path(dirfd, path, p, sizeof p) != 0) return 0;
    return strncmp(p, g_dir, g_dirlen) == 0 && (p[g_dirlen] == '/' || p[g_dirlen] == '\0');
}

/* ---- file table (callers hold g_tab) ---- */

static pc_file_t *file_find(dev_t dev, ino_t ino) {
    for (pc_file_t *f = g_files; f; f = f->next)
        if (f->dev == dev && f->ino == ino) return f;
    return NULL;
}

static void undo_clear(pc_file_t *f) {
    for (size_t p = 0; p < f->cap; p++) {
        free(f->undo[p]);
        f->undo[p] = NULL;
        f->state[p] = PAGE_CLEAN;
    }
    f->ndirty = 0;
}

static void file_free(pc_file_t *f) {
    for (pc_file_t **pp = &g_files; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    undo_clear(f);
    free(f->state);
    free(f->undo);
    real_close(f->rfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* Frees f once nothing refers to it: no fd open, nothing unsynced, or the
 * inode is gone (its data can no longer matter). */
static void file_maybe_free(pc_file_t *f) {
    if (f->nopen > 0) return;
    struct stat st;
    if (f->ndirty == 0 || fstat(f->rfd, &st) != 0 || st.st_nlink == 0) file_free(f);
}

static off_t file_size(pc_file_t *f) {
    struct stat st;
    return fstat(f->rfd, &st) == 0 ? st.st_size : 0;
}

/* Starts tracking the application's fd (a regular file opened for writing
 * under the directory). O_TRUNC at open is durable at once. */
static void track(int fd, int flags, const char *path) {
    struct stat st;
    if (fd < 0 || fd >= PC_MAX_FD || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    pthread_mutex_lock(&g_tab);
    pc_file_t *f = file_find(st.st_dev, st.st_ino);
    if (!f) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        int rfd = real_open(link, O_RDWR | O_CLOEXEC);
        f = rfd >= 0 ? calloc(1, sizeof *f) : NULL;
        if (!f) {
            if (rfd >= 0) real_close(rfd);
            pthread_mutex_unlock(&g_tab);
            return;
        }
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->rfd = rfd;
        f->synced_size = st.st_size;
        pthread_mutex_init(&f->mu, NULL);
        size_t pl = strlen(path); /* keep the tail of a long path */
        const char *tail = pl >= sizeof f->path ? path + pl - (sizeof f->path - 1) : path;
        memcpy(f->path, tail, strlen(tail) + 1);
        f->next = g_files;
        g_files = f;
    } else if (flags & O_TRUNC) {
        pthread_mutex_lock(&f->mu);
        undo_clear(f);
        f->synced_size = 0;
        pthread_mutex_unlock(&f->mu);
    }
    f->nopen++;
    g_fds[fd].f = f;
    g_fds[fd].append = (flags & O_APPEND) != 0;
    atomic_store(&g_fdhint[fd], f);
    pthread_mutex_unlock(&g_tab);
}

/* Drops the application fd from the table (g_tab held). */
static void untrack_locked(int fd) {
    pc_file_t *f = g_fds[fd].f;
    g_fds[fd].f = NULL;
    atomic_store(&g_fdhint[fd], NULL);
    if (!f) return;
    f->nopen--;
    file_maybe_free(f);
}

/* The tracked file behind fd with the shared I/O lock held, or NULL (lock
 * not held). A stale entry (fd closed behind our back, e.g. by fclose, and
 * reused) is detected by comparing the inode. */
static pc_file_t *enter(int fd, int *append) {
    ensure_init();
    if (fd < 0 || fd >= PC_MAX_FD || !atomic_load_explicit(&g_fdhint[fd], memory_order_relaxed)) return NULL;
    pthread_rwlock_rdlock(&g_io);
    pthread_mutex_lock(&g_tab);
    pc_file_t *f = g_fds[fd].f;
    struct stat st;
    if (f && (fstat(fd, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino)) {
        untrack_locked(fd);
        f = NULL;
    }
    if (f && append) *append = g_fds[fd].append;
    pthread_mutex_unlock(&g_tab);
    if (!f) pthread_rwlock_unlock(&g_io);
    return f;
}

static void cut(void);

/* Ends a tracked op: counts it and cuts when its number comes. */
static void leave(int counted) {
    pthread_rwlock_unlock(&g_io);
    if (counted && atomic_fetch_add(&g_ops, 1) + 1 == g_cut_at) cut();
}

/* ---- undo capture (f->mu held) ---- */

static int grow(pc_file_t *f, size_t pages) {
    if (pages <= f->cap) return 0;
    size_t cap = f->cap ? f->cap : 64;
    while (cap < pages) cap *= 2;
    uint8_t *st = realloc(f->state, cap);
    if (!st) return -1;
    f->state = st;
    uint8_t **u = realloc(f->undo, cap * sizeof *u);
    if (!u) return -1;
    f->undo = u;
    memset(f->state + f->cap, 0, cap - f->cap);
    memset(f->undo + f->cap, 0, (cap - f->cap) * sizeof *u);
    f->cap = cap;
    return 0;
}

/* Saves the synced bytes of every clean page in [off, off+len) before they
 * are overwritten. Bytes beyond the current size are zeros (a hole). */
static void capture(pc_file_t *f, off_t off, size_t len) {
    if (len == 0 || off < 0) return;
    size_t first = (size_t)off / PG, last = ((size_t)off + len - 1) / PG;
    if (grow(f, last + 1) != 0) abort();
    for (size_t p = first; p <= last; p++) {
        if (f->state[p] != PAGE_CLEAN) continue;
        uint8_t buf[PG];
        memset(buf, 0, PG);
        size_t got = 0;
        while (got < PG) {
            ssize_t k = pread(f->rfd, buf + got, PG - got, (off_t)(p * PG + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            got += (size_t)k;
        }
        int zero = 1;
        for (size_t i = 0; i < got && zero; i++) zero = buf[i] == 0;
        if (zero) {
            f->state[p] = PAGE_DIRTY_ZERO;
        } else {
            f->undo[p] = malloc(PG);
            if (!f->undo[p]) abort();
            memcpy(f->undo[p], buf, PG);
            f->state[p] = PAGE_DIRTY_BUF;
        }
        f->ndirty++;
    }
}

/* The file became durable as it is now (a successful sync). */
static void synced(pc_file_t *f) {
    undo_clear(f);
    f->synced_size = file_size(f);
}

/* A durable size change to len (ftruncate): pages past len are gone, the
 * tail of the page holding len reads zeros from now on. */
static void truncated(pc_file_t *f, off_t len) {
    size_t keep = ((size_t)len + PG - 1) / PG;
    for (size_t p = keep; p < f->cap; p++) {
        if (f->state[p] != PAGE_CLEAN) f->ndirty--;
        free(f->undo[p]);
        f->undo[p] = NULL;
        f->state[p] = PAGE_CLEAN;
    }
    size_t p = (size_t)len / PG, in = (size_t)len % PG;
    if (in && p < f->cap && f->state[p] == PAGE_DIRTY_BUF) memset(f->undo[p] + in, 0, PG - in);
    f->synced_size = len;
}

/* ---- the cut ---- */

static void pwrite_all(int fd, const uint8_t *b, size_t n, off_t off) {
    while (n) {
        ssize_t k = real_pwrite(fd, b, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return;
        b += k;
        n -= (size_t)k;
        off += k;
    }
}

/* Loses the unsynced changes of one file, as described at the top. */
static void lose(pc_file_t *f, uint64_t *rng, line_t *l) {
    off_t cur = file_size(f), s = f->synced_size, len = cur;
    if (f->ndirty == 0 && cur <= s) return;
    if (cur > s && g_mode != MODE_KEEP) {
        uint64_t r = splitmix(rng) % 3;
        if (r == 0) {
            len = s;
        } else if (r == 1) {
            uint64_t lo = ((uint64_t)s + PG - 1) / PG, hi = ((uint64_t)cur - 1) / PG;
            len = hi >= lo ? (off_t)((lo + splitmix(rng) % (hi - lo + 1)) * PG) : s;
            if (len > cur) len = cur;
        }
    }
    uint64_t reverted = 0, kept = 0;
    static const uint8_t zeros[PG];
    for (size_t p = 0; p < f->cap; p++) {
        if (f->state[p] == PAGE_CLEAN || (off_t)(p * PG) >= len) continue;
        if (g_mode != MODE_PAGES || (splitmix(rng) & 1)) {
            kept++;
            continue;
        }
        size_t n = (size_t)(len - (off_t)(p * PG)) < PG ? (size_t)(len - (off_t)(p * PG)) : PG;
        pwrite_all(f->rfd, f->state[p] == PAGE_DIRTY_BUF ? f->undo[p] : zeros, n, (off_t)(p * PG));
        reverted++;
    }
    if (len < cur) real_ftruncate(f->rfd, len);
    if (g_verbose) {
        ln_s(l, "powercut:   ");
        ln_s(l, f->path);
        ln_s(l, " synced ");
        ln_u(l, (uint64_t)s);
        ln_s(l, " current ");
        ln_u(l, (uint64_t)cur);
        ln_s(l, " -> ");
        ln_u(l, (uint64_t)len);
        ln_s(l, ", dirty pages kept ");
        ln_u(l, kept);
        ln_s(l, " reverted ");
        ln_u(l, reverted);
        ln_out(l);
    }
}

static void cut(void) {
    if (atomic_exchange(&g_cutting, 1)) {
        for (;;) pause(); /* another thread is cutting; it will _exit */
    }
    pthread_rwlock_wrlock(&g_io); /* no tracked op is running, none starts */
    uint64_t rng = g_seed * 0x2545f4914f6cdd1dULL + 77;
    line_t l = {.n = 0};
    unsigned nfiles = 0;
    for (pc_file_t *f = g_files; f; f = f->next)
        if (f->ndirty || file_size(f) > f->synced_size) nfiles++;
    ln_s(&l, "powercut: cut after op ");
    ln_u(&l, g_cut_at);
    ln_s(&l, " (seed ");
    ln_u(&l, g_seed);
    ln_s(&l, "): ");
    ln_u(&l, nfiles);
    ln_s(&l, " files with unsynced data");
    ln_out(&l);
    for (pc_file_t *f = g_files; f; f = f->next) lose(f, &rng, &l);
    _exit(g_exit);
}

/* ---- interposed calls ---- */

static int do_open_track(int fd, int dirfd, const char *path, int flags) {
    if (fd >= 0 && g_on && (flags & O_ACCMODE) != O_RDONLY && under_dir(dirfd, path)) {
        int e = errno;
        char abs[PATH_MAX];
        if (abs_path(dirfd, path, abs, sizeof abs) != 0) snprintf(abs, sizeof abs, "%s", path);
        pthread_rwlock_rdlock(&g_io);
        track(fd, flags, abs);
        pthread_rwlock_unlock(&g_io);
        errno = e;
    }
    return fd;
}

static mode_t open_mode(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_open_track(real_open(path, flags, mode), AT_FDCWD, path, flags);
}

int open64(const char *path, int flags, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_open_track(real_open(path, flags, mode), AT_FDCWD, path, flags);
}

int openat(int dirfd, const char *path, int flags, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_open_track(real_openat(dirfd, path, flags, mode), dirfd, path, flags);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_open_track(real_openat(dirfd, path, flags, mode), dirfd, path, flags);
}

int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

int creat64(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

static size_t iov_len(const struct iovec *iov, int n) {
    size_t t = 0;
    for (int i = 0; i < n; i++) t += iov[i].iov_len;
    return t;
}

/* Offset the next write() on fd goes to. */
static off_t write_pos(int fd, int append, pc_file_t *f) {
    return append ? file_size(f) : lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t n) {
    int append = 0;
    pc_file_t *f = enter(fd, &append);
    if (!f) return real_write(fd, buf, n);
    pthread_mutex_lock(&f->mu);
    capture(f, write_pos(fd, append, f), n);
    ssize_t r = real_write(fd, buf, n);
    int e = errno;
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    int append = 0;
    pc_file_t *f = enter(fd, &append);
    if (!f) return real_writev(fd, iov, cnt);
    pthread_mutex_lock(&f->mu);
    capture(f, write_pos(fd, append, f), iov_len(iov, cnt));
    ssize_t r = real_writev(fd, iov, cnt);
    int e = errno;
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    pc_file_t *f = enter(fd, NULL);
    if (!f) return real_pwrite(fd, buf, n, off);
    pthread_mutex_lock(&f->mu);
    capture(f, off, n);
    ssize_t r = real_pwrite(fd, buf, n, off);
    int e = errno;
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    pc_file_t *f = enter(fd, NULL);
    if (!f) return real_pwritev(fd, iov, cnt, off);
    pthread_mutex_lock(&f->mu);
    capture(f, off, iov_len(iov, cnt));
    ssize_t r = real_pwritev(fd, iov, cnt, off);
    int e = errno;
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) { return pwritev(fd, iov, cnt, off); }

int ftruncate(int fd, off_t len) {
    pc_file_t *f = enter(fd, NULL);
    if (!f) return real_ftruncate(fd, len);
    pthread_mutex_lock(&f->mu);
    int r = real_ftruncate(fd, len);
    int e = errno;
    if (r == 0) truncated(f, len);
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

int ftruncate64(int fd, off_t len) { return ftruncate(fd, len); }

/* Size changes of fallocate are durable at once; a mode that changes data
 * (punch hole, zero range, collapse, insert) is also a data write. */
static int falloc_common(int fd, int mode, off_t off, off_t len, int posix) {
    pc_file_t *f = enter(fd, NULL);
    if (!f) return posix ? real_posix_fallocate(fd, off, len) : real_fallocate(fd, mode, off, len);
    pthread_mutex_lock(&f->mu);
    off_t before = file_size(f);
    if (mode != 0 && mode != 1 /* FALLOC_FL_KEEP_SIZE */ && off < before)
        capture(f, off, (size_t)(off + len < before ? len : before - off));
    int r = posix ? real_posix_fallocate(fd, off, len) : real_fallocate(fd, mode, off, len);
    int e = errno;
    off_t after = file_size(f);
    if (after > f->synced_size && after != before) f->synced_size = after;
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

int fallocate(int fd, int mode, off_t off, off_t len) { return falloc_common(fd, mode, off, len, 0); }
int fallocate64(int fd, int mode, off_t off, off_t len) { return falloc_common(fd, mode, off, len, 0); }
int posix_fallocate(int fd, off_t off, off_t len) { return falloc_common(fd, 0, off, len, 1); }
int posix_fallocate64(int fd, off_t off, off_t len) { return falloc_common(fd, 0, off, len, 1); }

static int sync_common(int fd, int data_only) {
    pc_file_t *f = enter(fd, NULL);
    if (!f) return data_only ? real_fdatasync(fd) : real_fsync(fd);
    pthread_mutex_lock(&f->mu);
    int r = data_only ? real_fdatasync(fd) : real_fsync(fd);
    int e = errno;
    if (r == 0) synced(f);
    pthread_mutex_unlock(&f->mu);
    leave(1);
    errno = e;
    return r;
}

int fsync(int fd) { return sync_common(fd, 0); }
int fdatasync(int fd) { return sync_common(fd, 1); }

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags) {
    pc_file_t *f = enter(fd, NULL);
    if (!f) return real_sync_file_range(fd, off, n, flags);
    int r = real_sync_file_range(fd, off, n, flags);
    int e = errno;
    leave(1); /* starts write-back, promises nothing: the undo stays */
    errno = e;
    return r;
}

int close(int fd) {
    ensure_init();
    if (fd >= 0 && fd < PC_MAX_FD && atomic_load_explicit(&g_fdhint[fd], memory_order_relaxed)) {
        pthread_rwlock_rdlock(&g_io);
        pthread_mutex_lock(&g_tab);
        untrack_locked(fd);
        pthread_mutex_unlock(&g_tab);
        pthread_rwlock_unlock(&g_io);
    }
    return real_close(fd);
}

/* After an unlink or a rename over a file: forget an inode that is gone. */
static void forget_if_gone(int have, const struct stat *st) {
    if (!have) return;
    pthread_mutex_lock(&g_tab);
    pc_file_t *f = file_find(st->st_dev, st->st_ino);
    if (f) file_maybe_free(f);
    pthread_mutex_unlock(&g_tab);
}

static int stat_at(int dirfd, const char *path, struct stat *st) {
    return g_on && under_dir(dirfd, path) && fstatat(dirfd, path, st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Metadata calls: durable at once, so only the table is kept up to date. */
static int meta_common(int op, int ofd, const char *oldp, int nfd, const char *newp, unsigned fl) {
    ensure_init();
    struct stat st;
    const char *victim = op == 0 ? oldp : newp;
    int vfd = op == 0 ? ofd : nfd;
    int track = stat_at(vfd, victim, &st);
    if (track) pthread_rwlock_rdlock(&g_io);
    int r;
    if (op == 0)
        r = real_unlinkat(ofd, oldp, (int)fl);
    else if (fl)
        r = real_renameat2(ofd, oldp, nfd, newp, fl);
    else
        r = real_renameat(ofd, oldp, nfd, newp);
    int e = errno;
    if (track) {
        if (r == 0) forget_if_gone(1, &st);
        pthread_rwlock_unlock(&g_io);
    }
    errno = e;
    return r;
}

int unlink(const char *p) { return meta_common(0, AT_FDCWD, p, AT_FDCWD, NULL, 0); }
int unlinkat(int fd, const char *p, int flags) {
    return meta_common(0, fd, p, AT_FDCWD, NULL, (unsigned)flags);
}
int rename(const char *a, const char *b) { return meta_common(1, AT_FDCWD, a, AT_FDCWD, b, 0); }
int renameat(int fa, const char *a, int fb, const char *b) { return meta_common(1, fa, a, fb, b, 0); }
int renameat2(int fa, const char *a, int fb, const char *b, unsigned int fl) {
    return meta_common(1, fa, a, fb, b, fl);
}

/* LevelDB's memtable size, overridable so short runs reach flushes. */
void leveldb_options_set_write_buffer_size(void *opt, size_t n) {
    ensure_init();
    unsigned long v = env_ul("POWERCUT_LEVELDB_WRITE_BUFFER", 0);
    if (real_leveldb_wbs) real_leveldb_wbs(opt, v ? (size_t)v : n);
}
