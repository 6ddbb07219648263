//! Prometheus-compatible scraping for Pharos: the same scrape configs, relabeling, service discovery,
//! exposition formats and scrape semantics as Prometheus, so existing `scrape_configs` can point at Pharos.
//! Targets are spread over the cluster's live nodes by a consistent-hash ring, and each node scrapes only
//! the targets it owns.
//!
//! # Flow
//!
//! ```text
//!  prometheus.yml ──config::parse_config──► ScrapeConfig { global, scrape_configs: [JobConfig] }
//!                                                     │ ScrapeManager::apply
//!                                                     ▼
//!  static_configs / file_sd / http_sd / dns_sd ──discovery::JobDiscovery (a tokio task per SD config)──►
//!        watch channel: Vec<TargetGroup { source, targets: ["host:port"], labels: {__meta_*...} }>
//!                                                     │
//!                                                     ▼ target::targets_from_group
//!        __address__, job, __scheme__, __metrics_path__, __param_*, __scrape_interval__ ...
//!        ──relabel::process(relabel_configs)──► Target { job, labels, url, interval, timeout, key }
//!                                                     │
//!                     ownership::OwnerRing::owner(key, live nodes) == this node?   (set_owned predicate)
//!                                                     │ yes: one scrape loop, phase = hash(key) mod interval
//!                                                     ▼
//!  scrape::scrape: GET url (Accept OpenMetrics/text, gzip, timeout, body_size_limit)
//!        ──exposition::parse (by Content-Type)──► Sample { name, labels, value, timestamp_ms }
//!        ──target labels (honor_labels / exported_*) ──relabel::process(metric_relabel_configs)──►
//!        limits (sample_limit, label limits) ──► + up, scrape_duration_seconds, scrape_samples_scraped,
//!                                                  scrape_samples_post_metric_relabeling, scrape_series_added
//!                                                     │ ScrapeBatch per scrape
//!                                                     ▼
//!                                  bounded mpsc sink (the node writes the samples)
//! ```
//!
//! | module         | what                                                                               |
//! |----------------|------------------------------------------------------------------------------------|
//! | [`exposition`] | Prometheus text 0.0.4 and OpenMetrics 1.0 parsers, line-numbered errors            |
//! | [`config`]     | `prometheus.yml`-shaped scrape configuration with Prometheus's defaults and checks |
//! | [`relabel`]    | relabeling rules and their application                                             |
//! | [`discovery`]  | static, file, HTTP and DNS service discovery                                       |
//! | [`target`]     | target labels, relabeling, URLs and keys                                           |
//! | [`ownership`]  | which live node scrapes a target                                                   |
//! | [`mod@scrape`] | one scrape of one target                                                           |
//! | [`manager`]    | discovery, scrape loops, ownership changes and target status                       |
//! | [`labels`]     | sorted label sets                                                                   |
//! | [`duration`]   | Prometheus durations (`1h30m`) and sizes (`10MB`)                                  |
//!
//! # Use
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pharos_scrape::{parse_config, ManagerOptions, OwnerRing, ScrapeManager};
//!
//! let config = parse_config(&std::fs::read_to_string("prometheus.yml")?)?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
//! let manager = ScrapeManager::new(tx, ManagerOptions::default());
//! manager.apply(config);
//! // On every membership change:
//! let (me, ring) = (2u64, Arc::new(OwnerRing::new(&[1, 2, 3])));
//! manager.set_owned(Arc::new(move |t| ring.owner(&t.key) == Some(me)));
//! while let Some(batch) = rx.recv().await {
//!     // write batch.samples
//! #   let _ = batch;
//! }
//! # Ok(()) }
//! ```

pub mod config;
pub mod discovery;
pub mod duration;
pub mod exposition;
pub mod labels;
pub mod manager;
pub mod ownership;
pub mod relabel;
pub mod scrape;
pub mod target;
use pharos_promconf::yamlpos;

pub use config::{
    parse_config, parse_config_file, ConfigError, DnsRecordType, DnsSdConfig, FileSdConfig, GlobalConfig, HttpSdConfig,
    JobConfig, Scheme, ScrapeConfig, StaticConfig,
};
pub use discovery::{DiscoveryOptions, DiscoveryWatcher, JobDiscovery, TargetGroup};
pub use exposition::{parse as parse_exposition, Exposition, Format, MetricType, ParseError, Sample};
pub use labels::Labels;
pub use manager::{ManagerOptions, OwnedFn, ScrapeBatch, ScrapeManager, TargetStatus};
pub use ownership::{owner, OwnerRing};
pub use relabel::{Action, RawRelabelConfig, RelabelConfig, RelabelError};
pub use scrape::{scrape, Health, ScrapeOutcome};
pub use target::{build_target, targets_from_group, DiscoveredTarget, Target, TargetError};
