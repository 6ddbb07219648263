//! The storage engine on real RocksDB in temp dirs, checked against a naive in-memory model.

use std::collections::BTreeMap;
use std::sync::Arc;

use pharos_storage::aggregate::Partial;
use pharos_storage::retention::{humantime_ms, Durations, Policy, DAY, HOUR, MINUTE};
use pharos_storage::{
    Command, EngineOptions, Filter, GroupBy, Matcher, Point, Retention, RetentionConfig, ShardEngine, TierChoice,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY; // a midnight

fn point(m: &str, host: &str, field: &str, ts: i64, v: f64) -> Point {
    Point {
        measurement: m.into(),
        tags: vec![("host".into(), host.into())],
        fields: vec![(field.into(), v)],
        timestamp: ts,
    }
}

fn write(ps: Vec<Point>) -> Command {
    Command::write(ps)
}

struct Fixture {
    _dir: TempDir,
    db: Arc<rocksdb::DB>,
    retention: Arc<Retention>,
    opts: EngineOptions,
}

impl Fixture {
    fn new(opts: EngineOptions) -> Fixture {
        Self::with_retention(opts, Retention::default())
    }
    fn with_retention(opts: EngineOptions, r: Retention) -> Fixture {
        let dir = TempDir::new().unwrap();
        let db = pharos_storage::db::open(dir.path(), &Default::default()).unwrap();
        Fixture { _dir: dir, db, retention: Arc::new(r), opts }
    }
    fn open(&self, shard: u32) -> ShardEngine {
        ShardEngine::open(self.db.clone(), shard, self.retention.clone(), self.opts.clone()).unwrap()
    }
}

fn mark(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn all_series(e: &ShardEngine) -> Vec<u64> {
    e.select(&|_| true, &Filter::All).iter().collect()
}

fn read_all(e: &ShardEngine) -> BTreeMap<(String, String, String), Vec<(i64, u64)>> {
    let mut out = BTreeMap::new();
    for sid in all_series(e) {
        let info = e.index().info(sid).unwrap().clone();
        let (mut t, mut v) = (Vec::new(), Vec::new());
        e.read_raw(sid, i64::MIN, i64::MAX, &mut t, &mut v).unwrap();
        let key = (info.measurement.to_string(), info.tag("host").unwrap_or("").to_string(), info.field.to_string());
        out.insert(key, t.into_iter().zip(v.into_iter().map(f64::to_bits)).collect());
    }
    out
}

/// The model: what every series must hold after the same commands.
#[derive(Default)]
struct Model {
    data: BTreeMap<(String, String, String), BTreeMap<i64, f64>>,
    max: BTreeMap<(String, String, String), i64>,
}

impl Model {
    fn apply(&mut self, ps: &[Point], window: i64) -> u64 {
        let mut rejected = 0;
        for p in ps {
            for (f, v) in &p.fields {
                let key = (p.measurement.to_string(), p.tags[0].1.to_string(), f.to_string());
                let max = self.max.get(&key).copied();
                if max.is_some_and(|m| p.timestamp < m - window) {
                    rejected += 1;
                    continue;
                }
                self.max.insert(key.clone(), max.unwrap_or(i64::MIN).max(p.timestamp));
                self.data.entry(key).or_default().insert(p.timestamp, *v);
            }
        }
        rejected
    }
    fn expect(&self) -> BTreeMap<(String, String, String), Vec<(i64, u64)>> {
        self.data.iter().map(|(k, m)| (k.clone(), m.iter().map(|(t, v)| (*t, v.to_bits())).collect())).collect()
    }
}

#[test]
fn t10_writes_seal_and_read_back_across_partitions() {
    let f = Fixture::new(EngineOptions { max_chunk_samples: 8, ..Default::default() });
    let mut e = f.open(0);
    let mut model = Model::default();
    // 100 samples every 30 min crosses two day partitions and seals many chunks.
    let ps: Vec<Point> = (0..100).map(|i| point("cpu", "a", "user", T0 + i * 30 * MINUTE, i as f64 * 0.5)).collect();
    model.apply(&ps, HOUR);
    let res = e.apply(&write(ps), &mark(1)).unwrap();
    assert_eq!(res[0].samples_written, 100);
    assert_eq!(res[0].series_created, 1);
    assert_eq!(read_all(&e), model.expect());
    // A window in the middle returns exactly its samples.
    let (mut t, mut v) = (Vec::new(), Vec::new());
    e.read_raw(0, T0 + 10 * 30 * MINUTE, T0 + 20 * 30 * MINUTE, &mut t, &mut v).unwrap();
    assert_eq!(t, (10..20).map(|i| T0 + i * 30 * MINUTE).collect::<Vec<_>>());
}

#[test]
fn t20_out_of_order_inside_window_duplicates_keep_last_older_refused() {
    let f = Fixture::new(EngineOptions { max_chunk_samples: 4, ooo_window_ms: HOUR, ..Default::default() });
    let mut e = f.open(0);
    let mut model = Model::default();
    let mut i = 0;
    let mut apply = |e: &mut ShardEngine, ps: Vec<Point>| {
        let rejected = model.apply(&ps, HOUR);
        i += 1;
        let r = e.apply(&write(ps), &mark(i)).unwrap();
        assert_eq!(r[0].rejected_too_old, rejected);
        model.expect()
    };
    let base: Vec<Point> = (0..20).map(|k| point("cpu", "a", "u", T0 + k * 60_000, k as f64)).collect();
    apply(&mut e, base);
    // Late samples: inside sealed chunks, before the first chunk, between chunks, duplicates, and in the head.
    let late = vec![
        point("cpu", "a", "u", T0 + 5 * 60_000 + 1, 100.0),
        point("cpu", "a", "u", T0 + 5 * 60_000, 55.0),
        point("cpu", "a", "u", T0 - 1, -1.0),
        point("cpu", "a", "u", T0 + 19 * 60_000 - 7, 7.0),
        point("cpu", "a", "u", T0 + 19 * 60_000, 190.0),
        point("cpu", "a", "u", T0 + 19 * 60_000, 191.0),
    ];
    apply(&mut e, late);
    // Older than the newest sample minus the window: refused.
    let expect = apply(&mut e, vec![point("cpu", "a", "u", T0 + 19 * 60_000 - HOUR - 1, 9.0)]);
    assert_eq!(read_all(&e), expect);
}

#[test]
fn t30_crash_without_checkpoint_replays_from_the_durable_mark() {
    let f = Fixture::new(EngineOptions {
        max_chunk_samples: 16,
        checkpoint_interval_ms: 10 * MINUTE,
        ..Default::default()
    });
    let mut rng = 7u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut log: Vec<Command> = Vec::new();
    let mut t = T0;
    // Maintenance (and so a checkpoint) every 10 steps, then 5 more steps that only the log holds.
    for k in 0..65 {
        let mut ps = Vec::new();
        for h in 0..5 {
            // Some late samples (up to 20 min back) mixed in.
            let ts = if next() % 5 == 0 { t - (next() % 1_200_000) as i64 } else { t };
            ps.push(point("m", &format!("h{h}"), "v", ts, (next() % 1000) as f64 / 10.0));
        }
        log.push(write(ps));
        if k % 10 == 9 && k < 60 {
            log.push(Command::Maintain { now_ms: t });
        }
        t += 60_000;
    }
    let mut e = f.open(1);
    for (i, c) in log.iter().enumerate() {
        e.apply(c, &mark(i as u64 + 1)).unwrap();
    }
    let expected = read_all(&e);
    let durable = u64::from_be_bytes(e.durable_mark().expect("maintenance checkpointed").try_into().unwrap());
    assert!(durable < log.len() as u64, "test needs entries after the last checkpoint");
    drop(e); // crash: heads since the checkpoint are lost
    let mut e = f.open(1);
    assert_eq!(e.durable_mark(), Some(mark(durable).as_slice()));
    for (i, c) in log.iter().enumerate().skip(durable as usize) {
        e.apply(c, &mark(i as u64 + 1)).unwrap();
    }
    assert_eq!(read_all(&e), expected, "replay after the mark restores everything applied");
    // Replaying the whole log again is harmless (idempotent apply).
    for (i, c) in log.iter().enumerate() {
        e.apply(c, &mark(i as u64 + 1)).unwrap();
    }
    assert_eq!(read_all(&e), expected);
}

#[test]
fn t40_classic_thirty_second_rollup() {
    let f = Fixture::new(EngineOptions::default());
    let mut e = f.open(0);
    let base = T0 + 19 * HOUR;
    let vals = [10.0, 16.0, 20.0, 30.0, 20.0, 30.0];
    let ps =
        vals.iter().enumerate().map(|(i, v)| point("cpu", "host-a", "usage", base + i as i64 * 10_000, *v)).collect();
    e.apply(&write(ps), &mark(1)).unwrap();
    let ids = e.select(&|m| m == "cpu", &Filter::Match(Matcher::Eq("host".into(), "host-a".into())));
    let out = e.aggregate(&ids, base, base + MINUTE, 30_000, 0, &GroupBy::None, TierChoice::Auto).unwrap();
    let means: Vec<f64> = out[0].1.iter().map(|(_, p)| p.mean()).collect();
    assert_eq!(means, vec![46.0 / 3.0, 80.0 / 3.0]);
    // One-minute buckets: count 6, min 10, max 30, first 10, last 30.
    let out = e.aggregate(&ids, base, base + MINUTE, MINUTE, 0, &GroupBy::None, TierChoice::Auto).unwrap();
    let p = out[0].1[0].1;
    assert_eq!((p.count, p.min, p.max, p.first, p.last), (6, 10.0, 30.0, 10.0, 30.0));
}

fn naive(samples: &BTreeMap<i64, f64>, start: i64, end: i64, width: i64) -> Vec<(i64, Partial)> {
    let mut out: Vec<(i64, Partial)> = Vec::new();
    for (&t, &v) in samples.range(start..end) {
        let b = t.div_euclid(width) * width;
        match out.last_mut() {
            Some((lb, p)) if *lb == b => p.add(t, v),
            _ => out.push((b, Partial::of(t, v))),
        }
    }
    out
}

fn same(a: &[(i64, Partial)], b: &[(i64, Partial)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ta, pa), (tb, pb))| {
            ta == tb
                && pa.count == pb.count
                && pa.min == pb.min
                && pa.max == pb.max
                && pa.first == pb.first
                && pa.last == pb.last
                && pa.first_ts == pb.first_ts
                && pa.last_ts == pb.last_ts
                && (pa.sum - pb.sum).abs() <= 1e-9 * pa.sum.abs().max(1.0)
        })
}

#[test]
fn t50_rollup_tiers_agree_with_a_naive_model_including_late_samples() {
    let mut runner = TestRunner::new(PtConfig { cases: 6, ..PtConfig::default() });
    let strategy = (
        proptest::collection::vec((0i64..3 * DAY, -1000.0f64..1000.0), 50..400),
        proptest::collection::vec((0i64..55 * MINUTE, -5.0f64..5.0), 1..30),
    );
    runner
        .run(&strategy, |(mut samples, late)| {
            // Build 1-minute blocks as soon as they close, so both tiers are checked against raw data.
            let f = Fixture::new(EngineOptions {
                max_chunk_samples: 32,
                minute_rollup_after_ms: Some(0),
                ..Default::default()
            });
            let mut e = f.open(0);
            samples.sort_by_key(|s| s.0);
            let mut model: BTreeMap<i64, f64> = BTreeMap::new();
            let ps: Vec<Point> = samples.iter().map(|&(t, v)| point("g", "x", "v", T0 + t, v)).collect();
            for (t, v) in &samples {
                model.insert(T0 + t, *v);
            }
            e.apply(&write(ps), &mark(1)).unwrap();
            let max = *model.keys().last().unwrap();
            // Blocks close an out-of-order window behind the newest data: another series two hours ahead
            // closes every block of this one, so the late samples below land in built blocks.
            e.apply(&write(vec![point("ahead", "y", "v", max + 2 * HOUR, 0.0)]), &mark(2)).unwrap();
            e.apply(&Command::Maintain { now_ms: max + 3 * HOUR + 1 }, &mark(3)).unwrap();
            // Late samples into already rolled-up blocks (within the 1 h window of the series' newest sample).
            let ps: Vec<Point> = late.iter().map(|&(d, v)| point("g", "x", "v", max - d, v)).collect();
            for p in &ps {
                model.insert(p.timestamp, p.fields[0].1);
            }
            e.apply(&write(ps), &mark(4)).unwrap();
            prop_assert_eq!(e.pending_rollup_series(), 1, "late samples below the watermarks wait for a rebuild");
            for pass in ["before the rebuild", "after the rebuild"] {
                if pass == "after the rebuild" {
                    e.apply(&Command::Maintain { now_ms: max + 3 * HOUR + 2 }, &mark(5)).unwrap();
                    prop_assert_eq!(e.pending_rollup_series(), 0);
                }
                let ids = e.select(&|m| m == "g", &Filter::All);
                for (width, start, end) in [
                    (MINUTE, T0, T0 + 3 * DAY),
                    (5 * MINUTE, T0 + 7 * MINUTE + 13, max + 1),
                    (HOUR, T0, T0 + 3 * DAY),
                    (6 * HOUR, T0 + HOUR, max),
                ] {
                    let want = naive(&model, start, end, width);
                    let auto = e.aggregate(&ids, start, end, width, 0, &GroupBy::None, TierChoice::Auto).unwrap();
                    let raw = e.aggregate(&ids, start, end, width, 0, &GroupBy::None, TierChoice::RawOnly).unwrap();
                    let got_auto = auto.first().map(|g| g.1.clone()).unwrap_or_default();
                    let got_raw = raw.first().map(|g| g.1.clone()).unwrap_or_default();
                    prop_assert!(same(&got_raw, &want), "raw differs from the model for width {width}");
                    prop_assert!(
                        same(&got_auto, &want),
                        "{pass}: rollup tiers differ from the model for width {width} over [{start}, {end})"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn t51_the_hour_tier_grows_hour_by_hour_and_partial_blocks_take_late_samples() {
    // One sample a minute, written an hour at a time with maintenance after each hour, as a live shard
    // sees it: the 1-hour tier must cover every hour closed an out-of-order window behind the newest data,
    // also inside a six-hour block that is not complete yet, and stay equal to raw data when late samples
    // land in such a partly built block.
    let f = Fixture::new(EngineOptions { max_chunk_samples: 50, ..Default::default() });
    let mut e = f.open(0);
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    let mut m = 0;
    let value = |i: i64| ((i * 7919) % 1013) as f64 / 7.0;
    let write_minutes = |e: &mut ShardEngine, model: &mut BTreeMap<i64, f64>, from: i64, to: i64, m: &mut u64| {
        let ps: Vec<Point> = (from..to).map(|i| point("g", "x", "v", T0 + i * MINUTE, value(i))).collect();
        for p in &ps {
            model.insert(p.timestamp, p.fields[0].1);
        }
        *m += 1;
        e.apply(&write(ps), &mark(*m)).unwrap();
        *m += 1;
        e.apply(&Command::Maintain { now_ms: T0 + to * MINUTE }, &mark(*m)).unwrap();
    };
    for h in 0..8 {
        write_minutes(&mut e, &mut model, h * 60, (h + 1) * 60, &mut m);
        // Newest sample T0 + h:59: the hours ending an out-of-order window (1 h) before it are closed.
        assert_eq!(e.rollup_watermarks().1, Some(T0 + (h - 1) * HOUR), "after hour {h}");
    }
    // Another series an hour and a half ahead closes hour 7; then late samples of g land below the
    // watermark, in the block [6 h, 12 h) of which only [6 h, 8 h) is built.
    m += 1;
    e.apply(&write(vec![point("ahead", "y", "v", T0 + 9 * HOUR + 30 * MINUTE, 0.0)]), &mark(m)).unwrap();
    m += 1;
    e.apply(&Command::Maintain { now_ms: T0 + 9 * HOUR + 30 * MINUTE }, &mark(m)).unwrap();
    assert_eq!(e.rollup_watermarks().1, Some(T0 + 8 * HOUR));
    let late: Vec<Point> =
        [(7 * HOUR + 5 * MINUTE + 30_000, -50.0), (7 * HOUR + 59 * MINUTE + 1, 900.0), (7 * HOUR + 20 * MINUTE, 3.5)]
            .iter()
            .map(|&(t, v)| point("g", "x", "v", T0 + t, v))
            .collect();
    for p in &late {
        model.insert(p.timestamp, p.fields[0].1);
    }
    m += 1;
    let res = e.apply(&write(late), &mark(m)).unwrap();
    assert_eq!(res[0].samples_written, 3, "late samples inside the out-of-order window are accepted");
    assert_eq!(e.pending_rollup_series(), 1, "their blocks wait for the next maintenance");
    // Four more hours: the partly built block gains hours 8 and 9 next to the stored ones.
    for h in 8..12 {
        write_minutes(&mut e, &mut model, h * 60, (h + 1) * 60, &mut m);
    }
    let hour_wm = e.rollup_watermarks().1;
    assert_eq!(hour_wm, Some(T0 + 10 * HOUR));
    let ids = e.select(&|x| x == "g", &Filter::All);
    let check = |e: &ShardEngine| {
        for (width, start, end) in [
            (HOUR, T0, T0 + DAY),
            (2 * HOUR, T0 + HOUR, T0 + 11 * HOUR),
            (6 * HOUR, T0, T0 + DAY),
            (MINUTE, T0, T0 + DAY),
        ] {
            let want = naive(&model, start, end, width);
            let auto = e.aggregate(&ids, start, end, width, 0, &GroupBy::None, TierChoice::Auto).unwrap();
            let got = auto.first().map(|g| g.1.clone()).unwrap_or_default();
            assert!(same(&got, &want), "the tier differs from raw data for width {width} over [{start}, {end})");
        }
    };
    check(&e);
    // The watermark and the blocks survive a restart.
    e.checkpoint().unwrap();
    drop(e);
    let e = f.open(0);
    assert_eq!(e.rollup_watermarks().1, hour_wm);
    check(&e);
}

#[test]
fn t52_a_series_writing_its_history_below_built_rollups_keeps_them_equal_to_raw_data() {
    // Another series moved both tiers' watermarks on; then a new series writes 28 hours of history in time
    // order, in batches whose edges cut buckets, plus a rewrite of an earlier sample: every tier must still
    // answer what raw data answers.
    let f =
        Fixture::new(EngineOptions { max_chunk_samples: 64, minute_rollup_after_ms: Some(0), ..Default::default() });
    let mut e = f.open(0);
    e.apply(&write(vec![point("ahead", "y", "v", T0 + 30 * HOUR, 0.0)]), &mark(1)).unwrap();
    e.apply(&Command::Maintain { now_ms: T0 + 30 * HOUR }, &mark(2)).unwrap();
    assert_eq!(e.rollup_watermarks(), (Some(T0 + 24 * HOUR), Some(T0 + 29 * HOUR)));
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    let value = |i: i64| ((i * 7919) % 10007) as f64 / 100.0; // two decimals: sums stay exact decimals
    let times: Vec<i64> = (0..28 * 12).map(|i| T0 + i * 5 * MINUTE + (i % 3) * 17_000).collect();
    let mut m = 2;
    let mut log = Vec::new();
    for (k, chunk) in times.chunks(37).enumerate() {
        let mut ps: Vec<Point> = chunk.iter().map(|&t| point("back", "x", "v", t, value(t / 1000))).collect();
        if k == 4 {
            // Rewrites a sample of the batch before (inside the out-of-order window).
            ps.insert(0, point("back", "x", "v", times[37 * 4 - 3], -7.25));
        }
        for p in &ps {
            model.insert(p.timestamp, p.fields[0].1);
        }
        m += 1;
        let res = e.apply(&write(ps.clone()), &mark(m)).unwrap();
        assert_eq!(res[0].rejected_too_old, 0);
        log.push((write(ps), mark(m)));
    }
    let check = |e: &ShardEngine, when: &str| {
        let ids = e.select(&|x| x == "back", &Filter::All);
        for (width, start, end) in [
            (MINUTE, T0, T0 + 30 * HOUR),
            (HOUR, T0, T0 + 30 * HOUR),
            (3 * HOUR, T0, T0 + 30 * HOUR),
            (6 * HOUR, T0 + 6 * HOUR, T0 + 24 * HOUR),
        ] {
            let want = naive(&model, start, end, width);
            let auto = e.aggregate(&ids, start, end, width, 0, &GroupBy::None, TierChoice::Auto).unwrap();
            let got = auto.first().map(|g| g.1.clone()).unwrap_or_default();
            assert!(same(&got, &want), "{when}: tiers differ from raw data for width {width}");
        }
    };
    check(&e, "after the backfill");
    // A crash before the next checkpoint: the engine reopens at the maintenance's checkpoint and the log
    // after it is applied again, over rollup blocks that already hold those samples.
    assert_eq!(e.durable_mark(), Some(&mark(2)[..]));
    drop(e);
    let mut e = f.open(0);
    for (cmd, mk) in &log {
        e.apply(cmd, mk).unwrap();
    }
    check(&e, "after a replay of the log");
    // A checkpoint rebuilds the blocks the backfill touched (a durable mark never has stale blocks behind
    // it): they answer from the tiers again, also after a restart.
    assert_eq!(e.pending_rollup_series(), 1);
    e.checkpoint().unwrap();
    assert_eq!(e.pending_rollup_series(), 0);
    check(&e, "after the rebuild");
    drop(e);
    let e = f.open(0);
    check(&e, "after a restart");
}

#[test]
fn t60_retention_drops_expired_partitions_and_only_them() {
    let cfg = RetentionConfig {
        default: Durations {
            raw: humantime_ms::parse("2d").unwrap(),
            minute: humantime_ms::parse("4d").unwrap(),
            hour: humantime_ms::parse("100d").unwrap(),
        },
        policies: vec![Policy {
            id: 9,
            measurements: vec!["debug_*".into()],
            keep: Durations {
                raw: humantime_ms::parse("1d").unwrap(),
                minute: humantime_ms::parse("1d").unwrap(),
                hour: humantime_ms::parse("1d").unwrap(),
            },
            significant_digits: None,
        }],
        significant_digits: None,
    };
    let f = Fixture::with_retention(EngineOptions::default(), Retention::new(cfg).unwrap());
    let mut e = f.open(0);
    // One sample every 6 hours for 6 days, for a default and a short-lived measurement, with maintenance
    // after each day as the shard leader would run it.
    let mut m = 0;
    for day in 0..6 {
        let mut ps = Vec::new();
        for k in 0..4 {
            let ts = T0 + day * DAY + k * 6 * HOUR;
            ps.push(point("cpu", "a", "v", ts, (day * 4 + k) as f64));
            ps.push(point("debug_x", "a", "v", ts, 1.0));
        }
        m += 1;
        e.apply(&write(ps), &mark(m)).unwrap();
        m += 1;
        e.apply(&Command::Maintain { now_ms: T0 + (day + 1) * DAY + HOUR + 1 }, &mark(m)).unwrap();
    }
    // now = T0 + 6d + 1h.
    let times = |m: &str, e: &ShardEngine| {
        let ids = e.select(&|x| x == m, &Filter::All);
        let (mut t, mut v) = (Vec::new(), Vec::new());
        e.read_raw(ids.iter().next().unwrap(), i64::MIN, i64::MAX, &mut t, &mut v).unwrap();
        t
    };
    // Raw keeps every partition that ends after now - 2d: days 4 and 5.
    let cpu = times("cpu", &e);
    assert_eq!(cpu.first().copied(), Some(T0 + 4 * DAY), "cpu raw starts at the first kept partition");
    assert_eq!(cpu.len(), 8);
    // The short-lived class keeps one day of raw data.
    let dbg = times("debug_x", &e);
    assert_eq!(dbg.first().copied(), Some(T0 + 5 * DAY));
    assert_eq!(dbg.len(), 4);
    // The 1-hour tier still answers for the expired raw days.
    let ids = e.select(&|x| x == "cpu", &Filter::All);
    let out = e.aggregate(&ids, T0, T0 + 4 * DAY, DAY, 0, &GroupBy::None, TierChoice::Auto).unwrap();
    let got: Vec<(u64, f64)> = out[0].1.iter().map(|b| (b.1.count, b.1.sum)).collect();
    assert_eq!(got, vec![(4, 6.0), (4, 22.0), (4, 38.0), (4, 54.0)], "1-hour rollups outlive raw data");
    // The 1-minute tier (kept 4 days) lost days 0 and 1 but holds days 2 and 3.
    let out = e.aggregate(&ids, T0, T0 + 4 * DAY, MINUTE, 0, &GroupBy::None, TierChoice::Auto).unwrap();
    let first = out[0].1.first().unwrap().0;
    assert_eq!(first, T0 + 2 * DAY, "1-minute rollups of expired partitions are gone");
    assert_eq!(out[0].1.iter().map(|b| b.1.count).sum::<u64>(), 8);
    // A new sample older than the raw retention is refused, not stored to vanish later.
    let r = e
        .apply(
            &write(vec![point("cpu", "new", "v", T0 + DAY, 1.0), point("cpu", "new", "v", T0 + 5 * DAY, 2.0)]),
            &mark(m + 1),
        )
        .unwrap();
    assert_eq!((r[0].samples_written, r[0].rejected_expired), (1, 1));
}

#[test]
fn t65_significant_digits_round_the_values_of_their_class_only() {
    // Opt-in rounding: `coarse_*` keeps 4 significant digits, the default class every bit, also through
    // sealed chunks, late samples and rollups.
    let cfg = RetentionConfig {
        policies: vec![Policy {
            id: 3,
            measurements: vec!["coarse_*".into()],
            keep: Durations::default(),
            significant_digits: Some(4),
        }],
        ..Default::default()
    };
    let f = Fixture::with_retention(
        EngineOptions { max_chunk_samples: 8, ..Default::default() },
        Retention::new(cfg).unwrap(),
    );
    let mut e = f.open(0);
    let value = |i: i64| 53.29482847162934 + i as f64 * 1.000_123_456_789;
    let mut ps = Vec::new();
    for i in (0..30).filter(|i| i % 7 != 3) {
        ps.push(point("coarse_cpu", "a", "v", T0 + i * 10_000, value(i)));
        ps.push(point("fine_cpu", "a", "v", T0 + i * 10_000, value(i)));
    }
    e.apply(&write(ps), &mark(1)).unwrap();
    // Late samples into sealed chunks take the same path.
    let late: Vec<Point> = (0..30)
        .filter(|i| i % 7 == 3)
        .flat_map(|i| {
            [
                point("coarse_cpu", "a", "v", T0 + i * 10_000, value(i)),
                point("fine_cpu", "a", "v", T0 + i * 10_000, value(i)),
            ]
        })
        .collect();
    e.apply(&write(late), &mark(2)).unwrap();
    let read = |m: &str| {
        let sid = e.select(&|x| x == m, &Filter::All).iter().next().unwrap();
        let (mut t, mut v) = (Vec::new(), Vec::new());
        e.read_raw(sid, T0, T0 + HOUR, &mut t, &mut v).unwrap();
        assert_eq!(t, (0..30).map(|i| T0 + i * 10_000).collect::<Vec<_>>());
        v
    };
    let coarse = read("coarse_cpu");
    let fine = read("fine_cpu");
    for i in 0..30 {
        assert_eq!(fine[i as usize].to_bits(), value(i).to_bits(), "the default class keeps every bit");
        let c = coarse[i as usize];
        assert_eq!(format!("{c:.3e}"), format!("{:.3e}", value(i)), "rounded to 4 significant digits");
        // The shortest text that reads back as the stored double has at most those 4 digits.
        let shortest = format!("{c:e}");
        let digits = shortest.split('e').next().unwrap().replace(['-', '.'], "");
        assert!(digits.len() <= 4, "{c} keeps more than 4 digits");
    }
    assert_eq!(coarse[0], 53.29);
    // Out-of-range settings are refused with the reason.
    for d in [0u8, 18] {
        let err = Retention::new(RetentionConfig { significant_digits: Some(d), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("significant_digits"), "{err}");
    }
}

#[test]
fn t70_snapshot_export_import_and_drop() {
    let f = Fixture::new(EngineOptions { max_chunk_samples: 8, ..Default::default() });
    let mut a = f.open(2);
    let mut other = f.open(3);
    other.apply(&write(vec![point("keep", "z", "v", T0, 1.0)]), &mark(1)).unwrap();
    let ps: Vec<Point> =
        (0..50).flat_map(|i| ["a", "b", "c"].map(|h| point("cpu", h, "u", T0 + i * 10_000, i as f64))).collect();
    a.apply(&write(ps), &mark(5)).unwrap();
    let before = read_all(&a);
    let snap = a.export().unwrap();
    // Import into another database as the same shard.
    let g = Fixture::new(EngineOptions { max_chunk_samples: 8, ..Default::default() });
    let b = ShardEngine::import(g.db.clone(), 2, &snap[..], g.retention.clone(), g.opts.clone()).unwrap();
    assert_eq!(read_all(&b), before);
    assert_eq!(b.durable_mark(), Some(mark(5).as_slice()));
    assert!(!ShardEngine::recover_import(&g.db, 2).unwrap(), "a finished import leaves no marker");
    drop(b);
    // A corrupt snapshot is refused before anything is deleted: a truncated one, one with a key of another
    // shard, one whose keys are out of order, and a read that fails part way (a disk error) each leave the
    // shard's data as it was, and no marker.
    let kept = ShardEngine::import(g.db.clone(), 2, &snap[..], g.retention.clone(), g.opts.clone()).unwrap();
    drop(kept);
    let mut foreign = snap.clone();
    foreign[8] ^= 0xff; // the first key's last shard-id byte (after cf 1, length 4, id bytes 5..9)
                        // The first two records (of one column family, keys ascending) in the other order.
    let record_end = |at: usize| {
        let key_end = at + 5 + u32::from_be_bytes(snap[at + 1..at + 5].try_into().unwrap()) as usize;
        key_end + 4 + u32::from_be_bytes(snap[key_end..key_end + 4].try_into().unwrap()) as usize
    };
    let (second, third) = (record_end(0), record_end(record_end(0)));
    assert_eq!(snap[0], snap[second], "the first two records share a column family");
    let swapped = [&snap[second..third], &snap[..second], &snap[third..]].concat();
    struct FailsAfter<'a>(&'a [u8], usize);
    impl std::io::Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 == 0 {
                return Err(std::io::Error::other("input/output error"));
            }
            let n = buf.len().min(self.0.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            (self.0, self.1) = (&self.0[n..], self.1 - n);
            Ok(n)
        }
    }
    let attempts: Vec<(&str, Box<dyn std::io::Read>)> = vec![
        ("truncated", Box::new(&snap[..snap.len() - 3])),
        ("another shard", Box::new(&foreign[..])),
        ("out of order", Box::new(&swapped[..])),
        ("input/output error", Box::new(FailsAfter(&snap, snap.len() / 2))),
    ];
    for (what, data) in attempts {
        let err = ShardEngine::import(g.db.clone(), 2, data, g.retention.clone(), g.opts.clone()).err();
        let err = err.unwrap_or_else(|| panic!("{what}: imported")).to_string();
        assert!(err.contains(what) || what == "truncated" && err.contains("truncated"), "{what}: {err}");
        assert!(!ShardEngine::recover_import(&g.db, 2).unwrap(), "{what}: nothing was started");
        let e = ShardEngine::open(g.db.clone(), 2, g.retention.clone(), g.opts.clone()).unwrap();
        assert_eq!(read_all(&e), before, "{what}: the old data is in place");
        let staged = g.db.path().with_file_name("import-2");
        assert!(!staged.exists(), "{what}: the files written aside are removed");
    }
    // Out of order across files (every record in a file of its own): refused as well.
    let err = ShardEngine::import_files(&g.db, 2, &swapped[..], 1).unwrap_err().to_string();
    assert!(err.contains("out of order"), "{err}");
    assert_eq!(read_all(&ShardEngine::open(g.db.clone(), 2, g.retention.clone(), g.opts.clone()).unwrap()), before);
    // A crash inside the swap (old data deleted, the marker set, files not yet ingested): the shard does not
    // open with a mix, it is recovered to empty.
    ShardEngine::begin_swap(&g.db, 2).unwrap();
    assert!(ShardEngine::open(g.db.clone(), 2, g.retention.clone(), g.opts.clone()).is_err());
    assert!(ShardEngine::recover_import(&g.db, 2).unwrap());
    assert!(read_all(&ShardEngine::open(g.db.clone(), 2, g.retention.clone(), g.opts.clone()).unwrap()).is_empty());
    let d = ShardEngine::import(g.db.clone(), 2, &snap[..], g.retention.clone(), g.opts.clone()).unwrap();
    assert_eq!(read_all(&d), before);
    drop(d);
    // Many small SST files per column family (a large shard's import rolls files) import the same.
    ShardEngine::import_files(&g.db, 2, &snap[..], 1).unwrap();
    assert_eq!(read_all(&ShardEngine::open(g.db.clone(), 2, g.retention.clone(), g.opts.clone()).unwrap()), before);
    // A stream that is read in small pieces (as from a file) imports the same.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let c = ShardEngine::import(g.db.clone(), 2, Trickle(&snap), g.retention.clone(), g.opts.clone()).unwrap();
    assert_eq!(read_all(&c), before);
    drop(c);
    // Dropping shard 2 leaves shard 3 alone.
    drop(a);
    ShardEngine::drop_data(&f.db, 2).unwrap();
    assert!(read_all(&f.open(2)).is_empty());
    assert_eq!(read_all(&f.open(3)).len(), 1);
}

#[test]
fn t80_group_by_tags_and_measurement_listing() {
    let f = Fixture::new(EngineOptions::default());
    let mut e = f.open(0);
    let mut ps = Vec::new();
    for (h, r) in [("a", "us"), ("b", "us"), ("c", "eu")] {
        for i in 0..6 {
            ps.push(Point {
                measurement: "cpu".into(),
                tags: vec![("host".into(), h.into()), ("region".into(), r.into())],
                fields: vec![("user".into(), i as f64), ("sys".into(), 1.0)],
                timestamp: T0 + i * 10_000,
            });
        }
    }
    e.apply(&write(ps), &mark(1)).unwrap();
    assert_eq!(e.series_count(), 6);
    let ids = e.select(&|m| m == "cpu", &Filter::Match(Matcher::Eq("_field".into(), "user".into())));
    let out =
        e.aggregate(&ids, T0, T0 + MINUTE, MINUTE, 0, &GroupBy::Tags(vec!["region".into()]), TierChoice::Auto).unwrap();
    let summary: Vec<(String, u64, f64)> =
        out.iter().map(|(k, b)| (k[0].1.clone(), b[0].1.count, b[0].1.sum)).collect();
    assert_eq!(summary, vec![("eu".into(), 6, 15.0), ("us".into(), 12, 30.0)]);
    assert_eq!(e.index().field_keys(&|m| m == "cpu"), vec!["sys", "user"]);
}

#[test]
fn t90_replicated_actor_state_is_kept_scanned_and_travels_in_snapshots() {
    let f = Fixture::new(EngineOptions::default());
    let mut a = f.open(4);
    let mut other = f.open(5);
    let state = |puts: &[(&str, &str)], deletes: &[&str]| Command::State {
        puts: puts.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect(),
        deletes: deletes.iter().map(|k| k.as_bytes().to_vec()).collect(),
    };
    a.apply(&state(&[("alert/g1", "one"), ("alert/g2", "two"), ("outbox/1", "n1"), ("outbox/2", "n2")], &[]), &mark(1))
        .unwrap();
    other.apply(&state(&[("alert/g1", "other shard")], &[]), &mark(1)).unwrap();
    a.apply(&state(&[("alert/g2", "two v2")], &["outbox/1"]), &mark(2)).unwrap();
    let scan = |e: &ShardEngine, p: &str| -> Vec<(String, String)> {
        e.state_scan(p.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    };
    assert_eq!(scan(&a, "alert/"), vec![("alert/g1".into(), "one".into()), ("alert/g2".into(), "two v2".into())]);
    assert_eq!(scan(&a, "outbox/"), vec![("outbox/2".into(), "n2".into())]);
    assert_eq!(scan(&other, ""), vec![("alert/g1".into(), "other shard".into())]);
    // Reopened, and imported elsewhere from a snapshot: the same state.
    let snap = a.export().unwrap();
    drop(a);
    assert_eq!(scan(&f.open(4), "alert/").len(), 2);
    let g = Fixture::new(EngineOptions::default());
    let b = ShardEngine::import(g.db.clone(), 4, &snap[..], g.retention.clone(), g.opts.clone()).unwrap();
    assert_eq!(scan(&b, ""), scan(&f.open(4), ""));
    // Dropping the shard drops its state.
    ShardEngine::drop_data(&f.db, 4).unwrap();
    assert!(scan(&f.open(4), "").is_empty());
    assert_eq!(scan(&f.open(5), "").len(), 1);
}

/// Concurrent writers deliver batches out of order: one command holds samples inside a series' head
/// (duplicates among them), samples newer than the head that seal it, and samples for the sealed range
/// after that. The result must equal applying every sample in order (last write of a timestamp wins).
#[test]
fn t95_samples_inside_the_head_merge_in_apply_order_across_seals() {
    let f = Fixture::new(EngineOptions { max_chunk_samples: 8, ooo_window_ms: HOUR, ..Default::default() });
    let mut e = f.open(0);
    let mut model = Model::default();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..40i64 {
        let mut ps = Vec::new();
        for _ in 0..30 {
            // Mostly near the newest sample, some behind it (inside the head or below), some duplicates.
            let host = ["a", "b"][(next() % 2) as usize];
            let ts = T0 + round * 60_000 + (next() % 240) as i64 * 1000 - 120_000;
            ps.push(point("cpu", host, "u", ts, (next() % 1000) as f64));
        }
        model.apply(&ps, HOUR);
        e.apply(&write(ps), &mark(round as u64 + 1)).unwrap();
        assert_eq!(read_all(&e), model.expect(), "round {round}");
    }
}

/// A data directory written when 1-hour rollup blocks were a day wide opens with its blocks regrouped into
/// today's width, answering exactly as before; the regrouping runs once.
#[test]
fn t96_day_wide_hour_blocks_from_an_older_directory_are_resplit_on_open() {
    use pharos_storage::db::{CF_META, CF_ROLLUP_1H};
    use pharos_storage::keys::{data_key, meta_key, parse_data_key};
    use pharos_storage::rollup::{decode_block, encode_block};

    let f = Fixture::new(EngineOptions::default());
    let mut e = f.open(3);
    let ps: Vec<Point> =
        (0..(3 * DAY / (10 * MINUTE))).map(|i| point("g", "x", "v", T0 + i * 10 * MINUTE, (i % 17) as f64)).collect();
    let last = ps.last().unwrap().timestamp;
    e.apply(&write(ps), &mark(1)).unwrap();
    e.apply(&Command::Maintain { now_ms: last + 2 * HOUR }, &mark(2)).unwrap();
    let ids = e.select(&|m| m == "g", &Filter::All);
    let answer = |e: &ShardEngine| {
        let g = e.aggregate(&ids, T0 + 5 * HOUR, last, HOUR, 0, &GroupBy::None, TierChoice::Auto).unwrap();
        g.first().map(|g| g.1.clone()).unwrap_or_default()
    };
    let before = answer(&e);
    drop(e);

    // Rewrite the 6 h blocks as the first format did: one block per day, keyed at midnight, no width marker.
    let cf = f.db.cf_handle(CF_ROLLUP_1H).unwrap();
    let mut days: BTreeMap<Vec<u8>, Vec<(i64, Partial)>> = BTreeMap::new();
    let mut n_six = 0;
    for item in f.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (k, v) = item.unwrap();
        let key = parse_data_key(&k).unwrap();
        let day = data_key(key.shard, key.class, key.part, key.sid, key.ts - key.ts.rem_euclid(DAY));
        days.entry(day.to_vec()).or_default().extend(decode_block(&v).unwrap());
        f.db.delete_cf(cf, &k).unwrap();
        n_six += 1;
    }
    assert!(n_six > days.len(), "the fixture built several 6 h blocks per day ({n_six} for {} days)", days.len());
    for (k, buckets) in &days {
        f.db.put_cf(cf, k, encode_block(buckets)).unwrap();
    }
    f.db.delete_cf(f.db.cf_handle(CF_META).unwrap(), meta_key(3, "h1blk")).unwrap();

    let e = f.open(3);
    assert!(same(&answer(&e), &before), "the same answer after the resplit");
    let count = || f.db.iterator_cf(cf, rocksdb::IteratorMode::Start).count();
    assert_eq!(count(), n_six, "the day blocks became 6 h blocks again");
    drop(e);
    let e = f.open(3);
    assert_eq!(count(), n_six, "a second open leaves them alone");
    assert!(same(&answer(&e), &before));
}

#[test]
fn t97_write_commands_travel_packed_and_entries_logged_before_still_decode() {
    let points = vec![
        point("cpu", "a", "usage", T0, 1.5),
        point("cpu", "b", "usage", T0 + 10_000, -0.25),
        point("cpu", "a", "usage", T0 + 20_000, f64::MAX),
    ];
    let cmd = Command::Write(vec![Arc::new(points.clone()), Arc::new(points[1..].to_vec())]);
    let bytes = bincode::serialize(&cmd).unwrap();
    assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), cmd);
    // The packed form: the repeated tag set and field name are written once.
    assert!(bytes.len() < bincode::serialize(&points).unwrap().len(), "{} bytes", bytes.len());
    // The form of log entries written before batches were packed: variants in the same order.
    #[derive(serde::Serialize)]
    enum Logged {
        Write(Vec<Vec<Point>>),
        Maintain { now_ms: i64 },
    }
    let old = bincode::serialize(&Logged::Write(vec![points.clone()])).unwrap();
    assert_eq!(bincode::deserialize::<Command>(&old).unwrap(), Command::write(points));
    let old = bincode::serialize(&Logged::Maintain { now_ms: 42 }).unwrap();
    assert_eq!(bincode::deserialize::<Command>(&old).unwrap(), Command::Maintain { now_ms: 42 });
    // A corrupt packed batch is an error.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 3] ^= 0xff;
    bad.truncate(n - 1);
    assert!(bincode::deserialize::<Command>(&bad).is_err());
}
