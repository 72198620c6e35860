/*
 * pbjson.h: one generic converter between JSON and protobuf-c messages,
 * driven only by the protobuf-c descriptors (field names, types, labels,
 * nested messages, enums, oneofs): no per-message code.
 *
 * The mapping is grpc-gateway's runtime.JSONPb{OrigName: true}, which etcd
 * 3.4's gateway uses (gw.NewServeMux() defaults):
 *   output: proto field names, fields at their default value left out,
 *           64-bit integers as strings, bytes as standard base64, enums by
 *           name, nested messages as objects, repeated fields as arrays;
 *   input:  proto or lowerCamelCase names, integers as numbers or strings,
 *           bytes as standard or URL-safe base64 (padding optional), enums
 *           by name or number, null as "not set"; unknown fields are
 *           ignored (as etcd's gateway does).
 * Bad input is an error with a message, never a crash. Thread-safe (no state).
 */
#ifndef KSHIM_PBJSON_H
#define KSHIM_PBJSON_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

enum {
    PBJSON_E_SYNTAX = -1, /* not JSON (or truncated) */
    PBJSON_E_TYPE = -2,   /* JSON, but a value does not fit its field */
    PBJSON_E_NOMEM = -3,
};

/* Parses the first JSON value of text[0..len) into a new message of type d.
 * Whitespace alone (or len 0), or null, is the empty message, as the gateway treats an
 * empty body. On success *out is owned by the caller (free it with
 * protobuf_c_message_free_unpacked(*out, NULL)) and *used (if not NULL) is the
 * number of bytes consumed, so a stream of values can be parsed one by one.
 * On error returns PBJSON_E_*, *out is NULL and err holds the reason. */
int pbjson_parse(const ProtobufCMessageDescriptor *d, const char *text, size_t len, ProtobufCMessage **out,
                 size_t *used, char *err, size_t errlen);

/* The JSON text of m (malloc'd, NUL-terminated, length in *len if not NULL),
 * or NULL when out of memory. */
char *pbjson_format(const ProtobufCMessage *m, size_t *len);

#endif
