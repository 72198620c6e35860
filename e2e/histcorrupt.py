#!/usr/bin/env python3
"""e2e/histcorrupt.py: writes a copy of a recorded history (format in
e2e/lincheck/lincheck.c) with one read corrupted, to prove the checker
rejects it (test_lincheck_crash.sh, history_lib.sh):
  stale      the last get that can be made certainly stale returns the value
             of a completed write w that a completed write x replaced before
             the get began (values are unique, so w can never come back);
             w and x are the latest such writes, so the read is just stale;
  unwritten  the last get returns a value no operation wrote.
Usage: histcorrupt.py HISTORY MODE OUT (prints the changed line to stderr).
"""
import sys
src, mode, out = sys.argv[1:]
lines = open(src).read().splitlines()
ops = []
for i, l in enumerate(lines):
    if l.startswith("#") or not l.strip():
        continue
    f = l.split()
    ops.append((i, f))
def acked_write(f):
    return f[6] != "unknown" and ((f[1] == "put") or (f[1] == "cas" and f[7] == "true"))
pick = None
for i, g in reversed(ops):
    if g[1] != "get" or g[6] == "unknown":
        continue
    if mode == "unwritten":
        pick = (i, "never-written")
        break
    # x: the last write done before the get began; w: the last one done
    # before x began (the freshest value that is certainly stale)
    call = int(g[5])
    writes = sorted((f for _, f in ops if f[2] == g[2] and acked_write(f)), key=lambda f: int(f[6]))
    for x in reversed([x for x in writes if int(x[6]) < call]):
        ws = [w for w in writes if int(w[6]) < int(x[5]) and w[3] != g[7]]
        if ws:
            pick = (i, ws[-1][3])
            break
    if pick:
        break
if not pick:
    sys.exit("no read to corrupt")
i, val = pick
f = lines[i].split()
print("corrupted line %d: %s -> %s" % (i + 1, lines[i], val), file=sys.stderr)
f[7] = val
lines[i] = " ".join(f)
open(out, "w").write("\n".join(lines) + "\n")
