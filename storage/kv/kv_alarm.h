/*
 * kv_alarm.h: etcd's alarm store (etcdserver/api/v3alarm) and the backend
 * quota (etcdserver/quota.go) as a state machine beside the KV store.
 *
 * Alarms are replicated: an AlarmRequest (ACTIVATE / DEACTIVATE / GET with a
 * member id and an alarm type) is a Raft entry, applied on every member by
 * kv_alarms_apply, which records the change in the side table 'a' | type(1)
 * | member id(8B BE) -> empty in the same LevelDB write as the applied
 * index, and in an in-memory set (one mutex) that any thread may read.
 * While a NOSPACE alarm is active every member refuses, at apply, Put, a Txn
 * with a put and LeaseGrant (etcd's applierV3Capped); while a CORRUPT alarm
 * is active, every Put, DeleteRange, Txn, Compaction, LeaseGrant and
 * LeaseRevoke (etcd's applierV3Corrupt). Reads are served either way.
 * NOSPACE is raised by the quota (svc_maintenance.c), CORRUPT by the
 * corruption checks (svc_corrupt.c).
 */
#ifndef KSHIM_KV_ALARM_H
#define KSHIM_KV_ALARM_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define KV_ALARMS_MAX 64 /* (member, type) pairs: 32 members x 2 types */
#define KV_ERR_NO_SPACE "etcdserver: mvcc: database space exceeded"
#define KV_ERR_CORRUPT "etcdserver: corrupt cluster"

typedef struct kv_alarm {
    uint64_t member_id;
    int type; /* ETCDSERVERPB__ALARM_TYPE__NOSPACE / __CORRUPT */
} kv_alarm_t;

typedef struct kv_alarms kv_alarms_t;

/* Loads the alarms the store holds. 0, or -1 (I/O error, a record that
 * does not decode, no memory). */
int kv_alarms_open(mvcc_t *m, kv_alarms_t **out);
void kv_alarms_free(kv_alarms_t *a);
/* Reads the set again from the store (after a snapshot replaced it); on an
 * I/O error or a record that does not decode the set is left empty and -1
 * returned. */
int kv_alarms_reload(kv_alarms_t *a, mvcc_t *m);

/* Any thread: the active alarms of type (NONE: every type), sorted by type
 * then member id; returns how many (at most max are copied). */
size_t kv_alarms_get(kv_alarms_t *a, int type, kv_alarm_t *out, size_t max);

/* Apply thread: applies req as entry index (one write txn with the applied
 * index, or joining the write group) and fills res with the packed
 * AlarmResponse: the alarm added (ACTIVATE, also when it was active), the
 * alarm removed (DEACTIVATE, none if it was not active) or the list (GET).
 * Returns 0, or -1 on a storage error (fail-stop). Entries at or below the
 * applied index return 0 without effect. */
int kv_alarms_apply(kv_alarms_t *a, mvcc_t *m, uint64_t index, const Etcdserverpb__AlarmRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res);

/* Apply thread: if an active alarm caps req, refuses it as entry index
 * (only the applied index moves) with etcd's error in res and returns 1;
 * 0 if req is not refused; -1 on a storage error. */
int kv_alarms_refuse(kv_alarms_t *a, mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req,
                     kv_result_t *res);

/* etcd's backendQuota.Available: 1 if req costs nothing or the store's size
 * plus its cost stays under --quota-backend-bytes. Any thread. */
int kv_quota_available(mvcc_t *m, const Kshim__InternalRequest *req);

#endif
