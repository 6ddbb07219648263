//! One scrape of one target, as Prometheus's scrape loop does it.
//!
//! [`scrape`]:
//!
//! 1. GETs the target's URL with Prometheus's headers: `Accept` preferring OpenMetrics 1.0.0, then 0.0.1,
//!    then `text/plain;version=0.0.4`; `Accept-Encoding: gzip` (decompressed transparently);
//!    `User-Agent: Pharos/<version>`; `X-Prometheus-Scrape-Timeout-Seconds`. The whole request, body
//!    included, must finish within the target's timeout, and the (decompressed) body may not exceed
//!    `body_size_limit`. Anything but `200 OK` fails the scrape.
//! 2. Parses the body, choosing the format by `Content-Type` ([`crate::exposition`]).
//! 3. For each sample: merges the target's labels in. With `honor_labels: false` (the default) the target's
//!    labels win and an exposed label they clash with is kept as `exported_<name>` (`exported_exported_<name>`
//!    if that is taken too); with `honor_labels: true` the exposed labels win. Then `metric_relabel_configs`
//!    run (with the name as `__name__`); dropped samples go. Then the label limits are checked (the name
//!    counts as a label). The timestamp is the exposed one if `honor_timestamps` (default) and there is one,
//!    else the scrape's.
//! 4. Checks `sample_limit` against the samples left after relabeling.
//! 5. Adds the report series, with the target's labels at the scrape's timestamp: `up`,
//!    `scrape_duration_seconds`, `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling` and
//!    `scrape_series_added` (here: the post-relabeling count; the manager's loop refines it).
//!
//! Any failure (HTTP, timeout, size, parse error, a limit, relabeling that removes `__name__`) fails the
//! whole scrape as in Prometheus: no samples but the report series, `up` 0, and the error says what
//! happened (which limit, which line).

use std::time::{Duration, Instant};

use crate::config::JobConfig;
use crate::duration::{format_duration, format_seconds};
use crate::exposition::{self, Format, Sample};
use crate::labels::{self, Labels, METRIC_NAME};
use crate::relabel;
use crate::target::Target;

/// The `Accept` header Prometheus sends.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,\
                                 application/openmetrics-text;version=0.0.1;q=0.75,\
                                 text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `Pharos/<version>`.
pub fn user_agent() -> String {
    format!("Pharos/{}", env!("CARGO_PKG_VERSION"))
}

/// A client configured for scraping: gzip, no proxies from the environment, Pharos's user agent.
pub fn default_client() -> reqwest::Client {
    client_builder().build().unwrap_or_default()
}

/// The settings every scrape client shares.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().gzip(true).no_proxy().user_agent(user_agent()).pool_idle_timeout(Duration::from_secs(90))
}

/// The client a job's scrapes use: `shared` unless the job's `tls_config` asks for its own CA, client
/// certificate, verification or minimum version. An error names the file that could not be used.
pub fn client_for(cfg: &JobConfig, shared: &reqwest::Client) -> Result<reqwest::Client, String> {
    let tls = &cfg.http.tls;
    if tls.is_default() {
        return Ok(shared.clone());
    }
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| format!("tls_config: cannot read the {what} {}: {e}", p.display()))
    };
    let mut b = client_builder().danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(ca) = &tls.ca_file {
        let pem = read(ca, "CA file")?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("tls_config: {} is not a PEM certificate: {e}", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = read(cert, "client certificate")?;
        pem.push(b'\n');
        pem.extend(read(key, "client key")?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!("tls_config: the client certificate {} or key {}: {e}", cert.display(), key.display())
        })?;
        b = b.identity(id);
    }
    if let Some(v) = &tls.min_version {
        b = b.min_tls_version(if v == "TLS13" {
            reqwest::tls::Version::TLS_1_3
        } else {
            reqwest::tls::Version::TLS_1_2
        });
    }
    b.build().map_err(|e| format!("tls_config: {}", error_chain(&e)))
}

/// The health of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// Not scraped (here) yet.
    #[default]
    Unknown,
    Up,
    Down,
}

/// What one scrape produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeOutcome {
    /// The scraped samples (target labels merged in, timestamps set), then the report series.
    pub samples: Vec<Sample>,
    /// `Up` or `Down`.
    pub health: Health,
    pub error: Option<String>,
    /// How long the HTTP request and body took.
    pub duration: Duration,
    /// Samples in the body (`scrape_samples_scraped`).
    pub scraped: usize,
}

/// The report series names.
pub const UP: &str = "up";
pub const SCRAPE_DURATION_SECONDS: &str = "scrape_duration_seconds";
pub const SCRAPE_SAMPLES_SCRAPED: &str = "scrape_samples_scraped";
pub const SCRAPE_SAMPLES_POST_METRIC_RELABELING: &str = "scrape_samples_post_metric_relabeling";
pub const SCRAPE_SERIES_ADDED: &str = "scrape_series_added";

/// Scrapes `target` once; `now_ms` is the scrape's timestamp. Any client works (the headers are set per
/// request); gzip is negotiated and decoded by reqwest's `gzip` feature, which this crate enables and which is
/// on by default in every client then (unless a client turns it off).
pub async fn scrape(client: &reqwest::Client, target: &Target, cfg: &JobConfig, now_ms: i64) -> ScrapeOutcome {
    let start = Instant::now();
    let fetched = match tokio::time::timeout(target.timeout, fetch(client, target, cfg)).await {
        Ok(r) => r,
        Err(_) => Err(format!("scrape timed out after {}", format_duration(target.timeout))),
    };
    let duration = start.elapsed();
    let processed = match fetched {
        Ok((body, content_type)) => process(&body, &content_type, target, cfg, now_ms),
        Err(e) => Processed { error: Some(e), ..Processed::default() },
    };
    outcome(processed, duration, target, now_ms)
}

/// A scrape that could not be attempted (its job's client could not be built): down, with the reason.
pub fn not_attempted(target: &Target, error: String, now_ms: i64) -> ScrapeOutcome {
    outcome(Processed { error: Some(error), ..Processed::default() }, Duration::ZERO, target, now_ms)
}

fn outcome(processed: Processed, duration: Duration, target: &Target, now_ms: i64) -> ScrapeOutcome {
    let ok = processed.error.is_none();
    let mut samples = if ok { processed.samples } else { Vec::new() };
    let report = [
        (UP, if ok { 1.0 } else { 0.0 }),
        (SCRAPE_DURATION_SECONDS, duration.as_secs_f64()),
        (SCRAPE_SAMPLES_SCRAPED, processed.scraped as f64),
        (SCRAPE_SAMPLES_POST_METRIC_RELABELING, processed.post_relabel as f64),
        (SCRAPE_SERIES_ADDED, if ok { processed.post_relabel as f64 } else { 0.0 }),
    ];
    samples.extend(report.into_iter().map(|(name, value)| Sample {
        name: name.to_string(),
        labels: target.labels.clone(),
        value,
        timestamp_ms: Some(now_ms),
    }));
    ScrapeOutcome {
        samples,
        health: if ok { Health::Up } else { Health::Down },
        error: processed.error,
        duration,
        scraped: processed.scraped,
    }
}

/// An error and its causes, `a: b: c`, for messages.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// GETs the body and its content type.
async fn fetch(client: &reqwest::Client, target: &Target, cfg: &JobConfig) -> Result<(Vec<u8>, String), String> {
    let mut req = client
        .get(&target.url)
        .header(reqwest::header::ACCEPT, ACCEPT_HEADER)
        .header(reqwest::header::USER_AGENT, user_agent())
        .header("X-Prometheus-Scrape-Timeout-Seconds", format_seconds(target.timeout));
    // Secret files are read at every scrape, so a rotated secret is used from the next one on.
    if let Some(auth) = &cfg.http.auth {
        req = req.header(reqwest::header::AUTHORIZATION, auth.header()?);
    }
    // Errors are shown to readers (/targets) and logged: the URL without the credentials it may carry.
    let shown = pharos_promconf::redact::redact_url(target.url.as_str());
    let mut resp = req.send().await.map_err(|e| format!("GET {shown}: {}", error_chain(&e.without_url())))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("server returned HTTP status {status}"));
    }
    let content_type =
        resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let limit = cfg.body_size_limit;
    let mut capacity = resp.content_length().unwrap_or(0).min(16 << 20);
    if limit > 0 {
        capacity = capacity.min(limit + 1);
    }
    let mut body = Vec::with_capacity(capacity as usize);
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| format!("reading the body of {shown}: {}", error_chain(&e.without_url())))?
    {
        if limit > 0 && (body.len() + chunk.len()) as u64 > limit {
            return Err(format!("body size limit exceeded: the body is larger than body_size_limit {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, content_type))
}

#[derive(Debug, Default)]
struct Processed {
    samples: Vec<Sample>,
    scraped: usize,
    post_relabel: usize,
    error: Option<String>,
}

/// Parses, merges target labels, relabels and checks limits.
fn process(body: &[u8], content_type: &str, target: &Target, cfg: &JobConfig, now_ms: i64) -> Processed {
    let format = Format::from_content_type(content_type);
    let parsed = match exposition::parse(body, format) {
        Ok(p) => p,
        Err(e) => {
            let what = match format {
                Format::Text => "text format",
                Format::OpenMetrics => "OpenMetrics",
            };
            return Processed { error: Some(format!("invalid {what} exposition: {e}")), ..Processed::default() };
        }
    };
    let scraped = parsed.samples.len();
    let mut samples = Vec::with_capacity(scraped + 5);
    let mut error = None;
    for s in parsed.samples {
        let mut l = merge_target_labels(s.labels, &target.labels, cfg.honor_labels);
        let name = if cfg.metric_relabel_configs.is_empty() {
            s.name
        } else {
            labels::set(&mut l, METRIC_NAME, &s.name);
            if !relabel::process(&mut l, &cfg.metric_relabel_configs) {
                continue;
            }
            match l.binary_search_by(|(n, _)| n.as_str().cmp(METRIC_NAME)) {
                Ok(i) => l.remove(i).1,
                Err(_) => {
                    error.get_or_insert_with(|| {
                        format!("missing metric name (__name__ label) after metric relabeling of {:?}", s.name)
                    });
                    continue;
                }
            }
        };
        if error.is_none() {
            if let Err(e) = check_label_limits(&name, &l, cfg) {
                error = Some(e);
            }
        }
        let timestamp_ms = if cfg.honor_timestamps { s.timestamp_ms.unwrap_or(now_ms) } else { now_ms };
        samples.push(Sample { name, labels: l, value: s.value, timestamp_ms: Some(timestamp_ms) });
    }
    let post_relabel = samples.len();
    if error.is_none() && cfg.sample_limit > 0 && post_relabel > cfg.sample_limit {
        error = Some(format!(
            "sample limit exceeded: {post_relabel} samples after metric relabeling, sample_limit is {}",
            cfg.sample_limit
        ));
    }
    Processed { samples, scraped, post_relabel, error }
}

/// Puts the target's labels on a sample's labels (see the module documentation for `honor_labels`).
pub(crate) fn merge_target_labels(mut sample: Labels, target: &[(String, String)], honor_labels: bool) -> Labels {
    if honor_labels {
        for (k, v) in target {
            if labels::get(&sample, k).is_empty() {
                labels::set(&mut sample, k, v);
            }
        }
        return sample;
    }
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for (k, v) in target {
        // Even an equal exposed value is kept as exported_<name>, as in Prometheus.
        let existing = labels::get(&sample, k);
        if !existing.is_empty() {
            conflicts.push((k.clone(), existing.to_string()));
        }
        labels::set(&mut sample, k, v);
    }
    conflicts.sort_by_key(|(k, _)| k.len());
    for (k, v) in conflicts {
        let mut name = k;
        loop {
            name = format!("exported_{name}");
            if labels::get(&sample, &name).is_empty() {
                labels::set(&mut sample, &name, &v);
                break;
            }
        }
    }
    sample
}

fn check_label_limits(name: &str, l: &[(String, String)], cfg: &JobConfig) -> Result<(), String> {
    let short = |s: &str| s.chars().take(50).collect::<String>();
    if cfg.label_limit > 0 && l.len() + 1 > cfg.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {}, number of labels: {}, limit: {})",
            short(name),
            l.len() + 1,
            cfg.label_limit
        ));
    }
    let all = std::iter::once((METRIC_NAME, name)).chain(l.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in all {
        if cfg.label_name_length_limit > 0 && k.len() > cfg.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                short(name),
                short(k),
                k.len(),
                cfg.label_name_length_limit
            ));
        }
        if cfg.label_value_length_limit > 0 && v.len() > cfg.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {}, label name: {}, value: {:?}, length: {}, limit: {})",
                short(name),
                short(k),
                short(v),
                v.len(),
                cfg.label_value_length_limit
            ));
        }
    }
    Ok(())
}
