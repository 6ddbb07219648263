//! Scraping on the node: every node runs a pharos-scrape manager and scrapes the targets the ring over the
//! live nodes gives it; what it scrapes goes through the normal write path.
//!
//! ```text
//!  meta group: scrape config (pharosctl scrape apply, watched), else [scrape] config_file ──► ScrapeManager::apply
//!  liveness: every node pings every other (Internal.ForwardQuery) each second; two misses = dead
//!        live set changed ──► OwnerRing(live) ──► ScrapeManager::set_owned(owner(key) == me)
//!  scrape loops ──ScrapeBatch──► bounded channel ──► points (metric name = measurement, labels = tags,
//!        field `value`) ──► ingest::ingest (checked against the limits, routed to the shards' leaders)
//! ```
//!
//! Every node discovers every target (discovery is cheap) and scrapes only its own, so a target moves
//! within one scrape interval after the failure detection (about two seconds) when its node dies, and only
//! the dead node's targets move. While nodes disagree about who is alive (a partition), a target may be
//! scraped twice (the samples are identical series; the later write wins) or, briefly, by nobody.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use pharos_raft::meta::StoredConfig;
use pharos_scrape::{ManagerOptions, OwnerRing, ScrapeBatch, ScrapeConfig, ScrapeManager, TargetStatus};
use pharos_storage::{Point, SmolStr};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::ingest::{Batch, Ingest, Source};
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::rpc::{fan_out, Client};

/// The scraping side of a node.
pub struct Scraping {
    pub manager: ScrapeManager,
    /// The nodes this node believes alive (itself included), sorted.
    pub live: std::sync::Mutex<Vec<u64>>,
}

/// What scraping uses of the node.
pub struct ScrapeContext {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub meta: Arc<Meta>,
    pub client: Arc<Client>,
    pub ingest: Arc<Ingest>,
}

/// Starts the manager, the sink, the config watcher and the liveness loop.
pub fn start(ctx: ScrapeContext) -> Arc<Scraping> {
    let ctx = Arc::new(ctx);
    let (tx, rx) = mpsc::channel::<ScrapeBatch>(ctx.config.scrape.queue_batches.max(1));
    let manager = ScrapeManager::new(tx, ManagerOptions::default());
    let me = ctx.client.me();
    let scraping = Arc::new(Scraping { manager: manager.clone(), live: std::sync::Mutex::new(vec![me]) });
    // Nothing is owned until the first liveness round says who is alive.
    manager.set_owned(Arc::new(|_| false));
    tokio::spawn(sink(ctx.clone(), rx));
    tokio::spawn(watch_config(ctx.clone(), manager.clone()));
    tokio::spawn(liveness(ctx, scraping.clone()));
    scraping
}

/// A scraped sample as a point: the metric name is the measurement, the labels are tags, the value is the
/// field `value` (as remote write stores Prometheus data).
fn to_points(batch: ScrapeBatch) -> Vec<Point> {
    let ts = batch.timestamp_ms;
    batch
        .samples
        .into_iter()
        .map(|s| Point {
            measurement: s.name.into(),
            tags: s
                .labels
                .into_iter()
                .filter(|(k, v)| !v.is_empty() && k != "__name__")
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            fields: vec![(SmolStr::new_static(crate::prom::VALUE_FIELD), s.value)],
            timestamp: s.timestamp_ms.unwrap_or(ts),
        })
        .collect()
}

/// Writes what the scrape loops produce. Batches that arrive together are written together.
async fn sink(ctx: Arc<ScrapeContext>, mut rx: mpsc::Receiver<ScrapeBatch>) {
    while let Some(first) = rx.recv().await {
        let mut points = to_points(first);
        while points.len() < 50_000 {
            match rx.try_recv() {
                Ok(b) => points.extend(to_points(b)),
                Err(_) => break,
            }
        }
        // Scraped labels are held to the same limits as written points; a sample that breaks one is dropped.
        let now = crate::clock::now_ms();
        let limits = ctx.config.limits.line();
        let before = points.len();
        let mut first_problem = None;
        points.retain(|p| match limits.check(p, now) {
            Ok(()) => true,
            Err(e) => {
                first_problem.get_or_insert_with(|| format!("{}: {e}", p.measurement));
                false
            }
        });
        if let Some(why) = first_problem {
            ctx.metrics.scrape_write_failures.inc();
            warn!(dropped = before - points.len(), first = %why, "scraped samples over the limits dropped");
        }
        let n = points.len() as u64;
        let batch = Batch { source: Source::Scrape, precision: None, points, then_invalid: false };
        match ctx.ingest.ingest(batch).await {
            Ok(_) => ctx.metrics.scraped_samples.inc_by(n),
            Err(e) => {
                ctx.metrics.scrape_write_failures.inc();
                warn!(samples = n, cause = %e, "writing scraped samples failed; they are dropped (the next scrape brings fresh ones)");
            }
        }
    }
}

/// The scrape configuration in force: the meta group's (pharosctl scrape apply) if one was applied,
/// else the node's `[scrape] config_file`, else none.
fn current_config(ctx: &ScrapeContext, stored: &StoredConfig) -> (String, Option<Result<ScrapeConfig, String>>) {
    if stored.version > 0 {
        let id = format!("meta v{}", stored.version);
        return (id, Some(pharos_scrape::parse_config(&stored.text).map_err(|e| e.to_string())));
    }
    match &ctx.config.scrape.config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path);
            let id = format!(
                "file {} {:?}",
                path.display(),
                text.as_ref().map(|t| xxhash_rust::xxh3::xxh3_64(t.as_bytes())).ok()
            );
            let parsed = text
                .map_err(|e| format!("reading {}: {e}", path.display()))
                .and_then(|t| pharos_scrape::parse_config(&t).map_err(|e| format!("{}: {e}", path.display())));
            (id, Some(parsed))
        }
        None => ("none".into(), None),
    }
}

async fn watch_config(ctx: Arc<ScrapeContext>, manager: ScrapeManager) {
    let mut applied = String::new();
    let mut meta = ctx.meta.subscribe();
    loop {
        let stored = meta.borrow_and_update().scrape.clone();
        let (id, cfg) = current_config(&ctx, &stored);
        if id != applied {
            match cfg {
                Some(Ok(c)) => {
                    info!(config = %id, jobs = c.scrape_configs.len(), "scrape configuration applied");
                    manager.apply(c);
                    applied = id;
                }
                Some(Err(e)) => {
                    warn!(config = %id, cause = %e, "scrape configuration refused; the previous one stays");
                    applied = id;
                }
                None => applied = id,
            }
        }
        // A configuration applied through the meta group takes effect at once; a `[scrape] config_file`
        // is read again every second.
        crate::meta::changed_within(&mut meta, Duration::from_secs(1)).await;
    }
}

/// Clocks further apart than this are logged (`pharos_clock_offset_seconds` has every offset): samples
/// written without a timestamp take the clock of the node that parsed them, and retention, rollups and
/// alert timing follow each shard leader's clock (docs/reliability.md).
const MAX_CLOCK_OFFSET_MS: i64 = 1_000;

/// Records a peer's clock offset, and says once when it goes beyond [`MAX_CLOCK_OFFSET_MS`] and once when it
/// comes back.
fn clock_offset(ctx: &ScrapeContext, skewed: &mut BTreeSet<u64>, peer: u64, offset_ms: i64) {
    ctx.metrics.clock_offset.with_label_values(&[&peer.to_string()]).set(offset_ms as f64 / 1000.0);
    let far = offset_ms.abs() > MAX_CLOCK_OFFSET_MS;
    if far && skewed.insert(peer) {
        warn!(
            node = peer,
            offset_ms,
            "this node's clock and node {peer}'s differ by more than 1 s: timestamps the nodes assign and \
             retention and alert timing on the shards they lead disagree; keep clocks synchronized (NTP)"
        );
    } else if !far && skewed.remove(&peer) {
        info!(node = peer, offset_ms, "clocks agree again");
    }
}

async fn liveness(ctx: Arc<ScrapeContext>, scraping: Arc<Scraping>) {
    let mut misses: BTreeMap<u64, u32> = BTreeMap::new();
    let mut skewed: BTreeSet<u64> = BTreeSet::new();
    let mut current: Option<Vec<u64>> = None;
    let every = ctx.config.scrape.liveness_interval;
    let me = ctx.client.me();
    loop {
        let peers = ctx.client.peers().others().into_iter().map(|(id, _)| id);
        let answers = fan_out(peers, |&id| {
            let client = ctx.client.clone();
            async move { client.ping(id).await }
        })
        .await;
        let mut live: BTreeSet<u64> = BTreeSet::from([me]);
        for (id, answer) in answers {
            let m = misses.entry(id).or_insert(0);
            *m = if answer.is_some() { 0 } else { m.saturating_add(1) };
            if let Some(Some(offset)) = answer {
                clock_offset(&ctx, &mut skewed, id, offset);
            }
            // Dead after `liveness_misses` missed pings in a row (a single lost ping moves nothing).
            if *m < ctx.config.scrape.liveness_misses {
                live.insert(id);
            }
        }
        let live: Vec<u64> = live.into_iter().collect();
        if let Some(before) = &current {
            for id in before.iter().filter(|id| !live.contains(id)) {
                warn!(
                    node = id,
                    missed = misses.get(id).copied().unwrap_or(0),
                    "node stopped answering; its scrape targets move to the live nodes"
                );
            }
            for id in live.iter().filter(|id| !before.contains(id)) {
                info!(node = id, "node answers again");
            }
        }
        if current.as_ref() != Some(&live) {
            info!(live = ?live, "scrape ownership: live nodes changed");
            let ring = Arc::new(OwnerRing::new(&live));
            scraping.manager.set_owned(Arc::new(move |t| ring.owner(&t.key) == Some(me)));
            *scraping.live.lock().expect("live lock") = live.clone();
            current = Some(live);
        } else {
            debug!("scrape ownership unchanged");
        }
        tokio::time::sleep(every).await;
    }
}

/// This node's view of its targets, with the owner each would have by the ring over this node's live set.
pub fn local_targets(me: u64, scraping: &Scraping) -> Vec<pharos_proto::v1::TargetInfo> {
    let live = scraping.live.lock().expect("live lock").clone();
    let ring = OwnerRing::new(&live);
    scraping.manager.targets().into_iter().map(|t| target_info(me, &ring, t)).collect()
}

fn target_info(me: u64, ring: &OwnerRing, t: TargetStatus) -> pharos_proto::v1::TargetInfo {
    let tags = |l: &[(String, String)]| {
        l.iter().map(|(k, v)| pharos_proto::v1::Tag { key: k.clone(), value: v.clone() }).collect()
    };
    pharos_proto::v1::TargetInfo {
        job: t.job,
        key: t.key.clone(),
        url: t.url,
        labels: tags(&t.labels),
        discovered_labels: tags(&t.discovered_labels),
        interval_ms: t.interval.as_millis() as u64,
        health: match t.health {
            pharos_scrape::Health::Up => "up",
            pharos_scrape::Health::Down => "down",
            pharos_scrape::Health::Unknown => "unknown",
        }
        .into(),
        last_scrape_ms: t.last_scrape_ms.unwrap_or(0),
        last_duration_ms: t.last_duration.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        last_error: t.last_error.unwrap_or_default(),
        last_samples: t.last_samples as u64,
        owner: if t.owned { me } else { ring.owner(&t.key).unwrap_or(0) },
        reported_by: me,
    }
}

/// Every target in the cluster, each as its owner reports it (targets whose owner did not answer are
/// shown as this node sees them, health unknown).
pub async fn cluster_targets(client: &Client, scraping: &Scraping) -> Vec<pharos_proto::v1::TargetInfo> {
    let mut by_key: BTreeMap<String, pharos_proto::v1::TargetInfo> =
        local_targets(client.me(), scraping).into_iter().map(|t| (t.key.clone(), t)).collect();
    let answers = fan_out(client.peers().others(), |(_, addr)| {
        let c = client.peers().admin(addr);
        async move {
            let mut c = c.ok()?;
            let req = pharos_proto::v1::TargetsRequest { local: true };
            let r = tokio::time::timeout(Duration::from_secs(2), c.targets(req)).await.ok()?.ok()?;
            Some(r.into_inner().targets)
        }
    })
    .await;
    for list in answers.into_iter().filter_map(|(_, l)| l) {
        for t in list {
            // The owner's own report wins: it is the one that scrapes.
            if t.owner == t.reported_by {
                by_key.insert(t.key.clone(), t);
            }
        }
    }
    by_key.into_values().collect()
}
