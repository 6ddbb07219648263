//! One real `pharos` process: the HTTP write contract, graceful stop and crash recovery.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use cluster_tests::{recent_ms, tail, wait_for, Cluster};

fn lines(host: &str, from: i64, n: i64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "cpu,host={host},region=us usage={},idle={}i {}\n",
                i as f64 * 0.25,
                100 - i,
                recent_ms() + from + i * 10_000
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_write_contract_restart_and_crash() -> Result<()> {
    let mut c = Cluster::start(1, "[limits]\nmax_body_bytes = 100000\n").await?;
    let ping = c.http.get(c.nodes[0].url("/ping")).send().await?;
    assert_eq!(ping.status(), 204);
    // A start logs a few lines of its own at the default level, not the Raft library's chatter.
    let started = c.nodes[0].log();
    assert!(started.lines().count() < 30, "{} lines:\n{started}", started.lines().count());
    assert!(started.contains("pharos started"), "{started}");

    let (code, body) = c.write(1, lines("a", 0, 50)).await?;
    assert_eq!(code, 204, "{body}");

    // A bad line: 400 naming it; the lines before it are written, it and the rest are not.
    let bad = format!("{}cpu,host=b usage=oops {}\n{}", lines("b", 0, 2), recent_ms(), lines("b", 100_000, 1));
    let (code, body) = c.write(1, bad).await?;
    assert_eq!(code, 400);
    assert!(body.contains("line 3"), "names the line: {body}");
    let (code, body) = c.write(1, format!("cpu,host=c msg=\"hello\" {}\n", recent_ms())).await?;
    assert_eq!(code, 400);
    assert!(body.contains("string"), "explains string fields: {body}");

    // gzip bodies.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(lines("z", 0, 10).as_bytes())?;
    let r = c
        .http
        .post(c.nodes[0].url("/write?precision=ms"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish()?)
        .send()
        .await?;
    assert_eq!(r.status(), 204);

    // Over the body limit: 413, nothing written.
    let (code, body) = c.write(1, lines("big", 0, 2000)).await?;
    assert_eq!(code, 413, "{body}");

    let exported = c.export(1, "cpu", false).await?;
    let count = |host: &str| exported.keys().filter(|(s, _)| s.contains(&format!("host={host},"))).count();
    assert_eq!((count("a"), count("b"), count("z"), count("big")), (100, 4, 20, 0), "two fields per line");
    assert_eq!(exported.get(&("cpu,host=a,region=us usage".to_string(), recent_ms() + 49 * 10_000)), Some(&12.25));
    // Samples older than the raw retention (7 days) are refused with a clear partial-write error.
    let (code, body) = c.write(1, format!("cpu,host=old usage=1 {}\n", recent_ms() - 30 * 86_400_000)).await?;
    assert_eq!(code, 400);
    assert!(body.contains("retention"), "{body}");

    // Units. Milliseconds sent as seconds land millennia ahead: refused, naming the line and the unit that fits.
    let now_s = recent_ms() / 1000 + 3600;
    let body = format!("units,host=u usage=1 {now_s}\nunits,host=u usage=2 {}\n", recent_ms() + 3_600_000);
    let r = c.http.post(c.nodes[0].url("/write?precision=s")).body(body).send().await?;
    let (code, text) = (r.status(), r.text().await?);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("line 2") && text.contains("in the future"), "{text}");
    assert!(text.contains("precision=ms"), "names the unit that fits: {text}");
    // Two days ahead in the right unit is refused too (limits.max_future, 1 day); the line before was written.
    let r = c
        .http
        .post(c.nodes[0].url("/write?precision=s"))
        .body(format!("units,host=u usage=3 {}\n", now_s + 2 * 86_400))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let text = r.text().await?;
    assert!(text.contains("line 1: ") && text.contains("day in the future") && !text.contains("reads as"), "{text}");
    // Seconds sent without a precision (nanoseconds) are 1970: dropped as too old, with the unit that fits.
    let r = c.http.post(c.nodes[0].url("/write")).body(format!("units,host=u usage=4 {now_s}\n")).send().await?;
    let (code, text) = (r.status(), r.text().await?);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("retention") && text.contains("precision=s "), "{text}");
    let units = c.export(1, "units", false).await?;
    let host_u: Vec<_> = units.iter().filter(|((s, _), _)| s.contains("host=u")).collect();
    assert_eq!(host_u.len(), 1, "only the good line before the bad one: {host_u:?}");
    assert_eq!(*host_u[0].0, ("units,host=u usage".to_string(), now_s * 1000));
    // Export in another unit, and back with the same one.
    let r = c.http.get(c.nodes[0].url("/api/v1/export?measurement=units&where=host=u&precision=s")).send().await?;
    assert_eq!(r.text().await?.trim(), format!("units,host=u usage=1.0 {now_s}"));

    // pharosctl pointed at the HTTP port says to use the gRPC one.
    let ctl = cluster_tests::pharos_bin().with_file_name("pharosctl");
    let out = std::process::Command::new(&ctl).args(["--addr", &c.nodes[0].http, "status"]).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("HTTP port") && err.contains("gRPC port"), "{err}");
    // A silence without --author is the OS user's, even with USER and LOGNAME unset.
    let out = std::process::Command::new(&ctl)
        .args(["--addr", &c.nodes[0].grpc, "silence", "add", "alertname=\"X\"", "--comment", "test"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        std::process::Command::new(&ctl).args(["--addr", &c.nodes[0].grpc, "silence", "list", "--json"]).output()?;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(!listed["created_by"].as_str().unwrap_or("").is_empty(), "{listed}");
    // A second server on the same data directory names the problem.
    let second = std::process::Command::new(cluster_tests::pharos_bin())
        .arg("server")
        .arg("--data-dir")
        .arg(c.nodes[0].dir.path().join("data"))
        .args(["--http-addr", &format!("127.0.0.1:{}", cluster_tests::free_port())])
        .args(["--grpc-addr", &format!("127.0.0.1:{}", cluster_tests::free_port())])
        .output()?;
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(err.contains("another pharos is using the data directory"), "{err}");

    let metrics = c.http.get(c.nodes[0].url("/metrics")).send().await?.text().await?;
    assert!(metrics.contains("pharos_samples_written_total"), "{}", tail(&metrics, 5));
    assert!(metrics.contains("pharos_raft_commit_seconds_bucket"));

    // Graceful stop, restart: everything is back.
    let st = c.node(1).terminate(Duration::from_secs(20))?;
    assert!(st.success(), "clean exit on SIGTERM: {st:?}");
    c.node(1).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    assert_eq!(c.export(1, "cpu", false).await?, exported);

    // Crash (SIGKILL) right after acknowledged writes: they survive.
    let (code, _) = c.write(1, lines("after", 0, 30)).await?;
    assert_eq!(code, 204);
    c.node(1).kill();
    c.node(1).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let again = c.export(1, "cpu", false).await?;
    assert_eq!(again.keys().filter(|(s, _)| s.contains("host=after")).count(), 60);
    Ok(())
}

/// Bytes in a directory tree.
fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_compaction_purges_the_log_and_keeps_every_sample() -> Result<()> {
    let mut c = Cluster::start(1, "").await?;
    for k in 0..20 {
        let (code, body) = c.write(1, lines(&format!("h{k}"), 0, 300)).await?;
        assert_eq!(code, 204, "{body}");
    }
    let before = c.export(1, "cpu", false).await?;
    assert_eq!(before.len(), 20 * 300 * 2);
    let data = c.nodes[0].dir.path().join("data");
    let size_before = dir_bytes(&data);
    let r = c.http.post(c.nodes[0].url("/api/v1/admin/compact")).send().await?;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await?;
    assert_eq!(v["groups"], 17, "16 shards and the meta group: {v}");
    let size_after = dir_bytes(&data);
    println!("data directory {size_before} -> {size_after} bytes");
    // Every shard's log is purged up to what it had applied (its snapshot covers the rest); a periodic
    // maintenance entry may have been applied since.
    let st = c.status(1).await?;
    for s in &st.shards {
        assert!(s.purged_index > 0 && s.applied_index - s.purged_index <= 3, "shard {}: {s:?}", s.shard);
    }
    assert_eq!(c.export(1, "cpu", false).await?, before);
    // Compaction ran maintenance first: the 1-hour tier of the shards with data reaches an out-of-order
    // window (1 h) behind their newest sample (10 minutes ago), not the 6 days behind the clock that the
    // maintenance at startup, before any data, could build.
    let metrics = c.http.get(c.nodes[0].url("/metrics")).send().await?.text().await?;
    let newest_hour_wm = metrics
        .lines()
        .filter(|l| l.starts_with("pharos_shard_rollup_watermark_seconds{") && l.contains("tier=\"1h\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(f64::MIN, f64::max);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    assert!(newest_hour_wm > now_s - 3.0 * 3600.0, "1-hour tier built to {newest_hour_wm}, now {now_s}: {metrics}");
    // A crash right after: the node recovers from the snapshots alone (the log is gone) and has it all.
    c.node(1).kill();
    c.node(1).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    assert_eq!(c.export(1, "cpu", false).await?, before);
    let (code, body) = c.write(1, lines("later", 0, 5)).await?;
    assert_eq!(code, 204, "writes go on after recovery: {body}");
    Ok(())
}

/// Writes `batches` requests of 1,000 lines (2,000 samples, one host, 1 s apart) each, all acknowledged.
async fn write_batches(c: &Cluster, prefix: &str, batches: usize) -> Result<()> {
    for k in 0..batches {
        let body: String = (0..1000)
            .map(|i| {
                format!("cpu,host={prefix}{k} usage={},idle={}i {}\n", i as f64 * 0.25, 100 - i, recent_ms() + i * 1000)
            })
            .collect();
        let (code, body) = c.write(1, body).await?;
        assert_eq!(code, 204, "{body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_an_idle_node_gives_the_log_space_back_by_itself() -> Result<()> {
    let mut c = Cluster::start(1, "[raft]\nidle_snapshot_ms = 1500\n").await?;
    write_batches(&c, "h", 100).await?;
    let before = c.export(1, "cpu", false).await?;
    assert_eq!(before.len(), 100 * 1000 * 2);
    let data = c.nodes[0].dir.path().join("data");
    let loaded = dir_bytes(&data);
    // No admin call: the log keeper snapshots each idle group, purges its log and compacts what it freed.
    wait_for(Duration::from_secs(60), "every shard's log purged to what it applied", || async {
        let st = c.status(1).await?;
        Ok(st.shards.iter().all(|s| s.purged_index > 0 && s.applied_index - s.purged_index <= 3).then_some(()))
    })
    .await?;
    let idle = wait_for(Duration::from_secs(30), "the data directory to shrink", || async {
        let now = dir_bytes(&data);
        Ok((now * 2 < loaded).then_some(now))
    })
    .await?;
    println!("data directory after the load {loaded} bytes, idle {idle} bytes");
    // The purged log is not needed: a crash now recovers everything from the snapshots.
    c.node(1).kill();
    c.node(1).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    assert_eq!(c.export(1, "cpu", false).await?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_a_busy_node_snapshots_and_purges_by_bytes() -> Result<()> {
    // Never idle for the keeper; 256 KiB of log per snapshot, 64 KiB kept behind it.
    let cfg = "[raft]\nidle_snapshot_ms = 3600000\nsnapshot_after_bytes = 262144\nkeep_bytes_after_snapshot = 65536\n";
    let mut c = Cluster::start(1, cfg).await?;
    let mut written = 0;
    let purged = wait_for(Duration::from_secs(90), "a shard's log purged while writes go on", || {
        written += 1;
        let c = &c;
        let k = written;
        async move {
            write_batches(c, &format!("b{k}-"), 5).await?;
            let st = c.status(1).await?;
            Ok(st.shards.iter().map(|s| s.purged_index).max().filter(|p| *p > 0))
        }
    })
    .await?;
    println!("purged up to index {purged} after {written} rounds of writes");
    let before = c.export(1, "cpu", false).await?;
    assert_eq!(before.len(), written * 5 * 1000 * 2);
    c.node(1).kill();
    c.node(1).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    assert_eq!(c.export(1, "cpu", false).await?, before);
    Ok(())
}
