//! The web UI in Debian's headless Chromium against a real 3-node cluster: each page is opened by its URL
//! (the hash holds the page, the query and the range, as a shared link does), the scripts run, and the DOM
//! they built is checked against what the API answers.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cluster_tests::{recent_ms, wait_for, Cluster};

/// The DOM of `url` after its scripts ran (Chromium's virtual time lets fetches finish first).
fn dom(url: &str) -> Result<String> {
    let profile = tempfile::TempDir::new()?;
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .context("running chromium (scripts/setup.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success() && !text.is_empty(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

fn explore(base: &str, q: &str, extra: &str) -> String {
    let q: String = q
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("{base}/#/explore?q={q}&from=now-1h&to=now{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_pages_show_what_the_api_answers_in_headless_chromium() -> Result<()> {
    let c = Cluster::start(3, "").await?;
    // Two hosts over the last 20 minutes, every 10 s.
    let t0 = recent_ms() + 3_600_000 - 1_200_000;
    let body: String = (0..120)
        .flat_map(|i| {
            [
                format!("cpu,host=a usage_user={} {}\n", i % 17, t0 + i * 10_000),
                format!("cpu,host=b usage_user={} {}\n", 20 + i % 5, t0 + i * 10_000),
            ]
        })
        .collect();
    let (code, text) = c.write(1, body).await?;
    ensure!(code == 204, "{code} {text}");
    let dir = tempfile::TempDir::new()?;
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, "groups:\n  - name: ui\n    interval: 1s\n    rules:\n      - alert: BusyB\n        expr: SELECT last(usage_user) FROM cpu WHERE host = 'b' GROUP BY host HAVING last(usage_user) > 10\n")?;
    c.pharosctl(1, &["rules", "apply", rules.to_str().unwrap()])?;
    let scrape = dir.path().join("scrape.yml");
    let own = c.nodes[0].http.clone();
    std::fs::write(&scrape, format!("scrape_configs:\n  - job_name: pharos\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{own}']\n"))?;
    c.pharosctl(1, &["scrape", "apply", scrape.to_str().unwrap()])?;
    let base = format!("http://{}", c.nodes[1].http);

    // The files: served without a token, with a content security policy.
    let r = c.http.get(format!("{base}/")).send().await?;
    ensure!(r.status() == 200);
    ensure!(r
        .headers()
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("default-src 'self'")));
    ensure!(c.http.get(format!("{base}/ui/vendor/uPlot.LICENSE")).send().await?.text().await?.contains("MIT License"));

    // Explore, chart: one line per series, named in the legend; the status line says what ran.
    let q = "SELECT mean(usage_user) FROM cpu WHERE $timeFilter GROUP BY time($interval), host";
    let page = tokio::task::spawn_blocking({
        let u = explore(&base, q, "");
        move || dom(&u)
    })
    .await??;
    ensure!(page.contains("<canvas"), "no chart: {page}");
    ensure!(page.contains("cpu.mean host=a") && page.contains("cpu.mean host=b"), "legend: {page}");
    ensure!(page.contains(">2 series, "), "status: {page}");

    // Explore, table: the values /query answers.
    let q = "SELECT last(usage_user) FROM cpu GROUP BY host";
    let page = tokio::task::spawn_blocking({
        let u = explore(&base, q, "&view=table");
        move || dom(&u)
    })
    .await??;
    let api: serde_json::Value =
        c.http.get(format!("{base}/query")).query(&[("q", q), ("epoch", "ms")]).send().await?.json().await?;
    for s in api["results"][0]["series"].as_array().unwrap() {
        let host = s["tags"]["host"].as_str().unwrap();
        // As JavaScript prints a number (0 for 0.0).
        let v = s["values"][0][1].as_f64().unwrap();
        let v = if v.fract() == 0.0 { format!("{}", v as i64) } else { v.to_string() };
        ensure!(page.contains(&format!("<h4>cpu host={host}</h4>")), "{page}");
        ensure!(page.contains(&format!("<td>{v}</td>")), "value {v} of host {host}: {page}");
    }

    // Explore, a bad query: the server's error, with its line and column.
    let page = tokio::task::spawn_blocking({
        let u = explore(&base, "SELECT meen(x) FROM cpu", "");
        move || dom(&u)
    })
    .await??;
    ensure!(page.contains("error at line 1, column 8: unknown function meen()"), "{page}");

    // Alerts: the firing alert, with a link to its graph.
    wait_for(Duration::from_secs(30), "the alert firing", || async {
        let r: serde_json::Value = c.http.get(format!("{base}/api/alerts")).send().await?.json().await?;
        Ok(r["alerts"].as_array().and_then(|a| a.iter().find(|x| x["state"] == "firing")).map(|_| ()))
    })
    .await?;
    let page = tokio::task::spawn_blocking({
        let u = format!("{base}/#/alerts");
        move || dom(&u)
    })
    .await??;
    ensure!(page.contains("BusyB") && page.contains("state-firing") && page.contains("<code>host=b</code>"), "{page}");
    ensure!(page.contains(">graph</a>"), "{page}");

    // Targets: the node scraping itself, up.
    wait_for(Duration::from_secs(30), "a scrape", || async {
        let r: serde_json::Value = c.http.get(format!("{base}/api/v1/targets")).send().await?.json().await?;
        Ok((r["data"]["activeTargets"][0]["health"] == "up").then_some(()))
    })
    .await?;
    let page = tokio::task::spawn_blocking({
        let u = format!("{base}/#/targets");
        move || dom(&u)
    })
    .await??;
    ensure!(page.contains(&format!("http://{own}/metrics")) && page.contains("state-up"), "{page}");

    // Cluster: every shard with its leader; the series explorer's top measurement.
    let page = tokio::task::spawn_blocking({
        let u = format!("{base}/#/cluster");
        move || dom(&u)
    })
    .await??;
    ensure!(page.contains("state-pass"), "{page}");
    ensure!(page.matches("<tr><td>").count() >= 16, "a row per shard: {page}");
    let top: serde_json::Value = c.http.get(format!("{base}/api/v1/status/tsdb?topN=10")).send().await?.json().await?;
    let first = &top["data"]["seriesCountByMetricName"][0];
    ensure!(page.contains(&format!("<td>{}</td>", first["name"].as_str().unwrap())), "{first}: {page}");
    ensure!(page.contains(" series; created since "), "{page}");
    Ok(())
}
