/*
 * version.h: kshim's own version and the etcd version it reports. Clients
 * parse StatusResponse.version as semver and switch features on by it
 * (kube-apiserver 1.31 needs >= 3.5.13 for RequestProgress and consistent
 * reads from cache), so we report the etcd API level we implement.
 */
#ifndef KSHIM_VERSION_H
#define KSHIM_VERSION_H

#define KSHIM_VERSION "0.1.0"
#define KSHIM_ETCD_VERSION "3.5.16"
#define KSHIM_ETCD_API_VERSION "3.5"

#endif
