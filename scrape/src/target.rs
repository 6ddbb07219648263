//! From a job and a discovered target group to the targets to scrape, as Prometheus's `PopulateLabels`.
//!
//! For each address of a group:
//!
//! 1. **Discovered labels**: `__address__` = the address; then the group's labels (including `__meta_*`);
//!    then, unless the group set them, `job` = the job name, `__scrape_interval__`, `__scrape_timeout__`
//!    (Prometheus durations), `__metrics_path__`, `__scheme__`, and `__param_<name>` = the first value of each
//!    configured parameter.
//! 2. **Relabeling** with the job's `relabel_configs`; a dropped set is no target.
//! 3. **Checks**: `__address__` must be non-empty (else the target is dropped with [`TargetError::NoAddress`])
//!    and contain no `/`; `__scrape_interval__` and `__scrape_timeout__` must be non-zero durations with the
//!    timeout at most the interval. Relabeling may change all of them per target.
//! 4. **Final labels**: `__meta_*` labels go; `instance` defaults to `__address__`; the labels the target keeps
//!    (and puts on its samples) are those not starting with `__`.
//! 5. **URL**: `<__scheme__>://<__address__><__metrics_path__>?<params>`, the parameters being the job's with
//!    each `__param_<name>` label replacing the first value of `<name>` (or adding it), sorted by name and
//!    form-encoded as Go's `url.Values.Encode` does.
//!
//! A [`Target`]'s `key` is `<job>|<url>|<hash of labels>`: stable across nodes, restarts and builds (XXH3), so
//! it identifies the target for ownership and scrape-phase purposes.

use std::time::Duration;

use crate::config::JobConfig;
use crate::discovery::TargetGroup;
use crate::duration::{format_duration, parse_duration};
use crate::labels::{self, Labels};
use crate::relabel;

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";

/// One target to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The `job_name` of the scrape config it came from.
    pub job: String,
    /// The labels put on its samples (no `__` labels), sorted: `job`, `instance`, and whatever relabeling left.
    pub labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// `<job>|<url>|<labels hash>`: its identity for ownership and scrape phase.
    pub key: String,
}

/// Why a discovered target is not scraped although relabeling kept it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address (__address__ is empty after relabeling)")]
    NoAddress,
    #[error("{0:?} is not a valid hostname (an address may not contain '/')")]
    InvalidAddress(String),
    #[error("error parsing scrape interval: {0}")]
    BadInterval(String),
    #[error("error parsing scrape timeout: {0}")]
    BadTimeout(String),
    #[error("scrape interval cannot be 0")]
    ZeroInterval,
    #[error("scrape timeout cannot be 0")]
    ZeroTimeout,
    #[error("scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})")]
    TimeoutAboveInterval { timeout: String, interval: String },
}

/// One address of a group: its labels before relabeling and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredTarget {
    pub discovered_labels: Labels,
    /// `Ok(None)`: relabeling dropped it.
    pub result: Result<Option<Target>, TargetError>,
}

/// The targets of a group, in order.
pub fn targets_from_group(job: &JobConfig, group: &TargetGroup) -> Vec<DiscoveredTarget> {
    group
        .targets
        .iter()
        .map(|address| {
            let discovered_labels = discovered_labels(job, address, &group.labels);
            let result = build_target(job, &discovered_labels);
            DiscoveredTarget { discovered_labels, result }
        })
        .collect()
}

/// The labels of an address before relabeling (step 1 above).
pub fn discovered_labels(job: &JobConfig, address: &str, group_labels: &[(String, String)]) -> Labels {
    let mut l: Labels = group_labels.to_vec();
    labels::set(&mut l, ADDRESS_LABEL, address);
    let defaults = [
        (JOB_LABEL, job.job_name.clone()),
        (SCRAPE_INTERVAL_LABEL, format_duration(job.scrape_interval)),
        (SCRAPE_TIMEOUT_LABEL, format_duration(job.scrape_timeout)),
        (METRICS_PATH_LABEL, job.metrics_path.clone()),
        (SCHEME_LABEL, job.scheme.as_str().to_string()),
    ];
    for (name, value) in defaults {
        if labels::get(&l, name).is_empty() {
            labels::set(&mut l, name, &value);
        }
    }
    for (name, values) in &job.params {
        let label = format!("{PARAM_LABEL_PREFIX}{name}");
        if let Some(first) = values.first() {
            if labels::get(&l, &label).is_empty() {
                labels::set(&mut l, &label, first);
            }
        }
    }
    l
}

/// Relabels discovered labels into a target (steps 2-5 above). `Ok(None)` when relabeling drops it.
pub fn build_target(job: &JobConfig, discovered: &[(String, String)]) -> Result<Option<Target>, TargetError> {
    let mut l: Labels = discovered.to_vec();
    if !relabel::process(&mut l, &job.relabel_configs) {
        return Ok(None);
    }
    let address = labels::get(&l, ADDRESS_LABEL).to_string();
    if address.is_empty() {
        return Err(TargetError::NoAddress);
    }
    if address.contains('/') {
        return Err(TargetError::InvalidAddress(address));
    }
    let interval_text = labels::get(&l, SCRAPE_INTERVAL_LABEL);
    let interval = parse_duration(interval_text).map_err(|e| TargetError::BadInterval(e.to_string()))?;
    if interval.is_zero() {
        return Err(TargetError::ZeroInterval);
    }
    let timeout_text = labels::get(&l, SCRAPE_TIMEOUT_LABEL);
    let timeout = parse_duration(timeout_text).map_err(|e| TargetError::BadTimeout(e.to_string()))?;
    if timeout.is_zero() {
        return Err(TargetError::ZeroTimeout);
    }
    if timeout > interval {
        return Err(TargetError::TimeoutAboveInterval {
            timeout: timeout_text.to_string(),
            interval: interval_text.to_string(),
        });
    }
    l.retain(|(n, _)| !n.starts_with(META_LABEL_PREFIX));
    if labels::get(&l, INSTANCE_LABEL).is_empty() {
        labels::set(&mut l, INSTANCE_LABEL, &address);
    }
    let url = target_url(job, &l);
    let public: Labels = l.into_iter().filter(|(n, _)| !n.starts_with("__")).collect();
    let key = format!("{}|{}|{:016x}", job.job_name, url, labels::hash(&public));
    Ok(Some(Target { job: job.job_name.clone(), labels: public, url, interval, timeout, key }))
}

/// The scrape URL from the relabeled labels (internal ones included).
fn target_url(job: &JobConfig, l: &[(String, String)]) -> String {
    let mut params = job.params.clone();
    for (name, value) in l {
        if let Some(p) = name.strip_prefix(PARAM_LABEL_PREFIX) {
            let values = params.entry(p.to_string()).or_default();
            match values.first_mut() {
                Some(first) => *first = value.clone(),
                None => values.push(value.clone()),
            }
        }
    }
    let path = labels::get(l, METRICS_PATH_LABEL);
    let mut url = format!("{}://{}", labels::get(l, SCHEME_LABEL), labels::get(l, ADDRESS_LABEL));
    if !path.is_empty() && !path.starts_with('/') {
        url.push('/');
    }
    escape_into(&mut url, path, true);
    let mut first = true;
    for (k, values) in &params {
        for v in values {
            url.push(if first { '?' } else { '&' });
            first = false;
            escape_into(&mut url, k, false);
            url.push('=');
            escape_into(&mut url, v, false);
        }
    }
    url
}

/// Percent-encodes as Go's `url.PathEscape`-like path encoding (`path`) or `url.QueryEscape` (query, where a
/// space becomes `+`).
fn escape_into(out: &mut String, s: &str, path: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (path && matches!(b, b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'));
        if keep {
            out.push(b as char);
        } else if b == b' ' && !path {
            out.push('+');
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

#[cfg(test)]
#[path = "target_test.rs"]
mod tests;
