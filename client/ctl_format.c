/* ctl_format.c: kshimctl output formats (see ctl_format.h).
 *
 * Owns: the JSON encoder driven by protobuf-c descriptors, the table
 * printer, Go-compatible number/duration renderings, and one print function
 * per command result. No I/O other than the FILE * it is given.
 */
#include "ctl_format.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------- JSON ---------- */

void cf_json_string(FILE *out, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (c < 0x20 || c == '<' || c == '>' || c == '&')
                fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

void cf_json_base64(FILE *out, const uint8_t *d, size_t len) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', out);
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        fputc(tab[v >> 18], out);
        fputc(tab[(v >> 12) & 63], out);
        fputc(tab[(v >> 6) & 63], out);
        fputc(tab[v & 63], out);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)d[i] << 16;
        fputc(tab[v >> 18], out);
        fputc(tab[(v >> 12) & 63], out);
        fputs("==", out);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        fputc(tab[v >> 18], out);
        fputc(tab[(v >> 12) & 63], out);
        fputc(tab[(v >> 6) & 63], out);
        fputc('=', out);
    }
    fputc('"', out);
}

/* Is the single value at p the zero value of its type (omitted by Go)? */
static int value_is_zero(const ProtobufCFieldDescriptor *fd, const void *p) {
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_BOOL: return *(const protobuf_c_boolean *)p == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s == NULL || *s == 0;
    }
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: return *(void *const *)p == NULL;
    }
    return 1;
}

static size_t value_size(const ProtobufCFieldDescriptor *fd) {
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    default: return 4;
    }
}

static void json_value(FILE *out, const ProtobufCFieldDescriptor *fd, const void *p) {
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM: fprintf(out, "%" PRId32, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: fprintf(out, "%" PRIu32, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: fprintf(out, "%" PRId64, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: fprintf(out, "%" PRIu64, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: fprintf(out, "%g", (double)*(const float *)p); break;
    case PROTOBUF_C_TYPE_DOUBLE: fprintf(out, "%g", *(const double *)p); break;
    case PROTOBUF_C_TYPE_BOOL: fputs(*(const protobuf_c_boolean *)p ? "true" : "false", out); break;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        cf_json_string(out, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        cf_json_base64(out, b->data, b->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m)
            cf_json_message(out, m);
        else
            fputs("null", out);
        break;
    }
    }
}

/* Is field fd present in m (set oneof member, non-empty, non-zero)? */
static int field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd) {
    const char *base = (const char *)m;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)(base + fd->quantifier_offset) > 0;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + fd->quantifier_offset) == fd->id;
    return !value_is_zero(fd, base + fd->offset);
}

void cf_json_message(FILE *out, const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    int first = 1;
    fputc('{', out);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (!field_present(m, fd)) continue;
        if (!first) fputc(',', out);
        first = 0;
        cf_json_string(out, fd->name, strlen(fd->name));
        fputc(':', out);
        if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
            json_value(out, fd, base + fd->offset);
            continue;
        }
        size_t n = *(const size_t *)(base + fd->quantifier_offset);
        const char *arr = *(char *const *)(base + fd->offset);
        fputc('[', out);
        for (size_t k = 0; k < n; k++) {
            if (k) fputc(',', out);
            json_value(out, fd, arr + k * value_size(fd));
        }
        fputc(']', out);
    }
    fputc('}', out);
}

/* ---------- Go-compatible numbers ---------- */

void cf_human_bytes(uint64_t n, char *out, size_t outlen) {
    static const char *units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    if (n < 10) {
        snprintf(out, outlen, "%" PRIu64 " B", n);
        return;
    }
    int e = 0;
    double p = 1;
    while (e < 6 && (double)n >= p * 1000) {
        p *= 1000;
        e++;
    }
    double val = (double)(uint64_t)((double)n / p * 10 + 0.5) / 10;
    snprintf(out, outlen, val < 10 ? "%.1f %s" : "%.0f %s", val, units[e]);
}

/* "I.FFF" with prec fraction digits, trailing zeros (and dot) removed. */
static int fmt_frac(char *out, size_t outlen, uint64_t v, int prec, const char *unit) {
    uint64_t div = 1;
    for (int i = 0; i < prec; i++) div *= 10;
    char frac[24];
    snprintf(frac, sizeof frac, "%0*" PRIu64, prec, v % div);
    int k = prec;
    while (k > 0 && frac[k - 1] == '0') k--;
    frac[k] = 0;
    return snprintf(out, outlen, "%" PRIu64 "%s%s%s", v / div, k ? "." : "", frac, unit);
}

void cf_go_duration(int64_t ns, char *out, size_t outlen) {
    const char *sign = ns < 0 ? "-" : "";
    uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    char body[128];
    if (u == 0)
        snprintf(body, sizeof body, "0s");
    else if (u < 1000)
        snprintf(body, sizeof body, "%" PRIu64 "ns", u);
    else if (u < 1000000)
        fmt_frac(body, sizeof body, u, 3, "\xc2\xb5s");
    else if (u < 1000000000)
        fmt_frac(body, sizeof body, u, 6, "ms");
    else {
        uint64_t h = u / 3600000000000ULL, m = u / 60000000000ULL % 60;
        char secs[64];
        fmt_frac(secs, sizeof secs, u % 60000000000ULL, 9, "s");
        if (h)
            snprintf(body, sizeof body, "%" PRIu64 "h%" PRIu64 "m%s", h, m, secs);
        else if (m)
            snprintf(body, sizeof body, "%" PRIu64 "m%s", m, secs);
        else
            snprintf(body, sizeof body, "%s", secs);
    }
    snprintf(out, outlen, "%s%s", sign, body);
}

/* ---------- tables ---------- */

void cf_table_init(cf_table_t *t, const char **headers, int ncols) {
    memset(t, 0, sizeof *t);
    t->headers = headers;
    t->ncols = ncols;
}

int cf_table_add(cf_table_t *t, const char **row) {
    if (t->nrows == t->cap) {
        int ncap = t->cap ? t->cap * 2 : 8;
        char **nc = realloc(t->cells, sizeof(char *) * (size_t)ncap * (size_t)t->ncols);
        if (!nc) return -1;
        t->cells = nc;
        t->cap = ncap;
    }
    char **dst = t->cells + (size_t)t->nrows * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        dst[i] = strdup(row[i] ? row[i] : "");
        if (!dst[i]) {
            while (i-- > 0) free(dst[i]);
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

void cf_table_free(cf_table_t *t) {
    for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* Display width: UTF-8 code points. */
static int text_width(const char *s) {
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static void pad(FILE *out, int n) {
    while (n-- > 0) fputc(' ', out);
}

static void table_rule(FILE *out, const int *w, int ncols) {
    fputc('+', out);
    for (int c = 0; c < ncols; c++) {
        for (int i = 0; i < w[c] + 2; i++) fputc('-', out);
        fputc('+', out);
    }
    fputc('\n', out);
}

void cf_table_print(FILE *out, const cf_table_t *t) {
    int w[32];
    assert(t->ncols <= 32);
    for (int c = 0; c < t->ncols; c++) {
        w[c] = text_width(t->headers[c]);
        for (int r = 0; r < t->nrows; r++) {
            int cw = text_width(t->cells[r * t->ncols + c]);
            if (cw > w[c]) w[c] = cw;
        }
    }
    table_rule(out, w, t->ncols);
    fputc('|', out);
    for (int c = 0; c < t->ncols; c++) {
        int gap = w[c] - text_width(t->headers[c]);
        pad(out, 1 + gap / 2);
        fputs(t->headers[c], out);
        pad(out, gap - gap / 2 + 1);
        fputc('|', out);
    }
    fputc('\n', out);
    table_rule(out, w, t->ncols);
    for (int r = 0; r < t->nrows; r++) {
        fputc('|', out);
        for (int c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            pad(out, 1 + w[c] - text_width(cell));
            fputs(cell, out);
            fputs(" |", out);
        }
        fputc('\n', out);
    }
    if (t->nrows > 0) table_rule(out, w, t->ncols);
}

/* ---------- command outputs ---------- */

int cf_parse_format(const char *s) {
    if (strcmp(s, "simple") == 0) return CF_SIMPLE;
    if (strcmp(s, "table") == 0) return CF_TABLE;
    if (strcmp(s, "json") == 0) return CF_JSON;
    return -1;
}

static void json_line(FILE *out, const ProtobufCMessage *m) {
    cf_json_message(out, m);
    fputc('\n', out);
}

static void write_bytes(FILE *out, const ProtobufCBinaryData *b) {
    if (b->len) fwrite(b->data, 1, b->len, out);
}

static void print_kv_simple(FILE *out, const Mvccpb__KeyValue *kv) {
    write_bytes(out, &kv->key);
    fputc('\n', out);
    write_bytes(out, &kv->value);
    fputc('\n', out);
}

/* A byte string as a C string (embedded NULs cut it short). */
static char *dup_bytes(const ProtobufCBinaryData *b) {
    char *s = malloc(b->len + 1);
    if (!s) return NULL;
    if (b->len) memcpy(s, b->data, b->len);
    s[b->len] = 0;
    return s;
}

static void print_range_table(FILE *out, const Etcdserverpb__RangeResponse *r) {
    static const char *hdr[] = {"KEY", "VALUE", "CREATE REVISION", "MOD REVISION", "VERSION", "LEASE"};
    cf_table_t t;
    cf_table_init(&t, hdr, 6);
    for (size_t i = 0; i < r->n_kvs; i++) {
        const Mvccpb__KeyValue *kv = r->kvs[i];
        char cr[24], mr[24], ver[24], lease[24];
        char *k = dup_bytes(&kv->key), *v = dup_bytes(&kv->value);
        snprintf(cr, sizeof cr, "%" PRId64, kv->create_revision);
        snprintf(mr, sizeof mr, "%" PRId64, kv->mod_revision);
        snprintf(ver, sizeof ver, "%" PRId64, kv->version);
        snprintf(lease, sizeof lease, "%" PRIx64, (uint64_t)kv->lease);
        const char *row[] = {k, v, cr, mr, ver, lease};
        if (k && v) cf_table_add(&t, row);
        free(k);
        free(v);
    }
    cf_table_print(out, &t);
    cf_table_free(&t);
}

void cf_print_range(FILE *out, cf_format_t f, const Etcdserverpb__RangeResponse *r, int keys_only,
                    int count_only) {
    (void)keys_only; /* the server already left the values out */
    if (f == CF_JSON) {
        json_line(out, &r->base);
        return;
    }
    if (f == CF_TABLE) {
        print_range_table(out, r);
        return;
    }
    if (count_only) {
        fprintf(out, "%" PRId64 "\n", r->count);
        return;
    }
    for (size_t i = 0; i < r->n_kvs; i++) print_kv_simple(out, r->kvs[i]);
}

void cf_print_put(FILE *out, cf_format_t f, const Etcdserverpb__PutResponse *r) {
    if (f == CF_JSON) {
        json_line(out, &r->base);
        return;
    }
    fputs("OK\n", out);
    if (r->prev_kv) print_kv_simple(out, r->prev_kv);
}

void cf_print_delete(FILE *out, cf_format_t f, const Etcdserverpb__DeleteRangeResponse *r) {
    if (f == CF_JSON) {
        json_line(out, &r->base);
        return;
    }
    fprintf(out, "%" PRId64 "\n", r->deleted);
    for (size_t i = 0; i < r->n_prev_kvs; i++) print_kv_simple(out, r->prev_kvs[i]);
}

void cf_print_compact(FILE *out, cf_format_t f, const Etcdserverpb__CompactionResponse *r, int64_t rev) {
    if (f == CF_JSON) {
        json_line(out, &r->base);
        return;
    }
    fprintf(out, "compacted revision %" PRId64 "\n", rev);
}

/* Strings joined with sep into a malloc'd string. */
static char *join(char **v, size_t n, const char *sep) {
    size_t len = 1;
    for (size_t i = 0; i < n; i++) len += strlen(v[i]) + strlen(sep);
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(s, sep);
        strcat(s, v[i]);
    }
    return s;
}

void cf_print_members(FILE *out, cf_format_t f, const Etcdserverpb__MemberListResponse *r) {
    if (f == CF_JSON) {
        json_line(out, &r->base);
        return;
    }
    static const char *hdr[] = {"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"};
    cf_table_t t;
    cf_table_init(&t, hdr, 6);
    for (size_t i = 0; i < r->n_members; i++) {
        const Etcdserverpb__Member *m = r->members[i];
        char id[24];
        snprintf(id, sizeof id, "%" PRIx64, m->id);
        char *peers = join(m->peerurls, m->n_peerurls, ",");
        char *clients = join(m->clienturls, m->n_clienturls, ",");
        const char *name = m->name ? m->name : "";
        const char *row[] = {id,      *name ? "started" : "unstarted", name, peers,
                             clients, m->islearner ? "true" : "false"};
        if (f == CF_TABLE)
            cf_table_add(&t, row);
        else
            fprintf(out, "%s, %s, %s, %s, %s, %s\n", row[0], row[1], row[2], peers ? peers : "",
                    clients ? clients : "", row[5]);
        free(peers);
        free(clients);
    }
    if (f == CF_TABLE) cf_table_print(out, &t);
    cf_table_free(&t);
}

/* The ten columns of one endpoint status row (etcdctl order). */
static void status_row(const cf_status_entry_t *e, char cols[10][128]) {
    const Etcdserverpb__StatusResponse *s = e->resp;
    uint64_t member = s->header ? s->header->member_id : 0;
    snprintf(cols[0], 128, "%s", e->endpoint);
    snprintf(cols[1], 128, "%" PRIx64, member);
    snprintf(cols[2], 128, "%s", s->version ? s->version : "");
    cf_human_bytes((uint64_t)s->dbsize, cols[3], 128);
    snprintf(cols[4], 128, "%s", s->leader == member ? "true" : "false");
    snprintf(cols[5], 128, "%s", s->islearner ? "true" : "false");
    snprintf(cols[6], 128, "%" PRIu64, s->raftterm);
    snprintf(cols[7], 128, "%" PRIu64, s->raftindex);
    snprintf(cols[8], 128, "%" PRIu64, s->raftappliedindex);
    cols[9][0] = 0;
    for (size_t i = 0; i < s->n_errors; i++) {
        size_t l = strlen(cols[9]);
        snprintf(cols[9] + l, 128 - l, "%s%s", i ? ", " : "", s->errors[i]);
    }
}

void cf_print_status(FILE *out, cf_format_t f, const cf_status_entry_t *e, int n) {
    if (f == CF_JSON) {
        fputc('[', out);
        for (int i = 0; i < n; i++) {
            fprintf(out, "%s{\"Endpoint\":", i ? "," : "");
            cf_json_string(out, e[i].endpoint, strlen(e[i].endpoint));
            fputs(",\"Status\":", out);
            cf_json_message(out, &e[i].resp->base);
            fputc('}', out);
        }
        fputs("]\n", out);
        return;
    }
    static const char *hdr[] = {"ENDPOINT",           "ID",         "VERSION",   "DB SIZE",
                                "IS LEADER",          "IS LEARNER", "RAFT TERM", "RAFT INDEX",
                                "RAFT APPLIED INDEX", "ERRORS"};
    cf_table_t t;
    cf_table_init(&t, hdr, 10);
    for (int i = 0; i < n; i++) {
        char cols[10][128];
        status_row(&e[i], cols);
        const char *row[10];
        for (int k = 0; k < 10; k++) row[k] = cols[k];
        if (f == CF_TABLE) {
            cf_table_add(&t, row);
            continue;
        }
        for (int k = 0; k < 10; k++) fprintf(out, "%s%s", cols[k], k < 9 ? ", " : "\n");
    }
    if (f == CF_TABLE) cf_table_print(out, &t);
    cf_table_free(&t);
}

void cf_print_health(FILE *out, FILE *err, cf_format_t f, const cf_health_entry_t *e, int n) {
    static const char *hdr[] = {"ENDPOINT", "HEALTH", "TOOK", "ERROR"};
    cf_table_t t;
    cf_table_init(&t, hdr, 4);
    if (f == CF_JSON) fputc('[', out);
    for (int i = 0; i < n; i++) {
        char took[64];
        cf_go_duration(e[i].took_ns, took, sizeof took);
        const char *error = e[i].error ? e[i].error : "";
        if (f == CF_JSON) {
            fprintf(out, "%s{\"endpoint\":", i ? "," : "");
            cf_json_string(out, e[i].endpoint, strlen(e[i].endpoint));
            fprintf(out, ",\"health\":%s,\"took\":\"%s\"", e[i].healthy ? "true" : "false", took);
            if (*error) {
                fputs(",\"error\":", out);
                cf_json_string(out, error, strlen(error));
            }
            fputc('}', out);
        } else if (f == CF_TABLE) {
            const char *row[] = {e[i].endpoint, e[i].healthy ? "true" : "false", took, error};
            cf_table_add(&t, row);
        } else if (e[i].healthy) {
            fprintf(out, "%s is healthy: successfully committed proposal: took = %s\n", e[i].endpoint, took);
        } else {
            fprintf(err, "%s is unhealthy: failed to commit proposal: %s\n", e[i].endpoint, error);
        }
    }
    if (f == CF_JSON) fputs("]\n", out);
    if (f == CF_TABLE) cf_table_print(out, &t);
    cf_table_free(&t);
}
