//! Bad input against every endpoint of a running node: oversized, truncated, invalid UTF-8, deeply nested
//! or enormous queries, junk in place of snappy or protobuf, garbage on the raw TCP and UDP listeners, and
//! a request of many series. Each gets a clear error (a 4xx naming the reason, gRPC InvalidArgument), the
//! node never panics or stops, what was acknowledged stays readable, and its memory stays under a bound
//! (docs/reliability.md).

use std::io::Write as _;
use std::time::Duration;

use anyhow::{ensure, Result};
use cluster_tests::{free_port, recent_ms, rss_bytes, Cluster};
use pharos_proto::v1::query_client::QueryClient;
use pharos_proto::v1::write_client::WriteClient;
use pharos_proto::v1::{QueryRequest, WriteRequest};

/// A refusal must say why: a 4xx with a JSON `error`, and the header InfluxDB clients read kept short.
async fn expect_refused(r: reqwest::Response, status: u16, says: &str, what: &str) -> Result<()> {
    let got = r.status().as_u16();
    let header = r.headers().get("x-influxdb-error").map(|v| v.len());
    let body = r.text().await?;
    ensure!(got == status, "{what}: status {got}, wanted {status}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let error = json["error"].as_str().unwrap_or("");
    ensure!(error.contains(says), "{what}: the error says {says:?}: {body:.300}");
    let header = header.ok_or_else(|| anyhow::anyhow!("{what}: no X-Influxdb-Error header"))?;
    ensure!(header <= 1100, "{what}: X-Influxdb-Error is {header} bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_endpoint_refuses_bad_input_clearly_and_the_node_stays_up() -> Result<()> {
    let (tcp, udp) = (free_port(), free_port());
    let config = format!("line_tcp_addr = \"127.0.0.1:{tcp}\"\nline_udp_addr = \"127.0.0.1:{udp}\"\n");
    let c = Cluster::start(1, &config).await?;
    let n = &c.nodes[0];
    let pid = n.pid().expect("running");
    let t0 = recent_ms();
    let mut peak = rss_bytes(pid);
    let write = n.url("/write?precision=ms");
    let ok = c.http.post(&write).body(format!("kept,host=a v=1 {t0}\n")).send().await?;
    ensure!(ok.status() == 204);

    // Line protocol.
    let post = |url: &str, body: Vec<u8>| c.http.post(url).body(body);
    expect_refused(post(&write, b"cpu,h=\xff\xfe v=1\n".to_vec()).send().await?, 400, "UTF-8", "invalid UTF-8").await?;
    expect_refused(
        post(&write, b"cpu v=1 12345678901234567890123\n".to_vec()).send().await?,
        400,
        "line 1",
        "timestamp",
    )
    .await?;
    expect_refused(post(&write, b"cpu v=\n".to_vec()).send().await?, 400, "line 1", "truncated line").await?;
    expect_refused(post(&write, b"\0\0\0\0".to_vec()).send().await?, 400, "line 1", "NUL bytes").await?;
    let mut wide = b"cpu,".to_vec();
    wide.extend(b"t=v,".repeat(100_000));
    wide.extend(b"x=1 v=1\n");
    expect_refused(post(&write, wide).send().await?, 400, "max_line_bytes", "a 400 KB line").await?;
    let gz = post(&write, b"\x1f\x8b\x08\x00garbage".to_vec()).header("Content-Encoding", "gzip");
    expect_refused(gz.send().await?, 400, "gzip", "truncated gzip").await?;
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b'a'; 80 << 20])?;
    let bomb = post(&write, bomb.finish()?).header("Content-Encoding", "gzip");
    expect_refused(bomb.send().await?, 413, "max_body_bytes", "a gzip bomb").await?;
    let v2 = n.url("/api/v2/write?bucket=x&precision=xs");
    expect_refused(post(&v2, b"cpu v=1\n".to_vec()).send().await?, 400, "precision", "unknown precision").await?;

    // Remote write.
    let rw = n.url("/api/v1/write");
    let junk = post(&rw, vec![0xff; 1000]).header("Content-Encoding", "snappy");
    expect_refused(junk.send().await?, 400, "snappy", "junk instead of snappy").await?;
    let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 1000])?;
    expect_refused(post(&rw, not_protobuf).send().await?, 400, "protobuf", "junk protobuf").await?;

    // Queries: deep nesting, a huge query, many statements, bad parameters.
    let query = n.url("/query");
    let form = |q: String| c.http.post(&query).form(&[("q", q), ("db", "pharos".into())]);
    let deep = format!("SELECT {}1{} FROM cpu", "(".repeat(100_000), ")".repeat(100_000));
    expect_refused(form(deep).send().await?, 400, "nested too deeply", "deep nesting").await?;
    let huge = format!("SELECT v FROM cpu WHERE {} AND", vec!["a = 'b'"; 100_000].join(" AND "));
    let r = form(huge).send().await?;
    let body_len = r.content_length();
    expect_refused(r, 400, "line 1", "a 1 MB query").await?;
    ensure!(body_len.unwrap_or(0) < 2_000, "the error of a 1 MB query stays short: {body_len:?} bytes");
    expect_refused(c.http.get(&query).send().await?, 400, "\"q\"", "no query").await?;
    let r = c.http.get(&query).query(&[("q", "SELECT v FROM kept"), ("epoch", "fortnight")]).send().await?;
    expect_refused(r, 400, "epoch", "a bad epoch").await?;
    let export = n.url("/api/v1/export?measurement=kept&start=yesterday");
    expect_refused(c.http.get(&export).send().await?, 400, "start", "a bad export start").await?;

    // gRPC.
    let mut w = WriteClient::connect(format!("http://{}", n.grpc)).await?;
    let bad = WriteRequest { line_protocol: "cpu v=\n".into(), ..Default::default() };
    let err = w.write(bad).await.unwrap_err();
    ensure!(err.code() == tonic::Code::InvalidArgument && err.message().contains("line 1"), "{err:?}");
    let mut q = QueryClient::connect(format!("http://{}", n.grpc)).await?;
    let err = q.query(QueryRequest { query: "SELECT ((((".into(), allow_stale: false }).await.unwrap_err();
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");

    // Raw TCP and UDP line protocol: garbage is dropped and counted, the listeners keep serving.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tcp))?;
    s.write_all(b"\xff\xff\xff garbage\n\0\0\0\ncpu v=\n")?;
    s.write_all(format!("kept,host=tcp v=2 {}000000\n", t0 + 1).as_bytes())?;
    drop(s);
    let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
    u.send_to(&[0xffu8; 1400], ("127.0.0.1", udp))?;
    u.send_to(format!("kept,host=udp v=3 {}000000\n", t0 + 2).as_bytes(), ("127.0.0.1", udp))?;
    peak = peak.max(rss_bytes(pid));

    // Many series in one request (200,000: the default limit allows a million; docs/reliability.md has the
    // million measured on a release build).
    let many: String = (0..200_000).map(|i| format!("many,host=h{i} v={i} {t0}\n")).collect();
    let sampler = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, peak_seen) = (stop.clone(), std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let p2 = peak_seen.clone();
        let h = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                p2.fetch_max(rss_bytes(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        (stop, peak_seen, h)
    };
    let r = c.http.post(&write).timeout(Duration::from_secs(120)).body(many).send().await?;
    ensure!(r.status() == 204, "200,000 series in one request: {}", r.text().await?);
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.2.join();
    peak = peak.max(sampler.1.load(std::sync::atomic::Ordering::Relaxed));
    println!("peak RSS during the sweep: {} MB", peak >> 20);
    // A debug build; the bound is generous, and docs/reliability.md gives the release figure.
    ensure!(peak < 2 << 30, "memory during the sweep stayed under 2 GiB: {} MB", peak >> 20);

    // Still up, and what was acknowledged is there.
    let r = c.http.get(&query).query(&[("q", "SELECT count(v) FROM kept"), ("db", "pharos")]).send().await?;
    let body: serde_json::Value = r.json().await?;
    ensure!(body["results"][0]["series"][0]["values"][0][1].as_u64() >= Some(1), "{body}");
    let health = c.http.get(n.url("/health")).send().await?;
    ensure!(health.status() == 200, "the node is healthy after the sweep");
    ensure!(!n.log().contains("panicked"), "no panic in the node's log");
    Ok(())
}
