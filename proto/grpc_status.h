/*
 * grpc_status.h: the gRPC status codes, the one copy: the state machines in
 * storage/ put them in kv_result_t.code (with etcd's text), the transport
 * finishes calls with them (grpc_call_finish). Header-only, in the lowest
 * layer (target kshim_bytes) so both sides use the same names.
 */
#ifndef KSHIM_GRPC_STATUS_H
#define KSHIM_GRPC_STATUS_H

typedef enum grpc_status {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
} grpc_status_t;

#endif
