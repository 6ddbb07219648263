//! Queries over real shard engines (RocksDB in a temp dir): a query over many shards equals the same query
//! over one, and answers from rollup tiers equal answers from raw data where raw data still exists.

use std::sync::Arc;

use pharos_query::{run_local, Limits, PlanOptions, StatementResult, Value};
use pharos_storage::retention::{DAY, HOUR, MINUTE};
use pharos_storage::{Command, EngineOptions, Point, Retention, ShardEngine, SmolStr};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 10_000.0
    }
}

/// 6 hosts in 2 regions, 3 hours at 10 s with jitter and gaps: cpu (two gauges), http (a counter that resets).
fn data() -> Vec<Point> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    for h in 0..6 {
        let tags: Vec<(SmolStr, SmolStr)> =
            vec![("host".into(), format!("h{h}").into()), ("region".into(), format!("r{}", h % 2).into())];
        let mut counter = 0.0;
        for i in 0..(3 * 360) {
            if rng.next() % 50 == 0 {
                continue; // a missed scrape
            }
            let ts = T0 + i * 10_000 + (rng.next() % 900) as i64;
            out.push(Point {
                measurement: "cpu".into(),
                tags: tags.clone(),
                fields: vec![("usage_user".into(), rng.f()), ("usage_system".into(), rng.f() / 3.0)],
                timestamp: ts,
            });
            counter =
                if rng.next() % 400 == 0 { (rng.next() % 10) as f64 } else { counter + (rng.next() % 100) as f64 };
            out.push(Point {
                measurement: "http".into(),
                tags: tags.clone(),
                fields: vec![("requests".into(), counter)],
                timestamp: ts,
            });
        }
    }
    out
}

struct Cluster {
    _dir: TempDir,
    engines: Vec<ShardEngine>,
}

/// Series (measurement and tags) spread round-robin in order of first appearance, so every shard gets some.
fn shard_of(p: &Point, n: usize, seen: &mut Vec<(SmolStr, Vec<(SmolStr, SmolStr)>)>) -> usize {
    let key = (p.measurement.clone(), p.tags.clone());
    let i = match seen.iter().position(|k| *k == key) {
        Some(i) => i,
        None => {
            seen.push(key);
            seen.len() - 1
        }
    };
    i % n
}

/// `n` shards in one RocksDB, fed like the node feeds them (series routed by measurement and tags), then
/// maintained far enough ahead that every rollup block of the data is built.
fn cluster(n: usize, points: &[Point]) -> Cluster {
    let dir = TempDir::new().unwrap();
    let db = pharos_storage::db::open(dir.path(), &Default::default()).unwrap();
    let opts = EngineOptions { minute_rollup_after_ms: Some(0), ..Default::default() };
    let retention = Arc::new(Retention::default());
    let mut engines: Vec<ShardEngine> =
        (0..n).map(|s| ShardEngine::open(db.clone(), s as u32, retention.clone(), opts.clone()).unwrap()).collect();
    let mut parts: Vec<Vec<Point>> = vec![Vec::new(); n];
    let mut seen = Vec::new();
    for p in points {
        parts[shard_of(p, n, &mut seen)].push(p.clone());
    }
    for (i, (e, ps)) in engines.iter_mut().zip(parts).enumerate() {
        for (j, chunk) in ps.chunks(500).enumerate() {
            e.apply(&Command::write(chunk.to_vec()), &[i as u8, j as u8]).unwrap();
        }
        e.apply(&Command::Maintain { now_ms: T0 + 4 * HOUR }, b"m").unwrap();
    }
    Cluster { _dir: dir, engines }
}

fn run(c: &Cluster, q: &str, raw_only: bool) -> Vec<StatementResult> {
    let engines: Vec<&ShardEngine> = c.engines.iter().collect();
    let opts = PlanOptions { now_ms: T0 + 3 * HOUR, limits: Limits::default(), raw_only };
    run_local(&engines, q, &opts).unwrap()
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

fn assert_same(q: &str, a: &[StatementResult], b: &[StatementResult]) {
    assert_eq!(a.len(), b.len(), "{q}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.error, y.error, "{q}");
        assert_eq!(x.series.len(), y.series.len(), "{q}: series count");
        for (s, t) in x.series.iter().zip(&y.series) {
            assert_eq!((&s.name, &s.tags, &s.columns), (&t.name, &t.tags, &t.columns), "{q}");
            assert_eq!(s.values.len(), t.values.len(), "{q}: rows of {} {:?}", s.name, s.tags);
            for (r, u) in s.values.iter().zip(&t.values) {
                assert!(r.iter().zip(u).all(|(a, b)| close(a, b)), "{q}: {r:?} != {u:?}");
            }
        }
    }
}

const RANGE: &str = "time >= 1699920000000ms AND time < 1699930800000ms";

fn queries() -> Vec<String> {
    let w = RANGE.replace("1699920000000", &T0.to_string()).replace("1699930800000", &(T0 + 3 * HOUR).to_string());
    [
        "SELECT mean(usage_user), max(usage_system), count(usage_user) FROM cpu WHERE {w} GROUP BY time(5m), host",
        "SELECT sum(usage_user), min(usage_user), first(usage_user), last(usage_user), spread(usage_user) FROM cpu WHERE {w} GROUP BY time(1h)",
        "SELECT median(usage_user), percentile(usage_user, 90), stddev(usage_user) FROM cpu WHERE {w} AND region = 'r1' GROUP BY time(30m)",
        "SELECT mean(usage_user) + mean(usage_system) AS busy FROM cpu WHERE {w} AND host =~ /h[0-3]/ GROUP BY time(10m), region fill(none)",
        "SELECT rate(requests), increase(requests) FROM http WHERE {w} GROUP BY time(10m), host",
        "SELECT rate(requests, 1m) FROM http WHERE {w} GROUP BY time(1h)",
        "SELECT derivative(mean(usage_user), 1m), moving_average(mean(usage_user), 3), exponential_moving_average(mean(usage_user), 4) FROM cpu WHERE {w} GROUP BY time(10m)",
        "SELECT top(usage_user, 3) FROM cpu WHERE {w} AND host = 'h2' GROUP BY time(1h)",
        "SELECT bottom(usage_user, 2) FROM cpu WHERE {w} GROUP BY time(1h), host SLIMIT 2 SOFFSET 1",
        "SELECT usage_user, usage_system, host FROM cpu WHERE {w} AND host = 'h1' ORDER BY time DESC LIMIT 20 OFFSET 5",
        "SELECT * FROM cpu WHERE {w} AND region = 'r0' GROUP BY host LIMIT 7",
        "SELECT difference(requests), non_negative_derivative(requests, 10s) FROM http WHERE {w} AND host = 'h4' LIMIT 50",
        "SELECT max(usage_user) FROM cpu WHERE {w} GROUP BY * HAVING max(usage_user) > 99",
        "SELECT mean(*) FROM cpu WHERE {w} GROUP BY time(1h) fill(0)",
        "SELECT count(usage_user) FROM cpu WHERE {w} GROUP BY time(7m, 2m) fill(previous)",
        "SHOW MEASUREMENTS; SHOW TAG KEYS FROM cpu; SHOW TAG VALUES FROM cpu WITH KEY = host WHERE region = 'r1'",
        "SHOW FIELD KEYS; SHOW SERIES CARDINALITY; SHOW SERIES FROM http WHERE host =~ /h[12]/",
    ]
    .iter()
    .map(|q| q.replace("{w}", &w))
    .collect()
}

#[test]
fn a_query_over_many_shards_equals_the_same_query_over_one() {
    let points = data();
    let one = cluster(1, &points);
    let many = cluster(5, &points);
    assert!(many.engines.iter().all(|e| e.series_count() > 0), "data spread over every shard");
    for q in queries() {
        let a = run(&one, &q, false);
        let b = run(&many, &q, false);
        for r in &a {
            assert!(r.error.is_none(), "{q}: {:?}", r.error);
            assert!(!r.series.is_empty(), "{q}: the query must return something to compare");
        }
        assert_same(&q, &a, &b);
    }
}

#[test]
fn rollup_answers_equal_raw_answers_where_raw_data_exists() {
    let c = cluster(3, &data());
    let w = format!("time >= {}ms AND time < {}ms", T0 + 7 * MINUTE, T0 + 3 * HOUR - 11 * MINUTE);
    for q in [
        format!("SELECT mean(usage_user), min(usage_user), max(usage_user), count(usage_user), sum(usage_system) FROM cpu WHERE {w} GROUP BY time(1h), host"),
        format!("SELECT first(usage_user), last(usage_user), spread(usage_user) FROM cpu WHERE {w} GROUP BY time(1m)"),
        format!("SELECT mean(usage_user) FROM cpu WHERE {w} GROUP BY time(2h, 30m), region"),
        format!("SELECT max(usage_user) FROM cpu WHERE {w}"),
    ] {
        let tiers = run(&c, &q, false);
        let raw = run(&c, &q, true);
        assert!(tiers[0].error.is_none(), "{q}: {:?}", tiers[0].error);
        assert!(!tiers[0].series.is_empty(), "{q}");
        assert_same(&q, &tiers, &raw);
    }
}

#[test]
fn errors_point_at_the_query_text_and_limits_stop_large_queries() {
    let c = cluster(2, &data());
    let r = run(&c, "SELECT meen(usage_user) FROM cpu WHERE time > now() - 1h GROUP BY time(1m)", false);
    let e = r[0].error.as_deref().unwrap();
    assert!(e.contains("line 1, column 8") && e.contains("unknown function meen()"), "{e}");
    // A condition on another field's values than the one read: refused, pointing at HAVING.
    let r = run(&c, "SELECT mean(usage_user) FROM cpu WHERE usage_system > 5", false);
    assert!(r[0].error.as_deref().unwrap().contains("HAVING"), "{:?}", r[0].error);
    let r = run(&c, "SHOW SERIES FROM cpu WHERE usage_user > 5", false);
    assert!(r[0].error.as_deref().unwrap().contains("applies to SELECT only"), "{:?}", r[0].error);
    let r = run(&c, "SELECT mean(usage_user), usage_system FROM cpu", false);
    assert!(
        r[0].error.as_deref().unwrap().contains("\"usage_system\" is used outside an aggregate"),
        "{:?}",
        r[0].error
    );

    let engines: Vec<&ShardEngine> = c.engines.iter().collect();
    let tight = PlanOptions {
        now_ms: T0 + 3 * HOUR,
        limits: Limits { max_points: 1000, ..Limits::default() },
        raw_only: false,
    };
    let r = run_local(&engines, "SELECT * FROM cpu", &tight).unwrap();
    assert!(r[0].error.as_deref().unwrap().contains("query.max_points"), "{:?}", r[0].error);
    let tight = PlanOptions { limits: Limits { max_series: 3, ..Limits::default() }, ..tight };
    let r = run_local(&engines, "SELECT last(usage_user) FROM cpu", &tight).unwrap();
    assert!(r[0].error.as_deref().unwrap().contains("query.max_series"), "{:?}", r[0].error);
    let r = run(&c, &format!("SELECT mean(usage_user) FROM cpu WHERE time > {}ms GROUP BY time(1ms)", T0), false);
    assert!(r[0].error.as_deref().unwrap().contains("query.max_buckets"), "{:?}", r[0].error);
}

#[test]
fn cached_answers_equal_fresh_ones_through_late_writes_and_moving_windows() {
    use pharos_query::cache::{run_cached, ShardCache};
    use pharos_query::shard::{run as run_shard, ShardAnswer};
    use std::sync::Mutex;

    let points = data();
    let mut c = cluster(2, &points[..points.len() / 2]);
    let caches: Vec<Mutex<ShardCache>> = (0..2).map(|_| Mutex::new(ShardCache::new(16))).collect();
    let opts = PlanOptions { now_ms: T0 + 3 * HOUR, limits: Limits::default(), raw_only: false };
    let mut hits = 0;
    let mut rest: Vec<Point> = points[points.len() / 2..].to_vec();
    for step in 0..12i64 {
        // A dashboard: the last 90 minutes in 5-minute buckets, moving on by 7 minutes each refresh.
        let end = T0 + 90 * MINUTE + step * 7 * MINUTE;
        for q in [
            format!("SELECT mean(usage_user), max(usage_system), count(usage_user) FROM cpu WHERE time >= {}ms AND time < {end}ms GROUP BY time(5m), host", end - 90 * MINUTE),
            format!("SELECT rate(requests) FROM http WHERE time >= {}ms AND time < {end}ms GROUP BY time(5m)", end - 90 * MINUTE),
        ] {
            let st = pharos_query::parse(&q).unwrap().remove(0);
            let plan = pharos_query::plan(&st, &opts).unwrap();
            let sq = plan.shard_query().unwrap();
            let mut cached_answers = Vec::new();
            let mut fresh_answers = Vec::new();
            for (e, cache) in c.engines.iter().zip(&caches) {
                let (a, stats) = run_cached(e, cache, &sq);
                hits += stats.hits;
                cached_answers.push(a.unwrap());
                fresh_answers.push(run_shard(e, &sq).unwrap());
            }
            for (x, y) in cached_answers.iter().zip(&fresh_answers) {
                let (ShardAnswer::Aggregate { groups: gx, .. }, ShardAnswer::Aggregate { groups: gy, .. }) = (x, y) else {
                    panic!("aggregate answers")
                };
                assert_eq!(gx.len(), gy.len(), "step {step}: {q}");
                for (a, b) in gx.iter().zip(gy) {
                    assert_eq!((&a.measurement, &a.tags, &a.field), (&b.measurement, &b.tags, &b.field));
                    assert_eq!(a.buckets.len(), b.buckets.len(), "step {step}: {q}");
                    for (p, r) in a.buckets.iter().zip(&b.buckets) {
                        assert_eq!((p.ts, p.p.count), (r.ts, r.p.count), "step {step}: {q}");
                        assert!((p.p.sum - r.p.sum).abs() <= 1e-9 * p.p.sum.abs().max(1.0), "step {step}: {q}");
                        assert!((p.increase - r.increase).abs() <= 1e-9 * p.increase.abs().max(1.0), "step {step}: {q}");
                        assert_eq!((p.p.max, p.p.last), (r.p.max, r.p.last), "step {step}: {q}");
                    }
                }
            }
        }
        // Between refreshes: the newest data arrives, and some late samples land in already cached buckets.
        let take = rest.len().min(2000);
        let mut batch: Vec<Point> = rest.drain(..take).collect();
        for p in batch.iter_mut().step_by(97) {
            p.timestamp -= 40 * MINUTE; // late: inside the out-of-order window, inside cached buckets
        }
        for (i, e) in c.engines.iter_mut().enumerate() {
            let mine: Vec<Point> =
                batch.iter().filter(|p| (p.tags[0].1.as_bytes()[1] as usize) % 2 == i).cloned().collect();
            e.apply(&Command::write(mine), &[9, step as u8]).unwrap();
        }
    }
    assert!(hits > 100, "the cache served buckets ({hits})");
}

#[test]
fn raw_queries_in_windows_equal_the_whole_answer() {
    use pharos_query::shard::run as run_shard;
    use pharos_query::stream::RawWindows;
    use pharos_query::{Plan, Series};

    let c = cluster(3, &data());
    let opts = PlanOptions { now_ms: T0 + 3 * HOUR, limits: Limits::default(), raw_only: false };
    for q in [
        "SELECT usage_user, usage_system, host FROM cpu WHERE region = 'r1'".to_string(),
        "SELECT * FROM cpu GROUP BY host ORDER BY time DESC LIMIT 500 OFFSET 3".to_string(),
        format!(
            "SELECT requests * 2 FROM http WHERE time >= {}ms AND time < {}ms GROUP BY host LIMIT 40",
            T0 + 7 * MINUTE,
            T0 + 2 * HOUR
        ),
    ] {
        let st = pharos_query::parse(&q).unwrap().remove(0);
        let Plan::Raw(raw) = pharos_query::plan(&st, &opts).unwrap() else { panic!("raw plan") };
        assert!(RawWindows::streamable(&raw));
        let whole = run(&c, &q, false).remove(0).series;
        let ask = |sq: &pharos_query::shard::ShardQuery| {
            c.engines.iter().map(|e| run_shard(e, sq).unwrap()).collect::<Vec<_>>()
        };
        // Windows of about 500 points: the data (up to ~20,000 samples per query) takes many.
        let mut w = RawWindows::new(&raw, &ask(&RawWindows::extent_query(&raw)), 500).unwrap();
        let mut pieces: Vec<Series> = Vec::new();
        let mut windows = 0;
        while let Some((sq, a, z)) = w.next_query() {
            windows += 1;
            assert!(windows < 10_000, "windows make progress");
            pieces.extend(w.finish_window(a, z, ask(&sq)).unwrap());
        }
        assert!(windows > 3, "{q}: the query ran in several windows ({windows})");
        // Join the pieces of each series, in the order they came.
        let mut joined: Vec<Series> = Vec::new();
        for p in pieces {
            match joined.iter_mut().find(|s| s.name == p.name && s.tags == p.tags) {
                Some(s) => s.values.extend(p.values),
                None => joined.push(p),
            }
        }
        joined.sort_by(|a, b| (&a.name, &a.tags).cmp(&(&b.name, &b.tags)));
        assert_eq!(joined.len(), whole.len(), "{q}");
        for (j, w) in joined.iter().zip(&whole) {
            assert_eq!(j.columns, w.columns, "{q}");
            assert_eq!(j.values, w.values, "{q}: {} {:?}", j.name, j.tags);
        }
    }
}

/// `WHERE ("usage_user" > 50)`, as Grafana's query builder writes it: the samples of that field are filtered
/// before anything is aggregated, in raw queries and aggregates alike, with the operands either way round.
#[test]
fn a_condition_on_the_fields_values_filters_its_samples_before_aggregating() {
    let c = cluster(2, &data());
    let w = RANGE.replace("1699920000000", &T0.to_string()).replace("1699930800000", &(T0 + 3 * HOUR).to_string());
    let float = |v: &Value| match v {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        other => panic!("{other:?}"),
    };
    let all = run(&c, &format!("SELECT usage_user FROM cpu WHERE {w} GROUP BY host"), false);
    let kept = run(&c, &format!("SELECT usage_user FROM cpu WHERE (\"usage_user\" > 50) AND {w} GROUP BY host"), false);
    let agg = run(&c, &format!("SELECT count(usage_user), mean(usage_user), min(usage_user) FROM cpu WHERE {w} AND 50 < usage_user GROUP BY host"), false);
    assert!(kept[0].error.is_none() && agg[0].error.is_none(), "{:?} {:?}", kept[0].error, agg[0].error);
    assert_eq!(all[0].series.len(), 6);
    for (s, (k, a)) in all[0].series.iter().zip(kept[0].series.iter().zip(&agg[0].series)) {
        let want: Vec<&Vec<Value>> = s.values.iter().filter(|r| float(&r[1]) > 50.0).collect();
        assert!(!want.is_empty() && want.len() < s.values.len(), "the condition keeps some samples of {:?}", s.tags);
        assert_eq!(k.values.iter().collect::<Vec<_>>(), want, "{:?}", s.tags);
        let vals: Vec<f64> = want.iter().map(|r| float(&r[1])).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let row = &a.values[0];
        assert_eq!(float(&row[1]) as usize, vals.len(), "{:?}", s.tags);
        assert!(close(&row[2], &Value::Float(mean)) && close(&row[3], &Value::Float(min)), "{row:?} vs {mean} {min}");
    }
    // Buckets of GROUP BY time read raw samples too: the default plan and the raw-only one agree.
    let q = format!(
        "SELECT max(usage_user), count(usage_user) FROM cpu WHERE usage_user <= 30 AND {w} GROUP BY time(30m), region"
    );
    assert_same(&q, &run(&c, &q, false), &run(&c, &q, true));
    // A lone min() reports its sample's time, as without the condition.
    let q = format!("SELECT min(usage_user) FROM cpu WHERE usage_user >= 0 AND {w} AND host = 'h1'");
    let plain = format!("SELECT min(usage_user) FROM cpu WHERE {w} AND host = 'h1'");
    assert_same(&q, &run(&c, &q, false), &run(&c, &plain, false));
}
