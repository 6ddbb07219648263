//! The query language against a real `pharos` process: golden files (cases/*.sql beside *.result) over
//! fixed data (cases/data.lp), the gRPC Query API, `pharosctl query`, and the real `influx` command-line
//! client from Debian's influxdb-client package against `/query`.
//!
//! Data times in data.lp are `@S`, S seconds after a base time (the UTC midnight two days ago, inside raw
//! retention); queries write `{t+S}` for the same instants. Results are rendered with times as `t+S` so
//! the expected files do not depend on the day. `PHAROS_BLESS=1` rewrites the *.result files (review the
//! diff before committing: each expected value was checked by hand when the case was added).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cluster_tests::{recent_ms, Cluster};
use pharos_proto::v1::query_client::QueryClient;
use pharos_proto::v1::{value, QueryRequest};
use serde_json::Value as Json;

const DAY_MS: i64 = 86_400_000;

fn cases_dir() -> PathBuf {
    // Cargo sets CARGO_MANIFEST_DIR when it runs the test too; prefer that to the compile-time path, which is
    // wrong when a shared target directory holds a binary built from another checkout of the same sources.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    dir.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()).join("cases")
}

fn base_ms() -> i64 {
    let now = recent_ms();
    now - now.rem_euclid(DAY_MS) - 2 * DAY_MS
}

/// Replaces every `{t+S}` with the absolute time in ms (`<ms>ms`).
fn expand(q: &str, base: i64) -> String {
    let mut out = String::new();
    let mut rest = q;
    while let Some(i) = rest.find("{t+") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').expect("closing brace") + i;
        let secs: i64 = rest[i + 3..j].parse().expect("seconds");
        out.push_str(&format!("{}ms", base + secs * 1000));
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

fn data(base: i64) -> String {
    std::fs::read_to_string(cases_dir().join("data.lp"))
        .expect("cases/data.lp")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (head, at) = l.rsplit_once(" @").expect("line ends with @seconds");
            format!("{head} {}\n", base + at.parse::<i64>().expect("seconds") * 1000)
        })
        .collect()
}

/// Rewrites the `time` column (epoch ms) as `t+S` and statement errors' absolute times as `{t+S}`.
fn relative(mut v: Json, base: i64) -> Json {
    if let Some(results) = v.get_mut("results").and_then(Json::as_array_mut) {
        for r in results {
            if let Some(Json::String(e)) = r.get_mut("error") {
                let mut s = e.clone();
                for secs in (0..=7200).rev().step_by(60) {
                    s = s.replace(&format!("{}ms", base + secs * 1000), &format!("{{t+{secs}}}"));
                }
                *e = s;
            }
            for series in r.get_mut("series").and_then(Json::as_array_mut).into_iter().flatten() {
                let ti = series["columns"].as_array().and_then(|c| c.iter().position(|x| x == "time"));
                let Some(ti) = ti else { continue };
                for row in series["values"].as_array_mut().into_iter().flatten() {
                    if let Some(t) = row[ti].as_i64() {
                        let d = t - base;
                        row[ti] =
                            Json::String(if d % 1000 == 0 { format!("t+{}", d / 1000) } else { format!("t+{d}ms") });
                    }
                }
            }
        }
    }
    v
}

async fn query_json(c: &Cluster, node: usize, q: &str) -> Result<(u16, Json)> {
    let r =
        c.http.get(c.nodes[node].url("/query")).query(&[("q", q), ("epoch", "ms"), ("db", "pharos")]).send().await?;
    let code = r.status().as_u16();
    let text = r.text().await?;
    Ok((code, serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_golden_cases_grpc_pharosctl_and_the_influx_cli() -> Result<()> {
    // Small windows, so streamed raw queries (gRPC, chunked HTTP) come in many pieces.
    let c = Cluster::start(1, "[query]\nwindow_points = 100\n").await?;
    let base = base_ms();
    let (code, body) = c.write(1, data(base)).await?;
    assert_eq!(code, 204, "{body}");

    // Golden files.
    let bless = std::env::var("PHAROS_BLESS").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(cases_dir())?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    cases.retain(|p| p.extension().is_some_and(|e| e == "sql"));
    cases.sort();
    assert!(cases.len() >= 10, "cases/*.sql present");
    let mut failures = Vec::new();
    for case in &cases {
        let q = expand(std::fs::read_to_string(case)?.trim(), base);
        let (code, body) = query_json(&c, 0, &q).await?;
        assert_eq!(code, 200, "{}: {body}", case.display());
        let got = serde_json::to_string_pretty(&relative(body, base))? + "\n";
        let expected_path = case.with_extension("result");
        if bless {
            std::fs::write(&expected_path, &got)?;
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .with_context(|| format!("{} missing; run with PHAROS_BLESS=1 and review it", expected_path.display()))?;
        if expected != got {
            failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", case.display()));
        }
    }
    if !failures.is_empty() {
        bail!("{} golden case(s) differ:\n{}", failures.len(), failures.join("\n"));
    }

    // The same dashboard query again: whole buckets come from the shards' caches, the answer is the same,
    // and the hit count shows in /metrics.
    let q = expand(
        "SELECT mean(usage_user) FROM cpu WHERE time >= {t+0} AND time < {t+7200} GROUP BY time(10m), host",
        base,
    );
    let first = query_json(&c, 0, &q).await?.1;
    let again = query_json(&c, 0, &q).await?.1;
    assert_eq!(first, again);
    let metrics = c.http.get(c.nodes[0].url("/metrics")).send().await?.text().await?;
    let hits: f64 = metrics
        .lines()
        .find(|l| l.starts_with("pharos_query_cache_buckets_total") && l.contains("result=\"hit\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .context("pharos_query_cache_buckets_total{result=\"hit\"} in /metrics")?;
    assert!(hits >= 12.0, "12 buckets per host were cached: {hits}");

    // chunked=true: raw rows stream as several JSON objects, one per line; together they equal the whole.
    let q =
        expand("SELECT usage_user, usage_system FROM cpu WHERE time >= {t+0} AND time < {t+7200} GROUP BY host", base);
    let whole = query_json(&c, 0, &q).await?.1;
    let text = c
        .http
        .get(c.nodes[0].url("/query"))
        .query(&[("q", q.as_str()), ("epoch", "ms"), ("chunked", "true")])
        .send()
        .await?
        .text()
        .await?;
    let mut joined: std::collections::BTreeMap<String, Vec<Json>> = Default::default();
    let mut chunks = 0;
    for line in text.lines() {
        chunks += 1;
        let v: Json = serde_json::from_str(line)?;
        for s in v["results"][0]["series"].as_array().into_iter().flatten() {
            joined
                .entry(s["tags"].to_string())
                .or_default()
                .extend(s["values"].as_array().cloned().unwrap_or_default());
        }
    }
    assert!(chunks > 3, "streamed in pieces: {chunks}");
    for s in whole["results"][0]["series"].as_array().context("series")? {
        assert_eq!(
            Some(s["values"].as_array().context("values")?),
            joined.get(&s["tags"].to_string()),
            "{}",
            s["tags"]
        );
    }
    assert_eq!(joined.values().map(Vec::len).sum::<usize>(), 345);

    // A query that does not parse: 400 naming the position.
    let (code, body) = query_json(&c, 0, "SELECT mean(usage_user FROM cpu").await?;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap_or("").contains("line 1, column 24"), "{body}");

    // POST with a form body, as InfluxDB clients send it.
    let q = expand("SELECT count(usage_user) FROM cpu WHERE time >= {t+0} AND time < {t+7200}", base);
    let r = c.http.post(c.nodes[0].url("/query")).form(&[("q", q.as_str()), ("epoch", "s")]).send().await?;
    let body: Json = r.json().await?;
    assert_eq!(body["results"][0]["series"][0]["values"][0][1], 345, "3 x 120 samples minus 15 missing: {body}");

    // gRPC Query, streamed: typed values.
    let mut client = QueryClient::connect(format!("http://{}", c.nodes[0].grpc)).await?;
    let q = expand("SELECT max(usage_user) FROM cpu WHERE time >= {t+0} AND time < {t+7200} GROUP BY host", base);
    let mut stream = client.query(QueryRequest { query: q, allow_stale: false }).await?.into_inner();
    let mut maxes = Vec::new();
    while let Some(msg) = stream.message().await? {
        for s in msg.series {
            let host = s.tags.iter().find(|t| t.key == "host").map(|t| t.value.clone()).unwrap_or_default();
            let v = match s.rows[0].values[1].kind {
                Some(value::Kind::Number(n)) => n,
                ref other => bail!("expected a number, got {other:?}"),
            };
            maxes.push((host, v));
        }
    }
    assert_eq!(maxes, vec![("a".into(), 9.0), ("b".into(), 19.0), ("c".into(), 29.0)]);
    let err = client.query(QueryRequest { query: "SELECT FROM".into(), allow_stale: false }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // pharosctl query, CSV.
    let ctl = cluster_tests::pharos_bin().with_file_name("pharosctl");
    let out = Command::new(&ctl)
        .args(["--addr", &c.nodes[0].grpc, "query", "--format", "csv"])
        .arg(expand("SELECT last(requests) FROM http WHERE time >= {t+0} AND time < {t+7200} GROUP BY host", base))
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    // Last sample at minute 119: host a restarted at minute 90 (29 minutes of 60), b and c grew all along.
    assert!(text.contains("http,host=a,") && text.contains(",1740\n"), "{text}");
    assert!(text.contains("http,host=c,") && text.contains(",9140\n"), "{text}");

    // The real InfluxDB 1.x CLI against /query.
    let (host, port) = c.nodes[0].http.rsplit_once(':').expect("host:port");
    let out = Command::new("influx")
        .args(["-host", host, "-port", port, "-database", "pharos", "-format", "csv", "-execute"])
        .arg(expand(
            "SELECT mean(usage_system) FROM cpu WHERE time >= {t+0} AND time < {t+7200} GROUP BY region; SHOW MEASUREMENTS",
            base,
        ))
        .output()
        .context("running influx (apt install influxdb-client; scripts/setup.sh does)")?;
    let text = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // region us: hosts a and b, usage_system = (m % 4) * 0.5 + i: mean 0.75 + 0.5 = 1.25.
    assert!(text.contains("cpu,region=us,") && text.contains(",1.25\n"), "{text}");
    assert!(text.contains("measurements,cpu\n") && text.contains("measurements,http\n"), "{text}");
    let out = Command::new("influx")
        .args(["-host", host, "-port", port, "-execute", "SELECT mean(x) FROM cpu GROUP BY time(1m"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error parsing query"), "{out:?}");
    Ok(())
}

/// `count` of every sample through one node (linearizable, or from any replica with `stale`).
async fn count_via(c: &Cluster, node: usize, q: &str, stale: bool) -> Result<Option<i64>> {
    let mut params = vec![("q", q.to_string()), ("epoch", "ms".to_string())];
    if stale {
        params.push(("stale", "true".to_string()));
    }
    let r = c.http.get(c.nodes[node].url("/query")).query(&params).send().await?;
    let body: Json = r.json().await?;
    if let Some(e) = body["results"][0]["error"].as_str() {
        bail!("node {}: {e}", node + 1);
    }
    Ok(body["results"][0]["series"][0]["values"][0][1].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_three_nodes_read_their_writes_and_answer_through_a_node_loss() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    let base = base_ms();
    let data = data(base);
    let lines = data.lines().count() as i64;
    let q = expand("SELECT count(usage_user) FROM cpu WHERE time >= {t+0} AND time < {t+7200}", base);
    let qh = expand("SELECT count(requests) FROM http WHERE time >= {t+0} AND time < {t+7200}", base);
    // Written through node 1, read right away through every node: linearizable reads see it all.
    let (code, body) = c.write(1, data).await?;
    assert_eq!(code, 204, "{body}");
    for n in 0..3 {
        assert_eq!(count_via(&c, n, &q, false).await?, Some(345), "node {}", n + 1);
        assert_eq!(count_via(&c, n, &qh, false).await?, Some(lines - 345), "node {}", n + 1);
    }
    // Stale reads from any replica catch up within moments.
    for n in 0..3 {
        cluster_tests::wait_for(std::time::Duration::from_secs(5), "stale read complete", || async {
            Ok((count_via(&c, n, &q, true).await? == Some(345)).then_some(()))
        })
        .await?;
    }
    // SIGKILL node 3: the shards it led elect new leaders; queries through the others answer in full.
    c.node(3).kill();
    let started = std::time::Instant::now();
    cluster_tests::wait_for(std::time::Duration::from_secs(15), "a full answer without node 3", || async {
        Ok(matches!(count_via(&c, 0, &q, false).await, Ok(Some(345))).then_some(()))
    })
    .await?;
    eprintln!("full answers again {:?} after the SIGKILL", started.elapsed());
    assert_eq!(count_via(&c, 1, &qh, false).await?, Some(lines - 345));
    Ok(())
}
