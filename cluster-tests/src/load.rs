//! A steady writer for cluster tests: batches of line protocol round-robin over nodes, recording every
//! acknowledged batch and when, and the checks that every acknowledged point is readable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{recent_ms, wait_for, Cluster};

pub const HOSTS: usize = 128;

/// One batch: HOSTS series (spread over every shard) at time step `i`.
pub fn batch(tag: &str, i: i64) -> String {
    (0..HOSTS).map(|h| format!("load,run={tag},host=h{h} v={i} {}\n", recent_ms() + i * 1000)).collect()
}

pub type Acked = Arc<Mutex<Vec<(String, i64)>>>;

pub fn expected(acked: &[(String, i64)]) -> BTreeMap<(String, i64), f64> {
    let mut m = BTreeMap::new();
    for (tag, i) in acked {
        for h in 0..HOSTS {
            m.insert((format!("load,host=h{h},run={tag} v"), recent_ms() + i * 1000), *i as f64);
        }
    }
    m
}

/// A background writer: batches round-robin over the target nodes' /write until stopped.
pub struct Writer {
    targets: Arc<Mutex<Vec<String>>>,
    pub acked: Acked,
    /// When each batch was acknowledged, in order.
    acked_at: Arc<Mutex<Vec<Instant>>>,
    /// The number of the newest batch whose request has started.
    pub started: Arc<std::sync::atomic::AtomicI64>,
    stop: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(c: &Cluster, tag: &'static str) -> Writer {
        let targets = Arc::new(Mutex::new(c.nodes.iter().map(|n| n.url("/write?precision=ms")).collect::<Vec<_>>()));
        let (acked, stop): (Acked, _) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(false)));
        let started = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let acked_at = Arc::new(Mutex::new(Vec::new()));
        let (t, a, s, http, at) = (targets.clone(), acked.clone(), stop.clone(), c.http.clone(), acked_at.clone());
        let st = started.clone();
        let task = tokio::spawn(async move {
            let mut i = 0i64;
            while !*s.lock().unwrap() {
                let url = {
                    let t = t.lock().unwrap();
                    t[i as usize % t.len()].clone()
                };
                st.store(i, std::sync::atomic::Ordering::SeqCst);
                if let Ok(r) = http.post(url).body(batch(tag, i)).send().await {
                    if r.status() == 204 {
                        a.lock().unwrap().push((tag.to_string(), i));
                        at.lock().unwrap().push(Instant::now());
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Writer { targets, acked, acked_at, started, stop, task }
    }

    pub fn only(&self, c: &Cluster, ids: &[u64]) {
        *self.targets.lock().unwrap() =
            c.nodes.iter().filter(|n| ids.contains(&n.id)).map(|n| n.url("/write?precision=ms")).collect();
    }

    pub async fn wait_more(&self, n: usize) -> Result<()> {
        let target = self.acked.lock().unwrap().len() + n;
        wait_for(Duration::from_secs(60), "more acknowledged batches", || async {
            Ok((self.acked.lock().unwrap().len() >= target).then_some(()))
        })
        .await
    }

    /// The longest time between two acknowledgements so far.
    pub fn longest_gap(&self) -> Duration {
        let at = self.acked_at.lock().unwrap();
        at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }

    /// Sends to every node of the cluster (after nodes joined).
    pub fn all(&self, c: &Cluster) {
        *self.targets.lock().unwrap() =
            c.nodes.iter().filter(|n| n.pid().is_some()).map(|n| n.url("/write?precision=ms")).collect();
    }

    pub async fn finish(self) -> Vec<(String, i64)> {
        *self.stop.lock().unwrap() = true;
        let _ = self.task.await;
        self.acked.lock().unwrap().clone()
    }
}

pub async fn assert_all_readable(c: &Cluster, acked: &[(String, i64)], nodes: &[u64]) -> Result<()> {
    let want = expected(acked);
    for &n in nodes {
        let got = c.export(n, "load", false).await?;
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).take(3).collect();
        assert!(missing.is_empty(), "node {n} lacks acknowledged points, e.g. {missing:?} (of {} acked)", want.len());
        for (k, v) in &want {
            assert_eq!(got.get(k), Some(v), "value of {k:?} via node {n}");
        }
    }
    Ok(())
}
