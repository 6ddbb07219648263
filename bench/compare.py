#!/usr/bin/env python3
"""The whole side-by-side comparison in one command: the same generated data (../shared/peers/gen.py), loaded by
the same loader (../shared/peers/load.py: batches of 5,000 lines over 4 connections) into VictoriaMetrics,
InfluxDB (both from Debian's packages, via ../shared/peers/peer.sh), a single Pharos node and a 3-node Pharos
cluster with 3 replicas, all on this machine, one system at a time; then each system's own compaction, disk
use, and the four standard dashboard queries (../shared/peers/queries.py: 20 runs each, median and p99,
answer checksums). Prints one markdown table with each Pharos figure's ratio to the best peer.

    cargo build --release -p pharos-node
    python3 bench/compare.py [--hosts 100] [--hours 12] [--sets cpu,node]
                             [--systems vm,influx,pharos,pharos-nocache,pharos3] [--runs 20] [--out DIR]

Systems: `pharos` is one node with its defaults (query result cache on); `pharos-nocache` is one node with
`query.cache_entries = 0`, so every query is computed from storage as the peers are asked to do
(VictoriaMetrics gets `nocache=1`); `pharos-12d` (not in the default list) is one node with
`retention.significant_digits = 12`, the precision VictoriaMetrics keeps; `pharos3` is three nodes, three
replicas, queried through node 1.
Figures per system: ingest samples/s, server CPU-seconds per million samples (all of the system's processes),
bytes on disk per sample after compaction (VictoriaMetrics force-merged, InfluxDB fully compacted, every Pharos
node through `/api/v1/admin/compact`: maintenance on the shards it leads (idle heads sealed, closed rollups
built, as a node that had received the data live would have), snapshots, Raft logs purged, RocksDB compacted), peak RSS (summed over processes), and query
median / p99 in ms. The queries need the cpu set. Progress goes to stderr; the table to stdout and OUT/results.md.
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
QUERIES = ["a_one_series_raw_1h", "b_mean_per_minute_all_hosts_1h", "c_max_per_host_last_10m",
           "d_12h_in_1h_buckets_all_hosts"]


def peers_dir():
    for d in [os.environ.get("PEERS", ""), os.path.join(ROOT, "..", "shared", "peers"),
              os.path.join(ROOT, "..", "..", "shared", "peers")]:
        if d and os.path.exists(os.path.join(d, "peer.sh")):
            return os.path.abspath(d)
    sys.exit("../shared/peers not found (set PEERS to the harness directory)")


def peak_rss_mb(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) // 1024
        except OSError:
            pass
    return total


def disk_bytes(path):
    # Apparent sizes: RocksDB preallocates its write-ahead log (tens of MB, fallocate), so allocated blocks
    # swing with whether a node wrote since its last flush, not with the data it holds.
    out = subprocess.run(["du", "-s", "--apparent-size", "--block-size=1", path], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[0])


# Single-node variants and the configuration file each runs with.
PHAROS_CONFIGS = {
    "pharos-nocache": "[query]\ncache_entries = 0\n",
    "pharos-12d": "[retention]\nsignificant_digits = 12\n",
}
SYSTEMS = ("vm", "influx", "pharos", "pharos-nocache", "pharos-12d", "pharos3")


class System:
    """A started system: its processes, where to write and query, how to compact, where its data lives."""

    def __init__(self, name, peers, work, bin_path):
        self.name, self.peers, self.work = name, peers, work
        self.procs, self.peer_pid = [], None
        if name in ("vm", "influx"):
            self.port = benchlib.free_port()
            out = subprocess.run([os.path.join(peers, "peer.sh"), "start", name, str(self.port), work],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name} did not start: {out.stderr.strip()}")
            self.peer_pid = int(out.stdout.strip().splitlines()[-1])
            base = f"http://127.0.0.1:{self.port}"
            self.write_url = base + ("/write" if name == "vm" else "/write?db=bench&precision=s")
            self.query_base, self.dialect, self.urls = base, ("promql" if name == "vm" else "influxql"), []
        else:
            n = 3 if name == "pharos3" else 1
            extra = []
            if name in PHAROS_CONFIGS:
                cfg = os.path.join(work, "pharos.toml")
                with open(cfg, "w") as f:
                    f.write(PHAROS_CONFIGS[name])
                extra = ["--config", cfg]
            self.procs, self.urls, _ = benchlib.start_nodes(bin_path, work, n, extra=extra)
            self.write_url = self.urls[0] + "/write?db=bench&precision=s"
            self.query_base, self.dialect = self.urls[0], "influxql"

    def pids(self):
        return [self.peer_pid] if self.peer_pid else [p.pid for p in self.procs]

    def compact(self):
        if self.name in ("vm", "influx"):
            subprocess.run([os.path.join(self.peers, "peer.sh"), "flush", self.name, str(self.port)], check=True)
        else:
            for u in self.urls:
                try:
                    benchlib.http_post(u + "/api/v1/admin/compact", "")
                except Exception as e:  # the figure is still printed, but say why it may be high
                    benchlib.log(f"compaction of {u} failed: {e}")

    def stop(self):
        if self.peer_pid:
            try:
                os.kill(self.peer_pid, 15)
            except OSError:
                pass
            for _ in range(100):
                if not os.path.exists(f"/proc/{self.peer_pid}"):
                    break
                time.sleep(0.1)
        else:
            benchlib.stop_nodes(self.procs)


def run_system(name, a, peers, data, bin_path):
    work = tempfile.mkdtemp(prefix=f"compare-{name}.")
    benchlib.log(f"{name}: starting")
    s = System(name, peers, work, bin_path)
    row = {"system": name}
    try:
        if s.procs:
            s.compact()  # the baseline without the empty node's preallocated write-ahead log
        before = disk_bytes(work)
        for st in a.sets:
            benchlib.log(f"{name}: loading the {st} set")
            c0 = benchlib.cpu_seconds(s.pids())
            out = subprocess.run([sys.executable, os.path.join(peers, "load.py"), "--url", s.write_url,
                                  os.path.join(data, f"{st}.lp")], stdout=subprocess.PIPE, text=True, check=True)
            c1 = benchlib.cpu_seconds(s.pids())
            res = json.loads(out.stdout.strip().splitlines()[-1])
            benchlib.log(f"{name}: {st}: {res}")
            benchlib.log(f"{name}: compacting")
            s.compact()
            now = disk_bytes(work)
            samples = max(1, res["samples"])
            row[st] = {"rate": res["samples_per_s"], "errors": res["errors"],
                       "cpu": (c1 - c0) * 1e6 / samples, "bytes": (now - before) / samples}
            before = now
        row["rss"] = peak_rss_mb(s.pids())
        if "cpu" in a.sets:
            benchlib.log(f"{name}: the four queries, {a.runs} runs each")
            out = subprocess.run([sys.executable, os.path.join(peers, "queries.py"), "--dialect", s.dialect,
                                  "--base", s.query_base, "--meta", os.path.join(data, "cpu.json"),
                                  "--runs", str(a.runs)], stdout=subprocess.PIPE, text=True, check=True)
            for line in out.stdout.strip().splitlines():
                q = json.loads(line)
                row[q["query"]] = q
                benchlib.log(f"{name}: {q}")
    finally:
        s.stop()
        subprocess.run(["rm", "-rf", work])
    return row


def fmt(v, digits):
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def table(rows, a):
    """One markdown table; every Pharos cell also shows its ratio to the best peer in that column."""
    cols = []  # (header, getter, digits, higher_is_better)
    for st in a.sets:
        cols += [(f"{st} ingest samples/s", lambda r, st=st: r.get(st, {}).get("rate"), 0, True),
                 (f"{st} CPU-s / M samples", lambda r, st=st: r.get(st, {}).get("cpu"), 2, False),
                 (f"{st} bytes / sample", lambda r, st=st: r.get(st, {}).get("bytes"), 3, False)]
    cols.append(("peak RSS MB", lambda r: r.get("rss"), 0, False))
    if "cpu" in a.sets:
        for q in QUERIES:
            cols.append((f"q-{q[0]} median ms", lambda r, q=q: r.get(q, {}).get("median_ms"), 2, False))
            cols.append((f"q-{q[0]} p99 ms", lambda r, q=q: r.get(q, {}).get("p99_ms"), 2, False))
    peers = [r for r in rows if r["system"] in ("vm", "influx")]
    lines = ["| system | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for _, get, digits, higher in cols:
            v = get(r)
            if v is None:
                cells.append("-")
                continue
            cell = fmt(v, digits)
            peer_vals = [get(p) for p in peers if get(p) is not None]
            if r["system"].startswith("pharos") and peer_vals:
                best = max(peer_vals) if higher else min(peer_vals)
                if best > 0:
                    ratio = v / best
                    better = ratio >= 1 if higher else ratio <= 1
                    cell += f" ({ratio:.2f}x{'' if better else ' !'})"
            cells.append(cell)
        lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--sets", default="cpu,node")
    ap.add_argument("--systems", default="vm,influx,pharos,pharos-nocache,pharos3")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default="/tmp/pharos-compare")
    a = ap.parse_args()
    a.sets = [s for s in a.sets.split(",") if s]
    systems = [s for s in a.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            sys.exit(f"unknown system {s} ({', '.join(SYSTEMS)})")
    peers = peers_dir()
    bin_path = benchlib.release_binaries(["pharos"])[0] if any(s.startswith("pharos") for s in systems) else None
    subprocess.run([os.path.join(peers, "peer.sh"), "install"], check=True)
    hours = int(a.hours) if a.hours == int(a.hours) else a.hours
    data = os.path.join(os.environ.get("DATA", "/tmp/peers-data"), f"{a.hosts}-{hours}")
    os.makedirs(data, exist_ok=True)
    for st in a.sets:
        if not os.path.exists(os.path.join(data, f"{st}.json")):
            benchlib.log(f"generating the {st} set ({a.hosts} hosts, {a.hours} h) into {data}")
            subprocess.run([sys.executable, os.path.join(peers, "gen.py"), "--set", st, "--hosts", str(a.hosts),
                            "--hours", str(a.hours), "--out", data], check=True, stdout=sys.stderr)
    rows = [run_system(s, a, peers, data, bin_path) for s in systems]
    meta = json.load(open(os.path.join(data, f"{a.sets[0]}.json")))
    head = (f"Data: {a.hosts} hosts x {a.hours} h at 10 s ({meta['series']} series per set {a.sets[0]}), sets "
            f"{', '.join(a.sets)}; {time.strftime('%Y-%m-%d', time.gmtime())}; {os.cpu_count()} cores; loader: "
            f"5,000 lines per batch over 4 connections; queries: {a.runs} runs each.\n"
            f"Pharos cells: (ratio to the best peer; `!` where the peer is better).\n")
    out = head + "\n" + table(rows, a) + "\n"
    checks = [f"{r['system']} {q[0]}={r[q]['checksum']}" for r in rows for q in QUERIES if q in r]
    if checks:
        out += "\nAnswer checksums: " + ", ".join(checks) + "\n"
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(out)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(out)


if __name__ == "__main__":
    main()
