//! `pharos-bench`: load and size tools. See docs/benchmarks.md for the figures and the commands.
//!
//! - `write`: pushes generated line protocol to any InfluxDB-compatible `/write` over N connections and prints
//!   samples/s and batch latency percentiles, with a progress line.
//! - `size`: applies a generated data set into one storage engine on RocksDB, compacts, and prints bytes per
//!   sample on disk counting everything (chunks, heads, series index, rollups, RocksDB metadata).

mod gen;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use gen::{Generator, Set};
use pharos_storage::line_protocol::write_line;
use pharos_storage::{Command, EngineOptions, Retention, ShardEngine};

#[derive(Parser)]
#[command(name = "pharos-bench", about = "Pharos load and size benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Push line protocol over HTTP and report samples/s and latency.
    Write {
        /// Base URL of a node (or any InfluxDB-compatible server).
        #[arg(long, default_value = "http://127.0.0.1:8086")]
        url: String,
        #[arg(long, value_enum, default_value = "cpu")]
        set: Set,
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        /// Time steps (10 s apart) to send; each step is one point per host.
        #[arg(long, default_value_t = 360)]
        steps: usize,
        /// Lines per request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        conc: usize,
        /// Line protocol to /write, or the same samples as Prometheus remote write to /api/v1/write (one
        /// series per point and field, named measurement_field).
        #[arg(long, value_enum, default_value = "lp")]
        protocol: Protocol,
        /// Send the oldest batches first (in time order). By default the newest go first, so a series'
        /// later batches arrive older than its newest sample (out of order, as after an outage).
        #[arg(long)]
        oldest_first: bool,
        /// A write token, sent as `Authorization: Bearer` (for a node with auth on).
        #[arg(long, env = "PHAROS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A CA (PEM) to trust, for an https:// URL (a node with TLS on).
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
    },
    /// Bytes per sample on disk for a data set applied into one shard.
    Size {
        #[arg(long, value_enum, default_value = "node")]
        set: Set,
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        #[arg(long, default_value_t = 12)]
        hours: usize,
        /// Where to put the RocksDB directory (a temp dir by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Samples per sealed chunk (engine option max_chunk_samples).
        #[arg(long)]
        chunk: Option<usize>,
    },
    /// Memory per active series: `hosts` x the set's fields series written into one shard for `steps`
    /// timestamps; the process's RSS growth (less RocksDB's memtables) divided by the series.
    Memory {
        #[arg(long, value_enum, default_value = "cpu")]
        set: Set,
        #[arg(long, default_value_t = 20_000)]
        hosts: usize,
        #[arg(long, default_value_t = 6)]
        steps: usize,
    },
}

/// This process's resident set size in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Lp,
    RemoteWrite,
}

/// Points as a snappy-compressed Prometheus remote-write request.
fn remote_write_body(points: &[pharos_storage::Point]) -> Vec<u8> {
    use pharos_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;
    let mut req = WriteRequest { timeseries: Vec::with_capacity(points.len() * 10) };
    for p in points {
        for (f, v) in &p.fields {
            let mut labels = vec![Label { name: "__name__".into(), value: format!("{}_{f}", p.measurement) }];
            labels.extend(p.tags.iter().map(|(k, v)| Label { name: k.to_string(), value: v.to_string() }));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            req.timeseries.push(TimeSeries { labels, samples: vec![Sample { value: *v, timestamp: p.timestamp }] });
        }
    }
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy compression of a Vec")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
        }
    }
    total
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Measure what a cluster of this build writes (a node turns grid timestamps on once every member reads
    // them).
    pharos_storage::codec::allow_grid_timestamps(true);
    match Cli::parse().cmd {
        Cmd::Write { url, set, hosts, steps, batch, conc, protocol, oldest_first, token, ca } => {
            let mut g = Generator::new(set, hosts, 42);
            let fields = g.fields_per_point();
            let end = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64) / 10_000
                * 10_000;
            let start = end - steps as i64 * 10_000;
            eprintln!("generating {} lines ({} samples)...", hosts * steps, hosts * steps * fields);
            let mut bodies: Vec<Vec<u8>> = Vec::new();
            let (mut buf, mut n, mut pts) = (String::new(), 0, Vec::new());
            let mut pending: Vec<pharos_storage::Point> = Vec::new();
            for s in 0..steps {
                pts.clear();
                g.step(start + s as i64 * 10_000, &mut pts);
                for p in &pts {
                    match protocol {
                        Protocol::Lp => write_line(p, &mut buf),
                        Protocol::RemoteWrite => pending.push(p.clone()),
                    }
                    n += 1;
                    if n == batch {
                        bodies.push(match protocol {
                            Protocol::Lp => std::mem::take(&mut buf).into_bytes(),
                            Protocol::RemoteWrite => remote_write_body(&std::mem::take(&mut pending)),
                        });
                        n = 0;
                    }
                }
            }
            if n > 0 {
                bodies.push(match protocol {
                    Protocol::Lp => buf.into_bytes(),
                    Protocol::RemoteWrite => remote_write_body(&pending),
                });
            }
            if oldest_first {
                // Workers pop from the end.
                bodies.reverse();
            }
            let total = bodies.len();
            let queue = Arc::new(std::sync::Mutex::new(bodies));
            let done = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(120)).pool_max_idle_per_host(conc);
            if let Some(ca) = &ca {
                builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?);
            }
            if let Some(t) = &token {
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse()?);
                builder = builder.default_headers(headers);
            }
            let client = builder.build()?;
            let write_url = match protocol {
                Protocol::Lp => format!("{}/write?precision=ms", url.trim_end_matches('/')),
                Protocol::RemoteWrite => format!("{}/api/v1/write", url.trim_end_matches('/')),
            };
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (q, d, e, c, u) = (queue.clone(), done.clone(), errors.clone(), client.clone(), write_url.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let Some(body) = q.lock().unwrap().pop() else { break };
                        let t = Instant::now();
                        let mut ok = false;
                        for _ in 0..5 {
                            let req = match protocol {
                                Protocol::Lp => c.post(&u).body(body.clone()),
                                Protocol::RemoteWrite => c
                                    .post(&u)
                                    .header("Content-Encoding", "snappy")
                                    .header("Content-Type", "application/x-protobuf")
                                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                                    .body(body.clone()),
                            };
                            match req.send().await {
                                Ok(r) if r.status().is_success() => {
                                    ok = true;
                                    break;
                                }
                                Ok(r) if r.status() == 503 => tokio::time::sleep(Duration::from_millis(200)).await,
                                _ => break,
                            }
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        if !ok {
                            e.fetch_add(1, Ordering::Relaxed);
                        }
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    lat
                }));
            }
            let progress = {
                let d = done.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let k = d.load(Ordering::Relaxed) as usize;
                        eprint!("\r  {k}/{total} batches ({:.0}%)", 100.0 * k as f64 / total.max(1) as f64);
                        if k >= total {
                            break;
                        }
                    }
                })
            };
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await?);
            }
            progress.abort();
            let secs = t0.elapsed().as_secs_f64();
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let samples = (hosts * steps * fields) as f64;
            eprintln!();
            println!(
                "{{\"samples\": {samples}, \"seconds\": {secs:.2}, \"samples_per_s\": {:.0}, \"batches\": {total}, \"errors\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}}}",
                samples / secs,
                errors.load(Ordering::Relaxed),
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
        }
        Cmd::Memory { set, hosts, steps } => {
            let tmp = tempfile::TempDir::new()?;
            let db = pharos_storage::db::open(tmp.path(), &Default::default())?;
            let mut g = Generator::new(set, hosts, 7);
            let end = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64) / 10_000
                * 10_000;
            let base = rss_bytes().saturating_sub(pharos_storage::db::memtable_bytes(&db));
            let mut e = ShardEngine::open(db.clone(), 0, Arc::new(Retention::default()), EngineOptions::default())?;
            let (mut pts, mut mark) = (Vec::new(), 0u64);
            for s in 0..steps {
                g.step(end - (steps - s) as i64 * 10_000, &mut pts);
                for batch in pts.chunks(5000) {
                    mark += 1;
                    e.apply(&Command::write(batch.to_vec()), &mark.to_be_bytes())?;
                }
                pts.clear();
                eprint!("\r  applied {} of {steps} steps", s + 1);
            }
            eprintln!();
            let series = e.series_count() as f64;
            let live = rss_bytes().saturating_sub(pharos_storage::db::memtable_bytes(&db));
            println!(
                "{series} series ({hosts} hosts x {} fields), {steps} samples each: {:.0} bytes per series \
                 (process RSS growth less RocksDB memtables; heads hold {} samples)",
                g.fields_per_point(),
                live.saturating_sub(base) as f64 / series,
                e.samples_in_heads(),
            );
        }
        Cmd::Size { set, hosts, hours, dir, chunk } => {
            let tmp = tempfile::TempDir::new()?;
            let path = dir.unwrap_or_else(|| tmp.path().to_path_buf());
            let db = pharos_storage::db::open(&path, &Default::default())?;
            let opts = EngineOptions {
                max_chunk_samples: chunk.unwrap_or(EngineOptions::default().max_chunk_samples),
                ..Default::default()
            };
            let mut e = ShardEngine::open(db.clone(), 0, Arc::new(Retention::default()), opts)?;
            let mut g = Generator::new(set, hosts, 7);
            let steps = hours * 360;
            let end = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64)
                / 3_600_000
                * 3_600_000;
            let start = end - steps as i64 * 10_000;
            let mut samples = 0u64;
            let t0 = Instant::now();
            let mut pts = Vec::new();
            let mut mark = 0u64;
            for s in 0..steps {
                let ts = start + s as i64 * 10_000;
                g.step(ts, &mut pts);
                if pts.len() >= 5000 || s + 1 == steps {
                    samples += pts.iter().map(|p| p.fields.len() as u64).sum::<u64>();
                    mark += 1;
                    e.apply(&Command::write(std::mem::take(&mut pts)), &mark.to_be_bytes())?;
                }
                if s % 360 == 359 {
                    mark += 1;
                    e.apply(&Command::Maintain { now_ms: ts }, &mark.to_be_bytes())?;
                    eprint!("\r  applied {} of {hours} hours", s / 360 + 1);
                }
            }
            let apply_secs = t0.elapsed().as_secs_f64();
            mark += 1;
            e.apply(&Command::Maintain { now_ms: end + 2 * 3_600_000 }, &mark.to_be_bytes())?;
            e.checkpoint()?;
            drop(e);
            let mut per_cf = Vec::new();
            for name in pharos_storage::db::ALL_CFS {
                let cf = pharos_storage::db::cf(&db, name);
                db.flush_cf(cf)?;
                db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
                let sst = db.property_int_value_cf(cf, "rocksdb.total-sst-files-size")?.unwrap_or(0);
                per_cf.push(format!("\"{name}\": {:.3}", sst as f64 / samples as f64));
            }
            drop(db);
            eprintln!("bytes/sample by column family: {{{}}}", per_cf.join(", "));
            let bytes = dir_bytes(&path);
            eprintln!();
            println!(
                "{{\"set\": \"{set:?}\", \"hosts\": {hosts}, \"hours\": {hours}, \"samples\": {samples}, \"bytes_on_disk\": {bytes}, \"bytes_per_sample\": {:.3}, \"apply_samples_per_s\": {:.0}}}",
                bytes as f64 / samples as f64,
                samples as f64 / apply_secs
            );
        }
    }
    Ok(())
}
