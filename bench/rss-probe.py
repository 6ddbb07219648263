#!/usr/bin/env python3
"""Where one Pharos node's memory goes while it loads the comparison's data sets: samples the process's RSS
every 0.1 s and prints, per phase (loading each set, then compacting it), the peak and the RSS at its end
with what /metrics attributes (RocksDB memtables and block cache, samples in head chunks).

    cargo build --release -p pharos-node
    python3 bench/compare.py --systems pharos ...   # once, so the data sets exist (or run ../shared/peers/gen.py)
    python3 bench/rss-probe.py [--hosts 200] [--hours 12] [-- extra pharos server flags]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from compare import peers_dir  # noqa: E402


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def memory_metrics(url):
    text = benchlib.http_get(url + "/metrics")
    text = text.decode() if isinstance(text, bytes) else text
    out = {}
    for line in text.splitlines():
        if line.startswith("pharos_rocksdb_memory_bytes"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[f"rocksdb {kind} MB"] = round(float(line.rsplit(" ", 1)[1]) / 1e6, 1)
        elif line.startswith("pharos_shard_head_samples"):
            out["head samples"] = out.get("head samples", 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--hours", type=int, default=12)
    ap.add_argument("--sets", default="cpu,node")
    ap.add_argument("extra", nargs="*", help="extra `pharos server` flags")
    a = ap.parse_args()
    peers = peers_dir()
    data = os.path.join(os.environ.get("DATA", "/tmp/peers-data"), f"{a.hosts}-{a.hours}")
    for st in a.sets.split(","):
        if not os.path.exists(os.path.join(data, f"{st}.lp")):
            sys.exit(f"no {st} set in {data}: run bench/compare.py with the same --hosts/--hours first")
    (binary,) = benchlib.release_binaries(["pharos"])
    work = tempfile.mkdtemp(prefix="rss-probe.")
    procs, urls, _ = benchlib.start_nodes(binary, work, 1, extra=a.extra)
    pid, phase, peaks, done = procs[0].pid, ["idle"], {}, threading.Event()

    def sample():
        while not done.is_set():
            peaks[phase[0]] = max(peaks.get(phase[0], 0), rss_mb(pid))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    try:
        for st in a.sets.split(","):
            phase[0] = f"load {st}"
            benchlib.log(f"loading the {st} set")
            subprocess.run([sys.executable, os.path.join(peers, "load.py"), "--url",
                            urls[0] + "/write?db=bench&precision=s", os.path.join(data, f"{st}.lp")],
                           stdout=subprocess.DEVNULL, check=True)
            print(f"{phase[0]}: peak {peaks.get(phase[0], 0)} MB, end {rss_mb(pid)} MB, {memory_metrics(urls[0])}")
            phase[0] = f"compact {st}"
            benchlib.http_post(urls[0] + "/api/v1/admin/compact", "")
            time.sleep(0.3)
            print(f"{phase[0]}: peak {peaks.get(phase[0], 0)} MB, end {rss_mb(pid)} MB, {memory_metrics(urls[0])}")
        with open(f"/proc/{pid}/status") as f:
            print([line.strip() for line in f if line.startswith("VmHWM")][0])
    finally:
        done.set()
        benchlib.stop_nodes(procs)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
