#!/usr/bin/env python3
"""Moving a shard, in one run: three release nodes with ONE shard (three replicas) load the cpu set, compact
(so the move ships a snapshot, as it does for any shard older than `raft.snapshot_after_entries`), a fourth
node joins, and `pharosctl node drain 3` moves node 3's replica to node 4 while a second load runs. Reports
the shard's size (node 4's data directory afterwards, allocated blocks and apparent bytes), the move's time
and MB/s, and the write rate during the move against the same load before it.

    cargo build --release -p pharos-node -p pharos-bench
    python3 bench/rebalance.py [--hosts 1000] [--steps 2000] [--load-steps 600]

Progress goes to stderr; a markdown table to stdout.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def du(path, apparent):
    args = ["du", "-s", "--block-size=1"] + (["--apparent-size"] if apparent else []) + [path]
    return int(subprocess.check_output(args).split()[0])


def load(bench, url, hosts, steps):
    """Runs pharos-bench write; returns its JSON summary."""
    out = subprocess.check_output([bench, "write", "--url", url, "--set", "cpu", "--hosts", str(hosts),
                                   "--steps", str(steps)])
    return json.loads(out.decode().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=2000, help="time steps of the initial load (10 s apart)")
    ap.add_argument("--load-steps", type=int, default=300, help="time steps of each comparison load")
    args = ap.parse_args()
    pharos, ctl, bench = benchlib.release_binaries(["pharos", "pharosctl", "pharos-bench"])
    work = tempfile.mkdtemp(prefix="pharos-rebalance-")
    procs, urls, grpcs = benchlib.start_nodes(pharos, work, 3, extra=("--shards", "1"))
    try:
        benchlib.log(f"loading {args.hosts} hosts x {args.steps} steps of the cpu set into one shard")
        first = load(bench, urls[0], args.hosts, args.steps)
        benchlib.log(f"loaded {first['samples']:.0f} samples at {first['samples_per_s']:.0f}/s; compacting")
        for u in urls:
            benchlib.http_post(u + "/api/v1/admin/compact", "")
        # The fourth node joins.
        hp, gp = benchlib.free_port(), benchlib.free_port()
        d4 = os.path.join(work, "n4")
        os.makedirs(d4)
        procs.append(subprocess.Popen([pharos, "server", "--data-dir", d4, "--http-addr", f"127.0.0.1:{hp}",
                                       "--grpc-addr", f"127.0.0.1:{gp}", "--log", "warn", "--join", grpcs[0]],
                                      stdout=open(d4 + ".log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        for _ in range(300):
            try:
                benchlib.http_get(f"http://127.0.0.1:{hp}/health")
                break
            except Exception:
                time.sleep(0.2)
        benchlib.log("write rate before the move")
        before = load(bench, urls[0], args.hosts, args.load_steps)
        result = {}

        def drain():
            t0 = time.time()
            subprocess.check_call([ctl, "--addr", grpcs[0], "node", "drain", "3"], stdout=subprocess.DEVNULL)
            result["seconds"] = time.time() - t0

        benchlib.log("moving node 3's replica to node 4 while the same load runs")
        t = threading.Thread(target=drain)
        t.start()
        during = load(bench, urls[0], args.hosts, args.load_steps)
        t.join()
        blocks, apparent = du(d4, False), du(d4, True)
        mb = blocks / 1e6
        rows = [
            ("samples in the shard before the move", f"{first['samples']:.0f}"),
            ("shard on node 4 after the move, allocated / apparent", f"{mb:.1f} MB / {apparent / 1e6:.1f} MB"),
            ("move (drain node 3: learner, snapshot, catch-up, joint consensus, delete)", f"{result['seconds']:.1f} s"),
            ("move rate (allocated MB / s)", f"{mb / result['seconds']:.1f} MB/s"),
            ("write rate before the move", f"{before['samples_per_s']:.0f} samples/s"),
            ("write rate during the move (the load outlasts it)", f"{during['samples_per_s']:.0f} samples/s"),
            ("during / before", f"{during['samples_per_s'] / before['samples_per_s']:.2f}"),
            ("failed batches before / during", f"{before['errors']} / {during['errors']}"),
        ]
        print("| figure | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    finally:
        benchlib.stop_nodes(procs)


if __name__ == "__main__":
    main()
