/*
 * pbjson.c: the JSON <-> protobuf-c converter of pbjson.h, on json-c.
 *
 * Owns nothing beyond a call: parsing builds a json-c tree, walks it against
 * the descriptor into a message allocated field by field with malloc (so
 * protobuf_c_message_free_unpacked(msg, NULL) frees it, also after an error
 * half way), then drops the tree. Formatting builds a json-c tree from the
 * message and serializes it.
 */
#include "pbjson.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 64 };

typedef struct parse_ctx {
    char *err;
    size_t errlen;
} parse_ctx_t;

static int fail(parse_ctx_t *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (c->errlen) vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- base64 ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *p, size_t n) {
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *o++ = B64[v >> 18 & 63];
        *o++ = B64[v >> 12 & 63];
        *o++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static int b64_value(char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Go's base64.StdEncoding as encoding/json decodes []byte: padded standard
 * alphabet (\r and \n skipped). 0, or the input offset Go reports in
 * "illegal base64 data at input byte N" (as a negative number - 1), or
 * PBJSON_E_NOMEM. */
static long b64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen) {
    uint8_t *buf = malloc(n / 4 * 3 + 3), *o = buf;
    if (!buf) return PBJSON_E_NOMEM;
    size_t i = 0;
    long bad = 0;
    while (i < n && !bad) {
        uint32_t acc = 0;
        size_t q = i; /* the quantum's first byte */
        int got = 0, pad = 0;
        while (got + pad < 4) {
            while (i < n && (s[i] == '\r' || s[i] == '\n')) i++;
            if (i == n) break;
            if (s[i] == '=') {
                if (got < 2) {
                    bad = -(long)i - 1;
                    break;
                }
                pad++;
                i++;
                continue;
            }
            int v = b64_value(s[i]);
            if (v < 0 || pad) {
                bad = -(long)i - 1;
                break;
            }
            acc = acc << 6 | (uint32_t)v;
            got++;
            i++;
        }
        if (bad) break;
        if (got + pad == 0) break;
        if (got + pad < 4) {
            bad = -(long)q - 1; /* a short final quantum, no padding */
            break;
        }
        acc <<= 6 * (4 - got);
        *o++ = (uint8_t)(acc >> 16);
        if (got > 2) *o++ = (uint8_t)(acc >> 8);
        if (got > 3) *o++ = (uint8_t)acc;
        while (i < n && (s[i] == '\r' || s[i] == '\n')) i++;
        if (pad && i < n) bad = -(long)i - 1;
    }
    if (bad) {
        free(buf);
        return bad;
    }
    *outlen = (size_t)(o - buf);
    if (*outlen == 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    return 0;
}

/* ---- field names ---- */

/* protoc's lowerCamelCase json_name: "range_end" -> "rangeEnd". */
static int camel_equals(const char *proto_name, const char *key) {
    const char *p = proto_name;
    int upper = 0;
    for (; *p; p++) {
        if (*p == '_') {
            upper = 1;
            continue;
        }
        char want = upper ? (char)toupper((unsigned char)*p) : *p;
        upper = 0;
        if (*key++ != want) return 0;
    }
    return *key == 0;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key) {
    for (unsigned i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i].name, key) == 0 || camel_equals(d->fields[i].name, key)) return &d->fields[i];
    return NULL;
}

/* ---- JSON -> message ---- */

static size_t scalar_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return 4;
    }
}

/* encoding/json's name of a JSON value's kind. */
static const char *json_kind(json_object *v) {
    switch (json_object_get_type(v)) {
    case json_type_boolean: return "bool";
    case json_type_int:
    case json_type_double: return "number";
    case json_type_string: return "string";
    case json_type_array: return "array";
    case json_type_object: return "object";
    default: return "null";
    }
}

/* The Go type a field unmarshals into (golang/protobuf's generated structs). */
static const char *go_type(const ProtobufCFieldDescriptor *f, char *buf, size_t len) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return "int32";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return "int64";
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return "uint32";
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return "uint64";
    case PROTOBUF_C_TYPE_FLOAT: return "float32";
    case PROTOBUF_C_TYPE_DOUBLE: return "float64";
    case PROTOBUF_C_TYPE_BOOL: return "bool";
    case PROTOBUF_C_TYPE_STRING: return "string";
    case PROTOBUF_C_TYPE_BYTES: return "[]uint8";
    case PROTOBUF_C_TYPE_ENUM: {
        /* "etcdserverpb.RangeRequest.SortOrder" -> "etcdserverpb.RangeRequest_SortOrder" */
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const char *pkg = ed->package_name ? ed->package_name : "";
        size_t pl = strlen(pkg);
        snprintf(buf, len, "%s", ed->name);
        for (char *p = buf + (pl && strncmp(buf, pkg, pl) == 0 ? pl + 1 : 0); *p; p++)
            if (*p == '.') *p = '_';
        return buf;
    }
    case PROTOBUF_C_TYPE_MESSAGE: return "map[string]json.RawMessage";
    }
    return "?";
}

static int type_error(parse_ctx_t *c, json_object *v, const ProtobufCFieldDescriptor *f) {
    char buf[256];
    return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type %s", json_kind(v),
                go_type(f, buf, sizeof buf));
}

/* What encoding/json says of text that should be one JSON number. */
static int number_text_error(parse_ctx_t *c, const char *str, const ProtobufCFieldDescriptor *f) {
    char buf[256];
    if (!str[0]) return fail(c, PBJSON_E_TYPE, "unexpected end of JSON input");
    if (!strchr("-0123456789", str[0]))
        return fail(c, PBJSON_E_TYPE, "invalid character '%c' looking for beginning of value", str[0]);
    char *end;
    strtod(str, &end);
    if (*end) return fail(c, PBJSON_E_TYPE, "invalid character '%c' after top-level value", *end);
    return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal number %s into Go value of type %s", str,
                go_type(f, buf, sizeof buf));
}

/* A JSON number, or a string holding one (jsonpb takes both for integers),
 * as a signed or unsigned 64-bit value. */
static int json_int(parse_ctx_t *c, json_object *v, const ProtobufCFieldDescriptor *f, int is_signed, int64_t *s,
                    uint64_t *u) {
    enum json_type t = json_object_get_type(v);
    if (t != json_type_int && t != json_type_double && t != json_type_string) return type_error(c, v, f);
    /* json-c's own text of a number is what the client sent. */
    const char *str = json_object_get_string(v);
    char *end;
    errno = 0;
    if (is_signed)
        *s = strtoll(str, &end, 10);
    else
        *u = str[0] == '-' ? (errno = ERANGE, 0) : strtoull(str, &end, 10);
    if (errno == 0 && str[0] && *end == 0) return 0;
    if (t == json_type_string) return number_text_error(c, str, f);
    char buf[256];
    return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal number %s into Go value of type %s", str,
                go_type(f, buf, sizeof buf));
}

static int parse_message_into(parse_ctx_t *c, const ProtobufCMessageDescriptor *d, json_object *obj,
                              ProtobufCMessage *m, int depth);

static int parse_enum(parse_ctx_t *c, const ProtobufCFieldDescriptor *f, json_object *v, int32_t *out) {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    char buf[256];
    if (json_object_get_type(v) == json_type_string) {
        const char *s = json_object_get_string(v);
        for (unsigned i = 0; i < ed->n_values; i++)
            if (strcmp(ed->values[i].name, s) == 0) {
                *out = ed->values[i].value;
                return 0;
            }
        return fail(c, PBJSON_E_TYPE, "unknown value \"%s\" for enum %s", s, go_type(f, buf, sizeof buf));
    }
    if (json_object_get_type(v) != json_type_int) return type_error(c, v, f);
    int64_t n;
    if (json_int(c, v, f, 1, &n, NULL) != 0) return PBJSON_E_TYPE;
    if (n < INT32_MIN || n > INT32_MAX)
        return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal number %s into Go value of type %s",
                    json_object_get_string(v), go_type(f, buf, sizeof buf));
    *out = (int32_t)n;
    return 0;
}

/* One value of field f (a scalar, or one element of a repeated field) into
 * the storage at p. */
static int parse_value(parse_ctx_t *c, const ProtobufCFieldDescriptor *f, json_object *v, void *p, int depth) {
    enum json_type t = json_object_get_type(v);
    int64_t s = 0;
    uint64_t u = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (json_int(c, v, f, 1, &s, NULL) != 0) return PBJSON_E_TYPE;
        if (s < INT32_MIN || s > INT32_MAX) return number_text_error(c, json_object_get_string(v), f);
        *(int32_t *)p = (int32_t)s;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (json_int(c, v, f, 0, NULL, &u) != 0) return PBJSON_E_TYPE;
        if (u > UINT32_MAX) return number_text_error(c, json_object_get_string(v), f);
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (json_int(c, v, f, 1, &s, NULL) != 0) return PBJSON_E_TYPE;
        *(int64_t *)p = s;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (json_int(c, v, f, 0, NULL, &u) != 0) return PBJSON_E_TYPE;
        *(uint64_t *)p = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d;
        if (t == json_type_int || t == json_type_double)
            d = json_object_get_double(v);
        else if (t == json_type_string && strcmp(json_object_get_string(v), "NaN") == 0)
            d = NAN;
        else if (t == json_type_string && strcmp(json_object_get_string(v), "Infinity") == 0)
            d = INFINITY;
        else if (t == json_type_string && strcmp(json_object_get_string(v), "-Infinity") == 0)
            d = -INFINITY;
        else
            return type_error(c, v, f);
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)d;
        else
            *(double *)p = d;
        return 0;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (t != json_type_boolean) return type_error(c, v, f);
        *(protobuf_c_boolean *)p = json_object_get_boolean(v) ? 1 : 0;
        return 0;
    case PROTOBUF_C_TYPE_ENUM: return parse_enum(c, f, v, (int32_t *)p);
    case PROTOBUF_C_TYPE_STRING: {
        if (t != json_type_string) return type_error(c, v, f);
        char *dup = strndup(json_object_get_string(v), (size_t)json_object_get_string_len(v));
        if (!dup) return fail(c, PBJSON_E_NOMEM, "out of memory");
        char **slot = p;
        if (*slot && *slot != (const char *)f->default_value) free(*slot);
        *slot = dup;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (t != json_type_string) return type_error(c, v, f);
        ProtobufCBinaryData *b = p;
        uint8_t *data;
        size_t n;
        long rc = b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), &data, &n);
        if (rc == PBJSON_E_NOMEM) return fail(c, PBJSON_E_NOMEM, "out of memory");
        if (rc != 0) return fail(c, PBJSON_E_TYPE, "illegal base64 data at input byte %ld", -rc - 1);
        free(b->data);
        b->data = data;
        b->len = n;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        if (t != json_type_object) return type_error(c, v, f);
        ProtobufCMessage **slot = p;
        if (!*slot) {
            *slot = malloc(md->sizeof_message);
            if (!*slot) return fail(c, PBJSON_E_NOMEM, "out of memory");
            md->message_init(*slot);
        }
        return parse_message_into(c, md, v, *slot, depth + 1);
    }
    }
    return fail(c, PBJSON_E_TYPE, "unsupported field type for %s", f->name);
}

static int parse_repeated(parse_ctx_t *c, const ProtobufCFieldDescriptor *f, json_object *v, char *m,
                          int depth) {
    if (json_object_get_type(v) != json_type_array)
        return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type []json.RawMessage",
                    json_kind(v));
    size_t *n = (size_t *)(m + f->quantifier_offset);
    void **arr = (void **)(m + f->offset);
    if (*n) return fail(c, PBJSON_E_TYPE, "field %s given twice", f->name);
    size_t count = json_object_array_length(v), es = scalar_size(f->type);
    if (count == 0) return 0;
    *arr = calloc(count, es);
    if (!*arr) return fail(c, PBJSON_E_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        char *slot = (char *)*arr + i * es;
        int rc = parse_value(c, f, e, slot, depth);
        int pointer = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
        if (!pointer || *(void **)slot) *n = i + 1; /* owned by the message now */
        if (rc != 0) return rc;
    }
    return 0;
}

static int parse_field(parse_ctx_t *c, const ProtobufCFieldDescriptor *f, json_object *v, ProtobufCMessage *m,
                       int depth) {
    char *base = (char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return parse_repeated(c, f, v, base, depth);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *oneof_case = (uint32_t *)(base + f->quantifier_offset);
        if (*oneof_case != 0 && *oneof_case != f->id)
            return fail(c, PBJSON_E_TYPE, "more than one field of a oneof is set (%s)", f->name);
        int pointer = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE ||
                      f->type == PROTOBUF_C_TYPE_BYTES;
        if (*oneof_case == 0 && pointer) memset(base + f->offset, 0, scalar_size(f->type));
        *oneof_case = f->id; /* first: so an error half way still frees what was stored */
        return parse_value(c, f, v, base + f->offset, depth);
    }
    int rc = parse_value(c, f, v, base + f->offset, depth);
    if (rc == 0 && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    return rc;
}

static int parse_message_into(parse_ctx_t *c, const ProtobufCMessageDescriptor *d, json_object *obj,
                              ProtobufCMessage *m, int depth) {
    if (depth > MAX_DEPTH) return fail(c, PBJSON_E_TYPE, "message nested too deeply");
    json_object_object_foreach(obj, key, val) {
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (!f || !val) continue; /* unknown fields and null: not set */
        int rc = parse_field(c, f, val, m, depth);
        if (rc != 0) return rc;
    }
    return 0;
}

/* encoding/json's text for what json-c's tokener stopped at. */
static int syntax_error(parse_ctx_t *c, struct json_tokener *tok, const char *text, size_t len) {
    enum json_tokener_error e = json_tokener_get_error(tok);
    if (e == json_tokener_continue) return fail(c, PBJSON_E_SYNTAX, "unexpected EOF");
    size_t at = json_tokener_get_parse_end(tok);
    char ch = at < len ? text[at] : ' ';
    const char *where = "looking for beginning of value";
    switch (e) {
    case json_tokener_error_parse_object_key_name: where = "looking for beginning of object key string"; break;
    case json_tokener_error_parse_object_key_sep: where = "after object key"; break;
    case json_tokener_error_parse_object_value_sep: where = "after object key:value pair"; break;
    case json_tokener_error_parse_array: where = "after array element"; break;
    case json_tokener_error_depth: return fail(c, PBJSON_E_SYNTAX, "exceeded max depth");
    default: break;
    }
    if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
        return fail(c, PBJSON_E_SYNTAX, "invalid character '\\x%02x' %s", (unsigned char)ch, where);
    return fail(c, PBJSON_E_SYNTAX, "invalid character '%c' %s", ch, where);
}

/* The first JSON value of text; a value still open at the end (a bare
 * number or literal) is finished as if the input ended there. *ok: 1
 * parsed, 0 a syntax error, -1 the input ended inside the value. */
static json_object *parse_first(struct json_tokener *tok, const char *text, size_t len, size_t *used, int *ok) {
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    *used = json_tokener_get_parse_end(tok);
    if (!root && json_tokener_get_error(tok) == json_tokener_continue && *used == len) {
        root = json_tokener_parse_ex(tok, "", 1); /* the end of the input */
        if (json_tokener_get_error(tok) != json_tokener_success) {
            *ok = -1; /* truncated */
            return NULL;
        }
        *used = len;
    }
    *ok = json_tokener_get_error(tok) == json_tokener_success;
    return root;
}

int pbjson_parse(const ProtobufCMessageDescriptor *d, const char *text, size_t len, ProtobufCMessage **out,
                 size_t *used, char *err, size_t errlen) {
    parse_ctx_t c = {err, errlen};
    *out = NULL;
    size_t skip = 0;
    while (skip < len && isspace((unsigned char)text[skip])) skip++;
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m) return fail(&c, PBJSON_E_NOMEM, "out of memory");
    d->message_init(m);
    if (skip == len) {
        if (used) *used = len;
        *out = m;
        return 0;
    }
    if (len - skip > INT32_MAX) {
        free(m);
        return fail(&c, PBJSON_E_SYNTAX, "request too large");
    }
    struct json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
    if (!tok) {
        free(m);
        return fail(&c, PBJSON_E_NOMEM, "out of memory");
    }
    size_t n = 0;
    int ok;
    json_object *root = parse_first(tok, text + skip, len - skip, &n, &ok);
    int rc = 0;
    if (ok < 0)
        rc = fail(&c, PBJSON_E_SYNTAX, "unexpected EOF");
    else if (!ok)
        rc = syntax_error(&c, tok, text + skip, len - skip);
    else if (root && json_object_get_type(root) != json_type_object) /* null: the empty message */
        rc = fail(&c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type map[string]json.RawMessage",
                  json_kind(root));
    else if (root)
        rc = parse_message_into(&c, d, root, m, 0);
    if (used) *used = skip + n;
    json_object_put(root);
    json_tokener_free(tok);
    if (rc != 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- message -> JSON ---- */

static json_object *format_message(const ProtobufCMessage *m);

static json_object *format_value(const ProtobufCFieldDescriptor *f, const void *p) {
    char num[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_object_new_int(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_object_new_int64(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)p);
        return json_object_new_string(num);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(num, sizeof num, "%" PRIu64, *(const uint64_t *)p);
        return json_object_new_string(num);
    case PROTOBUF_C_TYPE_FLOAT: return json_object_new_double(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return json_object_new_double(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_object_new_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_object_new_string(ev->name) : json_object_new_int(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_object_new_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *s = b64_encode(b->data, b->len);
        if (!s) return NULL;
        json_object *o = json_object_new_string(s);
        free(s);
        return o;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? format_message(sub) : json_object_new_object();
    }
    }
    return NULL;
}

/* Whether jsonpb (EmitDefaults false) writes field f of message base. */
static int field_present(const ProtobufCFieldDescriptor *f, const char *base) {
    const void *p = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(ProtobufCMessage *const *)p != NULL;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return 1;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && s[0];
    }
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p != 0;
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p != 0;
    case PROTOBUF_C_TYPE_BOOL: return *(const protobuf_c_boolean *)p != 0;
    default: break;
    }
    if (scalar_size(f->type) == 8) return *(const uint64_t *)p != 0;
    return *(const uint32_t *)p != 0;
}

static json_object *format_message(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    json_object *obj = json_object_new_object();
    if (!obj) return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!field_present(f, base)) continue;
        json_object *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset), es = scalar_size(f->type);
            const char *arr = *(char *const *)(base + f->offset);
            v = json_object_new_array_ext((int)n);
            for (size_t k = 0; v && k < n; k++) {
                json_object *e = format_value(f, arr + k * es);
                if (!e || json_object_array_add(v, e) != 0) {
                    json_object_put(e);
                    json_object_put(v);
                    v = NULL;
                }
            }
        } else {
            v = format_value(f, base + f->offset);
        }
        if (!v || json_object_object_add(obj, f->name, v) != 0) {
            json_object_put(v);
            json_object_put(obj);
            return NULL;
        }
    }
    return obj;
}

/* Go's encoding/json escapes <, > and & (and U+2028, U+2029) in strings;
 * outside strings JSON text has none of them, so every one is in a string. */
static char *go_escape(const char *s, size_t n, size_t *outlen) {
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '<' || s[i] == '>' || s[i] == '&' || (unsigned char)s[i] == 0xe2) extra += 5;
    char *out = malloc(n + extra + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '<' || ch == '>' || ch == '&') {
            o += sprintf(o, "\\u%04x", ch);
        } else if (ch == 0xe2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
                   ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9)) {
            o += sprintf(o, "\\u%04x", 0x2000 + ((unsigned char)s[i + 2] - 0x80));
            i += 2;
        } else {
            *o++ = (char)ch;
        }
    }
    *o = 0;
    *outlen = (size_t)(o - out);
    return out;
}

char *pbjson_format(const ProtobufCMessage *m, size_t *len) {
    json_object *obj = format_message(m);
    if (!obj) return NULL;
    size_t n, outlen = 0;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *out = s ? go_escape(s, n, &outlen) : NULL;
    json_object_put(obj);
    if (out && len) *len = outlen;
    return out;
}
