#!/usr/bin/env python3
"""Moving a shard, in one run: three release nodes with ONE shard (three replicas) load the cpu set, compact
(so the move ships a snapshot, as it does for any shard older than `raft.snapshot_after_entries`), a fourth
node joins, and `pharosctl node drain 3` moves node 3's replica to node 4 while a second load (the node set:
other series, now) runs. Reports the samples the shard holds, its size (node 1's data directory after
compaction, allocated blocks and apparent bytes), the move's time and MB/s, and the write rate during the
move against the 10 s before it, under one steady load.

The first load spans `--steps` x 10 s up to now, sent in time order (`--oldest-first`): 10,000 hosts x
1,500 steps x 10 fields is 150 M samples, about 1 GB. The second load (other series) goes in time order
too, and must outlast the move (the script warns when it does not).

    cargo build --release -p pharos-node -p pharos-bench
    python3 bench/rebalance.py [--hosts 10000] [--steps 1500] [--load-hosts 2000] [--load-steps 1500] \
        [--max-bytes-per-sec 52428800]

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


def metric(url, name):
    """The sum of a metric's samples on a node's /metrics."""
    total = 0.0
    for line in benchlib.http_get(url + "/metrics").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
    return total


def load(bench, url, hosts, steps, data_set="cpu", oldest_first=False):
    """Runs pharos-bench write; returns its JSON summary."""
    out = subprocess.check_output([bench, "write", "--url", url, "--set", data_set, "--hosts", str(hosts),
                                   "--steps", str(steps)] + (["--oldest-first"] if oldest_first else []))
    return json.loads(out.decode().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10000, help="hosts of the initial load (cpu set, 10 fields)")
    ap.add_argument("--steps", type=int, default=1500, help="time steps of the initial load (10 s apart)")
    ap.add_argument("--load-hosts", type=int, default=2000, help="hosts of the load during the move (node set)")
    ap.add_argument("--max-bytes-per-sec", type=int, default=50 << 20,
                    help="the nodes' rebalance.max_bytes_per_sec (snapshot send rate; 0: no limit)")
    ap.add_argument("--load-steps", type=int, default=1500,
                    help="time steps of the load during the move (sent in time order; it must outlast the move)")
    args = ap.parse_args()
    pharos, ctl, bench = benchlib.release_binaries(["pharos", "pharosctl", "pharos-bench"])
    work = tempfile.mkdtemp(prefix="pharos-rebalance-")
    # Every node sends snapshots at most this fast (the node's `rebalance.max_bytes_per_sec`).
    config = os.path.join(work, "pharos.toml")
    with open(config, "w") as f:
        f.write(f"[rebalance]\nmax_bytes_per_sec = {args.max_bytes_per_sec}\n")
    procs, urls, grpcs = benchlib.start_nodes(pharos, work, 3, extra=("--shards", "1", "--config", config))
    try:
        benchlib.log(f"loading {args.hosts} hosts x {args.steps} steps of the cpu set into one shard")
        first = load(bench, urls[0], args.hosts, args.steps, oldest_first=True)
        stored = metric(urls[0], "pharos_samples_written_total") - metric(urls[0], "pharos_samples_rejected_total")
        benchlib.log(f"sent {first['samples']:.0f} samples at {first['samples_per_s']:.0f}/s, {stored:.0f} stored; "
                     "compacting")
        for u in urls:
            benchlib.http_post(u + "/api/v1/admin/compact", "")
        shard_blocks, shard_apparent = du(os.path.join(work, "n1"), False), du(os.path.join(work, "n1"), True)
        # The fourth node joins.
        hp, gp = benchlib.free_port(), benchlib.free_port()
        d4 = os.path.join(work, "n4")
        os.makedirs(d4)
        procs.append(subprocess.Popen([pharos, "server", "--data-dir", d4, "--http-addr", f"127.0.0.1:{hp}",
                                       "--grpc-addr", f"127.0.0.1:{gp}", "--log", benchlib.node_log(), "--join", grpcs[0],
                                       "--config", config],
                                      stdout=open(d4 + ".log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        for _ in range(300):
            try:
                benchlib.http_get(f"http://127.0.0.1:{hp}/health")
                break
            except Exception:
                time.sleep(0.2)
        def written():
            return metric(urls[0], "pharos_samples_written_total")

        # One long load; the write rate over a window before the move and over the move itself, from node 1's
        # samples-written counter (it coordinates every write of the load).
        runs = {}
        # Other series than the shard holds (the node set): the same timestamps again would be rewrites.
        loader = threading.Thread(
            target=lambda: runs.setdefault("load", load(bench, urls[0], args.load_hosts, args.load_steps, "node",
                                                       oldest_first=True)))
        loader.start()
        start = written()
        while written() == start:  # the loader generates its data first
            time.sleep(0.2)
        time.sleep(2)
        pids = [p.pid for p in procs]
        cpu_of = lambda: [benchlib.cpu_seconds([pid]) for pid in pids]  # noqa: E731
        w0, t0, c0 = written(), time.time(), cpu_of()
        time.sleep(10)
        w1, t1, c1 = written(), time.time(), cpu_of()
        before = (w1 - w0) / (t1 - t0)
        benchlib.log("moving node 3's replica to node 4 under the load")
        drain = subprocess.run([ctl, "--addr", grpcs[0], "node", "drain", "3"], capture_output=True, text=True)
        if drain.returncode != 0:
            for n in ("n1", "n3", "n4"):
                with open(os.path.join(work, n + ".log")) as f:
                    benchlib.log(f"{n}.log, last lines:\n" + "".join(f.readlines()[-15:]))
            sys.exit(f"node drain 3 failed: {drain.stdout}{drain.stderr}")
        w2, t2, c2 = written(), time.time(), cpu_of()
        during = (w2 - w1) / (t2 - t1)
        # Each node's share of the machine's CPU before and during the move: where the move's work goes.
        cpu_before = [(b - a) / (t1 - t0) for a, b in zip(c0, c1)]
        cpu_during = [(b - a) / (t2 - t1) for a, b in zip(c1, c2)]
        seconds = t2 - t1
        load_ran_throughout = loader.is_alive()
        loader.join()
        benchlib.http_post(f"http://127.0.0.1:{hp}/api/v1/admin/compact", "")
        blocks, apparent = du(d4, False), du(d4, True)
        mb = shard_blocks / 1e6
        rows = [
            ("samples in the shard before the move (sent / stored)", f"{first['samples']:.0f} / {stored:.0f}"),
            ("shard on disk (node 1 after compaction), allocated / apparent", f"{mb:.1f} MB / {shard_apparent / 1e6:.1f} MB"),
            ("node 4's data directory after the move and a compaction, allocated / apparent",
             f"{blocks / 1e6:.1f} MB / {apparent / 1e6:.1f} MB"),
            ("move (drain node 3: learner, snapshot, catch-up, joint consensus, delete)", f"{seconds:.1f} s"),
            ("move rate (shard MB / s)", f"{mb / seconds:.1f} MB/s"),
            ("write rate in the 10 s before the move", f"{before:.0f} samples/s"),
            ("write rate during the move", f"{during:.0f} samples/s"),
            ("during / before", f"{during / before:.2f}"),
            ("failed batches of the load", f"{runs['load']['errors']}"),
            ("CPU cores used by nodes 1-4 before the move",
             " / ".join(f"{c:.2f}" for c in cpu_before)),
            ("CPU cores used by nodes 1-4 during the move (the leader sends, node 4 receives)",
             " / ".join(f"{c:.2f}" for c in cpu_during)),
        ]
        if not load_ran_throughout:
            benchlib.log("warning: the load ended before the move did; the rate during the move is too low "
                         "(raise --load-hosts)")
        print("| figure | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    finally:
        benchlib.stop_nodes(procs)
        benchlib.remove_work(work)


if __name__ == "__main__":
    main()
