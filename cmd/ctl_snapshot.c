/*
 * ctl_snapshot.c: kshimctl `snapshot save` and `snapshot status` (see
 * ctl_snapshot.h; `snapshot restore` is cmd/snapshot_restore.c, shared with
 * kshimd).
 *
 * save: one Maintenance.Snapshot stream; every blob (the database, then the
 * SHA-256 etcd appends) goes to FILE.part, which is synced and renamed to
 * FILE, as etcdctl does.
 */
#include "ctl_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err_text.h"
#include "etcd_db.h"
#include "rpc.pb-c.h"

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- save ---- */

/* Receives the stream into fd. 0 or -1 with err. */
static int receive(gc_stream_t *s, int fd, int timeout_ms, uint64_t *bytes, char *err, size_t errlen) {
    gc_status_t st = {0};
    for (;;) {
        uint8_t *msg = NULL;
        size_t len = 0;
        int r = gc_stream_recv(s, &msg, &len, &st, timeout_ms);
        if (r == 0) return st.code == GC_OK ? 0 : err_text(err, errlen, "%s", st.message);
        if (r < 0) return err_text(err, errlen, "%s", st.message);
        Etcdserverpb__SnapshotResponse *resp = etcdserverpb__snapshot_response__unpack(NULL, len, msg);
        free(msg);
        if (!resp) return err_text(err, errlen, "cannot decode a SnapshotResponse");
        int w = write_all(fd, resp->blob.data, resp->blob.len);
        *bytes += resp->blob.len;
        etcdserverpb__snapshot_response__free_unpacked(resp, NULL);
        if (w != 0) return err_text(err, errlen, "write: %s", strerror(errno));
    }
}

int ctl_snapshot_save(gc_conn_t *conn, const char *path, int timeout_ms, uint64_t *bytes, char *err,
                      size_t errlen) {
    *bytes = 0;
    char part[4096];
    if (snprintf(part, sizeof part, "%s.part", path) >= (int)sizeof part)
        return err_text(err, errlen, "path too long");
    int fd = open(part, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return err_text(err, errlen, "could not open %s (%s)", part, strerror(errno));
    gc_status_t st = {0};
    gc_stream_t *s = gc_stream_open(conn, "/etcdserverpb.Maintenance/Snapshot", 0, &st);
    int rc = -1;
    if (!s) {
        err_text(err, errlen, "%s", st.message);
    } else {
        Etcdserverpb__SnapshotRequest req = ETCDSERVERPB__SNAPSHOT_REQUEST__INIT;
        uint8_t buf[8];
        size_t len = etcdserverpb__snapshot_request__pack(&req, buf);
        if (gc_stream_send(s, buf, len, 1) != 0)
            err_text(err, errlen, "cannot send the Snapshot request");
        else
            rc = receive(s, fd, timeout_ms, bytes, err, errlen);
        gc_stream_close(s);
    }
    if (rc == 0 && fsync(fd) != 0) rc = err_text(err, errlen, "fsync: %s", strerror(errno));
    close(fd);
    if (rc == 0 && rename(part, path) != 0) rc = err_text(err, errlen, "rename: %s", strerror(errno));
    if (rc != 0) unlink(part);
    return rc;
}

/* ---- status ---- */

/* go-humanize's Bytes: SI units, one decimal below 10. */
static void humanize_bytes(char *out, size_t cap, uint64_t n) {
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    if (n < 10) {
        snprintf(out, cap, "%llu B", (unsigned long long)n);
        return;
    }
    int e = 0;
    double v = (double)n;
    while (v >= 1000 && e < 6) {
        v /= 1000;
        e++;
    }
    double r = (double)(long long)(v * 10 + 0.5) / 10;
    snprintf(out, cap, r < 10 ? "%.1f %s" : "%.0f %s", r, units[e]);
}

int ctl_snapshot_status(const char *file, int json, char *err, size_t errlen) {
    int fd = open(file, O_RDONLY);
    if (fd < 0) return err_text(err, errlen, "stat %s: %s", file, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return err_text(err, errlen, "stat %s: %s", file, strerror(errno));
    }
    etcd_db_status_t st;
    char merr[256];
    int rc = etcd_db_status(fd, (uint64_t)sb.st_size, &st, merr, sizeof merr);
    close(fd);
    if (rc != ETCD_DB_OK) return err_text(err, errlen, "%s: %s", file, merr);
    if (json) {
        printf("{\"hash\":%u,\"revision\":%lld,\"totalKey\":%llu,\"totalSize\":%llu}\n", st.hash,
               (long long)st.revision, (unsigned long long)st.total_keys, (unsigned long long)st.total_size);
    } else {
        char size[32];
        humanize_bytes(size, sizeof size, st.total_size);
        printf("%x, %lld, %llu, %s\n", st.hash, (long long)st.revision, (unsigned long long)st.total_keys,
               size);
    }
    return 0;
}
