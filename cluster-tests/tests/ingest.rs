//! Push collection on a real `pharos` process: Prometheus remote write, line protocol over TCP and UDP.

use std::time::Duration;

use anyhow::Result;
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
    Ok(())
}
