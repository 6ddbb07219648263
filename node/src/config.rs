//! Server configuration: defaults < TOML file (`--config`) < command-line flags. Every flag is an `Option`
//! so a flag that is not given never overrides the file. `pharos.example.toml` documents every setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use pharos_storage::line_protocol::Limits as LineLimits;
use pharos_storage::retention::humantime_ms;
use pharos_storage::{EngineOptions, RetentionConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

fn invalid(what: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { what, why: why.into() }
}

/// The log filter when none is given: Pharos's own INFO lines, openraft's warnings.
pub const DEFAULT_LOG: &str = "info,openraft=warn";

/// `pharos server` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerFlags {
    /// TOML file with any of the settings below (see pharos.example.toml).
    #[arg(long, env = "PHAROS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where this node keeps its data [default: ./pharos-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listener: InfluxDB-compatible /write and /query, Prometheus remote write, /health, /metrics [default:
    /// 127.0.0.1:8086].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listener: the public API and node-to-node traffic [default: 127.0.0.1:8087].
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// Address other nodes use to reach this node's gRPC listener, if not --grpc-addr (e.g. behind NAT).
    #[arg(long)]
    pub advertise_grpc_addr: Option<String>,
    /// This node's id, unique in the cluster, > 0 [default: 1].
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Every founding member: `1=host:grpcport,2=host:grpcport,3=host:grpcport`. Omit for a single node.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Line protocol over TCP (Telegraf socket_writer, nc): off unless given [default: off].
    #[arg(long)]
    pub line_tcp_addr: Option<SocketAddr>,
    /// Line protocol over UDP (best effort): off unless given [default: off].
    #[arg(long)]
    pub line_udp_addr: Option<SocketAddr>,
    /// Join a running cluster through any member's gRPC address (host:port).
    #[arg(long)]
    pub join: Option<String>,
    /// Number of shards, fixed when the cluster is created [default: 16].
    #[arg(long)]
    pub shards: Option<u32>,
    /// Replicas per shard (fewer when the cluster has fewer nodes) [default: 3].
    #[arg(long)]
    pub replication_factor: Option<usize>,
    /// Log filter, e.g. `debug` or `info,pharos_node=debug,openraft=info` (RUST_LOG works too) [default:
    /// info,openraft=warn].
    #[arg(long, visible_alias = "log-level", env = "PHAROS_LOG")]
    pub log: Option<String>,
    /// Every API needs a token (`[auth] enabled = true`); the first admin token comes from `[auth]
    /// admin_token`, `admin_token_file` or PHAROS_ADMIN_TOKEN.
    #[arg(long)]
    pub auth: bool,
    /// TLS on both listeners: this node's certificate chain, PEM (`[tls] cert_file`).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key, PEM (`[tls] key_file`).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA that signed the nodes' certificates, PEM (`[tls] ca_file`).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node_id: u64,
    /// Whether `node_id` was set (flag or file) rather than defaulted: a node joining without one gets its
    /// id from the cluster.
    #[serde(skip)]
    pub node_id_given: bool,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub advertise_grpc_addr: Option<String>,
    /// Line protocol over TCP / UDP listeners (off when unset).
    pub line_tcp_addr: Option<SocketAddr>,
    pub line_udp_addr: Option<SocketAddr>,
    pub initial_cluster: Option<String>,
    pub join: Option<String>,
    pub shards: u32,
    pub replication_factor: usize,
    pub log: String,
    pub limits: Limits,
    pub write: WriteConfig,
    pub query: QueryConfig,
    pub storage: StorageConfig,
    pub retention: RetentionConfig,
    pub raft: pharos_raft::RaftSettings,
    pub alerting: AlertingConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub scrape: ScrapeSettings,
    pub rebalance: RebalanceConfig,
}

/// Moving replicas between nodes (`pharosctl rebalance`, `node drain`, `node remove`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceConfig {
    /// Moves running at once (each a different shard), unless `pharosctl rebalance --max-concurrent` says.
    pub max_concurrent: u32,
    /// A move whose new replica has not caught up by then is rolled back.
    #[serde(with = "humantime_ms")]
    pub move_timeout: Duration,
    /// Bytes per second of snapshots this node sends, all moves and lagging replicas together (0: no
    /// limit). The default leaves most of a 1 Gb/s link to writes and queries.
    pub max_bytes_per_sec: u64,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig { max_concurrent: 2, move_timeout: Duration::from_secs(30 * 60), max_bytes_per_sec: 50 << 20 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            node_id_given: false,
            data_dir: PathBuf::from("./pharos-data"),
            http_addr: "127.0.0.1:8086".parse().expect("valid"),
            grpc_addr: "127.0.0.1:8087".parse().expect("valid"),
            advertise_grpc_addr: None,
            line_tcp_addr: None,
            line_udp_addr: None,
            initial_cluster: None,
            join: None,
            shards: 16,
            replication_factor: 3,
            log: DEFAULT_LOG.into(),
            limits: Limits::default(),
            write: WriteConfig::default(),
            query: QueryConfig::default(),
            storage: StorageConfig::default(),
            retention: RetentionConfig::default(),
            raft: Default::default(),
            alerting: AlertingConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            scrape: ScrapeSettings::default(),
            rebalance: RebalanceConfig::default(),
        }
    }
}

/// Rule evaluation and notification delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// Interval of rule groups that do not set one.
    #[serde(with = "humantime_ms")]
    pub evaluation_interval: Duration,
    /// Where people look at alerts: the `externalURL` of notifications and `$externalURL` in templates
    /// [default: http://<http_addr>].
    pub external_url: Option<String>,
    /// Labels added to every alert (`$externalLabels` in templates), e.g. `{ cluster = "eu-1" }`.
    pub external_labels: BTreeMap<String, String>,
    /// One delivery attempt (HTTP request or SMTP session) gives up after this long.
    #[serde(with = "humantime_ms")]
    pub notify_timeout: Duration,
    /// Failed deliveries are retried with exponential backoff from one second up to this.
    #[serde(with = "humantime_ms")]
    pub retry_max_backoff: Duration,
    /// How long an alert forwarded to an Alertmanager stays valid without being re-sent.
    #[serde(with = "humantime_ms")]
    pub alertmanager_valid_for: Duration,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            evaluation_interval: Duration::from_secs(60),
            external_url: None,
            external_labels: BTreeMap::new(),
            notify_timeout: Duration::from_secs(10),
            retry_max_backoff: Duration::from_secs(30),
            alertmanager_valid_for: Duration::from_secs(4 * 60),
        }
    }
}

/// Scraping (Prometheus `/metrics` endpoints). The job configuration itself lives in the cluster
/// (`pharosctl scrape apply`); a node can also read one from a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeSettings {
    /// A Prometheus-shaped file with `scrape_configs`, used while no configuration was applied to the
    /// cluster (re-read when it changes). Every node should have the same one.
    pub config_file: Option<PathBuf>,
    /// How often each node checks which nodes are alive (target ownership follows).
    #[serde(with = "humantime_ms")]
    pub liveness_interval: Duration,
    /// Missed checks in a row after which a node counts as dead and its targets move.
    pub liveness_misses: u32,
    /// Scrapes waiting to be written; when full, scrape loops wait (and skip ticks) rather than pile up.
    pub queue_batches: usize,
}

impl Default for ScrapeSettings {
    fn default() -> Self {
        ScrapeSettings {
            config_file: None,
            liveness_interval: Duration::from_secs(1),
            liveness_misses: 2,
            queue_batches: 1024,
        }
    }
}

/// Access control: tokens with roles on every API, and the credential nodes present to each other.
/// See docs/security.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every API needs a token of the right role (flag `--auth`). Off: only changes to the cluster's
    /// configuration need the admin token, and only when one is set.
    pub enabled: bool,
    /// The first admin credential (tokens made with `pharosctl token create` are the others). Also read from
    /// `admin_token_file` or the environment variable `PHAROS_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// A file holding the admin token (its first line), for secrets kept out of config files.
    pub admin_token_file: Option<PathBuf>,
    /// The secret every node presents on node-to-node calls (Raft, forwarding, the internal service), the
    /// same on every node. When unset, it is derived from the admin token. Also read from
    /// `cluster_secret_file` or `PHAROS_CLUSTER_SECRET`. Checked when auth is on or when it is set here.
    pub cluster_secret: Option<String>,
    pub cluster_secret_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Fills the secrets from their files and the environment (a value in the file wins).
    fn resolve(&mut self) -> Result<(), ConfigError> {
        fn first_line(path: &std::path::Path, what: &'static str) -> Result<String, ConfigError> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(what, format!("cannot read {}: {e}", path.display())))?;
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if line.is_empty() {
                return Err(invalid(what, format!("{} is empty", path.display())));
            }
            Ok(line)
        }
        if self.admin_token.is_none() {
            if let Some(p) = &self.admin_token_file {
                self.admin_token = Some(first_line(p, "auth.admin_token_file")?);
            }
        }
        if self.admin_token.is_none() {
            self.admin_token = std::env::var("PHAROS_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
        }
        if self.cluster_secret.is_none() {
            if let Some(p) = &self.cluster_secret_file {
                self.cluster_secret = Some(first_line(p, "auth.cluster_secret_file")?);
            }
        }
        if self.cluster_secret.is_none() {
            self.cluster_secret = std::env::var("PHAROS_CLUSTER_SECRET").ok().filter(|t| !t.is_empty());
        }
        if self.enabled && self.admin_token.is_none() && self.cluster_secret.is_none() {
            return Err(invalid(
                "auth",
                "auth is on but no admin credential is set: set [auth] admin_token or admin_token_file, or the \
                 environment variable PHAROS_ADMIN_TOKEN (more tokens: pharosctl token create)",
            ));
        }
        Ok(())
    }

    /// Whether this node refuses node-to-node calls without the cluster secret.
    pub fn checks_peers(&self) -> bool {
        self.enabled || self.cluster_secret.is_some()
    }
}

/// TLS on the HTTP and gRPC listeners, and for node-to-node calls. On when `cert_file` and `key_file` are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM), presented on both listeners. Its names (DNS or IP) must cover
    /// the addresses clients and the other nodes use.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The CA (PEM) that signed the nodes' certificates: this node verifies its peers with it.
    pub ca_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change (then served from the next
    /// handshake on).
    #[serde(with = "humantime_ms")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert_file: None, key_file: None, ca_file: None, reload_interval: Duration::from_secs(10) }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// The files of an enabled configuration: certificate, key and CA.
    pub fn files(&self) -> Option<(&std::path::Path, &std::path::Path, &std::path::Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?, self.ca_file.as_deref()?))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file, &self.ca_file) {
            (None, None, None) => Ok(()),
            (Some(_), Some(_), Some(_)) => Ok(()),
            (None, None, Some(_)) => Err(invalid("tls", "ca_file is set but cert_file and key_file are not")),
            (Some(_), Some(_), None) => Err(invalid(
                "tls",
                "set ca_file too: the CA that signed the nodes' certificates, which this node verifies its peers \
                 with",
            )),
            _ => Err(invalid("tls", "set both cert_file and key_file (and ca_file), or neither")),
        }
    }
}

/// Limits on what one request may carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, after gzip decompression (HTTP 413 above it).
    pub max_body_bytes: usize,
    /// Most points (lines) in one write request.
    pub max_points_per_request: usize,
    pub max_line_bytes: usize,
    pub max_tags: usize,
    pub max_fields: usize,
    /// Longest measurement, tag key or field key.
    pub max_name_bytes: usize,
    pub max_tag_value_bytes: usize,
    /// Points stamped further than this ahead of the node's clock are refused, naming the line and, when the
    /// timestamp fits another unit, the precision it fits (milliseconds sent as seconds land millennia ahead).
    #[serde(with = "humantime_ms")]
    pub max_future: Duration,
    /// Most series one measurement may have in the cluster (0: no limit); see [`crate::series_limits`].
    pub max_series_per_measurement: u64,
    /// Most series in the cluster (0: no limit).
    pub max_series: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let l = LineLimits::default();
        Limits {
            max_body_bytes: 64 << 20,
            max_points_per_request: 1_000_000,
            max_line_bytes: l.max_line_bytes,
            max_tags: l.max_tags,
            max_fields: l.max_fields,
            max_name_bytes: l.max_name_bytes,
            max_tag_value_bytes: l.max_tag_value_bytes,
            max_future: Duration::from_millis(l.max_future_ms as u64),
            max_series_per_measurement: 0,
            max_series: 0,
        }
    }
}

impl Limits {
    /// Checks structured points against these limits at `now_ms`; on the first bad one, its index and why.
    pub fn check_points(
        &self,
        points: &[pharos_storage::Point],
        now_ms: i64,
    ) -> Result<(), (usize, pharos_storage::line_protocol::PointError)> {
        let line = self.line();
        points.iter().enumerate().try_for_each(|(i, p)| line.check(p, now_ms).map_err(|e| (i, e)))
    }

    pub fn line(&self) -> LineLimits {
        LineLimits {
            max_line_bytes: self.max_line_bytes,
            max_tags: self.max_tags,
            max_fields: self.max_fields,
            max_name_bytes: self.max_name_bytes,
            max_tag_value_bytes: self.max_tag_value_bytes,
            max_future_ms: self.max_future.as_millis().min(i64::MAX as u128) as i64,
        }
    }
}

/// The write path: per-shard queues and group commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteConfig {
    /// Pending write requests per shard leader before new writes get 503 / Unavailable.
    pub queue_depth: usize,
    /// Most points coalesced into one Raft entry.
    pub max_batch_points: usize,
    /// How long a write may wait for its quorum commit.
    #[serde(with = "humantime_ms")]
    pub timeout: Duration,
    /// How often shard leaders propose maintenance (sealing, rollups, retention, checkpoints).
    #[serde(with = "humantime_ms")]
    pub maintenance_interval: Duration,
}

impl Default for WriteConfig {
    fn default() -> Self {
        WriteConfig {
            queue_depth: 256,
            max_batch_points: 10_000,
            timeout: Duration::from_secs(10),
            maintenance_interval: Duration::from_secs(60),
        }
    }
}

/// Query limits and timeouts (each with a clear error when reached).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Series one query may touch.
    pub max_series: u64,
    /// Samples (or rollup buckets) one query may read, over all shards.
    pub max_points: u64,
    /// Buckets per group one GROUP BY time query may produce.
    pub max_buckets: u64,
    /// A statement running longer is stopped with an error.
    #[serde(with = "humantime_ms")]
    pub timeout: Duration,
    /// Query shapes whose whole buckets each shard replica caches (0 turns the cache off).
    pub cache_entries: usize,
    /// Raw queries streamed over gRPC (and HTTP with chunked=true) read about this many samples per window.
    pub window_points: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let l = pharos_query::Limits::default();
        QueryConfig {
            max_series: l.max_series,
            max_points: l.max_points,
            max_buckets: l.max_buckets,
            timeout: Duration::from_secs(60),
            cache_entries: 64,
            window_points: 1_000_000,
        }
    }
}

impl QueryConfig {
    pub fn limits(&self) -> pharos_query::Limits {
        pharos_query::Limits { max_series: self.max_series, max_points: self.max_points, max_buckets: self.max_buckets }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub max_chunk_samples: usize,
    /// Accept samples up to this much older than their series' newest sample.
    #[serde(with = "humantime_ms")]
    pub out_of_order_window: Duration,
    #[serde(with = "humantime_ms")]
    pub idle_seal: Duration,
    #[serde(with = "humantime_ms")]
    pub checkpoint_interval: Duration,
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    /// Bound of RocksDB's write-ahead logs (also each new log's preallocation).
    pub wal_bytes: u64,
    /// Free space the data directory's filesystem must keep: below it the node refuses writes (HTTP 507,
    /// gRPC ResourceExhausted) until space returns, so a full disk never fails a write half-way.
    pub min_free_bytes: u64,
    /// Build 1-minute rollups of a period once it is this old (default: a day before raw data expires).
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub minute_rollup_after: Option<Duration>,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}s", d.as_secs())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        pharos_storage::retention::humantime_ms::parse(&s).map(Some).map_err(serde::de::Error::custom)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let e = EngineOptions::default();
        let d = pharos_storage::db::DbOptions::default();
        StorageConfig {
            max_chunk_samples: e.max_chunk_samples,
            out_of_order_window: Duration::from_millis(e.ooo_window_ms as u64),
            idle_seal: Duration::from_millis(e.idle_seal_ms as u64),
            checkpoint_interval: Duration::from_millis(e.checkpoint_interval_ms as u64),
            block_cache_bytes: d.block_cache_bytes,
            write_buffer_bytes: d.write_buffer_bytes,
            wal_bytes: d.wal_bytes,
            min_free_bytes: 512 << 20,
            minute_rollup_after: None,
        }
    }
}

impl StorageConfig {
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            max_chunk_samples: self.max_chunk_samples,
            ooo_window_ms: self.out_of_order_window.as_millis() as i64,
            idle_seal_ms: self.idle_seal.as_millis() as i64,
            checkpoint_interval_ms: self.checkpoint_interval.as_millis() as i64,
            minute_rollup_after_ms: self.minute_rollup_after.map(|d| d.as_millis() as i64),
        }
    }
    pub fn db(&self) -> pharos_storage::db::DbOptions {
        pharos_storage::db::DbOptions {
            block_cache_bytes: self.block_cache_bytes,
            write_buffer_bytes: self.write_buffer_bytes,
            wal_bytes: self.wal_bytes,
            ..Default::default()
        }
    }
}

impl Config {
    /// Defaults, then the file, then the flags.
    pub fn load(flags: &ServerFlags) -> Result<Config, ConfigError> {
        let mut c = match &flags.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                let mut c: Config =
                    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })?;
                c.node_id_given = toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("node_id"));
                c
            }
            None => Config::default(),
        };
        c.node_id_given |= flags.node_id.is_some();
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &flags.$f { c.$f = v.clone(); } )* };
        }
        over!(data_dir, http_addr, grpc_addr, node_id, shards, replication_factor, log);
        if flags.advertise_grpc_addr.is_some() {
            c.advertise_grpc_addr = flags.advertise_grpc_addr.clone();
        }
        if flags.line_tcp_addr.is_some() {
            c.line_tcp_addr = flags.line_tcp_addr;
        }
        if flags.line_udp_addr.is_some() {
            c.line_udp_addr = flags.line_udp_addr;
        }
        if flags.initial_cluster.is_some() {
            c.initial_cluster = flags.initial_cluster.clone();
        }
        if flags.join.is_some() {
            c.join = flags.join.clone();
        }
        c.auth.enabled |= flags.auth;
        if flags.tls_cert.is_some() {
            c.tls.cert_file = flags.tls_cert.clone();
        }
        if flags.tls_key.is_some() {
            c.tls.key_file = flags.tls_key.clone();
        }
        if flags.tls_ca.is_some() {
            c.tls.ca_file = flags.tls_ca.clone();
        }
        c.auth.resolve()?;
        c.validate()?;
        Ok(c)
    }

    /// This configuration with its secrets replaced by `<redacted>` (what `pharos config` prints).
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for s in [&mut c.auth.admin_token, &mut c.auth.cluster_secret].into_iter().flatten() {
            *s = "<redacted>".into();
        }
        c
    }

    /// The URL notifications link to.
    pub fn external_url(&self) -> String {
        self.alerting.external_url.clone().unwrap_or_else(|| format!("http://{}", self.http_addr))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be > 0"));
        }
        self.tls.validate()?;
        if self.auth.enabled {
            // Raw line protocol over TCP or UDP carries no credential: with auth on, only this machine may use it.
            for (what, addr) in [("line_tcp_addr", self.line_tcp_addr), ("line_udp_addr", self.line_udp_addr)] {
                if addr.is_some_and(|a| !a.ip().is_loopback()) {
                    return Err(invalid(
                        what,
                        "line protocol over TCP and UDP carries no credential, so with auth on it may only listen \
                         on a loopback address; send line protocol to /write with a token instead",
                    ));
                }
            }
        }
        if self.rebalance.max_bytes_per_sec != 0 && self.rebalance.max_bytes_per_sec < 1 << 20 {
            // A 1 MiB chunk must reach its follower within the snapshot timeout, throttle wait included.
            return Err(invalid("rebalance", "max_bytes_per_sec must be 0 (no limit) or at least 1048576 (1 MiB/s)"));
        }
        if self.rebalance.max_concurrent == 0 {
            return Err(invalid("rebalance", "max_concurrent must be > 0"));
        }
        if self.shards == 0 || self.shards > 4096 {
            return Err(invalid("shards", "must be in 1..=4096"));
        }
        if self.replication_factor == 0 {
            return Err(invalid("replication_factor", "must be >= 1"));
        }
        if self.initial_cluster.is_some() && self.join.is_some() {
            return Err(invalid("cluster", "give either --initial-cluster or --join, not both"));
        }
        if let Some(ic) = &self.initial_cluster {
            let members = parse_initial_cluster(ic)?;
            if !members.contains_key(&self.node_id) {
                return Err(invalid("initial_cluster", format!("does not list this node's id {}", self.node_id)));
            }
        }
        self.storage.engine().validate().map_err(|e| invalid("storage", e.to_string()))?;
        pharos_storage::Retention::new(self.retention.clone()).map_err(|e| invalid("retention", e.to_string()))?;
        self.raft.to_openraft("check").map_err(|e| invalid("raft", e.to_string()))?;
        if self.write.queue_depth == 0 || self.write.max_batch_points == 0 {
            return Err(invalid("write", "queue_depth and max_batch_points must be > 0"));
        }
        Ok(())
    }

    /// The gRPC address other nodes should use for this node.
    pub fn advertised_grpc(&self) -> String {
        self.advertise_grpc_addr.clone().unwrap_or_else(|| self.grpc_addr.to_string())
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| invalid("initial_cluster", format!("{part:?} is not id=host:port")))?;
        let id: u64 = id.trim().parse().map_err(|_| invalid("initial_cluster", format!("{id:?} is not a node id")))?;
        if id == 0 || out.insert(id, addr.trim().to_string()).is_some() {
            return Err(invalid("initial_cluster", format!("node id {id} is zero or repeated")));
        }
    }
    if out.is_empty() {
        return Err(invalid("initial_cluster", "lists no node"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_missing_flags_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "node_id = 2\nshards = 8\n[write]\nqueue_depth = 7\ntimeout = \"3s\"\n").unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            shards: Some(4),
            initial_cluster: Some("2=a:1,3=b:2".into()),
            ..Default::default()
        };
        let c = Config::load(&flags).unwrap();
        assert_eq!((c.node_id, c.shards, c.write.queue_depth), (2, 4, 7));
        assert_eq!(c.write.timeout, Duration::from_secs(3));
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8086");
        std::fs::write(&path, "nodeid = 2\n").unwrap();
        let err = Config::load(&ServerFlags { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("nodeid"), "unknown keys are named: {err}");
    }

    #[test]
    fn auth_and_tls_settings_are_checked_and_secrets_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let secret = dir.path().join("admin");
        std::fs::write(&secret, "from-file\n").unwrap();
        let load = |text: &str, flags: ServerFlags| {
            std::fs::write(&path, text).unwrap();
            Config::load(&ServerFlags { config: Some(path.clone()), ..flags })
        };
        let text = format!("[auth]\nenabled = true\nadmin_token_file = {:?}\n", secret.display().to_string());
        let c = load(&text, ServerFlags::default()).unwrap();
        assert_eq!(c.auth.admin_token.as_deref(), Some("from-file"));
        let printed = toml::to_string_pretty(&c.redacted()).unwrap();
        assert!(!printed.contains("from-file") && printed.contains("<redacted>"), "{printed}");
        // Auth without any admin credential, or with raw line protocol on a public address, is refused.
        let none = load("", ServerFlags { auth: true, ..Default::default() });
        if std::env::var("PHAROS_ADMIN_TOKEN").is_err() && std::env::var("PHAROS_CLUSTER_SECRET").is_err() {
            assert!(none.unwrap_err().to_string().contains("admin_token"));
        }
        let udp =
            load(&text, ServerFlags { line_udp_addr: Some("0.0.0.0:8089".parse().unwrap()), ..Default::default() });
        assert!(udp.unwrap_err().to_string().contains("loopback"));
        let half = load("[tls]\ncert_file = \"a.crt\"\nkey_file = \"a.key\"\n", ServerFlags::default());
        assert!(half.unwrap_err().to_string().contains("ca_file"));
        let flags = ServerFlags {
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_ca: Some("ca".into()),
            ..Default::default()
        };
        assert!(load("", flags).unwrap().tls.enabled());
    }

    #[test]
    fn example_file_documents_the_defaults() {
        let text = include_str!("../../pharos.example.toml");
        let c: Config = toml::from_str(text).expect("pharos.example.toml parses");
        c.validate().unwrap();
        let d = Config::default();
        assert_eq!(toml::to_string(&c).unwrap(), toml::to_string(&d).unwrap(), "example values equal the defaults");
    }

    #[test]
    fn significant_digits_are_checked() {
        let c: Config = toml::from_str("[retention]\nsignificant_digits = 12\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.retention.significant_digits, Some(12));
        let c: Config = toml::from_str("[retention]\nsignificant_digits = 0\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("significant_digits must be 1 to 17"));
    }

    #[test]
    fn initial_cluster_errors_are_clear() {
        assert_eq!(parse_initial_cluster("1=a:1, 2=b:2").unwrap().len(), 2);
        assert!(parse_initial_cluster("1=a:1,1=b:2").is_err());
        assert!(parse_initial_cluster("x=a").is_err());
        assert!(parse_initial_cluster("a:1").is_err());
        let c = Config { initial_cluster: Some("2=a:1".into()), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("this node's id 1"));
    }
}
