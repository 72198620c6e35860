/*
 * powercut_selftest.c: proves the power-loss layer (powercut.c) does what its
 * header says, through the real preload in a child process.
 *
 *   powercut_selftest LIB            run every check, exit 0 if all pass
 *   powercut_selftest child-ops DIR SEED          (internal: scenario child)
 *   powercut_selftest child-threads DIR SEED FD   (internal: threads child)
 *
 * 1. Scenarios (400 seeds): a scenario generated from the seed opens, writes
 *    (pwrite at random offsets and append-writes), fsyncs, fdatasyncs,
 *    ftruncates, posix_fallocates, closes, reopens (some with O_TRUNC) and
 *    renames three files under DIR. The child runs it with the library
 *    preloaded and POWERCUT_AT = a random counted operation; the parent runs
 *    the same scenario through a model (current bytes and synced bytes per
 *    file) up to that operation. After the child's exit 77 every file must
 *    have a length between its synced and current size and every 4 KiB page
 *    below that length must equal either the current page or the synced page
 *    (zeros past the synced size). Over all seeds, some pages must have been
 *    kept, some reverted, and some lengths cut between the two sizes; a file
 *    whose last change was synced must be exactly its current content.
 * 2. Threads (20 runs): four threads append numbered records to their own
 *    files, fdatasync every few records and report each synced record number
 *    through a pipe; the cut comes at a random operation. Every reported
 *    record must be intact afterwards, and the child must exit 77 (no
 *    deadlock with other threads inside the layer).
 * 3. The control modes (50 seeds each): POWERCUT_MODE=prefix keeps every
 *    page below the chosen length (files lose only a tail), POWERCUT_MODE=keep
 *    leaves every file exactly as written.
 * 4. Without POWERCUT_DIR nothing is tracked and a program runs normally.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define NFILES 3
#define MAXSIZE (96 * 1024)
#define NOPS 60
#define SCENARIOS 400

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- scenarios ---- */

enum {
    OP_PWRITE,
    OP_APPEND,
    OP_FSYNC,
    OP_FDATASYNC,
    OP_TRUNC,
    OP_FALLOC,
    OP_REOPEN,
    OP_REOPEN_TRUNC,
    OP_RENAME,
    OP_NKINDS
};

typedef struct op {
    int kind, file;
    size_t off, len;
    uint8_t fill;
} op_t;

static int counted(int kind) { return kind <= OP_FALLOC; }

static void gen(uint64_t seed, op_t *ops) {
    uint64_t s = seed;
    for (int i = 0; i < NOPS; i++) {
        op_t *o = &ops[i];
        uint64_t r = splitmix(&s) % 100;
        o->kind = r < 35   ? OP_PWRITE
                  : r < 55 ? OP_APPEND
                  : r < 65 ? OP_FSYNC
                  : r < 72 ? OP_FDATASYNC
                  : r < 78 ? OP_TRUNC
                  : r < 83 ? OP_FALLOC
                  : r < 90 ? OP_REOPEN
                  : r < 94 ? OP_REOPEN_TRUNC
                           : OP_RENAME;
        o->file = (int)(splitmix(&s) % NFILES);
        o->off = splitmix(&s) % (MAXSIZE / 2);
        o->len = 1 + splitmix(&s) % 12000;
        o->fill = (uint8_t)(1 + i);
        if (o->kind == OP_TRUNC) o->len = splitmix(&s) % (MAXSIZE / 2);
    }
}

typedef struct mfile {
    uint8_t cur[MAXSIZE], syn[MAXSIZE];
    size_t cur_size, syn_size;
    int gen; /* rename generation: name is f<i>.<gen> */
} mfile_t;

static void name_of(char *out, size_t n, const char *dir, int i, int g) {
    snprintf(out, n, "%s/f%d.%d", dir, i, g);
}

static void model_write(mfile_t *m, size_t off, size_t len, uint8_t fill) {
    if (off + len > MAXSIZE) len = MAXSIZE - off;
    if (off > m->cur_size) memset(m->cur + m->cur_size, 0, off - m->cur_size);
    memset(m->cur + off, fill, len);
    if (off + len > m->cur_size) m->cur_size = off + len;
}

static void model_resize_syn(mfile_t *m, size_t n) {
    if (n > m->syn_size) memset(m->syn + m->syn_size, 0, n - m->syn_size);
    m->syn_size = n;
}

/* Runs ops[0..] in the model up to counted op number cut_at. */
static void model_run(const op_t *ops, unsigned long cut_at, mfile_t *mf) {
    unsigned long n = 0;
    for (int i = 0; i < NOPS && n < cut_at; i++) {
        const op_t *o = &ops[i];
        mfile_t *m = &mf[o->file];
        switch (o->kind) {
        case OP_PWRITE: model_write(m, o->off, o->len, o->fill); break;
        case OP_APPEND: model_write(m, m->cur_size, o->len, o->fill); break;
        case OP_FSYNC:
        case OP_FDATASYNC:
            memcpy(m->syn, m->cur, m->cur_size);
            m->syn_size = m->cur_size;
            break;
        case OP_TRUNC:
            if (o->len > m->cur_size) memset(m->cur + m->cur_size, 0, o->len - m->cur_size);
            m->cur_size = o->len;
            if (o->len < m->syn_size) m->syn_size = o->len;
            model_resize_syn(m, o->len);
            break;
        case OP_FALLOC: {
            size_t end = o->off + o->len > MAXSIZE ? MAXSIZE : o->off + o->len;
            if (end > m->cur_size) {
                memset(m->cur + m->cur_size, 0, end - m->cur_size);
                m->cur_size = end;
                if (end > m->syn_size) model_resize_syn(m, end);
            }
            break;
        }
        case OP_REOPEN_TRUNC: m->cur_size = m->syn_size = 0; break;
        case OP_RENAME: m->gen++; break;
        default: break;
        }
        if (counted(o->kind)) n++;
    }
}

static unsigned long count_ops(const op_t *ops) {
    unsigned long n = 0;
    for (int i = 0; i < NOPS; i++) n += counted(ops[i].kind);
    return n;
}

static int child_ops(const char *dir, uint64_t seed) {
    op_t ops[NOPS];
    gen(seed, ops);
    int fd[NFILES], g[NFILES] = {0};
    char path[512], path2[512];
    for (int i = 0; i < NFILES; i++) {
        name_of(path, sizeof path, dir, i, 0);
        fd[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd[i] < 0) return 2;
    }
    static uint8_t buf[16384];
    for (int i = 0; i < NOPS; i++) {
        const op_t *o = &ops[i];
        int f = fd[o->file];
        size_t len = o->len;
        memset(buf, o->fill, sizeof buf);
        switch (o->kind) {
        case OP_PWRITE:
            if (o->off + len > MAXSIZE) len = MAXSIZE - o->off;
            if (pwrite(f, buf, len, (off_t)o->off) != (ssize_t)len) return 3;
            break;
        case OP_APPEND: {
            off_t end = lseek(f, 0, SEEK_END);
            if ((size_t)end + len > MAXSIZE) len = MAXSIZE - (size_t)end;
            if (write(f, buf, len) != (ssize_t)len) return 3;
            break;
        }
        case OP_FSYNC:
            if (fsync(f) != 0) return 3;
            break;
        case OP_FDATASYNC:
            if (fdatasync(f) != 0) return 3;
            break;
        case OP_TRUNC:
            if (ftruncate(f, (off_t)o->len) != 0) return 3;
            break;
        case OP_FALLOC: {
            size_t end = o->off + o->len > MAXSIZE ? MAXSIZE : o->off + o->len;
            if (posix_fallocate(f, (off_t)o->off, (off_t)(end - o->off)) != 0) return 3;
            break;
        }
        case OP_REOPEN:
        case OP_REOPEN_TRUNC:
            close(f);
            name_of(path, sizeof path, dir, o->file, g[o->file]);
            fd[o->file] = open(path, O_RDWR | (o->kind == OP_REOPEN_TRUNC ? O_TRUNC : 0));
            if (fd[o->file] < 0) return 4;
            break;
        case OP_RENAME:
            name_of(path, sizeof path, dir, o->file, g[o->file]);
            name_of(path2, sizeof path2, dir, o->file, ++g[o->file]);
            if (rename(path, path2) != 0) return 5;
            break;
        }
    }
    return 0; /* the cut did not come */
}

typedef struct tally {
    unsigned long kept, reverted, same, cut_between, exact_synced, checked_files;
} tally_t;

/* Checks one file after the cut against the model. 0 ok, -1 with a message. */
static int check_file(const char *path, const mfile_t *m, tally_t *t, uint64_t seed) {
    static uint8_t got[MAXSIZE + 1];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "seed %llu: %s missing: %s\n", (unsigned long long)seed, path, strerror(errno));
        return -1;
    }
    ssize_t n = pread(fd, got, sizeof got, 0);
    close(fd);
    size_t len = n < 0 ? 0 : (size_t)n;
    size_t lo = m->syn_size < m->cur_size ? m->syn_size : m->cur_size;
    size_t hi = m->cur_size;
    if (len < lo || len > hi) {
        fprintf(stderr, "seed %llu: %s has %zu bytes, allowed [%zu, %zu]\n", (unsigned long long)seed, path,
                len, lo, hi);
        return -1;
    }
    if (len > lo && len < hi) t->cut_between++;
    int all_cur = len == m->cur_size;
    for (size_t p = 0; p * PG < len; p++) {
        size_t a = p * PG, b = a + PG < len ? a + PG : len;
        static uint8_t syn[PG];
        for (size_t i = a; i < b; i++) syn[i - a] = i < m->syn_size ? m->syn[i] : 0;
        int is_cur = memcmp(got + a, m->cur + a, b - a) == 0;
        int is_syn = memcmp(got + a, syn, b - a) == 0;
        if (!is_cur && !is_syn) {
            fprintf(stderr, "seed %llu: %s page %zu is neither the current nor the synced content\n",
                    (unsigned long long)seed, path, p);
            return -1;
        }
        if (is_cur && is_syn)
            t->same++;
        else if (is_cur)
            t->kept++;
        else
            t->reverted++;
        all_cur &= is_cur;
    }
    if (m->syn_size == m->cur_size && memcmp(m->syn, m->cur, m->cur_size) == 0) {
        if (!all_cur) {
            fprintf(stderr, "seed %llu: %s was fully synced but changed\n", (unsigned long long)seed, path);
            return -1;
        }
        t->exact_synced++;
    }
    t->checked_files++;
    return 0;
}

static const char *g_self, *g_lib, *g_mode;

/* Runs the child with the preload; returns its exit status or -1. */
static int run_child(char *const argv[], const char *dir, unsigned long cut_at, uint64_t seed, int keep_fd) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char at[32], sd[32];
        snprintf(at, sizeof at, "%lu", cut_at);
        snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
        if (dir) setenv("POWERCUT_DIR", dir, 1);
        setenv("POWERCUT_AT", at, 1);
        setenv("POWERCUT_SEED", sd, 1);
        setenv("LD_PRELOAD", g_lib, 1);
        if (g_mode) setenv("POWERCUT_MODE", g_mode, 1);
        (void)keep_fd;
        execv(g_self, argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int scenarios(const char *base) {
    tally_t t = {0};
    static mfile_t mf[NFILES];
    int failures = 0;
    for (uint64_t seed = 1; seed <= SCENARIOS; seed++) {
        op_t ops[NOPS];
        gen(seed, ops);
        uint64_t s = seed * 7919;
        unsigned long total = count_ops(ops);
        unsigned long cut_at = 1 + (unsigned long)(splitmix(&s) % total);
        char dir[512], seedarg[32];
        snprintf(dir, sizeof dir, "%s/s%llu", base, (unsigned long long)seed);
        mkdir(dir, 0755);
        snprintf(seedarg, sizeof seedarg, "%llu", (unsigned long long)seed);
        char *argv[] = {(char *)g_self, "child-ops", dir, seedarg, NULL};
        int rc = run_child(argv, dir, cut_at, seed, -1);
        if (rc != 77) {
            fprintf(stderr, "seed %llu: child exited %d, expected the cut (77) after op %lu\n",
                    (unsigned long long)seed, rc, cut_at);
            failures++;
            continue;
        }
        memset(mf, 0, sizeof mf);
        model_run(ops, cut_at, mf);
        for (int i = 0; i < NFILES; i++) {
            char path[600];
            name_of(path, sizeof path, dir, i, mf[i].gen);
            if (check_file(path, &mf[i], &t, seed) != 0) failures++;
        }
    }
    printf("scenarios: %d seeds, %lu files checked; pages kept %lu, reverted %lu, unchanged %lu; "
           "lengths cut between synced and current %lu; fully synced files intact %lu\n",
           SCENARIOS, t.checked_files, t.kept, t.reverted, t.same, t.cut_between, t.exact_synced);
    if (t.kept == 0 || t.reverted == 0 || t.cut_between == 0 || t.exact_synced == 0) {
        fprintf(stderr, "scenarios never exercised one of: kept page, reverted page, "
                        "length between, fully synced file\n");
        failures++;
    }
    return failures;
}

/* ---- threads ---- */

#define NTHREADS 4
#define REC 1000
#define NREC 400

typedef struct targ {
    const char *dir;
    int id, report_fd;
} targ_t;

static void rec_fill(uint8_t *b, int t, int i) {
    memset(b, 'a' + t, REC);
    snprintf((char *)b, 32, "T%d R%06d", t, i);
}

static void *thread_main(void *p) {
    targ_t *a = p;
    char path[512];
    snprintf(path, sizeof path, "%s/t%d", a->dir, a->id);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return NULL;
    uint8_t b[REC];
    for (int i = 0; i < NREC; i++) {
        rec_fill(b, a->id, i);
        if (write(fd, b, REC) != REC) break;
        if (i % 3 == 2) {
            if (fdatasync(fd) != 0) break;
            int msg[2] = {a->id, i};
            if (write(a->report_fd, msg, sizeof msg) != sizeof msg) break;
        }
    }
    close(fd);
    return NULL;
}

static int child_threads(const char *dir, int report_fd) {
    pthread_t th[NTHREADS];
    targ_t a[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        a[i] = (targ_t){.dir = dir, .id = i, .report_fd = report_fd};
        pthread_create(&th[i], NULL, thread_main, &a[i]);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    return 0;
}

static int threads(const char *base) {
    int failures = 0;
    unsigned long checked = 0;
    for (uint64_t run = 1; run <= 20; run++) {
        char dir[512], fdarg[16], seedarg[32];
        snprintf(dir, sizeof dir, "%s/t%llu", base, (unsigned long long)run);
        mkdir(dir, 0755);
        int pfd[2];
        if (pipe(pfd) != 0) return 1;
        snprintf(fdarg, sizeof fdarg, "%d", pfd[1]);
        snprintf(seedarg, sizeof seedarg, "%llu", (unsigned long long)run);
        uint64_t s = run * 104729;
        unsigned long cut_at = 50 + (unsigned long)(splitmix(&s) % 1500);
        char *argv[] = {(char *)g_self, "child-threads", dir, fdarg, NULL};
        int synced[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) synced[i] = -1;
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            char at[32];
            snprintf(at, sizeof at, "%lu", cut_at);
            setenv("POWERCUT_DIR", dir, 1);
            setenv("POWERCUT_AT", at, 1);
            setenv("POWERCUT_SEED", seedarg, 1);
            setenv("LD_PRELOAD", g_lib, 1);
            execv(g_self, argv);
            _exit(127);
        }
        close(pfd[1]);
        int msg[2];
        while (read(pfd[0], msg, sizeof msg) == sizeof msg)
            if (msg[0] >= 0 && msg[0] < NTHREADS) synced[msg[0]] = msg[1];
        close(pfd[0]);
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 77) {
            fprintf(stderr, "threads run %llu: child status %d, expected the cut (77) at op %lu\n",
                    (unsigned long long)run, st, cut_at);
            failures++;
            continue;
        }
        for (int t = 0; t < NTHREADS; t++) {
            char path[600];
            snprintf(path, sizeof path, "%s/t%d", dir, t);
            int fd = open(path, O_RDONLY);
            uint8_t b[REC], want[REC];
            for (int i = 0; i <= synced[t]; i++) {
                rec_fill(want, t, i);
                if (fd < 0 || pread(fd, b, REC, (off_t)i * REC) != REC || memcmp(b, want, REC) != 0) {
                    fprintf(stderr, "threads run %llu: thread %d record %d was synced but is lost\n",
                            (unsigned long long)run, t, i);
                    failures++;
                    break;
                }
                checked++;
            }
            if (fd >= 0) close(fd);
        }
    }
    printf("threads: 20 runs, %lu synced records verified intact\n", checked);
    if (checked == 0) failures++;
    return failures;
}

/* POWERCUT_MODE=prefix and keep: a file is its current content cut at a
 * length between the synced and current size (prefix), or exactly its
 * current content (keep). */
static int modes(const char *base) {
    int failures = 0;
    unsigned long cut_between = 0;
    static mfile_t mf[NFILES];
    static const char *names[] = {"prefix", "keep"};
    for (int mi = 0; mi < 2; mi++) {
        g_mode = names[mi];
        for (uint64_t seed = 1; seed <= 50; seed++) {
            op_t ops[NOPS];
            gen(seed, ops);
            uint64_t s = seed * 7919;
            unsigned long cut_at = 1 + (unsigned long)(splitmix(&s) % count_ops(ops));
            char dir[512], seedarg[32];
            snprintf(dir, sizeof dir, "%s/%s%llu", base, names[mi], (unsigned long long)seed);
            mkdir(dir, 0755);
            snprintf(seedarg, sizeof seedarg, "%llu", (unsigned long long)seed);
            char *argv[] = {(char *)g_self, "child-ops", dir, seedarg, NULL};
            if (run_child(argv, dir, cut_at, seed, -1) != 77) {
                failures++;
                continue;
            }
            memset(mf, 0, sizeof mf);
            model_run(ops, cut_at, mf);
            for (int i = 0; i < NFILES; i++) {
                char path[600];
                static uint8_t got[MAXSIZE + 1];
                name_of(path, sizeof path, dir, i, mf[i].gen);
                int fd = open(path, O_RDONLY);
                ssize_t n = fd >= 0 ? pread(fd, got, sizeof got, 0) : -1;
                if (fd >= 0) close(fd);
                size_t len = n < 0 ? 0 : (size_t)n,
                       lo = mf[i].syn_size < mf[i].cur_size ? mf[i].syn_size : mf[i].cur_size;
                int ok = n >= 0 && len <= mf[i].cur_size && memcmp(got, mf[i].cur, len) == 0 &&
                         (mi == 0 ? len >= lo : len == mf[i].cur_size);
                if (!ok) {
                    fprintf(stderr, "mode %s seed %llu: %s is not %s\n", names[mi], (unsigned long long)seed,
                            path, mi == 0 ? "a prefix of its current content" : "its current content");
                    failures++;
                }
                cut_between += mi == 0 && len > lo && len < mf[i].cur_size;
            }
        }
    }
    g_mode = NULL;
    printf("modes: prefix and keep, 50 seeds each; prefix lengths cut between %lu\n", cut_between);
    return failures + (cut_between == 0);
}

/* Without POWERCUT_DIR the library passes everything through. */
static int passthrough(const char *base) {
    char dir[512], seedarg[] = "1";
    snprintf(dir, sizeof dir, "%s/pass", base);
    mkdir(dir, 0755);
    char *argv[] = {(char *)g_self, "child-ops", dir, seedarg, NULL};
    int rc = run_child(argv, NULL, 1, 1, -1);
    printf("passthrough: child exit %d (want 0)\n", rc);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "child-ops") == 0)
        return child_ops(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "child-threads") == 0) return child_threads(argv[2], atoi(argv[3]));
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBPOWERCUT.so\n", argv[0]);
        return 2;
    }
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k < 0) return 2;
    self[k] = '\0';
    g_self = self;
    g_lib = argv[1];
    const char *tmp = getenv("KSHIM_TEST_TMP");
    char base[256];
    if (tmp) mkdir(tmp, 0755);
    snprintf(base, sizeof base, "%s/powercut.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 2;
    }
    int failures = scenarios(base) + threads(base) + modes(base) + passthrough(base);
    if (failures == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base);
        printf("PASS: powercut self-test\n");
        return 0;
    }
    fprintf(stderr, "FAIL: %d problems; files kept in %s\n", failures, base);
    return 1;
}
