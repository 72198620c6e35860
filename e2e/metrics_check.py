#!/usr/bin/python3
"""metrics_check.py: /metrics of kshimd against real etcd 3.4, read with
the Prometheus client's own text parser (python3-prometheus-client).

Usage: metrics_check.py ETCD_CLIENT ETCD_METRICS TARGET_CLIENT TARGET_METRICS
(host:port each). Runs one scenario of etcdctl requests against each
server and checks:
  - every family in FAMILIES is in real etcd's output and in kshimd's, same
    type (histograms with etcd's 14 disk buckets);
  - the scenario moves etcd_mvcc_put_total / delete_total / range_total /
    txn_total, etcd_debugging_mvcc_keys_total and grpc_server_handled_total
    (OK, NotFound, OutOfRange, Canceled Watch) by exactly the requests made,
    and by the same amounts on both servers;
  - etcd's TestV3MetricsInsecure sequence (put k; 6 x put i, del i, watch k
    --rev 1 ended by the client) gives 6 Canceled Watch calls;
  - the WAL fsync histogram counts at least one sync per sequential write
    (kshimd's backend commit histogram too: every applied batch is one
    synced LevelDB write; etcd's bbolt commits every 100 ms), buckets
    cumulative, +Inf == count.
Prints "ok - ..." / "not ok - ..." lines and exits 1 on any failure.
"""
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# Families taken from real etcd 3.4.23's /metrics (name, type).
FAMILIES = [
    ("etcd_cluster_version", "gauge"),
    ("etcd_debugging_mvcc_current_revision", "gauge"),
    ("etcd_debugging_mvcc_compact_revision", "gauge"),
    ("etcd_debugging_mvcc_db_total_size_in_bytes", "gauge"),
    ("etcd_debugging_mvcc_delete_total", "counter"),
    ("etcd_debugging_mvcc_keys_total", "gauge"),
    ("etcd_debugging_mvcc_put_total", "counter"),
    ("etcd_debugging_mvcc_range_total", "counter"),
    ("etcd_debugging_mvcc_slow_watcher_total", "gauge"),
    ("etcd_debugging_mvcc_total_put_size_in_bytes", "gauge"),
    ("etcd_debugging_mvcc_txn_total", "counter"),
    ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
    ("etcd_debugging_mvcc_watcher_total", "gauge"),
    ("etcd_disk_backend_commit_duration_seconds", "histogram"),
    ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
    ("etcd_disk_wal_write_bytes_total", "gauge"),
    ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
    ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
    ("etcd_mvcc_delete_total", "counter"),
    ("etcd_mvcc_put_total", "counter"),
    ("etcd_mvcc_range_total", "counter"),
    ("etcd_mvcc_txn_total", "counter"),
    ("etcd_network_client_grpc_received_bytes_total", "counter"),
    ("etcd_network_client_grpc_sent_bytes_total", "counter"),
    ("etcd_server_has_leader", "gauge"),
    ("etcd_server_health_failures", "counter"),
    ("etcd_server_health_success", "counter"),
    ("etcd_server_id", "gauge"),
    ("etcd_server_is_leader", "gauge"),
    ("etcd_server_is_learner", "gauge"),
    ("etcd_server_leader_changes_seen_total", "counter"),
    ("etcd_server_proposals_applied_total", "gauge"),
    ("etcd_server_proposals_committed_total", "gauge"),
    ("etcd_server_proposals_failed_total", "counter"),
    ("etcd_server_proposals_pending", "gauge"),
    ("etcd_server_quota_backend_bytes", "gauge"),
    ("etcd_server_version", "gauge"),
    ("grpc_server_handled_total", "counter"),
    ("grpc_server_msg_received_total", "counter"),
    ("grpc_server_msg_sent_total", "counter"),
    ("grpc_server_started_total", "counter"),
    ("os_fd_limit", "gauge"),
    ("os_fd_used", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_max_fds", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_virtual_memory_max_bytes", "gauge"),
]
ETCD_DISK_BUCKETS = [0.001 * 2**i for i in range(14)] + [float("inf")]

failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok - " if ok else "not ok - ") + name + ("" if ok else "  " + detail))
    if not ok:
        failures += 1


class Scrape:
    """One /metrics answer: families by name, samples by (name, labels)."""

    def __init__(self, hostport):
        text = urllib.request.urlopen("http://%s/metrics" % hostport, timeout=10).read().decode()
        self.families = {}
        self.samples = {}
        for fam in text_string_to_metric_families(text):
            self.families[fam.name] = fam
            for s in fam.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def family(self, name):
        """The parser drops a counter's _total from the family name."""
        if name in self.families:
            return self.families[name]
        if name.endswith("_total"):
            return self.families.get(name[: -len("_total")])
        return None

    def value(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


def handled(scrape, service, method, code, kind="unary"):
    return scrape.value("grpc_server_handled_total", grpc_code=code, grpc_method=method,
                        grpc_service=service, grpc_type=kind)


def ctl(endpoint, *args, ok=True):
    r = subprocess.run(["etcdctl", "--endpoints", "http://" + endpoint] + list(args),
                       capture_output=True, text=True, timeout=20)
    if ok and r.returncode != 0:
        raise RuntimeError("etcdctl %s: %s" % (" ".join(args), r.stderr))
    return r


def watch_until(endpoint, key, value):
    """etcdctl watch KEY --rev 1 until VALUE is printed, then ended by the
    client (as etcd's e2e ctlV3Watch does)."""
    p = subprocess.Popen(["etcdctl", "--endpoints", "http://" + endpoint, "watch", key, "--rev", "1"],
                         stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    try:
        while time.time() < deadline:
            line = p.stdout.readline()
            if not line or line.strip() == value:
                break
    finally:
        p.terminate()
        p.wait(timeout=10)


def live_keys(endpoint):
    r = ctl(endpoint, "get", "", "--from-key", "--keys-only")
    return len([line for line in r.stdout.splitlines() if line])


def scenario(client):
    """Requests with known counts: 5 puts, 3 deletes (one with prev_kv), a
    Range at a future revision (OutOfRange), a LeaseRevoke of an unknown
    lease (NotFound), a Txn with a compare and a put, 2 gets."""
    for i in range(5):
        ctl(client, "put", "mk%d" % i, "v")
    for i in range(2):
        ctl(client, "del", "mk%d" % i)
    ctl(client, "del", "mk2", "--prev-kv")
    ctl(client, "get", "mk3")
    ctl(client, "get", "mk4")
    ctl(client, "get", "mk3", "--rev", "100000", ok=False)
    ctl(client, "lease", "revoke", "7777", ok=False)
    r = subprocess.run(["etcdctl", "--endpoints", "http://" + client, "txn"], capture_output=True, text=True,
                       input='value("mk3") = "v"\n\nput mk5 t\n\n\n', timeout=20)
    if r.returncode != 0:
        raise RuntimeError("txn: " + r.stderr)


# (series, labels, expected delta) the scenario must give on both servers.
KV = ("etcdserverpb.KV",)
EXPECTED = [
    ("etcd_mvcc_put_total", {}, 6),  # 5 puts + the txn's put
    ("etcd_debugging_mvcc_put_total", {}, 6),
    ("etcd_mvcc_delete_total", {}, 3),
    ("etcd_debugging_mvcc_delete_total", {}, 3),
    ("etcd_mvcc_range_total", {}, 5),  # 2 gets + del --prev-kv + txn compare + the OutOfRange get
    ("etcd_mvcc_txn_total", {}, 1),  # del --prev-kv: a Range and a DeleteRange in one txn
    ("etcd_debugging_mvcc_keys_total", {}, 3),  # mk3, mk4, mk5
    ("etcd_debugging_mvcc_total_put_size_in_bytes", {}, 24),  # 6 puts of a 3-byte key and a 1-byte value
]
GRPC = [
    ("etcdserverpb.KV", "Put", "OK", 5),
    ("etcdserverpb.KV", "DeleteRange", "OK", 3),
    ("etcdserverpb.KV", "Range", "OK", 2),
    ("etcdserverpb.KV", "Range", "OutOfRange", 1),
    ("etcdserverpb.KV", "Txn", "OK", 1),
    ("etcdserverpb.Lease", "LeaseRevoke", "NotFound", 1),
]


def deltas(client, metrics, run):
    before = Scrape(metrics)
    run(client)
    after = Scrape(metrics)
    return before, after


def check_histogram(label, before, after, name, at_least):
    fam = after.family(name)
    if fam is None or fam.type != "histogram":
        check("%s: %s is a histogram" % (label, name), False, "missing")
        return
    buckets = [(float(s.labels["le"]), s.value) for s in fam.samples if s.name == name + "_bucket"]
    check("%s: %s has etcd's buckets" % (label, name), [b for b, _ in buckets] == ETCD_DISK_BUCKETS,
          str([b for b, _ in buckets]))
    counts = [v for _, v in buckets]
    check("%s: %s buckets are cumulative" % (label, name), counts == sorted(counts), str(counts))
    count = after.value(name + "_count")
    check("%s: %s +Inf bucket == count" % (label, name), counts and counts[-1] == count,
          "%s vs %s" % (counts[-1:], count))
    grew = count - before.value(name + "_count")
    check("%s: %s counted >= %d syncs for 5 sequential writes" % (label, name, at_least),
          grew >= at_least, "grew by %s" % grew)


def main():
    etcd_client, etcd_metrics, target_client, target_metrics = sys.argv[1:5]
    etcd_now, target_now = Scrape(etcd_metrics), Scrape(target_metrics)
    for name, kind in FAMILIES:
        ef, tf = etcd_now.family(name), target_now.family(name)
        check("etcd 3.4 has %s (%s)" % (name, kind), ef is not None and ef.type == kind,
              "etcd: %s" % (ef.type if ef else "absent"))
        check("kshimd has %s (%s)" % (name, kind), tf is not None and tf.type == kind,
              "kshimd: %s" % (tf.type if tf else "absent"))

    results = {}
    for label, client, metrics in (("etcd", etcd_client, etcd_metrics), ("kshimd", target_client, target_metrics)):
        keys_before = live_keys(client)  # a Range itself: before the first scrape
        before = Scrape(metrics)
        scenario(client)
        after = Scrape(metrics)
        got = {}
        for name, labels, want in EXPECTED:
            got[name] = after.value(name, **labels) - before.value(name, **labels)
        for service, method, code, want in GRPC:
            got[(method, code)] = handled(after, service, method, code) - handled(before, service, method, code)
        got["keys_live"] = after.value("etcd_debugging_mvcc_keys_total")
        check("%s: etcd_debugging_mvcc_keys_total == live keys" % label,
              got["keys_live"] == keys_before + 3, "%s vs %s" % (got["keys_live"], keys_before + 3))
        for name, labels, want in EXPECTED:
            check("%s: %s moved by %d" % (label, name, want), got[name] == want, "moved by %s" % got[name])
        for service, method, code, want in GRPC:
            check("%s: grpc_server_handled_total %s %s moved by %d" % (label, method, code, want),
                  got[(method, code)] == want, "moved by %s" % got[(method, code)])
        started = after.value("grpc_server_started_total", grpc_method="Put", grpc_service="etcdserverpb.KV",
                              grpc_type="unary") - before.value("grpc_server_started_total", grpc_method="Put",
                                                                grpc_service="etcdserverpb.KV", grpc_type="unary")
        check("%s: grpc_server_started_total Put moved by 5" % label, started == 5, "moved by %s" % started)
        check_histogram(label, before, after, "etcd_disk_wal_fsync_duration_seconds", 5)
        # etcd's bbolt commits every 100 ms (batch interval); kshimd syncs each applied batch
        check_histogram(label, before, after, "etcd_disk_backend_commit_duration_seconds",
                        5 if label == "kshimd" else 1)

        # etcd's e2e TestV3MetricsInsecure sequence.
        before = Scrape(metrics)
        ctl(client, "put", "k", "v")
        for i in range(1, 7):
            ctl(client, "put", str(i), "v")
            ctl(client, "del", str(i))
            watch_until(client, "k", "v")
        time.sleep(0.5)  # the server sees the client's cancel
        after = Scrape(metrics)
        canceled = (handled(after, "etcdserverpb.Watch", "Watch", "Canceled", "bidi_stream") -
                    handled(before, "etcdserverpb.Watch", "Watch", "Canceled", "bidi_stream"))
        check("%s: 6 watches ended by the client are 6 Canceled Watch calls" % label, canceled == 6,
              "moved by %s" % canceled)
        got["canceled"] = canceled
        results[label] = got
    check("kshimd's deltas are etcd's", results["etcd"] == results["kshimd"],
          "etcd %s kshimd %s" % (results["etcd"], results["kshimd"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
