//! http_sd: target groups from an HTTP endpoint, as Prometheus's HTTP service discovery.
//!
//! Every `refresh_interval` the URL is fetched with `Accept: application/json` and
//! `X-Prometheus-Refresh-Interval-Seconds`; the answer must be `200 OK`, `Content-Type: application/json`,
//! and a JSON list of `{"targets": [...], "labels": {...}}`. Each group gets `__meta_url`. A failure is logged
//! and keeps the last good groups (before any success the provider reports none).

use std::time::Duration;

use tracing::{debug, warn};

use super::{to_groups, JsonGroup, Publisher, TargetGroup};
use crate::config::HttpSdConfig;
use crate::duration::format_seconds;

/// The label holding the URL a group came from.
pub const META_URL: &str = "__meta_url";

pub(crate) async fn run(cfg: HttpSdConfig, client: reqwest::Client, out: Publisher) {
    loop {
        match fetch(&client, &cfg).await {
            Ok(groups) => {
                debug!(url = %cfg.url, groups = groups.len(), "http_sd: refreshed");
                out.publish(groups);
            }
            Err(e) => {
                warn!(url = %cfg.url, error = %e, "http_sd: refresh failed; keeping the last good groups");
                out.publish_empty_if_first();
            }
        }
        tokio::time::sleep(cfg.refresh_interval).await;
    }
}

/// One refresh.
pub(crate) async fn fetch(client: &reqwest::Client, cfg: &HttpSdConfig) -> Result<Vec<TargetGroup>, String> {
    let timeout = cfg.refresh_interval.clamp(Duration::from_secs(1), Duration::from_secs(60));
    let resp = client
        .get(&cfg.url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::USER_AGENT, crate::scrape::user_agent())
        .header("X-Prometheus-Refresh-Interval-Seconds", format_seconds(cfg.refresh_interval))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", crate::scrape::error_chain(&e)))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("server returned HTTP status {status}"));
    }
    let content_type =
        resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(format!("unsupported content type {content_type:?} (want application/json)"));
    }
    let body = resp.bytes().await.map_err(|e| format!("reading the body: {}", crate::scrape::error_chain(&e)))?;
    let entries: Vec<Option<JsonGroup>> =
        serde_json::from_slice(&body).map_err(|e| format!("invalid JSON target groups: {e}"))?;
    to_groups(entries, &cfg.url, (META_URL, &cfg.url))
}
