/*
 * autotls.h: etcd's --auto-tls / --peer-auto-tls, a self-signed server
 * certificate generated with wolfSSL's certificate API.
 *
 * Follows etcd 3.4's pkg/transport/listener.go SelfCert: the files are
 * <dir>/cert.pem and <dir>/key.pem (etcd uses <data-dir>/fixtures/client and
 * <data-dir>/fixtures/peer); if both exist they are reused as they are,
 * otherwise both are (re)generated. The certificate is self-signed with
 * subject and issuer "O=etcd" (no CN), a random 128-bit serial, validity from
 * now for `days` days, basicConstraints CA:FALSE, keyUsage digitalSignature +
 * keyEncipherment (critical), extKeyUsage serverAuth, and one SubjectAltName
 * per host: dNSName entries first, then iPAddress entries (as Go encodes
 * them). The key is ECDSA P-256 (etcd 3.4 uses P-521), written as an
 * "EC PRIVATE KEY" PEM file with mode 0600.
 */
#ifndef KSHIM_AUTOTLS_H
#define KSHIM_AUTOTLS_H

#include <stddef.h>

/* Makes sure dir holds cert.pem and key.pem: reuses them if both exist, else
 * creates dir (0700, with parents) and writes a new key and self-signed
 * certificate valid `days` days with a SubjectAltName for every host (IPv4 and
 * IPv6 literals, optionally in brackets, become iPAddress; anything else
 * dNSName; empty hosts are skipped). A host may carry a port as etcd's URL
 * hosts do ("127.0.0.1:2379", "[::1]:2379"); it is dropped. A host that is
 * neither an IP literal nor printable ASCII is an error. cert_path and key_path receive the file
 * paths (buffers of at least PATH_MAX). Returns 0, or -1 with a message in
 * err. */
int autotls_ensure(const char *dir, const char *const *hosts, size_t n_hosts, unsigned days, char *cert_path,
                   char *key_path, char *err, size_t errlen);

/* Host part of an etcd URL: "https://127.0.0.1:2379" -> "127.0.0.1",
 * "https://[::1]:2379" -> "::1", "https://localhost:2379" -> "localhost";
 * the port, the scheme and any userinfo or path are optional. Returns 0, or
 * -1 if the URL has no host, a bracket is unclosed, or out is too small. */
int autotls_url_host(const char *url, char *out, size_t outlen);

#endif
