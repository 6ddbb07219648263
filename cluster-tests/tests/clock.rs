//! A node whose wall clock runs 10 minutes ahead of the others' (Debian's faketime: libfaketime preloaded
//! into the process, its monotonic clock left alone, as a wrong NTP setting or a VM restored from a pause
//! would leave it). What docs/reliability.md promises:
//!
//! - its peers measure the offset (`pharos_clock_offset_seconds`) and log it;
//! - a sample written without a timestamp takes the clock of the node that parsed it; samples with
//!   timestamps are stored as sent;
//! - Raft does not depend on wall clocks (leases and elections use the monotonic clock): replication and
//!   failover work as with synchronized clocks, and nothing acknowledged is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use cluster_tests::{recent_ms, wait_for, Cluster};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const AHEAD_MS: i64 = 600_000;

fn real_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// The timestamps (ms) of a measurement's samples, as exported by node `i`.
async fn exported(c: &Cluster, i: usize, measurement: &str) -> Result<Vec<i64>> {
    Ok(c.export(c.nodes[i].id, measurement, false).await?.into_keys().map(|(_, ts)| ts).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_node_ten_minutes_ahead_is_measured_and_changes_only_the_timestamps_it_assigns() -> Result<()> {
    ensure!(std::path::Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing: scripts/setup.sh installs faketime");
    let mut c = Cluster::start(3, "").await?;
    c.nodes[2].terminate(Duration::from_secs(30))?;
    c.nodes[2].env = [("LD_PRELOAD", LIBFAKETIME), ("FAKETIME", "+10m"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
    c.nodes[2].start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;

    // Its peers see it 10 minutes ahead, and say so.
    let metrics = c.nodes[0].url("/metrics");
    let offset = wait_for(Duration::from_secs(20), "node 1 to measure node 3's clock", || async {
        let text = c.http.get(&metrics).send().await?.text().await?;
        let line = text.lines().find(|l| l.starts_with("pharos_clock_offset_seconds") && l.contains("peer=\"3\""));
        Ok(line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).filter(|o| o.abs() > 1.0))
    })
    .await?;
    ensure!((offset - 600.0).abs() < 5.0, "node 3 measured {offset} s ahead, 600 expected");
    ensure!(c.nodes[0].log().contains("differ by more than 1 s"), "node 1 logs the offset");

    // A sample without a timestamp takes the parsing node's clock; one with a timestamp is stored as sent.
    let sent = recent_ms();
    for (i, node) in [(0usize, "n1"), (2, "n3")] {
        let w = c.nodes[i].url("/write?precision=ms");
        let body = format!("clock_none,via={node} v=1\nclock_given,via={node} v=1 {sent}\n");
        let r = c.http.post(&w).body(body).send().await?;
        ensure!(r.status() == 204, "{}", r.text().await?);
    }
    let now = real_now_ms();
    let none = exported(&c, 1, "clock_none").await?;
    ensure!(none.len() == 2, "{none:?}");
    let (mut early, mut late) = (none[0].min(none[1]), none[0].max(none[1]));
    early -= now;
    late -= now;
    ensure!(early.abs() < 5_000, "through node 1: its own clock ({early} ms from now)");
    ensure!((late - AHEAD_MS).abs() < 5_000, "through node 3: 10 minutes ahead ({late} ms from now)");
    ensure!(exported(&c, 0, "clock_given").await? == vec![sent, sent], "timestamps sent are kept");

    // Raft runs on the monotonic clock: writes through node 3 keep working across the loss of node 1, and
    // every acknowledged one is read back through both survivors.
    let t0 = recent_ms();
    let w3 = c.nodes[2].url("/write?precision=ms");
    let mut acked = 0;
    for i in 0..20i64 {
        if i == 5 {
            c.nodes[0].kill();
        }
        let body: String = (0..50).map(|h| format!("clock_writes,host=h{h} v={i} {}\n", t0 + i)).collect();
        let r = c.http.post(&w3).timeout(Duration::from_secs(30)).body(body).send().await?;
        ensure!(r.status() == 204, "write {i} through node 3: {}", r.text().await?);
        acked += 50;
    }
    for i in [1usize, 2] {
        let got = exported(&c, i, "clock_writes").await?.len();
        ensure!(got == acked, "node {}: {got} of {acked} acknowledged samples", i + 1);
    }
    Ok(())
}
