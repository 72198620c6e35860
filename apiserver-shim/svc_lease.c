/*
 * svc_lease.c: the Lease service: not served yet (not registered: Unimplemented; Put with a lease answers "requested lease not found").
 * The lifecycle hooks exist so server.c's wiring is final; see server_internal.h.
 */
#include "server_internal.h"

int svc_lease_init(server_t *s, mvcc_options_t *mopts)
{
    (void)s;
    (void)mopts;
    return 0;
}

int svc_lease_start(server_t *s)
{
    (void)s;
    return 0;
}

void svc_lease_stop(server_t *s)
{
    (void)s;
}

int svc_lease_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res)
{
    (void)s;
    (void)index;
    (void)req;
    (void)hdr;
    (void)res;
    return 0;
}
