//! The scrape manager: discovery per job, one scrape loop per owned target, batches into a sink.
//!
//! * [`ScrapeManager::apply`] installs a configuration. A job whose config is unchanged keeps everything
//!   running. A job whose targets are discovered the same way keeps its discovery and re-derives its targets;
//!   a job whose discovery changed gets a new one, and keeps its current targets until the new discovery
//!   has reported. Loops whose target and job config are unchanged keep running (and keep their phase);
//!   changed ones restart; removed jobs and targets stop.
//! * [`ScrapeManager::set_owned`] installs the predicate that says which targets this node scrapes (the node
//!   calls it when cluster membership changes, typically with [`crate::ownership::OwnerRing`]). Loops of
//!   targets no longer owned stop; newly owned ones start. The predicate runs under the manager's lock: it
//!   must be quick and must not call back into the manager.
//! * Each loop first scrapes at the next instant `t` (Unix milliseconds) with `t mod interval =
//!   hash(key) mod interval`, then every interval after that. The phase depends only on the target's key, so
//!   scrapes of many targets are spread over the interval (as Prometheus spreads them) and a target that
//!   moves to another node keeps its phase. A scrape's samples carry the instant it was scheduled for (the
//!   nearest such `t`), not the few milliseconds later it ran: two nodes that both scrape a target while
//!   they disagree about its owner (a handover, a partition) write the same timestamps, so one sample.
//! * Every scrape, successful or not, sends one [`ScrapeBatch`] to the sink. The sink is a bounded channel:
//!   when it is full the loop logs it and waits; ticks missed meanwhile are skipped (and logged), never
//!   queued. A closed sink stops the loops.
//! * [`ScrapeManager::targets`] reports every active target of every job (owned here or not) with its last
//!   scrape. [`ScrapeManager::shutdown`] stops everything; dropping the last handle does too.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hasher;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::config::{JobConfig, ScrapeConfig};
use crate::discovery::{DiscoveryOptions, DiscoveryWatcher, JobDiscovery, TargetGroup};
use crate::exposition::Sample;
use crate::labels::Labels;
use crate::scrape::{scrape, Health, SCRAPE_SERIES_ADDED};
use crate::target::{targets_from_group, Target};

/// One scrape of one target: its samples (report series included) and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeBatch {
    pub job: String,
    /// The target's [`Target::key`].
    pub target_key: String,
    pub url: String,
    /// The target's labels (already on every sample).
    pub target_labels: Labels,
    /// When the scrape started (the timestamp of samples without their own).
    pub timestamp_ms: i64,
    pub health: Health,
    pub error: Option<String>,
    pub samples: Vec<Sample>,
}

/// Says whether this node scrapes a target.
pub type OwnedFn = Arc<dyn Fn(&Target) -> bool + Send + Sync>;

/// How the manager reaches targets and discovery sources.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The client for scrapes (see [`crate::scrape::default_client`]).
    pub client: reqwest::Client,
    pub discovery: DiscoveryOptions,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        let client = crate::scrape::default_client();
        ManagerOptions { discovery: DiscoveryOptions { http_client: client.clone(), ..Default::default() }, client }
    }
}

/// A target as [`ScrapeManager::targets`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub job: String,
    pub key: String,
    pub url: String,
    pub labels: Labels,
    /// Its labels before relabeling (`__address__`, `__meta_*`...).
    pub discovered_labels: Labels,
    pub interval: Duration,
    /// `Unknown` until scraped here, and again once not owned here.
    pub health: Health,
    pub last_scrape_ms: Option<i64>,
    pub last_duration: Option<Duration>,
    pub last_error: Option<String>,
    /// Samples in the last scrape's body.
    pub last_samples: usize,
    /// Whether this node scrapes it.
    pub owned: bool,
}

#[derive(Debug, Clone, Default)]
struct LoopStatus {
    health: Health,
    last_scrape_ms: Option<i64>,
    last_duration: Option<Duration>,
    last_error: Option<String>,
    last_samples: usize,
}

/// Runs discovery and scrape loops; cheap to clone (all clones share one manager).
#[derive(Clone)]
pub struct ScrapeManager {
    inner: Arc<Inner>,
}

struct Inner {
    sink: mpsc::Sender<ScrapeBatch>,
    client: reqwest::Client,
    discovery: DiscoveryOptions,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

struct State {
    jobs: BTreeMap<String, JobState>,
    owned: OwnedFn,
    next_generation: u64,
    stopped: bool,
}

struct JobState {
    config: Arc<JobConfig>,
    /// Tells this job's current discovery from a replaced one.
    generation: u64,
    _discovery: JobDiscovery,
    watcher: Option<JoinHandle<()>>,
    /// The last complete groups; `None` until the discovery has reported.
    groups: Option<Vec<TargetGroup>>,
    targets: BTreeMap<String, TargetEntry>,
}

impl Drop for JobState {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

struct TargetEntry {
    target: Arc<Target>,
    config: Arc<JobConfig>,
    discovered_labels: Labels,
    status: Arc<Mutex<LoopStatus>>,
    /// Some while owned here.
    task: Option<JoinHandle<()>>,
}

impl TargetEntry {
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            *lock(&self.status) = LoopStatus::default();
        }
    }
}

impl Drop for TargetEntry {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ScrapeManager {
    /// A manager with no jobs that owns every target, sending batches to `sink`.
    ///
    /// # Panics
    /// Outside a tokio runtime (it keeps a handle to spawn its tasks on).
    pub fn new(sink: mpsc::Sender<ScrapeBatch>, options: ManagerOptions) -> ScrapeManager {
        ScrapeManager {
            inner: Arc::new(Inner {
                sink,
                client: options.client,
                discovery: options.discovery,
                runtime: tokio::runtime::Handle::current(),
                state: Mutex::new(State {
                    jobs: BTreeMap::new(),
                    owned: Arc::new(|_| true),
                    next_generation: 0,
                    stopped: false,
                }),
            }),
        }
    }

    /// Installs a configuration (see the module documentation). Callable from any thread.
    pub fn apply(&self, config: ScrapeConfig) {
        let inner = &self.inner;
        // Discovery spawns its tasks on the manager's runtime, whichever thread calls this.
        let _runtime = inner.runtime.enter();
        let mut st = lock(&inner.state);
        if st.stopped {
            warn!("scrape manager: apply after shutdown ignored");
            return;
        }
        let owned = st.owned.clone();
        let names: HashSet<String> = config.scrape_configs.iter().map(|j| j.job_name.clone()).collect();
        st.jobs.retain(|name, _| {
            let keep = names.contains(name);
            if !keep {
                info!(job = %name, "scrape manager: job removed");
            }
            keep
        });
        for job in config.scrape_configs {
            let name = job.job_name.clone();
            let existing = st.jobs.get(&name).map(|js| (*js.config == job, js.config.same_discovery(&job)));
            match existing {
                Some((true, _)) => {}
                Some((false, true)) => {
                    debug!(job = %name, "scrape manager: job changed, discovery kept");
                    if let Some(js) = st.jobs.get_mut(&name) {
                        js.config = Arc::new(job);
                        inner.sync_job(js, &owned);
                    }
                }
                _ => {
                    let generation = st.next_generation;
                    st.next_generation += 1;
                    let job = Arc::new(job);
                    let discovery = JobDiscovery::start(&job, &inner.discovery);
                    let watcher = discovery.watcher();
                    let groups = discovery.groups();
                    let handle =
                        inner.runtime.spawn(watch_job(Arc::downgrade(inner), name.clone(), generation, watcher));
                    // A replaced discovery keeps the job's targets until the new one reports.
                    let (targets, old_groups) = match st.jobs.remove(&name) {
                        Some(mut old) => (std::mem::take(&mut old.targets), old.groups.take()),
                        None => (BTreeMap::new(), None),
                    };
                    info!(job = %name, "scrape manager: starting discovery");
                    let mut js = JobState {
                        config: job,
                        generation,
                        _discovery: discovery,
                        watcher: Some(handle),
                        groups: groups.clone(),
                        targets,
                    };
                    if groups.is_some() {
                        inner.sync_job(&mut js, &owned);
                    } else if old_groups.is_some() {
                        // Re-derive with the new config from the old groups meanwhile.
                        js.groups = old_groups;
                        inner.sync_job(&mut js, &owned);
                        js.groups = None;
                    }
                    st.jobs.insert(name, js);
                }
            }
        }
    }

    /// Installs the ownership predicate and starts or stops loops accordingly.
    pub fn set_owned(&self, owned: OwnedFn) {
        let mut st = lock(&self.inner.state);
        st.owned = owned.clone();
        for js in st.jobs.values_mut() {
            self.inner.sync_job(js, &owned);
        }
    }

    /// Every active target of every job, by job then key.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let st = lock(&self.inner.state);
        let mut out = Vec::new();
        for js in st.jobs.values() {
            for e in js.targets.values() {
                let s = lock(&e.status).clone();
                out.push(TargetStatus {
                    job: e.target.job.clone(),
                    key: e.target.key.clone(),
                    url: e.target.url.clone(),
                    labels: e.target.labels.clone(),
                    discovered_labels: e.discovered_labels.clone(),
                    interval: e.target.interval,
                    health: s.health,
                    last_scrape_ms: s.last_scrape_ms,
                    last_duration: s.last_duration,
                    last_error: s.last_error,
                    last_samples: s.last_samples,
                    owned: e.task.is_some(),
                });
            }
        }
        out
    }

    /// Stops discovery and every loop, and waits for them to end. Later calls to `apply` are ignored.
    pub async fn shutdown(&self) {
        let mut handles = Vec::new();
        {
            let mut st = lock(&self.inner.state);
            st.stopped = true;
            for (_, mut js) in std::mem::take(&mut st.jobs) {
                handles.extend(js.watcher.take());
                for (_, mut e) in std::mem::take(&mut js.targets) {
                    handles.extend(e.task.take());
                }
            }
        }
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }
}

impl Inner {
    /// New groups from a job's discovery.
    fn update_groups(self: &Arc<Self>, job: &str, generation: u64, groups: Vec<TargetGroup>) {
        let mut st = lock(&self.state);
        let owned = st.owned.clone();
        let Some(js) = st.jobs.get_mut(job) else {
            return;
        };
        if js.generation != generation {
            return;
        }
        js.groups = Some(groups);
        self.sync_job(js, &owned);
    }

    /// Brings a job's targets and loops in line with its groups, config and the ownership predicate.
    fn sync_job(self: &Arc<Self>, js: &mut JobState, owned: &OwnedFn) {
        let Some(groups) = &js.groups else {
            return;
        };
        let mut desired: BTreeMap<String, (Target, Labels)> = BTreeMap::new();
        for g in groups {
            for d in targets_from_group(&js.config, g) {
                match d.result {
                    Ok(Some(t)) => {
                        desired.entry(t.key.clone()).or_insert((t, d.discovered_labels));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        debug!(job = %js.config.job_name, labels = ?d.discovered_labels, error = %e, "target dropped")
                    }
                }
            }
        }
        let mut old = std::mem::take(&mut js.targets);
        for (key, (target, discovered_labels)) in desired {
            let mut entry = match old.remove(&key) {
                Some(mut e) => {
                    if *e.target != target || *e.config != *js.config {
                        e.stop();
                        e.target = Arc::new(target);
                        e.config = js.config.clone();
                    }
                    e.discovered_labels = discovered_labels;
                    e
                }
                None => TargetEntry {
                    target: Arc::new(target),
                    config: js.config.clone(),
                    discovered_labels,
                    status: Arc::new(Mutex::new(LoopStatus::default())),
                    task: None,
                },
            };
            let own = owned(&entry.target);
            if own && entry.task.is_none() {
                debug!(job = %entry.target.job, url = %entry.target.url, "starting scrape loop");
                entry.task = Some(self.runtime.spawn(run_loop(LoopCtx {
                    client: crate::scrape::client_for(&entry.config, &self.client),
                    sink: self.sink.clone(),
                    target: entry.target.clone(),
                    config: entry.config.clone(),
                    status: entry.status.clone(),
                })));
            } else if !own && entry.task.is_some() {
                debug!(job = %entry.target.job, url = %entry.target.url, "target not owned here any more");
                entry.stop();
            }
            js.targets.insert(key, entry);
        }
        // What is left in `old` is gone; dropping it stops its loops.
    }
}

/// Follows a job's discovery and applies its updates.
async fn watch_job(inner: Weak<Inner>, job: String, generation: u64, mut watcher: DiscoveryWatcher) {
    while let Some(groups) = watcher.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.update_groups(&job, generation, groups);
    }
}

struct LoopCtx {
    /// The job's client, or why it could not be built (then each scrape reports that).
    client: Result<reqwest::Client, String>,
    sink: mpsc::Sender<ScrapeBatch>,
    target: Arc<Target>,
    config: Arc<JobConfig>,
    status: Arc<Mutex<LoopStatus>>,
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The target's phase within its interval: `hash(key) mod interval`.
pub fn phase_offset(key: &str, interval: Duration) -> Duration {
    let interval_ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(xxh3_64(key.as_bytes()) % interval_ms)
}

/// How long from `now_ms` until the next instant whose phase within `interval` is `offset`.
fn delay_to_phase(now_ms: i64, interval: Duration, offset: Duration) -> Duration {
    let interval_ms = interval.as_millis().max(1) as i64;
    let mut first = now_ms - now_ms.rem_euclid(interval_ms) + offset.as_millis() as i64;
    if first < now_ms {
        first += interval_ms;
    }
    Duration::from_millis((first - now_ms) as u64)
}

fn series_hash(s: &Sample) -> u64 {
    let mut h = Xxh3::new();
    h.write(s.name.as_bytes());
    h.write_u8(0xfe);
    for (k, v) in &s.labels {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// The instant nearest `now_ms` whose phase within `interval` is `offset`: the slot a scrape running at
/// `now_ms` was scheduled for.
fn slot_ms(now_ms: i64, interval: Duration, offset: Duration) -> i64 {
    let i = interval.as_millis().max(1) as i64;
    let o = offset.as_millis() as i64;
    (now_ms - o + i / 2).div_euclid(i) * i + o
}

async fn run_loop(ctx: LoopCtx) {
    let interval = ctx.target.interval;
    let offset = phase_offset(&ctx.target.key, interval);
    let delay = delay_to_phase(unix_ms(), interval, offset);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + delay, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut previous: HashSet<u64> = HashSet::new();
    loop {
        ticker.tick().await;
        let now_ms = slot_ms(unix_ms(), interval, offset);
        let mut outcome = match &ctx.client {
            Ok(client) => scrape(client, &ctx.target, &ctx.config, now_ms).await,
            Err(e) => crate::scrape::not_attempted(&ctx.target, e.clone(), now_ms),
        };
        if outcome.health == Health::Up {
            // scrape_series_added: series not seen in the previous successful scrape.
            let report_start = outcome.samples.len().saturating_sub(5);
            let current: HashSet<u64> = outcome.samples[..report_start].iter().map(series_hash).collect();
            let added = current.iter().filter(|h| !previous.contains(h)).count();
            if let Some(s) = outcome.samples[report_start..].iter_mut().find(|s| s.name == SCRAPE_SERIES_ADDED) {
                s.value = added as f64;
            }
            previous = current;
        }
        if let Some(e) = &outcome.error {
            debug!(job = %ctx.target.job, url = %ctx.target.url, error = %e, "scrape failed");
        }
        *lock(&ctx.status) = LoopStatus {
            health: outcome.health,
            last_scrape_ms: Some(now_ms),
            last_duration: Some(outcome.duration),
            last_error: outcome.error.clone(),
            last_samples: outcome.scraped,
        };
        let batch = ScrapeBatch {
            job: ctx.target.job.clone(),
            target_key: ctx.target.key.clone(),
            url: ctx.target.url.clone(),
            target_labels: ctx.target.labels.clone(),
            timestamp_ms: now_ms,
            health: outcome.health,
            error: outcome.error,
            samples: outcome.samples,
        };
        match ctx.sink.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch)) => {
                warn!(
                    job = %ctx.target.job,
                    url = %ctx.target.url,
                    "scrape sink is full; waiting (scrapes due meanwhile are skipped)"
                );
                let waited = Instant::now();
                if ctx.sink.send(batch).await.is_err() {
                    return;
                }
                let skipped = waited.elapsed().as_millis() / interval.as_millis().max(1);
                if skipped > 0 {
                    warn!(
                        job = %ctx.target.job,
                        url = %ctx.target.url,
                        skipped = skipped as u64,
                        "skipped scrapes while the sink was full"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {
                debug!(job = %ctx.target.job, url = %ctx.target.url, "scrape sink closed; stopping the loop");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_is_a_pure_function_of_the_key() {
        let i = Duration::from_secs(10);
        let a = phase_offset("job|http://a:1/metrics|0", i);
        assert_eq!(a, phase_offset("job|http://a:1/metrics|0", i));
        assert!(a < i);
        let offsets: HashSet<Duration> = (0..100).map(|n| phase_offset(&format!("k{n}"), i)).collect();
        assert!(offsets.len() > 90, "offsets spread over the interval");
    }

    #[test]
    fn samples_carry_the_slot_they_were_scheduled_for() {
        let (i, o) = (Duration::from_secs(1), Duration::from_millis(300));
        assert_eq!(slot_ms(10_300, i, o), 10_300);
        assert_eq!(slot_ms(10_304, i, o), 10_300, "a scrape that ran late");
        assert_eq!(slot_ms(10_299, i, o), 10_300, "a tick that fired early");
        assert_eq!(slot_ms(10_801, i, o), 11_300);
        assert_eq!(slot_ms(10_799, i, o), 10_300);
        assert_eq!(slot_ms(100, i, o), 300);
        // Every slot lies on the phase.
        for now in (0..5_000).step_by(7) {
            assert_eq!(slot_ms(now, i, o).rem_euclid(1000), 300);
            assert!((slot_ms(now, i, o) - now).abs() <= 500);
        }
    }

    #[test]
    fn delay_lands_on_the_phase() {
        let i = Duration::from_millis(1000);
        assert_eq!(delay_to_phase(10_200, i, Duration::from_millis(300)), Duration::from_millis(100));
        assert_eq!(delay_to_phase(10_400, i, Duration::from_millis(300)), Duration::from_millis(900));
        assert_eq!(delay_to_phase(10_300, i, Duration::from_millis(300)), Duration::ZERO);
    }
}
