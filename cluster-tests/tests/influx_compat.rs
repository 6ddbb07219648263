//! Same input, same answer: queries as Grafana's InfluxDB query builder writes them (a condition on a field's
//! values next to tag and time conditions), asked of Debian's InfluxDB 1.x (`influxd`) and of Pharos after
//! the same line protocol was written to both; the JSON answers must agree.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cluster_tests::{free_port, recent_ms, wait_for, Cluster};
use serde_json::Value;

struct Influxd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn influxd(http: &reqwest::Client) -> Result<Influxd> {
    let dir = tempfile::TempDir::new()?;
    let (port, rpc) = (free_port(), free_port());
    let d = dir.path().display();
    let cfg = dir.path().join("influxdb.conf");
    std::fs::write(
        &cfg,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  \
             dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \
             \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n"
        ),
    )?;
    let child = Command::new("influxd")
        .arg("run")
        .arg("-config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running influxd (apt install influxdb; scripts/setup.sh does)")?;
    let url = format!("http://127.0.0.1:{port}");
    let i = Influxd { child, url, _dir: dir };
    wait_for(Duration::from_secs(30), "influxd to answer /ping", || async {
        Ok(http.get(format!("{}/ping", i.url)).send().await.ok().filter(|r| r.status() == 204).map(|_| ()))
    })
    .await?;
    let r = http.post(format!("{}/query", i.url)).query(&[("q", "CREATE DATABASE pharos")]).send().await?;
    ensure!(r.status() == 200, "CREATE DATABASE: {}", r.text().await?);
    Ok(i)
}

async fn ask(http: &reqwest::Client, base: &str, q: &str) -> Result<Value> {
    let r = http.get(format!("{base}/query")).query(&[("q", q), ("db", "pharos"), ("epoch", "ms")]).send().await?;
    let v: Value = r.json().await?;
    Ok(v["results"][0].clone())
}

/// Equal, numbers within a relative 1e-9 (the two sum in different orders).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_grafana_builder_queries_with_field_conditions_answer_as_influxdb_does() -> Result<()> {
    let c = Cluster::start(1, "").await?;
    let http = c.http.clone();
    let influx = influxd(&http).await?;
    // Two hosts, 20 minutes at 10 s, values that cross the thresholds.
    let t0 = recent_ms() + 3_000_000;
    let body: String = (0..120i64)
        .flat_map(|i| {
            let ts = (t0 + i * 10_000) * 1_000_000;
            [
                format!("cpu,host=a usage_user={} {ts}\n", (i * 7 % 23) as f64 + 0.5),
                format!("cpu,host=b usage_user={} {ts}\n", (i * 5 % 11) as f64 + 0.25),
            ]
        })
        .collect();
    for base in [&influx.url, &c.nodes[0].url("")] {
        let r = http.post(format!("{base}/write?db=pharos")).body(body.clone()).send().await?;
        ensure!(r.status() == 204, "write to {base}: {}", r.text().await?);
    }
    let range = format!("time >= {t0}ms and time <= {}ms", t0 + 1_200_000);
    let queries = [
        // What the builder renders for a field condition, with GROUP BY time and a tag.
        format!("SELECT mean(\"usage_user\") FROM \"cpu\" WHERE (\"usage_user\" > 5) AND {range} GROUP BY time(1m), \"host\" fill(none)"),
        format!("SELECT count(\"usage_user\"), max(\"usage_user\") FROM \"cpu\" WHERE (\"usage_user\" >= 10) AND (\"host\" = 'a') AND {range}"),
        format!("SELECT \"usage_user\" FROM \"cpu\" WHERE \"usage_user\" < 3 AND {range} GROUP BY \"host\""),
        format!("SELECT sum(\"usage_user\") FROM \"cpu\" WHERE 8 <= \"usage_user\" AND \"usage_user\" != 10.25 AND {range} GROUP BY time(5m) fill(none)"),
    ];
    for q in &queries {
        let (want, got) = (ask(&http, &influx.url, q).await?, ask(&http, &c.nodes[0].url(""), q).await?);
        ensure!(want.get("error").is_none(), "influxd refused {q}: {want}");
        ensure!(want["series"].as_array().is_some_and(|s| !s.is_empty()), "influxd found nothing for {q}");
        println!(
            "{q}: {} series, {} rows in the first",
            want["series"].as_array().map_or(0, Vec::len),
            want["series"][0]["values"].as_array().map_or(0, Vec::len)
        );
        if !same(&want["series"], &got["series"]) {
            bail!("{q}\ninfluxd: {}\npharos:  {}", want["series"], got);
        }
    }
    Ok(())
}
