//! Series limits and the series explorer on real processes: a label explosion in one measurement is
//! refused past `[limits] max_series_per_measurement` (a partial write naming the measurement and the limit)
//! while its existing series and other measurements keep being written; the refusals are counted in
//! /metrics; `/api/v1/status/tsdb` and `pharosctl cardinality` show which measurement exploded and how much
//! it grew.

use std::time::Duration;

use anyhow::{ensure, Result};
use cluster_tests::{recent_ms, Cluster};

fn lines(measurement: &str, hosts: std::ops::Range<usize>, ts: i64) -> String {
    hosts.map(|h| format!("{measurement},host=h{h} v=1 {ts}\n")).collect()
}

async fn series_of(c: &Cluster, measurement: &str) -> Result<usize> {
    let got = c.export(1, measurement, false).await?;
    Ok(got.keys().map(|(s, _)| s.clone()).collect::<std::collections::BTreeSet<_>>().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_label_explosion_stops_at_the_limit_and_the_explorer_names_it() -> Result<()> {
    // 160 series per measurement over 16 shards: each shard takes its share with slack.
    let share = pharos_node::series_limits::share(160, 16) as usize;
    let c = Cluster::start(3, "[limits]\nmax_series_per_measurement = 160\n[write]\nmaintenance_interval = \"1s\"\n")
        .await?;
    // Marks for "created since" exist after a maintenance pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t0 = recent_ms();
    let (code, body) = c.write(1, lines("calm", 0..40, t0)).await?;
    ensure!(code == 204, "{code} {body}");

    // 800 new series in one request: those over each shard's share are refused, the rest written.
    let (code, body) = c.write(2, lines("boom", 0..800, t0)).await?;
    ensure!(code == 400, "{code} {body}");
    ensure!(body.contains("partial write"), "{body}");
    ensure!(
        body.contains(r#"measurement \"boom\" is at its limit, [limits] max_series_per_measurement = 160"#),
        "{body}"
    );
    let boom = series_of(&c, "boom").await?;
    ensure!((160..=16 * share).contains(&boom), "{boom} series of boom stored (a shard holds {share} at most)");
    let refused: usize = body.split("partial write: ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap();
    ensure!(refused == 800 - boom, "{refused} refused, {boom} stored: {body}");

    // The series that exist keep being written; new ones are still refused.
    let (code, body) = c.write(3, lines("boom", 0..800, t0 + 1000)).await?;
    ensure!(code == 400 && body.contains("is at its limit"), "{code} {body}");
    let got = c.export(1, "boom", false).await?;
    ensure!(got.len() == 2 * boom, "{} samples for {boom} series: the existing ones got their second", got.len());
    // Another measurement is not affected.
    let (code, body) = c.write(1, lines("calm", 40..80, t0)).await?;
    ensure!(code == 204, "{code} {body}");

    // Counted where the refusals happened (the shards' leaders).
    let mut counted = 0.0;
    for n in &c.nodes {
        let text = c.http.get(n.url("/metrics")).send().await?.text().await?;
        counted += text
            .lines()
            .filter(|l| l.starts_with("pharos_samples_rejected_total{") && l.contains(r#"reason="series_limit""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    ensure!(counted as usize == 2 * (800 - boom), "refusals counted in /metrics: {counted}");

    // The explorer: boom first, with its series, all created in the last hour.
    let r: serde_json::Value = c.http.get(c.nodes[0].url("/api/v1/status/tsdb?topN=2")).send().await?.json().await?;
    let data = &r["data"];
    ensure!(r["status"] == "success", "{r}");
    ensure!(data["seriesCountByMetricName"][0]["name"] == "boom", "{r}");
    ensure!(data["seriesCountByMetricName"][0]["value"] == boom as u64, "{r}");
    ensure!(data["seriesCountByMetricName"][1]["name"] == "calm", "{r}");
    ensure!(data["seriesCountByMetricName"][1]["value"] == 80, "{r}");
    ensure!(data["headStats"]["numSeries"].as_u64() >= Some(boom as u64 + 80), "{r}");
    ensure!(data["seriesCreatedByMetricName"][0]["name"] == "boom", "{r}");
    ensure!(data["seriesCreatedByMetricName"][0]["value"] == boom as u64, "{r}");
    ensure!(data["createdSince"].is_string(), "{r}");
    ensure!(data["seriesCountByLabelName"][0]["name"] == "host", "{r}");
    ensure!(data["labelValueCountByLabelName"][0]["value"].as_u64() >= Some(share as u64), "{r}");
    let bad = c.http.get(c.nodes[0].url("/api/v1/status/tsdb?topN=lots")).send().await?;
    ensure!(bad.status() == 400, "{}", bad.status());

    let out = c.pharosctl(2, &["cardinality", "--top", "3"])?;
    let row = out.lines().find(|l| l.starts_with("boom")).unwrap_or_default().to_string();
    ensure!(row.split_whitespace().collect::<Vec<_>>() == ["boom", &boom.to_string(), &boom.to_string()], "{out}");
    Ok(())
}
