/*
 * config_file.c: etcd 3.4's YAML configuration file (--config-file,
 * etcd.conf.yml.sample), parsed with libyaml's document API.
 *
 * etcd reads the file with sigs.k8s.io/yaml into embed.configYAML, whose
 * JSON field names are the flag names, so each top-level key maps to the
 * flag of the same name, with etcd's rules:
 *   - a key with no value (null, "~", empty) leaves the default, as a JSON
 *     null does in Go;
 *   - unknown keys are ignored (Go's json.Unmarshal is not strict);
 *   - client-transport-security / peer-transport-security are mappings of
 *     cert-file, key-file, client-cert-auth, trusted-ca-file, auto-tls,
 *     the only fields etcd 3.4 copies (client: --cert-file ..., peer:
 *     --peer-cert-file ..., --peer-auto-tls); their other keys are ignored;
 *   - a sequence (log-outputs: [stderr]) becomes a comma list;
 *   - a mapping under a known key is an error; under an unknown one, ignored.
 * Owns nothing past the call: the yaml document is freed before returning,
 * set() must copy what it keeps.
 */
#include "config_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct load_ctx {
    yaml_document_t *doc;
    config_file_set_fn set;
    void *ctx;
    char *err;
    size_t errlen;
} load_ctx_t;

static const char *const security_keys[] = {"cert-file", "key-file", "client-cert-auth", "trusted-ca-file",
                                            "auto-tls"};

/* A plain scalar that YAML 1.1 reads as null. */
static int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static int apply(load_ctx_t *lc, const char *flag, const char *value, int line) {
    int rc = lc->set(lc->ctx, flag, value, lc->err, lc->errlen);
    if (rc < 0) {
        size_t n = strlen(lc->err);
        snprintf(lc->err + n, lc->errlen - n, " (line %d)", line);
        return -1;
    }
    return 0;
}

/* A sequence of scalars joined with commas into a malloc'd string. */
static char *join_sequence(load_ctx_t *lc, const yaml_node_t *seq) {
    size_t len = 1;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(lc->doc, *it);
        if (!item || item->type != YAML_SCALAR_NODE) return NULL;
        len += item->data.scalar.length + 1;
    }
    char *out = calloc(1, len);
    if (!out) return NULL;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(lc->doc, *it);
        if (*out) strcat(out, ",");
        strcat(out, (const char *)item->data.scalar.value);
    }
    return out;
}

/* One key: value of the top level (or of a transport-security section, with
 * its flag prefix). */
static int load_value(load_ctx_t *lc, const char *flag, const yaml_node_t *v) {
    int line = (int)v->start_mark.line + 1;
    if (is_null(v)) return 0;
    if (v->type == YAML_SCALAR_NODE) return apply(lc, flag, (const char *)v->data.scalar.value, line);
    if (v->type == YAML_SEQUENCE_NODE) {
        char *joined = join_sequence(lc, v);
        if (!joined) {
            snprintf(lc->err, lc->errlen, "%s: expected a list of strings (line %d)", flag, line);
            return -1;
        }
        int rc = *joined ? apply(lc, flag, joined, line) : 0;
        free(joined);
        return rc;
    }
    /* A mapping: ignored under a key etcd does not know, refused under one
     * it does (Go's json.Unmarshal does the same). */
    if (lc->set(lc->ctx, flag, NULL, lc->err, lc->errlen) == 1) return 0;
    snprintf(lc->err, lc->errlen, "%s: expected a value, got a mapping (line %d)", flag, line);
    return -1;
}

static int load_security(load_ctx_t *lc, const char *section, const char *prefix, const yaml_node_t *m) {
    if (is_null(m)) return 0;
    if (m->type != YAML_MAPPING_NODE) {
        snprintf(lc->err, lc->errlen, "%s: expected a mapping (line %d)", section,
                 (int)m->start_mark.line + 1);
        return -1;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) continue;
        for (size_t i = 0; i < sizeof security_keys / sizeof security_keys[0]; i++) {
            if (strcmp((const char *)k->data.scalar.value, security_keys[i]) != 0) continue;
            char flag[64];
            snprintf(flag, sizeof flag, "%s%s", prefix, security_keys[i]);
            if (load_value(lc, flag, v) != 0) return -1;
        }
    }
    return 0;
}

static int load_root(load_ctx_t *lc, const yaml_node_t *root) {
    if (!root || is_null(root)) return 0; /* an empty file: every default */
    if (root->type != YAML_MAPPING_NODE) {
        snprintf(lc->err, lc->errlen, "expected a mapping of settings at the top level (line %d)",
                 (int)root->start_mark.line + 1);
        return -1;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(lc->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(lc->doc, p->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) continue;
        const char *key = (const char *)k->data.scalar.value;
        int rc;
        if (!strcmp(key, "client-transport-security"))
            rc = load_security(lc, key, "", v);
        else if (!strcmp(key, "peer-transport-security"))
            rc = load_security(lc, key, "peer-", v);
        else
            rc = load_value(lc, key, v);
        if (rc != 0) return -1;
    }
    return 0;
}

int config_file_load(const char *path, config_file_set_fn set, void *ctx, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = -1;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s: %s at line %zu%s%s", path, parser.problem ? parser.problem : "YAML error",
                 parser.problem_mark.line + 1, parser.context ? ", " : "",
                 parser.context ? parser.context : "");
    } else {
        load_ctx_t lc = {.doc = &doc, .set = set, .ctx = ctx, .err = err, .errlen = errlen};
        rc = load_root(&lc, yaml_document_get_root_node(&doc));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}
