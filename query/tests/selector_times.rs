//! The `time` of a row of selectors, as InfluxDB 1.x reports it (issue 22, item 8). Without GROUP BY time, a
//! lone selector (`first`, `last`, `min`, `max`, `percentile`; `top` and `bottom` always) reports the time of
//! the sample it selected; an aggregate (`mean`, `count`, `median`, ...) or several calls in one select list
//! report the range start (the epoch without a lower bound); with GROUP BY time every row is at its bucket's
//! start (except `top`/`bottom`, at their samples' times).
//!
//! The expected answers below are InfluxDB 1.6.7's (Debian's `influxdb` package) for the same points and
//! queries, written there with `precision=s` and read with `epoch=s`.

use std::sync::Arc;
use std::time::Duration;

use pharos_query::{run_local, Limits, PlanOptions, Series, Value};
use pharos_storage::retention::{Durations, RetentionConfig, DAY, HOUR};
use pharos_storage::{Command, EngineOptions, Point, Retention, ShardEngine, SmolStr};
use tempfile::TempDir;

/// 2023-11-14T00:00:00Z: InfluxDB got the same points at these seconds.
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY;

/// `T0 + s` seconds, in ms.
fn at(s: i64) -> i64 {
    T0 + s * 1000
}

fn point(m: &str, host: &str, fields: &[(&str, f64)], ts: i64) -> Point {
    Point {
        measurement: m.into(),
        tags: vec![("host".into(), host.into())],
        fields: fields.iter().map(|(k, v)| (SmolStr::from(*k), *v)).collect(),
        timestamp: ts,
    }
}

/// The points written to InfluxDB (seconds after T0):
/// ```text
/// m,host=a v=1,w=10 1000    m,host=b v=2,w=1 1005
/// m,host=a v=5,w=20 1010    m,host=b v=9,w=2 1015
/// m,host=a v=3,w=30 1020    m,host=b v=0,w=3 1025
/// m,host=a v=5,w=5  1030    m,host=b v=0,w=4 1035
/// s,host=a v=1 1000         s,host=a v=2 1010
/// t,host=a v=1 2000         t,host=b v=3 2000         t,host=c v=2 2000
/// ```
fn influx_points() -> Vec<Point> {
    let mut out = Vec::new();
    for (s, v, w) in [(1000, 1.0, 10.0), (1010, 5.0, 20.0), (1020, 3.0, 30.0), (1030, 5.0, 5.0)] {
        out.push(point("m", "a", &[("v", v), ("w", w)], at(s)));
    }
    for (s, v, w) in [(1005, 2.0, 1.0), (1015, 9.0, 2.0), (1025, 0.0, 3.0), (1035, 0.0, 4.0)] {
        out.push(point("m", "b", &[("v", v), ("w", w)], at(s)));
    }
    out.push(point("s", "a", &[("v", 1.0)], at(1000)));
    out.push(point("s", "a", &[("v", 2.0)], at(1010)));
    for (h, v) in [("a", 1.0), ("b", 3.0), ("c", 2.0)] {
        out.push(point("t", h, &[("v", v)], at(2000)));
    }
    out
}

struct Store {
    _dir: TempDir,
    engines: Vec<ShardEngine>,
    now: i64,
}

impl Store {
    /// `points` over `shards` shards: series spread round-robin in order of first appearance (`rotate` shifts
    /// which shard gets the first, so that merges happen in other orders), then maintenance at `maintain`
    /// (each time given: rollups built, expired data dropped).
    fn new(points: &[Point], shards: usize, rotate: usize, retention: Retention, maintain: &[i64]) -> Store {
        let dir = TempDir::new().unwrap();
        let db = pharos_storage::db::open(dir.path(), &Default::default()).unwrap();
        let opts = EngineOptions { minute_rollup_after_ms: Some(0), ..Default::default() };
        let retention = Arc::new(retention);
        let mut engines: Vec<ShardEngine> = (0..shards)
            .map(|s| ShardEngine::open(db.clone(), s as u32, retention.clone(), opts.clone()).unwrap())
            .collect();
        let mut seen: Vec<(SmolStr, Vec<(SmolStr, SmolStr)>)> = Vec::new();
        let mut parts: Vec<Vec<Point>> = vec![Vec::new(); shards];
        for p in points {
            let key = (p.measurement.clone(), p.tags.clone());
            let i = seen.iter().position(|k| *k == key).unwrap_or_else(|| {
                seen.push(key);
                seen.len() - 1
            });
            parts[(i + rotate) % shards].push(p.clone());
        }
        for (e, mut ps) in engines.iter_mut().zip(parts) {
            if ps.is_empty() {
                continue;
            }
            ps.sort_by_key(|p| p.timestamp);
            for r in e.apply(&Command::write(ps), b"w").unwrap() {
                assert_eq!((r.rejected_too_old, r.rejected_expired), (0, 0), "every sample is accepted");
            }
        }
        for &now in maintain {
            for e in &mut engines {
                e.apply(&Command::Maintain { now_ms: now }, b"m").unwrap();
            }
        }
        let now = maintain.last().copied().unwrap_or(T0 + DAY);
        Store { _dir: dir, engines, now }
    }

    fn query(&self, q: &str, raw_only: bool) -> Vec<Series> {
        let engines: Vec<&ShardEngine> = self.engines.iter().collect();
        let opts = PlanOptions { now_ms: self.now, limits: Limits::default(), raw_only };
        let mut r = run_local(&engines, q, &opts).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        let r = r.remove(0);
        assert!(r.error.is_none(), "{q}: {:?}", r.error);
        r.series
    }
}

/// A cell of an expected row: a time in seconds after T0 (`S`), the epoch (`Epoch`), or a number.
#[derive(Clone, Copy)]
enum C {
    S(i64),
    Epoch,
    F(f64),
    I(i64),
    Null,
}

fn value(c: C) -> Value {
    match c {
        C::S(s) => Value::Time(at(s)),
        C::Epoch => Value::Time(0),
        C::F(x) => Value::Float(x),
        C::I(i) => Value::Int(i),
        C::Null => Value::Null,
    }
}

/// Series of measurement `name`: (host tag or "" for none, rows).
fn want(name: &str, columns: &[&str], series: &[(&str, Vec<Vec<C>>)]) -> Vec<Series> {
    series
        .iter()
        .map(|(host, rows)| Series {
            name: name.into(),
            tags: if host.is_empty() { vec![] } else { vec![("host".to_string(), host.to_string())] },
            columns: std::iter::once("time").chain(columns.iter().copied()).map(String::from).collect(),
            values: rows.iter().map(|r| r.iter().copied().map(value).collect()).collect(),
        })
        .collect()
}

/// The WHERE clause InfluxDB was asked with: [T0 + 990 s, T0 + 1100 s).
fn bound() -> String {
    format!("WHERE time >= {}ms AND time < {}ms", at(990), at(1100))
}

/// The InfluxDB data set in every layout: one to three shards, series placed in other orders, raw data
/// alone or with rollup tiers built.
struct Layouts(Vec<(String, Store)>);

impl Layouts {
    fn new() -> Layouts {
        let mut out = Vec::new();
        for (shards, rotate) in [(1, 0), (2, 0), (2, 1), (3, 2)] {
            for maintain in [&[][..], &[T0 + DAY][..]] {
                let name = format!("{shards} shards rotated {rotate}, maintained {maintain:?}");
                out.push((name, Store::new(&influx_points(), shards, rotate, Retention::default(), maintain)));
            }
        }
        Layouts(out)
    }

    /// Runs `q` in every layout, with and without raw-only reads, and compares each answer with `want`.
    fn check(&self, q: &str, want: &[Series]) {
        for (name, store) in &self.0 {
            for raw_only in [false, true] {
                assert_eq!(store.query(q, raw_only), want, "{q} ({name}, raw_only {raw_only})");
            }
        }
    }
}

use C::{Epoch, Null, F, I, S};

#[test]
fn a_lone_selector_reports_its_samples_time() {
    let b = bound();
    let layouts = Layouts::new();
    let check = |q: &str, want: &[Series]| layouts.check(q, want);
    // (select list, column, [unbounded, bounded], by host [a, b]): InfluxDB's answers.
    let cases: [(&str, &str, [(C, f64); 2], [(C, f64); 2]); 8] = [
        ("last(v)", "last", [(S(1035), 0.0), (S(1035), 0.0)], [(S(1030), 5.0), (S(1035), 0.0)]),
        ("first(v)", "first", [(S(1000), 1.0), (S(1000), 1.0)], [(S(1000), 1.0), (S(1005), 2.0)]),
        // Ties: the earliest sample holding the extreme (host a's 5 at 1010 and 1030, host b's 0 at 1025, 1035).
        ("min(v)", "min", [(S(1025), 0.0), (S(1025), 0.0)], [(S(1000), 1.0), (S(1025), 0.0)]),
        ("max(v)", "max", [(S(1015), 9.0), (S(1015), 9.0)], [(S(1010), 5.0), (S(1015), 9.0)]),
        // Nearest rank over the points ordered by value, then time: host b's median rank picks the later 0.
        ("percentile(v, 50)", "percentile", [(S(1005), 2.0), (S(1005), 2.0)], [(S(1020), 3.0), (S(1035), 0.0)]),
        ("percentile(v, 90)", "percentile", [(S(1030), 5.0), (S(1030), 5.0)], [(S(1030), 5.0), (S(1015), 9.0)]),
        // Under arithmetic, and one call repeated, it is still one selector.
        ("max(v) * 2", "max", [(S(1015), 18.0), (S(1015), 18.0)], [(S(1010), 10.0), (S(1015), 18.0)]),
        ("max(v) + max(v)", "max_max", [(S(1015), 18.0), (S(1015), 18.0)], [(S(1010), 10.0), (S(1015), 18.0)]),
    ];
    for (sel, column, [(t0, v0), (t1, v1)], [(ta, va), (tb, vb)]) in cases {
        check(&format!("SELECT {sel} FROM m"), &want("m", &[column], &[("", vec![vec![t0, F(v0)]])]));
        check(&format!("SELECT {sel} FROM m {b}"), &want("m", &[column], &[("", vec![vec![t1, F(v1)]])]));
        check(
            &format!("SELECT {sel} FROM m {b} GROUP BY host"),
            &want("m", &[column], &[("a", vec![vec![ta, F(va)]]), ("b", vec![vec![tb, F(vb)]])]),
        );
        // GROUP BY * is GROUP BY host here; ORDER BY time DESC changes nothing on one row.
        check(
            &format!("SELECT {sel} FROM m {b} GROUP BY * ORDER BY time DESC"),
            &want("m", &[column], &[("a", vec![vec![ta, F(va)]]), ("b", vec![vec![tb, F(vb)]])]),
        );
    }
    // A wildcard over a measurement with one field is one selector.
    check("SELECT max(*) FROM s", &want("s", &["max_v"], &[("", vec![vec![S(1010), F(2.0)]])]));
    check("SELECT last(*) FROM s", &want("s", &["last_v"], &[("", vec![vec![S(1010), F(2.0)]])]));
    // Three series with a sample at the same time: that time (which value wins the tie is another matter).
    check("SELECT max(v) FROM t", &want("t", &["max"], &[("", vec![vec![S(2000), F(3.0)]])]));
    let store = Store::new(&influx_points(), 3, 0, Retention::default(), &[]);
    let got = store.query("SELECT last(v) FROM t", false);
    assert_eq!(got[0].values[0][0], Value::Time(at(2000)));
    // No sample in range: no row.
    check(&format!("SELECT max(v) FROM m WHERE time > {}ms", at(1040)), &[]);
}

#[test]
fn aggregates_and_several_calls_report_the_range_start() {
    let b = bound();
    let layouts = Layouts::new();
    let check = |q: &str, want: &[Series]| layouts.check(q, want);
    let cases: [(&str, &[&str], Vec<C>, Vec<C>, Vec<C>); 9] = [
        ("mean(v)", &["mean"], vec![F(3.125)], vec![F(3.5)], vec![F(2.75)]),
        ("median(v)", &["median"], vec![F(2.5)], vec![F(4.0)], vec![F(1.0)]),
        ("count(v)", &["count"], vec![I(8)], vec![I(4)], vec![I(4)]),
        ("sum(v)", &["sum"], vec![F(25.0)], vec![F(14.0)], vec![F(11.0)]),
        ("spread(v)", &["spread"], vec![F(9.0)], vec![F(4.0)], vec![F(9.0)]),
        ("last(v), max(w)", &["last", "max"], vec![F(0.0), F(30.0)], vec![F(5.0), F(30.0)], vec![F(0.0), F(4.0)]),
        ("max(v), min(v)", &["max", "min"], vec![F(9.0), F(0.0)], vec![F(5.0), F(1.0)], vec![F(9.0), F(0.0)]),
        ("last(v), mean(w)", &["last", "mean"], vec![F(0.0), F(9.375)], vec![F(5.0), F(16.25)], vec![F(0.0), F(2.5)]),
        // A wildcard over two fields is two selectors.
        ("max(*)", &["max_v", "max_w"], vec![F(9.0), F(30.0)], vec![F(5.0), F(30.0)], vec![F(9.0), F(4.0)]),
    ];
    let row = |t: C, cells: &[C]| [vec![t], cells.to_vec()].concat();
    for (sel, columns, all, a, bb) in cases {
        check(&format!("SELECT {sel} FROM m"), &want("m", columns, &[("", vec![row(Epoch, &all)])]));
        check(&format!("SELECT {sel} FROM m {b}"), &want("m", columns, &[("", vec![row(S(990), &all)])]));
        check(
            &format!("SELECT {sel} FROM m {b} GROUP BY host"),
            &want("m", columns, &[("a", vec![row(S(990), &a)]), ("b", vec![row(S(990), &bb)])]),
        );
    }
    check("SELECT last(*) FROM m", &want("m", &["last_v", "last_w"], &[("", vec![vec![Epoch, F(0.0), F(4.0)]])]));
}

#[test]
fn group_by_time_keeps_bucket_starts_and_top_bottom_keep_sample_times() {
    let b = bound();
    let layouts = Layouts::new();
    let check = |q: &str, want: &[Series]| layouts.check(q, want);
    let buckets = |cells: [C; 2]| {
        vec![
            vec![S(980), Null],
            vec![S(1000), cells[0]],
            vec![S(1020), cells[1]],
            vec![S(1040), Null],
            vec![S(1060), Null],
            vec![S(1080), Null],
        ]
    };
    for (sel, column, cells) in [
        ("last(v)", "last", [F(9.0), F(0.0)]),
        ("max(v)", "max", [F(9.0), F(5.0)]),
        ("min(v)", "min", [F(1.0), F(0.0)]),
        ("percentile(v, 50)", "percentile", [F(2.0), F(0.0)]),
    ] {
        check(&format!("SELECT {sel} FROM m {b} GROUP BY time(20s)"), &want("m", &[column], &[("", buckets(cells))]));
    }
    let rows = |r: &[(i64, f64)]| r.iter().map(|(s, v)| vec![S(*s), F(*v)]).collect::<Vec<_>>();
    check(
        &format!("SELECT top(v, 2) FROM m {b} GROUP BY time(20s)"),
        &want("m", &["top"], &[("", rows(&[(1010, 5.0), (1015, 9.0), (1020, 3.0), (1030, 5.0)]))]),
    );
    for clause in [String::new(), format!(" {b}")] {
        check(
            &format!("SELECT top(v, 2) FROM m{clause}"),
            &want("m", &["top"], &[("", rows(&[(1010, 5.0), (1015, 9.0)]))]),
        );
        check(
            &format!("SELECT bottom(v, 2) FROM m{clause}"),
            &want("m", &["bottom"], &[("", rows(&[(1025, 0.0), (1035, 0.0)]))]),
        );
    }
    check(
        &format!("SELECT top(v, 2) FROM m {b} GROUP BY host"),
        &want("m", &["top"], &[("a", rows(&[(1010, 5.0), (1030, 5.0)])), ("b", rows(&[(1005, 2.0), (1015, 9.0)]))]),
    );
    check(
        &format!("SELECT bottom(v, 2) FROM m {b} GROUP BY host"),
        &want("m", &["bottom"], &[("a", rows(&[(1000, 1.0), (1020, 3.0)])), ("b", rows(&[(1025, 0.0), (1035, 0.0)]))]),
    );
}

/// Ties of min and max across series on different shards go to the earliest sample whichever shard
/// answers first, and so do ties inside one series split over raw data and rollup tiers.
#[test]
fn extreme_ties_across_shards_go_to_the_earliest_sample() {
    // Hosts a, b, c each hold the max 7 and the min -3, at times in different hours; host b's are earliest.
    let mut points = Vec::new();
    for (h, max_at, min_at) in
        [("a", 3 * 3600 + 5, 2 * 3600 + 7), ("b", 3600 + 59, 3600 + 1), ("c", 5 * 3600, 4 * 3600 + 30)]
    {
        for s in (0..6 * 3600).step_by(300) {
            points.push(point("u", h, &[("v", 1.0)], at(s + 17)));
        }
        points.push(point("u", h, &[("v", 7.0)], at(max_at)));
        points.push(point("u", h, &[("v", -3.0)], at(min_at)));
        // The same extremes again later: ties inside a series go to the earlier sample too.
        points.push(point("u", h, &[("v", 7.0)], at(max_at + 1800)));
        points.push(point("u", h, &[("v", -3.0)], at(min_at + 1800)));
    }
    for rotate in 0..3 {
        for maintain in [&[][..], &[T0 + DAY][..]] {
            let store = Store::new(&points, 3, rotate, Retention::default(), maintain);
            for raw_only in [false, true] {
                for (q, t, v) in [("max", 3600 + 59, 7.0), ("min", 3600 + 1, -3.0)] {
                    // Unbounded, and bounded on whole hours (where the rollup tiers answer).
                    for clause in [String::new(), format!(" WHERE time >= {}ms AND time < {}ms", T0, T0 + 6 * HOUR)] {
                        let q = format!("SELECT {q}(v) FROM u{clause}");
                        let got = store.query(&q, raw_only);
                        assert_eq!(
                            got[0].values,
                            vec![vec![Value::Time(at(t)), Value::Float(v)]],
                            "{q} rotate {rotate}"
                        );
                    }
                }
            }
        }
    }
}

/// Where raw data has expired, a lone min()/max() still has its value from the rollup tiers, and its time
/// as precisely as they keep it: the sample's time when it is the first or last of its minute, else the
/// minute's start; once only the 1-hour tier is left, the same at the hour's grain.
#[test]
fn extreme_times_from_rollups_once_raw_data_has_expired() {
    let retention = Retention::new(RetentionConfig {
        default: Durations {
            raw: Duration::from_secs(2 * 86_400),
            minute: Duration::from_secs(10 * 86_400),
            hour: Duration::from_secs(365 * 86_400),
        },
        ..Default::default()
    })
    .unwrap();
    let m = 5 * 3600 + 7 * 60; // a minute of hour 5
    let m2 = 5 * 3600 + 30 * 60;
    let points: Vec<Point> = [(m + 5, 1.0), (m + 20, 9.0), (m + 40, 2.0), (m2 + 10, 9.0), (m2 + 50, 8.0)]
        .iter()
        .map(|&(s, v)| point("e", "a", &[("v", v)], at(s)))
        .collect();
    // Unbounded, and bounded on whole days (a range the rollup tiers can answer whole).
    let day = format!(" WHERE time >= {}ms AND time < {}ms", T0, T0 + DAY);
    let q = |store: &Store, f: &str, clause: &str| {
        store.query(&format!("SELECT {f}(v) FROM e{clause}"), false).first().map(|s| s.values.clone())
    };
    let row = |t: i64, v: f64| Some(vec![vec![Value::Time(t), Value::Float(v)]]);

    // Raw data present: exact times.
    let fresh = Store::new(&points, 1, 0, retention.clone(), &[T0 + DAY]);
    for clause in ["", day.as_str()] {
        assert_eq!(q(&fresh, "max", clause), row(at(m + 20), 9.0));
        assert_eq!(q(&fresh, "min", clause), row(at(m + 5), 1.0));
    }

    // Raw expired, 1-minute rollups left: the max is inside its minute (the minute's start), the min is its
    // minute's first sample.
    let minutes = Store::new(&points, 1, 0, retention.clone(), &[T0 + DAY, T0 + 4 * DAY]);
    for clause in ["", day.as_str()] {
        assert_eq!(q(&minutes, "max", clause), row(at(m), 9.0));
        assert_eq!(q(&minutes, "min", clause), row(at(m + 5), 1.0));
    }
    assert_eq!(q(&minutes, "last", &day), row(at(m2 + 50), 8.0));
    assert_eq!(q(&minutes, "first", &day), row(at(m + 5), 1.0));

    // Only the 1-hour tier left: the hour's start for the max, the hour's first sample for the min.
    let hours = Store::new(&points, 1, 0, retention, &[T0 + DAY, T0 + 4 * DAY, T0 + 12 * DAY]);
    for clause in ["", day.as_str()] {
        assert_eq!(q(&hours, "max", clause), row(at(5 * 3600), 9.0));
        assert_eq!(q(&hours, "min", clause), row(at(m + 5), 1.0));
    }
}
