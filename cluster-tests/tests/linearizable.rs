//! A Jepsen-style run: two writers and two readers on three nodes in their own network namespaces, while one
//! node at a time is SIGKILLed, frozen or cut off at random. Every operation is recorded with its start, end
//! and outcome, and the history is checked (`cluster_tests::history`): no acknowledged write lost, no
//! phantom, linearizable reads in one real-time order, stale reads without phantoms and with their lag
//! reported.
//!
//! 60 s in the test command; `PHAROS_HISTORY_SECS` for longer runs, `PHAROS_HISTORY_SEED` to replay one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use cluster_tests::faults::Rng;
use cluster_tests::history::{check, History, Op};
use cluster_tests::netlab::NetLab;
use cluster_tests::{parse_export, recent_ms, Cluster};

/// The series the clients share: few, so reads of one series see many writes and each other.
const SERIES: usize = 6;

fn series_name(k: usize) -> String {
    format!("hist,s={k} v")
}

/// The timestamps of one series in an export's lines.
fn timestamps(text: &str, k: usize) -> BTreeSet<i64> {
    let name = series_name(k);
    parse_export(text).into_keys().filter(|(s, _)| *s == name).map(|(_, ts)| ts).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_reads_under_faults_are_linearizable_and_no_acknowledged_write_is_lost() -> Result<()> {
    let (secs, mut rng) = cluster_tests::faults::soak("history run", "PHAROS_HISTORY", 60);
    let seed = rng.0;
    let lab = NetLab::new(3)?;
    let mut c = Cluster::start_in(&lab, 3, "").await?;
    let h = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url("")).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut clients = Vec::new();
    for w in 0..2i64 {
        let (h, stop, urls, http) = (h.clone(), stop.clone(), urls.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                // A unique timestamp per write: writer w's i-th, 10 ms apart.
                let ts = recent_ms() + (i * 2 + w) * 10;
                let body: String = (0..SERIES).map(|k| format!("hist,s={k} v={i} {ts}\n")).collect();
                let url = format!("{}/write?precision=ms", urls[(i as usize + w as usize) % urls.len()]);
                let start = h.now();
                let ok = matches!(http.post(url).body(body).send().await, Ok(r) if r.status() == 204);
                let points = (0..SERIES).map(|k| (series_name(k), ts)).collect();
                h.record(Op::Write { points, start, end: h.now(), ok });
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for r in 0..2u64 {
        let (h, stop, urls, http) = (h.clone(), stop.clone(), urls.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = Rng(seed.rotate_left(17 + r as u32) | 1);
            while !stop.load(Ordering::Relaxed) {
                let k = rng.next(SERIES as u64) as usize;
                let stale = rng.next(4) == 0;
                let node = &urls[rng.next(urls.len() as u64) as usize];
                let url = format!(
                    "{node}/api/v1/export?measurement=hist&where=s={k}{}",
                    if stale { "&stale=true" } else { "" }
                );
                let start = h.now();
                if let Ok(resp) = http.get(url).send().await {
                    if resp.status() == 200 {
                        if let Ok(text) = resp.text().await {
                            let got = timestamps(&text, k);
                            h.record(Op::Read { series: series_name(k), stale, got, start, end: h.now() });
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }

    let until = Instant::now() + Duration::from_secs(secs);
    let mut faults = Vec::new();
    while Instant::now() < until {
        faults.push(cluster_tests::faults::one(&mut c, &lab, &mut rng).await?);
        c.wait_healthy(Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.await?;
    }

    // Every fault is healed: the final, linearizable read of each series.
    let mut last = BTreeMap::new();
    for k in 0..SERIES {
        let url = format!("{}/api/v1/export?measurement=hist&where=s={k}", urls[0]);
        let text = c.http.get(url).send().await?.text().await?;
        last.insert(series_name(k), timestamps(&text, k));
    }
    let report = check(&h.ops(), &last);
    println!(
        "{} faults: {}\n{} writes acknowledged, {} indeterminate; {} linearizable reads, {} stale reads (lagging at \
         most {} ms); {} violations",
        faults.len(),
        faults.join(", "),
        report.writes_ok,
        report.writes_indeterminate,
        report.reads,
        report.stale_reads,
        report.stale_lag_ms,
        report.violations.len()
    );
    ensure!(report.violations.is_empty(), "the history has violations:\n{}", report.violations.join("\n"));
    ensure!(report.writes_ok > 100 && report.reads > 100, "too little happened to check: {report:?}");
    for n in &c.nodes {
        ensure!(!n.log().contains("panicked"), "node {} panicked", n.id);
    }
    Ok(())
}
