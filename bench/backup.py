#!/usr/bin/env python3
"""Backup and restore, in one run: three release nodes load the cpu set and compact; `pharosctl backup` takes a
full backup; a second load (the node set: other series) follows; `pharosctl backup --incremental-from` takes
an incremental one; every node of a new 3-node cluster is restored from it (`pharos restore`), the restored
cluster starts and its sample counts are compared with the original's.

Reports each step's time and rate, the backup's size on disk (allocated blocks, what `df` sees, and apparent
bytes; the incremental backup's own blocks, its pieces shared with the full one counted once), and the
counts.

    cargo build --release -p pharos-node -p pharos-bench
    python3 bench/backup.py [--hosts 2000] [--steps 1500] [--load-hosts 200] [--load-steps 360]

Progress goes to stderr; a markdown table to stdout.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def du(*paths, apparent=False):
    """Bytes of `paths` together (a file hard-linked from several counts once), allocated or apparent."""
    args = ["du", "-s", "-c", "--block-size=1"] + (["--apparent-size"] if apparent else []) + list(paths)
    return int(subprocess.check_output(args).decode().splitlines()[-1].split()[0])


def load(bench, url, data_set, hosts, steps):
    out = subprocess.check_output([bench, "write", "--url", url, "--set", data_set, "--hosts", str(hosts),
                                   "--steps", str(steps), "--oldest-first"])
    return json.loads(out.decode().strip().splitlines()[-1])


def count(url, q):
    """The first count of a query's first series (0 when empty)."""
    import urllib.parse
    body = json.loads(benchlib.http_get(url + "/query?" + urllib.parse.urlencode({"q": q, "db": "pharos"})))
    try:
        return int(body["results"][0]["series"][0]["values"][0][1])
    except (KeyError, IndexError):
        return 0


def timed(args):
    t = time.time()
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} ... failed:\n{p.stdout}{p.stderr}")
    return time.time() - t, p.stdout + p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=2000, help="hosts of the first load (cpu set, 10 fields)")
    ap.add_argument("--steps", type=int, default=1500, help="its time steps (10 s apart)")
    ap.add_argument("--load-hosts", type=int, default=200, help="hosts of the second load (node set)")
    ap.add_argument("--load-steps", type=int, default=360, help="its time steps")
    args = ap.parse_args()
    pharos, ctl, bench = benchlib.release_binaries(["pharos", "pharosctl", "pharos-bench"])
    work = tempfile.mkdtemp(prefix="pharos-backup-")
    procs, urls, grpcs = benchlib.start_nodes(pharos, work, 3)
    restored = []
    try:
        benchlib.log(f"loading {args.hosts} hosts x {args.steps} steps of the cpu set")
        first = load(bench, urls[0], "cpu", args.hosts, args.steps)
        for u in urls:
            benchlib.http_post(u + "/api/v1/admin/compact", "")
        data = du(os.path.join(work, "n1"))
        full = os.path.join(work, "full")
        benchlib.log("full backup")
        t_full, _ = timed([ctl, "--addr", grpcs[0], "backup", full])
        full_blocks, full_apparent = du(full), du(full, apparent=True)

        benchlib.log(f"loading {args.load_hosts} hosts x {args.load_steps} steps of the node set")
        second = load(bench, urls[0], "node", args.load_hosts, args.load_steps)
        incr = os.path.join(work, "incr")
        benchlib.log("incremental backup")
        t_incr, out = timed([ctl, "--addr", grpcs[0], "backup", incr, "--incremental-from", full])
        summary = re.search(r": (\S+) \((\S+) written, (\S+) linked", out)
        incr_total, incr_written, incr_linked = summary.groups() if summary else ("?", "?", "?")
        incr_own = du(full, incr) - du(full)
        want_cpu = count(urls[0], "SELECT count(usage_user) FROM cpu")
        want_node = count(urls[0], "SELECT count(gauge_0) FROM node")
        benchlib.stop_nodes(procs)
        procs = []

        # A new cluster from the incremental backup: each node restored, then started.
        hp = [benchlib.free_port() for _ in range(3)]
        gp = [benchlib.free_port() for _ in range(3)]
        ic = ",".join(f"{i + 1}=127.0.0.1:{gp[i]}" for i in range(3))
        flags = lambda i: ["--node-id", str(i + 1), "--data-dir", os.path.join(work, f"r{i + 1}"),  # noqa: E731
                           "--http-addr", f"127.0.0.1:{hp[i]}", "--grpc-addr", f"127.0.0.1:{gp[i]}",
                           "--initial-cluster", ic]
        t_restore = []
        for i in range(3):
            benchlib.log(f"restoring node {i + 1}")
            t, _ = timed([pharos, "restore", incr] + flags(i))
            t_restore.append(t)
        t0 = time.time()
        for i in range(3):
            restored.append(subprocess.Popen([pharos, "server", "--log", benchlib.node_log()] + flags(i),
                                             stdout=open(os.path.join(work, f"r{i + 1}.log"), "w"),
                                             stderr=subprocess.STDOUT, start_new_session=True))
        url = f"http://127.0.0.1:{hp[0]}"
        for _ in range(600):
            try:
                benchlib.http_get(url + "/health")
                break
            except Exception:
                time.sleep(0.2)
        t_healthy = time.time() - t0
        got_cpu = count(url, "SELECT count(usage_user) FROM cpu")
        got_node = count(url, "SELECT count(gauge_0) FROM node")
        mb = full_apparent / 1e6
        rows = [
            ("samples sent (cpu set, then node set)", f"{first['samples']:.0f} + {second['samples']:.0f}"),
            ("node 1's data directory after the first load and a compaction", f"{data / 1e6:.1f} MB"),
            ("full backup: time, rate", f"{t_full:.1f} s, {mb / t_full:.1f} MB/s"),
            ("full backup on disk, allocated / apparent", f"{full_blocks / 1e6:.1f} MB / {mb:.1f} MB"),
            ("incremental backup (after the second load): time", f"{t_incr:.1f} s"),
            ("incremental backup: part sizes, written, linked from the full one (pharosctl's summary)",
             f"{incr_total}, {incr_written}, {incr_linked}"),
            ("incremental backup's own allocated blocks (beyond the full one's)", f"{incr_own / 1e6:.1f} MB"),
            ("restore, per node (3 nodes, one after another)", " / ".join(f"{t:.1f} s" for t in t_restore)),
            ("restored cluster: start to /health 200", f"{t_healthy:.1f} s"),
            ("count(usage_user) FROM cpu, original / restored", f"{want_cpu} / {got_cpu}"),
            ("count(gauge_0) FROM node, original / restored", f"{want_node} / {got_node}"),
        ]
        print("| figure | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
        if (want_cpu, want_node) != (got_cpu, got_node):
            sys.exit("the restored cluster's counts differ from the original's")
    finally:
        benchlib.stop_nodes(procs + restored)
        benchlib.remove_work(work)


if __name__ == "__main__":
    main()
