//! The scrape configuration, in the shape of Prometheus's `prometheus.yml`:
//!
//! ```yaml
//! global:                          # optional
//!   scrape_interval: 15s           # default 1m
//!   scrape_timeout: 10s            # default 10s (or the interval, if shorter)
//!   external_labels: {dc: eu1}     # kept, not applied by this crate
//! scrape_configs:
//!   - job_name: node               # required, unique
//!     scrape_interval: 30s         # default: global
//!     scrape_timeout: 5s           # default: global, at most the interval
//!     metrics_path: /metrics       # default /metrics
//!     scheme: http                 # http (default) or https
//!     params: {module: [http_2xx]} # query parameters
//!     honor_labels: false          # default false
//!     honor_timestamps: true       # default true
//!     sample_limit: 0              # 0 = no limit; so are the three label limits
//!     label_limit: 0
//!     label_name_length_limit: 0
//!     label_value_length_limit: 0
//!     body_size_limit: 10MB        # 0 = no limit
//!     static_configs: [{targets: ['host:9100'], labels: {env: prod}}]
//!     file_sd_configs: [{files: ['/etc/pharos/targets/*.json'], refresh_interval: 5m}]
//!     http_sd_configs: [{url: 'http://sd.example.com/targets', refresh_interval: 1m}]
//!     dns_sd_configs: [{names: ['_node._tcp.example.com'], type: SRV, refresh_interval: 30s}]
//!     relabel_configs: [...]       # see crate::relabel
//!     metric_relabel_configs: [...]
//!     authorization: {type: Bearer, credentials_file: /etc/pharos/t}  # or credentials: ...
//!     basic_auth: {username: u, password_file: /etc/pharos/p}         # (one of these two, or bearer_token(_file))
//!     tls_config: {ca_file: ca.crt, cert_file: c.crt, key_file: c.key, insecure_skip_verify: false, min_version: TLS12}
//! ```
//!
//! [`parse_config`] applies Prometheus's defaults and checks: unknown fields are errors, durations use
//! Prometheus syntax, `scrape_timeout` may not exceed `scrape_interval`, job names are unique, file_sd paths
//! end in `.json`, `.yml` or `.yaml` with a `*` only in the last element, A and AAAA lookups need a `port`,
//! and relabel rules are checked as [`RelabelConfig::new`] does. The global `sample_limit`, label limits and
//! `body_size_limit` are defaults for the jobs, as in recent Prometheus. Every error carries the line of the
//! offending entry (or where serde_yaml stopped) and the job it is in.
//!
//! Relative file_sd paths are taken as they are (relative to the working directory), except through
//! [`parse_config_file`], which resolves them against the config file's directory as Prometheus does.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{de_duration, de_size, format_duration};
use crate::labels::{is_valid_label_name, Labels};
use crate::relabel::{RawRelabelConfig, RelabelConfig};
use crate::yamlpos::{PosIndex, Seg};

/// Prometheus's default global scrape interval.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
/// Prometheus's default global scrape timeout.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `refresh_interval` of file_sd.
pub const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(300);
/// Default `refresh_interval` of http_sd.
pub const DEFAULT_HTTP_SD_REFRESH: Duration = Duration::from_secs(60);
/// Default `refresh_interval` of dns_sd.
pub const DEFAULT_DNS_SD_REFRESH: Duration = Duration::from_secs(30);

/// A whole scrape configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScrapeConfig {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<JobConfig>,
}

impl ScrapeConfig {
    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.scrape_configs.iter().find(|j| j.job_name == name)
    }
}

/// The `global:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    /// Parsed and checked, but not applied by this crate.
    pub external_labels: Labels,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: DEFAULT_SCRAPE_TIMEOUT,
            external_labels: Labels::new(),
        }
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One entry of `scrape_configs`, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub scheme: Scheme,
    /// Query parameters; a `__param_<name>` label overrides the first value.
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// Samples accepted per scrape after metric relabeling; 0 = no limit.
    pub sample_limit: usize,
    /// Labels per sample (counting the metric name); 0 = no limit.
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
    /// Bytes of (uncompressed) body; 0 = no limit.
    pub body_size_limit: u64,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Credentials and TLS for the job's scrapes.
    pub http: HttpClientConfig,
}

/// How a job's scrapes authenticate and verify their targets: Prometheus's `authorization`, `basic_auth`,
/// `bearer_token` / `bearer_token_file` and `tls_config`. Secret files are read at every scrape (a rotated
/// secret is used from the next scrape on).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpClientConfig {
    pub auth: Option<ClientAuth>,
    pub tls: TlsClientConfig,
}

pub use pharos_promconf::http::{ClientAuth, Secret};

/// `tls_config`: the CA to verify targets with (else the system's), a client certificate, and whether to
/// skip verification.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsClientConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// `TLS12` or `TLS13`.
    pub min_version: Option<String>,
}

impl TlsClientConfig {
    pub fn is_default(&self) -> bool {
        *self == TlsClientConfig::default()
    }
}

impl JobConfig {
    /// A job with Prometheus's defaults (1m interval, 10s timeout, `/metrics`, http) and no targets.
    pub fn new(job_name: impl Into<String>) -> JobConfig {
        JobConfig {
            job_name: job_name.into(),
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: DEFAULT_SCRAPE_TIMEOUT,
            metrics_path: "/metrics".into(),
            scheme: Scheme::Http,
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 0,
            static_configs: vec![],
            file_sd_configs: vec![],
            http_sd_configs: vec![],
            dns_sd_configs: vec![],
            relabel_configs: vec![],
            metric_relabel_configs: vec![],
            http: HttpClientConfig::default(),
        }
    }

    /// Whether `other` discovers targets the same way (so a running discovery can be kept).
    pub fn same_discovery(&self, other: &JobConfig) -> bool {
        self.static_configs == other.static_configs
            && self.file_sd_configs == other.file_sd_configs
            && self.http_sd_configs == other.http_sd_configs
            && self.dns_sd_configs == other.dns_sd_configs
    }
}

/// `static_configs` entry: fixed targets with common labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: Labels,
}

/// `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSdConfig {
    /// Paths; the last element may hold a `*` glob.
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

/// `http_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSdConfig {
    pub url: String,
    pub refresh_interval: Duration,
}

/// The record type a `dns_sd_configs` entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DnsRecordType {
    #[default]
    Srv,
    A,
    Aaaa,
}

/// `dns_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    pub record_type: DnsRecordType,
    /// Required for A and AAAA; ignored for SRV (which carries its port).
    pub port: Option<u16>,
    pub refresh_interval: Duration,
}

/// A problem in the configuration: where it is (line, job) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file, when read with [`parse_config_file`].
    pub file: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The `job_name` of the scrape config the error is in, when it is in one.
    pub job: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `prometheus.yml:12: job "node": scrape_timeout 20s is greater than scrape_interval 15s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(job) = &self.job {
            write!(f, "job {job:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Parses and checks a configuration.
pub fn parse_config(text: &str) -> Result<ScrapeConfig, ConfigError> {
    parse(text)
}

/// Reads a configuration file; relative file_sd paths are resolved against its directory.
pub fn parse_config_file(path: &Path) -> Result<ScrapeConfig, ConfigError> {
    let file = Some(path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        job: None,
        message: format!("cannot read: {e}"),
    })?;
    let mut config = parse(&text).map_err(|e| ConfigError { file: file.clone(), ..e })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    for job in &mut config.scrape_configs {
        for sd in &mut job.file_sd_configs {
            for f in &mut sd.files {
                if Path::new(f.as_str()).is_relative() {
                    *f = dir.join(&*f).display().to_string();
                }
            }
        }
        if let Some(p) = job.http.auth.as_mut().and_then(ClientAuth::files_mut) {
            resolve(p);
        }
        let tls = &mut job.http.tls;
        for p in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file].into_iter().flatten() {
            resolve(p);
        }
    }
    Ok(config)
}

/// The other sections of a whole prometheus.yml are accepted so one file serves both, and not used here
/// (Pharos's rules and alert routing have their own files; it does not remote-write).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawConfig {
    global: Option<RawGlobal>,
    scrape_configs: Option<Vec<RawJob>>,
    rule_files: Option<serde_yaml::Value>,
    alerting: Option<serde_yaml::Value>,
    remote_write: Option<serde_yaml::Value>,
    remote_read: Option<serde_yaml::Value>,
    storage: Option<serde_yaml::Value>,
    tracing: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    #[serde(default, deserialize_with = "de_duration")]
    scrape_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    scrape_timeout: Option<Duration>,
    /// Accepted so a whole prometheus.yml `global:` section reads; unused here.
    #[serde(default, deserialize_with = "de_duration")]
    #[allow(dead_code)]
    evaluation_interval: Option<Duration>,
    external_labels: Option<BTreeMap<String, String>>,
    sample_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    #[serde(default, deserialize_with = "de_size")]
    body_size_limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    job_name: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    scrape_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    scrape_timeout: Option<Duration>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    params: Option<BTreeMap<String, Vec<String>>>,
    honor_labels: Option<bool>,
    honor_timestamps: Option<bool>,
    sample_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    #[serde(default, deserialize_with = "de_size")]
    body_size_limit: Option<u64>,
    static_configs: Option<Vec<RawStatic>>,
    file_sd_configs: Option<Vec<RawFileSd>>,
    http_sd_configs: Option<Vec<RawHttpSd>>,
    dns_sd_configs: Option<Vec<RawDnsSd>>,
    relabel_configs: Option<Vec<RawRelabelConfig>>,
    metric_relabel_configs: Option<Vec<RawRelabelConfig>>,
    authorization: Option<pharos_promconf::http::Authorization>,
    basic_auth: Option<pharos_promconf::http::BasicAuth>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    server_name: Option<String>,
    insecure_skip_verify: Option<bool>,
    min_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatic {
    targets: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSd {
    files: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_duration")]
    refresh_interval: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpSd {
    url: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    refresh_interval: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsSd {
    names: Option<Vec<String>>,
    #[serde(rename = "type")]
    record_type: Option<String>,
    port: Option<u16>,
    #[serde(default, deserialize_with = "de_duration")]
    refresh_interval: Option<Duration>,
}

fn yaml_message(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(l) => message.replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1),
        None => message,
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn parse(text: &str) -> Result<ScrapeConfig, ConfigError> {
    let index = PosIndex::build(text);
    let raw: Option<RawConfig> = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        // Which scrape config the error is in, by line.
        let job = line.and_then(|line| {
            let i = index.item_at_line(&[key("scrape_configs")], line)?;
            index.scalar(&[key("scrape_configs"), Seg::Index(i), key("job_name")]).map(String::from)
        });
        ConfigError { file: None, line, job, message: yaml_message(&e) }
    })?;
    let Some(raw) = raw else {
        return Ok(ScrapeConfig::default());
    };
    Checker { index: &index }.config(raw)
}

/// Global values the jobs inherit.
struct Defaults {
    interval: Duration,
    timeout: Duration,
    sample_limit: u64,
    label_limit: u64,
    label_name_length_limit: u64,
    label_value_length_limit: u64,
    body_size_limit: u64,
}

struct Checker<'a> {
    index: &'a PosIndex,
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl Checker<'_> {
    fn error(&self, path: &[Seg], job: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: Some(self.index.nearest_line(path)),
            job: job.map(String::from),
            message: message.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<ScrapeConfig, ConfigError> {
        let gpath = vec![key("global")];
        let g = raw.global;
        let interval = g.as_ref().and_then(|g| g.scrape_interval).filter(|d| !d.is_zero());
        let interval = interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL);
        let timeout = match g.as_ref().and_then(|g| g.scrape_timeout).filter(|d| !d.is_zero()) {
            Some(t) => t,
            None => DEFAULT_SCRAPE_TIMEOUT.min(interval),
        };
        if timeout > interval {
            return Err(self.error(
                &[key("global"), key("scrape_timeout")],
                None,
                format!(
                    "global scrape_timeout {} is greater than scrape_interval {}",
                    format_duration(timeout),
                    format_duration(interval)
                ),
            ));
        }
        let mut external_labels = Labels::new();
        if let Some(labels) = g.as_ref().and_then(|g| g.external_labels.as_ref()) {
            external_labels = self.labels(labels, &[gpath.clone(), vec![key("external_labels")]].concat(), None)?;
        }
        let get = |f: fn(&RawGlobal) -> Option<u64>| g.as_ref().and_then(f).unwrap_or(0);
        let defaults = Defaults {
            interval,
            timeout,
            sample_limit: get(|g| g.sample_limit),
            label_limit: get(|g| g.label_limit),
            label_name_length_limit: get(|g| g.label_name_length_limit),
            label_value_length_limit: get(|g| g.label_value_length_limit),
            body_size_limit: get(|g| g.body_size_limit),
        };
        let mut jobs = Vec::new();
        let mut names = HashSet::new();
        for (i, rj) in raw.scrape_configs.unwrap_or_default().into_iter().enumerate() {
            let path = vec![key("scrape_configs"), Seg::Index(i)];
            let job = self.job(rj, &path, &defaults)?;
            if !names.insert(job.job_name.clone()) {
                return Err(self.error(
                    &[path, vec![key("job_name")]].concat(),
                    Some(&job.job_name),
                    format!("found multiple scrape configs with job name {:?}", job.job_name),
                ));
            }
            jobs.push(job);
        }
        Ok(ScrapeConfig {
            global: GlobalConfig { scrape_interval: interval, scrape_timeout: timeout, external_labels },
            scrape_configs: jobs,
        })
    }

    fn labels(
        &self,
        labels: &BTreeMap<String, String>,
        path: &[Seg],
        job: Option<&str>,
    ) -> Result<Labels, ConfigError> {
        for name in labels.keys() {
            if !is_valid_label_name(name) {
                let at = [path, &[key(name)]].concat();
                return Err(self.error(&at, job, format!("{name:?} is not a valid label name")));
            }
        }
        Ok(labels.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn job(&self, rj: RawJob, path: &[Seg], d: &Defaults) -> Result<JobConfig, ConfigError> {
        let at = |k: &str| [path, &[key(k)]].concat();
        let name = match rj.job_name {
            Some(n) if !n.is_empty() => n,
            _ => return Err(self.error(path, None, "job_name is required")),
        };
        let job = Some(name.as_str());
        let interval = rj.scrape_interval.filter(|d| !d.is_zero()).unwrap_or(d.interval);
        let timeout = match rj.scrape_timeout.filter(|d| !d.is_zero()) {
            Some(t) => t,
            None => d.timeout.min(interval),
        };
        if timeout > interval {
            let where_ = if rj.scrape_timeout.is_some() { at("scrape_timeout") } else { at("scrape_interval") };
            return Err(self.error(
                &where_,
                job,
                format!(
                    "scrape_timeout {} is greater than scrape_interval {}",
                    format_duration(timeout),
                    format_duration(interval)
                ),
            ));
        }
        let scheme = match rj.scheme.as_deref() {
            None | Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(self.error(&at("scheme"), job, format!("scheme must be http or https, not {other:?}")))
            }
        };
        let metrics_path = rj.metrics_path.unwrap_or_else(|| "/metrics".into());

        let mut static_configs = Vec::new();
        for (i, s) in rj.static_configs.unwrap_or_default().into_iter().enumerate() {
            let p = [at("static_configs"), vec![Seg::Index(i)]].concat();
            let labels = match &s.labels {
                Some(l) => self.labels(l, &[p.clone(), vec![key("labels")]].concat(), job)?,
                None => Labels::new(),
            };
            static_configs.push(StaticConfig { targets: s.targets.unwrap_or_default(), labels });
        }

        let mut file_sd_configs = Vec::new();
        for (i, f) in rj.file_sd_configs.unwrap_or_default().into_iter().enumerate() {
            let p = [at("file_sd_configs"), vec![Seg::Index(i)]].concat();
            let files = f.files.unwrap_or_default();
            for (j, file) in files.iter().enumerate() {
                if !is_valid_file_sd_path(file) {
                    return Err(self.error(
                        &[p.clone(), vec![key("files"), Seg::Index(j)]].concat(),
                        job,
                        format!(
                            "path name {file:?} is not valid for file discovery (it must end in .json, .yml or \
                             .yaml, and only its last element may contain a *)"
                        ),
                    ));
                }
            }
            let refresh_interval = f.refresh_interval.filter(|d| !d.is_zero()).unwrap_or(DEFAULT_FILE_SD_REFRESH);
            file_sd_configs.push(FileSdConfig { files, refresh_interval });
        }

        let mut http_sd_configs = Vec::new();
        for (i, h) in rj.http_sd_configs.unwrap_or_default().into_iter().enumerate() {
            let p = [at("http_sd_configs"), vec![Seg::Index(i)]].concat();
            let Some(url) = h.url.filter(|u| !u.is_empty()) else {
                return Err(self.error(&p, job, "http_sd_configs: url is missing"));
            };
            let url_path = [p.clone(), vec![key("url")]].concat();
            match reqwest::Url::parse(&url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                Ok(_) => {
                    return Err(self.error(
                        &url_path,
                        job,
                        format!("http_sd url {url:?}: scheme must be http or https"),
                    ))
                }
                Err(e) => return Err(self.error(&url_path, job, format!("http_sd url {url:?} is invalid: {e}"))),
            }
            let refresh_interval = h.refresh_interval.filter(|d| !d.is_zero()).unwrap_or(DEFAULT_HTTP_SD_REFRESH);
            http_sd_configs.push(HttpSdConfig { url, refresh_interval });
        }

        let mut dns_sd_configs = Vec::new();
        for (i, dc) in rj.dns_sd_configs.unwrap_or_default().into_iter().enumerate() {
            let p = [at("dns_sd_configs"), vec![Seg::Index(i)]].concat();
            let names = dc.names.unwrap_or_default();
            if names.is_empty() {
                return Err(self.error(&p, job, "dns_sd_configs: at least one name is required in names"));
            }
            let record_type = match dc.record_type.as_deref().map(str::to_ascii_uppercase).as_deref() {
                None | Some("SRV") => DnsRecordType::Srv,
                Some("A") => DnsRecordType::A,
                Some("AAAA") => DnsRecordType::Aaaa,
                Some(other) => {
                    return Err(self.error(
                        &[p.clone(), vec![key("type")]].concat(),
                        job,
                        format!("invalid DNS-SD record type {other:?} (use SRV, A or AAAA)"),
                    ))
                }
            };
            if record_type != DnsRecordType::Srv && dc.port.is_none() {
                return Err(self.error(
                    &p,
                    job,
                    "dns_sd_configs: a port is required for A and AAAA records (only SRV records carry one)",
                ));
            }
            let refresh_interval = dc.refresh_interval.filter(|d| !d.is_zero()).unwrap_or(DEFAULT_DNS_SD_REFRESH);
            dns_sd_configs.push(DnsSdConfig { names, record_type, port: dc.port, refresh_interval });
        }

        let relabel_configs = self.relabels(rj.relabel_configs, &at("relabel_configs"), job)?;
        let metric_relabel_configs = self.relabels(rj.metric_relabel_configs, &at("metric_relabel_configs"), job)?;
        let auth =
            self.client_auth(rj.authorization, rj.basic_auth, rj.bearer_token, rj.bearer_token_file, path, job)?;
        let tls = match rj.tls_config {
            None => TlsClientConfig::default(),
            Some(t) => self.tls(t, &at("tls_config"), job)?,
        };

        Ok(JobConfig {
            job_name: name.clone(),
            scrape_interval: interval,
            scrape_timeout: timeout,
            metrics_path,
            scheme,
            params: rj.params.unwrap_or_default(),
            honor_labels: rj.honor_labels.unwrap_or(false),
            honor_timestamps: rj.honor_timestamps.unwrap_or(true),
            sample_limit: to_usize(rj.sample_limit.filter(|v| *v > 0).unwrap_or(d.sample_limit)),
            label_limit: to_usize(rj.label_limit.filter(|v| *v > 0).unwrap_or(d.label_limit)),
            label_name_length_limit: to_usize(
                rj.label_name_length_limit.filter(|v| *v > 0).unwrap_or(d.label_name_length_limit),
            ),
            label_value_length_limit: to_usize(
                rj.label_value_length_limit.filter(|v| *v > 0).unwrap_or(d.label_value_length_limit),
            ),
            body_size_limit: rj.body_size_limit.filter(|v| *v > 0).unwrap_or(d.body_size_limit),
            static_configs,
            file_sd_configs,
            http_sd_configs,
            dns_sd_configs,
            relabel_configs,
            metric_relabel_configs,
            http: HttpClientConfig { auth, tls },
        })
    }

    /// At most one way to authenticate, each with its secret given once (inline or as a file).
    fn client_auth(
        &self,
        authorization: Option<pharos_promconf::http::Authorization>,
        basic: Option<pharos_promconf::http::BasicAuth>,
        bearer: Option<String>,
        bearer_file: Option<String>,
        path: &[Seg],
        job: Option<&str>,
    ) -> Result<Option<ClientAuth>, ConfigError> {
        pharos_promconf::http::client_auth(authorization, basic, bearer, bearer_file).map_err(|e| {
            let at = match e.key {
                Some(k) => [path, &[key(k)]].concat(),
                None => path.to_vec(),
            };
            self.error(&at, job, e.message)
        })
    }

    fn tls(&self, t: RawTls, p: &[Seg], job: Option<&str>) -> Result<TlsClientConfig, ConfigError> {
        if t.server_name.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(self.error(
                p,
                job,
                "tls_config.server_name is not supported yet: address the target by a name its certificate holds",
            ));
        }
        if t.cert_file.is_some() != t.key_file.is_some() {
            return Err(self.error(p, job, "tls_config: cert_file and key_file go together"));
        }
        let min_version = match t.min_version.as_deref() {
            None | Some("") => None,
            Some(v @ ("TLS12" | "TLS13")) => Some(v.to_string()),
            Some(other) => {
                return Err(self.error(p, job, format!("tls_config.min_version {other:?}: use TLS12 or TLS13")))
            }
        };
        Ok(TlsClientConfig {
            ca_file: t.ca_file.map(PathBuf::from),
            cert_file: t.cert_file.map(PathBuf::from),
            key_file: t.key_file.map(PathBuf::from),
            insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
            min_version,
        })
    }

    fn relabels(
        &self,
        raw: Option<Vec<RawRelabelConfig>>,
        path: &[Seg],
        job: Option<&str>,
    ) -> Result<Vec<RelabelConfig>, ConfigError> {
        let mut out = Vec::new();
        for (i, r) in raw.unwrap_or_default().into_iter().enumerate() {
            let p = [path, &[Seg::Index(i)]].concat();
            match RelabelConfig::new(r) {
                Ok(c) => out.push(c),
                Err(e) => {
                    let at = match e.field {
                        Some(f) => [p.clone(), vec![key(f)]].concat(),
                        None => p.clone(),
                    };
                    let section = match path.last() {
                        Some(Seg::Key(k)) => k.as_str(),
                        _ => "relabel_configs",
                    };
                    return Err(self.error(&at, job, format!("{section}[{i}]: {}", e.message)));
                }
            }
        }
        Ok(out)
    }
}

/// Prometheus's `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
fn is_valid_file_sd_path(p: &str) -> bool {
    let Some(dot) = p.rfind('.') else {
        return false;
    };
    if !matches!(&p[dot + 1..], "json" | "yml" | "yaml" | "JSON" | "YML" | "YAML") {
        return false;
    }
    let stem = &p[..dot];
    match stem.find('*') {
        None => true,
        Some(star) => !stem[star..].contains('/'),
    }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
