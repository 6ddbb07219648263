#!/usr/bin/env python3
"""What authentication and TLS cost on ingest, side by side in one run: the same load into release nodes
started three ways, alternating, each round on fresh data directories:

- `off`: auth off, plain HTTP and gRPC (the default);
- `auth`: `--auth` (the loader presents a write token made with `pharosctl token create`; nodes present
  the cluster secret to each other);
- `auth+tls`: auth, and TLS on both listeners and between the nodes (certificates from
  scripts/make-certs.sh).

The load is `pharos-bench write` (the cpu set: 10 fields a line, batches of 5,000 lines over 4 connections,
in time order). Reports, per setup, the median samples/s over the rounds, and the nodes' CPU seconds per
million samples, with the ratio to `off`.

    cargo build --release -p pharos-node -p pharos-bench
    python3 bench/auth-overhead.py [--nodes 1] [--hosts 1000] [--steps 360] [--rounds 3]

Progress goes to stderr; a markdown table to stdout.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ADMIN = "bench-admin-token"


def run(setup, args, binaries, certs):
    pharos, ctl, bench = binaries
    work = tempfile.mkdtemp(prefix=f"pharos-auth-{setup.replace('+', '-')}-")
    extra, scheme, env, ctl_tls = [], "http", {}, []
    if setup != "off":
        extra += ["--auth"]
        env["PHAROS_ADMIN_TOKEN"] = ADMIN
    if setup == "auth+tls":
        extra += ["--tls-cert", f"{certs}/node.crt", "--tls-key", f"{certs}/node.key", "--tls-ca", f"{certs}/ca.crt"]
        scheme, ctl_tls = "https", ["--tls-ca", f"{certs}/ca.crt"]
    benchlib.set_ca(f"{certs}/ca.crt" if scheme == "https" else None)
    procs, urls, grpcs = benchlib.start_nodes(pharos, work, args.nodes, extra=extra, scheme=scheme, env=env)
    try:
        load = [bench, "write", "--url", urls[0], "--set", "cpu", "--hosts", str(args.hosts), "--steps",
                str(args.steps), "--oldest-first"]
        if setup != "off":
            out = subprocess.check_output([ctl, "--addr", grpcs[0], "--token", ADMIN, *ctl_tls, "token", "create",
                                           "--name", "loader", "--role", "write"], text=True)
            load += ["--token", out.strip().splitlines()[-1]]
        if scheme == "https":
            load += ["--ca", f"{certs}/ca.crt"]
        cpu0 = benchlib.cpu_seconds([p.pid for p in procs])
        summary = json.loads(subprocess.check_output(load).decode().strip().splitlines()[-1])
        cpu = benchlib.cpu_seconds([p.pid for p in procs]) - cpu0
        if summary["errors"]:
            sys.exit(f"{setup}: {summary['errors']} batches failed")
        return summary["samples_per_s"], cpu / (summary["samples"] / 1e6)
    finally:
        benchlib.stop_nodes(procs)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1, help="nodes per cluster (3: writes forwarded between them)")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=360)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binaries = benchlib.release_binaries(["pharos", "pharosctl", "pharos-bench"])
    certs = tempfile.mkdtemp(prefix="pharos-auth-certs-")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.check_call([os.path.join(root, "scripts", "make-certs.sh"), certs])
    setups = ["off", "auth", "auth+tls"]
    results = {s: [] for s in setups}
    for r in range(args.rounds):
        for s in setups:
            benchlib.log(f"round {r + 1}/{args.rounds}: {s}")
            rate, cpu = run(s, args, binaries, certs)
            benchlib.log(f"  {rate:.0f} samples/s, {cpu:.2f} CPU s per million samples")
            results[s].append((rate, cpu))
    shutil.rmtree(certs, ignore_errors=True)
    base_rate = statistics.median(r for r, _ in results["off"])
    base_cpu = statistics.median(c for _, c in results["off"])
    samples = args.hosts * args.steps * 10
    print(f"{args.nodes} node(s), {samples:,} samples per run, median of {args.rounds} rounds\n")
    print("| setup | samples/s | vs off | CPU s per M samples | vs off |")
    print("|---|---|---|---|---|")
    for s in setups:
        rate = statistics.median(r for r, _ in results[s])
        cpu = statistics.median(c for _, c in results[s])
        print(f"| {s} | {rate:,.0f} | {rate / base_rate:.2f} | {cpu:.2f} | {cpu / base_cpu:.2f} |")


if __name__ == "__main__":
    main()
