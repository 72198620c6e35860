#!/usr/bin/env python3
"""e2e/watchcheck.py: checks the watch streams e2e/histclient.go recorded,
one file per member ("REV KEY PUT|DELETE VALUE" lines, "# head N" at the
end), against the watch guarantees (used by test_lincheck_crash.sh):

  - complete: each stream reached its member's head revision ("# head N");
  - per member ordered by revision, no duplicate (revision, key) event;
  - no gaps: every revision any member reported (up to a member's head) is
    in that member's stream too;
  - the same events (key, type, value) at every revision on every member;
  - --contiguous: the revisions are exactly 2..head (a fresh store written
    only by histclient, single-key operations);
  - --history FILE: every acknowledged put and successful cas value appears
    as exactly one PUT event, every PUT event's value was written by a
    recorded operation (known or unknown outcome), and each key has at least
    as many DELETE events as acknowledged deletes of 1 key; and the
    revisions of acknowledged writes (found by value in the stream) respect
    real time across all keys: a write that returned before another was
    invoked has the lower revision.

Usage: watchcheck.py [--contiguous] [--history FILE] WATCHFILE...
Prints "watch OK: ..." and exits 0, or the problems and exits 1.
"""
import collections
import sys


def read_stream(path):
    events, head, notes = [], None, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# head "):
                head = int(line.split()[2])
            elif line.startswith("#"):
                notes.append(line)
            elif line:
                rev, key, typ, val = line.split(" ")
                events.append((int(rev), key, typ, val))
    return events, head, notes


def read_history(path):
    """-> (acknowledged written values -> (call, ret), all written values,
    acked deletes per key)"""
    acked, written, dels = {}, set(), collections.Counter()
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            _, op, key, val, _, _, ret, res = line.split()[:8]
            if op in ("put", "cas"):
                written.add(val)
                if ret != "unknown" and res in ("ok", "true"):
                    acked[val] = (int(line.split()[5]), int(ret))
            elif op == "del" and ret != "unknown" and res == "1":
                dels[key] += 1
    return acked, written, dels


def check_real_time(name, acked, rev_of, problems):
    """A write acknowledged before another began must have a lower revision."""
    writes = [(c, r, rev_of[v], v) for v, (c, r) in acked.items() if v in rev_of]
    by_ret = sorted(writes, key=lambda w: w[1])
    i, best = 0, None  # best: the highest-revision write returned so far
    for call, _, rev, val in sorted(writes):
        while i < len(by_ret) and by_ret[i][1] < call:
            if best is None or by_ret[i][2] > best[2]:
                best = by_ret[i]
            i += 1
        if best is not None and best[2] >= rev:
            problems.append("%s: %s (revision %d) was acknowledged before %s began, which got revision %d" %
                            (name, best[3], best[2], val, rev))


def check_stream(name, events, head, problems):
    if head is None:
        problems.append("%s: stream incomplete (no '# head' line)" % name)
    seen = set()
    prev = 0
    for rev, key, typ, val in events:
        if rev < prev:
            problems.append("%s: revision %d after %d (out of order)" % (name, rev, prev))
        if (rev, key) in seen:
            problems.append("%s: duplicate event at revision %d key %s" % (name, rev, key))
        seen.add((rev, key))
        prev = max(prev, rev)


def main(argv):
    contiguous = "--contiguous" in argv
    argv = [a for a in argv if a != "--contiguous"]
    history = None
    if "--history" in argv:
        i = argv.index("--history")
        history = argv[i + 1]
        del argv[i:i + 2]
    if not argv:
        print(__doc__)
        return 2
    problems = []
    streams = {}
    for path in argv:
        events, head, notes = read_stream(path)
        for n in notes:
            problems.append("%s: %s" % (path, n))
        check_stream(path, events, head, problems)
        streams[path] = (events, head)
    # revision -> events, per member; the union of revisions
    by_rev = {p: collections.defaultdict(set) for p in streams}
    union = set()
    for p, (events, _) in streams.items():
        for rev, key, typ, val in events:
            by_rev[p][rev].add((key, typ, val))
            union.add(rev)
    for p, (events, head) in streams.items():
        top = head if head is not None else max(by_rev[p], default=0)
        missing = sorted(r for r in union if r <= top and r not in by_rev[p])
        if missing:
            problems.append("%s: gap, misses revisions %s%s seen by other members" %
                            (p, missing[:10], " ..." if len(missing) > 10 else ""))
        if contiguous and head is not None:
            want = set(range(2, head + 1))
            lost = sorted(want - set(by_rev[p]))
            if lost:
                problems.append("%s: revisions 2..%d without an event: %s%s" %
                                (p, head, lost[:10], " ..." if len(lost) > 10 else ""))
    first = argv[0]
    for p in argv[1:]:
        for rev in sorted(set(by_rev[first]) & set(by_rev[p])):
            if by_rev[first][rev] != by_rev[p][rev]:
                problems.append("revision %d: %s has %s, %s has %s" %
                                (rev, first, sorted(by_rev[first][rev]), p, sorted(by_rev[p][rev])))
    if history:
        acked, written, dels = read_history(history)
        for p, (events, _) in streams.items():
            puts = collections.Counter(v for _, _, t, v in events if t == "PUT")
            for v in sorted(acked):
                if puts[v] != 1:
                    problems.append("%s: acknowledged write %s appears %d times" % (p, v, puts[v]))
            for v in sorted(set(puts) - written):
                problems.append("%s: PUT of %s, a value no recorded operation wrote" % (p, v))
            for v, n in puts.items():
                if n > 1 and v not in acked:
                    problems.append("%s: value %s written %d times" % (p, v, n))
            check_real_time(p, acked, {v: r for r, _, t, v in events if t == "PUT"}, problems)
            deleted = collections.Counter(k for _, k, t, _ in events if t == "DELETE")
            for k, n in dels.items():
                if deleted[k] < n:
                    problems.append("%s: %d acknowledged deletes of %s, %d DELETE events" % (p, n, k, deleted[k]))
    if problems:
        for line in problems[:50]:
            print("WATCH PROBLEM: " + line)
        print("watch: %d problems" % len(problems))
        return 1
    nev = sum(len(e) for e, _ in streams.values())
    heads = sorted({h for _, h in streams.values()})
    print("watch OK: %d members, %d events, head revision %s" % (len(streams), nev, heads))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
