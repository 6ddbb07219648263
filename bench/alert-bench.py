#!/usr/bin/env python3
"""Alerting benchmark: many rules over many series on a Pharos cluster on this machine.

Starts N `pharos` nodes (release build), writes one sample per series per interval, applies a rule file of
R alerting rules (groups of 100, one pool of 100 hosts each), and measures over a window:
  - evaluation lag (how late group evaluations start) and duration, from the nodes' /metrics;
  - CPU-seconds used by the pharos processes;
  - the time from a threshold crossing (a sample above the threshold, written at T) to the webhook's
    receipt of the firing notification, for several crossings.

    python3 bench/alert-bench.py [--nodes 3] [--series 100000] [--rules 10000] [--interval 15] [--window 120]

Prints progress on stderr and one markdown table on stdout.
"""
import argparse
import http.server
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time

from benchlib import cpu_seconds, free_port, http_get, http_post, log, release_binaries, start_nodes, stop_nodes


class Receipts:
    """The webhook: records when each firing alert (by labels) was first received."""

    def __init__(self):
        self.first = {}
        self.lock = threading.Lock()
        self.count = 0

    def handler(self):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                now = time.time()
                with outer.lock:
                    outer.count += 1
                    for a in body.get("alerts", []):
                        if a.get("status") == "firing":
                            k = (a["labels"].get("pool"), a["labels"].get("host"))
                            outer.first.setdefault(k, now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        return H


def metric_sums(urls):
    """Sum over nodes of the histograms' _sum/_count and bucket counts, and rule evaluation counters."""
    out = {}
    for u in urls:
        for line in http_get(u + "/metrics").splitlines():
            m = re.match(r'^pharos_(rule_group_lag_seconds|rule_group_seconds|rule_evaluations_total)(_bucket|_sum|_count)?(\{[^}]*\})? (\S+)$', line)
            if not m:
                continue
            name, suffix, labels, v = m.group(1), m.group(2) or "", m.group(3) or "", float(m.group(4))
            le = re.search(r'le="([^"]+)"', labels)
            outcome = re.search(r'outcome="([^"]+)"', labels)
            key = (name, suffix, le.group(1) if le else (outcome.group(1) if outcome else ""))
            out[key] = out.get(key, 0.0) + v
    return out


def quantile(before, after, name, q):
    buckets = sorted(
        ((float(k[2]) if k[2] != "+Inf" else float("inf"), after[k] - before.get(k, 0.0))
         for k in after if k[0] == name and k[1] == "_bucket"),
    )
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return float("nan")
    for le, c in buckets:
        if c >= q * total:
            return le
    return float("inf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument("--window", type=int, default=120, help="measurement window, seconds")
    ap.add_argument("--crossings", type=int, default=5)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    binary, ctl = release_binaries(["pharos", "pharosctl"])
    hosts = 100
    pools = a.series // hosts
    work = tempfile.mkdtemp(prefix="pharos-alert-bench-")
    procs = []
    try:
        rec = Receipts()
        hook_port = free_port()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), rec.handler())
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        procs, urls, grpcs = start_nodes(binary, work, a.nodes)
        log(f"{a.nodes} nodes up in {work}")

        # Rules: groups of 100; rule r watches pool r % pools.
        groups = []
        for g in range(0, a.rules, 100):
            rules = []
            for r in range(g, min(g + 100, a.rules)):
                rules.append(
                    f"      - alert: Hot{r}\n"
                    f"        expr: SELECT last(value) FROM m WHERE time > now() - 1m AND pool = 'p{r % pools}' GROUP BY pool, host HAVING last(value) > 90\n"
                )
            groups.append(f"  - name: g{g // 100}\n    interval: {a.interval}s\n    rules:\n" + "".join(rules))
        rules_file = os.path.join(work, "rules.yml")
        with open(rules_file, "w") as f:
            f.write("groups:\n" + "".join(groups))
        routing_file = os.path.join(work, "routing.yml")
        with open(routing_file, "w") as f:
            f.write(f"route:\n  receiver: hook\n  group_by: [alertname, pool, host]\n  group_wait: 0s\n  group_interval: 1m\n"
                    f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n")
        # Data: one sample per series per interval, values below the threshold; `hot` series go above it.
        hot = {}
        stop = threading.Event()

        def write_round():
            ts = int(time.time() * 1000)
            lines = []
            for p in range(pools):
                for h in range(hosts):
                    v = hot.get((p, h), random.uniform(0, 50))
                    lines.append(f"m,pool=p{p},host=h{h} value={v:.2f} {ts}")
            for i in range(0, len(lines), 10_000):
                http_post(urls[(i // 10_000) % len(urls)] + "/write?precision=ms", "\n".join(lines[i:i + 10_000]))

        def writer():
            while not stop.is_set():
                t0 = time.time()
                try:
                    write_round()
                except Exception as e:
                    log(f"write round failed: {e}")
                stop.wait(max(0.0, a.interval - (time.time() - t0)))

        log(f"writing {pools * hosts} series every {a.interval}s")
        write_round()
        threading.Thread(target=writer, daemon=True).start()
        subprocess.run([ctl, "--addr", grpcs[0], "rules", "apply", rules_file], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([ctl, "--addr", grpcs[0], "routing", "apply", routing_file], check=True, stdout=subprocess.DEVNULL)
        log(f"{a.rules} rules in {len(groups)} groups applied; warming up for two intervals")
        time.sleep(2 * a.interval)

        pids = [p.pid for p in procs]
        m0, c0, t0 = metric_sums(urls), cpu_seconds(pids), time.time()
        latencies = []
        gap = a.window / max(1, a.crossings)
        for k in range(a.crossings):
            p, h = random.randrange(pools), random.randrange(hosts)
            hot[(p, h)] = 99.0
            crossed = time.time()
            http_post(urls[k % len(urls)] + "/write?precision=ms", f"m,pool=p{p},host=h{h} value=99 {int(crossed * 1000)}")
            deadline = crossed + gap
            got = None
            while got is None and time.time() < crossed + 3 * a.interval:
                with rec.lock:
                    got = rec.first.get((f"p{p}", f"h{h}"))
                time.sleep(0.05)
            lat = (got - crossed) if got else float("nan")
            latencies.append(lat)
            log(f"crossing {k + 1}/{a.crossings}: p{p}/h{h} notified after {lat:.2f}s")
            rest = deadline - time.time()
            if rest > 0:
                time.sleep(rest)
        m1, c1, t1 = metric_sums(urls), cpu_seconds(pids), time.time()
        el = t1 - t0
        n = m1.get(("rule_group_lag_seconds", "_count", ""), 0) - m0.get(("rule_group_lag_seconds", "_count", ""), 0)
        lag_sum = m1.get(("rule_group_lag_seconds", "_sum", ""), 0) - m0.get(("rule_group_lag_seconds", "_sum", ""), 0)
        dur_n = sum(v for k, v in m1.items() if k[0] == "rule_group_seconds" and k[1] == "_count") - sum(
            v for k, v in m0.items() if k[0] == "rule_group_seconds" and k[1] == "_count")
        dur_sum = sum(v for k, v in m1.items() if k[0] == "rule_group_seconds" and k[1] == "_sum") - sum(
            v for k, v in m0.items() if k[0] == "rule_group_seconds" and k[1] == "_sum")
        evals = {o: m1.get(("rule_evaluations_total", "", o), 0) - m0.get(("rule_evaluations_total", "", o), 0)
                 for o in ("ok", "query_error", "rule_error")}
        expected = a.rules / a.interval * el
        ok_lat = [x for x in latencies if x == x]
        print(f"\n| alerting, {a.nodes} nodes x {a.nodes if a.nodes < 3 else 3} replicas | value |")
        print("|---|---|")
        print(f"| rules / series / interval | {a.rules} / {pools * hosts} / {a.interval} s |")
        print(f"| rule evaluations in {el:.0f} s (expected {expected:.0f}) | {evals['ok']:.0f} ok, {evals['query_error']:.0f} query errors, {evals['rule_error']:.0f} refused |")
        print(f"| group evaluations | {n:.0f} |")
        print(f"| evaluation lag: mean / p99 (bucket bound) | {lag_sum / max(n, 1):.3f} s / {quantile(m0, m1, 'rule_group_lag_seconds', 0.99)} s |")
        print(f"| group evaluation time (100 rules): mean / p99 (bucket bound) | {dur_sum / max(dur_n, 1):.3f} s / {quantile(m0, m1, 'rule_group_seconds', 0.99)} s |")
        print(f"| server CPU | {c1 - c0:.1f} CPU-s in {el:.0f} s = {(c1 - c0) / el:.2f} cores |")
        if ok_lat:
            print(f"| threshold crossing -> webhook: min / median / max | {min(ok_lat):.2f} / {sorted(ok_lat)[len(ok_lat) // 2]:.2f} / {max(ok_lat):.2f} s (goal < {a.interval + 1} s) |")
        print(f"| crossings notified | {len(ok_lat)} / {len(latencies)} |")
        stop.set()
    finally:
        stop_nodes(procs)
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
