#!/usr/bin/env python3
"""Disk over time after a load, with no admin call: does a node give space back by itself?

Loads one generated set (../shared/peers/gen.py, through ../shared/peers/load.py) into a fresh single release
node, then measures its data directory every `--every` seconds for `--minutes`, as allocated blocks (what `df`
sees) and apparent sizes, split into RocksDB's write-ahead logs, MANIFEST, info LOG files, SST files and the
rest; finally `POST /api/v1/admin/compact` and the same measure: the compacted figure the others are
compared with.

    cargo build --release -p pharos-node
    CARGO_TARGET_DIR=<dir with release/> python3 bench/space.py [--set node] [--hosts 200] [--hours 12]
                                                                [--minutes 3] [--every 15] [--config FILE]
                                                                [--lp FILE]

`--lp` loads an existing line-protocol file (e.g. a replayed real capture, bench/capture.py) instead.
Prints a markdown table (stdout); progress goes to stderr.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("wal", "manifest", "info_log", "sst", "other")


def kind(name):
    if name.endswith(".log") and name[:-4].isdigit():
        return "wal"
    if name.startswith("MANIFEST-"):
        return "manifest"
    if name == "LOG" or name.startswith("LOG.old"):
        return "info_log"
    if name.endswith(".sst"):
        return "sst"
    return "other"


def measure(path):
    """{kind: (allocated, apparent)} and the totals, over every file under `path`."""
    out = {k: [0, 0] for k in KINDS}
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue  # deleted while walking
            k = kind(f)
            out[k][0] += st.st_blocks * 512
            out[k][1] += st.st_size
    total = [sum(v[0] for v in out.values()), sum(v[1] for v in out.values())]
    return out, total


def mb(n):
    return f"{n / 1e6:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="node", choices=["node", "cpu"])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--lp", help="load this line-protocol file instead of a generated set (with its .json)")
    ap.add_argument("--precision", default="s", help="the timestamps' unit in the loaded file (gen.py: s)")
    ap.add_argument("--minutes", type=float, default=3, help="how long to watch after the load")
    ap.add_argument("--every", type=float, default=15, help="seconds between measures")
    ap.add_argument("--config", help="a TOML file for the node")
    a = ap.parse_args()
    peers = os.path.join(ROOT, "..", "shared", "peers")
    (binary,) = benchlib.release_binaries(["pharos"])
    work = tempfile.mkdtemp(prefix="pharos-space.")
    lp = a.lp
    if not lp:
        benchlib.log(f"generating the {a.set} set: {a.hosts} hosts x {a.hours} h")
        subprocess.run([sys.executable, os.path.join(peers, "gen.py"), "--set", a.set, "--hosts", str(a.hosts),
                        "--hours", str(a.hours), "--out", work], check=True, stdout=subprocess.DEVNULL)
        lp = os.path.join(work, f"{a.set}.lp")
    extra = ["--config", a.config] if a.config else []
    procs, urls, _ = benchlib.start_nodes(binary, work, 1, extra=extra)
    data = os.path.join(work, "n1")
    rows = []
    try:
        _, empty = measure(data)
        benchlib.log(f"empty node: {mb(empty[0])} MB allocated, {mb(empty[1])} MB apparent; loading {lp}")
        c0 = benchlib.cpu_seconds([p.pid for p in procs])
        out = subprocess.run([sys.executable, os.path.join(peers, "load.py"), "--url", f"{urls[0]}/write?db=bench&precision={a.precision}", lp],
                             stdout=subprocess.PIPE, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        cpu = benchlib.cpu_seconds([p.pid for p in procs]) - c0
        benchlib.log(f"loaded: {res}")
        if res["errors"] or not res["samples"]:
            sys.exit(f"the load failed: {res.get('first_error')}")
        samples = res["samples"]
        t0 = time.time()
        while True:
            el = time.time() - t0
            by, total = measure(data)
            rows.append((f"{el:.0f} s after the load", by, total))
            benchlib.log(f"+{el:.0f} s: {mb(total[0])} MB allocated, {mb(total[1])} MB apparent")
            if el >= a.minutes * 60:
                break
            time.sleep(a.every)
        benchlib.log("POST /api/v1/admin/compact")
        benchlib.http_post(urls[0] + "/api/v1/admin/compact", "")
        by, total = measure(data)
        rows.append(("after the admin call", by, total))
    finally:
        benchlib.stop_nodes(procs)
        subprocess.run(["rm", "-rf", work])
    compacted = rows[-1][2][0]
    print(f"{samples:,} samples at {res['samples_per_s']:,} samples/s, {cpu * 1e6 / samples:.2f} CPU-s per M samples; "
          "MB allocated / apparent; B/sample and x the compacted figure from allocated blocks\n")
    print("| when | total | B/sample | x compacted | WAL | MANIFEST | info LOG | SST | other |")
    print("|---|---|---|---|---|---|---|---|---|")
    for when, by, total in rows:
        cells = " | ".join(f"{mb(by[k][0])} / {mb(by[k][1])}" for k in KINDS)
        print(f"| {when} | {mb(total[0])} / {mb(total[1])} | {total[0] / samples:.2f} | "
              f"{total[0] / max(1, compacted):.2f} | {cells} |")


if __name__ == "__main__":
    main()
