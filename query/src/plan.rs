//! From a parsed statement to a [`Plan`]: the [`ShardQuery`] every shard runs, and what the coordinator does
//! with the answers (see [`crate::exec`]). Semantic checks live here and point at the query text.
//!
//! Time bounds come out of the WHERE clause's top-level AND terms on `time`; everything else in WHERE must
//! be a condition on tags. A SELECT is either an *aggregate* query (every field reference sits inside an
//! aggregate such as `mean(x)`, possibly under arithmetic and window functions like `derivative(mean(x))`)
//! or a *raw* query (fields and tags as stored, possibly under arithmetic and window functions).

use chrono::DateTime;
use pharos_storage::GroupBy as StorageGroupBy;

use crate::ast::{self, BinOp, Expr, Fill, IdentKind, NameMatch, Source, Statement, TagGroup};
use crate::error::QueryError;
use crate::shard::{
    AggQuery, CmpOp, FieldSel, FilterSpec, MetaQuery, NameSpec, Needs, RawQuery, SeriesSel, ShardLimits, ShardQuery,
    ValueCond,
};

/// Limits applied to every query (configured under `[query]`, see pharos.example.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_series: u64,
    pub max_points: u64,
    /// Buckets per group one GROUP BY time query may produce.
    pub max_buckets: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_series: 1_000_000, max_points: 100_000_000, max_buckets: 100_000 }
    }
}

/// An aggregate over one field, computed per group and bucket from merged shard answers.
#[derive(Debug, Clone, PartialEq)]
pub enum AggFn {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    First,
    Last,
    Spread,
    Stddev,
    Median,
    /// Nearest-rank percentile, 0..=100.
    Percentile(f64),
    /// Counter increase per `unit` ms (default one second), reset-aware, summed over the group's series.
    Rate(i64),
    /// Counter increase over the bucket, reset-aware, summed over the group's series.
    Increase,
    Top(usize),
    Bottom(usize),
}

impl AggFn {
    /// Selectors pick one sample (whose time a lone selector reports without GROUP BY time); the other
    /// functions compute a value that belongs to no sample.
    pub fn is_selector(&self) -> bool {
        matches!(
            self,
            AggFn::Min
                | AggFn::Max
                | AggFn::First
                | AggFn::Last
                | AggFn::Percentile(_)
                | AggFn::Top(_)
                | AggFn::Bottom(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub func: AggFn,
    pub field: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Change per `unit` ms between consecutive values; `non_negative` drops negative results.
    Derivative {
        unit: i64,
        non_negative: bool,
    },
    Difference {
        non_negative: bool,
    },
    MovingAverage(usize),
    /// alpha = 2 / (n + 1), seeded with the first value, output from the n-th value on.
    ExponentialMovingAverage(usize),
    CumulativeSum,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Math {
    Abs,
    Ceil,
    Floor,
    Round,
    Sqrt,
    Ln,
    Log2,
    Log10,
    Exp,
}

/// A compiled projection (or HAVING) expression.
#[derive(Debug, Clone, PartialEq)]
pub enum PExpr {
    /// An aggregate leaf (aggregate queries) by index into [`AggPlan::leaves`].
    Leaf(usize),
    /// A field or tag by name (raw queries): a tag if the series has a tag of that name, else a field.
    Ref {
        name: String,
        kind: IdentKind,
    },
    Const(f64),
    Str(String),
    Bin(BinOp, Box<PExpr>, Box<PExpr>),
    Neg(Box<PExpr>),
    Math(Math, Box<PExpr>),
    Window(Window, Box<PExpr>),
}

impl PExpr {
    pub fn has_window(&self) -> bool {
        match self {
            PExpr::Window(..) => true,
            PExpr::Bin(_, a, b) => a.has_window() || b.has_window(),
            PExpr::Neg(a) | PExpr::Math(_, a) => a.has_window(),
            _ => false,
        }
    }

    /// Field names referenced (raw queries).
    fn refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            PExpr::Ref { name, kind } if *kind != IdentKind::Tag => out.push(name),
            PExpr::Bin(_, a, b) => {
                a.refs(out);
                b.refs(out);
            }
            PExpr::Neg(a) | PExpr::Math(_, a) | PExpr::Window(_, a) => a.refs(out),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub expr: PExpr,
}

/// How results are shaped after the merge: shared by aggregate and raw plans.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub fill: Fill,
    pub order_desc: bool,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub slimit: Option<u64>,
    pub soffset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggPlan {
    pub query: AggQuery,
    pub leaves: Vec<Leaf>,
    pub columns: Vec<Column>,
    pub having: Option<PExpr>,
    /// GROUP BY time was given (otherwise one bucket spanning the range, reported at `report_time`, or at
    /// the selected sample's time when `sample_time`).
    pub time_grouped: bool,
    pub report_time: i64,
    /// InfluxQL's rule for selectors: without GROUP BY time, a select list whose only aggregate (counting
    /// repeats of one call once) is a selector (`first`, `last`, `min`, `max`, `percentile`) reports the
    /// selected sample's time instead of `report_time`. With a wildcard the rule applies to result series
    /// with one field. `top`/`bottom` always report their samples' times.
    pub sample_time: bool,
    /// `mean(*)`-style projections: one column per field, named `<func>_<field>`.
    pub wildcard: Option<Vec<(String, AggFn)>>,
    pub shape: Shape,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawPlan {
    pub query: RawQuery,
    /// None for `SELECT *`: every field and every tag not grouped by, sorted by name.
    pub columns: Option<Vec<Column>>,
    pub group_by: StorageGroupBy,
    pub shape: Shape,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetaKind {
    Measurements,
    TagKeys,
    TagValues,
    FieldKeys,
    SeriesCardinality,
    Series,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetaPlan {
    pub query: MetaQuery,
    pub kind: MetaKind,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Aggregate(Box<AggPlan>),
    Raw(Box<RawPlan>),
    Meta(MetaPlan),
    Databases,
    RetentionPolicies,
}

impl Plan {
    /// What every shard runs (None: answered without the shards).
    pub fn shard_query(&self) -> Option<ShardQuery> {
        match self {
            Plan::Aggregate(a) => Some(ShardQuery::Aggregate(a.query.clone())),
            Plan::Raw(r) => Some(ShardQuery::Raw(r.query.clone())),
            Plan::Meta(m) => Some(ShardQuery::Meta(m.query.clone())),
            Plan::Databases | Plan::RetentionPolicies => None,
        }
    }
}

/// Options of one query run.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub now_ms: i64,
    pub limits: Limits,
    /// Raw data only (tests compare rollup answers with raw ones).
    pub raw_only: bool,
}

pub fn plan(stmt: &Statement, opts: &PlanOptions) -> Result<Plan, QueryError> {
    let limits = ShardLimits { max_series: opts.limits.max_series, max_points: opts.limits.max_points };
    Ok(match stmt {
        Statement::Select(s) => plan_select(s, opts)?,
        Statement::ShowMeasurements { with, condition, limit, offset } => {
            let filter = match condition {
                Some(c) => where_clause(c, opts.now_ms)?.1,
                None => FilterSpec::All,
            };
            let name = with.as_ref().map(name_spec).unwrap_or(NameSpec::Any);
            meta(MetaQuery::Measurements { name, filter }, MetaKind::Measurements, *limit, *offset)
        }
        Statement::ShowTagKeys { from, condition, limit, offset } => {
            let sel = sel_of(from, condition.as_ref(), opts.now_ms)?;
            meta(MetaQuery::TagKeys { sel }, MetaKind::TagKeys, *limit, *offset)
        }
        Statement::ShowTagValues { from, key, condition, limit, offset } => {
            let sel = sel_of(from, condition.as_ref(), opts.now_ms)?;
            meta(MetaQuery::TagValues { sel, key: name_spec(key) }, MetaKind::TagValues, *limit, *offset)
        }
        Statement::ShowFieldKeys { from } => {
            let sel = sel_of(from, None, opts.now_ms)?;
            meta(MetaQuery::FieldKeys { sel }, MetaKind::FieldKeys, None, None)
        }
        Statement::ShowSeriesCardinality { from, condition } => {
            let sel = sel_of(from, condition.as_ref(), opts.now_ms)?;
            meta(MetaQuery::SeriesCardinality { sel }, MetaKind::SeriesCardinality, None, None)
        }
        Statement::ShowSeries { from, condition, limit, offset } => {
            let sel = sel_of(from, condition.as_ref(), opts.now_ms)?;
            meta(MetaQuery::Series { sel }, MetaKind::Series, *limit, *offset)
        }
        Statement::ShowDatabases => Plan::Databases,
        Statement::ShowRetentionPolicies => Plan::RetentionPolicies,
    })
    .map(|p| match p {
        Plan::Aggregate(mut a) => {
            a.query.limits = limits;
            Plan::Aggregate(a)
        }
        Plan::Raw(mut r) => {
            r.query.limits = limits;
            Plan::Raw(r)
        }
        other => other,
    })
}

fn meta(query: MetaQuery, kind: MetaKind, limit: Option<u64>, offset: Option<u64>) -> Plan {
    Plan::Meta(MetaPlan { query, kind, limit, offset })
}

fn name_spec(m: &NameMatch) -> NameSpec {
    match m {
        NameMatch::Eq(x) => NameSpec::Eq(x.clone()),
        NameMatch::Ne(x) => NameSpec::Ne(x.clone()),
        NameMatch::In(xs) => NameSpec::In(xs.clone()),
        NameMatch::Re(r) => NameSpec::Re(r.as_str().to_string()),
        NameMatch::NotRe(r) => NameSpec::NotRe(r.as_str().to_string()),
    }
}

fn sources(from: &[Source]) -> Vec<NameSpec> {
    from.iter()
        .map(|s| match s {
            Source::Name(n) => NameSpec::Eq(n.clone()),
            Source::Regex(r) => NameSpec::Re(r.as_str().to_string()),
        })
        .collect()
}

fn sel_of(from: &[Source], cond: Option<&Expr>, now: i64) -> Result<SeriesSel, QueryError> {
    let filter = match cond {
        Some(c) => where_clause(c, now)?.1,
        None => FilterSpec::All,
    };
    Ok(SeriesSel { measurements: sources(from), filter })
}

/// Time bounds [start, end) in ms found in WHERE, or None where unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl TimeRange {
    fn lower(&mut self, t: i64) {
        self.start = Some(self.start.map_or(t, |s| s.max(t)));
    }
    fn upper(&mut self, t: i64) {
        self.end = Some(self.end.map_or(t, |e| e.min(t)));
    }
}

/// Splits WHERE into time bounds and a tag filter; refuses conditions on field values (which only a
/// SELECT takes: [`select_where`]).
pub fn where_clause(e: &Expr, now_ms: i64) -> Result<(TimeRange, FilterSpec), QueryError> {
    let (range, filter, values) = select_where(e, now_ms)?;
    if let Some(v) = values.first() {
        return Err(QueryError::invalid(
            v.pos,
            format!("a condition on field values (\"{}\") applies to SELECT only", v.field),
        ));
    }
    Ok((range, filter))
}

/// A condition on a field's values in WHERE, with the field it names.
#[derive(Debug, Clone)]
pub struct FieldCond {
    pub field: String,
    pub pos: usize,
    pub cond: ValueCond,
}

/// `field op number` (either way round) with a field or an untyped name: a condition on values.
fn value_term(e: &Expr) -> Option<FieldCond> {
    let Expr::Binary { op, lhs, rhs, .. } = e else { return None };
    let number = |e: &Expr| match e {
        Expr::Number { value, .. } => Some(*value),
        Expr::Integer { value, .. } => Some(*value as f64),
        _ => None,
    };
    let name = |e: &Expr| match e {
        Expr::Ident { name, kind: IdentKind::Any | IdentKind::Field, pos } if !name.eq_ignore_ascii_case("time") => {
            Some((name.clone(), *pos))
        }
        _ => None,
    };
    let ((field, pos), value, flipped) = match (name(lhs), number(rhs), name(rhs), number(lhs)) {
        (Some(f), Some(v), _, _) => (f, v, false),
        (_, _, Some(f), Some(v)) => (f, v, true),
        _ => return None,
    };
    let op = match (op, flipped) {
        (BinOp::Eq, _) => CmpOp::Eq,
        (BinOp::Ne, _) => CmpOp::Ne,
        (BinOp::Lt, false) | (BinOp::Gt, true) => CmpOp::Lt,
        (BinOp::Le, false) | (BinOp::Ge, true) => CmpOp::Le,
        (BinOp::Gt, false) | (BinOp::Lt, true) => CmpOp::Gt,
        (BinOp::Ge, false) | (BinOp::Le, true) => CmpOp::Ge,
        _ => return None,
    };
    Some(FieldCond { field, pos, cond: ValueCond { op, value } })
}

/// Splits a SELECT's WHERE into time bounds, a tag filter and conditions on field values (the terms ANDed
/// at the top that compare a name with a number).
pub fn select_where(e: &Expr, now_ms: i64) -> Result<(TimeRange, FilterSpec, Vec<FieldCond>), QueryError> {
    let mut range = TimeRange::default();
    let mut terms = Vec::new();
    split_and(e, &mut terms);
    let mut filters = Vec::new();
    let mut values = Vec::new();
    for t in terms {
        if let Some(v) = value_term(t) {
            values.push(v);
        } else if let Some((op, value, pos)) = time_term(t)? {
            let ns = time_value(value, now_ms)?;
            // Nanoseconds to the millisecond grid of storage: floor for "at or after", ceil for "before".
            let floor = ns.div_euclid(1_000_000) as i64;
            let ceil = (ns + 999_999).div_euclid(1_000_000) as i64;
            match op {
                BinOp::Gt => range.lower(floor + 1),
                BinOp::Ge => range.lower(ceil),
                BinOp::Lt => range.upper(ceil),
                BinOp::Le => range.upper(floor + 1),
                BinOp::Eq => {
                    range.lower(ceil);
                    range.upper(floor + 1);
                }
                _ => return Err(QueryError::invalid(pos, "time can be compared with =, <, <=, > or >= only")),
            }
        } else {
            filters.push(tag_filter(t)?);
        }
    }
    let filter = match filters.len() {
        0 => FilterSpec::All,
        1 => filters.pop().expect("one"),
        _ => FilterSpec::And(filters),
    };
    Ok((range, filter, values))
}

/// The conditions on values of a SELECT over `fields`: they must all name its one field (each series is one
/// field, so a condition on another field's values would need its samples joined by time).
fn value_conds(conds: Vec<FieldCond>, fields: &FieldSel) -> Result<Vec<ValueCond>, QueryError> {
    let Some(first) = conds.first() else { return Ok(Vec::new()) };
    match fields {
        FieldSel::Names(names) if names.len() == 1 => {
            if let Some(c) = conds.iter().find(|c| c.field != names[0]) {
                return Err(QueryError::invalid(
                    c.pos,
                    format!(
                        "a condition on \"{}\" values needs a query over that field alone (this one reads \"{}\"): \
                         select {} or filter aggregates with HAVING",
                        c.field, names[0], c.field
                    ),
                ));
            }
            Ok(conds.into_iter().map(|c| c.cond).collect())
        }
        _ => Err(QueryError::invalid(
            first.pos,
            format!(
                "a condition on \"{}\" values needs a query over that one field (select only {} by name), or \
                 filter aggregates with HAVING",
                first.field, first.field
            ),
        )),
    }
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Binary { op: BinOp::And, lhs, rhs, .. } => {
            split_and(lhs, out);
            split_and(rhs, out);
        }
        other => out.push(other),
    }
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Ident { name, .. } if name.eq_ignore_ascii_case("time"))
}

fn mentions_time(e: &Expr) -> Option<usize> {
    match e {
        Expr::Ident { pos, .. } if is_time(e) => Some(*pos),
        Expr::Binary { lhs, rhs, .. } => mentions_time(lhs).or_else(|| mentions_time(rhs)),
        _ => None,
    }
}

/// `time <op> value` or `value <op> time`, normalized to the former.
fn time_term(e: &Expr) -> Result<Option<(BinOp, &Expr, usize)>, QueryError> {
    let Expr::Binary { op, lhs, rhs, pos } = e else { return Ok(None) };
    let flip = |op: BinOp| match op {
        BinOp::Lt => BinOp::Gt,
        BinOp::Le => BinOp::Ge,
        BinOp::Gt => BinOp::Lt,
        BinOp::Ge => BinOp::Le,
        o => o,
    };
    if is_time(lhs) {
        return Ok(Some((*op, rhs, *pos)));
    }
    if is_time(rhs) {
        return Ok(Some((flip(*op), lhs, *pos)));
    }
    if matches!(op, BinOp::Or) {
        if let Some(p) = mentions_time(e) {
            return Err(QueryError::invalid(p, "time conditions cannot be combined with OR; use AND"));
        }
    }
    Ok(None)
}

/// Evaluates a time expression to nanoseconds since the epoch.
fn time_value(e: &Expr, now_ms: i64) -> Result<i128, QueryError> {
    Ok(match e {
        Expr::Now { .. } => now_ms as i128 * 1_000_000,
        Expr::Integer { value, .. } => *value as i128,
        Expr::Number { value, .. } => *value as i128,
        Expr::Duration { nanos, .. } => *nanos,
        Expr::Str { value, pos } => parse_time(value).ok_or_else(|| {
            QueryError::invalid(
                *pos,
                format!("cannot parse {value:?} as a time; use RFC 3339 like '2024-01-31T12:00:00Z'"),
            )
        })?,
        Expr::Binary { op: BinOp::Add, lhs, rhs, .. } => time_value(lhs, now_ms)? + time_value(rhs, now_ms)?,
        Expr::Binary { op: BinOp::Sub, lhs, rhs, .. } => time_value(lhs, now_ms)? - time_value(rhs, now_ms)?,
        other => return Err(QueryError::invalid(
            other.pos(),
            "expected a time: now(), an RFC 3339 string, an epoch with a unit (1700000000s), or arithmetic on those",
        )),
    })
}

/// RFC 3339 (`2024-01-31T12:00:00Z`, with fraction or offset) or a date-time without zone (`2024-01-31
/// 12:00:00`, UTC), or a date (`2024-01-31`), to nanoseconds.
pub fn parse_time(s: &str) -> Option<i128> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp() as i128 * 1_000_000_000 + t.timestamp_subsec_nanos() as i128);
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            let t = t.and_utc();
            return Some(t.timestamp() as i128 * 1_000_000_000 + t.timestamp_subsec_nanos() as i128);
        }
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as i128 * 1_000_000_000)
}

fn tag_name(e: &Expr) -> Option<(&str, usize, IdentKind)> {
    match e {
        Expr::Ident { name, pos, kind } => Some((name, *pos, *kind)),
        _ => None,
    }
}

/// A condition on tags (anything but time) to a filter.
fn tag_filter(e: &Expr) -> Result<FilterSpec, QueryError> {
    match e {
        Expr::Binary { op: BinOp::And, lhs, rhs, .. } => Ok(FilterSpec::And(vec![tag_filter(lhs)?, tag_filter(rhs)?])),
        Expr::Binary { op: BinOp::Or, lhs, rhs, .. } => Ok(FilterSpec::Or(vec![tag_filter(lhs)?, tag_filter(rhs)?])),
        Expr::Bool { value: true, .. } => Ok(FilterSpec::All),
        Expr::Bool { value: false, .. } => Ok(FilterSpec::Nothing),
        Expr::Binary { op, lhs, rhs, pos } => {
            let (ident, other) = match (tag_name(lhs), tag_name(rhs)) {
                (Some(t), _) => (t, &**rhs),
                (None, Some(t)) => (t, &**lhs),
                _ => return Err(QueryError::invalid(*pos, "expected a condition on a tag, like host = 'a'")),
            };
            let (key, kpos, kind) = ident;
            if key.eq_ignore_ascii_case("time") {
                return Err(QueryError::invalid(kpos, "time conditions must be joined to the rest with AND"));
            }
            if kind == IdentKind::Field {
                return Err(QueryError::invalid(
                    kpos,
                    format!("conditions on field values (\"{key}\") are not supported in WHERE; use HAVING"),
                ));
            }
            match (op, other) {
                (BinOp::Eq, Expr::Str { value, .. }) => Ok(FilterSpec::Eq(key.into(), value.clone())),
                (BinOp::Ne, Expr::Str { value, .. }) => Ok(FilterSpec::Ne(key.into(), value.clone())),
                (BinOp::ReMatch, Expr::Regex { re, .. }) => Ok(FilterSpec::Re(key.into(), re.as_str().into())),
                (BinOp::ReNotMatch, Expr::Regex { re, .. }) => Ok(FilterSpec::NotRe(key.into(), re.as_str().into())),
                (_, Expr::Number { .. } | Expr::Integer { .. } | Expr::Bool { .. }) => Err(QueryError::invalid(
                    kpos,
                    format!(
                        "\"{key}\" is compared with a number: conditions on field values are not supported in \
                         WHERE (tags are strings: quote the value, or filter aggregates with HAVING)"
                    ),
                )),
                (op, _) => Err(QueryError::invalid(
                    *pos,
                    format!("unsupported tag condition with {}: use = 'v', != 'v', =~ /re/ or !~ /re/", op.symbol()),
                )),
            }
        }
        other => Err(QueryError::invalid(other.pos(), "expected a condition on a tag, like host = 'a'")),
    }
}

fn agg_of(name: &str) -> Option<AggFn> {
    Some(match name {
        "count" => AggFn::Count,
        "sum" => AggFn::Sum,
        "mean" => AggFn::Mean,
        "min" => AggFn::Min,
        "max" => AggFn::Max,
        "first" => AggFn::First,
        "last" => AggFn::Last,
        "spread" => AggFn::Spread,
        "stddev" => AggFn::Stddev,
        "median" => AggFn::Median,
        "percentile" => AggFn::Percentile(0.0),
        "rate" => AggFn::Rate(1000),
        "increase" => AggFn::Increase,
        "top" => AggFn::Top(0),
        "bottom" => AggFn::Bottom(0),
        _ => return None,
    })
}

fn math_of(name: &str) -> Option<Math> {
    Some(match name {
        "abs" => Math::Abs,
        "ceil" => Math::Ceil,
        "floor" => Math::Floor,
        "round" => Math::Round,
        "sqrt" => Math::Sqrt,
        "ln" => Math::Ln,
        "log2" => Math::Log2,
        "log10" => Math::Log10,
        "exp" => Math::Exp,
        _ => return None,
    })
}

const WINDOWS: &[&str] = &[
    "derivative",
    "non_negative_derivative",
    "difference",
    "non_negative_difference",
    "moving_average",
    "exponential_moving_average",
    "ema",
    "cumulative_sum",
];

const KNOWN: &str =
    "count, sum, mean, min, max, first, last, spread, stddev, median, percentile, rate, increase, top, \
                     bottom, derivative, non_negative_derivative, difference, non_negative_difference, \
                     moving_average, exponential_moving_average, cumulative_sum, abs, ceil, floor, round, sqrt, ln, \
                     log2, log10, exp";

/// Every function called exists (checked first, so a misspelt aggregate is named as such).
fn check_calls(e: &Expr) -> Result<(), QueryError> {
    match e {
        Expr::Call { name, args, pos } => {
            if agg_of(name).is_none() && math_of(name).is_none() && !WINDOWS.contains(&name.as_str()) {
                return Err(QueryError::invalid(*pos, format!("unknown function {name}(); known: {KNOWN}")));
            }
            args.iter().try_for_each(check_calls)
        }
        Expr::Binary { lhs, rhs, .. } => {
            check_calls(lhs)?;
            check_calls(rhs)
        }
        Expr::Neg { expr, .. } => check_calls(expr),
        _ => Ok(()),
    }
}

/// Whether an expression contains an aggregate call.
fn has_agg(e: &Expr) -> bool {
    match e {
        Expr::Call { name, args, .. } => agg_of(name).is_some() || args.iter().any(has_agg),
        Expr::Binary { lhs, rhs, .. } => has_agg(lhs) || has_agg(rhs),
        Expr::Neg { expr, .. } => has_agg(expr),
        _ => false,
    }
}

fn positive_int(e: Option<&Expr>, call: &str, pos: usize, what: &str) -> Result<usize, QueryError> {
    match e {
        Some(Expr::Integer { value, .. }) if *value > 0 => Ok(*value as usize),
        Some(other) => Err(QueryError::invalid(other.pos(), format!("{call}: {what} must be a positive integer"))),
        None => Err(QueryError::invalid(pos, format!("{call} needs {what} as its last argument"))),
    }
}

fn duration_arg(e: Option<&Expr>, call: &str, default: i64) -> Result<i64, QueryError> {
    match e {
        None => Ok(default),
        Some(Expr::Duration { ms, pos, .. }) => {
            if *ms <= 0 {
                return Err(QueryError::invalid(*pos, format!("{call}: the unit must be at least 1ms")));
            }
            Ok(*ms)
        }
        Some(other) => Err(QueryError::invalid(other.pos(), format!("{call}: expected a duration like 1s"))),
    }
}

struct Compiler<'a> {
    leaves: Vec<Leaf>,
    aggregate: bool,
    group_interval: Option<i64>,
    wildcard_agg: &'a mut Option<(String, usize)>,
}

impl Compiler<'_> {
    fn leaf(&mut self, l: Leaf) -> PExpr {
        if let Some(i) = self.leaves.iter().position(|x| *x == l) {
            return PExpr::Leaf(i);
        }
        self.leaves.push(l);
        PExpr::Leaf(self.leaves.len() - 1)
    }

    fn compile(&mut self, e: &Expr) -> Result<PExpr, QueryError> {
        Ok(match e {
            Expr::Number { value, .. } => PExpr::Const(*value),
            Expr::Integer { value, .. } => PExpr::Const(*value as f64),
            Expr::Bool { value, .. } => PExpr::Const(if *value { 1.0 } else { 0.0 }),
            Expr::Str { value, .. } => PExpr::Str(value.clone()),
            Expr::Neg { expr, .. } => PExpr::Neg(Box::new(self.compile(expr)?)),
            Expr::Binary { op, lhs, rhs, .. } => {
                PExpr::Bin(*op, Box::new(self.compile(lhs)?), Box::new(self.compile(rhs)?))
            }
            Expr::Ident { name, kind, pos } => {
                if self.aggregate {
                    return Err(QueryError::invalid(
                        *pos,
                        format!("\"{name}\" is used outside an aggregate in a query with aggregates; wrap it (mean({name}), last({name}), ...) or group by it"),
                    ));
                }
                if name.eq_ignore_ascii_case("time") {
                    return Err(QueryError::invalid(*pos, "time is always the first column; do not select it"));
                }
                PExpr::Ref { name: name.clone(), kind: *kind }
            }
            Expr::Call { name, args, pos } => {
                if let Some(f) = agg_of(name) {
                    return self.aggregate_call(name, f, args, *pos);
                }
                if let Some(m) = math_of(name) {
                    if args.len() != 1 {
                        return Err(QueryError::invalid(*pos, format!("{name} takes one argument")));
                    }
                    return Ok(PExpr::Math(m, Box::new(self.compile(&args[0])?)));
                }
                if WINDOWS.contains(&name.as_str()) {
                    return self.window_call(name, args, *pos);
                }
                return Err(QueryError::invalid(*pos, format!("unknown function {name}(); known: {KNOWN}")));
            }
            Expr::Wildcard { pos } => {
                return Err(QueryError::invalid(*pos, "* can only stand alone or inside one aggregate (mean(*))"))
            }
            other => {
                return Err(QueryError::invalid(other.pos(), "unexpected expression in the select list"));
            }
        })
    }

    fn aggregate_call(&mut self, name: &str, mut f: AggFn, args: &[Expr], pos: usize) -> Result<PExpr, QueryError> {
        let field = match args.first() {
            Some(Expr::Ident { name: field, kind, pos }) => {
                if *kind == IdentKind::Tag {
                    return Err(QueryError::invalid(*pos, format!("{name}() takes a field, not the tag \"{field}\"")));
                }
                field.clone()
            }
            Some(Expr::Wildcard { .. }) => {
                if self.wildcard_agg.is_some() {
                    return Err(QueryError::invalid(pos, "only one aggregate of * per query"));
                }
                *self.wildcard_agg = Some((name.to_string(), self.leaves.len()));
                "*".to_string()
            }
            Some(other) if has_agg(other) => {
                return Err(QueryError::invalid(other.pos(), format!("{name}() of an aggregate is not supported")))
            }
            Some(other) => {
                return Err(QueryError::invalid(other.pos(), format!("{name}() takes a field name as first argument")))
            }
            None => return Err(QueryError::invalid(pos, format!("{name}() takes a field name as first argument"))),
        };
        let extra = args.get(1);
        match &mut f {
            AggFn::Percentile(p) => {
                *p = match extra {
                    Some(Expr::Number { value, .. }) => *value,
                    Some(Expr::Integer { value, .. }) => *value as f64,
                    _ => return Err(QueryError::invalid(pos, "percentile(field, p) needs p between 0 and 100")),
                };
                if !(0.0..=100.0).contains(p) {
                    return Err(QueryError::invalid(pos, "percentile(field, p) needs p between 0 and 100"));
                }
            }
            AggFn::Top(n) | AggFn::Bottom(n) => *n = positive_int(extra, name, pos, "N (how many values)")?,
            AggFn::Rate(unit) => *unit = duration_arg(extra, name, 1000)?,
            _ if extra.is_some() => {
                return Err(QueryError::invalid(extra.expect("some").pos(), format!("{name}() takes one argument")))
            }
            _ => {}
        }
        let max_args =
            if matches!(f, AggFn::Percentile(_) | AggFn::Top(_) | AggFn::Bottom(_) | AggFn::Rate(_)) { 2 } else { 1 };
        if args.len() > max_args {
            return Err(QueryError::invalid(
                args[max_args].pos(),
                format!("{name}() takes at most {max_args} arguments"),
            ));
        }
        Ok(self.leaf(Leaf { func: f, field }))
    }

    fn window_call(&mut self, name: &str, args: &[Expr], pos: usize) -> Result<PExpr, QueryError> {
        let Some(inner) = args.first() else {
            return Err(QueryError::invalid(pos, format!("{name}() needs an argument")));
        };
        if self.aggregate && !has_agg(inner) {
            return Err(QueryError::invalid(
                inner.pos(),
                format!("{name}() in a query with aggregates must take an aggregate, like {name}(mean(x))"),
            ));
        }
        if has_agg(inner) && self.group_interval.is_none() {
            return Err(QueryError::invalid(pos, format!("{name}() of an aggregate needs GROUP BY time(...)")));
        }
        let default_unit = 1000;
        let w = match name {
            "derivative" | "non_negative_derivative" => Window::Derivative {
                unit: duration_arg(args.get(1), name, default_unit)?,
                non_negative: name.starts_with("non_"),
            },
            "difference" | "non_negative_difference" => Window::Difference { non_negative: name.starts_with("non_") },
            "moving_average" => Window::MovingAverage(positive_int(args.get(1), name, pos, "the window size N")?),
            "exponential_moving_average" | "ema" => {
                Window::ExponentialMovingAverage(positive_int(args.get(1), name, pos, "the period N")?)
            }
            "cumulative_sum" => Window::CumulativeSum,
            _ => unreachable!("listed in WINDOWS"),
        };
        let max_args = match w {
            Window::Difference { .. } | Window::CumulativeSum => 1,
            _ => 2,
        };
        if args.len() > max_args {
            return Err(QueryError::invalid(
                args[max_args].pos(),
                format!("{name}() takes at most {max_args} arguments"),
            ));
        }
        Ok(PExpr::Window(w, Box::new(self.compile(inner)?)))
    }
}

/// The column name InfluxQL would give an expression: the alias, a call's name, a field's name, or the
/// names of the calls/fields in an arithmetic expression joined by `_`.
fn column_name(e: &Expr) -> String {
    fn names(e: &Expr, out: &mut Vec<String>) {
        match e {
            Expr::Call { name, .. } => out.push(name.clone()),
            Expr::Ident { name, .. } => out.push(name.clone()),
            Expr::Binary { lhs, rhs, .. } => {
                names(lhs, out);
                names(rhs, out);
            }
            Expr::Neg { expr, .. } => names(expr, out),
            _ => {}
        }
    }
    let mut v = Vec::new();
    names(e, &mut v);
    if v.is_empty() {
        "expr".into()
    } else {
        v.join("_")
    }
}

fn plan_select(s: &ast::Select, opts: &PlanOptions) -> Result<Plan, QueryError> {
    if let Some(tz) = &s.tz {
        return Err(QueryError::invalid_nopos(format!("tz('{tz}') is not supported yet; times are UTC")));
    }
    if s.from.is_empty() {
        return Err(QueryError::invalid_nopos("SELECT needs a FROM clause"));
    }
    let (range, filter, field_conds) = match &s.condition {
        Some(c) => select_where(c, opts.now_ms)?,
        None => (TimeRange::default(), FilterSpec::All, Vec::new()),
    };
    let sel = SeriesSel { measurements: sources(&s.from), filter };
    let group_by = match &s.group_by.tags {
        TagGroup::None => StorageGroupBy::None,
        TagGroup::All => StorageGroupBy::All,
        TagGroup::Tags(t) => StorageGroupBy::Tags(t.clone()),
    };
    let shape = Shape {
        fill: s.fill,
        order_desc: s.order_desc,
        limit: s.limit,
        offset: s.offset,
        slimit: s.slimit,
        soffset: s.soffset,
    };
    for e in s.fields.iter().map(|f| &f.expr).chain(s.having.as_ref()) {
        check_calls(e)?;
    }
    let aggregate = s.fields.iter().any(|f| has_agg(&f.expr));
    let placeholder_limits = ShardLimits { max_series: 0, max_points: 0 };
    if !aggregate {
        if let Some(tg) = &s.group_by.time {
            return Err(QueryError::invalid(
                tg.pos,
                "GROUP BY time(...) needs an aggregate in the select list, like mean(x)",
            ));
        }
        if let Some(h) = &s.having {
            return Err(QueryError::invalid(h.pos(), "HAVING needs aggregates in the select list"));
        }
        let start = range.start.unwrap_or(i64::MIN / 4);
        let end = range.end.unwrap_or(i64::MAX / 4);
        let star = s.fields.len() == 1 && matches!(s.fields[0].expr, Expr::Wildcard { .. });
        let (columns, fields) = if star {
            (None, FieldSel::All)
        } else {
            let mut dummy = None;
            let mut c = Compiler { leaves: vec![], aggregate: false, group_interval: None, wildcard_agg: &mut dummy };
            let mut cols = Vec::new();
            for f in &s.fields {
                let expr = c.compile(&f.expr)?;
                cols.push(Column { name: f.alias.clone().unwrap_or_else(|| column_name(&f.expr)), expr });
            }
            let mut refs = Vec::new();
            for col in &cols {
                col.expr.refs(&mut refs);
            }
            let mut names: Vec<String> = refs.into_iter().map(str::to_string).collect();
            names.sort();
            names.dedup();
            (Some(cols), FieldSel::Names(names))
        };
        return Ok(Plan::Raw(Box::new(RawPlan {
            query: RawQuery {
                values: value_conds(field_conds, &fields)?,
                sel,
                fields,
                start,
                end,
                limits: placeholder_limits,
            },
            columns,
            group_by,
            shape,
        })));
    }

    // Aggregate query.
    let end = range.end.unwrap_or(opts.now_ms.saturating_add(1));
    let (start, width, offset, time_grouped, report_time) = match &s.group_by.time {
        Some(tg) => {
            let start = range.start.ok_or_else(|| {
                QueryError::invalid(tg.pos, "GROUP BY time(...) needs a lower time bound, like WHERE time > now() - 1h")
            })?;
            if tg.interval_ms <= 0 {
                return Err(QueryError::invalid(tg.pos, "GROUP BY time(...) needs an interval of at least 1ms"));
            }
            let first = pharos_storage::aggregate::bucket_start(start, tg.interval_ms, tg.offset_ms);
            let buckets = (end.saturating_sub(first) + tg.interval_ms - 1) / tg.interval_ms;
            if buckets as u64 > opts.limits.max_buckets {
                return Err(QueryError::Limit(format!(
                    "GROUP BY time({}ms) over this range makes {buckets} buckets per group, more than {} \
                     (query.max_buckets); use a wider interval or a shorter range",
                    tg.interval_ms, opts.limits.max_buckets
                )));
            }
            (start, tg.interval_ms, tg.offset_ms, true, first)
        }
        None => {
            let start = range.start.unwrap_or(0);
            if end <= start {
                (start, 1, start, false, start)
            } else {
                (start, end - start, start, false, range.start.unwrap_or(0))
            }
        }
    };
    let mut wildcard = None;
    let mut c = Compiler {
        leaves: vec![],
        aggregate: true,
        group_interval: time_grouped.then_some(width),
        wildcard_agg: &mut wildcard,
    };
    let mut columns = Vec::new();
    for f in &s.fields {
        let expr = c.compile(&f.expr)?;
        columns.push(Column { name: f.alias.clone().unwrap_or_else(|| column_name(&f.expr)), expr });
    }
    // Leaves of the select list (HAVING may add more; they do not decide the rows' time).
    let column_leaves = c.leaves.len();
    let having = match &s.having {
        Some(h) => Some(c.compile(h)?),
        None => None,
    };
    let leaves = c.leaves;
    let sample_time = !time_grouped && column_leaves == 1 && leaves[0].func.is_selector();
    let selectors = leaves.iter().filter(|l| matches!(l.func, AggFn::Top(_) | AggFn::Bottom(_))).count();
    if selectors > 0 && (columns.len() != 1 || !matches!(columns[0].expr, PExpr::Leaf(_)) || having.is_some()) {
        return Err(QueryError::invalid_nopos(
            "top() and bottom() must be the only expression in the select list (they return several rows per bucket)",
        ));
    }
    let wildcard_plan = match wildcard {
        Some((name, _)) => {
            if columns.len() != 1 || !matches!(columns[0].expr, PExpr::Leaf(_)) {
                return Err(QueryError::invalid_nopos(format!(
                    "{name}(*) must be the only expression in the select list"
                )));
            }
            Some(vec![(name, leaves[0].func.clone())])
        }
        None => None,
    };
    let mut needs = Needs::default();
    for l in &leaves {
        match l.func {
            AggFn::Stddev => needs.moments = true,
            AggFn::Median | AggFn::Percentile(_) | AggFn::Top(_) | AggFn::Bottom(_) => needs.values = true,
            AggFn::Rate(_) | AggFn::Increase => needs.increase = true,
            _ => {}
        }
    }
    // A lone min()/max() reports its sample's time: the partials (which hold first and last times already)
    // must carry the time of the extreme.
    needs.min_time = sample_time && leaves[0].func == AggFn::Min;
    needs.max_time = sample_time && leaves[0].func == AggFn::Max;
    let fields = if wildcard_plan.is_some() {
        FieldSel::All
    } else {
        let mut names: Vec<String> = leaves.iter().map(|l| l.field.clone()).collect();
        names.sort();
        names.dedup();
        FieldSel::Names(names)
    };
    let values = value_conds(field_conds, &fields)?;
    Ok(Plan::Aggregate(Box::new(AggPlan {
        query: AggQuery {
            sel,
            fields,
            start,
            end,
            width,
            offset,
            group_by,
            needs,
            raw_only: opts.raw_only,
            limits: placeholder_limits,
            values,
        },
        leaves,
        columns,
        having,
        time_grouped,
        report_time,
        sample_time,
        wildcard: wildcard_plan,
        shape,
    })))
}
