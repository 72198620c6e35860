/* ctl_format.h: kshimctl's output formats, kept out of cmd/ so they can be
 * unit-tested.
 *
 * Owns: the etcdctl-compatible renderings of responses: "simple" lines,
 * "table" (ASCII boxes, right-aligned cells, centred headers, like
 * etcdctl's tablewriter) and "json" (Go encoding/json of the gogoproto
 * structs: proto field names, zero values omitted, bytes in base64,
 * 64-bit integers as bare numbers). Everything writes to a FILE *.
 */
#ifndef KSHIM_CTL_FORMAT_H
#define KSHIM_CTL_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>
#include "rpc.pb-c.h"

/* ---------- generic pieces ---------- */

/* A JSON string literal (Go style: <, >, & and controls escaped). */
void cf_json_string(FILE *out, const char *s, size_t len);
/* Base64 (standard alphabet, padded) of data, as a JSON string. */
void cf_json_base64(FILE *out, const uint8_t *data, size_t len);
/* Any protobuf-c message as etcdctl's JSON object. */
void cf_json_message(FILE *out, const ProtobufCMessage *m);

/* go-humanize Bytes(): "20 kB", "1.5 MB", "7 B". */
void cf_human_bytes(uint64_t n, char *out, size_t outlen);
/* Go time.Duration.String() of a duration in nanoseconds: "1.49182ms". */
void cf_go_duration(int64_t ns, char *out, size_t outlen);

/* A table of strings printed like etcdctl's tables. */
typedef struct cf_table {
    int ncols, nrows, cap;
    const char **headers; /* borrowed */
    char **cells;         /* nrows * ncols, owned */
} cf_table_t;

void cf_table_init(cf_table_t *t, const char **headers, int ncols);
/* Append one row of ncols strings (copied). 0 or -1 (out of memory). */
int cf_table_add(cf_table_t *t, const char **row);
void cf_table_print(FILE *out, const cf_table_t *t);
void cf_table_free(cf_table_t *t);

/* ---------- kshimctl command outputs ---------- */

typedef enum { CF_SIMPLE, CF_TABLE, CF_JSON } cf_format_t;

/* Parse "simple" / "table" / "json"; -1 if unknown. */
int cf_parse_format(const char *s);

/* get: keys_only and count_only change only the simple output. */
void cf_print_range(FILE *out, cf_format_t f, const Etcdserverpb__RangeResponse *r, int keys_only,
                    int count_only);
void cf_print_put(FILE *out, cf_format_t f, const Etcdserverpb__PutResponse *r);
void cf_print_delete(FILE *out, cf_format_t f, const Etcdserverpb__DeleteRangeResponse *r);
void cf_print_compact(FILE *out, cf_format_t f, const Etcdserverpb__CompactionResponse *r, int64_t rev);
void cf_print_members(FILE *out, cf_format_t f, const Etcdserverpb__MemberListResponse *r);

/* endpoint status: one entry per endpoint that answered. */
typedef struct cf_status_entry {
    const char *endpoint;
    const Etcdserverpb__StatusResponse *resp;
} cf_status_entry_t;
void cf_print_status(FILE *out, cf_format_t f, const cf_status_entry_t *e, int n);

/* endpoint health: one entry per endpoint (error "" when healthy). Healthy
 * simple lines go to out, unhealthy ones to err, like etcdctl. */
typedef struct cf_health_entry {
    const char *endpoint;
    int healthy;
    int64_t took_ns;
    const char *error;
} cf_health_entry_t;
void cf_print_health(FILE *out, FILE *err, cf_format_t f, const cf_health_entry_t *e, int n);

#endif
