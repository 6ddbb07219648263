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
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def metric(url, name):
    for line in get(url + "/metrics").splitlines():
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


def start_node(binary, work, name):
    hp, gp = free_port(), free_port()
    d = os.path.join(work, name)
    os.makedirs(d)
    p = subprocess.Popen([binary, "server", "--data-dir", d, "--http-addr", f"127.0.0.1:{hp}", "--grpc-addr",
                          f"127.0.0.1:{gp}", "--log", "warn"], stdout=open(d + ".log", "w"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    url = f"http://127.0.0.1:{hp}"
    for _ in range(300):
        try:
            get(url + "/health")
            break
        except Exception:
            time.sleep(0.2)
    return p, url, f"127.0.0.1:{gp}"


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    except Exception:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--skip-push", action="store_true")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    rel = os.path.join(target_dir, "release")
    binary, ctl, bench = (os.path.join(rel, n) for n in ("pharos", "pharosctl", "pharos-bench"))
    for b in (binary, ctl) + (() if a.skip_push else (bench,)):
        if not os.path.exists(b):
            sys.exit(f"build first: cargo build --release -p pharos-node -p pharos-bench (looked for {b})")
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

        node, url, grpc = start_node(binary, work, "scrape")
        targets = ", ".join(f"{{targets: ['127.0.0.1:{port}'], labels: {{id: 't{i}'}}}}" for i in range(a.targets))
        cfg = os.path.join(work, "scrape.yml")
        with open(cfg, "w") as f:
            f.write(f"global:\n  scrape_interval: {a.interval}s\n  scrape_timeout: {a.interval}s\nscrape_configs:\n"
                    f"  - job_name: bench\n    relabel_configs:\n      - source_labels: [id]\n        target_label: __param_id\n"
                    f"    static_configs: [{targets}]\n")
        subprocess.run([ctl, "--addr", grpc, "scrape", "apply", cfg], check=True, stdout=subprocess.DEVNULL)
        log(f"{a.targets} targets x {samples_per_body} samples every {a.interval}s applied; warming up {2 * a.interval + 5}s")
        time.sleep(2 * a.interval + 5)
        s0, c0, t0 = metric(url, "pharos_scraped_samples_total"), cpu_seconds(node.pid), time.time()
        for k in range(a.window // 10):
            time.sleep(10)
            log(f"  {(k + 1) * 10}/{a.window}s: {metric(url, 'pharos_scraped_samples_total') - s0:.0f} samples written")
        s1, c1, t1 = metric(url, "pharos_scraped_samples_total"), cpu_seconds(node.pid), time.time()
        tg = json.loads(get(url + "/api/v1/targets"))["data"]["activeTargets"]
        up = sum(1 for t in tg if t["health"] == "up")
        durs = sorted(t["lastScrapeDuration"] for t in tg if t["health"] == "up")
        el = t1 - t0
        expected = a.targets * (samples_per_body + 5) / a.interval
        rows.append(("scrape: samples written / s", f"{(s1 - s0) / el:,.0f} (expected {expected:,.0f})"))
        rows.append(("scrape: targets up", f"{up} / {len(tg)}"))
        if durs:
            rows.append(("scrape: duration p50 / p99", f"{durs[len(durs) // 2] * 1000:.1f} / {durs[int(len(durs) * 0.99)] * 1000:.1f} ms"))
        rows.append(("scrape: node CPU", f"{(c1 - c0) / el:.2f} cores = {(c1 - c0) / max(s1 - s0, 1) * 1e6:.2f} CPU-s per M samples"))
        stop(node)
        srv.shutdown()

        if not a.skip_push:
            for proto in ("lp", "remote-write"):
                node, url, _ = start_node(binary, work, proto)
                c0 = cpu_seconds(node.pid)
                out = subprocess.run([bench, "write", "--url", url, "--set", "cpu", "--hosts", "100", "--steps", "360",
                                      "--batch", "2000", "--protocol", proto], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                c1 = cpu_seconds(node.pid)
                rows.append((f"push {proto}: samples / s", f"{r['samples_per_s']:,.0f} ({r['errors']} errors, p99 {r['p99_ms']} ms, "
                             f"{(c1 - c0) / r['samples'] * 1e6:.2f} CPU-s per M samples)"))
                log(f"{proto}: {r}")
                stop(node)
        print("\n| one node | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    finally:
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
