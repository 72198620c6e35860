/*
 * initial_cluster.c: --initial-cluster as etcd 3.4 reads it
 * (types.NewURLsMap, types.NewURLs) and etcd's start checks on it
 * (ServerConfig.VerifyBootstrap / VerifyJoinExisting: hasLocalMember,
 * advertiseMatchesCluster, checkDuplicateURL), with etcd's texts.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_config.h"

/* snprintf at buf + off, clamped (the new length, never past cap - 1). */
static size_t appendf(char *buf, size_t cap, size_t off, const char *fmt, ...) {
    if (off >= cap) return off;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + off, cap - off, fmt, ap);
    va_end(ap);
    if (n < 0) return off;
    return off + (size_t)n < cap ? off + (size_t)n : cap - 1;
}

void server_initial_cluster_free(server_initial_cluster_t *ic) {
    free(ic->buf);
    memset(ic, 0, sizeof *ic);
}

/* types.NewURLs on one URL: etcd's texts for a bad one. */
static int check_url(const char *u, char *err, size_t errlen) {
    const char *schemes[] = {"http://", "https://", "unix://", "unixs://"};
    const char *rest = NULL;
    for (size_t i = 0; i < 4 && !rest; i++)
        if (strncmp(u, schemes[i], strlen(schemes[i])) == 0) rest = u + strlen(schemes[i]);
    if (!rest) {
        appendf(err, errlen, 0,
                "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: %s", u);
        return -1;
    }
    const char *slash = strchr(rest, '/');
    const char *colon = strrchr(rest, ':');
    if (!colon || (slash && slash < colon) || colon == rest) {
        appendf(err, errlen, 0,
                "error setting up initial cluster: URL address does not have the form \"host:port\": %s", u);
        return -1;
    }
    if (slash && slash[1] != '\0') {
        appendf(err, errlen, 0, "error setting up initial cluster: URL must not contain a path: %s", u);
        return -1;
    }
    return 0;
}

const server_initial_member_t *server_initial_cluster_find(const server_initial_cluster_t *ic,
                                                           const char *name) {
    for (size_t i = 0; i < ic->n; i++)
        if (strcmp(ic->m[i].name, name) == 0) return &ic->m[i];
    return NULL;
}

int server_initial_cluster_parse(const char *text, const char *token, server_initial_cluster_t *out,
                                 char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->buf = strdup(text ? text : "");
    if (!out->buf) {
        appendf(err, errlen, 0, "out of memory");
        return -1;
    }
    for (char *save = NULL, *pair = strtok_r(out->buf, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq) {
            appendf(err, errlen, 0, "invalid --initial-cluster entry %s: want name=url", pair);
            goto fail;
        }
        *eq = '\0';
        const char *url = eq + 1;
        if (check_url(url, err, errlen) != 0) goto fail;
        server_initial_member_t *m = (server_initial_member_t *)server_initial_cluster_find(out, pair);
        if (!m) {
            if (out->n == SERVER_MAX_MEMBERS) {
                appendf(err, errlen, 0, "--initial-cluster: more than %d members", SERVER_MAX_MEMBERS);
                goto fail;
            }
            m = &out->m[out->n++];
            m->name = pair;
        }
        if (m->n_urls == SERVER_MAX_URLS) {
            appendf(err, errlen, 0, "--initial-cluster: more than %d URLs for %s", SERVER_MAX_URLS, pair);
            goto fail;
        }
        m->urls[m->n_urls++] = url;
    }
    for (size_t i = 0; i < out->n; i++)
        out->m[i].id = server_member_id(out->m[i].urls, out->m[i].n_urls, token ? token : "");
    return 0;
fail:
    server_initial_cluster_free(out);
    return -1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* types.URLsMap.String(): every name=url pair, sorted, comma-joined. */
static void urls_map_string(const server_initial_cluster_t *ic, char *out, size_t cap) {
    const char *pairs[SERVER_MAX_MEMBERS * SERVER_MAX_URLS];
    char store[SERVER_MAX_MEMBERS * SERVER_MAX_URLS][300];
    size_t n = 0;
    for (size_t i = 0; i < ic->n; i++)
        for (size_t j = 0; j < ic->m[i].n_urls; j++) {
            appendf(store[n], sizeof store[n], 0, "%s=%s", ic->m[i].name, ic->m[i].urls[j]);
            pairs[n] = store[n];
            n++;
        }
    qsort(pairs, n, sizeof pairs[0], cmp_str);
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && off < cap; i++) off = appendf(out, cap, off, "%s%s", i ? "," : "", pairs[i]);
}

static int has_url(const char *const *urls, size_t n, const char *u) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(urls[i], u) == 0) return 1;
    return 0;
}

/* Go's %q of a []string: ["a" "b"]. */
static void quote_list(const char *const *v, size_t n, char *out, size_t cap) {
    size_t off = (size_t)appendf(out, cap, 0, "[");
    for (size_t i = 0; i < n && off < cap; i++) off = appendf(out, cap, off, "%s\"%s\"", i ? " " : "", v[i]);
    appendf(out, cap, off, "]");
}

/* netutil.URLStringsEqual's error on the sorted lists (compared as strings:
 * etcd also resolves host names first). */
static void urls_differ(const char *const *a, size_t na, const char *const *b, size_t nb, char *out,
                        size_t cap) {
    if (na != nb) {
        char qa[1024], qb[1024];
        quote_list(a, na, qa, sizeof qa);
        quote_list(b, nb, qb, sizeof qb);
        appendf(out, cap, 0, "len(%s) != len(%s)", qa, qb);
        return;
    }
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0) {
            appendf(out, cap, 0, "resolved urls: \"%s\" != \"%s\"", a[i], b[i]);
            return;
        }
    out[0] = '\0';
}

/* advertiseMatchesCluster: the advertised peer URLs are exactly ours in
 * --initial-cluster. */
static int advertise_matches(const server_initial_member_t *me, const server_config_t *cfg, char *err,
                             size_t errlen) {
    const char *ap[SERVER_MAX_URLS], *ic[SERVER_MAX_URLS];
    size_t nap = cfg->n_initial_advertise_peer_urls, nic = me->n_urls;
    for (size_t i = 0; i < nap; i++) ap[i] = cfg->initial_advertise_peer_urls[i];
    for (size_t i = 0; i < nic; i++) ic[i] = me->urls[i];
    qsort(ap, nap, sizeof ap[0], cmp_str);
    qsort(ic, nic, sizeof ic[0], cmp_str);
    char why[1200];
    urls_differ(ap, nap, ic, nic, why, sizeof why);
    if (!why[0]) return 0;
    char apstr[1024] = "", missing[1024] = "";
    size_t off = 0, moff = 0;
    for (size_t i = 0; i < nap; i++) off = appendf(apstr, sizeof apstr, off, "%s%s", i ? "," : "", ap[i]);
    for (size_t i = 0; i < nic; i++)
        if (!has_url(ap, nap, ic[i]))
            moff = appendf(missing, sizeof missing, moff, "%s%s=%s", moff ? "," : "", me->name, ic[i]);
    if (moff) {
        appendf(err, errlen, 0,
                "--initial-cluster has %s but missing from --initial-advertise-peer-urls=%s (%s)", missing,
                apstr, why);
        return -1;
    }
    for (size_t i = 0; i < nap; i++)
        if (!has_url(ic, nic, ap[i]))
            moff = appendf(missing, sizeof missing, moff, "%s%s", moff ? "," : "", ap[i]);
    char mine[1024] = "";
    size_t o = 0;
    for (size_t i = 0; i < nap; i++)
        o = appendf(mine, sizeof mine, o, "%s%s=%s", i ? "," : "", cfg->name, ap[i]);
    if (moff) {
        appendf(err, errlen, 0, "--initial-advertise-peer-urls has %s but missing from --initial-cluster=%s",
                missing, mine);
        return -1;
    }
    appendf(err, errlen, 0, "failed to resolve %s to match --initial-cluster=%s (%s)", apstr, mine, why);
    return -1;
}

static int duplicate_url(const server_initial_cluster_t *ic) {
    for (size_t i = 0; i < ic->n; i++)
        for (size_t j = 0; j < ic->m[i].n_urls; j++)
            for (size_t k = i; k < ic->n; k++)
                for (size_t l = k == i ? j + 1 : 0; l < ic->m[k].n_urls; l++)
                    if (strcmp(ic->m[i].urls[j], ic->m[k].urls[l]) == 0) return 1;
    return 0;
}

int server_initial_cluster_check(const server_initial_cluster_t *ic, const server_config_t *cfg, int joining,
                                 char *err, size_t errlen) {
    const server_initial_member_t *me = server_initial_cluster_find(ic, cfg->name);
    if (!me) {
        appendf(err, errlen, 0, "couldn't find local name \"%s\" in the initial cluster configuration",
                cfg->name);
        return -1;
    }
    if (!joining && advertise_matches(me, cfg, err, errlen) != 0) return -1;
    if (duplicate_url(ic)) {
        char map[4096];
        urls_map_string(ic, map, sizeof map);
        appendf(err, errlen, 0, "initial cluster %s has duplicate url", map);
        return -1;
    }
    return 0;
}
