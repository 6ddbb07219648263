//! The scrape manager with real targets, short intervals and a bounded sink.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pharos_scrape::labels;
use pharos_scrape::manager::phase_offset;
use pharos_scrape::{parse_config, Health, ManagerOptions, ScrapeBatch, ScrapeConfig, ScrapeManager};
use tokio::sync::mpsc;

use crate::common::{eventually, Reply, TestServer};

fn config(yaml: &str) -> ScrapeConfig {
    parse_config(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn two_targets(a: &TestServer, b: &TestServer, extra: &str) -> ScrapeConfig {
    config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 200ms\n    scrape_timeout: 150ms\n    static_configs:\n      - targets: ['{}', '{}']\n{extra}",
        a.address(),
        b.address()
    ))
}

async fn server(body: &str) -> TestServer {
    let s = TestServer::start().await;
    s.set("/metrics", Reply::text(body));
    s
}

/// Receives batches until `done` says enough (by count per instance), failing after the deadline.
async fn collect(
    rx: &mut mpsc::Receiver<ScrapeBatch>,
    deadline: Duration,
    done: impl Fn(&HashMap<String, Vec<ScrapeBatch>>) -> bool,
) -> HashMap<String, Vec<ScrapeBatch>> {
    let mut seen: HashMap<String, Vec<ScrapeBatch>> = HashMap::new();
    let end = tokio::time::Instant::now() + deadline;
    while !done(&seen) {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(b)) => seen.entry(labels::get(&b.target_labels, "instance").to_string()).or_default().push(b),
            Ok(None) => panic!("sink closed"),
            Err(_) => panic!("timed out; got {:?}", seen.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()),
        }
    }
    seen
}

#[tokio::test]
async fn scrapes_two_targets_periodically_into_the_sink() {
    let a = server("a_metric 1\n").await;
    let b = server("b_metric{x=\"y\"} 2\nb_other 3\n").await;
    let (tx, mut rx) = mpsc::channel(64);
    let m = ScrapeManager::new(tx, ManagerOptions::default());
    m.apply(two_targets(&a, &b, ""));
    let (ia, ib) = (a.address(), b.address());
    let seen = collect(&mut rx, Duration::from_secs(10), |s| {
        s.get(&ia).is_some_and(|v| v.len() >= 3) && s.get(&ib).is_some_and(|v| v.len() >= 3)
    })
    .await;

    let batch = &seen[&ia][0];
    assert_eq!(batch.job, "app");
    assert_eq!(batch.url, a.url("/metrics"));
    assert_eq!(batch.health, Health::Up);
    assert_eq!(batch.error, None);
    assert_eq!(batch.samples[0].name, "a_metric");
    assert_eq!(batch.samples[0].timestamp_ms, Some(batch.timestamp_ms));
    assert_eq!(labels::get(&batch.samples[0].labels, "job"), "app");
    let series_added = |b: &ScrapeBatch| b.samples.iter().find(|s| s.name == "scrape_series_added").unwrap().value;
    assert_eq!(series_added(&seen[&ib][0]), 2.0);
    assert_eq!(series_added(&seen[&ib][1]), 0.0, "no new series on the second scrape");

    // Scrapes come one interval apart, at the target's phase.
    let times: Vec<i64> = seen[&ib].iter().map(|b| b.timestamp_ms).collect();
    for w in times.windows(2) {
        // One interval apart, or a whole number of intervals if a slow machine made a loop skip a tick.
        let (gap, off) = (w[1] - w[0], (w[1] - w[0]).rem_euclid(200));
        assert!(gap >= 140 && !(60..=140).contains(&off), "gaps {times:?}");
    }
    let offset = phase_offset(&seen[&ib][0].target_key, Duration::from_millis(200)).as_millis() as i64;
    let late = (times[0] - offset).rem_euclid(200);
    assert!(late < 100, "first scrape at {} ms is {late} ms after the phase {offset}", times[0]);

    let status = m.targets();
    assert_eq!(status.len(), 2);
    for t in &status {
        assert!(t.owned);
        assert_eq!(t.health, Health::Up);
        assert!(t.last_scrape_ms.is_some() && t.last_duration.is_some());
        assert_eq!(t.last_error, None);
        assert_eq!(labels::get(&t.discovered_labels, "__scrape_interval__"), "200ms");
    }
    assert_eq!(status.iter().find(|t| t.url == b.url("/metrics")).unwrap().last_samples, 2);
    m.shutdown().await;
}

#[tokio::test]
async fn ownership_changes_stop_and_start_loops() {
    let a = server("a_metric 1\n").await;
    let b = server("b_metric 2\n").await;
    let (tx, mut rx) = mpsc::channel(64);
    let m = ScrapeManager::new(tx, ManagerOptions::default());
    m.apply(two_targets(&a, &b, ""));
    let (ia, ib) = (a.address(), b.address());
    collect(&mut rx, Duration::from_secs(10), |s| s.contains_key(&ia) && s.contains_key(&ib)).await;

    // b moves to another node.
    let b_url = b.url("/metrics");
    m.set_owned(Arc::new(move |t| t.url != b_url));
    let status = m.targets();
    let sb = status.iter().find(|t| t.url == b.url("/metrics")).unwrap();
    assert!(!sb.owned);
    assert_eq!(sb.health, Health::Unknown);
    while rx.try_recv().is_ok() {} // batches already queued
    let hits_b = b.hits("/metrics").len();
    let seen = collect(&mut rx, Duration::from_secs(10), |s| s.get(&ia).is_some_and(|v| v.len() >= 5)).await;
    assert!(!seen.contains_key(&ib), "b is not scraped here any more");
    assert!(b.hits("/metrics").len() <= hits_b + 1, "at most an in-flight scrape of b");

    // And comes back.
    m.set_owned(Arc::new(|_| true));
    collect(&mut rx, Duration::from_secs(10), |s| s.get(&ib).is_some_and(|v| v.len() >= 2)).await;
    assert!(m.targets().iter().all(|t| t.owned));
    m.shutdown().await;
}

#[tokio::test]
async fn apply_keeps_unchanged_loops_and_follows_changes() {
    let a = server("a_metric 1\n").await;
    let b = server("b_metric 2\n").await;
    let (tx, mut rx) = mpsc::channel(64);
    let m = ScrapeManager::new(tx, ManagerOptions::default());
    let cfg = two_targets(&a, &b, "");
    m.apply(cfg.clone());
    let (ia, ib) = (a.address(), b.address());
    collect(&mut rx, Duration::from_secs(10), |s| s.contains_key(&ia) && s.contains_key(&ib)).await;
    eventually("both targets up", Duration::from_secs(10), || {
        let up = m.targets().iter().all(|t| t.health == Health::Up);
        async move { up.then_some(()) }
    })
    .await;

    // The same config again: nothing restarts (a restarted loop would start over as Unknown).
    m.apply(cfg.clone());
    assert!(m.targets().iter().all(|t| t.health == Health::Up && t.owned));

    // A changed config: only a, with a new label and metric relabeling.
    m.apply(config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 200ms\n    scrape_timeout: 150ms\n    static_configs:\n      - targets: ['{}']\n        labels: {{env: blue}}\n    metric_relabel_configs:\n      - {{source_labels: [__name__], target_label: renamed, replacement: yes}}\n",
        a.address()
    )));
    let status = m.targets();
    assert_eq!(status.len(), 1);
    assert_eq!(labels::get(&status[0].labels, "env"), "blue");
    while rx.try_recv().is_ok() {}
    let seen = collect(&mut rx, Duration::from_secs(10), |s| s.get(&ia).is_some_and(|v| v.len() >= 3)).await;
    assert!(!seen.contains_key(&ib), "b's loop stopped");
    let s0 = &seen[&ia][0].samples[0];
    assert_eq!(labels::get(&s0.labels, "env"), "blue");
    assert_eq!(labels::get(&s0.labels, "renamed"), "yes");

    // A new job, and the old one removed.
    m.apply(config(&format!(
        "scrape_configs:\n  - job_name: other\n    scrape_interval: 200ms\n    scrape_timeout: 100ms\n    static_configs: [{{targets: ['{}']}}]\n",
        b.address()
    )));
    while rx.try_recv().is_ok() {}
    let seen = collect(&mut rx, Duration::from_secs(10), |s| s.get(&ib).is_some_and(|v| v.len() >= 3)).await;
    assert!(!seen.contains_key(&ia));
    assert!(seen[&ib].iter().all(|b| b.job == "other"));
    m.shutdown().await;
}

#[tokio::test]
async fn targets_follow_file_discovery() {
    let a = server("a_metric 1\n").await;
    let b = server("b_metric 1\n").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    std::fs::write(&file, format!(r#"[{{"targets": ["{}"]}}]"#, a.address())).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let mut options = ManagerOptions::default();
    options.discovery.file_poll_interval = Duration::from_millis(50);
    let m = ScrapeManager::new(tx, options);
    m.apply(config(&format!(
        "scrape_configs:\n  - job_name: files\n    scrape_interval: 200ms\n    scrape_timeout: 100ms\n    file_sd_configs: [{{files: ['{}']}}]\n",
        file.display()
    )));
    let (ia, ib) = (a.address(), b.address());
    collect(&mut rx, Duration::from_secs(10), |s| s.contains_key(&ia)).await;
    std::fs::write(&file, format!(r#"[{{"targets": ["{}"], "labels": {{"team": "x"}}}}]"#, b.address())).unwrap();
    let seen = collect(&mut rx, Duration::from_secs(10), |s| s.get(&ib).is_some_and(|v| v.len() >= 2)).await;
    assert_eq!(labels::get(&seen[&ib][0].target_labels, "team"), "x");
    eventually("a's loop to stop", Duration::from_secs(10), || {
        let t = m.targets();
        let done = t.len() == 1 && labels::get(&t[0].labels, "instance") == ib;
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(labels::get(&m.targets()[0].discovered_labels, "__meta_filepath"), file.display().to_string());
    m.shutdown().await;
}

#[tokio::test]
async fn a_full_sink_makes_loops_wait_and_skip_instead_of_piling_up() {
    let a = server("a_metric 1\n").await;
    let (tx, mut rx) = mpsc::channel(1);
    let m = ScrapeManager::new(tx, ManagerOptions::default());
    m.apply(config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 100ms\n    scrape_timeout: 50ms\n    static_configs: [{{targets: ['{}']}}]\n",
        a.address()
    )));
    eventually("the first scrape", Duration::from_secs(10), || {
        let n = a.hits("/metrics").len();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    // Nobody reads for a second: one batch fills the channel, one waits, and no more scrapes happen.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let hits = a.hits("/metrics").len();
    assert!(hits <= 3, "{hits} scrapes while the sink was full");
    // Reading again: the waiting batch arrives, then scrapes resume at the interval, without a backlog.
    let first = rx.recv().await.unwrap();
    let second = rx.recv().await.unwrap();
    assert!(second.timestamp_ms > first.timestamp_ms);
    let third = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert!(third.timestamp_ms - second.timestamp_ms >= 900, "the third scrape is new, not a queued one");
    let fourth = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert!((50..=300).contains(&(fourth.timestamp_ms - third.timestamp_ms)), "back to the interval");
    m.shutdown().await;
}

#[tokio::test]
async fn down_targets_are_reported_and_shutdown_stops_everything() {
    let a = TestServer::start().await;
    a.set("/metrics", Reply::status(503));
    let (tx, mut rx) = mpsc::channel(64);
    let m = ScrapeManager::new(tx, ManagerOptions::default());
    m.apply(config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 100ms\n    scrape_timeout: 50ms\n    static_configs: [{{targets: ['{}']}}]\n",
        a.address()
    )));
    let b = rx.recv().await.unwrap();
    assert_eq!(b.health, Health::Down);
    assert_eq!(b.error.as_deref(), Some("server returned HTTP status 503 Service Unavailable"));
    let up = b.samples.iter().find(|s| s.name == "up").unwrap();
    assert_eq!(up.value, 0.0);
    let t = &m.targets()[0];
    assert_eq!(t.health, Health::Down);
    assert_eq!(t.last_error.as_deref(), Some("server returned HTTP status 503 Service Unavailable"));

    m.shutdown().await;
    assert!(m.targets().is_empty());
    while rx.try_recv().is_ok() {}
    let hits = a.hits("/metrics").len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.hits("/metrics").len(), hits, "no scrapes after shutdown");
    assert!(rx.try_recv().is_err());
    m.apply(config("scrape_configs: []\n"));
}

#[tokio::test]
async fn two_nodes_split_the_targets_by_the_ring_and_one_takes_over() {
    use pharos_scrape::OwnerRing;
    // 16 targets: one node of two gets none with probability 2 / 2^16 (with 6 it was 3%, and it happened).
    const N: usize = 16;
    let mut servers = Vec::new();
    for i in 0..N {
        servers.push(server(&format!("m{{i=\"{i}\"}} 1\n")).await);
    }
    let addrs: Vec<String> = servers.iter().map(|s| format!("'{}'", s.address())).collect();
    let cfg = config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 200ms\n    scrape_timeout: 100ms\n    static_configs: [{{targets: [{}]}}]\n",
        addrs.join(", ")
    ));
    let owned_by = |me: u64, nodes: &[u64]| {
        let ring = Arc::new(OwnerRing::new(nodes));
        let f: pharos_scrape::OwnedFn = Arc::new(move |t| ring.owner(&t.key) == Some(me));
        f
    };
    let (tx1, mut rx1) = mpsc::channel(256);
    let (tx2, mut rx2) = mpsc::channel(256);
    let n1 = ScrapeManager::new(tx1, ManagerOptions::default());
    let n2 = ScrapeManager::new(tx2, ManagerOptions::default());
    n1.set_owned(owned_by(1, &[1, 2]));
    n2.set_owned(owned_by(2, &[1, 2]));
    n1.apply(cfg.clone());
    n2.apply(cfg);
    let mine = |m: &ScrapeManager| -> Vec<String> {
        m.targets().into_iter().filter(|t| t.owned).map(|t| labels::get(&t.labels, "instance").to_string()).collect()
    };
    let (m1, m2) = (mine(&n1), mine(&n2));
    assert_eq!(m1.len() + m2.len(), N, "{m1:?} {m2:?}");
    assert!(m1.iter().all(|i| !m2.contains(i)), "each target has exactly one owner");
    assert!(!m1.is_empty() && !m2.is_empty(), "{N} targets on 2 nodes: both get some ({m1:?}, {m2:?})");
    let (c1, c2) = (m1.clone(), m2.clone());
    let seen1 = collect(&mut rx1, Duration::from_secs(10), |s| c1.iter().all(|i| s.contains_key(i))).await;
    assert!(seen1.keys().all(|i| m1.contains(i)));
    let seen2 = collect(&mut rx2, Duration::from_secs(10), |s| c2.iter().all(|i| s.contains_key(i))).await;
    assert!(seen2.keys().all(|i| m2.contains(i)));

    // Node 2 leaves: node 1 takes everything over.
    n2.shutdown().await;
    n1.set_owned(owned_by(1, &[1]));
    assert_eq!(mine(&n1).len(), N);
    let all: Vec<String> = servers.iter().map(|s| s.address()).collect();
    collect(&mut rx1, Duration::from_secs(10), |s| all.iter().all(|i| s.contains_key(i))).await;
    n1.shutdown().await;
}

#[tokio::test]
async fn apply_and_set_owned_work_from_threads_outside_the_runtime() {
    let a = server("x 1\n").await;
    a.set("/sd", Reply::json(&format!(r#"[{{"targets": ["{}"]}}]"#, a.address())));
    let (tx, mut rx) = mpsc::channel(8);
    let m = ScrapeManager::new(tx, ManagerOptions::default());
    let cfg = config(&format!(
        "scrape_configs:\n  - job_name: h\n    scrape_interval: 200ms\n    scrape_timeout: 100ms\n    http_sd_configs: [{{url: '{}'}}]\n",
        a.url("/sd")
    ));
    let m2 = m.clone();
    std::thread::spawn(move || {
        m2.set_owned(Arc::new(|_| true));
        m2.apply(cfg);
    })
    .join()
    .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert_eq!(b.health, Health::Up);
    assert_eq!(labels::get(&b.target_labels, "instance"), a.address());
    assert_eq!(labels::get(&m.targets()[0].discovered_labels, "__meta_url"), a.url("/sd"));
    m.shutdown().await;
}
