//! The per-rule alert state machine: rows in, new state and transitions out.
//!
//! ```text
//!              row present                      now - active_since >= for
//!   inactive ───────────────► pending ─────────────────────────────────► firing
//!      ▲  ▲                     │ row gone (dropped, no notification)      │ row gone, and
//!      │  └─────────────────────┘                                          │ now >= last_seen + keep_firing_for
//!      │ 15 min after resolving                                            ▼
//!      └─────────────────────────────────────────────────────────────── resolved
//!                                  row back: pending again, new active_since
//! ```
//!
//! [`evaluate`] is pure: the node passes the rule, the committed [`RuleState`], the evaluation time and the
//! rows of the rule's query; it commits the returned state and [`Transition`]s through Raft, then notifies.
//! `for` is measured from `active_since`, which is part of the state, so a new leader continuing from the
//! committed state does not restart it. With `for: 0` a new instance fires in the evaluation that saw it.
//!
//! No data ([`evaluate_with_data`], rules with `no_data` other than `ok`): the rows of the rule's query
//! without `HAVING` tell which series have data. A series that had a row and has had none for `no_data_for`
//! becomes a row of its own with the value NaN: an ordinary instance that fires at once (`no_data:
//! alerting`), or one labelled `alertstate="nodata"` in the `nodata` state (`no_data: nodata`), notified like
//! a firing alert. Either resolves when the series has data again; a series without data for 24 hours is
//! forgotten (and its instance resolved).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::labels::{fingerprint, format_labels, Labels, ALERTNAME};
use crate::rules::{AlertingRule, NoData, RecordingRule};
use crate::template::TemplateData;

/// How long a resolved instance stays in the state (and visible) before it is dropped, as in Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// The state of one alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Not in the state (the `from` of a new instance, the `to` of a dropped one).
    Inactive,
    /// The condition holds, `for` has not elapsed yet.
    Pending,
    Firing,
    /// It fired and its condition stopped holding; kept for [`RESOLVED_RETENTION_MS`].
    Resolved,
    /// A series of a `no_data: nodata` rule that stopped having data; notified like a firing alert.
    #[serde(rename = "nodata")]
    NoData,
}

impl AlertState {
    /// Firing, or in the `nodata` state: what receivers hear of as an active alert.
    pub fn active(self) -> bool {
        matches!(self, AlertState::Firing | AlertState::NoData)
    }
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::NoData => "nodata",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a rule's query: the group's tags and the (first) value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub labels: Labels,
    pub value: f64,
}

impl Row {
    pub fn new(labels: Labels, value: f64) -> Row {
        Row { labels, value }
    }
}

/// Rows from a query's series: each series' tags, and each of its rows' first non-time column that is a
/// number (integers and booleans as floats; rows whose value is null or text are skipped: no data, no alert).
pub fn rows_from_series(series: &[pharos_query::Series]) -> Vec<Row> {
    use pharos_query::Value;
    let mut out = Vec::new();
    for s in series {
        let labels: Labels = s.tags.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
        let col = s.columns.iter().position(|c| c != "time");
        for row in &s.values {
            let value = match col.and_then(|c| row.get(c)) {
                Some(Value::Float(f)) => *f,
                Some(Value::Int(i)) => *i as f64,
                Some(Value::Bool(b)) => f64::from(u8::from(*b)),
                _ => continue,
            };
            out.push(Row { labels: labels.clone(), value });
        }
    }
    out
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Row labels, then the rule's labels, then `alertname`.
    pub labels: Labels,
    /// Rendered at the last evaluation that saw the row.
    pub annotations: Labels,
    pub state: AlertState,
    /// The value at the last evaluation that saw the row.
    #[serde(with = "float")]
    pub value: f64,
    /// When this episode's condition first held (ms); `for` counts from here.
    pub active_since: i64,
    /// The last evaluation that saw the row (ms).
    pub last_seen: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

impl Instance {
    /// The instance as an alert for routing and receivers: firing (starting at `fired_at`) or resolved
    /// (ending at `resolved_at`). None while pending.
    pub fn to_alert(&self, generator_url: &str) -> Option<Alert> {
        let starts_at = self.fired_at?;
        let ends_at = match self.state {
            AlertState::Firing | AlertState::NoData => None,
            AlertState::Resolved => Some(self.resolved_at.unwrap_or(starts_at)),
            _ => return None,
        };
        Some(Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at,
            ends_at,
            generator_url: generator_url.to_string(),
        })
    }
}

/// The committed state of one alerting rule: its instances by fingerprint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RuleState {
    pub instances: BTreeMap<u64, Instance>,
    /// The time of the last evaluation applied.
    pub last_eval: Option<i64>,
    /// Rules with `no_data`: each series the data query returned, by the fingerprint of its labels, and when
    /// it last had a row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data_seen: BTreeMap<u64, SeriesSeen>,
    /// When `data_seen` was last committed (the node commits it when its series change, and otherwise at
    /// most once a refresh period: see `node/src/alerting/evaluate.rs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data_committed_at: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A series a rule's data query returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSeen {
    pub labels: Labels,
    pub last_seen: i64,
}

/// A series without data for this long is forgotten: its no-data instance resolves, and it is no longer
/// expected (a host taken out of service stops alerting after a day).
pub const NO_DATA_FORGET_MS: i64 = 24 * 3600 * 1000;

impl RuleState {
    /// Instances in a state, in fingerprint order.
    pub fn in_state(&self, state: AlertState) -> impl Iterator<Item = (&u64, &Instance)> {
        self.instances.iter().filter(move |(_, i)| i.state == state)
    }

    /// Alerts to hand to routing: firing and resolved instances.
    pub fn alerts(&self, generator_url: &str) -> Vec<Alert> {
        self.instances.values().filter_map(|i| i.to_alert(generator_url)).collect()
    }
}

/// A change of one instance's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub fingerprint: u64,
    pub labels: Labels,
    pub from: AlertState,
    pub to: AlertState,
    /// The evaluation time (ms).
    pub at: i64,
    #[serde(with = "float")]
    pub value: f64,
}

impl Transition {
    /// Whether receivers hear of it: an instance starts firing, or a firing one resolves. Pending instances
    /// appearing or vanishing, and resolved ones being dropped, are state only.
    pub fn notifies(&self) -> bool {
        self.to.active() || (self.from.active() && self.to == AlertState::Resolved)
    }

    /// The notification dedup key, `rule/fingerprint/state` (see [`crate::labels::dedup_key`]).
    pub fn dedup_key(&self, rule_key: &str) -> String {
        crate::labels::dedup_key(rule_key, self.fingerprint, self.to)
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub state: RuleState,
    /// In fingerprint order.
    pub transitions: Vec<Transition>,
}

/// Why an evaluation was refused; the node keeps the previous state and logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Two rows give the same label set once the rule's labels are applied (Prometheus refuses these too).
    #[error("two rows have the same labels {0} once the rule's labels are applied")]
    DuplicateLabels(String),
    /// More pending and firing alerts than the group's `limit`.
    #[error("{count} alerts exceed the group's limit of {limit}")]
    LimitExceeded { limit: usize, count: usize },
}

/// What an evaluation needs besides the rule, the state and the rows.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    pub now_ms: i64,
    /// The group's `limit` (0: none).
    pub limit: usize,
    /// `$externalLabels` and `$externalURL` for templates.
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
}

static NO_LABELS: Labels = Labels::new();

impl EvalContext<'static> {
    /// An evaluation at `now_ms` with no limit, external labels or URL.
    pub fn at(now_ms: i64) -> EvalContext<'static> {
        EvalContext { now_ms, limit: 0, external_labels: &NO_LABELS, external_url: "" }
    }
}

/// The label set and annotations of the instance a row stands for.
fn instance_of(rule: &AlertingRule, row: &Row, ctx: &EvalContext) -> (Labels, Labels) {
    let row_labels: Labels =
        row.labels.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let data = TemplateData {
        labels: &row_labels,
        value: row.value,
        external_labels: ctx.external_labels,
        external_url: ctx.external_url,
    };
    let mut labels = row_labels.clone();
    for (k, t) in &rule.labels {
        let v = t.expand(&data);
        if v.is_empty() {
            labels.remove(k);
        } else {
            labels.insert(k.clone(), v);
        }
    }
    labels.insert(ALERTNAME.to_string(), rule.name.clone());
    let annotations = rule.annotations.iter().map(|(k, t)| (k.clone(), t.expand(&data))).collect();
    (labels, annotations)
}

/// Applies one evaluation of `rule` at `ctx.now_ms` that returned `rows` to the previous state.
pub fn evaluate(
    rule: &AlertingRule,
    prev: &RuleState,
    rows: &[Row],
    ctx: &EvalContext,
) -> Result<Evaluation, EvalError> {
    evaluate_with_data(rule, prev, rows, None, ctx)
}

/// The rows an absent rule evaluates: its one instance (value 1, as Prometheus's `absent()`) when its query
/// returned no row, none when it returned any. An ordinary rule's rows as they are.
pub fn absent_rows(rule: &AlertingRule, rows: Vec<Row>) -> Vec<Row> {
    match &rule.absent {
        None => rows,
        Some(labels) if rows.is_empty() => vec![Row::new(labels.clone(), 1.0)],
        Some(_) => Vec::new(),
    }
}

/// [`evaluate`], with the rows of the rule's data query (its query without `HAVING`) for a rule whose
/// `no_data` is not `ok` (see the module docs). For such a rule, None (the data query failed) leaves the
/// state as it was: the evaluation waits for the next one rather than resolving what lacks data.
pub fn evaluate_with_data(
    rule: &AlertingRule,
    prev: &RuleState,
    rows: &[Row],
    data: Option<&[Row]>,
    ctx: &EvalContext,
) -> Result<Evaluation, EvalError> {
    if rule.no_data != NoData::Ok && data.is_none() {
        return Ok(Evaluation { state: prev.clone(), transitions: Vec::new() });
    }
    let now = ctx.now_ms;
    let for_ms = rule.for_duration.ms();
    let mut instances: BTreeMap<u64, Instance> = BTreeMap::new();
    let mut changes: BTreeMap<u64, (AlertState, AlertState)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let (data_seen, missing) = no_data_rows(rule, prev, rows, data, now);
    // Instances that stand for series without data: they skip `for` (`no_data_for` was their wait).
    let mut without_data = BTreeSet::new();

    for (row, is_missing) in rows.iter().map(|r| (r, false)).chain(missing.iter().map(|r| (r, true))) {
        let (labels, annotations) = instance_of(rule, row, ctx);
        let fp = fingerprint(&labels);
        if !seen.insert(fp) {
            return Err(EvalError::DuplicateLabels(format_labels(&labels)));
        }
        if is_missing {
            without_data.insert(fp);
        }
        let inst = match prev.instances.get(&fp) {
            Some(p) if matches!(p.state, AlertState::Pending | AlertState::Firing | AlertState::NoData) => {
                Instance { annotations, value: row.value, last_seen: now, ..p.clone() }
            }
            previous => {
                let from = previous.map_or(AlertState::Inactive, |p| p.state);
                changes.insert(fp, (from, AlertState::Pending));
                Instance {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: row.value,
                    active_since: now,
                    last_seen: now,
                    fired_at: None,
                    resolved_at: None,
                }
            }
        };
        instances.insert(fp, inst);
    }

    for (fp, p) in &prev.instances {
        if seen.contains(fp) {
            continue;
        }
        match p.state {
            AlertState::Pending | AlertState::Inactive => {
                changes.insert(*fp, (p.state, AlertState::Inactive));
            }
            AlertState::Firing | AlertState::NoData => {
                let kept =
                    !rule.keep_firing_for.is_zero() && now < p.last_seen.saturating_add(rule.keep_firing_for.ms());
                if kept {
                    instances.insert(*fp, p.clone());
                } else {
                    changes.insert(*fp, (p.state, AlertState::Resolved));
                    instances
                        .insert(*fp, Instance { state: AlertState::Resolved, resolved_at: Some(now), ..p.clone() });
                }
            }
            AlertState::Resolved => {
                let resolved_at = p.resolved_at.unwrap_or(p.last_seen);
                if now.saturating_sub(resolved_at) > RESOLVED_RETENTION_MS {
                    changes.insert(*fp, (AlertState::Resolved, AlertState::Inactive));
                } else {
                    instances.insert(*fp, p.clone());
                }
            }
        }
    }

    for (fp, inst) in instances.iter_mut() {
        let wait = if without_data.contains(fp) { 0 } else { for_ms };
        if inst.state == AlertState::Pending && now.saturating_sub(inst.active_since) >= wait {
            let nodata = inst.labels.get(ALERTSTATE).is_some_and(|v| v == "nodata") && without_data.contains(fp);
            let to = if nodata { AlertState::NoData } else { AlertState::Firing };
            inst.state = to;
            inst.fired_at = Some(now);
            let from = changes.get(fp).map_or(AlertState::Pending, |c| c.0);
            changes.insert(*fp, (from, to));
        }
    }

    if ctx.limit > 0 {
        let count = instances.values().filter(|i| i.state == AlertState::Pending || i.state.active()).count();
        if count > ctx.limit {
            return Err(EvalError::LimitExceeded { limit: ctx.limit, count });
        }
    }

    let transitions = changes
        .into_iter()
        .filter(|(_, (from, to))| from != to)
        .map(|(fp, (from, to))| {
            let inst = instances.get(&fp).or_else(|| prev.instances.get(&fp)).expect("a changed instance is known");
            Transition { fingerprint: fp, labels: inst.labels.clone(), from, to, at: now, value: inst.value }
        })
        .collect();
    let data_committed_at = prev.data_committed_at;
    Ok(Evaluation { state: RuleState { instances, last_eval: Some(now), data_seen, data_committed_at }, transitions })
}

/// The label a `no_data: nodata` instance carries (and the `ALERTS` series' state tag).
pub const ALERTSTATE: &str = "alertstate";

/// The series a no-data rule has seen (updated with `data`), and a row for each series that has had no data
/// for `no_data_for`.
fn no_data_rows(
    rule: &AlertingRule,
    prev: &RuleState,
    rows: &[Row],
    data: Option<&[Row]>,
    now: i64,
) -> (BTreeMap<u64, SeriesSeen>, Vec<Row>) {
    if rule.no_data == NoData::Ok {
        return (BTreeMap::new(), Vec::new());
    }
    let mut seen = prev.data_seen.clone();
    let Some(data) = data else { return (seen, Vec::new()) };
    let mut present = BTreeSet::new();
    // The rule's own rows have data too (the two queries run a moment apart: a row may have slid out of the
    // data query's window in between).
    for row in data.iter().chain(rows) {
        let labels: Labels =
            row.labels.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let fp = fingerprint(&labels);
        present.insert(fp);
        seen.insert(fp, SeriesSeen { labels, last_seen: now });
    }
    seen.retain(|_, s| now.saturating_sub(s.last_seen) <= NO_DATA_FORGET_MS);
    let missing = seen
        .iter()
        .filter(|(fp, s)| !present.contains(*fp) && now.saturating_sub(s.last_seen) >= rule.no_data_for.ms())
        .map(|(_, s)| {
            let mut labels = s.labels.clone();
            if rule.no_data == NoData::NoData {
                labels.insert(ALERTSTATE.to_string(), "nodata".to_string());
            }
            Row { labels, value: f64::NAN }
        })
        .collect();
    (seen, missing)
}

/// One sample a recording rule writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The rule's `record` name.
    pub measurement: String,
    /// The row's tags with the rule's labels applied (an empty label value removes the tag).
    pub tags: Labels,
    pub value: f64,
}

/// The samples of one evaluation of a recording rule.
pub fn record(rule: &RecordingRule, rows: &[Row]) -> Result<Vec<Sample>, EvalError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut tags: Labels =
            row.labels.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in &rule.labels {
            if v.is_empty() {
                tags.remove(k);
            } else {
                tags.insert(k.clone(), v.clone());
            }
        }
        if !seen.insert(fingerprint(&tags)) {
            return Err(EvalError::DuplicateLabels(format_labels(&tags)));
        }
        out.push(Sample { measurement: rule.name.clone(), tags, value: row.value });
    }
    Ok(out)
}

/// Floats that survive JSON: finite values as numbers, NaN and ±Inf as the strings `NaN`, `+Inf`, `-Inf`
/// (serde_json would write null and fail to read it back).
mod float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        Num(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match F::deserialize(d)? {
            F::Num(v) => Ok(v),
            F::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("not a number: {other:?}"))),
            },
        }
    }
}

#[cfg(test)]
#[path = "state_test.rs"]
mod tests;
