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
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* Standard or URL-safe alphabet, padding optional. -1 on a bad character. */
static int b64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen) {
    while (n > 0 && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    uint8_t *buf = malloc(n / 4 * 3 + 3), *o = buf;
    if (!buf) return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
        }
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

/* A JSON number or numeric string as a signed or unsigned 64-bit value. */
static int json_int(parse_ctx_t *c, json_object *v, const char *name, int is_signed, int64_t *s, uint64_t *u) {
    enum json_type t = json_object_get_type(v);
    if (t == json_type_int) {
        if (is_signed) {
            errno = 0;
            *s = json_object_get_int64(v);
            if (errno == 0) return 0;
        } else if (json_object_get_int64(v) >= 0 || json_object_get_uint64(v) > (uint64_t)INT64_MAX) {
            *u = json_object_get_uint64(v);
            return 0;
        }
        return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal number into field %s: out of range", name);
    }
    if (t == json_type_double) {
        double d = json_object_get_double(v);
        if (d == floor(d) && fabs(d) < 9007199254740992.0 && (is_signed || d >= 0)) {
            if (is_signed)
                *s = (int64_t)d;
            else
                *u = (uint64_t)d;
            return 0;
        }
        return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal number %g into field %s", d, name);
    }
    if (t == json_type_string) {
        const char *str = json_object_get_string(v);
        char *end;
        errno = 0;
        if (is_signed)
            *s = strtoll(str, &end, 10);
        else
            *u = str[0] == '-' ? (errno = ERANGE, 0) : strtoull(str, &end, 10);
        if (errno == 0 && str[0] && *end == 0) return 0;
        return fail(c, PBJSON_E_TYPE, "json: invalid integer %s for field %s", str, name);
    }
    return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into integer field %s",
                json_type_to_name(t), name);
}

static int parse_message_into(parse_ctx_t *c, const ProtobufCMessageDescriptor *d, json_object *obj,
                              ProtobufCMessage *m, int depth);

static int parse_enum(parse_ctx_t *c, const ProtobufCFieldDescriptor *f, json_object *v, int32_t *out) {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    if (json_object_get_type(v) == json_type_string) {
        const char *s = json_object_get_string(v);
        for (unsigned i = 0; i < ed->n_values; i++)
            if (strcmp(ed->values[i].name, s) == 0) {
                *out = ed->values[i].value;
                return 0;
            }
        return fail(c, PBJSON_E_TYPE, "unknown value \"%s\" for enum %s", s, ed->name);
    }
    int64_t n;
    if (json_object_get_type(v) != json_type_int || json_int(c, v, f->name, 1, &n, NULL) != 0 || n < INT32_MIN ||
        n > INT32_MAX)
        return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into enum field %s",
                    json_type_to_name(json_object_get_type(v)), f->name);
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
        if (json_int(c, v, f->name, 1, &s, NULL) != 0) return PBJSON_E_TYPE;
        if (s < INT32_MIN || s > INT32_MAX) return fail(c, PBJSON_E_TYPE, "value out of range for %s", f->name);
        *(int32_t *)p = (int32_t)s;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (json_int(c, v, f->name, 0, NULL, &u) != 0) return PBJSON_E_TYPE;
        if (u > UINT32_MAX) return fail(c, PBJSON_E_TYPE, "value out of range for %s", f->name);
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (json_int(c, v, f->name, 1, &s, NULL) != 0) return PBJSON_E_TYPE;
        *(int64_t *)p = s;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (json_int(c, v, f->name, 0, NULL, &u) != 0) return PBJSON_E_TYPE;
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
            return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into number field %s", json_type_to_name(t),
                        f->name);
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)d;
        else
            *(double *)p = d;
        return 0;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (t != json_type_boolean)
            return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type bool",
                        json_type_to_name(t));
        *(protobuf_c_boolean *)p = json_object_get_boolean(v) ? 1 : 0;
        return 0;
    case PROTOBUF_C_TYPE_ENUM: return parse_enum(c, f, v, (int32_t *)p);
    case PROTOBUF_C_TYPE_STRING: {
        if (t != json_type_string)
            return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type string",
                        json_type_to_name(t));
        char *dup = strndup(json_object_get_string(v), (size_t)json_object_get_string_len(v));
        if (!dup) return fail(c, PBJSON_E_NOMEM, "out of memory");
        char **slot = p;
        if (*slot && *slot != (const char *)f->default_value) free(*slot);
        *slot = dup;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (t != json_type_string)
            return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type []uint8",
                        json_type_to_name(t));
        ProtobufCBinaryData *b = p;
        uint8_t *data;
        size_t n;
        if (b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), &data, &n) != 0)
            return fail(c, PBJSON_E_TYPE, "illegal base64 data in field %s", f->name);
        free(b->data);
        b->data = data;
        b->len = n;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        if (t != json_type_object)
            return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type %s",
                        json_type_to_name(t), md->name);
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
        return fail(c, PBJSON_E_TYPE, "json: cannot unmarshal %s into repeated field %s",
                    json_type_to_name(json_object_get_type(v)), f->name);
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

static int syntax_error(parse_ctx_t *c, struct json_tokener *tok, const char *text, size_t len) {
    enum json_tokener_error e = json_tokener_get_error(tok);
    if (e == json_tokener_continue) return fail(c, PBJSON_E_SYNTAX, "unexpected EOF");
    size_t at = json_tokener_get_parse_end(tok);
    char ch = at < len ? text[at] : '?';
    if (at > 0 && at <= len) ch = text[at - 1];
    return fail(c, PBJSON_E_SYNTAX, "invalid character '%c' (%s)", ch, json_tokener_error_desc(e));
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
    json_object *root = json_tokener_parse_ex(tok, text + skip, (int)(len - skip));
    int rc = 0;
    if (!root) {
        if (json_tokener_get_error(tok) == json_tokener_success) /* the literal null */
            rc = 0;
        else
            rc = syntax_error(&c, tok, text + skip, len - skip);
    } else if (json_object_get_type(root) != json_type_object) {
        rc = fail(&c, PBJSON_E_TYPE, "json: cannot unmarshal %s into Go value of type %s",
                  json_type_to_name(json_object_get_type(root)), d->name);
    } else {
        rc = parse_message_into(&c, d, root, m, 0);
    }
    if (used) *used = skip + json_tokener_get_parse_end(tok);
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

char *pbjson_format(const ProtobufCMessage *m, size_t *len) {
    json_object *obj = format_message(m);
    if (!obj) return NULL;
    size_t n;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *out = s ? strndup(s, n) : NULL;
    json_object_put(obj);
    if (out && len) *len = n;
    return out;
}
