//! Push collection on a real `pharos` process: Prometheus remote write (from our own client and from a real
//! Prometheus server, Debian's package), line protocol over TCP and UDP.

use std::time::Duration;

use anyhow::Result;
use cluster_tests::receivers::PrometheusServer;
use cluster_tests::{free_port, recent_ms, wait_for, Cluster};
use pharos_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;

async fn count(c: &Cluster, q: &str) -> Result<Option<i64>> {
    let r = c.http.get(c.nodes[0].url("/query")).query(&[("q", q), ("epoch", "ms")]).send().await?;
    let body: Json = r.json().await?;
    Ok(body["results"][0]["series"][0]["values"][0][1].as_i64())
}

fn remote_write_body(series: &[(&str, &str, i64)], t0: i64, n: i64) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(name, instance, step)| TimeSeries {
                labels: vec![
                    Label { name: "__name__".into(), value: name.to_string() },
                    Label { name: "instance".into(), value: instance.to_string() },
                    Label { name: "job".into(), value: "node".into() },
                ],
                samples: (0..n).map(|i| Sample { value: (i * step) as f64, timestamp: t0 + i * 10_000 }).collect(),
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_remote_write_tcp_and_udp_line_protocol() -> Result<()> {
    let (tcp, udp) = (free_port(), free_port());
    let c = Cluster::start(
        1,
        &format!("line_tcp_addr = \"127.0.0.1:{tcp}\"\nline_udp_addr = \"127.0.0.1:{udp}\"\n[write]\nmax_batch_points = 50\n"),
    )
    .await?;
    let t0 = recent_ms();

    // Prometheus remote write: 2 series x 30 samples; the counter grows 5 per 10 s = 0.5/s.
    let body =
        remote_write_body(&[("node_cpu_seconds_total", "a:9100", 5), ("node_cpu_seconds_total", "b:9100", 5)], t0, 30);
    let r = c
        .http
        .post(c.nodes[0].url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status(), 204, "{}", r.text().await?);
    let range = format!("time >= {t0}ms AND time < {}ms", t0 + 300_000);
    assert_eq!(count(&c, &format!("SELECT count(value) FROM node_cpu_seconds_total WHERE {range}")).await?, Some(60));
    let q = format!(
        "SELECT rate(value) FROM node_cpu_seconds_total WHERE {range} AND instance = 'a:9100' GROUP BY time(1m)"
    );
    let r: Json =
        c.http.get(c.nodes[0].url("/query")).query(&[("q", q.as_str()), ("epoch", "ms")]).send().await?.json().await?;
    let rates: Vec<f64> = r["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[1].as_f64())
        .collect();
    assert!(rates.len() >= 4 && rates[1..rates.len() - 1].iter().all(|r| (r - 0.5).abs() < 1e-9), "{rates:?}");

    // A bad request is refused whole, naming the series.
    let bad = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label { name: "job".into(), value: "x".into() }],
            samples: vec![Sample { value: 1.0, timestamp: t0 }],
        }],
    };
    let r = c
        .http
        .post(c.nodes[0].url("/api/v1/write"))
        .body(snap::raw::Encoder::new().compress_vec(&bad.encode_to_vec())?)
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let e: Json = r.json().await?;
    assert!(e["error"].as_str().unwrap_or("").contains("series 0 ({job=\"x\"}): no metric name"), "{e}");

    // Line protocol over TCP, with a bad line in the middle: the others arrive (in several batches).
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", tcp)).await?;
    let mut text = String::new();
    for i in 0..120i64 {
        if i == 60 {
            text.push_str("tcp_metric,host=a value=oops\n");
        }
        text.push_str(&format!("tcp_metric,host=a value={i} {}\n", (t0 + i * 1000) * 1_000_000));
    }
    s.write_all(text.as_bytes()).await?;
    s.shutdown().await?;
    drop(s);
    let q = format!("SELECT count(value) FROM tcp_metric WHERE {range}");
    wait_for(Duration::from_secs(10), "TCP lines written", || async {
        Ok((count(&c, &q).await? == Some(120)).then_some(()))
    })
    .await?;

    // UDP: one datagram of several lines.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let dgram: String =
        (0..10i64).map(|i| format!("udp_metric,host=b value={i} {}\n", (t0 + i * 1000) * 1_000_000)).collect();
    sock.send_to(dgram.as_bytes(), ("127.0.0.1", udp)).await?;
    let q = format!("SELECT sum(value) FROM udp_metric WHERE {range}");
    wait_for(Duration::from_secs(10), "UDP lines written", || async {
        let r: Json = c.http.get(c.nodes[0].url("/query")).query(&[("q", q.as_str())]).send().await?.json().await?;
        Ok((r["results"][0]["series"][0]["values"][0][1].as_f64() == Some(45.0)).then_some(()))
    })
    .await?;
    let metrics = c.http.get(c.nodes[0].url("/metrics")).send().await?.text().await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("protocol=\"tcp\"") && l.contains("code=\"invalid_argument\"") && l.ends_with(" 1")),
        "the bad TCP line is counted"
    );
    // Memory gauges: data was written, so some memtable holds it and some head holds samples.
    let gauge = |prefix: &str| -> Vec<f64> {
        metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse().ok()).collect()
    };
    assert!(gauge("pharos_rocksdb_memory_bytes{kind=\"memtables\"").iter().any(|&v| v > 0.0), "{metrics}");
    assert!(gauge("pharos_shard_head_samples{").iter().sum::<f64>() > 0.0, "{metrics}");
    // Leaders propose maintenance as they take office, so every shard reports how far its tiers are built:
    // in seconds, within the raw retention (7 days) before now.
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let wms = gauge("pharos_shard_rollup_watermark_seconds{");
    assert!(!wms.is_empty() && wms.iter().all(|&w| w > now_s - 8.0 * 86_400.0 && w < now_s), "{metrics}");
    Ok(())
}

/// Raw samples `(ms, value)` Prometheus holds for a selector in [at_s - 2m, at_s] (Prometheus 2.x range
/// selectors include both ends; a range query returns the stored samples themselves).
async fn prometheus_samples(http: &reqwest::Client, base: &str, selector: &str, at_s: f64) -> Result<Vec<(i64, f64)>> {
    let r: Json = http
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", format!("{selector}[2m]")), ("time", format!("{at_s:.3}"))])
        .send()
        .await?
        .json()
        .await?;
    let values = r["data"]["result"][0]["values"].as_array().cloned().unwrap_or_default();
    Ok(values
        .iter()
        .map(|v| {
            (
                (v[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64,
                v[1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_real_prometheus_remote_writes_what_it_scraped() -> Result<()> {
    let c = Cluster::start(1, "").await?;
    let port = free_port();
    let prom = PrometheusServer::start(
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n",
            c.nodes[0].url("/api/v1/write")
        ),
        port,
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let result = async {
        // Prometheus scrapes itself every second and pushes; wait for ten scrapes to arrive in Pharos.
        let q = "SELECT count(value) FROM up WHERE job = 'self' AND time > now() - 5m";
        wait_for(Duration::from_secs(60), "Prometheus's samples in Pharos", || async { Ok((count(&c, q).await?.unwrap_or(0) >= 10).then_some(())) })
            .await?;
        // Compare every stored sample of a counter over the same 2 minutes, a few seconds back (delivered).
        let at_s = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as f64 - 3000.0) / 1000.0;
        let selector = "prometheus_http_requests_total{handler=\"/metrics\"}";
        let theirs = prometheus_samples(&c.http, &base, selector, at_s).await?;
        assert!(theirs.len() >= 5, "Prometheus holds samples: {theirs:?}");
        let end_ms = (at_s * 1000.0).round() as i64;
        let q = format!(
            "SELECT value FROM prometheus_http_requests_total WHERE handler = '/metrics' AND job = 'self' AND time >= {}ms AND time <= {end_ms}ms",
            end_ms - 120_000
        );
        let r: Json = c.http.get(c.nodes[0].url("/query")).query(&[("q", q.as_str()), ("epoch", "ms")]).send().await?.json().await?;
        let ours: Vec<(i64, f64)> = r["results"][0]["series"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (v[0].as_i64().unwrap_or(0), v[1].as_f64().unwrap_or(f64::NAN)))
            .collect();
        assert_eq!(ours, theirs, "Pharos stores what Prometheus scraped, sample for sample");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!("prometheus log:\n{}", prom.log());
    }
    result
}
