//! Codec and engine micro-benchmarks. Run: `cargo bench -p pharos-bench --bench storage`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pharos_storage::codec::{self, Encoding};
use pharos_storage::{Command, EngineOptions, Point, Retention, ShardEngine};

/// One chunk's samples; each seed gives a different chunk, so branch predictors cannot learn one chunk.
fn series(kind: &str, n: usize, seed: u64) -> (Vec<i64>, Vec<f64>) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let ts: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000_000 + i * 10_000).collect();
    // A walk around 64 crosses a binade: FloatBits stores it as interval positions (mode 3).
    let mut v = if kind == "walk_across_64" { 64.0 } else { 50.0 };
    let vals = (0..n)
        .map(|i| match kind {
            "random_walk" | "walk_across_64" => {
                v = (v + rnd() * 2.0 - 1.0f64).clamp(0.0, 100.0);
                v
            }
            "gauge_2dec" => {
                if rnd() < 0.3 {
                    v = ((v + rnd() * 2.0 - 1.0) * 100.0).round() / 100.0;
                }
                v
            }
            "counter" => 1_000_000.0 + (i as f64) * 100.0 + (rnd() * 10.0).floor(),
            _ => 42.0,
        })
        .collect();
    (ts, vals)
}

fn codec_bench(c: &mut Criterion) {
    pharos_storage::codec::allow_grid_timestamps(true);
    let mut g = c.benchmark_group("codec");
    for kind in ["random_walk", "walk_across_64", "gauge_2dec", "counter", "constant"] {
        let chunks: Vec<(Vec<i64>, Vec<f64>)> = (0..100).map(|i| series(kind, 120, i)).collect();
        g.throughput(Throughput::Elements(120 * 100));
        g.bench_with_input(BenchmarkId::new("encode", kind), &chunks, |b, chunks| {
            b.iter(|| chunks.iter().map(|(t, v)| codec::encode_chunk(t, v).len()).sum::<usize>())
        });
        let encoded: Vec<Vec<u8>> = chunks.iter().map(|(t, v)| codec::encode_chunk(t, v)).collect();
        g.bench_with_input(BenchmarkId::new("decode", kind), &encoded, |b, enc| {
            let (mut t, mut v) = (Vec::with_capacity(128), Vec::with_capacity(128));
            b.iter(|| {
                for e in enc {
                    t.clear();
                    v.clear();
                    codec::decode_chunk(e, &mut t, &mut v).unwrap();
                }
                t.len()
            })
        });
        let gorilla: Vec<Vec<u8>> =
            chunks.iter().map(|(t, v)| codec::encode_chunk_with(Encoding::Gorilla, t, v).unwrap()).collect();
        g.bench_with_input(BenchmarkId::new("decode_gorilla", kind), &gorilla, |b, enc| {
            let (mut t, mut v) = (Vec::with_capacity(128), Vec::with_capacity(128));
            b.iter(|| {
                for e in enc {
                    t.clear();
                    v.clear();
                    codec::decode_chunk(e, &mut t, &mut v).unwrap();
                }
                t.len()
            })
        });
    }
    g.finish();
}

fn apply_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    let hosts = 1000;
    let fields = 10;
    g.throughput(Throughput::Elements((hosts * fields) as u64));
    g.bench_function("apply_10k_samples_into_one_shard", |b| {
        let dir = tempfile::TempDir::new().unwrap();
        let db = pharos_storage::db::open(dir.path(), &Default::default()).unwrap();
        let mut e = ShardEngine::open(db, 0, Arc::new(Retention::default()), EngineOptions::default()).unwrap();
        let mut step = 0i64;
        let mut mark = 0u64;
        b.iter(|| {
            step += 1;
            let pts: Vec<Point> = (0..hosts)
                .map(|h| Point {
                    measurement: "cpu".into(),
                    tags: vec![("host".into(), format!("host_{h}").into()), ("region".into(), "us-west-1".into())],
                    fields: (0..fields).map(|f| (format!("f{f}").into(), (step + f as i64) as f64 * 0.5)).collect(),
                    timestamp: 1_700_000_000_000 + step * 10_000,
                })
                .collect();
            mark += 1;
            e.apply(&Command::write(pts), &mark.to_be_bytes()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, codec_bench, apply_bench);
criterion_main!(benches);
