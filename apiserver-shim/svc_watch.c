/*
 * svc_watch.c: the Watch service: not served yet (its methods are not registered, so clients get Unimplemented).
 * The lifecycle hooks exist so server.c's wiring is final; see server_internal.h.
 */
#include "server_internal.h"

int svc_watch_init(server_t *s, mvcc_options_t *mopts)
{
    (void)s;
    (void)mopts;
    return 0;
}

int svc_watch_start(server_t *s)
{
    (void)s;
    return 0;
}

void svc_watch_stop(server_t *s)
{
    (void)s;
}
