//! Rule evaluation on a shard's leader: one task per rule group the ring places on the shard.
//!
//! ```text
//!  meta group: rule file (versioned) ──► supervisor: groups with shard_of_name(group) == this shard
//!                                          │ one task per group, restarted when its definition changes
//!                                          ▼
//!  every interval (phase = hash(group)):  for each rule, in order:
//!     expr ──linearizable query──► rows ──pharos_alert::evaluate──► state + transitions
//!     recording rule: rows ──record──► series written back at once (later rules see them)
//!  commit changed rule states through Raft ──► shared view updated ──► dispatcher woken
//!  ALERTS{alertname, alertstate, ...} = 1 written for pending and firing instances
//! ```
//!
//! A transition reaches the dispatcher only after its commit, so no notification goes out for a state a
//! new leader would not know. States are committed when a rule's instances change (a transition, a new
//! value or annotation); `last_eval` alone is not worth a Raft entry per rule per interval.
//!
//! A rule that disappears from the file has its firing instances resolved (and notified) and its state
//! dropped after the resolved-retention time, as Alertmanager would resolve alerts that stop arriving.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_alert::state::RESOLVED_RETENTION_MS;
use pharos_alert::{
    absent_rows, evaluate_with_data, record, rows_from_series, AlertState, EvalContext, Labels, Rule, RuleGroup,
};
use pharos_storage::{Point, SmolStr};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use xxhash_rust::xxh3::xxh3_64;

use super::store::{self, ShardAlerts, StoredRule};
use super::Alerting;
use crate::clock::now_ms;
use crate::ingest::{Batch, Source};
use crate::query::QueryOptions;

/// The series alert states are written to, as Prometheus does.
pub const ALERTS_MEASUREMENT: &str = "ALERTS";

/// Runs the rule groups placed on `shard` while this node leads it (the caller aborts the future when
/// leadership ends; the group tasks end with it).
pub async fn supervise(ctx: Arc<Alerting>, shard: u32, shared: Arc<ShardAlerts>) {
    let mut version = None;
    let mut tasks: HashMap<String, (u64, tokio::task::AbortHandle)> = HashMap::new();
    let mut set = JoinSet::new();
    // The rule keys of the file in force; None until a file parsed (nothing is retired before that).
    let mut current: Option<BTreeSet<String>> = None;
    let mut meta = ctx.meta.subscribe();
    loop {
        let stored = meta.borrow_and_update().rules.clone();
        if version != Some(stored.version) {
            version = Some(stored.version);
            match pharos_alert::parse_rule_file(&stored.text) {
                Ok(file) => {
                    let owned: Vec<RuleGroup> =
                        file.groups.into_iter().filter(|g| ctx.router.shard_of_name(&g.name) == shard).collect();
                    current = Some(owned.iter().flat_map(|g| (0..g.rules.len()).map(|i| g.rule_key(i))).collect());
                    let keep: BTreeSet<&str> = owned.iter().map(|g| g.name.as_str()).collect();
                    tasks.retain(|name, (_, h)| {
                        let stays = keep.contains(name.as_str());
                        if !stays {
                            h.abort();
                        }
                        stays
                    });
                    for g in owned {
                        let def = xxh3_64(format!("{g:?}").as_bytes());
                        if tasks.get(&g.name).is_some_and(|(d, _)| *d == def) {
                            continue;
                        }
                        if let Some((_, h)) = tasks.remove(&g.name) {
                            h.abort();
                        }
                        let name = g.name.clone();
                        let h = set.spawn(run_group(ctx.clone(), shard, shared.clone(), g));
                        tasks.insert(name, (def, h));
                    }
                    if tasks.is_empty() {
                        debug!(shard, version = stored.version, "no rule groups on this shard");
                    } else {
                        info!(shard, version = stored.version, groups = tasks.len(), "alert rules loaded");
                    }
                }
                Err(errors) if stored.version > 0 => {
                    warn!(shard, version = stored.version, errors = ?errors, "stored rule file does not parse; keeping the running rules")
                }
                Err(_) => {}
            }
        }
        if let Some(current) = &current {
            retire_removed(&ctx, shard, &shared, current).await;
        }
        // Reap finished tasks (a panic in one group must not go unnoticed).
        while let Some(r) = set.try_join_next() {
            if let Err(e) = r {
                if e.is_panic() {
                    warn!(shard, cause = %e, "a rule group task panicked; it restarts with the next rule change");
                }
            }
        }
        // A rule change takes effect as soon as the meta group applies it; retiring removed rules goes on
        // every second.
        crate::meta::changed_within(&mut meta, Duration::from_secs(1)).await;
    }
}

/// Resolves the firing instances of rules no longer in the file, and forgets them once their resolved
/// instances have aged out.
async fn retire_removed(ctx: &Alerting, shard: u32, shared: &ShardAlerts, current: &BTreeSet<String>) {
    let now = now_ms();
    let mut puts = Vec::new();
    let mut deletes = Vec::new();
    let mut updated = Vec::new();
    {
        let rules = shared.rules.lock().expect("alert state lock");
        for (key, r) in rules.iter().filter(|(k, _)| !current.contains(*k)) {
            let mut st = r.state.clone();
            st.instances.retain(|_, i| i.state.active() || i.state == AlertState::Resolved);
            for i in st.instances.values_mut() {
                if i.state.active() {
                    i.state = AlertState::Resolved;
                    i.resolved_at = Some(now);
                }
            }
            st.instances.retain(|_, i| i.resolved_at.is_some_and(|t| now - t < RESOLVED_RETENTION_MS));
            if st.instances.is_empty() {
                deletes.push(store::rule_key(key));
                updated.push((key.clone(), None));
            } else if st.instances != r.state.instances {
                let s = StoredRule { group: r.group.clone(), name: r.name.clone(), state: st };
                puts.push((store::rule_key(key), store::encode(&s)));
                updated.push((key.clone(), Some(s)));
            }
        }
    }
    if updated.is_empty() {
        return;
    }
    match store::commit(ctx, shard, puts, deletes).await {
        Ok(()) => {
            let mut rules = shared.rules.lock().expect("alert state lock");
            for (k, s) in updated {
                match s {
                    Some(s) => rules.insert(k, s),
                    None => rules.remove(&k),
                };
            }
            drop(rules);
            ctx.view.kick();
        }
        Err(e) => debug!(shard, cause = %e, "retiring removed rules' state"),
    }
}

/// Evaluates one group at its interval, at a phase given by its name (so groups spread over the interval
/// and a group keeps its phase when it moves to another leader).
async fn run_group(ctx: Arc<Alerting>, shard: u32, shared: Arc<ShardAlerts>, group: RuleGroup) {
    let every = group.interval.map(|d| d.ms()).unwrap_or(ctx.config.alerting.evaluation_interval.as_millis() as i64);
    let every = every.max(1);
    let offset = (xxh3_64(group.name.as_bytes()) % every as u64) as i64;
    let statements: Vec<Option<pharos_query::ast::Statement>> = group
        .rules
        .iter()
        .map(|r| match pharos_query::parse(r.expr()) {
            Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
            Ok(_) => None,
            Err(e) => {
                warn!(group = %group.name, rule = r.name(), cause = %e, "rule query does not parse; skipped");
                None
            }
        })
        .collect();
    loop {
        let now = now_ms();
        let next = (now - offset).div_euclid(every) * every + every + offset;
        tokio::time::sleep(Duration::from_millis((next - now).max(0) as u64)).await;
        let started = now_ms();
        ctx.metrics.rule_group_lag_seconds.observe((started - next).max(0) as f64 / 1000.0);
        let t = Instant::now();
        eval_group(&ctx, shard, &shared, &group, &statements, started).await;
        ctx.metrics.rule_group_seconds.with_label_values(&[&shard.to_string()]).observe(t.elapsed().as_secs_f64());
    }
}

fn point(measurement: &str, tags: &Labels, value: f64, ts: i64) -> Point {
    Point {
        measurement: measurement.into(),
        tags: tags.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.into(), v.into())).collect(),
        fields: vec![(SmolStr::new_static(crate::prom::VALUE_FIELD), value)],
        timestamp: ts,
    }
}

/// One evaluation of every rule of a group at `now`.
async fn eval_group(
    ctx: &Arc<Alerting>,
    shard: u32,
    shared: &ShardAlerts,
    group: &RuleGroup,
    statements: &[Option<pharos_query::ast::Statement>],
    now: i64,
) {
    let external_labels: Labels = ctx.config.alerting.external_labels.clone();
    let external_url = ctx.config.external_url();
    let eval_ctx =
        EvalContext { now_ms: now, limit: group.limit, external_labels: &external_labels, external_url: &external_url };
    let mut puts = Vec::new();
    let mut states: Vec<(String, StoredRule)> = Vec::new();
    let mut alert_points = Vec::new();
    for (i, rule) in group.rules.iter().enumerate() {
        let Some(st) = &statements[i] else { continue };
        let key = group.rule_key(i);
        let series = match ctx.queries.run_statement(st, QueryOptions { allow_stale: false }).await {
            Ok(s) => s,
            Err(e) => {
                ctx.metrics.rule_evaluations.with_label_values(&["query_error"]).inc();
                warn!(group = %group.name, rule = rule.name(), cause = %e, "rule query failed; its state is kept");
                continue;
            }
        };
        let rows = rows_from_series(&series);
        match rule {
            Rule::Alerting(r) => {
                // An absent rule: its one instance while the query returns nothing.
                let rows = absent_rows(r, rows);
                let prev = shared.rules.lock().expect("alert state lock").get(&key).map(|s| s.state.clone());
                let prev = prev.unwrap_or_default();
                // A rule watching for missing data also runs its query without HAVING: which series have data.
                // When that fails, the rule's evaluation waits (its state is kept).
                let data = match data_statement(r, st) {
                    None => None,
                    Some(data_st) => {
                        match ctx.queries.run_statement(&data_st, QueryOptions { allow_stale: false }).await {
                            Ok(series) => Some(rows_from_series(&series)),
                            Err(e) => {
                                ctx.metrics.rule_evaluations.with_label_values(&["query_error"]).inc();
                                warn!(rule = %key, cause = %e, "the rule's data query failed; its state is kept");
                                continue;
                            }
                        }
                    }
                };
                match evaluate_with_data(r, &prev, &rows, data.as_deref(), &eval_ctx) {
                    Ok(ev) => {
                        ctx.metrics.rule_evaluations.with_label_values(&["ok"]).inc();
                        for t in &ev.transitions {
                            info!(rule = %key, from = %t.from, to = %t.to, value = t.value, labels = ?t.labels, "alert transition");
                        }
                        for inst in ev.state.instances.values() {
                            if inst.state == AlertState::Pending || inst.state.active() {
                                let mut tags = inst.labels.clone();
                                tags.insert("alertstate".into(), inst.state.as_str().into());
                                alert_points.push(point(ALERTS_MEASUREMENT, &tags, 1.0, now));
                            }
                        }
                        let mut s = StoredRule { group: group.name.clone(), name: r.name.clone(), state: ev.state };
                        // When each series last had data is committed when the series change, and otherwise
                        // once a refresh period (half of no_data_for, at least a minute), not at every
                        // evaluation: a new leader may see a series' data as up to that much older.
                        let refresh = (r.no_data_for.ms() / 2).max(60_000);
                        let series_changed = !s.state.data_seen.keys().eq(prev.data_seen.keys());
                        let data_due = !s.state.data_seen.is_empty()
                            && (series_changed || now - prev.data_committed_at >= refresh);
                        if s.state.instances != prev.instances || data_due {
                            s.state.data_committed_at = now;
                            puts.push((store::rule_key(&key), store::encode(&s)));
                        }
                        states.push((key, s));
                    }
                    Err(e) => {
                        ctx.metrics.rule_evaluations.with_label_values(&["rule_error"]).inc();
                        warn!(rule = %key, cause = %e, "alert evaluation refused; the previous state is kept");
                    }
                }
            }
            Rule::Recording(r) => match record(r, &rows) {
                Ok(samples) => {
                    ctx.metrics.rule_evaluations.with_label_values(&["ok"]).inc();
                    let points: Vec<Point> =
                        samples.iter().map(|s| point(&s.measurement, &s.tags, s.value, now)).collect();
                    // Written before the next rule runs, so rules later in the group see the result.
                    if let Err(e) = write_rule_points(ctx, points).await {
                        warn!(rule = %key, cause = %e, "writing a recording rule's result");
                    }
                }
                Err(e) => {
                    ctx.metrics.rule_evaluations.with_label_values(&["rule_error"]).inc();
                    warn!(rule = %key, cause = %e, "recording rule refused");
                }
            },
        }
    }
    // Commit first: the dispatcher must never see (and notify) a state that is not committed.
    if let Err(e) = store::commit(ctx, shard, puts, vec![]).await {
        warn!(group = %group.name, shard, cause = %e, "committing alert state failed; notifications wait for the next evaluation");
        return;
    }
    {
        let mut rules = shared.rules.lock().expect("alert state lock");
        for (k, s) in states {
            rules.insert(k, s);
        }
    }
    ctx.view.kick();
    if !alert_points.is_empty() {
        if let Err(e) = write_rule_points(ctx, alert_points).await {
            debug!(group = %group.name, cause = %e, "writing ALERTS series");
        }
    }
}

/// The query that tells a `no_data` rule which series have data: its own without `HAVING`; None for a rule
/// without `no_data`.
fn data_statement(
    rule: &pharos_alert::AlertingRule,
    st: &pharos_query::ast::Statement,
) -> Option<pharos_query::ast::Statement> {
    use pharos_query::ast::Statement;
    if rule.no_data == pharos_alert::NoData::Ok {
        return None;
    }
    match st {
        Statement::Select(s) => {
            let mut s = s.clone();
            s.having = None;
            Some(Statement::Select(s))
        }
        _ => None,
    }
}

/// Writes what rules produce (recording rules' rows, the `ALERTS` series) by the one ingest path: held to
/// the limits written points are held to, counted under `protocol="rule"`.
async fn write_rule_points(ctx: &Arc<Alerting>, points: Vec<Point>) -> Result<(), String> {
    ctx.ingest.check(&points).map_err(|(i, e)| format!("sample {i}: {e}"))?;
    let batch = Batch { source: Source::Rule, precision: None, points, then_invalid: false };
    match ctx.ingest.ingest(batch).await {
        Ok(w) => w.refusal.map_or(Ok(()), Err),
        Err(e) => Err(e.to_string()),
    }
}
