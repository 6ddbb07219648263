//! The coordinator's half of a query: merge the shards' answers and apply what must be global (final
//! aggregates from partials, percentiles over all values, window functions, fill, HAVING, ordering, limits).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pharos_storage::GroupBy as StorageGroupBy;

use crate::ast::{BinOp, Fill, IdentKind};
use crate::error::QueryError;
use crate::plan::{AggFn, AggPlan, Column, Leaf, Math, MetaKind, MetaPlan, PExpr, Plan, RawPlan, Shape, Window};
use crate::result::{Series, Value};
use crate::shard::{merge_buckets, AggGroup, BucketAcc, MetaAnswer, RawSeries, ShardAnswer};

/// Turns the shards' answers to `plan.shard_query()` into result series.
pub fn finish(plan: &Plan, answers: Vec<ShardAnswer>) -> Result<Vec<Series>, QueryError> {
    match plan {
        Plan::Aggregate(a) => finish_aggregate(a, answers),
        Plan::Raw(r) => finish_raw(r, answers),
        Plan::Meta(m) => finish_meta(m, answers),
        Plan::Databases => Ok(vec![Series {
            name: "databases".into(),
            tags: vec![],
            columns: vec!["name".into()],
            values: vec![vec![Value::Str("pharos".into())]],
        }]),
        Plan::RetentionPolicies => Ok(vec![Series {
            name: String::new(),
            tags: vec![],
            columns: ["name", "duration", "shardGroupDuration", "replicaN", "default"].map(String::from).to_vec(),
            values: vec![vec![
                Value::Str("autogen".into()),
                Value::Str("0s".into()),
                Value::Str("24h0m0s".into()),
                Value::Int(3),
                Value::Bool(true),
            ]],
        }]),
    }
}

fn wrong_answer() -> QueryError {
    QueryError::Internal("a shard answered a different kind of query".into())
}

// ---------------------------------------------------------------------------------------------- values

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    F(f64),
    S(String),
}

impl V {
    fn f(&self) -> Option<f64> {
        match self {
            V::F(x) => Some(*x),
            _ => None,
        }
    }
    fn truthy(&self) -> bool {
        match self {
            V::F(x) => *x != 0.0 && !x.is_nan(),
            V::S(s) => !s.is_empty(),
            V::Null => false,
        }
    }
}

fn bool_v(b: bool) -> V {
    V::F(if b { 1.0 } else { 0.0 })
}

fn binary(op: BinOp, a: &V, b: &V) -> V {
    match op {
        BinOp::And => return bool_v(a.truthy() && b.truthy()),
        BinOp::Or => return bool_v(a.truthy() || b.truthy()),
        _ => {}
    }
    if let (V::S(x), V::S(y)) = (a, b) {
        return match op {
            BinOp::Eq => bool_v(x == y),
            BinOp::Ne => bool_v(x != y),
            BinOp::Add => V::S(format!("{x}{y}")),
            _ => V::Null,
        };
    }
    let (Some(x), Some(y)) = (a.f(), b.f()) else { return V::Null };
    match op {
        BinOp::Add => V::F(x + y),
        BinOp::Sub => V::F(x - y),
        BinOp::Mul => V::F(x * y),
        // Division by zero gives null (InfluxQL gives 0; null is honest and drops out of aggregates).
        BinOp::Div if y == 0.0 => V::Null,
        BinOp::Div => V::F(x / y),
        BinOp::Mod if y == 0.0 => V::Null,
        BinOp::Mod => V::F(x % y),
        BinOp::Eq => bool_v(x == y),
        BinOp::Ne => bool_v(x != y),
        BinOp::Lt => bool_v(x < y),
        BinOp::Le => bool_v(x <= y),
        BinOp::Gt => bool_v(x > y),
        BinOp::Ge => bool_v(x >= y),
        BinOp::ReMatch | BinOp::ReNotMatch | BinOp::And | BinOp::Or => V::Null,
    }
}

fn math(m: Math, x: f64) -> f64 {
    match m {
        Math::Abs => x.abs(),
        Math::Ceil => x.ceil(),
        Math::Floor => x.floor(),
        Math::Round => x.round(),
        Math::Sqrt => x.sqrt(),
        Math::Ln => x.ln(),
        Math::Log2 => x.log2(),
        Math::Log10 => x.log10(),
        Math::Exp => x.exp(),
    }
}

/// Applies a window function over a column; rows without a result get null.
pub fn window(w: Window, times: &[i64], xs: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut out = vec![None; xs.len()];
    let present: Vec<(usize, f64)> = xs.iter().enumerate().filter_map(|(i, x)| x.map(|v| (i, v))).collect();
    match w {
        Window::Derivative { unit, non_negative } => {
            for pair in present.windows(2) {
                let ((i0, v0), (i1, v1)) = (pair[0], pair[1]);
                let dt = (times[i1] - times[i0]) as f64 / unit as f64;
                if dt <= 0.0 {
                    continue;
                }
                let d = (v1 - v0) / dt;
                if !(non_negative && d < 0.0) {
                    out[i1] = Some(d);
                }
            }
        }
        Window::Difference { non_negative } => {
            for pair in present.windows(2) {
                let d = pair[1].1 - pair[0].1;
                if !(non_negative && d < 0.0) {
                    out[pair[1].0] = Some(d);
                }
            }
        }
        Window::MovingAverage(n) => {
            let mut sum = 0.0;
            for (k, (i, v)) in present.iter().enumerate() {
                sum += v;
                if k >= n {
                    sum -= present[k - n].1;
                }
                if k + 1 >= n {
                    out[*i] = Some(sum / n as f64);
                }
            }
        }
        Window::ExponentialMovingAverage(n) => {
            let alpha = 2.0 / (n as f64 + 1.0);
            let mut ema = None;
            for (k, (i, v)) in present.iter().enumerate() {
                let e = match ema {
                    None => *v,
                    Some(prev) => alpha * v + (1.0 - alpha) * prev,
                };
                ema = Some(e);
                if k + 1 >= n {
                    out[*i] = Some(e);
                }
            }
        }
        Window::CumulativeSum => {
            let mut sum = 0.0;
            for (i, v) in present {
                sum += v;
                out[i] = Some(sum);
            }
        }
    }
    out
}

/// Evaluates an expression over all rows of one series at once (window functions need whole columns).
fn eval(e: &PExpr, times: &[i64], cell: &dyn Fn(&PExpr, usize) -> V) -> Vec<V> {
    let n = times.len();
    match e {
        PExpr::Leaf(_) | PExpr::Ref { .. } => (0..n).map(|i| cell(e, i)).collect(),
        PExpr::Const(c) => vec![V::F(*c); n],
        PExpr::Str(s) => vec![V::S(s.clone()); n],
        PExpr::Neg(a) => eval(a, times, cell).into_iter().map(|v| v.f().map(|x| V::F(-x)).unwrap_or(V::Null)).collect(),
        PExpr::Math(m, a) => {
            eval(a, times, cell).into_iter().map(|v| v.f().map(|x| V::F(math(*m, x))).unwrap_or(V::Null)).collect()
        }
        PExpr::Bin(op, a, b) => {
            let (x, y) = (eval(a, times, cell), eval(b, times, cell));
            x.iter().zip(&y).map(|(x, y)| binary(*op, x, y)).collect()
        }
        PExpr::Window(w, a) => {
            let xs: Vec<Option<f64>> = eval(a, times, cell).iter().map(V::f).collect();
            window(*w, times, &xs).into_iter().map(|x| x.map(V::F).unwrap_or(V::Null)).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------- aggregates

/// Nearest-rank percentile over unsorted values (InfluxQL's definition).
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = ((n as f64) * p / 100.0 + 0.5).floor() as i64 - 1;
    Some(values[rank.clamp(0, n as i64 - 1) as usize])
}

/// The sample a nearest-rank percentile selects: values ordered by value, then by time (InfluxQL sorts the
/// bucket's points, in time order, by value), so among equal values the rank decides which sample's time.
pub fn percentile_sample(values: &[(i64, f64)], p: f64) -> Option<(i64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let n = v.len();
    let rank = ((n as f64) * p / 100.0 + 0.5).floor() as i64 - 1;
    Some(v[rank.clamp(0, n as i64 - 1) as usize])
}

/// The time of the sample a selector picked in a bucket (None for other functions, or when the shards did
/// not send it).
fn selected_time(f: &AggFn, b: &BucketAcc) -> Option<i64> {
    if b.p.count == 0 {
        return None;
    }
    match f {
        AggFn::First => Some(b.p.first_ts),
        AggFn::Last => Some(b.p.last_ts),
        AggFn::Min => b.min_ts,
        AggFn::Max => b.max_ts,
        AggFn::Percentile(q) => percentile_sample(&b.values, *q).map(|x| x.0),
        _ => None,
    }
}

/// Median: the middle value, or the mean of the two middle values.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

fn leaf_value(f: &AggFn, b: &BucketAcc, width: i64) -> V {
    let p = &b.p;
    if p.count == 0 {
        return V::Null;
    }
    let vals = || b.values.iter().map(|(_, v)| *v).collect::<Vec<f64>>();
    V::F(match f {
        AggFn::Count => p.count as f64,
        AggFn::Sum => p.sum,
        AggFn::Mean => p.mean(),
        AggFn::Min => p.min,
        AggFn::Max => p.max,
        AggFn::First => p.first,
        AggFn::Last => p.last,
        AggFn::Spread => p.max - p.min,
        AggFn::Stddev => match b.moments.and_then(|m| m.stddev()) {
            Some(s) => s,
            None => return V::Null,
        },
        AggFn::Median => match median(&mut vals()) {
            Some(m) => m,
            None => return V::Null,
        },
        AggFn::Percentile(q) => match percentile(&mut vals(), *q) {
            Some(m) => m,
            None => return V::Null,
        },
        AggFn::Rate(unit) => b.increase / (width as f64 / *unit as f64),
        AggFn::Increase => b.increase,
        AggFn::Top(_) | AggFn::Bottom(_) => return V::Null,
    })
}

/// The top (or bottom) n samples of a bucket, in time order; ties go to the earlier sample.
pub fn select_n(values: &[(i64, f64)], n: usize, top: bool) -> Vec<(i64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| {
        let o = if top { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) };
        o.then(a.0.cmp(&b.0))
    });
    v.truncate(n);
    v.sort_by_key(|x| x.0);
    v
}

type GroupKey = (String, Vec<(String, String)>);

fn finish_aggregate(plan: &AggPlan, answers: Vec<ShardAnswer>) -> Result<Vec<Series>, QueryError> {
    let q = &plan.query;
    let (mut series_total, mut points_total) = (0u64, 0u64);
    let mut merged: BTreeMap<GroupKey, BTreeMap<String, Vec<BucketAcc>>> = BTreeMap::new();
    for a in answers {
        let ShardAnswer::Aggregate { groups, series, points } = a else { return Err(wrong_answer()) };
        series_total += series;
        points_total += points;
        for AggGroup { measurement, tags, field, buckets } in groups {
            let fields = merged.entry((measurement, tags)).or_default();
            let cur = fields.remove(&field).unwrap_or_default();
            fields.insert(field, merge_buckets(cur, buckets));
        }
    }
    check_totals(series_total, points_total, q.limits.max_series, q.limits.max_points)?;

    // The bucket grid (fill needs every bucket, not only those with data).
    let grid: Vec<i64> = if plan.time_grouped {
        let mut v = Vec::new();
        let mut t = plan.report_time;
        while t < q.end {
            v.push(t);
            t += q.width;
        }
        v
    } else {
        vec![q.offset]
    };
    let mut out = Vec::new();
    for ((measurement, tags), fields) in merged {
        // Columns and leaves for this series (a wildcard expands to the fields present).
        let (leaves, columns): (Vec<Leaf>, Vec<Column>) = match &plan.wildcard {
            Some(w) => {
                let (name, func) = &w[0];
                let leaves: Vec<Leaf> = fields.keys().map(|f| Leaf { func: func.clone(), field: f.clone() }).collect();
                let cols = fields
                    .keys()
                    .enumerate()
                    .map(|(i, f)| Column { name: format!("{name}_{f}"), expr: PExpr::Leaf(i) })
                    .collect();
                (leaves, cols)
            }
            None => (plan.leaves.clone(), plan.columns.clone()),
        };
        let lookup: Vec<HashMap<i64, &BucketAcc>> = leaves
            .iter()
            .map(|l| fields.get(&l.field).map(|bs| bs.iter().map(|b| (b.ts, b)).collect()).unwrap_or_default())
            .collect();
        let group_tags = if matches!(q.group_by, StorageGroupBy::None) { vec![] } else { tags };

        // top()/bottom(): several rows per bucket, with the samples' own times.
        if let [Leaf { func: func @ (AggFn::Top(n) | AggFn::Bottom(n)), .. }] = leaves.as_slice() {
            let mut rows = Vec::new();
            for t in &grid {
                if let Some(b) = lookup[0].get(t) {
                    for (ts, v) in select_n(&b.values, *n, matches!(func, AggFn::Top(_))) {
                        rows.push(vec![Value::Time(ts), Value::Float(v)]);
                    }
                }
            }
            if !rows.is_empty() {
                out.push(Series {
                    name: measurement,
                    tags: group_tags,
                    columns: vec!["time".into(), columns[0].name.clone()],
                    values: rows,
                });
            }
            continue;
        }

        let cell = |e: &PExpr, i: usize| -> V {
            let PExpr::Leaf(l) = e else { return V::Null };
            match lookup[*l].get(&grid[i]) {
                Some(b) => leaf_value(&leaves[*l].func, b, q.width),
                None => V::Null,
            }
        };
        let cols: Vec<Vec<V>> = columns.iter().map(|c| eval(&c.expr, &grid, &cell)).collect();
        let keep: Vec<bool> = match &plan.having {
            Some(h) => eval(h, &grid, &cell).iter().map(V::truthy).collect(),
            None => vec![true; grid.len()],
        };
        let windowed = columns.iter().any(|c| c.expr.has_window());
        let any_data: Vec<bool> = (0..grid.len()).map(|i| lookup.iter().any(|m| m.contains_key(&grid[i]))).collect();
        let counts: Vec<bool> =
            columns.iter().map(|c| matches!(&c.expr, PExpr::Leaf(l) if leaves[*l].func == AggFn::Count)).collect();
        let mut times = Vec::new();
        let mut empty = Vec::new();
        let mut table: Vec<Vec<Option<V>>> = Vec::new();
        for i in 0..grid.len() {
            if !keep[i] {
                continue;
            }
            let all_null = cols.iter().all(|c| c[i] == V::Null);
            // No data in the bucket and fill(none), or a window function without a result: no row.
            if (plan.shape.fill == Fill::None && !any_data[i]) || (windowed && all_null) {
                continue;
            }
            if !plan.time_grouped && !any_data[i] {
                continue;
            }
            times.push(if plan.time_grouped {
                grid[i]
            } else if plan.sample_time && (plan.wildcard.is_none() || leaves.len() == 1) {
                // A lone selector (the first leaf; HAVING's leaves come after it and do not count; with a
                // wildcard, a series with one field): the selected sample's time.
                lookup[0].get(&grid[i]).and_then(|b| selected_time(&leaves[0].func, b)).unwrap_or(plan.report_time)
            } else {
                plan.report_time
            });
            empty.push(!any_data[i]);
            table.push(cols.iter().map(|c| Some(c[i].clone())).collect());
        }
        if table.is_empty() {
            continue;
        }
        fill(&mut table, &times, &empty, plan.shape.fill);
        let values: Vec<Vec<Value>> = times
            .iter()
            .zip(table)
            .map(|(t, row)| {
                let mut r = vec![Value::Time(*t)];
                r.extend(row.into_iter().enumerate().map(|(j, v)| to_value(v.unwrap_or(V::Null), counts[j])));
                r
            })
            .collect();
        let mut names = vec!["time".to_string()];
        names.extend(columns.iter().map(|c| c.name.clone()));
        out.push(Series { name: measurement, tags: group_tags, columns: names, values });
    }
    Ok(shape(out, &plan.shape))
}

fn to_value(v: V, integer: bool) -> Value {
    match v {
        V::Null => Value::Null,
        V::F(x) if integer && x.fract() == 0.0 && x.abs() < 9.0e15 => Value::Int(x as i64),
        V::F(x) => Value::Float(x),
        V::S(s) => Value::Str(s),
    }
}

/// FILL over a table of rows (one entry per column): only rows of empty buckets (`empty`) are filled; a null
/// computed from data (stddev of one sample, a division by zero) stays null.
fn fill(table: &mut [Vec<Option<V>>], times: &[i64], empty: &[bool], how: Fill) {
    let ncols = table.first().map(Vec::len).unwrap_or(0);
    for j in 0..ncols {
        match how {
            Fill::Null | Fill::None => {}
            Fill::Value(x) => {
                for (i, row) in table.iter_mut().enumerate() {
                    if empty[i] && row[j] == Some(V::Null) {
                        row[j] = Some(V::F(x));
                    }
                }
            }
            Fill::Previous => {
                let mut prev: Option<V> = None;
                for (i, row) in table.iter_mut().enumerate() {
                    match &row[j] {
                        Some(V::Null) | None => {
                            if let (true, Some(p)) = (empty[i], &prev) {
                                row[j] = Some(p.clone());
                            }
                        }
                        Some(v) => prev = Some(v.clone()),
                    }
                }
            }
            Fill::Linear => {
                let known: Vec<(usize, f64)> = table
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| r[j].as_ref().and_then(V::f).map(|v| (i, v)))
                    .collect();
                for pair in known.windows(2) {
                    let ((i0, v0), (i1, v1)) = (pair[0], pair[1]);
                    for (i, row) in table.iter_mut().enumerate().take(i1).skip(i0 + 1) {
                        if !empty[i] {
                            continue;
                        }
                        let f = (times[i] - times[i0]) as f64 / (times[i1] - times[i0]) as f64;
                        row[j] = Some(V::F(v0 + (v1 - v0) * f));
                    }
                }
            }
        }
    }
}

fn check_totals(series: u64, points: u64, max_series: u64, max_points: u64) -> Result<(), QueryError> {
    if series > max_series {
        return Err(QueryError::Limit(format!(
            "the query selects {series} series, more than {max_series} (query.max_series); narrow the tag filter"
        )));
    }
    if points > max_points {
        return Err(QueryError::Limit(format!(
            "the query reads {points} points, more than {max_points} (query.max_points); narrow the time range or \
             the tag filter, or group by a wider time interval"
        )));
    }
    Ok(())
}

/// ORDER BY time DESC, OFFSET/LIMIT per series, SOFFSET/SLIMIT over series.
fn shape(mut series: Vec<Series>, s: &Shape) -> Vec<Series> {
    series.sort_by(|a, b| (&a.name, &a.tags).cmp(&(&b.name, &b.tags)));
    let skip = s.soffset.unwrap_or(0) as usize;
    let take = s.slimit.map(|l| l as usize).unwrap_or(usize::MAX);
    let mut out: Vec<Series> = series.into_iter().skip(skip).take(take).collect();
    for x in &mut out {
        if s.order_desc {
            x.values.reverse();
        }
        let off = s.offset.unwrap_or(0) as usize;
        if off > 0 || s.limit.is_some() {
            let lim = s.limit.map(|l| l as usize).unwrap_or(usize::MAX);
            x.values = std::mem::take(&mut x.values).into_iter().skip(off).take(lim).collect();
        }
    }
    out.retain(|x| !x.values.is_empty());
    out
}

// ---------------------------------------------------------------------------------------------- raw

/// Rows of one stored tag set, fields joined on time.
struct TagSet {
    tags: Vec<(String, String)>,
    fields: BTreeMap<String, (Vec<i64>, Vec<f64>)>,
}

fn finish_raw(plan: &RawPlan, answers: Vec<ShardAnswer>) -> Result<Vec<Series>, QueryError> {
    let q = &plan.query;
    let (mut series_total, mut points_total) = (0u64, 0u64);
    // (measurement, group tags) -> tag sets
    let mut groups: BTreeMap<GroupKey, BTreeMap<Vec<(String, String)>, TagSet>> = BTreeMap::new();
    for a in answers {
        let ShardAnswer::Raw { series, points } = a else { return Err(wrong_answer()) };
        series_total += series.len() as u64;
        points_total += points;
        for RawSeries { measurement, tags, field, ts, vals } in series {
            let gt: Vec<(String, String)> = match &plan.group_by {
                StorageGroupBy::None => vec![],
                StorageGroupBy::All => tags.clone(),
                StorageGroupBy::Tags(keys) => keys
                    .iter()
                    .map(|k| (k.clone(), tags.iter().find(|(tk, _)| tk == k).map(|x| x.1.clone()).unwrap_or_default()))
                    .collect(),
            };
            let ts_entry = groups
                .entry((measurement, gt))
                .or_default()
                .entry(tags.clone())
                .or_insert_with(|| TagSet { tags, fields: BTreeMap::new() });
            ts_entry.fields.insert(field, (ts, vals));
        }
    }
    check_totals(series_total, points_total, q.limits.max_series, q.limits.max_points)?;
    let mut out = Vec::new();
    for ((measurement, group_tags), sets) in groups {
        let grouped_keys: BTreeSet<&str> = group_tags.iter().map(|(k, _)| k.as_str()).collect();
        // Rows: (time, tag set index, field values by name).
        let sets: Vec<TagSet> = sets.into_values().collect();
        let mut rows: Vec<(i64, usize)> = Vec::new();
        let mut cells: Vec<HashMap<i64, Vec<(&str, f64)>>> = Vec::with_capacity(sets.len());
        for (si, set) in sets.iter().enumerate() {
            let mut by_time: HashMap<i64, Vec<(&str, f64)>> = HashMap::new();
            for (f, (ts, vs)) in &set.fields {
                for (t, v) in ts.iter().zip(vs) {
                    by_time.entry(*t).or_default().push((f.as_str(), *v));
                }
            }
            rows.extend(by_time.keys().map(|t| (*t, si)));
            cells.push(by_time);
        }
        rows.sort();
        let columns: Vec<Column> = match &plan.columns {
            Some(c) => c.clone(),
            None => {
                let mut names: BTreeMap<String, IdentKind> = BTreeMap::new();
                for set in &sets {
                    for f in set.fields.keys() {
                        names.insert(f.clone(), IdentKind::Field);
                    }
                    for (k, _) in &set.tags {
                        if !grouped_keys.contains(k.as_str()) {
                            names.entry(k.clone()).or_insert(IdentKind::Tag);
                        }
                    }
                }
                names
                    .into_iter()
                    .map(|(n, kind)| Column { name: n.clone(), expr: PExpr::Ref { name: n, kind } })
                    .collect()
            }
        };
        let times: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let cell = |e: &PExpr, i: usize| -> V {
            let PExpr::Ref { name, kind } = e else { return V::Null };
            let (t, si) = rows[i];
            if *kind != IdentKind::Field {
                if let Some((_, v)) = sets[si].tags.iter().find(|(k, _)| k == name) {
                    return V::S(v.clone());
                }
                if *kind == IdentKind::Tag {
                    return V::Null;
                }
            }
            cells[si]
                .get(&t)
                .and_then(|fs| fs.iter().find(|(f, _)| f == name))
                .map(|(_, v)| V::F(*v))
                .unwrap_or(V::Null)
        };
        let cols: Vec<Vec<V>> = columns.iter().map(|c| eval(&c.expr, &times, &cell)).collect();
        // A row is kept when some column that is not a plain tag has a value.
        let is_tag_col: Vec<bool> = columns
            .iter()
            .map(|c| match &c.expr {
                PExpr::Ref { name, kind } => {
                    *kind == IdentKind::Tag
                        || (*kind == IdentKind::Any && sets.iter().any(|s| s.tags.iter().any(|(k, _)| k == name)))
                }
                _ => false,
            })
            .collect();
        let mut values = Vec::new();
        for i in 0..rows.len() {
            let has = cols.iter().zip(&is_tag_col).any(|(c, tag)| !*tag && c[i] != V::Null);
            if !has {
                continue;
            }
            let mut r = vec![Value::Time(times[i])];
            r.extend(cols.iter().map(|c| to_value(c[i].clone(), false)));
            values.push(r);
        }
        if values.is_empty() {
            continue;
        }
        let mut names = vec!["time".to_string()];
        names.extend(columns.iter().map(|c| c.name.clone()));
        out.push(Series { name: measurement, tags: group_tags, columns: names, values });
    }
    Ok(shape(out, &plan.shape))
}

// ---------------------------------------------------------------------------------------------- SHOW

fn finish_meta(plan: &MetaPlan, answers: Vec<ShardAnswer>) -> Result<Vec<Series>, QueryError> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pairs: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for a in answers {
        match a {
            ShardAnswer::Meta(MetaAnswer::Names(m)) => {
                for (k, v) in m {
                    names.entry(k).or_default().extend(v);
                }
            }
            ShardAnswer::Meta(MetaAnswer::Pairs(m)) => {
                for (k, v) in m {
                    pairs.entry(k).or_default().extend(v);
                }
            }
            ShardAnswer::Meta(MetaAnswer::Counts(m)) => {
                for (k, v) in m {
                    *counts.entry(k).or_default() += v;
                }
            }
            _ => return Err(wrong_answer()),
        }
    }
    let page = |rows: Vec<Vec<Value>>| -> Vec<Vec<Value>> {
        rows.into_iter()
            .skip(plan.offset.unwrap_or(0) as usize)
            .take(plan.limit.map(|l| l as usize).unwrap_or(usize::MAX))
            .collect()
    };
    let one = |name: &str, cols: &[&str], rows: Vec<Vec<Value>>| Series {
        name: name.into(),
        tags: vec![],
        columns: cols.iter().map(|c| c.to_string()).collect(),
        values: rows,
    };
    let s = |x: &str| Value::Str(x.to_string());
    let mut out: Vec<Series> = match plan.kind {
        MetaKind::Measurements => {
            let all: BTreeSet<String> = names.into_values().flatten().collect();
            vec![one("measurements", &["name"], page(all.iter().map(|m| vec![s(m)]).collect()))]
        }
        MetaKind::TagKeys => names
            .into_iter()
            .map(|(m, ks)| one(&m, &["tagKey"], page(ks.iter().map(|k| vec![s(k)]).collect())))
            .collect(),
        MetaKind::FieldKeys => names
            .into_iter()
            .map(|(m, ks)| one(&m, &["fieldKey", "fieldType"], ks.iter().map(|k| vec![s(k), s("float")]).collect()))
            .collect(),
        MetaKind::Series => {
            let all: BTreeSet<String> = names.into_values().flatten().collect();
            vec![one("", &["key"], page(all.iter().map(|k| vec![s(k)]).collect()))]
        }
        MetaKind::TagValues => pairs
            .into_iter()
            .map(|(m, kv)| one(&m, &["key", "value"], page(kv.iter().map(|(k, v)| vec![s(k), s(v)]).collect())))
            .collect(),
        MetaKind::SeriesCardinality => {
            counts.into_iter().map(|(m, n)| one(&m, &["count"], vec![vec![Value::Int(n as i64)]])).collect()
        }
    };
    out.retain(|x| !x.values.is_empty());
    Ok(out)
}
