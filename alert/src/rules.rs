//! Rule files in Prometheus's shape, with Pharos queries as `expr`.
//!
//! ```yaml
//! groups:
//!   - name: api                      # required, unique in the file
//!     interval: 30s                  # optional (the node's default otherwise)
//!     limit: 0                       # optional: most alerts one rule may have active (0: no limit)
//!     labels: {team: api}            # optional: added to every rule's labels
//!     rules:
//!       - alert: HighLatency         # an alerting rule ...
//!         expr: SELECT mean(latency_ms) FROM http GROUP BY service HAVING mean(latency_ms) > 500
//!         for: 5m
//!         keep_firing_for: 10m
//!         no_data: nodata            # optional: ok (default), alerting or nodata, when a series stops
//!         no_data_for: 5m            #   having data (the query without HAVING returns no row for it)
//!         labels: {severity: page}
//!         annotations: {summary: "{{ $labels.service }} at {{ humanize $value }}ms"}
//!       - alert: NodeExporterAbsent  # an absent rule: fires when its query returns no row at all
//!         absent: SELECT count(value) FROM node_load1 WHERE job = 'node' AND time > now() - 5m
//!         for: 1m                    #   (labelled job="node", from the WHERE's tag equalities)
//!       - record: service:latency_ms:mean   # ... or a recording rule
//!         expr: SELECT mean(latency_ms) FROM http GROUP BY service
//!         labels: {source: rule}
//! ```
//!
//! [`parse_rule_file`] reads the YAML with serde_yaml (syntax and type errors carry its line), then checks
//! what YAML cannot: names, durations, label names, templates, and that `expr` parses and plans as a single
//! aggregate SELECT (each returned row is one alert instance or one recorded sample). Those errors carry the
//! line of the offending entry, found through [`crate::yamlpos::PosIndex`], and the group and rule names.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;
use crate::labels::{is_valid_label_name, is_valid_metric_name, Labels};
use crate::template::Template;
use crate::yamlpos::{key, PosIndex, Seg};

/// A validated rule file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together at one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    /// None: the node's default evaluation interval.
    pub interval: Option<PromDuration>,
    /// Most alerts (pending or firing) one alerting rule may have; 0 means no limit.
    pub limit: usize,
    pub rules: Vec<Rule>,
    /// The line of the group in its file.
    pub line: usize,
}

/// An alerting or a recording rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(r) => &r.name,
            Rule::Recording(r) => &r.name,
        }
    }

    pub fn expr(&self) -> &str {
        match self {
            Rule::Alerting(r) => &r.expr,
            Rule::Recording(r) => &r.expr,
        }
    }
}

/// `alert:` rule: every row its query returns is an alert instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertingRule {
    /// The `alertname` label of its alerts.
    pub name: String,
    pub expr: String,
    /// How long an instance stays pending before it fires (`for`); zero fires at once.
    pub for_duration: PromDuration,
    /// How long a firing instance keeps firing after its row disappeared.
    pub keep_firing_for: PromDuration,
    /// What a series that stops having data becomes (`no_data`), once it has had none for `no_data_for`.
    #[serde(default)]
    pub no_data: NoData,
    #[serde(default)]
    pub no_data_for: PromDuration,
    /// An `absent:` rule (its query is `expr`): one instance, firing while the query returns no row at all,
    /// labelled with these labels (the tag equalities ANDed in its WHERE, as Prometheus's `absent()`
    /// does); None for an ordinary rule.
    #[serde(default)]
    pub absent: Option<Labels>,
    /// Labels added to each instance (templates over the row's labels and value; the group's labels
    /// included). A label that renders empty is removed.
    pub labels: BTreeMap<String, Template>,
    pub annotations: BTreeMap<String, Template>,
    pub line: usize,
}

/// What an alerting rule does about a series whose data stopped: the rule's query without its `HAVING`
/// clause (the data query) returned a row for it before and has returned none for `no_data_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// Nothing (Prometheus's behaviour: no row, no alert).
    #[default]
    Ok,
    /// The series alerts as if its condition held, with the value NaN.
    Alerting,
    /// The series gets an instance in the `nodata` state, labelled `alertstate="nodata"`, notified like a
    /// firing alert and resolved when data returns.
    #[serde(rename = "nodata")]
    NoData,
}

impl NoData {
    fn parse(s: &str) -> Option<NoData> {
        match s {
            "ok" => Some(NoData::Ok),
            "alerting" => Some(NoData::Alerting),
            "nodata" => Some(NoData::NoData),
            _ => None,
        }
    }
}

/// `record:` rule: every row its query returns is stored as a sample of measurement `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingRule {
    pub name: String,
    pub expr: String,
    /// Added to each row's tags (the group's labels included).
    pub labels: Labels,
    pub line: usize,
}

impl RuleGroup {
    /// A key for rule `i` that is stable while rules are added, removed or reordered: `group/name`, and
    /// `group/name#2`, `#3`... for later rules of the same name in the group (Prometheus allows repeats,
    /// e.g. one `HighLatency` with `severity: warning` and one with `severity: page`). The node keys alert
    /// state and notifications by it.
    pub fn rule_key(&self, i: usize) -> String {
        let name = self.rules[i].name();
        let n = self.rules[..i].iter().filter(|r| r.name() == name).count();
        if n == 0 {
            format!("{}/{name}", self.name)
        } else {
            format!("{}/{name}#{}", self.name, n + 1)
        }
    }
}

/// Which rule an error concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRef {
    Alert(String),
    Record(String),
    /// A rule with neither `alert` nor `record`: its position in the group, from 1.
    Nth(usize),
}

/// A problem in a rule file, with its line (1-based) and, where known, the group and rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The file's name, for messages (see [`parse_rule_file_named`]).
    pub file: Option<String>,
    pub line: usize,
    pub group: Option<String>,
    pub rule: Option<RuleRef>,
    pub message: String,
}

impl fmt::Display for RuleError {
    /// `rules.yml:12: group "api", alert "HighLatency": for: invalid duration "5x": ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}: ", self.line)?,
            None => write!(f, "line {}: ", self.line)?,
        }
        if let Some(g) = &self.group {
            write!(f, "group {g:?}")?;
            f.write_str(if self.rule.is_some() { ", " } else { ": " })?;
        }
        match &self.rule {
            Some(RuleRef::Alert(n)) => write!(f, "alert {n:?}: ")?,
            Some(RuleRef::Record(n)) => write!(f, "record {n:?}: ")?,
            Some(RuleRef::Nth(n)) => write!(f, "rule {n}: ")?,
            None => {}
        }
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Option<Vec<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Option<String>,
    interval: Option<String>,
    limit: Option<usize>,
    labels: Option<BTreeMap<String, String>>,
    rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    alert: Option<String>,
    record: Option<String>,
    expr: Option<String>,
    absent: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    no_data: Option<String>,
    no_data_for: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Parses and validates a rule file; errors print as `line 12: ...`.
pub fn parse_rule_file(text: &str) -> Result<RuleFile, Vec<RuleError>> {
    parse(None, text)
}

/// Like [`parse_rule_file`], with errors that start with the file's name (`rules.yml:12: ...`).
pub fn parse_rule_file_named(file: &str, text: &str) -> Result<RuleFile, Vec<RuleError>> {
    parse(Some(file), text)
}

fn parse(file: Option<&str>, text: &str) -> Result<RuleFile, Vec<RuleError>> {
    let index = PosIndex::build(text);
    let raw: RawFile = match serde_yaml::from_str(text) {
        Ok(r) => r,
        Err(e) => return Err(vec![yaml_error(file, &index, &e)]),
    };
    let mut v = Validator { file, index: &index, errors: vec![] };
    let file_out = v.file(raw);
    if v.errors.is_empty() {
        Ok(file_out)
    } else {
        v.errors.sort_by_key(|e| e.line);
        Err(v.errors)
    }
}

/// A serde_yaml error as a [`RuleError`]: its line, and the group and rule found at that line.
fn yaml_error(file: Option<&str>, index: &PosIndex, e: &serde_yaml::Error) -> RuleError {
    let line = e.location().map(|l| l.line()).unwrap_or(1);
    let message = yaml_message(e);
    let mut group = None;
    let mut rule = None;
    let groups = [key("groups")];
    if let Some(gi) = index.item_at_line(&groups, line) {
        let gpath = [key("groups"), Seg::Index(gi)];
        group = index.scalar(&[key("groups"), Seg::Index(gi), key("name")]).map(String::from);
        let rules_path = [&gpath[..], &[key("rules")]].concat();
        if let Some(ri) = index.item_at_line(&rules_path, line) {
            let rpath = [&rules_path[..], &[Seg::Index(ri)]].concat();
            let name = |k: &str| index.scalar(&[&rpath[..], &[key(k)]].concat()).map(String::from);
            rule = name("alert").map(RuleRef::Alert).or_else(|| name("record").map(RuleRef::Record));
        }
    }
    RuleError { file: file.map(String::from), line, group, rule, message }
}

/// serde_yaml's message without its " at line L column C" (the line is reported apart). A syntax error also
/// names where the enclosing construct began ("..., while parsing a block mapping at line 5 column 5"):
/// that one is kept as "that began on line 5", so one message does not show two lines as the error's.
pub(crate) fn yaml_message(e: &serde_yaml::Error) -> String {
    static CONTEXT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let message = e.to_string();
    let message = match e.location() {
        Some(l) => message.replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1),
        None => message,
    };
    let context = CONTEXT.get_or_init(|| regex::Regex::new(r" at line (\d+) column \d+").expect("valid regex"));
    context.replace_all(&message, " that began on line $1").into_owned()
}

struct Validator<'a> {
    file: Option<&'a str>,
    index: &'a PosIndex,
    errors: Vec<RuleError>,
}

/// Where an error is reported: the group and rule, and the path of the entry.
struct Ctx<'c> {
    group: Option<&'c str>,
    rule: Option<RuleRef>,
    path: Vec<Seg>,
}

impl Ctx<'_> {
    fn at(&self, k: &str) -> Vec<Seg> {
        let mut p = self.path.clone();
        p.push(key(k));
        p
    }
}

impl Validator<'_> {
    fn error_at(&mut self, ctx: &Ctx, path: &[Seg], message: String) {
        self.error_line(ctx, self.index.nearest_line(path), message);
    }

    fn error_line(&mut self, ctx: &Ctx, line: usize, message: String) {
        self.errors.push(RuleError {
            file: self.file.map(String::from),
            line,
            group: ctx.group.map(String::from),
            rule: ctx.rule.clone(),
            message,
        });
    }

    fn file(&mut self, raw: RawFile) -> RuleFile {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut groups = Vec::new();
        for (gi, g) in raw.groups.unwrap_or_default().into_iter().enumerate() {
            let path = vec![key("groups"), Seg::Index(gi)];
            let line = self.index.nearest_line(&path);
            let name = g.name.clone().unwrap_or_default();
            let ctx = Ctx { group: (!name.is_empty()).then_some(name.as_str()), rule: None, path };
            if name.is_empty() {
                let message = if g.name.is_none() { "group has no name" } else { "group name must not be empty" };
                self.error_at(&ctx, &ctx.at("name"), message.into());
            } else if let Some(first) = seen.get(&name) {
                self.error_at(&ctx, &ctx.at("name"), format!("group name is used twice (first at line {first})"));
            } else {
                seen.insert(name.clone(), line);
            }
            let interval = g.interval.as_deref().and_then(|t| match PromDuration::parse(t) {
                Ok(d) if d.is_zero() => {
                    self.error_at(&ctx, &ctx.at("interval"), "interval: must be greater than 0".into());
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    self.error_at(&ctx, &ctx.at("interval"), format!("interval: {e}"));
                    None
                }
            });
            let group_labels = g.labels.unwrap_or_default();
            self.label_names(&ctx, "labels", &group_labels);
            let mut rules = Vec::new();
            for (ri, r) in g.rules.unwrap_or_default().into_iter().enumerate() {
                let mut rpath = ctx.at("rules");
                rpath.push(Seg::Index(ri));
                if let Some(rule) = self.rule(&ctx, rpath, ri, r, &group_labels) {
                    rules.push(rule);
                }
            }
            groups.push(RuleGroup { name, interval, limit: g.limit.unwrap_or(0), rules, line });
        }
        RuleFile { groups }
    }

    fn label_names(&mut self, ctx: &Ctx, field: &str, labels: &BTreeMap<String, String>) {
        for name in labels.keys() {
            if !is_valid_label_name(name) {
                let mut p = ctx.at(field);
                p.push(key(name));
                let what = if field == "annotations" { "annotation" } else { "label" };
                self.error_at(ctx, &p, format!("{field}: invalid {what} name {name:?} (use [a-zA-Z_][a-zA-Z0-9_]*)"));
            }
        }
    }

    fn templates(&mut self, ctx: &Ctx, field: &str, map: &BTreeMap<String, String>) -> BTreeMap<String, Template> {
        let mut out = BTreeMap::new();
        for (k, v) in map {
            match Template::parse(v) {
                Ok(t) => {
                    out.insert(k.clone(), t);
                }
                Err(e) => {
                    let mut p = ctx.at(field);
                    p.push(key(k));
                    self.error_at(ctx, &p, format!("{field}.{k}: template: {e}"));
                }
            }
        }
        out
    }

    fn duration(&mut self, ctx: &Ctx, field: &str, text: Option<&str>) -> PromDuration {
        match text.map(PromDuration::parse) {
            None => PromDuration::ZERO,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error_at(ctx, &ctx.at(field), format!("{field}: {e}"));
                PromDuration::ZERO
            }
        }
    }

    fn rule(&mut self, g: &Ctx, path: Vec<Seg>, ri: usize, r: RawRule, group_labels: &Labels) -> Option<Rule> {
        let rule = match (&r.alert, &r.record) {
            (Some(a), _) => RuleRef::Alert(a.clone()),
            (None, Some(n)) => RuleRef::Record(n.clone()),
            (None, None) => RuleRef::Nth(ri + 1),
        };
        let ctx = Ctx { group: g.group, rule: Some(rule), path };
        let line = self.index.nearest_line(&ctx.path);
        let before = self.errors.len();
        match (&r.alert, &r.record) {
            (Some(_), Some(_)) => {
                self.error_line(&ctx, line, "a rule has either alert or record, not both".into());
            }
            (None, None) => {
                self.error_line(&ctx, line, "a rule needs alert (an alerting rule) or record (a recording rule)".into())
            }
            (Some(a), None) if a.trim().is_empty() => {
                self.error_at(&ctx, &ctx.at("alert"), "alert: name must not be empty".into())
            }
            (None, Some(n)) if !is_valid_metric_name(n) => self.error_at(
                &ctx,
                &ctx.at("record"),
                format!("record: invalid name {n:?} (use [a-zA-Z_:][a-zA-Z0-9_:]*)"),
            ),
            _ => {}
        }
        // An alerting rule has `expr` or `absent` (a query either way); a recording rule `expr`.
        let field = if r.alert.is_some() && r.absent.is_some() { "absent" } else { "expr" };
        if r.expr.is_some() && r.absent.is_some() {
            self.error_at(&ctx, &ctx.at("absent"), "absent: a rule has either expr or absent, not both".into());
        }
        let expr = if field == "absent" { r.absent.clone() } else { r.expr.clone() }.unwrap_or_default();
        let absent = (field == "absent").then(|| absent_labels(&expr));
        if expr.trim().is_empty() {
            let why = if r.alert.is_some() {
                "expr: missing (a Pharos query; or absent: a query that alerts when it returns no row)"
            } else {
                "expr: missing (a Pharos query)"
            };
            self.error_at(&ctx, &ctx.at("expr"), why.into());
        } else if let Err((pos, msg)) = check_query(&expr) {
            let expr_path = ctx.at(field);
            let line = match (pos, self.index.value(&expr_path)) {
                (Some(p), Some(v)) if v.literal_block => {
                    // An error at the very end (after the block's final newline) belongs to the last line.
                    let p = p.min(expr.len());
                    let before = if expr[p..].trim().is_empty() { expr[..p].trim_end() } else { &expr[..p] };
                    v.line + before.matches('\n').count()
                }
                _ => self.index.nearest_line(&expr_path),
            };
            self.error_line(&ctx, line, format!("{field}: {msg}"));
        } else if absent.is_some() && !absent_groups_nothing(&expr) {
            let why = "absent: GROUP BY is not allowed: the rule fires when the query returns no row at all".into();
            self.error_at(&ctx, &ctx.at("absent"), why);
        }
        if absent.is_some() && r.no_data.is_some() {
            let why = "no_data: not allowed with absent (an absent rule is itself about missing data)".into();
            self.error_at(&ctx, &ctx.at("no_data"), why);
        }
        let mut labels = r.labels.clone().unwrap_or_default();
        self.label_names(&ctx, "labels", &labels);
        if labels.contains_key("__name__") {
            self.error_at(&ctx, &ctx.at("labels"), "labels: __name__ cannot be set by a rule".into());
        }
        for (k, v) in group_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let annotations = r.annotations.clone().unwrap_or_default();
        let out = if r.alert.is_some() {
            self.label_names(&ctx, "annotations", &annotations);
            let for_duration = self.duration(&ctx, "for", r.for_.as_deref());
            let keep_firing_for = self.duration(&ctx, "keep_firing_for", r.keep_firing_for.as_deref());
            let no_data = match r.no_data.as_deref().map(|s| (s, NoData::parse(s))) {
                None => NoData::Ok,
                Some((_, Some(n))) => n,
                Some((s, None)) => {
                    let why = format!("no_data: {s:?} is not ok, alerting or nodata");
                    self.error_at(&ctx, &ctx.at("no_data"), why);
                    NoData::Ok
                }
            };
            let no_data_for = self.duration(&ctx, "no_data_for", r.no_data_for.as_deref());
            if r.no_data_for.is_some() && matches!(r.no_data.as_deref(), None | Some("ok")) {
                let why = "no_data_for: needs no_data: alerting or nodata".to_string();
                self.error_at(&ctx, &ctx.at("no_data_for"), why);
            }
            let labels = self.templates(&ctx, "labels", &labels);
            let annotations = self.templates(&ctx, "annotations", &annotations);
            Rule::Alerting(AlertingRule {
                name: r.alert.clone().unwrap_or_default(),
                expr,
                for_duration,
                keep_firing_for,
                no_data,
                no_data_for,
                absent,
                labels,
                annotations,
                line,
            })
        } else {
            for (field, set) in [
                ("for", r.for_.is_some()),
                ("keep_firing_for", r.keep_firing_for.is_some()),
                ("no_data", r.no_data.is_some()),
                ("no_data_for", r.no_data_for.is_some()),
                ("absent", r.absent.is_some()),
                ("annotations", r.annotations.is_some()),
            ] {
                if set {
                    self.error_at(&ctx, &ctx.at(field), format!("{field}: not allowed in a recording rule"));
                }
            }
            Rule::Recording(RecordingRule { name: r.record.clone().unwrap_or_default(), expr, labels, line })
        };
        (self.errors.len() == before).then_some(out)
    }
}

/// The labels of an absent rule's alert: each `tag = 'value'` ANDed at the top of the query's WHERE (not
/// under an OR, not `time`), as Prometheus's `absent(up{job="node"})` is labelled `job="node"`.
pub fn absent_labels(expr: &str) -> Labels {
    use pharos_query::ast::{BinOp, Expr, IdentKind, Statement};
    fn walk(e: &Expr, out: &mut Labels) {
        match e {
            Expr::Binary { op: BinOp::And, lhs, rhs, .. } => {
                walk(lhs, out);
                walk(rhs, out);
            }
            Expr::Binary { op: BinOp::Eq, lhs, rhs, .. } => match (&**lhs, &**rhs) {
                (Expr::Ident { name, kind: IdentKind::Any | IdentKind::Tag, .. }, Expr::Str { value, .. })
                | (Expr::Str { value, .. }, Expr::Ident { name, kind: IdentKind::Any | IdentKind::Tag, .. })
                    if name != "time" && is_valid_label_name(name) =>
                {
                    out.insert(name.clone(), value.clone());
                }
                _ => {}
            },
            _ => {}
        }
    }
    let mut out = Labels::new();
    if let Ok(stmts) = pharos_query::parse(expr) {
        if let Some(Statement::Select(s)) = stmts.first() {
            if let Some(c) = &s.condition {
                walk(c, &mut out);
            }
        }
    }
    out
}

/// Whether an absent rule's query groups by nothing (its answer is one row or none).
fn absent_groups_nothing(expr: &str) -> bool {
    use pharos_query::ast::{Statement, TagGroup};
    match pharos_query::parse(expr).ok().as_deref() {
        Some([Statement::Select(s)]) => matches!(s.group_by.tags, TagGroup::None),
        _ => true,
    }
}

const GROUP_BY_TIME: &str =
    "GROUP BY time(...) is not allowed: each row the query returns is one instance; group by tags only";

/// Checks that `expr` is one aggregate SELECT that plans, without GROUP BY time (each row must be one
/// instance). On error: the byte offset in `expr` when the query error has one, and the message; with an
/// offset, the message is `pharosctl query`'s (line and column, the offending line with a caret under it).
pub fn check_query(expr: &str) -> Result<(), (Option<usize>, String)> {
    use pharos_query::ast::Statement;
    use pharos_query::{Plan, PlanOptions, QueryError};
    // Rendered against the trimmed text, so an error at the very end points just after the last word.
    let rendered = |e: QueryError| (e.pos(), e.render(expr.trim_end()));
    let stmts = pharos_query::parse(expr).map_err(|e| rendered(e.into()))?;
    let [stmt] = stmts.as_slice() else {
        return Err((None, format!("must be exactly one SELECT statement, found {}", stmts.len())));
    };
    let Statement::Select(select) = stmt else {
        return Err((None, "must be a SELECT statement".into()));
    };
    if let Some(tg) = &select.group_by.time {
        return Err(rendered(QueryError::Invalid { pos: Some(tg.pos), message: GROUP_BY_TIME.into() }));
    }
    let opts = PlanOptions { now_ms: 0, limits: Default::default(), raw_only: false };
    let plan = pharos_query::plan(stmt, &opts).map_err(rendered)?;
    match plan {
        Plan::Aggregate(a) if a.time_grouped => Err((None, GROUP_BY_TIME.into())),
        Plan::Aggregate(_) => Ok(()),
        _ => Err((
            None,
            "must be an aggregate query (like SELECT last(value) FROM up GROUP BY instance HAVING last(value) = 0)"
                .into(),
        )),
    }
}

#[cfg(test)]
#[path = "rules_test.rs"]
mod tests;
