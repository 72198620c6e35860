#!/usr/bin/env python3
"""check_layers.py: the layering rule, checked on the sources (ctest
unit/check_layers). Every folder below may #include "..." headers only from
itself and from the folders LAYERS allows it (the layers below it); the
CMake targets link the same way (apiserver-shim/CMakeLists.txt,
storage/CMakeLists.txt), so an upward call fails to link as well. A header
is owned by the folder it lives in; *.pb-c.h are generated from proto/.
Exits 1 and names each upward #include found. Usage: check_layers.py [ROOT]
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))

# folder -> folders it may include from (besides itself). proto/ holds the
# generated messages and bytes.h (the byte helpers), below everything. Keep in step with
# the target_link_libraries of the folder's target and docs/ARCHITECTURE.md.
LAYERS = {
    "proto": [],
    "tls": [],
    "raft": ["proto"],
    "raft/peer": ["raft", "tls", "proto"],
    "storage/mvcc": ["proto"],
    "storage/kv": ["storage/mvcc", "proto"],
    "storage/lease": ["storage/kv", "storage/mvcc", "proto"],
    "storage/auth": ["storage/kv", "storage/mvcc", "proto"],
    "storage/cluster": ["storage/mvcc", "proto"],
    "storage/bbolt": ["storage/mvcc", "proto"],
    "client": ["proto"],
    "apiserver-shim/transport": ["tls", "proto"],
    "apiserver-shim/watch": ["proto"],
    "apiserver-shim/auth": ["proto"],
    "apiserver-shim/member": ["apiserver-shim/transport", "storage/kv", "storage/cluster",
                              "storage/mvcc", "raft", "raft/peer", "proto"],
    "apiserver-shim/services": ["apiserver-shim/member", "apiserver-shim/watch",
                                "apiserver-shim/auth", "apiserver-shim/transport",
                                "storage/lease", "storage/auth", "storage/kv",
                                "storage/cluster", "storage/bbolt", "storage/mvcc", "raft/peer", "raft", "proto"],
    "apiserver-shim": ["apiserver-shim/services", "apiserver-shim/member",
                       "apiserver-shim/watch", "apiserver-shim/auth",
                       "apiserver-shim/transport", "storage/lease", "storage/auth",
                       "storage/kv", "storage/cluster", "storage/mvcc", "raft", "raft/peer", "proto"],
    "cmd": ["apiserver-shim", "apiserver-shim/member", "apiserver-shim/transport",
            "client", "storage/bbolt", "storage/mvcc", "proto"],
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    owner = {}
    for folder in LAYERS:
        d = os.path.join(ROOT, folder)
        for name in os.listdir(d):
            if name.endswith(".h"):
                if name in owner:
                    print("check_layers: %s is in both %s and %s" % (name, owner[name], folder))
                    return 1
                owner[name] = folder
    bad = 0
    for folder, allowed in LAYERS.items():
        d = os.path.join(ROOT, folder)
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            text = open(os.path.join(d, name), encoding="utf-8", errors="replace").read()
            for inc in INCLUDE.findall(text):
                base = os.path.basename(inc)
                src = "proto" if base.endswith(".pb-c.h") else owner.get(base)
                if src is None:
                    print("%s/%s: includes \"%s\", which no layer owns" % (folder, name, inc))
                    bad += 1
                elif src != folder and src not in allowed:
                    print("%s/%s: includes \"%s\" from %s, not a layer below %s" %
                          (folder, name, inc, src, folder))
                    bad += 1
    if bad:
        print("check_layers: %d upward or unknown includes (see docs/ARCHITECTURE.md)" % bad)
        return 1
    print("check_layers: %d folders, every #include points down" % len(LAYERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
