//! Service discovery: where a job's targets come from.
//!
//! A job's `static_configs`, `file_sd_configs`, `http_sd_configs` and `dns_sd_configs` each yield
//! [`TargetGroup`]s: addresses plus labels common to them (`__meta_*` labels say where they were found).
//! [`JobDiscovery::start`] runs one tokio task per SD config, each publishing its full current set of groups
//! into a slot of one `tokio::sync::watch` channel; readers see the concatenation of all slots, and only once
//! every provider has reported at least once (so a job that is still discovering does not look empty).
//!
//! * **static**: one group per `static_configs` entry (source `static:<i>`) with the entry's `labels`; never
//!   changes.
//! * **file**: one group per entry of each file (source `<path>:<i>`), with the entry's `labels` and
//!   `__meta_filepath`. Files are listed and their mtimes and sizes checked every `min(refresh_interval, 5s)`;
//!   a changed file is re-read, and all are re-read every `refresh_interval`.
//! * **http**: one group per entry of the JSON list (source `<url>:<i>`), with the entry's `labels` and
//!   `__meta_url`; fetched every `refresh_interval`.
//! * **dns**: A/AAAA give one group per name (source `<name>`, targets `ip:port`); SRV gives one group per
//!   record (source `<name>:<i>`, target `host:port`). Labels: `__meta_dns_name`, and for SRV
//!   `__meta_dns_srv_record_target` and `__meta_dns_srv_record_port`. Looked up every `refresh_interval`.
//!
//! Failures keep the last good groups and are logged: a file that does not parse keeps the groups it had (a
//! file that is deleted loses them), a failed HTTP request or DNS lookup changes nothing. A name that does
//! not exist or has no records of the type has no targets. Before its first success a provider reports no
//! groups, so a broken source never blocks the job's other sources.
//!
//! File and HTTP documents have Prometheus's shape: `[{"targets": ["host:port", ...], "labels": {...}}]`
//! (YAML for `.yml`/`.yaml` files).

mod dns;
mod file;
mod http;

pub use dns::{META_DNS_NAME, META_SRV_PORT, META_SRV_TARGET};
pub use file::META_FILEPATH;
pub use http::META_URL;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::JobConfig;
use crate::labels::{self, is_valid_label_name, Labels};

/// Addresses found together, with labels they share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetGroup {
    /// Where the group came from, unique within the job (`static:0`, `/etc/targets.json:2`, ...).
    pub source: String,
    /// `host:port` addresses (become `__address__`).
    pub targets: Vec<String>,
    /// Labels of every target of the group, sorted by name.
    pub labels: Labels,
}

/// How discovery reaches the outside world.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// The client for http_sd.
    pub http_client: reqwest::Client,
    /// The DNS server for dns_sd; `None` uses the system's (`/etc/resolv.conf`).
    pub dns_nameserver: Option<SocketAddr>,
    /// The longest time between checks of file_sd files for changes (Prometheus reacts to inotify; this
    /// crate polls). Default 5s.
    pub file_poll_interval: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            http_client: crate::scrape::default_client(),
            dns_nameserver: None,
            file_poll_interval: Duration::from_secs(5),
        }
    }
}

/// The groups of each provider; `None` until it has reported once.
#[derive(Debug, Clone, Default)]
struct Slots(Vec<Option<Vec<TargetGroup>>>);

impl Slots {
    fn groups(&self) -> Option<Vec<TargetGroup>> {
        let mut out = Vec::new();
        for slot in &self.0 {
            out.extend(slot.as_ref()?.iter().cloned());
        }
        Some(out)
    }
}

/// Where a provider task publishes its groups.
pub(crate) struct Publisher {
    tx: watch::Sender<Slots>,
    slot: usize,
}

impl Publisher {
    /// Replaces this provider's groups; readers are woken only if they changed.
    pub(crate) fn publish(&self, groups: Vec<TargetGroup>) {
        self.tx.send_if_modified(|s| {
            if s.0[self.slot].as_ref() == Some(&groups) {
                return false;
            }
            s.0[self.slot] = Some(groups);
            true
        });
    }

    /// Marks the provider as having reported, with no groups, unless it already has some.
    pub(crate) fn publish_empty_if_first(&self) {
        self.tx.send_if_modified(|s| {
            if s.0[self.slot].is_some() {
                return false;
            }
            s.0[self.slot] = Some(vec![]);
            true
        });
    }
}

/// The running discovery of one job. Dropping it stops its tasks.
#[derive(Debug)]
pub struct JobDiscovery {
    rx: watch::Receiver<Slots>,
    tasks: Vec<JoinHandle<()>>,
}

/// Follows a job's groups from another task.
#[derive(Debug, Clone)]
pub struct DiscoveryWatcher {
    rx: watch::Receiver<Slots>,
}

impl DiscoveryWatcher {
    /// The current groups, or `None` while some provider has not reported yet.
    pub fn groups(&self) -> Option<Vec<TargetGroup>> {
        self.rx.borrow().groups()
    }

    /// Waits for the next change after which every provider has reported, and returns the groups. `None` once
    /// the discovery is stopped (or, for a job with only static targets, right away: nothing will change).
    pub async fn next(&mut self) -> Option<Vec<TargetGroup>> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(g) = self.rx.borrow_and_update().groups() {
                return Some(g);
            }
        }
    }
}

impl JobDiscovery {
    /// Starts discovery for a job: static groups at once, one task per other SD config. Must be called
    /// within a tokio runtime.
    pub fn start(job: &JobConfig, opts: &DiscoveryOptions) -> JobDiscovery {
        let n = 1 + job.file_sd_configs.len() + job.http_sd_configs.len() + job.dns_sd_configs.len();
        let mut slots = Slots(vec![None; n]);
        slots.0[0] = Some(static_groups(job));
        let (tx, rx) = watch::channel(slots);
        let mut tasks = Vec::new();
        let mut slot = 1;
        let mut publisher = || {
            slot += 1;
            Publisher { tx: tx.clone(), slot: slot - 1 }
        };
        for cfg in &job.file_sd_configs {
            tasks.push(tokio::spawn(file::run(cfg.clone(), opts.file_poll_interval, publisher())));
        }
        for cfg in &job.http_sd_configs {
            tasks.push(tokio::spawn(http::run(cfg.clone(), opts.http_client.clone(), publisher())));
        }
        for cfg in &job.dns_sd_configs {
            tasks.push(tokio::spawn(dns::run(cfg.clone(), opts.dns_nameserver, publisher())));
        }
        JobDiscovery { rx, tasks }
    }

    /// The current groups, or `None` while some provider has not reported yet.
    pub fn groups(&self) -> Option<Vec<TargetGroup>> {
        self.rx.borrow().groups()
    }

    /// Waits until every provider has reported, then returns the groups (at once if they already have).
    /// `None` if the discovery stopped first.
    pub async fn ready(&mut self) -> Option<Vec<TargetGroup>> {
        if let Some(g) = self.rx.borrow_and_update().groups() {
            return Some(g);
        }
        self.changed().await
    }

    /// Waits for the next change after which every provider has reported, and returns the groups. `None`
    /// once nothing can change any more (a job with only static targets has no provider tasks).
    pub async fn changed(&mut self) -> Option<Vec<TargetGroup>> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(g) = self.rx.borrow_and_update().groups() {
                return Some(g);
            }
        }
    }

    /// A watcher, for another task, that sees the changes from now on.
    pub fn watcher(&self) -> DiscoveryWatcher {
        DiscoveryWatcher { rx: self.rx.clone() }
    }
}

impl Drop for JobDiscovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn static_groups(job: &JobConfig) -> Vec<TargetGroup> {
    job.static_configs
        .iter()
        .enumerate()
        .map(|(i, s)| TargetGroup {
            source: format!("static:{i}"),
            targets: s.targets.clone(),
            labels: s.labels.clone(),
        })
        .collect()
}

/// One entry of a file_sd or http_sd document.
#[derive(Debug, Deserialize)]
struct JsonGroup {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// The same, for YAML files, which Prometheus reads strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlGroup {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

impl From<YamlGroup> for JsonGroup {
    fn from(y: YamlGroup) -> JsonGroup {
        JsonGroup { targets: y.targets, labels: y.labels }
    }
}

/// Turns parsed entries into groups, checking label names and adding `meta` (e.g. `__meta_filepath`).
fn to_groups(
    entries: Vec<Option<JsonGroup>>,
    source_prefix: &str,
    meta: (&str, &str),
) -> Result<Vec<TargetGroup>, String> {
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let Some(e) = e else {
            return Err(format!("entry {i} is null"));
        };
        let mut labels = Labels::new();
        for (k, v) in e.labels.unwrap_or_default() {
            if !is_valid_label_name(&k) {
                return Err(format!("entry {i}: {k:?} is not a valid label name"));
            }
            labels::set(&mut labels, &k, &v);
        }
        labels::set(&mut labels, meta.0, meta.1);
        out.push(TargetGroup {
            source: format!("{source_prefix}:{i}"),
            targets: e.targets.unwrap_or_default(),
            labels,
        });
    }
    Ok(out)
}
