//! The part of a query that runs next to the data: one [`ShardQuery`] per shard, answered from that shard's
//! [`ShardEngine`] with partial aggregates per (measurement, group, field, bucket), raw series, or metadata.
//! Everything here is serializable: the coordinator sends a `ShardQuery` to a shard's leader and merges the
//! [`ShardAnswer`]s (see [`crate::exec`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pharos_storage::aggregate::{bucket_start, Partial};
use pharos_storage::index::FIELD_KEY;
use pharos_storage::{Filter, GroupBy, Matcher, ShardEngine, TierChoice};
use regex::Regex;
use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

use crate::error::QueryError;

/// A regular expression as it travels between nodes (compiled again on arrival).
pub type RegexSrc = String;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NameSpec {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    Re(RegexSrc),
    NotRe(RegexSrc),
    Any,
}

/// A tag filter tree (the serializable twin of [`pharos_storage::Filter`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FilterSpec {
    All,
    /// No series (a condition that can never hold, e.g. `host = 'a' AND host = 'b'` is not detected, but
    /// `false` is).
    Nothing,
    Eq(String, String),
    Ne(String, String),
    Re(String, RegexSrc),
    NotRe(String, RegexSrc),
    And(Vec<FilterSpec>),
    Or(Vec<FilterSpec>),
}

/// Which series: measurements, then a tag filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSel {
    /// Measurements (any matching entry selects it); empty means every measurement.
    pub measurements: Vec<NameSpec>,
    pub filter: FilterSpec,
}

/// Which fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldSel {
    Names(Vec<String>),
    Re(RegexSrc),
    All,
}

/// What a shard must compute per bucket beyond the [`Partial`] (count, sum, min, max, first, last).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// Count, mean and squared deviations (stddev), from raw samples.
    pub moments: bool,
    /// Every raw sample (median, percentile, top, bottom, mode).
    pub values: bool,
    /// Counter increase per series, reset-aware, summed over the series of the group (rate, increase).
    pub increase: bool,
    /// Time of the smallest sample ([`BucketAcc::min_ts`]), for a lone min() without GROUP BY time (it
    /// reports its sample's time). Only for such queries: one bucket spanning the range, none of the other
    /// needs.
    pub min_time: bool,
    /// Time of the largest sample ([`BucketAcc::max_ts`]), as `min_time` for a lone max().
    pub max_time: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggQuery {
    pub sel: SeriesSel,
    pub fields: FieldSel,
    pub start: i64,
    pub end: i64,
    pub width: i64,
    pub offset: i64,
    pub group_by: GroupBy,
    pub needs: Needs,
    /// Read raw data only (tests compare with the default, which uses rollup tiers).
    pub raw_only: bool,
    pub limits: ShardLimits,
    /// Conditions on the field's values from WHERE, applied to each sample before any aggregate (the
    /// query reads raw samples then). Empty: none.
    #[serde(default)]
    pub values: Vec<ValueCond>,
}

/// A condition on a field's values from WHERE (`"value" > 5`, as Grafana's query builder writes it): which
/// samples count. InfluxQL filters points by their field values; here each series is one field, so a query
/// with such a condition reads that one field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueCond {
    pub op: CmpOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl ValueCond {
    pub fn holds(&self, v: f64) -> bool {
        match self.op {
            CmpOp::Eq => v == self.value,
            CmpOp::Ne => v != self.value,
            CmpOp::Lt => v < self.value,
            CmpOp::Le => v <= self.value,
            CmpOp::Gt => v > self.value,
            CmpOp::Ge => v >= self.value,
        }
    }
}

/// Keeps the samples every condition holds for.
fn filter_values(conds: &[ValueCond], ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
    if conds.is_empty() {
        return;
    }
    let mut w = 0;
    for r in 0..ts.len() {
        if conds.iter().all(|c| c.holds(vals[r])) {
            ts[w] = ts[r];
            vals[w] = vals[r];
            w += 1;
        }
    }
    ts.truncate(w);
    vals.truncate(w);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawQuery {
    pub sel: SeriesSel,
    pub fields: FieldSel,
    pub start: i64,
    pub end: i64,
    pub limits: ShardLimits,
    /// See [`AggQuery::values`].
    #[serde(default)]
    pub values: Vec<ValueCond>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLimits {
    /// Series one query may touch (on this shard; the coordinator also checks the sum).
    pub max_series: u64,
    /// Samples or rollup buckets one query may read.
    pub max_points: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaQuery {
    Measurements {
        name: NameSpec,
        filter: FilterSpec,
    },
    TagKeys {
        sel: SeriesSel,
    },
    TagValues {
        sel: SeriesSel,
        key: NameSpec,
    },
    FieldKeys {
        sel: SeriesSel,
    },
    /// Distinct (measurement, tag set) pairs; each lives on exactly one shard, so the counts add up.
    SeriesCardinality {
        sel: SeriesSel,
    },
    /// Series keys `measurement,tag=value,...` (SHOW SERIES).
    Series {
        sel: SeriesSel,
    },
    /// Oldest and newest sample time of the selected series, and how many there are (to cut a raw query
    /// into windows that each hold a bounded number of points).
    Extent {
        sel: SeriesSel,
        fields: FieldSel,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardQuery {
    Aggregate(AggQuery),
    Raw(RawQuery),
    Meta(MetaQuery),
}

/// What one bucket of one group holds after a shard's part; merged across shards by [`BucketAcc::merge`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketAcc {
    pub ts: i64,
    pub p: Partial,
    pub moments: Option<Moments>,
    /// (timestamp, value) of every raw sample, when [`Needs::values`].
    pub values: Vec<(i64, f64)>,
    /// Sum over the group's series of each series' counter increase in this bucket.
    pub increase: f64,
    /// Time of the sample holding `p.min` (`p.max`), when [`Needs::min_time`] ([`Needs::max_time`]); ties go
    /// to the earliest such sample, as in InfluxQL.
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
}

/// Whether `v` is the extreme `target` (NaN is the extreme only where every value is NaN).
fn same(v: f64, target: f64) -> bool {
    v == target || (v.is_nan() && target.is_nan())
}

/// The time of the merged extreme `merged` of two sides: the side holding it, the earlier on a tie.
fn extreme_ts(a: f64, at: Option<i64>, b: f64, bt: Option<i64>, merged: f64) -> Option<i64> {
    let at = at.filter(|_| same(a, merged));
    let bt = bt.filter(|_| same(b, merged));
    match (at, bt) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl BucketAcc {
    fn new(ts: i64, p: Partial) -> BucketAcc {
        BucketAcc { ts, p, moments: None, values: Vec::new(), increase: 0.0, min_ts: None, max_ts: None }
    }

    pub fn merge(&mut self, o: &BucketAcc) {
        let (min, max) = (self.p.min.min(o.p.min), self.p.max.max(o.p.max));
        self.min_ts = extreme_ts(self.p.min, self.min_ts, o.p.min, o.min_ts, min);
        self.max_ts = extreme_ts(self.p.max, self.max_ts, o.p.max, o.max_ts, max);
        self.p.merge(&o.p);
        self.moments = match (self.moments, o.moments) {
            (Some(a), Some(b)) => Some(a.merge(&b)),
            (a, b) => a.or(b),
        };
        self.values.extend_from_slice(&o.values);
        self.increase += o.increase;
    }
}

/// Count, mean and sum of squared deviations; merged exactly (Chan et al.), so stddev over shards equals
/// stddev over one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    pub fn add(&mut self, v: f64) {
        self.n += 1;
        let d = v - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (v - self.mean);
    }

    pub fn merge(&self, o: &Moments) -> Moments {
        if self.n == 0 {
            return *o;
        }
        if o.n == 0 {
            return *self;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + d * o.n as f64 / n as f64,
            m2: self.m2 + o.m2 + d * d * self.n as f64 * o.n as f64 / n as f64,
        }
    }

    /// Sample standard deviation (n - 1), as InfluxQL's `stddev`; None below two samples.
    pub fn stddev(&self) -> Option<f64> {
        (self.n >= 2).then(|| (self.m2 / (self.n - 1) as f64).sqrt())
    }
}

/// One (measurement, group, field) with its buckets in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggGroup {
    pub measurement: String,
    /// Group-by tags in order (a missing tag has value "").
    pub tags: Vec<(String, String)>,
    pub field: String,
    pub buckets: Vec<BucketAcc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawSeries {
    pub measurement: String,
    /// Every tag of the series, sorted by key.
    pub tags: Vec<(String, String)>,
    pub field: String,
    pub ts: Vec<i64>,
    pub vals: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaAnswer {
    /// Per measurement, sorted names (tag keys, field keys, measurements: one entry with key "").
    Names(BTreeMap<String, BTreeSet<String>>),
    /// Per measurement, (tag key, tag value) pairs.
    Pairs(BTreeMap<String, BTreeSet<(String, String)>>),
    /// Per measurement, a count.
    Counts(BTreeMap<String, u64>),
    /// (oldest, newest) sample time and series count; None when no series has a sample.
    Extent(Option<(i64, i64)>, u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardAnswer {
    Aggregate { groups: Vec<AggGroup>, series: u64, points: u64 },
    Raw { series: Vec<RawSeries>, points: u64 },
    Meta(MetaAnswer),
}

fn compile(re: &str) -> Result<Regex, QueryError> {
    Regex::new(re).map_err(|e| QueryError::invalid_nopos(format!("invalid regular expression /{re}/: {e}")))
}

/// A compiled [`NameSpec`].
pub type NamePredicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

impl NameSpec {
    pub fn compile(&self) -> Result<NamePredicate, QueryError> {
        Ok(match self.clone() {
            NameSpec::Any => Box::new(|_| true),
            NameSpec::Eq(x) => Box::new(move |s| s == x),
            NameSpec::Ne(x) => Box::new(move |s| s != x),
            NameSpec::In(xs) => Box::new(move |s| xs.iter().any(|x| x == s)),
            NameSpec::Re(r) => {
                let r = compile(&r)?;
                Box::new(move |s| r.is_match(s))
            }
            NameSpec::NotRe(r) => {
                let r = compile(&r)?;
                Box::new(move |s| !r.is_match(s))
            }
        })
    }
}

impl FilterSpec {
    pub fn to_filter(&self) -> Result<Option<Filter>, QueryError> {
        Ok(Some(match self {
            FilterSpec::All => Filter::All,
            FilterSpec::Nothing => return Ok(None),
            FilterSpec::Eq(k, v) => Filter::Match(Matcher::Eq(k.clone(), v.clone())),
            FilterSpec::Ne(k, v) => Filter::Match(Matcher::Ne(k.clone(), v.clone())),
            FilterSpec::Re(k, r) => Filter::Match(Matcher::Re(k.clone(), compile(r)?)),
            FilterSpec::NotRe(k, r) => Filter::Match(Matcher::NotRe(k.clone(), compile(r)?)),
            FilterSpec::And(xs) => {
                let mut v = Vec::new();
                for x in xs {
                    match x.to_filter()? {
                        Some(f) => v.push(f),
                        None => return Ok(None),
                    }
                }
                Filter::And(v)
            }
            FilterSpec::Or(xs) => {
                let v: Vec<Filter> =
                    xs.iter().map(|x| x.to_filter()).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
                if v.is_empty() {
                    return Ok(None);
                }
                Filter::Or(v)
            }
        }))
    }
}

/// Series ids of the selection restricted to some fields.
fn select(e: &ShardEngine, sel: &SeriesSel, fields: &FieldSel) -> Result<RoaringTreemap, QueryError> {
    let Some(filter) = sel.filter.to_filter()? else { return Ok(RoaringTreemap::new()) };
    let ms: Vec<_> = sel.measurements.iter().map(|m| m.compile()).collect::<Result<_, _>>()?;
    let mfn = |m: &str| ms.is_empty() || ms.iter().any(|f| f(m));
    let field_filter = match fields {
        FieldSel::All => None,
        FieldSel::Names(ns) => {
            Some(Filter::Or(ns.iter().map(|n| Filter::Match(Matcher::Eq(FIELD_KEY.into(), n.clone()))).collect()))
        }
        FieldSel::Re(r) => Some(Filter::Match(Matcher::Re(FIELD_KEY.into(), compile(r)?))),
    };
    let filter = match field_filter {
        Some(ff) => Filter::And(vec![ff, filter]),
        None => filter,
    };
    Ok(e.select(&mfn, &filter))
}

fn group_tags(info: &pharos_storage::series::SeriesInfo, by: &GroupBy) -> Vec<(String, String)> {
    match by {
        GroupBy::None => Vec::new(),
        GroupBy::All => info.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        GroupBy::Tags(keys) => keys.iter().map(|k| (k.clone(), info.tag(k).unwrap_or("").to_string())).collect(),
    }
}

/// A cheap upper estimate of the samples a query will read on this shard (series selected times the range
/// at one sample per 10 s), so a caller can run small queries inline instead of handing them to a thread.
/// None for metadata queries (their cost is the index size).
pub fn estimate_points(e: &ShardEngine, q: &ShardQuery) -> Option<u64> {
    let (sel, fields, start, end) = match q {
        ShardQuery::Aggregate(a) => (&a.sel, &a.fields, a.start, a.end),
        ShardQuery::Raw(r) => (&r.sel, &r.fields, r.start, r.end),
        ShardQuery::Meta(_) => return None,
    };
    let ids = select(e, sel, fields).ok()?;
    let mut total = 0u64;
    for sid in ids.iter() {
        let Some((a, z)) = e.series_time_range(sid) else { continue };
        let span = end.min(z.saturating_add(1)).saturating_sub(start.max(a)).max(0) as u64;
        total = total.saturating_add(span / 10_000 + 1);
    }
    Some(total)
}

/// Answers one shard query from a shard's engine (call it off the async runtime: it reads RocksDB).
pub fn run(e: &ShardEngine, q: &ShardQuery) -> Result<ShardAnswer, QueryError> {
    match q {
        ShardQuery::Aggregate(a) => aggregate(e, a),
        ShardQuery::Raw(r) => raw(e, r),
        ShardQuery::Meta(m) => meta(e, m),
    }
}

fn storage_err(err: pharos_storage::StorageError) -> QueryError {
    QueryError::Internal(format!("storage: {err}"))
}

fn check_series(n: u64, limits: &ShardLimits) -> Result<(), QueryError> {
    if n > limits.max_series {
        return Err(QueryError::Limit(format!(
            "the query selects more than {} series (query.max_series); narrow the tag filter",
            limits.max_series
        )));
    }
    Ok(())
}

fn check_points(n: u64, limits: &ShardLimits) -> Result<(), QueryError> {
    if n > limits.max_points {
        return Err(QueryError::Limit(format!(
            "the query reads more than {} points (query.max_points); narrow the time range or the tag filter, \
             or group by a wider time interval",
            limits.max_points
        )));
    }
    Ok(())
}

fn aggregate(e: &ShardEngine, q: &AggQuery) -> Result<ShardAnswer, QueryError> {
    let ids = select(e, &q.sel, &q.fields)?;
    check_series(ids.len(), &q.limits)?;
    let choice = if q.raw_only { TierChoice::RawOnly } else { TierChoice::Auto };
    // Rollups hold no samples to filter: a condition on values reads raw ones.
    let raw_needed = q.needs.moments || q.needs.values || !q.values.is_empty();
    // (measurement, group tags, field) -> buckets
    type Key = (String, Vec<(String, String)>, String);
    let mut groups: HashMap<Key, Vec<BucketAcc>> = HashMap::new();
    let mut buf = Vec::new();
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    let mut points = 0u64;
    for sid in ids.iter() {
        let Some(info) = e.index().info(sid) else { continue };
        let mut accs: Vec<BucketAcc> = Vec::new();
        if raw_needed || q.needs.increase {
            // Raw samples: exact moments, values and counter increases. Increases need the sample before
            // the first bucket, so the read starts a little earlier.
            let lookback = if q.needs.increase { q.width.clamp(1, 10 * 60_000) } else { 0 };
            ts.clear();
            vals.clear();
            e.read_raw(sid, q.start.saturating_sub(lookback), q.end, &mut ts, &mut vals).map_err(storage_err)?;
            points += ts.len() as u64;
            check_points(points, &q.limits)?;
            filter_values(&q.values, &mut ts, &mut vals);
            let first_in = ts.partition_point(|t| *t < q.start);
            for i in first_in..ts.len() {
                let (t, v) = (ts[i], vals[i]);
                let b = bucket_start(t, q.width, q.offset);
                let acc = match accs.last_mut() {
                    Some(a) if a.ts == b => {
                        // The time of an extreme (ties: the earliest sample), for a lone min() or max() read
                        // raw (a query with a condition on values).
                        if q.needs.min_time && v < a.p.min {
                            a.min_ts = Some(t);
                        }
                        if q.needs.max_time && v > a.p.max {
                            a.max_ts = Some(t);
                        }
                        a.p.add(t, v);
                        a
                    }
                    _ => {
                        accs.push(BucketAcc::new(b, Partial::of(t, v)));
                        let a = accs.last_mut().expect("just pushed");
                        if q.needs.moments {
                            a.moments = Some(Moments::default());
                        }
                        a.min_ts = q.needs.min_time.then_some(t);
                        a.max_ts = q.needs.max_time.then_some(t);
                        a
                    }
                };
                if let Some(m) = acc.moments.as_mut() {
                    m.add(v);
                }
                if q.needs.values {
                    acc.values.push((t, v));
                }
                if q.needs.increase && i > 0 {
                    let prev = vals[i - 1];
                    // A drop is a counter reset: the counter restarted from zero and counted `v` since.
                    acc.increase += if v >= prev { v - prev } else { v };
                }
            }
            if ts.is_empty() && q.needs.increase && !raw_needed {
                // No raw data left (older than raw retention): increases from the rollup tiers' last values.
                e.series_buckets(sid, q.start, q.end, q.width, q.offset, choice, &mut buf).map_err(storage_err)?;
                points += buf.len() as u64;
                check_points(points, &q.limits)?;
                let mut prev: Option<f64> = None;
                for (b, p) in &buf {
                    let mut a = BucketAcc::new(*b, *p);
                    a.increase = match prev {
                        Some(pl) if p.last >= pl => p.last - pl,
                        Some(_) => p.last,
                        None => (p.last - p.first).max(0.0),
                    };
                    prev = Some(p.last);
                    accs.push(a);
                }
            }
        } else if (q.needs.min_time || q.needs.max_time) && q.end.saturating_sub(q.start) <= q.width {
            accs.extend(with_extreme_times(e, sid, q, choice, &mut points)?);
        } else {
            e.series_buckets(sid, q.start, q.end, q.width, q.offset, choice, &mut buf).map_err(storage_err)?;
            points += buf.len() as u64;
            check_points(points, &q.limits)?;
            accs.extend(buf.iter().map(|(b, p)| BucketAcc::new(*b, *p)));
        }
        if accs.is_empty() {
            continue;
        }
        let key = (info.measurement.to_string(), group_tags(info, &q.group_by), info.field.to_string());
        match groups.get_mut(&key) {
            Some(acc) => *acc = merge_buckets(std::mem::take(acc), accs),
            None => {
                groups.insert(key, accs);
            }
        }
    }
    let mut out: Vec<AggGroup> = groups
        .into_iter()
        .map(|((measurement, tags, field), buckets)| AggGroup { measurement, tags, field, buckets })
        .collect();
    out.sort_by(|a, b| (&a.measurement, &a.tags, &a.field).cmp(&(&b.measurement, &b.tags, &b.field)));
    Ok(ShardAnswer::Aggregate { groups: out, series: ids.len(), points })
}

const HOUR: i64 = pharos_storage::retention::HOUR;
const MINUTE: i64 = pharos_storage::retention::MINUTE;

/// One series' single bucket over [start, end) (a query without GROUP BY time) with the time of its
/// smallest or largest sample, or both, as the query needs. The range is read in 1-hour buckets (from rollup tiers where they exist, as
/// a read of the whole range would), which merge into the bucket's partial; then each extreme is looked for
/// sample by sample in the earliest hour that holds it (ties go to the earliest sample): one hour of raw
/// data at most. Where raw data of that hour has expired, the 1-minute rollups narrow it down to a minute:
/// the time of that minute's first or last sample when either is the extreme, else the minute's start (the
/// hour's, where only the 1-hour tier is left).
fn with_extreme_times(
    e: &ShardEngine,
    sid: u64,
    q: &AggQuery,
    choice: TierChoice,
    points: &mut u64,
) -> Result<Option<BucketAcc>, QueryError> {
    // The whole range still in raw data (an alert's or a dashboard's last minutes): one raw read gives the
    // partial and the times, the same read the query makes without them.
    if q.start >= e.raw_floor(sid) {
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        e.read_raw(sid, q.start, q.end, &mut ts, &mut vals).map_err(storage_err)?;
        *points += ts.len() as u64;
        check_points(*points, &q.limits)?;
        let Some((&t0, &v0)) = ts.first().zip(vals.first()) else { return Ok(None) };
        let mut p = Partial::of(t0, v0);
        for (t, v) in ts.iter().zip(&vals).skip(1) {
            p.add(*t, *v);
        }
        // The earliest sample holding the extreme.
        let at = |target: f64| vals.iter().position(|v| same(*v, target)).map(|i| ts[i]);
        let mut acc = BucketAcc::new(bucket_start(q.start, q.width, q.offset), p);
        acc.min_ts = if q.needs.min_time { at(p.min) } else { None };
        acc.max_ts = if q.needs.max_time { at(p.max) } else { None };
        return Ok(Some(acc));
    }
    let mut hours = Vec::new();
    e.series_buckets(sid, q.start, q.end, HOUR, 0, choice, &mut hours).map_err(storage_err)?;
    *points += hours.len() as u64;
    check_points(*points, &q.limits)?;
    let Some((_, first)) = hours.first() else { return Ok(None) };
    let mut p = *first;
    for (_, h) in &hours[1..] {
        p.merge(h);
    }
    let mut locate = |target: f64, pick: fn(&Partial) -> f64| -> Result<Option<i64>, QueryError> {
        let Some(&(h, hp)) = hours.iter().find(|(_, p)| same(pick(p), target)) else { return Ok(None) };
        let (a, z) = (h.max(q.start), h.saturating_add(HOUR).min(q.end));
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        e.read_raw(sid, a, z, &mut ts, &mut vals).map_err(storage_err)?;
        *points += ts.len() as u64;
        check_points(*points, &q.limits)?;
        if let Some(i) = vals.iter().position(|v| same(*v, target)) {
            return Ok(Some(ts[i]));
        }
        let mut minutes = Vec::new();
        e.series_buckets(sid, a, z, MINUTE, 0, choice, &mut minutes).map_err(storage_err)?;
        *points += minutes.len() as u64;
        check_points(*points, &q.limits)?;
        let (b, p) = minutes.iter().find(|(_, p)| same(pick(p), target)).copied().unwrap_or((h, hp));
        Ok(Some(if same(p.first, target) {
            p.first_ts
        } else if same(p.last, target) {
            p.last_ts
        } else {
            b.max(q.start)
        }))
    };
    let min_ts = if q.needs.min_time { locate(p.min, |p| p.min)? } else { None };
    let max_ts = if q.needs.max_time { locate(p.max, |p| p.max)? } else { None };
    let mut acc = BucketAcc::new(bucket_start(q.start, q.width, q.offset), p);
    (acc.min_ts, acc.max_ts) = (min_ts, max_ts);
    Ok(Some(acc))
}

/// Merges two bucket lists ordered by time into one.
pub fn merge_buckets(a: Vec<BucketAcc>, b: Vec<BucketAcc>) -> Vec<BucketAcc> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        match (ia.peek(), ib.peek()) {
            (Some(x), Some(y)) if x.ts == y.ts => {
                let mut x = ia.next().expect("peeked");
                x.merge(&ib.next().expect("peeked"));
                out.push(x);
            }
            (Some(x), Some(y)) if x.ts < y.ts => out.push(ia.next().expect("peeked")),
            (Some(_), Some(_)) => out.push(ib.next().expect("peeked")),
            (Some(_), None) => out.push(ia.next().expect("peeked")),
            (None, Some(_)) => out.push(ib.next().expect("peeked")),
            (None, None) => return out,
        }
    }
}

fn raw(e: &ShardEngine, q: &RawQuery) -> Result<ShardAnswer, QueryError> {
    let ids = select(e, &q.sel, &q.fields)?;
    check_series(ids.len(), &q.limits)?;
    let mut out = Vec::new();
    let mut points = 0u64;
    for sid in ids.iter() {
        let Some(info) = e.index().info(sid) else { continue };
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        e.read_raw(sid, q.start, q.end, &mut ts, &mut vals).map_err(storage_err)?;
        points += ts.len() as u64;
        check_points(points, &q.limits)?;
        filter_values(&q.values, &mut ts, &mut vals);
        if ts.is_empty() {
            continue;
        }
        out.push(RawSeries {
            measurement: info.measurement.to_string(),
            tags: info.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            field: info.field.to_string(),
            ts,
            vals,
        });
    }
    Ok(ShardAnswer::Raw { series: out, points })
}

fn meta(e: &ShardEngine, q: &MetaQuery) -> Result<ShardAnswer, QueryError> {
    let infos = |sel: &SeriesSel| -> Result<Vec<std::sync::Arc<pharos_storage::series::SeriesInfo>>, QueryError> {
        let ids = select(e, sel, &FieldSel::All)?;
        Ok(ids.iter().filter_map(|sid| e.index().info(sid).cloned()).collect())
    };
    Ok(ShardAnswer::Meta(match q {
        MetaQuery::Measurements { name, filter } => {
            let f = name.compile()?;
            let sel = SeriesSel { measurements: vec![], filter: filter.clone() };
            let mut names = BTreeSet::new();
            if matches!(filter, FilterSpec::All) {
                names.extend(e.index().measurements().filter(|m| f(m)).map(str::to_string));
            } else {
                names.extend(infos(&sel)?.iter().filter(|i| f(&i.measurement)).map(|i| i.measurement.to_string()));
            }
            MetaAnswer::Names(BTreeMap::from([(String::new(), names)]))
        }
        MetaQuery::TagKeys { sel } => {
            let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for i in infos(sel)? {
                out.entry(i.measurement.to_string()).or_default().extend(i.tags.iter().map(|(k, _)| k.to_string()));
            }
            MetaAnswer::Names(out)
        }
        MetaQuery::TagValues { sel, key } => {
            let f = key.compile()?;
            let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
            for i in infos(sel)? {
                let set = out.entry(i.measurement.to_string()).or_default();
                for (k, v) in i.tags.iter() {
                    if f(k) {
                        set.insert((k.to_string(), v.to_string()));
                    }
                }
            }
            out.retain(|_, s| !s.is_empty());
            MetaAnswer::Pairs(out)
        }
        MetaQuery::FieldKeys { sel } => {
            let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for i in infos(sel)? {
                out.entry(i.measurement.to_string()).or_default().insert(i.field.to_string());
            }
            MetaAnswer::Names(out)
        }
        MetaQuery::SeriesCardinality { sel } => {
            type TagSet = std::sync::Arc<[(std::sync::Arc<str>, std::sync::Arc<str>)]>;
            let mut sets: BTreeMap<String, BTreeSet<TagSet>> = BTreeMap::new();
            for i in infos(sel)? {
                sets.entry(i.measurement.to_string()).or_default().insert(i.tags.clone());
            }
            MetaAnswer::Counts(sets.into_iter().map(|(m, s)| (m, s.len() as u64)).collect())
        }
        MetaQuery::Extent { sel, fields } => {
            let ids = select(e, sel, fields)?;
            let range = ids
                .iter()
                .filter_map(|sid| e.series_time_range(sid))
                .fold(None, |acc: Option<(i64, i64)>, (a, b)| Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b)))));
            MetaAnswer::Extent(range, ids.len())
        }
        MetaQuery::Series { sel } => {
            let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for i in infos(sel)? {
                let mut key = i.measurement.to_string();
                for (k, v) in i.tags.iter() {
                    key.push(',');
                    key.push_str(k);
                    key.push('=');
                    key.push_str(v);
                }
                out.entry(i.measurement.to_string()).or_default().insert(key);
            }
            MetaAnswer::Names(out)
        }
    }))
}
