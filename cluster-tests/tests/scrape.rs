//! Pull collection on real `pharos` processes: scraping Debian's prometheus-node-exporter and Python's
//! prometheus_client (Debian's package), file-based discovery watched for changes, an unreachable target
//! reported down, `pharosctl scrape|targets` and `/api/v1/targets`; on a 3-node cluster, every target
//! scraped by exactly one node, and a SIGKILLed node's targets taken over with no gap in `up` longer than
//! two scrape intervals.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cluster_tests::{free_port, wait_for, Cluster};
use serde_json::Value as Json;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Debian's node exporter on a free port.
async fn node_exporter() -> Result<(Proc, u16)> {
    let port = free_port();
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting prometheus-node-exporter (scripts/setup.sh installs it)")?;
    let p = Proc(child);
    wait_port(port).await?;
    Ok((p, port))
}

/// Python's prometheus_client (Debian's python3-prometheus-client) serving custom metrics on each port.
async fn app_exporter(ports: &[u16]) -> Result<Proc> {
    let script = r#"
import sys, time
from prometheus_client import start_http_server, Counter, Gauge, Histogram, Summary
c = Counter('app_requests', 'Requests served', ['path'])
g = Gauge('app_queue_depth', 'Items waiting')
h = Histogram('app_latency_seconds', 'Latency', buckets=[0.1, 0.5, 1.0])
s = Summary('app_batch_size', 'Batch sizes')
for p in sys.argv[1:]:
    start_http_server(int(p), addr='127.0.0.1')
while True:
    c.labels(path='/api').inc(); g.set(7); h.observe(0.3); s.observe(12)
    time.sleep(0.1)
"#;
    let child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(ports.iter().map(|p| p.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a prometheus_client exporter (scripts/setup.sh installs python3-prometheus-client)")?;
    let p = Proc(child);
    for port in ports {
        wait_port(*port).await?;
    }
    Ok(p)
}

fn ctl(c: &Cluster, node: usize, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(cluster_tests::pharos_bin().with_file_name("pharosctl"))
        .args(["--addr", &c.nodes[node].grpc])
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

async fn query(c: &Cluster, node: usize, q: &str) -> Result<Json> {
    let r = c.http.get(c.nodes[node].url("/query")).query(&[("q", q), ("epoch", "ms")]).send().await?;
    let body: Json = r.json().await?;
    Ok(body["results"][0].clone())
}

/// `/api/v1/targets` of a node: the active targets.
async fn targets(c: &Cluster, node: usize) -> Result<Vec<Json>> {
    let v: Json = c.http.get(c.nodes[node].url("/api/v1/targets")).send().await?.json().await?;
    Ok(v["data"]["activeTargets"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_scrapes_node_exporter_and_prometheus_client_with_file_discovery() -> Result<()> {
    let (_ne, ne_port) = node_exporter().await?;
    let app_port = free_port();
    let _app = app_exporter(&[app_port]).await?;
    let dead_port = free_port(); // nothing listens there
    let dir = tempfile::TempDir::new()?;
    let sd = dir.path().join("targets.json");
    std::fs::write(&sd, format!(r#"[{{"targets": ["127.0.0.1:{app_port}"], "labels": {{"team": "core"}}}}]"#))?;
    let cfg = dir.path().join("scrape.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:{ne_port}']
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
  - job_name: app
    file_sd_configs:
      - files: ['{sd}']
        refresh_interval: 1s
  - job_name: gone
    static_configs:
      - targets: ['127.0.0.1:{dead_port}']
"#,
            sd = sd.display()
        ),
    )?;
    let c = Cluster::start(1, "").await?;
    let cfg = cfg.to_str().unwrap();
    let (ok, out) = ctl(&c, 0, &["scrape", "check", cfg])?;
    assert!(ok && out.contains("3 jobs"), "{out}");
    let (ok, out) = ctl(&c, 0, &["scrape", "apply", cfg])?;
    assert!(ok && out.contains("applied as version 1"), "{out}");

    // up: 1 for the two live targets, 0 for the one nobody listens on.
    let ups = wait_for(Duration::from_secs(30), "up for every target", || async {
        let r = query(&c, 0, "SELECT last(value) FROM up WHERE time > now() - 10s GROUP BY job").await?;
        let series = r["series"].as_array().cloned().unwrap_or_default();
        let got: BTreeMap<String, f64> = series
            .iter()
            .filter_map(|s| Some((s["tags"]["job"].as_str()?.to_string(), s["values"][0][1].as_f64()?)))
            .collect();
        Ok((got.len() == 3).then_some(got))
    })
    .await?;
    assert_eq!(ups["node"], 1.0);
    assert_eq!(ups["app"], 1.0);
    assert_eq!(ups["gone"], 0.0, "an unreachable target is down (so 'instance down' alerts work)");

    // node exporter's metrics, less what metric relabeling dropped, with job and instance.
    let r = query(&c, 0, "SELECT count(value) FROM node_cpu_seconds_total GROUP BY job, instance, mode").await?;
    let series = r["series"].as_array().context("node_cpu_seconds_total series")?;
    assert!(series.iter().any(|s| s["tags"]["mode"] == "idle" && s["tags"]["job"] == "node"), "{r}");
    assert!(series.iter().all(|s| s["tags"]["instance"] == format!("127.0.0.1:{ne_port}")), "{r}");
    let r = query(&c, 0, "SHOW MEASUREMENTS").await?;
    let names: BTreeSet<String> = r["series"][0]["values"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x[0].as_str().map(String::from)).collect())
        .unwrap_or_default();
    assert!(!names.iter().any(|n| n.starts_with("go_")), "go_* dropped by metric_relabel_configs: {names:?}");
    for n in ["scrape_duration_seconds", "scrape_samples_scraped", "node_load1"] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }

    // prometheus_client: counter (_total), gauge, histogram buckets, summary; the file's labels.
    let r = query(&c, 0, "SELECT last(value) FROM app_requests_total GROUP BY path, team").await?;
    assert_eq!(r["series"][0]["tags"]["path"], "/api", "{r}");
    assert_eq!(r["series"][0]["tags"]["team"], "core", "{r}");
    let r = query(&c, 0, "SELECT last(value) FROM app_latency_seconds_bucket GROUP BY le").await?;
    let les: BTreeSet<String> = r["series"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s["tags"]["le"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    assert_eq!(les, ["+Inf", "0.1", "0.5", "1.0"].iter().map(|s| s.to_string()).collect(), "{r}");
    let r = query(&c, 0, "SELECT last(value) FROM app_batch_size_sum").await?;
    assert!(r["series"][0]["values"][0][1].as_f64().is_some_and(|v| v >= 12.0), "{r}");

    // The file changes: its new target is picked up (a second app on another port).
    let app2_port = free_port();
    let _app2 = app_exporter(&[app2_port]).await?;
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["127.0.0.1:{app_port}", "127.0.0.1:{app2_port}"], "labels": {{"team": "core"}}}}]"#),
    )?;
    wait_for(Duration::from_secs(30), "the target added to the file scraped", || async {
        let r = query(&c, 0, &format!("SELECT last(value) FROM up WHERE instance = '127.0.0.1:{app2_port}'")).await?;
        Ok((r["series"][0]["values"][0][1].as_f64() == Some(1.0)).then_some(()))
    })
    .await?;

    // Visible in /api/v1/targets and pharosctl targets, with the last error of the dead one.
    let list = targets(&c, 0).await?;
    assert_eq!(list.len(), 4, "{list:?}");
    let gone = list.iter().find(|t| t["scrapePool"] == "gone").context("the gone target")?;
    assert_eq!(gone["health"], "down");
    assert!(!gone["lastError"].as_str().unwrap_or("").is_empty(), "{gone}");
    assert!(list.iter().all(|t| t["owner"] == 1), "{list:?}");
    let (ok, out) = ctl(&c, 0, &["targets"])?;
    assert!(ok && out.contains("up") && out.contains("down") && out.contains(&format!("{ne_port}/metrics")), "{out}");
    Ok(())
}

/// The timestamps of `up` samples per instance in [from, to] (ms).
async fn up_times(c: &Cluster, node: usize, from: i64, to: i64) -> Result<BTreeMap<String, Vec<i64>>> {
    let r =
        query(c, node, &format!("SELECT value FROM up WHERE time >= {from}ms AND time <= {to}ms GROUP BY instance"))
            .await?;
    let mut out = BTreeMap::new();
    for s in r["series"].as_array().cloned().unwrap_or_default() {
        let inst = s["tags"]["instance"].as_str().unwrap_or("").to_string();
        let ts: Vec<i64> =
            s["values"].as_array().map(|v| v.iter().filter_map(|x| x[0].as_i64()).collect()).unwrap_or_default();
        out.insert(inst, ts);
    }
    Ok(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `n` prometheus_client targets scraped every 3 s by a new 3-node cluster: the exporter process, the
/// targets' ports, the cluster.
async fn three_nodes_scraping(n: usize) -> Result<(Proc, Vec<u16>, Cluster)> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let apps = app_exporter(&ports).await?;
    let dir = tempfile::TempDir::new()?;
    let cfg = dir.path().join("scrape.yml");
    let list: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    std::fs::write(
        &cfg,
        format!(
            "scrape_configs:\n  - job_name: app\n    scrape_interval: 3s\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        ),
    )?;
    let c = Cluster::start(3, "").await?;
    let (ok, out) = ctl(&c, 0, &["scrape", "apply", cfg.to_str().unwrap()])?;
    assert!(ok, "{out}");
    Ok((apps, ports, c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_three_nodes_share_targets_and_take_over_a_killed_nodes_targets() -> Result<()> {
    const INTERVAL_MS: i64 = 3000;
    let (_apps, ports, mut c) = three_nodes_scraping(9).await?;

    // Every target has one owner, the same from every node, and is up; owners spread over the nodes.
    let owners = wait_for(Duration::from_secs(40), "every target up, owned by one node", || async {
        let list = targets(&c, 1).await?;
        let up = list.iter().filter(|t| t["health"] == "up").count();
        let owners: BTreeMap<String, u64> = list
            .iter()
            .filter_map(|t| Some((t["labels"]["instance"].as_str()?.to_string(), t["owner"].as_u64()?)))
            .collect();
        Ok((up == ports.len() && owners.len() == ports.len()).then_some(owners))
    })
    .await?;
    let per_node: BTreeMap<u64, usize> = owners.values().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(*o).or_default() += 1;
        m
    });
    println!("targets per node: {per_node:?}");
    assert!(per_node.len() >= 2, "targets spread over the nodes: {per_node:?}");

    // Steady state: no target scraped twice (about one `up` sample per interval, not two).
    tokio::time::sleep(Duration::from_millis(7 * INTERVAL_MS as u64)).await;
    let t1 = now_ms();
    let before = up_times(&c, 0, t1 - 6 * INTERVAL_MS, t1).await?;
    assert_eq!(before.len(), ports.len());
    for (inst, ts) in &before {
        assert!(ts.len() <= 7, "{inst} scraped {} times in 6 intervals: scraped twice? {ts:?}", ts.len());
        assert!(ts.len() >= 5, "{inst} scraped only {} times in 6 intervals: {ts:?}", ts.len());
    }

    // SIGKILL the node owning the most targets: its targets move, the others stay.
    let (&victim, _) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    let moved: Vec<&String> = owners.iter().filter(|(_, o)| **o == victim).map(|(i, _)| i).collect();
    println!("SIGKILL node {victim}, owner of {moved:?}");
    let killed_at = now_ms();
    c.node(victim).kill();
    let survivor = c.nodes.iter().position(|n| n.id != victim).unwrap();
    tokio::time::sleep(Duration::from_millis(6 * INTERVAL_MS as u64)).await;
    let after_owners = wait_for(Duration::from_secs(30), "the killed node's targets owned by the others", || async {
        let owners = crate::owners(&c, survivor).await?;
        Ok((owners.len() == ports.len() && owners.values().all(|o| *o != victim)).then_some(owners))
    })
    .await?;
    for (inst, o) in &owners {
        if *o != victim {
            assert_eq!(after_owners[inst], *o, "{inst} moved although its node lives");
        }
    }
    // No gap in `up` longer than two intervals around the kill, for every target.
    let to = now_ms();
    let series = up_times(&c, survivor, killed_at - 3 * INTERVAL_MS, to).await?;
    let mut worst = 0;
    for (inst, ts) in &series {
        assert!(ts.last().is_some_and(|t| *t > to - 2 * INTERVAL_MS), "{inst} no longer scraped: {ts:?}");
        let gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        worst = worst.max(gap);
        assert!(gap <= 2 * INTERVAL_MS + 500, "{inst}: a gap of {gap} ms in up (interval {INTERVAL_MS} ms): {ts:?}");
    }
    println!("largest gap in up after the SIGKILL: {worst} ms (interval {INTERVAL_MS} ms)");
    assert_eq!(series.len(), ports.len());
    Ok(())
}

/// The owner of every target, as `node` reports it.
async fn owners(c: &Cluster, node: usize) -> Result<BTreeMap<String, u64>> {
    Ok(targets(c, node)
        .await?
        .iter()
        .filter_map(|t| Some((t["labels"]["instance"].as_str()?.to_string(), t["owner"].as_u64()?)))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_joining_node_takes_only_its_share_of_targets_keeping_their_phase() -> Result<()> {
    const INTERVAL_MS: i64 = 3000;
    // 24 targets: a fourth node's share of the ring is empty with probability (3/4)^24, about 0.1%.
    let (_apps, ports, mut c) = three_nodes_scraping(24).await?;
    let before = wait_for(Duration::from_secs(40), "every target owned by one of three nodes", || async {
        let o = owners(&c, 0).await?;
        Ok((o.len() == ports.len()).then_some(o))
    })
    .await?;

    // A fourth node joins (no rebalance: owning targets needs no replica).
    c.join(1, Some(4), "").await?;
    let joined_at = now_ms();
    let after = wait_for(Duration::from_secs(40), "the new node owning targets, as every node says", || async {
        let views = [owners(&c, 0).await?, owners(&c, 3).await?];
        let settled = views[0] == views[1] && views[0].len() == ports.len() && views[0].values().any(|o| *o == 4);
        Ok(settled.then(|| views[0].clone()))
    })
    .await?;
    let moved: Vec<&String> = after.iter().filter(|(i, o)| before[*i] != **o).map(|(i, _)| i).collect();
    println!("targets moved to node 4: {} of {}", moved.len(), ports.len());
    for i in &moved {
        assert_eq!(
            after[*i], 4,
            "{i} moved between old nodes ({} -> {}): only the new node takes targets",
            before[*i], after[*i]
        );
    }

    // The moved targets keep their phase: no double scrape, no gap over two intervals, before and after.
    tokio::time::sleep(Duration::from_millis(6 * INTERVAL_MS as u64)).await;
    let to = now_ms();
    let series = up_times(&c, 3, joined_at - 4 * INTERVAL_MS, to).await?;
    assert_eq!(series.len(), ports.len());
    for (inst, ts) in &series {
        let gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= 2 * INTERVAL_MS + 500), "{inst}: a gap in up: {ts:?}");
        assert!(gaps.iter().all(|g| *g >= INTERVAL_MS / 2), "{inst}: scraped twice in an interval: {ts:?}");
    }
    Ok(())
}
