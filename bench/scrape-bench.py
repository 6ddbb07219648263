#!/usr/bin/env python3
"""Collection benchmark on one Pharos node (release build):

1. Scraping: one local HTTP server exposes --targets targets of about --series series each (Prometheus text
   format; ten pre-rendered bodies per target rotate so values change); the node scrapes all of them every
   --interval seconds. Measured over --window seconds after a warm-up: samples/s written, the node's CPU,
   target health and scrape durations.
2. Push, same node build, fresh node each: `pharos-bench write` with line protocol and with Prometheus
   remote write carrying the same samples (cpu set, 100 hosts x 360 steps).

    python3 bench/scrape-bench.py [--targets 1000] [--series 500] [--interval 10] [--window 60]

Progress goes to stderr, one markdown table to stdout.
"""
import argparse
import http.server
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time

from benchlib import cpu_seconds, free_port, http_get, log, release_binaries, start_nodes, stop_nodes


def metric(url, name):
    for line in http_get(url + "/metrics").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def bodies(series, variants=10):
    """`variants` bodies of `series` samples: 50 families of counters and gauges, labels per family."""
    families = 50
    per = max(1, series // families)
    out = []
    for v in range(variants):
        lines = []
        for f in range(families):
            kind = "counter" if f % 2 == 0 else "gauge"
            name = f"bench_metric_{f}" + ("_total" if kind == "counter" else "")
            lines.append(f"# HELP {name} Benchmark metric {f}.")
            lines.append(f"# TYPE {name} {kind}")
            for j in range(per):
                val = (v + 1) * 1000 + j if kind == "counter" else random.uniform(0, 100)
                lines.append(f'{name}{{device="dev{j}",mode="m{j % 4}"}} {val:.3f}')
        out.append(("\n".join(lines) + "\n").encode())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--skip-push", action="store_true")
    a = ap.parse_args()
    binary, ctl = release_binaries(["pharos", "pharosctl"])
    bench = None if a.skip_push else release_binaries(["pharos-bench"])[0]
    work = tempfile.mkdtemp(prefix="pharos-scrape-bench-")
    rows = []
    try:
        pre = bodies(a.series)
        samples_per_body = sum(1 for l in pre[0].decode().splitlines() if not l.startswith("#"))
        port = free_port()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = pre[int(time.time() // a.interval) % len(pre)]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        (node,), (url,), (grpc,) = start_nodes(binary, work, 1, "scrape")
        targets = ", ".join(f"{{targets: ['127.0.0.1:{port}'], labels: {{id: 't{i}'}}}}" for i in range(a.targets))
        cfg = os.path.join(work, "scrape.yml")
        with open(cfg, "w") as f:
            f.write(f"global:\n  scrape_interval: {a.interval}s\n  scrape_timeout: {a.interval}s\nscrape_configs:\n"
                    f"  - job_name: bench\n    relabel_configs:\n      - source_labels: [id]\n        target_label: __param_id\n"
                    f"    static_configs: [{targets}]\n")
        subprocess.run([ctl, "--addr", grpc, "scrape", "apply", cfg], check=True, stdout=subprocess.DEVNULL)
        log(f"{a.targets} targets x {samples_per_body} samples every {a.interval}s applied; warming up {2 * a.interval + 5}s")
        time.sleep(2 * a.interval + 5)
        s0, c0, t0 = metric(url, "pharos_scraped_samples_total"), cpu_seconds([node.pid]), time.time()
        for k in range(a.window // 10):
            time.sleep(10)
            log(f"  {(k + 1) * 10}/{a.window}s: {metric(url, 'pharos_scraped_samples_total') - s0:.0f} samples written")
        s1, c1, t1 = metric(url, "pharos_scraped_samples_total"), cpu_seconds([node.pid]), time.time()
        tg = json.loads(http_get(url + "/api/v1/targets"))["data"]["activeTargets"]
        up = sum(1 for t in tg if t["health"] == "up")
        durs = sorted(t["lastScrapeDuration"] for t in tg if t["health"] == "up")
        el = t1 - t0
        expected = a.targets * (samples_per_body + 5) / a.interval
        rows.append(("scrape: samples written / s", f"{(s1 - s0) / el:,.0f} (expected {expected:,.0f})"))
        rows.append(("scrape: targets up", f"{up} / {len(tg)}"))
        if durs:
            rows.append(("scrape: duration p50 / p99", f"{durs[len(durs) // 2] * 1000:.1f} / {durs[int(len(durs) * 0.99)] * 1000:.1f} ms"))
        rows.append(("scrape: node CPU", f"{(c1 - c0) / el:.2f} cores = {(c1 - c0) / max(s1 - s0, 1) * 1e6:.2f} CPU-s per M samples"))
        stop_nodes([node])
        srv.shutdown()

        if not a.skip_push:
            for proto in ("lp", "remote-write"):
                (node,), (url,), _ = start_nodes(binary, work, 1, proto)
                c0 = cpu_seconds([node.pid])
                out = subprocess.run([bench, "write", "--url", url, "--set", "cpu", "--hosts", "100", "--steps", "360",
                                      "--batch", "2000", "--protocol", proto], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                c1 = cpu_seconds([node.pid])
                rows.append((f"push {proto}: samples / s", f"{r['samples_per_s']:,.0f} ({r['errors']} errors, p99 {r['p99_ms']} ms, "
                             f"{(c1 - c0) / r['samples'] * 1e6:.2f} CPU-s per M samples)"))
                log(f"{proto}: {r}")
                stop_nodes([node])
        print("\n| one node | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    finally:
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
