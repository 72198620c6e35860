#!/usr/bin/env bash
# e2e/isolated.sh TEST.sh [ARGS...]: runs one e2e test in a network
# namespace of its own (unshare --net, loopback up), so that ctest can run
# e2e tests side by side (make test: ctest -j2) although they bind fixed
# ports on 127.0.0.1; a test that builds its own namespaces (netns_lib.sh)
# names them by its pid, so they do not collide either. Without the right
# to create a namespace (not root), the test runs as it is: then run the
# e2e tests one at a time (ctest -j1, as make test does for a non-root user).
set -u
if [ -z "${E2E_ISOLATED:-}" ] && unshare --net true 2>/dev/null; then
    exec env E2E_ISOLATED=1 unshare --net bash -c 'ip link set lo up && exec bash "$@"' isolated "$@"
fi
exec bash "$@"
