"""Helpers shared by the Python benchmark scripts in bench/: progress lines, free ports, HTTP calls, CPU of
processes, and starting and stopping `pharos` nodes (release build) in a work directory."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

# The CA to trust for https:// URLs (set_ca), for nodes with TLS on.
_context = None


def set_ca(path):
    global _context
    _context = ssl.create_default_context(cafile=path) if path else None


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=30, context=_context) as r:
        return r.read().decode()


def http_post(url, body, ctype="text/plain", token=None):
    headers = {"Content-Type": ctype, **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=60, context=_context) as r:
        return r.status


def cpu_seconds(pids):
    """User + system CPU seconds used so far by these processes."""
    t = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            t += (int(parts[11]) + int(parts[12])) / tick
        except OSError:
            pass
    return t


def release_binaries(names):
    """Paths of release binaries in the cargo target directory, or exit telling what to build."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rel = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release")
    paths = [os.path.join(rel, n) for n in names]
    for p in paths:
        if not os.path.exists(p):
            sys.exit(f"build first: cargo build --release -p pharos-node -p pharos-bench (looked for {p})")
    return paths


def node_log():
    """The nodes' log filter: warnings, unless PHAROS_BENCH_LOG says otherwise (e.g. `info`)."""
    return os.environ.get("PHAROS_BENCH_LOG", "warn")


def start_nodes(binary, work, n, name="n", extra=(), scheme="http", env=None):
    """Starts `n` pharos nodes (one cluster; a single node without --initial-cluster) in `work`, each with the
    `extra` arguments (and environment `env` added), waits for /health, and returns (processes, HTTP base
    URLs, gRPC addresses). `scheme` is https for nodes with TLS on (see set_ca)."""
    hp = [free_port() for _ in range(n)]
    gp = [free_port() for _ in range(n)]
    ic = ",".join(f"{i + 1}=127.0.0.1:{gp[i]}" for i in range(n))
    procs = []
    for i in range(n):
        d = os.path.join(work, f"{name}{i + 1}")
        os.makedirs(d)
        args = [binary, "server", "--node-id", str(i + 1), "--data-dir", d, "--http-addr", f"127.0.0.1:{hp[i]}",
                "--grpc-addr", f"127.0.0.1:{gp[i]}", "--log", node_log(), *extra]
        if n > 1:
            args += ["--initial-cluster", ic]
        procs.append(subprocess.Popen(args, stdout=open(d + ".log", "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True, env={**os.environ, **(env or {})}))
    urls = [f"{scheme}://127.0.0.1:{p}" for p in hp]
    for u in urls:
        for _ in range(300):
            try:
                http_get(u + "/health")
                break
            except Exception:
                time.sleep(0.2)
    return procs, urls, [f"127.0.0.1:{p}" for p in gp]


def stop_nodes(procs):
    """SIGTERM, then SIGKILL whatever has not exited within 20 s (any processes started in their own session)."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass


def remove_work(work):
    """Deletes a run's work directory, unless PHAROS_BENCH_KEEP is set (then says where it is)."""
    if os.environ.get("PHAROS_BENCH_KEEP"):
        log(f"kept {work} (PHAROS_BENCH_KEEP)")
    else:
        shutil.rmtree(work, ignore_errors=True)
