/*
 * bbolt.h: bbolt's on-disk format (etcd's backend database file), written
 * and read without bbolt (target kshim_bbolt; bbolt.c).
 *
 * Writer: a compact, read-only-consistent database built bottom-up in one
 * pass: top-level buckets one after the other, keys strictly ascending in
 * each, leaf pages filled up to the 4096-byte page size, branch pages as
 * needed, overflow pages for large elements, one empty freelist page, then
 * the root bucket's pages and both meta pages. Memory: about one page per
 * tree level (plus the element being added); pages go to a write_at
 * callback (an fd: bbolt_fd_sink) as soon as they are full. Every page below
 * the high-water mark is reachable, so `bbolt check` / etcdctl's integrity
 * check pass.
 *
 * Reader: opens a file through pread, picks the valid meta page with the
 * higher txid (magic, version 2, FNV-1a checksum), and walks buckets and
 * keys with every page id, page span, element offset and count checked
 * against the file; a page seen more often than the file has pages, a tree
 * deeper than BBOLT_MAX_DEPTH or any out-of-bounds offset is
 * BBOLT_E_CORRUPT, never a crash. Inline buckets (root 0) are read too.
 */
#ifndef KSHIM_BBOLT_H
#define KSHIM_BBOLT_H

#include <stddef.h>
#include <stdint.h>

enum {
    BBOLT_OK = 0,
    BBOLT_E_IO = -1,      /* the sink or pread failed */
    BBOLT_E_ORDER = -2,   /* writer: key not above the previous one, bucket misuse */
    BBOLT_E_NOMEM = -3,   /* out of memory */
    BBOLT_E_CORRUPT = -4, /* reader: not a valid bbolt file */
    BBOLT_E_NOT_FOUND = -5,
};

#define BBOLT_PAGE_SIZE 4096
#define BBOLT_MAX_DEPTH 32

/* ---- writer ---- */

/* Writes len bytes at byte offset off of the database; 0 or -1. */
typedef int (*bbolt_write_fn)(void *ctx, uint64_t off, const void *buf, size_t len);
/* A bbolt_write_fn for a file descriptor (ctx: int * holding the fd; pwrite). */
int bbolt_fd_sink(void *ctx, uint64_t off, const void *buf, size_t len);

typedef struct bbolt_writer bbolt_writer_t;

bbolt_writer_t *bbolt_writer_new(bbolt_write_fn write_at, void *ctx);
/* Starts a top-level bucket (names unique; any order, sorted by finish). */
int bbolt_bucket_begin(bbolt_writer_t *w, const uint8_t *name, size_t len);
/* Adds a key to the open bucket: keys strictly ascending (bytewise), key
 * 1..32768 bytes. */
int bbolt_put(bbolt_writer_t *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen);
int bbolt_bucket_end(bbolt_writer_t *w);
/* Writes the root bucket, the freelist and both meta pages; *size gets the
 * database's size in bytes (pages * 4096). */
int bbolt_writer_finish(bbolt_writer_t *w, uint64_t *size);
void bbolt_writer_free(bbolt_writer_t *w);

/* ---- reader ---- */

typedef struct bbolt_reader bbolt_reader_t;

/* size: the bytes of the database in fd (a snapshot's SHA-256 trailer left
 * out). BBOLT_OK, BBOLT_E_CORRUPT, BBOLT_E_IO or BBOLT_E_NOMEM. */
int bbolt_reader_open(int fd, uint64_t size, bbolt_reader_t **out);
void bbolt_reader_free(bbolt_reader_t *r);
uint64_t bbolt_reader_txid(const bbolt_reader_t *r);
uint64_t bbolt_reader_pages(const bbolt_reader_t *r); /* the meta's high-water mark */
uint32_t bbolt_reader_page_size(const bbolt_reader_t *r);

/* One element: is_bucket set for a nested bucket (val is its header). The
 * memory is valid during the call only. Return 0 to go on; anything else
 * stops the walk and is returned by it. */
typedef int (*bbolt_kv_fn)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                           int is_bucket);
/* The root bucket's elements (the top-level bucket names), in order. */
int bbolt_reader_buckets(bbolt_reader_t *r, bbolt_kv_fn fn, void *arg);
/* The elements of top-level bucket name, in key order; BBOLT_E_NOT_FOUND
 * if there is no such bucket. */
int bbolt_reader_scan(bbolt_reader_t *r, const uint8_t *name, size_t nlen, bbolt_kv_fn fn, void *arg);

#endif
