#!/usr/bin/env python3
"""Real scrapes for the disk benchmark (issue 18, item 1): synthetic sets step exactly 10 s, which flatters a
timestamp codec; real scrapes jitter by milliseconds, and every series of one scrape carries the same
timestamp. This captures real exporters on loopback, replays the capture as many targets in InfluxDB line
protocol, and checks a node's answers against what was written.

    python3 bench/capture.py capture --out FILE [--interval 2] [--minutes 20]
    python3 bench/capture.py replay --capture FILE --targets N --out LP_FILE [--end-ms T]
    python3 bench/capture.py verify --capture FILE --lp LP_FILE --url http://127.0.0.1:8086 [--db bench]
                                    [--measurements 24]

capture  starts Debian's prometheus-node-exporter, a Prometheus (minimal config, own data dir in a temp
         folder, scraping itself and the other two so its own metrics move) and a small Python app
         (prometheus_client: counters, gauges, histograms, summaries with quantiles, fed random but realistic
         request and job traffic by a thread), each on a free loopback port. Every --interval seconds, at a
         fixed phase per target (as Prometheus spreads its targets), it scrapes each target's /metrics,
         stamps the scrape with the wall-clock time it started (ms: real jitter), parses the text format
         (prometheus_client.parser: histograms and summaries give their _bucket, _sum, _count and quantile
         series; timestamps in the exposition are ignored) and appends it to FILE, gzip JSON lines: a header
         {"interval_ms", "started_ms", "targets": {name: version}} then one line per scrape
         {"target", "ts_ms", "samples": [[name, {labels}, value], ...]}. Non-finite values are kept in the
         capture as the strings "NaN", "+Inf", "-Inf" (plain JSON has no spelling for them) and counted.
         The timestamps are what the clock said (Prometheus itself would snap those within 2 ms of their tick
         onto it: --scrape.timestamp-tolerance). Progress goes to stderr, the capture's figures (series per
         scrape, non-finite values, |interval - nominal|) to stdout at the end. Ctrl-C ends it early and keeps
         what was captured. Needs prometheus_client (apt-get install python3-prometheus-client, or pip).
replay   writes the capture as N targets: LP_FILE (line protocol, ms timestamps: load it with
         `precision=ms`) and LP_FILE's .json (counts, for ../shared/peers/load.py). replay() below tells the
         layout, schedule() the rotation and time shift.
verify   reads a sample of the replayed series (of targets 0, N/2 and N-1) back through /query (InfluxQL,
         epoch=ms; Pharos or InfluxDB) and checks every timestamp and value bit for bit against LP_FILE, and
         LP_FILE against the capture; exits non-zero naming the first mismatch.
"""
import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import math
import os
import queue
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMETHEUS = "/usr/bin/prometheus"
NON_FINITE = {"NaN", "+Inf", "-Inf"}


def need_prometheus_client():
    if importlib.util.find_spec("prometheus_client") is None:
        sys.exit(f"the Python package prometheus_client is missing for {sys.executable}: "
                 "apt-get install python3-prometheus-client (Debian's /usr/bin/python3) or "
                 f"{sys.executable} -m pip install prometheus-client")


# ---------------------------------------------------------------------------------------------------------------
# The app: a web service with a job queue, as its client library would expose it.

def run_app(port):
    """Serves prometheus_client's default registry (process, platform and GC collectors included) on `port`
    and feeds it traffic until killed: Poisson request arrivals whose rate swings over 10 minutes, lognormal
    latencies and sizes per route, rare slow outliers and errors; background jobs on two queues whose
    durations go into a summary with sliding-window quantiles, as Go's client computes them."""
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary, start_http_server
    from prometheus_client.metrics_core import Metric

    requests = Counter("app_http_requests_total", "HTTP requests served.", ["method", "route", "status"])
    latency = Histogram("app_http_request_duration_seconds", "HTTP request latency.", ["method", "route"])
    size = Histogram("app_http_response_size_bytes", "HTTP response body size.", ["route"],
                     buckets=[100, 1000, 10_000, 100_000, 1_000_000, float("inf")])
    sent = Counter("app_http_response_bytes_total", "Response bytes sent.")
    inflight = Gauge("app_http_requests_in_flight", "Requests being served.")
    cache = Summary("app_cache_lookup_seconds", "Cache lookup time.")
    cache_hits = Counter("app_cache_lookups_total", "Cache lookups.", ["result"])
    depth = Gauge("app_job_queue_depth", "Jobs waiting.", ["queue"])
    jobs = Counter("app_jobs_processed_total", "Jobs done.", ["queue", "outcome"])
    window = {"email": [], "report": []}  # (time, duration) of the last minute's jobs, per queue
    totals = {q: [0, 0.0] for q in window}  # count and sum since start, per queue
    lock = threading.Lock()

    class JobDurations:
        """A summary with quantiles over the last minute (the Python client's Summary has none)."""

        def collect(self):
            m = Metric("app_job_duration_seconds", "Job run time, quantiles over the last minute.", "summary")
            now = time.time()
            with lock:
                for q, obs in window.items():
                    obs[:] = [o for o in obs if o[0] > now - 60]
                    d = sorted(o[1] for o in obs)
                    for quant in (0.5, 0.9, 0.99):
                        v = d[min(len(d) - 1, int(quant * len(d)))] if d else float("nan")
                        m.add_sample("app_job_duration_seconds", {"queue": q, "quantile": str(quant)}, v)
                    m.add_sample("app_job_duration_seconds_sum", {"queue": q}, totals[q][1])
                    m.add_sample("app_job_duration_seconds_count", {"queue": q}, totals[q][0])
            yield m

    REGISTRY.register(JobDurations())
    start_http_server(port, addr="127.0.0.1")

    routes = [  # method, route, weight, median latency (s), median response bytes
        ("GET", "/api/items", 50, 0.030, 12_000), ("GET", "/api/items/{id}", 30, 0.012, 2_000),
        ("POST", "/api/orders", 10, 0.120, 600), ("POST", "/login", 5, 0.200, 300), ("GET", "/healthz", 5, 0.001, 20)]
    weights = [r[2] for r in routes]
    rnd = random.Random()
    t0, step = time.time(), 0.1
    next_arrival, next_job, queued = t0, t0, {"email": 20, "report": 3}
    while True:
        tick_end = time.time() + step
        rate = 40 * (1 + 0.5 * math.sin(2 * math.pi * (tick_end - t0) / 600)) * rnd.uniform(0.8, 1.2)
        while next_arrival < tick_end:  # Poisson arrivals
            method, route, _, med, body = rnd.choices(routes, weights)[0]
            d = rnd.lognormvariate(math.log(med), 0.6) * (10 if rnd.random() < 0.01 else 1)
            status = "200"
            if rnd.random() < 0.003 + (0.05 if d > 1 else 0):
                status = "500"
            elif route == "/api/items/{id}" and rnd.random() < 0.02:
                status = "404"
            elif route == "/login" and rnd.random() < 0.05:
                status = "401"
            n = int(rnd.lognormvariate(math.log(body), 0.8)) if status == "200" else 150
            requests.labels(method, route, status).inc()
            latency.labels(method, route).observe(d)
            size.labels(route).observe(n)
            sent.inc(n)
            with cache.time():
                cache_hits.labels("hit" if rnd.random() < 0.85 else "miss").inc()
            next_arrival += rnd.expovariate(rate)
        inflight.set(max(0, round(rate * 0.05 + rnd.gauss(0, 1))))  # Little's law, with noise
        while next_job < tick_end:
            q = rnd.choice(["email", "email", "email", "report"])
            queued[q] = max(0, queued[q] + rnd.choice([-2, -1, -1, 0, 1, 1, 2]))
            d = rnd.lognormvariate(math.log(0.3 if q == "email" else 4.0), 0.5)
            with lock:
                window[q].append((time.time(), d))
                totals[q][0] += 1
                totals[q][1] += d
            jobs.labels(q, "ok" if rnd.random() < 0.98 else "failed").inc()
            next_job += rnd.expovariate(2.0)
        for q, n in queued.items():
            depth.labels(q).set(n)
        time.sleep(max(0.0, tick_end - time.time()))


# ---------------------------------------------------------------------------------------------------------------
# capture

def version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def start_targets(work, interval):
    """Starts the three exporters on free loopback ports in `work`; returns ({target: /metrics URL}, processes,
    {target: version})."""
    port = {t: benchlib.free_port() for t in ("node", "prometheus", "app")}
    addr = {t: f"127.0.0.1:{p}" for t, p in port.items()}
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"global:\n  scrape_interval: {int(interval * 1000)}ms\nscrape_configs:\n")
        for t in ("prometheus", "node", "app"):
            f.write(f"  - job_name: {t}\n    static_configs:\n      - targets: ['{addr[t]}']\n")
    cmds = {
        "node": [NODE_EXPORTER, f"--web.listen-address={addr['node']}"],
        "prometheus": [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(work, 'prom-data')}",
                       f"--web.listen-address={addr['prometheus']}"],
        "app": [sys.executable, os.path.abspath(__file__), "app", "--port", str(port["app"])],
    }
    procs = []
    for t, cmd in cmds.items():
        procs.append(subprocess.Popen(cmd, stdout=open(os.path.join(work, f"{t}.log"), "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
    urls = {t: f"http://{a}/metrics" for t, a in addr.items()}
    for t, u in urls.items():
        for _ in range(150):
            try:
                benchlib.http_get(u)
                break
            except Exception:
                time.sleep(0.2)
        else:
            benchlib.stop_nodes(procs)
            sys.exit(f"{t} did not answer on {u}; see {os.path.join(work, t + '.log')}")
    versions = {"node": version(NODE_EXPORTER), "prometheus": version(PROMETHEUS),
                "app": "prometheus_client " + importlib.metadata.version("prometheus_client")}
    return urls, procs, versions


def encode(v):
    """A sample value for the capture's JSON: the float itself (repr round-trips), or NaN/+Inf/-Inf named."""
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def scrape_loop(target, url, interval, first_tick, deadline, stop, out):
    """Scrapes `url` at first_tick + i * interval until `deadline`, putting (target, ts_ms, samples) or
    (target, ts_ms, exception) on `out`. A scrape that overruns its interval skips the ticks it missed, as
    Prometheus does."""
    from prometheus_client.parser import text_string_to_metric_families
    tick = first_tick
    while tick < deadline and not stop.wait(max(0.0, tick - time.time())):
        ts_ms = time.time_ns() // 1_000_000  # when the scrape started: the jitter being captured
        try:
            with urllib.request.urlopen(url, timeout=interval) as r:
                text = r.read().decode()
            samples = [[s.name, s.labels, encode(s.value)]
                       for fam in text_string_to_metric_families(text) for s in fam.samples]
            out.put((target, ts_ms, samples))
        except Exception as e:  # a failed scrape is reported and left out, as Prometheus stores no samples
            out.put((target, ts_ms, e))
        tick += interval * (math.floor((time.time() - tick) / interval) + 1)


def capture(a):
    need_prometheus_client()
    for b in (NODE_EXPORTER, PROMETHEUS):
        if not os.path.exists(b):
            sys.exit(f"{b} is missing: apt-get install prometheus-node-exporter prometheus")
    work = tempfile.mkdtemp(prefix="pharos-capture.")
    urls, procs, versions = start_targets(work, a.interval)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # end early, keeping what was captured
        signal.signal(sig, lambda *_: stop.set())
    q = queue.Queue()
    start = time.time()
    deadline = start + a.minutes * 60
    threads = [threading.Thread(target=scrape_loop, daemon=True,
                                args=(t, u, a.interval, start + 1 + i * a.interval / len(urls), deadline, stop, q))
               for i, (t, u) in enumerate(urls.items())]
    scrapes, failed, samples, non_finite, series = 0, 0, 0, 0, set()
    try:
        with gzip.open(a.out, "wt") as f:
            f.write(json.dumps({"interval_ms": round(a.interval * 1000), "started_ms": int(start * 1000),
                                "targets": versions}) + "\n")
            for th in threads:
                th.start()
            last, alive = 0.0, True
            while alive:
                try:
                    target, ts_ms, res = q.get(timeout=0.5)
                except queue.Empty:
                    res = None
                if isinstance(res, Exception):
                    failed += 1
                    benchlib.log(f"{target}: scrape failed: {res}")
                elif res is not None:
                    f.write(json.dumps({"target": target, "ts_ms": ts_ms, "samples": res}) + "\n")
                    scrapes += 1
                    samples += len(res)
                    non_finite += sum(1 for s in res if s[2] in NON_FINITE)
                    series.update((target, s[0], tuple(sorted(s[1].items()))) for s in res)
                alive = any(th.is_alive() for th in threads) or not q.empty()
                if time.time() - last >= 1 or not alive:
                    last = time.time()
                    sys.stderr.write(f"\r{scrapes} scrapes ({failed} failed), {len(series):,} series, "
                                     f"{samples:,} samples ({non_finite} non-finite), "
                                     f"{last - start:.0f}/{a.minutes * 60:.0f} s   ")
                    sys.stderr.flush()
    finally:
        stop.set()
        benchlib.stop_nodes(procs)
        subprocess.run(["rm", "-rf", work])
    sys.stderr.write("\n")
    print_stats(read_capture(a.out))


# ---------------------------------------------------------------------------------------------------------------
# Reading a capture, and its figures

def read_capture(path):
    """(header, {target: [(ts_ms, samples), ...] in time order}); a capture cut off mid-write (killed) is
    read up to its last whole line."""
    header, scrapes = None, {}
    with gzip.open(path, "rt") as f:
        try:
            for line in f:
                if not line.endswith("\n"):
                    break
                rec = json.loads(line)
                if header is None:
                    header = rec
                else:
                    scrapes.setdefault(rec["target"], []).append((rec["ts_ms"], rec["samples"]))
        except EOFError:
            benchlib.log(f"{path} ends mid-stream (the capture was killed); using the scrapes before that")
    if not scrapes:
        sys.exit(f"{path} holds no scrapes")
    for seq in scrapes.values():
        seq.sort(key=lambda s: s[0])
    return header, scrapes


def percentile(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, int(p * len(sorted_vals)))]


def deviation_summary(devs, nominal):
    """Mean, p50, p99 and max of sorted |interval - nominal| values, in words."""
    if not devs:
        return "no intervals (one scrape per target)"
    return (f"|interval - {nominal} ms|: mean {sum(devs) / len(devs):.2f} ms, p50 {percentile(devs, 0.5)} ms, "
            f"p99 {percentile(devs, 0.99)} ms, max {devs[-1]} ms")


def print_stats(capture_data):
    """The capture's figures: per target scrapes, series per scrape, non-finite values, and how far the
    intervals between a target's scrapes stray from the nominal interval."""
    header, scrapes = capture_data
    nominal = header["interval_ms"]
    devs, total, total_nf = [], 0, 0
    print(f"capture: interval {nominal} ms; {', '.join(f'{t}: {v}' for t, v in header['targets'].items())}")
    for t, seq in sorted(scrapes.items()):
        n = [len(s) for _, s in seq]
        nf = sum(1 for _, s in seq for x in s if x[2] in NON_FINITE)
        series = {(x[0], tuple(sorted(x[1].items()))) for _, s in seq for x in s}
        devs += [abs(seq[i + 1][0] - seq[i][0] - nominal) for i in range(len(seq) - 1)]
        total += sum(n)
        total_nf += nf
        print(f"  {t}: {len(seq)} scrapes over {(seq[-1][0] - seq[0][0]) / 1000:.0f} s, series per scrape "
              f"{min(n)}-{max(n)} (mean {sum(n) / len(n):.0f}), {len(series)} series in all, {sum(n):,} samples, "
              f"{nf} non-finite")
    devs.sort()
    print(f"  all: {len(scrapes)} targets, {total:,} samples, {total_nf} non-finite (left out of replays); "
          f"{deviation_summary(devs, nominal)}")


# ---------------------------------------------------------------------------------------------------------------
# replay

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
UNESCAPE = re.compile(r"\\([,= ])")


def escape(s, specials):
    for c in specials:
        s = s.replace(c, "\\" + c)
    return s


def series_tags(job, labels):
    """A captured series' tags in line protocol, instance left out: its labels (empty ones dropped: Prometheus
    reads an empty label as absent, and line protocol cannot carry one) plus job=<captured target>; a label
    called job or instance becomes exported_job or exported_instance, as Prometheus renames them. Sorted by key;
    None when a value cannot be written (a control character or a final backslash)."""
    tags = {("exported_" + k if k in ("job", "instance") else k): v for k, v in labels.items() if v}
    tags["job"] = job
    if any(CONTROL.search(v) or v.endswith("\\") for v in tags.values()):
        return None
    return sorted(tags.items())


def render_series(name, tags):
    """One series' line up to its value, split where the target number goes: (text before, text after)."""
    def tag(k, v):
        return f"{escape(k, ',= ')}={escape(v, ',= ')}"
    before = [escape(name, ", ")] + [tag(k, v) for k, v in tags if k < "instance"]
    after = "".join("," + tag(k, v) for k, v in tags if k > "instance")
    return ",".join(before) + ",instance=target_", after + " value="


def schedule(scrapes, interval_ms, n, end_ms):
    """When each replayed scrape happens: [(ts_ms, k, target, index into scrapes[target])] in time order.

    Replayed target k plays each captured target's scrapes from index k * S / n on, then wraps around to the
    first ones, which are moved one period P = (last - first + interval) later, so the one seam interval is the
    nominal one and every other interval is a real one. The whole rotated sequence is then shifted by one
    constant so that it starts at end_ms - P + phase, where the phase (below one interval) spreads the n times
    the captured targets over the interval as Prometheus spreads its targets; it ends one interval minus its
    phase before end_ms. Should jitter push a last scrape past end_ms, everything moves back by that much."""
    events = []
    jobs = sorted(scrapes)
    for j, job in enumerate(jobs):
        ts = [t for t, _ in scrapes[job]]
        period = ts[-1] - ts[0] + interval_ms
        for k in range(n):
            off = k * len(ts) // n
            phase = (k * len(jobs) + j) * interval_ms // (n * len(jobs))
            shift = end_ms - period + phase - ts[off]
            events += [(t + shift + (period if i < off else 0), k, job, i) for i, t in enumerate(ts)]
    late = max(e[0] for e in events) - end_ms
    if late > 0:
        events = [(t - late, k, job, i) for t, k, job, i in events]
    events.sort()
    return events


def lp_meta_path(lp):
    return os.path.splitext(lp)[0] + ".json"


def replay(a):
    """Writes the capture as `a.targets` targets of line protocol, in time order.

    Layout: one line per sample, `<metric name>,<labels>,instance=target_k,job=<captured target> value=<v> <ms>`
    (measurement = the sample's name, e.g. http_request_duration_seconds_bucket; one float field `value`). So,
    as in gen.py's `node` set, every sample is one value of one series (measurement + tags + field), and every
    line holds exactly one sample, which is what load.py's samples-per-line count needs (the alternative, one
    measurement with a field per metric, would put a varying number of unrelated metrics that happen to share
    labels on one line). It is also how InfluxDB's own Prometheus endpoints store Prometheus data. All values
    stay floats, as Prometheus's are; they are written with Python's repr, which reads back to the same bits.
    Non-finite values are left out (line protocol has no NaN) and counted."""
    header, scrapes = read_capture(a.capture)
    end_ms = a.end_ms or time.time_ns() // 1_000_000 // 60_000 * 60_000
    nominal = header["interval_ms"]
    # Each captured scrape as its lines, rendered once: (text before the target number, after it, value).
    rendered, keys, dropped = {}, {}, {"non_finite": 0, "unwritable": 0}
    for job, seq in scrapes.items():
        for i, (_, samples) in enumerate(seq):
            lines = []
            for name, labels, v in samples:
                if v in NON_FINITE:
                    dropped["non_finite"] += 1
                    continue
                key = (job, name, tuple(sorted(labels.items())))
                if key not in keys:
                    tags = series_tags(job, labels)
                    keys[key] = tags and render_series(name, tags)
                if keys[key] is None:
                    dropped["unwritable"] += 1
                    continue
                lines.append((*keys[key], repr(float(v))))
            rendered[(job, i)] = lines
    events = schedule(scrapes, nominal, a.targets, end_ms)
    samples, series = 0, set()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", buffering=1 << 22) as f:
        for ts, k, job, i in events:
            lines = rendered[(job, i)]
            f.write("".join(f"{pre}{k}{post}{v} {ts}\n" for pre, post, v in lines))
            samples += len(lines)
            series.update((k, pre, post) for pre, post, _ in lines)
    devs = interval_deviations(events, nominal)
    meta = {"set": "real", "capture": os.path.abspath(a.capture), "targets": a.targets, "end_ms": end_ms,
            "start": events[0][0], "end": events[-1][0], "precision": "ms", "lines": samples, "samples": samples,
            "series": len(series), "dropped_per_target": dropped, "bytes": os.path.getsize(a.out)}
    with open(lp_meta_path(a.out), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{a.out}: {samples:,} samples, {len(series):,} series, {a.targets} targets x {len(scrapes)} captured "
          f"targets, {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(meta['start'] / 1000))} to "
          f"{time.strftime('%H:%M:%S', time.gmtime(meta['end'] / 1000))} UTC; left out of each target: "
          f"{dropped['non_finite']} non-finite, {dropped['unwritable']} unwritable; {deviation_summary(devs, nominal)}")


def interval_deviations(events, nominal):
    """|interval - nominal| between consecutive scrapes of each replayed target, sorted."""
    last, devs = {}, []
    for ts, k, job, _ in events:
        if (k, job) in last:
            devs.append(abs(ts - last[(k, job)] - nominal))
        last[(k, job)] = ts
    return sorted(devs)


# ---------------------------------------------------------------------------------------------------------------
# verify

def parse_lp_line(line):
    """(measurement, {tag: value}, value text, ts) of one line as replay writes them."""
    key, field, ts = re.split(r"(?<!\\) ", line.rstrip("\n"))
    meas, *tags = re.split(r"(?<!\\),", key)
    tags = dict(re.split(r"(?<!\\)=", t, maxsplit=1) for t in tags)
    return (UNESCAPE.sub(r"\1", meas), {UNESCAPE.sub(r"\1", k): UNESCAPE.sub(r"\1", v) for k, v in tags.items()},
            field.split("=", 1)[1], int(ts))


def bits(v):
    """A value's IEEE 754 bits, so that -0.0 differs from 0.0 (a null from /query has none)."""
    return None if v is None else struct.pack("<d", float(v))


def pick_measurements(scrapes, count, rnd):
    """A spread of measurement names: histogram buckets, summary quantiles, _sum/_count, plain series, and the
    ones whose label values need escaping in line protocol."""
    kinds = {"bucket": set(), "quantile": set(), "sum_count": set(), "plain": set(), "escaped": set()}
    for seq in scrapes.values():
        for name, labels, _ in (x for _, samples in seq for x in samples):
            kind = ("bucket" if name.endswith("_bucket") else "quantile" if "quantile" in labels else
                    "sum_count" if name.endswith(("_sum", "_count")) else "plain")
            kinds[kind].add(name)
            if any(c in v for v in labels.values() for c in ",= "):
                kinds["escaped"].add(name)
    picked = set()
    for names in kinds.values():
        picked.update(rnd.sample(sorted(names), min(len(names), max(1, count // len(kinds)))))
    return sorted(picked)


def query_series(url, db, meas, instance):
    """{sorted tag tuple: [(ts, value), ...]} of one measurement and instance, from /query."""
    q = f"SELECT * FROM \"{meas}\" WHERE instance = '{instance}' GROUP BY *"
    body = json.loads(benchlib.http_get(f"{url}/query?" + urllib.parse.urlencode({"db": db, "epoch": "ms", "q": q})))
    res = body["results"][0]
    if "error" in res:
        sys.exit(f"{q}: {res['error']}")
    out = {}
    for s in res.get("series", []):
        col = s["columns"].index("value")
        # InfluxDB names every tag key of the measurement, "" where a series has none.
        tags = tuple(sorted((k, v) for k, v in s.get("tags", {}).items() if v))
        out[tags] = [(row[0], row[col]) for row in s["values"]]
    return out


def verify(a):
    header, scrapes = read_capture(a.capture)
    meta = json.load(open(lp_meta_path(a.lp)))
    n = meta["targets"]
    rnd = random.Random(a.seed)
    measurements = set(pick_measurements(scrapes, a.measurements, rnd))
    instances = {f"target_{k}" for k in sorted({0, n // 2, n - 1})}
    # What was written: {(measurement, instance): {tags: [(ts, value text)]}}, in file (= time) order.
    written = {}
    with open(a.lp) as f:
        for line in f:
            if line.split(",", 1)[0] not in measurements:
                continue
            meas, tags, v, ts = parse_lp_line(line)
            if tags["instance"] in instances:
                written.setdefault((meas, tags["instance"]), {}).setdefault(
                    tuple(sorted(tags.items())), []).append((ts, v))
    # 1. The line protocol against the capture, through the replay's schedule.
    events = schedule(scrapes, header["interval_ms"], n, meta["end_ms"])
    expected = {}
    for ts, k, job, i in events:
        if f"target_{k}" not in instances:
            continue
        for name, labels, v in scrapes[job][i][1]:
            tags = series_tags(job, labels) if name in measurements and v not in NON_FINITE else None
            if tags is not None:
                tags = tuple(sorted(tags + [("instance", f"target_{k}")]))
                expected.setdefault((name, f"target_{k}"), {}).setdefault(tags, []).append((ts, repr(float(v))))
    compare("capture", expected, "line protocol", written)
    # 2. The node's answers against the line protocol, bit for bit.
    got = {(m, inst): query_series(a.url, a.db, m, inst) for m, inst in written}
    compare("line protocol", written, a.url, got)
    points = sum(len(p) for s in written.values() for p in s.values())
    print(f"verified {sum(len(s) for s in written.values())} series ({len(measurements)} measurements x "
          f"{len(instances)} targets), {points:,} points: the line protocol matches the capture, and {a.url} "
          f"answers every timestamp and value bit for bit")


def compare(ref_name, ref, other_name, other):
    """Exits naming the first difference between two {(measurement, instance): {tags: [(ts, value)]}}."""
    for meas, inst in sorted(set(ref) | set(other)):
        series, theirs = ref.get((meas, inst), {}), other.get((meas, inst), {})
        for tags in sorted(set(series) | set(theirs)):
            a, b = series.get(tags), theirs.get(tags)
            where = f"{meas} {dict(tags)}"
            if a is None or b is None:
                sys.exit(f"MISMATCH {where}: only in {ref_name if b is None else other_name}")
            for i, ((ta, va), (tb, vb)) in enumerate(zip(a, b)):
                if ta != tb or bits(va) != bits(vb):
                    sys.exit(f"MISMATCH {where} point {i}: {ref_name} has ({ta}, {va}), {other_name} has ({tb}, {vb})")
            if len(a) != len(b):
                sys.exit(f"MISMATCH {where}: {ref_name} has {len(a)} points, {other_name} {len(b)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="scrape real exporters into FILE")
    c.add_argument("--out", required=True)
    c.add_argument("--interval", type=float, default=2, help="seconds between scrapes of a target")
    c.add_argument("--minutes", type=float, default=20)
    r = sub.add_parser("replay", help="write the capture as N targets of line protocol")
    r.add_argument("--capture", required=True)
    r.add_argument("--targets", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--end-ms", type=int, default=0, help="end of the window (default: the last full minute)")
    v = sub.add_parser("verify", help="check a node's answers against the line protocol written")
    v.add_argument("--capture", required=True)
    v.add_argument("--lp", required=True)
    v.add_argument("--url", required=True, help="the node's HTTP base URL")
    v.add_argument("--db", default="bench")
    v.add_argument("--measurements", type=int, default=24, help="about how many measurements to check")
    v.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("app", help="the Python exporter app (capture starts it)")
    p.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    if a.cmd == "capture":
        capture(a)
    elif a.cmd == "replay":
        replay(a)
    elif a.cmd == "verify":
        verify(a)
    elif a.cmd == "app":
        run_app(a.port)


if __name__ == "__main__":
    main()
