/*
 * svc_auth.c: the Auth service: not served yet (not registered: Unimplemented; every request runs unauthenticated).
 * The lifecycle hooks exist so server.c's wiring is final; see server_internal.h.
 */
#include "server_internal.h"

int svc_auth_init(server_t *s, mvcc_options_t *mopts)
{
    (void)s;
    (void)mopts;
    return 0;
}

int svc_auth_start(server_t *s)
{
    (void)s;
    return 0;
}

void svc_auth_stop(server_t *s)
{
    (void)s;
}

int svc_auth_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res)
{
    (void)s;
    (void)index;
    (void)req;
    (void)hdr;
    (void)res;
    return 0;
}
